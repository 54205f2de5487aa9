//! `status` as text: a screen readable at a glance, and `--watch`'s rates.

use std::fmt::Write as _;

use super::status::*;
use crate::{
    config::{KeepaliveMode, Mode, Origin},
    daemon::status::RunStatus,
    mesh::status::{ConnState, MeshStatus},
};

/// What `xgre run` resequenced and repaired since it started, a line each.
fn run_lines(r: &RunStatus) -> Vec<String> {
    let mut v = Vec::new();
    if let Some(w) = &r.resequencer {
        let asked = match w.asked {
            0 => String::new(),
            n => format!("; asked peers for {n} again, {} came in time", w.repaired),
        };
        v.push(format!("reseq   {} in order, {} held for a gap, {} given up on, {} late{asked}", w.in_order, w.held, w.skipped, w.late));
    }
    if let Some(p) = r.repair.filter(|p| r.keeping || p.kept > 0 || p.reported > 0) {
        let now = if r.keeping { "keeping what it sends" } else { "not keeping now" };
        let reported = match p.reported {
            0 => String::new(),
            n => format!(" ({n} of them lost before anything was kept)"),
        };
        let missed = match p.missed {
            0 => String::new(),
            n => format!(" ({n} missed: its copy's buffer was full)"),
        };
        v.push(format!("repair  {now}: kept {}{missed}, peers asked for {}{reported}, sent {} again", p.kept, p.asked, p.resent));
    }
    v
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
    // Where the kernel refused XDP metadata, XDP receive leaves TC the
    // decapsulating: say so on every XDP link.
    let xdp_nm = s.programs.iter().any(|p| p.name == gre_common::names::PROG_RX_XDP_NM);
    for t in &s.tunnels {
        render_tunnel(&mut o, t, xdp_nm);
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

/// A tunnel's header, links, groups, trunk and peers.
fn render_tunnel(o: &mut String, t: &TunnelStatus, xdp_nm: bool) {
    let mut opts = vec![format!("mode {}", t.mode.as_str())];
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
        opts.push("seq in ip id (auto)".into());
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
    if let Some(r) = t.run.as_ref().filter(|r| r.running) {
        for line in run_lines(r) {
            let _ = writeln!(o, "  {line}");
        }
    }
    let _ = writeln!(o, "  links");
    for l in &t.links {
        let gone = if l.present { "" } else { "  (device gone)" };
        let nm = if xdp_nm && l.rx == "xdp" { "  (this kernel gives XDP no metadata: TC decapsulates)" } else { "" };
        let _ = writeln!(o, "    {:<15} {:<16} rx {:<4}{gone}{nm}", l.dev, l.address, l.rx);
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
    if t.mode == Mode::Gretap {
        render_bridge(o, t);
    }
    let _ = writeln!(o, "  peers");
    for p in &t.peers {
        render_peer(o, p);
    }
}

/// A gretap tunnel's learned MACs and ARP/ND suppression.
fn render_bridge(o: &mut String, t: &TunnelStatus) {
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

/// A peer's line, its reordering and one line per path.
fn render_peer(o: &mut String, p: &PeerStatus) {
    // A peer in auto mode that never answered is not judged by
    // keepalives (a gretap or Open vSwitch endpoint cannot reflect
    // them): say so, or its "ka 0" reads like a failure.
    let ka = match p.keepalive {
        KeepaliveMode::Auto if p.counters.keepalive_replies == 0 => "keepalive auto (never answered: judged by link state only)",
        KeepaliveMode::Auto => "keepalive auto",
        KeepaliveMode::Required => "keepalive required",
        KeepaliveMode::Off => "keepalive off",
    };
    let routes = if p.routes.is_empty() { "-".into() } else { p.routes.join(", ") };
    let from = if p.origin == Origin::Mesh { "  (mesh)" } else { "" };
    let resends = if p.resends { ", resends what is missed" } else { "" };
    let numbers = p.announces.map(|a| format!("  numbers its packets ({a}){resends}")).unwrap_or_default();
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
            "      path {j} {:<10} {} -> {:<15} {:<8} {:<12} tx {:>9} pkts {:>10}  rx {:>9} pkts {:>10}  ka {}{}  {}",
            path.link,
            path.local,
            path.remote,
            match path.rate_kbps {
                Some(k) => crate::config::rate::Rate { kbps: k }.to_string(),
                None => format!("w{}", path.weight),
            },
            match (path.up, path.standby || path.slow, path.healthy) {
                (false, _, true) if path.slow => "idle slow",
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
            path.rtt_ms
                .map(|r| format!(
                    "  rtt {r:.1} ms{}",
                    match (path.fastest, p.light) {
                        (true, true) => " (fastest: ACKs, ICMP, small UDP)",
                        (true, false) => " (fastest: ACKs)",
                        _ => "",
                    }
                ))
                .unwrap_or_default(),
            path.pmtu.describe()
        );
    }
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
