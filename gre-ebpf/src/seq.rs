//! Per-peer packet numbers (RFC 2890 sequence numbers, or the outer IPv4
//! ID with `ip_id_sequence`): stamped on transmit (`next_seq`), and on
//! receive turned into reorder telemetry (`observe`). Packets are never
//! held or dropped for arriving out of order (Linux's ip_gre drops them,
//! and that kills aggregation): receive only measures.

use core::intrinsics::{atomic_cxchg, atomic_xadd, AtomicOrdering};
use gre_common::TunnelFlags;
use gre_common::{reseq::is_number, DropReason, LATE_DISPLACEMENT};

use crate::maps::{REORDER, RX_SEQ, TX_SEQ};

const SEEN: u64 = 1 << 32;

#[inline(always)]
pub fn observe(peer_id: u32, seq: u32) {
    let (Some(hi), Some(st)) = (RX_SEQ.get_ptr_mut(peer_id), REORDER.get_ptr_mut(peer_id)) else {
        return;
    };
    // SAFETY: array values stay mapped; RX_SEQ is shared (a racing
    // receive on another CPU makes one displacement figure approximate),
    // REORDER is this CPU's.
    unsafe {
        let cur = core::ptr::read_volatile(hi);
        // Serial number arithmetic: ahead when the difference is positive.
        let ahead = seq.wrapping_sub(cur as u32) as i32;
        if cur & SEEN == 0 || ahead > 0 {
            // Two CPUs may race here; the loser can only lower the mark by
            // the few packets in flight between them, which telemetry bears.
            core::ptr::write_volatile(hi, SEEN | seq as u64);
            (*st).in_order += 1;
        } else {
            let disp = (ahead as i64).unsigned_abs();
            (*st).out_of_order += 1;
            if disp > (*st).max_displacement {
                (*st).max_displacement = disp;
            }
            if disp > LATE_DISPLACEMENT as u64 {
                (*st).late += 1;
            }
        }
    }
}

/// A peer's 16-bit number (`ip_id_sequence`: the outer IPv4 ID) widened
/// to 32 bits around the highest number seen from it, so that telemetry
/// and the resequencer see one sequence across the 16-bit wrap: the
/// nearest 32-bit number with these low bits. A number seen first is
/// taken as it is.
#[inline(always)]
pub fn widen(peer_id: u32, id: u16) -> u32 {
    let Some(hi) = RX_SEQ.get_ptr(peer_id) else {
        return id as u32;
    };
    // SAFETY: an array value stays mapped; volatile because other CPUs
    // update it.
    let cur = unsafe { core::ptr::read_volatile(hi) };
    if cur & SEEN == 0 {
        return id as u32;
    }
    let cur = cur as u32;
    cur.wrapping_add(id.wrapping_sub(cur as u16) as i16 as i32 as u32)
}

/// Tries at taking a GSO packet's numbers before taking them as they come.
const TRIES: usize = 4;

/// The next number to `peer_id`, when the tunnel numbers its packets
/// (RFC 2890's sequence number, or its low 16 bits as the outer IPv4 ID),
/// else 0. Never one that `is_number` refuses. A GSO packet that leaves
/// as `n` wire packets takes `n` numbers, the first returned: GSO counts
/// the outer ID up from it segment by segment.
#[inline(always)]
pub fn next_seq(tunnel_flags: TunnelFlags, peer_id: u32, n: u32) -> Result<u32, DropReason> {
    if !tunnel_flags.intersects(TunnelFlags::NUMBERED) {
        return Ok(0);
    }
    let p = TX_SEQ.get_ptr_mut(peer_id).ok_or(DropReason::HelperFailed)?;
    if n > 1 {
        // The first of the numbers must be one `is_number` takes: a packet
        // whose first (and, received whole, only) ID says "not numbered"
        // would leave the rest of its numbers a gap the receiver waits
        // for. A number inside the run may be such a one: its segment
        // leaves with ID 0, which receive takes for that number when it
        // carries TCP data (`parse.rs`), and the window never waits for.
        for _ in 0..TRIES {
            // SAFETY: an array value stays mapped, 8-byte aligned; read
            // whole, then swapped only if no CPU took numbers since.
            let cur = unsafe { core::ptr::read_volatile(p) };
            let mut first = cur.wrapping_add(1);
            if !is_number(first as u32) {
                first = first.wrapping_add(1);
            }
            let last = first.wrapping_add(n as u64 - 1);
            // SAFETY: as above; the exchange is atomic.
            if unsafe { atomic_cxchg::<u64, { AtomicOrdering::SeqCst }, { AtomicOrdering::SeqCst }>(p, cur, last) }.1 {
                return Ok(first as u32);
            }
        }
        // Other CPUs kept taking numbers: take them as they come, which
        // starts on a refused number once in 65,536 packets at worst.
        // SAFETY: as below.
        let first = unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::SeqCst }>(p, n as u64) as u32 }.wrapping_add(1);
        return Ok(first);
    }
    // Unique across CPUs; RFC 2890 sequence numbers are 32 bits. The first
    // packet carries 1 (Linux 6.1's ip_gre starts at 0; both are fine with
    // RFC 2890 and with each other). SeqCst, not Relaxed: LLVM
    // 22's BPF backend lowers a Relaxed fetch-add whose result is used to a
    // plain locked add and returns a stale value.
    // SAFETY: an array value stays mapped, 8-byte aligned; the add is
    // atomic.
    let take = || unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::SeqCst }>(p, 1) as u32 }.wrapping_add(1);
    // One number in 65,536 marks a packet as not numbered: never given.
    let n = take();
    Ok(if is_number(n) { n } else { take() })
}
