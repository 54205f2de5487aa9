//! `xgre exporter --listen ADDR`: the status counters in the Prometheus
//! text format, read from the maps on every scrape.

use std::fmt::Write as _;

use anyhow::{Context, Result};
use axum::{http::header, response::IntoResponse, routing::get, Router};

use crate::status::{self, Status};

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Render a status snapshot as Prometheus text exposition.
pub fn render(s: &Status) -> String {
    let mut o = String::new();
    let family = |o: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    family(&mut o, "xgre_path_up", "gauge", "1 when the path is in its peer's rotation.");
    for t in &s.tunnels {
        for p in &t.peers {
            for (j, path) in p.paths.iter().enumerate() {
                let _ = writeln!(
                    o,
                    "xgre_path_up{{tunnel=\"{}\",peer=\"{}\",path=\"{j}\",link=\"{}\",remote=\"{}\"}} {}",
                    esc(&t.name),
                    esc(&p.name),
                    esc(&path.link),
                    path.remote,
                    path.up as u8
                );
            }
        }
    }
    /// Metric name, help text, the value.
    type PathMetric = (&'static str, &'static str, fn(&status::Counters) -> u64);
    let counters: [PathMetric; 6] = [
        ("xgre_path_tx_packets_total", "Packets sent over the path.", |c| c.tx_packets),
        ("xgre_path_tx_bytes_total", "Inner bytes sent over the path.", |c| c.tx_bytes),
        ("xgre_path_rx_packets_total", "Packets received over the path.", |c| c.rx_packets),
        ("xgre_path_rx_bytes_total", "Inner bytes received over the path.", |c| c.rx_bytes),
        ("xgre_path_keepalive_replies_total", "Our keepalives that came back over the path.", |c| c.keepalive_replies),
        ("xgre_path_keepalives_reflected_total", "The peer's keepalives sent back over the path.", |c| c.keepalives_reflected),
    ];
    for (name, help, get) in counters {
        family(&mut o, name, "counter", help);
        for t in &s.tunnels {
            for p in &t.peers {
                for (j, path) in p.paths.iter().enumerate() {
                    let _ = writeln!(
                        o,
                        "{name}{{tunnel=\"{}\",peer=\"{}\",path=\"{j}\",link=\"{}\"}} {}",
                        esc(&t.name),
                        esc(&p.name),
                        esc(&path.link),
                        get(&path.counters)
                    );
                }
            }
        }
    }
    /// Metric name, type, help text, the value.
    type ReorderMetric = (&'static str, &'static str, &'static str, fn(&status::Reorder) -> u64);
    let reorder: [ReorderMetric; 3] = [
        ("xgre_peer_reorder_out_of_order_total", "counter", "Packets that arrived after one with a higher sequence number.", |r| {
            r.out_of_order
        }),
        ("xgre_peer_reorder_late_total", "counter", "Packets out of order by more than the late window.", |r| r.late),
        ("xgre_peer_reorder_max_displacement", "gauge", "Largest displacement seen, in packets.", |r| r.max_displacement),
    ];
    for (name, kind, help, get) in reorder {
        family(&mut o, name, kind, help);
        for t in &s.tunnels {
            for p in &t.peers {
                if let Some(r) = &p.reorder {
                    let _ = writeln!(o, "{name}{{tunnel=\"{}\",peer=\"{}\"}} {}", esc(&t.name), esc(&p.name), get(r));
                }
            }
        }
    }
    family(&mut o, "xgre_fdb_entries", "gauge", "gretap: learned MAC addresses still valid, by peer.");
    for t in s.tunnels.iter().filter(|t| t.mode == "gretap") {
        let mut by_peer: std::collections::BTreeMap<&str, u64> = t.peers.iter().map(|p| (p.name.as_str(), 0)).collect();
        for e in t.fdb.iter().filter(|e| !e.stale) {
            *by_peer.entry(e.peer.as_str()).or_default() += 1;
        }
        for (peer, n) in by_peer {
            let _ = writeln!(o, "xgre_fdb_entries{{tunnel=\"{}\",peer=\"{}\"}} {n}", esc(&t.name), esc(peer));
        }
    }
    family(&mut o, "xgre_drops_total", "counter", "Packets dropped by the datapath, by reason.");
    for (reason, v) in &s.drops {
        let _ = writeln!(o, "xgre_drops_total{{reason=\"{reason}\"}} {v}");
    }
    o
}

async fn metrics() -> impl IntoResponse {
    match status::collect(None).await {
        Ok(s) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], render(&s)).into_response(),
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
    use crate::status::{Counters, FdbStatus, PeerStatus, TunnelStatus};

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
        };
        let mac = |m: &str, p: &str, stale: bool| FdbStatus { mac: m.into(), peer: p.into(), age_s: 1.0, stale, fixed: false };
        let t = TunnelStatus {
            name: "t1".into(),
            ifindex: 5,
            device_present: true,
            mode: "gretap",
            key: Some(1),
            vsid: None,
            fdb: vec![mac("02:00:00:00:00:01", "h2", false), mac("02:00:00:00:00:02", "h2", false), mac("02:00:00:00:00:03", "h3", true)],
            groups: vec![],
            sequence: false,
            checksum: false,
            device_counters: true,
            mtu: Some(1458),
            links: vec![],
            peers: vec![peer("h2"), peer("h3")],
            counters: Counters::default(),
        };
        let body = render(&Status { tunnels: vec![t], drops: Default::default(), map_memory_bytes: 0 });
        assert!(body.contains("xgre_fdb_entries{tunnel=\"t1\",peer=\"h2\"} 2"), "{body}");
        assert!(body.contains("xgre_fdb_entries{tunnel=\"t1\",peer=\"h3\"} 0"), "a stale entry counted:\n{body}");
    }
}
