//! Repair between xgre peers: a receiver whose resequencing window has
//! waited a while for a number asks the sender for it, over its least
//! lossy path, and a sender that keeps its recent numbered packets (it
//! says so in its keepalives, `ANNOUNCE_REPAIR`) sends that one again over
//! its own least lossy path. A loss on one path is then mended within a
//! round trip of another, before TCP sees a gap.
//!
//! The request is GRE from the receiver's outer address to the sender's,
//! with the tunnel's key and protocol type `PROTO_REPAIR`; the sender's
//! receive program passes it to the stack (only from a configured peer's
//! path), where `xgre run` reads it from a raw GRE socket.

/// GRE protocol type of a repair request: IEEE 802's first local
/// experimental EtherType, which no tunnel carries as a payload.
pub const PROTO_REPAIR: u16 = 0x88b5;

/// Most numbers one request asks for.
pub const MAX_ASK: usize = 64;

/// What follows the request's GRE header: a magic, how many numbers,
/// then the numbers (32 bits each, network order; an IPv4 ID's low 16
/// bits are what count).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RepairAsk {
    /// `RepairAsk::MAGIC`.
    pub magic: [u8; 4],
    pub count: [u8; 2],
    pub _reserved: [u8; 2],
}

impl RepairAsk {
    pub const LEN: usize = core::mem::size_of::<RepairAsk>();
    /// "xgrr"
    pub const MAGIC: u32 = 0x7867_7272;

    /// The request's payload for `seqs` (the first `MAX_ASK` of them)
    /// into `out`; how many bytes.
    pub fn write(seqs: &[u32], out: &mut [u8]) -> usize {
        let n = seqs.len().min(MAX_ASK).min(out.len().saturating_sub(Self::LEN) / 4);
        out[..4].copy_from_slice(&Self::MAGIC.to_be_bytes());
        out[4..6].copy_from_slice(&(n as u16).to_be_bytes());
        out[6..8].fill(0);
        for (i, s) in seqs[..n].iter().enumerate() {
            out[Self::LEN + 4 * i..Self::LEN + 4 * i + 4].copy_from_slice(&s.to_be_bytes());
        }
        Self::LEN + 4 * n
    }

    /// The numbers a request's payload asks for; None if it is not one
    /// (wrong magic, a count its length does not hold, or more than
    /// `MAX_ASK`).
    pub fn parse(payload: &[u8]) -> Option<impl Iterator<Item = u32> + '_> {
        if payload.len() < Self::LEN || payload[..4] != Self::MAGIC.to_be_bytes() {
            return None;
        }
        let n = u16::from_be_bytes([payload[4], payload[5]]) as usize;
        if n > MAX_ASK || payload.len() < Self::LEN + 4 * n {
            return None;
        }
        Some(payload[Self::LEN..Self::LEN + 4 * n].chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    #[test]
    fn a_request_carries_its_numbers_and_nothing_else_parses_as_one() {
        let mut buf = [0u8; 512];
        let n = RepairAsk::write(&[7, 0xffff_0001, 9], &mut buf);
        assert_eq!(n, 8 + 12);
        assert_eq!(&buf[..8], &[0x78, 0x67, 0x72, 0x72, 0, 3, 0, 0]);
        assert_eq!(RepairAsk::parse(&buf[..n]).unwrap().collect::<Vec<_>>(), [7, 0xffff_0001, 9]);
        assert!(RepairAsk::parse(&buf[..n - 1]).is_none(), "a count its length does not hold");
        let mut other = buf;
        other[0] = b'X';
        assert!(RepairAsk::parse(&other[..n]).is_none(), "another magic");
        let many: Vec<u32> = (0..100).collect();
        let n = RepairAsk::write(&many, &mut buf);
        assert_eq!(RepairAsk::parse(&buf[..n]).unwrap().count(), MAX_ASK, "at most MAX_ASK per request");
        let mut too_many = buf;
        too_many[4..6].copy_from_slice(&65u16.to_be_bytes());
        assert!(RepairAsk::parse(&too_many).is_none());
    }
}
