//! Why a packet was dropped. Each reason is one slot of the per-CPU drop
//! counter array, so `xgre status` can say what was thrown away and why.

#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::IntoStaticStr, strum::EnumIter, strum::EnumCount, strum::FromRepr)]
#[strum(serialize_all = "snake_case")]
pub enum DropReason {
    /// GRE header truncated (flags announce a field the packet does not hold).
    Truncated = 0,
    /// Reserved0 bits 1-5 set (RFC 2784 section 2.3 / RFC 2890).
    ReservedBits = 1,
    /// GRE version is not 0.
    BadVersion = 2,
    /// Protocol type we do not carry in this tunnel's mode.
    UnknownProto = 3,
    /// The C bit is set and the checksum does not verify.
    BadChecksum = 4,
    /// No tunnel takes this key: missing, unexpected or wrong key.
    KeyMismatch = 5,
    /// The outer source is not a configured peer of the tunnel.
    UnknownPeer = 6,
    /// Outer fragment (IPv4 MF or offset, IPv6 fragment header) from an
    /// address pair no path uses.
    Fragment = 7,
    /// Outer IPv4 header malformed (bad IHL, total length).
    BadOuter = 8,
    /// Transmit: no peer route for the inner destination.
    NoRoute = 9,
    /// Transmit: the peer has no usable path.
    NoPath = 10,
    /// Transmit: inner packet is not of a type this tunnel carries.
    TxUnsupported = 11,
    /// Transmit: a GSO packet on a tunnel that stamps per-packet fields
    /// (sequence number or checksum) that GSO would copy to every segment.
    TxGsoPerPacket = 12,
    /// A helper (adjust_room, load_bytes, ...) failed.
    HelperFailed = 13,
    /// Packet is too long to checksum (bounded loop).
    TooLong = 14,
    /// Transmit: the frame would go back to the peer it came from (its
    /// source MAC was learned from that peer).
    SplitHorizon = 15,
    /// The outer IPv4 header checksum does not verify (RFC 1122 3.2.1.2).
    BadIpChecksum = 16,
    /// An outer IPv6 address is IPv4-mapped, which never appears on the
    /// wire (RFC 4291 2.5.5.2): a way around IPv4 filtering into an IPv4
    /// tunnel.
    MappedAddress = 17,
    /// Transmit, on the tunnel device's hidden end: a packet without the
    /// decision `xgre_tx` hands over (something other than the tunnel
    /// device sent it, or a qdisc on the tunnel device overwrote the skb's
    /// control block).
    TxNoDecision = 18,
    /// Transmit, trunk tunnel: the frame's VLAN has no key.
    VlanUnknown = 19,
    /// Transmit, trunk tunnel: an untagged frame and no native key.
    Untagged = 20,
    /// Transmit: bigger than its path's MTU, and neither an ICMP error nor
    /// fragmentation can help (an IPv6 underlay carrying a frame that is
    /// not IP, or a VLAN-tagged one).
    TooBig = 21,
}

/// Reasons in use.
pub const DROP_REASONS: usize = <DropReason as strum::EnumCount>::COUNT;
/// Slots of the drop counter map: room for reasons a later release adds
/// without changing the map layout.
pub const DROP_SLOTS: usize = 64;
const _: () = assert!(DROP_REASONS <= DROP_SLOTS, "more drop reasons than counter slots");

impl crate::Slots for DropReason {}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::Slots;
    use std::vec::Vec;

    #[test]
    fn names_are_the_stable_interface_and_slots_follow_the_order() {
        let names: Vec<&str> = DropReason::all().map(DropReason::name).collect();
        assert_eq!(
            names,
            [
                "truncated",
                "reserved_bits",
                "bad_version",
                "unknown_proto",
                "bad_checksum",
                "key_mismatch",
                "unknown_peer",
                "fragment",
                "bad_outer",
                "no_route",
                "no_path",
                "tx_unsupported",
                "tx_gso_per_packet",
                "helper_failed",
                "too_long",
                "split_horizon",
                "bad_ip_checksum",
                "mapped_address",
                "tx_no_decision",
                "vlan_unknown",
                "untagged",
                "too_big",
            ]
        );
        assert!(DropReason::all().enumerate().all(|(i, r)| r as usize == i));
    }
}
