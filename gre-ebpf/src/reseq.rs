//! Resequencing: under `xgre run` with `resequence`, a decapsulated packet
//! that carries a sequence number goes into a tap of `xgre run`'s, with
//! its peer and number in front (`ReseqHdr`), instead of to the tunnel
//! device. `xgre run` delivers it in order, through the same hidden veth
//! end, so the device still counts it.
//!
//! Into the tap's receive side, where `xgre run` reads it with a packet
//! socket, not out of the tap: a device segments on its way out what it
//! cannot take whole, and a GSO packet decapsulated here still asks for
//! GRE segmentation, which no tap offers.
//!
//! XDP receive hands them over AF_XDP instead where `xgre run` has a
//! socket on the link's queue for the tunnel (`to_socket`): no skb, no
//! system call per packet.

use aya_ebpf::{
    bindings::{xdp_action, BPF_F_INGRESS},
    helpers::generated::{bpf_check_mtu, bpf_skb_change_head, bpf_xdp_adjust_head},
    programs::{TcContext, XdpContext},
};
use gre_common::{DropReason, ReseqHdr};
use network_types::{eth::EthHdr, ip::IpProto};

use crate::consts::{ETH_P_IP, ETH_P_IPV6};
use crate::kernel::{redirect, Lookup};
use crate::maps::{RESEQ_LINK, RESEQ_TAP, RESEQ_XSK};

/// Hand the packet (its inner frame at the start) to the tunnel's
/// resequencer; `segs`: the wire packets it stands for (a GSO packet's
/// segments, each numbered). None: deliver it as usual, because nothing
/// resequences this tunnel, its tap is gone (`xgre run` ended without
/// clearing the entry), or the packet is a GSO one but not TCP, whose
/// numbers the resequencer would not know to count.
#[inline(always)]
pub fn hand_over(ctx: &TcContext, tunnel_ifindex: u32, peer_id: u32, seq: u32, path: u32, segs: u32) -> Option<Result<i32, DropReason>> {
    let tap = *RESEQ_TAP.lookup(tunnel_ifindex)?;
    if tap == 0 || (segs > 1 && !inner_tcp(ctx)) {
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
    Some(Ok(redirect(tap, BPF_F_INGRESS as u64)))
}

/// Whether the decapsulated frame carries TCP as the resequencer counts
/// a GSO packet's segments: IPv4 without options, or IPv6 without
/// extension headers.
#[inline(always)]
fn inner_tcp(ctx: &TcContext) -> bool {
    let Ok(ether_type) = ctx.load::<u16>(12) else { return false };
    let at = match u16::from_be(ether_type) {
        ETH_P_IP if ctx.load::<u8>(EthHdr::LEN).is_ok_and(|v| v == 0x45) => EthHdr::LEN + 9,
        ETH_P_IPV6 => EthHdr::LEN + 6,
        _ => return false,
    };
    ctx.load::<u8>(at).is_ok_and(|p| p == IpProto::Tcp as u8)
}

/// Whether `xgre run` has AF_XDP sockets on the link this frame came in
/// by, for any tunnel.
#[inline(always)]
pub fn link_has_sockets(ctx: &XdpContext) -> bool {
    // SAFETY: a field of the context the kernel passed to this run.
    let ifindex = unsafe { (*ctx.ctx).ingress_ifindex };
    RESEQ_LINK.lookup(ifindex).is_some()
}

/// The slot of the socket `xgre run` has on this frame's link and queue
/// for `tunnel_ifindex`. None: no such socket (none asked for, another
/// tunnel's, or closed with its process).
#[inline(always)]
pub fn socket_slot(ctx: &XdpContext, tunnel_ifindex: u32) -> Option<u32> {
    // SAFETY: fields of the context the kernel passed to this run.
    let (ifindex, queue) = unsafe { ((*ctx.ctx).ingress_ifindex, (*ctx.ctx).rx_queue_index) };
    let link = RESEQ_LINK.lookup(ifindex)?;
    if link.tunnel_ifindex != tunnel_ifindex || queue >= link.queues {
        return None;
    }
    let slot = link.base + queue;
    RESEQ_XSK.get(slot)?;
    Some(slot)
}

/// XDP: hand the decapsulated frame (at `data`) to the socket in `slot`
/// (`socket_slot`), with our header in front. None: there was no room for
/// it, and the frame goes on as before.
#[inline(always)]
pub fn to_socket(ctx: &XdpContext, slot: u32, peer_id: u32, seq: u32, path: u32) -> Option<Result<u32, DropReason>> {
    // SAFETY: `ctx.ctx` is the context the kernel passed to this run.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(ReseqHdr::LEN as i32)) } != 0 {
        return None;
    }
    // adjust_head invalidated every packet pointer: reload and re-check.
    let (data, end) = (ctx.data(), ctx.data_end());
    if data + ReseqHdr::LEN > end {
        return Some(Err(DropReason::Truncated));
    }
    // SAFETY: `data + ReseqHdr::LEN <= end`, checked just above.
    unsafe { (data as *mut ReseqHdr).write_unaligned(ReseqHdr::new(peer_id, seq, path)) };
    // Our header is in front now: to the socket or nowhere (a socket that
    // closed since the lookup).
    Some(Ok(RESEQ_XSK.redirect(slot, xdp_action::XDP_DROP as u64).unwrap_or(xdp_action::XDP_DROP)))
}
