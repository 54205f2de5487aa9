//! `cargo xtask bench agg`: one TCP connection across N rate-limited links,
//! every method on the same topology in the same run.
//!
//! Topology: hosts `a` and `b`, each with N veth links into one bridge in a
//! switch namespace (an unmanaged switch). Link i of a has 198.18.i.10/24, of
//! b 198.18.i.20/24; every host-side link egress is limited to R Mbit/s by
//! tbf. Each method gets a freshly built topology.

use std::{fmt::Write as _, path::PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use serde_json::json;

use crate::{
    build_release,
    net::{iperf, sh, Namespaces},
    step,
};

#[derive(Subcommand)]
pub enum Bench {
    /// Link aggregation: single link, ECMP, the iptables-statistic recipe,
    /// MPTCP and xgre, one TCP connection each.
    Agg(AggArgs),
    /// Control plane at scale: `up` with many peers, map memory, edit rate,
    /// `xgre run` memory.
    Control(crate::control::ControlArgs),
    /// Tunnel kinds (gre, gretap, NVGRE, IPv6 underlay) against the
    /// kernel's VXLAN: one TCP stream each, same link, same run.
    Overlay(crate::overlay::OverlayArgs),
}

#[derive(Args, Clone)]
pub struct AggArgs {
    /// Link counts to run, comma separated.
    #[arg(long, default_value = "2,4", value_delimiter = ',')]
    pub links: Vec<u32>,
    /// Rate of each link, Mbit/s (tbf).
    #[arg(long, default_value_t = 200)]
    pub rate: u32,
    /// Seconds per iperf3 run (at least 8).
    #[arg(long, default_value_t = 8)]
    pub secs: u32,
    /// Runs per method; the table shows the median (shared machines are
    /// noisy: single runs of the same method vary by a few percent).
    #[arg(long, default_value_t = 3)]
    pub runs: u32,
    /// Also run xgre with every striping unit (GSO burst size) it offers.
    #[arg(long)]
    pub units: bool,
    /// TCP congestion control for every method (default: the system's).
    #[arg(long)]
    pub cc: Option<String>,
    /// Where the JSON and the chart go.
    #[arg(long, default_value = "target/bench")]
    pub out: PathBuf,
}

pub fn run(b: Bench) -> Result<()> {
    match b {
        Bench::Agg(a) => agg(a),
        Bench::Control(c) => crate::control::control(c),
        Bench::Overlay(o) => crate::overlay::overlay(o),
    }
}

const A: &str = "xgb-a";
const B: &str = "xgb-b";
const SW: &str = "xgb-sw";

struct Method {
    name: String,
    /// For xgre: the striping unit (segments per GSO packet), if set.
    burst: Option<u32>,
}

fn topology(n: u32, rate: u32, xgre: &str) -> Result<Namespaces> {
    let ns = Namespaces::new(&[A, B, SW], xgre)?;
    // Several NICs on one segment: each answers ARP only for its own
    // address, so every path resolves to the NIC it names.
    let mut s = format!(
        "ip -n {SW} link add br0 type bridge && ip -n {SW} link set br0 up && \
         ip netns exec {A} sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 && \
         ip netns exec {B} sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2"
    );
    for i in 0..n {
        for (h, host, oct) in [("a", A, 10), ("b", B, 20)] {
            write!(
                s,
                " && ip link add {h}{i} netns {host} type veth peer name s{h}{i} netns {SW} \
                 && ip -n {SW} link set s{h}{i} master br0 up \
                 && ip -n {host} addr add 198.18.{i}.{oct}/24 dev {h}{i} && ip -n {host} link set {h}{i} up \
                 && tc -n {host} qdisc add dev {h}{i} root tbf rate {rate}mbit burst 32kb latency 20ms"
            )?;
        }
    }
    sh(&s)?;
    // Endpoint addresses the routing-based methods use.
    sh(&format!("ip -n {A} addr add 198.19.200.1/32 dev lo && ip -n {B} addr add 198.19.200.2/32 dev lo"))?;
    Ok(ns)
}

fn xgre_config(me: char, n: u32, burst: Option<u32>) -> String {
    let (my, peer, inner_me, inner_peer, pname) = match me {
        'a' => ("a", 20, "198.19.100.1", "198.19.100.2", "b"),
        _ => ("b", 10, "198.19.100.2", "198.19.100.1", "a"),
    };
    let my_oct = if me == 'a' { 10 } else { 20 };
    let mut c = format!("[tunnel]\nname = \"gre0\"\naddress = [\"{inner_me}/32\"]\n");
    if let Some(b) = burst {
        writeln!(c, "stripe_burst = {b}").unwrap();
    }
    for i in 0..n {
        write!(c, "\n[[link]]\ndev = \"{my}{i}\"\naddress = \"198.18.{i}.{my_oct}\"\n").unwrap();
    }
    write!(c, "\n[[peer]]\nname = \"{pname}\"\nroutes = [\"{inner_peer}/32\"]\n").unwrap();
    for i in 0..n {
        write!(c, "[[peer.path]]\nlink = \"{my}{i}\"\nremote = \"198.18.{i}.{peer}\"\n").unwrap();
    }
    c
}

/// Configure a method on a fresh topology; returns the address to connect
/// to and extra iperf3 client arguments.
fn prepare(m: &Method, ns: &Namespaces, n: u32, xgre: &str, dir: &std::path::Path) -> Result<(String, String, bool)> {
    match m.name.as_str() {
        "single link" => Ok(("198.18.0.20".into(), "-B 198.18.0.10".into(), false)),
        "ECMP" => {
            for (host, peer_oct, dst, h) in [(A, 20, "198.19.200.2", "a"), (B, 10, "198.19.200.1", "b")] {
                let hops: Vec<String> = (0..n).map(|i| format!("nexthop via 198.18.{i}.{peer_oct} dev {h}{i}")).collect();
                sh(&format!(
                    "ip netns exec {host} sysctl -qw net.ipv4.fib_multipath_hash_policy=1 && ip -n {host} route add {dst}/32 {}",
                    hops.join(" ")
                ))?;
            }
            Ok(("198.19.200.2".into(), "-B 198.19.200.1".into(), false))
        }
        "iptables statistic" => {
            // The well-known recipe: mark every Nth packet, one policy
            // routing table per link, loose rp_filter.
            for (host, peer_oct, dst, h) in [(A, 20, "198.19.200.2", "a"), (B, 10, "198.19.200.1", "b")] {
                let mut s = format!(
                    "ip netns exec {host} sysctl -qw net.ipv4.conf.all.rp_filter=2 net.ipv4.conf.default.rp_filter=2 && \
                     ip -n {host} route add {dst}/32 via 198.18.0.{peer_oct} dev {h}0"
                );
                for i in 0..n {
                    write!(
                        s,
                        " && ip netns exec {host} sysctl -qw net.ipv4.conf.{h}{i}.rp_filter=2 \
                         && ip netns exec {host} iptables -t mangle -A OUTPUT -d {dst} -m statistic --mode nth --every {n} --packet {i} -j MARK --set-mark {m} \
                         && ip -n {host} rule add fwmark {m} table {t} \
                         && ip -n {host} route add {dst}/32 via 198.18.{i}.{peer_oct} dev {h}{i} table {t}",
                        m = i + 1,
                        t = 100 + i
                    )?;
                }
                sh(&s)?;
            }
            Ok(("198.19.200.2".into(), "-B 198.19.200.1".into(), false))
        }
        "MPTCP" => {
            let mut s = String::new();
            for host in [A, B] {
                write!(
                    s,
                    "ip netns exec {host} sysctl -qw net.mptcp.enabled=1 && ip -n {host} mptcp limits set subflow 8 add_addr_accepted 8 && "
                )?;
            }
            // The server announces its other links; the client opens one
            // subflow to each, from the link in the same subnet.
            for i in 1..n {
                write!(s, "ip -n {B} mptcp endpoint add 198.18.{i}.20 dev b{i} signal && ")?;
            }
            s.push_str("true");
            sh(&s)?;
            Ok(("198.18.0.20".into(), String::new(), true))
        }
        _ => {
            for (me, host) in [('a', A), ('b', B)] {
                let f = dir.join(format!("{me}.toml"));
                std::fs::write(&f, xgre_config(me, n, m.burst))?;
                ns.exec(host, &format!("{xgre} up -c {}", f.display()))?;
            }
            Ok(("198.19.100.2".into(), String::new(), false))
        }
    }
}

struct Row {
    n: u32,
    method: String,
    /// Median over the runs.
    mbps: f64,
    retr: u64,
    all: Vec<f64>,
}

fn agg(args: AggArgs) -> Result<()> {
    let secs = args.secs.max(8);
    let cc = match &args.cc {
        Some(c) => c.clone(),
        None => sh("cat /proc/sys/net/ipv4/tcp_congestion_control")?.trim().to_string(),
    };
    step(&format!("TCP congestion control: {cc}; tbf rate {} Mbit/s per link, burst 32 KiB, latency 20 ms", args.rate));
    let xgre = build_release()?.display().to_string();
    sh("command -v mptcpize >/dev/null").context("mptcpize is missing (cargo xtask setup installs it)")?;
    let dir = std::env::temp_dir().join("xgre-bench");
    std::fs::create_dir_all(&dir)?;
    let mut methods: Vec<Method> =
        ["single link", "ECMP", "iptables statistic", "MPTCP"].iter().map(|s| Method { name: s.to_string(), burst: None }).collect();
    methods.push(Method { name: "xgre".into(), burst: None });
    if args.units {
        for b in [1, 2, 4, 16] {
            methods.push(Method { name: format!("xgre burst {b}"), burst: Some(b) });
        }
    }
    let mut rows = Vec::new();
    let runs = args.runs.max(1);
    let total = args.links.len() * methods.len() * runs as usize;
    let mut k = 0;
    for &n in &args.links {
        // Methods take turns run by run, so a slow minute on a shared
        // machine hits all of them alike.
        let mut results: Vec<Vec<(f64, u64)>> = vec![Vec::new(); methods.len()];
        for _ in 0..runs {
            for (mi, m) in methods.iter().enumerate() {
                k += 1;
                step(&format!("[{k}/{total}] N={n}, {} Mbit/s per link: {} ({secs} s)", args.rate, m.name));
                let ns = topology(n, args.rate, &xgre)?;
                let (addr, mut extra, mptcp) = prepare(m, &ns, n, &xgre, &dir)?;
                if let Some(cc) = &args.cc {
                    extra.push_str(&format!(" -C {cc}"));
                }
                let (mbps, retr) = if mptcp { mptcp_iperf(&ns, &addr, secs, &extra)? } else { iperf(&ns, B, A, &addr, secs, &extra)? };
                println!("    {mbps:.0} Mbit/s ({:.0}% of {}), {retr} retransmits", 100.0 * mbps / (n * args.rate) as f64, n * args.rate);
                results[mi].push((mbps, retr));
                drop(ns);
            }
        }
        for (m, mut r) in methods.iter().zip(results) {
            r.sort_by(|a, b| a.0.total_cmp(&b.0));
            let (mbps, retr) = r[r.len() / 2];
            rows.push(Row { n, method: m.name.clone(), mbps, retr, all: r.iter().map(|x| x.0).collect() });
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    report(&args, &rows)
}

fn mptcp_iperf(ns: &Namespaces, addr: &str, secs: u32, extra: &str) -> Result<(f64, u64)> {
    sh(&format!("nsenter --net=/run/netns/{B} mptcpize run iperf3 -s -1 -D -p 5201"))?;
    std::thread::sleep(std::time::Duration::from_millis(300));
    let out = ns.exec(A, &format!("timeout {} mptcpize run iperf3 -c {addr} -p 5201 -t {secs} -J {extra}", secs + 20))?;
    let j: serde_json::Value = serde_json::from_str(&out)?;
    Ok((
        j["end"]["sum_received"]["bits_per_second"].as_f64().unwrap_or(0.0) / 1e6,
        j["end"]["sum_sent"]["retransmits"].as_u64().unwrap_or(0),
    ))
}

fn report(args: &AggArgs, rows: &[Row]) -> Result<()> {
    step(&format!("results: one TCP connection, same topology, same run (median of {} runs)", args.runs.max(1)));
    println!("    {:>2}  {:<20} {:>10} {:>9} {:>9}  all runs", "N", "method", "Mbit/s", "% of N×R", "retrans");
    for r in rows {
        let cap = (r.n * args.rate) as f64;
        let all: Vec<String> = r.all.iter().map(|v| format!("{v:.0}")).collect();
        println!("    {:>2}  {:<20} {:>10.0} {:>8.1}% {:>9}  {}", r.n, r.method, r.mbps, 100.0 * r.mbps / cap, r.retr, all.join(" "));
    }
    for &n in &args.links {
        let x = rows.iter().find(|r| r.n == n && r.method == "xgre").map(|r| r.mbps).unwrap_or(0.0);
        let best = rows.iter().filter(|r| r.n == n && !r.method.starts_with("xgre")).max_by(|a, b| a.mbps.total_cmp(&b.mbps));
        if let Some(b) = best {
            println!(
                "    N={n}: xgre {:.1}% of N×R, {:.2}× the best other method ({})",
                100.0 * x / (n * args.rate) as f64,
                x / b.mbps,
                b.method
            );
        }
    }
    std::fs::create_dir_all(&args.out)?;
    let json = json!({
        "rate_mbps": args.rate,
        "congestion_control": args.cc.clone().unwrap_or_else(|| sh("cat /proc/sys/net/ipv4/tcp_congestion_control").unwrap_or_default().trim().to_string()),
        "secs": args.secs,
        "results": rows.iter().map(|r| json!({
            "links": r.n, "method": r.method, "mbps": r.mbps,
            "percent_of_capacity": 100.0 * r.mbps / (r.n * args.rate) as f64, "retransmits": r.retr,
            "runs_mbps": r.all,
        })).collect::<Vec<_>>(),
    });
    let jpath = args.out.join("agg.json");
    std::fs::write(&jpath, serde_json::to_string_pretty(&json)?)?;
    let cpath = args.out.join("agg.svg");
    chart(args, rows, &cpath)?;
    println!("    wrote {} and {}", jpath.display(), cpath.display());
    Ok(())
}

fn chart(args: &AggArgs, rows: &[Row], path: &std::path::Path) -> Result<()> {
    use plotters::prelude::*;
    let methods: Vec<String> = {
        let mut m: Vec<String> = Vec::new();
        for r in rows {
            if !m.contains(&r.method) {
                m.push(r.method.clone());
            }
        }
        m
    };
    let groups = args.links.len();
    let width = 160 + 110 * methods.len() as u32 * groups as u32;
    let root = SVGBackend::new(path, (width.max(640), 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let slots = (methods.len() * groups + groups) as f64;
    let mut c = ChartBuilder::on(&root)
        .caption(format!("One TCP connection over N × {} Mbit/s links (% of N×R)", args.rate), ("sans-serif", 18))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..slots, 0f64..105f64)?;
    c.configure_mesh().disable_x_mesh().disable_x_axis().y_desc("% of capacity").draw()?;
    let colors = [RGBColor(150, 150, 150), RGBColor(120, 160, 200), RGBColor(230, 160, 80), RGBColor(140, 110, 190), RGBColor(40, 160, 90)];
    for (gi, &n) in args.links.iter().enumerate() {
        for (mi, m) in methods.iter().enumerate() {
            let Some(r) = rows.iter().find(|r| r.n == n && &r.method == m) else { continue };
            let x0 = (gi * (methods.len() + 1) + mi) as f64 + 0.5;
            let pct = 100.0 * r.mbps / (n * args.rate) as f64;
            let color = colors[mi.min(colors.len() - 1)];
            c.draw_series(std::iter::once(Rectangle::new([(x0, 0.0), (x0 + 0.85, pct)], color.filled())))?;
            c.draw_series(std::iter::once(Text::new(format!("{pct:.0}%"), (x0 + 0.1, pct + 4.0), ("sans-serif", 12))))?;
            c.draw_series(std::iter::once(Text::new(format!("N={n} {m}"), (x0, -3.0), ("sans-serif", 10))))?;
        }
    }
    c.draw_series(LineSeries::new([(0.0, 90.0), (slots, 90.0)], RED.stroke_width(1)))?.label("90% target");
    root.present()?;
    Ok(())
}
