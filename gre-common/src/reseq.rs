//! Resequencing (`resequence` under `xgre run`): the receive programs hand
//! numbered packets from a peer to `xgre run` instead of the tunnel device
//! (XDP into an AF_XDP socket of the link's, TC through a tap device), and
//! `xgre run` delivers them in sequence-number order. BPF cannot hold a
//! packet; a process can.

/// `XGRE_RESEQ_LINK`, by link ifindex: the link's XDP receive hands
/// `tunnel_ifindex`'s numbered frames straight to its resequencer's AF_XDP
/// sockets, one per receive queue, in slots `base..base + queues` of
/// `XGRE_RESEQ_XSK`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ReseqLink {
    pub tunnel_ifindex: u32,
    pub base: u32,
    pub queues: u32,
    pub _pad: u32,
}

#[cfg(feature = "user")]
crate::aya_pod!(ReseqLink);

/// In front of each frame handed to the resequencer: whose packet it
/// is, its RFC 2890 sequence number and the path it came over. The inner
/// Ethernet frame follows.
/// In front, not behind: the tap completes a partial TCP/UDP checksum up to
/// the frame's end, and a trailer would be summed with it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReseqHdr {
    /// `ReseqHdr::MAGIC`, in network order like the rest.
    pub magic: [u8; 4],
    pub peer_id: [u8; 4],
    pub seq: [u8; 4],
    pub path: [u8; 4],
}

impl ReseqHdr {
    pub const LEN: usize = core::mem::size_of::<ReseqHdr>();
    /// "xrsq"
    pub const MAGIC: u32 = 0x7872_7371;

    #[inline(always)]
    pub fn new(peer_id: u32, seq: u32, path: u32) -> ReseqHdr {
        ReseqHdr { magic: Self::MAGIC.to_be_bytes(), peer_id: peer_id.to_be_bytes(), seq: seq.to_be_bytes(), path: path.to_be_bytes() }
    }

    /// The header at the start of `frame`, if one of ours is there.
    pub fn parse(frame: &[u8]) -> Option<ReseqHdr> {
        let b: &[u8; 16] = frame.get(..Self::LEN)?.try_into().ok()?;
        let w = |i: usize| [b[i], b[i + 1], b[i + 2], b[i + 3]];
        let h = ReseqHdr { magic: w(0), peer_id: w(4), seq: w(8), path: w(12) };
        (u32::from_be_bytes(h.magic) == Self::MAGIC).then_some(h)
    }

    #[inline(always)]
    pub fn peer_id(&self) -> u32 {
        u32::from_be_bytes(self.peer_id)
    }

    #[inline(always)]
    pub fn seq(&self) -> u32 {
        u32::from_be_bytes(self.seq)
    }

    #[inline(always)]
    pub fn path(&self) -> u32 {
        u32::from_be_bytes(self.path)
    }
}

/// Numbers whose low 16 bits are 0 are never given (the transmit side
/// skips them): one of them marks a packet as not numbered, a light one
/// (a pure TCP ACK, `crate::light`) to a peer that announced
/// `ANNOUNCE_UNNUMBERED`. 16 bits, because that is all the outer IPv4 ID
/// holds. Such a packet needs no place in the order and must not wait for
/// the slow path.
#[inline(always)]
pub const fn is_number(seq: u32) -> bool {
    seq as u16 != 0
}

/// Largest `resequence` hold, in milliseconds: TCP's own timers start near
/// 200 ms, and a buffer holding longer only delays what it cannot save.
pub const MAX_RESEQUENCE_MS: u32 = 100;

/// The hold of `resequence` left unset, for peers that announce numbering:
/// at 300+100 Mbit/s, 2 ms gave up on up to 329 gaps a run (each a
/// spurious retransmit) and 5 ms on none (`cargo xtask bench agg --rates
/// 300,100 --resequence 2,5`).
pub const DEFAULT_RESEQUENCE_MS: u32 = 5;
