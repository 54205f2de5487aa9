//! Light packets on transmit (see gre-common's `light`): ICMP, and small
//! UDP datagrams of flows that sent no big one for 10 s.

use aya_ebpf::{helpers::generated::bpf_get_hash_recalc, programs::TcContext};
use gre_common::light::{light_udp, LIGHT_MAX};
use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
};

use crate::consts::{ETH_P_IP, ETH_P_IPV6, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_UDP, IP_MF};
use crate::kernel::{now_ns, Lookup};
use crate::maps::BULK_FLOWS;
use crate::packet::Packet;

/// Whether the frame in `ctx` (Ethernet first, of `ether_type`) is light:
/// ICMP or ICMPv6, or UDP of at most `LIGHT_MAX` bytes whose flow is not
/// bulk; not fragmented, and over IPv6 with ICMPv6 or UDP next. A UDP
/// datagram too big to be light makes its flow bulk.
#[inline(always)]
pub fn is_light(ctx: &TcContext, ether_type: u16) -> bool {
    let (proto, len) = match ether_type {
        ETH_P_IP => {
            let Ok(ip) = ctx.read::<Ipv4Hdr>(EthHdr::LEN) else { return false };
            // Every fragment of a datagram is treated alike: numbered.
            if ip.frag_offset() != 0 || ip.frag_flags() & IP_MF != 0 {
                return false;
            }
            (ip.proto, ip.tot_len() as u32)
        }
        ETH_P_IPV6 => {
            let Ok(ip) = ctx.read::<Ipv6Hdr>(EthHdr::LEN) else { return false };
            (ip.next_hdr, Ipv6Hdr::LEN as u32 + ip.payload_len() as u32)
        }
        _ => return false,
    };
    match proto {
        IPPROTO_ICMP if ether_type == ETH_P_IP => true,
        IPPROTO_ICMPV6 if ether_type == ETH_P_IPV6 => true,
        IPPROTO_UDP => {
            // SAFETY: the context the kernel passed to this run.
            let flow = unsafe { bpf_get_hash_recalc(ctx.skb.skb) };
            let now = now_ns();
            if len > LIGHT_MAX {
                let _ = BULK_FLOWS.insert(flow, now, 0);
                return false;
            }
            let last = BULK_FLOWS.lookup(flow).copied();
            light_udp(len, last, now)
        }
        _ => false,
    }
}
