//! What needs no place in a numbered tunnel's order, told on transmit
//! from one read of the IP header: pure TCP ACKs (see gre-common's
//! `ack`), and light packets (see gre-common's `light`): ICMP, and small
//! UDP datagrams of flows that sent no big one for 10 s.

use aya_ebpf::{helpers::generated::bpf_get_hash_recalc, programs::TcContext};
use gre_common::{
    ack::pure_ack,
    light::{light_udp, LIGHT_MAX},
};
use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
};

use crate::consts::{ETH_P_IP, ETH_P_IPV6, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, IP_MF};
use crate::kernel::{now_ns, Lookup};
use crate::maps::BULK_FLOWS;
use crate::packet::Packet;

/// Offset of TCP's data-offset and flags bytes in its header.
const TCP_OFF_FLAGS: usize = 12;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A pure TCP ACK.
    Ack,
    /// ICMP, or a small UDP datagram of a flow that is not bulk.
    Light,
    /// Everything else: numbered, in order.
    Bulk,
}

/// What the frame in `ctx` (Ethernet first, of `ether_type`) is. Over
/// IPv4 not fragmented (every fragment of a datagram alike: bulk), over
/// IPv6 with TCP, ICMPv6 or UDP next. A UDP datagram bigger than
/// `LIGHT_MAX` makes its flow bulk.
#[inline(always)]
pub fn classify(ctx: &TcContext, ether_type: u16) -> Kind {
    let (proto, l4, len) = match ether_type {
        ETH_P_IP => {
            let Ok(ip) = ctx.read::<Ipv4Hdr>(EthHdr::LEN) else { return Kind::Bulk };
            let ihl = ip.ihl() as usize;
            if ip.frag_offset() != 0 || ip.frag_flags() & IP_MF != 0 || ihl < Ipv4Hdr::LEN {
                return Kind::Bulk;
            }
            (ip.proto, ihl, ip.tot_len() as u32)
        }
        ETH_P_IPV6 => {
            let Ok(ip) = ctx.read::<Ipv6Hdr>(EthHdr::LEN) else { return Kind::Bulk };
            (ip.next_hdr, Ipv6Hdr::LEN, Ipv6Hdr::LEN as u32 + ip.payload_len() as u32)
        }
        _ => return Kind::Bulk,
    };
    match proto {
        IPPROTO_TCP => {
            let Ok(b) = ctx.read::<[u8; 2]>(EthHdr::LEN + l4 + TCP_OFF_FLAGS) else { return Kind::Bulk };
            if pure_ack(len.wrapping_sub(l4 as u32) as u16, b) {
                Kind::Ack
            } else {
                Kind::Bulk
            }
        }
        IPPROTO_ICMP if ether_type == ETH_P_IP => Kind::Light,
        IPPROTO_ICMPV6 if ether_type == ETH_P_IPV6 => Kind::Light,
        IPPROTO_UDP => {
            // SAFETY: the context the kernel passed to this run.
            let flow = unsafe { bpf_get_hash_recalc(ctx.skb.skb) };
            let now = now_ns();
            if len > LIGHT_MAX {
                // A bulk flow sends many: its stamp is moved where it lies,
                // and only a new flow takes the LRU's update (a fresh
                // element, its locks) per datagram.
                match BULK_FLOWS.get_ptr_mut(flow) {
                    // SAFETY: the kernel keeps a looked-up value alive until
                    // the program returns; an aligned 8-byte store, and any
                    // CPU's stamp of the same moment will do.
                    Some(stamp) => unsafe { *stamp = now },
                    None => {
                        let _ = BULK_FLOWS.insert(flow, now, 0);
                    }
                }
                return Kind::Bulk;
            }
            if light_udp(len, BULK_FLOWS.lookup(flow).copied(), now) {
                Kind::Light
            } else {
                Kind::Bulk
            }
        }
        _ => Kind::Bulk,
    }
}
