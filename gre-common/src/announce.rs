//! Numbering announcements: how an xgre peer says that the packets it
//! sends carry numbers, so that a receiver resequences them without being
//! told to in its config (`resequence` unset). Another GRE
//! implementation's outer IPv4 IDs are not numbers, and a receiver that
//! took them for numbers would hold its packets for gaps that are not
//! there: so nothing is resequenced by default unless its sender said so.
//!
//! The announcement rides on the sender's keepalives, behind the inner GRE
//! header (the part the receiver reflects), inside the inner packet's
//! length: an endpoint that reflects the probe by routing the inner packet
//! carries them back, and one that is not xgre sees an ordinary keepalive
//! with a payload; an xgre receive program notes the
//! announcement for the peer it came from (`XGRE_ANNOUNCED`) before
//! reflecting it. It lapses unless renewed: a sender that stops numbering,
//! or stops running, is taken at its word within `ttl_ms`.

/// Behind the inner GRE header of a keepalive from `xgre run`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Announce {
    /// `Announce::MAGIC`, network order like the rest.
    pub magic: [u8; 4],
    /// `ANNOUNCE_*` bits.
    pub flags: [u8; 4],
    /// How long the receiver may rely on it, in milliseconds: a few of the
    /// sender's keepalive intervals.
    pub ttl_ms: [u8; 4],
}

/// The sender numbers its packets to this receiver in the outer IPv4 ID
/// (`ip_id_sequence`, set or automatic).
pub const ANNOUNCE_IPID: u32 = 1 << 0;
/// The sender numbers its packets with RFC 2890 sequence numbers
/// (`sequence = true`).
pub const ANNOUNCE_GRE_SEQ: u32 = 1 << 1;
/// The sender keeps its recent numbered packets and sends one again when
/// the receiver asks for it (`repair`).
pub const ANNOUNCE_REPAIR: u32 = 1 << 2;
/// The sender runs repair: it hears requests, and one for a packet it did
/// not keep, a report of loss, starts it keeping. A receiver asks such a
/// sender for what its gaps miss before `ANNOUNCE_REPAIR`; another not at
/// all (it would only drop the requests).
pub const ANNOUNCE_REPAIR_READY: u32 = 1 << 3;
/// The sender's receive side takes light packets unnumbered (pure TCP
/// ACKs, `crate::light`; `crate::reseq::is_number`): the receiver may
/// send them so, and they reach the sender's stack at once, without
/// passing through its resequencer.
pub const ANNOUNCE_UNNUMBERED: u32 = 1 << 4;
/// The bits that say the sender numbers its packets.
pub const ANNOUNCE_NUMBERS: u32 = ANNOUNCE_IPID | ANNOUNCE_GRE_SEQ;

impl Announce {
    pub const LEN: usize = core::mem::size_of::<Announce>();
    /// "xgan"
    pub const MAGIC: u32 = 0x7867_616e;

    pub fn new(flags: u32, ttl_ms: u32) -> Announce {
        Announce { magic: Self::MAGIC.to_be_bytes(), flags: flags.to_be_bytes(), ttl_ms: ttl_ms.to_be_bytes() }
    }

    #[inline(always)]
    pub fn is_ours(&self) -> bool {
        u32::from_be_bytes(self.magic) == Self::MAGIC
    }

    #[inline(always)]
    pub fn flags(&self) -> u32 {
        u32::from_be_bytes(self.flags)
    }

    #[inline(always)]
    pub fn ttl_ms(&self) -> u32 {
        u32::from_be_bytes(self.ttl_ms)
    }

    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[..4].copy_from_slice(&self.magic);
        b[4..8].copy_from_slice(&self.flags);
        b[8..].copy_from_slice(&self.ttl_ms);
        b
    }
}

/// The longest an announcement may be relied on, whatever it says: a
/// minute, the longest keepalive interval.
pub const MAX_ANNOUNCE_TTL_MS: u32 = 60_000;

/// `XGRE_ANNOUNCED`, per peer id: what the peer last announced and until
/// when (bpf_ktime_get_ns, CLOCK_MONOTONIC; 0: never).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct PeerAnnounce {
    pub expires_ns: u64,
    pub flags: u32,
    pub _pad: u32,
}

impl PeerAnnounce {
    /// The `ANNOUNCE_*` bits still in force at `now_ns`.
    #[inline(always)]
    pub fn in_force(&self, now_ns: u64) -> u32 {
        if now_ns < self.expires_ns {
            self.flags
        } else {
            0
        }
    }
}

#[cfg(feature = "user")]
crate::aya_pod!(PeerAnnounce);

/// When `xgre run` sent a keepalive (CLOCK_MONOTONIC, ns), behind the
/// announcement if there is one: the probe comes back with it, and the
/// receive program takes the difference to its own clock as the path's
/// round trip (`XGRE_PATH_RTT`). Nothing but the sender reads it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Stamp {
    /// `Stamp::MAGIC`, network order.
    pub magic: [u8; 4],
    pub _pad: [u8; 4],
    /// The sender's clock, its own byte order (only it reads it).
    pub sent_ns: [u8; 8],
}

impl Stamp {
    pub const LEN: usize = core::mem::size_of::<Stamp>();
    /// "xgts"
    pub const MAGIC: u32 = 0x7867_7473;

    pub fn new(sent_ns: u64) -> Stamp {
        Stamp { magic: Self::MAGIC.to_be_bytes(), _pad: [0; 4], sent_ns: sent_ns.to_ne_bytes() }
    }

    pub fn is_ours(&self) -> bool {
        u32::from_be_bytes(self.magic) == Self::MAGIC
    }

    pub fn sent_ns(&self) -> u64 {
        u64::from_ne_bytes(self.sent_ns)
    }

    pub fn to_bytes(self) -> [u8; Self::LEN] {
        bytemuck::cast(self)
    }
}
