//! Path MTU discovery, transmit side: an inner packet too big for its
//! path is answered as Linux's ip_gre answers it (`tnl_update_pmtu`):
//! IPv4 with DF gets "fragmentation needed" and IPv6 "Packet Too Big",
//! with the MTU the tunnel can carry over that path, back to its sender.
//!
//! The packet itself is turned into the error (cut to what an error
//! quotes, the error's headers put in front) and sent into the tunnel
//! device's ingress, as the ARP responder answers: the stack then takes
//! it as coming from the peer's side, and delivers or forwards it to the
//! sender. Its source is the inner destination, the one address on the
//! far side of the tunnel the sender's routing, rp_filter and firewall
//! already accept packets from (the host's own address would be a martian
//! on ingress).

use aya_ebpf::{
    bindings::{__sk_buff, bpf_adj_room_mode::BPF_ADJ_ROOM_MAC, BPF_F_INGRESS},
    helpers::generated::{bpf_skb_change_tail, bpf_skb_store_bytes},
    programs::TcContext,
};
use gre_common::{pmtu::PmtuEvent, DropReason};
use network_types::{
    eth::EthHdr,
    icmp::{Icmpv4Hdr, Icmpv6Hdr},
    ip::{Ipv4Hdr, Ipv6Hdr},
};

use crate::kernel::{redirect, skb_of};
use crate::{
    consts::{ETH_P_IP, ETH_P_IPV6, IPPROTO_ICMP, IPPROTO_ICMPV6},
    csum, global,
    packet::Packet,
    pmtu,
};

/// An IPv4 ICMP error is at most 576 bytes (RFC 1812 section 4.3.2.3).
const V4_ERROR_MAX: usize = 576;
/// An ICMPv6 error is at most the IPv6 minimum MTU (RFC 4443 section 2.4).
const V6_ERROR_MAX: usize = 1280;
const V4_HDRS: usize = Ipv4Hdr::LEN + Icmpv4Hdr::LEN;
const V6_HDRS: usize = Ipv6Hdr::LEN + Icmpv6Hdr::LEN;

/// Turn the packet at `skb` (an IP packet behind an Ethernet header) into
/// the ICMP error that reports `mtu` to its sender, and send it into the
/// tunnel device. A global function: the verdict, or a negative drop
/// reason.
#[no_mangle]
#[inline(never)]
pub extern "C" fn xgre_too_big(skb: *mut __sk_buff, mtu: u32) -> i64 {
    let ctx = TcContext::new(skb);
    global::encode(too_big(&ctx, mtu))
}

#[inline(always)]
fn too_big(ctx: &TcContext, mtu: u32) -> Result<i32, DropReason> {
    let eth: EthHdr = ctx.read(0)?;
    let macs = EthHdr { dst_addr: eth.src_addr, src_addr: eth.dst_addr, ether_type: eth.ether_type };
    let l3 = Packet::len(ctx).checked_sub(EthHdr::LEN).ok_or(DropReason::Truncated)?;
    match u16::from_be(eth.ether_type) {
        ETH_P_IP => {
            let ip: Ipv4Hdr = ctx.read(EthHdr::LEN)?;
            let quote = reshape(ctx, l3.min(V4_ERROR_MAX - V4_HDRS), V4_HDRS)?;
            let mut hdr = V4Error {
                eth: macs,
                ip: ip_v4(&ip, (V4_HDRS + quote) as u16),
                icmp: Icmpv4Hdr { type_: 3, code: 4, check: [0; 2], data: [0, 0, (mtu >> 8) as u8, mtu as u8] },
            };
            let body = be_sum(ctx, EthHdr::LEN + V4_HDRS, quote)?;
            hdr.icmp.check = (!csum::fold(body + csum::be_words(&icmp_bytes(&hdr.icmp)))).to_be_bytes();
            store(ctx, &hdr)?;
            pmtu::count(PmtuEvent::FragNeededSent);
        }
        ETH_P_IPV6 => {
            let ip: Ipv6Hdr = ctx.read(EthHdr::LEN)?;
            let quote = reshape(ctx, l3.min(V6_ERROR_MAX - V6_HDRS), V6_HDRS)?;
            let len = (Icmpv6Hdr::LEN + quote) as u16;
            let mut hdr =
                V6Error { eth: macs, ip: ip_v6(&ip, len), icmp: Icmpv6Hdr { type_: 2, code: 0, check: [0; 2], data: mtu.to_be_bytes() } };
            let body = be_sum(ctx, EthHdr::LEN + V6_HDRS, quote)?;
            let pseudo = csum::be_words(&hdr.ip.src_addr) + csum::be_words(&hdr.ip.dst_addr) + len as u64 + IPPROTO_ICMPV6 as u64;
            hdr.icmp.check = (!csum::fold(body + pseudo + csum::be_words(&icmp_bytes(&hdr.icmp)))).to_be_bytes();
            store(ctx, &hdr)?;
            pmtu::count(PmtuEvent::TooBigSent);
        }
        _ => return Err(DropReason::TooBig),
    }
    let ifindex = skb_of(ctx).ifindex;
    // TC_ACT_REDIRECT, or TC_ACT_SHOT for a bad flag: a verdict either way.
    Ok(redirect(ifindex, BPF_F_INGRESS as u64))
}

#[repr(C, packed)]
struct V4Error {
    eth: EthHdr,
    ip: Ipv4Hdr,
    icmp: Icmpv4Hdr,
}

#[repr(C, packed)]
struct V6Error {
    eth: EthHdr,
    ip: Ipv6Hdr,
    icmp: Icmpv6Hdr,
}

/// Cut the IP packet to `quote` bytes and make `room` bytes in front of
/// it, behind the Ethernet header. Returns `quote`.
#[inline(always)]
fn reshape(ctx: &TcContext, quote: usize, room: usize) -> Result<usize, DropReason> {
    // SAFETY: the skb is the context the kernel passed to this run.
    if unsafe { bpf_skb_change_tail(ctx.skb.skb, (EthHdr::LEN + quote) as u32, 0) } != 0 {
        return Err(DropReason::HelperFailed);
    }
    ctx.adjust_room(room as i32, BPF_ADJ_ROOM_MAC, 0).map_err(|_| DropReason::HelperFailed)?;
    Ok(quote)
}

/// One's complement sum of `len` bytes at `off`, as big-endian words.
#[inline(always)]
fn be_sum(ctx: &TcContext, off: usize, len: usize) -> Result<u64, DropReason> {
    let s = csum::sum_bytes(ctx, off, len)?;
    Ok(u16::from_be_bytes(s.to_ne_bytes()) as u64)
}

#[inline(always)]
fn icmp_bytes<T: Copy>(h: &T) -> [u8; 8] {
    // SAFETY: callers pass 8-byte ICMP headers of byte arrays.
    unsafe { core::mem::transmute_copy(h) }
}

#[inline(always)]
fn store<T>(ctx: &TcContext, hdr: &T) -> Result<(), DropReason> {
    let n = core::mem::size_of::<T>() as u32;
    // SAFETY: `n` is the size of `*hdr`; the skb is the context the kernel passed to this run.
    if unsafe { bpf_skb_store_bytes(ctx.skb.skb, 0, (hdr as *const T).cast(), n, 0) } != 0 {
        return Err(DropReason::HelperFailed);
    }
    Ok(())
}

/// The error's IPv4 header: from the packet's destination back to its
/// source, with the precedence of network control (as Linux's ICMP).
#[inline(always)]
fn ip_v4(inner: &Ipv4Hdr, tot_len: u16) -> Ipv4Hdr {
    let mut b = [0u8; Ipv4Hdr::LEN];
    b[0] = 0x45;
    b[1] = 0xc0;
    b[2..4].copy_from_slice(&tot_len.to_be_bytes());
    b[8] = 64;
    b[9] = IPPROTO_ICMP;
    b[12..16].copy_from_slice(&inner.dst_addr);
    b[16..20].copy_from_slice(&inner.src_addr);
    let sum = csum::ipv4_header(&b);
    b[10..12].copy_from_slice(&sum.to_be_bytes());
    // SAFETY: `Ipv4Hdr` is `LEN` bytes of byte arrays, any value valid.
    unsafe { core::mem::transmute::<[u8; Ipv4Hdr::LEN], Ipv4Hdr>(b) }
}

#[inline(always)]
fn ip_v6(inner: &Ipv6Hdr, payload_len: u16) -> Ipv6Hdr {
    let mut b = [0u8; Ipv6Hdr::LEN];
    b[0] = 0x60;
    b[4..6].copy_from_slice(&payload_len.to_be_bytes());
    b[6] = IPPROTO_ICMPV6;
    b[7] = 64;
    b[8..24].copy_from_slice(&inner.dst_addr);
    b[24..40].copy_from_slice(&inner.src_addr);
    // SAFETY: `Ipv6Hdr` is `LEN` bytes of byte arrays, any value valid.
    unsafe { core::mem::transmute::<[u8; Ipv6Hdr::LEN], Ipv6Hdr>(b) }
}
