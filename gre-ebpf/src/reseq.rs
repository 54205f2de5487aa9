//! Resequencing: under `xgre run` with `resequence`, a decapsulated packet
//! that carries a sequence number goes to the tap `xgre run` reads, with
//! its peer and number in front (`ReseqHdr`), instead of to the tunnel
//! device. `xgre run` delivers it in order, through the same hidden veth
//! end, so the device still counts it.

use aya_ebpf::{
    helpers::generated::{bpf_check_mtu, bpf_skb_change_head},
    programs::TcContext,
};
use gre_common::{DropReason, ReseqHdr};

use crate::kernel::{redirect, skb_of, Lookup};
use crate::maps::RESEQ_TAP;

/// Hand the packet (its inner frame at the start) to the tunnel's
/// resequencer. None: deliver it as usual, because nothing resequences
/// this tunnel, its tap is gone (`xgre run` ended without clearing the
/// entry), or the packet is a GSO one, which the tap would segment with
/// our header taken for the MAC header.
#[inline(always)]
pub fn hand_over(ctx: &TcContext, tunnel_ifindex: u32, peer_id: u32, seq: u32, path: u32) -> Option<Result<i32, DropReason>> {
    let tap = *RESEQ_TAP.lookup(tunnel_ifindex)?;
    if tap == 0 || skb_of(ctx).gso_segs > 1 {
        return None;
    }
    // Only to see whether the device is still there (-ENODEV when not).
    let mut mtu = 0u32;
    // SAFETY: the skb is the context the kernel passed to this run.
    if unsafe { bpf_check_mtu(ctx.skb.skb.cast(), tap, &mut mtu, 0, 0) } < 0 {
        return None;
    }
    // SAFETY: as above.
    if unsafe { bpf_skb_change_head(ctx.skb.skb, ReseqHdr::LEN as u32, 0) } != 0 {
        return None;
    }
    // From here the frame has our header's room in front: it goes to the
    // tap or nowhere.
    if ctx.store(0, &ReseqHdr::new(peer_id, seq, path), 0).is_err() {
        return Some(Err(DropReason::HelperFailed));
    }
    // TC_ACT_REDIRECT, or TC_ACT_SHOT for a bad flag: a verdict either way.
    Some(Ok(redirect(tap, 0)))
}
