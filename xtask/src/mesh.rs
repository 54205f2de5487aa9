//! `cargo xtask bench mesh`: one real host and N simulated hosts' entries
//! in etcd (Debian's etcd-server, one member, in a namespace). Measures the
//! time until the real host has every peer installed, the time for one
//! change to reach its maps, and its etcd writes per minute while idle.
//! The driver (mesh_bench.py) runs in the real host's namespace.

use std::{path::PathBuf, process::Child, time::Duration};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::json;

use crate::{
    build_release,
    net::{sh, Namespaces},
    step, workspace_root,
};

#[derive(Args, Clone)]
pub struct MeshArgs {
    /// Simulated host counts, comma separated.
    #[arg(long, default_value = "100,1000", value_delimiter = ',')]
    pub hosts: Vec<u32>,
    /// Runs per host count (each starts `xgre run` afresh).
    #[arg(long, default_value_t = 3)]
    pub runs: u32,
    /// Entry changes timed per run.
    #[arg(long, default_value_t = 100)]
    pub changes: u32,
    /// Seconds of the idle window (last run of each count).
    #[arg(long, default_value_t = 30)]
    pub idle: u32,
    /// The mesh's lease TTL, seconds.
    #[arg(long, default_value_t = 10)]
    pub ttl: u32,
    #[arg(long, default_value = "target/bench")]
    pub out: PathBuf,
}

const HOST: &str = "xgm-h";
const ETCD: &str = "xgm-e";
const OTHER: &str = "xgm-o";
const PREFIX: &str = "/xgre/bench";

/// etcd in its namespace, killed with this value.
struct Etcd(Child);

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn config(ttl: u32) -> String {
    format!(
        "[tunnel]\nname = \"gre0\"\naddress = [\"198.19.255.254/32\"]\nkeepalive = 1000\n\n[[link]]\ndev = \"c0\"\naddress = \"198.18.0.1\"\n\n\
         [mesh]\netcd = [\"http://198.18.200.1:2379\"]\nprefix = \"{PREFIX}\"\nttl = {ttl}\nhost = \"real\"\n"
    )
}

fn stats(mut v: Vec<f64>) -> (f64, f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    (v[0], at(0.5), at(0.99), v[v.len() - 1])
}

struct Row {
    hosts: u32,
    sync_ms: Vec<f64>,
    start_ms: Vec<f64>,
    change_ms: Vec<f64>,
    idle_per_min: f64,
}

pub fn mesh(args: MeshArgs) -> Result<()> {
    if args.runs < 1 || args.changes < 1 {
        bail!("--runs and --changes must be at least 1");
    }
    let xgre = build_release()?.display().to_string();
    let dir = std::env::temp_dir().join("xgre-bench-mesh");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let ns = Namespaces::new(&[HOST, ETCD, OTHER], &xgre)?;
    sh(&format!(
        "ip link add m0 netns {HOST} type veth peer name m0 netns {ETCD} && ip -n {HOST} addr add 198.18.200.2/24 dev m0 && \
         ip -n {ETCD} addr add 198.18.200.1/24 dev m0 && ip -n {HOST} link set m0 up && ip -n {ETCD} link set m0 up && \
         ip link add c0 netns {HOST} type veth peer name c0 netns {OTHER} && ip -n {HOST} addr add 198.18.0.1/16 dev c0 && \
         ip -n {HOST} link set c0 up && ip -n {OTHER} link set c0 up"
    ))?;
    step("starting etcd (one member, in its own namespace)");
    let c = "http://198.18.200.1:2379";
    let etcd = Etcd(
        std::process::Command::new("nsenter")
            .arg(format!("--net=/run/netns/{ETCD}"))
            .args(["etcd", "--name", "bench", "--data-dir"])
            .arg(dir.join("etcd"))
            .args(["--listen-client-urls", c, "--advertise-client-urls", c, "--listen-peer-urls", "http://198.18.200.1:2380"])
            .stdout(std::fs::File::create(dir.join("etcd.log"))?)
            .stderr(std::fs::File::create(dir.join("etcd.err"))?)
            .spawn()
            .context("starting etcd")?,
    );
    let mut healthy = false;
    for _ in 0..100 {
        if ns.exec(HOST, &format!("env ETCDCTL_API=3 etcdctl --endpoints {c} endpoint health")).is_ok() {
            healthy = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    if !healthy {
        bail!("etcd did not become healthy: {}", std::fs::read_to_string(dir.join("etcd.err")).unwrap_or_default());
    }
    let cfg = dir.join("real.toml");
    std::fs::write(&cfg, config(args.ttl))?;
    let driver = workspace_root().join("xtask/mesh_bench.py");
    let mut rows = Vec::new();
    for &n in &args.hosts {
        let mut row = Row { hosts: n, sync_ms: vec![], start_ms: vec![], change_ms: vec![], idle_per_min: 0.0 };
        for r in 0..args.runs {
            let idle = if r + 1 == args.runs { args.idle } else { 0 };
            step(&format!(
                "{n} hosts, run {}/{}: write the entries, start xgre run, time the sync and {} changes{}",
                r + 1,
                args.runs,
                args.changes.min(n),
                if idle > 0 { format!(", then {idle} s idle") } else { String::new() }
            ));
            let out = ns.exec(
                HOST,
                &format!(
                    "/usr/bin/python3 {} 198.18.200.1:2379 {PREFIX} {n} {} {idle} {xgre} {}",
                    driver.display(),
                    args.changes.min(n),
                    cfg.display()
                ),
            )?;
            let j: serde_json::Value = serde_json::from_str(out.trim()).with_context(|| format!("the driver said: {out}"))?;
            let sync = j["sync_ms"].as_f64().context("sync_ms")?;
            let start = j["start_to_sync_ms"].as_f64().context("start_to_sync_ms")?;
            let ch: Vec<f64> = j["change_ms"].as_array().context("change_ms")?.iter().filter_map(|v| v.as_f64()).collect();
            let (_, med, p99, _) = stats(ch.clone());
            println!(
                "    in sync {sync:.0} ms after the tunnel was up ({start:.0} ms after start); change median {med:.1} ms, p99 {p99:.1} ms"
            );
            if let Some(w) = j["idle_writes_per_min"].as_f64() {
                println!("    idle: {w:.1} etcd writes/min (ttl {} s: one per ttl/3 is {:.1}/min)", args.ttl, 180.0 / args.ttl as f64);
                row.idle_per_min = w;
            }
            row.sync_ms.push(sync);
            row.start_ms.push(start);
            row.change_ms.extend(ch);
            let _ = ns.exec(HOST, &format!("{xgre} down gre0"));
        }
        rows.push(row);
    }
    drop(etcd);
    drop(ns);

    step("results (min / median / max of the runs; changes: median and p99 of all)");
    println!(
        "    {:>6} {:>22} {:>22} {:>16} {:>14}",
        "hosts", "in sync after up (ms)", "after start (ms)", "change med/p99", "idle writes/min"
    );
    let mut js = Vec::new();
    for r in &rows {
        let (smin, smed, _, smax) = stats(r.sync_ms.clone());
        let (tmin, tmed, _, tmax) = stats(r.start_ms.clone());
        let (_, cmed, cp99, _) = stats(r.change_ms.clone());
        println!(
            "    {:>6} {:>22} {:>22} {:>16} {:>14.1}",
            r.hosts,
            format!("{smin:.0} / {smed:.0} / {smax:.0}"),
            format!("{tmin:.0} / {tmed:.0} / {tmax:.0}"),
            format!("{cmed:.1} / {cp99:.1}"),
            r.idle_per_min
        );
        js.push(json!({"hosts": r.hosts, "sync_ms": r.sync_ms, "start_to_sync_ms": r.start_ms,
            "change_median_ms": cmed, "change_p99_ms": cp99, "changes": r.change_ms.len(), "idle_writes_per_min": r.idle_per_min}));
    }
    println!(
        "    targets: 1,000 hosts in sync < 2000 ms; change < 100 ms, p99 < 250 ms; idle <= {:.1} writes/min (one per ttl/3)",
        180.0 / args.ttl as f64
    );
    std::fs::create_dir_all(&args.out)?;
    let path = args.out.join("mesh.json");
    std::fs::write(&path, serde_json::to_string_pretty(&json!({"ttl": args.ttl, "rows": js}))?)?;
    println!("    wrote {}", path.display());
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
