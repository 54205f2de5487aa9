//! `xgre status`: the running state read back from the kernel's maps, as a
//! table for people or JSON for scripts.

use std::{collections::BTreeMap, fmt::Write as _, net::IpAddr};

use anyhow::{bail, Result};
use gre_common::{
    path_slot, DropReason, FdbEntry, FdbKey, FloodKey, FloodList, LinkUse, LinkUseKey, NeighEntry, NeighKey, PathMtu, PathStats, Peer,
    PmtuEvent, Tunnel, VlanMapKey, ANNOUNCE_GRE_SEQ, ANNOUNCE_IPID, FDB_STATIC, LATE_DISPLACEMENT, MAX_FLOOD, NEIGH_REMOTE, PATH_STANDBY,
    PATH_UNHEALTHY, PATH_UP, PEER_MESH, TUN_IPID_SEQ_TX, TUN_NUMBERED, VLAN_TO_KEY,
};
use serde::Serialize;

use crate::datapath::entries;
use crate::{
    config::{Origin, VlanConfig},
    datapath::codec::{cstr, hook_name, ip16, keepalive_mode, tunnel_config},
    datapath::Datapath,
    mesh::status::{ConnState, MeshStatus},
    net::netlink::Netlink,
};
use gre_common::names::*;

/// Packets and bytes each way and keepalives, of a path, a peer or a
/// tunnel: the datapath's own per-path counters, summed.
pub type Counters = PathStats;

#[derive(Debug, Serialize)]
pub struct PathStatus {
    pub link: String,
    pub local: IpAddr,
    pub remote: IpAddr,
    pub mac: String,
    pub weight: u32,
    /// `rate` in kbit/s, if set (`weight` is then the derived share).
    pub rate_kbps: Option<u32>,
    pub up: bool,
    /// A backup path (`standby = true`).
    pub standby: bool,
    /// Whether `xgre run` finds the path well (its link up, keepalives
    /// coming back): a backup not in use is idle when healthy, dead when not.
    pub healthy: bool,
    /// The path MTU in force: learnt from an ICMP error, or the link's.
    pub pmtu: Pmtu,
    pub counters: Counters,
}

/// A path's MTU and where it came from.
#[derive(Debug, Serialize)]
pub struct Pmtu {
    /// Outer bytes the path carries.
    pub mtu: u32,
    pub source: PmtuSource,
    /// Who sent the ICMP error (source "icmp").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<IpAddr>,
    /// Seconds until it expires and the link's MTU is tried again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in_s: Option<u64>,
}

/// Where a path MTU came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PmtuSource {
    /// No ICMP error in force: the link's MTU.
    Link,
    /// Learnt from an ICMP "fragmentation needed" / "Packet Too Big".
    Icmp,
}

impl PmtuSource {
    pub fn name(self) -> &'static str {
        match self {
            PmtuSource::Link => "link",
            PmtuSource::Icmp => "icmp",
        }
    }
}

impl Pmtu {
    fn of(link_mtu: u32, e: &PathMtu, now: u64) -> Pmtu {
        match e.at(now) {
            Some(m) => Pmtu {
                mtu: m.min(link_mtu.max(1)),
                source: PmtuSource::Icmp,
                from: Some(ip16(e.from)),
                expires_in_s: Some((e.expires_ns - now) / 1_000_000_000),
            },
            None => Pmtu { mtu: link_mtu, source: PmtuSource::Link, from: None, expires_in_s: None },
        }
    }

    /// "pmtu 1400 (icmp from 198.18.2.1, 9m58s left)" or "pmtu 1500".
    pub fn describe(&self) -> String {
        match (self.from, self.expires_in_s) {
            (Some(f), Some(s)) => format!("pmtu {} (icmp from {f}, {}m{:02}s left)", self.mtu, s / 60, s % 60),
            _ => format!("pmtu {}", self.mtu),
        }
    }
}

#[derive(Debug, Serialize, Default)]
pub struct Reorder {
    pub in_order: u64,
    pub out_of_order: u64,
    /// Out of order by more than `late_after` packets.
    pub late: u64,
    pub late_after: u32,
    pub max_displacement: u64,
}

#[derive(Debug, Serialize)]
pub struct PeerStatus {
    pub name: String,
    pub id: u32,
    pub routes: Vec<String>,
    pub paths: Vec<PathStatus>,
    pub counters: Counters,
    /// How `xgre run` judges this peer by keepalives: "auto" (once it has
    /// answered one), "required" or "off".
    pub keepalive: &'static str,
    /// Receive-side reordering, measured from sequence numbers (tunnels
    /// with `sequence = true`, or a peer announcing its numbers).
    pub reorder: Option<Reorder>,
    /// How the peer says (with its keepalives) that it numbers its packets
    /// to us: "ip id", "gre seq", or nothing. Its numbered packets are
    /// resequenced under `xgre run` unless `resequence = 0`.
    pub announces: Option<&'static str>,
    /// "file" (the config file or `map-edit`) or "mesh" (etcd).
    pub origin: &'static str,
}

#[derive(Debug, Serialize)]
pub struct LinkStatus {
    pub dev: String,
    pub address: IpAddr,
    pub rx: &'static str,
    pub present: bool,
}

/// A learned MAC address (`gretap`).
#[derive(Debug, Serialize)]
pub struct FdbStatus {
    pub mac: String,
    pub peer: String,
    /// Seconds since a frame from it last arrived (refreshed at most once a
    /// second).
    pub age_s: f64,
    /// Older than the tunnel's aging time: frames to it are flooded.
    pub stale: bool,
    /// Placed by the config (`macs` of a peer): never ages.
    #[serde(rename = "static")]
    pub fixed: bool,
    /// Trunks: the VLAN it was learned in (0 otherwise).
    pub vid: u16,
}

/// ARP/ND suppression of one tunnel (`arp_suppress`).
#[derive(Debug, Default, Serialize)]
pub struct NeighStatus {
    /// ARP requests answered on this host instead of flooded.
    pub arp_answered: u64,
    /// Neighbour Solicitations answered on this host instead of flooded.
    pub nd_answered: u64,
    /// Requests for an address on this host's side, sent to no peer.
    pub kept_local: u64,
    /// Requests for unknown addresses, flooded.
    pub flooded: u64,
    /// Addresses learned or moved since the tunnel came up.
    pub learned: u64,
    /// Entries still valid: behind a peer (answered for), on this side,
    /// and static from the config.
    pub remote: usize,
    pub local: usize,
    #[serde(rename = "static")]
    pub fixed: usize,
}

/// Who a multicast group is replicated to (`gre` mode `[[group]]`).
#[derive(Debug, Serialize)]
pub struct GroupStatus {
    pub address: IpAddr,
    pub peers: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct TunnelStatus {
    pub name: String,
    pub ifindex: u32,
    pub device_present: bool,
    pub mode: &'static str,
    pub key: Option<u32>,
    /// NVGRE Virtual Subnet ID.
    pub vsid: Option<u32>,
    /// Trunks: VLAN ⇄ key pairs, and the key of untagged frames.
    pub vlans: Vec<VlanConfig>,
    pub native_key: Option<u32>,
    /// `gretap`: the learned forwarding table, by MAC.
    pub fdb: Vec<FdbStatus>,
    /// `arp_suppress`: what it did and knows.
    pub neigh: Option<NeighStatus>,
    pub groups: Vec<GroupStatus>,
    pub sequence: bool,
    /// Numbered in the outer IPv4 ID (`ip_id_sequence`).
    pub ip_id_sequence: bool,
    /// Numbered in the outer IPv4 ID without `ip_id_sequence`, because a
    /// peer stripes over unequal paths (`Config::auto_ip_id_sequence`).
    pub ip_id_sequence_auto: bool,
    pub checksum: bool,
    /// Whether `ip -s link` counts the tunnel's traffic.
    pub device_counters: bool,
    pub mtu: Option<u32>,
    pub links: Vec<LinkStatus>,
    pub peers: Vec<PeerStatus>,
    pub counters: Counters,
    /// `[mesh]`: the etcd connection as `xgre run` last saw it.
    pub mesh: Option<MeshStatus>,
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub tunnels: Vec<TunnelStatus>,
    /// Drops by reason, for the whole namespace: a malformed packet is
    /// dropped before it can be told which tunnel it meant.
    pub drops: BTreeMap<&'static str, u64>,
    /// Path MTU discovery and fragment events (`PmtuEvent`), for the whole
    /// namespace.
    pub pmtu_events: BTreeMap<&'static str, u64>,
    /// Kernel memory of the namespace's maps.
    pub map_memory_bytes: u64,
    /// The datapath's programs in the kernel, and what verifying each cost.
    pub programs: Vec<ProgramStatus>,
}

#[derive(Debug, Serialize)]
pub struct ProgramStatus {
    pub name: &'static str,
    pub id: u32,
    /// Instructions the verifier walked (`bpf_prog_info.verified_insns`),
    /// of its limit of 1,000,000.
    pub verified_insns: u32,
}

fn mac(m: [u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

pub async fn collect(name: Option<&str>) -> Result<Status> {
    let Some(dp) = Datapath::find()? else {
        if let Some(n) = name {
            bail!("tunnel {n} is not up (no xgre datapath in this network namespace)");
        }
        return Ok(Status { tunnels: vec![], drops: BTreeMap::new(), pmtu_events: BTreeMap::new(), map_memory_bytes: 0, programs: vec![] });
    };
    let nl = Netlink::new()?;
    let tunnels: Vec<(u32, Tunnel)> = entries(MAP_TUNNELS, dp.tunnels()?.iter())?.into_iter().collect();
    let peers: Vec<(u32, Peer)> = entries(MAP_PEERS, dp.peers()?.iter())?.into_iter().collect();
    let users: Vec<(LinkUseKey, LinkUse)> = entries(MAP_LINK_USERS, dp.link_users()?.iter())?.into_iter().collect();
    let routes = crate::control::state::all_routes(&dp)?;
    let stats = dp.path_stats()?;
    let path_mtu = dp.path_mtu()?;
    let reorder_map = dp.reorder()?;
    let announced_map = dp.announced()?;
    let fdb: Vec<(FdbKey, FdbEntry)> = entries(MAP_FDB, dp.fdb()?.iter())?.into_iter().collect();
    let floods: Vec<(FloodKey, FloodList)> = entries(MAP_FLOOD, dp.flood()?.iter())?.into_iter().collect();
    let vlan_map: Vec<(VlanMapKey, u32)> = entries(MAP_VLANS, dp.vlans()?.iter())?.into_iter().collect();
    let neigh: Vec<(NeighKey, NeighEntry)> = entries(MAP_NEIGH, dp.neigh()?.iter())?.into_iter().collect();
    let neigh_stats = dp.neigh_stats()?;
    let peer_names: BTreeMap<u32, String> = peers.iter().map(|(id, p)| (*id, cstr(&p.name))).collect();
    let now = crate::net::sys::monotonic_ns();

    let mut link_names = BTreeMap::new();
    let mut link_mtus: BTreeMap<u32, u32> = BTreeMap::new();
    let mut out = Vec::new();
    for (tidx, t) in &tunnels {
        let tname = cstr(&t.name);
        if name.is_some_and(|n| n != tname) {
            continue;
        }
        let dev = nl.link_by_index(*tidx).await?;
        let mut links = Vec::new();
        for (k, u) in users.iter().filter(|(k, _)| k.tunnel_ifindex == *tidx) {
            let l = nl.link_by_index(k.link_ifindex).await?;
            let dev = l.as_ref().map(|l| l.name.clone()).unwrap_or_else(|| format!("#{} (gone)", k.link_ifindex));
            link_names.insert(k.link_ifindex, dev.clone());
            links.push(LinkStatus { dev, address: ip16(u.addr), rx: hook_name(u.hook), present: l.is_some() });
        }
        let mut ps = Vec::new();
        let mut tcount = Counters::default();
        for (_, p) in peers.iter().filter(|(_, p)| p.tunnel_ifindex == *tidx) {
            let mut pcount = Counters::default();
            let mut paths = Vec::new();
            for j in 0..p.npaths as usize {
                let path = p.paths[j];
                let mut c = Counters::default();
                if let Ok(v) = stats.get(&path_slot(p.id, j as u32), 0) {
                    for s in v.iter() {
                        c += *s;
                    }
                }
                pcount += c;
                if let std::collections::btree_map::Entry::Vacant(v) = link_mtus.entry(path.ifindex) {
                    let l = nl.link_by_index(path.ifindex).await?;
                    v.insert(l.as_ref().map_or(0, |l| l.mtu));
                    if let Some(l) = l {
                        link_names.entry(path.ifindex).or_insert(l.name);
                    }
                }
                let link = link_names.get(&path.ifindex).cloned().unwrap_or_else(|| format!("#{} (gone)", path.ifindex));
                let learnt = path_mtu.get(&path_slot(p.id, j as u32), 0).unwrap_or_default();
                let pmtu = Pmtu::of(link_mtus[&path.ifindex], &learnt, now);
                paths.push(PathStatus {
                    link,
                    local: ip16(path.local),
                    remote: ip16(path.remote),
                    mac: mac(path.dst_mac),
                    weight: path.weight,
                    rate_kbps: (path.rate_kbps != 0).then_some(path.rate_kbps),
                    up: path.flags & PATH_UP != 0,
                    standby: path.flags & PATH_STANDBY != 0,
                    healthy: path.flags & PATH_UNHEALTHY == 0,
                    pmtu,
                    counters: c,
                });
            }
            let proutes = routes.iter().filter(|(t, _, v)| t == tidx && *v == p.id).map(|(_, n, _)| n.to_string()).collect();
            tcount += pcount;
            let announced = announced_map.get(&p.id, 0).map_or(0, |a| a.in_force(now));
            let announces = match (announced & ANNOUNCE_IPID != 0, announced & ANNOUNCE_GRE_SEQ != 0) {
                (true, true) => Some("ip id, gre seq"),
                (true, false) => Some("ip id"),
                (false, true) => Some("gre seq"),
                _ => None,
            };
            let reorder = (t.flags & TUN_NUMBERED != 0 || announces.is_some()).then(|| {
                let mut r = Reorder { late_after: LATE_DISPLACEMENT, ..Default::default() };
                if let Ok(v) = reorder_map.get(&p.id, 0) {
                    for s in v.iter() {
                        r.in_order += s.in_order;
                        r.out_of_order += s.out_of_order;
                        r.late += s.late;
                        r.max_displacement = r.max_displacement.max(s.max_displacement);
                    }
                }
                r
            });
            let keepalive = keepalive_mode(p.paths[0].flags).as_str();
            let origin = if p.flags & PEER_MESH != 0 { Origin::Mesh } else { Origin::File }.as_str();
            ps.push(PeerStatus {
                name: cstr(&p.name),
                id: p.id,
                routes: proutes,
                paths,
                counters: pcount,
                keepalive,
                reorder,
                announces,
                origin,
            });
        }
        ps.sort_by(|a, b| a.name.cmp(&b.name));
        let tc = tunnel_config(&tname, t, Vec::new());
        let mut vlans = Vec::new();
        let mut native_key = None;
        for (k, v) in vlan_map.iter().filter(|(k, _)| k.tunnel_ifindex == *tidx && k.dir == VLAN_TO_KEY) {
            match k.id {
                0 => native_key = Some(*v),
                vid => vlans.push(VlanConfig { vid: vid as u16, key: *v }),
            }
        }
        vlans.sort();
        let age = tc.fdb_age as f64;
        let name_of = |id: &u32| peer_names.get(id).cloned().unwrap_or_else(|| format!("#{id}"));
        let mut macs: Vec<FdbStatus> = fdb
            .iter()
            .filter(|(k, _)| k.tunnel_ifindex == *tidx)
            .map(|(k, e)| {
                let fixed = e.seen_ns == FDB_STATIC;
                let age_s = if fixed { 0.0 } else { now.saturating_sub(e.seen_ns) as f64 / 1e9 };
                FdbStatus { mac: mac(k.mac), peer: name_of(&e.peer_id), age_s, stale: !fixed && age_s > age, fixed, vid: k.vid }
            })
            .collect();
        macs.sort_by(|a, b| a.mac.cmp(&b.mac));
        let mut groups: Vec<GroupStatus> = floods
            .iter()
            .filter(|(k, _)| k.tunnel_ifindex == *tidx && k.group != [0; 16])
            .map(|(k, l)| GroupStatus {
                address: ip16(k.group),
                peers: l.peers[..(l.n as usize).min(MAX_FLOOD)].iter().map(name_of).collect(),
            })
            .collect();
        groups.sort_by_key(|g| g.address);
        let neigh_status = tc.arp_suppress.then(|| {
            let mut n = NeighStatus::default();
            if let Ok(per_cpu) = neigh_stats.get(tidx, 0) {
                for s in per_cpu.iter() {
                    n.arp_answered += s.arp_answered;
                    n.nd_answered += s.nd_answered;
                    n.kept_local += s.kept_local;
                    n.flooded += s.flooded;
                    n.learned += s.learned;
                }
            }
            for (_, e) in neigh.iter().filter(|(k, _)| k.tunnel_ifindex == *tidx) {
                if e.seen_ns == FDB_STATIC {
                    n.fixed += 1;
                } else if (now.saturating_sub(e.seen_ns) as f64 / 1e9) > age {
                    continue;
                } else if e.flags & NEIGH_REMOTE != 0 {
                    n.remote += 1;
                } else {
                    n.local += 1;
                }
            }
            n
        });
        out.push(TunnelStatus {
            neigh: neigh_status,
            mesh: crate::mesh::status::read_status(&tname),
            name: tname,
            ifindex: *tidx,
            device_present: dev.is_some(),
            mode: tc.mode.as_str(),
            key: tc.key,
            vsid: tc.vsid,
            vlans,
            native_key,
            fdb: macs,
            groups,
            sequence: tc.sequence,
            ip_id_sequence: tc.ip_id_sequence,
            ip_id_sequence_auto: t.flags & TUN_IPID_SEQ_TX != 0,
            checksum: tc.checksum,
            device_counters: tc.device_counters,
            mtu: dev.map(|d| d.mtu),
            links,
            peers: ps,
            counters: tcount,
        });
    }
    if let Some(n) = name {
        if out.is_empty() {
            bail!("tunnel {n} is not up");
        }
    }
    let drops_map = dp.drops()?;
    let mut drops = BTreeMap::new();
    for r in DropReason::all() {
        let v: u64 = drops_map.get(&(r as u32), 0).map(|v| v.iter().sum()).unwrap_or(0);
        drops.insert(r.name(), v);
    }
    let programs = dp.programs().into_iter().map(|(name, id, verified_insns)| ProgramStatus { name, id, verified_insns }).collect();
    let events_map = dp.pmtu_events()?;
    let pmtu_events = PmtuEvent::all().map(|e| (e.name(), events_map.get(&(e as u32), 0).map(|v| v.iter().sum()).unwrap_or(0))).collect();
    Ok(Status { tunnels: out, drops, pmtu_events, map_memory_bytes: dp.map_memory(), programs })
}

/// One line on the mesh connection: readable at a glance, the problem
/// first when there is one.
fn mesh_line(m: &MeshStatus) -> String {
    let ago = crate::mesh::status::unix_now().saturating_sub(m.since_unix);
    let state = match (m.running, m.state) {
        (false, _) => "NOT WATCHING (no `xgre run`; peers as last known)".to_string(),
        (true, ConnState::Connected) => format!("connected for {ago} s"),
        (true, ConnState::Connecting) => "connecting".to_string(),
        (true, ConnState::Unreachable) => {
            format!("ETCD UNREACHABLE for {ago} s, forwarding with the last known peers ({})", m.error.as_deref().unwrap_or("-"))
        }
    };
    format!(
        "mesh    host {} in {} via {}: {state}; {} host(s) at revision {}{}",
        m.host,
        m.prefix,
        m.etcd.join(","),
        m.hosts,
        m.revision,
        if m.refused.is_empty() { String::new() } else { format!(", {} entry(ies) refused", m.refused.len()) }
    )
}

pub fn human_bytes(b: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

pub fn render(s: &Status) -> String {
    let mut o = String::new();
    if s.tunnels.is_empty() {
        o.push_str("no xgre tunnels in this network namespace\n");
    }
    for t in &s.tunnels {
        let mut opts = vec![format!("mode {}", t.mode)];
        if let Some(k) = t.key {
            opts.push(format!("key {k}"));
        }
        if let Some(v) = t.vsid {
            opts.push(format!("nvgre vsid {v}"));
        }
        if t.sequence {
            opts.push("seq".into());
        }
        if t.ip_id_sequence {
            opts.push("seq in ip id".into());
        }
        if t.ip_id_sequence_auto {
            opts.push("seq in ip id (unequal paths)".into());
        }
        if t.checksum {
            opts.push("csum".into());
        }
        if let Some(m) = t.mtu {
            opts.push(format!("mtu {m}"));
        }
        if !t.device_counters {
            opts.push("no device counters".into());
        }
        let state = if t.device_present { "up" } else { "DEVICE MISSING" };
        let _ = writeln!(o, "tunnel {}  [{}]  {}", t.name, state, opts.join("  "));
        let _ = writeln!(
            o,
            "  total   tx {:>10} pkts {:>10}   rx {:>10} pkts {:>10}",
            t.counters.tx_packets,
            human_bytes(t.counters.tx_bytes),
            t.counters.rx_packets,
            human_bytes(t.counters.rx_bytes)
        );
        if let Some(m) = &t.mesh {
            let _ = writeln!(o, "  {}", mesh_line(m));
            for (k, why) in &m.refused {
                let _ = writeln!(o, "    refused {k}: {why}");
            }
        }
        let _ = writeln!(o, "  links");
        for l in &t.links {
            let _ = writeln!(o, "    {:<15} {:<16} rx {:<4}{}", l.dev, l.address, l.rx, if l.present { "" } else { "  (device gone)" });
        }
        if !t.groups.is_empty() {
            let _ = writeln!(o, "  groups");
            for g in &t.groups {
                let _ = writeln!(o, "    {:<20} -> {}", g.address, g.peers.join(", "));
            }
        }
        if !t.vlans.is_empty() {
            let pairs: Vec<String> = t.vlans.iter().map(|v| format!("{} -> key {}", v.vid, v.key)).collect();
            let untagged = t.native_key.map(|k| format!("key {k}")).unwrap_or_else(|| "dropped".into());
            let _ = writeln!(o, "  trunk   vlan {}; untagged -> {untagged}", pairs.join(", "));
        }
        if t.mode == "gretap" {
            let fresh = t.fdb.iter().filter(|e| !e.stale).count();
            let _ = writeln!(o, "  learned MACs: {fresh} ({} stale)", t.fdb.len() - fresh);
            if let Some(n) = &t.neigh {
                let _ = writeln!(
                    o,
                    "  arp     suppressed {} ({} ARP, {} ND answered; {} kept local); flooded {} unknown; knows {} behind peers, {} here, {} static",
                    n.arp_answered + n.nd_answered + n.kept_local,
                    n.arp_answered,
                    n.nd_answered,
                    n.kept_local,
                    n.flooded,
                    n.remote,
                    n.local,
                    n.fixed
                );
            }
            for e in t.fdb.iter().filter(|e| !e.stale).take(16) {
                let when = if e.fixed { "static".to_string() } else { format!("{:.1} s ago", e.age_s) };
                let vlan = if e.vid != 0 { format!("  vlan {}", e.vid) } else { String::new() };
                let _ = writeln!(o, "    {}  via {:<12} {:>12}{vlan}", e.mac, e.peer, when);
            }
            if fresh > 16 {
                let _ = writeln!(o, "    ... {} more (status --json lists all)", fresh - 16);
            }
        }
        let _ = writeln!(o, "  peers");
        for p in &t.peers {
            // A peer in auto mode that never answered is not judged by
            // keepalives (a gretap or Open vSwitch endpoint cannot reflect
            // them): say so, or its "ka 0" reads like a failure.
            let ka = match p.keepalive {
                "auto" if p.counters.keepalive_replies == 0 => "keepalive auto (never answered: judged by link state only)",
                "auto" => "keepalive auto",
                "required" => "keepalive required",
                _ => "keepalive off",
            };
            let routes = if p.routes.is_empty() { "-".into() } else { p.routes.join(", ") };
            let from = if p.origin == "mesh" { "  (mesh)" } else { "" };
            let numbers = p.announces.map(|a| format!("  numbers its packets ({a})")).unwrap_or_default();
            let _ = writeln!(o, "    {}{from}  routes {routes}  {ka}{numbers}", p.name);
            if let Some(r) = &p.reorder {
                let total = (r.in_order + r.out_of_order).max(1);
                let _ = writeln!(
                    o,
                    "      reorder: {} of {} out of order ({:.2}%), largest displacement {}, late (>{}) {}",
                    r.out_of_order,
                    r.in_order + r.out_of_order,
                    100.0 * r.out_of_order as f64 / total as f64,
                    r.max_displacement,
                    r.late_after,
                    r.late
                );
            }
            for (j, path) in p.paths.iter().enumerate() {
                let _ = writeln!(
                    o,
                    "      path {j} {:<10} {} -> {:<15} {:<8} {:<12} tx {:>9} pkts {:>10}  rx {:>9} pkts {:>10}  ka {}  {}",
                    path.link,
                    path.local,
                    path.remote,
                    match path.rate_kbps {
                        Some(k) => crate::config::rate::Rate { kbps: k }.to_string(),
                        None => format!("w{}", path.weight),
                    },
                    match (path.up, path.standby, path.healthy) {
                        (true, false, _) => "up",
                        (true, true, _) => "up standby",
                        (false, false, _) => "DOWN",
                        (false, true, true) => "standby idle",
                        (false, true, false) => "standby DOWN",
                    },
                    path.counters.tx_packets,
                    human_bytes(path.counters.tx_bytes),
                    path.counters.rx_packets,
                    human_bytes(path.counters.rx_bytes),
                    path.counters.keepalive_replies,
                    path.pmtu.describe()
                );
            }
        }
    }
    let nonzero: Vec<String> = s.drops.iter().filter(|(_, &v)| v > 0).map(|(k, v)| format!("{k} {v}")).collect();
    if !s.tunnels.is_empty() {
        let _ = writeln!(o, "drops   {}", if nonzero.is_empty() { "none".into() } else { nonzero.join(", ") });
        let events: Vec<String> = s.pmtu_events.iter().filter(|(_, &v)| v > 0).map(|(k, v)| format!("{k} {v}")).collect();
        if !events.is_empty() {
            let _ = writeln!(o, "pmtu    {}", events.join(", "));
        }
        let _ = writeln!(o, "maps    {} of kernel memory", human_bytes(s.map_memory_bytes));
        if let Some(p) = s.programs.iter().max_by_key(|p| p.verified_insns) {
            let _ = writeln!(
                o,
                "progs   {} loaded; the costliest to verify, {}, took {} instructions ({:.1}% of the verifier's limit)",
                s.programs.len(),
                p.name,
                p.verified_insns,
                p.verified_insns as f64 / 1e4
            );
        }
    }
    o
}

/// `xgre status --watch`: one screen of rates per peer and path since the
/// previous sample, plus drops and reordering.
pub fn render_watch(prev: &Status, cur: &Status, secs: f64) -> String {
    let mut o = String::new();
    let rate = |now: u64, then: u64| (now.saturating_sub(then)) as f64 / secs.max(1e-3);
    let find_path = |t: &str, p: &str, j: usize| -> Option<Counters> {
        prev.tunnels.iter().find(|x| x.name == t)?.peers.iter().find(|x| x.name == p)?.paths.get(j).map(|x| x.counters)
    };
    for t in &cur.tunnels {
        let _ = writeln!(o, "tunnel {}  {}", t.name, if t.device_present { "up" } else { "DEVICE MISSING" });
        let _ = writeln!(
            o,
            "  {:<16} {:<6} {:<22} {:>11} {:>9} {:>11} {:>9}",
            "peer", "path", "link -> remote", "tx Mbit/s", "tx pps", "rx Mbit/s", "rx pps"
        );
        for p in &t.peers {
            for (j, path) in p.paths.iter().enumerate() {
                let before = find_path(&t.name, &p.name, j).unwrap_or_default();
                let c = path.counters;
                let _ = writeln!(
                    o,
                    "  {:<16} {:<6} {:<22} {:>11.1} {:>9.0} {:>11.1} {:>9.0}",
                    if j == 0 { p.name.as_str() } else { "" },
                    format!("{j}{}", if path.up { "" } else { " DOWN" }),
                    format!("{} -> {}", path.link, path.remote),
                    rate(c.tx_bytes, before.tx_bytes) * 8.0 / 1e6,
                    rate(c.tx_packets, before.tx_packets),
                    rate(c.rx_bytes, before.rx_bytes) * 8.0 / 1e6,
                    rate(c.rx_packets, before.rx_packets),
                );
            }
            if let Some(r) = &p.reorder {
                let _ = writeln!(
                    o,
                    "  {:<16} reorder: {} out of order, largest displacement {}, late {}",
                    "", r.out_of_order, r.max_displacement, r.late
                );
            }
        }
    }
    let drops: Vec<String> = cur
        .drops
        .iter()
        .map(|(k, v)| (k, v.saturating_sub(*prev.drops.get(k).unwrap_or(&0)), v))
        .filter(|(_, d, total)| *d > 0 || **total > 0)
        .map(|(k, d, total)| format!("{k} {total} (+{d})"))
        .collect();
    let _ = writeln!(o, "drops   {}", if drops.is_empty() { "none".into() } else { drops.join(", ") });
    o
}
