//! Pure TCP ACKs on transmit (see gre-common's `ack`): they take a peer's
//! fastest path where its paths differ in delay.

use aya_ebpf::programs::TcContext;
use gre_common::ack::pure_ack;
use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
};

use crate::consts::{ETH_P_IP, ETH_P_IPV6, IPPROTO_TCP, IP_MF};
use crate::packet::Packet;

/// Offset of TCP's data-offset and flags bytes in its header.
const OFF_FLAGS: usize = 12;

/// Whether the frame in `ctx` (Ethernet first, of `ether_type`) is a pure
/// TCP ACK: over IPv4 not fragmented, over IPv6 with TCP next.
#[inline(always)]
pub fn is_pure_ack(ctx: &TcContext, ether_type: u16) -> bool {
    match ether_type {
        ETH_P_IP => {
            let Ok(ip) = ctx.read::<Ipv4Hdr>(EthHdr::LEN) else { return false };
            // A fragment's length is not its segment's.
            if ip.proto != IPPROTO_TCP || ip.frag_offset() != 0 || ip.frag_flags() & IP_MF != 0 {
                return false;
            }
            let ihl = ip.ihl() as usize;
            if ihl < Ipv4Hdr::LEN {
                return false;
            }
            let Ok(b) = ctx.read::<[u8; 2]>(EthHdr::LEN + ihl + OFF_FLAGS) else { return false };
            pure_ack(ip.tot_len().wrapping_sub(ihl as u16), b)
        }
        ETH_P_IPV6 => {
            let Ok(ip) = ctx.read::<Ipv6Hdr>(EthHdr::LEN) else { return false };
            if ip.next_hdr != IPPROTO_TCP {
                return false;
            }
            let Ok(b) = ctx.read::<[u8; 2]>(EthHdr::LEN + Ipv6Hdr::LEN + OFF_FLAGS) else { return false };
            pure_ack(ip.payload_len(), b)
        }
        _ => false,
    }
}
