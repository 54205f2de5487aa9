//! Outer headers. Room for them is made in front of the inner packet once;
//! then the outer Ethernet + IPv4 + GRE header of one path is written into
//! it: once for a unicast packet, once per copy for a replicated one (the
//! copies differ only in addresses and sequence number).

use aya_ebpf::{
    bindings::__sk_buff,
    bindings::{
        bpf_adj_room_mode::BPF_ADJ_ROOM_MAC, BPF_ADJ_ROOM_ENCAP_L2_SHIFT, BPF_F_ADJ_ROOM_ENCAP_L2_ETH, BPF_F_ADJ_ROOM_ENCAP_L3_IPV4,
        BPF_F_ADJ_ROOM_ENCAP_L3_IPV6, BPF_F_ADJ_ROOM_ENCAP_L4_GRE, BPF_F_ADJ_ROOM_FIXED_GSO,
    },
    helpers::generated::{bpf_skb_change_head, bpf_skb_store_bytes},
    programs::TcContext,
};
use gre_common::TunnelFlags;
use gre_common::{DropReason, GreHdr, Path, MAX_PATHS};
use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
};

use crate::kernel::{random_u32, skb_of, Lookup};
use crate::{
    consts::{ETH_P_IP, ETH_P_IPV6, HDR_MAX, IPPROTO_GRE, MAX_GRE},
    csum, global, lco,
    maps::{HDR_SCRATCH, PEERS},
    packet::Packet,
    seq::next_seq,
};

const OUTER_V4: usize = Ipv4Hdr::LEN;
const OUTER_V6: usize = Ipv6Hdr::LEN;

/// What every copy of one packet shares.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Fields {
    /// `Tunnel::flags`
    pub flags: TunnelFlags,
    /// The GRE key, FlowID included for NVGRE.
    pub key: u32,
    /// DSCP/ECN copied from the inner packet.
    pub tos: u8,
    /// GRE protocol type.
    pub proto: u16,
    /// IPv6 underlay: the outer flow label (from the inner flow's hash).
    pub flow: u32,
    /// Not 0: leave without a number (`TX_UNNUMBERED`), in a numbered
    /// tunnel's number field all the same.
    pub unnumbered: u32,
    /// The wire packets the packet leaves as (a GSO packet's segments),
    /// each taking a number of its own.
    pub numbers: u32,
}

/// Bytes of outer IP header: the tunnel's links are all of one family.
#[inline(always)]
fn ip_len(f: &Fields) -> usize {
    if f.flags.intersects(TunnelFlags::UNDERLAY6) {
        OUTER_V6
    } else {
        OUTER_V4
    }
}

/// The room made for the outer headers.
#[derive(Clone, Copy)]
pub struct Room {
    /// Outer IP + GRE bytes, after the outer Ethernet header.
    pub len: usize,
    /// One's complement sum of what the GRE checksum covers after the GRE
    /// header (0 without a checksum): the same for every copy.
    pub payload_sum: u16,
}

impl Room {
    /// As a global function returns it: never negative.
    #[inline(always)]
    fn pack(self) -> i64 {
        ((self.len as i64) & 0xff) | ((self.payload_sum as i64) << 16)
    }

    #[inline(always)]
    pub fn unpack(v: i64) -> Room {
        Room { len: (v & 0xff) as usize, payload_sum: (v >> 16) as u16 }
    }
}

/// `grow` for the packet at `skb` (its Ethernet header still in front),
/// as a global function: the room, packed (`Room::unpack`), or a negative
/// drop reason (`global::decode`).
#[no_mangle]
#[inline(never)]
pub extern "C" fn xgre_encap_grow(skb: *mut __sk_buff, f: *const Fields, tap: u32) -> i64 {
    if f.is_null() {
        return global::encode(Err(DropReason::HelperFailed));
    }
    let ctx = TcContext::new(skb);
    // SAFETY: `f` points at the caller's `Fields` on its stack (a global
    // function's pointer argument, checked non-null by the verifier).
    let f = unsafe { *f };
    let r = ctx.read::<EthHdr>(0).and_then(|eth| grow(&ctx, &f, tap != 0, &eth));
    match r {
        Ok(room) => room.pack(),
        Err(e) => global::encode(Err(e)),
    }
}

/// Write the outer headers of one copy over the room made by `grow`: to
/// `peer_id` over its path `path_idx`, numbered when the tunnel numbers.
/// A global function: the link to send out of, or a negative drop reason.
#[no_mangle]
#[inline(never)]
pub extern "C" fn xgre_encap_put(skb: *mut __sk_buff, f: *const Fields, room: i64, peer_id: u32, path_idx: u32) -> i64 {
    if f.is_null() {
        return global::encode(Err(DropReason::HelperFailed));
    }
    let ctx = TcContext::new(skb);
    // SAFETY: as above.
    let f = unsafe { *f };
    global::encode(put(&ctx, &f, &Room::unpack(room), peer_id, path_idx))
}

#[inline(always)]
fn put(ctx: &TcContext, f: &Fields, room: &Room, peer_id: u32, path_idx: u32) -> Result<i32, DropReason> {
    let peer = PEERS.lookup(peer_id).ok_or(DropReason::NoRoute)?;
    // The peer may have been edited since the path was chosen: a path
    // that is gone now is no path.
    if path_idx >= peer.npaths || path_idx >= MAX_PATHS as u32 {
        return Err(DropReason::NoPath);
    }
    let p = &peer.paths[path_idx as usize & (MAX_PATHS - 1)];
    let seq = if f.unnumbered != 0 { 0 } else { next_seq(f.flags, peer_id, f.numbers)? };
    write(ctx, room, header(ctx, f, room, p, seq)?)?;
    Ok(p.ifindex as i32)
}

/// Make room for the outer headers in front of the packet, whose Ethernet
/// header is `eth`. `tap`: the packet is an Ethernet frame and keeps its
/// own header (gretap); else its Ethernet header becomes the outer one.
#[inline(always)]
pub fn grow(ctx: &TcContext, f: &Fields, tap: bool, eth: &EthHdr) -> Result<Room, DropReason> {
    let csum_on = f.flags.intersects(TunnelFlags::CSUM);
    let gre_len = GreHdr::len_for(csum_on, f.flags.intersects(TunnelFlags::KEY | TunnelFlags::NVGRE), f.flags.intersects(TunnelFlags::SEQ))
        & (2 * MAX_GRE - 1);
    if gre_len > MAX_GRE {
        return Err(DropReason::HelperFailed);
    }
    let v6 = f.flags.intersects(TunnelFlags::UNDERLAY6);
    let len = ip_len(f) + gre_len;
    // FIXED_GSO: the tunnel's MTU already leaves room for our headers, so a
    // GSO packet's segments stay TCP's MSS and each becomes one full-size
    // wire packet. Without it the kernel shrinks gso_size by the room, and
    // every segment goes out 24+ bytes short, 1.7% more packets for the
    // same data.
    let l3 = if v6 { BPF_F_ADJ_ROOM_ENCAP_L3_IPV6 } else { BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 };
    let base = (BPF_F_ADJ_ROOM_FIXED_GSO | l3 | BPF_F_ADJ_ROOM_ENCAP_L4_GRE) as u64;
    let ip = matches!(u16::from_be(skb_of(ctx).protocol as u16), ETH_P_IP | ETH_P_IPV6);
    if tap && !ip {
        // adjust_room takes IP packets only. Anything else (ARP, LLDP...)
        // is never GSO, so plain headroom in front of the frame will do.
        // SAFETY: `ctx.skb.skb` is the context the kernel passed to this run.
        if unsafe { bpf_skb_change_head(ctx.skb.skb, (EthHdr::LEN + len) as u32, 0) } != 0 {
            return Err(DropReason::HelperFailed);
        }
    } else if tap {
        // The room goes after the frame's Ethernet header: the header moves
        // to the end of the room and stays the inner one. ENCAP_L2_ETH
        // tells GSO the inner packet is Ethernet (segmenting like gretap).
        let flags = base | BPF_F_ADJ_ROOM_ENCAP_L2_ETH as u64 | ((EthHdr::LEN as u64) << BPF_ADJ_ROOM_ENCAP_L2_SHIFT);
        ctx.adjust_room((len + EthHdr::LEN) as i32, BPF_ADJ_ROOM_MAC, flags).map_err(|_| DropReason::HelperFailed)?;
        ctx.store(EthHdr::LEN + len, eth, 0).map_err(|_| DropReason::HelperFailed)?;
    } else {
        ctx.adjust_room(len as i32, BPF_ADJ_ROOM_MAC, base).map_err(|_| DropReason::HelperFailed)?;
    }
    let payload_sum = if csum_on {
        let off = EthHdr::LEN + ip_len(f) + gre_len;
        let sum = csum::sum_bytes(ctx, off, (ctx.len() as usize).saturating_sub(off))?;
        // The sum the inner packet will have once the stack or the NIC has
        // filled its TCP/UDP checksum (see lco.rs).
        let l3 = if tap { off + EthHdr::LEN } else { off };
        lco::final_sum(ctx, off, l3, u16::from_be(eth.ether_type), sum)?
    } else {
        0
    };
    Ok(Room { len, payload_sum })
}

/// The outer Ethernet + IPv4 + GRE header of one copy over `path`, with the
/// GRE checksum when the tunnel wants one. Built in a per-CPU buffer, not
/// on the stack: the transmit program and the replication callback it
/// calls share one 512-byte stack.
#[inline(always)]
pub fn header(ctx: &TcContext, f: &Fields, room: &Room, path: &Path, seq: u32) -> Result<&'static [u8; HDR_MAX], DropReason> {
    let buf = HDR_SCRATCH.get_ptr_mut(0).ok_or(DropReason::HelperFailed)?;
    // SAFETY: this CPU's header scratch, alive for the map's life and
    // used by nothing else during this run.
    let hdr = unsafe { &mut *buf };
    *hdr = [0u8; HDR_MAX];
    hdr[0..6].copy_from_slice(&path.dst_mac);
    hdr[6..12].copy_from_slice(&path.src_mac);
    let tot_len = (ctx.len() as usize - EthHdr::LEN) as u16;
    let ip = EthHdr::LEN;
    let go = if f.flags.intersects(TunnelFlags::UNDERLAY6) {
        // RFC 7676: IPv6 + GRE, next header 47, no extension headers.
        hdr[12..14].copy_from_slice(&ETH_P_IPV6.to_be_bytes());
        let vcf = (6u32 << 28) | ((f.tos as u32) << 20) | (f.flow & 0xf_ffff);
        hdr[ip..ip + 4].copy_from_slice(&vcf.to_be_bytes());
        hdr[ip + 4..ip + 6].copy_from_slice(&(tot_len - OUTER_V6 as u16).to_be_bytes());
        hdr[ip + 6] = IPPROTO_GRE;
        hdr[ip + 7] = 64;
        hdr[ip + 8..ip + 24].copy_from_slice(&path.local);
        hdr[ip + 24..ip + 40].copy_from_slice(&path.remote);
        ip + OUTER_V6
    } else {
        hdr[12..14].copy_from_slice(&ETH_P_IP.to_be_bytes());
        outer_v4(hdr, f, path, tot_len, seq);
        ip + OUTER_V4
    };
    gre_fields(hdr, go, f, room, seq);
    Ok(hdr)
}

#[inline(always)]
fn outer_v4(hdr: &mut [u8; HDR_MAX], f: &Fields, path: &Path, tot_len: u16, seq: u32) {
    let ip = EthHdr::LEN;
    hdr[ip] = 0x45;
    hdr[ip + 1] = f.tos;
    hdr[ip + 2..ip + 4].copy_from_slice(&tot_len.to_be_bytes());
    let df = !f.flags.intersects(TunnelFlags::NO_PMTUDISC);
    if f.flags.intersects(TunnelFlags::IPID_NUMBERED) {
        // The peer's number, in a field a DF datagram does not use (RFC
        // 6864 section 4.1): numbered at no cost in bytes. Without DF it
        // is unique per peer for 65,536 packets, as reassembly needs.
        hdr[ip + 4..ip + 6].copy_from_slice(&(seq as u16).to_be_bytes());
    } else if !df {
        // A datagram that may be fragmented needs an ID its fragments are
        // told apart by (RFC 6864 section 4.2).
        hdr[ip + 4..ip + 6].copy_from_slice(&(random_u32() as u16).to_be_bytes());
    }
    // DF unless the tunnel (`pmtu_discovery = false`) or this packet (too
    // big for the path, and not to be answered) leaves it to the underlay
    // to fragment.
    hdr[ip + 6] = if df { 0x40 } else { 0 };
    hdr[ip + 8] = 64;
    hdr[ip + 9] = IPPROTO_GRE;
    hdr[ip + 12..ip + 16].copy_from_slice(&path.local[12..16]);
    hdr[ip + 16..ip + 20].copy_from_slice(&path.remote[12..16]);
    let ip_sum = csum::ipv4_header(hdr[ip..ip + 20].try_into().unwrap());
    hdr[ip + 10..ip + 12].copy_from_slice(&ip_sum.to_be_bytes());
}

/// The GRE header at `go`.
#[inline(always)]
fn gre_fields(hdr: &mut [u8; HDR_MAX], go: usize, f: &Fields, room: &Room, seq: u32) {
    let go = if go > EthHdr::LEN + OUTER_V6 { EthHdr::LEN + OUTER_V6 } else { go };
    // Branch-free, so the verifier walks this once and not once per
    // combination of optional fields: each field is written where it goes
    // when present; an absent field is zero and lands where the next
    // present one overwrites it, or past the header, which is not stored.
    let c = f.flags.intersects(TunnelFlags::CSUM) as usize;
    let k = f.flags.intersects(TunnelFlags::KEY | TunnelFlags::NVGRE) as usize;
    let q = f.flags.intersects(TunnelFlags::SEQ) as usize;
    let flags = ((c as u16) << 15) | ((k as u16) << 13) | ((q as u16) << 12);
    hdr[go..go + 4].copy_from_slice(&GreHdr::new(flags, f.proto).flags_and_proto());
    let key_at = (go + 4 + 4 * c) & 127;
    let key = if k != 0 { f.key } else { 0 };
    if key_at + 4 <= HDR_MAX {
        hdr[key_at..key_at + 4].copy_from_slice(&key.to_be_bytes());
    }
    let seq_at = (key_at + 4 * k) & 127;
    if seq_at + 4 <= HDR_MAX {
        hdr[seq_at..seq_at + 4].copy_from_slice(&seq.to_be_bytes());
    }
    if c != 0 {
        // The payload's sum plus this header's words (bytes past the header
        // are zero and add nothing), in the native order bpf_csum_diff
        // summed the payload in: a one's complement sum is the same in
        // either byte order, byte-swapped.
        let mut s = room.payload_sum as u64;
        let mut i = 0;
        while i < MAX_GRE {
            s += u16::from_ne_bytes([hdr[go + i], hdr[go + i + 1]]) as u64;
            i += 2;
        }
        let sum = !csum::fold(s);
        hdr[go + 4..go + 6].copy_from_slice(&sum.to_ne_bytes());
    }
}

/// Write a header from `header` over the room.
#[inline(always)]
pub fn write(ctx: &TcContext, room: &Room, hdr: &[u8; HDR_MAX]) -> Result<(), DropReason> {
    let n = (EthHdr::LEN + room.len) as u32;
    if n as usize > HDR_MAX {
        return Err(DropReason::HelperFailed);
    }
    // SAFETY: `n` is at most HDR_MAX, the length of `hdr`; the skb is
    // the context the kernel passed to this run.
    let r = unsafe { bpf_skb_store_bytes(ctx.skb.skb, 0, hdr.as_ptr().cast(), n, 0) };
    if r != 0 {
        return Err(DropReason::HelperFailed);
    }
    Ok(())
}
