//! Hitless upgrade. An xgre of another build finds the running datapath
//! (same map layout; another layout is refused by `Datapath::find`), loads
//! its own programs against the same maps and attaches each in place of the
//! old one. Both kinds of attachment swap atomically (an XDP program
//! replaced through IFLA_XDP, a TC filter replaced by its handle), so no
//! packet meets a missing program, and the maps (peers, learned MACs,
//! counters, sequence numbers) carry on untouched.

use std::{
    collections::BTreeMap,
    os::fd::{AsFd, AsRawFd},
};

use anyhow::{Context, Result};
use gre_common::{names::*, HOOK_XDP, MODE_GRETAP};

use crate::datapath::entries;
use crate::{
    datapath::{build_id, Datapath},
    net::netlink::{Netlink, XDP_FLAGS_DRV_MODE},
    net::sys,
};

/// Replace the running datapath's programs with this build's when another
/// build attached them. Returns the builds (from, to) when it did.
pub async fn replace_programs_of_other_build(nl: &Netlink) -> Result<Option<(u64, u64)>> {
    let Some(mut dp) = Datapath::find()? else { return Ok(None) };
    let running = dp.running_build()?;
    if running == build_id() {
        return Ok(None);
    }
    dp.load_this_build();
    // Each program's fd stays open until its attach call has returned.
    let rx_xdp = dp.rx_xdp()?;
    let progs: BTreeMap<&str, aya::programs::ProgramFd> = [PROG_TX, PROG_TX_SEND, PROG_NEIGH_OUT, PROG_NEIGH_IN, PROG_RX_TC, rx_xdp.beside]
        .into_iter()
        .map(|name| Ok((name, dp.prog(name)?)))
        .collect::<Result<_>>()?;
    let fd = |name: &str| -> Result<i32> { Ok(progs[name].as_fd().as_raw_fd()) };
    let tunnels: Vec<(u32, u32, u32)> =
        entries(MAP_TUNNELS, dp.tunnels()?.iter())?.into_iter().map(|(t, v)| (t, v.peer_ifindex, v.mode)).collect();
    for (t, hidden, mode) in tunnels {
        let Some(dev) = nl.link_by_index(t).await? else { continue };
        // The sender first: the new decider's packets must find it. An
        // older build had no sender there (it sent from the tunnel's egress).
        nl.clsact_add(hidden).await?;
        nl.bpf_filter_add(hidden, false, fd(PROG_TX_SEND)?, PROG_TX_SEND).await?;
        nl.bpf_filter_add(t, true, fd(PROG_TX)?, PROG_TX).await?;
        if mode == MODE_GRETAP {
            nl.bpf_filter_add_first(t, true, fd(PROG_NEIGH_OUT)?, PROG_NEIGH_OUT).await?;
            nl.bpf_filter_add_first(t, false, fd(PROG_NEIGH_IN)?, PROG_NEIGH_IN).await?;
        }
        // Older builds gave the device NAPI with an XDP_PASS program; GRO
        // gives it now. GRO first, so the device never lacks NAPI.
        sys::enable_gro(&dev.name)?;
        nl.xdp_set(t, -1, XDP_FLAGS_DRV_MODE).await.with_context(|| format!("detaching the XDP program of an older build from #{t}"))?;
    }
    // Each link once, whichever tunnels use it.
    let links: BTreeMap<u32, u32> =
        entries(MAP_LINK_USERS, dp.link_users()?.iter())?.into_iter().map(|(k, u)| (k.link_ifindex, u.hook)).collect();
    for (link, hook) in links {
        if nl.link_by_index(link).await?.is_none() {
            continue;
        }
        if hook == HOOK_XDP {
            super::links::set_xdp(nl, link, &rx_xdp, fd(rx_xdp.beside)?).await?;
        } else {
            nl.bpf_filter_add(link, false, fd(PROG_RX_TC)?, PROG_RX_TC).await?;
        }
    }
    // Last: an upgrade cut short is tried again by the next `up`.
    dp.record_build()?;
    Ok(Some((running, build_id())))
}
