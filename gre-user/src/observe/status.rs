//! What `xgre status` shows, as types: the JSON of `--json` is these,
//! serialized.

use std::{collections::BTreeMap, net::IpAddr};

use gre_common::{PathMtu, PathStats};
use serde::Serialize;

use crate::{
    config::{KeepaliveMode, Mode, Origin, VlanConfig},
    daemon::status::RunStatus,
    datapath::codec::ip16,
    mesh::status::MeshStatus,
};

/// Packets and bytes each way and keepalives, of a path, a peer or a
/// tunnel: the datapath's own per-path counters, summed.
pub type Counters = PathStats;

#[derive(Debug, Serialize)]
pub struct PathStatus {
    pub link: String,
    pub local: IpAddr,
    pub remote: IpAddr,
    pub mac: String,
    pub weight: u32,
    /// `rate` in kbit/s, if set (`weight` is then the derived share).
    pub rate_kbps: Option<u32>,
    pub up: bool,
    /// A backup path (`standby = true`).
    pub standby: bool,
    /// Whether `xgre run` finds the path well (its link up, keepalives
    /// coming back): a backup not in use is idle when healthy, dead when not.
    pub healthy: bool,
    /// The path MTU in force: learnt from an ICMP error, or the link's.
    pub pmtu: Pmtu,
    /// The last round trip a keepalive measured, in ms (none yet: no
    /// `xgre run`, or a peer that does not reflect keepalives).
    pub rtt_ms: Option<f64>,
    /// The peer's fastest path by more than 2 ms of round trip: pure TCP
    /// ACKs take it, and light packets if the peer takes them unnumbered
    /// (`PeerStatus::light`).
    pub fastest: bool,
    /// Too slow to stripe over: a backup while a faster path is up.
    pub slow: bool,
    pub counters: Counters,
}

/// A path's MTU and where it came from.
#[derive(Debug, Serialize)]
pub struct Pmtu {
    /// Outer bytes the path carries.
    pub mtu: u32,
    pub source: PmtuSource,
    /// Who sent the ICMP error (source "icmp").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<IpAddr>,
    /// Seconds until it expires and the link's MTU is tried again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in_s: Option<u64>,
}

/// Where a path MTU came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PmtuSource {
    /// No ICMP error in force: the link's MTU.
    Link,
    /// Learnt from an ICMP "fragmentation needed" / "Packet Too Big".
    Icmp,
}

impl PmtuSource {
    pub fn name(self) -> &'static str {
        match self {
            PmtuSource::Link => "link",
            PmtuSource::Icmp => "icmp",
        }
    }
}

impl Pmtu {
    pub(super) fn of(link_mtu: u32, e: &PathMtu, now: u64) -> Pmtu {
        match e.at(now) {
            Some(m) => Pmtu {
                mtu: m.min(link_mtu.max(1)),
                source: PmtuSource::Icmp,
                from: Some(ip16(e.from)),
                expires_in_s: Some((e.expires_ns - now) / 1_000_000_000),
            },
            None => Pmtu { mtu: link_mtu, source: PmtuSource::Link, from: None, expires_in_s: None },
        }
    }

    /// "pmtu 1400 (icmp from 198.18.2.1, 9m58s left)" or "pmtu 1500".
    pub fn describe(&self) -> String {
        match (self.from, self.expires_in_s) {
            (Some(f), Some(s)) => format!("pmtu {} (icmp from {f}, {}m{:02}s left)", self.mtu, s / 60, s % 60),
            _ => format!("pmtu {}", self.mtu),
        }
    }
}

#[derive(Debug, Serialize, Default)]
pub struct Reorder {
    pub in_order: u64,
    pub out_of_order: u64,
    /// Out of order by more than `late_after` packets.
    pub late: u64,
    pub late_after: u32,
    pub max_displacement: u64,
}

#[derive(Debug, Serialize)]
pub struct PeerStatus {
    pub name: String,
    pub id: u32,
    pub routes: Vec<String>,
    pub paths: Vec<PathStatus>,
    pub counters: Counters,
    /// How `xgre run` judges this peer by keepalives: "auto" (once it has
    /// answered one), "required" or "off".
    pub keepalive: KeepaliveMode,
    /// Receive-side reordering, measured from sequence numbers (tunnels
    /// with `sequence = true`, or a peer announcing its numbers).
    pub reorder: Option<Reorder>,
    /// How the peer says (with its keepalives) that it numbers its packets
    /// to us: "ip id", "gre seq", or nothing. Its numbered packets are
    /// resequenced under `xgre run` unless `resequence = 0`.
    pub announces: Option<&'static str>,
    /// The peer says it keeps what it sends and sends again what this
    /// end's resequencer asks for (`repair`).
    pub resends: bool,
    /// The peer says it takes light packets unnumbered (ICMP, small UDP
    /// datagrams, pure ACKs): they take its fastest path and skip its
    /// resequencer.
    pub light: bool,
    /// "file" (the config file or `map-edit`) or "mesh" (etcd).
    pub origin: Origin,
}

#[derive(Debug, Serialize)]
pub struct LinkStatus {
    pub dev: String,
    pub address: IpAddr,
    pub rx: &'static str,
    pub present: bool,
}

/// A learned MAC address (`gretap`).
#[derive(Debug, Serialize)]
pub struct FdbStatus {
    pub mac: String,
    pub peer: String,
    /// Seconds since a frame from it last arrived (refreshed at most once a
    /// second).
    pub age_s: f64,
    /// Older than the tunnel's aging time: frames to it are flooded.
    pub stale: bool,
    /// Placed by the config (`macs` of a peer): never ages.
    #[serde(rename = "static")]
    pub fixed: bool,
    /// Trunks: the VLAN it was learned in (0 otherwise).
    pub vid: u16,
}

/// ARP/ND suppression of one tunnel (`arp_suppress`).
#[derive(Debug, Default, Serialize)]
pub struct NeighStatus {
    /// ARP requests answered on this host instead of flooded.
    pub arp_answered: u64,
    /// Neighbour Solicitations answered on this host instead of flooded.
    pub nd_answered: u64,
    /// Requests for an address on this host's side, sent to no peer.
    pub kept_local: u64,
    /// Requests for unknown addresses, flooded.
    pub flooded: u64,
    /// Addresses learned or moved since the tunnel came up.
    pub learned: u64,
    /// Entries still valid: behind a peer (answered for), on this side,
    /// and static from the config.
    pub remote: usize,
    pub local: usize,
    #[serde(rename = "static")]
    pub fixed: usize,
}

/// Who a multicast group is replicated to (`gre` mode `[[group]]`).
#[derive(Debug, Serialize)]
pub struct GroupStatus {
    pub address: IpAddr,
    pub peers: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct TunnelStatus {
    pub name: String,
    pub ifindex: u32,
    pub device_present: bool,
    pub mode: Mode,
    pub key: Option<u32>,
    /// NVGRE Virtual Subnet ID.
    pub vsid: Option<u32>,
    /// Trunks: VLAN ⇄ key pairs, and the key of untagged frames.
    pub vlans: Vec<VlanConfig>,
    pub native_key: Option<u32>,
    /// `gretap`: the learned forwarding table, by MAC.
    pub fdb: Vec<FdbStatus>,
    /// `arp_suppress`: what it did and knows.
    pub neigh: Option<NeighStatus>,
    pub groups: Vec<GroupStatus>,
    pub sequence: bool,
    /// Numbered in the outer IPv4 ID (`ip_id_sequence`).
    pub ip_id_sequence: bool,
    /// Numbered in the outer IPv4 ID without `ip_id_sequence`, because a
    /// peer stripes over unequal paths (`Config::auto_ip_id_sequence`), or
    /// `xgre run` found its paths to differ in delay or one to lose.
    pub ip_id_sequence_auto: bool,
    pub checksum: bool,
    /// Whether `ip -s link` counts the tunnel's traffic.
    pub device_counters: bool,
    pub mtu: Option<u32>,
    pub links: Vec<LinkStatus>,
    pub peers: Vec<PeerStatus>,
    pub counters: Counters,
    /// `[mesh]`: the etcd connection as `xgre run` last saw it.
    pub mesh: Option<MeshStatus>,
    /// What `xgre run` resequenced and repaired, as it last said.
    pub run: Option<RunStatus>,
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub tunnels: Vec<TunnelStatus>,
    /// Drops by reason, for the whole namespace: a malformed packet is
    /// dropped before it can be told which tunnel it meant.
    pub drops: BTreeMap<&'static str, u64>,
    /// Path MTU discovery and fragment events (`PmtuEvent`), for the whole
    /// namespace.
    pub pmtu_events: BTreeMap<&'static str, u64>,
    /// Kernel memory of the namespace's maps.
    pub map_memory_bytes: u64,
    /// The datapath's programs in the kernel, and what verifying each cost.
    pub programs: Vec<ProgramStatus>,
}

#[derive(Debug, Serialize)]
pub struct ProgramStatus {
    pub name: &'static str,
    pub id: u32,
    /// Instructions the verifier walked (`bpf_prog_info.verified_insns`),
    /// of its limit of 1,000,000.
    pub verified_insns: u32,
}
