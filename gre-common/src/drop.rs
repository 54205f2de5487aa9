//! Why a packet was dropped. Each reason is one slot of the per-CPU drop
//! counter array, so `xgre status` can say what was thrown away and why.

#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
    /// Outer IPv4 fragment (MF set or non-zero offset).
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
}

/// Reasons in use.
pub const DROP_REASONS: usize = 18;
/// Slots of the drop counter map: room for reasons a later release adds
/// without changing the map layout.
pub const DROP_SLOTS: usize = 64;

impl DropReason {
    pub const ALL: [DropReason; DROP_REASONS] = [
        DropReason::Truncated,
        DropReason::ReservedBits,
        DropReason::BadVersion,
        DropReason::UnknownProto,
        DropReason::BadChecksum,
        DropReason::KeyMismatch,
        DropReason::UnknownPeer,
        DropReason::Fragment,
        DropReason::BadOuter,
        DropReason::NoRoute,
        DropReason::NoPath,
        DropReason::TxUnsupported,
        DropReason::TxGsoPerPacket,
        DropReason::HelperFailed,
        DropReason::TooLong,
        DropReason::SplitHorizon,
        DropReason::BadIpChecksum,
        DropReason::MappedAddress,
    ];

    /// Stable snake-case name used in `xgre status` and JSON output.
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::ReservedBits => "reserved_bits",
            DropReason::BadVersion => "bad_version",
            DropReason::UnknownProto => "unknown_proto",
            DropReason::BadChecksum => "bad_checksum",
            DropReason::KeyMismatch => "key_mismatch",
            DropReason::UnknownPeer => "unknown_peer",
            DropReason::Fragment => "fragment",
            DropReason::BadOuter => "bad_outer",
            DropReason::NoRoute => "no_route",
            DropReason::NoPath => "no_path",
            DropReason::TxUnsupported => "tx_unsupported",
            DropReason::TxGsoPerPacket => "tx_gso_per_packet",
            DropReason::HelperFailed => "helper_failed",
            DropReason::TooLong => "too_long",
            DropReason::SplitHorizon => "split_horizon",
            DropReason::BadIpChecksum => "bad_ip_checksum",
            DropReason::MappedAddress => "mapped_address",
        }
    }
}
