//! Keys and values of the datapath's maps.
//!
//! One datapath (one set of programs and maps) serves every tunnel of a
//! network namespace, because a link can hold only one XDP program and
//! tenants share links. Tunnels are told apart by their device ifindex on
//! transmit and by their GRE key on receive.
//!
//! Addresses are 16 bytes: an IPv4 address is stored IPv4-mapped
//! (`::ffff:a.b.c.d`) so one key type serves both families.

use bytemuck::{Pod, Zeroable};

use crate::flags::{PathFlags, PeerFlags, TunnelFlags};

/// Most paths one peer can stripe across.
pub const MAX_PATHS: usize = 8;
/// Most peers in one network namespace (sizes the peer and counter maps).
pub const MAX_PEERS: u32 = 16384;
/// Most tunnels in one network namespace.
pub const MAX_TUNNELS: u32 = 256;
/// AF_XDP sockets of resequencers, one per receive queue of each link a
/// resequenced tunnel receives on.
pub const RESEQ_XSK_SLOTS: u32 = 256;
/// Most inner routes in one network namespace.
pub const MAX_ROUTES: u32 = 65536;
/// Most links in one network namespace.
pub const MAX_LINKS: u32 = 64;
/// Most copies one packet is replicated to (flooding in `gretap` mode,
/// multicast and broadcast in `gre` mode): the peers of one flood list.
pub const MAX_FLOOD: usize = 64;
/// Learned MAC addresses in one network namespace (all `gretap` tunnels);
/// the least recently used entry makes room for a new one.
pub const MAX_FDB: u32 = 65536;
/// Seconds a learned MAC address stays valid without a frame from it.
pub const DEFAULT_FDB_AGE: u32 = 300;

/// `Tunnel::mode`
pub const MODE_GRE: u32 = 1;
pub const MODE_GRETAP: u32 = 2;

/// Whether a tunnel's transmit decision crosses its veth pair before the
/// packet is encapsulated. With sequence numbers or checksums it always
/// does: the crossing is where the kernel segments TCP's bursts (the
/// device's TSO is off), so that the stack can still hand the device bursts
/// and every wire packet gets a header of its own. Without the crossing the
/// device had to ask for one-MSS packets, and BBR pacing them one by one
/// fell to 35-44% of the links (`cargo xtask bench agg --seq`).
pub const fn tx_crosses_pair(flags: TunnelFlags) -> bool {
    !flags.contains(TunnelFlags::NO_DEV_COUNTERS) || flags.intersects(TunnelFlags::PER_PACKET)
}

/// Addresses `XGRE_NEIGH` holds in one network namespace (all tunnels);
/// the least recently used entry makes room for a new one.
pub const MAX_NEIGH: u32 = 65536;
/// `NeighEntry::flags`: learned from a frame a peer sent (the address lives
/// behind the tunnel: requests for it are answered here), or static.
pub const NEIGH_REMOTE: u16 = 1 << 0;
/// Learned from a Neighbour Advertisement with the Router flag: answers
/// carry it on (RFC 4861 section 4.4).
pub const NEIGH_ROUTER: u16 = 1 << 1;
/// `skb->mark` of an answer on its way into the tunnel device, so the
/// receive-side learner does not take our own answer for news.
pub const NEIGH_ANSWER_MARK: u32 = 0x7867_7265;

/// Low byte of an NVGRE key: the FlowID.
pub const NVGRE_FLOWID_MASK: u32 = 0xff;
/// `KeyLookup::has_key` of an NVGRE tunnel: looked up by VSID (FlowID 0).
pub const KEY_NVGRE: u32 = 2;

/// `LinkUse::hook`
pub const HOOK_XDP: u32 = 1;
pub const HOOK_TC: u32 = 2;

/// Version of the map layout; a loader refuses a datapath of another version.
pub const LAYOUT_VERSION: u32 = 7;

/// One entry describing the datapath instance itself.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct Meta {
    /// Inode of the network namespace this datapath serves; a loader in
    /// another namespace ignores it.
    pub netns_ino: u64,
    pub layout: u32,
    /// Non-zero while an `xgre ... --debug` is listening: the programs then
    /// log what they drop and why (aya-log).
    pub debug: u32,
    /// Which build's programs are attached (a digest of the compiled
    /// object): an xgre of another build with the same layout replaces
    /// them in place.
    pub build: u64,
}

/// A tunnel device, keyed by its ifindex.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct Tunnel {
    pub ifindex: u32,
    /// The hidden veth end paired with the tunnel device: XDP redirects
    /// decapsulated frames to it so they arrive on the tunnel device.
    pub peer_ifindex: u32,
    pub mode: u32,
    pub flags: TunnelFlags,
    /// GRE key in host order (meaningful with `TunnelFlags::KEY`).
    pub key: u32,
    /// MAC of the tunnel device: decapsulated frames are addressed to it.
    pub mac: [u8; 6],
    /// Loader-only: `tcp_reordering` plus one (0: not set, the default).
    /// It took the place of two bytes of padding, so entries pinned by
    /// older builds read as "not set".
    pub tcp_reordering: u16,
    /// Device name, NUL-padded, so a tunnel can be found and reported even
    /// after its device is gone.
    pub name: [u8; 16],
    /// Loader-only settings, kept so `xgre show` can write the running
    /// tunnel back as a config: configured MTU (0: derived), stripe burst
    /// (0: default), keepalive interval and misses.
    pub mtu_cfg: u32,
    /// Fingerprint of the config that brought it up: `up` with the same
    /// file again is a no-op.
    pub config_hash: u64,
    pub stripe_burst: u32,
    pub keepalive: u32,
    pub keepalive_misses: u32,
    /// `gretap`: seconds a learned MAC stays valid (0: default).
    pub fdb_age: u32,
    /// Seconds a path MTU learnt from an ICMP error holds (0: default).
    pub pmtu_age: u32,
    pub _pad: u32,
}

/// Receive-side lookup from GRE key to tunnel.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct KeyLookup {
    pub key: u32,
    /// 1 when the packet carries a key, 0 when not.
    pub has_key: u32,
}

/// One way to reach a peer: a local link and the outer addresses on it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Path {
    /// Link the path leaves by.
    pub ifindex: u32,
    pub flags: PathFlags,
    pub local: [u8; 16],
    pub remote: [u8; 16],
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub weight: u32,
    /// The configured rate in kbit/s (`rate`; 0: none), kept for `show` and
    /// `status`: the datapath stripes by `weight`, which the loader derives
    /// from the rates of the peer's paths.
    pub rate_kbps: u32,
}

/// A peer as the transmit program sees it. Replaced whole by one map update,
/// so the datapath never sees a half-written path set.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct Peer {
    /// Dense id: indexes the counter, sequence and round-robin maps.
    pub id: u32,
    pub tunnel_ifindex: u32,
    pub npaths: u32,
    /// User space's bookkeeping; the datapath ignores them.
    pub flags: PeerFlags,
    pub paths: [Path; MAX_PATHS],
    /// Peer name from the config, NUL-padded (for status and `show`).
    pub name: [u8; 32],
}

impl Default for Peer {
    fn default() -> Self {
        Zeroable::zeroed()
    }
}

/// Receive-side lookup: which peer and path a GRE packet came by.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct RxKey {
    pub tunnel_ifindex: u32,
    pub remote: [u8; 16],
    pub local: [u8; 16],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct RxPath {
    pub peer_id: u32,
    pub path: u32,
}

/// Key of the IPv4 route trie: tunnel ifindex (big-endian) then the address,
/// so one trie holds every tunnel's routes. Prefix length counts the 32
/// tunnel bits too.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Route4 {
    pub tunnel: [u8; 4],
    pub addr: [u8; 4],
}

/// One of our outer addresses and the link that owns it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct LocalAddr {
    pub ifindex: u32,
    /// The link's MAC: a frame for this address that is not addressed to
    /// it was flooded by a switch to us and is not ours to take.
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

/// Key of the IPv6 route trie, like `Route4`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Route6 {
    pub tunnel: [u8; 4],
    pub addr: [u8; 16],
}

/// A (link, tunnel) pair in use: how the link receives, and the outer
/// address this tunnel uses on it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct LinkUseKey {
    pub link_ifindex: u32,
    pub tunnel_ifindex: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct LinkUse {
    pub hook: u32,
    /// 1 when xgre added the link's clsact qdisc (and so removes it).
    pub own_clsact: u32,
    pub addr: [u8; 16],
    /// The configured hook: 0 auto, `HOOK_XDP` or `HOOK_TC`.
    pub rx_cfg: u32,
}

/// A learned MAC address of a `gretap` tunnel.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct FdbKey {
    pub tunnel_ifindex: u32,
    pub mac: [u8; 6],
    /// The VLAN (trunk tunnels; 0 otherwise): learning is per VID.
    pub vid: u16,
}

/// An IP address seen in ARP or Neighbour Discovery on a `gretap` tunnel
/// with `arp_suppress` (IPv4-mapped when IPv4), per VLAN of a trunk.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct NeighKey {
    pub tunnel_ifindex: u32,
    pub vid: u16,
    pub _pad: u16,
    pub addr: [u8; 16],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct NeighEntry {
    pub mac: [u8; 6],
    /// `NEIGH_*`
    pub flags: u16,
    /// When last confirmed (bpf_ktime_get_ns); `FDB_STATIC` for an entry
    /// of the config. Ages with the tunnel's `fdb_age`.
    pub seen_ns: u64,
}

/// What ARP/ND suppression did on one tunnel (per CPU).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct NeighStats {
    /// ARP requests answered on this host (address behind a peer).
    pub arp_answered: u64,
    /// Neighbour Solicitations answered on this host.
    pub nd_answered: u64,
    /// Requests for an address on this host's side of the tunnel: not sent
    /// to any peer (the owner answers them itself).
    pub kept_local: u64,
    /// Requests for an address not known: flooded to every peer.
    pub flooded: u64,
    /// Addresses learned or moved.
    pub learned: u64,
}

/// A trunk's VLAN ⇄ key pairs, both ways in one map: `dir` `VLAN_TO_KEY`
/// (`id` a VID, 0 for untagged frames: the native key) or `KEY_TO_VLAN`
/// (`id` a key; the value 0 means deliver untagged).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct VlanMapKey {
    pub tunnel_ifindex: u32,
    pub dir: u32,
    pub id: u32,
}

pub const VLAN_TO_KEY: u32 = 0;
pub const KEY_TO_VLAN: u32 = 1;

/// `FdbEntry::seen_ns` of a MAC the config places behind a peer: never
/// stale, never moved by learning.
pub const FDB_STATIC: u64 = u64::MAX;

/// Which peer a MAC address lives behind, and when a frame from it last
/// arrived (bpf_ktime_get_ns): older than the tunnel's `fdb_age` and it
/// is flooded again.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct FdbEntry {
    pub peer_id: u32,
    pub _pad: u32,
    pub seen_ns: u64,
}

/// A flood list: a tunnel and a group (all zeros: every peer; else an inner
/// multicast address, IPv4-mapped for IPv4).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct FloodKey {
    pub tunnel_ifindex: u32,
    pub group: [u8; 16],
}

/// The peers one packet is replicated to.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct FloodList {
    pub n: u32,
    pub peers: [u32; MAX_FLOOD],
}

impl Default for FloodList {
    fn default() -> Self {
        Zeroable::zeroed()
    }
}

/// Per-path counters, one slot per (peer id, path index). Bytes are inner
/// bytes both ways. Summed over CPUs, paths and peers by `+=`; `xgre
/// status --json` writes them as they are.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
#[cfg_attr(feature = "user", derive(serde::Serialize))]
pub struct PathStats {
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    /// Our keepalives that came back over this path.
    pub keepalive_replies: u64,
    /// The peer's keepalives we sent back to it over this path.
    pub keepalives_reflected: u64,
}

impl core::ops::AddAssign for PathStats {
    fn add_assign(&mut self, o: PathStats) {
        self.tx_packets += o.tx_packets;
        self.tx_bytes += o.tx_bytes;
        self.rx_packets += o.rx_packets;
        self.rx_bytes += o.rx_bytes;
        self.keepalive_replies += o.keepalive_replies;
        self.keepalives_reflected += o.keepalives_reflected;
    }
}

/// Receive-side reordering of one peer's sequence-numbered packets (per
/// CPU; the loader sums counts and takes the largest displacement).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct ReorderStats {
    /// Arrived with a higher number than any before.
    pub in_order: u64,
    /// Arrived after a packet with a higher number (delivered all the same).
    pub out_of_order: u64,
    /// Out of order by more than `LATE_DISPLACEMENT` packets: what a
    /// reorder buffer of that depth would have given up on.
    pub late: u64,
    /// Largest displacement seen, in packets.
    pub max_displacement: u64,
}

/// Displacement beyond which an out-of-order packet counts as late.
pub const LATE_DISPLACEMENT: u32 = 64;

/// GRE protocol type of a keepalive reply (Cisco format: the inner GRE
/// header of a keepalive carries protocol 0).
pub const PROTO_KEEPALIVE: u16 = 0;

/// Index of a path's counters in `XGRE_PATH_STATS`.
#[inline(always)]
pub const fn path_slot(peer_id: u32, path: u32) -> u32 {
    peer_id * MAX_PATHS as u32 + path
}

/// Store an IPv4 address IPv4-mapped.
#[inline(always)]
pub const fn v4_mapped(a: [u8; 4]) -> [u8; 16] {
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a[0], a[1], a[2], a[3]]
}

/// aya's `Pod` for types that derive bytemuck's: the derive checks at
/// compile time what aya's asks (`repr(C)`, no padding, `Pod` fields).
#[cfg(feature = "user")]
#[macro_export]
macro_rules! aya_pod {
    ($($t:ty),* $(,)?) => {$(
        const _: () = {
            const fn derives_bytemuck_pod<T: bytemuck::Pod>() {}
            derives_bytemuck_pod::<$t>()
        };
        // SAFETY: `$t` derives `bytemuck::Pod` (asserted just above), whose
        // derive refuses a type that is not `repr(C)`, has padding or has a
        // field that is not `Pod`: the contract of `aya::Pod`.
        unsafe impl aya::Pod for $t {}
    )*};
}

#[cfg(feature = "user")]
aya_pod!(
    Meta,
    NeighKey,
    NeighEntry,
    NeighStats,
    Tunnel,
    KeyLookup,
    Path,
    Peer,
    RxKey,
    RxPath,
    Route4,
    Route6,
    LinkUseKey,
    LinkUse,
    LocalAddr,
    PathStats,
    ReorderStats,
    FdbKey,
    VlanMapKey,
    FdbEntry,
    FloodKey,
    FloodList,
    crate::pmtu::PathMtu,
    crate::pmtu::OuterPair,
);
