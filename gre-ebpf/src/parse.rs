//! Receive-side classification of a frame arriving on a link: is it GRE for
//! one of our tunnels, and is it well formed? Shared by the XDP and TC
//! receive programs.

use gre_common::{
    v4_mapped, DropReason, GreHdr, KeyLookup, RxKey, RxPath, Tunnel, MODE_GRE, MODE_GRETAP,
};
use network_types::{eth::EthHdr, ip::Ipv4Hdr};

use crate::{
    csum,
    maps::{LOCAL_ADDRS, RX_PATHS, TUNNELS, TUNNEL_BY_KEY},
    packet::Packet,
};

const ETH_P_IP: u16 = 0x0800;
const IPPROTO_GRE: u8 = 47;

/// A GRE packet of ours, ready to decapsulate.
pub struct Rx {
    /// Bytes between the Ethernet header and the inner packet (outer IP +
    /// GRE), to remove.
    pub outer_len: usize,
    /// EtherType of the inner packet.
    pub inner_proto: u16,
    pub tunnel: Tunnel,
    pub path: RxPath,
    /// Inner bytes, for the counters.
    pub inner_len: usize,
}

pub enum Verdict {
    /// Not ours: hand it to the stack untouched.
    Pass,
    Decap(Rx),
}

#[inline(always)]
pub fn classify<P: Packet>(pkt: &P) -> Result<Verdict, DropReason> {
    let eth: EthHdr = match pkt.read(0) {
        Ok(e) => e,
        Err(_) => return Ok(Verdict::Pass),
    };
    if u16::from_be(eth.ether_type) != ETH_P_IP {
        return Ok(Verdict::Pass);
    }
    let ip: Ipv4Hdr = match pkt.read(EthHdr::LEN) {
        Ok(h) => h,
        Err(_) => return Ok(Verdict::Pass),
    };
    if ip.proto as u8 != IPPROTO_GRE || ip.version() != 4 {
        return Ok(Verdict::Pass);
    }
    let local = v4_mapped(ip.dst_addr);
    // GRE to someone else (or another GRE implementation's address) is not
    // ours to judge.
    if unsafe { LOCAL_ADDRS.get(&local) }.is_none() {
        return Ok(Verdict::Pass);
    }
    if ip.frags[0] & 0x3f != 0 || ip.frags[1] != 0 {
        // MF set or a non-zero offset: we do not reassemble.
        return Err(DropReason::Fragment);
    }
    let ihl = ip.ihl() as usize;
    let tot_len = u16::from_be_bytes(ip.tot_len) as usize;
    if ihl < Ipv4Hdr::LEN || tot_len < ihl || EthHdr::LEN + tot_len > pkt.len() {
        return Err(DropReason::BadOuter);
    }
    let gre_off = EthHdr::LEN + ihl;
    if tot_len < ihl + GreHdr::LEN {
        return Err(DropReason::Truncated);
    }
    let gre: GreHdr = pkt.read(gre_off)?;
    let flags = gre.flags();
    if flags & GreHdr::RESERVED_1_5 != 0 {
        return Err(DropReason::ReservedBits);
    }
    if gre.version() != 0 {
        return Err(DropReason::BadVersion);
    }
    let gre_len = gre.header_len();
    if tot_len < ihl + gre_len {
        return Err(DropReason::Truncated);
    }
    // Optional fields, in order: checksum+reserved1, key, sequence number.
    let mut opt = gre_off + GreHdr::LEN;
    if gre.has_checksum() {
        // The sum over the whole GRE packet, checksum field included, is
        // 0xffff when the checksum is right.
        if csum::sum_bytes(pkt, gre_off, tot_len - ihl)? != 0xffff {
            return Err(DropReason::BadChecksum);
        }
        opt += 4;
    }
    let lookup = if gre.has_key() {
        let k: [u8; 4] = pkt.read(opt)?;
        KeyLookup { key: u32::from_be_bytes(k), has_key: 1 }
    } else {
        KeyLookup { key: 0, has_key: 0 }
    };
    let tun_ifindex = unsafe { TUNNEL_BY_KEY.get(&lookup) }.ok_or(DropReason::KeyMismatch)?;
    let tunnel = *unsafe { TUNNELS.get(tun_ifindex) }.ok_or(DropReason::KeyMismatch)?;
    let rx_key = RxKey { tunnel_ifindex: tunnel.ifindex, remote: v4_mapped(ip.src_addr), local };
    let path = *unsafe { RX_PATHS.get(&rx_key) }.ok_or(DropReason::UnknownPeer)?;

    let proto = gre.proto();
    let ok = match tunnel.mode {
        MODE_GRE => proto == GreHdr::PROTO_IPV4,
        MODE_GRETAP => proto == GreHdr::PROTO_TEB,
        _ => false,
    };
    if !ok {
        return Err(DropReason::UnknownProto);
    }
    Ok(Verdict::Decap(Rx {
        outer_len: ihl + gre_len,
        inner_proto: proto,
        tunnel,
        path,
        inner_len: tot_len - ihl - gre_len,
    }))
}
