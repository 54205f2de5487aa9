//! What one program hands the next beside the packet itself.
//!
//! Both hand-offs exist so that the kernel's veth driver carries the packet
//! through the tunnel device's own transmit or receive path, where it counts
//! it in the device's statistics (`ip -s link`, `/sys/class/net/*/statistics`,
//! which BPF cannot write).

/// XDP metadata in front of a frame XDP decapsulated: which tunnel it is
/// for. The link's TC ingress (`xgre_rx_handoff`) reads it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HandoffMeta {
    /// `HandoffMeta::MAGIC`: anything else in front of a frame is not ours.
    pub magic: u32,
    /// The tunnel device, or 0: send the frame back out of the link (a
    /// reflected keepalive).
    pub tunnel_ifindex: u32,
    /// The tunnel device's hidden veth end.
    pub peer_ifindex: u32,
}

impl HandoffMeta {
    pub const LEN: usize = core::mem::size_of::<HandoffMeta>();
    /// "xgre"
    pub const MAGIC: u32 = 0x7867_7265;
}

/// What XDP adds behind `HandoffMeta` when the frame carries an RFC 2890
/// sequence number, so the hand-off can resequence it. Behind, not in
/// front: a hand-off of an older build reads the first `HandoffMeta::LEN`
/// bytes and is not misled during a hitless upgrade.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HandoffSeq {
    /// `HandoffSeq::MAGIC`.
    pub magic: u32,
    pub peer_id: u32,
    pub seq: u32,
    /// Which of the peer's paths it came over (the resequencer evens out
    /// the paths' delays).
    pub path: u32,
}

impl HandoffSeq {
    pub const LEN: usize = core::mem::size_of::<HandoffSeq>();
    /// "xseq"
    pub const MAGIC: u32 = 0x7873_6571;
}

/// The transmit decision, made on the tunnel device's TC egress
/// (`xgre_tx`) and carried in the skb's control block (`__sk_buff.cb`)
/// through the veth pair to its hidden end's TC ingress (`xgre_tx_send`),
/// which encapsulates and sends. Deciding before the veth hop lets a packet
/// with nowhere to go be dropped where veth counts it as the device's
/// tx_dropped; encapsulating after it lets veth count the inner packet, as
/// Linux's ip_gre counts.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxDecision {
    /// `TxDecision::MAGIC` or'ed with one of `TX_UNICAST`, `TX_FLOOD`,
    /// `TX_DROP`.
    pub kind: u32,
    pub tunnel_ifindex: u32,
    /// Unicast: the peer. Flood: the peer that gets no copy (or `u32::MAX`).
    pub peer: u32,
    /// Unicast: the path index chosen by striping.
    pub path: u32,
    /// The GRE protocol type (high 16 bits), `TX_CLEAR_DF`, `TX_UNNUMBERED`, and the
    /// DSCP/ECN byte to copy (low 8).
    pub proto_tos: u32,
}

/// Words of `__sk_buff.cb`, all of which `TxDecision` fills.
pub const TX_DECISION_WORDS: usize = 5;
const _: () = assert!(core::mem::size_of::<TxDecision>() == TX_DECISION_WORDS * 4);

pub const TX_UNICAST: u32 = 1;
pub const TX_FLOOD: u32 = 2;
/// Counted as dropped already; the hidden end discards it should veth let
/// it through.
pub const TX_DROP: u32 = 3;

/// In `TxDecision::proto_tos`: too big for its path, the packet leaves
/// with DF clear, for the underlay to fragment.
pub const TX_CLEAR_DF: u32 = 1 << 8;
/// In `TxDecision::proto_tos`: a light packet (a pure TCP ACK, ICMP, a
/// small UDP datagram: `crate::light`) to a peer that takes them
/// unnumbered; it leaves without a number (`crate::reseq::is_number`).
pub const TX_UNNUMBERED: u32 = 1 << 9;

impl TxDecision {
    /// "xt" in the high half; the kind in the low.
    pub const MAGIC: u32 = 0x7874_0000;
    const KIND_MASK: u32 = 0xffff;

    #[inline(always)]
    pub fn to_words(self) -> [u32; TX_DECISION_WORDS] {
        [self.kind, self.tunnel_ifindex, self.peer, self.path, self.proto_tos]
    }

    #[inline(always)]
    pub fn from_words(w: &[u32; TX_DECISION_WORDS]) -> TxDecision {
        TxDecision { kind: w[0], tunnel_ifindex: w[1], peer: w[2], path: w[3], proto_tos: w[4] }
    }

    /// The kind, or None when the words are not a decision of ours (a
    /// packet that did not come through `xgre_tx`).
    #[inline(always)]
    pub fn kind(&self) -> Option<u32> {
        (self.kind & !Self::KIND_MASK == Self::MAGIC).then_some(self.kind & Self::KIND_MASK)
    }

    #[inline(always)]
    pub fn proto(&self) -> u16 {
        (self.proto_tos >> 16) as u16
    }

    #[inline(always)]
    pub fn clear_df(&self) -> bool {
        self.proto_tos & TX_CLEAR_DF != 0
    }

    #[inline(always)]
    pub fn unnumbered(&self) -> bool {
        self.proto_tos & TX_UNNUMBERED != 0
    }

    #[inline(always)]
    pub fn tos(&self) -> u8 {
        self.proto_tos as u8
    }
}
