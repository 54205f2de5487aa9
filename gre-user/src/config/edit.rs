//! `xgre map-edit`: one change to a running tunnel, made to its config and
//! checked by the config's own rules before the maps are touched.

use std::{net::IpAddr, path::Path, str::FromStr};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use ipnet::IpNet;

use crate::config::{Config, GroupConfig, KeepaliveMode, Mac, NeighborConfig, Origin, PathConfig, PeerConfig, VlanConfig};

#[derive(Subcommand, Debug, Clone)]
pub enum Edit {
    /// Peers: add, delete, or replace routes and paths.
    #[command(subcommand)]
    Peer(PeerEdit),
    /// One path of a peer.
    #[command(subcommand)]
    Path(PathEdit),
    /// Inner routes to a peer.
    #[command(subcommand)]
    Route(RouteEdit),
    /// A path's static neighbour MAC.
    #[command(subcommand)]
    Neigh(NeighEdit),
    /// The tunnel's GRE key.
    #[command(subcommand)]
    Key(KeyEdit),
    /// `gre` mode: which peers a multicast group is replicated to.
    #[command(subcommand)]
    Group(GroupEdit),
    /// `gretap` trunk: VLAN ⇄ key pairs and the native key.
    #[command(subcommand)]
    Vlan(VlanEdit),
    /// `arp_suppress`: static neighbours, answered for without being
    /// learned.
    #[command(subcommand)]
    Arp(ArpEdit),
}

#[derive(Subcommand, Debug, Clone)]
pub enum ArpEdit {
    /// Answer for `ip` with `mac` (adds or replaces).
    Add {
        /// The address asked for.
        ip: IpAddr,
        /// The MAC address to answer with.
        mac: Mac,
        /// The VLAN it lives in (trunks).
        #[arg(long, default_value_t = 0)]
        vid: u16,
    },
    /// No longer a static neighbour.
    Del {
        /// The address.
        ip: IpAddr,
        /// The VLAN it lives in (trunks).
        #[arg(long, default_value_t = 0)]
        vid: u16,
    },
}

#[derive(Subcommand, Debug, Clone)]
pub enum VlanEdit {
    /// Carry a VLAN under a key (adds or replaces the VLAN's key).
    Add {
        /// The 802.1Q VLAN ID (1..=4094).
        vid: u16,
        /// The GRE key its frames travel under.
        key: u32,
    },
    /// Stop carrying a VLAN.
    Del {
        /// The 802.1Q VLAN ID.
        vid: u16,
    },
    /// The key untagged frames take.
    Native {
        /// A 32-bit key, or `none` (untagged frames are dropped and counted).
        key: String,
    },
}

#[derive(Subcommand, Debug, Clone)]
pub enum GroupEdit {
    /// Replicate the group to these peers only (creates or replaces).
    Set {
        /// The multicast group address.
        address: IpAddr,
        /// A peer (repeat for more).
        #[arg(long = "peer", required = true)]
        peers: Vec<String>,
    },
    /// Back to every peer.
    Del {
        /// The multicast group address.
        address: IpAddr,
    },
}

#[derive(Args, Debug, Clone)]
pub struct PeerSpec {
    /// An inner route to the peer (repeat for more).
    #[arg(long = "route")]
    pub routes: Vec<IpNet>,
    /// A path: `link=DEV,remote=ADDR[,mac=MAC][,weight=N][,rate=R][,up=false]` (repeat for more).
    #[arg(long = "path")]
    pub paths: Vec<PathSpec>,
    /// gretap: a MAC address that lives behind the peer (repeat for more).
    #[arg(long = "mac")]
    pub macs: Vec<Mac>,
    /// How `xgre run` judges this peer by keepalives: auto (once it has
    /// answered one), required (from the start) or off.
    #[arg(long, value_enum)]
    pub keepalive: Option<KeepaliveMode>,
}

#[derive(Subcommand, Debug, Clone)]
pub enum PeerEdit {
    /// Add a peer.
    Add {
        /// The peer's name (unique in the tunnel).
        name: String,
        #[command(flatten)]
        spec: PeerSpec,
    },
    /// Remove a peer, its routes and what was learned from it.
    Del {
        /// The peer's name.
        name: String,
    },
    /// Replace the routes and/or the paths given.
    Set {
        /// The peer's name.
        name: String,
        #[command(flatten)]
        spec: PeerSpec,
    },
}

#[derive(Subcommand, Debug, Clone)]
pub enum PathEdit {
    /// Add a path to a peer.
    Add {
        /// The peer's name.
        peer: String,
        /// `link=DEV,remote=ADDR[,mac=MAC][,weight=N][,rate=R][,up=false]`.
        path: PathSpec,
    },
    /// Remove a path from a peer (the later ones move up).
    Del {
        /// The peer's name.
        peer: String,
        /// The path's place among the peer's paths, from 0.
        index: usize,
    },
    /// Change one path in place.
    Set {
        /// The peer's name.
        peer: String,
        /// The path's place among the peer's paths, from 0.
        index: usize,
        /// Share of the peer's packets (1..=1000).
        #[arg(long, allow_negative_numbers = true, value_parser = weight_arg)]
        weight: Option<u32>,
        /// The path's rate (`300mbit`), or `none` (back to weights).
        #[arg(long)]
        rate: Option<String>,
        /// A static neighbour MAC for the path.
        #[arg(long)]
        mac: Option<Mac>,
        /// Back into the rotation.
        #[arg(long, conflicts_with = "down")]
        up: bool,
        /// Out of the rotation (kept in the config).
        #[arg(long)]
        down: bool,
        /// `true`: a backup, used only while the peer's other paths are all
        /// down; `false`: an ordinary path.
        #[arg(long)]
        standby: Option<bool>,
    },
}

#[derive(Subcommand, Debug, Clone)]
pub enum RouteEdit {
    /// Route an inner prefix to a peer.
    Add {
        /// The peer's name.
        peer: String,
        /// The inner prefix (IPv4 or IPv6).
        route: IpNet,
    },
    /// Remove an inner route, whichever peer has it.
    Del {
        /// The inner prefix.
        route: IpNet,
    },
}

#[derive(Subcommand, Debug, Clone)]
pub enum NeighEdit {
    /// Use this MAC for the path (a static neighbour).
    Set {
        /// The peer's name.
        peer: String,
        /// The path's place among the peer's paths, from 0.
        index: usize,
        /// The next hop's MAC address.
        mac: Mac,
    },
    /// Resolve the path's MAC from the kernel again.
    Del {
        /// The peer's name.
        peer: String,
        /// The path's place among the peer's paths, from 0.
        index: usize,
    },
}

#[derive(Subcommand, Debug, Clone)]
pub enum KeyEdit {
    /// Change the tunnel's GRE key.
    Set {
        /// A 32-bit key, or `none`.
        key: String,
    },
}

/// `link=eth0,remote=198.18.0.20,mac=02:..,weight=2,rate=300mbit,up=false`
#[derive(Debug, Clone)]
pub struct PathSpec(pub PathConfig);

impl FromStr for PathSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (mut link, mut remote, mut mac, mut weight, mut rate, mut up, mut standby) = (None, None, None, 1, None, true, false);
        for kv in s.split(',') {
            let (k, v) = kv.split_once('=').ok_or_else(|| format!("`{kv}`: want key=value"))?;
            match k {
                "link" => link = Some(v.to_string()),
                "remote" => remote = Some(v.parse::<IpAddr>().map_err(|e| format!("remote `{v}`: {e}"))?),
                "mac" => mac = Some(v.parse::<Mac>()?),
                "weight" => weight = v.parse().map_err(|e| format!("weight `{v}`: {e}"))?,
                "rate" => rate = Some(v.parse::<crate::config::rate::Rate>()?),
                "up" => up = v.parse().map_err(|e| format!("up `{v}`: {e}"))?,
                "standby" => standby = v.parse().map_err(|e| format!("standby `{v}`: {e}"))?,
                _ => return Err(format!("unknown path field `{k}` (link, remote, mac, weight, rate, up, standby)")),
            }
        }
        Ok(PathSpec(PathConfig {
            link: link.ok_or("a path needs link=DEV")?,
            remote: remote.ok_or("a path needs remote=ADDR")?,
            mac,
            weight,
            rate,
            up,
            standby,
        }))
    }
}

/// One line of a `--batch` file, parsed like the command line.
#[derive(Parser, Debug)]
#[command(name = "edit", no_binary_name = true)]
struct Line {
    #[command(subcommand)]
    edit: Edit,
}

pub fn parse_line(line: &str) -> Result<Edit> {
    let words: Vec<&str> = line.split_whitespace().collect();
    Line::try_parse_from(words).map(|l| l.edit).map_err(|e| anyhow!("{}", e.to_string().lines().next().unwrap_or("bad edit")))
}

/// `--weight N`: a whole number, checked against 1..=1000 with the rest of
/// the peer (the error then names the path's field); a negative one, which
/// clap would take for a flag, is refused here with the range.
fn weight_arg(v: &str) -> Result<u32, String> {
    match v.parse::<i64>() {
        Ok(w) if w >= 0 => Ok(w.min(u32::MAX as i64) as u32),
        Ok(w) => Err(format!("{w} is outside 1..={}", crate::config::MAX_WEIGHT)),
        Err(_) => Err(format!("`{v}` is not a number (1..={})", crate::config::MAX_WEIGHT)),
    }
}

fn peer_mut<'a>(c: &'a mut Config, name: &str) -> Result<&'a mut PeerConfig> {
    let missing = no_such_peer(c, name);
    c.peers.iter_mut().find(|p| p.name == name).ok_or(missing)
}

/// "peer `x` does not exist", with the tunnel's peers (the first ten).
fn no_such_peer(c: &Config, name: &str) -> anyhow::Error {
    let names: Vec<&str> = c.peers.iter().take(10).map(|p| p.name.as_str()).collect();
    let more = c.peers.len().saturating_sub(names.len());
    let list = match (names.is_empty(), more) {
        (true, _) => "none".to_string(),
        (false, 0) => names.join(", "),
        (false, n) => format!("{}, and {n} more", names.join(", ")),
    };
    anyhow!("peer `{name}` does not exist (peers: {list})")
}

fn path_mut<'a>(c: &'a mut Config, peer: &str, index: usize) -> Result<&'a mut PathConfig> {
    let p = peer_mut(c, peer)?;
    let n = p.paths.len();
    p.paths.get_mut(index).ok_or_else(|| anyhow!("peer `{peer}` has no path {index} (it has {n}: 0..{n})"))
}

/// For an edit that touches one peer only: the peer's name and what it
/// becomes (`None`: removed), computed from that peer alone so a batch of
/// edits on a big tunnel costs per edit what the edit touches. `None` for
/// tunnel-wide edits.
pub fn peer_change(cfg: &Config, edit: &Edit) -> Option<Result<(String, Option<PeerConfig>)>> {
    let name = match edit {
        Edit::Peer(PeerEdit::Add { name, .. } | PeerEdit::Del { name } | PeerEdit::Set { name, .. }) => name.clone(),
        Edit::Path(PathEdit::Add { peer, .. } | PathEdit::Del { peer, .. } | PathEdit::Set { peer, .. }) => peer.clone(),
        Edit::Route(RouteEdit::Add { peer, .. }) => peer.clone(),
        Edit::Route(RouteEdit::Del { route }) => match cfg.peers.iter().find(|p| p.routes.contains(route)) {
            Some(p) => p.name.clone(),
            None => return Some(Err(anyhow!("no peer has route {route}"))),
        },
        Edit::Neigh(NeighEdit::Set { peer, .. } | NeighEdit::Del { peer, .. }) => peer.clone(),
        Edit::Key(_) | Edit::Group(_) | Edit::Vlan(_) | Edit::Arp(_) => return None,
    };
    if cfg.peers.iter().any(|p| p.name == name && p.origin == Origin::Mesh) {
        return Some(Err(anyhow!("peer `{name}` comes from the mesh (etcd); change that host's own config instead")));
    }
    // Said here, against the whole tunnel: the one-peer config below has
    // no other peers to name.
    if !matches!(edit, Edit::Peer(PeerEdit::Add { .. })) && !cfg.peers.iter().any(|p| p.name == name) {
        return Some(Err(no_such_peer(cfg, &name)));
    }
    // The edit applied to a config holding just this peer (and the
    // tunnel's links, for nothing but context).
    let one = Config {
        peers: cfg.peers.iter().filter(|p| p.name == name).cloned().collect(),
        links: vec![],
        tunnel: cfg.tunnel.clone(),
        groups: vec![],
        mesh: None,
    };
    Some(apply_edit(&one, edit).map(|c| {
        let p = c.peers.into_iter().find(|p| p.name == name);
        (name, p)
    }))
}

/// The config after `edit`; the caller validates it.
pub fn apply_edit(cfg: &Config, edit: &Edit) -> Result<Config> {
    let mut c = cfg.clone();
    match edit {
        Edit::Peer(e) => edit_peer(&mut c, e)?,
        Edit::Path(e) => edit_path(&mut c, e)?,
        Edit::Neigh(e) => edit_neigh(&mut c, e)?,
        e => edit_tunnel(&mut c, e)?,
    }
    Ok(c)
}

fn edit_peer(c: &mut Config, edit: &PeerEdit) -> Result<()> {
    match edit {
        PeerEdit::Add { name, spec } => {
            if c.peers.iter().any(|p| &p.name == name) {
                bail!("peer `{name}` exists already (use `peer set`)");
            }
            c.peers.push(PeerConfig {
                name: name.clone(),
                routes: spec.routes.clone(),
                paths: spec.paths.iter().map(|p| p.0.clone()).collect(),
                macs: spec.macs.clone(),
                keepalive: spec.keepalive.unwrap_or_default(),
                default_route: false,
                origin: Origin::File,
            });
        }
        PeerEdit::Del { name } => {
            peer_mut(c, name)?;
            c.peers.retain(|p| &p.name != name);
        }
        PeerEdit::Set { name, spec } => {
            let p = peer_mut(c, name)?;
            if spec.routes.is_empty() && spec.paths.is_empty() && spec.macs.is_empty() && spec.keepalive.is_none() {
                bail!("peer set {name}: give --route, --path, --mac and/or --keepalive to replace");
            }
            if let Some(k) = spec.keepalive {
                p.keepalive = k;
            }
            if !spec.macs.is_empty() {
                p.macs = spec.macs.clone();
            }
            if !spec.routes.is_empty() {
                p.routes = spec.routes.clone();
            }
            if !spec.paths.is_empty() {
                p.paths = spec.paths.iter().map(|p| p.0.clone()).collect();
            }
        }
    }
    Ok(())
}

fn edit_path(c: &mut Config, edit: &PathEdit) -> Result<()> {
    match edit {
        PathEdit::Add { peer, path } => peer_mut(c, peer)?.paths.push(path.0.clone()),
        PathEdit::Del { peer, index } => {
            path_mut(c, peer, *index)?;
            peer_mut(c, peer)?.paths.remove(*index);
        }
        PathEdit::Set { peer, index, weight, rate, mac, up, down, standby } => {
            let p = path_mut(c, peer, *index)?;
            if let Some(r) = rate {
                p.rate = match r.as_str() {
                    "none" => None,
                    r => Some(r.parse::<crate::config::rate::Rate>().map_err(|e| anyhow!("--rate: {e}"))?),
                };
            }
            if let Some(s) = standby {
                p.standby = *s;
            }
            if let Some(w) = weight {
                p.weight = *w;
            }
            if let Some(m) = mac {
                p.mac = Some(*m);
            }
            if *up {
                p.up = true;
            }
            if *down {
                p.up = false;
            }
        }
    }
    Ok(())
}

fn edit_neigh(c: &mut Config, edit: &NeighEdit) -> Result<()> {
    match edit {
        NeighEdit::Set { peer, index, mac } => path_mut(c, peer, *index)?.mac = Some(*mac),
        NeighEdit::Del { peer, index } => path_mut(c, peer, *index)?.mac = None,
    }
    Ok(())
}

/// Tunnel-wide edits: key, VLANs, static neighbours, groups.
fn edit_tunnel(c: &mut Config, edit: &Edit) -> Result<()> {
    match edit {
        Edit::Route(RouteEdit::Add { peer, route }) => peer_mut(c, peer)?.routes.push(*route),
        Edit::Route(RouteEdit::Del { route }) => {
            let owner = c.peers.iter_mut().find(|p| p.routes.contains(route)).ok_or_else(|| anyhow!("no peer has route {route}"))?;
            owner.routes.retain(|r| r != route);
        }
        Edit::Key(KeyEdit::Set { key }) => {
            c.tunnel.key = match key.as_str() {
                "none" => None,
                k => Some(k.parse().map_err(|_| anyhow!("key `{k}`: want a number from 0 to 4294967295, or none"))?),
            }
        }
        Edit::Group(GroupEdit::Set { address, peers }) => {
            let g = GroupConfig { address: *address, peers: peers.clone() };
            match c.groups.iter_mut().find(|g| g.address == *address) {
                Some(old) => *old = g,
                None => c.groups.push(g),
            }
        }
        Edit::Vlan(VlanEdit::Add { vid, key }) => {
            let v = VlanConfig { vid: *vid, key: *key };
            match c.tunnel.vlans.iter_mut().find(|x| x.vid == *vid) {
                Some(old) => *old = v,
                None => c.tunnel.vlans.push(v),
            }
        }
        Edit::Vlan(VlanEdit::Del { vid }) => {
            if !c.tunnel.vlans.iter().any(|v| v.vid == *vid) {
                bail!("the trunk does not carry VLAN {vid}");
            }
            c.tunnel.vlans.retain(|v| v.vid != *vid);
        }
        Edit::Vlan(VlanEdit::Native { key }) => {
            c.tunnel.native_key = match key.as_str() {
                "none" => None,
                k => Some(k.parse().map_err(|_| anyhow!("native key `{k}`: want a number from 0 to 4294967295, or none"))?),
            }
        }
        Edit::Arp(ArpEdit::Add { ip, mac, vid }) => {
            let n = NeighborConfig { ip: *ip, mac: *mac, vid: *vid };
            match c.tunnel.neighbors.iter_mut().find(|x| x.ip == *ip && x.vid == *vid) {
                Some(old) => *old = n,
                None => c.tunnel.neighbors.push(n),
            }
        }
        Edit::Arp(ArpEdit::Del { ip, vid }) => {
            if !c.tunnel.neighbors.iter().any(|x| x.ip == *ip && x.vid == *vid) {
                bail!("{ip} is not a static neighbour{}", if *vid != 0 { format!(" in VLAN {vid}") } else { String::new() });
            }
            c.tunnel.neighbors.retain(|x| !(x.ip == *ip && x.vid == *vid));
        }
        Edit::Group(GroupEdit::Del { address }) => {
            if !c.groups.iter().any(|g| g.address == *address) {
                bail!("no [[group]] {address}");
            }
            c.groups.retain(|g| g.address != *address);
        }
        Edit::Peer(_) | Edit::Path(_) | Edit::Neigh(_) => unreachable!("one-peer edits are applied by edit_peer, edit_path and edit_neigh"),
    }
    Ok(())
}

/// The edits of a `--batch` file, one per line (blank lines and `#`
/// comments skipped), each labelled FILE:LINE for its errors.
pub fn read_batch(path: &Path) -> Result<Vec<(String, Edit)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut v = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let label = format!("{}:{}", path.display(), i + 1);
        let e = parse_line(l).with_context(|| label.clone())?;
        v.push((label, e));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Config {
        Config::parse(
            "[tunnel]\nname='t'\n[[link]]\ndev='e0'\naddress='198.18.0.1'\n[[peer]]\nname='p'\nroutes=['198.19.0.2/32']\n[[peer.path]]\nlink='e0'\nremote='198.18.0.2'\n",
            "t",
        )
        .unwrap()
    }

    fn edit(c: &Config, line: &str) -> Result<Config> {
        let e = parse_line(line)?;
        let n = apply_edit(c, &e)?;
        n.validate("map-edit t")?;
        Ok(n)
    }

    #[test]
    fn edits_change_the_config() {
        let c = base();
        let c = edit(&c, "peer add q --route 198.19.0.3/32 --path link=e0,remote=198.18.0.3,weight=2").unwrap();
        assert_eq!(c.peers[1].paths[0].weight, 2);
        let c = edit(&c, "path add q link=e0,remote=198.18.0.4,mac=02:00:00:00:00:04").unwrap();
        assert_eq!(c.peers[1].paths.len(), 2);
        let c = edit(&c, "path set q 1 --weight 5 --down").unwrap();
        assert_eq!((c.peers[1].paths[1].weight, c.peers[1].paths[1].up), (5, false));
        let c = edit(&c, "route add q 198.19.1.0/24").unwrap();
        let c = edit(&c, "route del 198.19.0.3/32").unwrap();
        assert_eq!(c.peers[1].routes, vec!["198.19.1.0/24".parse::<IpNet>().unwrap()]);
        let c = edit(&c, "neigh set p 0 02:00:00:00:00:02").unwrap();
        assert!(c.peers[0].paths[0].mac.is_some());
        let c = edit(&c, "neigh del p 0").unwrap();
        assert!(c.peers[0].paths[0].mac.is_none());
        let c = edit(&c, "key set 7").unwrap();
        assert_eq!(c.tunnel.key, Some(7));
        let c = edit(&c, "group set 239.0.0.10 --peer q --peer p").unwrap();
        assert_eq!(c.groups[0].peers, ["q", "p"]);
        let c = edit(&c, "group set 239.0.0.10 --peer p").unwrap();
        assert_eq!(c.groups.len(), 1);
        let c = edit(&c, "group del 239.0.0.10").unwrap();
        assert!(c.groups.is_empty());
        let c = edit(&c, "peer del q").unwrap();
        assert_eq!(c.peers.len(), 1);
    }

    #[test]
    fn bad_edits_are_refused_with_a_reason() {
        let c = base();
        let e = |l: &str| edit(&c, l).unwrap_err().to_string();
        assert!(e("peer del nobody").contains("peer `nobody` does not exist"));
        assert!(e("path set p 3 --weight 2").contains("has no path 3"));
        assert!(e("path add p link=e9,remote=198.18.0.9").contains("peer[0].path[1].link: `e9` is not a [[link]]"));
        assert!(e("path set p 0 --weight 0").contains("peer[0].path[0].weight"));
        assert!(
            e("route add p 198.19.0.2/32").contains("peer[0].routes[1]: 198.19.0.2/32 is listed twice"),
            "{}",
            e("route add p 198.19.0.2/32")
        );
        let two = edit(&c, "peer add q --route 198.19.0.3/32 --path link=e0,remote=198.18.0.3").unwrap();
        let e2 = edit(&two, "route add q 198.19.0.2/32").unwrap_err().to_string();
        assert!(e2.contains("198.19.0.2/32 is routed to another peer already"), "{e2}");
        assert!(e("key set banana").contains("want a number"));
        assert!(e("peer add p --path link=e0,remote=198.18.0.5").contains("exists already"));
        assert!(e("path add p link=e0").contains("remote"));
        assert!(e("group set 198.19.0.9 --peer p").contains("group[0].address: 198.19.0.9 is not a multicast"));
        assert!(e("group set 239.1.1.1 --peer nobody").contains("group[0].peers[0]: `nobody` is not a [[peer]]"));
        assert!(e("group del 239.1.1.1").contains("no [[group]]"));
    }

    #[test]
    fn the_readme_batch_file_applies_to_the_gre_example() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../");
        let mut c = Config::load(Path::new(&format!("{root}examples/gre.toml"))).unwrap();
        let batch = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/edits.txt"));
        let edits = read_batch(batch).unwrap();
        assert_eq!(edits.len(), 3);
        for (label, e) in &edits {
            c = apply_edit(&c, e).unwrap_or_else(|err| panic!("{label}: {err:#}"));
            c.validate(label).unwrap_or_else(|err| panic!("{label}: {err:#}"));
        }
        assert_eq!(c.groups[0].peers, ["site-b", "site-c"]);
        let readme = std::fs::read_to_string(format!("{root}README.md")).unwrap();
        let text = std::fs::read_to_string(batch).unwrap();
        assert!(readme.contains(&format!("```\n{text}```")), "the README shows examples/edits.txt whole");
    }
}
