//! The config's types, as the TOML file spells them, and building one in
//! code.

use std::{fmt, hash::Hash, net::IpAddr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::*;

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

pub(super) fn default_mesh_ttl() -> u32 {
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
    /// `xgre run`, between xgre peers: while a path to a peer loses, keep
    /// the packets sent to it for a moment and send one again when the
    /// peer's resequencer asks (`gre_common::repair`); and ask peers that
    /// keep theirs. False: neither.
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub repair: bool,
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

pub(super) fn is_zero_u16(v: &u16) -> bool {
    *v == 0
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(deny_unknown_fields)]
pub struct VlanConfig {
    pub vid: u16,
    pub key: u32,
}

pub(super) fn default_fdb_age() -> u32 {
    gre_common::DEFAULT_FDB_AGE
}

pub(super) fn is_default_fdb_age(a: &u32) -> bool {
    *a == gre_common::DEFAULT_FDB_AGE
}

pub(super) fn default_pmtu_age() -> u32 {
    gre_common::pmtu::DEFAULT_PMTU_AGE
}

pub(super) fn is_default_pmtu_age(a: &u32) -> bool {
    *a == gre_common::pmtu::DEFAULT_PMTU_AGE
}

pub(super) fn default_keepalive() -> u32 {
    100
}

pub(super) fn default_keepalive_misses() -> u32 {
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

pub(super) fn is_default_weight(w: &u32) -> bool {
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

pub(super) fn default_weight() -> u32 {
    1
}

pub(super) fn default_true() -> bool {
    true
}

pub(super) fn is_true(b: &bool) -> bool {
    *b
}

pub(super) fn is_false(b: &bool) -> bool {
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
                repair: true,
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
