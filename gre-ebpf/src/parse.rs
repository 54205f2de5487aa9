//! Receive-side classification of a frame arriving on a link: is it GRE for
//! one of our tunnels, and is it well formed? Shared by the XDP and TC
//! receive programs.

use gre_common::TunnelFlags;
use gre_common::{
    pmtu::PmtuEvent, repair::PROTO_REPAIR, reseq::is_number, v4_mapped, DropReason, GreHdr, KeyLookup, RxKey, RxPath, Tunnel,
    ANNOUNCE_IPID, ANNOUNCE_NUMBERS, KEY_NVGRE, MODE_GRE, MODE_GRETAP, NVGRE_FLOWID_MASK, PROTO_KEEPALIVE,
};
use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
    vlan::VlanHdr,
};

use crate::kernel::Lookup;
use crate::{
    announce,
    consts::{
        ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6, IPPROTO_FRAGMENT, IPPROTO_GRE, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IP_MF,
    },
    csum,
    maps::{LOCAL_ADDRS, REASM_TAP, RX_PATHS, TUNNELS, TUNNEL_BY_KEY},
    packet::Packet,
    pmtu, seq, trunk,
};

/// Whether the packet GRE carries at `at` (of GRE protocol `proto`) is a
/// TCP segment with data: IPv4 or IPv6 without extension headers, bare
/// or in an Ethernet frame (gretap).
#[inline(always)]
fn tcp_data<P: Packet>(pkt: &P, at: usize, proto: u16) -> bool {
    let (at, ether_type) = if proto == GreHdr::PROTO_TEB {
        let Ok(eth) = pkt.read::<EthHdr>(at) else { return false };
        (at + EthHdr::LEN, u16::from_be(eth.ether_type))
    } else {
        (at, proto)
    };
    let (l4, payload) = match ether_type {
        ETH_P_IP => {
            let Ok(ip) = pkt.read::<Ipv4Hdr>(at) else { return false };
            if ip.proto != IPPROTO_TCP {
                return false;
            }
            (at + ip.ihl() as usize, ip.tot_len().wrapping_sub(ip.ihl() as u16))
        }
        ETH_P_IPV6 => {
            let Ok(ip) = pkt.read::<Ipv6Hdr>(at) else { return false };
            if ip.next_hdr != IPPROTO_TCP {
                return false;
            }
            (at + Ipv6Hdr::LEN, ip.payload_len())
        }
        _ => return false,
    };
    let Ok(off_flags) = pkt.read::<[u8; 2]>(l4 + 12) else { return false };
    payload > (off_flags[0] >> 4) as u16 * 4
}

/// A GRE packet of ours, ready to decapsulate.
pub struct Rx {
    /// Bytes between the Ethernet header and the inner packet, to remove:
    /// a priority tag (VID 0) in the frame, outer IP and GRE.
    pub outer_len: usize,
    /// EtherType of the inner packet.
    pub inner_proto: u16,
    pub tunnel: Tunnel,
    pub path: RxPath,
    /// Inner bytes, for the counters.
    pub inner_len: usize,
    /// The peer's number for the packet, when it has one: its RFC 2890
    /// sequence number, or with `ip_id_sequence` (ours, or announced by
    /// the peer) its outer IPv4 ID widened to 32 bits (`seq::widen`).
    pub seq: Option<u32>,
    /// Whether a resequencer, if one runs, takes the packet: it is
    /// numbered, and either `resequence` is set or the peer announces
    /// that it numbers.
    pub resequence: bool,
    /// Trunk tunnels: the VLAN the key stands for (0: untagged).
    pub vid: u16,
}

pub enum Verdict {
    /// Not ours: hand it to the stack untouched.
    Pass,
    /// Deliver the inner packet to the tunnel device.
    Decap(Rx),
    /// A keepalive of ours came back over this path, what it carries
    /// behind its GRE header at `at`: note it, consume it.
    KeepaliveReply { path: RxPath, at: usize },
    /// The peer's keepalive (Cisco format: the inner packet is GRE from us
    /// back to it): decapsulate and send the inner packet back out of the
    /// link it came in on, as any GRE peer does.
    Reflect(Rx),
    /// ICMP(v6) for one of our addresses, its IP header at `at`: the
    /// program learns from it what path MTU it reports (`pmtu.rs`), then
    /// hands it to the stack untouched.
    Icmp { at: usize, v4: bool },
}

/// What an outer IP header turned out to hold.
enum Seen {
    /// Nothing of ours.
    Other,
    Icmp {
        at: usize,
        v4: bool,
    },
    Gre(Outer),
}

/// Where the frame's IP header starts and its EtherType, or None when the
/// frame belongs to a VLAN: GRE on another VLAN of the link is for that
/// VLAN's device and addresses, not ours (Linux drops it as another host's
/// unless a VLAN device takes it). A priority tag (VID 0) means "no VLAN"
/// in 802.1Q, as Linux treats it. TC sees the first tag already taken off
/// by the kernel; XDP sees it in the frame, and takes a VID 0 tag there.
/// An in-frame tag at TC is a second one (QinQ): never ours.
#[inline(always)]
fn l2<P: Packet>(pkt: &P, eth: &EthHdr) -> Option<(usize, u16)> {
    if let Some(tci) = pkt.stripped_vlan() {
        if tci & 0x0fff != 0 {
            return None;
        }
    }
    let ty = u16::from_be(eth.ether_type);
    if ty != ETH_P_8021Q && ty != ETH_P_8021AD {
        return Some((EthHdr::LEN, ty));
    }
    // Only an skb can have had a tag stripped: at TC a tag in the frame is a
    // second one.
    if pkt.is_skb() {
        return None;
    }
    let tag: VlanHdr = pkt.read(EthHdr::LEN).ok()?;
    if tag.vid() != 0 {
        return None;
    }
    Some((EthHdr::LEN + VlanHdr::LEN, u16::from_be(tag.ether_type)))
}

#[inline(always)]
pub fn classify<P: Packet>(pkt: &P) -> Result<Verdict, DropReason> {
    let eth: EthHdr = match pkt.read(0) {
        Ok(e) => e,
        Err(_) => return Ok(Verdict::Pass),
    };
    let Some((l2_len, ty)) = l2(pkt, &eth) else { return Ok(Verdict::Pass) };
    let seen = match ty {
        ETH_P_IP => outer_v4(pkt, &eth, l2_len)?,
        ETH_P_IPV6 => outer_v6(pkt, &eth, l2_len)?,
        _ => Seen::Other,
    };
    let Outer { ip_len, tot_len, src, local, v4, ip_id } = match seen {
        Seen::Gre(o) => o,
        Seen::Icmp { at, v4 } => return Ok(Verdict::Icmp { at, v4 }),
        Seen::Other => return Ok(Verdict::Pass),
    };
    let ihl = ip_len;
    // Bytes of priority tag in front of the outer IP header.
    let tag = l2_len - EthHdr::LEN;
    let gre_off = l2_len + ihl;
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
        // 0xffff when the checksum is right. A CHECKSUM_PARTIAL skb came
        // from this machine with its checksums to be filled (Linux's
        // ip_gre leaves the GRE checksum to the device; xgre leaves the
        // inner TCP checksum): the kernel takes it as good, and so do we.
        if !pkt.checksum_partial() && csum::sum_bytes(pkt, gre_off, tot_len - ihl)? != 0xffff {
            return Err(DropReason::BadChecksum);
        }
        opt += 4;
    }
    let lookup = if gre.has_key() {
        let k: [u8; 4] = pkt.read(opt)?;
        opt += 4;
        KeyLookup { key: u32::from_be_bytes(k), has_key: 1 }
    } else {
        KeyLookup { key: 0, has_key: 0 }
    };
    let gre_seq = if gre.has_seq() {
        let s: [u8; 4] = pkt.read(opt)?;
        Some(u32::from_be_bytes(s))
    } else {
        None
    };
    let tun_ifindex = tunnel_of(lookup).ok_or(DropReason::KeyMismatch)?;
    let tunnel = *TUNNELS.lookup(tun_ifindex).ok_or(DropReason::KeyMismatch)?;
    let vid = if tunnel.flags.intersects(TunnelFlags::TRUNK) {
        trunk::vid_of(tunnel.ifindex, lookup.key).ok_or(DropReason::KeyMismatch)?
    } else {
        0
    };
    let rx_key = RxKey { tunnel_ifindex: tunnel.ifindex, remote: src, local };
    let path = *RX_PATHS.lookup(rx_key).ok_or(DropReason::UnknownPeer)?;
    // A configured peer asking for a packet again (`gre_common::repair`):
    // for `xgre run`'s raw GRE socket, before its IPv4 ID is taken for a
    // number.
    if gre.proto() == PROTO_REPAIR {
        return Ok(Verdict::Pass);
    }
    let announced = announce::in_force(path.peer_id);
    let inner_at = EthHdr::LEN + tag + ihl + gre_len;
    let seq = match gre_seq {
        None if v4 && (tunnel.flags.intersects(TunnelFlags::IPID_SEQ) || announced & ANNOUNCE_IPID != 0) => {
            // ID 0 says "no number" on the light packets it is given to
            // (`TX_UNNUMBERED`), and nothing else of a single packet's;
            // a GSO packet's segments count up through it: one carrying
            // TCP data has the number ID 0 stands for there.
            let counted_through = ip_id == 0 && tcp_data(pkt, inner_at, gre.proto());
            Some(seq::widen(path.peer_id, ip_id)).filter(|&s| is_number(s) || counted_through)
        }
        s => s.filter(|&s| is_number(s)),
    };
    let resequence = seq.is_some() && (!tunnel.flags.intersects(TunnelFlags::RESEQ_ANNOUNCED) || announced & ANNOUNCE_NUMBERS != 0);

    let proto = gre.proto();
    if proto == PROTO_KEEPALIVE {
        return Ok(Verdict::KeepaliveReply { path, at: EthHdr::LEN + tag + ihl + gre_len });
    }
    let rx =
        Rx { outer_len: tag + ihl + gre_len, inner_proto: proto, tunnel, path, inner_len: tot_len - ihl - gre_len, seq, resequence, vid };
    // The peer's keepalive, whatever the tunnel carries: GRE of our own
    // family inside, from the address it was sent to back to the sender.
    // Only ever reflected back to the sender: never a way to send GRE
    // anywhere else.
    let inner_off = EthHdr::LEN + rx.outer_len;
    if proto == GreHdr::PROTO_IPV4 && v4 {
        if let Ok(inner) = pkt.read::<Ipv4Hdr>(inner_off) {
            if inner.proto == IPPROTO_GRE && v4_mapped(inner.src_addr) == local && v4_mapped(inner.dst_addr) == src {
                note_announcement(pkt, inner_off + inner.ihl() as usize, path.peer_id);
                return Ok(Verdict::Reflect(rx));
            }
        }
    }
    if proto == GreHdr::PROTO_IPV6 && !v4 {
        if let Ok(inner) = pkt.read::<Ipv6Hdr>(inner_off) {
            if inner.next_hdr == IPPROTO_GRE && inner.src_addr == local && inner.dst_addr == src {
                note_announcement(pkt, inner_off + Ipv6Hdr::LEN, path.peer_id);
                return Ok(Verdict::Reflect(rx));
            }
        }
    }
    let ok = match rx.tunnel.mode {
        MODE_GRE => proto == GreHdr::PROTO_IPV4 || proto == GreHdr::PROTO_IPV6,
        MODE_GRETAP => proto == GreHdr::PROTO_TEB,
        _ => false,
    };
    if !ok {
        return Err(DropReason::UnknownProto);
    }
    // An IP payload shorter than its own header is no packet: dropped, not
    // handed to the tunnel device to be thrown away there uncounted.
    let min = if proto == GreHdr::PROTO_IPV6 { Ipv6Hdr::LEN } else { Ipv4Hdr::LEN };
    if rx.tunnel.mode == MODE_GRE && rx.inner_len < min {
        return Err(DropReason::Truncated);
    }
    Ok(Verdict::Decap(rx))
}

/// The tunnel a GRE key (or its absence) names.
#[inline(always)]
pub fn tunnel_of(lookup: KeyLookup) -> Option<u32> {
    match TUNNEL_BY_KEY.lookup(lookup) {
        Some(t) => Some(*t),
        // NVGRE: the low byte is a FlowID; the VSID alone names the tunnel.
        None if lookup.has_key == 1 => {
            let vsid = KeyLookup { key: lookup.key & !NVGRE_FLOWID_MASK, has_key: KEY_NVGRE };
            TUNNEL_BY_KEY.lookup(vsid).copied()
        }
        None => None,
    }
}

/// A reflected keepalive's inner GRE header starts at `at`; what the peer
/// announces follows it.
#[inline(always)]
fn note_announcement<P: Packet>(pkt: &P, at: usize, peer_id: u32) {
    if let Ok(g) = pkt.read::<GreHdr>(at) {
        announce::note(pkt, at + g.header_len(), peer_id);
    }
}

/// The outer IP header of a GRE packet for one of our addresses.
struct Outer {
    /// Bytes of outer IP header.
    ip_len: usize,
    /// Bytes from the outer IP header to the end of the GRE packet.
    tot_len: usize,
    src: [u8; 16],
    local: [u8; 16],
    v4: bool,
    /// IPv4 Identification (0 for IPv6): the number of `ip_id_sequence`.
    ip_id: u16,
}

/// GRE to someone else (or another GRE implementation's address) is not
/// ours to judge, and neither is GRE for one of our addresses arriving on
/// another of our links (a switch flooding after a port went down): it did
/// not come by the path it names, and taking it would make a dead path look
/// alive. A packet `xgre run` reassembled comes by its tap
/// (`REASM_TAP`), once it has checked the link the fragments came by.
#[inline(always)]
fn ours<P: Packet>(pkt: &P, eth: &EthHdr, local: &[u8; 16]) -> bool {
    match LOCAL_ADDRS.lookup(local) {
        Some(l) => l.mac == eth.dst_addr && (l.ifindex == pkt.ifindex() || REASM_TAP.lookup(pkt.ifindex()).is_some()),
        None => false,
    }
}

#[inline(always)]
fn outer_v4<P: Packet>(pkt: &P, eth: &EthHdr, at: usize) -> Result<Seen, DropReason> {
    let Ok(ip) = pkt.read::<Ipv4Hdr>(at) else { return Ok(Seen::Other) };
    if ip.version() != 4 {
        return Ok(Seen::Other);
    }
    let local = v4_mapped(ip.dst_addr);
    if ip.proto == IPPROTO_ICMP && ours(pkt, eth, &local) {
        return Ok(Seen::Icmp { at, v4: true });
    }
    if ip.proto != IPPROTO_GRE || !ours(pkt, eth, &local) {
        return Ok(Seen::Other);
    }
    let ihl = ip.ihl() as usize;
    let tot_len = u16::from_be_bytes(ip.tot_len) as usize;
    if ihl < Ipv4Hdr::LEN || tot_len < ihl || at + tot_len > pkt.len() {
        return Err(DropReason::BadOuter);
    }
    // RFC 1122 3.2.1.2: a datagram whose header checksum fails is
    // discarded. Options, when there are any, are summed from the packet.
    // sum_bytes sums in native order (bpf_csum_diff), the fixed header is
    // summed big-endian: a one's complement sum in the other order is the
    // same sum byte-swapped.
    let opts = if ihl > Ipv4Hdr::LEN { csum::sum_bytes(pkt, at + Ipv4Hdr::LEN, ihl - Ipv4Hdr::LEN)? } else { 0 };
    let opts = u16::from_be_bytes(opts.to_ne_bytes());
    if csum::fold(csum::ipv4_words(&ip) + opts as u64) != 0xffff {
        return Err(DropReason::BadIpChecksum);
    }
    if ip.frag_flags() & IP_MF != 0 || ip.frag_offset() != 0 {
        return fragment(local, v4_mapped(ip.src_addr));
    }
    Ok(Seen::Gre(Outer { ip_len: ihl, tot_len, src: v4_mapped(ip.src_addr), local, v4: true, ip_id: ip.id() }))
}

/// RFC 7676: GRE directly after the IPv6 header (next header 47). GRE
/// behind extension headers is not taken (passed as not ours).
#[inline(always)]
fn outer_v6<P: Packet>(pkt: &P, eth: &EthHdr, at: usize) -> Result<Seen, DropReason> {
    let Ok(ip) = pkt.read::<Ipv6Hdr>(at) else { return Ok(Seen::Other) };
    if ip.version() != 6 {
        return Ok(Seen::Other);
    }
    if ip.next_hdr == IPPROTO_ICMPV6 && ours(pkt, eth, &ip.dst_addr) {
        return Ok(Seen::Icmp { at, v4: false });
    }
    let frag = ip.next_hdr == IPPROTO_FRAGMENT;
    if !(ip.next_hdr == IPPROTO_GRE || frag) {
        return Ok(Seen::Other);
    }
    // Our IPv4 addresses are stored IPv4-mapped, so a mapped destination
    // finds them: without this check an IPv6 frame could reach an IPv4
    // tunnel, around any IPv4 filtering on the way.
    if !ours(pkt, eth, &ip.dst_addr) {
        return Ok(Seen::Other);
    }
    // RFC 4291 2.5.5.2: mapped addresses never appear on the wire.
    if is_v4_mapped(&ip.src_addr) || is_v4_mapped(&ip.dst_addr) {
        return Err(DropReason::MappedAddress);
    }
    if frag {
        // RFC 8200 section 4.5: the fragment header's first byte is the
        // next header of the fragmentable part.
        let next: u8 = pkt.read(at + Ipv6Hdr::LEN).map_err(|_| DropReason::BadOuter)?;
        if next != IPPROTO_GRE {
            return Ok(Seen::Other);
        }
        return fragment(ip.dst_addr, ip.src_addr);
    }
    let tot_len = Ipv6Hdr::LEN + u16::from_be_bytes(ip.payload_len) as usize;
    if at + tot_len > pkt.len() {
        return Err(DropReason::BadOuter);
    }
    Ok(Seen::Gre(Outer { ip_len: Ipv6Hdr::LEN, tot_len, src: ip.src_addr, local: ip.dst_addr, v4: false, ip_id: 0 }))
}

/// An outer fragment of GRE for one of our addresses: the kernel
/// reassembles those of a pair some path uses (`xgre run` then hands the
/// whole packet back to us); any other is dropped.
#[inline(always)]
fn fragment(local: [u8; 16], remote: [u8; 16]) -> Result<Seen, DropReason> {
    if pmtu::known_pair(local, remote) {
        pmtu::count(PmtuEvent::FragmentIn);
        return Ok(Seen::Other);
    }
    Err(DropReason::Fragment)
}

#[inline(always)]
fn is_v4_mapped(a: &[u8; 16]) -> bool {
    a[..10] == [0; 10] && a[10] == 0xff && a[11] == 0xff
}
