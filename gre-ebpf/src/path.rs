//! Which path a peer's next packet takes: weighted round-robin through the
//! peer's precomputed schedule, with a per-CPU position so that CPUs never
//! contend for it.

use gre_common::{Path, Peer, MAX_PATHS, SCHEDULE_LEN};

use crate::maps::RR;

/// Returns the path index and the path for the next packet to `peer`.
#[inline(always)]
pub fn select(peer: &Peer) -> Option<(u32, &Path)> {
    let len = peer.sched_len;
    if len == 0 || len as usize > SCHEDULE_LEN {
        return None;
    }
    let pos = RR.get_ptr_mut(peer.id)?;
    let i = unsafe {
        let i = *pos;
        *pos = if i + 1 >= len { 0 } else { i + 1 };
        i
    };
    let slot = (i as usize) & (SCHEDULE_LEN - 1);
    let idx = (peer.schedule[slot] as usize) & (MAX_PATHS - 1);
    Some((idx as u32, &peer.paths[idx]))
}
