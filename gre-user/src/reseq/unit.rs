//! What the resequencer orders: an inner Ethernet frame as a receive
//! program handed it over, one packet or a TCP GSO packet. A GSO packet
//! (the sender's whole, or merged by GRO on the way in) stands for as many
//! wire packets as it has segments, and so for as many numbers: the sender
//! numbered them one by one in the outer IPv4 ID, which GSO counts up.

use super::{coalesce::tcp_payload, window::Frame};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Unit {
    pub bytes: Vec<u8>,
    /// Its segments' payload (the MSS), 0 for one packet.
    pub gso_size: u16,
    numbers: u32,
}

impl Unit {
    /// One packet.
    #[cfg(test)]
    pub fn one(bytes: Vec<u8>) -> Unit {
        Unit { bytes, gso_size: 0, numbers: 1 }
    }

    /// A packet the kernel handed over with `gso_size` (0: not GSO): as
    /// many numbers as its TCP payload makes segments of that size. Only
    /// a layout `coalesce` takes (IPv4 without options, IPv6 without
    /// extension headers) counts so; the receive programs hand no other
    /// GSO packet over.
    pub fn gso(bytes: Vec<u8>, gso_size: u16) -> Unit {
        // Parsed only for a GSO packet: every other frame is one number.
        let payload = if gso_size == 0 { None } else { tcp_payload(&bytes) };
        let numbers = payload.map_or(1, |p| p.div_ceil(gso_size as usize).max(1) as u32);
        Unit { bytes, gso_size: if numbers > 1 { gso_size } else { 0 }, numbers }
    }
}

impl Frame for Unit {
    fn numbers(&self) -> u64 {
        self.numbers as u64
    }

    fn is_pure_ack(&self) -> bool {
        self.numbers == 1 && gre_common::ack::frame_is_pure_ack(&self.bytes)
    }

    fn is_none(&self) -> bool {
        self.bytes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv4 TCP frame with `payload` bytes after a 32-byte TCP header.
    fn tcp4(payload: usize) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 32 + payload];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[16..18].copy_from_slice(&((20 + 32 + payload) as u16).to_be_bytes());
        f[23] = 6;
        f[14 + 20 + 12] = 8 << 4;
        f
    }

    #[test]
    fn a_gso_packet_holds_a_number_per_segment_and_the_last_may_be_short() {
        assert_eq!(Unit::gso(tcp4(8 * 1448), 1448).numbers(), 8);
        assert_eq!(Unit::gso(tcp4(7 * 1448 + 1), 1448).numbers(), 8);
        assert_eq!(Unit::gso(tcp4(1448), 1448), Unit::one(tcp4(1448)), "one segment is one packet");
        assert_eq!(Unit::gso(tcp4(3000), 0).numbers(), 1, "not GSO");
        let mut udp = tcp4(3000);
        udp[23] = 17;
        assert_eq!(Unit::gso(udp, 1448).numbers(), 1, "only TCP is numbered in segments");
    }
}
