//! Pure TCP ACKs: segments with no data and none of SYN, FIN or RST. Each
//! acknowledges everything before it, so their order means nothing to TCP.
//! Where a peer's paths differ in delay, the transmit side sends them over
//! the fastest path (`PathFlags::FASTEST`), unnumbered to a peer that
//! takes them so (as other light packets, `crate::light`), and the
//! receiver delivers them at once: held behind the slow path, they would
//! add its delay to every round trip of the stream they acknowledge.

/// TCP's ACK flag, and the flags that make a segment more than an ACK.
const ACK: u8 = 0x10;
const SYN_FIN_RST: u8 = 0x07;

/// Whether a TCP segment of `ip_payload` bytes (its IP packet less the IP
/// headers), whose header's 13th and 14th bytes (data offset, flags) are
/// `off_flags`, is a pure ACK.
#[inline(always)]
pub fn pure_ack(ip_payload: u16, off_flags: [u8; 2]) -> bool {
    let header = (off_flags[0] >> 4) as u16 * 4;
    header >= 20 && ip_payload == header && off_flags[1] & ACK != 0 && off_flags[1] & SYN_FIN_RST == 0
}

/// Whether an Ethernet frame carries a pure TCP ACK: over IPv4 not
/// fragmented, over IPv6 with TCP as the first next header.
pub fn frame_is_pure_ack(frame: &[u8]) -> bool {
    const ETH: usize = 14;
    let at = |i: usize| frame.get(i).copied().unwrap_or(0);
    let word = |i: usize| u16::from_be_bytes([at(i), at(i + 1)]);
    let tcp = |start: usize, payload: u16| {
        let (Some(&a), Some(&b)) = (frame.get(start + 12), frame.get(start + 13)) else { return false };
        pure_ack(payload, [a, b])
    };
    match word(12) {
        0x0800 => {
            let ihl = (at(ETH) & 0x0f) as usize * 4;
            let unfragmented = word(ETH + 6) & 0x3fff == 0;
            ihl >= 20 && at(ETH + 9) == 6 && unfragmented && tcp(ETH + ihl, word(ETH + 2).wrapping_sub(ihl as u16))
        }
        0x86dd => at(ETH + 6) == 6 && tcp(ETH + 40, word(ETH + 4)),
        _ => false,
    }
}
