//! Running it for real: live edits under traffic, crash recovery, a link
//! deleted under a running tunnel, show / save / reload round trips.

use std::{
    io::{BufRead, BufReader, Read},
    time::Duration,
};

use crate::common::*;
use gre_user::config::{edit, Config};
use serde_json::Value;

/// A tiny deterministic generator, so a failing run can be replayed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// Random valid edits of peer `c` (a peer with no host behind it), each
/// checked against the config the way `xgre map-edit` checks it.
fn random_edits(start: &Config, n: usize, seed: u64) -> (Vec<String>, Config) {
    let mut rng = Lcg(seed);
    let mut cfg = start.clone();
    let mut lines = Vec::new();
    while lines.len() < n {
        let c = cfg.peers.iter().find(|p| p.name == "c");
        let paths = c.map(|p| p.paths.len()).unwrap_or(0);
        let k = rng.next(200) + 30;
        let line = match (c.is_some(), rng.next(9)) {
            (false, _) => format!("peer add c --route 198.19.200.0/24 --path link=va,remote=198.18.0.{k},mac=02:00:00:00:00:{:02x}", k),
            (true, 0) => format!("path add c link=va,remote=198.18.0.{k},mac=02:00:00:00:01:{:02x},weight={}", k, rng.next(5) + 1),
            (true, 1) if paths > 1 => format!("path del c {}", rng.next(paths as u64)),
            (true, 2) => format!("path set c {} --weight {}", rng.next(paths as u64), rng.next(10) + 1),
            (true, 3) => format!("path set c {} --{}", rng.next(paths as u64), if rng.next(2) == 0 { "down" } else { "up" }),
            (true, 4) => format!("route add c 198.19.{}.0/24", rng.next(100) + 1),
            (true, 5) => match c.unwrap().routes.get(rng.next(4) as usize) {
                Some(r) => format!("route del {r}"),
                None => continue,
            },
            (true, 6) => format!("neigh set c {} 02:00:00:00:02:{:02x}", rng.next(paths as u64), k),
            (true, 7) => format!("peer set c --route 198.19.{}.0/24", rng.next(100) + 101),
            (true, _) if rng.next(10) == 0 => "peer del c".to_string(),
            _ => continue,
        };
        let Ok(e) = edit::parse_line(&line) else { panic!("generator made an unparsable edit: {line}") };
        let Ok(next) = edit::apply_edit(&cfg, &e) else { continue };
        if next.validate("test").is_err() {
            continue;
        }
        cfg = next;
        lines.push(line);
    }
    (lines, cfg)
}

fn counters(h: &Host) -> Value {
    serde_json::from_str(&h.xgre_ok(Enter::Nsenter, "status --json")).unwrap()
}

fn drops(s: &Value) -> u64 {
    s["drops"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum()
}

fn peer<'a>(s: &'a Value, name: &str) -> &'a Value {
    s["tunnels"][0]["peers"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("no peer {name} in {s}"))
}

#[test]
fn a_thousand_live_edits_leave_the_other_peer_untouched() {
    let _s = serial();
    let t = Topo::pair("m");
    let mut a = p2p('a', "tc").with_peer("c", &["198.19.100.3/32"], &[("va", "198.18.0.30")]);
    a.peers[1].paths[0].mac = Some("02:00:00:00:00:30".parse().unwrap());
    let cfg_a = a.to_toml();
    let ca = t.write("a.toml", &cfg_a);
    let cb = t.write("b.toml", &p2p_config('b', "", "tc"));
    t.a().xgre_ok(Enter::Nsenter, &format!("up -c {ca}"));
    t.b().xgre_ok(Enter::Nsenter, &format!("up -c {cb}"));

    let start = Config::parse(&cfg_a, "a.toml").unwrap();
    let (lines, want) = random_edits(&start, 1000, 0x5eed);
    let batch = t.write("edits.txt", &lines.join("\n"));

    // TCP to peer b for the whole time the edits to peer c run.
    t.b().run("iperf3 -s -1 -D -B 198.19.100.2");
    std::thread::sleep(Duration::from_millis(300));
    let client = t.a().spawn("timeout 30 iperf3 -c 198.19.100.2 -t 6 -J");
    std::thread::sleep(Duration::from_millis(1000));
    let out = t.a().xgre_ok(Enter::Nsenter, &format!("map-edit gre0 --batch {batch} --save {}", t.dir.join("saved.toml").display()));
    assert!(out.contains("1000 edit(s) applied"), "{out}");
    println!("{}", out.trim());
    let res = client.wait_with_output().unwrap();
    let j: Value = serde_json::from_slice(&res.stdout).expect("iperf3 JSON");
    let mbps = j["end"]["sum_received"]["bits_per_second"].as_f64().unwrap() / 1e6;
    assert!(mbps > 100.0, "traffic to b during the edits: {mbps:.0} Mbit/s");

    // Every packet a sent to b arrived, and nothing anywhere was dropped.
    std::thread::sleep(Duration::from_millis(300));
    let (sa, sb) = (counters(t.a()), counters(t.b()));
    assert_eq!(drops(&sa), 0, "a dropped: {}", sa["drops"]);
    assert_eq!(drops(&sb), 0, "b dropped: {}", sb["drops"]);
    let sent = peer(&sa, "site-b")["counters"]["tx_packets"].as_u64().unwrap();
    let got = peer(&sb, "site-a")["counters"]["rx_packets"].as_u64().unwrap();
    assert_eq!(sent, got, "packets a sent to b vs packets b received from a");
    assert!(sent > 10_000, "{sent}");

    // The final state is the requested one: read back, and as saved.
    let shown = t.a().xgre_ok(Enter::Nsenter, "show gre0");
    let shown = Config::parse(&shown, "show").expect("`xgre show` prints a valid config");
    assert_eq!(shown.fingerprint(), want.fingerprint(), "running:\n{}\nwanted:\n{}", shown.to_toml(), want.to_toml());
    let saved = Config::load(&t.dir.join("saved.toml")).unwrap();
    assert_eq!(saved.fingerprint(), want.fingerprint());
    // `up` of the saved file is a no-op; reload of the original undoes the
    // edits, and a second reload finds nothing to do.
    let out = t.a().xgre_ok(Enter::Nsenter, &format!("up -c {}", t.dir.join("saved.toml").display()));
    assert!(out.contains("already up"), "{out}");
    t.a().xgre_ok(Enter::Nsenter, &format!("reload -c {ca}"));
    let back = Config::parse(&t.a().xgre_ok(Enter::Nsenter, "show gre0"), "show").unwrap();
    assert_eq!(back.fingerprint(), start.fingerprint());
    assert!(t.a().xgre_ok(Enter::Nsenter, &format!("reload -c {ca}")).contains("no changes"));
    let routes = t.a().run("ip route show dev gre0");
    assert_eq!(routes.lines().count(), 2, "kernel routes follow the peers: {routes}");
}

#[test]
fn refused_edits_name_what_is_wrong_and_change_nothing() {
    let _s = serial();
    let t = Topo::pair("n");
    let ca = t.write("a.toml", &p2p_config('a', "", "tc"));
    t.a().xgre_ok(Enter::Nsenter, &format!("up -c {ca}"));
    let before = t.a().xgre_ok(Enter::Nsenter, "show gre0");
    for (edit, want) in [
        ("path add site-b link=eth9,remote=198.18.0.21", "peer[0].path[1].link: `eth9` is not a [[link]] dev"),
        ("path set site-b 4 --weight 2", "has no path 4"),
        ("peer del nobody", "peer `nobody` does not exist"),
        ("path set site-b 0 --weight 5000", "peer[0].path[0].weight: 5000 is outside"),
    ] {
        let o = t.a().xgre(Enter::Nsenter, &format!("map-edit gre0 {edit}"));
        assert!(!o.status.success(), "{edit} was accepted");
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(e.contains(want), "{edit}: {e}");
    }
    assert_eq!(t.a().xgre_ok(Enter::Nsenter, "show gre0"), before, "a refused edit changed the tunnel");
}

#[test]
fn sigkill_during_up_then_up_completes_cleanly() {
    let _s = serial();
    let t = Topo::pair("k");
    let ca = t.write("a.toml", &p2p_config('a', "key = 5", "xdp"));
    let cb = t.write("b.toml", &p2p_config('b', "key = 5", "tc"));
    t.b().xgre_ok(Enter::Nsenter, &format!("up -c {cb}"));
    for delay_ms in [0u64, 5, 15, 30, 60, 120] {
        let mut c = t.a().spawn(&format!("{XGRE} up --pin -c {ca}"));
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = c.kill();
        let _ = c.wait();
        // `c` is bash -c nsenter ...; make sure xgre itself is gone too.
        let _ = sh_out(&format!("ip netns pids {} | xargs -r kill -9", t.a().ns));
        let out = t.a().xgre_ok(Enter::Nsenter, &format!("up --pin -c {ca}"));
        assert!(out.contains("up"), "after SIGKILL at {delay_ms} ms: {out}");
        let ingress = t.a().run("tc filter show dev va ingress");
        assert_eq!(
            ingress.lines().filter(|l| l.contains("xgre_")).count(),
            1,
            "one receive filter after SIGKILL at {delay_ms} ms:\n{ingress}"
        );
        let egress = t.a().run("tc filter show dev gre0 egress");
        assert_eq!(egress.lines().filter(|l| l.contains("xgre_tx")).count(), 1, "{egress}");
        let ping = t.a().run("ping -c 1 -W 2 198.19.100.2");
        assert!(ping.contains("1 received"), "after SIGKILL at {delay_ms} ms: {ping}");
        t.a().xgre_ok(Enter::Nsenter, "down gre0");
        let pins = format!("/sys/fs/bpf/xgre/net{}", t.a().netns_ino());
        assert!(!std::path::Path::new(&pins).exists(), "pins leaked after SIGKILL at {delay_ms} ms");
        assert!(!t.a().run("ip -o link").contains("gre0"), "device leaked");
        assert!(!t.a().run("ip -d link show va").contains("prog/xdp"), "XDP program leaked");
    }
}

#[test]
fn a_link_deleted_under_a_running_tunnel() {
    let _s = serial();
    let mut t = Topo::switched("d", 2, None);
    let ca = t.write("a.toml", &multi_config('a', 2, ""));
    let cb = t.write("b.toml", &multi_config('b', 2, ""));
    let mut daemons = Vec::new();
    for (i, c) in [(0, &ca), (1, &cb)] {
        let mut child = t.hosts[i].spawn(&format!("{XGRE} run -c {c}"));
        let mut r = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert!(line.contains("watching"), "{line}");
        daemons.push(r);
        t.keep(child);
    }
    std::thread::sleep(Duration::from_millis(400));
    t.a().run("ip link del a1");
    std::thread::sleep(Duration::from_millis(500));
    let s = counters(t.a());
    let tun = &s["tunnels"][0];
    let link = tun["links"].as_array().unwrap().iter().find(|l| l["address"] == "198.18.1.10").expect("the link is still listed");
    assert_eq!(link["present"], false, "status shows the link gone: {link}");
    assert_eq!(tun["peers"][0]["paths"][1]["up"], false, "its path left the rotation");
    let text = t.a().xgre_ok(Enter::Nsenter, "status");
    assert!(text.contains("device gone"), "{text}");
    // Traffic continues on the other path.
    let x = transfer(t.a(), t.b(), "198.19.100.2", 4);
    assert_eq!(x.sent, x.got);
    let ping = t.a().run("ping -c 3 -i 0.2 -W 2 198.19.100.2");
    assert!(ping.contains("3 received"), "{ping}");
    // `down` still leaves nothing behind.
    t.a().xgre_ok(Enter::Nsenter, "down gre0");
    assert!(!t.a().run("ip -o link").contains("gre0"));
    assert!(!t.a().run("tc qdisc show dev a0").contains("clsact"));
}

#[test]
fn exporter_and_watch_show_the_counters() {
    let _s = serial();
    let mut t = Topo::pair("x");
    let ca = t.write("a.toml", &p2p_config('a', "sequence = true", "tc"));
    let cb = t.write("b.toml", &p2p_config('b', "sequence = true", "tc"));
    t.a().xgre_ok(Enter::Nsenter, &format!("up -c {ca}"));
    t.b().xgre_ok(Enter::Nsenter, &format!("up -c {cb}"));
    let exporter = t.a().spawn(&format!("{XGRE} exporter --listen 127.0.0.1:19477"));
    t.keep(exporter);
    std::thread::sleep(Duration::from_millis(500));
    t.a().run("ping -c 3 -i 0.2 -W 2 198.19.100.2");
    let body = t.a().run(
        "/usr/bin/python3 -c \"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:19477/metrics', timeout=10).read().decode())\"",
    );
    let sample = |name: &str| -> u64 {
        body.lines()
            .find(|l| l.starts_with(name) && l.contains("peer=\"site-b\""))
            .unwrap_or_else(|| panic!("no {name} for site-b in:\n{body}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(sample("xgre_path_tx_packets_total") >= 3);
    assert!(sample("xgre_path_rx_packets_total") >= 3);
    assert_eq!(sample("xgre_path_up"), 1);
    assert_eq!(sample("xgre_peer_reorder_out_of_order_total"), 0);
    assert!(body.contains("xgre_drops_total{reason=\"bad_checksum\"} 0"), "{body}");
    // OpenMetrics text: each family's HELP and TYPE come before its
    // samples, once; a counter's samples end in _total; `# EOF` closes it.
    let mut seen = std::collections::BTreeSet::new();
    let mut current = String::new();
    for l in body.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            let mut w = rest.split(' ');
            let (name, kind) = (w.next().unwrap(), w.next().unwrap());
            current = if kind == "counter" { format!("{name}_total") } else { name.to_string() };
            assert!(seen.insert(current.clone()), "family {name} declared twice");
        } else if !l.starts_with('#') && !l.is_empty() {
            let name = l.split(['{', ' ']).next().unwrap();
            assert_eq!(name, current, "sample of {name} outside its family");
        }
    }
    assert_eq!(body.trim_end().lines().last(), Some("# EOF"), "{body}");
    let watch = t.a().xgre_ok(Enter::Nsenter, "status --watch --interval 0.2 --count 2");
    assert!(watch.contains("tx Mbit/s") && watch.contains("site-b") && watch.contains("reorder:"), "{watch}");
}

#[test]
fn debug_prints_the_datapaths_own_drop_messages() {
    let _s = serial();
    let t = Topo::pair("g");
    // Mismatched keys: everything b sends, a drops as key_mismatch.
    let ca = t.write("a.toml", &p2p_config('a', "key = 5", "tc"));
    let cb = t.write("b.toml", &p2p_config('b', "key = 6", "tc"));
    t.a().xgre_ok(Enter::Nsenter, &format!("up -c {ca}"));
    t.b().xgre_ok(Enter::Nsenter, &format!("up -c {cb}"));
    let mut watch = t.a().spawn(&format!("{XGRE} status --watch --debug --interval 0.5 --count 6"));
    // Send only once the listener says it listens.
    let mut stderr = BufReader::new(watch.stderr.take().unwrap());
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    assert!(first.contains("printing the datapath's messages"), "{first}");
    let _ = sh_out(&t.b().cmd(Enter::Nsenter, "ping -c 2 -i 0.2 -W 1 198.19.100.1"));
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    let out = watch.wait_with_output().unwrap();
    let err = first + &rest;
    assert!(out.status.success(), "{err}");
    assert!(err.contains("drop (key_mismatch)"), "no datapath message in:\n{err}");
    // Nobody listens any more: the switch is off again.
    assert_eq!(meta_of(t.a()).1.debug, 0, "the datapath still logs with nobody listening");
    let s = counters(t.a());
    assert!(s["drops"]["key_mismatch"].as_u64().unwrap() >= 2, "{}", s["drops"]);
}

#[test]
fn status_and_down_work_after_every_link_vanished() {
    // A tunnel brought up by plain `up` (no `xgre run` watching), whose only
    // link then goes: a VM's tap closed, a NIC unplugged. Its receive
    // programs go with the link; the rest of the datapath must not.
    for rx in ["tc", "xdp"] {
        let _s = serial();
        let t = Topo::pair(&format!("g{}", &rx[..1]));
        let ca = t.write("a.toml", &p2p_config('a', "key = 42\nsequence = true", rx));
        t.a().xgre_ok(Enter::Nsenter, &format!("up -c {ca}"));
        t.a().run("ip link del va");
        let o = t.a().xgre(Enter::Nsenter, "status");
        assert!(o.status.success(), "rx={rx}: status failed: {}", String::from_utf8_lossy(&o.stderr));
        assert!(String::from_utf8_lossy(&o.stdout).contains("device gone"), "rx={rx}");
        let s = counters(t.a());
        assert_eq!(s["tunnels"][0]["links"][0]["present"], false, "rx={rx}");
        t.a().xgre_ok(Enter::Nsenter, "down gre0");
        assert!(!t.a().run("ip -o link").contains("gre0"), "rx={rx}: the tunnel device is left");
        let start = std::time::Instant::now();
        while !xgre_programs().is_empty() && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(xgre_programs().is_empty(), "rx={rx}: programs left: {:?}", xgre_programs());
    }
}

#[test]
fn keepalives_never_cut_off_a_peer_that_cannot_reflect_them() {
    let _s = serial();
    let mut t = Topo::switched("n", 1, None);
    let tap = |me: char| {
        multi_config(me, 1, "key = 4\nmode = \"gretap\"")
            .replace("routes = [\"198.19.100.2/32\"]", "")
            .replace("routes = [\"198.19.100.1/32\"]", "")
            .replace("/32\"]\n", "/24\"]\n")
    };
    let (ca, cb) = (t.write("a.toml", &tap('a')), t.write("b.toml", &tap('b')));
    // b stands for an Ethernet-only GRE endpoint (a Linux gretap, Open
    // vSwitch's default GRE port), which drops IPv4-in-GRE: the switch
    // drops a's keepalives to it. Data (0x6558) still flows.
    t.sw().run("nft add table bridge f");
    t.sw().shell("nft add chain bridge f drops \"{ type filter hook forward priority 0; }\"");
    let no_reflect = "nft add rule bridge f drops ether type ip ip protocol 47 ip daddr 198.18.0.20 @th,16,16 0x0800 drop";
    t.sw().run(no_reflect);
    t.start_run(1, &cb);
    t.start_run(0, &ca);
    let path = |h: &Host| json_status_of(h)["tunnels"][0]["peers"][0]["paths"][0].clone();
    // Ten keepalive intervals, over three times the miss window.
    std::thread::sleep(Duration::from_millis(1000));
    let p = path(t.a());
    assert_eq!(p["up"], true, "a peer that cannot reflect keepalives was cut off: {p}");
    assert_eq!(p["counters"]["keepalive_replies"], 0, "{p}");
    let ping = t.a().run("ping -c 5 -i 0.2 -W 2 198.19.100.2");
    assert!(ping.contains("5 received"), "{ping}");
    // Once the peer has answered, it is judged like any other: when its
    // replies stop, the path leaves the rotation within the miss window.
    t.sw().run("nft flush chain bridge f drops");
    std::thread::sleep(Duration::from_millis(500));
    assert!(path(t.a())["counters"]["keepalive_replies"].as_u64().unwrap() > 0, "replies once b reflects");
    t.sw().run(no_reflect);
    let start = std::time::Instant::now();
    while path(t.a())["up"] == true && start.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = start.elapsed();
    assert_eq!(path(t.a())["up"], false, "an answering peer that went quiet stayed up");
    assert!(took < Duration::from_millis(1000), "path down after {took:?}; the window is 3 x 100 ms");
}

#[test]
fn keepalive_required_judges_a_silent_peer_from_the_start() {
    let _s = serial();
    let mut t = Topo::pair("q");
    let mut c = p2p('a', "tc");
    c.peers[0].keepalive = gre_user::config::KeepaliveMode::Required;
    let ca = t.write("a.toml", &c.to_toml());
    // No xgre on b: nothing reflects.
    t.start_run(0, &ca);
    std::thread::sleep(Duration::from_millis(800));
    let s = json_status_of(t.a());
    assert_eq!(s["tunnels"][0]["peers"][0]["paths"][0]["up"], false, "{}", s["tunnels"][0]["peers"][0]);
    let shown = t.a().xgre_ok(Enter::Nsenter, "show gre0");
    assert!(shown.contains("keepalive = \"required\""), "{shown}");
    t.a().xgre_ok(Enter::Nsenter, "map-edit gre0 peer set site-b --keepalive auto");
    std::thread::sleep(Duration::from_millis(300));
    let s = json_status_of(t.a());
    assert_eq!(s["tunnels"][0]["peers"][0]["paths"][0]["up"], true, "auto: a peer that never answered is not judged");
}

fn json_status_of(h: &Host) -> Value {
    serde_json::from_str(&h.xgre_ok(Enter::Nsenter, "status --json")).expect("status --json is JSON")
}

/// The meta map of the datapath running in `h`'s namespace, and its value.
fn meta_of(h: &Host) -> (aya::maps::Array<aya::maps::MapData, gre_common::Meta>, gre_common::Meta) {
    use aya::maps::{Array, Map, MapData, MapInfo};
    use gre_common::names::*;
    let ino = h.netns_ino();
    for info in aya::programs::loaded_programs().filter_map(Result::ok) {
        if info.name_as_str() != Some(PROG_TX) {
            continue;
        }
        let Ok(Some(ids)) = info.map_ids() else { continue };
        for id in ids {
            if MapInfo::from_id(id).ok().and_then(|m| m.name_as_str().map(str::to_string)).as_deref() != Some(MAP_META) {
                continue;
            }
            let meta: Array<MapData, gre_common::Meta> = Map::from_map_data(MapData::from_id(id).unwrap()).unwrap().try_into().unwrap();
            let m = meta.get(&0, 0).unwrap();
            if m.netns_ino == ino {
                return (meta, m);
            }
        }
    }
    panic!("no xgre datapath in {}", h.ns);
}

/// Make the datapath running in `h`'s namespace look like another build's
/// (what an older xgre of the same map layout leaves behind).
fn pretend_another_build(h: &Host) {
    let (mut meta, m) = meta_of(h);
    meta.set(0, gre_common::Meta { build: 1, ..m }, 0).unwrap();
}

/// The ids of the programs attached in `h`'s namespace (XDP and TC).
fn attached_ids(h: &Host) -> String {
    h.shell("ip -d link show | grep -o \"prog/xdp id [0-9]*\"; tc filter show dev gre0 egress; for d in va vb; do tc filter show dev $d ingress 2>/dev/null || true; done")
        .lines()
        .filter(|l| l.contains(" id "))
        .map(|l| l.split(" id ").nth(1).unwrap_or("").split_whitespace().next().unwrap_or("").to_string())
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn another_build_replaces_the_programs_under_traffic_without_losing_a_packet() {
    let _s = serial();
    let mut t = Topo::pair("u");
    // TC on one side, XDP on the other: both kinds of attachment swap.
    let ca = t.write("a.toml", &p2p_config('a', "key = 7", "tc"));
    let cb = t.write("b.toml", &p2p_config('b', "key = 7", "xdp"));
    t.a().xgre_ok(Enter::Nsenter, &format!("up -c {ca}"));
    t.b().xgre_ok(Enter::Nsenter, &format!("up -c {cb}"));
    let (ids_a, ids_b) = (attached_ids(t.a()), attached_ids(t.b()));
    let server = t.b().spawn("timeout 30 iperf3 -s -1 -B 198.19.100.2");
    t.keep(server);
    std::thread::sleep(Duration::from_millis(500));
    // A paced stream (no congestion, so no retransmit of its own) and a
    // ping every 10 ms, across the upgrade of both ends.
    t.a().run("nstat -n");
    let iperf = t.a().spawn("timeout 30 iperf3 -c 198.19.100.2 -B 198.19.100.1 -t 6 -b 300M -J");
    let ping = t.a().spawn("ping -c 500 -i 0.01 -W 1 198.19.100.2");
    std::thread::sleep(Duration::from_millis(1500));
    for (h, c) in [(t.a(), &ca), (t.b(), &cb)] {
        pretend_another_build(h);
        let out = h.xgre_ok(Enter::Nsenter, &format!("up -c {c}"));
        assert!(out.contains("replaced in place") && out.contains("already up"), "{}: {out}", h.ns);
    }
    let ping = ping.wait_with_output().unwrap();
    let ping = String::from_utf8_lossy(&ping.stdout);
    assert!(ping.contains("500 received"), "pings lost across the upgrade: {}", ping.lines().last().unwrap_or(""));
    let iperf = iperf.wait_with_output().unwrap();
    let j: Value = serde_json::from_slice(&iperf.stdout).expect("iperf3 -J");
    let retransmits = j["end"]["sum_sent"]["retransmits"].as_u64().expect("retransmits");
    let nstat = t.a().run("nstat -az TcpRetransSegs TcpExtTCPDSACKRecvSegs TcpExtTCPLossProbes");
    let stat = |name: &str| -> u64 {
        nstat.lines().find(|l| l.starts_with(name)).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0)
    };
    eprintln!("iperf3 retransmits {retransmits}; {}", nstat.replace('\n', "; "));
    // A stall (two cores, a verifier run) can make TCP probe its tail
    // without any loss; the receiver then reports the copy as a duplicate
    // (D-SACK). A lost segment is a retransmission nobody reports so.
    assert_eq!(
        stat("TcpRetransSegs"),
        stat("TcpExtTCPDSACKRecvSegs"),
        "a segment was lost across the upgrade (iperf3: {retransmits} retransmits)\n{nstat}"
    );
    for h in [t.a(), t.b()] {
        assert_eq!(drops(&counters(h)), 0, "{}: the datapath dropped packets", h.ns);
    }
    assert_ne!(attached_ids(t.a()), ids_a, "a's programs were not replaced");
    assert_ne!(attached_ids(t.b()), ids_b, "b's programs were not replaced");
    // Same build now: nothing to replace.
    let out = t.a().xgre_ok(Enter::Nsenter, &format!("up -c {ca}"));
    assert!(!out.contains("replaced"), "{out}");
}

/// One `xgre run` per tunnel: a second one refuses at once, naming the
/// first's PID, whichever way it enters the namespace, and the first keeps
/// its tunnel (before, the second adopted the tunnel and took it down when
/// stopped).
#[test]
fn a_second_run_for_a_tunnel_refuses_and_names_the_first() {
    let _s = serial();
    let mut t = Topo::pair("2r");
    let ca = t.write("a.toml", &p2p_config('a', "", "tc"));
    t.start_run(0, &ca);
    for how in [Enter::Nsenter, Enter::IpNetnsExec] {
        let o = sh_out(&t.a().cmd(how, &format!("timeout 10 {XGRE} run -c {ca}")));
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{how:?}: the second run must refuse, not run (124: it ran until the timeout): {err}");
        let pid = err.split("(PID ").nth(1).and_then(|r| r.split(')').next()).unwrap_or_else(|| panic!("{how:?}: no PID in: {err}"));
        assert!(sh_out(&format!("kill -0 {pid}")).status.success(), "PID {pid} named in `{err}` is not running");
    }
    // `up` with another config names the holder too.
    let other = t.write("other.toml", &p2p_config('a', "key = 9", "tc"));
    let o = t.a().xgre(Enter::Nsenter, &format!("up -c {other}"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("managed by `xgre run` (PID "), "{err}");
    let s = t.a().xgre_ok(Enter::Nsenter, "status");
    assert!(s.contains("tunnel gre0  [up]"), "the first run's tunnel went: {s}");
}

/// Programs are verified only when attached: `up` of a tunnel with TC
/// receive loads its three programs and no others, and `status`, `show`,
/// `map-edit`, a `reload` of peers and `down` load none (strace counts the
/// BPF_PROG_LOAD calls; each command used to verify the whole datapath
/// again, 12 loads and 4-10 s of CPU on a fresh machine).
#[test]
fn readers_and_editors_load_no_programs() {
    let _s = serial();
    let t = Topo::pair("l");
    let ca = t.write("a.toml", &p2p_config('a', "", "tc"));
    let mut heavier = p2p('a', "tc");
    heavier.peers[0].paths[0].weight = 3;
    let cw = t.write("w.toml", &heavier.to_toml());
    let trace = t.dir.join("trace");
    // The datapath's programs loaded by one command. aya also probes the
    // kernel's features with programs of 2-5 instructions of its own;
    // those are not counted.
    let loads = |args: &str| -> usize {
        let cmd = format!("strace -f -qq -e trace=bpf -o {} {XGRE} {args}", trace.display());
        let o = sh_out(&t.a().cmd(Enter::Nsenter, &cmd));
        assert!(o.status.success(), "xgre {args}: {}", String::from_utf8_lossy(&o.stderr));
        let text = std::fs::read_to_string(&trace).unwrap();
        text.lines().filter(|l| l.contains("BPF_PROG_LOAD") && l.contains("prog_name=\"xgre_")).count()
    };
    assert_eq!(loads(&format!("up -c {ca}")), 3, "up with TC receive verifies xgre_tx, xgre_tx_send and xgre_rx_tc only");
    for args in
        ["status", "status --json", "show gre0", "map-edit gre0 path set site-b 0 --weight 2", &format!("reload -c {cw}"), "down gre0"]
    {
        assert_eq!(loads(args), 0, "xgre {args} loaded programs of the datapath");
    }
}
