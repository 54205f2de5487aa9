//! Path MTU discovery over the underlay, as Linux's ip_gre does it
//! (net/ipv4/ip_tunnel.c `tnl_update_pmtu`): the outer header leaves with
//! DF set, ICMP "fragmentation needed" (IPv4) and "Packet Too Big" (IPv6)
//! errors that quote one of our outer headers lower the path's MTU for a
//! while, and an inner packet too big for it is answered with the same
//! error, addressed to its sender.

use bytemuck::{Pod, Zeroable};

/// Seconds a learnt path MTU holds before the link's MTU is tried again:
/// Linux's `net.ipv4.route.mtu_expires` (10 minutes).
pub const DEFAULT_PMTU_AGE: u32 = 600;
/// The lowest outer MTU an IPv4 ICMP error can set: Linux's
/// `net.ipv4.route.min_pmtu` (512 + 20 + 20). A lower claim is raised to it.
pub const MIN_PMTU_V4: u32 = 552;
/// The lowest MTU of an IPv6 link (RFC 8200 section 5).
pub const MIN_PMTU_V6: u32 = 1280;

/// What one path learnt of its path MTU. One slot per (peer id, path
/// index), as `PathStats`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
#[cfg_attr(feature = "user", derive(serde::Serialize))]
pub struct PathMtu {
    /// Outer MTU learnt (0: none; the link's MTU holds).
    pub mtu: u32,
    pub _pad: u32,
    /// When it stops holding (bpf_ktime_get_ns).
    pub expires_ns: u64,
    /// Who sent the ICMP error (IPv4-mapped when IPv4).
    pub from: [u8; 16],
}

impl PathMtu {
    /// The MTU in force at `now_ns`, or None: the link's.
    #[inline(always)]
    pub fn at(&self, now_ns: u64) -> Option<u32> {
        (self.mtu != 0 && now_ns < self.expires_ns).then_some(self.mtu)
    }
}

/// An outer address pair some path of some tunnel uses: fragments from
/// `remote` to `local` are reassembled, others dropped. The value counts
/// the receive paths that use it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct OuterPair {
    pub local: [u8; 16],
    pub remote: [u8; 16],
}

/// What the datapath did about path MTUs and fragments. Each is one slot
/// of a per-CPU counter array (`XGRE_PMTU_EVENTS`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::IntoStaticStr, strum::EnumIter, strum::EnumCount, strum::FromRepr)]
#[strum(serialize_all = "snake_case")]
pub enum PmtuEvent {
    /// An ICMP error quoting one of our packets lowered a path's MTU.
    IcmpLearned = 0,
    /// An ICMP "fragmentation needed" or "Packet Too Big" that quotes no
    /// packet of ours (no such tunnel, path or outer addresses): ignored.
    IcmpNotOurs = 1,
    /// One of ours, but its MTU is no lower than the path's, or no lower
    /// than the packet it quotes: ignored.
    IcmpNotLower = 2,
    /// An inner IPv4 packet with DF too big for its path was answered with
    /// "fragmentation needed".
    FragNeededSent = 3,
    /// An inner IPv6 packet too big for its path was answered with
    /// "Packet Too Big".
    TooBigSent = 4,
    /// A packet too big for its path left with DF clear, for the underlay
    /// to fragment (an inner IPv4 packet without DF, or a frame no ICMP
    /// error can answer).
    DfCleared = 5,
    /// An outer fragment from a configured peer, passed to the kernel to
    /// reassemble (`xgre run` delivers the whole packets).
    FragmentIn = 6,
}

/// Events in use.
pub const PMTU_EVENTS: usize = <PmtuEvent as strum::EnumCount>::COUNT;
/// Slots of the event counter map.
pub const PMTU_EVENT_SLOTS: usize = 16;
const _: () = assert!(PMTU_EVENTS <= PMTU_EVENT_SLOTS);

impl crate::Slots for PmtuEvent {}
