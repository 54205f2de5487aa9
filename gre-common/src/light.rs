//! Light packets: ICMP, and the small UDP datagrams of flows that send no
//! big ones (DNS, voice, games, keepalives). Where a peer's paths differ
//! in delay, a numbered tunnel sends them over the fastest path without a
//! number (to a peer that takes them so, `ANNOUNCE_UNNUMBERED`), and the
//! receiver delivers them at once: numbered, they waited for the slow
//! path like the bulk traffic, and a ping over 5 ms and 40 ms paths took
//! 80 ms where the fast path answers in 10. TCP is never light but for
//! its pure ACKs (`crate::ack`): a connection whose first packets took the
//! fast path would size itself by that round trip (BBR keeps its least
//! for 10 s) and then send a fraction of what the paths carry.

/// The largest light UDP datagram, IP header included: the datagram
/// every IPv4 host must accept (RFC 791), which holds a DNS message of
/// 512 bytes. QUIC's first packets are at least 1,200 bytes (RFC 9000),
/// so a QUIC connection is bulk from its first datagram.
pub const LIGHT_MAX: u32 = 576;

/// A flow that sent a datagram bigger than `LIGHT_MAX` stays bulk for
/// this long after its last one: all its packets numbered, so that a
/// small one never overtakes a big one held for the slow path, and a
/// congestion control keeps measuring one round trip (BBR's least round
/// trip lives 10 s).
pub const BULK_HOLD_NS: u64 = 10_000_000_000;

/// How many flows the transmit side remembers as bulk (an LRU map: a
/// full one forgets the flow quiet longest, whose small datagrams are
/// then light until it sends a big one again).
pub const MAX_BULK_FLOWS: u32 = 16384;

/// Whether a UDP datagram of `ip_len` bytes, of a flow whose last big
/// datagram left at `last_big_ns` (None: none remembered), is light at
/// `now_ns`.
#[inline(always)]
pub fn light_udp(ip_len: u32, last_big_ns: Option<u64>, now_ns: u64) -> bool {
    ip_len <= LIGHT_MAX && last_big_ns.is_none_or(|t| now_ns.saturating_sub(t) >= BULK_HOLD_NS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_datagrams_are_light_unless_their_flow_sent_a_big_one_in_the_last_10_s() {
        let s = 1_000_000_000;
        assert!(light_udp(100, None, 0));
        assert!(light_udp(LIGHT_MAX, None, 0));
        assert!(!light_udp(LIGHT_MAX + 1, None, 0), "QUIC's 1,200-byte first datagram is not");
        assert!(!light_udp(100, Some(5 * s), 14 * s));
        assert!(light_udp(100, Some(5 * s), 15 * s));
    }
}
