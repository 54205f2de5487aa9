//! Interoperability with Linux's own ip_gre and gretap (Debian's 6.1
//! kernel, booted under qemu; see common/linux_vm.rs): gre and gretap, with
//! and without a key, with checksums (Linux verifies them and drops bad
//! ones) and sequence numbers (Linux drops out-of-order and repeated
//! ones); ping, DF ping at the tunnel MTU, tshark on both sides' frames,
//! TCP hashed both ways, keepalives, and `nopmtudisc` fragments that xgre
//! reassembles. Host a runs xgre on tap `qt0`, the guest's NIC.

use std::time::Duration;

use crate::common::{interop::*, linux_vm::LinuxVm, *};

const GUEST_MAC: &str = "52:54:00:12:34:56";

/// Host a with the guest on its tap, underlay up.
fn topo(tag: &str, offload: bool) -> (Topo, LinuxVm) {
    topo_with(tag, offload, &[])
}

/// `topo`, with `files` (name in the test's directory, its text; the
/// xgre binary for "xgre") in the guest's /bin or /etc.
fn topo_with(tag: &str, offload: bool, files: &[(&str, &str)]) -> (Topo, LinuxVm) {
    let mut t = Topo::empty(tag);
    let a = t.add(&format!("{tag}a"));
    let h = &t.hosts[a];
    // No IPv6 on the tunnel device: its router solicitations would make
    // the first frames of a case unpredictable.
    h.run("sysctl -qw net.ipv6.conf.default.disable_ipv6=1");
    let mut vm = if files.is_empty() {
        LinuxVm::boot(h, "qt0", GUEST_MAC, offload)
    } else {
        let placed: Vec<(String, String)> = files
            .iter()
            .map(|(name, text)| match *name {
                "xgre" => (XGRE.to_string(), "/bin/xgre".to_string()),
                _ => (t.write(name, text), format!("/etc/{name}")),
            })
            .collect();
        let placed: Vec<(&str, &str)> = placed.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        LinuxVm::boot_with(h, "qt0", GUEST_MAC, &placed, &t.dir)
    };
    h.run("ip addr add 198.18.0.10/24 dev qt0");
    h.run("ip link set qt0 up");
    if !offload {
        // Like a NIC: finished checksums on the wire.
        h.run("ethtool -K qt0 tx off");
    }
    vm.sh("sysctl -qw net.ipv6.conf.default.disable_ipv6=1 && ip addr add 198.18.0.20/24 dev eth0 && ip link set eth0 up");
    let ok = (0..20).any(|_| vm.sh_status("ping -c 1 -W 1 198.18.0.10", Duration::from_secs(10)).0 == 0);
    assert!(ok, "no underlay ping from the guest");
    (t, vm)
}

/// The guest's tunnel `g1` for `c`, with xgre's MTU.
fn linux_tunnel(vm: &mut LinuxVm, c: Case, mtu: u32) {
    let kind = if c.tap { "gretap" } else { "gre" };
    let mut opts = String::new();
    if let Some(k) = c.key {
        opts += &format!(" key {k}");
    }
    if c.csum {
        opts += " csum";
    }
    if c.seq {
        opts += " seq";
    }
    vm.sh_status("ip link del g1", Duration::from_secs(10));
    vm.sh(&format!("ip link add g1 type {kind} local 198.18.0.20 remote 198.18.0.10{opts} && ip link set g1 mtu {mtu} up"));
    if c.tap {
        vm.sh("ip addr add 198.19.100.2/24 dev g1");
    } else {
        vm.sh("ip addr add 198.19.100.2/32 dev g1 && ip route add 198.19.100.1/32 dev g1");
    }
}

fn guest_stat(vm: &mut LinuxVm, name: &str) -> u64 {
    vm.sh(&format!("cat /sys/class/net/g1/statistics/{name}")).trim().parse().unwrap()
}

/// Linux took every packet xgre sent: it counts a refused one (a checksum
/// flag it does not expect, a number out of sequence) as an rx error.
/// Out-of-sequence drops (rx_fifo_errors) may be one or two: two CPUs
/// number their packets in turn but may reach the link's queue the other
/// way round, as with Linux's own ip_gre. A numbering bug drops hundreds.
fn assert_linux_took_all(vm: &mut LinuxVm, c: Case) {
    let (errors, out_of_seq) = (guest_stat(vm, "rx_errors"), guest_stat(vm, "rx_fifo_errors"));
    assert_eq!(errors - out_of_seq, 0, "{c:?}: Linux refused {errors} of xgre's packets, {out_of_seq} of them out of sequence");
    assert!(out_of_seq <= 2, "{c:?}: Linux dropped {out_of_seq} of xgre's packets as out of sequence");
}

fn exercise(t: &Topo, vm: &mut LinuxVm, c: Case) {
    let a = &t.hosts[0];
    let _ = a.xgre(Enter::Nsenter, "down gre0");
    let ca = t.write("a.toml", &xgre_config(c, "qt0"));
    a.xgre_ok(Enter::Nsenter, &format!("up -c {ca}"));
    let mtu = a.mtu("gre0");
    linux_tunnel(vm, c, mtu);
    // The first frame each side sends: where its numbering starts.
    let first = c.seq.then(|| Capture::start(a, "qt0", "ip proto 47", &["ip.src", "gre.sequence_number"], 2, 30));
    let ok = (0..20).any(|_| a.shell("ping -c 1 -W 2 198.19.100.2 >/dev/null && echo ok || true").contains("ok"));
    assert!(ok, "{c:?}: no ping crossed the tunnel; xgre:\n{}", a.xgre_ok(Enter::Nsenter, "status"));
    let first = first.map(Capture::finish).unwrap_or_default();
    let cap = Capture::start_all(a, "qt0", "ip proto 47", &FRAME_FIELDS, 10, 30);
    let ping = a.run("ping -c 3 -i 0.2 -W 3 198.19.100.2");
    assert!(ping.contains("3 received"), "{c:?}: {ping}");
    let df = a.run(&format!("ping -c 2 -i 0.2 -W 3 -M do -s {} 198.19.100.2", mtu - 28));
    assert!(df.contains("2 received"), "{c:?}: DF ping at the tunnel MTU: {df}");
    let pkts = cap.finish();
    assert_eq!(pkts.len(), 10, "{c:?}: {pkts:?}");
    check_frames(c, &pkts, "198.18.0.20");
    if c.seq {
        assert_eq!(first_seq(&first, "198.18.0.10").as_deref(), Some("1"), "{c:?}: xgre numbers from 1: {first:?}");
        assert_eq!(first_seq(&first, "198.18.0.20").as_deref(), Some("0"), "{c:?}: Linux numbers from 0: {first:?}");
    }
    transfers(a, vm, c);
    let s = status(a);
    assert!(drops(&s).is_empty(), "{c:?}: xgre dropped {:?}", drops(&s));
    if c.seq {
        assert_eq!(s["tunnels"][0]["peers"][0]["reorder"]["out_of_order"], 0, "{c:?}");
    }
    assert_linux_took_all(vm, c);
}

/// 2 MiB each way over TCP, hashed at both ends (busybox nc in the guest,
/// bounded by the guest's `timeout`).
fn transfers(a: &Host, vm: &mut LinuxVm, c: Case) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/transfer.py");
    let context = |a: &Host| format!("xgre:\n{}", a.xgre_ok(Enter::Nsenter, "status"));
    vm.start("timeout 60 nc -l -p 5001 | sha256sum");
    std::thread::sleep(Duration::from_millis(500));
    let sent = a.run(&format!("timeout 90 /usr/bin/python3 {script} send 198.19.100.2 5001 2"));
    let (rc, got) = vm.finish(Duration::from_secs(90));
    assert_eq!(rc, 0, "{c:?}: xgre -> Linux: the guest said {got}\n{}", context(a));
    assert_eq!(got.split_whitespace().next(), sent.split_whitespace().nth(1), "{c:?}: xgre -> Linux");
    let mut server = a.spawn(&format!("timeout 90 /usr/bin/python3 {script} recv 198.19.100.1 5002"));
    let mut out = std::io::BufReader::new(server.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(line.trim(), "listening");
    let (rc, sent) = vm.sh_status(
        "dd if=/dev/urandom of=/tmp/d bs=1024 count=2048 2>/dev/null && sha256sum /tmp/d && timeout 60 nc 198.19.100.1 5002 < /tmp/d",
        Duration::from_secs(90),
    );
    line.clear();
    let _ = std::io::BufRead::read_line(&mut out, &mut line);
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(rc, 0, "{c:?}: Linux -> xgre: the guest said {sent}\nthe receiver said: {line}\n{}", context(a));
    assert_eq!(line.split_whitespace().nth(1), sent.split_whitespace().next(), "{c:?}: Linux -> xgre: {line} / {sent}");
}

#[test]
fn gre_and_gretap_interoperate_with_linux_ip_gre() {
    let _s = serial();
    let (mut t, mut vm) = topo("lx", false);
    for tap in [false, true] {
        for (key, csum, seq) in [(None, false, false), (Some(42), false, false), (Some(42), true, true)] {
            exercise(&t, &mut vm, Case { tap, key, csum, seq });
        }
    }
    keepalives_come_back_only_where_linux_routes_them(&mut t, &mut vm);
    nopmtudisc_fragments_are_reassembled(&mut t, &mut vm);
}

/// Linux's ip_gre with `nopmtudisc` behind a 1400-byte link and a tunnel
/// MTU that does not fit it: the guest sends its outer packets in
/// fragments, and xgre (under `xgre run`) reassembles them. `ignore-df`
/// too: without it Linux copies an inner DF to the outer header (TCP's,
/// and ping's), and what does not fit is refused rather than fragmented.
/// xgre's own MTU fits the link, so what it sends back is whole.
fn nopmtudisc_fragments_are_reassembled(t: &mut Topo, vm: &mut LinuxVm) {
    let c = Case { tap: false, key: Some(42), csum: false, seq: false };
    let _ = t.hosts[0].xgre(Enter::Nsenter, "down gre0");
    let cfg = t.write("frag.toml", &p2p_config('a', "key = 42\nmtu = 1372\n", "tc").replace("\"va\"", "\"qt0\""));
    t.start_run(0, &cfg);
    vm.sh_status("ip link del g1", Duration::from_secs(10));
    vm.sh("ip link set eth0 mtu 1400 && ip link add g1 type gre local 198.18.0.20 remote 198.18.0.10 key 42 nopmtudisc ignore-df && \
         ip link set g1 mtu 1476 up && ip addr add 198.19.100.2/32 dev g1 && ip route add 198.19.100.1/32 dev g1");
    let a = &t.hosts[0];
    let (rc, ping) = vm.sh_status("ping -c 3 -W 3 -s 1440 198.19.100.1", Duration::from_secs(30));
    if !(rc == 0 && ping.contains(" 0% packet loss")) {
        let g = vm.sh("ip -s link show g1; ip -s link show eth0; grep -E 'Ip:|Icmp:' /proc/net/snmp");
        let h = a.run("nstat -az");
        panic!("1468 bytes in fragments from Linux: {ping}\n{}\nGUEST {g}\nHOST {h}", a.xgre_ok(Enter::Nsenter, "status"));
    }
    transfers(a, vm, c);
    let s = status(a);
    assert!(s["pmtu_events"]["fragment_in"].as_u64().unwrap() >= 6, "{}", s["pmtu_events"]);
    assert!(drops(&s).is_empty(), "xgre dropped {:?}", drops(&s));
    vm.sh("ip link set eth0 mtu 1500");
}

/// With checksum offload on the guest's NIC, Linux's ip_gre sends its GRE
/// checksum unfilled (CHECKSUM_PARTIAL, for the device to fill), and the tap
/// hands xgre the frame that way: the kernel counts it as good, and so must
/// xgre. The same holds for xgre's own inner TCP checksums going the other
/// way.
fn linux_leaves_its_gre_checksum_to_the_nic_and_xgre_takes_it(t: &Topo, vm: &mut LinuxVm) {
    for tap in [true, false] {
        let c = Case { tap, key: Some(42), csum: true, seq: true };
        let a = &t.hosts[0];
        let _ = a.xgre(Enter::Nsenter, "down gre0");
        let ca = t.write("a.toml", &xgre_config(c, "qt0"));
        a.xgre_ok(Enter::Nsenter, &format!("up -c {ca}"));
        linux_tunnel(vm, c, a.mtu("gre0"));
        let ok = (0..20).any(|_| a.shell("ping -c 1 -W 2 198.19.100.2 >/dev/null && echo ok || true").contains("ok"));
        assert!(ok, "{c:?}: no ping crossed the tunnel; xgre:\n{}", a.xgre_ok(Enter::Nsenter, "status"));
        transfers(a, vm, c);
        let s = status(a);
        assert!(drops(&s).is_empty(), "{c:?}: xgre dropped {:?}", drops(&s));
        assert_linux_took_all(vm, c);
    }
}

/// Linux reflects a Cisco keepalive only if it may route a packet whose
/// source is its own address back out: accept_local on the tunnel and
/// forwarding. By default it does not, and `auto` keeps the path.
fn keepalives_come_back_only_where_linux_routes_them(t: &mut Topo, vm: &mut LinuxVm) {
    let c = Case { tap: false, key: Some(42), csum: false, seq: false };
    let _ = t.hosts[0].xgre(Enter::Nsenter, "down gre0");
    let ca = t.write("ka.toml", &xgre_config(c, "qt0"));
    t.start_run(0, &ca);
    let a = &t.hosts[0];
    linux_tunnel(vm, c, a.mtu("gre0"));
    let path = |h: &Host| status(h)["tunnels"][0]["peers"][0]["paths"][0].clone();
    std::thread::sleep(Duration::from_millis(1000));
    let p = path(a);
    assert_eq!((p["up"].as_bool(), p["counters"]["keepalive_replies"].as_u64()), (Some(true), Some(0)), "default Linux: {p}");
    let ping = a.run("ping -c 3 -i 0.2 -W 3 198.19.100.2");
    assert!(ping.contains("3 received"), "{ping}");
    vm.sh("sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.g1.rp_filter=0 net.ipv4.conf.g1.accept_local=1");
    std::thread::sleep(Duration::from_millis(1000));
    let p = path(a);
    assert_eq!(p["up"], true, "{p}");
    assert!(p["counters"]["keepalive_replies"].as_u64().unwrap() >= 5, "Linux with accept_local and forwarding reflects: {p}");
    vm.sh("sysctl -qw net.ipv4.ip_forward=0 net.ipv4.conf.g1.accept_local=0");
    t.stop_children();
}

/// The oldest kernel xgre is tested on: Debian 12's Linux 6.1, under qemu,
/// runs xgre itself. Every program of the datapath verifies there, a
/// tunnel comes up between the guest and host a (this kernel), and pings
/// cross it both ways. Then the same guest (its NIC offloading checksums)
/// runs its own ip_gre against xgre with checksums. One boot for both.
#[test]
fn xgre_runs_on_linux_6_1() {
    let _s = serial();
    let c = Case { tap: false, key: Some(42), csum: false, seq: false };
    let cb = xgre_config(c, "eth0")
        .replace("198.18.0.10", "198.18.0.TMP")
        .replace("198.18.0.20", "198.18.0.10")
        .replace("198.18.0.TMP", "198.18.0.20")
        .replace("198.19.100.1/32", "198.19.100.TMP/32")
        .replace("198.19.100.2/32", "198.19.100.1/32")
        .replace("198.19.100.TMP/32", "198.19.100.2/32")
        // ip_gre, loaded in the guest, has a gre0 of its own.
        .replace("name = \"gre0\"", "name = \"xg0\"");
    let (t, mut vm) = topo_with("l6", true, &[("xgre", ""), ("b.toml", &cb)]);
    let a = &t.hosts[0];
    let kernel = vm.sh("uname -r");
    assert!(kernel.contains("6.1."), "the guest runs Debian's 6.1 kernel: {kernel}");
    let (rc, costs) = vm.sh_status("xgre check --kernel", Duration::from_secs(300));
    println!("Linux {}:\n{costs}", kernel.trim());
    assert_eq!(rc, 0, "the datapath does not verify on Linux {kernel}:\n{costs}");
    assert!(costs.contains("accepts the datapath (8 of 8 programs)"), "{costs}");
    let ca = t.write("a.toml", &xgre_config(c, "qt0"));
    a.xgre_ok(Enter::Nsenter, &format!("up -c {ca}"));
    let (rc, up) = vm.sh_status("xgre up -c /etc/b.toml", Duration::from_secs(300));
    assert_eq!(rc, 0, "xgre up on Linux {kernel}: {up}");
    let ok = (0..20).any(|_| a.shell("ping -c 1 -W 2 198.19.100.2 >/dev/null && echo ok || true").contains("ok"));
    assert!(
        ok,
        "no ping crossed the tunnel to the guest; host:\n{}\nguest:\n{}",
        a.xgre_ok(Enter::Nsenter, "status"),
        vm.sh("xgre status")
    );
    let ping = vm.sh("ping -c 3 -W 3 198.19.100.1");
    assert!(ping.contains("3 packets received"), "guest -> host over the tunnel: {ping}");
    let s = status(a);
    assert!(drops(&s).is_empty(), "xgre on this kernel dropped {:?}", drops(&s));
    vm.sh("xgre down xg0");
    // The same guest, its NIC offloading checksums: against its ip_gre.
    linux_leaves_its_gre_checksum_to_the_nic_and_xgre_takes_it(&t, &mut vm);
}
