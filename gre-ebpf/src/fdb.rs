//! `gretap` forwarding table: which peer an inner MAC address lives behind.
//! Learned from the source MAC of every frame received from a peer, used
//! for the destination MAC of every frame sent; an entry older than the
//! tunnel's `fdb_age` no longer counts, so a host that moved or went quiet
//! is flooded again, as a switch does.

use gre_common::{FdbEntry, FdbKey, Tunnel, DEFAULT_FDB_AGE, FDB_STATIC};

use crate::kernel::{now_ns, Lookup};
use crate::maps::FDB;

const NS: u64 = 1_000_000_000;
/// A known entry's time is refreshed at most this often: a busy flow
/// otherwise writes the same cache line on every packet from every CPU.
const REFRESH_NS: u64 = NS;

#[inline(always)]
pub fn age_ns(tunnel: &Tunnel) -> u64 {
    let s = if tunnel.fdb_age == 0 { DEFAULT_FDB_AGE } else { tunnel.fdb_age };
    s as u64 * NS
}

/// The peer `mac` was last heard from, if not longer ago than the tunnel's
/// aging time (a static entry is never too old: now - MAX saturates to 0).
#[inline(always)]
pub fn lookup(tunnel: &Tunnel, mac: [u8; 6], vid: u16) -> Option<u32> {
    let key = FdbKey { tunnel_ifindex: tunnel.ifindex, mac, vid };
    let e = FDB.lookup(key)?;
    // SAFETY: `e` is a live map value (see `Lookup`); volatile because
    // other CPUs refresh it in place.
    let seen = unsafe { core::ptr::read_volatile(&e.seen_ns) };
    if now_ns().saturating_sub(seen) > age_ns(tunnel) {
        return None;
    }
    Some(e.peer_id)
}

/// A frame from `mac` (in VLAN `vid` of a trunk) arrived from peer `peer_id`.
#[inline(always)]
pub fn learn(tunnel_ifindex: u32, mac: [u8; 6], peer_id: u32, vid: u16) {
    // Group addresses are never a source; all zeros is no address.
    if mac[0] & 1 != 0 || mac == [0; 6] {
        return;
    }
    let key = FdbKey { tunnel_ifindex, mac, vid };
    let now = now_ns();
    if let Some(e) = FDB.get_ptr_mut(key) {
        // SAFETY: a live LRU value: concurrent refreshes of `seen_ns` and
        // `peer_id` race benignly (each field an aligned word store).
        unsafe {
            // The config's word stands over what a frame claims.
            if core::ptr::read_volatile(&(*e).seen_ns) == FDB_STATIC {
                return;
            }
            if (*e).peer_id == peer_id {
                if now.saturating_sub(core::ptr::read_volatile(&(*e).seen_ns)) > REFRESH_NS {
                    core::ptr::write_volatile(&mut (*e).seen_ns, now);
                }
                return;
            }
        }
    }
    // New, or moved to another peer: one update replaces the whole entry.
    let _ = FDB.insert(key, FdbEntry { peer_id, _pad: 0, seen_ns: now }, 0);
}
