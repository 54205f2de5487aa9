//! ARP and Neighbour Discovery suppression (`arp_suppress = true`, `gretap`):
//! the overlay's broadcast storm is every host flooding every ARP request to
//! every peer. As EVPN and Open vSwitch's ARP responder do, the tunnel keeps
//! what ARP and Neighbour Discovery said (per tunnel and VLAN, in
//! `XGRE_NEIGH`): the sender of every ARP packet but a probe, the target of
//! every Neighbour Advertisement and the source of every Solicitation that
//! names its link-layer address (RFC 826's merge step, RFC 4861 7.2.3), and answers a broadcast request for an
//! address behind a peer itself, back into the device. A request for an
//! address on this host's own side goes to no peer (its owner answers it);
//! only requests for unknown addresses are flooded.
//!
//! Two small programs on the tunnel device, so the transmit path's
//! verification is untouched: `xgre_neigh_out` (egress, before `xgre_tx`)
//! and `xgre_neigh_in` (ingress, what peers sent). Both hand anything that
//! is not theirs on unchanged (TC_ACT_UNSPEC: the next filter decides).

use aya_ebpf::{
    bindings::{BPF_F_INGRESS, TC_ACT_SHOT, TC_ACT_UNSPEC},
    helpers::generated::bpf_skb_change_tail,
    programs::TcContext,
};
use gre_common::TunnelFlags;
use gre_common::{
    v4_mapped, DropReason, NeighEntry, NeighKey, NeighStats, Tunnel, FDB_STATIC, NEIGH_ANSWER_MARK, NEIGH_REMOTE, NEIGH_ROUTER,
};
use network_types::{arp::ArpHdr, eth::EthHdr, ip::Ipv6Hdr, vlan::VlanHdr};

use crate::kernel::{now_ns, redirect, skb_of, Lookup};
use crate::{
    consts::{ETH_P_8021Q, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, IPPROTO_ICMPV6},
    fdb::age_ns,
    maps::{NEIGH, NEIGH_STATS, TUNNELS},
    packet::Packet,
    trunk,
};

/// RFC 826 `ar$op`.
const ARP_REQUEST: u16 = 1;
const ARP_REPLY: u16 = 2;
/// RFC 4861 section 4.3 and 4.4.
const ND_NS: u8 = 135;
const ND_NA: u8 = 136;
const OPT_SOURCE_LL: u8 = 1;
const OPT_TARGET_LL: u8 = 2;
const NA_ROUTER: u8 = 0x80;
const NA_SOLICITED: u8 = 0x40;
/// A learned entry's time is refreshed at most this often.
const REFRESH_NS: u64 = 1_000_000_000;

/// A Neighbour Solicitation or Advertisement up to its target address.
#[repr(C)]
#[derive(Clone, Copy)]
struct NdMsg {
    kind: u8,
    code: u8,
    csum: [u8; 2],
    /// R, S, O and reserved bits (NA); reserved (NS).
    flags: [u8; 4],
    target: [u8; 16],
}

/// A link-layer address option for Ethernet (RFC 4861 section 4.6.1).
#[repr(C)]
#[derive(Clone, Copy)]
struct LlOpt {
    kind: u8,
    /// In units of 8 bytes.
    len: u8,
    mac: [u8; 6],
}

const ND_LEN: usize = core::mem::size_of::<NdMsg>();
const OPT_LEN: usize = core::mem::size_of::<LlOpt>();

/// Egress: learn from this side, answer or keep back requests.
pub fn try_neigh_out(ctx: &TcContext) -> Result<i32, DropReason> {
    let Some((tunnel, eth, l3, et)) = ours(ctx)? else { return Ok(TC_ACT_UNSPEC) };
    // Hairpinned from a peer (a bridge sending a peer's frame back out):
    // not this side's news, and no request of this side.
    if skb_of(ctx).ingress_ifindex == tunnel.ifindex {
        return Ok(TC_ACT_UNSPEC);
    }
    let vid = vid(ctx, tunnel, &eth)?;
    if et == ETH_P_ARP {
        arp_out(ctx, tunnel, &eth, l3, vid)
    } else {
        nd_out(ctx, tunnel, &eth, l3, vid)
    }
}

/// Ingress: learn what the peers' sides announce.
pub fn try_neigh_in(ctx: &TcContext) -> Result<i32, DropReason> {
    if skb_of(ctx).mark == NEIGH_ANSWER_MARK {
        // One of our answers: it says what the table said already.
        ctx.set_mark(0);
        return Ok(TC_ACT_UNSPEC);
    }
    let Some((tunnel, eth, l3, et)) = ours(ctx)? else { return Ok(TC_ACT_UNSPEC) };
    let vid = vid(ctx, tunnel, &eth)?;
    if et == ETH_P_ARP {
        let a: ArpHdr = ctx.read(l3)?;
        if ipv4_over_ethernet(&a) && a.spa != [0; 4] {
            learn(tunnel.ifindex, vid, v4_mapped(a.spa), a.sha, NEIGH_REMOTE, false);
        }
    } else if let Some((m, ip)) = nd(ctx, l3)? {
        nd_learn(ctx, tunnel, &eth, l3, vid, &m, &ip, NEIGH_REMOTE);
    }
    Ok(TC_ACT_UNSPEC)
}

/// The tunnel, Ethernet header, L3 offset and EtherType of an ARP or IPv6
/// frame on a tunnel with suppression on; None for everything else.
#[inline(always)]
fn ours(ctx: &TcContext) -> Result<Option<(&'static Tunnel, EthHdr, usize, u16)>, DropReason> {
    let eth: EthHdr = ctx.read(0)?;
    let (l3, et) = match u16::from_be(eth.ether_type) {
        ETH_P_8021Q => {
            let tag: VlanHdr = ctx.read(EthHdr::LEN)?;
            (EthHdr::LEN + VlanHdr::LEN, u16::from_be(tag.ether_type))
        }
        et => (EthHdr::LEN, et),
    };
    if et != ETH_P_ARP && et != ETH_P_IPV6 {
        return Ok(None);
    }
    let Some(tunnel) = TUNNELS.lookup(ctx.ifindex()) else { return Ok(None) };
    if !tunnel.flags.intersects(TunnelFlags::ARP_SUPPRESS) {
        return Ok(None);
    }
    Ok(Some((tunnel, eth, l3, et)))
}

#[inline(always)]
fn vid(ctx: &TcContext, tunnel: &Tunnel, eth: &EthHdr) -> Result<u16, DropReason> {
    if tunnel.flags.intersects(TunnelFlags::TRUNK) {
        trunk::frame_vid(ctx, eth)
    } else {
        Ok(0)
    }
}

#[inline(always)]
fn ipv4_over_ethernet(a: &ArpHdr) -> bool {
    a.htype() == 1 && a.ptype() == ETH_P_IP && a.hlen() == 6 && a.plen() == 4
}

/// A reply, or a gratuitous request or reply (sender = target address),
/// from an address (not a probe's 0.0.0.0, RFC 5227).
#[inline(always)]
fn announces(a: &ArpHdr) -> bool {
    a.spa != [0; 4] && (a.oper() == ARP_REPLY || a.spa == a.tpa)
}

#[inline(always)]
fn router(m: &NdMsg) -> u16 {
    if m.flags[0] & NA_ROUTER != 0 {
        NEIGH_ROUTER
    } else {
        0
    }
}

fn arp_out(ctx: &TcContext, tunnel: &Tunnel, eth: &EthHdr, l3: usize, vid: u16) -> Result<i32, DropReason> {
    let a: ArpHdr = ctx.read(l3)?;
    if !ipv4_over_ethernet(&a) {
        return Ok(TC_ACT_UNSPEC);
    }
    if a.spa != [0; 4] {
        learn(tunnel.ifindex, vid, v4_mapped(a.spa), a.sha, 0, false);
    }
    // An announcement goes to everyone, so everyone learns from it.
    if announces(&a) {
        return Ok(TC_ACT_UNSPEC);
    }
    // Only a broadcast request is a flood to save: a unicast one checks
    // that its owner is still there, and goes to it.
    if a.oper() != ARP_REQUEST || a.spa == [0; 4] || eth.dst_addr[0] & 1 == 0 {
        return Ok(TC_ACT_UNSPEC);
    }
    let Some(e) = known(tunnel, vid, v4_mapped(a.tpa)) else {
        count(tunnel.ifindex, |s| s.flooded += 1);
        return Ok(TC_ACT_UNSPEC);
    };
    if e.flags & NEIGH_REMOTE == 0 {
        count(tunnel.ifindex, |s| s.kept_local += 1);
        return Ok(TC_ACT_SHOT);
    }
    // RFC 826: swap the sender and target fields, the answered address's
    // hardware address as the sender, op REPLY, sent to the asker.
    let mut r = a;
    r.set_oper(ARP_REPLY);
    r.sha = e.mac;
    r.spa = a.tpa;
    r.tha = a.sha;
    r.tpa = a.spa;
    store(ctx, 0, &macs(a.sha, e.mac))?;
    store(ctx, l3, &r)?;
    count(tunnel.ifindex, |s| s.arp_answered += 1);
    Ok(answer(ctx, tunnel))
}

fn nd_out(ctx: &TcContext, tunnel: &Tunnel, eth: &EthHdr, l3: usize, vid: u16) -> Result<i32, DropReason> {
    let Some((m, ip)) = nd(ctx, l3)? else { return Ok(TC_ACT_UNSPEC) };
    nd_learn(ctx, tunnel, eth, l3, vid, &m, &ip, 0);
    if m.kind == ND_NA {
        return Ok(TC_ACT_UNSPEC);
    }
    // Duplicate Address Detection (unspecified source) must reach the
    // owner; so must a unicast solicitation (reachability confirmation).
    if ip.src_addr == [0; 16] || eth.dst_addr[0] & 1 == 0 || m.target[0] == 0xff {
        return Ok(TC_ACT_UNSPEC);
    }
    let Some(e) = known(tunnel, vid, m.target) else {
        count(tunnel.ifindex, |s| s.flooded += 1);
        return Ok(TC_ACT_UNSPEC);
    };
    if e.flags & NEIGH_REMOTE == 0 {
        count(tunnel.ifindex, |s| s.kept_local += 1);
        return Ok(TC_ACT_SHOT);
    }
    let to_mac = ll_opt(ctx, l3, OPT_SOURCE_LL).unwrap_or(eth.src_addr);
    // RFC 4861 section 7.2.4: a solicited advertisement (S), unicast to
    // the solicitation's source, with the target's link-layer address;
    // as a proxy's answer, Override clear (section 7.2.8), Router as the
    // target itself last said.
    let mut flags = NA_SOLICITED;
    if e.flags & NEIGH_ROUTER != 0 {
        flags |= NA_ROUTER;
    }
    let mut hdr = ip;
    hdr.vcf = [0x60, 0, 0, 0];
    hdr.payload_len = ((ND_LEN + OPT_LEN) as u16).to_be_bytes();
    hdr.hop_limit = 255;
    hdr.src_addr = m.target;
    hdr.dst_addr = ip.src_addr;
    let mut na = NdMsg { kind: ND_NA, code: 0, csum: [0; 2], flags: [flags, 0, 0, 0], target: m.target };
    let opt = LlOpt { kind: OPT_TARGET_LL, len: 1, mac: e.mac };
    na.csum = icmp6_csum(&hdr, &na, &opt).to_be_bytes();
    let len = (l3 + Ipv6Hdr::LEN + ND_LEN + OPT_LEN) as u32;
    // SAFETY: the skb is the context the kernel passed to this run.
    if unsafe { bpf_skb_change_tail(ctx.skb.skb, len, 0) } != 0 {
        return Err(DropReason::HelperFailed);
    }
    store(ctx, 0, &macs(to_mac, e.mac))?;
    store(ctx, l3, &hdr)?;
    store(ctx, l3 + Ipv6Hdr::LEN, &na)?;
    store(ctx, l3 + Ipv6Hdr::LEN + ND_LEN, &opt)?;
    count(tunnel.ifindex, |s| s.nd_answered += 1);
    Ok(answer(ctx, tunnel))
}

/// What an NS or NA says about where addresses live: an NA its target (at
/// its target link-layer address, else its Ethernet source), an NS its
/// source when it names its link-layer address (DAD's unspecified source
/// says nothing).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn nd_learn(ctx: &TcContext, tunnel: &Tunnel, eth: &EthHdr, l3: usize, vid: u16, m: &NdMsg, ip: &Ipv6Hdr, side: u16) {
    if ip.src_addr == [0; 16] {
        return;
    }
    if m.kind == ND_NA {
        let mac = ll_opt(ctx, l3, OPT_TARGET_LL).unwrap_or(eth.src_addr);
        learn(tunnel.ifindex, vid, m.target, mac, side | router(m), true);
    } else if let Some(mac) = ll_opt(ctx, l3, OPT_SOURCE_LL) {
        learn(tunnel.ifindex, vid, ip.src_addr, mac, side, false);
    }
}

/// An NS or NA (RFC 4861 section 7.1.1 and 7.1.2: hop limit 255, code 0,
/// ICMPv6 right after the IPv6 header), with its IPv6 header.
#[inline(always)]
fn nd(ctx: &TcContext, l3: usize) -> Result<Option<(NdMsg, Ipv6Hdr)>, DropReason> {
    let ip: Ipv6Hdr = ctx.read(l3)?;
    if ip.next_hdr != IPPROTO_ICMPV6 || ip.hop_limit != 255 {
        return Ok(None);
    }
    let m: NdMsg = ctx.read(l3 + Ipv6Hdr::LEN)?;
    if m.code != 0 || (m.kind != ND_NS && m.kind != ND_NA) {
        return Ok(None);
    }
    Ok(Some((m, ip)))
}

/// The Ethernet address of the message's first option, when that is of
/// `kind` (the only option NS and NA carry in practice).
#[inline(always)]
fn ll_opt(ctx: &TcContext, l3: usize, kind: u8) -> Option<[u8; 6]> {
    let o: LlOpt = ctx.read(l3 + Ipv6Hdr::LEN + ND_LEN).ok()?;
    (o.kind == kind && o.len == 1).then_some(o.mac)
}

/// RFC 4443 section 2.3: over the pseudo-header (RFC 8200 section 8.1) and
/// the message.
#[inline(always)]
fn icmp6_csum(ip: &Ipv6Hdr, na: &NdMsg, opt: &LlOpt) -> u16 {
    // SAFETY: `NdMsg` and `LlOpt` are repr(C) byte arrays of exactly
    // ND_LEN and OPT_LEN bytes.
    let na: [u8; ND_LEN] = unsafe { core::mem::transmute(*na) };
    // SAFETY: as above.
    let opt: [u8; OPT_LEN] = unsafe { core::mem::transmute(*opt) };
    let mut s = words(&ip.src_addr) + words(&ip.dst_addr) + (ND_LEN + OPT_LEN) as u32 + IPPROTO_ICMPV6 as u32;
    s += words(&na) + words(&opt);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    !(s as u16)
}

#[inline(always)]
fn words<const N: usize>(b: &[u8; N]) -> u32 {
    let mut s = 0u32;
    let mut i = 0;
    while i + 1 < N {
        s += ((b[i] as u32) << 8) | b[i + 1] as u32;
        i += 2;
    }
    s
}

/// An Ethernet header's two addresses.
#[inline(always)]
fn macs(dst: [u8; 6], src: [u8; 6]) -> [u8; 12] {
    let mut m = [0u8; 12];
    m[..6].copy_from_slice(&dst);
    m[6..].copy_from_slice(&src);
    m
}

#[inline(always)]
fn store<T>(ctx: &TcContext, off: usize, v: &T) -> Result<(), DropReason> {
    ctx.store(off, v, 0).map_err(|_| DropReason::HelperFailed)
}

/// Send the rewritten frame back into the device, as if the answered host
/// had sent it (marked, so the ingress learner lets it be).
#[inline(always)]
fn answer(ctx: &TcContext, tunnel: &Tunnel) -> i32 {
    ctx.set_mark(NEIGH_ANSWER_MARK);
    redirect(tunnel.ifindex, BPF_F_INGRESS as u64)
}

/// The entry for `addr`, if it is static or younger than the tunnel's
/// aging time (the FDB's: an address and its MAC go stale together).
#[inline(always)]
fn known(tunnel: &Tunnel, vid: u16, addr: [u8; 16]) -> Option<NeighEntry> {
    let e = NEIGH.lookup(NeighKey { tunnel_ifindex: tunnel.ifindex, vid, _pad: 0, addr })?;
    let e = *e;
    if now_ns().saturating_sub(e.seen_ns) > age_ns(tunnel) {
        return None;
    }
    Some(e)
}

/// `addr` lives at `mac`, on this side (`flags` 0) or behind a peer
/// (`NEIGH_REMOTE`). Only an advertisement (`advert`) says whether it is a
/// router; other messages keep what the last one said.
#[inline(always)]
fn learn(tunnel_ifindex: u32, vid: u16, addr: [u8; 16], mac: [u8; 6], flags: u16, advert: bool) {
    if mac[0] & 1 != 0 || mac == [0; 6] || addr[0] == 0xff {
        return;
    }
    let key = NeighKey { tunnel_ifindex, vid, _pad: 0, addr };
    let now = now_ns();
    if let Some(e) = NEIGH.get_ptr_mut(key) {
        // SAFETY: a live LRU value: concurrent refreshes race benignly (each
        // field an aligned word store).
        unsafe {
            let seen = core::ptr::read_volatile(&(*e).seen_ns);
            // The config's word stands over what a frame claims.
            if seen == FDB_STATIC {
                return;
            }
            let same_side = ((*e).flags ^ flags) & NEIGH_REMOTE == 0;
            if (*e).mac == mac && same_side && (!advert || (*e).flags == flags) {
                if now.saturating_sub(seen) > REFRESH_NS {
                    core::ptr::write_volatile(&mut (*e).seen_ns, now);
                }
                return;
            }
        }
    }
    let _ = NEIGH.insert(key, NeighEntry { mac, flags, seen_ns: now }, 0);
    count(tunnel_ifindex, |s| s.learned += 1);
}

#[inline(always)]
fn count(tunnel_ifindex: u32, f: impl FnOnce(&mut NeighStats)) {
    let p = match NEIGH_STATS.get_ptr_mut(tunnel_ifindex) {
        Some(p) => p,
        None => {
            let _ = NEIGH_STATS.insert(tunnel_ifindex, NeighStats::default(), 0);
            match NEIGH_STATS.get_ptr_mut(tunnel_ifindex) {
                Some(p) => p,
                None => return,
            }
        }
    };
    // SAFETY: a per-CPU hash value is this CPU's alone, and the program
    // runs to its end without migrating.
    f(unsafe { &mut *p });
}
