//! Which path a peer's next packet takes: weighted round-robin through the
//! peer's precomputed schedule. The position is one shared counter per peer,
//! advanced with an atomic add: packets sent from different CPUs still
//! alternate paths exactly, where per-CPU positions would let two CPUs pick
//! the same path at the same moment and burst one link.

use core::intrinsics::{atomic_xadd, AtomicOrdering};
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
    // SeqCst: see tx.rs on LLVM and Relaxed fetch-add.
    let n = unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::SeqCst }>(pos, 1) };
    // The compiler knows the remainder is below len and drops a mask; the
    // verifier does not know it, so hide the value and mask it visibly.
    let slot = core::hint::black_box((n % len as u64) as usize) & (SCHEDULE_LEN - 1);
    let idx = (peer.schedule[slot] as usize) & (MAX_PATHS - 1);
    Some((idx as u32, &peer.paths[idx]))
}
