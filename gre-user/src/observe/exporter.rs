//! `xgre exporter --listen ADDR`: the status counters in the Prometheus
//! text format, read from the maps on every scrape.

use anyhow::{Context, Result};
use axum::{http::header, response::IntoResponse, routing::get, Router};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use crate::observe::{self, Status};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PathLabels {
    tunnel: String,
    peer: String,
    path: String,
    link: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PathUpLabels {
    tunnel: String,
    peer: String,
    path: String,
    link: String,
    remote: String,
    /// "true" for a backup path.
    standby: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PathMtuLabels {
    tunnel: String,
    peer: String,
    path: String,
    link: String,
    /// "link", or "icmp" when learnt from an ICMP error.
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    event: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabels {
    tunnel: String,
    peer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerOriginLabels {
    tunnel: String,
    peer: String,
    origin: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TunnelLabels {
    tunnel: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NeighLabels {
    tunnel: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

/// A counter family registered under `name` (the encoder adds `_total`).
fn counters<S: EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug + Send + Sync + 'static>(
    r: &mut Registry,
    name: &str,
    help: &str,
) -> Family<S, Counter> {
    let f = Family::<S, Counter>::default();
    r.register(name, help, f.clone());
    f
}

fn gauges<S: EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug + Send + Sync + 'static>(
    r: &mut Registry,
    name: &str,
    help: &str,
) -> Family<S, Gauge> {
    let f = Family::<S, Gauge>::default();
    r.register(name, help, f.clone());
    f
}

/// Render a status snapshot in the OpenMetrics text format (which
/// Prometheus scrapes). The values are read from the maps on every scrape,
/// so each scrape fills a fresh registry.
pub fn render(s: &Status) -> String {
    let mut r = Registry::default();
    let up = gauges::<PathUpLabels>(&mut r, "xgre_path_up", "1 when the path is in its peer's rotation.");
    let healthy = gauges::<PathUpLabels>(
        &mut r,
        "xgre_path_healthy",
        "1 when xgre run finds the path well (link up, keepalives back): an idle backup is healthy, a dead one is not.",
    );
    /// Which of a path's counters a metric shows.
    type CounterOf = fn(&observe::Counters) -> u64;
    /// Metric name, help text, the value.
    type PathMetric = (&'static str, &'static str, CounterOf);
    let path_metrics: [PathMetric; 6] = [
        ("xgre_path_tx_packets", "Packets sent over the path.", |c| c.tx_packets),
        ("xgre_path_tx_bytes", "Inner bytes sent over the path.", |c| c.tx_bytes),
        ("xgre_path_rx_packets", "Packets received over the path.", |c| c.rx_packets),
        ("xgre_path_rx_bytes", "Inner bytes received over the path.", |c| c.rx_bytes),
        ("xgre_path_keepalive_replies", "Our keepalives that came back over the path.", |c| c.keepalive_replies),
        ("xgre_path_keepalives_reflected", "The peer's keepalives sent back over the path.", |c| c.keepalives_reflected),
    ];
    let path_families: Vec<(Family<PathLabels, Counter>, CounterOf)> =
        path_metrics.iter().map(|(name, help, get)| (counters::<PathLabels>(&mut r, name, help), *get)).collect();
    let out_of_order =
        counters::<PeerLabels>(&mut r, "xgre_peer_reorder_out_of_order", "Packets that arrived after one with a higher sequence number.");
    let late = counters::<PeerLabels>(&mut r, "xgre_peer_reorder_late", "Packets out of order by more than the late window.");
    let displacement = gauges::<PeerLabels>(&mut r, "xgre_peer_reorder_max_displacement", "Largest displacement seen, in packets.");
    let fdb = gauges::<PeerLabels>(&mut r, "xgre_fdb_entries", "gretap: learned MAC addresses still valid, by peer.");
    let suppressed = counters::<NeighLabels>(
        &mut r,
        "xgre_neigh_suppressed",
        "arp_suppress: requests not flooded, by what happened (arp_answered, nd_answered, kept_local).",
    );
    let neigh_flooded = counters::<TunnelLabels>(&mut r, "xgre_neigh_flooded", "arp_suppress: requests for unknown addresses, flooded.");
    let neigh_entries = gauges::<NeighLabels>(
        &mut r,
        "xgre_neigh_entries",
        "arp_suppress: addresses known, by where (remote: behind a peer, local, static).",
    );
    let drops = counters::<ReasonLabels>(&mut r, "xgre_drops", "Packets dropped by the datapath, by reason.");
    let pmtu = gauges::<PathMtuLabels>(&mut r, "xgre_path_mtu_bytes", "The path's MTU in force: learnt from an ICMP error, or its link's.");
    let pmtu_events = counters::<EventLabels>(
        &mut r,
        "xgre_pmtu_events",
        "Path MTU discovery and outer fragments: ICMP errors learnt from or ignored, errors sent, DF cleared, fragments reassembled.",
    );
    let info = gauges::<PeerOriginLabels>(&mut r, "xgre_peer_info", "1 per peer; `origin` is file (config, map-edit) or mesh (etcd).");
    let mesh_up = gauges::<TunnelLabels>(
        &mut r,
        "xgre_mesh_connected",
        "[mesh]: 1 while `xgre run` is connected to etcd; 0 while etcd is unreachable (the peers stay as last known).",
    );
    let mesh_hosts = gauges::<TunnelLabels>(&mut r, "xgre_mesh_hosts", "[mesh]: peers installed from etcd.");
    let mesh_rev = gauges::<TunnelLabels>(&mut r, "xgre_mesh_revision", "[mesh]: the etcd revision the peers are current to.");
    let mesh_refused =
        gauges::<TunnelLabels>(&mut r, "xgre_mesh_refused_entries", "[mesh]: host entries refused as malformed or clashing.");

    for t in &s.tunnels {
        if let Some(m) = &t.mesh {
            let l = TunnelLabels { tunnel: t.name.clone() };
            mesh_up.get_or_create(&l).set((m.running && m.state == crate::mesh::status::ConnState::Connected) as i64);
            mesh_hosts.get_or_create(&l).set(m.hosts as i64);
            mesh_rev.get_or_create(&l).set(m.revision);
            mesh_refused.get_or_create(&l).set(m.refused.len() as i64);
        }
        for p in &t.peers {
            info.get_or_create(&PeerOriginLabels { tunnel: t.name.clone(), peer: p.name.clone(), origin: p.origin.to_string() }).set(1);
            for (j, path) in p.paths.iter().enumerate() {
                let l = PathLabels { tunnel: t.name.clone(), peer: p.name.clone(), path: j.to_string(), link: path.link.clone() };
                let ul = PathUpLabels {
                    tunnel: l.tunnel.clone(),
                    peer: l.peer.clone(),
                    path: l.path.clone(),
                    link: l.link.clone(),
                    remote: path.remote.to_string(),
                    standby: path.standby.to_string(),
                };
                up.get_or_create(&ul).set(path.up as i64);
                healthy.get_or_create(&ul).set(path.healthy as i64);
                let source = path.pmtu.source.name().to_string();
                let ml =
                    PathMtuLabels { tunnel: l.tunnel.clone(), peer: l.peer.clone(), path: l.path.clone(), link: l.link.clone(), source };
                pmtu.get_or_create(&ml).set(path.pmtu.mtu as i64);
                for (f, get) in &path_families {
                    f.get_or_create(&l).inc_by(get(&path.counters));
                }
            }
            if let Some(ro) = &p.reorder {
                let l = PeerLabels { tunnel: t.name.clone(), peer: p.name.clone() };
                out_of_order.get_or_create(&l).inc_by(ro.out_of_order);
                late.get_or_create(&l).inc_by(ro.late);
                displacement.get_or_create(&l).set(ro.max_displacement as i64);
            }
        }
        if let Some(n) = &t.neigh {
            let l = |kind: &str| NeighLabels { tunnel: t.name.clone(), kind: kind.into() };
            suppressed.get_or_create(&l("arp_answered")).inc_by(n.arp_answered);
            suppressed.get_or_create(&l("nd_answered")).inc_by(n.nd_answered);
            suppressed.get_or_create(&l("kept_local")).inc_by(n.kept_local);
            neigh_flooded.get_or_create(&TunnelLabels { tunnel: t.name.clone() }).inc_by(n.flooded);
            neigh_entries.get_or_create(&l("remote")).set(n.remote as i64);
            neigh_entries.get_or_create(&l("local")).set(n.local as i64);
            neigh_entries.get_or_create(&l("static")).set(n.fixed as i64);
        }
        if t.mode == "gretap" {
            let mut by_peer: std::collections::BTreeMap<&str, i64> = t.peers.iter().map(|p| (p.name.as_str(), 0)).collect();
            for e in t.fdb.iter().filter(|e| !e.stale) {
                *by_peer.entry(e.peer.as_str()).or_default() += 1;
            }
            for (peer, n) in by_peer {
                fdb.get_or_create(&PeerLabels { tunnel: t.name.clone(), peer: peer.to_string() }).set(n);
            }
        }
    }
    for (reason, v) in &s.drops {
        drops.get_or_create(&ReasonLabels { reason: reason.to_string() }).inc_by(*v);
    }
    for (event, v) in &s.pmtu_events {
        pmtu_events.get_or_create(&EventLabels { event: event.to_string() }).inc_by(*v);
    }
    let mut o = String::new();
    prometheus_client::encoding::text::encode(&mut o, &r).expect("writing to a String cannot fail");
    o
}

async fn metrics() -> impl IntoResponse {
    match observe::collect(None).await {
        Ok(s) => ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], render(&s)).into_response(),
        Err(e) => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, format!("xgre: {e:#}\n")).into_response(),
    }
}

pub async fn serve(listen: &str) -> Result<()> {
    let app = Router::new().route("/metrics", get(metrics));
    let l = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("listening on {listen}"))?;
    println!("serving metrics on http://{}/metrics", l.local_addr()?);
    axum::serve(l, app).await.context("serving metrics")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::{Counters, FdbStatus, PeerStatus, TunnelStatus};

    #[test]
    fn learned_macs_are_counted_per_peer_and_stale_ones_are_not() {
        let peer = |name: &str| PeerStatus {
            name: name.into(),
            id: 0,
            routes: vec![],
            paths: vec![],
            counters: Counters::default(),
            keepalive: "auto",
            reorder: None,
            announces: None,
            origin: "file",
        };
        let mac = |m: &str, p: &str, stale: bool| FdbStatus { mac: m.into(), peer: p.into(), age_s: 1.0, stale, fixed: false, vid: 0 };
        let t = TunnelStatus {
            name: "t1".into(),
            ifindex: 5,
            device_present: true,
            mode: "gretap",
            key: Some(1),
            vsid: None,
            vlans: vec![],
            native_key: None,
            fdb: vec![mac("02:00:00:00:00:01", "h2", false), mac("02:00:00:00:00:02", "h2", false), mac("02:00:00:00:00:03", "h3", true)],
            neigh: None,
            groups: vec![],
            sequence: false,
            ip_id_sequence: false,
            ip_id_sequence_auto: false,
            checksum: false,
            device_counters: true,
            mtu: Some(1458),
            links: vec![],
            peers: vec![peer("h2"), peer("h3")],
            counters: Counters::default(),
            mesh: None,
        };
        let body = render(&Status {
            tunnels: vec![t],
            drops: Default::default(),
            pmtu_events: Default::default(),
            map_memory_bytes: 0,
            programs: vec![],
        });
        assert!(body.contains("xgre_fdb_entries{tunnel=\"t1\",peer=\"h2\"} 2"), "{body}");
        assert!(body.contains("xgre_fdb_entries{tunnel=\"t1\",peer=\"h3\"} 0"), "a stale entry counted:\n{body}");
    }
}
