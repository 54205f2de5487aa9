//! `xgre exporter --listen ADDR`: the status counters in the Prometheus
//! text format. One registry holds one `Collector`; each scrape reads a
//! fresh `Status` from the maps and the collector encodes it.

use std::{
    fmt,
    sync::{Arc, Mutex},
};

use anyhow::{Context, Result};
use axum::{extract::State, http::header, response::IntoResponse, routing::get, Router};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeGaugeValue, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge, MetricType},
    registry::Registry,
};

use crate::{
    config::Mode,
    mesh::status::ConnState,
    observe::{self, Counters, PathStatus, PeerStatus, Status, TunnelStatus},
};

/// A metric's labels, in order.
type Labels = Vec<(&'static str, String)>;

/// The status a scrape read, for the registry to encode.
#[derive(Debug, Default)]
struct StatusCollector {
    status: Mutex<Option<Status>>,
}

impl Collector for StatusCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        match self.status.lock().expect("the status lock is never poisoned").as_ref() {
            Some(s) => encode(s, &mut enc),
            None => Ok(()),
        }
    }
}

fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, samples: impl IntoIterator<Item = (Labels, u64)>) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in samples {
        ConstCounter::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn gauge<N: EncodeGaugeValue>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Labels, N)>,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in samples {
        ConstGauge::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Every path of every tunnel, with its tunnel, peer and index.
fn paths(s: &Status) -> impl Iterator<Item = (&TunnelStatus, &PeerStatus, usize, &PathStatus)> {
    s.tunnels.iter().flat_map(|t| t.peers.iter().flat_map(move |p| p.paths.iter().enumerate().map(move |(j, q)| (t, p, j, q))))
}

fn peers(s: &Status) -> impl Iterator<Item = (&TunnelStatus, &PeerStatus)> {
    s.tunnels.iter().flat_map(|t| t.peers.iter().map(move |p| (t, p)))
}

fn path_labels(t: &TunnelStatus, p: &PeerStatus, j: usize, q: &PathStatus) -> Labels {
    vec![("tunnel", t.name.clone()), ("peer", p.name.clone()), ("path", j.to_string()), ("link", q.link.clone())]
}

fn peer_labels(t: &TunnelStatus, p: &str) -> Labels {
    vec![("tunnel", t.name.clone()), ("peer", p.to_string())]
}

fn tunnel_labels(t: &TunnelStatus) -> Labels {
    vec![("tunnel", t.name.clone())]
}

/// Which of a path's counters a metric shows.
type CounterOf = fn(&Counters) -> u64;

const PATH_COUNTERS: [(&str, &str, CounterOf); 6] = [
    ("xgre_path_tx_packets", "Packets sent over the path.", |c| c.tx_packets),
    ("xgre_path_tx_bytes", "Inner bytes sent over the path.", |c| c.tx_bytes),
    ("xgre_path_rx_packets", "Packets received over the path.", |c| c.rx_packets),
    ("xgre_path_rx_bytes", "Inner bytes received over the path.", |c| c.rx_bytes),
    ("xgre_path_keepalive_replies", "Our keepalives that came back over the path.", |c| c.keepalive_replies),
    ("xgre_path_keepalives_reflected", "The peer's keepalives sent back over the path.", |c| c.keepalives_reflected),
];

/// The status as metric families, in the OpenMetrics text format's terms.
fn encode(s: &Status, enc: &mut DescriptorEncoder) -> fmt::Result {
    let up_labels = |t, p, j, q: &PathStatus| {
        let mut l = path_labels(t, p, j, q);
        l.extend([("remote", q.remote.to_string()), ("standby", q.standby.to_string())]);
        l
    };
    gauge(
        enc,
        "xgre_path_up",
        "1 when the path is in its peer's rotation.",
        paths(s).map(|(t, p, j, q)| (up_labels(t, p, j, q), q.up as i64)),
    )?;
    gauge(
        enc,
        "xgre_path_healthy",
        "1 when xgre run finds the path well (link up, keepalives back): an idle backup is healthy, a dead one is not.",
        paths(s).map(|(t, p, j, q)| (up_labels(t, p, j, q), q.healthy as i64)),
    )?;
    for (name, help, get) in PATH_COUNTERS {
        counter(enc, name, help, paths(s).map(|(t, p, j, q)| (path_labels(t, p, j, q), get(&q.counters))))?;
    }
    let reorder = || peers(s).filter_map(|(t, p)| p.reorder.as_ref().map(|r| (peer_labels(t, &p.name), r)));
    counter(
        enc,
        "xgre_peer_reorder_out_of_order",
        "Packets that arrived after one with a higher sequence number.",
        reorder().map(|(l, r)| (l, r.out_of_order)),
    )?;
    counter(enc, "xgre_peer_reorder_late", "Packets out of order by more than the late window.", reorder().map(|(l, r)| (l, r.late)))?;
    gauge(
        enc,
        "xgre_peer_reorder_max_displacement",
        "Largest displacement seen, in packets.",
        reorder().map(|(l, r)| (l, r.max_displacement as i64)),
    )?;
    gauge(enc, "xgre_fdb_entries", "gretap: learned MAC addresses still valid, by peer.", fdb_entries(s))?;
    encode_neigh(s, enc)?;
    counter(
        enc,
        "xgre_drops",
        "Packets dropped by the datapath, by reason.",
        s.drops.iter().map(|(r, v)| (vec![("reason", r.to_string())], *v)),
    )?;
    gauge(
        enc,
        "xgre_path_mtu_bytes",
        "The path's MTU in force: learnt from an ICMP error, or its link's.",
        paths(s).map(|(t, p, j, q)| {
            let mut l = path_labels(t, p, j, q);
            l.push(("source", q.pmtu.source.name().to_string()));
            (l, q.pmtu.mtu as i64)
        }),
    )?;
    gauge(
        enc,
        "xgre_path_rtt_seconds",
        "The path's last round trip, measured by keepalive (absent until one came back).",
        paths(s).filter_map(|(t, p, j, q)| q.rtt_ms.map(|r| (path_labels(t, p, j, q), r / 1e3))),
    )?;
    counter(
        enc,
        "xgre_pmtu_events",
        "Path MTU discovery and outer fragments: ICMP errors learnt from or ignored, errors sent, DF cleared, fragments reassembled.",
        s.pmtu_events.iter().map(|(e, v)| (vec![("event", e.to_string())], *v)),
    )?;
    gauge(
        enc,
        "xgre_peer_info",
        "1 per peer; `origin` is file (config, map-edit) or mesh (etcd).",
        peers(s).map(|(t, p)| {
            let mut l = peer_labels(t, &p.name);
            l.push(("origin", p.origin.as_str().to_string()));
            (l, 1)
        }),
    )?;
    encode_mesh(s, enc)
}

/// gretap: valid learned MACs per peer (peers with none at 0).
fn fdb_entries(s: &Status) -> Vec<(Labels, i64)> {
    let mut out = Vec::new();
    for t in s.tunnels.iter().filter(|t| t.mode == Mode::Gretap) {
        let mut by_peer: std::collections::BTreeMap<&str, i64> = t.peers.iter().map(|p| (p.name.as_str(), 0)).collect();
        for e in t.fdb.iter().filter(|e| !e.stale) {
            *by_peer.entry(e.peer.as_str()).or_default() += 1;
        }
        out.extend(by_peer.into_iter().map(|(peer, n)| (peer_labels(t, peer), n)));
    }
    out
}

fn encode_neigh(s: &Status, enc: &mut DescriptorEncoder) -> fmt::Result {
    let neigh = || s.tunnels.iter().filter_map(|t| t.neigh.as_ref().map(|n| (t, n)));
    let kind = |t: &TunnelStatus, k: &str| vec![("tunnel", t.name.clone()), ("kind", k.to_string())];
    counter(
        enc,
        "xgre_neigh_suppressed",
        "arp_suppress: requests not flooded, by what happened (arp_answered, nd_answered, kept_local).",
        neigh().flat_map(|(t, n)| {
            [(kind(t, "arp_answered"), n.arp_answered), (kind(t, "nd_answered"), n.nd_answered), (kind(t, "kept_local"), n.kept_local)]
        }),
    )?;
    counter(
        enc,
        "xgre_neigh_flooded",
        "arp_suppress: requests for unknown addresses, flooded.",
        neigh().map(|(t, n)| (tunnel_labels(t), n.flooded)),
    )?;
    gauge(
        enc,
        "xgre_neigh_entries",
        "arp_suppress: addresses known, by where (remote: behind a peer, local, static).",
        neigh().flat_map(|(t, n)| {
            [(kind(t, "remote"), n.remote as i64), (kind(t, "local"), n.local as i64), (kind(t, "static"), n.fixed as i64)]
        }),
    )
}

fn encode_mesh(s: &Status, enc: &mut DescriptorEncoder) -> fmt::Result {
    let mesh = || s.tunnels.iter().filter_map(|t| t.mesh.as_ref().map(|m| (tunnel_labels(t), m)));
    gauge(
        enc,
        "xgre_mesh_connected",
        "[mesh]: 1 while `xgre run` is connected to etcd; 0 while etcd is unreachable (the peers stay as last known).",
        mesh().map(|(l, m)| (l, (m.running && m.state == ConnState::Connected) as i64)),
    )?;
    gauge(enc, "xgre_mesh_hosts", "[mesh]: peers installed from etcd.", mesh().map(|(l, m)| (l, m.hosts as i64)))?;
    gauge(enc, "xgre_mesh_revision", "[mesh]: the etcd revision the peers are current to.", mesh().map(|(l, m)| (l, m.revision)))?;
    gauge(
        enc,
        "xgre_mesh_refused_entries",
        "[mesh]: host entries refused as malformed or clashing.",
        mesh().map(|(l, m)| (l, m.refused.len() as i64)),
    )
}

/// The registry the exporter serves, and the collector it encodes.
#[derive(Clone)]
struct Exporter {
    registry: Arc<Registry>,
    collector: Arc<StatusCollector>,
}

impl Exporter {
    fn new() -> Exporter {
        let collector = Arc::new(StatusCollector::default());
        let mut registry = Registry::default();
        registry.register_collector(Box::new(collector.clone()));
        Exporter { registry: Arc::new(registry), collector }
    }

    /// `s` in the OpenMetrics text format.
    fn render(&self, s: Status) -> String {
        *self.collector.status.lock().expect("the status lock is never poisoned") = Some(s);
        let mut o = String::new();
        prometheus_client::encoding::text::encode(&mut o, &self.registry).expect("writing to a String cannot fail");
        o
    }
}

async fn metrics(State(x): State<Exporter>) -> impl IntoResponse {
    match observe::collect(None).await {
        Ok(s) => ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], x.render(s)).into_response(),
        Err(e) => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, format!("xgre: {e:#}\n")).into_response(),
    }
}

pub async fn serve(listen: &str) -> Result<()> {
    let app = Router::new().route("/metrics", get(metrics)).with_state(Exporter::new());
    let l = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("listening on {listen}"))?;
    println!("serving metrics on http://{}/metrics", l.local_addr()?);
    axum::serve(l, app).await.context("serving metrics")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        config::{KeepaliveMode, Origin},
        observe::FdbStatus,
    };

    fn render(s: Status) -> String {
        Exporter::new().render(s)
    }

    #[test]
    fn a_status_is_encoded_as_openmetrics() {
        let peer = |name: &str| PeerStatus {
            name: name.into(),
            id: 0,
            routes: vec![],
            paths: vec![],
            counters: Counters::default(),
            keepalive: KeepaliveMode::Auto,
            reorder: None,
            announces: None,
            resends: false,
            light: false,
            origin: Origin::File,
        };
        let path = PathStatus {
            link: "eth0".into(),
            local: "198.18.0.1".parse().unwrap(),
            remote: "198.18.0.2".parse().unwrap(),
            mac: "02:00:00:00:00:09".into(),
            weight: 1,
            rate_kbps: None,
            up: true,
            standby: false,
            healthy: true,
            pmtu: observe::Pmtu { mtu: 1500, source: observe::PmtuSource::Link, from: None, expires_in_s: None },
            rtt_ms: Some(40.5),
            fastest: false,
            slow: false,
            counters: Counters { tx_packets: 7, ..Default::default() },
        };
        let mac = |m: &str, p: &str, stale: bool| FdbStatus { mac: m.into(), peer: p.into(), age_s: 1.0, stale, fixed: false, vid: 0 };
        let t = TunnelStatus {
            name: "t1".into(),
            ifindex: 5,
            device_present: true,
            mode: Mode::Gretap,
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
            peers: vec![PeerStatus { paths: vec![path], ..peer("h2") }, peer("h3")],
            counters: Counters::default(),
            mesh: None,
            run: None,
        };
        let body = render(Status {
            tunnels: vec![t],
            drops: [("no_route", 3)].into(),
            pmtu_events: Default::default(),
            map_memory_bytes: 0,
            programs: vec![],
        });
        assert!(body.contains("xgre_fdb_entries{tunnel=\"t1\",peer=\"h2\"} 2"), "{body}");
        assert!(body.contains("xgre_fdb_entries{tunnel=\"t1\",peer=\"h3\"} 0"), "a stale entry counted:\n{body}");
        // Counters carry OpenMetrics' `_total`; gauges do not.
        let path = r#"tunnel="t1",peer="h2",path="0",link="eth0""#;
        assert!(body.contains(&format!("xgre_path_tx_packets_total{{{path}}} 7\n")), "{body}");
        assert!(body.contains(&format!(r#"xgre_path_up{{{path},remote="198.18.0.2",standby="false"}} 1"#)), "{body}");
        assert!(body.contains(&format!(r#"xgre_path_mtu_bytes{{{path},source="link"}} 1500"#)), "{body}");
        assert!(body.contains("xgre_drops_total{reason=\"no_route\"} 3\n"), "{body}");
        assert!(body.contains(&format!("xgre_path_rtt_seconds{{{path}}} 0.0405\n")), "{body}");
        assert!(body.ends_with("# EOF\n"), "{body}");
    }
}
