//! A running tunnel as a config, and changes to it as config diffs.
//!
//! `show` reads the maps (and the devices) back into a `Config`. `apply`
//! takes the config a tunnel runs with and the one it should run with, and
//! changes only what differs, without reloading programs. `up`, `reload`
//! and `map-edit` all go through here, so every change is checked by the
//! same rules as a config file before anything is touched.

use gre_common::{PathFlags, PeerFlags, TunnelFlags};
use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use anyhow::{anyhow, bail, Context, Result};
use aya::maps::lpm_trie::Key;
use gre_common::{
    names::*, path_slot, FdbEntry, FdbKey, FloodKey, FloodList, LinkUse, LinkUseKey, PathStats, Peer, ReorderStats, Route4, Route6, RxKey,
    RxPath, Tunnel, FDB_STATIC, HOOK_TC, HOOK_XDP, MAX_FLOOD, MAX_PATHS, MAX_PEERS, VLAN_TO_KEY,
};
use ipnet::IpNet;

use crate::datapath::entries;
use crate::{
    config::{Config, GroupConfig, LinkConfig, Mac, NeighborConfig, Origin, PathConfig, PeerConfig, PeerRoutes, RxHook, VlanConfig},
    control::links,
    control::plan::{plan, Step},
    datapath::codec::{
        addr16, build_peer, cstr, hidden_mtu, in_rotation, ip16, keepalive_flags, keepalive_mode, neigh_entries, tunnel_config,
        tunnel_value, vlan_entries,
    },
    datapath::pairs,
    datapath::{self, remove_where, Datapath},
    net::netlink::{Link, Netlink},
};

/// What a tunnel is, as the loader needs to change it.
pub struct Running {
    pub ifindex: u32,
    pub tunnel: Tunnel,
    pub config: Config,
    /// Peer name -> id.
    pub ids: BTreeMap<String, u32>,
    /// Peer ids in use in the namespace (every tunnel's).
    pub used_ids: BTreeSet<u32>,
    /// The tunnel's links, looked up once.
    pub links: BTreeMap<String, Link>,
}

async fn link_name(nl: &Netlink, cache: &mut BTreeMap<u32, String>, idx: u32) -> Result<String> {
    if let Some(n) = cache.get(&idx) {
        return Ok(n.clone());
    }
    let n = nl.link_by_index(idx).await?.map(|l| l.name).unwrap_or_else(|| format!("#{idx}"));
    cache.insert(idx, n.clone());
    Ok(n)
}

/// Read tunnel `name` back as the config it runs with.
pub async fn show(dp: &Datapath, nl: &Netlink, name: &str) -> Result<Running> {
    let (tidx, t) = dp.tunnel_named(name)?.ok_or_else(|| anyhow!("tunnel {name} is not up"))?;
    let mut names: BTreeMap<u32, String> = BTreeMap::new();
    let mut links = Vec::new();
    let users: Vec<(LinkUseKey, LinkUse)> =
        entries(MAP_LINK_USERS, dp.link_users()?.iter())?.into_iter().filter(|(k, _)| k.tunnel_ifindex == tidx).collect();
    for (k, u) in &users {
        links.push(LinkConfig {
            dev: link_name(nl, &mut names, k.link_ifindex).await?,
            address: ip16(u.addr),
            rx: match u.rx_cfg {
                HOOK_XDP => RxHook::Xdp,
                HOOK_TC => RxHook::Tc,
                _ => RxHook::Auto,
            },
            // Not in the datapath: only `[mesh]` reads it, from the file.
            weight: 1,
            rate: None,
        });
    }
    let routes = all_routes(dp)?;
    let mut statics: BTreeMap<u32, Vec<Mac>> = BTreeMap::new();
    for (k, e) in entries(MAP_FDB, dp.fdb()?.iter())?.into_iter() {
        if k.tunnel_ifindex == tidx && e.seen_ns == FDB_STATIC {
            statics.entry(e.peer_id).or_default().push(Mac(k.mac));
        }
    }
    let mut peers = Vec::new();
    let mut ids = BTreeMap::new();
    let all_peers: Vec<(u32, Peer)> = entries(MAP_PEERS, dp.peers()?.iter())?.into_iter().collect();
    let used_ids = all_peers.iter().map(|(k, _)| *k).collect();
    for (id, p) in all_peers.into_iter().filter(|(_, p)| p.tunnel_ifindex == tidx) {
        let mut paths = Vec::new();
        for j in 0..p.npaths as usize {
            let path = p.paths[j];
            paths.push(PathConfig {
                link: link_name(nl, &mut names, path.ifindex).await?,
                remote: ip16(path.remote),
                mac: (path.flags.intersects(PathFlags::STATIC_MAC)).then_some(Mac(path.dst_mac)),
                // With rates, the weight is derived (`codec::build_peer`).
                weight: if path.rate_kbps != 0 { 1 } else { path.weight },
                rate: (path.rate_kbps != 0).then_some(crate::config::rate::Rate { kbps: path.rate_kbps }),
                up: !path.flags.intersects(PathFlags::ADMIN_DOWN),
                standby: path.flags.intersects(PathFlags::STANDBY),
            });
        }
        let mut proutes: Vec<IpNet> = routes.iter().filter(|(t, _, v)| *t == tidx && *v == id).map(|(_, n, _)| *n).collect();
        proutes.sort();
        let pname = cstr(&p.name);
        ids.insert(pname.clone(), id);
        let mut macs = statics.remove(&id).unwrap_or_default();
        macs.sort();
        let keepalive = keepalive_mode(p.paths[0].flags);
        let origin = if p.flags.intersects(PeerFlags::MESH) { Origin::Mesh } else { Origin::File };
        // Only a peer that said so was given a default route.
        let default_route = proutes.iter().any(|r| r.prefix_len() == 0);
        peers.push(PeerConfig { name: pname, routes: proutes, paths, macs, keepalive, default_route, origin });
    }
    peers.sort_by(|a, b| a.name.cmp(&b.name));
    let by_id: BTreeMap<u32, String> = ids.iter().map(|(n, i)| (*i, n.clone())).collect();
    let mut groups: Vec<GroupConfig> = entries(MAP_FLOOD, dp.flood()?.iter())?
        .into_iter()
        .filter(|(k, _)| k.tunnel_ifindex == tidx && k.group != [0; 16])
        .map(|(k, l)| GroupConfig {
            address: ip16(k.group),
            peers: l.peers[..(l.n as usize).min(MAX_FLOOD)].iter().filter_map(|i| by_id.get(i).cloned()).collect(),
        })
        .collect();
    groups.sort_by_key(|g| g.address);
    let mut address = nl.addresses(tidx).await?;
    address.sort();
    let mut tc = tunnel_config(name, &t, address);
    for (k, v) in entries(MAP_VLANS, dp.vlans()?.iter())?.into_iter().filter(|(k, _)| k.tunnel_ifindex == tidx && k.dir == VLAN_TO_KEY) {
        match k.id {
            0 => tc.native_key = Some(v),
            vid => tc.vlans.push(VlanConfig { vid: vid as u16, key: v }),
        }
    }
    tc.vlans.sort();
    for (k, e) in entries(MAP_NEIGH, dp.neigh()?.iter())?.into_iter().filter(|(k, e)| k.tunnel_ifindex == tidx && e.seen_ns == FDB_STATIC) {
        tc.neighbors.push(NeighborConfig { ip: ip16(k.addr), mac: Mac(e.mac), vid: k.vid });
    }
    tc.neighbors.sort();
    let config = Config { tunnel: tc, links, peers, groups, mesh: None };
    let links = links::resolve_links(nl, &config, name).await?;
    Ok(Running { ifindex: tidx, tunnel: t, config, ids, used_ids, links })
}

/// Every route in the datapath, both families: (tunnel ifindex, prefix,
/// peer id).
pub fn all_routes(dp: &Datapath) -> Result<Vec<(u32, IpNet, u32)>> {
    let mut out = Vec::new();
    for (k, id) in entries(MAP_ROUTES4, dp.routes4()?.iter())?.into_iter() {
        let d = k.data();
        let net = IpNet::new(IpAddr::V4(d.addr.into()), (k.prefix_len() - 32) as u8)?;
        out.push((u32::from_be_bytes(d.tunnel), net, id));
    }
    for (k, id) in entries(MAP_ROUTES6, dp.routes6()?.iter())?.into_iter() {
        let d = k.data();
        let net = IpNet::new(IpAddr::V6(d.addr.into()), (k.prefix_len() - 32) as u8)?;
        out.push((u32::from_be_bytes(d.tunnel), net, id));
    }
    Ok(out)
}

/// Route `r` of tunnel `tun` to peer `id`, or (None) remove it.
pub fn set_route(dp: &Datapath, tun: u32, r: &IpNet, id: Option<u32>) -> Result<()> {
    let tunnel = tun.to_be_bytes();
    let plen = 32 + r.prefix_len() as u32;
    match r {
        IpNet::V4(n) => lpm_set(dp, MAP_ROUTES4, Key::new(plen, Route4 { tunnel, addr: n.network().octets() }), id),
        IpNet::V6(n) => lpm_set(dp, MAP_ROUTES6, Key::new(plen, Route6 { tunnel, addr: n.network().octets() }), id),
    }
}

fn lpm_set<K: aya::Pod>(dp: &Datapath, map: &str, key: Key<K>, id: Option<u32>) -> Result<()> {
    let mut m = dp.lpm::<K>(map)?;
    match id {
        Some(id) => m.insert(&key, id, 0)?,
        // Already gone is what removal wanted.
        None => {
            let _ = m.remove(&key);
        }
    }
    Ok(())
}

/// Zero a peer id's counters and sequence state before it is used.
fn reset_peer_state(dp: &Datapath, id: u32) -> Result<()> {
    let ncpu = aya::util::nr_cpus().map_err(|(s, e)| anyhow!("{s}: {e}"))?;
    let mut stats = dp.path_stats()?;
    let mut seen = dp.path_seen()?;
    let mut rtt = dp.path_rtt()?;
    let mut bytes = dp.path_bytes()?;
    let mut mtu = dp.path_mtu()?;
    for j in 0..MAX_PATHS as u32 {
        mtu.set(path_slot(id, j), gre_common::PathMtu::default(), 0)?;
        stats.set(path_slot(id, j), aya::maps::PerCpuValues::try_from(vec![PathStats::default(); ncpu])?, 0)?;
        seen.set(path_slot(id, j), 0, 0)?;
        rtt.set(path_slot(id, j), 0, 0)?;
        bytes.set(path_slot(id, j), 0, 0)?;
    }
    dp.tx_seq()?.set(id, 0, 0)?;
    dp.rx_seq()?.set(id, 0, 0)?;
    dp.reorder()?.set(id, aya::maps::PerCpuValues::try_from(vec![ReorderStats::default(); ncpu])?, 0)?;
    Ok(())
}

/// The `n` lowest peer ids not in `used` (the namespace's, every tunnel's).
fn free_ids(used: &BTreeSet<u32>, n: usize) -> Result<Vec<u32>> {
    let free: Vec<u32> = (0..MAX_PEERS).filter(|i| !used.contains(i)).take(n).collect();
    if free.len() < n {
        bail!("more than {MAX_PEERS} peers in this namespace");
    }
    Ok(free)
}

/// Write a peer: receive paths first, then the peer value in one update,
/// then routes; so no packet is routed to a peer whose paths are missing.
#[allow(clippy::too_many_arguments)]
fn write_peer(
    dp: &Datapath,
    cfg: &Config,
    pc: &PeerConfig,
    id: u32,
    tun: u32,
    links: &BTreeMap<String, Link>,
    macs: &[[u8; 6]],
    old: Option<(&Config, &PeerConfig)>,
) -> Result<()> {
    let mut rx = dp.rx_paths()?;
    let mut keys = BTreeSet::new();
    for (j, path) in pc.paths.iter().enumerate() {
        let lc = cfg.link(&path.link).expect("validated");
        let key = RxKey { tunnel_ifindex: tun, remote: addr16(path.remote), local: addr16(lc.address) };
        keys.insert(key_bytes(&key));
        pairs::add_rx_path(dp, &mut rx, key, RxPath { peer_id: id, path: j as u32 })?;
    }
    let mut peer = build_peer(id, tun, cfg, pc, links, macs);
    // What `xgre run` found of each path stays: a path it judged unwell is
    // kept out of the rotation by this rewrite too, until `run` says well.
    let mut peers = dp.peers()?;
    let running = peers.get(&id, 0).ok();
    for j in 0..pc.paths.len() {
        let (ifindex, remote) = (peer.paths[j].ifindex, peer.paths[j].remote);
        let unwell = running.as_ref().is_some_and(|r| {
            r.paths[..(r.npaths as usize).min(MAX_PATHS)]
                .iter()
                .any(|q| q.ifindex == ifindex && q.remote == remote && q.flags.intersects(PathFlags::UNHEALTHY))
        });
        if unwell {
            peer.paths[j].flags |= PathFlags::UNHEALTHY;
        }
    }
    for (j, path) in pc.paths.iter().enumerate() {
        if path.mac.is_some() {
            peer.paths[j].flags |= PathFlags::STATIC_MAC;
        }
        if !path.up {
            peer.paths[j].flags = (peer.paths[j].flags & !PathFlags::UP) | PathFlags::ADMIN_DOWN;
        }
        if path.standby {
            peer.paths[j].flags |= PathFlags::STANDBY;
        }
        peer.paths[j].flags |= keepalive_flags(pc.keepalive);
    }
    // Backups start idle while a primary is in the rotation (`xgre run`
    // moves them in and out from there).
    let healthy: Vec<bool> =
        pc.paths.iter().enumerate().map(|(j, p)| p.up && !peer.paths[j].flags.intersects(PathFlags::UNHEALTHY)).collect();
    let standby: Vec<bool> = pc.paths.iter().map(|p| p.standby).collect();
    for (j, carry) in in_rotation(&healthy, &standby).into_iter().enumerate() {
        if !carry {
            peer.paths[j].flags &= !PathFlags::UP;
        }
    }
    // One update swaps the whole peer: the datapath sees the old path set
    // or the new one, never a mix.
    peers.insert(id, peer, 0)?;
    let mut fdb = dp.fdb()?;
    for m in &pc.macs {
        fdb.insert(FdbKey { tunnel_ifindex: tun, mac: m.0, vid: 0 }, FdbEntry { peer_id: id, _pad: 0, seen_ns: FDB_STATIC }, 0)?;
    }
    if let Some((_, old)) = old {
        for m in old.macs.iter().filter(|m| !pc.macs.contains(m)) {
            let _ = fdb.remove(&FdbKey { tunnel_ifindex: tun, mac: m.0, vid: 0 });
        }
    }
    for r in &pc.routes {
        set_route(dp, tun, r, Some(id))?;
    }
    if let Some((old_cfg, old)) = old {
        for r in old.routes.iter().filter(|r| !pc.routes.contains(r)) {
            set_route(dp, tun, r, None)?;
        }
        for path in &old.paths {
            let Some(lc) = old_link_addr(old_cfg, path) else { continue };
            let key = RxKey { tunnel_ifindex: tun, remote: addr16(path.remote), local: addr16(lc) };
            if !keys.contains(&key_bytes(&key)) {
                pairs::remove_rx_path(dp, &mut rx, &key)?;
            }
        }
    }
    Ok(())
}

fn old_link_addr(cfg: &Config, path: &PathConfig) -> Option<IpAddr> {
    cfg.link(&path.link).map(|l| l.address)
}

fn key_bytes(k: &RxKey) -> Vec<u8> {
    bytemuck::bytes_of(k).to_vec()
}

fn remove_peer(dp: &Datapath, cfg: &Config, pc: &PeerConfig, id: u32, tun: u32) -> Result<()> {
    for r in &pc.routes {
        set_route(dp, tun, r, None)?;
    }
    forget_macs(dp, tun, Some(id))?;
    dp.peers()?.remove(&id)?;
    let mut rx = dp.rx_paths()?;
    for path in &pc.paths {
        if let Some(a) = old_link_addr(cfg, path) {
            pairs::remove_rx_path(dp, &mut rx, &RxKey { tunnel_ifindex: tun, remote: addr16(path.remote), local: addr16(a) })?;
        }
    }
    Ok(())
}

/// Forget the MAC addresses tunnel `tun` learned (from peer `id` only,
/// when given): they would point at a peer that is gone.
pub fn forget_macs(dp: &Datapath, tun: u32, id: Option<u32>) -> Result<()> {
    remove_where(&mut dp.fdb()?, |k, e| k.tunnel_ifindex == tun && id.is_none_or(|i| e.peer_id == i))?;
    Ok(())
}

/// The replication lists of tunnel `tun` running `cfg` with peer `ids`: its default list (every peer,
/// the first `MAX_FLOOD` by name) and one per `[[group]]`.
pub fn sync_flood(dp: &Datapath, tun: u32, cfg: &Config, ids: &BTreeMap<String, u32>) -> Result<()> {
    let mut m = dp.flood()?;
    let list = |ids: &mut dyn Iterator<Item = u32>| {
        let mut l = FloodList::default();
        for id in ids.take(MAX_FLOOD) {
            l.peers[l.n as usize] = id;
            l.n += 1;
        }
        l
    };
    // Once per process: a mesh adds peers one at a time.
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if ids.len() > MAX_FLOOD && !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        tracing::warn!(
            "{}: multicast and broadcast reach the first {MAX_FLOOD} of {} peers by name; name the peers of a group in [[group]]",
            cfg.tunnel.name,
            ids.len()
        );
    }
    let want: BTreeMap<[u8; 16], FloodList> =
        cfg.groups.iter().map(|g| (addr16(g.address), list(&mut g.peers.iter().filter_map(|n| ids.get(n).copied())))).collect();
    remove_where(&mut m, |k, _| k.tunnel_ifindex == tun && k.group != [0; 16] && !want.contains_key(&k.group))?;
    for (group, l) in want {
        m.insert(FloodKey { tunnel_ifindex: tun, group }, l, 0)?;
    }
    m.insert(FloodKey { tunnel_ifindex: tun, group: [0; 16] }, list(&mut ids.values().copied()), 0)?;
    Ok(())
}

/// Refuse a config whose peer routes would take a prefix the host routes
/// already (its default route, a connected subnet, anything not xgre's on
/// tunnel `tun`), naming the field and the route, before anything changes.
pub async fn check_routes(nl: &Netlink, cfg: &Config, tun: u32, label: &str) -> Result<()> {
    let host = nl.host_routes(tun).await?;
    for (i, p) in cfg.peers.iter().enumerate() {
        let field = match p.origin {
            Origin::Mesh => format!("mesh host {}: routes", p.name),
            Origin::File => format!("peer[{i}].routes"),
        };
        refuse_taken(&host, p, &format!("{label}: {field}"))?;
    }
    Ok(())
}

fn refuse_taken(host: &BTreeMap<IpNet, String>, p: &PeerConfig, field: &str) -> Result<()> {
    for (j, r) in p.routes.iter().enumerate() {
        if let Some(theirs) = host.get(r) {
            bail!("{field}[{j}]: {r} would replace the host's route `{theirs}`; xgre never replaces a route it did not install");
        }
    }
    Ok(())
}

/// The tunnel's MTU for `cfg` over links whose smallest MTU is
/// `link_mtu`: the one set, if the links carry it with our headers, or the
/// largest they do.
pub fn tunnel_mtu(cfg: &Config, link_mtu: u32, label: &str) -> Result<u32> {
    let overhead = cfg.overhead();
    match cfg.tunnel.mtu {
        Some(m) if m + overhead > link_mtu => {
            bail!("{label}: tunnel.mtu: {m} plus {overhead} bytes of outer headers exceeds the {link_mtu}-byte MTU of the smallest link")
        }
        Some(m) => Ok(m),
        None => Ok(link_mtu.saturating_sub(overhead)),
    }
}

/// Change one peer, already validated against the others. Only that
/// peer's map entries and kernel routes are touched; a failure half way
/// puts them back.
pub async fn apply_peer(nl: &Netlink, dp: &Datapath, run: &mut Running, c: &PeerChange<'_>) -> Result<()> {
    match apply_peer_steps(nl, dp, run, c).await {
        Ok(()) => Ok(()),
        // The config is changed last, once every step has worked: on a
        // failure it is still what the tunnel was (no copy of 10,000 peers
        // per edit to have it).
        Err(e) => {
            let before = run.config.clone();
            Err(undone(e, roll_back(nl, dp, run, &before, c.label).await))
        }
    }
}

/// One peer to change.
pub struct PeerChange<'a> {
    pub name: &'a str,
    /// What it becomes; None removes it.
    pub new: Option<&'a PeerConfig>,
    /// The source, for errors (a file, an edit, an etcd key).
    pub label: &'a str,
    /// The host's routes, when the caller dumped them once for many
    /// changes (a mesh's snapshot); None: dumped here when needed.
    pub host: Option<&'a BTreeMap<IpNet, String>>,
}

async fn apply_peer_steps(nl: &Netlink, dp: &Datapath, run: &mut Running, c: &PeerChange<'_>) -> Result<()> {
    let PeerChange { name, new, label, host } = *c;
    let tun = run.ifindex;
    let pos = run.config.peers.iter().position(|p| p.name == name);
    let old = pos.map(|i| run.config.peers[i].clone());

    match (old.as_ref(), new) {
        (None, None) => bail!("{label}: peer `{name}` does not exist"),
        (Some(old), None) => {
            let id = run.ids.remove(name).expect("running peer has an id");
            for r in &old.routes {
                nl.del_route(*r, tun).await?;
            }
            remove_peer(dp, &run.config, old, id, tun)?;
            run.used_ids.remove(&id);
            run.config.peers.remove(pos.unwrap());
            sync_flood(dp, run.ifindex, &run.config, &run.ids)?;
        }
        (old, Some(p)) => {
            for path in &p.paths {
                if !run.links.contains_key(&path.link) {
                    let l = nl.link(&path.link).await?.ok_or_else(|| anyhow!("{label}: no device named `{}`", path.link))?;
                    run.links.insert(path.link.clone(), l);
                }
            }
            let one = Config { peers: vec![p.clone()], ..run.config.clone_without_peers() };
            // Only routes this change adds can take a prefix from the host (a
            // batch of weight edits costs no route dump).
            if p.routes.iter().any(|r| !old.is_some_and(|o| o.routes.contains(r))) {
                let field = format!("{label}: routes");
                match host {
                    Some(h) => refuse_taken(h, p, &field)?,
                    None => refuse_taken(&nl.host_routes(tun).await?, p, &field)?,
                }
            }
            let macs = links::resolve_macs(nl, &one, 0, &run.links, label).await?;
            let id = match run.ids.get(name) {
                Some(&id) => id,
                None => {
                    let id = free_ids(&run.used_ids, 1)?[0];
                    reset_peer_state(dp, id)?;
                    run.used_ids.insert(id);
                    run.ids.insert(name.to_string(), id);
                    id
                }
            };
            let have = &run.config;
            write_peer(dp, &one, p, id, tun, &run.links, &macs, old.map(|o| (have, o)))?;
            let cfg = &run.config;
            sync_routes(nl, tun, old.map(|o| cfg.peer_routes(o)).unwrap_or_default(), cfg.peer_routes(p)).await?;
            match pos {
                Some(i) => run.config.peers[i] = p.clone(),
                None => {
                    run.config.peers.push(p.clone());
                    sync_flood(dp, run.ifindex, &run.config, &run.ids)?;
                }
            }
        }
    }
    Ok(())
}

/// Bring a peer's kernel routes from `from` to `to`: add the new ones,
/// rewrite every one when the metric changed, remove the ones gone.
async fn sync_routes(nl: &Netlink, tun: u32, from: PeerRoutes<'_>, to: PeerRoutes<'_>) -> Result<()> {
    let same_metric = from.reordering == to.reordering;
    for r in to.routes.iter().filter(|r| !(same_metric && from.routes.contains(r))) {
        nl.add_route(*r, tun, to.reordering).await?;
    }
    for r in from.routes.iter().filter(|r| !to.routes.contains(r)) {
        nl.del_route(*r, tun).await?;
    }
    Ok(())
}

/// Record the running config's fingerprint, so `up` of the same config
/// (say, what `--save` wrote) is a no-op.
pub fn stamp(dp: &Datapath, run: &mut Running) -> Result<()> {
    let mut value = tunnel_value(&run.config, run.tunnel);
    // Numbering by default follows the config at `up` and `reload`, which
    // also set the device's segmentation to match: an edit's weights do
    // not switch it (a numbered tunnel must segment per packet).
    value.flags = (value.flags & !TunnelFlags::IPID_SEQ_TX) | (run.tunnel.flags & TunnelFlags::IPID_SEQ_TX);
    dp.tunnels()?.insert(run.ifindex, value, 0)?;
    run.tunnel = value;
    Ok(())
}

/// Add the peers of `cfg` to a tunnel that has none yet (`up`).
pub async fn add_peers(
    nl: &Netlink,
    dp: &Datapath,
    run: &mut Running,
    cfg: &Config,
    links: &BTreeMap<String, Link>,
    macs: &[Vec<[u8; 6]>],
) -> Result<()> {
    let fresh = free_ids(&run.used_ids, cfg.peers.len())?;
    for ((p, id), m) in cfg.peers.iter().zip(fresh).zip(macs) {
        reset_peer_state(dp, id)?;
        write_peer(dp, cfg, p, id, run.ifindex, links, m, None)?;
        run.used_ids.insert(id);
        run.ids.insert(p.name.clone(), id);
        sync_routes(nl, run.ifindex, PeerRoutes::default(), cfg.peer_routes(p)).await?;
    }
    run.config.peers = cfg.peers.clone();
    run.config.groups = cfg.groups.clone();
    sync_flood(dp, run.ifindex, &run.config, &run.ids)
}

/// `want` (a file) plus the mesh's peers of the running tunnel: a file
/// never names them, and `xgre run` alone adds and removes them.
fn with_mesh_peers(want: &Config, have: &Config, label: &str) -> Result<Config> {
    let mesh: Vec<&PeerConfig> = have.peers.iter().filter(|p| p.origin == Origin::Mesh).collect();
    if mesh.is_empty() {
        return Ok(want.clone());
    }
    let mut c = want.clone();
    for m in mesh {
        if let Some(i) = want.peers.iter().position(|p| p.name == m.name) {
            bail!("{label}: peer[{i}].name: `{}` is also the name of a mesh host (from etcd); rename the [[peer]]", m.name);
        }
        c.peers.push(m.clone());
    }
    c.validate(label)?;
    Ok(c)
}

/// Change tunnel `run` from the config it runs with to `want` (already
/// validated), touching only what differs, all or nothing: when a step
/// fails half way (an address or route the kernel refuses), what was done
/// is undone and the error says so. `label` names the source in errors
/// (a file, or the edit).
pub async fn apply(nl: &Netlink, dp: &Datapath, run: &mut Running, want: &Config, label: &str) -> Result<Vec<String>> {
    let before = run.config.clone();
    match apply_steps(nl, dp, run, want, label).await {
        Ok(done) => Ok(done),
        Err(e) => Err(undone(e, roll_back(nl, dp, run, &before, label).await)),
    }
}

/// The error of a change that failed, and whether undoing it worked.
pub fn undone(e: anyhow::Error, rolled_back: Result<()>) -> anyhow::Error {
    match rolled_back {
        Ok(()) => anyhow!("{e:#} (nothing was changed)"),
        Err(e2) => anyhow!("{e:#}; putting the tunnel back as it was failed too: {e2:#}"),
    }
}

/// Bring tunnel `run` back to `before` from wherever a failed change left
/// it: the state is read back from the maps and the kernel, and the
/// difference applied.
pub async fn roll_back(nl: &Netlink, dp: &Datapath, run: &mut Running, before: &Config, label: &str) -> Result<()> {
    let mut now = show(dp, nl, &before.tunnel.name).await?;
    // Mesh peers are added back from the running state by `apply_steps`.
    let mut file = before.clone();
    file.peers.retain(|p| p.origin == Origin::File);
    apply_steps(nl, dp, &mut now, &file, label).await?;
    *run = now;
    Ok(())
}

async fn apply_steps(nl: &Netlink, dp: &Datapath, run: &mut Running, want: &Config, label: &str) -> Result<Vec<String>> {
    let have = run.config.clone();
    let want = &with_mesh_peers(want, &have, label)?;
    let mut x = prepare(nl, dp, run, &have, want, label).await?;
    let mut done = Vec::new();
    for step in plan(&have, want, run.tunnel.flags.intersects(TunnelFlags::PER_PACKET)) {
        if let Some(line) = execute(&mut x, nl, dp, run, &have, want, &step, label).await? {
            done.push(line);
        }
    }
    run.config = want.clone();
    run.ids = x.ids;
    run.used_ids = entries(MAP_PEERS, dp.peers()?.keys())?.into_iter().collect();
    run.links = x.links;
    Ok(done)
}

/// What executing a plan needs, found before anything changes.
struct Prepared {
    links: BTreeMap<String, Link>,
    /// The MACs of each peer that is new or changed, by name.
    macs: BTreeMap<String, Vec<[u8; 6]>>,
    mtu: u32,
    ids: BTreeMap<String, u32>,
}

/// Everything that can refuse a change before anything changes: the name
/// and mode, the links, the MACs, the routes the host owns, the MTU and
/// key clashes with other tunnels.
async fn prepare(nl: &Netlink, dp: &Datapath, run: &Running, have: &Config, want: &Config, label: &str) -> Result<Prepared> {
    let tun = run.ifindex;
    if want.tunnel.name != have.tunnel.name {
        bail!("{label}: tunnel.name: {} is running; `{}` names another tunnel", have.tunnel.name, want.tunnel.name);
    }
    if want.tunnel.mode != have.tunnel.mode {
        bail!("{label}: tunnel.mode: the mode cannot change on a running tunnel; take it down and up");
    }
    let links = links::resolve_links(nl, want, label).await?;
    let mut macs = BTreeMap::new();
    for (i, p) in want.peers.iter().enumerate() {
        if have.peers.iter().find(|o| o.name == p.name) != Some(p) {
            macs.insert(p.name.clone(), links::resolve_macs(nl, want, i, &links, label).await?);
        }
    }
    check_routes(nl, want, tun, label).await?;
    let link_mtu = links.values().map(|l| l.mtu).min().unwrap_or(1500);
    let mtu = tunnel_mtu(want, link_mtu, label)?;
    let old_lookups = have.key_lookups();
    let by_key = dp.tunnel_by_key()?;
    for l in want.key_lookups().iter().filter(|l| !old_lookups.contains(l)) {
        if by_key.get(l, 0).is_ok_and(|other| other != tun) {
            let field = if want.is_trunk() { "tunnel.vlan" } else { "tunnel.key" };
            bail!("{label}: {field}: another tunnel of this namespace receives key {}", l.key);
        }
    }
    Ok(Prepared { links, macs, mtu, ids: run.ids.clone() })
}

/// Run one step of a plan; what it did, for the user.
#[allow(clippy::too_many_arguments)]
async fn execute(
    x: &mut Prepared,
    nl: &Netlink,
    dp: &Datapath,
    run: &mut Running,
    have: &Config,
    want: &Config,
    step: &Step<'_>,
    label: &str,
) -> Result<Option<String>> {
    let tun = run.ifindex;
    Ok(Some(match *step {
        Step::AttachLink { link, replaces } => {
            if replaces {
                links::remove_link(nl, dp, tun, x.links[&link.dev].index).await?;
            }
            let hook = links::add_link(nl, dp, tun, link, &x.links[&link.dev]).await?;
            format!("link {} ({hook})", link.dev)
        }
        Step::AddPeer(p) => {
            let id = free_ids(&run.used_ids, 1)?[0];
            run.used_ids.insert(id);
            reset_peer_state(dp, id)?;
            write_peer(dp, want, p, id, tun, &x.links, &x.macs[&p.name], None)?;
            x.ids.insert(p.name.clone(), id);
            sync_routes(nl, tun, PeerRoutes::default(), want.peer_routes(p)).await?;
            format!("peer {} added", p.name)
        }
        Step::ChangePeer { old, new } => {
            write_peer(dp, want, new, x.ids[&new.name], tun, &x.links, &x.macs[&new.name], Some((have, old)))?;
            sync_routes(nl, tun, have.peer_routes(old), want.peer_routes(new)).await?;
            format!("peer {} changed", new.name)
        }
        Step::Reroute { old, new } => {
            let to = want.peer_routes(new);
            sync_routes(nl, tun, have.peer_routes(old), to).await?;
            format!("peer {} routes: reordering {}", new.name, to.reordering.map_or("unset".into(), |n| n.to_string()))
        }
        Step::RemovePeer(old) => {
            let id = x.ids.remove(&old.name).expect("running peer has an id");
            for r in &old.routes {
                nl.del_route(*r, tun).await?;
            }
            remove_peer(dp, have, old, id, tun)?;
            format!("peer {} removed", old.name)
        }
        Step::DetachLink(dev) => {
            if let Some(l) = nl.link(dev).await? {
                links::remove_link(nl, dp, tun, l.index).await?;
            }
            format!("link {dev} removed")
        }
        Step::AddAddress { index, addr } => {
            nl.add_address(tun, addr).await.with_context(|| format!("{label}: tunnel.address[{index}]: {addr}"))?;
            return Ok(None);
        }
        Step::DelAddress(addr) => {
            nl.del_address(tun, addr).await?;
            return Ok(None);
        }
        Step::SetMtu => {
            nl.set_mtu(tun, x.mtu).await?;
            nl.set_mtu(run.tunnel.peer_ifindex, hidden_mtu(x.mtu)).await?;
            format!("mtu {}", x.mtu)
        }
        Step::SegmentPerPacket(on) => {
            crate::net::sys::set_tso(&want.tunnel.name, !on)?;
            return Ok(None);
        }
        Step::SetGsoMaxSegs(n) => {
            nl.set_gso_max_segs(tun, n).await?;
            return Ok(None);
        }
        Step::Tunnel { keys } => {
            write_tunnel(dp, run, have, want)?;
            if !keys {
                return Ok(None);
            }
            want.key_text()
        }
        Step::Neighbours => sync_neighbours(dp, tun, have, want)?,
        Step::ArpSuppress(on) => format!("arp_suppress {}", if on { "on" } else { "off" }),
        Step::Flood => {
            sync_flood(dp, tun, want, &x.ids)?;
            return Ok(None);
        }
    }))
}

/// Write the tunnel's entry, a trunk's VLAN and key tables around it:
/// new entries before the entry names them, old ones after.
fn write_tunnel(dp: &Datapath, run: &mut Running, have: &Config, want: &Config) -> Result<()> {
    let tun = run.ifindex;
    let (new_lookups, old_lookups) = (want.key_lookups(), have.key_lookups());
    let (new_vlans, old_vlans) = (vlan_entries(want, tun), vlan_entries(have, tun));
    let mut vlans = dp.vlans()?;
    let mut by_key = dp.tunnel_by_key()?;
    for (k, v) in new_vlans.iter().filter(|e| !old_vlans.contains(e)) {
        vlans.insert(k, v, 0)?;
    }
    for l in new_lookups.iter().filter(|l| !old_lookups.contains(l)) {
        by_key.insert(l, tun, 0)?;
    }
    let value = tunnel_value(want, run.tunnel);
    dp.tunnels()?.insert(tun, value, 0)?;
    run.tunnel = value;
    for l in old_lookups.iter().filter(|l| !new_lookups.contains(l)) {
        by_key.remove(l)?;
    }
    for (k, _) in old_vlans.iter().filter(|(k, _)| !new_vlans.iter().any(|(n, _)| n == k)) {
        vlans.remove(k)?;
    }
    Ok(())
}

/// The static neighbours (ARP/ND suppression) from `have`'s to `want`'s.
fn sync_neighbours(dp: &Datapath, tun: u32, have: &Config, want: &Config) -> Result<String> {
    let (new, old) = (neigh_entries(want, tun), neigh_entries(have, tun));
    let mut neigh = dp.neigh()?;
    for (k, v) in new.iter().filter(|e| !old.contains(e)) {
        neigh.insert(k, v, 0)?;
    }
    for (k, _) in old.iter().filter(|(k, _)| !new.iter().any(|(n, _)| n == k)) {
        datapath::removed(neigh.remove(k))?;
    }
    Ok(format!("{} static neighbours", new.len()))
}
