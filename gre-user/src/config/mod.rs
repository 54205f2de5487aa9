//! The TOML config file: the contract users and tests write against.
//! Fields may be added; none is ever renamed.
//!
//! Parsing (serde) checks types and rejects unknown fields; `validate` checks
//! everything that needs more than one field. Every error names the file,
//! the field and the reason.

pub mod edit;
pub mod rate;

use std::{collections::HashSet, fmt, hash::Hash, net::IpAddr, path::Path};

use gre_common::MAX_PATHS;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::config::rate::check_rate_or_weight;
pub use crate::config::rate::Rate;

#[derive(Debug, thiserror::Error)]
#[error("{file}: {field}: {reason}")]
pub struct ConfigError {
    pub file: String,
    pub field: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Hash)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub tunnel: TunnelConfig,
    #[serde(default, rename = "link")]
    pub links: Vec<LinkConfig>,
    #[serde(default, rename = "peer")]
    pub peers: Vec<PeerConfig>,
    /// `gre` mode: multicast groups replicated to named peers only (any
    /// other group goes to every peer).
    #[serde(default, rename = "group", skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<GroupConfig>,
    /// Peers from etcd instead of the file (`xgre run`; see mesh.rs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh: Option<MeshConfig>,
}

/// `[mesh]`: this host registers itself in etcd under
/// `<prefix>/hosts/<host>` and takes every other host registered there as a
/// peer. Read by `xgre run` when it starts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Hash)]
#[serde(deny_unknown_fields)]
pub struct MeshConfig {
    /// Client URLs of the etcd cluster's members (`http://` or `https://`).
    pub etcd: Vec<String>,
    /// Key prefix of this mesh, like `/xgre/prod`.
    pub prefix: String,
    /// Seconds this host's entry outlives it (the lease's TTL).
    #[serde(default = "default_mesh_ttl")]
    pub ttl: u32,
    /// This host's name in the mesh, and its peer name at the others
    /// (default: the system's host name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// `gre`: inner prefixes routed to this host besides the tunnel's own
    /// addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<IpNet>,
    /// `gretap`: MAC addresses that live behind this host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub macs: Vec<Mac>,
    /// `gre`: the inner prefixes other hosts may claim; a claim outside
    /// them is refused. Unset: any prefix but a default route. A default
    /// route is taken only when listed here itself (0.0.0.0/0, ::/0).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes_allowed: Vec<IpNet>,
    /// TLS, as etcdctl takes it: the CA that signed the members'
    /// certificates (`--cacert`), and this client's certificate and key
    /// (`--cert`, `--key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<std::path::PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<std::path::PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<std::path::PathBuf>,
}

fn default_mesh_ttl() -> u32 {
    10
}

/// Where a running peer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// A `[[peer]]` of the config file (or a `map-edit`).
    #[default]
    File,
    /// Another host's entry in the mesh.
    Mesh,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::File => "file",
            Origin::Mesh => "mesh",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Hash)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    /// An IPv4 or IPv6 multicast address, or 255.255.255.255.
    pub address: IpAddr,
    pub peers: Vec<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// IP over GRE.
    #[default]
    Gre,
    /// Ethernet over GRE.
    Gretap,
}

impl Mode {
    /// As the config file spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Gre => "gre",
            Mode::Gretap => "gretap",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Hash)]
#[serde(deny_unknown_fields)]
pub struct TunnelConfig {
    pub name: String,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub address: Vec<IpNet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<u32>,
    #[serde(default)]
    pub sequence: bool,
    /// Number packets per peer as `sequence` does, but in the outer IPv4
    /// header's Identification field (16 bits, unused in a DF datagram,
    /// RFC 6864) instead of 4 more GRE bytes per packet, and take a peer's
    /// IPv4 ID as its number on receive: for `resequence` between xgre
    /// peers that both set it, at full packet size. IPv4 links only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ip_id_sequence: bool,
    #[serde(default)]
    pub checksum: bool,
    /// Striping unit: the most segments one GSO packet may carry, and so
    /// the longest run of packets one path takes before the next path's
    /// turn. Default: see `DEFAULT_STRIPE_BURST` when a peer has several
    /// paths, unlimited otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stripe_burst: Option<u32>,
    /// What routes to a peer that stripes over several paths tell this
    /// host's TCP (the `reordering` metric of `ip route`): how many
    /// segments may arrive out of order before a sender counts them lost,
    /// the per-route form of the `net.ipv4.tcp_reordering` advice for
    /// bonding's balance-rr. Unset or 0: no metric (the kernel's 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_reordering: Option<u32>,
    /// `xgre run`: put each peer's numbered packets (RFC 2890, a peer with
    /// `sequence = true`) back in order before delivering them, holding
    /// those that arrive ahead of a gap for up to this many milliseconds.
    /// For paths of unequal speed, whose packets overtake each other by
    /// more than TCP tolerates. 0: delivered as they arrive. Unset: 5 ms
    /// (`DEFAULT_RESEQUENCE_MS`) for the peers that announce that they
    /// number their packets, when some peer stripes (`auto_resequence`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resequence: Option<u32>,
    /// `xgre run`: milliseconds between keepalives on each path (Cisco
    /// format, reflected by any GRE peer); 0 turns them off.
    #[serde(default = "default_keepalive")]
    pub keepalive: u32,
    /// `xgre run`: keepalives missed in a row before a path leaves the
    /// rotation.
    #[serde(default = "default_keepalive_misses")]
    pub keepalive_misses: u32,
    /// Whether the tunnel device's own statistics (`ip -s link`) count
    /// its traffic. Off saves the veth crossings that counting takes.
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub device_counters: bool,
    /// `gretap`: seconds a learned MAC address stays valid without a frame
    /// from it.
    #[serde(default = "default_fdb_age", skip_serializing_if = "is_default_fdb_age")]
    pub fdb_age: u32,
    /// Path MTU discovery, as Linux's ip_gre does it by default: the outer
    /// header leaves with DF set; ICMP "fragmentation needed" and "Packet
    /// Too Big" about our packets lower a path's MTU; and an inner packet
    /// too big for it is answered with the same error. `false` is ip's
    /// `nopmtudisc`: DF clear, the underlay fragments, the peer reassembles
    /// (IPv4 links only: IPv6 routers never fragment).
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub pmtu_discovery: bool,
    /// Seconds a path MTU learnt from an ICMP error holds before the link's
    /// MTU is tried again (Linux's `net.ipv4.route.mtu_expires`).
    #[serde(default = "default_pmtu_age", skip_serializing_if = "is_default_pmtu_age")]
    pub pmtu_age: u32,
    /// NVGRE (RFC 7637, `gretap` only): the 24-bit Virtual Subnet ID. The
    /// key on the wire is the VSID and an 8-bit FlowID from the inner flow
    /// hash. Instead of `key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vsid: Option<u32>,
    /// `gretap`: answer ARP requests and Neighbour Solicitations for
    /// addresses known behind a peer on this host, and flood only the
    /// unknown ones. Addresses are learned from ARP replies, gratuitous
    /// ARP and Neighbour Advertisements, and age with `fdb_age`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub arp_suppress: bool,
    /// `gretap` trunk: the key untagged frames take (without it they are
    /// dropped and counted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub native_key: Option<u32>,
    /// `gretap` trunk (`[[tunnel.vlan]]`): a frame leaving with VLAN `vid`
    /// goes out with `key` and without the tag; one arriving with `key`
    /// enters tagged `vid`. Learning and flooding are per VLAN. Instead of
    /// `key`.
    #[serde(default, rename = "vlan", skip_serializing_if = "Vec::is_empty")]
    pub vlans: Vec<VlanConfig>,
    /// `arp_suppress` (`[[tunnel.neighbor]]`): addresses answered for
    /// without ever being learned, as static FDB entries are forwarded to.
    #[serde(default, rename = "neighbor", skip_serializing_if = "Vec::is_empty")]
    pub neighbors: Vec<NeighborConfig>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(deny_unknown_fields)]
pub struct NeighborConfig {
    pub ip: IpAddr,
    pub mac: Mac,
    /// The VLAN the address lives in (trunks; 0 otherwise).
    #[serde(default, skip_serializing_if = "is_zero_u16")]
    pub vid: u16,
}

fn is_zero_u16(v: &u16) -> bool {
    *v == 0
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(deny_unknown_fields)]
pub struct VlanConfig {
    pub vid: u16,
    pub key: u32,
}

fn default_fdb_age() -> u32 {
    gre_common::DEFAULT_FDB_AGE
}

fn is_default_fdb_age(a: &u32) -> bool {
    *a == gre_common::DEFAULT_FDB_AGE
}

fn default_pmtu_age() -> u32 {
    gre_common::pmtu::DEFAULT_PMTU_AGE
}

fn is_default_pmtu_age(a: &u32) -> bool {
    *a == gre_common::pmtu::DEFAULT_PMTU_AGE
}

fn default_keepalive() -> u32 {
    100
}

fn default_keepalive_misses() -> u32 {
    3
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "lowercase")]
pub enum RxHook {
    Xdp,
    Tc,
    /// TC on virtual devices (veth, bridges, macvlan), where XDP costs GRO;
    /// XDP in native mode elsewhere, falling back to TC.
    #[default]
    Auto,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Hash)]
#[serde(deny_unknown_fields)]
pub struct LinkConfig {
    pub dev: String,
    pub address: IpAddr,
    #[serde(default)]
    pub rx: RxHook,
    /// `[mesh]`: the weight other hosts give their paths to this link.
    #[serde(default = "default_weight", skip_serializing_if = "is_default_weight")]
    pub weight: u32,
    /// `[mesh]`: the rate other hosts give their paths to this link
    /// (`300mbit`), instead of a weight: every link has one, or none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<Rate>,
}

impl LinkConfig {
    /// The same device received the same way (`weight` is the mesh's
    /// business, not the datapath's).
    pub fn same_hook(&self, o: &LinkConfig) -> bool {
        self.dev == o.dev && self.address == o.address && self.rx == o.rx
    }
}

fn is_default_weight(w: &u32) -> bool {
    *w == default_weight()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Hash)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    pub name: String,
    #[serde(default)]
    pub routes: Vec<IpNet>,
    #[serde(default, rename = "path")]
    pub paths: Vec<PathConfig>,
    /// `gretap`: MAC addresses known to live behind this peer (static
    /// forwarding entries: they never age and learning never moves them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub macs: Vec<Mac>,
    /// `xgre run`: how this peer's keepalive replies count (see
    /// `KeepaliveMode`).
    #[serde(default, skip_serializing_if = "KeepaliveMode::is_auto")]
    pub keepalive: KeepaliveMode,
    /// The peer is this host's way to everything: `routes` may hold a
    /// default route (0.0.0.0/0, ::/0), which is refused otherwise.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub default_route: bool,
    /// Not in files: set for peers `xgre run` took from the mesh.
    #[serde(skip)]
    pub origin: Origin,
}

/// How `xgre run` judges a peer's paths by keepalives. Keepalives are
/// Cisco-format IPv4/IPv6-in-GRE, which only an endpoint that routes the
/// inner packet reflects: an xgre peer, a Linux `gre` device, a router. An
/// Ethernet-only endpoint (a Linux `gretap`, Open vSwitch's default GRE
/// port) cannot.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum KeepaliveMode {
    /// Probes are sent; a path leaves the rotation for missed replies only
    /// once the peer has answered one, so a peer that cannot reflect them
    /// is never cut off.
    #[default]
    Auto,
    /// Judged from the start: a path that never answers goes down after
    /// `keepalive_misses` intervals.
    Required,
    /// No probes; only the link's own state counts.
    Off,
}

impl KeepaliveMode {
    /// As the config file spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            KeepaliveMode::Auto => "auto",
            KeepaliveMode::Required => "required",
            KeepaliveMode::Off => "off",
        }
    }
}

impl KeepaliveMode {
    pub fn is_auto(&self) -> bool {
        *self == KeepaliveMode::Auto
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Hash)]
#[serde(deny_unknown_fields)]
pub struct PathConfig {
    pub link: String,
    pub remote: IpAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<Mac>,
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// The path's rate (`300mbit`), on every path of a peer or on none:
    /// shares with units, instead of `weight` (the datapath weighs each
    /// path by its rate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<Rate>,
    /// `false`: kept in the config but out of the rotation (`xgre map-edit
    /// ... path set --down`).
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub up: bool,
    /// A backup: carries the peer's traffic only while none of its other
    /// paths is up (`xgre run` decides up and down).
    #[serde(default, skip_serializing_if = "is_false")]
    pub standby: bool,
}

fn default_weight() -> u32 {
    1
}

fn default_true() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Largest weight a path may have; weights are shares, not rates.
pub const MAX_WEIGHT: u32 = 1000;
/// The longest config file read.
pub const MAX_CONFIG_BYTES: u64 = 64 << 20;

/// Striping unit when a peer has several paths (`cargo xtask bench agg
/// --units` measures the choices; see the README).
pub const DEFAULT_STRIPE_BURST: u32 = 8;

/// A peer's kernel routes out of the tunnel device, and their `reordering`
/// metric for TCP (`Config::peer_routes`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerRoutes<'a> {
    pub routes: &'a [IpNet],
    pub reordering: Option<u32>,
}

/// Largest `tcp_reordering`: the kernel's `tcp_max_reordering` default,
/// above which TCP ignores it.
pub const MAX_TCP_REORDERING: u32 = 300;

/// An Ethernet address written `02:00:00:00:00:20`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::str::FromStr for Mac {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 6 {
            return Err(format!("`{s}` is not a MAC address (want six hex pairs like 02:00:00:00:00:20)"));
        }
        let mut m = [0u8; 6];
        for (i, p) in parts.iter().enumerate() {
            if p.len() != 2 {
                return Err(format!("`{s}` is not a MAC address (want six hex pairs like 02:00:00:00:00:20)"));
            }
            m[i] = u8::from_str_radix(p, 16).map_err(|_| format!("`{s}` is not a MAC address (`{p}` is not hex)"))?;
        }
        Ok(Mac(m))
    }
}

impl Serialize for Mac {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Building a config in code (tests, tools): every setting at its default
/// until set. Addresses are parsed here and panic when malformed: these
/// are for literals, not for user input (that comes through `parse`).
impl Config {
    pub fn new(name: &str, mode: Mode) -> Config {
        Config {
            tunnel: TunnelConfig {
                name: name.into(),
                mode,
                address: vec![],
                mtu: None,
                key: None,
                sequence: false,
                ip_id_sequence: false,
                checksum: false,
                stripe_burst: None,
                tcp_reordering: None,
                resequence: None,
                keepalive: default_keepalive(),
                keepalive_misses: default_keepalive_misses(),
                device_counters: true,
                fdb_age: default_fdb_age(),
                pmtu_discovery: true,
                pmtu_age: default_pmtu_age(),
                vsid: None,
                arp_suppress: false,
                native_key: None,
                vlans: vec![],
                neighbors: vec![],
            },
            links: vec![],
            peers: vec![],
            groups: vec![],
            mesh: None,
        }
    }

    /// An address of the tunnel device.
    pub fn with_address(mut self, net: &str) -> Config {
        self.tunnel.address.push(net.parse().expect("an address with a prefix length"));
        self
    }

    pub fn with_link(mut self, dev: &str, address: &str, rx: RxHook) -> Config {
        self.links.push(LinkConfig {
            dev: dev.into(),
            address: address.parse().expect("an IP address"),
            rx,
            weight: default_weight(),
            rate: None,
        });
        self
    }

    /// A peer with `routes` and one path per (link, remote).
    pub fn with_peer(mut self, name: &str, routes: &[&str], paths: &[(&str, &str)]) -> Config {
        self.peers.push(PeerConfig {
            name: name.into(),
            routes: routes.iter().map(|r| r.parse().expect("a prefix")).collect(),
            paths: paths
                .iter()
                .map(|(link, remote)| PathConfig {
                    link: link.to_string(),
                    remote: remote.parse().expect("an IP address"),
                    mac: None,
                    weight: default_weight(),
                    rate: None,
                    up: true,
                    standby: false,
                })
                .collect(),
            macs: vec![],
            keepalive: KeepaliveMode::Auto,
            default_route: false,
            origin: Origin::File,
        });
        self
    }

    /// Tunnel settings given as TOML (`"key = 42\nsequence = true"`),
    /// checked as the file's would be.
    pub fn with_tunnel_toml(self, extra: &str) -> Config {
        let mut v = toml::Value::try_from(&self).expect("a config always serializes");
        let extra: toml::Table = toml::from_str(extra).expect("tunnel settings in TOML");
        v["tunnel"].as_table_mut().expect("a tunnel table").extend(extra);
        v.try_into().expect("tunnel settings of the right types")
    }
}

impl Config {
    /// Read, parse and validate a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let err = |reason: String| ConfigError { file: file.clone(), field: "-".into(), reason };
        // At most one byte past the limit is read: a device that never
        // ends (/dev/zero) or a huge file is refused, not read into memory.
        let mut text = String::new();
        let f = std::fs::File::open(path).map_err(|e| err(format!("cannot read: {e}")))?;
        std::io::Read::read_to_string(&mut std::io::Read::take(f, MAX_CONFIG_BYTES + 1), &mut text)
            .map_err(|e| err(format!("cannot read: {e}")))?;
        if text.len() as u64 > MAX_CONFIG_BYTES {
            return Err(err(format!("longer than {} MiB; a config with 10,000 peers is about 2 MiB", MAX_CONFIG_BYTES >> 20)));
        }
        Self::parse(&text, &file)
    }

    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let cfg: Config = serde_path_to_error::deserialize(toml::Deserializer::new(text)).map_err(|e| toml_error(file, text, e))?;
        cfg.validate(file)?;
        Ok(cfg)
    }

    /// Fingerprint of the whole config: `up` with an unchanged file is a
    /// no-op. Order-insensitive where order means nothing (links, peers,
    /// routes, addresses), so `xgre show` output fingerprints the same.
    pub fn fingerprint(&self) -> u64 {
        let mut c = self.clone();
        // What the file says: `[mesh]` is read by `xgre run` only, and the
        // peers it brings change while the file does not.
        c.mesh = None;
        c.peers.retain(|p| p.origin == Origin::File);
        for l in &mut c.links {
            l.weight = default_weight();
            l.rate = None;
        }
        c.links.sort_by(|a, b| a.dev.cmp(&b.dev));
        c.groups.sort_by_key(|g| g.address);
        for g in &mut c.groups {
            g.peers.sort();
        }
        c.peers.sort_by(|a, b| a.name.cmp(&b.name));
        c.tunnel.address.sort();
        for p in &mut c.peers {
            p.routes.sort();
            p.macs.sort();
        }
        // Stored in the tunnel map and compared by later runs, possibly of a
        // newer build: a defined digest of the canonical text, not
        // DefaultHasher, whose output may change between Rust releases.
        // TOML leaves unset optional fields out, so a field a later
        // release adds does not change the fingerprint of configs that do
        // not use it.
        fingerprint_of(&c.to_toml())
    }

    /// The tunnel and links of this config, with no peers (cheap to clone
    /// for a one-peer change).
    pub fn clone_without_peers(&self) -> Config {
        Config { tunnel: self.tunnel.clone(), links: self.links.clone(), peers: vec![], groups: self.groups.clone(), mesh: None }
    }

    /// What a file should hold of a running tunnel: not the mesh's peers,
    /// which register themselves (a file naming them would clash).
    pub fn without_mesh_peers(&self) -> Config {
        let mut c = self.clone();
        c.peers.retain(|p| p.origin == Origin::File);
        c
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a config always serializes")
    }

    pub fn link(&self, dev: &str) -> Option<&LinkConfig> {
        self.links.iter().find(|l| l.dev == dev)
    }

    /// The `gso_max_segs` the tunnel device gets: how many segments one
    /// transmit program run may send down one path.
    pub fn gso_max_segs(&self) -> Option<u32> {
        let t = &self.tunnel;
        if self.peers.iter().any(|p| p.paths.len() > 1) {
            return Some(t.stripe_burst.unwrap_or(DEFAULT_STRIPE_BURST));
        }
        t.stripe_burst
    }

    /// The kernel routes `peer` gets. Their `reordering` metric is set
    /// when the peer stripes, that is when more than one of its paths is not
    /// a standby.
    pub fn peer_routes<'a>(&self, peer: &'a PeerConfig) -> PeerRoutes<'a> {
        let n = self.tunnel.tcp_reordering.unwrap_or(0);
        let striping = peer.paths.iter().filter(|p| !p.standby).count() > 1;
        PeerRoutes { routes: &peer.routes, reordering: (n != 0 && striping).then_some(n) }
    }

    /// Peers striped over non-standby paths of unequal weight or rate,
    /// whose packets overtake each other by more than TCP tolerates (300+100
    /// with BBR: 3.6-8.9% of segments retransmitted, issue 10), with their
    /// index and what is unequal ("weight" or "rate").
    pub fn unequal_peers(&self) -> impl Iterator<Item = (usize, &PeerConfig, &'static str)> {
        self.peers.iter().enumerate().filter_map(|(i, peer)| {
            let shares: Vec<u32> = peer.paths.iter().filter(|p| !p.standby).map(|p| p.rate.map_or(p.weight, |r| r.kbps)).collect();
            let unequal = shares.iter().any(|&s| s != shares[0]);
            unequal.then_some((i, peer, if peer.paths.iter().any(|p| p.rate.is_some()) { "rate" } else { "weight" }))
        })
    }

    /// Whether packets leave numbered in the outer IPv4 ID without
    /// `ip_id_sequence` saying so: a peer is striped over unequal paths, so
    /// it will want to put them back in order, and nothing else numbers
    /// them. Harmless to any receiver (RFC 6864); an xgre receiver takes
    /// the IDs for numbers only while `xgre run` here announces them.
    pub fn auto_ip_id_sequence(&self) -> bool {
        let t = &self.tunnel;
        !t.ip_id_sequence && !t.sequence && !self.underlay6() && self.unequal_peers().next().is_some()
    }

    /// Whether `xgre run` starts a resequencer without `resequence` saying
    /// so, for the packets of peers that announce numbering: some peer
    /// stripes (more than one path not a standby), so it may stripe back.
    pub fn auto_resequence(&self) -> bool {
        self.tunnel.resequence.is_none() && self.peers.iter().any(|p| p.paths.iter().filter(|q| !q.standby).count() > 1)
    }

    /// What a valid config will do that its author likely does not want,
    /// as lines naming the file and the field. Today one thing: a peer
    /// striped over paths of unequal speed whose packets will not be put
    /// back in order, because this end turns resequencing off, or cannot
    /// number or announce its own.
    pub fn advice(&self, file: &str) -> Vec<String> {
        let t = &self.tunnel;
        let mut out = Vec::new();
        for (i, peer, what) in self.unequal_peers() {
            let why = if t.resequence == Some(0) {
                "`resequence = 0` here delivers the peer's packets as they arrive; leave it unset (resequenced when the peer announces numbers) or set it".to_string()
            } else if self.underlay6() && !t.sequence {
                "IPv6 links have no IPv4 ID to number packets in by themselves; set tunnel.sequence = true on both ends".to_string()
            } else if t.keepalive == 0 || peer.keepalive == KeepaliveMode::Off {
                let field = if t.keepalive == 0 { "tunnel.keepalive = 0".to_string() } else { format!("peer[{i}].keepalive = \"off\"") };
                format!("{field}: numbering is announced with keepalives, so the peer will not resequence unless it sets `resequence`")
            } else {
                continue;
            };
            out.push(format!("{file}: peer[{i}] `{}`: paths of unequal {what} reorder one TCP connection's packets; {why}", peer.name));
        }
        out
    }

    /// Whether every wire packet needs a header of its own (a sequence
    /// number, a checksum): the tunnel device then segments GSO packets
    /// itself (TSO off) before they reach the transmit program, in the veth
    /// crossing its transmit then makes whatever `device_counters` says
    /// (`gre_common::tx_crosses_pair`).
    pub fn segments_per_packet(&self) -> bool {
        self.tunnel.sequence || self.tunnel.ip_id_sequence || self.tunnel.checksum || self.auto_ip_id_sequence()
    }

    /// Bytes of outer header the tunnel adds on an IPv4 underlay (IP + GRE,
    /// and the inner Ethernet header in `gretap` mode).
    pub fn overhead(&self) -> u32 {
        let t = &self.tunnel;
        let gre = gre_common::GreHdr::len_for(t.checksum, t.key.is_some() || t.vsid.is_some() || self.is_trunk(), t.sequence) as u32;
        let eth = if t.mode == Mode::Gretap { 14 } else { 0 };
        let ip = if self.underlay6() { 40 } else { 20 };
        ip + gre + eth
    }

    /// Whether the links (and so every path) are IPv6.
    pub fn underlay6(&self) -> bool {
        self.links.first().is_some_and(|l| l.address.is_ipv6())
    }

    /// A `gretap` trunk: keys come from VLANs.
    pub fn is_trunk(&self) -> bool {
        !self.tunnel.vlans.is_empty()
    }

    /// Every key this tunnel receives: one, or a trunk's VLAN keys and its
    /// native key.
    pub fn key_lookups(&self) -> Vec<gre_common::KeyLookup> {
        if !self.is_trunk() {
            return vec![self.key_lookup()];
        }
        let t = &self.tunnel;
        t.vlans.iter().map(|v| v.key).chain(t.native_key).map(|key| gre_common::KeyLookup { key, has_key: 1 }).collect()
    }

    /// The receive-side key lookup of this tunnel.
    pub fn key_lookup(&self) -> gre_common::KeyLookup {
        let t = &self.tunnel;
        match (t.vsid, t.key) {
            (Some(v), _) => gre_common::KeyLookup { key: v << 8, has_key: gre_common::KEY_NVGRE },
            (None, Some(k)) => gre_common::KeyLookup { key: k, has_key: 1 },
            (None, None) => gre_common::KeyLookup { key: 0, has_key: 0 },
        }
    }

    /// What the key lookup means, for messages.
    pub fn key_text(&self) -> String {
        if self.is_trunk() {
            let keys: Vec<String> = self.key_lookups().iter().map(|k| k.key.to_string()).collect();
            return format!("trunk keys {}", keys.join(", "));
        }
        match (self.tunnel.vsid, self.tunnel.key) {
            (Some(v), _) => format!("VSID {v}"),
            (None, Some(k)) => format!("key {k}"),
            (None, None) => "packets without a key".into(),
        }
    }

    pub fn validate(&self, file: &str) -> Result<(), ConfigError> {
        let err = |field: String, reason: String| ConfigError { file: file.to_string(), field, reason };
        let t = &self.tunnel;
        validate_ifname(&t.name).map_err(|r| err("tunnel.name".into(), r))?;
        if let Some(v) = t.vsid {
            if t.mode != Mode::Gretap {
                return Err(err("tunnel.vsid".into(), "NVGRE carries Ethernet: set mode = \"gretap\"".into()));
            }
            if t.key.is_some() {
                return Err(err("tunnel.vsid".into(), "the VSID is the key; set `vsid` or `key`, not both".into()));
            }
            if t.sequence || t.checksum {
                return Err(err("tunnel.vsid".into(), "NVGRE has no sequence numbers or checksums (RFC 7637 section 3.2)".into()));
            }
            if !(0x1000..=0xfffffe).contains(&v) {
                return Err(err("tunnel.vsid".into(), format!("{v} is outside 4096..=16777214 (RFC 7637 reserves the rest)")));
            }
        }
        self.validate_trunk().map_err(|(f, r)| err(f, r))?;
        self.validate_neighbors().map_err(|(f, r)| err(f, r))?;
        if !(1..=86_400).contains(&t.fdb_age) {
            return Err(err("tunnel.fdb_age".into(), format!("{} s is outside 1..=86400", t.fdb_age)));
        }
        if !(1..=86_400).contains(&t.pmtu_age) {
            return Err(err("tunnel.pmtu_age".into(), format!("{} s is outside 1..=86400", t.pmtu_age)));
        }
        if !t.pmtu_discovery && self.underlay6() {
            return Err(err(
                "tunnel.pmtu_discovery".into(),
                "IPv6 links cannot leave fragmenting to the underlay (IPv6 routers never fragment; ip6gre has no nopmtudisc either)".into(),
            ));
        }
        if t.mode == Mode::Gretap && self.peers.len() > gre_common::MAX_FLOOD {
            return Err(err(
                "peer".into(),
                format!("{} peers; a gretap tunnel floods to every peer and takes at most {}", self.peers.len(), gre_common::MAX_FLOOD),
            ));
        }
        if let Some(b) = t.stripe_burst {
            if !(1..=64).contains(&b) {
                return Err(err("tunnel.stripe_burst".into(), format!("{b} is outside 1..=64")));
            }
        }
        if let Some(n) = t.tcp_reordering {
            if n > MAX_TCP_REORDERING {
                return Err(err(
                    "tunnel.tcp_reordering".into(),
                    format!("{n} is above {MAX_TCP_REORDERING}, where TCP stops listening (0 leaves the kernel's default)"),
                ));
            }
        }
        if let Some(ms) = t.resequence {
            if ms > gre_common::reseq::MAX_RESEQUENCE_MS {
                return Err(err(
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
                return Err(err(
                    "tunnel.ip_id_sequence".into(),
                    "`sequence = true` numbers packets already (in the GRE header); set one of the two".into(),
                ));
            }
            if self.underlay6() {
                return Err(err(
                    "tunnel.ip_id_sequence".into(),
                    "IPv6 links have no IPv4 Identification field; number packets with `sequence = true`".into(),
                ));
            }
        }
        if t.keepalive != 0 && !(10..=60_000).contains(&t.keepalive) {
            return Err(err("tunnel.keepalive".into(), format!("{} ms is outside 10..=60000 (0 turns keepalives off)", t.keepalive)));
        }
        if !(1..=100).contains(&t.keepalive_misses) {
            return Err(err("tunnel.keepalive_misses".into(), format!("{} is outside 1..=100", t.keepalive_misses)));
        }
        if let Some(mtu) = t.mtu {
            if !(68..=65535).contains(&mtu) {
                return Err(err("tunnel.mtu".into(), format!("{mtu} is outside 68..=65535")));
            }
        }
        if self.links.is_empty() {
            return Err(err("link".into(), "at least one [[link]] is required".into()));
        }
        let mut devs = HashSet::new();
        let mut addrs = HashSet::new();
        for (i, l) in self.links.iter().enumerate() {
            validate_ifname(&l.dev).map_err(|r| err(format!("link[{i}].dev"), r))?;
            if !devs.insert(l.dev.as_str()) {
                return Err(err(format!("link[{i}].dev"), format!("`{}` is listed twice", l.dev)));
            }
            check_unicast(l.address).map_err(|r| err(format!("link[{i}].address"), r))?;
            if l.address.is_ipv4() != self.links[0].address.is_ipv4() {
                return Err(err(
                    format!("link[{i}].address"),
                    format!("{}: one underlay family per tunnel (link[0] is {})", l.address, self.links[0].address),
                ));
            }
            if !addrs.insert(l.address) {
                return Err(err(format!("link[{i}].address"), format!("{} is used by another link", l.address)));
            }
        }
        for (i, l) in self.links.iter().enumerate() {
            if l.weight == 0 || l.weight > MAX_WEIGHT {
                return Err(err(format!("link[{i}].weight"), format!("{} is outside 1..={MAX_WEIGHT}", l.weight)));
            }
            check_rate_or_weight("link", l.rate, self.links[0].rate, l.weight).map_err(|(f, r)| err(format!("link[{i}].{f}"), r))?;
        }
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

fn check_unicast(a: IpAddr) -> Result<(), String> {
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
fn toml_error(file: &str, text: &str, e: serde_path_to_error::Error<toml::de::Error>) -> ConfigError {
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

#[cfg(test)]
mod tests {
    use super::*;
    use gre_common::{TUN_IPID_SEQ, TUN_IPID_SEQ_TX, TUN_RESEQ_ANNOUNCED};

    /// `fingerprint_is_a_sha256_of_the_canonical_text_and_stable_across_builds`
    const PINNED: u64 = 0x50e97228fa5a8fb9;

    const GOOD: &str = r#"
[tunnel]
name = "gre0"
mode = "gre"
address = ["198.19.100.1/32"]
mtu = 1476
key = 42
sequence = false
checksum = false

[[link]]
dev = "eth0"
address = "198.18.0.10"
rx = "auto"

[[peer]]
name = "site2"
routes = ["198.19.100.2/32"]
[[peer.path]]
link = "eth0"
remote = "198.18.0.20"
mac = "02:00:00:00:00:20"
weight = 1
"#;

    fn bad(edit: impl Fn(&str) -> String) -> ConfigError {
        Config::parse(&edit(GOOD), "t.toml").expect_err("config should be rejected")
    }

    #[test]
    fn per_packet_headers_keep_bursts_without_device_counters() {
        // The device segments in its veth crossing, which transmit keeps for
        // sequence numbers: no one-MSS packets (BBR collapsed on them).
        let c = Config::parse(&GOOD.replace("sequence = false", "sequence = true\ndevice_counters = false"), "t.toml").unwrap();
        assert!(c.segments_per_packet());
        assert_eq!(c.gso_max_segs(), None);
        let two = GOOD.replace("sequence = false", "sequence = true\ndevice_counters = false")
            + "[[peer.path]]\nlink = \"eth0\"\nremote = \"198.18.0.21\"\nmac = \"02:00:00:00:00:21\"\n";
        assert_eq!(Config::parse(&two, "t.toml").unwrap().gso_max_segs(), Some(DEFAULT_STRIPE_BURST));
    }

    #[test]
    fn unequal_paths_are_numbered_and_resequenced_unless_turned_off() {
        let two = |w1: &str, w2: &str, extra: &str| {
            GOOD.replace("weight = 1", w1).replace("key = 42", &format!("key = 42\n{extra}"))
                + &format!("[[peer.path]]\nlink = \"eth0\"\nremote = \"198.18.0.21\"\n{w2}\n")
        };
        let cfg = |text: String| Config::parse(&text, "t.toml").unwrap();
        // By default: numbered in the IPv4 ID, segmented per packet,
        // resequenced for peers that announce, and nothing to warn about.
        let c = cfg(two("weight = 3", "weight = 1", ""));
        assert!(c.auto_ip_id_sequence() && c.segments_per_packet() && c.auto_resequence());
        assert!(c.advice("t.toml").is_empty());
        let flags = crate::datapath::codec::tunnel_value(&c, Default::default()).flags;
        assert_eq!(flags & (TUN_IPID_SEQ_TX | TUN_RESEQ_ANNOUNCED | TUN_IPID_SEQ), TUN_IPID_SEQ_TX | TUN_RESEQ_ANNOUNCED);
        let r = cfg(two("rate = \"300mbit\"", "rate = \"100mbit\"", ""));
        assert!(r.auto_ip_id_sequence());
        // Equal shares and standby paths stripe in order: not numbered; a
        // striped peer still gets its announced packets resequenced.
        let eq = cfg(two("weight = 2", "weight = 2", ""));
        assert!(!eq.auto_ip_id_sequence() && !eq.segments_per_packet() && eq.auto_resequence());
        let sb = cfg(two("weight = 3", "weight = 1\nstandby = true", ""));
        assert!(!sb.auto_ip_id_sequence() && !sb.auto_resequence());
        assert!(!cfg(GOOD.to_string()).auto_resequence());
        // Numbered explicitly: nothing automatic on top; `resequence` set:
        // every numbered packet, not only announced ones.
        let explicit = cfg(two("weight = 3", "weight = 1", "resequence = 5\nip_id_sequence = true"));
        assert!(!explicit.auto_ip_id_sequence() && !explicit.auto_resequence() && explicit.advice("t.toml").is_empty());
        let flags = crate::datapath::codec::tunnel_value(&explicit, Default::default()).flags;
        assert_eq!(flags & (TUN_IPID_SEQ_TX | TUN_RESEQ_ANNOUNCED | TUN_IPID_SEQ), TUN_IPID_SEQ);
        // Turned off, or unannounced: advice naming the file, peer and field.
        let a = cfg(two("weight = 3", "weight = 1", "resequence = 0")).advice("t.toml");
        assert_eq!(a.len(), 1, "{a:?}");
        assert!(a[0].starts_with("t.toml: peer[0] `site2`: paths of unequal weight") && a[0].contains("`resequence = 0` here"), "{a:?}");
        let a = cfg(two("rate = \"300mbit\"", "rate = \"100mbit\"", "keepalive = 0")).advice("t.toml");
        assert!(a.len() == 1 && a[0].contains("unequal rate") && a[0].contains("tunnel.keepalive = 0"), "{a:?}");
    }

    #[test]
    fn parses_the_documented_example() {
        let c = Config::parse(GOOD, "t.toml").unwrap();
        assert_eq!(c.tunnel.name, "gre0");
        assert_eq!(c.tunnel.key, Some(42));
        assert_eq!(c.links[0].rx, RxHook::Auto);
        assert_eq!(c.peers[0].paths[0].mac, Some(Mac([2, 0, 0, 0, 0, 0x20])));
        assert_eq!(c.overhead(), 28);
    }

    #[test]
    fn defaults() {
        let text = "[tunnel]\nname='t'\n[[link]]\ndev='e'\naddress='198.18.0.1'\n[[peer]]\nname='p'\n[[peer.path]]\nlink='e'\nremote='198.18.0.2'\n";
        let c = Config::parse(text, "t.toml").unwrap();
        assert_eq!(c.tunnel.mode, Mode::Gre);
        assert_eq!(c.tunnel.mtu, None);
        assert!(!c.tunnel.sequence && !c.tunnel.checksum);
        assert_eq!(c.peers[0].paths[0].weight, 1);
        assert_eq!(c.overhead(), 24, "1500 - 24 = 1476 with no key and no sequence");
    }

    #[test]
    fn written_back_configs_hold_only_what_was_set() {
        let c = Config::parse(GOOD, "t.toml").unwrap();
        let text = c.to_toml();
        assert!(!text.contains("fdb_age") && !text.contains("vsid") && !text.contains("macs") && !text.contains("group"), "{text}");
        assert_eq!(Config::parse(&text, "back.toml").unwrap().fingerprint(), c.fingerprint());
    }

    #[test]
    fn fingerprint_follows_content() {
        let a = Config::parse(GOOD, "a").unwrap();
        let b = Config::parse(&GOOD.replace("key = 42", "key = 43"), "a").unwrap();
        assert_eq!(a.fingerprint(), Config::parse(GOOD, "b").unwrap().fingerprint());
        assert_ne!(a.fingerprint(), b.fingerprint());
    }

    #[test]
    fn fingerprint_is_a_sha256_of_the_canonical_text_and_stable_across_builds() {
        // The fingerprint is stored in the running tunnel's map and compared
        // by a later xgre, perhaps a newer build: it must be a defined
        // function of the config. Checked against coreutils' sha256sum, and
        // pinned for this config so any change of algorithm or canonical
        // form shows here.
        let text = "[tunnel]\nname='t'\n[[link]]\ndev='e'\naddress='198.18.0.1'\n[[peer]]\nname='p'\n[[peer.path]]\nlink='e'\nremote='198.18.0.2'\n";
        let c = Config::parse(text, "t.toml").unwrap();
        let mut child = std::process::Command::new("sha256sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("sha256sum");
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), c.to_toml().as_bytes()).unwrap();
        let out = String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap();
        assert_eq!(format!("{:016x}", c.fingerprint()), out[..16]);
        assert_eq!(
            c.fingerprint(),
            PINNED,
            "the fingerprint of an unchanged config changed: a running tunnel would be taken for a new one"
        );
    }

    #[track_caller]
    fn expect(e: ConfigError, field: &str, reason_part: &str) {
        assert_eq!(e.field, field, "wrong field in: {e}");
        assert!(e.reason.contains(reason_part), "reason `{}` lacks `{reason_part}`", e.reason);
        assert!(e.to_string().starts_with("t.toml"), "no file name in: {e}");
    }

    #[test]
    fn every_validation_error_names_file_field_reason() {
        expect(bad(|s| s.replace("name = \"gre0\"", "name = \"a-very-long-device-name\"")), "tunnel.name", "1 to 15");
        expect(bad(|s| s.replace("name = \"gre0\"", "name = \"gre/0\"")), "tunnel.name", "not a valid");
        expect(bad(|s| s.replace("key = 42", "vsid = 5000")), "tunnel.vsid", "gretap");
        expect(bad(|s| s.replace("key = 42", "key = 42\nfdb_age = 0")), "tunnel.fdb_age", "1..=86400");
        let tap = |s: &str| s.replace("mode = \"gre\"", "mode = \"gretap\"");
        expect(bad(|s| tap(s).replace("key = 42", "vsid = 5000\nkey = 1")), "tunnel.vsid", "not both");
        expect(bad(|s| tap(s).replace("key = 42", "vsid = 4095")), "tunnel.vsid", "4096");
        expect(
            bad(|s| tap(s).replace("key = 42", "vsid = 5000").replace("sequence = false", "sequence = true")),
            "tunnel.vsid",
            "RFC 7637",
        );
        let group = |addr: &str, peer: &str| format!("{GOOD}[[group]]\naddress = \"{addr}\"\npeers = [\"{peer}\"]\n");
        expect(Config::parse(&group("198.19.0.1", "site2"), "t.toml").unwrap_err(), "group[0].address", "not a multicast");
        expect(Config::parse(&group("239.0.0.10", "nobody"), "t.toml").unwrap_err(), "group[0].peers[0]", "not a [[peer]]");
        expect(Config::parse(&tap(&group("239.0.0.10", "site2")), "t.toml").unwrap_err(), "group[0]", "gre` mode");
        Config::parse(&group("239.0.0.10", "site2"), "t.toml").expect("a group naming a peer");
        Config::parse(&group("ff0e::10", "site2"), "t.toml").expect("an IPv6 group");
        let macs = |s: &str, list: &str| {
            s.replace(
                "weight = 1\n",
                &format!("weight = 1\n[[peer]]\nname = \"x\"\nmacs = [{list}]\n[[peer.path]]\nlink = \"eth0\"\nremote = \"198.18.0.21\"\n"),
            )
        };
        expect(bad(|s| macs(s, "\"02:00:00:00:00:01\"")), "peer[1].macs[0]", "gretap");
        expect(bad(|s| macs(&tap(s), "\"01:00:00:00:00:01\"")), "peer[1].macs[0]", "unicast");
        expect(bad(|s| macs(&tap(s), "\"02:00:00:00:00:01\", \"02:00:00:00:00:01\"")), "peer[1].macs[1]", "another peer");
        Config::parse(&macs(&tap(GOOD), "\"02:00:00:00:00:01\""), "t.toml").expect("static MACs on gretap");
        let two_links = |s: &str, first: &str, second: &str| {
            s.replace(
                "rx = \"auto\"\n",
                &format!("rx = \"auto\"\n{first}\n[[link]]\ndev = \"eth1\"\naddress = \"198.18.1.10\"\n{second}\n"),
            )
        };
        expect(bad(|s| two_links(s, "rate = \"300mbit\"", "")), "link[1].rate", "every link a rate");
        expect(bad(|s| two_links(s, "rate = \"300mbit\"\nweight = 3", "rate = \"100mbit\"")), "link[0].weight", "not both");
        expect(bad(|s| two_links(s, "rate = \"fast\"", "")), "link[0].rate", "not a rate");
        let rated = Config::parse(&two_links(GOOD, "rate = \"300mbit\"", "rate = \"100mbit\""), "t.toml").expect("rates on every link");
        assert_eq!(rated.links[1].rate.map(|r| r.kbps), Some(100_000));
        expect(bad(|s| s.replace("mtu = 1476", "mtu = 20")), "tunnel.mtu", "68");
        expect(bad(|s| s.replace("key = 42", "key = 42\nresequence = 101")), "tunnel.resequence", "above 100");
        let reseq = Config::parse(&GOOD.replace("key = 42", "key = 42\nresequence = 5"), "t.toml").expect("resequence = 5");
        assert_eq!(reseq.tunnel.resequence, Some(5));
        expect(bad(|s| s.replace("sequence = false", "sequence = true\nip_id_sequence = true")), "tunnel.ip_id_sequence", "one of the two");
        let v6 = |s: &str| s.replace("198.18.0.10\"", "2001:db8::10\"").replace("198.18.0.20\"", "2001:db8::20\"");
        Config::parse(&v6(GOOD), "t.toml").expect("GOOD over IPv6");
        expect(bad(|s| v6(s).replace("sequence = false", "ip_id_sequence = true")), "tunnel.ip_id_sequence", "IPv6 links");
        expect(
            bad(|s| v6(s).replace("key = 42", "key = 42\npmtu_discovery = false")),
            "tunnel.pmtu_discovery",
            "IPv6 routers never fragment",
        );
        expect(bad(|s| s.replace("key = 42", "key = 42\npmtu_age = 0")), "tunnel.pmtu_age", "1..=86400");
        let nopmtud =
            Config::parse(&GOOD.replace("key = 42", "key = 42\npmtu_discovery = false\npmtu_age = 60"), "t.toml").expect("nopmtudisc");
        assert_eq!((nopmtud.tunnel.pmtu_discovery, nopmtud.tunnel.pmtu_age), (false, 60));
        assert!(Config::parse(GOOD, "t.toml").unwrap().tunnel.pmtu_discovery, "discovery is on by default, as with ip_gre");
        let by_id = Config::parse(&GOOD.replace("sequence = false", "ip_id_sequence = true"), "t.toml").expect("ip_id_sequence");
        assert!(by_id.segments_per_packet(), "one number per wire packet");
        assert_eq!(by_id.overhead(), 28, "no bytes for the number: the same as without it");
        expect(bad(|s| s.replace("address = \"198.18.0.10\"", "address = \"224.0.0.1\"")), "link[0].address", "unicast");
        expect(bad(|s| s.replace("dev = \"eth0\"", "dev = \"\"")), "link[0].dev", "1 to 15");
        expect(bad(|s| s.replace("link = \"eth0\"", "link = \"eth1\"")), "peer[0].path[0].link", "not a [[link]]");
        expect(bad(|s| s.replace("remote = \"198.18.0.20\"", "remote = \"198.18.0.10\"")), "peer[0].path[0].remote", "our own");
        expect(bad(|s| s.replace("02:00:00:00:00:20", "01:00:5e:00:00:01")), "peer[0].path[0].mac", "unicast");
        expect(bad(|s| s.replace("weight = 1", "weight = 0")), "peer[0].path[0].weight", "1..=");
        expect(bad(|s| s.replace("198.19.100.2/32", "198.19.100.2/24")), "peer[0].routes[0]", "host bits");
        expect(bad(|s| s.replace("name = \"site2\"", "name = \"\"")), "peer[0].name", "1 to 31");
        let two_paths = GOOD.to_string() + "[[peer.path]]\nlink = \"eth0\"\nremote = \"198.18.0.20\"\n";
        expect(Config::parse(&two_paths, "t.toml").unwrap_err(), "peer[0].path[1].remote", "already a path");
        let dup_peer = GOOD.to_string() + "[[peer]]\nname = \"site2\"\n[[peer.path]]\nlink = \"eth0\"\nremote = \"198.18.0.21\"\n";
        expect(Config::parse(&dup_peer, "t.toml").unwrap_err(), "peer[1].name", "two peers");
        let dup_route = GOOD.to_string()
            + "[[peer]]\nname = \"x\"\nroutes = [\"198.19.100.2/32\"]\n[[peer.path]]\nlink = \"eth0\"\nremote = \"198.18.0.21\"\n";
        expect(Config::parse(&dup_route, "t.toml").unwrap_err(), "peer[1].routes[0]", "another peer");
        let no_path =
            GOOD.replace("[[peer.path]]\nlink = \"eth0\"\nremote = \"198.18.0.20\"\nmac = \"02:00:00:00:00:20\"\nweight = 1\n", "");
        expect(Config::parse(&no_path, "t.toml").unwrap_err(), "peer[0].path", "at least one");
    }

    #[test]
    fn type_and_unknown_field_errors_point_at_the_line() {
        let e = bad(|s| s.replace("mac = \"02:00:00:00:00:20\"", "mac = \"02:00\""));
        assert!(e.file.starts_with("t.toml:"), "{e}");
        assert_eq!(e.field, "peer[0].path[0].mac");
        assert!(e.reason.contains("MAC"), "{e}");
        let e = bad(|s| s.replace("sequence = false", "sequense = false"));
        assert!(e.reason.contains("unknown field"), "{e}");
        assert_eq!(e.field, "tunnel.sequense");
        let e = bad(|s| s.replace("remote = \"198.18.0.20\"", ""));
        assert_eq!(e.field, "peer[0].path[0].remote", "{e}");
        assert!(e.reason.contains("missing field"), "{e}");
        let e = bad(|s| s.replacen("name = \"gre0\"", "", 1));
        assert_eq!(e.field, "tunnel.name", "{e}");
        let e = bad(|s| s.replace("rx = \"auto\"", "rx = \"fast\""));
        assert_eq!(e.field, "link[0].rx");
        let e = bad(|s| s.replace("key = 42", "key = -1"));
        assert_eq!(e.field, "tunnel.key");
        let e = bad(|s| s.replace("address = \"198.18.0.10\"", "address = \"198.18.0\""));
        assert_eq!(e.field, "link[0].address");
    }

    fn trunk(vlans: &str) -> String {
        GOOD.replace("mode = \"gre\"", "mode = \"gretap\"")
            .replace("address = [\"198.19.100.1/32\"]\n", "")
            .replace("mtu = 1476\n", "")
            .replace("key = 42\n", "")
            .replace("routes = [\"198.19.100.2/32\"]\n", "")
            .replace("[[link]]", &format!("{vlans}\n[[link]]"))
    }

    #[test]
    fn trunk_pairs_are_checked() {
        let c = Config::parse(&trunk("native_key = 7\n[[tunnel.vlan]]\nvid = 100\nkey = 5100\n"), "t.toml").unwrap();
        assert!(c.is_trunk());
        assert_eq!(c.tunnel.native_key, Some(7));
        let err = |vlans: &str| Config::parse(&trunk(vlans), "t.toml").expect_err(vlans);
        let e = err("[[tunnel.vlan]]\nvid = 4095\nkey = 1\n");
        assert_eq!(e.field, "tunnel.vlan[0].vid", "{e}");
        let e = err("[[tunnel.vlan]]\nvid = 100\nkey = 1\n[[tunnel.vlan]]\nvid = 100\nkey = 2\n");
        assert_eq!(e.field, "tunnel.vlan[1].vid", "{e}");
        let e = err("[[tunnel.vlan]]\nvid = 100\nkey = 1\n[[tunnel.vlan]]\nvid = 200\nkey = 1\n");
        assert_eq!(e.field, "tunnel.vlan[1].key", "{e}");
        let e = err("native_key = 1\n[[tunnel.vlan]]\nvid = 100\nkey = 1\n");
        assert_eq!(e.field, "tunnel.native_key", "{e}");
        let e = err("native_key = 1\n");
        assert_eq!(e.field, "tunnel.native_key", "{e}");
        let e = err("key = 9\n[[tunnel.vlan]]\nvid = 100\nkey = 1\n");
        assert_eq!(e.field, "tunnel.vlan", "{e}");
        let e = bad(|s| s.replace("[[link]]", "[[tunnel.vlan]]\nvid = 100\nkey = 1\n[[link]]"));
        assert_eq!(e.field, "tunnel.vlan", "{e}");
        assert!(e.reason.contains("gretap"), "{e}");
    }

    #[test]
    fn static_neighbours_are_checked() {
        let n = |ip: &str, mac: &str, vid: u16| format!("[[tunnel.neighbor]]\nip = \"{ip}\"\nmac = \"{mac}\"\nvid = {vid}\n");
        // Plain keys, then the VLAN and the neighbours (TOML tables last).
        let parse = |plain: &str, neighbors: &str| {
            Config::parse(&trunk(&format!("{plain}[[tunnel.vlan]]\nvid = 100\nkey = 5100\n{neighbors}")), "t.toml")
        };
        let on = "arp_suppress = true\n";
        let both = n("198.19.1.3", "02:00:00:00:01:03", 0) + &n("2001:db8::3", "02:00:00:00:01:03", 100);
        let c = parse(&format!("{on}native_key = 7\n"), &both).unwrap();
        assert_eq!(c.tunnel.neighbors.len(), 2);
        let err = |plain: &str, neighbors: &str| parse(plain, neighbors).expect_err(neighbors);
        let e = err("", &n("198.19.1.3", "02:00:00:00:01:03", 100));
        assert_eq!(e.field, "tunnel.neighbor", "needs arp_suppress: {e}");
        let e = err(on, &n("224.0.0.1", "02:00:00:00:01:03", 100));
        assert_eq!(e.field, "tunnel.neighbor[0].ip", "{e}");
        let e = err(on, &n("198.19.1.3", "01:00:00:00:01:03", 100));
        assert_eq!(e.field, "tunnel.neighbor[0].mac", "{e}");
        let e = err(on, &n("198.19.1.3", "02:00:00:00:01:03", 300));
        assert_eq!(e.field, "tunnel.neighbor[0].vid", "{e}");
        let e = err(on, &n("198.19.1.3", "02:00:00:00:01:03", 0));
        assert_eq!(e.field, "tunnel.neighbor[0].vid", "untagged, no native key: {e}");
        let twice = n("198.19.1.3", "02:00:00:00:01:03", 100) + &n("198.19.1.3", "02:00:00:00:01:04", 100);
        let e = err(on, &twice);
        assert_eq!(e.field, "tunnel.neighbor[1].ip", "{e}");
        let e = bad(|s| s.replace("sequence = false", "sequence = false\narp_suppress = true"));
        assert_eq!(e.field, "tunnel.arp_suppress", "gre mode: {e}");
    }
}
