//! Whether a unicast packet fits the path MTU of the peer it goes to, and
//! what happens when it does not, as with Linux's ip_gre:
//! - an IPv4 packet with DF, and an IPv6 packet, is answered with an ICMP
//!   error that gives the MTU the tunnel carries over the path (`icmp.rs`);
//! - anything else (IPv4 without DF, a frame an error cannot answer)
//!   leaves with DF clear for the underlay to fragment, where the underlay
//!   is IPv4; an IPv6 underlay does not fragment, and it is dropped.
//!
//! A GSO packet is judged by the wire packets it stands for: one segment's
//! headers and payload. ip_gre lowers such a packet's route MTU instead
//! (`skb_dst_update_pmtu`), which the sender's TCP reads before its next
//! segment; no BPF helper can, so xgre answers it like any other, and the
//! sender's TCP takes the error as about its segment.

use aya_ebpf::{bindings::__sk_buff, programs::TcContext};
use gre_common::TunnelFlags;
use gre_common::{
    pmtu::{PmtuEvent, MIN_PMTU_V4},
    DropReason, GreHdr,
};
use network_types::{
    eth::EthHdr,
    icmp::Icmpv4Hdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
};

use crate::kernel::skb_of;
use crate::{
    consts::{ETH_P_IP, ETH_P_IPV6, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP},
    global,
    packet::Packet,
    path, pmtu,
};

/// It fits (or is not ours to judge).
pub const FITS: i32 = 0;
/// Send it with DF clear.
pub const CLEAR_DF: i32 = 1;
/// Answer it with an ICMP error carrying MTU `v - ANSWER`.
pub const ANSWER: i32 = 1 << 16;

/// IPv6's minimum MTU (RFC 8200 section 5): a smaller one is never
/// reported to an IPv6 sender.
const IPV6_MIN_MTU: u32 = 1280;
/// IPv4 flag Don't Fragment, of the 3 flag bits.
const IP_DF: u8 = 2;

/// What to do with the packet at `skb` (of EtherType `ether_type`) for
/// `peer_id` of a tunnel with `flags`; `tap`: a gretap frame, whose
/// Ethernet header travels too. A global function: `FITS`, `CLEAR_DF`,
/// `ANSWER + mtu`, or a negative drop reason.
#[no_mangle]
#[inline(never)]
pub extern "C" fn xgre_fit(skb: *mut __sk_buff, peer_id: u32, flags: u32, tap: u32, ether_type: u32) -> i64 {
    let flags = TunnelFlags::from_bits_retain(flags);
    let ctx = TcContext::new(skb);
    global::encode(fit(&ctx, peer_id, flags, tap != 0, ether_type as u16))
}

#[inline(always)]
fn fit(ctx: &TcContext, peer_id: u32, flags: TunnelFlags, tap: bool, ether_type: u16) -> Result<i32, DropReason> {
    if flags.intersects(TunnelFlags::NO_PMTUDISC) {
        return Ok(FITS);
    }
    let v6 = flags.intersects(TunnelFlags::UNDERLAY6);
    let overhead = if v6 { Ipv6Hdr::LEN } else { Ipv4Hdr::LEN }
        + GreHdr::len_for(
            flags.intersects(TunnelFlags::CSUM),
            flags.intersects(TunnelFlags::KEY | TunnelFlags::NVGRE),
            flags.intersects(TunnelFlags::SEQ),
        )
        + if tap { EthHdr::LEN } else { 0 };
    let l3 = wire_l3(ctx, ether_type);
    let outer = (l3 + overhead) as u32;
    // No path MTU is ever below the IPv4 minimum: most packets stop here.
    if outer <= MIN_PMTU_V4 {
        return Ok(FITS);
    }
    let pmtu = path::xgre_peer_pmtu(peer_id);
    if pmtu == 0 || outer <= pmtu {
        return Ok(FITS);
    }
    let mtu = pmtu.saturating_sub(overhead as u32);
    // A trunk's tagged frame: no error can be addressed through its tag.
    let tagged = skb_of(ctx).vlan_present != 0;
    let answer = match ether_type {
        _ if tagged => false,
        ETH_P_IP => {
            let ip: Ipv4Hdr = ctx.read(EthHdr::LEN)?;
            if ip.frag_flags() & IP_DF == 0 {
                false
            } else if answerable_v4(ctx, &ip)? {
                true
            } else {
                // DF, but no error may be sent about it: dropped, as Linux drops it.
                return Err(DropReason::TooBig);
            }
        }
        ETH_P_IPV6 => mtu >= IPV6_MIN_MTU,
        _ => false,
    };
    if answer {
        return Ok(ANSWER + mtu as i32);
    }
    if v6 {
        return Err(DropReason::TooBig);
    }
    pmtu::count(PmtuEvent::DfCleared);
    Ok(CLEAR_DF)
}

/// Bytes of IP packet (after the frame's Ethernet header) each wire packet
/// carries: the packet, or for a GSO packet of TCP or UDP one segment.
#[inline(always)]
fn wire_l3(ctx: &TcContext, ether_type: u16) -> usize {
    let len = Packet::len(ctx).saturating_sub(EthHdr::LEN);
    let _skb = ctx.skb.skb;
    if skb_of(ctx).gso_segs <= 1 {
        return len;
    }
    let (ip_len, proto) = match ether_type {
        ETH_P_IP => match ctx.read::<Ipv4Hdr>(EthHdr::LEN) {
            Ok(ip) => (ip.ihl() as usize, ip.proto),
            Err(_) => return len,
        },
        ETH_P_IPV6 => match ctx.read::<Ipv6Hdr>(EthHdr::LEN) {
            Ok(ip) => (Ipv6Hdr::LEN, ip.next_hdr),
            Err(_) => return len,
        },
        _ => return len,
    };
    let l4 = match proto {
        IPPROTO_TCP => match ctx.read::<u8>(EthHdr::LEN + ip_len + 12) {
            // The data offset, in 32-bit words.
            Ok(b) => (b >> 4) as usize * 4,
            Err(_) => return len,
        },
        IPPROTO_UDP => 8,
        _ => return len,
    };
    (ip_len + l4 + skb_of(ctx).gso_size as usize).min(len)
}

/// RFC 1122 section 3.2.2: no ICMP error about an ICMP error, a non-first
/// fragment, or a packet from no one in particular.
#[inline(always)]
fn answerable_v4(ctx: &TcContext, ip: &Ipv4Hdr) -> Result<bool, DropReason> {
    let s = ip.src_addr;
    if s == [0; 4] || s[0] & 0xf0 >= 0xe0 || ip.frag_offset() != 0 {
        return Ok(false);
    }
    if ip.proto == IPPROTO_ICMP {
        let icmp: Icmpv4Hdr = ctx.read(EthHdr::LEN + ip.ihl() as usize)?;
        return Ok(!matches!(icmp.type_, 3 | 4 | 5 | 11 | 12));
    }
    Ok(true)
}
