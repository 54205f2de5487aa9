//! Path MTU discovery, receive side: an ICMP "fragmentation needed"
//! (IPv4) or "Packet Too Big" (IPv6) that comes back to one of our outer
//! addresses about one of our GRE packets lowers that path's MTU for the
//! tunnel's `pmtu_age`. Also: which outer fragments are ours to have
//! reassembled.
//!
//! An error is believed only when it quotes a packet we send: our address
//! as its source, a peer's as its destination, GRE with a key that names a
//! tunnel that has that path. It can then only lower the MTU, never below
//! the family's minimum, never above the link's, and never to a size the
//! quoted packet itself would fit in. Everything else is counted as not
//! ours; the ICMP packet itself always goes on to the stack, untouched.

use aya_ebpf::{
    bindings::{__sk_buff, xdp_md},
    helpers::generated::bpf_check_mtu,
    programs::{TcContext, XdpContext},
};
use gre_common::{
    path_slot,
    pmtu::{OuterPair, PmtuEvent, DEFAULT_PMTU_AGE, MIN_PMTU_V4, MIN_PMTU_V6},
    v4_mapped, GreHdr, KeyLookup, RxKey, MAX_PATHS,
};
use network_types::{
    icmp::{Icmpv4Hdr, Icmpv6Hdr},
    ip::{Ipv4Hdr, Ipv6Hdr},
};

use crate::kernel::{now_ns, per_cpu, Lookup};
use crate::{
    consts::{IPPROTO_GRE, IPPROTO_ICMPV6},
    csum,
    maps::{OUTER_PAIRS, PATH_MTU, PMTU_CLAIM, PMTU_EVENTS, RX_PATHS, TUNNELS},
    packet::Packet,
    parse::tunnel_of,
};

/// ICMP type 3 code 4 (RFC 792, RFC 1191).
const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_FRAG_NEEDED: u8 = 4;
/// ICMPv6 type 2 (RFC 4443 section 3.2).
const ICMPV6_PKT_TOO_BIG: u8 = 2;

#[inline(always)]
pub fn count(e: PmtuEvent) {
    per_cpu(&PMTU_EVENTS, e as u32, |c| *c += 1);
}

/// Whether some path receives from `remote` at `local`: its fragments are
/// reassembled.
#[inline(always)]
pub fn known_pair(local: [u8; 16], remote: [u8; 16]) -> bool {
    OUTER_PAIRS.lookup(OuterPair { local, remote }).is_some()
}

/// An ICMP(v6) packet at IP offset `at` arrived for our address: learn
/// from it if it is an MTU error about one of our packets. A global
/// function per program type: checked once, whatever the caller's state.
#[no_mangle]
#[inline(never)]
pub extern "C" fn xgre_pmtu_learn_xdp(ctx: *mut xdp_md, at: u32, v4: u32) -> i64 {
    if ctx.is_null() {
        return 0;
    }
    learn_and_count(&XdpContext::new(ctx), at, v4)
}

#[no_mangle]
#[inline(never)]
pub extern "C" fn xgre_pmtu_learn_tc(skb: *mut __sk_buff, at: u32, v4: u32) -> i64 {
    if skb.is_null() {
        return 0;
    }
    learn_and_count(&TcContext::new(skb), at, v4)
}

#[inline(always)]
fn learn_and_count<P: Packet>(pkt: &P, at: u32, v4: u32) -> i64 {
    if let Some(e) = learn(pkt, at as usize, v4 != 0) {
        count(e);
    }
    0
}

/// What an MTU error claims, once its envelope has been read. Kept in a
/// per-CPU map entry (`PMTU_CLAIM`), not on the stack: the learner runs
/// below the receive program's own frame and a checksum loop's, within 512
/// bytes on every kernel.
#[repr(C)]
pub struct Claim {
    /// The tunnel its GRE key names, our address (the error's destination
    /// and the quote's source) and the peer's (the quote's destination):
    /// the receive path the quoted packet left by, as `RX_PATHS` keys it.
    key: RxKey,
    /// Outer MTU it reports, raised to the family's minimum.
    mtu: u32,
    /// Bytes of the packet it quotes, as that packet's header says.
    quoted_len: u32,
    /// Who sent it.
    from: [u8; 16],
    /// Where the quoted GRE header starts.
    gre_at: u32,
}

/// Not an MTU error: nothing to count.
const NOT_AN_ERROR: u32 = 0;
/// An MTU error that cannot be about our packets.
const NOT_OURS: u32 = 1;
/// Read into the claim.
const CLAIMED: u32 = 2;

#[inline(always)]
fn learn<P: Packet>(pkt: &P, at: usize, v4: bool) -> Option<PmtuEvent> {
    // SAFETY: this CPU's claim, alive for the map's life and used by
    // nothing else during this run.
    let c = unsafe { &mut *PMTU_CLAIM.get_ptr_mut(0)? };
    let r = if v4 { claim_v4(pkt, at, c) } else { claim_v6(pkt, at, c) };
    match r {
        NOT_AN_ERROR => return None,
        CLAIMED => {}
        _ => return Some(PmtuEvent::IcmpNotOurs),
    }
    c.key.tunnel_ifindex = match quoted_tunnel(pkt, c.gre_at as usize) {
        Some(t) => t,
        None => return Some(PmtuEvent::IcmpNotOurs),
    };
    // By reference: the key stays in the map entry, not copied to the stack.
    #[allow(clippy::needless_borrows_for_generic_args)]
    let Some(path) = RX_PATHS.lookup(&c.key) else {
        return Some(PmtuEvent::IcmpNotOurs);
    };
    let entry = PATH_MTU.get_ptr_mut(path_slot(path.peer_id, path.path & (MAX_PATHS as u32 - 1)))?;
    let now = now_ns();
    // SAFETY: an array value stays mapped for the map's life.
    let current = match unsafe { (*entry).at(now) } {
        Some(m) => m,
        None => link_mtu(pkt)?,
    };
    if c.mtu >= current || c.mtu >= c.quoted_len {
        return Some(PmtuEvent::IcmpNotLower);
    }
    let age = match TUNNELS.lookup(c.key.tunnel_ifindex) {
        Some(t) if t.pmtu_age != 0 => t.pmtu_age,
        _ => DEFAULT_PMTU_AGE,
    };
    // SAFETY: as above; a racing learner on another CPU writes a whole
    // entry too, and the lower MTU of the two is as good as either.
    unsafe {
        (*entry).mtu = c.mtu;
        (*entry).expires_ns = now + age as u64 * 1_000_000_000;
        (*entry).from = c.from;
    }
    Some(PmtuEvent::IcmpLearned)
}

/// The MTU of the link the error came in on: a path's MTU never rises
/// above it.
#[inline(always)]
fn link_mtu<P: Packet>(pkt: &P) -> Option<u32> {
    let mut mtu = 0u32;
    // One helper for both program types; ifindex 0: the packet's device.
    // SAFETY: `pkt.raw()` is the context the kernel passed to this run.
    let r = unsafe { bpf_check_mtu(pkt.raw().cast(), 0, &mut mtu, 0, 0) };
    (r >= 0 && mtu != 0).then_some(mtu)
}

/// IPv4: an ICMP "fragmentation needed" at `at` whose checksum holds,
/// quoting IPv4 + GRE from its own destination.
#[inline(always)]
fn claim_v4<P: Packet>(pkt: &P, at: usize, c: &mut Claim) -> u32 {
    let Ok(ip) = pkt.read::<Ipv4Hdr>(at) else { return NOT_AN_ERROR };
    let ihl = ip.ihl() as usize;
    let tot = u16::from_be_bytes(ip.tot_len) as usize;
    if ihl < Ipv4Hdr::LEN || tot < ihl + Icmpv4Hdr::LEN + Ipv4Hdr::LEN + GreHdr::LEN || at + tot > pkt.len() {
        return NOT_AN_ERROR;
    }
    let icmp_at = at + ihl;
    let Ok(icmp) = pkt.read::<Icmpv4Hdr>(icmp_at) else { return NOT_AN_ERROR };
    if icmp.type_ != ICMP_DEST_UNREACH || icmp.code != ICMP_FRAG_NEEDED {
        return NOT_AN_ERROR;
    }
    if csum::sum_bytes(pkt, icmp_at, tot - ihl) != Ok(0xffff) {
        return NOT_OURS;
    }
    let q_at = icmp_at + Icmpv4Hdr::LEN;
    let Ok(q) = pkt.read::<Ipv4Hdr>(q_at) else { return NOT_OURS };
    if q.version() != 4 || q.proto != IPPROTO_GRE || q.src_addr != ip.dst_addr || (q.ihl() as usize) < Ipv4Hdr::LEN {
        return NOT_OURS;
    }
    // RFC 1191: the next-hop MTU in the low 16 bits of the rest; 0 from a
    // router that predates it, which says nothing we can use.
    let mtu = u16::from_be_bytes([icmp.data[2], icmp.data[3]]) as u32;
    if mtu == 0 {
        return NOT_OURS;
    }
    c.key.local = v4_mapped(ip.dst_addr);
    c.key.remote = v4_mapped(q.dst_addr);
    c.mtu = mtu.max(MIN_PMTU_V4);
    c.quoted_len = u16::from_be_bytes(q.tot_len) as u32;
    c.from = v4_mapped(ip.src_addr);
    c.gre_at = (q_at + q.ihl() as usize) as u32;
    CLAIMED
}

/// IPv6: an ICMPv6 "Packet Too Big" right after the IPv6 header, quoting
/// IPv6 + GRE (no extension headers, as we send) from its destination.
#[inline(always)]
fn claim_v6<P: Packet>(pkt: &P, at: usize, c: &mut Claim) -> u32 {
    let Ok(ip) = pkt.read::<Ipv6Hdr>(at) else { return NOT_AN_ERROR };
    if ip.next_hdr != IPPROTO_ICMPV6 {
        return NOT_AN_ERROR;
    }
    let len = u16::from_be_bytes(ip.payload_len) as usize;
    let icmp_at = at + Ipv6Hdr::LEN;
    if len < Icmpv6Hdr::LEN + Ipv6Hdr::LEN + GreHdr::LEN || icmp_at + len > pkt.len() {
        return NOT_AN_ERROR;
    }
    let Ok(icmp) = pkt.read::<Icmpv6Hdr>(icmp_at) else { return NOT_AN_ERROR };
    if icmp.type_ != ICMPV6_PKT_TOO_BIG || icmp.code != 0 {
        return NOT_AN_ERROR;
    }
    // RFC 4443 section 2.3: the sum covers a pseudo-header too.
    let Ok(body) = csum::sum_bytes(pkt, icmp_at, len) else { return NOT_OURS };
    let body = u16::from_be_bytes(body.to_ne_bytes()) as u64;
    let pseudo = csum::be_words(&ip.src_addr) + csum::be_words(&ip.dst_addr) + len as u64 + IPPROTO_ICMPV6 as u64;
    if csum::fold(body + pseudo) != 0xffff {
        return NOT_OURS;
    }
    let q_at = icmp_at + Icmpv6Hdr::LEN;
    let Ok(q) = pkt.read::<Ipv6Hdr>(q_at) else { return NOT_OURS };
    if q.version() != 6 || q.next_hdr != IPPROTO_GRE || q.src_addr != ip.dst_addr {
        return NOT_OURS;
    }
    c.key.local = ip.dst_addr;
    c.key.remote = q.dst_addr;
    c.mtu = u32::from_be_bytes(icmp.data).max(MIN_PMTU_V6);
    c.quoted_len = Ipv6Hdr::LEN as u32 + u16::from_be_bytes(q.payload_len) as u32;
    c.from = ip.src_addr;
    c.gre_at = (q_at + Ipv6Hdr::LEN) as u32;
    CLAIMED
}

/// The tunnel the quoted GRE header's key names.
#[inline(always)]
fn quoted_tunnel<P: Packet>(pkt: &P, gre_at: usize) -> Option<u32> {
    let gre: GreHdr = pkt.read(gre_at).ok()?;
    if gre.version() != 0 || gre.flags() & GreHdr::RESERVED_1_5 != 0 {
        return None;
    }
    let lookup = if gre.has_key() {
        let off = gre_at + GreHdr::LEN + if gre.has_checksum() { 4 } else { 0 };
        let k: [u8; 4] = pkt.read(off).ok()?;
        KeyLookup { key: u32::from_be_bytes(k), has_key: 1 }
    } else {
        KeyLookup { key: 0, has_key: 0 }
    };
    tunnel_of(lookup)
}

/// What a receive body returns for ICMP(v6) at `at` for one of our
/// addresses: its program calls `learn_from` with its own small frame
/// below the learner's (the body's and the learner's would not fit in 512
/// bytes together). Never a verdict: verdicts are below 8.
pub const LEARN: u32 = 1 << 20;

#[inline(always)]
pub fn learn_request(at: usize, v4: bool) -> u32 {
    LEARN | ((v4 as u32) << 16) | (at as u32 & 0xffff)
}

/// The ICMP packet's offset and family, when `v` is a `learn_request`.
#[inline(always)]
pub fn learn_requested(v: i32) -> Option<(usize, bool)> {
    let v = v as u32;
    (v & LEARN != 0).then_some(((v & 0xffff) as usize, v & (1 << 16) != 0))
}

/// Learn from the ICMP(v6) packet at `at`, through the global function of
/// the packet's program type.
#[inline(always)]
pub fn learn_from<P: Packet>(pkt: &P, at: usize, v4: bool) {
    if pkt.is_skb() {
        xgre_pmtu_learn_tc(pkt.raw().cast(), at as u32, v4 as u32);
    } else {
        xgre_pmtu_learn_xdp(pkt.raw().cast(), at as u32, v4 as u32);
    }
}
