//! A mesh host's entry in etcd (`<prefix>/hosts/<host>`, JSON): what a
//! host publishes about itself, and how every other host turns it into a
//! peer. Pure: no etcd, no maps.

use gre_common::MAX_PATHS;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::config::{check_host_name, Config, KeepaliveMode, Mac, Mode, Origin, PathConfig, PeerConfig, Rate, MAX_WEIGHT};

/// The entry format this build writes and reads.
pub const ENTRY_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostEntry {
    pub version: u32,
    pub mode: Mode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vsid: Option<u32>,
    /// The host's underlay links.
    pub links: Vec<EntryLink>,
    /// `gre`: inner prefixes routed to the host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<IpNet>,
    /// `gretap`: MAC addresses behind the host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub macs: Vec<Mac>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryLink {
    /// Outer address with its on-link prefix (`198.18.1.1/24`): a host
    /// reaches it from its own links in that subnet.
    pub address: IpNet,
    /// The link's MAC: the others use it as a static neighbour, so a mesh
    /// of a thousand hosts needs no ARP to start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<Mac>,
    #[serde(default = "one")]
    pub weight: u32,
    /// The link's `rate`, which the others' paths to it take instead of a
    /// weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<Rate>,
}

fn one() -> u32 {
    1
}

/// What is wrong with an entry: the field (as the entry names it) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryError {
    pub field: String,
    pub reason: String,
}

fn bad(field: impl Into<String>, reason: impl Into<String>) -> EntryError {
    EntryError { field: field.into(), reason: reason.into() }
}

impl HostEntry {
    /// This host's entry: `links` are its `[[link]]`s in order, each with
    /// the on-link prefix of its address and its MAC, as the kernel has them.
    pub fn of(cfg: &Config, links: &[(IpNet, Option<Mac>)]) -> HostEntry {
        let mesh = cfg.mesh.as_ref();
        let mut routes: Vec<IpNet> = Vec::new();
        if cfg.tunnel.mode == Mode::Gre {
            // The tunnel's own addresses, as host routes: the hosts share
            // the tunnel's subnet, and each is reached at its address.
            routes.extend(cfg.tunnel.address.iter().map(|a| IpNet::from(a.addr())));
            routes.extend(mesh.map(|m| m.routes.clone()).unwrap_or_default());
        }
        HostEntry {
            version: ENTRY_VERSION,
            mode: cfg.tunnel.mode,
            key: cfg.tunnel.key,
            vsid: cfg.tunnel.vsid,
            links: cfg
                .links
                .iter()
                .zip(links)
                .map(|(l, (net, mac))| EntryLink { address: *net, mac: *mac, weight: l.weight, rate: l.rate })
                .collect(),
            routes,
            macs: mesh.map(|m| m.macs.clone()).unwrap_or_default(),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an entry always serializes")
    }

    /// Parse an entry as etcd holds it; the error names the field.
    pub fn parse(bytes: &[u8]) -> Result<HostEntry, EntryError> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." || path.is_empty() { "-".to_string() } else { path };
            bad(field, e.into_inner().to_string())
        })
    }

    /// The peer host `host` is to a tunnel configured as `me`, whose links
    /// are `(dev, address with on-link prefix)`: a path from each of our
    /// links to each of its links in the same subnet. Also returns, per
    /// path, the index of the entry link it goes to (for error messages).
    pub fn to_peer(&self, host: &str, me: &Config, my_links: &[(String, IpNet)]) -> Result<(PeerConfig, Vec<usize>), EntryError> {
        check_host_name(host).map_err(|r| bad("host", r))?;
        if self.version != ENTRY_VERSION {
            return Err(bad("version", format!("{}: this xgre reads version {ENTRY_VERSION}", self.version)));
        }
        let t = &me.tunnel;
        if self.mode != t.mode {
            return Err(bad("mode", format!("{}; this tunnel is {}", self.mode.as_str(), t.mode.as_str())));
        }
        if self.key != t.key {
            return Err(bad("key", format!("{:?}; this tunnel's key is {:?}", self.key, t.key)));
        }
        if self.vsid != t.vsid {
            return Err(bad("vsid", format!("{:?}; this tunnel's VSID is {:?}", self.vsid, t.vsid)));
        }
        if self.links.is_empty() {
            return Err(bad("links", "a host needs at least one link"));
        }
        let mut paths = Vec::new();
        let mut to_link = Vec::new();
        for (k, l) in self.links.iter().enumerate() {
            let f = |n: &str| format!("links[{k}].{n}");
            if let Some(m) = l.mac {
                if m.0 == [0; 6] || m.0[0] & 1 == 1 {
                    return Err(bad(f("mac"), format!("{m} is not a unicast MAC address")));
                }
            }
            if l.weight == 0 || l.weight > MAX_WEIGHT {
                return Err(bad(f("weight"), format!("{} is outside 1..={MAX_WEIGHT}", l.weight)));
            }
            crate::config::rate::check_rate_or_weight("link", l.rate, self.links[0].rate, l.weight).map_err(|(n, r)| bad(f(n), r))?;
            let remote = l.address.addr();
            for (dev, _) in my_links.iter().filter(|(_, n)| n.contains(&remote) && n.addr() != remote) {
                paths.push(PathConfig { link: dev.clone(), remote, mac: l.mac, weight: l.weight, rate: l.rate, up: true, standby: false });
                to_link.push(k);
            }
        }
        if paths.is_empty() {
            let ours: Vec<String> = my_links.iter().map(|(d, n)| format!("{d} {}", n.trunc())).collect();
            return Err(bad("links", format!("none shares a subnet with a link of ours ({})", ours.join(", "))));
        }
        if paths.len() > MAX_PATHS {
            return Err(bad("links", format!("{} paths to it; a peer has at most {MAX_PATHS}", paths.len())));
        }
        let peer = PeerConfig {
            name: host.to_string(),
            routes: self.routes.clone(),
            paths,
            macs: self.macs.clone(),
            keepalive: KeepaliveMode::Auto,
            // A mesh entry never claims this host's default route.
            default_route: false,
            origin: Origin::Mesh,
        };
        Ok((peer, to_link))
    }
}

/// A config error about peer `peer[i]` (from `Config::validate_peer`),
/// renamed to the entry's own fields.
pub fn entry_field(field: &str, to_link: &[usize]) -> String {
    let Some(rest) = field.strip_prefix("peer[").and_then(|r| r.split_once("]")).map(|(_, r)| r) else {
        return field.to_string();
    };
    let rest = rest.trim_start_matches('.');
    if rest == "name" {
        return "host".into();
    }
    if let Some(p) = rest.strip_prefix("path[") {
        if let Some((j, tail)) = p.split_once(']') {
            if let Some(k) = j.parse::<usize>().ok().and_then(|j| to_link.get(j)) {
                let tail = match tail.trim_start_matches('.') {
                    "remote" => "address",
                    t => t,
                };
                return format!("links[{k}].{tail}");
            }
        }
        return "links".into();
    }
    rest.to_string()
}

/// Our own links as the matching needs them: (dev, address/prefix). A
/// link whose address the kernel does not have (yet) counts as a /32 or
/// /128, which matches nothing.
pub fn my_links(cfg: &Config, nets: &[IpNet]) -> Vec<(String, IpNet)> {
    cfg.links
        .iter()
        .map(|l| {
            let net = nets.iter().find(|n| n.addr() == l.address).copied().unwrap_or_else(|| IpNet::from(l.address));
            (l.dev.clone(), net)
        })
        .collect()
}

/// The host part of `<prefix>/hosts/<host>`.
pub fn host_of<'a>(key: &'a str, hosts_prefix: &str) -> Option<&'a str> {
    key.strip_prefix(hosts_prefix).filter(|h| !h.is_empty() && !h.contains('/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RxHook;

    fn me() -> Config {
        Config::new("gre0", Mode::Gre).with_address("198.19.0.1/24").with_link("eth0", "198.18.1.1", RxHook::Auto).with_link(
            "eth1",
            "198.18.2.1",
            RxHook::Auto,
        )
    }

    fn links() -> Vec<(String, IpNet)> {
        vec![("eth0".into(), "198.18.1.1/24".parse().unwrap()), ("eth1".into(), "198.18.2.1/24".parse().unwrap())]
    }

    #[test]
    fn an_entry_becomes_a_path_per_shared_subnet() {
        let mac = Some("02:00:00:00:01:02".parse().unwrap());
        let other = Config::new("gre0", Mode::Gre)
            .with_address("198.19.0.2/24")
            .with_link("a", "198.18.1.2", RxHook::Auto)
            .with_link("b", "198.18.2.2", RxHook::Auto)
            .with_link("c", "198.18.9.2", RxHook::Auto);
        let e = HostEntry::of(
            &other,
            &[("198.18.1.2/24".parse().unwrap(), mac), ("198.18.2.2/24".parse().unwrap(), None), ("198.18.9.2/24".parse().unwrap(), None)],
        );
        let e = HostEntry::parse(&e.to_json()).unwrap();
        let (p, to_link) = e.to_peer("h2", &me(), &links()).unwrap();
        assert_eq!(p.routes, vec!["198.19.0.2/32".parse::<IpNet>().unwrap()]);
        assert_eq!(p.paths.len(), 2);
        assert_eq!((p.paths[0].link.as_str(), p.paths[0].remote.to_string(), p.paths[0].mac), ("eth0", "198.18.1.2".into(), mac));
        assert_eq!(p.paths[1].link, "eth1");
        assert_eq!(to_link, [0, 1]);
        assert_eq!(p.origin, Origin::Mesh);
        assert_eq!((p.paths[0].rate, p.paths[0].weight), (None, 1));
    }

    #[test]
    fn link_rates_travel_to_the_paths() {
        let mut other = Config::new("gre0", Mode::Gre).with_address("198.19.0.2/24").with_link("a", "198.18.1.2", RxHook::Auto).with_link(
            "b",
            "198.18.2.2",
            RxHook::Auto,
        );
        other.links[0].rate = Some("300mbit".parse().unwrap());
        other.links[1].rate = Some("100mbit".parse().unwrap());
        let e = HostEntry::of(&other, &[("198.18.1.2/24".parse().unwrap(), None), ("198.18.2.2/24".parse().unwrap(), None)]);
        let json = String::from_utf8(e.to_json()).unwrap();
        assert!(json.contains(r#""rate":"300mbit""#), "{json}");
        let (p, _) = HostEntry::parse(json.as_bytes()).unwrap().to_peer("h2", &me(), &links()).unwrap();
        let rates: Vec<u32> = p.paths.iter().map(|q| q.rate.map_or(0, |r| r.kbps)).collect();
        assert_eq!(rates, [300_000, 100_000]);
        let mut cfg = me();
        cfg.peers.push(p);
        cfg.validate("test.toml").expect("a peer with rates on every path is valid");
    }

    #[test]
    fn a_bad_entry_names_its_field() {
        let e = |s: &str| HostEntry::parse(s.as_bytes()).and_then(|e| e.to_peer("h9", &me(), &links()).map(|_| ())).unwrap_err();
        assert_eq!(e(r#"{"version":1,"mode":"gre","links":[{"address":"banana"}]}"#).field, "links[0].address");
        assert_eq!(e(r#"{"version":1,"mode":"gre","links":[],"colour":1}"#).field, "colour");
        assert_eq!(e(r#"{"version":1,"mode":"gretap","links":[]}"#).field, "mode");
        assert_eq!(e(r#"{"version":1,"mode":"gre","key":5,"links":[]}"#).field, "key");
        assert_eq!(e(r#"{"version":2,"mode":"gre","links":[]}"#).field, "version");
        let far = e(r#"{"version":1,"mode":"gre","links":[{"address":"198.18.7.2/24"}]}"#);
        assert_eq!(far.field, "links");
        assert!(far.reason.contains("eth0 198.18.1.0/24"), "{far:?}");
        assert_eq!(e(r#"{"version":1,"mode":"gre","links":[{"address":"198.18.1.2/24","weight":0}]}"#).field, "links[0].weight");
        assert_eq!(
            e(r#"{"version":1,"mode":"gre","links":[{"address":"198.18.1.2/24","mac":"01:00:00:00:00:01"}]}"#).field,
            "links[0].mac"
        );
        assert_eq!(e("not json").field, "-");
        let mixed = r#"{"version":1,"mode":"gre","links":[{"address":"198.18.1.2/24","rate":"300mbit"},{"address":"198.18.2.2/24"}]}"#;
        assert_eq!(e(mixed).field, "links[1].rate");
        let both = r#"{"version":1,"mode":"gre","links":[{"address":"198.18.1.2/24","rate":"300mbit","weight":3}]}"#;
        assert_eq!(e(both).field, "links[0].weight");
        assert_eq!(e(r#"{"version":1,"mode":"gre","links":[{"address":"198.18.1.2/24","rate":"fast"}]}"#).field, "links[0].rate");
    }

    #[test]
    fn config_errors_are_renamed_to_entry_fields() {
        assert_eq!(entry_field("peer[3].routes[1]", &[]), "routes[1]");
        assert_eq!(entry_field("peer[3].path[1].remote", &[0, 2]), "links[2].address");
        assert_eq!(entry_field("peer[3].name", &[]), "host");
        assert_eq!(entry_field("peer", &[]), "peer");
    }

    #[test]
    fn host_names_come_from_keys_directly_under_hosts() {
        assert_eq!(host_of("/x/hosts/h1", "/x/hosts/"), Some("h1"));
        assert_eq!(host_of("/x/hosts/", "/x/hosts/"), None);
        assert_eq!(host_of("/x/hosts/a/b", "/x/hosts/"), None);
    }
}
