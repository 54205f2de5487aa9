//! The tunnel's links: finding them and their neighbours, and attaching
//! and detaching the receive programs (XDP or TC) on them.

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr, UdpSocket},
    os::fd::{AsFd, AsRawFd},
    time::{Duration, Instant},
};

use anyhow::{anyhow, Context, Result};
use gre_common::{names::*, *};

use crate::datapath::entries;
use crate::{
    config::{Config, LinkConfig, RxHook},
    datapath::codec::{addr16, hook_cfg},
    datapath::{Datapath, RxXdp},
    net::netlink::{self, Link, Netlink, XDP_FLAGS_DRV_MODE},
};

/// How long `up` waits for ARP when a path gives no MAC.
const NEIGH_TIMEOUT: Duration = Duration::from_secs(3);

/// The neighbour MAC for `remote` on `link`: the MAC of the next hop the
/// host's routes name (`remote` itself on the link's subnet, a router's
/// otherwise), from the kernel's table, after prompting ARP with one empty
/// UDP datagram when there is no entry.
pub async fn resolve_mac(nl: &Netlink, link: &Link, local: IpAddr, remote: IpAddr) -> Result<Option<[u8; 6]>> {
    let hop = nl.next_hop(remote).await.unwrap_or(remote);
    if let Some(m) = nl.neighbour(link.index, hop).await? {
        return Ok(Some(m));
    }
    if let Ok(sock) = UdpSocket::bind(SocketAddr::new(local, 0)) {
        // Port 9 (discard): the peer drops it; we only want ARP to run.
        let _ = sock.send_to(&[], SocketAddr::new(remote, 9));
    }
    let start = Instant::now();
    while start.elapsed() < NEIGH_TIMEOUT {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Some(m) = nl.neighbour(link.index, hop).await? {
            return Ok(Some(m));
        }
    }
    Ok(None)
}

pub async fn detach_rx(nl: &Netlink, link_ifindex: u32, u: &LinkUse) -> Result<()> {
    let Some(link) = nl.link_by_index(link_ifindex).await? else {
        return Ok(()); // the link itself is gone, and its attachments with it
    };
    if u.hook == HOOK_XDP {
        // Ours by name, not by id: programs may have been loaded again
        // since this one was attached.
        let ours = link.xdp_prog_id.is_some_and(|id| {
            aya::programs::loaded_programs()
                .filter_map(Result::ok)
                .any(|p| p.id() == id && p.name_as_str().is_some_and(|n| [PROG_RX_XDP, PROG_RX_XDP_NM].contains(&n)))
        });
        if ours {
            nl.xdp_set(link_ifindex, -1, XDP_FLAGS_DRV_MODE).await?;
        }
    }
    // Both hooks leave a TC filter on ingress (the receive program, or the
    // XDP handoff).
    nl.bpf_filter_del(link_ifindex, false).await?;
    if u.own_clsact != 0 {
        nl.clsact_del(link_ifindex).await?;
    }
    Ok(())
}

/// The links a config names, looked up in this namespace.
pub async fn resolve_links(nl: &Netlink, cfg: &Config, file: &str) -> Result<BTreeMap<String, Link>> {
    let mut links = BTreeMap::new();
    for (i, l) in cfg.links.iter().enumerate() {
        let link = nl
            .link(&l.dev)
            .await?
            .ok_or_else(|| anyhow!("{file}: link[{i}].dev: no device named `{}` in this network namespace", l.dev))?;
        links.insert(l.dev.clone(), link);
    }
    Ok(links)
}

/// Neighbour MACs for a peer's paths: from the config, else from ARP.
pub async fn resolve_macs(nl: &Netlink, cfg: &Config, i: usize, links: &BTreeMap<String, Link>, file: &str) -> Result<Vec<[u8; 6]>> {
    let p = &cfg.peers[i];
    let mut v = Vec::new();
    for (j, pc) in p.paths.iter().enumerate() {
        let mac = match pc.mac {
            Some(m) => m.0,
            None => {
                let lc = cfg.link(&pc.link).expect("validated");
                resolve_mac(nl, &links[&pc.link], lc.address, pc.remote).await?.ok_or_else(|| {
                    anyhow!(
                        "{file}: peer[{i}].path[{j}].mac: no neighbour entry for {} on {} and ARP got no answer; set `mac`",
                        pc.remote,
                        pc.link
                    )
                })?
            }
        };
        v.push(mac);
    }
    Ok(v)
}

/// Put XDP receive program `rx` on link `link`, and `beside` (the fd of
/// `rx.beside`) on its TC ingress, whose clsact exists, in the order that
/// loses no frame: XDP decapsulates and a TC handoff delivers what it
/// tagged, so XDP first; where the kernel refuses XDP metadata, TC
/// decapsulates what XDP passes it, so TC first.
pub async fn set_xdp(nl: &Netlink, link: u32, rx: &RxXdp, beside: i32) -> Result<()> {
    let tc_first = rx.beside == PROG_RX_TC;
    if tc_first {
        nl.bpf_filter_add(link, false, beside, rx.beside).await?;
    }
    nl.xdp_set(link, rx.fd.as_fd().as_raw_fd(), XDP_FLAGS_DRV_MODE).await.with_context(|| format!("attaching {} to #{link}", rx.name))?;
    if !tc_first {
        nl.bpf_filter_add(link, false, beside, rx.beside).await?;
    }
    Ok(())
}

/// Attach a receive program to a link by the configured hook. Returns the
/// hook used and whether we added the clsact qdisc.
pub async fn attach_rx(nl: &Netlink, dp: &Datapath, link: &Link, rx: RxHook) -> Result<(u32, bool)> {
    let xdp = || async {
        let rx = dp.rx_xdp()?;
        let own = nl.clsact_add(link.index).await?;
        set_xdp(nl, link.index, &rx, dp.prog(rx.beside)?.as_fd().as_raw_fd()).await?;
        Ok::<_, anyhow::Error>(own)
    };
    let tc = || async {
        let own = nl.clsact_add(link.index).await?;
        nl.bpf_filter_add(link.index, false, dp.prog(PROG_RX_TC)?.as_fd().as_raw_fd(), PROG_RX_TC).await?;
        Ok::<_, anyhow::Error>(own)
    };
    match rx {
        RxHook::Xdp => {
            let own = xdp().await.map_err(|e| {
                anyhow!("rx = \"xdp\": {} does not take a native XDP program ({e:#}); use rx = \"tc\" or \"auto\"", link.name)
            })?;
            Ok((HOOK_XDP, own))
        }
        RxHook::Tc => Ok((HOOK_TC, tc().await?)),
        // On veth and other virtual devices XDP costs GRO (measured: the
        // demo's TCP stream reaches 0.19 of the link with XDP, 0.85 with
        // TC), so TC wins there. NICs with a native XDP driver take XDP.
        RxHook::Auto if netlink::is_virtual(link) => Ok((HOOK_TC, tc().await?)),
        RxHook::Auto => match xdp().await {
            Ok(own) => Ok((HOOK_XDP, own)),
            Err(e) => {
                tracing::info!("{}: no native XDP ({e}); receiving with TC", link.name);
                Ok((HOOK_TC, tc().await?))
            }
        },
    }
}

/// Start receiving on a link for tunnel `tun` (attaching unless another
/// tunnel already receives there). Returns the hook in use.
pub async fn add_link(nl: &Netlink, dp: &Datapath, tun: u32, lc: &LinkConfig, link: &Link) -> Result<&'static str> {
    let mut users = dp.link_users()?;
    let shared = entries(MAP_LINK_USERS, users.iter())?.into_iter().find(|(k, _)| k.link_ifindex == link.index && k.tunnel_ifindex != tun);
    let mut use_ = LinkUse { addr: addr16(lc.address), rx_cfg: hook_cfg(lc.rx), ..Default::default() };
    match shared {
        // Another tunnel receives on this link already: one program serves
        // both, told apart by key.
        Some((_, u)) => use_.hook = u.hook,
        None => {
            let (hook, own) = attach_rx(nl, dp, link, lc.rx).await?;
            use_.hook = hook;
            use_.own_clsact = own as u32;
        }
    }
    users.insert(LinkUseKey { link_ifindex: link.index, tunnel_ifindex: tun }, use_, 0)?;
    dp.local_addrs()?.insert(addr16(lc.address), LocalAddr { ifindex: link.index, mac: link.mac, _pad: [0; 2] }, 0)?;
    Ok(crate::datapath::codec::hook_name(use_.hook))
}

/// Stop receiving on a link for tunnel `tun`; detach when no tunnel is left.
pub async fn remove_link(nl: &Netlink, dp: &Datapath, tun: u32, link_ifindex: u32) -> Result<()> {
    let mut users = dp.link_users()?;
    let all: Vec<(LinkUseKey, LinkUse)> = entries(MAP_LINK_USERS, users.iter())?;
    let key = LinkUseKey { link_ifindex, tunnel_ifindex: tun };
    let Some((_, u)) = all.iter().find(|(k, _)| *k == key) else { return Ok(()) };
    users.remove(&key)?;
    if !all.iter().any(|(k, _)| k.link_ifindex == link_ifindex && k.tunnel_ifindex != tun) {
        detach_rx(nl, link_ifindex, u).await?;
    }
    if !all.iter().any(|(k, o)| *k != key && o.addr == u.addr) {
        let _ = dp.local_addrs()?.remove(&u.addr);
    }
    Ok(())
}
