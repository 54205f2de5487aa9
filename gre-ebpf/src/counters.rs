//! Per-CPU counters: drops by reason and packets/bytes per path.

use gre_common::{path_slot, Announce, DropReason, Stamp};

use crate::{
    kernel::{now_ns, per_cpu},
    maps::{DROPS, PATH_RTT, PATH_SEEN, PATH_STATS},
    packet::Packet,
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

/// A keepalive of ours came back over this path: it is alive, and the
/// stamp it carries behind its GRE header (`at`: after our announcement,
/// if any) says how long the round trip took.
#[inline(always)]
pub fn keepalive_reply<P: Packet>(pkt: &P, at: usize, peer_id: u32, path: u32) {
    let slot = path_slot(peer_id, path);
    let now = now_ns();
    if let Some(seen) = PATH_SEEN.get_ptr_mut(slot) {
        // SAFETY: an array value stays mapped for the map's life; a plain
        // 8-byte store is atomic on BPF, and `xgre run` only reads it.
        unsafe { *seen = now };
    }
    let at = match pkt.read::<[u8; 4]>(at) {
        Ok(m) if u32::from_be_bytes(m) == Announce::MAGIC => at + Announce::LEN,
        _ => at,
    };
    if let (Ok(s), Some(rtt)) = (pkt.read::<Stamp>(at), PATH_RTT.get_ptr_mut(slot)) {
        let sent = s.sent_ns();
        // A stamp from the future, or older than 10 s, is no round trip.
        if s.is_ours() && sent <= now && now - sent < 10_000_000_000 {
            // SAFETY: as above.
            unsafe { *rtt = now - sent };
        }
    }
    per_cpu(&PATH_STATS, slot, |s| s.keepalive_replies += 1);
}

#[inline(always)]
pub fn keepalive_reflected(peer_id: u32, path: u32) {
    per_cpu(&PATH_STATS, path_slot(peer_id, path), |s| s.keepalives_reflected += 1);
}
