//! The GRE checksum of a packet whose inner TCP or UDP checksum is not
//! filled in yet.
//!
//! The stack hands TCP and UDP to a device with CHECKSUM_PARTIAL: the
//! checksum field holds only the pseudo-header sum, and whoever transmits
//! (the NIC, or the stack for a device without offload) fills it later, after
//! our GRE checksum was computed. A GRE checksum over the unfilled field is
//! wrong on the wire: Open vSwitch and Linux drop every such segment.
//!
//! Linux's ip_gre has the same problem and solves it with local checksum
//! offload (`lco_csum`, Documentation/networking/checksum-offloads.rst):
//! once filled, the L4 bytes always sum to the complement of the
//! pseudo-header sum, whatever the payload. So the inner packet's final sum
//! is the sum of the bytes in front of the L4 header plus ~pseudo.
//!
//! `__sk_buff` does not say whether the skb is CHECKSUM_PARTIAL, so the
//! bytes decide: a field that already verifies is final; a field holding
//! exactly the pseudo-header sum is partial; anything else is summed as it
//! is (its receiver will judge the inner checksum).

use gre_common::DropReason;
use network_types::ip::{Ipv4Hdr, Ipv6Hdr};

use crate::{
    consts::{ETH_P_IP, ETH_P_IPV6, IPPROTO_TCP, IPPROTO_UDP},
    csum,
    maps::LCO_HDR,
    packet::Packet,
};

/// Where the inner L4 header is and what its pseudo-header sums to.
struct L4 {
    /// Offset of the L4 header in the packet.
    off: usize,
    /// Offset of its checksum field.
    csum_off: usize,
    /// Unfolded pseudo-header sum.
    pseudo: u64,
}

#[inline(always)]
fn csum_field(proto: u8) -> Option<usize> {
    match proto {
        IPPROTO_TCP => Some(16),
        IPPROTO_UDP => Some(6),
        _ => None,
    }
}

/// The inner TCP/UDP header of the packet whose IP header starts at `l3`
/// with EtherType `ty`, when there is one we can account for. The IP
/// header is read into a per-CPU buffer: the transmit program's stack is
/// full.
#[inline(always)]
fn l4<P: Packet>(pkt: &P, l3: usize, ty: u16) -> Option<L4> {
    // SAFETY: this CPU's buffer, alive for the map's life and used by
    // nothing else during this run.
    let buf = unsafe { &mut *LCO_HDR.get_ptr_mut(0)? };
    match ty {
        ETH_P_IP => {
            pkt.load_raw(l3, buf.as_mut_ptr(), Ipv4Hdr::LEN as u32).ok()?;
            // A fragment's checksum covers the whole datagram, not this part.
            if buf[6] & 0x3f != 0 || buf[7] != 0 {
                return None;
            }
            let proto = buf[9];
            let f = csum_field(proto)?;
            let ihl = ((buf[0] & 0x0f) as usize) * 4;
            let len = (u16::from_be_bytes([buf[2], buf[3]]) as usize).checked_sub(ihl)?;
            let pseudo = csum::be_words(&buf[12..20]) + proto as u64 + len as u64;
            Some(L4 { off: l3 + ihl, csum_off: l3 + ihl + f, pseudo })
        }
        ETH_P_IPV6 => {
            pkt.load_raw(l3, buf.as_mut_ptr(), Ipv6Hdr::LEN as u32).ok()?;
            // Extension headers: not followed here.
            let proto = buf[6];
            let f = csum_field(proto)?;
            let len = u16::from_be_bytes([buf[4], buf[5]]) as u64;
            let pseudo = csum::be_words(&buf[8..40]) + proto as u64 + len;
            Some(L4 { off: l3 + Ipv6Hdr::LEN, csum_off: l3 + Ipv6Hdr::LEN + f, pseudo })
        }
        _ => None,
    }
}

/// One's complement values are equal, taking 0 and 0xffff as the same.
#[inline(always)]
fn same(a: u16, b: u16) -> bool {
    a == b || (a | b == 0xffff && a & b == 0)
}

/// The sum the GRE checksum must cover for the inner packet at `inner`
/// (to the end of the packet), given `sum`, the sum of its bytes as they
/// are now. `ty` is the inner EtherType and `l3` where its IP header
/// starts (after the inner Ethernet header in gretap mode).
#[inline(always)]
pub fn final_sum<P: Packet>(pkt: &P, inner: usize, l3: usize, ty: u16, sum: u16) -> Result<u16, DropReason> {
    let Some(l4) = l4(pkt, l3, ty) else { return Ok(sum) };
    let Ok(field) = pkt.read::<[u8; 2]>(l4.csum_off) else { return Ok(sum) };
    let field = u16::from_be_bytes(field);
    if field == 0 && ty == ETH_P_IP && l4.csum_off == l4.off + 6 {
        // UDP over IPv4 without a checksum: final as it is.
        return Ok(sum);
    }
    // The bytes in front of the L4 header (IP header, inner Ethernet).
    let head = csum::sum_bytes(pkt, inner, l4.off - inner)?;
    let l4_sum = csum::fold(sum as u64 + !head as u64);
    // `sum` and `head` are in the order bpf_csum_diff sums in (native);
    // the pseudo-header was summed as big-endian words and the field read
    // as one. A one's complement sum in the other order is the same sum
    // byte-swapped.
    let pseudo_be = csum::fold(l4.pseudo);
    let pseudo = u16::from_ne_bytes(pseudo_be.to_be_bytes());
    if csum::fold(l4_sum as u64 + pseudo as u64) == 0xffff || !same(field, pseudo_be) {
        return Ok(sum);
    }
    Ok(csum::fold(head as u64 + !pseudo as u64))
}
