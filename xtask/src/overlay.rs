//! `cargo xtask bench overlay`: one TCP stream through each kind of tunnel
//! xgre offers, and through the kernel's own L2 overlay (VXLAN, the Linux
//! answer to "one device, many peers, learned MACs") on the same link in
//! the same run. gre and gretap are not in this kernel, so VXLAN is the
//! alternative a user has.
//!
//! Topology: hosts `a` and `b` joined by one veth pair, 198.18.0.10/20 and
//! 2001:db8::10/20; the overlay addresses are 198.19.60.1/2.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use serde_json::json;

use crate::{
    build_release,
    net::{iperf, sh, Namespaces},
    step,
};

#[derive(Args, Clone)]
pub struct OverlayArgs {
    /// Seconds per iperf3 run.
    #[arg(long, default_value_t = 5)]
    pub secs: u32,
    /// Runs per method; the table shows the median.
    #[arg(long, default_value_t = 3)]
    pub runs: u32,
    /// Where the JSON and the chart go.
    #[arg(long, default_value = "target/bench")]
    pub out: PathBuf,
}

const A: &str = "xgo-a";
const B: &str = "xgo-b";

const METHODS: [&str; 7] = [
    "underlay (no tunnel)",
    "kernel VXLAN",
    "xgre gre",
    "xgre gretap",
    "xgre gretap NVGRE",
    "xgre gre, IPv6 underlay",
    "xgre gretap, IPv6 underlay",
];

fn topology(xgre: &str) -> Result<Namespaces> {
    let ns = Namespaces::new(&[A, B], xgre)?;
    sh(&format!(
        "ip link add e0 netns {A} type veth peer name e0 netns {B} && \
         ip -n {A} addr add 198.18.0.10/24 dev e0 && ip -n {B} addr add 198.18.0.20/24 dev e0 && \
         ip -n {A} addr add 2001:db8::10/64 dev e0 nodad && ip -n {B} addr add 2001:db8::20/64 dev e0 nodad && \
         ip -n {A} link set e0 up && ip -n {B} link set e0 up"
    ))?;
    Ok(ns)
}

fn xgre_config(me: char, tap: bool, nvgre: bool, v6: bool) -> String {
    let (local, remote, inner, peer) = match (me, v6) {
        ('a', false) => ("198.18.0.10", "198.18.0.20", "198.19.60.1", "198.19.60.2"),
        ('a', true) => ("2001:db8::10", "2001:db8::20", "198.19.60.1", "198.19.60.2"),
        (_, false) => ("198.18.0.20", "198.18.0.10", "198.19.60.2", "198.19.60.1"),
        (_, true) => ("2001:db8::20", "2001:db8::10", "198.19.60.2", "198.19.60.1"),
    };
    let mut c = String::from("[tunnel]\nname = \"gre0\"\n");
    if tap {
        c += &format!("mode = \"gretap\"\naddress = [\"{inner}/24\"]\n");
    } else {
        c += &format!("address = [\"{inner}/32\"]\n");
    }
    c += if nvgre { "vsid = 5001\n" } else { "key = 7\n" };
    c += &format!("\n[[link]]\ndev = \"e0\"\naddress = \"{local}\"\n\n[[peer]]\nname = \"p\"\n");
    if !tap {
        c += &format!("routes = [\"{peer}/32\"]\n");
    }
    c += &format!("[[peer.path]]\nlink = \"e0\"\nremote = \"{remote}\"\n");
    c
}

/// Set a method up on a fresh topology.
fn prepare(m: &str, ns: &Namespaces, xgre: &str, dir: &std::path::Path) -> Result<&'static str> {
    if m == "underlay (no tunnel)" {
        return Ok("198.18.0.20");
    }
    if m == "kernel VXLAN" {
        for (host, local, remote, inner) in
            [(A, "198.18.0.10", "198.18.0.20", "198.19.60.1"), (B, "198.18.0.20", "198.18.0.10", "198.19.60.2")]
        {
            sh(&format!(
                "ip -n {host} link add vx0 type vxlan id 7 local {local} remote {remote} dstport 4789 dev e0 && \
                 ip -n {host} addr add {inner}/24 dev vx0 && ip -n {host} link set vx0 up"
            ))?;
        }
        return Ok("198.19.60.2");
    }
    let tap = m.contains("gretap");
    let nvgre = m.contains("NVGRE");
    let v6 = m.contains("IPv6");
    for (me, host) in [('a', A), ('b', B)] {
        let f = dir.join(format!("{me}.toml"));
        std::fs::write(&f, xgre_config(me, tap, nvgre, v6))?;
        ns.exec(host, &format!("{xgre} up -c {}", f.display()))?;
    }
    Ok("198.19.60.2")
}

pub fn overlay(args: OverlayArgs) -> Result<()> {
    let xgre = build_release()?.display().to_string();
    let dir = std::env::temp_dir().join("xgre-bench-overlay");
    std::fs::create_dir_all(&dir)?;
    let runs = args.runs.max(1);
    let total = METHODS.len() * runs as usize;
    let mut results: Vec<Vec<(f64, u64)>> = vec![Vec::new(); METHODS.len()];
    let mut k = 0;
    // Methods take turns run by run, so a slow minute on a shared machine
    // hits all of them alike.
    for _ in 0..runs {
        for (mi, m) in METHODS.iter().enumerate() {
            k += 1;
            step(&format!("[{k}/{total}] {m}: one TCP stream for {} s", args.secs));
            let ns = topology(&xgre)?;
            let addr = prepare(m, &ns, &xgre, &dir)?;
            let (mbps, retr) = iperf(&ns, B, A, addr, args.secs, "")?;
            println!("    {mbps:.0} Mbit/s, {retr} retransmits");
            results[mi].push((mbps, retr));
            drop(ns);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let med: Vec<(f64, u64, Vec<f64>)> = results
        .into_iter()
        .map(|mut r| {
            r.sort_by(|a, b| a.0.total_cmp(&b.0));
            let (m, t) = r[r.len() / 2];
            (m, t, r.iter().map(|x| x.0).collect())
        })
        .collect();
    let base = med[0].0.max(1.0);
    let vx = med[1].0.max(1.0);
    step(&format!("results: one TCP stream over one veth link, same run (median of {runs})"));
    println!("    {:<28} {:>10} {:>12} {:>10} {:>9}  all runs", "method", "Mbit/s", "÷ underlay", "÷ VXLAN", "retrans");
    for (m, (mbps, retr, all)) in METHODS.iter().zip(&med) {
        let all: Vec<String> = all.iter().map(|v| format!("{v:.0}")).collect();
        println!("    {:<28} {:>10.0} {:>12.2} {:>10.2} {:>9}  {}", m, mbps, mbps / base, mbps / vx, retr, all.join(" "));
    }
    std::fs::create_dir_all(&args.out)?;
    let json = json!({
        "secs": args.secs,
        "runs": runs,
        "results": METHODS.iter().zip(&med).map(|(m, (mbps, retr, all))| json!({
            "method": m, "mbps": mbps, "ratio_to_underlay": mbps / base, "ratio_to_vxlan": mbps / vx,
            "retransmits": retr, "runs_mbps": all,
        })).collect::<Vec<_>>(),
    });
    let jpath = args.out.join("overlay.json");
    std::fs::write(&jpath, serde_json::to_string_pretty(&json)?)?;
    let cpath = args.out.join("overlay.svg");
    chart(&med, base, &cpath)?;
    println!("    wrote {} and {}", jpath.display(), cpath.display());
    Ok(())
}

fn chart(med: &[(f64, u64, Vec<f64>)], base: f64, path: &std::path::Path) -> Result<()> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (900, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let n = METHODS.len() as f64;
    let mut c = ChartBuilder::on(&root)
        .caption("One TCP stream over one veth link (fraction of the bare link)", ("sans-serif", 18))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..n, 0f64..1.1f64)?;
    c.configure_mesh().disable_x_mesh().disable_x_axis().y_desc("÷ underlay").draw()?;
    for (i, (m, (mbps, _, _))) in METHODS.iter().zip(med).enumerate() {
        let r = mbps / base;
        let color = if m.starts_with("xgre") { RGBColor(40, 160, 90) } else { RGBColor(150, 150, 150) };
        let x0 = i as f64 + 0.1;
        c.draw_series(std::iter::once(Rectangle::new([(x0, 0.0), (x0 + 0.8, r)], color.filled())))?;
        c.draw_series(std::iter::once(Text::new(format!("{r:.2}"), (x0 + 0.25, r + 0.04), ("sans-serif", 12))))?;
        c.draw_series(std::iter::once(Text::new(m.to_string(), (x0, -0.03), ("sans-serif", 9))))?;
    }
    root.present()?;
    Ok(())
}
