//! Reading a `Status` back from the kernel: every map once, then each
//! tunnel, peer and path from that snapshot.

use gre_common::{PathFlags, PeerFlags, TunnelFlags};
use std::collections::{btree_map, BTreeMap};

use anyhow::{bail, Result};
use aya::maps::{Array, MapData, PerCpuArray, PerCpuHashMap};
use gre_common::{
    names::*, path_slot, DropReason, FdbEntry, FdbKey, FloodKey, FloodList, LinkUse, LinkUseKey, NeighEntry, NeighKey, NeighStats, PathMtu,
    PathStats, Peer, PeerAnnounce, PmtuEvent, ReorderStats, Slots, Tunnel, VlanMapKey, ANNOUNCE_GRE_SEQ, ANNOUNCE_IPID, ANNOUNCE_REPAIR,
    ANNOUNCE_UNNUMBERED, FDB_STATIC, LATE_DISPLACEMENT, MAX_FLOOD, NEIGH_REMOTE, VLAN_TO_KEY,
};
use ipnet::IpNet;

use super::status::*;
use crate::{
    config::{Origin, TunnelConfig, VlanConfig},
    datapath::{
        codec::{cstr, hook_name, ip16, keepalive_mode, tunnel_config},
        entries, Datapath,
    },
    net::netlink::Netlink,
};

/// The maps `status` reads, each read once.
struct Snapshot {
    peers: Vec<(u32, Peer)>,
    users: Vec<(LinkUseKey, LinkUse)>,
    routes: Vec<(u32, IpNet, u32)>,
    fdb: Vec<(FdbKey, FdbEntry)>,
    floods: Vec<(FloodKey, FloodList)>,
    vlans: Vec<(VlanMapKey, u32)>,
    neigh: Vec<(NeighKey, NeighEntry)>,
    stats: PerCpuArray<MapData, PathStats>,
    path_mtu: Array<MapData, PathMtu>,
    path_rtt: Array<MapData, u64>,
    reorder: PerCpuArray<MapData, ReorderStats>,
    announced: Array<MapData, PeerAnnounce>,
    neigh_stats: PerCpuHashMap<MapData, u32, NeighStats>,
    peer_names: BTreeMap<u32, String>,
    now: u64,
}

impl Snapshot {
    fn read(dp: &Datapath) -> Result<Snapshot> {
        let peers = entries(MAP_PEERS, dp.peers()?.iter())?;
        let peer_names = peers.iter().map(|(id, p)| (*id, cstr(&p.name))).collect();
        Ok(Snapshot {
            users: entries(MAP_LINK_USERS, dp.link_users()?.iter())?,
            routes: crate::control::state::all_routes(dp)?,
            fdb: entries(MAP_FDB, dp.fdb()?.iter())?,
            floods: entries(MAP_FLOOD, dp.flood()?.iter())?,
            vlans: entries(MAP_VLANS, dp.vlans()?.iter())?,
            neigh: entries(MAP_NEIGH, dp.neigh()?.iter())?,
            stats: dp.path_stats()?,
            path_mtu: dp.path_mtu()?,
            path_rtt: dp.path_rtt()?,
            reorder: dp.reorder()?,
            announced: dp.announced()?,
            neigh_stats: dp.neigh_stats()?,
            peers,
            peer_names,
            now: crate::net::sys::monotonic_ns(),
        })
    }

    fn peer_name(&self, id: &u32) -> String {
        self.peer_names.get(id).cloned().unwrap_or_else(|| format!("#{id}"))
    }
}

/// Link names and MTUs by index, asked of the kernel once per status.
struct Links<'a> {
    nl: &'a Netlink,
    names: BTreeMap<u32, String>,
    mtus: BTreeMap<u32, u32>,
}

impl Links<'_> {
    /// The name and MTU of link `idx` (MTU 0 when it is gone).
    async fn get(&mut self, idx: u32) -> Result<(String, u32)> {
        if let btree_map::Entry::Vacant(v) = self.mtus.entry(idx) {
            let l = self.nl.link_by_index(idx).await?;
            v.insert(l.as_ref().map_or(0, |l| l.mtu));
            if let Some(l) = l {
                self.names.entry(idx).or_insert(l.name);
            }
        }
        let name = self.names.get(&idx).cloned().unwrap_or_else(|| format!("#{idx} (gone)"));
        Ok((name, self.mtus[&idx]))
    }
}

/// The status of tunnel `name`, or of every tunnel in this namespace.
pub async fn collect(name: Option<&str>) -> Result<Status> {
    let Some(dp) = Datapath::find()? else {
        if let Some(n) = name {
            bail!("tunnel {n} is not up (no xgre datapath in this network namespace)");
        }
        return Ok(Status { tunnels: vec![], drops: BTreeMap::new(), pmtu_events: BTreeMap::new(), map_memory_bytes: 0, programs: vec![] });
    };
    let nl = Netlink::new()?;
    let snap = Snapshot::read(&dp)?;
    let mut links = Links { nl: &nl, names: BTreeMap::new(), mtus: BTreeMap::new() };
    let mut tunnels = Vec::new();
    for (tidx, t) in entries(MAP_TUNNELS, dp.tunnels()?.iter())? {
        if name.is_none_or(|n| n == cstr(&t.name)) {
            tunnels.push(tunnel_status(&snap, &mut links, tidx, &t).await?);
        }
    }
    if let Some(n) = name.filter(|_| tunnels.is_empty()) {
        bail!("tunnel {n} is not up");
    }
    let sum = |v: aya::maps::PerCpuValues<u64>| v.iter().sum::<u64>();
    let drops_map = dp.drops()?;
    let drops = DropReason::all().map(|r| (r.name(), drops_map.get(&(r as u32), 0).map_or(0, sum))).collect();
    let events_map = dp.pmtu_events()?;
    let pmtu_events = PmtuEvent::all().map(|e| (e.name(), events_map.get(&(e as u32), 0).map_or(0, sum))).collect();
    let programs = dp.programs().into_iter().map(|(name, id, verified_insns)| ProgramStatus { name, id, verified_insns }).collect();
    Ok(Status { tunnels, drops, pmtu_events, map_memory_bytes: dp.map_memory(), programs })
}

async fn tunnel_status(snap: &Snapshot, links: &mut Links<'_>, tidx: u32, t: &Tunnel) -> Result<TunnelStatus> {
    let tname = cstr(&t.name);
    let dev = links.nl.link_by_index(tidx).await?;
    let mut link_status = Vec::new();
    for (k, u) in snap.users.iter().filter(|(k, _)| k.tunnel_ifindex == tidx) {
        let l = links.nl.link_by_index(k.link_ifindex).await?;
        let dev = l.as_ref().map(|l| l.name.clone()).unwrap_or_else(|| format!("#{} (gone)", k.link_ifindex));
        links.names.insert(k.link_ifindex, dev.clone());
        link_status.push(LinkStatus { dev, address: ip16(u.addr), rx: hook_name(u.hook), present: l.is_some() });
    }
    let mut peers = Vec::new();
    for (_, p) in snap.peers.iter().filter(|(_, p)| p.tunnel_ifindex == tidx) {
        peers.push(peer_status(snap, links, t, p).await?);
    }
    peers.sort_by(|a, b| a.name.cmp(&b.name));
    let mut counters = Counters::default();
    for p in &peers {
        counters += p.counters;
    }
    let tc = tunnel_config(&tname, t, Vec::new());
    let mut vlans = Vec::new();
    let mut native_key = None;
    for (k, v) in snap.vlans.iter().filter(|(k, _)| k.tunnel_ifindex == tidx && k.dir == VLAN_TO_KEY) {
        match k.id {
            0 => native_key = Some(*v),
            vid => vlans.push(VlanConfig { vid: vid as u16, key: *v }),
        }
    }
    vlans.sort();
    let mut groups: Vec<GroupStatus> = snap
        .floods
        .iter()
        .filter(|(k, _)| k.tunnel_ifindex == tidx && k.group != [0; 16])
        .map(|(k, l)| GroupStatus {
            address: ip16(k.group),
            peers: l.peers[..(l.n as usize).min(MAX_FLOOD)].iter().map(|id| snap.peer_name(id)).collect(),
        })
        .collect();
    groups.sort_by_key(|g| g.address);
    Ok(TunnelStatus {
        neigh: tc.arp_suppress.then(|| neigh_status(snap, tidx, &tc)),
        fdb: fdb_status(snap, tidx, &tc),
        mesh: crate::mesh::status::read_status(&tname),
        run: crate::daemon::status::read(&tname),
        name: tname,
        ifindex: tidx,
        device_present: dev.is_some(),
        mode: tc.mode,
        key: tc.key,
        vsid: tc.vsid,
        vlans,
        native_key,
        groups,
        sequence: tc.sequence,
        ip_id_sequence: tc.ip_id_sequence,
        ip_id_sequence_auto: t.flags.intersects(TunnelFlags::IPID_SEQ_TX),
        checksum: tc.checksum,
        device_counters: tc.device_counters,
        mtu: dev.map(|d| d.mtu),
        links: link_status,
        peers,
        counters,
    })
}

async fn peer_status(snap: &Snapshot, links: &mut Links<'_>, t: &Tunnel, p: &Peer) -> Result<PeerStatus> {
    let mut paths = Vec::new();
    let mut counters = Counters::default();
    for j in 0..(p.npaths as usize).min(p.paths.len()) {
        let path = path_status(snap, links, p, j).await?;
        counters += path.counters;
        paths.push(path);
    }
    let routes = snap.routes.iter().filter(|(t, _, v)| *t == p.tunnel_ifindex && *v == p.id).map(|(_, n, _)| n.to_string()).collect();
    let announced = snap.announced.get(&p.id, 0).map_or(0, |a| a.in_force(snap.now));
    let announces = match (announced & ANNOUNCE_IPID != 0, announced & ANNOUNCE_GRE_SEQ != 0) {
        (true, true) => Some("ip id, gre seq"),
        (true, false) => Some("ip id"),
        (false, true) => Some("gre seq"),
        _ => None,
    };
    let reorder = (t.flags.intersects(TunnelFlags::NUMBERED) || announces.is_some()).then(|| {
        let mut r = Reorder { late_after: LATE_DISPLACEMENT, ..Default::default() };
        for s in snap.reorder.get(&p.id, 0).iter().flat_map(|v| v.iter()) {
            r.in_order += s.in_order;
            r.out_of_order += s.out_of_order;
            r.late += s.late;
            r.max_displacement = r.max_displacement.max(s.max_displacement);
        }
        r
    });
    Ok(PeerStatus {
        name: cstr(&p.name),
        id: p.id,
        routes,
        paths,
        counters,
        keepalive: keepalive_mode(p.paths[0].flags),
        reorder,
        announces,
        resends: announced & ANNOUNCE_REPAIR != 0,
        light: announced & ANNOUNCE_UNNUMBERED != 0,
        origin: if p.flags.intersects(PeerFlags::MESH) { Origin::Mesh } else { Origin::File },
    })
}

async fn path_status(snap: &Snapshot, links: &mut Links<'_>, p: &Peer, j: usize) -> Result<PathStatus> {
    let path = p.paths[j];
    let slot = path_slot(p.id, j as u32);
    let mut counters = Counters::default();
    for s in snap.stats.get(&slot, 0).iter().flat_map(|v| v.iter()) {
        counters += *s;
    }
    let (link, link_mtu) = links.get(path.ifindex).await?;
    let learnt = snap.path_mtu.get(&slot, 0).unwrap_or_default();
    Ok(PathStatus {
        link,
        local: ip16(path.local),
        remote: ip16(path.remote),
        mac: mac(path.dst_mac),
        weight: path.weight,
        rate_kbps: (path.rate_kbps != 0).then_some(path.rate_kbps),
        up: path.flags.intersects(PathFlags::UP),
        standby: path.flags.intersects(PathFlags::STANDBY),
        healthy: !path.flags.intersects(PathFlags::UNHEALTHY),
        pmtu: Pmtu::of(link_mtu, &learnt, snap.now),
        rtt_ms: snap.path_rtt.get(&slot, 0).ok().filter(|&ns| ns != 0).map(|ns| ns as f64 / 1e6),
        fastest: path.flags.intersects(PathFlags::FASTEST),
        slow: path.flags.intersects(PathFlags::SLOW),
        counters,
    })
}

/// A gretap tunnel's forwarding table, by MAC.
fn fdb_status(snap: &Snapshot, tidx: u32, tc: &TunnelConfig) -> Vec<FdbStatus> {
    let age = tc.fdb_age as f64;
    let mut macs: Vec<FdbStatus> = snap
        .fdb
        .iter()
        .filter(|(k, _)| k.tunnel_ifindex == tidx)
        .map(|(k, e)| {
            let fixed = e.seen_ns == FDB_STATIC;
            let age_s = if fixed { 0.0 } else { snap.now.saturating_sub(e.seen_ns) as f64 / 1e9 };
            FdbStatus { mac: mac(k.mac), peer: snap.peer_name(&e.peer_id), age_s, stale: !fixed && age_s > age, fixed, vid: k.vid }
        })
        .collect();
    macs.sort_by(|a, b| a.mac.cmp(&b.mac));
    macs
}

/// ARP/ND suppression's counters and its valid entries.
fn neigh_status(snap: &Snapshot, tidx: u32, tc: &TunnelConfig) -> NeighStatus {
    let mut n = NeighStatus::default();
    for s in snap.neigh_stats.get(&tidx, 0).iter().flat_map(|v| v.iter()) {
        n.arp_answered += s.arp_answered;
        n.nd_answered += s.nd_answered;
        n.kept_local += s.kept_local;
        n.flooded += s.flooded;
        n.learned += s.learned;
    }
    for (_, e) in snap.neigh.iter().filter(|(k, _)| k.tunnel_ifindex == tidx) {
        if e.seen_ns == FDB_STATIC {
            n.fixed += 1;
        } else if (snap.now.saturating_sub(e.seen_ns) as f64 / 1e9) > tc.fdb_age as f64 {
            continue;
        } else if e.flags & NEIGH_REMOTE != 0 {
            n.remote += 1;
        } else {
            n.local += 1;
        }
    }
    n
}

fn mac(m: [u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}
