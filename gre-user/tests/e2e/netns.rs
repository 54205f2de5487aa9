//! End-to-end tests: two hosts in network namespaces, `xgre up` on both,
//! real traffic across the tunnel, captures on the underlay, and `xgre down`
//! leaving nothing behind.

use crate::common::*;
use serde_json::Value;

/// What a user checks after `xgre down`: no device, no qdisc we added, no
/// program, no pin.
#[track_caller]
fn assert_nothing_left(t: &Topo) {
    for (h, dev) in [(t.a(), "va"), (t.b(), "vb")] {
        let links = h.run("ip -o link show");
        assert!(!links.contains("gre0"), "{}: a tunnel device is left:\n{links}", h.ns);
        let q = h.run(&format!("tc qdisc show dev {dev}"));
        assert!(!q.contains("clsact"), "{}: the clsact qdisc is left on {dev}: {q}", h.ns);
        let x = h.run(&format!("ip -d link show {dev}"));
        assert!(!x.contains("prog/xdp"), "{}: an XDP program is left on {dev}: {x}", h.ns);
    }
    // The kernel frees a detached program after an RCU grace period.
    let start = std::time::Instant::now();
    while !xgre_programs().is_empty() && start.elapsed() < std::time::Duration::from_secs(5) {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let progs = xgre_programs();
    assert!(progs.is_empty(), "programs still loaded: {progs:?}");
    for h in &t.hosts {
        let pins = format!("/sys/fs/bpf/xgre/net{}", h.netns_ino());
        assert!(!std::path::Path::new(&pins).exists(), "pins left in {pins}");
    }
}

fn json_status(h: &Host) -> Value {
    serde_json::from_str(&h.xgre_ok(Enter::Nsenter, "status --json")).expect("status --json is JSON")
}

fn tunnel_over(rx: &str) {
    let _s = serial();
    let t = Topo::pair(&rx[..1]);
    let ca = t.write("a.toml", &p2p_config('a', "key = 42", rx));
    let cb = t.write("b.toml", &p2p_config('b', "key = 42", rx));
    // Both ways into a namespace, each host its own gre0: pins must not
    // collide, and the `ip netns exec` host has no bpffs until xgre mounts one.
    let out = t.a().xgre_ok(Enter::Nsenter, &format!("up --pin -c {ca}"));
    assert!(out.contains("gre0: up"), "{out}");
    let pins = format!("/sys/fs/bpf/xgre/net{}/XGRE_PEERS", t.a().netns_ino());
    assert!(std::path::Path::new(&pins).exists(), "--pin under nsenter pins into the host's bpffs");
    let out = t.b().xgre_ok(Enter::IpNetnsExec, &format!("up --pin -c {cb}"));
    assert!(out.contains(&format!("vb:{rx}")), "b should receive with {rx}: {out}");

    assert_eq!(t.a().mtu("gre0"), 1472, "1500 - 20 (IPv4) - 8 (GRE with key)");

    // The wire: IP protocol 47, GRE version 0, our key.
    let cap = Capture::start(t.a(), "va", "ip proto 47 and src host 198.18.0.10", &["ip.proto", "gre.flags.version", "gre.key"], 3, 15);
    let ping = t.a().run("ping -c 3 -i 0.2 -W 2 198.19.100.2");
    assert!(ping.contains("3 received"), "{ping}");
    let pkts = cap.finish();
    assert_eq!(pkts.len(), 3, "expected 3 GRE packets from a on the underlay, saw {pkts:?}");
    for p in &pkts {
        assert_eq!(p[0], "47");
        assert_eq!(p[1], "0", "GRE version");
        assert_eq!(p[2], "0x0000002a", "GRE key 42 on the wire");
    }

    // TCP many times the MTU, GSO on: hashes match at both ends. With XDP
    // on the receiving veth, the sender's veth must segment our GSO packets
    // in software, so every frame on the wire is a real MTU-sized packet.
    let cap = Capture::start(t.a(), "va", "ip proto 47 and src host 198.18.0.10", &["frame.len"], 10_000, 30);
    let x = transfer(t.a(), t.b(), "198.19.100.2", 12);
    assert_eq!(x.sent, x.got, "bytes/sha256 sent vs received");
    assert!(x.sent.starts_with(&(12u64 << 20).to_string()), "{}", x.sent);
    let sizes: Vec<u32> = cap.finish_now().iter().filter_map(|p| p[0].parse().ok()).collect();
    assert!(!sizes.is_empty(), "no GRE seen during the transfer");
    if rx == "xdp" {
        let max = sizes.iter().max().unwrap();
        assert!(*max <= 1514, "a {max}-byte frame on a 1500-MTU wire: GSO packet not segmented");
    }

    let s = json_status(t.a());
    let tun = &s["tunnels"][0];
    assert_eq!(tun["name"], "gre0");
    assert_eq!(tun["key"], 42);
    assert_eq!(tun["links"][0]["rx"], rx);
    assert!(tun["counters"]["tx_bytes"].as_u64().unwrap() > 12 << 20, "{tun}");
    assert!(tun["counters"]["rx_packets"].as_u64().unwrap() >= 3, "{tun}");
    let drops: u64 = s["drops"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(drops, 0, "drops: {}", s["drops"]);
    let text = t.a().xgre_ok(Enter::Nsenter, "status gre0");
    assert!(text.contains("site-b") && text.contains("198.18.0.20") && text.contains("drops   none"), "{text}");
    // Which XDP program a kernel takes shows where it matters.
    let nm = s["programs"].as_array().unwrap().iter().any(|p| p["name"] == "xgre_rx_xdp_nm");
    assert_eq!(nm, rx == "xdp" && !verifies_xdp_metadata(), "{}", s["programs"]);
    assert_eq!(text.contains("TC decapsulates"), nm, "{text}");

    // `up` again with the same file: a no-op, not a second attachment.
    let filters_before = t.b().run("tc filter show dev vb ingress");
    let xdp_before = t.b().run("ip -d link show vb");
    let out = t.b().xgre_ok(Enter::IpNetnsExec, &format!("up -c {cb}"));
    assert!(out.contains("already up"), "{out}");
    assert_eq!(t.b().run("tc filter show dev vb ingress"), filters_before);
    assert_eq!(t.b().run("ip -d link show vb"), xdp_before);
    // ... and a changed file is refused, not half-applied.
    let changed = t.write("b2.toml", &p2p_config('b', "key = 43", rx));
    let o = t.b().xgre(Enter::Nsenter, &format!("up -c {changed}"));
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("different configuration"));

    // The datapath runs without any xgre process: the pings above went
    // through after `up` had exited. Down removes everything.
    assert!(t.a().xgre_ok(Enter::Nsenter, &format!("down -c {ca}")).contains("down"));
    assert!(t.b().xgre_ok(Enter::IpNetnsExec, "down gre0").contains("down"));
    assert_nothing_left(&t);
    let again = t.a().xgre_ok(Enter::Nsenter, "down gre0");
    assert!(again.contains("not up"), "{again}");
}

#[test]
fn tunnel_with_tc_receive() {
    tunnel_over("tc");
}

#[test]
fn tunnel_with_xdp_receive() {
    tunnel_over("xdp");
}

#[test]
fn sequence_numbers_and_checksums_end_to_end() {
    let _s = serial();
    let t = Topo::pair("s");
    let extra = "key = 7\nsequence = true\nchecksum = true";
    let ca = t.write("a.toml", &p2p_config('a', extra, "auto"));
    let cb = t.write("b.toml", &p2p_config('b', extra, "auto"));
    t.a().xgre_ok(Enter::Nsenter, &format!("up -c {ca}"));
    let out = t.b().xgre_ok(Enter::Nsenter, &format!("up -c {cb}"));
    assert!(out.contains("vb:tc"), "auto chooses TC on veth: {out}");
    assert_eq!(t.a().mtu("gre0"), 1464, "1500 - 20 - 16");
    let cap = Capture::start(
        t.a(),
        "va",
        "ip proto 47",
        &["gre.flags.checksum", "gre.flags.sequence_number", "gre.sequence_number", "gre.checksum.status"],
        4,
        15,
    );
    let ping = t.a().run("ping -c 2 -i 0.2 -W 2 198.19.100.2");
    assert!(ping.contains("2 received"), "{ping}");
    let pkts = cap.finish();
    assert_eq!(pkts.len(), 4, "{pkts:?}");
    for (i, p) in pkts.iter().enumerate() {
        assert_eq!(&p[..2], ["1", "1"], "C and S flags: {p:?}");
        // Request, reply, request, reply: each side numbers from 1.
        assert_eq!(p[2], (i / 2 + 1).to_string(), "sequence numbers: {pkts:?}");
        assert_eq!(p[3], "1", "tshark verifies the GRE checksum (1 = good): {p:?}");
    }
    // TCP hands the device GSO bursts; the device segments them (its TSO
    // is off) before the transmit program, which numbers every segment:
    // distinct and increasing on the wire, as Linux peers require.
    let offloads = t.a().run("ethtool -k gre0");
    assert!(offloads.contains("tx-tcp-segmentation: off") && offloads.contains("tx-tcp6-segmentation: off"), "{offloads}");
    let cap = Capture::start(t.a(), "va", "ip proto 47 and src host 198.18.0.10", &["gre.sequence_number"], 2000, 15);
    let x = transfer(t.a(), t.b(), "198.19.100.2", 10);
    assert_eq!(x.sent, x.got);
    let seqs: Vec<u64> = cap.finish().iter().map(|f| f[0].parse().unwrap()).collect();
    assert!(seqs.len() >= 1000, "{} packets captured", seqs.len());
    // Distinct always. Increasing nearly always: two CPUs transmitting for
    // one peer can put a later number on the wire a moment before an
    // earlier one (Linux's ip_gre has the same window, with an unlocked
    // counter). Such a swap is between neighbours: one number taken on
    // each CPU, microseconds apart. One such swap in 2,000 was seen under
    // CI load once, and 28 another time (1.4%), every one of n and n+1;
    // under heavier load a CPU held up between taking its number and
    // queueing the packet let 4 and 10 later ones pass ((146, 141),
    // (440, 429)), and once in CI 30 ((1989, 1959), alone among neighbour
    // swaps: this machine is a VM, whose CPUs the host can stop for a
    // while). A numbering bug repeats numbers or scrambles hundreds: each
    // late packet is bounded by what a stopped CPU lets pass in a few
    // milliseconds, and their count by 5%.
    let mut distinct = seqs.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), seqs.len(), "a sequence number repeats");
    let swapped: Vec<(u64, u64)> = seqs.windows(2).filter(|w| w[1] < w[0]).map(|w| (w[0], w[1])).collect();
    assert!(swapped.iter().all(|(a, b)| a - b <= 256), "numbers out of order by more than a CPU race: {swapped:?}");
    assert!(swapped.len() * 20 <= seqs.len(), "{} of {} numbers out of order: {swapped:?}", swapped.len(), seqs.len());
    let s = json_status(t.a());
    assert_eq!(s["drops"]["tx_gso_per_packet"], 0, "{}", s["drops"]);
    let s = json_status(t.b());
    let drops: u64 = s["drops"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(drops, 0, "{}", s["drops"]);
}

#[test]
fn default_mtu_and_errors_that_change_nothing() {
    let _s = serial();
    let t = Topo::pair("e");
    // No key, no sequence: 1500 - 24 = 1476, like ip_gre.
    let ca = t.write("a.toml", &p2p_config('a', "", "tc"));
    t.a().xgre_ok(Enter::Nsenter, &format!("up -c {ca}"));
    assert_eq!(t.a().mtu("gre0"), 1476);
    t.a().xgre_ok(Enter::Nsenter, "down gre0");

    let one_line = |o: &std::process::Output| {
        assert!(!o.status.success(), "should fail: {o:?}");
        let e = String::from_utf8_lossy(&o.stderr).trim().to_string();
        assert_eq!(e.lines().count(), 1, "one clear line, got:\n{e}");
        e
    };
    // An unknown link device.
    let mut c = p2p('a', "tc");
    c.links[0].dev = "eth9".into();
    c.peers[0].paths[0].link = "eth9".into();
    let bad = t.write("bad-dev.toml", &c.to_toml());
    let e = one_line(&t.a().xgre(Enter::Nsenter, &format!("up -c {bad}")));
    assert!(e.contains("bad-dev.toml") && e.contains("link[0].dev") && e.contains("eth9"), "{e}");
    let e = one_line(&t.a().xgre(Enter::Nsenter, &format!("check -c {bad}")));
    assert!(e.contains("link[0].dev"), "{e}");
    // A bad value: file, field, reason.
    let mut c = p2p('a', "tc");
    c.peers[0].paths[0].weight = 0;
    let bad = t.write("bad-weight.toml", &c.to_toml());
    let e = one_line(&t.a().xgre(Enter::Nsenter, &format!("check -c {bad}")));
    assert!(e.contains("bad-weight.toml: peer[0].path[0].weight: 0 is outside"), "{e}");
    // Not root.
    let o = sh_out(&format!("setpriv --reuid=65534 --regid=65534 --clear-groups {XGRE} up -c {ca}"));
    let e = one_line(&o);
    assert!(e.contains("must run as root"), "{e}");
    // A good config checks clean and creates nothing.
    let out = t.a().xgre_ok(Enter::Nsenter, &format!("check -c {ca}"));
    assert!(out.contains("ok"), "{out}");
    assert!(!t.a().run("ip -o link show").contains("gre0"), "check changed the host");
    assert!(!out.contains("warning"), "{out}");
    // Paths of unequal weight are resequenced by default (numbers
    // announced with keepalives): no warning. Valid but unwise is turning
    // that off: it checks ok, and says what reorders and what to do.
    let mut c = p2p('a', "tc");
    let mut slow = c.peers[0].paths[0].clone();
    slow.remote = "198.18.0.21".parse().unwrap();
    c.peers[0].paths[0].weight = 3;
    c.peers[0].paths.push(slow);
    let unequal = t.write("unequal.toml", &c.to_toml());
    let out = t.a().xgre_ok(Enter::Nsenter, &format!("check -c {unequal}"));
    assert!(out.contains("unequal.toml: ok") && !out.contains("warning"), "{out}");
    c.tunnel.resequence = Some(0);
    let off = t.write("unequal-off.toml", &c.to_toml());
    let out = t.a().xgre_ok(Enter::Nsenter, &format!("check -c {off}"));
    assert!(out.contains("unequal-off.toml: ok"), "{out}");
    assert!(out.contains("warning: ") && out.contains("unequal-off.toml: peer[0] `") && out.contains("`resequence = 0` here"), "{out}");
    assert!(xgre_programs().is_empty(), "a failed up left programs: {:?}", xgre_programs());
}

#[test]
fn two_tunnels_share_a_namespace_and_programs_come_back_when_needed() {
    let _s = serial();
    let t = Topo::pair("2");
    // A second link pair for the second tunnel.
    sh(&format!(
        "ip link add va2 netns {a} type veth peer name vb2 netns {b} && ip -n {a} addr add 198.18.2.10/24 dev va2 && \
         ip -n {b} addr add 198.18.2.20/24 dev vb2 && ip -n {a} link set va2 up && ip -n {b} link set vb2 up",
        a = t.a().ns,
        b = t.b().ns
    ));
    let second = |me: char| {
        let (dev, local, remote, inner_me, inner_peer) = match me {
            'a' => ("va2", "198.18.2.10", "198.18.2.20", "198.19.2.1/32", "198.19.2.2/32"),
            _ => ("vb2", "198.18.2.20", "198.18.2.10", "198.19.2.2/32", "198.19.2.1/32"),
        };
        Config::new("gre1", Mode::Gre)
            .with_address(inner_me)
            .with_link(dev, local, RxHook::Xdp)
            .with_peer("other", &[inner_peer], &[(dev, remote)])
            .with_tunnel_toml("key = 9")
            .to_toml()
    };
    for (h, me) in [(t.a(), 'a'), (t.b(), 'b')] {
        // gre0 receives with TC only, so the XDP program is attached
        // nowhere and is freed when `up` exits.
        let c = t.write(&format!("{me}0.toml"), &p2p_config(me, "key = 1", "tc"));
        h.xgre_ok(Enter::Nsenter, &format!("up -c {c}"));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    for (h, me) in [(t.a(), 'a'), (t.b(), 'b')] {
        let c = t.write(&format!("{me}1.toml"), &second(me));
        let out = h.xgre_ok(Enter::Nsenter, &format!("up -c {c}"));
        assert!(out.contains("va2:xdp") || out.contains("vb2:xdp"), "{out}");
    }
    for (dst, n) in [("198.19.100.2", "gre0"), ("198.19.2.2", "gre1")] {
        let p = t.a().run(&format!("ping -c 2 -i 0.2 -W 2 {dst}"));
        assert!(p.contains("2 received"), "{n}: {p}");
    }
    let s = json_status(t.a());
    assert_eq!(s["tunnels"].as_array().unwrap().len(), 2, "{s}");
    // Taking one down leaves the other running.
    t.a().xgre_ok(Enter::Nsenter, "down gre0");
    t.b().xgre_ok(Enter::Nsenter, "down gre0");
    let p = t.a().run("ping -c 2 -i 0.2 -W 2 198.19.2.2");
    assert!(p.contains("2 received"), "{p}");
    t.a().xgre_ok(Enter::Nsenter, "down gre1");
    t.b().xgre_ok(Enter::Nsenter, "down gre1");
    assert_nothing_left(&t);
}

#[test]
fn inner_ipv6_over_the_tunnel() {
    let _s = serial();
    let t = Topo::pair("6");
    let v6 = |me: char| {
        let (a, peer) = if me == 'a' { ("2001:db8:100::1", "2001:db8:100::2") } else { ("2001:db8:100::2", "2001:db8:100::1") };
        p2p_config(me, "key = 3", "tc")
            .replace("address = [\"198.19.100.", &format!("address = [\"{a}/128\", \"198.19.100."))
            .replace("routes = [\"198.19.100.", &format!("routes = [\"{peer}/128\", \"198.19.100."))
    };
    let ca = t.write("a.toml", &v6('a'));
    let cb = t.write("b.toml", &v6('b'));
    t.a().xgre_ok(Enter::Nsenter, &format!("up -c {ca}"));
    t.b().xgre_ok(Enter::Nsenter, &format!("up -c {cb}"));
    let p = t.a().run("ping -6 -c 3 -i 0.2 -W 2 2001:db8:100::2");
    assert!(p.contains("3 received"), "{p}");
    let p = t.a().run("ping -c 2 -i 0.2 -W 2 198.19.100.2");
    assert!(p.contains("2 received"), "IPv4 still works beside IPv6: {p}");
    let x = transfer(t.a(), t.b(), "2001:db8:100::2", 10);
    assert_eq!(x.sent, x.got, "TCP over IPv6 inside GRE");
    let s = json_status(t.a());
    let peer = &s["tunnels"][0]["peers"][0];
    assert!(peer["routes"].as_array().unwrap().iter().any(|r| r == "2001:db8:100::2/128"), "{peer}");
    let shown = t.a().xgre_ok(Enter::Nsenter, "show gre0");
    assert!(shown.contains("2001:db8:100::2/128"), "{shown}");
    // The host's own link-scope multicast (MLD) is replicated to the peer
    // like any multicast: nothing is turned away.
    for (reason, n) in s["drops"].as_object().unwrap() {
        assert_eq!(n.as_u64().unwrap(), 0, "{reason}: {}", s["drops"]);
    }
}

/// The same tunnel over an IPv6 underlay (2001:db8::/32): outer IPv6, next
/// header 47, 40 bytes of outer header.
#[test]
fn ipv6_underlay_end_to_end() {
    let _s = serial();
    let t = Topo::pair("6");
    t.a().run("ip addr add 2001:db8::10/64 dev va nodad");
    t.b().run("ip addr add 2001:db8::20/64 dev vb nodad");
    let six = |me: char| p2p_config(me, "key = 6", "tc").replace("198.18.0.10", "2001:db8::10").replace("198.18.0.20", "2001:db8::20");
    let ca = t.write("a.toml", &six('a'));
    let cb = t.write("b.toml", &six('b'));
    t.a().xgre_ok(Enter::Nsenter, &format!("up -c {ca}"));
    t.b().xgre_ok(Enter::Nsenter, &format!("up -c {cb}"));
    assert_eq!(t.a().mtu("gre0"), 1500 - 40 - 8, "IPv6 underlay: 40 + 8 bytes of outer header");

    let cap = Capture::start(t.a(), "va", "ip6 proto 47 and src host 2001:db8::10", &["ipv6.nxt", "ipv6.dst", "gre.key"], 3, 15);
    let ping = t.a().run("ping -c 3 -i 0.2 -W 2 198.19.100.2");
    assert!(ping.contains("3 received"), "{ping}");
    let pkts = cap.finish();
    assert_eq!(pkts.len(), 3, "{pkts:?}");
    for p in &pkts {
        assert_eq!((p[0].as_str(), p[1].as_str(), p[2].as_str()), ("47", "2001:db8::20", "0x00000006"));
    }
    let x = transfer(t.a(), t.b(), "198.19.100.2", 8);
    assert_eq!(x.sent, x.got, "bytes/sha256 sent vs received");
    let s = json_status(t.a());
    assert_eq!(s["tunnels"][0]["peers"][0]["paths"][0]["remote"], "2001:db8::20");
    for (reason, n) in s["drops"].as_object().unwrap() {
        assert_eq!(n.as_u64().unwrap(), 0, "{reason}: {}", s["drops"]);
    }
}

/// Static MACs of a gretap peer: in the table from `up`, shown as static,
/// written back by `show`, replaced by `map-edit`, gone with the peer.
#[test]
fn gretap_static_macs_from_the_config() {
    let _s = serial();
    let t = Topo::pair("s");
    let tap = |me: char| {
        p2p_config(me, "key = 4", "tc")
            .replace("mode = \"gre\"", "mode = \"gretap\"")
            .replace("routes = [\"198.19.100.2/32\"]", "macs = [\"02:00:00:00:aa:01\", \"02:00:00:00:aa:02\"]")
            .replace("routes = [\"198.19.100.1/32\"]", "")
    };
    let ca = t.write("a.toml", &tap('a'));
    t.a().xgre_ok(Enter::Nsenter, &format!("up -c {ca}"));
    let fdb = |h: &Host| -> Vec<(String, String, bool)> {
        let s = json_status(h);
        s["tunnels"][0]["fdb"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["mac"].as_str().unwrap().to_string(), e["peer"].as_str().unwrap().to_string(), e["static"].as_bool().unwrap()))
            .collect()
    };
    assert_eq!(fdb(t.a()), [("02:00:00:00:aa:01".into(), "site-b".into(), true), ("02:00:00:00:aa:02".into(), "site-b".into(), true)]);
    let shown = t.a().xgre_ok(Enter::Nsenter, "show gre0");
    assert!(shown.contains("macs = [\"02:00:00:00:aa:01\", \"02:00:00:00:aa:02\"]"), "{shown}");
    let again = t.write("shown.toml", &shown);
    assert!(t.a().xgre_ok(Enter::Nsenter, &format!("up -c {again}")).contains("already up"));
    t.a().xgre_ok(Enter::Nsenter, "map-edit gre0 peer set site-b --mac 02:00:00:00:aa:03");
    assert_eq!(fdb(t.a()), [("02:00:00:00:aa:03".into(), "site-b".into(), true)]);
    let o = t.a().xgre(Enter::Nsenter, "map-edit gre0 peer set site-b --mac 01:00:5e:00:00:01");
    assert!(String::from_utf8_lossy(&o.stderr).contains("peer[0].macs[0]: 01:00:5e:00:00:01 is not a unicast"), "{o:?}");
    t.a().xgre_ok(Enter::Nsenter, "map-edit gre0 peer del site-b");
    assert_eq!(fdb(t.a()), [], "static entries outlived their peer");
}

/// Send `n` GRE frames (key 42, inner ICMP echo 198.19.100.2 -> .1) from
/// b's `vb` to a, with a VLAN tag `vid` (None: untagged), by scapy.
fn send_gre_from_b(t: &Topo, vid: Option<u16>, n: u32) {
    let mac: Value = serde_json::from_str(&t.a().run("ip -j link show va")).unwrap();
    let mac = mac[0]["address"].as_str().unwrap().to_string();
    let tag = match vid {
        Some(v) => format!("/Dot1Q(vlan={v}, prio=3)"),
        None => String::new(),
    };
    t.b().run(&format!(
        "/usr/bin/python3 -c \"from scapy.all import *; conf.verb=0; \
         sendp(Ether(dst='{mac}'){tag}/IP(src='198.18.0.20', dst='198.18.0.10')/GRE(key_present=1, key=42)/\
         IP(src='198.19.100.2', dst='198.19.100.1')/ICMP(), iface='vb', count={n})\""
    ));
}

#[test]
fn gre_on_a_vlan_of_the_link_is_not_taken_on_either_hook() {
    for rx in ["tc", "xdp"] {
        let _s = serial();
        let t = Topo::pair(&format!("v{}", &rx[..1]));
        let ca = t.write("a.toml", &p2p_config('a', "key = 42", rx));
        t.a().xgre_ok(Enter::Nsenter, &format!("up -c {ca}"));
        let rx_packets = || json_status(t.a())["tunnels"][0]["counters"]["rx_packets"].as_u64().unwrap();
        // On VLAN 7: for a VLAN device, not for the link (the kernel took
        // the tag off before TC saw the frame).
        send_gre_from_b(&t, Some(7), 5);
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert_eq!(rx_packets(), 0, "rx={rx}: GRE on VLAN 7 was decapsulated");
        // A priority tag (VID 0) is no VLAN: taken, as Linux takes it.
        send_gre_from_b(&t, Some(0), 5);
        send_gre_from_b(&t, None, 5);
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert_eq!(rx_packets(), 10, "rx={rx}: priority-tagged and untagged GRE");
        let s = json_status(t.a());
        let drops: u64 = s["drops"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
        assert_eq!(drops, 0, "rx={rx}: {}", s["drops"]);
    }
}

#[test]
fn checksums_hold_when_the_inner_tcp_checksum_is_filled_after_xgre() {
    let _s = serial();
    let t = Topo::pair("k");
    // Without checksum offload on the links, the stack fills each inner
    // TCP checksum after xgre built its GRE checksum: what a NIC does on
    // the wire, and what Open vSwitch and Linux peers verify.
    t.a().run("ethtool -K va tx off");
    t.b().run("ethtool -K vb tx off");
    let extra = "key = 7\nchecksum = true";
    let ca = t.write("a.toml", &p2p_config('a', extra, "tc"));
    let cb = t.write("b.toml", &p2p_config('b', extra, "tc"));
    t.a().xgre_ok(Enter::Nsenter, &format!("up -c {ca}"));
    t.b().xgre_ok(Enter::Nsenter, &format!("up -c {cb}"));
    let cap = Capture::start(t.a(), "va", "ip proto 47", &["gre.checksum.status"], 20, 20);
    let x = transfer(t.a(), t.b(), "198.19.100.2", 4);
    assert_eq!(x.sent, x.got, "a -> b");
    let x = transfer(t.b(), t.a(), "198.19.100.1", 4);
    assert_eq!(x.sent, x.got, "b -> a");
    let pkts = cap.finish();
    assert!(pkts.len() >= 10, "{pkts:?}");
    for p in &pkts {
        assert_eq!(p[0], "1", "tshark verifies each GRE checksum on the wire (1 = good): {pkts:?}");
    }
    for h in [t.a(), t.b()] {
        let s = json_status(h);
        assert_eq!(s["drops"]["bad_checksum"].as_u64().unwrap_or(0), 0, "{}", s["drops"]);
    }
}

/// What `ip -s link` shows for a device: its kernel statistics.
#[track_caller]
fn dev_stats(h: &Host, dev: &str) -> Value {
    let j: Value = serde_json::from_str(&h.run(&format!("ip -j -s link show {dev}"))).unwrap();
    j[0]["stats64"].clone()
}

/// The tunnel's own counters in `status --json`, over all its paths.
fn path_counters(h: &Host) -> Value {
    json_status(h)["tunnels"][0]["counters"].clone()
}

fn delta(after: &Value, before: &Value, dir: &str, field: &str) -> u64 {
    after[dir][field].as_u64().unwrap() - before[dir][field].as_u64().unwrap()
}

fn counter_delta(after: &Value, before: &Value, field: &str) -> u64 {
    after[field].as_u64().unwrap() - before[field].as_u64().unwrap()
}

/// `ip -s link show gre0` counts what went through the tunnel, whichever
/// hook received it, and what had nowhere to go as tx_dropped, as it does
/// for Linux's gre1 (issue 9, defect 6: it read 0 after a 20 MB transfer).
#[test]
fn the_tunnel_device_counts_its_packets_and_its_drops() {
    let _s = serial();
    for rx in ["tc", "xdp"] {
        let t = Topo::pair(&format!("c{}", &rx[..1]));
        let ca = t.write("a.toml", &p2p_config('a', "key = 42", rx));
        let cb = t.write("b.toml", &p2p_config('b', "key = 42", rx));
        t.a().xgre_ok(Enter::Nsenter, &format!("up -c {ca}"));
        t.b().xgre_ok(Enter::Nsenter, &format!("up -c {cb}"));

        // Pings: one packet each, so the device and the paths count alike.
        // Bytes: the paths count the inner IP packet; the device, a veth,
        // counts the frame, 14 bytes of Ethernet header more.
        let (dev0, ctr0) = (dev_stats(t.a(), "gre0"), path_counters(t.a()));
        let ping = t.a().run("ping -c 20 -i 0.05 -s 500 -W 2 198.19.100.2");
        assert!(ping.contains("20 received"), "{rx}: {ping}");
        let (dev1, ctr1) = (dev_stats(t.a(), "gre0"), path_counters(t.a()));
        let tx = delta(&dev1, &dev0, "tx", "packets");
        let rxp = delta(&dev1, &dev0, "rx", "packets");
        assert_eq!(tx, counter_delta(&ctr1, &ctr0, "tx_packets"), "{rx}: tx packets, device {dev1} paths {ctr1}");
        assert_eq!(rxp, counter_delta(&ctr1, &ctr0, "rx_packets"), "{rx}: rx packets, device {dev1} paths {ctr1}");
        assert!(tx >= 20 && rxp >= 20, "{rx}: 20 pings, device tx {tx} rx {rxp}");
        assert_eq!(delta(&dev1, &dev0, "tx", "bytes"), counter_delta(&ctr1, &ctr0, "tx_bytes") + 14 * tx, "{rx}: tx bytes");
        assert_eq!(delta(&dev1, &dev0, "rx", "bytes"), counter_delta(&ctr1, &ctr0, "rx_bytes") + 14 * rxp, "{rx}: rx bytes");
        assert_eq!(delta(&dev1, &dev0, "tx", "dropped"), 0, "{rx}");
        // The same on b, which received them.
        let b = dev_stats(t.b(), "gre0");
        assert!(b["rx"]["packets"].as_u64().unwrap() >= 20, "{rx}: b's gre0 {b}");

        // A TCP transfer: the device counts it (GSO packets count once
        // each, as for any Linux device, so bytes, not packets, compare).
        let x = transfer(t.a(), t.b(), "198.19.100.2", 4);
        assert_eq!(x.sent, x.got);
        let dev2 = dev_stats(t.a(), "gre0");
        assert!(delta(&dev2, &dev1, "tx", "bytes") > 4 << 20, "{rx}: {dev2}");
        let b2 = dev_stats(t.b(), "gre0");
        assert!(delta(&b2, &b, "rx", "bytes") > 4 << 20, "{rx}: b's gre0 {b2}");

        // No route: a destination routed into the device that no peer has.
        t.a().run("ip route add 198.19.200.0/24 dev gre0");
        let drops0 = json_status(t.a())["drops"].clone();
        t.a().shell("ping -c 5 -i 0.05 -W 1 198.19.200.1 || true");
        // No path: the peer's only path taken out of the rotation.
        t.a().xgre_ok(Enter::Nsenter, "map-edit gre0 path set site-b 0 --down");
        t.a().shell("ping -c 3 -i 0.05 -W 1 198.19.100.2 || true");
        let dev3 = dev_stats(t.a(), "gre0");
        let drops = json_status(t.a())["drops"].clone();
        let reason = |r: &str| drops[r].as_u64().unwrap_or(0) - drops0[r].as_u64().unwrap_or(0);
        // ping sends again when told ENOBUFS, so at least 5 and 3.
        let (no_route, no_path) = (reason("no_route"), reason("no_path"));
        assert!(no_route >= 5 && no_path >= 3, "{rx}: {drops}");
        assert_eq!(
            delta(&dev3, &dev2, "tx", "dropped"),
            no_route + no_path,
            "{rx}: no route and no path are the device's tx_dropped: {dev3}"
        );
        assert_eq!(delta(&dev3, &dev2, "tx", "packets"), 0, "{rx}: a dropped packet is not sent: {dev3}");

        // device_counters = false: the crossings are skipped, live, and
        // the device counts nothing while the paths still do.
        t.a().xgre_ok(Enter::Nsenter, "map-edit gre0 path set site-b 0 --up");
        let off = t.write("a-off.toml", &p2p_config('a', "key = 42\ndevice_counters = false", rx));
        t.a().xgre_ok(Enter::Nsenter, &format!("reload -c {off}"));
        let (dev4, ctr4) = (dev_stats(t.a(), "gre0"), path_counters(t.a()));
        let ping = t.a().run("ping -c 10 -i 0.05 -W 2 198.19.100.2");
        assert!(ping.contains("10 received"), "{rx}: {ping}");
        let (dev5, ctr5) = (dev_stats(t.a(), "gre0"), path_counters(t.a()));
        assert!(counter_delta(&ctr5, &ctr4, "tx_packets") >= 10 && counter_delta(&ctr5, &ctr4, "rx_packets") >= 10, "{rx}: {ctr5}");
        assert_eq!((delta(&dev5, &dev4, "tx", "packets"), delta(&dev5, &dev4, "rx", "packets")), (0, 0), "{rx}: {dev5}");
        assert!(t.a().xgre_ok(Enter::Nsenter, "status gre0").contains("no device counters"));

        t.a().xgre_ok(Enter::Nsenter, "down gre0");
        t.b().xgre_ok(Enter::Nsenter, "down gre0");
    }
}

/// The most instructions any program may need verified: a tenth of the
/// kernel's limit, so that another kernel's verifier, walking a little
/// more, still loads the datapath.
const VERIFIER_BUDGET: u64 = 100_000;

/// One host's config for each configuration that changes what the
/// verifier walks, over links `a0` (IPv4 and IPv6) and `a1` of a switched
/// topology. Static neighbour MACs: nothing waits for ARP.
fn budget_configs() -> Vec<(&'static str, String)> {
    let link = |dev: &str, addr: &str, rx: &str| format!("[[link]]\ndev = \"{dev}\"\naddress = \"{addr}\"\nrx = \"{rx}\"\n");
    let v4 = || link("a0", "198.18.0.10", "tc") + &link("a1", "198.18.1.10", "tc");
    let path =
        |l: &str, remote: &str, n: u32| format!("[[peer.path]]\nlink = \"{l}\"\nremote = \"{remote}\"\nmac = \"02:00:00:00:{n:02x}:20\"\n");
    let peer = |name: &str, routes: &str, paths: &str| format!("[[peer]]\nname = \"{name}\"\n{routes}{paths}");
    let p2p = |tunnel: &str, links: String, paths: String| {
        format!("[tunnel]\nname = \"gre0\"\n{tunnel}\n{links}\n{}", peer("site-b", "routes = [\"198.19.100.2/32\"]\n", &paths))
    };
    let one = || path("a0", "198.18.0.20", 0);
    let tap = |extra: &str| {
        format!(
            "[tunnel]\nname = \"gre0\"\nmode = \"gretap\"\n{extra}\n{}\n{}{}",
            v4(),
            peer("b", "", &one()),
            peer("c", "", &path("a1", "198.18.1.30", 1))
        )
    };
    let eight: String = (0..8).map(|i| path(&format!("a{}", i % 2), &format!("198.18.{}.{}", i % 2, 20 + i), i)).collect();
    let mut flood = format!("[tunnel]\nname = \"gre0\"\naddress = [\"198.19.100.1/32\"]\n{}", v4());
    for (i, n) in ["b", "c", "d"].iter().enumerate() {
        flood += &peer(n, &format!("routes = [\"198.19.10{}.0/24\"]\n", i + 1), &path("a0", &format!("198.18.0.{}", 20 + i), i as u32));
    }
    flood += "[[group]]\naddress = \"239.0.0.10\"\npeers = [\"b\", \"c\"]\n";
    vec![
        ("gre", p2p("key = 42", v4(), one())),
        ("gre, xdp receive", p2p("", link("a0", "198.18.0.10", "xdp"), one())),
        ("gretap", tap("key = 1")),
        ("nvgre", tap("vsid = 5001")),
        ("trunk", tap("native_key = 5000\n[[tunnel.vlan]]\nvid = 100\nkey = 5100")),
        ("arp_suppress", tap("key = 1\narp_suppress = true")),
        ("sequence", p2p("sequence = true", v4(), one())),
        ("checksum", p2p("checksum = true\nkey = 7", v4(), one())),
        ("ip_id_sequence", p2p("ip_id_sequence = true", v4(), one())),
        ("ipv6 underlay", p2p("", link("a0", "2001:db8::10", "tc"), path("a0", "2001:db8::20", 0))),
        ("flooding", flood),
        ("8 paths", p2p("", v4(), eight)),
    ]
}

/// Every program, in every configuration that changes what the verifier
/// walks, verified by this kernel within `VERIFIER_BUDGET`: each
/// configuration is brought up for real and its programs' costs read back
/// (`bpf_prog_info.verified_insns`, through `status --json`). The table
/// goes to the test's output, so every CI log shows the margin.
#[test]
fn every_program_verifies_within_the_budget_in_every_configuration() {
    let _s = serial();
    let t = Topo::switched("v", 2, None);
    t.a().run("ip addr add 2001:db8::10/64 dev a0 nodad");
    let mut table: Vec<(String, std::collections::BTreeMap<String, u64>)> = Vec::new();
    for (name, cfg) in budget_configs() {
        let file = t.write("budget.toml", &cfg);
        t.a().xgre_ok(Enter::Nsenter, &format!("up -c {file}"));
        let s = json_status(t.a());
        t.a().xgre_ok(Enter::Nsenter, "down gre0");
        let costs: std::collections::BTreeMap<String, u64> = s["programs"]
            .as_array()
            .expect("status --json lists the programs")
            .iter()
            .map(|p| (p["name"].as_str().unwrap().to_string(), p["verified_insns"].as_u64().unwrap()))
            .collect();
        for needed in ["xgre_tx", "xgre_tx_send"] {
            assert!(costs.contains_key(needed), "{name}: {needed} is not loaded: {costs:?}");
        }
        table.push((name.to_string(), costs));
    }
    // And every program at once, as `check --kernel` loads them.
    let out = t.a().xgre_ok(Enter::Nsenter, "check --kernel");
    let rows: Vec<Vec<&str>> = out.lines().filter(|l| l.starts_with("xgre_")).map(|l| l.split_whitespace().collect()).collect();
    let all: std::collections::BTreeMap<String, u64> = rows.iter().filter_map(|w| Some((w[0].to_string(), w[1].parse().ok()?))).collect();
    let refused: Vec<&str> = rows.iter().filter(|w| w[1] == "refused").map(|w| w[0]).collect();
    assert_eq!(all.len() + refused.len(), 8, "check --kernel lists the 8 programs:\n{out}");
    // Only the XDP program that hands frames on in metadata may be
    // refused (some kernels give XDP programs none): its stand-in loads.
    assert!(refused.iter().all(|&p| p == "xgre_rx_xdp") && all.contains_key("xgre_rx_xdp_nm"), "{out}");
    table.push(("check --kernel".into(), all));

    let progs: std::collections::BTreeSet<&String> = table.iter().flat_map(|(_, c)| c.keys()).collect();
    let mut text = format!("verified instructions per program (budget {VERIFIER_BUDGET}, kernel limit 1000000)\n{:<16}", "configuration");
    for p in &progs {
        text += &format!(" {:>16}", p);
    }
    let mut over = Vec::new();
    for (name, costs) in &table {
        text += &format!("\n{name:<16}");
        for p in &progs {
            match costs.get(*p) {
                Some(&n) => {
                    text += &format!(" {n:>16}");
                    if n > VERIFIER_BUDGET {
                        over.push(format!("{name}: {p} {n}"));
                    }
                }
                None => text += &format!(" {:>16}", "-"),
            }
        }
    }
    if !refused.is_empty() {
        text += &format!("\nrefused by this kernel (its stand-in verified instead): {}", refused.join(", "));
    }
    println!("{text}");
    // `cargo xtask test` prints it again at the end of every run.
    let _ = std::fs::write(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/verifier-costs.txt"), format!("{text}\n"));
    assert!(over.is_empty(), "over the verifier budget of {VERIFIER_BUDGET}: {over:?}\n{text}");
}

/// Peer routes never replace a route the host has. Its default route and
/// the underlay's own connected subnet, claimed by a peer, are refused by
/// `check`, `up`, `reload` and `map-edit`, naming the field and the route
/// that would have been replaced, and the host's routes stay as they were.
/// A default route through the tunnel needs `default_route = true`, and is
/// taken only where the host has none. xgre's routes carry its protocol
/// number, and only those are ever removed.
#[test]
fn peer_routes_never_replace_the_hosts_routes() {
    let _s = serial();
    let t = Topo::pair("r");
    let a = t.a();
    a.run("ip route add default via 198.18.0.99 dev va");
    let with_route = |r: &str, default_route: bool| {
        let mut c = p2p('a', "tc");
        c.peers[0].routes.push(r.parse().unwrap());
        c.peers[0].default_route = default_route;
        c.to_toml()
    };
    let refused = |args: &str, field: &str, why: &str| {
        let o = a.xgre(Enter::Nsenter, args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "xgre {args} was accepted");
        assert!(err.contains(field) && err.contains(why), "xgre {args}: want `{field}` and `{why}` in:\n{err}");
    };
    let host_default = "default via 198.18.0.99 dev va";
    let taken_default = "would replace the host's route `default via 198.18.0.99 dev va proto boot`";
    let taken_subnet = "would replace the host's route `198.18.0.0/24 dev va proto kernel`";

    // Before anything is up: check and up refuse both.
    let dflt = t.write("default.toml", &with_route("0.0.0.0/0", false));
    refused(&format!("check -c {dflt}"), "peer[0].routes[1]", "set `default_route = true` on the peer");
    let meant = t.write("meant.toml", &with_route("0.0.0.0/0", true));
    refused(&format!("check -c {meant}"), "peer[0].routes[1]", taken_default);
    refused(&format!("up -c {meant}"), "peer[0].routes[1]", taken_default);
    let subnet = t.write("subnet.toml", &with_route("198.18.0.0/24", false));
    refused(&format!("up -c {subnet}"), "peer[0].routes[1]", taken_subnet);
    assert!(!a.run("ip -o link show").contains("gre0"), "a refused up made the device");

    // Running: reload and map-edit refuse them, and change nothing.
    let ok = t.write("ok.toml", &p2p_config('a', "", "tc"));
    a.xgre_ok(Enter::Nsenter, &format!("up -c {ok}"));
    let before = a.run("ip route show table main");
    assert!(before.contains("198.19.100.2 dev gre0 proto 88"), "xgre's route carries its protocol number:\n{before}");
    refused(&format!("reload -c {meant}"), "peer[0].routes[1]", taken_default);
    refused(&format!("reload -c {subnet}"), "peer[0].routes[1]", taken_subnet);
    refused("map-edit gre0 route add site-b 198.18.0.0/24", "routes[1]", taken_subnet);
    refused("map-edit gre0 route add site-b 0.0.0.0/0", "routes[1]", "default_route = true");
    assert_eq!(a.run("ip route show table main"), before, "a refused change touched the routes");
    assert!(a.run("ping -c 1 -W 2 198.18.0.20").contains("1 received"), "the underlay still works");

    // Said explicitly, and the host has no default route: taken, and
    // given back when the peer lets go of it. The host's own routes to
    // the same prefix are never removed by xgre.
    a.run("ip route del default");
    a.xgre_ok(Enter::Nsenter, &format!("reload -c {meant}"));
    assert!(a.run("ip route show default").contains("default dev gre0 proto 88"), "{}", a.run("ip route"));
    a.xgre_ok(Enter::Nsenter, &format!("reload -c {ok}"));
    assert_eq!(a.run("ip route show default").trim(), "", "the tunnel's default route is gone again");
    a.run(&format!("ip route add {host_default}"));
    a.run("ip route add 198.19.100.2/32 dev va metric 50");
    a.xgre_ok(Enter::Nsenter, "map-edit gre0 route del 198.19.100.2/32");
    let left = a.run("ip route show 198.19.100.2");
    assert!(
        left.contains("dev va") && left.contains("metric 50") && !left.contains("gre0"),
        "xgre must remove its own route and keep the host's: {left}\n{}",
        a.run("ip route")
    );
}

/// Small refusals a user meets: a closed stdout ends a command quietly;
/// an edit of a peer that does not exist lists the tunnel's real peers; a
/// negative weight is refused naming the flag and its range; a config
/// "file" that never ends is refused, not read until memory runs out.
#[test]
fn closed_pipes_missing_peers_negative_weights_and_endless_files() {
    let _s = serial();
    let t = Topo::pair("s");
    let a = t.a();
    let ok = t.write("ok.toml", &p2p_config('a', "", "tc"));
    a.xgre_ok(Enter::Nsenter, &format!("up -c {ok}"));
    for cmd in ["completions zsh", "status", "man"] {
        let o = sh_out(&a.cmd(Enter::Nsenter, &format!("{XGRE} {cmd} | head -1")));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.is_empty(), "`xgre {cmd} | head -1` said: {err}");
        assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 1);
    }
    let err = |args: &str| {
        let o = sh_out(&a.cmd(Enter::Nsenter, &format!("timeout 20 {XGRE} {args}")));
        assert_eq!(o.status.code(), Some(1), "xgre {args} must fail at once");
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let e = err("map-edit gre0 path set nosuch 0 --weight 2");
    assert!(e.contains("peer `nosuch` does not exist (peers: site-b)"), "{e}");
    let e = sh_out(&a.cmd(Enter::Nsenter, &format!("{XGRE} map-edit gre0 path set site-b 0 --weight -1")));
    let e = String::from_utf8_lossy(&e.stderr);
    assert!(e.contains("--weight") && e.contains("-1 is outside 1..=1000"), "{e}");
    let e = err("check -c /dev/zero");
    assert!(e.contains("/dev/zero") && e.contains("longer than 64 MiB"), "{e}");
}

/// Changes are all or nothing. A reload that changes a weight and adds an
/// address the kernel refuses (IPv6 is off on the device), or a route it
/// refuses, fails naming the field and leaves the weight as it was; a
/// `map-edit --batch` whose second edit is refused undoes the first; a
/// reload to an MTU the links cannot carry is refused as `up` and `check`
/// refuse it.
#[test]
fn a_change_that_fails_half_way_changes_nothing() {
    let _s = serial();
    let t = Topo::pair("h");
    let a = t.a();
    let ok = t.write("ok.toml", &p2p_config('a', "", "tc"));
    a.xgre_ok(Enter::Nsenter, &format!("up -c {ok}"));
    a.run("sysctl -qw net.ipv6.conf.gre0.disable_ipv6=1");
    let weight = || json_status(a)["tunnels"][0]["peers"][0]["paths"][0]["weight"].as_u64().unwrap();
    let routes = || a.run("ip route show table main");
    let (w0, r0) = (weight(), routes());
    let failed = |args: &str, want: &[&str]| {
        let o = a.xgre(Enter::Nsenter, args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "xgre {args} was accepted");
        for w in want {
            assert!(err.contains(w), "xgre {args}: want `{w}` in:\n{err}");
        }
        assert_eq!((weight(), routes()), (w0, r0.clone()), "xgre {args} failed half way and left a change behind:\n{err}");
    };

    let mut c = p2p('a', "tc");
    c.peers[0].paths[0].weight = 5;
    c.tunnel.address.push("2001:db8:100::1/128".parse().unwrap());
    let addr = t.write("addr.toml", &c.to_toml());
    failed(&format!("reload -c {addr}"), &["tunnel.address[1]: 2001:db8:100::1/128", "nothing was changed"]);

    let mut c = p2p('a', "tc");
    c.peers[0].paths[0].weight = 5;
    c.peers[0].routes.push("2001:db8:200::/64".parse().unwrap());
    let route = t.write("route.toml", &c.to_toml());
    failed(&format!("reload -c {route}"), &["2001:db8:200::/64", "nothing was changed"]);

    let batch = t.write("batch.txt", "path set site-b 0 --weight 3\nroute add site-b 2001:db8:300::/64\n");
    failed(&format!("map-edit gre0 --batch {batch}"), &["2001:db8:300::/64", "undone"]);

    let big = t.write("big.toml", &p2p_config('a', "mtu = 9000", "tc"));
    for cmd in ["reload", "check"] {
        failed(&format!("{cmd} -c {big}"), &["tunnel.mtu: 9000 plus 24 bytes of outer headers exceeds the 1500-byte MTU"]);
    }
    assert_eq!(a.mtu("gre0"), 1476);
}

/// Every file in `examples/` passes `xgre check` on a host with the links
/// it names, and the README shows each one whole, as it is.
#[test]
fn every_example_is_valid_and_shown_whole() {
    let _s = serial();
    let mut t = Topo::empty("ex");
    let h = t.add("ex");
    let ns = t.hosts[h].ns.clone();
    let mut s = String::from("true");
    for (dev, addrs) in [
        ("eth0", &["198.18.0.10/24", "198.18.1.10/24", "198.18.1.1/24", "2001:db8::10/64"][..]),
        ("eth1", &["198.18.1.10/24"][..]),
        ("eth2", &["198.18.2.10/24"][..]),
    ] {
        s += &format!(
            " && ip -n {ns} link add {dev} type veth peer name {dev}p && ip -n {ns} link set {dev}p up && ip -n {ns} link set {dev} up"
        );
        for a in addrs {
            s += &format!(" && ip -n {ns} addr add {a} dev {dev} nodad");
        }
    }
    sh(&s.replace(" nodad", "").replace("2001:db8::10/64 dev eth0", "2001:db8::10/64 dev eth0 nodad"));
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let reference = std::fs::read_to_string(format!("{root}/docs/config.md")).unwrap();
    let mut files: Vec<_> = std::fs::read_dir(format!("{root}/examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 8, "{files:?}");
    for f in files {
        let out = t.hosts[h].xgre_ok(Enter::Nsenter, &format!("check -c {}", f.display()));
        assert!(out.contains(": ok"), "{}: {out}", f.display());
        let text = std::fs::read_to_string(&f).unwrap();
        // The reference, every field, lives in docs/config.md; the rest in the README.
        let shown = if f.ends_with("reference.toml") { &reference } else { &readme };
        assert!(shown.contains(&format!("```toml\n{text}```")), "{} is not shown whole", f.display());
    }
}
