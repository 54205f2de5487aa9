//! `cargo xtask demo`: the main job on an embedded default. Two hosts, a
//! GRE tunnel between them over one veth link, ping and iperf3 across it,
//! `xgre status`, then everything is removed.

use anyhow::{Context, Result};

use crate::{
    build_release,
    net::{iperf, Namespaces},
    step,
};

const A: &str = "xgre-demo-a";
const B: &str = "xgre-demo-b";
const SECS: u32 = 5;

fn config(me: char, rx: &str) -> String {
    let (dev, local, remote, inner_me, inner_peer, peer) = match me {
        'a' => ("eth0", "198.18.0.10", "198.18.0.20", "198.19.100.1", "198.19.100.2", "site-b"),
        _ => ("eth0", "198.18.0.20", "198.18.0.10", "198.19.100.2", "198.19.100.1", "site-a"),
    };
    format!(
        r#"[tunnel]
name = "gre0"
mode = "gre"
address = ["{inner_me}/32"]
key = 42

[[link]]
dev = "{dev}"
address = "{local}"
rx = "{rx}"

[[peer]]
name = "{peer}"
routes = ["{inner_peer}/32"]
[[peer.path]]
link = "{dev}"
remote = "{remote}"
"#
    )
}

pub fn demo() -> Result<()> {
    let xgre = build_release()?;
    let xgre = xgre.display().to_string();
    step("making two hosts: namespaces xgre-demo-a and xgre-demo-b, one veth link (198.18.0.10 <-> 198.18.0.20)");
    let ns = Namespaces::new(&[A, B], &xgre)?;
    crate::net::sh(&format!(
        "ip link add eth0 netns {A} type veth peer name eth0 netns {B} && \
         ip -n {A} addr add 198.18.0.10/24 dev eth0 && ip -n {B} addr add 198.18.0.20/24 dev eth0 && \
         ip -n {A} link set eth0 up && ip -n {B} link set eth0 up"
    ))?;
    let dir = std::env::temp_dir().join("xgre-demo");
    std::fs::create_dir_all(&dir)?;

    step(&format!("baseline: one TCP stream over the bare link for {SECS} s"));
    let (base, _) = iperf(&ns, B, A, "198.18.0.20", SECS, "")?;
    println!("    underlay: {base:.0} Mbit/s");

    let mut rows = Vec::new();
    for rx in ["tc", "xdp"] {
        step(&format!("xgre up on both hosts (receive hook: {rx})"));
        for (me, n) in [('a', A), ('b', B)] {
            let f = dir.join(format!("{me}-{rx}.toml"));
            std::fs::write(&f, config(me, rx))?;
            print!("    {n}: {}", ns.exec(n, &format!("{xgre} up -c {}", f.display()))?);
        }
        step("ping across the tunnel");
        let p = ns.exec(A, "ping -c 3 -i 0.2 -W 2 198.19.100.2").context("ping across the tunnel")?;
        for l in p.lines().filter(|l| l.contains("bytes from") || l.contains("packet loss")) {
            println!("    {l}");
        }
        step(&format!("iperf3: one TCP stream through the tunnel for {SECS} s"));
        let (mbps, retr) = iperf(&ns, B, A, "198.19.100.2", SECS, "")?;
        println!("    tunnel ({rx}): {mbps:.0} Mbit/s, {retr} retransmits");
        rows.push((rx, mbps, retr));
        step("xgre status on host a");
        print!("{}", ns.exec(A, &format!("{xgre} status"))?);
        for n in [A, B] {
            ns.exec(n, &format!("{xgre} down gre0"))?;
        }
    }

    step("result: single-stream TCP through the tunnel vs the same link without it (same run)");
    println!("    {:<22} {:>12} {:>10} {:>8}", "path", "Mbit/s", "ratio", "retrans");
    println!("    {:<22} {:>12.0} {:>10} {:>8}", "underlay (no tunnel)", base, "1.00", "-");
    for (rx, mbps, retr) in &rows {
        println!("    {:<22} {:>12.0} {:>10.2} {:>8}", format!("xgre, rx = {rx}"), mbps, mbps / base, retr);
    }
    println!("    (rx = \"auto\" picks tc on veth links like these, xdp on NICs with native XDP)");
    step("cleaning up");
    drop(ns);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
