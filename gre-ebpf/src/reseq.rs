//! Resequencing: under `xgre run` with `resequence`, a decapsulated packet
//! that carries a sequence number goes to the tap `xgre run` reads, with
//! its peer and number in front (`ReseqHdr`), instead of to the tunnel
//! device. `xgre run` delivers it in order, through the same hidden veth
//! end, so the device still counts it.
//!
//! The tap is a veth end of `xgre run`'s when it takes frames over AF_XDP
//! (`RESEQ_SLOT` has the tunnel): `xgre_reseq_xsk` on the other end hands
//! them to its socket.

use aya_ebpf::{
    bindings::xdp_action,
    helpers::generated::{bpf_check_mtu, bpf_skb_change_head},
    programs::{TcContext, XdpContext},
};
use gre_common::{DropReason, ReseqHdr};

use crate::kernel::{redirect, skb_of, Lookup};
use crate::maps::{RESEQ_SLOT, RESEQ_TAP, RESEQ_XSK};

/// Hand the packet (its inner frame at the start) to the tunnel's
/// resequencer. None: deliver it as usual, because nothing resequences
/// this tunnel, its tap or socket is gone (`xgre run` ended without
/// clearing the entry), or the packet is a GSO one, which the tap would segment with
/// our header taken for the MAC header.
#[inline(always)]
pub fn hand_over(ctx: &TcContext, tunnel_ifindex: u32, peer_id: u32, seq: u32, path: u32) -> Option<Result<i32, DropReason>> {
    let tap = *RESEQ_TAP.lookup(tunnel_ifindex)?;
    if tap == 0 || skb_of(ctx).gso_segs > 1 {
        return None;
    }
    // Over AF_XDP: the socket closes with its process, the veth does not.
    if let Some(&slot) = RESEQ_SLOT.lookup(tunnel_ifindex) {
        RESEQ_XSK.get(slot)?;
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

/// XDP on the resequencer's veth end: everything that arrives there is a
/// frame `hand_over` sent, for the socket in this end's slot. Without one
/// (between `xgre run`'s steps) the frame is dropped: the veth's own
/// stack has no use for it.
#[inline(always)]
pub fn to_socket(ctx: &XdpContext) -> u32 {
    // SAFETY: a field of the context the kernel passed to this run.
    let ifindex = unsafe { (*ctx.ctx).ingress_ifindex };
    match RESEQ_SLOT.lookup(ifindex) {
        Some(&slot) => RESEQ_XSK.redirect(slot, xdp_action::XDP_DROP as u64).unwrap_or(xdp_action::XDP_DROP),
        None => xdp_action::XDP_DROP,
    }
}
