//! `cargo xtask bench arp`: what ARP/ND suppression saves the underlay.
//! Three hosts on one switch, each a Linux bridge with a `gretap` tunnel;
//! host 1 has N VMs, hosts 2 and 3 the VMs they resolve. Each of the N
//! VMs makes M resolutions (forgets a remote VM's address and pings it),
//! over IPv4 (ARP) and IPv6 (ND), with `arp_suppress` off and on in the
//! same run. tshark on the switch counts every ARP request and Neighbour
//! Solicitation that crosses the underlay inside GRE.

use std::{path::PathBuf, time::Duration};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::json;

use crate::{
    build_release,
    net::{sh, sh_out, Namespaces},
    step,
};

#[derive(Args, Clone)]
pub struct ArpArgs {
    /// VMs on host 1, each resolving.
    #[arg(long, default_value_t = 8)]
    pub vms: u32,
    /// Resolutions per VM and family (targets taken in turn from the
    /// remote VMs).
    #[arg(long, default_value_t = 8)]
    pub resolutions: u32,
    /// Remote VMs, spread over hosts 2 and 3 (fewer than resolutions:
    /// each VM resolves each of them more than once).
    #[arg(long, default_value_t = 4)]
    pub targets: u32,
    #[arg(long, default_value_t = 3)]
    pub runs: u32,
    #[arg(long, default_value = "target/bench")]
    pub out: PathBuf,
}

const SW: &str = "xga-sw";
const HOSTS: [&str; 3] = ["xga-h1", "xga-h2", "xga-h3"];

fn vm_ns(host: usize, i: u32) -> String {
    format!("xga-v{}-{i}", host + 1)
}

/// Host 1's VMs are 198.19.1.(100+i), remote VM j is 198.19.1.(1+j).
fn vm_last(host: usize, i: u32) -> u32 {
    if host == 0 {
        100 + i
    } else {
        1 + i
    }
}

fn config(k: usize, suppress: bool) -> String {
    let mut c = format!(
        "[tunnel]\nname = \"gre0\"\nmode = \"gretap\"\narp_suppress = {suppress}\nkeepalive = 0\n\n\
         [[link]]\ndev = \"e0\"\naddress = \"198.18.0.{}\"\nrx = \"tc\"\n",
        10 * (k + 1)
    );
    for j in (0..3).filter(|&j| j != k) {
        c += &format!("\n[[peer]]\nname = \"h{}\"\n[[peer.path]]\nlink = \"e0\"\nremote = \"198.18.0.{}\"\n", j + 1, 10 * (j + 1));
    }
    c
}

struct Counts {
    arp: u64,
    nd: u64,
    answered: u64,
}

pub fn arp(args: ArpArgs) -> Result<()> {
    if args.vms < 1 || args.resolutions < 1 || args.targets < 1 || args.runs < 1 {
        bail!("--vms, --resolutions, --targets and --runs must be at least 1");
    }
    let xgre = build_release()?.display().to_string();
    let dir = std::env::temp_dir().join("xgre-bench-arp");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let remote: Vec<(usize, u32)> = (0..args.targets).map(|j| (1 + (j as usize % 2), j)).collect();
    let local: Vec<(usize, u32)> = (0..args.vms).map(|i| (0, i)).collect();
    let mut names: Vec<String> = [SW].iter().chain(HOSTS.iter()).map(|s| s.to_string()).collect();
    names.extend(local.iter().chain(&remote).map(|&(h, i)| vm_ns(h, i)));
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    step(&format!("topology: 3 hosts, {} VMs on host 1, {} remote VMs", args.vms, args.targets));
    let ns = Namespaces::new(&refs, &xgre)?;
    sh(&format!("ip -n {SW} link add br0 type bridge && ip -n {SW} link set br0 up"))?;
    for (k, h) in HOSTS.iter().enumerate() {
        sh(&format!(
            "ip link add e0 netns {h} type veth peer name s{k} netns {SW} && ip -n {SW} link set s{k} master br0 up && \
             ip -n {h} addr add 198.18.0.{}/24 dev e0 && ip -n {h} link set e0 up && \
             ip netns exec {h} sysctl -qw net.ipv6.conf.default.disable_ipv6=1",
            10 * (k + 1)
        ))?;
    }
    let mut rows = Vec::new();
    for run in 0..args.runs {
        for suppress in [false, true] {
            step(&format!(
                "run {}/{}, arp_suppress = {suppress}: {} VMs x {} resolutions, ARP and ND",
                run + 1,
                args.runs,
                args.vms,
                args.resolutions
            ));
            rows.push((suppress, one_run(&ns, &xgre, &dir, &args, &local, &remote, suppress)?));
        }
    }
    drop(ns);

    let made = (args.vms * args.resolutions) as u64;
    step(&format!(
        "results: requests crossing the underlay for {made} ARP and {made} ND resolutions (min / median / max of {} runs)",
        args.runs
    ));
    let stat = |suppress: bool, f: &dyn Fn(&Counts) -> u64| {
        let mut v: Vec<u64> = rows.iter().filter(|(s, _)| *s == suppress).map(|(_, c)| f(c)).collect();
        v.sort();
        (v[0], v[v.len() / 2], v[v.len() - 1])
    };
    println!("    {:<18} {:>18} {:>18} {:>18}", "arp_suppress", "ARP requests", "NS", "answered on host");
    let mut js = Vec::new();
    for suppress in [false, true] {
        let (a, n, q) = (stat(suppress, &|c| c.arp), stat(suppress, &|c| c.nd), stat(suppress, &|c| c.answered));
        let f = |t: (u64, u64, u64)| format!("{} / {} / {}", t.0, t.1, t.2);
        println!("    {:<18} {:>18} {:>18} {:>18}", if suppress { "on" } else { "off" }, f(a), f(n), f(q));
        js.push(json!({"arp_suppress": suppress, "arp_requests": [a.0, a.1, a.2], "ns": [n.0, n.1, n.2], "answered": [q.0, q.1, q.2]}));
    }
    std::fs::create_dir_all(&args.out)?;
    let path = args.out.join("arp.json");
    let doc = json!({"vms": args.vms, "resolutions": args.resolutions, "targets": args.targets, "runs": js});
    std::fs::write(&path, serde_json::to_string_pretty(&doc)?)?;
    println!("    wrote {}", path.display());
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Bring the tunnels and bridges up, resolve, count, take it all down.
#[allow(clippy::too_many_arguments)]
fn one_run(
    ns: &Namespaces,
    xgre: &str,
    dir: &std::path::Path,
    args: &ArpArgs,
    local: &[(usize, u32)],
    remote: &[(usize, u32)],
    suppress: bool,
) -> Result<Counts> {
    for (k, h) in HOSTS.iter().enumerate() {
        let cfg = dir.join(format!("h{}.toml", k + 1));
        std::fs::write(&cfg, config(k, suppress))?;
        ns.exec(h, &format!("{xgre} up -c {}", cfg.display()))?;
        sh(&format!("ip -n {h} link add br0 type bridge && ip -n {h} link set gre0 master br0 && ip -n {h} link set br0 up"))?;
    }
    for &(h, i) in local.iter().chain(remote) {
        let (host, vm, last) = (HOSTS[h], vm_ns(h, i), vm_last(h, i));
        sh(&format!(
            "ip link add p{i} netns {host} type veth peer name eth0 netns {vm} && ip -n {host} link set p{i} master br0 up && \
             ip netns exec {vm} sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 && \
             ip -n {vm} link set eth0 mtu 1400 && ip -n {vm} addr add 198.19.1.{last}/24 dev eth0 && \
             ip -n {vm} addr add 2001:db8:1::{last}/64 dev eth0 nodad && ip -n {vm} link set eth0 up"
        ))?;
    }
    let pcap = dir.join("underlay.pcap");
    let _ = std::fs::remove_file(&pcap);
    let mut cap = std::process::Command::new("nsenter")
        .arg(format!("--net=/run/netns/{SW}"))
        .args(["timeout", "600", "tshark", "-q", "-i", "br0", "-f", "ip proto 47", "-w"])
        .arg(&pcap)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("starting tshark")?;
    std::thread::sleep(Duration::from_secs(2));
    for &(h, i) in local {
        let vm = vm_ns(h, i);
        let mut script = String::new();
        for r in 0..args.resolutions {
            let (th, ti) = remote[((i + r) % args.targets) as usize];
            let last = vm_last(th, ti);
            script += &format!(
                "ip neigh flush dev eth0; ping -c 1 -W 1 198.19.1.{last} >/dev/null; \
                 ping -6 -c 1 -W 1 2001:db8:1::{last} >/dev/null; "
            );
        }
        ns.exec(&vm, &format!("sh -c '{script} true'"))?;
    }
    std::thread::sleep(Duration::from_millis(500));
    let _ = sh_out(&format!("kill -INT {}", cap.id()));
    let _ = cap.wait();
    let fields = sh(&format!("tshark -n -r {} -T fields -E occurrence=a -E aggregator=';' -e arp.opcode -e icmpv6.type", pcap.display()))?;
    let mut c = Counts { arp: 0, nd: 0, answered: 0 };
    for line in fields.lines() {
        let mut f = line.split('\t');
        let (op, icmp) = (f.next().unwrap_or(""), f.next().unwrap_or(""));
        if op.split(';').any(|o| o == "1") {
            c.arp += 1;
        }
        if icmp.split(';').any(|t| t == "135") {
            c.nd += 1;
        }
    }
    for h in HOSTS {
        let s: serde_json::Value = serde_json::from_str(&ns.exec(h, &format!("{xgre} status --json"))?)?;
        if let Some(n) = s["tunnels"][0]["neigh"].as_object() {
            c.answered += n["arp_answered"].as_u64().unwrap_or(0) + n["nd_answered"].as_u64().unwrap_or(0);
        }
    }
    println!("    {} ARP requests and {} NS crossed the underlay; {} answered on a host", c.arp, c.nd, c.answered);
    for &(h, i) in local.iter().chain(remote) {
        let _ = sh_out(&format!("ip -n {} link del p{i}", HOSTS[h]));
        let _ = sh_out(&format!("ip -n {} addr flush dev eth0", vm_ns(h, i)));
    }
    for h in HOSTS {
        let _ = sh_out(&format!("ip -n {h} link del br0"));
        ns.exec(h, &format!("{xgre} down gre0"))?;
    }
    Ok(c)
}
