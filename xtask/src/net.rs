//! Hosts in network namespaces for the demo and the benchmarks, torn down
//! by Drop (also when a step fails). Addresses: 198.18.0.0/15 only.

use std::process::{Command, Output};

use anyhow::{bail, Result};

pub fn sh(cmd: &str) -> Result<String> {
    let o = Command::new("bash").arg("-c").arg(cmd).output()?;
    if !o.status.success() {
        bail!("`{cmd}` failed: {}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

pub fn sh_out(cmd: &str) -> Output {
    Command::new("bash").arg("-c").arg(cmd).output().expect("bash")
}

/// Namespaces (and the xgre tunnels in them) that vanish with this value.
pub struct Namespaces {
    pub names: Vec<String>,
    pub xgre: String,
}

impl Namespaces {
    /// Create `names`, removing leftovers of an interrupted earlier run.
    pub fn new(names: &[&str], xgre: &str) -> Result<Namespaces> {
        for n in names {
            let _ = sh_out(&format!("ip netns pids {n} 2>/dev/null | xargs -r kill -9; ip netns del {n} 2>/dev/null"));
        }
        let ns = Namespaces { names: names.iter().map(|s| s.to_string()).collect(), xgre: xgre.into() };
        for n in names {
            sh(&format!("ip netns add {n} && ip -n {n} link set lo up"))?;
        }
        Ok(ns)
    }

    pub fn exec(&self, ns: &str, cmd: &str) -> Result<String> {
        sh(&format!("nsenter --net=/run/netns/{ns} {cmd}"))
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = sh_out(&format!("ip netns pids {n} | xargs -r kill -9"));
            let _ = sh_out(&format!("nsenter --net=/run/netns/{n} {} down gre0", self.xgre));
            let _ = sh_out(&format!("ip netns del {n}"));
        }
    }
}

/// What one iperf3 TCP stream did, from its `-J` report.
pub struct Stream {
    /// Mbit/s received.
    pub mbps: f64,
    pub retransmits: u64,
    /// The sender's smoothed RTT samples, µs: minimum, mean and maximum
    /// (None when iperf3 has no TCP_INFO for it).
    pub rtt_us: Option<[u64; 3]>,
    /// Each parallel stream's Mbit/s received (`iperf3 -P`).
    pub flows: Vec<f64>,
    /// Each second's Mbit/s, as the sender counted it.
    pub seconds: Vec<f64>,
}

impl Stream {
    pub fn parse(json: &str) -> Result<Stream> {
        let j: serde_json::Value = serde_json::from_str(json)?;
        let end = &j["end"];
        let sender = &end["streams"][0]["sender"];
        let rtt = |k: &str| sender[k].as_u64().filter(|&v| v > 0);
        Ok(Stream {
            mbps: end["sum_received"]["bits_per_second"].as_f64().unwrap_or(0.0) / 1e6,
            retransmits: end["sum_sent"]["retransmits"].as_u64().unwrap_or(0),
            rtt_us: rtt("min_rtt").zip(rtt("mean_rtt")).zip(rtt("max_rtt")).map(|((a, b), c)| [a, b, c]),
            flows: end["streams"]
                .as_array()
                .map(|a| a.iter().filter_map(|s| s["receiver"]["bits_per_second"].as_f64()).map(|b| b / 1e6).collect())
                .unwrap_or_default(),
            seconds: j["intervals"]
                .as_array()
                .map(|a| a.iter().filter_map(|i| i["sum"]["bits_per_second"].as_f64()).map(|b| b / 1e6).collect())
                .unwrap_or_default(),
        })
    }
}

/// One iperf3 TCP stream from `client` to `addr` (served in `server`) for
/// `secs` seconds: (Mbit/s received, retransmits).
pub fn iperf(ns: &Namespaces, server: &str, client: &str, addr: &str, secs: u32, extra: &str) -> Result<(f64, u64)> {
    iperf_stream(ns, server, client, addr, secs, extra).map(|s| (s.mbps, s.retransmits))
}

/// `iperf`, with the whole report.
pub fn iperf_stream(ns: &Namespaces, server: &str, client: &str, addr: &str, secs: u32, extra: &str) -> Result<Stream> {
    // A server left by an earlier run; not whatever else runs there
    // (`xgre run`).
    let _ = sh_out(&format!("for p in $(ip netns pids {server}); do [ \"$(cat /proc/$p/comm)\" = iperf3 ] && kill -9 $p; done; true"));
    sh(&format!("nsenter --net=/run/netns/{server} iperf3 -s -1 -D -B {addr} -p 5201"))?;
    std::thread::sleep(std::time::Duration::from_millis(300));
    Stream::parse(&ns.exec(client, &format!("timeout {} iperf3 -c {addr} -p 5201 -t {secs} -J {extra}", secs + 20))?)
}
