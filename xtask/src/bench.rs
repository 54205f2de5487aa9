//! `cargo xtask bench agg`: one TCP connection across N rate-limited links,
//! every method on the same topology in the same run.
//!
//! Topology: hosts `a` and `b`, each with N veth links into one bridge in a
//! switch namespace (an unmanaged switch). Link i of a has 198.18.i.10/24, of
//! b 198.18.i.20/24; each link is limited to its rate by tbf at both ends
//! (the host NIC and the switch port, as a real rate-limited link is), or at
//! the host NIC only (`--one-end`). Each method gets a freshly built topology.

use std::{fmt::Write as _, path::PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::json;

use crate::{
    build_release,
    net::{iperf_stream, sh, sh_out, Namespaces, Stream},
    step,
};

#[derive(Subcommand)]
pub enum Bench {
    /// Link aggregation: single link, ECMP, the iptables-statistic recipe,
    /// MPTCP and xgre, one TCP connection each.
    Agg(Box<AggArgs>),
    /// Control plane at scale: `up` with many peers, map memory, edit rate,
    /// `xgre run` memory.
    Control(crate::control::ControlArgs),
    /// Tunnel kinds (gre, gretap, NVGRE, IPv6 underlay) against the
    /// kernel's VXLAN: one TCP stream each, same link, same run.
    Overlay(crate::overlay::OverlayArgs),
    /// The etcd mesh: time to install N hosts' peers, time for one change
    /// to reach the maps, etcd writes while idle.
    Mesh(crate::mesh::MeshArgs),
    /// ARP/ND suppression: requests crossing the underlay for N VMs each
    /// making M resolutions, with `arp_suppress` off and on.
    Arp(crate::arp::ArpArgs),
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
    /// Also run xgre with these striping units (GSO burst sizes); without
    /// a list, with 1, 2, 4 and 16.
    #[arg(long, num_args = 0.., value_delimiter = ',')]
    pub units: Option<Vec<u32>>,
    /// Also run xgre with these `tcp_reordering` values (the routes'
    /// `reordering` metric for TCP on the hosts).
    #[arg(long, value_delimiter = ',')]
    pub reordering: Vec<u32>,
    /// Also run xgre with sequence numbers and `resequence` (the receiver
    /// puts packets back in order under `xgre run`) holding this many ms.
    #[arg(long, value_delimiter = ',')]
    pub resequence: Vec<u32>,
    /// With `--resequence`: also (`both`) or only (`only`) xgre numbering
    /// in the outer IPv4 ID (`ip_id_sequence`) instead of the GRE header.
    #[arg(long, value_parser = ["both", "only"])]
    pub ip_id: Option<String>,
    /// Run only these methods (for example `MPTCP,xgre`; default: all):
    /// `single link`, `one link of the sum` (the machine's ceiling for
    /// the case, not a method), `ECMP`, `iptables statistic`, `MPTCP`,
    /// `xgre`, `xgre rate`.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// TCP congestion control for every method (default: the system's),
    /// set per socket (iperf3 -C): a namespace may default only to reno or bbr.
    #[arg(long)]
    pub cc: Option<String>,
    /// One case of unequal links instead of `--links`: their rates in
    /// Mbit/s (for example 300,100). xgre weighs its paths by rate.
    #[arg(long, value_delimiter = ',')]
    pub rates: Option<Vec<u32>>,
    /// Also run xgre with `sequence = true`, with and without the device
    /// counters' veth crossings.
    #[arg(long)]
    pub seq: bool,
    /// Also run xgre with each path's `rate` instead of a weight (shares
    /// with units); always with unequal `--rates`.
    #[arg(long)]
    pub by_rate: bool,
    /// Run every case under a fixed background load: one busy process
    /// pinned to CPU 0.
    #[arg(long)]
    pub cpu_load: bool,
    /// Also measure what xgre's programs cost per run (the kernel's BPF
    /// run-time statistics, which add a clock read per run of their own).
    #[arg(long)]
    pub prog_cost: bool,
    /// tbf on the host NICs only (the benchmark before issue 10).
    #[arg(long)]
    pub one_end: bool,
    /// Size every tbf bucket in time, this many milliseconds of its link's
    /// rate, instead of 64 KB (which is 1.7 ms at 300 Mbit/s but 5.2 ms at
    /// 100).
    #[arg(long)]
    pub burst_ms: Option<f64>,
    /// One-way delay of each link in ms (for example 5,40): each link then
    /// runs through a delay line of its own (`tools/delayline`) instead of
    /// the switch, with offloads off on every end (as with `--loss` and
    /// `--flap`).
    #[arg(long, value_delimiter = ',')]
    pub delay: Vec<u64>,
    /// With delay lines: the share of frames each link loses each way, in
    /// percent (for example 0,1).
    #[arg(long, value_delimiter = ',')]
    pub loss: Vec<f64>,
    /// With delay lines: the last link goes down for DOWN seconds at the
    /// end of every EVERY (`--flap 10 2`).
    #[arg(long, num_args = 2, value_names = ["EVERY", "DOWN"])]
    pub flap: Vec<u64>,
    /// xgre: before the stream, wait up to this many seconds for the
    /// sender's `xgre run` to say it numbers its packets, as a tunnel up
    /// for a while does over a path that loses (it judges loss over its
    /// last 300 keepalives, 30 s).
    #[arg(long, default_value_t = 0)]
    pub settle: u64,
    /// Parallel TCP streams per run (iperf3 -P): the table then also shows
    /// the slowest stream's share of a fair split.
    #[arg(long, default_value_t = 1)]
    pub streams: u32,
    /// Also run xgre with the resequencer's hand-off through a tap
    /// (`XGRE_RESEQ_HANDOFF=tap`) instead of AF_XDP.
    #[arg(long)]
    pub tap_handoff: bool,
    /// xgre's receive hook on every link (`rx` in the config): `auto`
    /// takes TC on veth, `xdp` native XDP (whose resequencer takes frames
    /// over AF_XDP).
    #[arg(long, default_value = "auto", value_parser = ["auto", "xdp", "tc"])]
    pub rx: String,
    /// After each stream, a second one of 10 s that measures how late its
    /// bytes reach the application (`xtask/latency_probe.py`: stamped
    /// blocks, one-way, the clock every namespace shares): iperf3's round
    /// trip is TCP_INFO, which on an MPTCP socket is its first subflow's.
    #[arg(long)]
    pub latency: bool,
    /// Ping across (ICMP, 5 a second) while each stream runs, from its
    /// second second on: what interactive traffic waits beside a bulk
    /// stream (over MPTCP the ping takes the first path, as any non-MPTCP
    /// traffic does).
    #[arg(long)]
    pub ping: bool,
    /// Print each run's Mbit/s second by second (as the sender counted):
    /// a second that stands out (an outage, BBR's ProbeRTT) shows.
    #[arg(long)]
    pub seconds: bool,
    /// Where the JSON and the chart go.
    #[arg(long, default_value = "target/bench")]
    pub out: PathBuf,
}

pub fn run(b: Bench) -> Result<()> {
    match b {
        Bench::Agg(a) => agg(*a),
        Bench::Control(c) => crate::control::control(c),
        Bench::Overlay(o) => crate::overlay::overlay(o),
        Bench::Mesh(m) => crate::mesh::mesh(m),
        Bench::Arp(a) => crate::arp::arp(a),
    }
}

const A: &str = "xgb-a";
const B: &str = "xgb-b";
const SW: &str = "xgb-sw";
/// The reference that is not a way to aggregate: one link as fast as the
/// case's links together, over the same kind of veth and tbf. What it
/// carries is as much as this machine moves in one TCP stream at that
/// rate, the ceiling every method's figure is under.
const SUM_LINK: &str = "one link of the sum";

struct Method {
    name: String,
    /// For xgre: the striping unit (segments per GSO packet), if set.
    burst: Option<u32>,
    /// For xgre: RFC 2890 sequence numbers on.
    seq: bool,
    /// For xgre: numbers in the outer IPv4 ID (`ip_id_sequence`).
    ip_id: bool,
    /// For xgre: `device_counters = false` (no veth crossings).
    no_counters: bool,
    /// For xgre: each path's `rate` instead of a weight.
    by_rate: bool,
    /// For xgre: `tcp_reordering`, if set.
    reordering: Option<u32>,
    /// For xgre: `resequence` (ms) under `xgre run`, if set.
    resequence: Option<u32>,
    /// For xgre: the resequencer hands off through a tap.
    tap: bool,
}

/// A busy loop pinned to CPU 0 for as long as it lives.
struct CpuLoad(std::process::Child);

impl CpuLoad {
    fn start() -> Result<CpuLoad> {
        let c = std::process::Command::new("taskset")
            .args(["-c", "0", "sh", "-c", "while :; do :; done"])
            .spawn()
            .context("starting the background load")?;
        Ok(CpuLoad(c))
    }
}

impl Drop for CpuLoad {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The tbf bucket of a link of `rate` Mbit/s: 64 KB, or `ms` of its rate
/// (at least two full frames).
fn bucket(rate: u32, ms: Option<f64>) -> String {
    match ms {
        Some(ms) => format!("{}b", ((rate as f64 * 1e6 / 8.0 * ms / 1e3) as u64).max(3028)),
        None => "64kb".into(),
    }
}

fn bucket_text(args: &AggArgs) -> String {
    args.burst_ms.map_or("64 KiB".to_string(), |ms| format!("{ms} ms of each link's rate"))
}

/// The links of `topology` through delay lines instead of the switch: link
/// i crosses namespace `xgb-l{i}`, where a relay holds each frame for
/// `delay[i]` ms each way; the relays stop when dropped, before the
/// namespaces go.
fn delayed_topology(rates: &[u32], args: &AggArgs, xgre: &str) -> Result<(Vec<delayline::Relay>, Namespaces)> {
    let lines: Vec<String> = (0..rates.len()).map(|i| format!("xgb-l{i}")).collect();
    let mut names = vec![A, B];
    names.extend(lines.iter().map(String::as_str));
    let ns = Namespaces::new(&names, xgre)?;
    let mut relays = Vec::new();
    for (i, &rate) in rates.iter().enumerate() {
        let l = &lines[i];
        let burst = bucket(rate, args.burst_ms);
        sh(&format!(
            "ip link add a{i} netns {A} type veth peer name la netns {l} && ip link add b{i} netns {B} type veth peer name lb netns {l} && \
             ip -n {A} addr add 198.18.{i}.10/24 dev a{i} && ip -n {B} addr add 198.18.{i}.20/24 dev b{i}"
        ))?;
        for (n, dev) in [(A, format!("a{i}")), (B, format!("b{i}")), (l.as_str(), "la".into()), (l.as_str(), "lb".into())] {
            sh(&format!(
                "ip -n {n} link set {dev} up && ip netns exec {n} ethtool -K {dev} gro off tso off gso off tx off rx off >/dev/null"
            ))?;
        }
        for (n, dev) in [(A, format!("a{i}")), (B, format!("b{i}"))] {
            sh(&format!("tc -n {n} qdisc add dev {dev} root tbf rate {rate}mbit burst {burst} latency 20ms"))?;
        }
        let secs = std::time::Duration::from_secs;
        let line = delayline::Line {
            delay: std::time::Duration::from_millis(args.delay.get(i).copied().unwrap_or(0)),
            loss: args.loss.get(i).copied().unwrap_or(0.0) / 100.0,
            flap: (i + 1 == rates.len() && args.flap.len() == 2)
                .then(|| delayline::Flap { every: secs(args.flap[0]), down: secs(args.flap[1]) }),
            ..Default::default()
        };
        relays.push(delayline::Relay::start(l, "la", "lb", line)?);
    }
    sh(&format!("ip -n {A} addr add 198.19.200.1/32 dev lo && ip -n {B} addr add 198.19.200.2/32 dev lo"))?;
    Ok((relays, ns))
}

fn topology(rates: &[u32], both_ends: bool, burst_ms: Option<f64>, xgre: &str) -> Result<Namespaces> {
    let n = rates.len() as u32;
    let ns = Namespaces::new(&[A, B, SW], xgre)?;
    // Several NICs on one segment: each answers ARP only for its own
    // address, so every path resolves to the NIC it names.
    let mut s = format!(
        "ip -n {SW} link add br0 type bridge && ip -n {SW} link set br0 up && \
         ip netns exec {A} sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 && \
         ip netns exec {B} sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2"
    );
    for i in 0..n {
        let rate = rates[i as usize];
        let burst = bucket(rate, burst_ms);
        for (h, host, oct) in [("a", A, 10), ("b", B, 20)] {
            write!(
                s,
                " && ip link add {h}{i} netns {host} type veth peer name s{h}{i} netns {SW} \
                 && ip -n {SW} link set s{h}{i} master br0 up \
                 && ip -n {host} addr add 198.18.{i}.{oct}/24 dev {h}{i} && ip -n {host} link set {h}{i} up \
                 && tc -n {host} qdisc add dev {h}{i} root tbf rate {rate}mbit burst {burst} latency 20ms"
            )?;
            if both_ends {
                write!(s, " && tc -n {SW} qdisc add dev s{h}{i} root tbf rate {rate}mbit burst {burst} latency 20ms")?;
            }
        }
    }
    sh(&s)?;
    // Endpoint addresses the routing-based methods use.
    sh(&format!("ip -n {A} addr add 198.19.200.1/32 dev lo && ip -n {B} addr add 198.19.200.2/32 dev lo"))?;
    Ok(ns)
}

fn xgre_config(me: char, rates: &[u32], m: &Method, rx: &str) -> String {
    let n = rates.len() as u32;
    let burst = m.burst;
    // Weights are shares: the rates, in tens of Mbit/s (at least 1).
    let weight = |i: u32| (rates[i as usize] / 10).clamp(1, 1000);
    let equal = rates.iter().all(|&r| r == rates[0]);
    let (my, peer, inner_me, inner_peer, pname) = match me {
        'a' => ("a", 20, "198.19.100.1", "198.19.100.2", "b"),
        _ => ("b", 10, "198.19.100.2", "198.19.100.1", "a"),
    };
    let my_oct = if me == 'a' { 10 } else { 20 };
    let mut c = format!("[tunnel]\nname = \"gre0\"\naddress = [\"{inner_me}/32\"]\n");
    if let Some(b) = burst {
        writeln!(c, "stripe_burst = {b}").unwrap();
    }
    if m.seq {
        writeln!(c, "sequence = true").unwrap();
    }
    if m.ip_id {
        writeln!(c, "ip_id_sequence = true").unwrap();
    }
    if m.no_counters {
        writeln!(c, "device_counters = false").unwrap();
    }
    if let Some(r) = m.reordering {
        writeln!(c, "tcp_reordering = {r}").unwrap();
    }
    if let Some(ms) = m.resequence {
        // Keepalives would only add packets; the links never fail here.
        writeln!(c, "resequence = {ms}\nkeepalive = 0").unwrap();
    }
    for i in 0..n {
        write!(c, "\n[[link]]\ndev = \"{my}{i}\"\naddress = \"198.18.{i}.{my_oct}\"\nrx = \"{rx}\"\n").unwrap();
    }
    write!(c, "\n[[peer]]\nname = \"{pname}\"\nroutes = [\"{inner_peer}/32\"]\n").unwrap();
    for i in 0..n {
        write!(c, "[[peer.path]]\nlink = \"{my}{i}\"\nremote = \"198.18.{i}.{peer}\"\n").unwrap();
        if m.by_rate {
            writeln!(c, "rate = \"{}mbit\"", rates[i as usize]).unwrap();
        } else if !equal {
            writeln!(c, "weight = {}", weight(i)).unwrap();
        }
    }
    c
}

/// Configure a method on a fresh topology; returns the address to connect
/// to and extra iperf3 client arguments.
fn prepare(m: &Method, rates: &[u32], xgre: &str, dir: &std::path::Path, settle_secs: u64, rx: &str) -> Result<(String, String, bool)> {
    let n = rates.len() as u32;
    match m.name.as_str() {
        "single link" | SUM_LINK => Ok(("198.18.0.20".into(), "-B 198.18.0.10".into(), false)),
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
                std::fs::write(&f, xgre_config(me, rates, m, rx))?;
                // Under `xgre run`, as striped tunnels are run: path
                // health, and the resequencing a config gets by default.
                start_run(host, xgre, &f, &dir.join(format!("{me}-run.log")), m.tap)?;
            }
            // The keepalives that announce numbering go every 100 ms.
            std::thread::sleep(std::time::Duration::from_millis(300));
            settle(&dir.join("a-run.log"), settle_secs);
            Ok(("198.19.100.2".into(), String::new(), false))
        }
    }
}

/// Wait up to `secs` for the log of `xgre run` to say it numbers.
fn settle(log: &std::path::Path, secs: u64) {
    if secs == 0 {
        return;
    }
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_secs(secs) {
        if std::fs::read_to_string(log).unwrap_or_default().contains("numbering packets") {
            println!("    xgre run numbered its packets after {:.1} s", start.elapsed().as_secs_f64());
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    println!("    xgre run did not number its packets within {secs} s");
}

/// `xgre run -c cfg` in `host`, in the background (the namespace's
/// teardown kills it), once it says it resequences.
fn start_run(host: &str, xgre: &str, cfg: &std::path::Path, log: &std::path::Path, tap: bool) -> Result<()> {
    let out = std::fs::File::create(log)?;
    std::process::Command::new("nsenter")
        .env("XGRE_RESEQ_HANDOFF", if tap { "tap" } else { "xsk" })
        .arg(format!("--net=/run/netns/{host}"))
        .args([xgre, "run", "-c"])
        .arg(cfg)
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .context("starting xgre run")?;
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_secs(10) {
        let said = std::fs::read_to_string(log).unwrap_or_default();
        if said.contains("resequencing") {
            return Ok(());
        }
        if said.contains("xgre:") {
            bail!("xgre run in {host}: {said}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    bail!("xgre run in {host} did not start resequencing within 10 s: {}", std::fs::read_to_string(log).unwrap_or_default())
}

/// What the receiver's resequencer did: stop its `xgre run` and read its
/// last word.
fn resequencer_said(dir: &std::path::Path) -> String {
    let cfg = dir.join("b.toml");
    let _ = sh_out(&format!("pkill -TERM -f 'run -c {}'", cfg.display()));
    let log = dir.join("b-run.log");
    for _ in 0..40 {
        let said = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(l) = said.lines().find(|l| l.contains("resequenced")) {
            return l.split_once(": ").map_or(l, |(_, r)| r).to_string();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    "said nothing".into()
}

struct Row {
    /// The case: "4×200", "300+100".
    case: String,
    /// Sum of the link rates, Mbit/s.
    capacity: f64,
    method: String,
    /// Median over the runs, and its retransmits.
    mbps: f64,
    retr: u64,
    /// Every run (Mbit/s, retransmits), slowest first.
    all: Vec<(f64, u64)>,
    /// `--prog-cost`: the median run's program costs.
    cost: Option<String>,
    /// `--streams`: the slowest stream of any run, % of a fair share.
    slowest_flow: Option<f64>,
    /// The median run's idle share of both cores, %.
    idle: f64,
}

/// One run of one method.
#[derive(Clone)]
struct RunResult {
    mbps: f64,
    retransmits: u64,
    /// `--prog-cost`: the programs' cost.
    cost: Option<String>,
    /// `--streams`: the slowest stream's share of a fair split, %.
    fairest: Option<f64>,
    /// Both cores' idle share, %.
    idle: f64,
}

/// The slowest of parallel streams as a share of an even split of their
/// sum, %; None for one stream.
fn fair_share(flows: &[f64]) -> Option<f64> {
    let sum: f64 = flows.iter().sum();
    let least = flows.iter().copied().reduce(f64::min)?;
    (flows.len() > 1 && sum > 0.0).then(|| 100.0 * least * flows.len() as f64 / sum)
}

fn flows_text(flows: &[f64]) -> String {
    flows.iter().map(|f| format!("{f:.1}")).collect::<Vec<_>>().join(" ")
}

/// A case's label: "4×200" for equal links, "300+100" for unequal ones.
fn case_label(rates: &[u32]) -> String {
    if rates.iter().all(|&r| r == rates[0]) {
        format!("{}×{}", rates.len(), rates[0])
    } else {
        rates.iter().map(|r| r.to_string()).collect::<Vec<_>>().join("+")
    }
}

/// The cases the arguments ask for: `--rates`, else N equal links per `--links`.
fn cases(args: &AggArgs) -> Vec<Vec<u32>> {
    match &args.rates {
        Some(r) if !r.is_empty() => vec![r.clone()],
        _ => args.links.iter().map(|&n| vec![args.rate; n as usize]).collect(),
    }
}

fn agg(args: AggArgs) -> Result<()> {
    let secs = args.secs.max(8);
    let cc = match &args.cc {
        Some(c) => c.clone(),
        None => sh("cat /proc/sys/net/ipv4/tcp_congestion_control")?.trim().to_string(),
    };
    let ends = if args.one_end { "the host NIC" } else { "both ends (host NIC and switch port)" };
    step(&format!("TCP congestion control: {cc}; tbf at {ends}, burst {}, latency 20 ms", bucket_text(&args)));
    let xgre = build_release()?.display().to_string();
    sh("command -v mptcpize >/dev/null").context("mptcpize is missing (cargo xtask setup installs it)")?;
    let dir = std::env::temp_dir().join("xgre-bench");
    std::fs::create_dir_all(&dir)?;
    let plain = |s: &str| Method {
        name: s.to_string(),
        burst: None,
        seq: false,
        ip_id: false,
        no_counters: false,
        by_rate: false,
        reordering: None,
        resequence: None,
        tap: false,
    };
    let mut methods: Vec<Method> =
        ["single link", SUM_LINK, "ECMP", "iptables statistic", "MPTCP", "xgre"].iter().map(|s| plain(s)).collect();
    if args.seq {
        methods.push(Method { name: "xgre seq".into(), seq: true, ..plain("") });
        // Whether the tunnel device's veth crossings (the price of its
        // counters) matter to one-segment packets.
        methods.push(Method { name: "xgre seq, no dev ctr".into(), seq: true, no_counters: true, ..plain("") });
    }
    if args.by_rate || args.rates.as_ref().is_some_and(|r| r.iter().any(|&x| x != r[0])) {
        methods.push(Method { name: "xgre rate".into(), by_rate: true, ..plain("") });
    }
    if let Some(units) = &args.units {
        let units = if units.is_empty() { vec![1, 2, 4, 16] } else { units.clone() };
        for b in units {
            methods.push(Method { name: format!("xgre burst {b}"), burst: Some(b), ..plain("") });
        }
    }
    for &r in &args.reordering {
        methods.push(Method { name: format!("xgre reordering {r}"), reordering: Some(r), ..plain("") });
    }
    for &ms in &args.resequence {
        if args.ip_id.as_deref() != Some("only") {
            methods.push(Method { name: format!("xgre reseq {ms} ms"), seq: true, resequence: Some(ms), ..plain("") });
        }
        if args.ip_id.is_some() {
            methods.push(Method { name: format!("xgre reseq {ms} ms ip id"), ip_id: true, resequence: Some(ms), ..plain("") });
        }
    }
    if args.tap_handoff {
        methods.push(Method { name: "xgre tap hand-off".into(), tap: true, ..plain("") });
    }
    if !args.only.is_empty() {
        // Variants asked for by --units, --reordering, --resequence and
        // --tap-handoff stay.
        methods.retain(|m| {
            m.burst.is_some()
                || m.reordering.is_some()
                || m.resequence.is_some()
                || m.tap
                || args.only.iter().any(|o| o.eq_ignore_ascii_case(&m.name))
        });
        if methods.is_empty() {
            bail!("--only matches no method");
        }
    }
    let _load = if args.cpu_load {
        step("background load: one busy process pinned to CPU 0 for the whole run");
        Some(CpuLoad::start()?)
    } else {
        None
    };
    let _stats = if args.prog_cost { Some(crate::progcost::stats_on()?) } else { None };
    let mut rows = Vec::new();
    let runs = args.runs.max(1);
    let cases = cases(&args);
    let total = cases.len() * methods.len() * runs as usize;
    let mut k = 0;
    for rates in &cases {
        let label = case_label(rates);
        let capacity: u32 = rates.iter().sum();
        // Methods take turns run by run, so a slow minute on a shared
        // machine hits all of them alike.
        let mut results: Vec<Vec<RunResult>> = vec![Vec::new(); methods.len()];
        let mut latencies: Vec<Vec<f64>> = vec![Vec::new(); methods.len()];
        let mut pings: Vec<Vec<f64>> = vec![Vec::new(); methods.len()];
        let lines = !(args.delay.is_empty() && args.loss.is_empty() && args.flap.is_empty());
        for _ in 0..runs {
            for (mi, m) in methods.iter().enumerate() {
                k += 1;
                if m.name == SUM_LINK && (lines || rates.len() < 2) {
                    // Paths that differ in delay or loss have no one
                    // link that stands for them; one link is its own sum.
                    continue;
                }
                step(&format!("[{k}/{total}] {label} Mbit/s: {} ({secs} s)", m.name));
                let (relays, ns) = if lines {
                    delayed_topology(rates, &args, &xgre)?
                } else if m.name == SUM_LINK {
                    (Vec::new(), topology(&[capacity], !args.one_end, args.burst_ms, &xgre)?)
                } else {
                    (Vec::new(), topology(rates, !args.one_end, args.burst_ms, &xgre)?)
                };
                let (addr, mut extra, mptcp) = prepare(m, rates, &xgre, &dir, args.settle, &args.rx)?;
                if let Some(cc) = &args.cc {
                    extra.push_str(&format!(" -C {cc}"));
                }
                if args.streams > 1 {
                    extra.push_str(&format!(" -P {}", args.streams));
                }
                let before = args.prog_cost.then(crate::progcost::snapshot);
                let cpu_before = CpuTimes::read();
                let ping = args.ping.then(|| Ping::start(&addr, secs)).transpose()?;
                let stream = if mptcp { mptcp_iperf(&ns, &addr, secs, &extra)? } else { iperf_stream(&ns, B, A, &addr, secs, &extra)? };
                if let Some(p) = ping {
                    match p.finish() {
                        Ok([lo, avg, hi]) => {
                            println!("    ping during the stream: {lo:.1} / {avg:.1} / {hi:.1} ms (min / mean / max)");
                            pings[mi].push(avg);
                        }
                        Err(e) => println!("    ping: not measured ({e:#})"),
                    }
                }
                let (mbps, retr) = (stream.mbps, stream.retransmits);
                let cpu = CpuTimes::read().since(&cpu_before);
                let (dsack, dropped) = why_retransmitted(&ns)?;
                // The sender's RTT: RACK's reordering window is bounded by
                // it, so a run's RTT is the first thing to compare between
                // a good and a bad run.
                let rtt =
                    stream.rtt_us.map(|[lo, mean, hi]| format!("; RTT {lo} / {mean} / {hi} µs (min / mean / max)")).unwrap_or_default();
                println!(
                    "    {mbps:.0} Mbit/s ({:.0}% of {capacity}), {retr} retransmits ({dsack} proven spurious by DSACK: reordering; {dropped} dropped by the links' queues){rtt}; CPU: {cpu}; {}",
                    100.0 * mbps / capacity as f64,
                    cpu.per_packet(mbps, secs)
                );
                if args.seconds {
                    let each: Vec<String> = stream.seconds.iter().map(|v| format!("{v:.0}")).collect();
                    println!("    each second: {} Mbit/s", each.join(" "));
                }
                if !args.flap.is_empty() {
                    // The first second is the stream's start, not an outage.
                    let worst = stream.seconds.iter().skip(1).copied().reduce(f64::min).unwrap_or(0.0);
                    println!("    slowest second after the first: {worst:.0} Mbit/s (one link: {} Mbit/s)", rates[0]);
                }
                if args.latency {
                    match latency(&ns, &addr, mptcp, args.cc.as_deref()) {
                        Ok(l) => {
                            println!(
                                "    latency: its bytes reached the application {} / {} / {} / {} ms after they were written (min / median / p90 / max) at {} Mbit/s",
                                l["min"], l["median"], l["p90"], l["max"], l["mbps"]
                            );
                            latencies[mi].push(l["median"].as_f64().unwrap_or(f64::NAN));
                        }
                        Err(e) => println!("    latency: not measured ({e:#})"),
                    }
                }
                let fairest = fair_share(&stream.flows);
                if let Some(f) = fairest {
                    println!("    {} streams: the slowest at {f:.0}% of a fair share ({})", stream.flows.len(), flows_text(&stream.flows));
                }
                if m.name.starts_with("xgre") {
                    println!("    resequencer: {}", resequencer_said(&dir));
                    let sender = std::fs::read_to_string(dir.join("a-run.log")).unwrap_or_default();
                    if let Some(l) = sender.lines().find(|l| l.contains("numbering packets")) {
                        println!("    sender: {}", l.split_once(": ").map_or(l, |(_, r)| r));
                    }
                }
                let cost = before.filter(|_| m.name.starts_with("xgre")).map(|before| {
                    let c = crate::progcost::describe(&crate::progcost::between(&before, &crate::progcost::snapshot()));
                    println!("    programs: {c}");
                    c
                });
                results[mi].push(RunResult { mbps, retransmits: retr, cost, fairest, idle: cpu.idle_percent() });
                // The relays' threads live in the namespaces: they go first.
                let lines: Vec<delayline::Stats> = relays.into_iter().flat_map(|r| r.stop().unwrap_or_default()).collect();
                let failed: u64 = lines.iter().map(|s| s.failed).sum();
                if failed > 0 {
                    println!("    the delay line dropped {failed} frames of its own: this run's figure is not to be trusted");
                }
                if let Some(late) = lines.iter().map(|s| s.worst_late).max().filter(|l| *l > std::time::Duration::from_millis(5)) {
                    println!("    the delay line let a frame leave {:.1} ms late (kept from running)", late.as_secs_f64() * 1e3);
                }
                drop(ns);
            }
        }
        for (what, runs) in [("mean ping beside the stream", &mut pings), ("median latency", &mut latencies)] {
            for (m, l) in methods.iter().zip(runs).filter(|(_, l)| !l.is_empty()) {
                l.sort_by(f64::total_cmp);
                println!(
                    "    {label} {}: {what} {:.1} / {:.1} / {:.1} ms (min / median / max of the runs)",
                    m.name,
                    l[0],
                    l[l.len() / 2],
                    l[l.len() - 1]
                );
            }
        }
        for (m, mut r) in methods.iter().zip(results).filter(|(_, r)| !r.is_empty()) {
            r.sort_by(|a, b| a.mbps.total_cmp(&b.mbps));
            let median = r[r.len() / 2].clone();
            let slowest_flow = r.iter().filter_map(|x| x.fairest).reduce(f64::min);
            let all = r.iter().map(|x| (x.mbps, x.retransmits)).collect();
            rows.push(Row {
                case: label.clone(),
                capacity: capacity as f64,
                method: m.name.clone(),
                mbps: median.mbps,
                retr: median.retransmits,
                all,
                cost: median.cost,
                slowest_flow,
                idle: median.idle,
            });
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    report(&args, &cases, &rows)
}

/// Each CPU's time from /proc/stat, to tell a run that lost to the machine
/// (another guest's steal, no idle left) from one that lost to the method.
struct CpuTimes(Vec<[u64; 3]>);

impl CpuTimes {
    /// Per CPU: total, idle (with iowait) and steal ticks.
    fn read() -> Self {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        CpuTimes(
            stat.lines()
                .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
                .map(|l| {
                    let v: Vec<u64> = l.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
                    let at = |i: usize| v.get(i).copied().unwrap_or(0);
                    // guest time is already counted in user time.
                    [v.iter().take(8).sum(), at(3) + at(4), at(7)]
                })
                .collect(),
        )
    }

    fn since(&self, before: &CpuTimes) -> CpuTimes {
        CpuTimes(self.0.iter().zip(&before.0).map(|(a, b)| [a[0] - b[0], a[1] - b[1], a[2] - b[2]]).collect())
    }
}

impl CpuTimes {
    /// Busy CPU (both cores, everything: senders, receivers, links) per
    /// full-sized TCP segment carried, in µs and in cycles at the clock
    /// /proc/cpuinfo gives (this machine has no cycle counters for perf).
    fn per_packet(&self, mbps: f64, secs: u32) -> String {
        // USER_HZ: /proc/stat counts hundredths of a second.
        let busy: u64 = self.0.iter().map(|[total, idle, steal]| total - idle - steal).sum();
        let busy_s = busy as f64 / 100.0;
        let packets = mbps * 1e6 * secs as f64 / 8.0 / 1448.0;
        let mhz = std::fs::read_to_string("/proc/cpuinfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("cpu MHz").and_then(|v| v.trim_start_matches([' ', '\t', ':']).trim().parse::<f64>().ok()))
            .unwrap_or(0.0);
        if packets < 1.0 {
            return "no packets".into();
        }
        let us = busy_s * 1e6 / packets;
        format!("{us:.2} µs of busy CPU per segment (~{:.0} cycles at {mhz:.0} MHz)", us * mhz)
    }
}

impl CpuTimes {
    /// Idle time as a share of all the cores' time, %: stolen time is not
    /// idle (the guest wanted the core).
    fn idle_percent(&self) -> f64 {
        let (total, idle) = self.0.iter().fold((0, 0), |(t, i), [total, idle, _]| (t + total, i + idle));
        100.0 * idle as f64 / total.max(1) as f64
    }
}

impl std::fmt::Display for CpuTimes {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        for (i, [total, idle, steal]) in self.0.iter().enumerate() {
            let pct = |x: u64| 100.0 * x as f64 / (*total).max(1) as f64;
            write!(f, "{}cpu{i} idle {:.0}% steal {:.0}%", if i > 0 { ", " } else { "" }, pct(*idle), pct(*steal))?;
        }
        Ok(())
    }
}

/// Why a run retransmitted: the DSACKs the sender received (a segment
/// arrived twice, so its retransmit was spurious: reordering made RACK call
/// it lost) and the packets the links' tbf queues dropped (real loss).
fn why_retransmitted(ns: &Namespaces) -> Result<(u64, u64)> {
    let netstat = ns.exec(A, "cat /proc/net/netstat")?;
    let mut lines = netstat.lines().filter(|l| l.starts_with("TcpExt:"));
    let dsack = match (lines.next(), lines.next()) {
        (Some(names), Some(values)) => names
            .split_whitespace()
            .zip(values.split_whitespace())
            .filter(|(n, _)| *n == "TCPDSACKRecv" || *n == "TCPDSACKOfoRecv")
            .filter_map(|(_, v)| v.parse::<u64>().ok())
            .sum(),
        _ => 0,
    };
    let mut dropped = 0;
    for n in ns.names.iter().map(String::as_str) {
        let qd = sh(&format!("tc -n {n} -s qdisc show"))?;
        // The links' tbf only: clsact counts what a TC program consumes
        // (our keepalive replies) as dropped too.
        for q in qd.split("qdisc ").filter(|q| q.starts_with("tbf ")) {
            let mut words = q.split_whitespace();
            while let Some(w) = words.next() {
                if w == "(dropped" {
                    dropped += words.next().and_then(|v| v.trim_end_matches(',').parse::<u64>().ok()).unwrap_or(0);
                }
            }
        }
    }
    Ok((dsack, dropped))
}

/// A ping from A to `addr` beside a stream of `secs`: it starts a second
/// in (past the stream's start) and ends a second before the stream.
struct Ping(std::process::Child);

impl Ping {
    fn start(addr: &str, secs: u32) -> Result<Ping> {
        let count = (secs.saturating_sub(2) * 5).max(1);
        let child = std::process::Command::new("nsenter")
            .arg(format!("--net=/run/netns/{A}"))
            .args(["timeout", &(secs + 5).to_string(), "sh", "-c", &format!("sleep 1; exec ping -q -i 0.2 -c {count} {addr}")])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("starting ping")?;
        Ok(Ping(child))
    }

    /// Round trips: min, mean and max, ms.
    fn finish(self) -> Result<[f64; 3]> {
        let out = self.0.wait_with_output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let v: Vec<f64> = text
            .lines()
            .find_map(|l| l.split_once(" = "))
            .map(|(_, v)| v.split(['/', ' ']).filter_map(|x| x.parse().ok()).collect())
            .unwrap_or_default();
        match v[..] {
            [lo, avg, hi, ..] => Ok([lo, avg, hi]),
            _ => bail!("ping said: {text}"),
        }
    }
}

/// One latency probe (`xtask/latency_probe.py`) from A to `addr` in B:
/// what the server said, as JSON.
fn latency(ns: &Namespaces, addr: &str, mptcp: bool, cc: Option<&str>) -> Result<serde_json::Value> {
    const SECS: u32 = 10;
    let probe = crate::workspace_root().join("xtask/latency_probe.py");
    let out = std::env::temp_dir().join("xgre-bench-latency.json");
    let _ = std::fs::remove_file(&out);
    let wrap = if mptcp { "mptcpize run " } else { "" };
    sh(&format!("nsenter --net=/run/netns/{B} {wrap}/usr/bin/python3 {} server 5202 {SECS} > {} 2>&1 &", probe.display(), out.display()))?;
    std::thread::sleep(std::time::Duration::from_millis(500));
    ns.exec(
        A,
        &format!("timeout {} {wrap}/usr/bin/python3 {} client {addr} 5202 {SECS} {}", SECS + 20, probe.display(), cc.unwrap_or("")),
    )?;
    for _ in 0..100 {
        if let Ok(v) = serde_json::from_str(std::fs::read_to_string(&out).unwrap_or_default().trim()) {
            return Ok(v);
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    bail!("the probe's server said: {}", std::fs::read_to_string(&out).unwrap_or_default())
}

fn mptcp_iperf(ns: &Namespaces, addr: &str, secs: u32, extra: &str) -> Result<Stream> {
    sh(&format!("nsenter --net=/run/netns/{B} mptcpize run iperf3 -s -1 -D -p 5201"))?;
    std::thread::sleep(std::time::Duration::from_millis(300));
    Stream::parse(&ns.exec(A, &format!("timeout {} mptcpize run iperf3 -c {addr} -p 5201 -t {secs} -J {extra}", secs + 20))?)
}

impl Row {
    /// The worst run's retransmits as a share of the segments it delivered,
    /// counted as full 1448-byte segments: tunnels' segments are smaller,
    /// so the real share is a little lower, never higher.
    fn worst_retransmitted(&self, secs: f64) -> f64 {
        let share = |mbps: f64, retransmits: u64| 100.0 * retransmits as f64 / (mbps * 1e6 * secs / 8.0 / 1448.0).max(1.0);
        self.all.iter().map(|&(m, t)| share(m, t)).fold(0.0, f64::max)
    }
}

fn report(args: &AggArgs, cases: &[Vec<u32>], rows: &[Row]) -> Result<()> {
    step(&format!("results: one TCP connection, same topology, same run ({} runs each: min, median, max)", args.runs.max(1)));
    let w = rows.iter().map(|r| r.method.len()).max().unwrap_or(0).max(20);
    println!(
        "    {:<8} {:<w$} {:>8} {:>8} {:>8} {:>10} {:>9} {:>9} {:>6}  all runs (Mbit/s/retransmits)",
        "links", "method", "min %", "median %", "max %", "median", "retrans", "worst rt%", "idle"
    );
    let secs = args.secs.max(8) as f64;
    for r in rows {
        let pct = |v: f64| 100.0 * v / r.capacity;
        let (min, max) = (r.all[0].0, r.all[r.all.len() - 1].0);
        let all: Vec<String> = r.all.iter().map(|(v, t)| format!("{v:.1}/{t}")).collect();
        println!(
            "    {:<8} {:<w$} {:>7.1}% {:>7.1}% {:>7.1}% {:>10.0} {:>9} {:>8.2}% {:>5.0}%  {}",
            r.case,
            r.method,
            pct(min),
            pct(r.mbps),
            pct(max),
            r.mbps,
            r.retr,
            r.worst_retransmitted(secs),
            r.idle,
            all.join(" ")
        );
    }
    for rates in cases {
        let label = case_label(rates);
        let x = rows.iter().find(|r| r.case == label && r.method == "xgre");
        let best = rows
            .iter()
            .filter(|r| r.case == label && !r.method.starts_with("xgre") && r.method != SUM_LINK)
            .max_by(|a, b| a.mbps.total_cmp(&b.mbps));
        if let (Some(x), Some(b)) = (x, best) {
            println!(
                "    {label}: xgre median {:.1}% of capacity (worst run {:.1}%), {:.2}× the best other method ({}, median)",
                100.0 * x.mbps / x.capacity,
                100.0 * x.all[0].0 / x.capacity,
                x.mbps / b.mbps,
                b.method
            );
        }
        if let (Some(x), Some(one)) = (x, rows.iter().find(|r| r.case == label && r.method == SUM_LINK)) {
            println!(
                "    {label}: one link of {:.0} Mbit/s carried {:.1}% of it (median, {:.0}% idle); xgre {:.1}% ({:.0}% idle): {:.2}× the one link",
                one.capacity,
                100.0 * one.mbps / one.capacity,
                one.idle,
                100.0 * x.mbps / x.capacity,
                x.idle,
                x.mbps / one.mbps
            );
        }
    }
    for r in rows {
        if let Some(f) = r.slowest_flow {
            println!("    {} {}: the slowest of {} streams in any run at {f:.0}% of a fair share", r.case, r.method, args.streams);
        }
    }
    for r in rows.iter().filter(|r| r.cost.is_some()) {
        println!("    {} {} (median run) programs: {}", r.case, r.method, r.cost.as_deref().unwrap_or_default());
    }
    std::fs::create_dir_all(&args.out)?;
    let json = json!({
        "tbf": if args.one_end { "host NIC" } else { "both ends" },
        "tbf_burst": bucket_text(args),
        "background_load": args.cpu_load,
        "congestion_control": args.cc.clone().unwrap_or_else(|| sh("cat /proc/sys/net/ipv4/tcp_congestion_control").unwrap_or_default().trim().to_string()),
        "secs": args.secs,
        "results": rows.iter().map(|r| json!({
            "links": r.case, "capacity_mbps": r.capacity, "method": r.method, "mbps": r.mbps,
            "percent_of_capacity": 100.0 * r.mbps / r.capacity, "retransmits": r.retr,
            "worst_retransmitted_percent": r.worst_retransmitted(secs),
            "idle_percent_median_run": r.idle,
            "program_cost": r.cost,
            "streams": args.streams,
            "slowest_stream_percent_of_fair": r.slowest_flow,
            "runs": r.all.iter().map(|(m, t)| json!({"mbps": m, "retransmits": t})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    });
    let jpath = args.out.join("agg.json");
    std::fs::write(&jpath, serde_json::to_string_pretty(&json)?)?;
    let cpath = args.out.join("agg.svg");
    chart(cases, rows, &cpath)?;
    println!("    wrote {} and {}", jpath.display(), cpath.display());
    Ok(())
}

fn chart(cases: &[Vec<u32>], rows: &[Row], path: &std::path::Path) -> Result<()> {
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
    let groups = cases.len();
    let width = 160 + 110 * methods.len() as u32 * groups as u32;
    let root = SVGBackend::new(path, (width.max(640), 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let slots = (methods.len() * groups + groups) as f64;
    let mut c = ChartBuilder::on(&root)
        .caption("One TCP connection over rate-limited links (% of their sum; bar: median, line: min to max)", ("sans-serif", 16))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..slots, 0f64..105f64)?;
    c.configure_mesh().disable_x_mesh().disable_x_axis().y_desc("% of capacity").draw()?;
    let colors = [RGBColor(150, 150, 150), RGBColor(120, 160, 200), RGBColor(230, 160, 80), RGBColor(140, 110, 190), RGBColor(40, 160, 90)];
    for (gi, rates) in cases.iter().enumerate() {
        let label = case_label(rates);
        for (mi, m) in methods.iter().enumerate() {
            let Some(r) = rows.iter().find(|r| r.case == label && &r.method == m) else { continue };
            let x0 = (gi * (methods.len() + 1) + mi) as f64 + 0.5;
            let pct = |v: f64| 100.0 * v / r.capacity;
            let color = colors[mi.min(colors.len() - 1)];
            c.draw_series(std::iter::once(Rectangle::new([(x0, 0.0), (x0 + 0.85, pct(r.mbps))], color.filled())))?;
            let (lo, hi) = (pct(r.all[0].0), pct(r.all[r.all.len() - 1].0));
            c.draw_series(std::iter::once(PathElement::new([(x0 + 0.42, lo), (x0 + 0.42, hi)], BLACK.stroke_width(2))))?;
            c.draw_series(std::iter::once(Text::new(format!("{:.0}%", pct(r.mbps)), (x0 + 0.1, hi + 4.0), ("sans-serif", 12))))?;
            c.draw_series(std::iter::once(Text::new(format!("{label} {m}"), (x0, -3.0), ("sans-serif", 10))))?;
        }
    }
    c.draw_series(LineSeries::new([(0.0, 90.0), (slots, 90.0)], RED.stroke_width(1)))?.label("90% target");
    root.present()?;
    Ok(())
}
