//! xgre datapath: GRE encapsulation on the tunnel device's TC egress and
//! decapsulation on each link's XDP or TC ingress.
//!
//! Each program is a thin entry point around a `try_*` function; an `Err`
//! is counted under its reason and the packet is dropped, never passed.
#![no_std]
#![no_main]
// `atomic_xadd`: core's `AtomicU64::fetch_add` is compiled out on
// bpfel-unknown-none (`target_has_atomic = "64"` needs compare-and-swap,
// which the target does not declare), though the BPF instruction exists.
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod announce;
mod consts;
mod counters;
mod csum;
mod encap;
mod fdb;
mod fit;
mod flood;
mod global;
mod icmp;
mod kernel;
mod lco;
mod light;
mod maps;
mod neigh;
mod packet;
mod parse;
mod path;
mod pmtu;
mod reseq;
mod rx;
mod seq;
mod structs;
mod trunk;
mod tx;

use aya_ebpf::{
    bindings::{xdp_action, TC_ACT_SHOT},
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};
use aya_log_ebpf::debug;

use crate::{counters::count_drop, kernel::Lookup};

/// Whether an `xgre --debug` is listening (a runtime switch in the meta
/// map, so logging costs one lookup when nobody listens).
#[inline(always)]
fn debug_on() -> bool {
    maps::META.get(0).is_some_and(|m| m.debug != 0)
}

/// Never true at run time, but the compiler cannot know: it makes every
/// program reference every map, so the whole set lives as long as any one
/// program does (the transmit program outlives a link's receive programs
/// when the link vanishes), and the loader finds the whole datapath again
/// through any one program's map ids.
#[inline(always)]
fn keep_maps(data: usize) {
    use gre_common::{FdbKey, FloodKey, KeyLookup, LinkUseKey, RxKey};
    if data == 0 {
        let _ = maps::META.get(0);
        let _ = maps::TUNNELS.lookup(0);
        let _ = maps::TUNNEL_BY_KEY.lookup(KeyLookup::default());
        let _ = maps::PEERS.lookup(0);
        let _ = maps::ROUTES4.get(aya_ebpf::maps::lpm_trie::Key::new(0, Default::default()));
        let _ = maps::ROUTES6.get(aya_ebpf::maps::lpm_trie::Key::new(0, Default::default()));
        let _ = maps::RX_PATHS.lookup(RxKey::default());
        let _ = maps::LOCAL_ADDRS.lookup([0; 16]);
        let _ = maps::LINK_USERS.lookup(LinkUseKey::default());
        let _ = maps::PATH_STATS.get(0);
        let _ = maps::DROPS.get(0);
        let _ = maps::TX_SEQ.get(0);
        let _ = maps::SCRATCH.get(0);
        let _ = maps::RX_SEQ.get(0);
        let _ = maps::REORDER.get(0);
        let _ = maps::PATH_SEEN.get(0);
        let _ = maps::PATH_RTT.get(0);
        let _ = maps::ANNOUNCED.get(0);
        let _ = maps::BULK_FLOWS.lookup(0);
        let _ = maps::PATH_BYTES.get(0);
        let _ = maps::FDB.lookup(FdbKey::default());
        let _ = maps::FLOOD.lookup(FloodKey::default());
        let _ = maps::VLANS.lookup(gre_common::VlanMapKey::default());
        let _ = maps::NEIGH.lookup(gre_common::NeighKey::default());
        let _ = maps::RESEQ_LINK.lookup(0);
        let _ = maps::RESEQ_XSK.get(0);
        let _ = maps::NEIGH_STATS.lookup(0);
        let _ = maps::HDR_SCRATCH.get(0);
        let _ = maps::LCO_HDR.get(0);
        let _ = maps::RESEQ_TAP.lookup(0);
        let _ = maps::REASM_TAP.lookup(0);
        let _ = maps::PATH_MTU.get(0);
        let _ = maps::OUTER_PAIRS.lookup(gre_common::OuterPair::default());
        let _ = maps::PMTU_EVENTS.get(0);
        let _ = maps::PMTU_CLAIM.get(0);
        // aya-log's buffer, for `--debug`: the programs that never log
        // would not hold it otherwise.
        let _ = aya_log_ebpf::macro_support::AYA_LOGS.query(0);
    }
}

#[classifier]
pub fn xgre_tx(ctx: TcContext) -> i32 {
    keep_maps(ctx.data());
    tx::try_tx(&ctx).unwrap_or_else(|reason| {
        count_drop(reason);
        if debug_on() {
            debug!(&ctx, "xgre_tx: drop reason {}", reason as u32);
        }
        tx::drop_where_counted(&ctx)
    })
}

#[classifier]
pub fn xgre_tx_send(ctx: TcContext) -> i32 {
    keep_maps(ctx.data());
    tx::try_tx_send(&ctx).unwrap_or_else(|reason| {
        count_drop(reason);
        if debug_on() {
            debug!(&ctx, "xgre_tx_send: drop reason {}", reason as u32);
        }
        TC_ACT_SHOT
    })
}

/// Suppression is an optimisation: a frame it cannot read goes on to
/// `xgre_tx` (or into the device) as if it were not there; only a frame
/// it was rewriting when a helper failed is dropped.
#[inline(always)]
fn neigh_verdict(r: Result<i32, gre_common::DropReason>) -> i32 {
    match r {
        Ok(v) => v,
        Err(gre_common::DropReason::HelperFailed) => {
            count_drop(gre_common::DropReason::HelperFailed);
            TC_ACT_SHOT
        }
        Err(_) => aya_ebpf::bindings::TC_ACT_UNSPEC,
    }
}

#[classifier]
pub fn xgre_neigh_out(ctx: TcContext) -> i32 {
    keep_maps(ctx.data());
    neigh_verdict(neigh::try_neigh_out(&ctx))
}

#[classifier]
pub fn xgre_neigh_in(ctx: TcContext) -> i32 {
    keep_maps(ctx.data());
    neigh_verdict(neigh::try_neigh_in(&ctx))
}

#[classifier]
pub fn xgre_rx_tc(ctx: TcContext) -> i32 {
    keep_maps(ctx.data());
    match global::decode(rx::xgre_rx_tc_body(ctx.skb.skb)) {
        Ok(v) => match pmtu::learn_requested(v) {
            Some((at, v4)) => {
                pmtu::learn_from(&ctx, at, v4);
                aya_ebpf::bindings::TC_ACT_OK
            }
            None => v,
        },
        Err(reason) => {
            count_drop(reason);
            if debug_on() {
                debug!(&ctx, "xgre_rx_tc: drop reason {}", reason as u32);
            }
            TC_ACT_SHOT
        }
    }
}

#[classifier]
pub fn xgre_rx_handoff(ctx: TcContext) -> i32 {
    keep_maps(ctx.data());
    rx::try_rx_handoff(&ctx).unwrap_or_else(|reason| {
        count_drop(reason);
        TC_ACT_SHOT
    })
}

#[xdp]
pub fn xgre_rx_xdp(ctx: XdpContext) -> u32 {
    keep_maps(ctx.data());
    let v = rx::xgre_rx_xdp_body(ctx.ctx);
    xdp_verdict(&ctx, v, "xgre_rx_xdp")
}

/// XDP receive where the kernel refuses XDP metadata (`rx.rs`).
#[xdp]
pub fn xgre_rx_xdp_nm(ctx: XdpContext) -> u32 {
    keep_maps(ctx.data());
    let v = rx::xgre_rx_xdp_nm_body(ctx.ctx);
    xdp_verdict(&ctx, v, "xgre_rx_xdp_nm")
}

#[inline(always)]
fn xdp_verdict(ctx: &XdpContext, v: i64, name: &str) -> u32 {
    match global::decode(v) {
        Ok(v) => match pmtu::learn_requested(v) {
            Some((at, v4)) => {
                pmtu::learn_from(ctx, at, v4);
                xdp_action::XDP_PASS
            }
            None => v as u32,
        },
        Err(reason) => {
            count_drop(reason);
            if debug_on() {
                debug!(ctx, "{}: drop reason {}", name, reason as u32);
            }
            xdp_action::XDP_DROP
        }
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 4] = *b"GPL\0";
