//! Test hosts in network namespaces: made by the test, torn down by Drop
//! even when the test fails. Addresses come from 198.18.0.0/15 only, and no
//! traffic leaves the namespaces.
#![allow(dead_code)]

pub mod bpf;
pub mod interop;
pub mod linux_vm;
pub mod ovs;
pub mod rx_model;

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

pub use gre_user::config::{Config, Mode, RxHook};

pub const XGRE: &str = env!("CARGO_BIN_EXE_xgre");

/// Namespace tests run one at a time: they check global state (loaded
/// programs) and measure throughput.
static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[track_caller]
pub fn sh(cmd: &str) -> String {
    let out = Command::new("bash").arg("-c").arg(cmd).output().expect("running bash");
    assert!(
        out.status.success(),
        "`{cmd}` failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// How long until `cond` holds, polling every 50 ms, or None after `limit`.
pub fn within(limit: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

pub fn sh_out(cmd: &str) -> Output {
    Command::new("bash").arg("-c").arg(cmd).output().expect("running bash")
}

/// How a command enters a host's namespace: both must work for xgre.
#[derive(Clone, Copy, Debug)]
pub enum Enter {
    /// `nsenter --net=...`: same mount namespace, sees the host's bpffs.
    Nsenter,
    /// `ip netns exec`: private mount namespace and a fresh /sys, no bpffs.
    IpNetnsExec,
}

pub struct Host {
    pub ns: String,
}

impl Host {
    /// Inode of the namespace: names its pin directory.
    pub fn netns_ino(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(format!("/run/netns/{}", self.ns)).unwrap().ino()
    }

    pub fn cmd(&self, how: Enter, cmd: &str) -> String {
        match how {
            Enter::Nsenter => format!("nsenter --net=/run/netns/{} {cmd}", self.ns),
            Enter::IpNetnsExec => format!("ip netns exec {} {cmd}", self.ns),
        }
    }

    #[track_caller]
    pub fn run(&self, cmd: &str) -> String {
        sh(&self.cmd(Enter::Nsenter, cmd))
    }

    /// A shell command line (`&&`, pipes) run wholly inside the namespace.
    #[track_caller]
    pub fn shell(&self, script: &str) -> String {
        sh(&self.cmd(Enter::Nsenter, &format!("bash -c '{}'", script.replace('\'', "'\\''"))))
    }

    /// A device's MTU, read through netlink (`/sys` under nsenter shows the
    /// caller's namespace, not this one).
    #[track_caller]
    pub fn mtu(&self, dev: &str) -> u32 {
        let j: serde_json::Value = serde_json::from_str(&self.run(&format!("ip -j link show {dev}"))).unwrap();
        j[0]["mtu"].as_u64().expect("mtu") as u32
    }

    pub fn xgre(&self, how: Enter, args: &str) -> Output {
        sh_out(&self.cmd(how, &format!("{XGRE} {args}")))
    }

    #[track_caller]
    pub fn xgre_ok(&self, how: Enter, args: &str) -> String {
        let o = self.xgre(how, args);
        assert!(
            o.status.success(),
            "xgre {args} in {} failed:\n{}{}",
            self.ns,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    pub fn spawn(&self, cmd: &str) -> Child {
        Command::new("bash")
            .arg("-c")
            .arg(self.cmd(Enter::Nsenter, cmd))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning")
    }
}

/// Two (or more) hosts, each with one veth link per `links` into a shared
/// switch namespace, or a direct veth pair when there are two hosts and
/// one link.
pub struct Topo {
    pub hosts: Vec<Host>,
    pub dir: PathBuf,
    children: Vec<Child>,
    /// What this topology's namespace names end in.
    id: String,
}

/// A name no other topology of this run has: the tag, this process and a
/// counter (the areas of the end-to-end tests share one process).
fn unique(tag: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    format!("{tag}{}{}", std::process::id() % 100000, NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

impl Topo {
    /// Hosts `a` and `b` joined by one veth pair: a has 198.18.0.10 on
    /// `va`, b has 198.18.0.20 on `vb`.
    pub fn pair(tag: &str) -> Topo {
        let id = unique(tag);
        let (a, b) = (format!("xa{id}"), format!("xb{id}"));
        let dir = std::env::temp_dir().join(format!("xgre-test-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        let t = Topo { hosts: vec![Host { ns: a.clone() }, Host { ns: b.clone() }], dir, children: vec![], id };
        sh(&format!(
            "ip netns add {a} && ip netns add {b} && ip link add va netns {a} type veth peer name vb netns {b} && \
             ip -n {a} addr add 198.18.0.10/24 dev va && ip -n {b} addr add 198.18.0.20/24 dev vb && \
             ip -n {a} link set va up && ip -n {b} link set vb up && ip -n {a} link set lo up && ip -n {b} link set lo up"
        ));
        t
    }

    /// Hosts `a` and `b` with `n` links each into one bridge in a third
    /// namespace (an unmanaged switch): link i of a is `a{i}` with
    /// 198.18.i.10/24, of b `b{i}` with 198.18.i.20/24, and the switch ports
    /// are `sa{i}`, `sb{i}`. `rate` (Mbit/s) adds tbf to every host link.
    pub fn switched(tag: &str, n: u32, rate: Option<u32>) -> Topo {
        let id = unique(tag);
        let (a, b, sw) = (format!("xa{id}"), format!("xb{id}"), format!("xs{id}"));
        let dir = std::env::temp_dir().join(format!("xgre-test-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        let t = Topo { hosts: vec![Host { ns: a.clone() }, Host { ns: b.clone() }, Host { ns: sw.clone() }], dir, children: vec![], id };
        let mut s = format!("ip netns add {a} && ip netns add {b} && ip netns add {sw} && ip -n {sw} link add br0 type bridge && ip -n {sw} link set br0 up");
        for (h, ns) in [("a", &a), ("b", &b)] {
            // Several NICs on one segment: answer ARP only for the address
            // of the NIC asked, so each path resolves to its own NIC.
            s += &format!(" && ip -n {ns} link set lo up && ip netns exec {ns} sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2");
            let oct = if h == "a" { 10 } else { 20 };
            for i in 0..n {
                s += &format!(
                    " && ip link add {h}{i} netns {ns} type veth peer name s{h}{i} netns {sw} && ip -n {sw} link set s{h}{i} master br0 up \
                     && ip -n {ns} addr add 198.18.{i}.{oct}/24 dev {h}{i} && ip -n {ns} link set {h}{i} up"
                );
                if let Some(r) = rate {
                    s += &format!(" && tc -n {ns} qdisc add dev {h}{i} root tbf rate {r}mbit burst 32kb latency 20ms");
                }
            }
        }
        sh(&s);
        t
    }

    /// No hosts yet: the test adds them with `add`.
    pub fn empty(tag: &str) -> Topo {
        let id = unique(tag);
        let dir = std::env::temp_dir().join(format!("xgre-test-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        Topo { hosts: vec![], dir, children: vec![], id }
    }

    /// A new namespace `x{name}{pid}` with lo up, torn down with the rest;
    /// returns its index in `hosts`.
    pub fn add(&mut self, name: &str) -> usize {
        let ns = format!("x{name}{}", self.id);
        sh(&format!("ip netns add {ns} && ip -n {ns} link set lo up"));
        self.hosts.push(Host { ns });
        self.hosts.len() - 1
    }

    pub fn sw(&self) -> &Host {
        &self.hosts[2]
    }

    pub fn a(&self) -> &Host {
        &self.hosts[0]
    }

    pub fn b(&self) -> &Host {
        &self.hosts[1]
    }

    pub fn write(&self, name: &str, text: &str) -> String {
        let p = self.dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }

    pub fn keep(&mut self, c: Child) {
        self.children.push(c);
    }

    /// Kill what `start_run` and `keep` started (SIGKILL: the tunnels stay
    /// up, for the test to take down or reuse).
    pub fn stop_children(&mut self) {
        for mut c in self.children.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start `xgre run -c cfg` on host `i`, wait for it to say it watches
    /// (or fail with what it said), and keep it until teardown.
    pub fn start_run(&mut self, i: usize, cfg: &str) {
        let mut child = self.hosts[i].spawn(&format!("{XGRE} run -c {cfg}"));
        let mut r = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        if !line.contains("watching") {
            let mut err = String::new();
            let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err);
            let _ = child.kill();
            let _ = child.wait();
            panic!("xgre run -c {cfg}: {line}{err}");
        }
        // Keep reading its log, so it never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut r, &mut std::io::sink()));
        self.keep(child);
    }
}

impl Drop for Topo {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let mut failed = Vec::new();
        for h in &self.hosts {
            // Kill whatever still runs in the namespace, take the tunnels
            // down (removes pins in the shared bpffs), then the namespace.
            let _ = sh_out(&format!("ip netns pids {} | xargs -r kill -9", h.ns));
            let down = sh_out(&format!("nsenter --net=/run/netns/{} {XGRE} down gre0", h.ns));
            if !down.status.success() {
                failed.push(format!("xgre down in {}: {}", h.ns, String::from_utf8_lossy(&down.stderr).trim()));
            }
            let del = sh_out(&format!("ip netns del {}", h.ns));
            if !del.status.success() {
                failed.push(format!("ip netns del {}: {}", h.ns, String::from_utf8_lossy(&del.stderr).trim()));
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        // A teardown that fails leaves state that breaks the next test;
        // say so, unless the test failed already (a second panic aborts).
        if !failed.is_empty() && !std::thread::panicking() {
            panic!("test teardown failed:\n{}", failed.join("\n"));
        }
    }
}

/// The standard point-to-point config for host `me` (a = .10, b = .20).
pub fn p2p(me: char, rx: &str) -> Config {
    let (dev, local, remote, inner_me, inner_peer, peer) = match me {
        'a' => ("va", "198.18.0.10", "198.18.0.20", "198.19.100.1/32", "198.19.100.2/32", "site-b"),
        _ => ("vb", "198.18.0.20", "198.18.0.10", "198.19.100.2/32", "198.19.100.1/32", "site-a"),
    };
    Config::new("gre0", Mode::Gre).with_address(inner_me).with_link(dev, local, rx_hook(rx)).with_peer(
        peer,
        &[inner_peer],
        &[(dev, remote)],
    )
}

/// `p2p` as a file, with tunnel settings added as TOML.
pub fn p2p_config(me: char, extra_tunnel: &str, rx: &str) -> String {
    p2p(me, rx).with_tunnel_toml(extra_tunnel).to_toml()
}

pub fn rx_hook(rx: &str) -> RxHook {
    match rx {
        "tc" => RxHook::Tc,
        "xdp" => RxHook::Xdp,
        _ => RxHook::Auto,
    }
}

/// Config for host `me` of a switched topology: one peer, `n` paths.
pub fn multi_config(me: char, n: u32, extra_tunnel: &str) -> String {
    let (my, peer, inner_me, inner_peer, pname, oct) = match me {
        'a' => ("a", 20, "198.19.100.1/32", "198.19.100.2/32", "site-b", 10),
        _ => ("b", 10, "198.19.100.2/32", "198.19.100.1/32", "site-a", 20),
    };
    let mut c = Config::new("gre0", Mode::Gre).with_address(inner_me);
    let mut paths = Vec::new();
    for i in 0..n {
        c = c.with_link(&format!("{my}{i}"), &format!("198.18.{i}.{oct}"), RxHook::Tc);
        paths.push((format!("{my}{i}"), format!("198.18.{i}.{peer}")));
    }
    let paths: Vec<(&str, &str)> = paths.iter().map(|(l, r)| (l.as_str(), r.as_str())).collect();
    c.with_peer(pname, &[inner_peer], &paths).with_tunnel_toml(extra_tunnel).to_toml()
}

/// A packet capture on a host's link, started and ready before it returns:
/// the capture takes, besides what its filter asks for, frames of an
/// EtherType of its own that `start` sends on the link until one comes
/// back, so the filter is known to be in place (tshark prints "Capturing
/// on" a moment before it is). Those frames are left out of the result.
pub struct Capture {
    child: Child,
    /// Where it captures, and the command that sends a closing sentinel.
    host: Host,
    close: String,
    lines: std::sync::mpsc::Receiver<String>,
    /// What arrived while waiting for the sentinel.
    early: Vec<String>,
    count: u32,
    until: Instant,
}

/// IEEE 802's "local experimental" EtherTypes: no stack or switch acts on
/// them. One says the capture has started, the other that it has seen
/// everything sent before it (`finish_now`).
const SENTINEL: u16 = 0x88b5;
const CLOSING: u16 = 0x88b6;

impl Capture {
    /// tshark with a capture filter and the given fields (first occurrence:
    /// the outer header), at most `count` packets or `secs` seconds. Note an
    /// XDP receive hook consumes frames before taps see them: capture what a
    /// host sends.
    pub fn start(host: &Host, dev: &str, filter: &str, fields: &[&str], count: u32, secs: u32) -> Capture {
        Self::start_opts(host, dev, filter, fields, count, secs, "-E occurrence=f")
    }

    /// Like `start`, with every occurrence of a field (outer and inner
    /// headers), joined by ';'.
    pub fn start_all(host: &Host, dev: &str, filter: &str, fields: &[&str], count: u32, secs: u32) -> Capture {
        Self::start_opts(host, dev, filter, fields, count, secs, "-E occurrence=a -E aggregator=';'")
    }

    fn start_opts(host: &Host, dev: &str, filter: &str, fields: &[&str], count: u32, secs: u32, opts: &str) -> Capture {
        let f: Vec<String> = fields.iter().map(|f| format!("-e {f}")).collect();
        // `-e eth.type` first: it tells the sentinel frames from the rest.
        let mut child = host.spawn(&format!(
            "tshark -l -n -i {dev} -f '({filter}) or ether proto {SENTINEL:#x} or ether proto {CLOSING:#x}' -a duration:{secs} -T fields -E separator=, {opts} -e eth.type {}",
            f.join(" ")
        ));
        let until = Instant::now() + Duration::from_secs(secs as u64);
        let (tx, lines) = std::sync::mpsc::channel();
        let out = BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for l in out.lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        // Keep draining stderr so tshark never blocks on it.
        let mut err = child.stderr.take().unwrap();
        std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
        let send = |ty: u16| {
            let frame = format!("b'\\xff'*6 + b'\\x02'*6 + b'\\x{:02x}\\x{:02x}' + bytes(46)", ty >> 8, ty & 0xff);
            format!("/usr/bin/python3 -c \"import socket; s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); s.bind(('{dev}', 0)); s.send({frame})\"")
        };
        let mut cap = Capture { child, host: Host { ns: host.ns.clone() }, close: send(CLOSING), lines, early: Vec::new(), count, until };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            host.run(&send(SENTINEL));
            let wait = Instant::now() + Duration::from_millis(100);
            while let Ok(l) = cap.lines.recv_timeout(wait.saturating_duration_since(Instant::now())) {
                if Self::is_sentinel(&l) {
                    return cap;
                }
                cap.early.push(l);
            }
        }
        let _ = cap.child.kill();
        let _ = cap.child.wait();
        panic!("tshark did not start capturing on {dev}");
    }

    /// Whether a line is a sentinel's: its EtherType in any column (tshark
    /// prints a field asked for twice in the last column only, and no
    /// other frame carries this EtherType anywhere).
    fn is_sentinel(line: &str) -> bool {
        Self::has_type(line, SENTINEL) || Self::has_type(line, CLOSING)
    }

    fn has_type(line: &str, ty: u16) -> bool {
        line.split([',', ';']).any(|t| t == format!("{ty:#06x}"))
    }

    /// Everything captured so far (up to `count` packets): a sentinel sent
    /// now comes back behind every frame that passed before it, so a test
    /// that checks what did not go by need not wait out the capture's time.
    pub fn finish_now(mut self) -> Vec<Vec<String>> {
        self.host.run(&self.close);
        let mut got: Vec<String> = std::mem::take(&mut self.early);
        while let Ok(l) = self.lines.recv_timeout(self.until.saturating_duration_since(Instant::now())) {
            if Self::has_type(&l, CLOSING) {
                break;
            }
            got.push(l);
        }
        got.retain(|l| !Self::is_sentinel(l));
        self.end(got)
    }

    /// Wait for the capture to end (`count` packets, or its time); one Vec
    /// of fields per packet.
    pub fn finish(mut self) -> Vec<Vec<String>> {
        let mut got: Vec<String> = std::mem::take(&mut self.early);
        got.retain(|l| !Self::is_sentinel(l));
        while got.len() < self.count as usize {
            match self.lines.recv_timeout(self.until.saturating_duration_since(Instant::now())) {
                Ok(l) if Self::is_sentinel(&l) => {}
                Ok(l) => got.push(l),
                Err(_) => break,
            }
        }
        self.end(got)
    }

    /// Stop tshark; one Vec of fields per captured line, up to `count`.
    fn end(mut self, got: Vec<String>) -> Vec<Vec<String>> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        got.iter()
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.split(',').skip(1).map(str::to_string).collect())
            .take(self.count as usize)
            .collect()
    }
}

/// The stdout of a helper that says "ready" once it is (a receiver that
/// has joined its group), read past that line.
pub fn ready(child: &mut Child) -> BufReader<std::process::ChildStdout> {
    let mut r = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready", "receiver: {line}");
    r
}

pub struct Transfer {
    /// "BYTES SHA256" as sent.
    pub sent: String,
    /// "BYTES SHA256" as received.
    pub got: String,
    /// Longest time the receiver waited for data, seconds.
    pub max_gap: f64,
}

/// A TCP transfer of `mbytes` MiB from `from` to `to_addr` on `to`, with a
/// SHA-256 taken at both ends.
pub fn transfer(from: &Host, to: &Host, to_addr: &str, mbytes: u32) -> Transfer {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/transfer.py");
    let mut server = to.spawn(&format!("timeout 90 /usr/bin/python3 {script} recv {to_addr} 5001"));
    let mut out = BufReader::new(server.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "listening", "transfer server did not start");
    let sent = from.run(&format!("timeout 90 /usr/bin/python3 {script} send {to_addr} 5001 {mbytes}"));
    line.clear();
    out.read_line(&mut line).unwrap();
    let _ = server.wait();
    let f: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(f.len(), 3, "transfer receiver said: {line}");
    Transfer { sent: sent.trim().to_string(), got: format!("{} {}", f[0], f[1]), max_gap: f[2].parse().unwrap() }
}

/// Names of loaded BPF programs that belong to xgre.
pub fn xgre_programs() -> Vec<String> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter_map(|p| p.name_as_str().map(str::to_string))
        .filter(|n| n.starts_with("xgre_"))
        .collect()
}

/// Whether this kernel's verifier lets XDP programs use metadata
/// (`bpf_xdp_adjust_meta`), asked of the kernel directly: a program of
/// three instructions that calls it (arguments unchecked, so the only
/// refusal that names the helper is that it may not be used).
pub fn verifies_xdp_metadata() -> bool {
    const BPF_PROG_LOAD: libc::c_long = 5;
    const XDP: u32 = 6;
    // call bpf_xdp_adjust_meta (54); r0 = 0; exit
    let insns: [u64; 3] = [0x0000_0036_0000_0085, 0x0000_0000_0000_00b7, 0x0000_0000_0000_0095];
    let license = b"GPL\0";
    let mut log = vec![0u8; 4096];
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&XDP.to_ne_bytes());
    attr[4..8].copy_from_slice(&(insns.len() as u32).to_ne_bytes());
    attr[8..16].copy_from_slice(&(insns.as_ptr() as u64).to_ne_bytes());
    attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
    attr[24..28].copy_from_slice(&1u32.to_ne_bytes());
    attr[28..32].copy_from_slice(&(log.len() as u32).to_ne_bytes());
    attr[32..40].copy_from_slice(&(log.as_mut_ptr() as u64).to_ne_bytes());
    // SAFETY: a BPF_PROG_LOAD attr whose pointers outlive the call.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_LOAD, attr.as_mut_ptr(), attr.len()) };
    if fd >= 0 {
        // SAFETY: the program's descriptor, ours to close.
        unsafe { libc::close(fd as i32) };
        return true;
    }
    !String::from_utf8_lossy(&log).contains("cannot use helper")
}
