//! Every map of the datapath. Names come from `gre_common::names` through the
//! `#[map(name = ...)]` attributes so the loader finds them by the same text.

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, PerCpuHashMap, XskMap},
};
use gre_common::{
    drop::DROP_SLOTS, FdbEntry, FdbKey, FloodKey, FloodList, KeyLookup, LinkUse, LinkUseKey, LocalAddr, Meta, NeighEntry, NeighKey,
    NeighStats, PathStats, Peer, PeerAnnounce, ReorderStats, ReseqLink, Route4, Route6, RxKey, RxPath, Tunnel, VlanMapKey, MAX_FDB,
    MAX_LINKS, MAX_NEIGH, MAX_PATHS, MAX_PEERS, MAX_ROUTES, MAX_TUNNELS, RESEQ_XSK_SLOTS,
};

use gre_common::light::MAX_BULK_FLOWS;
use gre_common::pmtu::{OuterPair, PathMtu, PMTU_EVENT_SLOTS};

use crate::structs::{InnerIpHdr, OuterHdr, Scratch};

/// What each path learnt of its path MTU, by `path_slot`.
#[map(name = "XGRE_PATH_MTU")]
pub static PATH_MTU: Array<PathMtu> = Array::with_max_entries(MAX_PEERS * MAX_PATHS as u32, 0);

/// Outer address pairs some receive path uses, with how many do: the
/// fragments of these are reassembled. Written by the loader only.
#[map(name = "XGRE_PAIRS")]
pub static OUTER_PAIRS: HashMap<OuterPair, u32> = HashMap::with_max_entries(MAX_PEERS * MAX_PATHS as u32, BPF_F_NO_PREALLOC);

/// The path MTU learner's working copy of an ICMP error (`pmtu::Claim`).
#[map(name = "XGRE_PMTU_CLM")]
pub static PMTU_CLAIM: PerCpuArray<crate::pmtu::Claim> = PerCpuArray::with_max_entries(1, 0);

#[map(name = "XGRE_PMTU_EV")]
pub static PMTU_EVENTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(PMTU_EVENT_SLOTS as u32, 0);

#[map(name = "XGRE_META")]
pub static META: Array<Meta> = Array::with_max_entries(1, 0);

#[map(name = "XGRE_TUNNELS")]
pub static TUNNELS: HashMap<u32, Tunnel> = HashMap::with_max_entries(MAX_TUNNELS, 0);

#[map(name = "XGRE_TUN_KEY")]
pub static TUNNEL_BY_KEY: HashMap<KeyLookup, u32> = HashMap::with_max_entries(MAX_TUNNELS, 0);

/// Not preallocated: an update then swaps in a new element and frees the old
/// one after an RCU grace period, so a reader never sees a half-written peer.
#[map(name = "XGRE_PEERS")]
pub static PEERS: HashMap<u32, Peer> = HashMap::with_max_entries(MAX_PEERS, BPF_F_NO_PREALLOC);

#[map(name = "XGRE_ROUTES4")]
pub static ROUTES4: LpmTrie<Route4, u32> = LpmTrie::with_max_entries(MAX_ROUTES, BPF_F_NO_PREALLOC);

#[map(name = "XGRE_ROUTES6")]
pub static ROUTES6: LpmTrie<Route6, u32> = LpmTrie::with_max_entries(MAX_ROUTES, BPF_F_NO_PREALLOC);

#[map(name = "XGRE_RX_PATHS")]
pub static RX_PATHS: HashMap<RxKey, RxPath> = HashMap::with_max_entries(MAX_PEERS * MAX_PATHS as u32, 0);

/// Outer addresses of our links: GRE to anything else is not ours.
#[map(name = "XGRE_LOCAL")]
pub static LOCAL_ADDRS: HashMap<[u8; 16], LocalAddr> = HashMap::with_max_entries(MAX_LINKS * 4, 0);

/// Bookkeeping for the loader only; the programs never read it, but keeping
/// it referenced ties its lifetime to theirs.
#[map(name = "XGRE_LINK_USERS")]
pub static LINK_USERS: HashMap<LinkUseKey, LinkUse> = HashMap::with_max_entries(MAX_LINKS * MAX_TUNNELS, 0);

#[map(name = "XGRE_PATH_STATS")]
pub static PATH_STATS: PerCpuArray<PathStats> = PerCpuArray::with_max_entries(MAX_PEERS * MAX_PATHS as u32, 0);

#[map(name = "XGRE_DROPS")]
pub static DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(DROP_SLOTS as u32, 0);

/// Next transmit sequence number of each peer; shared by all CPUs so the
/// numbers are unique (atomic add).
#[map(name = "XGRE_TX_SEQ")]
pub static TX_SEQ: Array<u64> = Array::with_max_entries(MAX_PEERS, 0);

#[map(name = "XGRE_SCRATCH")]
pub static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// Highest sequence number received from each peer, with bit 32 set once
/// one has arrived. Shared by all CPUs.
#[map(name = "XGRE_RX_SEQ")]
pub static RX_SEQ: Array<u64> = Array::with_max_entries(MAX_PEERS, 0);

#[map(name = "XGRE_REORDER")]
pub static REORDER: PerCpuArray<ReorderStats> = PerCpuArray::with_max_entries(MAX_PEERS, 0);

/// Tunnel ifindex -> the tap `xgre run` resequences its numbered packets
/// through (`resequence`); absent or 0: delivered as they arrive.
#[map(name = "XGRE_RESEQ_TAP")]
pub static RESEQ_TAP: HashMap<u32, u32> = HashMap::with_max_entries(MAX_TUNNELS, 0);

/// Tap ifindex -> the tunnel whose `xgre run` writes into it the GRE
/// packets the kernel reassembled from outer fragments, each as it came
/// by its link (`xgre run` checked which): taken as if they had.
#[map(name = "XGRE_REASM_TAP")]
pub static REASM_TAP: HashMap<u32, u32> = HashMap::with_max_entries(MAX_TUNNELS, 0);

/// Link ifindex -> the tunnel whose resequencer takes the link's numbered
/// frames over AF_XDP, and the slots of its sockets in `RESEQ_XSK`.
#[map(name = "XGRE_RESEQ_LINK")]
pub static RESEQ_LINK: HashMap<u32, ReseqLink> = HashMap::with_max_entries(MAX_LINKS, 0);

/// Slot -> a resequencer's AF_XDP socket on one queue of one link. The
/// kernel removes a socket's entry when it closes, however `xgre run`
/// ends.
#[map(name = "XGRE_RESEQ_XSK")]
pub static RESEQ_XSK: XskMap = XskMap::with_max_entries(RESEQ_XSK_SLOTS, 0);

/// When a keepalive last came back over each path (bpf_ktime_get_ns,
/// CLOCK_MONOTONIC): the loader's path health reads it.
#[map(name = "XGRE_PATH_SEEN")]
pub static PATH_SEEN: Array<u64> = Array::with_max_entries(MAX_PEERS * MAX_PATHS as u32, 0);

/// Each path's last round trip (ns), from the stamp a keepalive of ours
/// came back with: `xgre run` sizes its resequencing and numbering from it.
#[map(name = "XGRE_PATH_RTT")]
pub static PATH_RTT: Array<u64> = Array::with_max_entries(MAX_PEERS * MAX_PATHS as u32, 0);

/// What each peer last announced about numbering its packets, and until
/// when (`announce.rs`).
#[map(name = "XGRE_ANNOUNCED")]
pub static ANNOUNCED: Array<PeerAnnounce> = Array::with_max_entries(MAX_PEERS, 0);

/// Flows that sent a datagram too big to be light, by flow hash: when
/// last (`light.rs`).
#[map(name = "XGRE_BULK_FLOWS")]
pub static BULK_FLOWS: LruHashMap<u32, u64> = LruHashMap::with_max_entries(MAX_BULK_FLOWS, 0);

/// Bytes each path has been given, shared by all CPUs (atomic add): what
/// path selection balances by weight.
#[map(name = "XGRE_PATH_BYTES")]
pub static PATH_BYTES: Array<u64> = Array::with_max_entries(MAX_PEERS * MAX_PATHS as u32, 0);

/// `gretap`: inner source MAC -> peer, learned on receive. LRU: a full
/// table forgets the MAC unheard from longest, and that MAC is flooded
/// until it is heard again.
#[map(name = "XGRE_FDB")]
pub static FDB: LruHashMap<FdbKey, FdbEntry> = LruHashMap::with_max_entries(MAX_FDB, 0);

/// Trunk tunnels: VLAN ⇄ key, both ways (`VlanMapKey`).
#[map(name = "XGRE_VLANS")]
pub static VLANS: HashMap<VlanMapKey, u32> = HashMap::with_max_entries(65536, BPF_F_NO_PREALLOC);

/// `arp_suppress`: IP -> MAC per tunnel and VLAN, learned from ARP and ND
/// (and static from the config). LRU: a full table forgets the address
/// unheard from longest, whose requests are then flooded again.
#[map(name = "XGRE_NEIGH")]
pub static NEIGH: LruHashMap<NeighKey, NeighEntry> = LruHashMap::with_max_entries(MAX_NEIGH, 0);

/// What suppression did, per tunnel ifindex.
#[map(name = "XGRE_NEIGH_STAT")]
pub static NEIGH_STATS: PerCpuHashMap<u32, NeighStats> = PerCpuHashMap::with_max_entries(MAX_TUNNELS, 0);

/// Who a flooded or multicast packet is replicated to: per tunnel, every
/// peer (group all zeros) and per configured group. Not preallocated, so a
/// replaced list is freed only after readers are done with it.
#[map(name = "XGRE_FLOOD")]
pub static FLOOD: HashMap<FloodKey, FloodList> = HashMap::with_max_entries(MAX_TUNNELS * 64, BPF_F_NO_PREALLOC);

/// Where outer headers are built (see `encap::header`).
#[map(name = "XGRE_HDR")]
pub static HDR_SCRATCH: PerCpuArray<OuterHdr> = PerCpuArray::with_max_entries(1, 0);

/// Where the inner IP header is read to account for an unfilled TCP/UDP
/// checksum (see `lco.rs`): an IPv6 header's 40 bytes.
#[map(name = "XGRE_LCO_HDR")]
pub static LCO_HDR: PerCpuArray<InnerIpHdr> = PerCpuArray::with_max_entries(1, 0);
