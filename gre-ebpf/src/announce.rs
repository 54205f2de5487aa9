//! Numbering announcements (`gre_common::announce`): noted from a peer's
//! keepalive as it is reflected, and consulted for each of its packets, so
//! that a peer's IPv4 IDs are taken for numbers, and its packets are
//! resequenced by default, only while it says it numbers them.

use gre_common::{Announce, PeerAnnounce, MAX_ANNOUNCE_TTL_MS};

use crate::kernel::now_ns;
use crate::{maps::ANNOUNCED, packet::Packet};

/// Note what the peer's keepalive says behind its inner GRE header
/// (`at`), if it says anything of ours. A keepalive without it (another
/// implementation's, or an xgre peer that no longer numbers) ends any
/// announcement in force: the peer said nothing, so nothing is assumed.
#[inline(always)]
pub fn note<P: Packet>(pkt: &P, at: usize, peer_id: u32) {
    let Some(slot) = ANNOUNCED.get_ptr_mut(peer_id) else { return };
    let a = match pkt.read::<Announce>(at) {
        Ok(a) if a.is_ours() => a,
        _ => {
            // SAFETY: an array value stays mapped for the map's life; only this
            // program writes announcements, and a torn read by another CPU is at
            // worst one announcement early or late.
            unsafe { *slot = PeerAnnounce::default() };
            return;
        }
    };
    let ttl = a.ttl_ms().min(MAX_ANNOUNCE_TTL_MS) as u64 * 1_000_000;
    let now = now_ns();
    // SAFETY: as above.
    unsafe { *slot = PeerAnnounce { expires_ns: now + ttl, flags: a.flags(), _pad: 0 } };
}

/// The `ANNOUNCE_*` bits `peer_id` has in force. Costs one array lookup,
/// and a clock read only for a peer that has announced.
#[inline(always)]
pub fn in_force(peer_id: u32) -> u32 {
    let Some(a) = ANNOUNCED.get(peer_id) else { return 0 };
    if a.expires_ns == 0 {
        return 0;
    }
    a.in_force(now_ns())
}
