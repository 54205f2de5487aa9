//! Transmit, in two halves around the tunnel device's veth pair. TC egress
//! on the device finds where the packet goes (one peer and path, or a flood
//! list) and hands that over in the skb's control block; veth counts the
//! packet as the device's tx on the way through. TC ingress on the hidden
//! end adds outer IP + GRE and sends it out of the chosen path's link:
//! redirected when unicast, cloned per peer when replicated.

use aya_ebpf::{
    bindings::{__sk_buff, TC_ACT_OK, TC_ACT_SHOT, TC_ACT_STOLEN},
    helpers::generated::{bpf_check_mtu, bpf_get_hash_recalc, bpf_skb_change_tail},
    maps::lpm_trie::Key,
    programs::TcContext,
};
use gre_common::TunnelFlags;
use gre_common::{
    handoff::{TX_CLEAR_DF, TX_DECISION_WORDS, TX_DROP, TX_FLOOD, TX_UNICAST, TX_UNNUMBERED},
    tx_crosses_pair, v4_mapped, DropReason, FloodKey, FloodList, GreHdr, Route4, Route6, Tunnel, TxDecision, ANNOUNCE_UNNUMBERED,
    MAX_PATHS, MODE_GRE, MODE_GRETAP, NVGRE_FLOWID_MASK,
};
use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
};

use crate::kernel::{redirect, skb_of, Lookup};
use crate::{
    announce,
    consts::{ETH_P_IP, ETH_P_IPV6},
    counters::count_tx,
    encap::{self, Fields},
    fdb, fit,
    flood::{self, NO_PEER},
    global, icmp, light,
    maps::{FLOOD, ROUTES4, ROUTES6, TUNNELS},
    packet::Packet,
    path, trunk,
};

/// Where a packet goes: to `peer`, or (`flood`) to every peer of the
/// flood list of `group` (all zeros: the tunnel's default list) but
/// `skip`. A struct with every field always set, not an enum: LLVM fills
/// an enum's unused payload with whatever a register holds, pointers too,
/// and the verifier refuses a 32-bit spill of a pointer.
#[derive(Clone, Copy)]
struct Target {
    flood: bool,
    peer: u32,
    group: [u8; 16],
    skip: u32,
}

impl Target {
    #[inline(always)]
    fn peer(peer: u32) -> Target {
        Target { flood: false, peer, group: [0; 16], skip: NO_PEER }
    }

    #[inline(always)]
    fn flood(group: [u8; 16], skip: u32) -> Target {
        Target { flood: true, peer: NO_PEER, group, skip }
    }
}

/// The tunnel device's egress: where the packet goes, written into the
/// skb's control block for `try_tx_send`. The packet then crosses the veth
/// pair, which counts it as the device's tx, or is sent from here when
/// there is nothing to count. Errors are drops; `xgre_tx` makes veth
/// count them (`drop_where_counted`).
pub fn try_tx(ctx: &TcContext) -> Result<i32, DropReason> {
    let skb: *mut __sk_buff = ctx.skb.skb;
    // Two global functions, one after the other: their stacks never add up.
    let v = global::decode(xgre_decide(skb))?;
    if v == SEND_HERE {
        return global::decode(xgre_send(skb));
    }
    if v >= fit::ANSWER {
        return global::decode(icmp::xgre_too_big(skb, (v - fit::ANSWER) as u32));
    }
    Ok(TC_ACT_OK)
}

/// What `xgre_decide` returns when the packet is to be sent at once.
const SEND_HERE: i32 = 1;

/// Decide where the packet goes and leave that in its control block.
/// `SEND_HERE` when the tunnel skips the veth crossing; `fit::ANSWER`
/// plus an MTU when the packet is too big and is to be answered.
#[no_mangle]
#[inline(never)]
pub extern "C" fn xgre_decide(skb: *mut __sk_buff) -> i64 {
    global::encode(decide(&TcContext::new(skb)))
}

#[inline(always)]
fn decide(ctx: &TcContext) -> Result<i32, DropReason> {
    let skb: *mut __sk_buff = ctx.skb.skb;
    let ifindex = skb_of(ctx).ifindex;
    let tunnel: &Tunnel = TUNNELS.lookup(ifindex).ok_or(DropReason::TxUnsupported)?;
    let eth: EthHdr = ctx.read(0)?;
    // A packet that came in through this very device came from a peer: a
    // bridge hairpinning it, or the host routing it back out. Its copies
    // never go back to that peer.
    let from_peer = skb_of(ctx).ingress_ifindex == ifindex;
    let (target, tos, proto) = match tunnel.mode {
        MODE_GRE => ip_target(ctx, tunnel, &eth, from_peer)?,
        MODE_GRETAP => tap_target(ctx, tunnel, &eth, from_peer)?,
        _ => return Err(DropReason::TxUnsupported),
    };
    let mut proto_tos = ((proto as u32) << 16) | tos as u32;
    let d = if !target.flood {
        let tap = (tunnel.mode == MODE_GRETAP) as u32;
        match global::decode(fit::xgre_fit(skb, target.peer, tunnel.flags.bits(), tap, u16::from_be(eth.ether_type) as u32))? {
            fit::FITS => {}
            fit::CLEAR_DF => proto_tos |= TX_CLEAR_DF,
            answer => return Ok(answer),
        }
        // Only a numbered tunnel's peers have paths marked fastest.
        let ether_type = u16::from_be(eth.ether_type);
        let numbered = tunnel.flags.intersects(TunnelFlags::NUMBERED);
        let kind = if numbered { light::classify(ctx, ether_type) } else { light::Kind::Bulk };
        let (ack, light) = (kind == light::Kind::Ack, kind == light::Kind::Light);
        let takes = (ack || light) && announce::in_force(target.peer) & ANNOUNCE_UNNUMBERED != 0;
        // ACKs take the fastest path numbered or not; other light packets
        // only where they skip the peer's resequencer, which would hold
        // them for the slow path anyway.
        let fast = if ack || (light && takes) { path::xgre_fastest_path(target.peer, ifindex) } else { path::NO_PATH };
        // Neither needs a place in the order: to a peer that takes them
        // so, they leave unnumbered by the fastest path. Striped (paths
        // alike in delay), they stay numbered: a flow's small datagrams
        // would overtake each other, and at 1000 + 500 Mbit/s ACKs handed
        // to TCP one by one instead of in the resequencer's batches saved
        // no CPU and gave runs as slow as 76% (docs/design.md).
        if takes && fast != path::NO_PATH {
            proto_tos |= TX_UNNUMBERED;
        }
        let path = if fast != path::NO_PATH { fast } else { path::xgre_select_path(target.peer, ifindex, ctx.len() as u64) };
        let path = match path {
            path::PEER_GONE => return Err(DropReason::NoRoute),
            path::NO_PATH => return Err(DropReason::NoPath),
            j => j,
        };
        TxDecision { kind: TxDecision::MAGIC | TX_UNICAST, tunnel_ifindex: ifindex, peer: target.peer, path, proto_tos }
    } else {
        flood_list(tunnel.ifindex, target.group).ok_or(DropReason::NoRoute)?;
        TxDecision { kind: TxDecision::MAGIC | TX_FLOOD, tunnel_ifindex: ifindex, peer: target.skip, path: 0, proto_tos }
    };
    set_decision(skb, d);
    // Nothing to count or segment: send from here.
    Ok(if tx_crosses_pair(tunnel.flags) { 0 } else { SEND_HERE })
}

#[inline(always)]
fn set_decision(skb: *mut __sk_buff, d: TxDecision) {
    let w = d.to_words();
    for (i, v) in w.iter().enumerate() {
        // SAFETY: `skb` is the context the kernel passed to this run; the verifier allows writes to `cb`.
        unsafe { (*skb).cb[i] = *v };
    }
}

/// Drop a packet `try_tx` refused so that veth counts it in the device's
/// tx_dropped, as ip_gre counts a packet with no route: grown past what
/// the hidden end accepts (its MTU plus an Ethernet and a VLAN header, and
/// no longer GSO), veth discards it and counts it. Returns TC_ACT_OK when
/// the packet goes on to be dropped so, TC_ACT_SHOT when it must be
/// dropped here (not our tunnel, or a jumbo MTU the helper cannot grow to).
pub fn drop_where_counted(ctx: &TcContext) -> i32 {
    let skb: *mut __sk_buff = ctx.skb.skb;
    let ifindex = skb_of(ctx).ifindex;
    let Some(tunnel) = TUNNELS.lookup(ifindex) else { return TC_ACT_SHOT };
    if !tx_crosses_pair(tunnel.flags) {
        return TC_ACT_SHOT;
    }
    let mut mtu = 0u32;
    // SAFETY: `skb` is the context the kernel passed to this run.
    if unsafe { bpf_check_mtu(skb.cast(), tunnel.peer_ifindex, &mut mtu, 0, 0) } < 0 {
        return TC_ACT_SHOT;
    }
    let too_long = mtu + (EthHdr::LEN as u32) + 4 + 1;
    // SAFETY: as above.
    if unsafe { bpf_skb_change_tail(skb, too_long, 0) } != 0 {
        return TC_ACT_SHOT;
    }
    set_decision(skb, TxDecision { kind: TxDecision::MAGIC | TX_DROP, tunnel_ifindex: ifindex, ..Default::default() });
    TC_ACT_OK
}

/// The hidden end's ingress: encapsulate as decided and send, out of the
/// chosen path's link (unicast) or as one copy per peer (flood).
pub fn try_tx_send(ctx: &TcContext) -> Result<i32, DropReason> {
    global::decode(xgre_send(ctx.skb.skb))
}

/// The decision `xgre_tx` left in the control block.
#[inline(always)]
fn decision(skb: *mut __sk_buff) -> TxDecision {
    let mut w = [0u32; TX_DECISION_WORDS];
    for (i, v) in w.iter_mut().enumerate() {
        // SAFETY: `skb` is the context the kernel passed to this run.
        *v = unsafe { (*skb).cb[i] };
    }
    TxDecision::from_words(&w)
}

/// Encapsulate and send as the control block's decision says.
#[no_mangle]
#[inline(never)]
pub extern "C" fn xgre_send(skb: *mut __sk_buff) -> i64 {
    global::encode(send(&TcContext::new(skb)))
}

/// Encapsulate as `d` says and send: out of the chosen path's link
/// (unicast) or as one copy per peer (flood).
#[inline(always)]
fn send(ctx: &TcContext) -> Result<i32, DropReason> {
    let skb: *mut __sk_buff = ctx.skb.skb;
    let d = &decision(skb);
    let kind = d.kind().ok_or(DropReason::TxNoDecision)?;
    if kind == TX_DROP {
        // Counted already, under its reason.
        return Ok(TC_ACT_SHOT);
    }
    let tunnel: &Tunnel = TUNNELS.lookup(d.tunnel_ifindex).ok_or(DropReason::TxUnsupported)?;
    // A GSO packet leaves as gso_segs wire packets (read before the
    // headroom grows: adjust_room zeroes it).
    let segs = skb_of(ctx).gso_segs;
    if segs > 1 && tunnel.flags.intersects(TunnelFlags::PER_PACKET) && !counts_up(tunnel.flags) {
        // GSO would copy one RFC 2890 sequence number or checksum to every
        // segment. The device segments what it sends then (its TSO is
        // off), so that each segment reaches us here on its own; only a
        // device with TSO turned back on gets here.
        return Err(DropReason::TxGsoPerPacket);
    }
    let mut key = tunnel.key;
    if tunnel.flags.intersects(TunnelFlags::TRUNK) {
        key = trunk::leave(ctx, tunnel, &ctx.read(0)?)?;
    }
    let eth: EthHdr = ctx.read(0)?;
    // SAFETY: `skb` is the context the kernel passed to this run.
    let hash = if tunnel.flags.intersects(TunnelFlags::NVGRE | TunnelFlags::UNDERLAY6) { unsafe { bpf_get_hash_recalc(skb) } } else { 0 };
    if tunnel.flags.intersects(TunnelFlags::NVGRE) {
        // RFC 7637 section 3.1: the FlowID spreads one VSID's flows over
        // the underlay's paths; the inner flow hash keeps a flow on one.
        key = (key & !NVGRE_FLOWID_MASK) | (hash & NVGRE_FLOWID_MASK);
    }
    // The outer IPv6 flow label, for the same reason (RFC 6438).
    // Too big for its path and not to be answered: DF clear, this once.
    let flags = if d.clear_df() { tunnel.flags | TunnelFlags::NO_PMTUDISC } else { tunnel.flags };
    let wire = segs.max(1);
    let fields = Fields { flags, key, tos: d.tos(), proto: d.proto(), flow: hash, unnumbered: d.unnumbered() as u32, numbers: wire };
    let tap = tunnel.mode == MODE_GRETAP;
    // Counters count inner bytes: the IP packet, or the whole frame (gretap).
    let inner_len = if tap { ctx.len() as u64 } else { ctx.len() as u64 - EthHdr::LEN as u64 };
    let wire = wire as u64;
    if kind == TX_UNICAST {
        let room = global::decode(encap::xgre_encap_grow(skb, &fields, tap as u32))?;
        let ifindex = global::decode(encap::xgre_encap_put(skb, &fields, room as i64, d.peer, d.path))?;
        count_tx(d.peer, d.path & (MAX_PATHS as u32 - 1), wire, inner_len);
        return Ok(redirect(ifindex as u32, 0));
    }
    let group = if tap { [0; 16] } else { ip_group(ctx, &eth)? };
    let list = flood_list(tunnel.ifindex, group).ok_or(DropReason::NoRoute)?;
    let room = global::decode(encap::xgre_encap_grow(skb, &fields, tap as u32))?;
    if !flood::replicate(ctx, tunnel.ifindex, list, d.peer, fields, room as i64, inner_len, wire)? {
        // No copy went: each was counted (no_path) on the way.
        return Ok(TC_ACT_SHOT);
    }
    // Every copy is on its way; the original is done with.
    Ok(TC_ACT_STOLEN)
}

/// Whether a GSO packet of this tunnel's may leave numbered whole: its
/// numbers are outer IPv4 IDs, which GSO counts up segment by segment
/// from the one we write, so the wire packets carry consecutive numbers
/// (`seq::next_seq` takes as many). Not so for a GSO packet whose IDs GRO
/// found fixed (SKB_GSO_TCP_FIXEDID): the device lacks
/// `tx-tcp-mangleid-segmentation`, so the veth crossing segments those.
/// RFC 2890 sequence numbers and GRE checksums GSO would copy.
#[inline(always)]
fn counts_up(flags: TunnelFlags) -> bool {
    flags.intersects(TunnelFlags::IPID_NUMBERED) && !flags.intersects(TunnelFlags::SEQ | TunnelFlags::CSUM)
}

/// `gre` mode's flood group: the inner destination, as `ip_target` chose it.
#[inline(always)]
fn ip_group(ctx: &TcContext, eth: &EthHdr) -> Result<[u8; 16], DropReason> {
    match u16::from_be(eth.ether_type) {
        ETH_P_IP => Ok(v4_mapped(ctx.read::<Ipv4Hdr>(EthHdr::LEN)?.dst_addr)),
        ETH_P_IPV6 => Ok(ctx.read::<Ipv6Hdr>(EthHdr::LEN)?.dst_addr),
        _ => Err(DropReason::TxUnsupported),
    }
}

/// The group's own flood list, else the tunnel's (every peer).
#[inline(always)]
fn flood_list(tunnel_ifindex: u32, group: [u8; 16]) -> Option<&'static FloodList> {
    let own = FLOOD.lookup(FloodKey { tunnel_ifindex, group });
    let list = match own {
        Some(l) => l,
        None => FLOOD.lookup(FloodKey { tunnel_ifindex, group: [0; 16] })?,
    };
    (list.n > 0).then_some(list)
}

/// `gre` mode: the peer routed for the inner destination (longest prefix),
/// or every peer for multicast and broadcast. Also the DSCP/ECN to copy
/// and the GRE protocol type.
#[inline(always)]
fn ip_target(ctx: &TcContext, tunnel: &Tunnel, eth: &EthHdr, from_peer: bool) -> Result<(Target, u8, u16), DropReason> {
    let tun = tunnel.ifindex.to_be_bytes();
    match u16::from_be(eth.ether_type) {
        ETH_P_IP => {
            let inner: Ipv4Hdr = ctx.read(EthHdr::LEN)?;
            let d = inner.dst_addr;
            if d[0] & 0xf0 == 0xe0 || d == [255; 4] {
                let skip = if from_peer { route4(tun, inner.src_addr).unwrap_or(NO_PEER) } else { NO_PEER };
                return Ok((Target::flood(v4_mapped(d), skip), inner.tos, GreHdr::PROTO_IPV4));
            }
            let peer = route4(tun, d).ok_or(DropReason::NoRoute)?;
            Ok((Target::peer(peer), inner.tos, GreHdr::PROTO_IPV4))
        }
        ETH_P_IPV6 => {
            let inner: Ipv6Hdr = ctx.read(EthHdr::LEN)?;
            let tclass = (inner.dscp() << 2) | inner.ecn();
            if inner.dst_addr[0] == 0xff {
                let skip = if from_peer { route6(tun, inner.src_addr).unwrap_or(NO_PEER) } else { NO_PEER };
                return Ok((Target::flood(inner.dst_addr, skip), tclass, GreHdr::PROTO_IPV6));
            }
            let peer = route6(tun, inner.dst_addr).ok_or(DropReason::NoRoute)?;
            Ok((Target::peer(peer), tclass, GreHdr::PROTO_IPV6))
        }
        _ => Err(DropReason::TxUnsupported),
    }
}

// The lookups return a plain id: given an Option of the map pointer, LLVM
// keeps the pointer's low half as the "is some" flag, a 32-bit spill of a
// pointer the verifier refuses.
#[inline(always)]
fn route4(tun: [u8; 4], addr: [u8; 4]) -> Option<u32> {
    let id = match ROUTES4.get(Key::new(64, Route4 { tunnel: tun, addr })) {
        Some(v) => *v,
        None => NO_PEER,
    };
    let id = core::hint::black_box(id);
    (id != NO_PEER).then_some(id)
}

#[inline(always)]
fn route6(tun: [u8; 4], addr: [u8; 16]) -> Option<u32> {
    let id = match ROUTES6.get(Key::new(32 + 128, Route6 { tunnel: tun, addr })) {
        Some(v) => *v,
        None => NO_PEER,
    };
    let id = core::hint::black_box(id);
    (id != NO_PEER).then_some(id)
}

/// `gretap` mode: the peer the destination MAC was learned from, or every
/// peer for broadcast, multicast and unknown unicast.
#[inline(always)]
fn tap_target(ctx: &TcContext, tunnel: &Tunnel, eth: &EthHdr, from_peer: bool) -> Result<(Target, u8, u16), DropReason> {
    // A trunk learns and looks up per VLAN, and refuses a VLAN it has no
    // key for here, where the drop is counted as the device's.
    let vid = if tunnel.flags.intersects(TunnelFlags::TRUNK) {
        let vid = trunk::frame_vid(ctx, eth)?;
        trunk::key_of(tunnel, vid)?;
        vid
    } else {
        0
    };
    let skip = if from_peer { fdb::lookup(tunnel, eth.src_addr, vid).unwrap_or(NO_PEER) } else { NO_PEER };
    let tos = match u16::from_be(eth.ether_type) {
        ETH_P_IP => ctx.read::<Ipv4Hdr>(EthHdr::LEN).map(|h| h.tos).unwrap_or(0),
        ETH_P_IPV6 => ctx.read::<Ipv6Hdr>(EthHdr::LEN).map(|h| (h.dscp() << 2) | h.ecn()).unwrap_or(0),
        _ => 0,
    };
    if eth.dst_addr[0] & 1 == 0 {
        if let Some(peer) = fdb::lookup(tunnel, eth.dst_addr, vid) {
            if peer == skip {
                return Err(DropReason::SplitHorizon);
            }
            return Ok((Target::peer(peer), tos, GreHdr::PROTO_TEB));
        }
    }
    Ok((Target::flood([0; 16], skip), tos, GreHdr::PROTO_TEB))
}
