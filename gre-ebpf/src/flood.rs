//! Head-end replication: one copy of a packet to each peer of a flood list
//! (`gretap` broadcast, multicast and unknown unicast; `gre` multicast and
//! broadcast), each copy over one path picked as striping picks it.
//!
//! The outer headers' room is made once; each copy then gets its path's
//! header written over it and is sent by bpf_clone_redirect. The loop is a
//! bpf_loop, so the verifier checks one copy, not `MAX_FLOOD` of them.

use aya_ebpf::{
    bindings::__sk_buff,
    helpers::generated::{bpf_clone_redirect, bpf_loop},
    programs::TcContext,
};
use core::ffi::c_void;
use gre_common::{DropReason, FloodList, MAX_FLOOD};

use crate::{
    counters::{count_drop, count_tx},
    encap::{self, Fields},
    global,
    path::{self, NO_PATH, PEER_GONE},
};

/// Not a peer id: nothing to leave out.
pub const NO_PEER: u32 = u32::MAX;

#[repr(C)]
struct Copies {
    ctx: *mut __sk_buff,
    list: *const FloodList,
    tunnel_ifindex: u32,
    /// The peer the packet came from: it gets no copy.
    skip: u32,
    fields: Fields,
    /// `encap::Room`, packed.
    room: i64,
    inner_len: u64,
    segs: u64,
    /// Flags, not counts: the verifier checks the callback until its state
    /// stops changing, and a count would change every round.
    sent: u32,
    skipped: u32,
}

extern "C" fn one_copy(i: u64, s: *mut c_void) -> i64 {
    // SAFETY: `bpf_loop` hands back the `Copies` `flood` gave it, alive on
    // its stack for the whole loop.
    let s = unsafe { &mut *(s as *mut Copies) };
    // SAFETY: `s.list` is a flood list looked up by `flood` and kept
    // alive by RCU until the program returns.
    let list = unsafe { &*s.list };
    let n = if list.n as usize > MAX_FLOOD { MAX_FLOOD as u64 } else { list.n as u64 };
    if i >= n {
        return 1;
    }
    // Masked where the compiler cannot see that `i < n` already bounds
    // it: older verifiers (Linux 6.1) learn nothing from comparing two
    // registers unless one is a constant.
    let peer_id = list.peers[core::hint::black_box(i as usize) & (MAX_FLOOD - 1)];
    if peer_id == s.skip {
        s.skipped = 1;
        return 0;
    }
    let j = match path::xgre_select_path(peer_id, s.tunnel_ifindex, s.inner_len) {
        PEER_GONE => return 0,
        NO_PATH => {
            count_drop(DropReason::NoPath);
            return 0;
        }
        j => j,
    };
    let ifindex = match global::decode(encap::xgre_encap_put(s.ctx, &s.fields, s.room, peer_id, j)) {
        Ok(i) => i as u32,
        Err(r) => {
            count_drop(r);
            return 0;
        }
    };
    // SAFETY: `s.ctx` is the context the kernel passed to this run.
    if unsafe { bpf_clone_redirect(s.ctx, ifindex, 0) } != 0 {
        count_drop(DropReason::HelperFailed);
        return 0;
    }
    count_tx(peer_id, j, s.segs, s.inner_len);
    s.sent = 1;
    0
}

/// Send a copy of the packet (already grown by `encap::grow`) to each
/// peer of `list` but `skip`; returns whether any went. The original is the
/// caller's to consume. A copy with no path up is counted as `no_path`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn replicate(
    ctx: &TcContext,
    tunnel_ifindex: u32,
    list: &FloodList,
    skip: u32,
    fields: Fields,
    room: i64,
    inner_len: u64,
    segs: u64,
) -> Result<bool, DropReason> {
    let mut s = Copies {
        ctx: ctx.skb.skb,
        list: list as *const FloodList,
        tunnel_ifindex,
        skip,
        fields,
        room,
        inner_len,
        segs,
        sent: 0,
        skipped: 0,
    };
    let cb = one_copy as extern "C" fn(u64, *mut c_void) -> i64;
    // SAFETY: `one_copy` takes exactly this `Copies`, which outlives the
    // loop.
    let r = unsafe { bpf_loop(MAX_FLOOD as u32, cb as *mut c_void, (&mut s as *mut Copies).cast(), 0) };
    if r < 0 {
        return Err(DropReason::HelperFailed);
    }
    if s.sent == 0 && s.skipped > 0 {
        // Its only way out was back where it came from.
        return Err(DropReason::SplitHorizon);
    }
    Ok(s.sent != 0)
}
