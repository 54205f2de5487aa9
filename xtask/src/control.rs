//! `cargo xtask bench control`: the control plane, from one peer to many.
//! `up` time and one command-line `map-edit` end to end (min / median /
//! max over `--runs` fresh namespaces), map memory, the sustained rate of
//! batched map edits, and the resident memory of `xgre run`.

use std::{fmt::Write as _, time::Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::json;

use crate::{
    build_release,
    net::{sh, Namespaces},
    step,
};

#[derive(Args, Clone)]
pub struct ControlArgs {
    /// Peer counts to run, comma separated.
    #[arg(long, default_value = "1,10000", value_delimiter = ',')]
    pub peers: Vec<u32>,
    /// Fresh `up`s per peer count (each in new namespaces).
    #[arg(long, default_value_t = 3)]
    pub runs: u32,
    /// Single command-line map edits timed after each `up`.
    #[arg(long, default_value_t = 5)]
    pub single_edits: u32,
    /// Map edits in the edit-rate run.
    #[arg(long, default_value_t = 5000)]
    pub edits: u32,
    #[arg(long, default_value = "target/bench")]
    pub out: std::path::PathBuf,
}

const NS: &str = "xgc-a";
const OTHER: &str = "xgc-b";

fn config(n: u32) -> String {
    let mut c = String::from("[tunnel]\nname = \"gre0\"\naddress = [\"198.19.255.254/32\"]\nkeepalive = 1000\n\n[[link]]\ndev = \"c0\"\naddress = \"198.18.0.1\"\n");
    for i in 0..n {
        let _ = write!(
            c,
            "\n[[peer]]\nname = \"p{i}\"\nroutes = [\"198.19.{}.{}/32\"]\n[[peer.path]]\nlink = \"c0\"\nremote = \"198.18.{}.{}\"\nmac = \"02:00:00:{:02x}:{:02x}:01\"\n",
            i / 256,
            i % 256,
            1 + i / 250,
            1 + i % 250,
            i / 256,
            i % 256
        );
    }
    c
}

struct Row {
    peers: u32,
    /// Seconds of each `up`.
    up_s: Vec<f64>,
    /// Milliseconds of each single `map-edit` command, end to end.
    edit_ms: Vec<f64>,
    map_mib: f64,
    edits_per_s: f64,
    run_rss_mib: f64,
}

/// Min, median and max.
fn spread(v: &[f64]) -> (f64, f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    (s[0], s[s.len() / 2], s[s.len() - 1])
}

pub fn control(args: ControlArgs) -> Result<()> {
    let xgre = build_release()?.display().to_string();
    let dir = std::env::temp_dir().join("xgre-bench-control");
    std::fs::create_dir_all(&dir)?;
    let mut rows = Vec::new();
    for &n in &args.peers {
        let cfg = dir.join(format!("peers-{n}.toml"));
        std::fs::write(&cfg, config(n))?;
        let mut row = Row { peers: n, up_s: vec![], edit_ms: vec![], map_mib: 0.0, edits_per_s: 0.0, run_rss_mib: 0.0 };
        for run in 1..=args.runs.max(1) {
            let ns = Namespaces::new(&[NS, OTHER], &xgre)?;
            sh(&format!(
                "ip link add c0 netns {NS} type veth peer name c0 netns {OTHER} && ip -n {NS} addr add 198.18.0.1/16 dev c0 && ip -n {NS} link set c0 up && ip -n {OTHER} link set c0 up"
            ))?;
            let t = Instant::now();
            ns.exec(NS, &format!("{xgre} up -c {}", cfg.display()))?;
            row.up_s.push(t.elapsed().as_secs_f64());
            let status: serde_json::Value = serde_json::from_str(&ns.exec(NS, &format!("{xgre} status --json"))?)?;
            let peers = status["tunnels"][0]["peers"].as_array().map(|a| a.len()).unwrap_or(0);
            if peers != n as usize {
                bail!("status shows {peers} peers, want {n}");
            }
            row.map_mib = status["map_memory_bytes"].as_u64().unwrap_or(0) as f64 / (1 << 20) as f64;
            for k in 0..args.single_edits {
                let t = Instant::now();
                ns.exec(NS, &format!("{xgre} map-edit gre0 path set p0 0 --weight {}", 2 + k % 5))?;
                row.edit_ms.push(t.elapsed().as_secs_f64() * 1e3);
            }
            let (e0, e1, e2) = spread(&row.edit_ms[row.edit_ms.len() - args.single_edits as usize..]);
            let up = row.up_s[row.up_s.len() - 1];
            println!("    {n} peers, run {run}: up {up:.3} s; map-edit {e0:.1} / {e1:.1} / {e2:.1} ms; maps {:.1} MiB", row.map_mib);
            if run < args.runs {
                ns.exec(NS, &format!("{xgre} down gre0"))?;
                drop(ns);
                continue;
            }
            batch_and_run(&args, &xgre, &dir, &ns, &cfg, &mut row)?;
        }
        rows.push(row);
    }
    let _ = std::fs::remove_dir_all(&dir);
    report(&args, &rows)
}

/// The last run of a peer count: the batch edit rate, then `xgre run`'s
/// memory.
fn batch_and_run(
    args: &ControlArgs,
    xgre: &str,
    dir: &std::path::Path,
    ns: &Namespaces,
    cfg: &std::path::Path,
    row: &mut Row,
) -> Result<()> {
    let n = row.peers;
    step(&format!("{n} peers: {} map edits (path weight and neighbour changes) in one batch", args.edits));
    let mut lines = String::new();
    let mut x: u64 = 12345;
    for k in 0..args.edits {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let p = (x >> 33) % n as u64;
        if k % 2 == 0 {
            let _ = writeln!(lines, "path set p{p} 0 --weight {}", 1 + (x >> 20) % 9);
        } else {
            let _ = writeln!(lines, "neigh set p{p} 0 02:00:00:00:{:02x}:{:02x}", (x >> 12) & 0xff, (x >> 4) & 0xff);
        }
    }
    let batch = dir.join("edits.txt");
    std::fs::write(&batch, lines)?;
    let out = ns.exec(NS, &format!("{xgre} map-edit gre0 --batch {}", batch.display()))?;
    let edits_per_s: f64 = out
        .rsplit('(')
        .next()
        .and_then(|s| s.split('/').next())
        .and_then(|s| s.trim().parse().ok())
        .context("reading the edit rate from map-edit's output")?;
    println!("    {}", out.trim());
    ns.exec(NS, &format!("{xgre} down gre0"))?;

    step(&format!("{n} peers: resident memory of `xgre run` after 3 s"));
    let pidfile = dir.join("run.pid");
    sh(&format!(
        "nsenter --net=/run/netns/{NS} {xgre} run -c {} >{}.log 2>&1 & echo $! > {}",
        cfg.display(),
        pidfile.display(),
        pidfile.display()
    ))?;
    std::thread::sleep(std::time::Duration::from_secs(3));
    let pid = std::fs::read_to_string(&pidfile)?.trim().to_string();
    let rss_kb: f64 = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| {
            format!("xgre run exited early: {}", std::fs::read_to_string(format!("{}.log", pidfile.display())).unwrap_or_default())
        })?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    let _ = sh(&format!("kill -TERM {pid}; for i in $(seq 50); do kill -0 {pid} 2>/dev/null || break; sleep 0.1; done"));
    let run_rss_mib = rss_kb / 1024.0;
    println!("    xgre run: {run_rss_mib:.1} MiB resident");
    row.edits_per_s = edits_per_s;
    row.run_rss_mib = run_rss_mib;
    Ok(())
}

fn report(args: &ControlArgs, rows: &[Row]) -> Result<()> {
    step("results (min / median / max)");
    println!("    {:>7} {:>24} {:>24} {:>10} {:>10} {:>12}", "peers", "up (s)", "one map-edit (ms)", "maps MiB", "edits/s", "run RSS MiB");
    for r in rows {
        let (u0, u1, u2) = spread(&r.up_s);
        let (e0, e1, e2) = spread(&r.edit_ms);
        println!(
            "    {:>7} {:>24} {:>24} {:>10.1} {:>10.0} {:>12.1}",
            r.peers,
            format!("{u0:.3} / {u1:.3} / {u2:.3}"),
            format!("{e0:.1} / {e1:.1} / {e2:.1}"),
            r.map_mib,
            r.edits_per_s,
            r.run_rss_mib
        );
    }
    println!(
        "    targets: up of one tunnel < 1 s, with 10000 peers < 2 s; one map-edit < 50 ms; >= 1000 edits/s; xgre run < 30 MB resident"
    );
    std::fs::create_dir_all(&args.out)?;
    let j = json!(rows
        .iter()
        .map(|r| json!({"peers": r.peers, "up_seconds": r.up_s, "map_edit_ms": r.edit_ms, "map_mib": r.map_mib, "edits_per_second": r.edits_per_s, "run_rss_mib": r.run_rss_mib}))
        .collect::<Vec<_>>());
    std::fs::write(args.out.join("control.json"), serde_json::to_string_pretty(&j)?)?;
    chart(rows, &args.out.join("control.svg"))?;
    println!("    wrote {} and {}", args.out.join("control.json").display(), args.out.join("control.svg").display());
    Ok(())
}

fn chart(rows: &[Row], path: &std::path::Path) -> Result<()> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (720, 380)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((1, 3));
    /// Panel title, target, the value.
    type Metric = (&'static str, f64, fn(&Row) -> f64);
    let metrics: [Metric; 3] = [
        ("xgre up (s, median), target < 2", 2.0, |r| spread(&r.up_s).1),
        ("edits/s, target >= 1000", 1000.0, |r| r.edits_per_s),
        ("xgre run RSS (MiB), target < 30", 30.0, |r| r.run_rss_mib),
    ];
    for (panel, (title, target, get)) in panels.iter().zip(metrics) {
        let max = rows.iter().map(get).fold(target, f64::max) * 1.2;
        let mut c = ChartBuilder::on(panel)
            .caption(title, ("sans-serif", 14))
            .margin(10)
            .x_label_area_size(25)
            .y_label_area_size(45)
            .build_cartesian_2d(0f64..rows.len() as f64, 0f64..max)?;
        c.configure_mesh().disable_x_mesh().x_labels(0).draw()?;
        for (i, r) in rows.iter().enumerate() {
            c.draw_series(std::iter::once(Rectangle::new([(i as f64 + 0.15, 0.0), (i as f64 + 0.85, get(r))], BLUE.mix(0.6).filled())))?;
            c.draw_series(std::iter::once(Text::new(format!("{} peers", r.peers), (i as f64 + 0.15, max * 0.04), ("sans-serif", 11))))?;
        }
        c.draw_series(LineSeries::new([(0.0, target), (rows.len() as f64, target)], RED.stroke_width(1)))?;
    }
    root.present()?;
    Ok(())
}
