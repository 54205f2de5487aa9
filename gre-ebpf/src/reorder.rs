//! Reorder telemetry from RFC 2890 sequence numbers. Packets are never held
//! or dropped for arriving out of order (Linux's ip_gre drops them, and that
//! kills aggregation): this only measures.

use gre_common::LATE_DISPLACEMENT;

use crate::maps::{REORDER, RX_SEQ};

const SEEN: u64 = 1 << 32;

#[inline(always)]
pub fn observe(peer_id: u32, seq: u32) {
    let (Some(hi), Some(st)) = (RX_SEQ.get_ptr_mut(peer_id), REORDER.get_ptr_mut(peer_id)) else {
        return;
    };
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
