//! Per-CPU counters: drops by reason and packets/bytes per path.

use gre_common::{path_slot, DropReason};

use aya_ebpf::helpers::bpf_ktime_get_ns;

use crate::maps::{DROPS, PATH_SEEN, PATH_STATS};

#[inline(always)]
pub fn count_drop(reason: DropReason) {
    if let Some(c) = DROPS.get_ptr_mut(reason as u32) {
        unsafe { *c += 1 };
    }
}

#[inline(always)]
pub fn count_tx(peer_id: u32, path: u32, packets: u64, bytes: u64) {
    if let Some(s) = PATH_STATS.get_ptr_mut(path_slot(peer_id, path)) {
        unsafe {
            (*s).tx_packets += packets;
            (*s).tx_bytes += bytes;
        }
    }
}

#[inline(always)]
pub fn count_rx(peer_id: u32, path: u32, packets: u64, bytes: u64) {
    if let Some(s) = PATH_STATS.get_ptr_mut(path_slot(peer_id, path)) {
        unsafe {
            (*s).rx_packets += packets;
            (*s).rx_bytes += bytes;
        }
    }
}

/// A keepalive of ours came back over this path: it is alive.
#[inline(always)]
pub fn keepalive_reply(peer_id: u32, path: u32) {
    let slot = path_slot(peer_id, path);
    if let Some(seen) = PATH_SEEN.get_ptr_mut(slot) {
        unsafe { *seen = bpf_ktime_get_ns() };
    }
    if let Some(s) = PATH_STATS.get_ptr_mut(slot) {
        unsafe { (*s).keepalive_replies += 1 };
    }
}

#[inline(always)]
pub fn keepalive_reflected(peer_id: u32, path: u32) {
    if let Some(s) = PATH_STATS.get_ptr_mut(path_slot(peer_id, path)) {
        unsafe { (*s).keepalives_reflected += 1 };
    }
}
