//! Per-CPU counters: drops by reason and packets/bytes per path.

use gre_common::{path_slot, DropReason};

use crate::maps::{DROPS, PATH_STATS};

#[inline(always)]
pub fn count_drop(reason: DropReason) {
    if let Some(c) = DROPS.get_ptr_mut(reason as u32) {
        unsafe { *c += 1 };
    }
}

#[inline(always)]
pub fn count_tx(peer_id: u32, path: u32, bytes: u64) {
    if let Some(s) = PATH_STATS.get_ptr_mut(path_slot(peer_id, path)) {
        unsafe {
            (*s).tx_packets += 1;
            (*s).tx_bytes += bytes;
        }
    }
}

#[inline(always)]
pub fn count_rx(peer_id: u32, path: u32, bytes: u64) {
    if let Some(s) = PATH_STATS.get_ptr_mut(path_slot(peer_id, path)) {
        unsafe {
            (*s).rx_packets += 1;
            (*s).rx_bytes += bytes;
        }
    }
}
