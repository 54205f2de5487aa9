//! Receive: decapsulate GRE of ours and deliver the inner packet to the
//! tunnel device.
//!
//! TC decapsulates and sends the packet from the tunnel device's hidden veth
//! end, so the device counts it (`to_tunnel`).
//! XDP decapsulates, tags the frame with the tunnel in XDP metadata and
//! passes it on; the link's TC ingress hands tagged frames to the tunnel
//! device. Passing, not redirecting, keeps the skb the driver built, and so
//! its checksum state: a veth peer sends TCP with CHECKSUM_PARTIAL, and an
//! XDP redirect would turn that into a packet with a bad checksum. Drivers
//! without XDP metadata get a redirect into the hidden veth end instead,
//! which is right for NICs, whose frames carry full checksums. A kernel
//! whose verifier refuses XDP programs metadata altogether gets
//! `xgre_rx_xdp_nm` and the full TC receive program beside it.

use aya_ebpf::{
    bindings::{
        __sk_buff, bpf_adj_room_mode::BPF_ADJ_ROOM_MAC, xdp_action, xdp_md, BPF_F_ADJ_ROOM_DECAP_L3_IPV4, BPF_F_ADJ_ROOM_DECAP_L3_IPV6,
        BPF_F_ADJ_ROOM_FIXED_GSO, BPF_F_INGRESS, TC_ACT_OK, TC_ACT_SHOT,
    },
    helpers::generated::{bpf_check_mtu, bpf_skb_vlan_push, bpf_xdp_adjust_head, bpf_xdp_adjust_meta},
    programs::{TcContext, XdpContext},
};
use gre_common::TunnelFlags;
use gre_common::{DropReason, HandoffMeta, HandoffSeq, MODE_GRETAP};
use network_types::{eth::EthHdr, vlan::VlanHdr};

use crate::kernel::{redirect, skb_of};
use crate::{
    consts::{ETH_P_8021Q, ETH_P_IPV6},
    counters::{count_rx, keepalive_reflected, keepalive_reply},
    fdb, global,
    packet::Packet,
    parse::{classify, Rx, Verdict},
    pmtu, reseq, seq,
};

/// The Ethernet header a reflected keepalive leaves with: back to whoever
/// sent it. The inner packet is of the outer one's family (Cisco format),
/// so its EtherType is the GRE protocol type (not the frame's: a
/// priority-tagged frame has the tag's there).
#[inline(always)]
fn reflect_eth(outer: &EthHdr, rx: &Rx) -> EthHdr {
    EthHdr { dst_addr: outer.src_addr, src_addr: outer.dst_addr, ether_type: rx.inner_proto.to_be() }
}

/// Count a decapsulated packet, note its sequence number and, for gretap,
/// learn which peer its source MAC lives behind. `pkt` holds the inner
/// packet by now.
#[inline(always)]
fn delivered<P: Packet>(pkt: &P, rx: &Rx, packets: u64) {
    count_rx(rx.path.peer_id, rx.path.path, packets, rx.inner_len as u64);
    if rx.tunnel.mode == MODE_GRETAP {
        if let Ok(src) = pkt.read::<[u8; 6]>(6) {
            fdb::learn(rx.tunnel.ifindex, src, rx.path.peer_id, rx.vid);
        }
    }
    if let Some(seq) = rx.seq {
        // A GSO packet's segments were numbered one by one: its last
        // number is the highest seen.
        seq::observe(rx.path.peer_id, seq.wrapping_add(packets.max(1) as u32 - 1));
    }
}

/// The Ethernet header the inner packet is delivered with: addressed to the
/// tunnel device so the stack takes it as its own.
#[inline(always)]
fn inner_eth(rx: &Rx, outer: &EthHdr) -> EthHdr {
    EthHdr { dst_addr: rx.tunnel.mac, src_addr: outer.src_addr, ether_type: rx.inner_proto.to_be() }
}

/// The XDP receive program's body, as a global function: the program then
/// holds only a small frame of its own, and the path MTU learner it calls
/// for ICMP (`pmtu::learn_request`) has the rest of the 512 bytes.
#[no_mangle]
#[inline(never)]
pub extern "C" fn xgre_rx_xdp_body(ctx: *mut xdp_md) -> i64 {
    global::encode(try_rx_xdp(&XdpContext::new(ctx)).map(|v| v as i32))
}

/// The TC receive program's body, as a global function (see above).
#[no_mangle]
#[inline(never)]
pub extern "C" fn xgre_rx_tc_body(skb: *mut __sk_buff) -> i64 {
    global::encode(try_rx_tc(&TcContext::new(skb)))
}

fn try_rx_xdp(ctx: &XdpContext) -> Result<u32, DropReason> {
    let (rx, reflect) = match classify(ctx)? {
        Verdict::Pass => return Ok(xdp_action::XDP_PASS),
        Verdict::Icmp { at, v4 } => return Ok(pmtu::learn_request(at, v4)),
        Verdict::KeepaliveReply { path: p, at } => {
            keepalive_reply(ctx, at, p.peer_id, p.path);
            return Ok(xdp_action::XDP_DROP);
        }
        Verdict::Reflect(rx) => (rx, true),
        Verdict::Decap(rx) => (rx, false),
    };
    let outer: EthHdr = ctx.read(0)?;
    let tap = rx.tunnel.mode == MODE_GRETAP && !reflect;
    let data = strip_outer(ctx, &rx, tap)?;
    if reflect {
        // SAFETY: `strip_outer` checked an Ethernet header's room at `data`.
        unsafe { (data as *mut EthHdr).write_unaligned(reflect_eth(&outer, &rx)) };
        keepalive_reflected(rx.path.peer_id, rx.path.path);
    } else {
        if tap && rx.vid != 0 {
            tag_xdp(ctx, rx.vid)?;
        }
        if !tap {
            // SAFETY: as above.
            unsafe { (data as *mut EthHdr).write_unaligned(inner_eth(&rx, &outer)) };
        }
        delivered(ctx, &rx, 1);
    }
    // A numbered frame goes to the resequencer: over AF_XDP where it has
    // a socket here, else through the hand-off, told its number. Not a
    // trunk's tagged one: the tag is in the skb's metadata by the hand-off,
    // and the tap would write it in where our header is.
    let numbered = rx.seq.filter(|_| !reflect && rx.vid == 0 && rx.resequence);
    if let Some(seq) = numbered {
        if let Some(slot) = reseq::socket_slot(ctx, rx.tunnel.ifindex) {
            if let Some(r) = reseq::to_socket(ctx, slot, rx.path.peer_id, seq, rx.path.path) {
                return r;
            }
        }
    }
    // Tunnel 0 tells the handoff to send the frame back out of the link.
    let target = if reflect { 0 } else { rx.tunnel.ifindex };
    let meta_len = if numbered.is_some() { HandoffMeta::LEN + HandoffSeq::LEN } else { HandoffMeta::LEN };
    // SAFETY: `ctx.ctx` is the context the kernel passed to this run.
    if unsafe { bpf_xdp_adjust_meta(ctx.ctx, -(meta_len as i32)) } == 0 {
        // adjust_meta moved data_meta: reload and re-check before writing.
        // SAFETY: fields of the context the kernel passed to this run.
        let (meta, data) = unsafe { ((*ctx.ctx).data_meta as usize, (*ctx.ctx).data as usize) };
        if meta + HandoffMeta::LEN + HandoffSeq::LEN <= data {
            if let Some(seq) = numbered {
                let s = HandoffSeq { magic: HandoffSeq::MAGIC, peer_id: rx.path.peer_id, seq, path: rx.path.path };
                // SAFETY: the metadata area holds both, checked against `data`.
                unsafe { ((meta + HandoffMeta::LEN) as *mut HandoffSeq).write_unaligned(s) };
            }
        }
        if meta + HandoffMeta::LEN <= data {
            let m = HandoffMeta { magic: HandoffMeta::MAGIC, tunnel_ifindex: target, peer_ifindex: counted_via(&rx) };
            // SAFETY: checked against `data` just above.
            unsafe { (meta as *mut HandoffMeta).write_unaligned(m) };
            return Ok(xdp_action::XDP_PASS);
        }
    }
    if reflect {
        return Ok(xdp_action::XDP_TX);
    }
    let r = redirect(rx.tunnel.peer_ifindex, 0) as i64;
    Ok(r as u32)
}

/// Remove the outer headers (for gretap with `tap`, our Ethernet header
/// too: the inner frame has its own). Returns where the frame now starts,
/// with at least an Ethernet header's room checked.
#[inline(always)]
fn strip_outer(ctx: &XdpContext, rx: &Rx, tap: bool) -> Result<usize, DropReason> {
    let delta = if tap { rx.outer_len + EthHdr::LEN } else { rx.outer_len };
    // SAFETY: `ctx.ctx` is the context the kernel passed to this run.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, delta as i32) } != 0 {
        return Err(DropReason::HelperFailed);
    }
    // adjust_head invalidated every packet pointer: reload and re-check.
    let (data, end) = (ctx.data(), ctx.data_end());
    if data + EthHdr::LEN > end {
        return Err(DropReason::Truncated);
    }
    Ok(data)
}

/// XDP receive for a kernel whose verifier refuses XDP metadata
/// (`bpf_xdp_adjust_meta`) to XDP programs: the link's TC ingress is then
/// the full TC receive program, and this one hands it every frame as it
/// came (the skb the driver builds keeps its checksum state, see above)
/// but the numbered frames `xgre run` has an AF_XDP socket for, which it
/// decapsulates and hands over as `xgre_rx_xdp` does. A link without
/// such sockets costs one lookup per frame.
#[no_mangle]
#[inline(never)]
pub extern "C" fn xgre_rx_xdp_nm_body(ctx: *mut xdp_md) -> i64 {
    global::encode(try_rx_xdp_nm(&XdpContext::new(ctx)).map(|v| v as i32))
}

fn try_rx_xdp_nm(ctx: &XdpContext) -> Result<u32, DropReason> {
    if !reseq::link_has_sockets(ctx) {
        return Ok(xdp_action::XDP_PASS);
    }
    let Verdict::Decap(rx) = classify(ctx)? else { return Ok(xdp_action::XDP_PASS) };
    let Some(seq) = rx.seq.filter(|_| rx.vid == 0 && rx.resequence) else { return Ok(xdp_action::XDP_PASS) };
    let Some(slot) = reseq::socket_slot(ctx, rx.tunnel.ifindex) else { return Ok(xdp_action::XDP_PASS) };
    let outer: EthHdr = ctx.read(0)?;
    let tap = rx.tunnel.mode == MODE_GRETAP;
    let data = strip_outer(ctx, &rx, tap)?;
    if !tap {
        // SAFETY: `strip_outer` checked an Ethernet header's room at `data`.
        unsafe { (data as *mut EthHdr).write_unaligned(inner_eth(&rx, &outer)) };
    }
    delivered(ctx, &rx, 1);
    if let Some(r) = reseq::to_socket(ctx, slot, rx.path.peer_id, seq, rx.path.path) {
        return r;
    }
    // No room for our header: deliver it unordered.
    Ok(redirect(rx.tunnel.peer_ifindex, 0) as u32)
}

/// Trunk: tag a decapsulated frame (at `data`) with its VLAN, in the
/// frame: 4 bytes in front, the MAC addresses moved into them, then the
/// 802.1Q tag. The stack's receive path moves it into the skb's metadata.
#[inline(always)]
fn tag_xdp(ctx: &XdpContext, vid: u16) -> Result<(), DropReason> {
    // SAFETY: `ctx.ctx` is the context the kernel passed to this run.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(VlanHdr::LEN as i32)) } != 0 {
        return Err(DropReason::HelperFailed);
    }
    // adjust_head invalidated every packet pointer: reload and re-check.
    let (data, end) = (ctx.data(), ctx.data_end());
    if data + EthHdr::LEN + VlanHdr::LEN > end {
        return Err(DropReason::Truncated);
    }
    // SAFETY: both headers lie below `end`, checked just above.
    unsafe {
        let macs = ((data + VlanHdr::LEN) as *const [u8; 12]).read_unaligned();
        (data as *mut [u8; 12]).write_unaligned(macs);
        let tpid = ETH_P_8021Q.to_be_bytes();
        let tci = vid.to_be_bytes();
        ((data + 12) as *mut [u8; 4]).write_unaligned([tpid[0], tpid[1], tci[0], tci[1]]);
    }
    Ok(())
}

/// TC ingress on a link whose receive hook is XDP: deliver the frames XDP
/// decapsulated and tagged; leave everything else alone.
pub fn try_rx_handoff(ctx: &TcContext) -> Result<i32, DropReason> {
    // SAFETY: fields of the context the kernel passed to this run.
    let (meta, data) = unsafe { ((*ctx.skb.skb).data_meta as usize, (*ctx.skb.skb).data as usize) };
    if meta + HandoffMeta::LEN > data {
        return Ok(legacy_handoff(ctx, meta, data));
    }
    Ok(handed_off(ctx)?.unwrap_or(TC_ACT_OK))
}

/// A frame XDP decapsulated and tagged (`HandoffMeta`): its verdict. None
/// for any other frame.
#[inline(always)]
fn handed_off(ctx: &TcContext) -> Result<Option<i32>, DropReason> {
    // SAFETY: fields of the context the kernel passed to this run.
    let (meta, data) = unsafe { ((*ctx.skb.skb).data_meta as usize, (*ctx.skb.skb).data as usize) };
    if meta + HandoffMeta::LEN > data {
        return Ok(None);
    }
    // SAFETY: within the metadata area, checked against `data`.
    let m = unsafe { (meta as *const HandoffMeta).read_unaligned() };
    if m.magic != HandoffMeta::MAGIC {
        return Ok(None);
    }
    if m.tunnel_ifindex == 0 {
        // A reflected keepalive: out of the link it came in on.
        return Ok(Some(redirect(skb_of(ctx).ifindex, 0)));
    }
    if meta + HandoffMeta::LEN + HandoffSeq::LEN <= data {
        // SAFETY: checked against `data` just above.
        let s = unsafe { ((meta + HandoffMeta::LEN) as *const HandoffSeq).read_unaligned() };
        if s.magic == HandoffSeq::MAGIC {
            if let Some(r) = reseq::hand_over(ctx, m.tunnel_ifindex, s.peer_id, s.seq, s.path, 1) {
                return r.map(Some);
            }
        }
    }
    Ok(Some(to_tunnel(ctx, m.tunnel_ifindex, m.peer_ifindex)))
}

/// An older build's XDP program, still attached for the moment a hitless
/// upgrade swaps the programs one by one, tags frames with 8 bytes (magic,
/// tunnel): deliver them as that build did, straight to the device.
#[inline(always)]
fn legacy_handoff(ctx: &TcContext, meta: usize, data: usize) -> i32 {
    if meta + 8 > data {
        return TC_ACT_OK;
    }
    // SAFETY: 8 bytes of metadata, checked against `data` just above.
    let (magic, tunnel) = unsafe { ((meta as *const u32).read_unaligned(), ((meta + 4) as *const u32).read_unaligned()) };
    if magic != HandoffMeta::MAGIC {
        return TC_ACT_OK;
    }
    let r = if tunnel == 0 {
        // A reflected keepalive: out of the link it came in on.
        redirect(skb_of(ctx).ifindex, 0) as i64
    } else {
        redirect(tunnel, BPF_F_INGRESS as u64) as i64
    };
    // TC_ACT_REDIRECT, or TC_ACT_SHOT for a bad flag: a verdict either way.
    r as i32
}

fn try_rx_tc(ctx: &TcContext) -> Result<i32, DropReason> {
    // A packet `xgre run` reassembled and ran through the XDP program
    // (`BPF_PROG_RUN`), which decapsulated it for this link.
    if let Some(v) = handed_off(ctx)? {
        return Ok(v);
    }
    let rx = match classify(ctx)? {
        Verdict::Pass => return Ok(TC_ACT_OK),
        Verdict::Icmp { at, v4 } => return Ok(pmtu::learn_request(at, v4) as i32),
        Verdict::KeepaliveReply { path: p, at } => {
            keepalive_reply(ctx, at, p.peer_id, p.path);
            return Ok(TC_ACT_SHOT);
        }
        Verdict::Reflect(rx) => return reflect_tc(ctx, &rx),
        Verdict::Decap(rx) => rx,
    };
    // A GSO packet (a GRO'd or locally built one, on veth) counts as the
    // wire packets it stands for, as the sender counted it. Read before
    // adjust_room, which zeroes gso_segs.
    let segs = skb_of(ctx).gso_segs.max(1);
    let outer: EthHdr = ctx.read(0)?;
    if rx.tunnel.mode == MODE_GRETAP {
        // Remove outer IP + GRE and the inner Ethernet header that follows
        // our MAC header, then put the inner header back in its place.
        let inner: EthHdr = ctx.read(EthHdr::LEN + rx.outer_len)?;
        let shrink = (rx.outer_len + EthHdr::LEN) as i32;
        decap(ctx, shrink, u16::from_be(inner.ether_type))?;
        ctx.store(0, &inner, 0).map_err(|_| DropReason::HelperFailed)?;
        // SAFETY: the skb is the context the kernel passed to this run.
        if rx.vid != 0 && unsafe { bpf_skb_vlan_push(ctx.skb.skb, ETH_P_8021Q.to_be(), rx.vid) } != 0 {
            return Err(DropReason::HelperFailed);
        }
    } else {
        decap(ctx, rx.outer_len as i32, rx.inner_proto)?;
        ctx.store(0, &inner_eth(&rx, &outer), 0).map_err(|_| DropReason::HelperFailed)?;
    }
    delivered(ctx, &rx, segs as u64);
    if let (Some(seq), 0, true) = (rx.seq, rx.vid, rx.resequence) {
        if let Some(r) = reseq::hand_over(ctx, rx.tunnel.ifindex, rx.path.peer_id, seq, rx.path.path, segs) {
            return r;
        }
    }
    Ok(to_tunnel(ctx, rx.tunnel.ifindex, counted_via(&rx)))
}

/// The hidden end to deliver through, so that veth counts the packet; 0
/// when the tunnel counts nothing (`device_counters = false`).
#[inline(always)]
fn counted_via(rx: &Rx) -> u32 {
    if rx.tunnel.flags.intersects(TunnelFlags::NO_DEV_COUNTERS) {
        0
    } else {
        rx.tunnel.peer_ifindex
    }
}

/// Deliver a decapsulated packet to the tunnel device: sent from its hidden
/// veth end, so that veth counts it as the device's rx (BPF cannot count
/// into a device's statistics). veth refuses a packet longer than the
/// device's MTU, which a peer with a larger MTU may send and Linux's ip_gre
/// accepts (it has no MTU check on receive): such a packet goes straight
/// to the device's ingress instead, delivered but not counted there, as is
/// everything when `peer_ifindex` is 0 (the tunnel counts nothing).
#[inline(always)]
fn to_tunnel(ctx: &TcContext, tunnel_ifindex: u32, peer_ifindex: u32) -> i32 {
    let mut mtu = 0u32;
    // SAFETY: the skb is the context the kernel passed to this run.
    let fits = peer_ifindex != 0 && unsafe { bpf_check_mtu(ctx.skb.skb.cast(), tunnel_ifindex, &mut mtu, 0, 0) } == 0;
    let r = if fits { redirect(peer_ifindex, 0) as i64 } else { redirect(tunnel_ifindex, BPF_F_INGRESS as u64) as i64 };
    // TC_ACT_REDIRECT, or TC_ACT_SHOT for a bad flag: a verdict either way.
    r as i32
}

/// What the packet is once decapsulated: adjust_room then sets the skb's
/// protocol to match and checks the remainder against that header's size,
/// not the outer one's (without it, a 28-byte ARP left from a 40-byte IPv6
/// outer header is refused as shorter than IPv6). Anything not IPv6 is
/// declared IPv4, the smaller minimum; the tunnel device's ingress sets
/// the protocol from the Ethernet header anyway. FIXED_GSO: the segments a
/// GSO packet stands for carry as much payload after decap as before, and
/// a gso_size grown by our header misleads the receiver's MSS estimate
/// (measured, one TCP stream on veth, gretap: 13,747/14,867 against
/// 13,336/13,381/13,293/12,650 Mbit/s without it).
///
/// The DECAP flags came with Linux 6.3: an older kernel refuses them, and
/// gets the room removed without (only a non-IP payload shorter than the
/// outer header's minimum is then refused, and counted).
#[inline(always)]
fn decap(ctx: &TcContext, shrink: i32, inner_proto: u16) -> Result<(), DropReason> {
    let l3 = if inner_proto == ETH_P_IPV6 { BPF_F_ADJ_ROOM_DECAP_L3_IPV6 } else { BPF_F_ADJ_ROOM_DECAP_L3_IPV4 };
    if ctx.adjust_room(-shrink, BPF_ADJ_ROOM_MAC, (l3 | BPF_F_ADJ_ROOM_FIXED_GSO) as u64).is_ok() {
        return Ok(());
    }
    ctx.adjust_room(-shrink, BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_FIXED_GSO as u64).map_err(|_| DropReason::HelperFailed)
}

fn reflect_tc(ctx: &TcContext, rx: &Rx) -> Result<i32, DropReason> {
    let outer: EthHdr = ctx.read(0)?;
    ctx.adjust_room(-(rx.outer_len as i32), BPF_ADJ_ROOM_MAC, 0).map_err(|_| DropReason::HelperFailed)?;
    ctx.store(0, &reflect_eth(&outer, rx), 0).map_err(|_| DropReason::HelperFailed)?;
    keepalive_reflected(rx.path.peer_id, rx.path.path);
    Ok(redirect(skb_of(ctx).ifindex, 0))
}
