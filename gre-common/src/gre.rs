//! The GRE header: RFC 2784, with the key and sequence number extensions of
//! RFC 2890.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |C| |K|S| Reserved0       | Ver |         Protocol Type         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |      Checksum (optional)      |       Reserved1 (Optional)    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                         Key (optional)                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                 Sequence Number (Optional)                    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

/// The fixed four bytes of a GRE header. Optional fields follow in the order
/// checksum+reserved1, key, sequence number.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GreHdr {
    /// C, reserved, K, S, Reserved0 (high part).
    pub flags: [u8; 2],
    /// Protocol type of the payload, an EtherType (RFC 2784 section 2.4).
    pub proto: [u8; 2],
}

impl GreHdr {
    pub const LEN: usize = 4;

    /// Checksum present (RFC 2784 section 2.1).
    pub const C: u16 = 0x8000;
    /// Key present (RFC 2890 section 2.1).
    pub const K: u16 = 0x2000;
    /// Sequence number present (RFC 2890 section 2.1).
    pub const S: u16 = 0x1000;
    /// Bits 1 and 4-12: Reserved0 (bit 1 was the routing bit of RFC 1701,
    /// bits 4-5 strict source route and recursion). RFC 2784 section 2.3: a
    /// receiver must discard a packet with any of bits 1-5 set.
    pub const RESERVED_1_5: u16 = 0x4000 | 0x0800 | 0x0400;
    /// Version field, bits 13-15; must be 0.
    pub const VERSION_MASK: u16 = 0x0007;

    pub const PROTO_IPV4: u16 = 0x0800;
    pub const PROTO_IPV6: u16 = 0x86DD;
    /// Transparent Ethernet bridging (gretap).
    pub const PROTO_TEB: u16 = 0x6558;

    #[inline(always)]
    pub const fn new(flags: u16, proto: u16) -> Self {
        Self { flags: flags.to_be_bytes(), proto: proto.to_be_bytes() }
    }

    #[inline(always)]
    pub const fn flags(&self) -> u16 {
        u16::from_be_bytes(self.flags)
    }

    #[inline(always)]
    pub const fn proto(&self) -> u16 {
        u16::from_be_bytes(self.proto)
    }

    #[inline(always)]
    pub const fn version(&self) -> u16 {
        self.flags() & Self::VERSION_MASK
    }

    #[inline(always)]
    pub const fn has_checksum(&self) -> bool {
        self.flags() & Self::C != 0
    }

    #[inline(always)]
    pub const fn has_key(&self) -> bool {
        self.flags() & Self::K != 0
    }

    #[inline(always)]
    pub const fn has_seq(&self) -> bool {
        self.flags() & Self::S != 0
    }

    /// Length of the header including the optional fields its flags announce.
    #[inline(always)]
    pub const fn header_len(&self) -> usize {
        Self::len_for(self.has_checksum(), self.has_key(), self.has_seq())
    }

    /// Length of a header carrying the given optional fields.
    #[inline(always)]
    pub const fn len_for(csum: bool, key: bool, seq: bool) -> usize {
        Self::LEN + 4 * (csum as usize + key as usize + seq as usize)
    }
}

impl GreHdr {
    /// The four fixed bytes as they go on the wire.
    #[inline(always)]
    pub const fn flags_and_proto(&self) -> [u8; 4] {
        [self.flags[0], self.flags[1], self.proto[0], self.proto[1]]
    }
}
