//! One's complement sums (RFC 1071), shared by the datapath and the
//! loader: the IPv4 header checksum of the packets each of them builds.

/// Fold a one's complement accumulator to 16 bits.
#[inline(always)]
pub fn fold(mut s: u64) -> u16 {
    s = (s & 0xffff_ffff) + (s >> 32);
    s = (s & 0xffff_ffff) + (s >> 32);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s as u16
}

/// Sum of the big-endian 16-bit words of `b` (an even number of bytes),
/// unfolded: header fields read as the wire orders them.
#[inline(always)]
pub fn be_words(b: &[u8]) -> u64 {
    let mut s = 0u64;
    let mut i = 0;
    while i + 1 < b.len() {
        s += u16::from_be_bytes([b[i], b[i + 1]]) as u64;
        i += 2;
    }
    s
}

/// The checksum field for a 20-byte IPv4 header (its checksum field zero).
#[inline(always)]
pub fn ipv4_header(hdr: &[u8; 20]) -> u16 {
    !fold(be_words(hdr))
}
