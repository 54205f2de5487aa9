//! Types shared by the eBPF datapath (`gre-ebpf`) and the loader (`gre-user`).
//!
//! Everything here is `#[repr(C)]` with explicit padding so both sides agree on
//! the byte layout of every map key and value.
#![no_std]

pub mod ack;
pub mod announce;
pub mod csum;
pub mod drop;
pub mod flags;
pub mod gre;
pub mod handoff;
pub mod light;
pub mod maps;
pub mod names;
pub mod pmtu;
pub mod repair;
pub mod reseq;

pub use announce::{
    Announce, PeerAnnounce, Stamp, ANNOUNCE_GRE_SEQ, ANNOUNCE_IPID, ANNOUNCE_NUMBERS, ANNOUNCE_REPAIR, ANNOUNCE_REPAIR_READY,
    ANNOUNCE_UNNUMBERED, MAX_ANNOUNCE_TTL_MS,
};
pub use drop::DropReason;
pub use flags::{PathFlags, PeerFlags, TunnelFlags};
pub use gre::GreHdr;
pub use handoff::{HandoffMeta, HandoffSeq, TxDecision};
pub use maps::*;
pub use pmtu::{OuterPair, PathMtu, PmtuEvent};
pub use reseq::{ReseqHdr, ReseqLink};

/// An enum whose values are the slots of a per-CPU counter array
/// (`DropReason`, `PmtuEvent`): its stable snake-case names, used by
/// `xgre status`, its JSON and the exporter, and every value in slot order.
pub trait Slots: Copy + Into<&'static str> + strum::IntoEnumIterator {
    fn name(self) -> &'static str {
        self.into()
    }

    fn all() -> Self::Iterator {
        Self::iter()
    }
}
