//! `[mesh]`: hosts that find each other through etcd. A 3-member etcd
//! cluster (Debian's etcd-server) on a management network and 5 xgre hosts
//! on an underlay, each in its own namespace, torn down by Drop.

use std::{
    collections::BTreeSet,
    path::PathBuf,
    process::Child,
    time::{Duration, Instant},
};

use crate::common::*;
use gre_user::config::MeshConfig;

const TTL: u32 = 3;
const PREFIX: &str = "/xgre/t";
const HOSTS: usize = 5;

fn member_url(m: usize, port: u16) -> String {
    format!("http://198.18.200.{m}:{port}")
}

/// A member's client URL: https when the mesh is secured.
fn client_url(m: usize, tls: bool) -> String {
    let u = member_url(m, 2379);
    if tls {
        u.replacen("http://", "https://", 1)
    } else {
        u
    }
}

fn endpoints(tls: bool) -> String {
    (1..=3).map(|m| client_url(m, tls)).collect::<Vec<_>>().join(",")
}

/// Certificates made with openssl for a secured mesh, in `dir`: a CA,
/// each etcd member's server certificate (its address as the SAN) and a
/// client certificate per etcd user (the CN is the user: root, h1, ...).
fn make_pki(dir: &std::path::Path, users: &[&str]) {
    let key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    let mut s = format!(
        "set -e; cd {}; openssl req -x509 {key} -days 1 -subj /CN=xgre-test-ca -keyout ca-key.pem -out ca.pem 2>/dev/null\n",
        dir.display()
    );
    let sign = |name: &str, ext: &str| {
        format!(
            "openssl req {key} -subj /CN={name} -keyout {name}-key.pem -out {name}.csr 2>/dev/null && printf '{ext}' > {name}.ext && \
             openssl x509 -req -in {name}.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 1 -extfile {name}.ext -out {name}.pem 2>/dev/null\n"
        )
    };
    for m in 1..=3 {
        s += &sign(&format!("e{m}"), &format!("subjectAltName=IP:198.18.200.{m}\\nextendedKeyUsage=serverAuth,clientAuth"));
    }
    for u in users {
        s += &sign(u, "extendedKeyUsage=clientAuth");
    }
    sh(&s);
}

/// The mesh: namespaces, etcd members and xgre hosts.
struct Mesh {
    t: Topo,
    /// Namespace index in `t.hosts` of etcd member m (1-3) and host h (1-5).
    etcd_ns: Vec<usize>,
    host_ns: Vec<usize>,
    etcd: Vec<Option<Child>>,
    xgre: Vec<Option<Child>>,
    dir: PathBuf,
    /// Clients speak TLS with certificates (`make_pki`), and etcd's auth
    /// takes each certificate's CN for the user.
    tls: bool,
}

impl Drop for Mesh {
    fn drop(&mut self) {
        for c in self.etcd.iter_mut().chain(self.xgre.iter_mut()).flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Mesh {
    fn new() -> Mesh {
        let mut t = Topo::empty("e");
        let sw = t.add("esw");
        t.hosts[sw].shell("ip link add mg type bridge && ip link set mg up && ip link add ul type bridge && ip link set ul up");
        let plug = |t: &Topo, ns: usize, dev: &str, port: &str, bridge: &str, addr: &str| {
            let (n, s) = (&t.hosts[ns].ns, &t.hosts[sw].ns);
            sh(&format!(
                "ip link add {dev} netns {n} type veth peer name {port} netns {s} && ip -n {s} link set {port} master {bridge} up && \
                 ip -n {n} addr add {addr} dev {dev} && ip -n {n} link set {dev} up"
            ));
        };
        let mut etcd_ns = Vec::new();
        for m in 1..=3 {
            let ns = t.add(&format!("ee{m}"));
            plug(&t, ns, "m0", &format!("pe{m}"), "mg", &format!("198.18.200.{m}/24"));
            etcd_ns.push(ns);
        }
        let mut host_ns = Vec::new();
        for h in 1..=HOSTS {
            let ns = t.add(&format!("eh{h}"));
            plug(&t, ns, "m0", &format!("pm{h}"), "mg", &format!("198.18.200.{}/24", 10 + h));
            plug(&t, ns, "eth0", &format!("pu{h}"), "ul", &format!("198.18.1.{h}/24"));
            host_ns.push(ns);
        }
        let dir = t.dir.clone();
        Mesh { t, etcd_ns, host_ns, etcd: (0..3).map(|_| None).collect(), xgre: (0..HOSTS).map(|_| None).collect(), dir, tls: false }
    }

    fn host(&self, h: usize) -> &Host {
        &self.t.hosts[self.host_ns[h - 1]]
    }

    fn start_etcd(&mut self, m: usize) {
        let cluster: Vec<String> = (1..=3).map(|i| format!("e{i}={}", member_url(i, 2380))).collect();
        let data = self.dir.join(format!("e{m}"));
        let log = self.dir.join(format!("e{m}.log"));
        let cmd = format!(
            "etcd --name e{m} --data-dir {} --listen-client-urls {c} --advertise-client-urls {c} --listen-peer-urls {p} \
             --initial-advertise-peer-urls {p} --initial-cluster {} --initial-cluster-state new --initial-cluster-token xgre-test \
             --heartbeat-interval 50 --election-timeout 500{} >> {} 2>&1",
            data.display(),
            cluster.join(","),
            if self.tls {
                let d = self.dir.display();
                format!(" --cert-file {d}/e{m}.pem --key-file {d}/e{m}-key.pem --trusted-ca-file {d}/ca.pem --client-cert-auth")
            } else {
                String::new()
            },
            log.display(),
            c = client_url(m, self.tls),
            p = member_url(m, 2380),
        );
        self.etcd[m - 1] = Some(self.t.hosts[self.etcd_ns[m - 1]].spawn(&cmd));
    }

    fn stop_etcd(&mut self, m: usize, signal: &str) {
        if let Some(mut c) = self.etcd[m - 1].take() {
            sh(&format!("ip netns pids {} | xargs -r kill -{signal}", self.t.hosts[self.etcd_ns[m - 1]].ns));
            let _ = c.wait();
        }
    }

    /// etcdctl from the first host's namespace (it is on the management
    /// network too).
    fn etcdctl(&self, args: &str) -> String {
        self.host(1).run(&self.etcdctl_as("root", args))
    }

    /// An etcdctl command line, as etcd user `user` when the mesh is secured.
    fn etcdctl_as(&self, user: &str, args: &str) -> String {
        let auth = if self.tls {
            let d = self.dir.display();
            format!(" --cacert {d}/ca.pem --cert {d}/{user}.pem --key {d}/{user}-key.pem")
        } else {
            String::new()
        };
        format!("env ETCDCTL_API=3 etcdctl --dial-timeout 2s --endpoints {}{auth} {args}", endpoints(self.tls))
    }

    fn wait_healthy(&self) {
        let start = Instant::now();
        loop {
            let o = sh_out(&self.host(1).cmd(Enter::Nsenter, &self.etcdctl_as("root", "endpoint health")));
            if o.status.success() {
                return;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "etcd cluster not healthy: {}", String::from_utf8_lossy(&o.stderr));
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn config(&self, h: usize) -> String {
        let mut c = Config::new("gre0", Mode::Gre).with_address(&format!("198.19.0.{h}/24")).with_link(
            "eth0",
            &format!("198.18.1.{h}"),
            RxHook::Tc,
        );
        c.tunnel.keepalive = 100;
        if h == 1 {
            // A static peer beside the mesh's.
            c = c.with_peer("legacy", &["198.19.9.0/24"], &[("eth0", "198.18.1.99")]);
            c.peers[0].paths[0].mac = Some("02:00:00:00:00:99".parse().unwrap());
        }
        c.mesh = Some(MeshConfig {
            etcd: (1..=3).map(|m| client_url(m, self.tls)).collect(),
            prefix: PREFIX.into(),
            ttl: TTL,
            host: Some(format!("h{h}")),
            // h2 routes a subnet of its own, which an impostor claims half of.
            routes: if h == 2 { vec!["198.19.2.0/24".parse().unwrap()] } else { vec![] },
            macs: vec![],
            routes_allowed: vec!["198.19.0.0/16".parse().unwrap()],
            ca: self.tls.then(|| self.dir.join("ca.pem")),
            cert: self.tls.then(|| self.dir.join(format!("h{h}.pem"))),
            key: self.tls.then(|| self.dir.join(format!("h{h}-key.pem"))),
        });
        self.t.write(&format!("h{h}.toml"), &c.to_toml())
    }

    fn log(&self, h: usize) -> String {
        std::fs::read_to_string(self.dir.join(format!("h{h}.log"))).unwrap_or_default()
    }

    /// Start `xgre run` on host h; returns when its tunnel is up.
    fn start_host(&mut self, h: usize) {
        let cfg = self.config(h);
        let log = self.dir.join(format!("h{h}.log"));
        let child = self.host(h).spawn(&format!("{XGRE} run -c {cfg} >> {} 2>&1", log.display()));
        self.xgre[h - 1] = Some(child);
        let start = Instant::now();
        while !self.log(h).contains("watching") {
            assert!(start.elapsed() < Duration::from_secs(30), "xgre run on h{h} did not start:\n{}", self.log(h));
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill_host(&mut self, h: usize, signal: &str) {
        if let Some(mut c) = self.xgre[h - 1].take() {
            sh(&format!("ip netns pids {} | xargs -r kill -{signal}", self.host(h).ns));
            let _ = c.wait();
        }
    }

    fn status(&self, h: usize) -> serde_json::Value {
        serde_json::from_str(&self.host(h).xgre_ok(Enter::Nsenter, "status --json")).unwrap()
    }

    /// Host h's mesh peers.
    fn peers(&self, h: usize) -> BTreeSet<String> {
        let s = self.status(h);
        s["tunnels"][0]["peers"]
            .as_array()
            .map(|ps| ps.iter().filter(|p| p["origin"] == "mesh").map(|p| p["name"].as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    }

    /// Wait until every host in `on` has exactly the mesh peers `want`
    /// (minus itself); the time it took.
    fn wait_peers(&self, on: &[usize], want: &[usize], limit: Duration) -> Duration {
        let start = Instant::now();
        loop {
            let mut missing = Vec::new();
            for &h in on {
                let expect: BTreeSet<String> = want.iter().filter(|&&w| w != h).map(|w| format!("h{w}")).collect();
                let got = self.peers(h);
                if got != expect {
                    missing.push(format!("h{h} has {got:?}, want {expect:?}"));
                }
            }
            if missing.is_empty() {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < limit,
                "after {:.1} s: {}\nh{} log:\n{}",
                start.elapsed().as_secs_f64(),
                missing.join("; "),
                on[0],
                self.log(on[0])
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn ping(&self, from: usize, to: usize) -> bool {
        sh_out(&self.host(from).cmd(Enter::Nsenter, &format!("ping -c 1 -W 2 198.19.0.{to}"))).status.success()
    }

    fn ping_all(&self, hosts: &[usize]) {
        let mut failed = Vec::new();
        for &a in hosts {
            for &b in hosts.iter().filter(|&&b| b != a) {
                if !self.ping(a, b) {
                    failed.push(format!("h{a} -> h{b}"));
                }
            }
        }
        assert!(failed.is_empty(), "no answer over the tunnel: {}", failed.join(", "));
    }
}

#[test]
fn five_hosts_find_each_other_through_etcd_and_survive_its_failures() {
    let _s = serial();
    let mut m = Mesh::new();
    for e in 1..=3 {
        m.start_etcd(e);
    }
    m.wait_healthy();

    // Join one by one: every host gets every other, every pair pings.
    let mut up = Vec::new();
    for h in 1..=HOSTS {
        m.start_host(h);
        up.push(h);
        m.wait_peers(&up, &up, Duration::from_secs(10));
    }
    m.ping_all(&up);
    let s = m.status(1);
    let legacy: Vec<&serde_json::Value> = s["tunnels"][0]["peers"].as_array().unwrap().iter().filter(|p| p["name"] == "legacy").collect();
    assert_eq!(legacy.len(), 1, "the static peer is gone: {s}");
    assert_eq!(legacy[0]["origin"], "file");
    assert_eq!(s["tunnels"][0]["mesh"]["state"], "connected", "{s}");
    let text = m.host(1).xgre_ok(Enter::Nsenter, "status gre0");
    assert!(text.contains("mesh    host h1 in /xgre/t") && text.contains("connected for"), "{text}");
    assert!(text.contains("h2  (mesh)"), "{text}");
    // `show` writes a file of the host's own: the mesh's peers are named
    // in a comment only.
    let shown = m.host(1).xgre_ok(Enter::Nsenter, "show gre0");
    assert!(shown.contains("# and 4 peer(s) from the mesh (etcd), not written here: h2, h3, h4, h5"), "{shown}");
    assert!(!shown.contains("name = \"h2\""), "{shown}");

    // A host that dies leaves every other host within ttl + 1 s.
    m.kill_host(5, "9");
    let took = m.wait_peers(&[1, 2, 3, 4], &[1, 2, 3, 4], Duration::from_secs(TTL as u64 + 1));
    println!("a SIGKILLed host left the others' peers after {:.2} s (ttl {TTL} s)", took.as_secs_f64());

    // One etcd member down: joins and leaves still work.
    m.stop_etcd(1, "9");
    m.start_host(5);
    m.wait_peers(&[1, 2, 3, 4, 5], &[1, 2, 3, 4, 5], Duration::from_secs(15));
    m.kill_host(4, "TERM");
    // Withdrawn on SIGTERM: no TTL to wait for.
    let took = m.wait_peers(&[1, 2, 3, 5], &[1, 2, 3, 5], Duration::from_secs(3));
    println!("a host stopped with SIGTERM left the others' peers after {:.2} s", took.as_secs_f64());

    // Every member down: forwarding goes on with the last known peers, and
    // a host that starts meanwhile joins once etcd is back.
    m.stop_etcd(2, "TERM");
    m.stop_etcd(3, "TERM");
    std::thread::sleep(Duration::from_secs(2 * TTL as u64));
    m.ping_all(&[1, 2, 3, 5]);
    let s = m.status(1);
    assert_eq!(s["tunnels"][0]["mesh"]["state"], "unreachable", "{s}");
    let text = m.host(1).xgre_ok(Enter::Nsenter, "status gre0");
    assert!(text.contains("ETCD UNREACHABLE"), "{text}");
    m.start_host(4);
    std::thread::sleep(Duration::from_secs(1));
    assert!(!m.peers(1).contains("h4"), "h4 joined without etcd");
    for e in 1..=3 {
        m.start_etcd(e);
    }
    m.wait_healthy();
    m.wait_peers(&[1, 2, 3, 4, 5], &[1, 2, 3, 4, 5], Duration::from_secs(20));
    m.ping_all(&[1, 4, 5]);

    // A malformed entry, and one that clashes with h1's static peer: refused
    // with a line naming key and field; the others' well-formed ones stay.
    let lease = m.etcdctl("lease grant 120");
    let lease = lease.split_whitespace().nth(1).expect("lease ID").to_string();
    m.etcdctl(&format!(r#"put --lease={lease} {PREFIX}/hosts/bad '{{"version":1,"mode":"gre","links":[{{"address":"banana"}}]}}'"#));
    m.etcdctl(&format!(
        r#"put --lease={lease} {PREFIX}/hosts/legacy '{{"version":1,"mode":"gre","links":[{{"address":"198.18.1.98/24","mac":"02:00:00:00:00:98"}}]}}'"#
    ));
    let start = Instant::now();
    let want_bad = format!("refused etcd key {PREFIX}/hosts/bad: links[0].address: invalid IP address syntax");
    let want_clash = format!("refused etcd key {PREFIX}/hosts/legacy: host: `legacy` is also the name of peer[0] of the config file");
    while !(m.log(1).contains(&want_bad) && m.log(1).contains(&want_clash)) {
        assert!(start.elapsed() < Duration::from_secs(5), "no refusal logged:\n{}", m.log(1));
        std::thread::sleep(Duration::from_millis(50));
    }
    let s = m.status(1);
    assert!(s["tunnels"][0]["mesh"]["refused"][format!("{PREFIX}/hosts/bad")].as_str().unwrap().starts_with("links[0].address"), "{s}");
    assert!(!m.peers(1).contains("bad"));
    // The clash is h1's only: h2 takes `legacy` as a mesh host.
    let start = Instant::now();
    while !m.peers(2).contains("legacy") {
        assert!(start.elapsed() < Duration::from_secs(5), "h2 did not take the well-formed entry");
        std::thread::sleep(Duration::from_millis(50));
    }
    let exporter = m.host(1).spawn(&format!("timeout 20 {XGRE} exporter --listen 127.0.0.1:19478"));
    m.t.keep(exporter);
    std::thread::sleep(Duration::from_millis(500));
    let metrics = m.host(1).run(
        "/usr/bin/python3 -c \"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:19478/metrics', timeout=10).read().decode())\"",
    );
    assert!(metrics.contains(r#"xgre_mesh_connected{tunnel="gre0"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"xgre_mesh_refused_entries{tunnel="gre0"} 2"#), "{metrics}");
    assert!(metrics.contains(r#"xgre_peer_info{tunnel="gre0",peer="h2",origin="mesh"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"xgre_peer_info{tunnel="gre0",peer="legacy",origin="file"} 1"#), "{metrics}");

    // Hostile entries are refused by every host: a default route, half of
    // another host's subnet, a prefix outside `routes_allowed`, and a key
    // written by hand without a lease. Their traffic stays where it was.
    let entry = |n: u8, routes: &str| {
        format!(
            r#"'{{"version":1,"mode":"gre","links":[{{"address":"198.18.1.{n}/24","mac":"02:00:00:00:00:{n:02x}"}}],"routes":[{routes}]}}'"#
        )
    };
    m.etcdctl(&format!("put --lease={lease} {PREFIX}/hosts/dflt {}", entry(91, r#""0.0.0.0/0""#)));
    m.etcdctl(&format!("put --lease={lease} {PREFIX}/hosts/imp {}", entry(92, r#""198.19.2.0/25""#)));
    m.etcdctl(&format!("put --lease={lease} {PREFIX}/hosts/far {}", entry(93, r#""203.0.113.0/24""#)));
    m.etcdctl(&format!("put {PREFIX}/hosts/nolease {}", entry(94, r#""198.19.94.0/24""#)));
    let refusals = [
        format!("{PREFIX}/hosts/dflt: routes[0]: 0.0.0.0/0 is a default route, taken from the mesh only when mesh.routes_allowed lists it"),
        format!("{PREFIX}/hosts/imp: routes[0]: 198.19.2.0/25 overlaps 198.19.2.0/24 of host h2, which claimed it first"),
        format!("{PREFIX}/hosts/far: routes[0]: 203.0.113.0/24 is outside mesh.routes_allowed (198.19.0.0/16)"),
        format!("{PREFIX}/hosts/nolease: lease: the entry has no lease"),
    ];
    let start = Instant::now();
    while !refusals.iter().all(|r| m.log(1).contains(r)) {
        assert!(start.elapsed() < Duration::from_secs(5), "hostile entries not refused:\n{}", m.log(1));
        std::thread::sleep(Duration::from_millis(50));
    }
    let peers = m.peers(1);
    assert!(["dflt", "imp", "far", "nolease"].iter().all(|p| !peers.contains(*p)), "{peers:?}");
    let routes = m.host(1).run("ip route");
    assert!(!routes.contains("default") && !routes.contains("198.19.2.0/25") && !routes.contains("203.0.113"), "{routes}");
    assert!(m.ping(1, 2), "h2 lost its traffic to an impostor");

    // Host h3's key overwritten by hand (the impostor's entry): h3 writes
    // its own back at once, and stays reachable.
    m.etcdctl(&format!("put {PREFIX}/hosts/h3 {}", entry(95, r#""198.19.3.0/24""#)));
    let start = Instant::now();
    while !m.log(3).contains("this host's entry was overwritten by someone else") {
        assert!(start.elapsed() < Duration::from_secs(5), "h3 did not notice its entry overwritten:\n{}", m.log(3));
        std::thread::sleep(Duration::from_millis(50));
    }
    let back = m.etcdctl(&format!("get {PREFIX}/hosts/h3 --print-value-only"));
    assert!(back.contains("198.18.1.3/24") && !back.contains("198.18.1.95"), "h3's entry is not its own: {back}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(m.ping(1, 3), "h3 unreachable after its entry was overwritten");
    for k in ["dflt", "imp", "far", "nolease"] {
        m.etcdctl(&format!("del {PREFIX}/hosts/{k}"));
    }

    // A mesh peer is not edited by hand, and a reload keeps the mesh's.
    let o = m.host(1).xgre(Enter::Nsenter, "map-edit gre0 path set h2 0 --weight 3");
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("comes from the mesh"), "{o:?}");
    let cfg = m.dir.join("h1.toml");
    let out = m.host(1).xgre_ok(Enter::Nsenter, &format!("reload -c {}", cfg.display()));
    assert!(out.contains("no changes"), "{out}");
    assert_eq!(m.peers(1).len(), 4);
}

/// The secured mesh the README sets up: TLS with a certificate per host,
/// and etcd's own auth (the certificate's CN is the user) allowing each
/// host to write only `<prefix>/hosts/<itself>` and read the others. The
/// hosts find each other as before; a host's certificate cannot write
/// another host's key.
#[test]
fn a_secured_mesh_lets_each_host_write_only_its_own_key() {
    let _s = serial();
    let mut m = Mesh::new();
    m.tls = true;
    make_pki(&m.dir, &["root", "h1", "h2", "h3"]);
    for e in 1..=3 {
        m.start_etcd(e);
    }
    m.wait_healthy();
    // The README's commands.
    m.etcdctl("user add root --no-password");
    m.etcdctl("user grant-role root root");
    for h in 1..=3 {
        m.etcdctl(&format!("role add h{h}"));
        m.etcdctl(&format!("role grant-permission h{h} readwrite {PREFIX}/hosts/h{h}"));
        m.etcdctl(&format!("role grant-permission h{h} read --prefix {PREFIX}/hosts/"));
        m.etcdctl(&format!("user add h{h} --no-password"));
        m.etcdctl(&format!("user grant-role h{h} h{h}"));
    }
    m.etcdctl("auth enable");
    let hosts = [1, 2, 3];
    for h in hosts {
        m.start_host(h);
    }
    m.wait_peers(&hosts, &hosts, Duration::from_secs(15));
    m.ping_all(&hosts);
    // h1's certificate writes its own key, and is refused another's.
    let own = sh_out(&m.host(1).cmd(Enter::Nsenter, &m.etcdctl_as("h1", &format!("get {PREFIX}/hosts/h2 --print-value-only"))));
    assert!(own.status.success() && String::from_utf8_lossy(&own.stdout).contains("198.18.1.2/24"), "h1 reads h2's entry: {own:?}");
    let forged = r#"'{"version":1,"mode":"gre","links":[{"address":"198.18.1.1/24"}],"routes":["198.19.2.0/25"]}'"#;
    let o = sh_out(&m.host(1).cmd(Enter::Nsenter, &m.etcdctl_as("h1", &format!("put {PREFIX}/hosts/h2 {forged}"))));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("permission denied"), "h1 wrote h2's key: {err}");
    let entry = m.etcdctl(&format!("get {PREFIX}/hosts/h2 --print-value-only"));
    assert!(entry.contains("198.18.1.2/24") && !entry.contains("198.19.2.0/25"), "{entry}");
    m.ping_all(&hosts);
}
