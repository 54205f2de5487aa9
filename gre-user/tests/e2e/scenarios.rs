//! Scenarios with real software over xgre tunnels, each in namespaces made
//! and torn down by the test: a three-host gretap mesh carrying two
//! tenants, keepalived (VRRP) over gretap, FRR (OSPF + PIM) over gre, and
//! path MTU discovery over a routed underlay (`pmtu`).

mod pmtu;

use std::time::{Duration, Instant};

use crate::common::*;

/// Join `a`'s device `da` and `b`'s device `db` with a veth pair.
fn veth(t: &Topo, a: usize, da: &str, b: usize, db: &str) {
    let (na, nb) = (&t.hosts[a].ns, &t.hosts[b].ns);
    sh(&format!(
        "ip link add {da} netns {na} type veth peer name {db} netns {nb} && ip -n {na} link set {da} up && ip -n {nb} link set {db} up"
    ));
}

fn no_ipv6(h: &Host) {
    h.run("sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1");
}

/// A gretap tunnel on host `k` (1-3) of the mesh, tenant `key`, with the
/// other hosts as peers.
fn mesh_config(k: u32, key: u32, hosts: u32) -> String {
    let mut c = Config::new(&format!("t{key}"), Mode::Gretap).with_link("e0", &format!("198.18.0.{}", 10 * k), RxHook::Tc);
    c.tunnel.key = Some(key);
    for j in (1..=hosts).filter(|&j| j != k) {
        c = c.with_peer(&format!("h{j}"), &[], &[("e0", &format!("198.18.0.{}", 10 * j))]);
    }
    c.to_toml()
}

fn vm_mac(k: u32, tenant: u32) -> String {
    format!("02:00:00:00:{k:02x}:{tenant:02x}")
}

#[test]
fn three_host_mesh_keeps_two_tenants_apart_and_floods_arp_once() {
    let _s = serial();
    let mut t = Topo::empty("m");
    let sw = t.add("msw");
    t.hosts[sw].shell("ip link add br0 type bridge && ip link set br0 up");
    let mut hosts = Vec::new();
    let mut vms = std::collections::BTreeMap::new();
    // The underlay first: `up` resolves each peer's MAC by ARP.
    for k in 1..=3u32 {
        let h = t.add(&format!("mh{k}"));
        no_ipv6(&t.hosts[h]);
        veth(&t, h, "e0", sw, &format!("s{k}"));
        t.hosts[sw].run(&format!("ip link set s{k} master br0"));
        t.hosts[h].run(&format!("ip addr add 198.18.0.{}/24 dev e0", 10 * k));
        hosts.push(h);
    }
    for (k, &h) in (1..=3u32).zip(&hosts) {
        for tenant in 1..=2u32 {
            let vm = t.add(&format!("mv{k}{tenant}"));
            no_ipv6(&t.hosts[vm]);
            veth(&t, h, &format!("p{tenant}"), vm, "eth0");
            t.hosts[vm].shell(&format!(
                "ip link set eth0 down && ip link set eth0 address {} mtu 1458 && ip link set eth0 up && ip addr add 198.19.0.{k}/24 dev eth0",
                vm_mac(k, tenant)
            ));
            let cfg = t.write(&format!("h{k}t{tenant}.toml"), &mesh_config(k, tenant, 3));
            t.hosts[h].xgre_ok(Enter::Nsenter, &format!("up -c {cfg}"));
            t.hosts[h].shell(&format!(
                "ip link add br{tenant} type bridge && ip link set t{tenant} master br{tenant} && ip link set p{tenant} master br{tenant} && ip link set br{tenant} up"
            ));
            vms.insert((k, tenant), vm);
        }
    }
    let h1 = &t.hosts[hosts[0]];
    // Two tunnels share e0, told apart by key; each is a 1458-byte Ethernet.
    assert_eq!(h1.mtu("t1"), 1500 - 20 - 8 - 14);
    // What runs reads back as the config that made it: `up` of it again
    // changes nothing.
    let shown = h1.xgre_ok(Enter::Nsenter, "show t2");
    assert!(shown.contains("mode = \"gretap\"") && shown.contains("key = 2"), "{shown}");
    let again = t.write("shown.toml", &shown);
    let out = h1.xgre_ok(Enter::Nsenter, &format!("up -c {again}"));
    assert!(out.contains("already up"), "{out}");

    // Tenant 1 on host 1 asks for 198.19.0.2 for the first time. Watch
    // what host 1 sends: the ARP request goes once to each other host,
    // then the echo requests go to host 2 alone.
    let cap = Capture::start_all(
        h1,
        "e0",
        "ip proto 47 and src host 198.18.0.10",
        &["ip.dst", "gre.key", "eth.dst", "arp.opcode", "icmp.type"],
        200,
        6,
    );
    // Meanwhile tenant 2's VMs must see nothing of tenant 1's.
    let spies: Vec<Capture> = [2u32, 3]
        .iter()
        .map(|&k| Capture::start(&t.hosts[vms[&(k, 2)]], "eth0", &format!("ether src {}", vm_mac(1, 1)), &["eth.src"], 100, 6))
        .collect();
    let vm11 = &t.hosts[vms[&(1, 1)]];
    vm11.run("ping -c 3 -i 0.2 -W 2 198.19.0.2");
    vm11.run("ping -c 2 -i 0.2 -W 2 198.19.0.3");
    let frames = cap.finish_now();
    let arp_req: Vec<&Vec<String>> = frames.iter().filter(|f| f[3] == "1").collect();
    let to = |f: &Vec<String>| f[0].split(';').next().unwrap().to_string();
    let mut arp_dsts: Vec<String> = arp_req.iter().map(|f| to(f)).collect();
    arp_dsts.sort();
    // One ARP request per target address, each flooded once to both others.
    assert_eq!(arp_dsts, ["198.18.0.20", "198.18.0.20", "198.18.0.30", "198.18.0.30"], "ARP requests sent: {frames:?}");
    for f in &arp_req {
        assert_eq!(f[1], "0x00000001", "tenant 1's key");
        assert_eq!(f[2].split(';').nth(1), Some("ff:ff:ff:ff:ff:ff"), "inner broadcast: {f:?}");
    }
    let echo: Vec<(String, String)> =
        frames.iter().filter(|f| f[4].split(';').next() == Some("8")).map(|f| (to(f), f[2].clone())).collect();
    assert_eq!(echo.len(), 5, "{frames:?}");
    for (i, (dst, eth)) in echo.iter().enumerate() {
        // After learning: unicast, to the host whose VM was asked.
        let (want_ip, want_mac) = if i < 3 { ("198.18.0.20", vm_mac(2, 1)) } else { ("198.18.0.30", vm_mac(3, 1)) };
        assert_eq!(dst, want_ip, "echo {i} went to the wrong host: {frames:?}");
        assert_eq!(eth.split(';').nth(1), Some(want_mac.as_str()), "echo {i}");
    }
    for (spy, k) in spies.into_iter().zip([2, 3]) {
        let seen = spy.finish_now();
        assert!(seen.is_empty(), "tenant 2 on host {k} saw tenant 1's frames: {seen:?}");
    }
    // The same addresses in tenant 2 reach tenant 2's VMs.
    let vm12 = &t.hosts[vms[&(1, 2)]];
    vm12.shell("ping -c 2 -i 0.2 -W 2 198.19.0.2 && ping -c 2 -i 0.2 -W 2 198.19.0.3");
    for (vm, want) in [(vm11, 1u32), (vm12, 2)] {
        let neigh = vm.run("ip neigh show dev eth0");
        for k in [2u32, 3] {
            assert!(
                neigh.contains(&format!("198.19.0.{k} lladdr {}", vm_mac(k, want))),
                "tenant {want} resolved another tenant's VM:\n{neigh}"
            );
        }
    }
    // The learned table, as status shows it.
    let status: serde_json::Value = serde_json::from_str(&h1.xgre_ok(Enter::Nsenter, "status --json")).unwrap();
    let t1 = status["tunnels"].as_array().unwrap().iter().find(|x| x["name"] == "t1").expect("t1 in status").clone();
    let fdb = t1["fdb"].as_array().expect("fdb in status");
    assert!(fdb.iter().any(|e| e["mac"] == vm_mac(2, 1) && e["peer"] == "h2"), "{fdb:?}");
    assert!(fdb.iter().any(|e| e["mac"] == vm_mac(3, 1) && e["peer"] == "h3"), "{fdb:?}");
    assert!(!fdb.iter().any(|e| e["mac"] == vm_mac(2, 2)), "tenant 2's MAC in tenant 1's table: {fdb:?}");

    // Live edits: without h3, tenant 1's broadcasts go to h2 alone and
    // h3's learned MACs are forgotten; with h3 back, to both again.
    h1.xgre_ok(Enter::Nsenter, "map-edit t1 peer del h3");
    let status: serde_json::Value = serde_json::from_str(&h1.xgre_ok(Enter::Nsenter, "status --json t1")).unwrap();
    let fdb = status["tunnels"][0]["fdb"].as_array().unwrap().clone();
    assert!(!fdb.iter().any(|e| e["peer"] == "h3"), "MACs of a removed peer kept: {fdb:?}");
    let arp_to = |vm: &Host| {
        let cap = Capture::start(h1, "e0", "ip proto 47 and src host 198.18.0.10", &["ip.dst", "gre.key", "arp.dst.proto_ipv4"], 40, 4);
        // Nobody has .9: its ARP requests, flooded, are what to count.
        let _ = sh_out(&vm.cmd(Enter::Nsenter, "ping -c 1 -W 1 198.19.0.9"));
        // Waits out the capture: the kernel repeats an unanswered ARP
        // request after the ping has given up.
        let frames = cap.finish();
        let mut d: Vec<String> =
            frames.into_iter().filter(|f| f[1] == "0x00000001" && f[2] == "198.19.0.9").map(|f| f[0].clone()).collect();
        d.sort();
        d.dedup();
        d
    };
    assert_eq!(arp_to(vm11), ["198.18.0.20"], "flooded to a removed peer");
    h1.xgre_ok(Enter::Nsenter, "map-edit t1 peer add h3 --path link=e0,remote=198.18.0.30");
    assert_eq!(arp_to(vm11), ["198.18.0.20", "198.18.0.30"]);

    // Tenant 1 goes away on host 1; tenant 2 shares the link and the
    // datapath and carries on.
    h1.xgre_ok(Enter::Nsenter, "down t1");
    let status: serde_json::Value = serde_json::from_str(&h1.xgre_ok(Enter::Nsenter, "status --json")).unwrap();
    let names: Vec<&str> = status["tunnels"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["t2"]);
    vm12.shell("ip neigh flush dev eth0 && ping -c 2 -i 0.2 -W 2 198.19.0.2 && ping -c 2 -i 0.2 -W 2 198.19.0.3");
}

/// A gretap point-to-point config for the pair topology.
fn tap_pair_config(me: char) -> String {
    let (dev, local, remote, inner, peer) = match me {
        'a' => ("va", "198.18.0.10", "198.18.0.20", "198.19.50.1/24", "b"),
        _ => ("vb", "198.18.0.20", "198.18.0.10", "198.19.50.2/24", "a"),
    };
    Config::new("gre0", Mode::Gretap)
        .with_address(inner)
        .with_link(dev, local, RxHook::Tc)
        .with_peer(peer, &[], &[(dev, remote)])
        .with_tunnel_toml("key = 9")
        .to_toml()
}

const VIP: &str = "198.19.50.100";

fn has_vip(h: &Host) -> bool {
    h.run("ip -4 addr show dev gre0").contains(VIP)
}

/// Start keepalived (VRRP only) on a host; returns its pid file.
fn start_keepalived(t: &mut Topo, host: usize, conf: &str) -> String {
    let dir = t.dir.display().to_string();
    let ns = t.hosts[host].ns.clone();
    let pidfile = format!("{dir}/{ns}.pid");
    let child = t.hosts[host].spawn(&format!(
        "keepalived --dont-fork --log-console --no-syslog --vrrp -f {conf} -p {pidfile} -r {dir}/{ns}.vrrp.pid 2>>{dir}/ka.log >&2"
    ));
    t.keep(child);
    within(Duration::from_secs(5), || std::fs::metadata(&pidfile).is_ok()).expect("keepalived wrote no pid file");
    pidfile
}

/// Stop keepalived as its service would: SIGTERM to the pid in its file.
fn stop_keepalived(pidfile: &str) {
    let pid: i32 = std::fs::read_to_string(pidfile).unwrap().trim().parse().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM).expect("signalling keepalived");
    within(Duration::from_secs(5), || std::fs::metadata(pidfile).is_err()).expect("keepalived did not stop");
}

#[test]
fn keepalived_moves_the_vip_over_gretap_and_back() {
    let _s = serial();
    let mut t = Topo::pair("k");
    for (h, me) in [(0, 'a'), (1, 'b')] {
        let cfg = t.write(&format!("{me}.toml"), &tap_pair_config(me));
        t.hosts[h].xgre_ok(Enter::Nsenter, &format!("up -c {cfg}"));
    }
    // The tunnel is an Ethernet segment: ARP and a ping cross it.
    t.a().run("ping -c 2 -i 0.2 -W 2 198.19.50.2");
    let conf = |prio: u32| {
        format!(
            "global_defs {{\n  router_id r{prio}\n}}\nvrrp_instance VI_1 {{\n  state BACKUP\n  interface gre0\n  virtual_router_id 51\n  priority {prio}\n  advert_int 1\n  virtual_ipaddress {{\n    {VIP}/24 dev gre0\n  }}\n}}\n"
        )
    };
    let ca = t.write("ka.conf", &conf(150));
    let cb = t.write("kb.conf", &conf(100));
    let master = start_keepalived(&mut t, 0, &ca);
    start_keepalived(&mut t, 1, &cb);
    let took = within(Duration::from_secs(15), || has_vip(t.a())).expect("the VIP never came up on the master (priority 150)");
    assert!(!has_vip(t.b()), "both hold the VIP: the VRRP adverts do not cross the tunnel");
    println!("VIP on the master after {took:?}");
    // The backup sees the master's adverts (multicast 224.0.0.18, flooded
    // to the peer) and stays backup for a while.
    std::thread::sleep(Duration::from_secs(3));
    assert!(!has_vip(t.b()), "the backup took the VIP while the master lived");

    // Stop the master's keepalived.
    let stopped = Instant::now();
    stop_keepalived(&master);
    within(Duration::from_secs(5).saturating_sub(stopped.elapsed()), || has_vip(t.b()))
        .expect("the VIP did not move to the backup within 5 s");
    println!("VIP on the backup {:?} after the master was told to stop", stopped.elapsed());
    assert!(within(Duration::from_secs(3), || !has_vip(t.a())).is_some(), "the old master kept the VIP");
    // The VIP answers from the backup, across the tunnel.
    t.a().run(&format!("ping -c 2 -i 0.2 -W 2 {VIP}"));

    // Start it again: the VIP returns by priority.
    let master = start_keepalived(&mut t, 0, &ca);
    let back = within(Duration::from_secs(15), || has_vip(t.a()) && !has_vip(t.b()));
    if back.is_none() {
        let log = t.dir.join("ka.log");
        panic!(
            "the VIP did not return to the higher priority: a has it {}, b has it {}; {}",
            has_vip(t.a()),
            has_vip(t.b()),
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }
    let back = back.unwrap();
    println!("VIP back on the master {back:?} after it restarted");
    // A crash this time (SIGKILL, no goodbye advert): the backup takes over
    // when the master's adverts stop arriving over the tunnel, 3 × 1 s
    // plus skew.
    let crashed = Instant::now();
    let vrrp_child = master.replace(".pid", ".vrrp.pid");
    for f in [&vrrp_child, &master] {
        let pid: i32 = std::fs::read_to_string(f).unwrap().trim().parse().unwrap();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).expect("killing keepalived");
    }
    within(Duration::from_secs(5), || has_vip(t.b())).expect("the VIP did not move to the backup within 5 s of a crash");
    println!("VIP on the backup {:?} after the master crashed", crashed.elapsed());
    let s: serde_json::Value = serde_json::from_str(&t.a().xgre_ok(Enter::Nsenter, "status --json")).unwrap();
    for (reason, n) in s["drops"].as_object().unwrap() {
        assert_eq!(n.as_u64().unwrap(), 0, "{reason}: {}", s["drops"]);
    }
}

/// Start zebra, ospfd and pimd for router `host` (configs in `dir`), each
/// with its own sockets in `dir` so routers in other namespaces never meet.
fn start_frr(t: &mut Topo, host: usize, dir: &str) {
    // FRR drops privileges to its own user: it must own the directory.
    sh(&format!("chown -R frr:frr {dir}"));
    let common = format!("--vty_socket {dir} -P 0 -z {dir}/zserv.api");
    for d in ["zebra", "ospfd", "pimd"] {
        let child = t.hosts[host].spawn(&format!("/usr/lib/frr/{d} {common} -f {dir}/{d}.conf -i {dir}/{d}.pid --log file:{dir}/{d}.log"));
        t.keep(child);
        if d == "zebra" {
            within(Duration::from_secs(10), || std::path::Path::new(&format!("{dir}/zserv.api")).exists()).expect("zebra did not start");
        }
    }
}

fn vtysh(h: &Host, dir: &str, cmd: &str) -> String {
    h.run(&format!("vtysh --vty_socket {dir} -c '{cmd}'"))
}

/// `vtysh`, or nothing while the daemon is not listening yet (it starts
/// in the background, and on a loaded machine after the first asking).
fn vtysh_soon(h: &Host, dir: &str, cmd: &str) -> String {
    String::from_utf8_lossy(&sh_out(&h.cmd(Enter::Nsenter, &format!("vtysh --vty_socket {dir} -c '{cmd}'"))).stdout).into_owned()
}

/// Router `me` (a or b) of the two-site topology: LAN, tunnel, OSPF, PIM.
fn frr_configs(dir: &std::path::Path, me: char, lan_dev: &str, lan: &str, tun: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("zebra.conf"), format!("hostname r{me}\n")).unwrap();
    let id = tun.split('/').next().unwrap();
    std::fs::write(
        dir.join("ospfd.conf"),
        format!(
            "hostname r{me}\ninterface gre0\n ip ospf network point-to-point\n ip ospf hello-interval 1\n ip ospf dead-interval 4\n!\nrouter ospf\n ospf router-id {id}\n network 198.19.100.0/30 area 0\n network {lan} area 0\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("pimd.conf"),
        format!(
            "hostname r{me}\nip pim rp 198.19.10.1 239.0.0.0/8\ninterface gre0\n ip pim\n!\ninterface {lan_dev}\n ip pim\n ip igmp\n!\n"
        ),
    )
    .unwrap();
}

/// gre tunnel between the two routers: every 198.19.0.0/16 address is
/// behind the one peer; OSPF decides which prefixes use the tunnel.
fn site_config(me: char) -> String {
    let (dev, local, remote, inner, peer) = match me {
        'a' => ("va", "198.18.0.10", "198.18.0.20", "198.19.100.1/30", "site-b"),
        _ => ("vb", "198.18.0.20", "198.18.0.10", "198.19.100.2/30", "site-a"),
    };
    Config::new("gre0", Mode::Gre)
        .with_address(inner)
        .with_link(dev, local, RxHook::Tc)
        .with_peer(peer, &["198.19.0.0/16"], &[(dev, remote)])
        .with_tunnel_toml("key = 5")
        .to_toml()
}

#[test]
fn pim_and_ospf_over_gre_carry_a_multicast_stream_between_sites() {
    let _s = serial();
    let mut t = Topo::pair("f");
    let src = t.add("fsrc");
    let rcv = t.add("frcv");
    veth(&t, 0, "la", src, "eth0");
    veth(&t, 1, "lb", rcv, "eth0");
    t.a().run("ip addr add 198.19.10.1/24 dev la");
    t.b().run("ip addr add 198.19.20.1/24 dev lb");
    t.hosts[src].shell("ip addr add 198.19.10.2/24 dev eth0 && ip route add default via 198.19.10.1");
    t.hosts[rcv].shell("ip addr add 198.19.20.2/24 dev eth0 && ip route add default via 198.19.20.1");
    for (h, me) in [(0, 'a'), (1, 'b')] {
        t.hosts[h].run("sysctl -qw net.ipv4.ip_forward=1");
        let cfg = t.write(&format!("{me}.toml"), &site_config(me));
        t.hosts[h].xgre_ok(Enter::Nsenter, &format!("up -c {cfg}"));
    }
    let (da, db) = (t.dir.join("ra"), t.dir.join("rb"));
    frr_configs(&da, 'a', "la", "198.19.10.0/24", "198.19.100.1/30");
    frr_configs(&db, 'b', "lb", "198.19.20.0/24", "198.19.100.2/30");
    let (da, db) = (da.display().to_string(), db.display().to_string());
    start_frr(&mut t, 0, &da);
    start_frr(&mut t, 1, &db);

    // PIM sees the far side over the tunnel; OSPF learns the far LAN.
    within(Duration::from_secs(30), || vtysh_soon(t.b(), &db, "show ip pim neighbor").contains("198.19.100.1"))
        .unwrap_or_else(|| panic!("no PIM neighbour over gre0:\n{}", vtysh(t.b(), &db, "show ip pim neighbor")));
    let nb = vtysh(t.b(), &db, "show ip pim neighbor");
    assert!(nb.lines().any(|l| l.contains("gre0") && l.contains("198.19.100.1")), "{nb}");
    within(Duration::from_secs(30), || vtysh_soon(t.b(), &db, "show ip route ospf").contains("198.19.10.0/24"))
        .unwrap_or_else(|| panic!("OSPF did not learn site A's LAN:\n{}", vtysh(t.b(), &db, "show ip route ospf")));
    let routes = vtysh(t.b(), &db, "show ip route ospf");
    assert!(routes.lines().any(|l| l.contains("198.19.10.0/24") && l.contains("gre0")), "{routes}");
    within(Duration::from_secs(30), || vtysh_soon(t.a(), &da, "show ip route ospf").contains("198.19.20.0/24"))
        .expect("site A did not learn site B's LAN");

    // The stream needs the kernel's multicast routing, which pimd drives
    // (CONFIG_IP_MROUTE: /proc/net/ip_mr_vif). A kernel built without it
    // forwards no multicast between interfaces, tunnel or not: the part
    // above (PIM and OSPF over the tunnel) is all it can show.
    if !std::path::Path::new("/proc/net/ip_mr_vif").exists() {
        println!("this kernel has no IP multicast routing (CONFIG_IP_MROUTE is off): the routed stream is not run");
        return;
    }

    // A receiver at site B joins 239.0.0.10; a source at site A sends 200
    // 1000-byte datagrams to it.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcast.py");
    let mut recv = t.hosts[rcv].spawn(&format!("timeout 40 /usr/bin/python3 {script} recv 239.0.0.10 1234 198.19.20.2 20"));
    let mut joined = ready(&mut recv);
    let sent = t.hosts[src].run(&format!("timeout 40 /usr/bin/python3 {script} send 239.0.0.10 1234 198.19.10.2 200"));
    let out = {
        let mut line = String::new();
        let _ = std::io::BufRead::read_line(&mut joined, &mut line);
        let _ = recv.wait();
        line
    };
    let got: Vec<u64> = out.split_whitespace().map(|x| x.parse().unwrap()).collect();
    println!("sent {}; received {} datagrams of {} bytes", sent.trim(), got[0], got[1]);
    assert_eq!(got[1], 1000, "datagram size at site B");
    assert!(got[0] >= 150, "only {} of 200 datagrams reached site B", got[0]);

    // Site A's (S,G) route goes out of the tunnel.
    let mroute = vtysh(t.a(), &da, "show ip mroute");
    assert!(
        mroute.lines().any(|l| l.contains("198.19.10.2") && l.contains("239.0.0.10") && l.contains("gre0")),
        "(S,G) at site A does not leave by gre0:\n{mroute}"
    );
}

/// Count the datagrams host `h` receives on `group`:1234 (joined on its
/// tunnel address `local`) while `send` runs.
fn multicast_counts(t: &Topo, receivers: &[(usize, &str)], sender: usize, from: &str, group: &str, n: u32) -> Vec<u64> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcast.py");
    let mut children: Vec<_> = receivers
        .iter()
        .map(|(h, local)| t.hosts[*h].spawn(&format!("timeout 30 /usr/bin/python3 {script} recv {group} 1234 {local} 6")))
        .collect();
    let outs: Vec<_> = children.iter_mut().map(ready).collect();
    t.hosts[sender].run(&format!("timeout 30 /usr/bin/python3 {script} send {group} 1234 {from} {n}"));
    // The last datagram crosses in well under a millisecond; a receiver
    // left out of the group has nothing to wait for.
    std::thread::sleep(Duration::from_millis(300));
    for (_, local) in receivers {
        // The receiver itself (not the shell asking), which prints its count.
        sh(&format!("pkill -TERM -f '^/usr/bin/python3 .*mcast.py recv {group} 1234 {local} ' || true"));
    }
    children
        .into_iter()
        .zip(outs)
        .map(|(mut c, mut out)| {
            let mut line = String::new();
            let _ = std::io::BufRead::read_line(&mut out, &mut line);
            let _ = c.wait();
            line.split_whitespace().next().unwrap_or("0").parse().unwrap()
        })
        .collect()
}

#[test]
fn gre_multicast_goes_to_every_peer_or_to_a_groups_peers_edited_live() {
    let _s = serial();
    let mut t = Topo::switched("g", 1, None);
    let c = t.add("gc");
    veth(&t, c, "c0", 2, "sc0");
    t.sw().run("ip link set sc0 master br0");
    t.hosts[c].run("ip addr add 198.18.0.30/24 dev c0");
    let head = |inner: &str, link: &str, addr: &str| Config::new("gre0", Mode::Gre).with_address(inner).with_link(link, addr, RxHook::Tc);
    let ca = head("198.19.100.1/32", "a0", "198.18.0.10")
        .with_peer("b", &["198.19.100.2/32"], &[("a0", "198.18.0.20")])
        .with_peer("c", &["198.19.100.3/32"], &[("a0", "198.18.0.30")])
        .to_toml();
    let cb = head("198.19.100.2/32", "b0", "198.18.0.20").with_peer("a", &["198.19.100.1/32"], &[("b0", "198.18.0.10")]).to_toml();
    let cc = head("198.19.100.3/32", "c0", "198.18.0.30").with_peer("a", &["198.19.100.1/32"], &[("c0", "198.18.0.10")]).to_toml();
    for (h, name, cfg) in [(0, "a", ca), (1, "b", cb), (c, "c", cc)] {
        let f = t.write(&format!("{name}.toml"), &cfg);
        t.hosts[h].xgre_ok(Enter::Nsenter, &format!("up -c {f}"));
    }
    let rx = [(1usize, "198.19.100.2"), (c, "198.19.100.3")];
    // No group configured: every peer gets a copy.
    assert_eq!(multicast_counts(&t, &rx, 0, "198.19.100.1", "239.0.0.20", 20), [20, 20], "replicated to b and c");
    // Live edit: the group goes to c only.
    t.a().xgre_ok(Enter::Nsenter, "map-edit gre0 group set 239.0.0.20 --peer c");
    assert_eq!(multicast_counts(&t, &rx, 0, "198.19.100.1", "239.0.0.20", 20), [0, 20], "only c is in the group");
    let s: serde_json::Value = serde_json::from_str(&t.a().xgre_ok(Enter::Nsenter, "status --json")).unwrap();
    assert_eq!(s["tunnels"][0]["groups"][0]["peers"], serde_json::json!(["c"]), "{}", s["tunnels"][0]["groups"]);
    // Another group still goes to everyone; removing the group restores it.
    assert_eq!(multicast_counts(&t, &rx, 0, "198.19.100.1", "239.0.0.21", 10), [10, 10]);
    let o = t.a().xgre(Enter::Nsenter, "map-edit gre0 peer del c");
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("group[0].peers"), "a peer named by a group was removed");
    t.a().xgre_ok(Enter::Nsenter, "map-edit gre0 group del 239.0.0.20");
    assert_eq!(multicast_counts(&t, &rx, 0, "198.19.100.1", "239.0.0.20", 20), [20, 20]);
}
