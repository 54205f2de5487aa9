//! The sender's recent numbered packets, as they left (outer headers
//! included), kept to be sent again when the peer asks. A ring indexed by
//! the number's low bits: a newer packet takes an older one's slot, and a
//! packet older than `MAX_AGE` is not sent again (its 16-bit IPv4 ID may
//! have wrapped, and the peer's window gave up on it long ago).

use std::time::{Duration, Instant};

/// Slots: 100 ms of packets at 1.5 Gbit/s, 1 s at 100 Mbit/s. Frames are
/// allocated as they come, so an idle store costs nothing.
pub const SLOTS: usize = 16_384;
/// Longest a packet is kept for sending again.
pub const MAX_AGE: Duration = Duration::from_secs(1);

/// How a packet is numbered, which says how much of a number the sender
/// can match: an IPv4 ID is the low 16 bits of the peer's widened number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Numbered {
    IpId,
    GreSeq,
}

#[derive(Default)]
struct Slot {
    peer: u32,
    seq: u32,
    how: Option<Numbered>,
    at: Option<Instant>,
    resent: bool,
    frame: Vec<u8>,
}

pub struct Store {
    slots: Vec<Slot>,
}

impl Default for Store {
    fn default() -> Store {
        Store { slots: (0..SLOTS).map(|_| Slot::default()).collect() }
    }
}

impl Store {
    /// The low 16 bits pick the slot (all an IPv4 ID has), spread by peer.
    fn index(peer: u32, seq: u32) -> usize {
        ((seq & 0xffff) ^ peer.wrapping_mul(0x9e37)) as usize % SLOTS
    }

    /// Keep `frame`, peer `peer`'s packet number `seq`. A second copy of
    /// a packet already kept (a resend passing the capture) is ignored, so
    /// it is never resent twice.
    pub fn put(&mut self, peer: u32, seq: u32, how: Numbered, frame: &[u8], now: Instant) {
        let s = &mut self.slots[Self::index(peer, seq)];
        if s.how == Some(how) && s.peer == peer && s.seq == seq && s.at.is_some_and(|t| now.duration_since(t) < MAX_AGE) {
            return;
        }
        s.peer = peer;
        s.seq = seq;
        s.how = Some(how);
        s.at = Some(now);
        s.resent = false;
        s.frame.clear();
        s.frame.extend_from_slice(frame);
    }

    /// Peer `peer`'s packet `seq` (the receiver's widened number), to send
    /// again: once, and only while it is recent.
    pub fn take(&mut self, peer: u32, seq: u32, now: Instant) -> Option<&mut Vec<u8>> {
        let s = &mut self.slots[Self::index(peer, seq)];
        let same = match s.how? {
            Numbered::IpId => s.seq as u16 == seq as u16,
            Numbered::GreSeq => s.seq == seq,
        };
        if !same || s.peer != peer || s.resent || s.at.is_none_or(|t| now.duration_since(t) >= MAX_AGE) {
            return None;
        }
        s.resent = true;
        Some(&mut s.frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_packet_is_given_once_while_recent_and_only_for_its_peer_and_number() {
        let (mut s, t0) = (Store::default(), Instant::now());
        s.put(1, 7, Numbered::IpId, b"seven", t0);
        s.put(2, 7, Numbered::GreSeq, b"other peer", t0);
        assert!(s.take(1, 8, t0).is_none(), "another number");
        assert!(s.take(3, 7, t0).is_none(), "another peer");
        // The receiver widens IPv4 IDs to 32 bits; the low 16 are the ID.
        assert_eq!(s.take(1, 0x0003_0007, t0).map(|f| f.clone()), Some(b"seven".to_vec()));
        assert!(s.take(1, 7, t0).is_none(), "sent again once only");
        assert!(s.take(2, 0x0001_0007, t0).is_none(), "a sequence number matches whole");
        s.put(2, 7, Numbered::GreSeq, b"a copy", t0);
        assert_eq!(s.take(2, 7, t0).map(|f| f.clone()), Some(b"other peer".to_vec()), "a second copy does not replace the first");
        s.put(1, 9, Numbered::IpId, b"nine", t0);
        assert!(s.take(1, 9, t0 + MAX_AGE).is_none(), "too old");
        s.put(1, 10, Numbered::IpId, b"ten", t0);
        s.put(1, 10 + SLOTS as u32, Numbered::IpId, b"newer", t0);
        assert!(s.take(1, 10, t0).is_none(), "a newer packet took its slot");
    }
}
