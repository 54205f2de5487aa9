//! Per-CPU counters: drops by reason and packets/bytes per path.

use gre_common::{path_slot, DropReason};

use crate::{
    kernel::{now_ns, per_cpu},
    maps::{DROPS, PATH_SEEN, PATH_STATS},
};

#[inline(always)]
pub fn count_drop(reason: DropReason) {
    per_cpu(&DROPS, reason as u32, |c| *c += 1);
}

#[inline(always)]
pub fn count_tx(peer_id: u32, path: u32, packets: u64, bytes: u64) {
    per_cpu(&PATH_STATS, path_slot(peer_id, path), |s| {
        s.tx_packets += packets;
        s.tx_bytes += bytes;
    });
}

#[inline(always)]
pub fn count_rx(peer_id: u32, path: u32, packets: u64, bytes: u64) {
    per_cpu(&PATH_STATS, path_slot(peer_id, path), |s| {
        s.rx_packets += packets;
        s.rx_bytes += bytes;
    });
}

/// A keepalive of ours came back over this path: it is alive.
#[inline(always)]
pub fn keepalive_reply(peer_id: u32, path: u32) {
    let slot = path_slot(peer_id, path);
    if let Some(seen) = PATH_SEEN.get_ptr_mut(slot) {
        // SAFETY: an array value stays mapped for the map's life; a plain
        // 8-byte store is atomic on BPF, and `xgre run` only reads it.
        unsafe { *seen = now_ns() };
    }
    per_cpu(&PATH_STATS, slot, |s| s.keepalive_replies += 1);
}

#[inline(always)]
pub fn keepalive_reflected(peer_id: u32, path: u32) {
    per_cpu(&PATH_STATS, path_slot(peer_id, path), |s| s.keepalives_reflected += 1);
}
