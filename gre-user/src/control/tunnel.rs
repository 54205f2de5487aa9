//! `xgre up` and `xgre down`: a tunnel's device, map entries and program
//! attachments, made and removed as one unit.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{anyhow, bail, Context, Result};
use gre_common::{names::*, LinkUse, LinkUseKey, Tunnel};
use std::os::fd::{AsFd, AsRawFd};

use crate::datapath::entries;
use crate::{
    config::Config,
    control::links,
    control::state,
    datapath::codec::{self, cstr, hidden_mtu, hidden_name, name16},
    datapath::{self, remove_where, Datapath},
    net::netlink::{Link, Netlink},
    net::sys,
};

pub enum UpOutcome {
    Created { ifindex: u32, mtu: u32, hooks: Vec<(String, &'static str)> },
    AlreadyUp,
}

/// IPv6 on the tunnel device: off when the tunnel carries none, so the
/// kernel sends no solicitations into it; else on, without a link-local
/// address or duplicate address detection (a point-to-point tunnel has no
/// neighbours to ask).
fn setup_ipv6(dev: &str, carry: bool) {
    let conf = |k: &str, v: &str| {
        let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{dev}/{k}"), v);
    };
    if carry {
        conf("addr_gen_mode", "1");
        conf("accept_dad", "0");
        conf("disable_ipv6", "0");
    } else {
        conf("disable_ipv6", "1");
    }
}

pub async fn up(cfg: &Config, file: &str, pin: bool) -> Result<UpOutcome> {
    sys::require_root("up")?;
    if pin {
        sys::ensure_bpffs()?;
    }
    let nl = Netlink::new()?;
    let name = &cfg.tunnel.name;
    let links = links::resolve_links(&nl, cfg, file).await?;
    if let Some((from, to)) = crate::control::upgrade::replace_programs_of_other_build(&nl).await? {
        println!("datapath programs of build {from:016x} replaced in place by this build's ({to:016x})");
    }

    let existing = Datapath::find()?;
    if let Some(dev) = nl.link(name).await? {
        let ours = match &existing {
            Some(dp) => dp.tunnels()?.get(&dev.index, 0).ok(),
            None => None,
        };
        match ours {
            Some(t) if t.config_hash == cfg.fingerprint() => return Ok(UpOutcome::AlreadyUp),
            // A zero fingerprint: an `up` that was killed half way. Start over.
            Some(t) if t.config_hash == 0 => {
                tracing::info!("{name}: finishing an interrupted up by starting over");
                down_by_name(&nl, existing.as_ref(), name).await?;
            }
            Some(_) => match crate::net::sys::RunLock::holder(name) {
                Some(pid) => bail!("tunnel {name} is already up, managed by `xgre run` (PID {pid}) with a different configuration; `xgre reload -c {file}` applies the difference"),
                None => bail!("tunnel {name} is already up with a different configuration; `xgre reload -c {file}` applies the difference"),
            },
            // Our device, killed before its map entry was written.
            None if dev.kind.as_deref() == Some("veth") && nl.link(&hidden_name(name)).await?.is_some() => {
                tracing::info!("{name}: removing the device of an interrupted up");
                nl.del_link(dev.index).await?;
            }
            None => bail!("{file}: tunnel.name: a device named `{name}` already exists and is not an xgre tunnel"),
        }
    }

    let link_mtu = cfg.links.iter().map(|l| links[&l.dev].mtu).min().unwrap_or(1500);
    let mtu = crate::control::state::tunnel_mtu(cfg, link_mtu, file)?;
    let mut macs = Vec::new();
    for i in 0..cfg.peers.len() {
        macs.push(links::resolve_macs(&nl, cfg, i, &links, file).await?);
    }

    crate::control::state::check_routes(&nl, cfg, 0, file).await?;
    let dp = match Datapath::find()? {
        Some(d) => d,
        None => Datapath::load()?,
    };
    // Refuse a key another tunnel of this namespace already receives.
    for lookup in cfg.key_lookups() {
        if let Ok(other) = dp.tunnel_by_key()?.get(&lookup, 0) {
            let t = dp.tunnels()?.get(&other, 0).ok();
            let other = t.map(|t| cstr(&t.name)).unwrap_or_else(|| format!("#{other}"));
            let (field, what) = match (cfg.is_trunk(), cfg.tunnel.vsid.is_some()) {
                (true, _) => ("tunnel.vlan", format!("key {}", lookup.key)),
                (false, true) => ("tunnel.vsid", cfg.key_text()),
                (false, false) => ("tunnel.key", cfg.key_text()),
            };
            bail!("{file}: {field}: tunnel {other} already receives {what} in this namespace");
        }
    }

    let hidden = hidden_name(name);
    // Bounds the GSO packets the stack builds for the tunnel: the striping
    // unit, and one MSS when each packet needs its own GRE header.
    nl.create_veth(name, &hidden, mtu, cfg.gso_max_segs()).await?;
    let made = async {
        let tun = nl.link(name).await?.ok_or_else(|| anyhow!("device {name} vanished"))?;
        let hid = nl.link(&hidden).await?.ok_or_else(|| anyhow!("device {hidden} vanished"))?;
        fill_and_attach(cfg, &nl, &dp, &tun, &hid, &links, &macs, mtu).await.map(|hooks| (tun, hooks))
    }
    .await;
    match made {
        Ok((tun, hooks)) => {
            if pin {
                dp.pin_maps()?;
            }
            Ok(UpOutcome::Created { ifindex: tun.index, mtu, hooks })
        }
        Err(e) => {
            // Undo whatever part was done; the error that stopped us matters more.
            if let Err(e2) = down_by_name(&nl, Some(&dp), name).await {
                tracing::warn!("cleanup after a failed up: {e2:#}");
            }
            if let Some(h) = nl.link(&hidden).await.ok().flatten() {
                let _ = nl.del_link(h.index).await;
            }
            Err(e)
        }
    }
}

/// Fill the maps and attach the programs for a freshly made device. The
/// tunnel's map entry is written first with a zero fingerprint and gets its
/// real one last: a `up` killed in between is recognised and redone.
#[allow(clippy::too_many_arguments)]
async fn fill_and_attach(
    cfg: &Config,
    nl: &Netlink,
    dp: &Datapath,
    tun: &Link,
    hid: &Link,
    links: &BTreeMap<String, Link>,
    macs: &[Vec<[u8; 6]>],
    mtu: u32,
) -> Result<Vec<(String, &'static str)>> {
    let t = &cfg.tunnel;
    let v6 = t.address.iter().chain(cfg.peers.iter().flat_map(|p| p.routes.iter())).any(|n| matches!(n, ipnet::IpNet::V6(_)));
    setup_ipv6(&t.name, v6);
    setup_ipv6(&hid.name, false);
    nl.set_link(hid.index, true, false, hidden_mtu(mtu)).await?;
    // gretap is Ethernet: ARP runs on it. A gre device has no neighbours.
    nl.set_link(tun.index, true, cfg.tunnel.mode == crate::config::Mode::Gretap, mtu).await?;
    for a in &t.address {
        nl.add_address(tun.index, *a).await?;
    }
    let base = Tunnel { ifindex: tun.index, peer_ifindex: hid.index, mac: tun.mac, name: name16(&t.name), ..Default::default() };
    let mut tunnels = dp.tunnels()?;
    let value = codec::tunnel_value(cfg, base);
    tunnels.insert(tun.index, Tunnel { config_hash: 0, ..value }, 0)?;
    // A trunk's VLANs before its keys: a key it receives always finds
    // its VLAN.
    for (k, v) in codec::vlan_entries(cfg, tun.index) {
        dp.vlans()?.insert(k, v, 0)?;
    }
    for lookup in cfg.key_lookups() {
        dp.tunnel_by_key()?.insert(lookup, tun.index, 0)?;
    }
    for (k, v) in codec::neigh_entries(cfg, tun.index) {
        dp.neigh()?.insert(k, v, 0)?;
    }

    // The tunnel device: transmit decision on egress, encapsulation on the
    // hidden end's ingress (hidden end first: a decided packet always finds
    // its sender), and GRO, whose NAPI context lets frames redirected from
    // XDP receive arrive. (An XDP program would do that too, but veth then
    // takes GSO from the hidden end, which would segment every received
    // GRO packet on its way to the device.)
    nl.clsact_add(hid.index).await?;
    nl.bpf_filter_add(hid.index, false, dp.prog(PROG_TX_SEND)?.as_fd().as_raw_fd(), PROG_TX_SEND).await?;
    nl.clsact_add(tun.index).await?;
    nl.bpf_filter_add(tun.index, true, dp.prog(PROG_TX)?.as_fd().as_raw_fd(), PROG_TX).await?;
    if cfg.tunnel.mode == crate::config::Mode::Gretap {
        // ARP/ND suppression, idle until `arp_suppress` says otherwise: a
        // reload turns it on and off without touching attachments.
        nl.bpf_filter_add_first(tun.index, true, dp.prog(PROG_NEIGH_OUT)?.as_fd().as_raw_fd(), PROG_NEIGH_OUT).await?;
        nl.bpf_filter_add_first(tun.index, false, dp.prog(PROG_NEIGH_IN)?.as_fd().as_raw_fd(), PROG_NEIGH_IN).await?;
    }
    sys::enable_gro(&t.name)?;
    sys::set_tso(&t.name, !cfg.segments_per_packet())?;

    let mut hooks = Vec::new();
    for (i, lc) in cfg.links.iter().enumerate() {
        let hook = links::add_link(nl, dp, tun.index, lc, &links[&lc.dev]).await.with_context(|| format!("link[{i}] ({})", lc.dev))?;
        hooks.push((lc.dev.clone(), hook));
    }
    let used_ids = entries(MAP_PEERS, dp.peers()?.keys())?.into_iter().collect();
    let empty = state::Running {
        ifindex: tun.index,
        tunnel: value,
        config: cfg.clone_without_peers(),
        ids: BTreeMap::new(),
        used_ids,
        links: links.clone(),
    };
    let mut run = empty;
    state::add_peers(nl, dp, &mut run, cfg, links, macs).await?;
    tunnels.insert(tun.index, value, 0)?;
    Ok(hooks)
}

/// `xgre down NAME`. Returns false when no such tunnel was up.
pub async fn down(name: &str) -> Result<bool> {
    sys::require_root("down")?;
    let nl = Netlink::new()?;
    let dp = Datapath::find()?;
    down_by_name(&nl, dp.as_ref(), name).await
}

/// Take away what a resequencer of tunnel `tidx` left in the datapath
/// (a killed `xgre run` leaves its entries; the receive programs deliver
/// past them, since its sockets and tap are gone).
pub fn clear_resequencer(dp: &Datapath, tidx: u32) -> Result<()> {
    datapath::removed(dp.reseq_tap()?.remove(&tidx))?;
    remove_where(&mut dp.reseq_link()?, |_, l| l.tunnel_ifindex == tidx)?;
    Ok(())
}

async fn down_by_name(nl: &Netlink, dp: Option<&Datapath>, name: &str) -> Result<bool> {
    let Some(dp) = dp else {
        if nl.link(name).await?.is_some() {
            bail!("device {name} exists but no xgre datapath is loaded in this namespace: it is not an xgre tunnel");
        }
        return Ok(false);
    };
    let mut tunnels = dp.tunnels()?;
    let all: Vec<(u32, Tunnel)> = entries(MAP_TUNNELS, tunnels.iter())?;
    let Some((tidx, tunnel)) = all.iter().find(|(_, t)| cstr(&t.name) == name).copied() else {
        if nl.link(name).await?.is_some() {
            bail!("device {name} is not an xgre tunnel");
        }
        return Ok(false);
    };

    // The veth pair takes its qdisc, filters, XDP program and routes with it.
    nl.del_link(tidx).await?;
    if tunnel.peer_ifindex != 0 {
        nl.del_link(tunnel.peer_ifindex).await?;
    }
    clear_resequencer(dp, tidx)?;
    // A killed `run`'s reassembly tap went with it; its entry goes here.
    remove_where(&mut dp.reasm_tap()?, |_, &t| t == tidx)?;

    remove_where(&mut dp.peers()?, |_, p| p.tunnel_ifindex == tidx)?;
    for (t, r, _) in state::all_routes(dp)? {
        if t == tidx {
            state::set_route(dp, tidx, &r, None)?;
        }
    }
    let mut rx = dp.rx_paths()?;
    let doomed: Vec<gre_common::RxKey> =
        rx.keys().collect::<Result<Vec<_>, _>>()?.into_iter().filter(|k| k.tunnel_ifindex == tidx).collect();
    for k in &doomed {
        crate::datapath::pairs::remove_rx_path(dp, &mut rx, k)?;
    }
    remove_where(&mut dp.tunnel_by_key()?, |_, t| *t == tidx)?;
    remove_where(&mut dp.vlans()?, |k, _| k.tunnel_ifindex == tidx)?;
    remove_where(&mut dp.neigh()?, |k, _| k.tunnel_ifindex == tidx)?;
    datapath::removed(dp.neigh_stats()?.remove(&tidx))?;
    remove_where(&mut dp.flood()?, |k, _| k.tunnel_ifindex == tidx)?;
    state::forget_macs(dp, tidx, None)?;

    let mut users = dp.link_users()?;
    let all_users: Vec<(LinkUseKey, LinkUse)> = entries(MAP_LINK_USERS, users.iter())?;
    for (k, u) in all_users.iter().filter(|(k, _)| k.tunnel_ifindex == tidx) {
        datapath::removed(users.remove(k))?;
        let still_used = all_users.iter().any(|(o, _)| o.link_ifindex == k.link_ifindex && o.tunnel_ifindex != tidx);
        if !still_used {
            links::detach_rx(nl, k.link_ifindex, u).await?;
        }
    }
    let remaining: BTreeSet<[u8; 16]> = all_users.iter().filter(|(k, _)| k.tunnel_ifindex != tidx).map(|(_, u)| u.addr).collect();
    remove_where(&mut dp.local_addrs()?, |a, _| !remaining.contains(a))?;
    datapath::removed(tunnels.remove(&tidx))?;
    if tunnels.keys().next().is_none() {
        // Last tunnel: once detached, the kernel frees programs and maps.
        datapath::unpin_maps()?;
    }
    Ok(true)
}
