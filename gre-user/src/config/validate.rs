//! The rules that need more than one field, each error naming the file,
//! the field and the reason; and the index that checks one peer against
//! the others without the whole config.

use std::{collections::HashSet, net::IpAddr};

use gre_common::MAX_PATHS;
use ipnet::IpNet;

use super::{rate::check_rate_or_weight, *};

impl Config {
    pub fn validate(&self, file: &str) -> Result<(), ConfigError> {
        let err = |field: String, reason: String| ConfigError { file: file.to_string(), field, reason };
        self.validate_tunnel().map_err(|(f, r)| err(f, r))?;
        let addrs = self.validate_links().map_err(|(f, r)| err(f, r))?;
        if let Some(m) = &self.mesh {
            m.validate(self.tunnel.mode).map_err(|(f, r)| err(format!("mesh.{f}"), r))?;
        }
        let mut index = PeerIndex::default();
        for (i, p) in self.peers.iter().enumerate() {
            self.validate_peer(file, i, p, &addrs, &index)?;
            index.add(p);
        }
        self.validate_groups(file, &index)
    }

    /// The `[tunnel]` table: (field, reason) of the first thing wrong.
    fn validate_tunnel(&self) -> Result<(), (String, String)> {
        let t = &self.tunnel;
        validate_ifname(&t.name).map_err(|r| ("tunnel.name".into(), r))?;
        if let Some(v) = t.vsid {
            if t.mode != Mode::Gretap {
                return Err(("tunnel.vsid".into(), "NVGRE carries Ethernet: set mode = \"gretap\"".into()));
            }
            if t.key.is_some() {
                return Err(("tunnel.vsid".into(), "the VSID is the key; set `vsid` or `key`, not both".into()));
            }
            if t.sequence || t.checksum {
                return Err(("tunnel.vsid".into(), "NVGRE has no sequence numbers or checksums (RFC 7637 section 3.2)".into()));
            }
            if !(0x1000..=0xfffffe).contains(&v) {
                return Err(("tunnel.vsid".into(), format!("{v} is outside 4096..=16777214 (RFC 7637 reserves the rest)")));
            }
        }
        self.validate_trunk()?;
        self.validate_neighbors()?;
        if !(1..=86_400).contains(&t.fdb_age) {
            return Err(("tunnel.fdb_age".into(), format!("{} s is outside 1..=86400", t.fdb_age)));
        }
        if !(1..=86_400).contains(&t.pmtu_age) {
            return Err(("tunnel.pmtu_age".into(), format!("{} s is outside 1..=86400", t.pmtu_age)));
        }
        if !t.pmtu_discovery && self.underlay6() {
            return Err((
                "tunnel.pmtu_discovery".into(),
                "IPv6 links cannot leave fragmenting to the underlay (IPv6 routers never fragment; ip6gre has no nopmtudisc either)".into(),
            ));
        }
        if t.mode == Mode::Gretap && self.peers.len() > gre_common::MAX_FLOOD {
            return Err((
                "peer".into(),
                format!("{} peers; a gretap tunnel floods to every peer and takes at most {}", self.peers.len(), gre_common::MAX_FLOOD),
            ));
        }
        if let Some(b) = t.stripe_burst {
            if !(1..=64).contains(&b) {
                return Err(("tunnel.stripe_burst".into(), format!("{b} is outside 1..=64")));
            }
        }
        if let Some(n) = t.tcp_reordering {
            if n > MAX_TCP_REORDERING {
                return Err((
                    "tunnel.tcp_reordering".into(),
                    format!("{n} is above {MAX_TCP_REORDERING}, where TCP stops listening (0 leaves the kernel's default)"),
                ));
            }
        }
        if let Some(ms) = t.resequence {
            if ms > gre_common::reseq::MAX_RESEQUENCE_MS {
                return Err((
                    "tunnel.resequence".into(),
                    format!(
                        "{ms} ms is above {}, where TCP's own timers would resend first (0 turns it off)",
                        gre_common::reseq::MAX_RESEQUENCE_MS
                    ),
                ));
            }
        }
        if t.ip_id_sequence {
            if t.sequence {
                return Err((
                    "tunnel.ip_id_sequence".into(),
                    "`sequence = true` numbers packets already (in the GRE header); set one of the two".into(),
                ));
            }
            if self.underlay6() {
                return Err((
                    "tunnel.ip_id_sequence".into(),
                    "IPv6 links have no IPv4 Identification field; number packets with `sequence = true`".into(),
                ));
            }
        }
        if t.keepalive != 0 && !(10..=60_000).contains(&t.keepalive) {
            return Err(("tunnel.keepalive".into(), format!("{} ms is outside 10..=60000 (0 turns keepalives off)", t.keepalive)));
        }
        if !(1..=100).contains(&t.keepalive_misses) {
            return Err(("tunnel.keepalive_misses".into(), format!("{} is outside 1..=100", t.keepalive_misses)));
        }
        if let Some(mtu) = t.mtu {
            if !(68..=65535).contains(&mtu) {
                return Err(("tunnel.mtu".into(), format!("{mtu} is outside 68..=65535")));
            }
        }
        Ok(())
    }

    /// The `[[link]]`s; their addresses.
    fn validate_links(&self) -> Result<HashSet<IpAddr>, (String, String)> {
        if self.links.is_empty() {
            return Err(("link".into(), "at least one [[link]] is required".into()));
        }
        let mut devs = HashSet::new();
        let mut addrs = HashSet::new();
        for (i, l) in self.links.iter().enumerate() {
            validate_ifname(&l.dev).map_err(|r| (format!("link[{i}].dev"), r))?;
            if !devs.insert(l.dev.as_str()) {
                return Err((format!("link[{i}].dev"), format!("`{}` is listed twice", l.dev)));
            }
            check_unicast(l.address).map_err(|r| (format!("link[{i}].address"), r))?;
            if l.address.is_ipv4() != self.links[0].address.is_ipv4() {
                return Err((
                    format!("link[{i}].address"),
                    format!("{}: one underlay family per tunnel (link[0] is {})", l.address, self.links[0].address),
                ));
            }
            if !addrs.insert(l.address) {
                return Err((format!("link[{i}].address"), format!("{} is used by another link", l.address)));
            }
        }
        for (i, l) in self.links.iter().enumerate() {
            if l.weight == 0 || l.weight > MAX_WEIGHT {
                return Err((format!("link[{i}].weight"), format!("{} is outside 1..={MAX_WEIGHT}", l.weight)));
            }
            check_rate_or_weight("link", l.rate, self.links[0].rate, l.weight).map_err(|(f, r)| (format!("link[{i}].{f}"), r))?;
        }
        Ok(addrs)
    }

    /// `[[tunnel.vlan]]` and `native_key`: (field, reason) of the first
    /// thing wrong.
    fn validate_trunk(&self) -> Result<(), (String, String)> {
        let t = &self.tunnel;
        if t.vlans.is_empty() {
            if t.native_key.is_some() {
                return Err(("tunnel.native_key".into(), "is for trunks: add [[tunnel.vlan]] pairs".into()));
            }
            return Ok(());
        }
        if t.mode != Mode::Gretap {
            return Err(("tunnel.vlan".into(), "VLAN trunks carry Ethernet: set mode = \"gretap\"".into()));
        }
        if t.key.is_some() || t.vsid.is_some() {
            return Err((
                "tunnel.vlan".into(),
                "a trunk's keys come from its VLANs; remove `key` / `vsid` (untagged frames: `native_key`)".into(),
            ));
        }
        let mut vids = HashSet::new();
        let mut keys = HashSet::new();
        for (i, v) in t.vlans.iter().enumerate() {
            if !(1..=4094).contains(&v.vid) {
                return Err((format!("tunnel.vlan[{i}].vid"), format!("{} is outside 1..=4094", v.vid)));
            }
            if !vids.insert(v.vid) {
                return Err((format!("tunnel.vlan[{i}].vid"), format!("VLAN {} is listed twice", v.vid)));
            }
            if !keys.insert(v.key) {
                return Err((format!("tunnel.vlan[{i}].key"), format!("key {} already carries another VLAN", v.key)));
            }
        }
        if let Some(k) = t.native_key {
            if keys.contains(&k) {
                return Err(("tunnel.native_key".into(), format!("key {k} already carries a VLAN")));
            }
        }
        Ok(())
    }

    fn validate_neighbors(&self) -> Result<(), (String, String)> {
        let t = &self.tunnel;
        if t.arp_suppress && t.mode != Mode::Gretap {
            return Err(("tunnel.arp_suppress".into(), "ARP and ND run over Ethernet: set mode = \"gretap\"".into()));
        }
        if !t.neighbors.is_empty() && !t.arp_suppress {
            return Err(("tunnel.neighbor".into(), "static neighbours are answered by suppression: set arp_suppress = true".into()));
        }
        let mut seen = HashSet::new();
        for (i, n) in t.neighbors.iter().enumerate() {
            let unusable = match n.ip {
                IpAddr::V4(a) => a.is_unspecified() || a.is_multicast() || a.is_broadcast(),
                IpAddr::V6(a) => a.is_unspecified() || a.is_multicast() || a.to_ipv4_mapped().is_some(),
            };
            if unusable {
                return Err((format!("tunnel.neighbor[{i}].ip"), format!("{} is not a unicast address", n.ip)));
            }
            if n.mac.0[0] & 1 != 0 || n.mac.0 == [0; 6] {
                return Err((format!("tunnel.neighbor[{i}].mac"), "is not a unicast MAC address".into()));
            }
            if self.is_trunk() {
                let carried = n.vid == 0 && t.native_key.is_some() || t.vlans.iter().any(|v| v.vid == n.vid);
                if !carried {
                    return Err((format!("tunnel.neighbor[{i}].vid"), format!("VLAN {} is not carried by this trunk", n.vid)));
                }
            } else if n.vid != 0 {
                return Err((format!("tunnel.neighbor[{i}].vid"), "VLANs are for trunks ([[tunnel.vlan]])".into()));
            }
            if !seen.insert((n.ip, n.vid)) {
                return Err((format!("tunnel.neighbor[{i}].ip"), format!("{} is listed twice", n.ip)));
            }
        }
        Ok(())
    }

    /// What a one-peer edit must not break beyond the peer itself: a group
    /// naming a removed peer, a gretap flood list past its size.
    pub fn check_membership(&self, file: &str, name: &str, removed: bool, added: bool) -> Result<(), ConfigError> {
        let err = |field: String, reason: String| ConfigError { file: file.to_string(), field, reason };
        if removed {
            if let Some(i) = self.groups.iter().position(|g| g.peers.iter().any(|p| p == name)) {
                return Err(err(format!("group[{i}].peers"), format!("names `{name}`; take it out of the group first")));
            }
        }
        if added && self.tunnel.mode == Mode::Gretap && self.peers.len() >= gre_common::MAX_FLOOD {
            return Err(err("peer".into(), format!("a gretap tunnel floods to every peer and takes at most {}", gre_common::MAX_FLOOD)));
        }
        Ok(())
    }

    /// `[[group]]` entries: multicast (or broadcast) addresses of `gre`
    /// mode, each naming existing peers.
    pub fn validate_groups(&self, file: &str, peers: &PeerIndex) -> Result<(), ConfigError> {
        let err = |field: String, reason: String| ConfigError { file: file.to_string(), field, reason };
        let mut seen = HashSet::new();
        for (i, g) in self.groups.iter().enumerate() {
            if self.tunnel.mode != Mode::Gre {
                return Err(err(format!("group[{i}]"), "groups are for `gre` mode; gretap floods to every peer".into()));
            }
            let ok = match g.address {
                IpAddr::V4(a) => a.is_multicast() || a.is_broadcast(),
                IpAddr::V6(a) => a.is_multicast(),
            };
            if !ok {
                return Err(err(format!("group[{i}].address"), format!("{} is not a multicast or broadcast address", g.address)));
            }
            if !seen.insert(g.address) {
                return Err(err(format!("group[{i}].address"), format!("{} is listed twice", g.address)));
            }
            if g.peers.is_empty() || g.peers.len() > gre_common::MAX_FLOOD {
                return Err(err(format!("group[{i}].peers"), format!("must name 1 to {} peers", gre_common::MAX_FLOOD)));
            }
            for (j, p) in g.peers.iter().enumerate() {
                if !peers.names.contains(p) {
                    return Err(err(format!("group[{i}].peers[{j}]"), format!("`{p}` is not a [[peer]] of this tunnel")));
                }
            }
        }
        Ok(())
    }

    /// Our own link addresses (a peer may not use one as its remote).
    pub fn link_addrs(&self) -> HashSet<IpAddr> {
        self.links.iter().map(|l| l.address).collect()
    }

    /// Check one peer against its own rules and against every other peer
    /// (`others` holds their names, routes and paths). Used for the whole
    /// file and, for a live edit, for the one peer it changes.
    pub fn validate_peer(
        &self,
        file: &str,
        i: usize,
        p: &PeerConfig,
        addrs: &HashSet<IpAddr>,
        others: &PeerIndex,
    ) -> Result<(), ConfigError> {
        let err = |field: String, reason: String| ConfigError { file: file.to_string(), field, reason };
        if p.name.is_empty() || p.name.len() > 31 {
            return Err(err(format!("peer[{i}].name"), "must be 1 to 31 characters".into()));
        }
        if others.names.contains(&p.name) {
            return Err(err(format!("peer[{i}].name"), format!("`{}` names two peers", p.name)));
        }
        let mut own_routes = HashSet::new();
        for (j, r) in p.routes.iter().enumerate() {
            let field = format!("peer[{i}].routes[{j}]");
            if r.trunc() != *r {
                return Err(err(field, format!("{r} has host bits set (did you mean {}?)", r.trunc())));
            }
            if others.routes.contains(r) {
                return Err(err(field, format!("{r} is routed to another peer already")));
            }
            if !own_routes.insert(*r) {
                return Err(err(field, format!("{r} is listed twice")));
            }
            if r.prefix_len() == 0 && !p.default_route {
                return Err(err(
                    field,
                    format!("{r} would send all of this host's traffic into the tunnel; set `default_route = true` on the peer to mean it"),
                ));
            }
        }
        let mut own_macs = HashSet::new();
        for (j, m) in p.macs.iter().enumerate() {
            let field = format!("peer[{i}].macs[{j}]");
            if self.tunnel.mode != Mode::Gretap {
                return Err(err(field, "static MACs are for gretap tunnels".into()));
            }
            if m.0 == [0; 6] || m.0[0] & 1 == 1 {
                return Err(err(field, format!("{m} is not a unicast MAC address")));
            }
            if others.macs.contains(m) || !own_macs.insert(*m) {
                return Err(err(field, format!("{m} is placed behind another peer already")));
            }
        }
        if p.paths.is_empty() {
            return Err(err(format!("peer[{i}].path"), "at least one [[peer.path]] is required".into()));
        }
        if p.paths.len() > MAX_PATHS {
            return Err(err(format!("peer[{i}].path"), format!("{} paths; at most {MAX_PATHS}", p.paths.len())));
        }
        let mut own_pairs = HashSet::new();
        for (j, path) in p.paths.iter().enumerate() {
            let f = |n: &str| format!("peer[{i}].path[{j}].{n}");
            let Some(link) = self.link(&path.link) else {
                return Err(err(f("link"), format!("`{}` is not a [[link]] dev of this tunnel", path.link)));
            };
            check_unicast(path.remote).map_err(|r| err(f("remote"), r))?;
            if path.remote.is_ipv4() != link.address.is_ipv4() {
                return Err(err(f("remote"), "address family differs from the link's address".into()));
            }
            if addrs.contains(&path.remote) {
                return Err(err(f("remote"), format!("{} is one of our own link addresses", path.remote)));
            }
            if let Some(mac) = path.mac {
                if mac.0 == [0; 6] || mac.0[0] & 1 == 1 {
                    return Err(err(f("mac"), format!("{mac} is not a unicast MAC address")));
                }
            }
            if path.weight == 0 || path.weight > MAX_WEIGHT {
                return Err(err(f("weight"), format!("{} is outside 1..={MAX_WEIGHT}", path.weight)));
            }
            check_rate_or_weight("path of a peer", path.rate, p.paths[0].rate, path.weight).map_err(|(n, r)| err(f(n), r))?;
            let pair = (path.link.clone(), path.remote);
            if others.pairs.contains(&pair) || !own_pairs.insert(pair) {
                return Err(err(
                    f("remote"),
                    format!("{} over link {} is already a path (of this or another peer)", path.remote, path.link),
                ));
            }
        }
        Ok(())
    }
}

impl MeshConfig {
    /// Why host routes `routes` may not be taken from the mesh: the field
    /// (`routes[j]`) and the reason, or None when all may.
    pub fn refuse_routes(&self, routes: &[IpNet]) -> Option<(String, String)> {
        for (j, r) in routes.iter().enumerate() {
            let allowed = match (self.routes_allowed.is_empty(), r.prefix_len()) {
                (_, 0) => self.routes_allowed.contains(r),
                (true, _) => true,
                (false, _) => self.routes_allowed.iter().any(|a| a.contains(r)),
            };
            if !allowed {
                let list: Vec<String> = self.routes_allowed.iter().map(|a| a.to_string()).collect();
                let why = if r.prefix_len() == 0 {
                    format!("{r} is a default route, taken from the mesh only when mesh.routes_allowed lists it")
                } else {
                    format!("{r} is outside mesh.routes_allowed ({})", list.join(", "))
                };
                return Some((format!("routes[{j}]"), why));
            }
        }
        None
    }

    /// (field, reason) of the first thing wrong.
    fn validate(&self, mode: Mode) -> Result<(), (String, String)> {
        if self.etcd.is_empty() {
            return Err(("etcd".into(), "name at least one etcd member (http://HOST:2379)".into()));
        }
        for (i, u) in self.etcd.iter().enumerate() {
            let rest = u.strip_prefix("http://").or_else(|| u.strip_prefix("https://"));
            if rest.is_none_or(|r| r.is_empty() || r.contains('/') && !r.ends_with('/')) {
                return Err((
                    format!("etcd[{i}]"),
                    format!("`{u}` is not an etcd client URL (want http://HOST:PORT or https://HOST:PORT)"),
                ));
            }
            if u.starts_with("https://") && self.ca.is_none() {
                return Err((format!("etcd[{i}]"), "https needs `ca`, the certificate authority of the members".into()));
            }
        }
        if !self.prefix.starts_with('/') || self.prefix.ends_with('/') || self.prefix.len() < 2 {
            return Err(("prefix".into(), format!("`{}`: want a key prefix like /xgre/prod (leading /, no trailing /)", self.prefix)));
        }
        if !(2..=3600).contains(&self.ttl) {
            return Err(("ttl".into(), format!("{} s is outside 2..=3600", self.ttl)));
        }
        if let Some(h) = &self.host {
            check_host_name(h).map_err(|r| ("host".to_string(), r))?;
        }
        if self.cert.is_some() != self.key.is_some() {
            return Err((if self.cert.is_some() { "key" } else { "cert" }.into(), "`cert` and `key` go together".into()));
        }
        if mode != Mode::Gre && !self.routes.is_empty() {
            return Err(("routes".into(), "routes are for `gre` mode; gretap announces `macs`".into()));
        }
        if mode != Mode::Gretap && !self.macs.is_empty() {
            return Err(("macs".into(), "static MACs are for gretap tunnels".into()));
        }
        for (i, r) in self.routes_allowed.iter().enumerate() {
            if r.trunc() != *r {
                return Err((format!("routes_allowed[{i}]"), format!("{r} has host bits set (did you mean {}?)", r.trunc())));
            }
        }
        Ok(())
    }
}

/// A mesh host's name, which becomes its peer name at the others.
pub fn check_host_name(h: &str) -> Result<(), String> {
    if h.is_empty() || h.len() > 31 {
        return Err(format!("`{h}`: a host name is 1 to 31 characters"));
    }
    if !h.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        return Err(format!("`{h}`: letters, digits, `-`, `_` and `.` only"));
    }
    Ok(())
}

/// Names, routes and (link, remote) pairs of a set of peers: what a peer
/// must not repeat.
#[derive(Default, Debug, Clone)]
pub struct PeerIndex {
    pub names: HashSet<String>,
    pub routes: HashSet<IpNet>,
    pub pairs: HashSet<(String, IpAddr)>,
    pub macs: HashSet<Mac>,
}

impl PeerIndex {
    pub fn of(peers: &[PeerConfig]) -> PeerIndex {
        let mut x = PeerIndex::default();
        for p in peers {
            x.add(p);
        }
        x
    }

    pub fn add(&mut self, p: &PeerConfig) {
        self.names.insert(p.name.clone());
        self.routes.extend(p.routes.iter().copied());
        self.pairs.extend(p.paths.iter().map(|x| (x.link.clone(), x.remote)));
        self.macs.extend(p.macs.iter().copied());
    }

    pub fn remove(&mut self, p: &PeerConfig) {
        self.names.remove(&p.name);
        for r in &p.routes {
            self.routes.remove(r);
        }
        for x in &p.paths {
            self.pairs.remove(&(x.link.clone(), x.remote));
        }
        for m in &p.macs {
            self.macs.remove(m);
        }
    }
}

pub(super) fn check_unicast(a: IpAddr) -> Result<(), String> {
    let bad = match a {
        IpAddr::V4(a) => a.is_unspecified() || a.is_multicast() || a.is_broadcast() || a.is_loopback(),
        IpAddr::V6(a) => a.is_unspecified() || a.is_multicast() || a.is_loopback() || a.to_ipv4_mapped().is_some(),
    };
    if bad {
        return Err(format!("{a} is not a unicast address"));
    }
    Ok(())
}

/// Linux interface names: 1-15 bytes, no '/', ':' or white space.
pub fn validate_ifname(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 15 {
        return Err(format!("`{name}` must be 1 to 15 characters"));
    }
    if name == "." || name == ".." || name.chars().any(|c| c == '/' || c == ':' || c.is_whitespace()) {
        return Err(format!("`{name}` is not a valid interface name"));
    }
    Ok(())
}

/// Turn a toml/serde error into file + field + reason, with the line.
/// serde_path_to_error names the field, indexed (`peer[0].path[1].mac`);
/// a missing or unknown key is named only in the message, as the path
/// stops at its table.
pub(super) fn toml_error(file: &str, text: &str, e: serde_path_to_error::Error<toml::de::Error>) -> ConfigError {
    let path = e.path().to_string();
    let inner = e.into_inner();
    let line = inner.span().map(|s| text[..s.start.min(text.len())].lines().count().max(1));
    let msg = inner.message().to_string();
    let mut field = if path == "." { String::new() } else { path };
    let named = msg.strip_prefix("unknown field `").or_else(|| msg.strip_prefix("missing field `")).and_then(|r| r.split('`').next());
    if let Some(k) = named {
        if !field.ends_with(k) {
            field = if field.is_empty() { k.to_string() } else { format!("{field}.{k}") };
        }
    }
    if field.is_empty() {
        field = "-".into();
    }
    ConfigError {
        file: match line {
            Some(l) => format!("{file}:{l}"),
            None => file.to_string(),
        },
        field,
        reason: msg,
    }
}

/// The first 8 bytes of the SHA-256 of a canonical config text, as a
/// big-endian number.
pub fn fingerprint_of(canonical: &str) -> u64 {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(canonical.as_bytes());
    u64::from_be_bytes(d[..8].try_into().expect("SHA-256 has 32 bytes"))
}
