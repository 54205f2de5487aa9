//! Path MTU discovery over a routed underlay: host a, two routers, host b.
//! The hosts' links are 1500 bytes, the routers' link between them 1400,
//! so every full-size packet either host sends meets a hop it does not
//! fit, as on a WAN.
//! - gre and gretap learn the path MTU from the router's ICMP error and
//!   answer the inner sender (IPv4 "fragmentation needed", IPv6 "Packet
//!   Too Big"); TCP converges to the path's MSS;
//! - an ICMP error that quotes no packet of ours changes nothing;
//! - learnt MTUs age out and are learnt again;
//! - with `pmtu_discovery = false` the router fragments, and b reassembles
//!   on either receive hook; fragments from anyone else are dropped, and
//!   overlapping IPv6 fragments (RFC 5722) deliver nothing.

use std::time::Duration;

use serde_json::Value;

use crate::common::*;

/// Outer bytes the routers' link carries.
const PATH_MTU: u32 = 1400;
/// IPv4 + GRE with a key.
const OVERHEAD: u32 = 20 + 8;

/// a (hosts[0]) and b (hosts[1]) on 1500-byte links to routers r1
/// (hosts[2]) and r2 (hosts[3]), which are joined by a 1400-byte link, as
/// a WAN is: a's `va` 198.18.1.10 / 2001:db8:1::10 to r1's `ra` (.1), b's
/// `vb` 198.18.2.20 / 2001:db8:2::20 to r2's `rb` (.1), r1 and r2 on
/// 198.18.3.0/24. Both hosts' links segment what they send, as a NIC puts
/// frames on a wire (veth would carry a 64 KB GSO packet through every
/// hop).
fn routed(tag: &str) -> Topo {
    let mut t = Topo::empty(tag);
    let (a, b) = (t.add(&format!("{tag}a")), t.add(&format!("{tag}b")));
    let (r1, r2) = (t.add(&format!("{tag}r")), t.add(&format!("{tag}s")));
    let (na, nb, n1, n2) = (&t.hosts[a].ns, &t.hosts[b].ns, &t.hosts[r1].ns, &t.hosts[r2].ns);
    let link = |h: &str, dev: &str, v4: &str, v6: &str, mtu: u32| {
        format!("ip -n {h} addr add {v4}/24 dev {dev} && ip -n {h} -6 addr add {v6}/64 dev {dev} nodad && ip -n {h} link set {dev} mtu {mtu} up")
    };
    let route = |h: &str, v4: &str, via4: &str, v6: &str, via6: &str| {
        format!("ip -n {h} route add {v4} via {via4} && ip -n {h} -6 route add {v6} via {via6}")
    };
    let forward = |h: &str| format!("ip netns exec {h} sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1");
    sh(&[
        format!("ip link add va netns {na} type veth peer name ra netns {n1}"),
        format!("ip link add rm netns {n1} type veth peer name rm netns {n2}"),
        format!("ip link add vb netns {nb} type veth peer name rb netns {n2}"),
        link(na, "va", "198.18.1.10", "2001:db8:1::10", 1500),
        link(n1, "ra", "198.18.1.1", "2001:db8:1::1", 1500),
        link(n1, "rm", "198.18.3.1", "2001:db8:3::1", PATH_MTU),
        link(n2, "rm", "198.18.3.2", "2001:db8:3::2", PATH_MTU),
        link(n2, "rb", "198.18.2.1", "2001:db8:2::1", 1500),
        link(nb, "vb", "198.18.2.20", "2001:db8:2::20", 1500),
        forward(n1),
        forward(n2),
        route(na, "198.18.0.0/16", "198.18.1.1", "2001:db8::/32", "2001:db8:1::1"),
        route(n1, "198.18.2.0/24", "198.18.3.2", "2001:db8:2::/64", "2001:db8:3::2"),
        route(n2, "198.18.1.0/24", "198.18.3.1", "2001:db8:1::/64", "2001:db8:3::1"),
        route(nb, "198.18.0.0/16", "198.18.2.1", "2001:db8::/32", "2001:db8:2::1"),
        format!("ip netns exec {na} ethtool -K va tso off gso off"),
        format!("ip netns exec {nb} ethtool -K vb tso off gso off"),
    ]
    .join(" && "));
    t
}

/// Host `me`'s tunnel over the routed underlay: key 7, IPv4 and IPv6
/// inside, `extra` tunnel settings. No `mac`: `up` finds the router the
/// host's routes send to. `v6`: the underlay is IPv6.
fn config(me: char, mode: &str, rx: &str, extra: &str, v6: bool) -> String {
    let (dev, n, other) = if me == 'a' { ("va", 1, 2) } else { ("vb", 2, 1) };
    let (mine, theirs) = if me == 'a' { (1, 2) } else { (2, 1) };
    let (local, remote) = match v6 {
        false => (format!("198.18.{n}.{}", if me == 'a' { 10 } else { 20 }), format!("198.18.{other}.{}", if me == 'a' { 20 } else { 10 })),
        true => {
            (format!("2001:db8:{n}::{}", if me == 'a' { 10 } else { 20 }), format!("2001:db8:{other}::{}", if me == 'a' { 20 } else { 10 }))
        }
    };
    let (address, routes) = match mode {
        "gre" => (
            format!("[\"198.19.100.{mine}/32\", \"2001:db8:100::{mine}/128\"]"),
            format!("routes = [\"198.19.100.{theirs}/32\", \"2001:db8:100::{theirs}/128\"]"),
        ),
        _ => (format!("[\"198.19.100.{mine}/24\", \"2001:db8:100::{mine}/64\"]"), String::new()),
    };
    format!(
        "[tunnel]\nname = \"gre0\"\nmode = \"{mode}\"\naddress = {address}\nkey = 7\n{extra}\n\
         [[link]]\ndev = \"{dev}\"\naddress = \"{local}\"\nrx = \"{rx}\"\n\n\
         [[peer]]\nname = \"{}\"\n{routes}\n[[peer.path]]\nlink = \"{dev}\"\nremote = \"{remote}\"\n",
        if me == 'a' { "b" } else { "a" }
    )
}

fn status(h: &Host) -> Value {
    serde_json::from_str(&h.xgre_ok(Enter::Nsenter, "status --json")).unwrap()
}

fn path_pmtu(h: &Host) -> Value {
    status(h)["tunnels"][0]["peers"][0]["paths"][0]["pmtu"].clone()
}

fn event(h: &Host, name: &str) -> u64 {
    status(h)["pmtu_events"][name].as_u64().unwrap()
}

/// A counter of the host's IP stack: `field` of the `table` lines of
/// /proc/net/snmp ("Ip:"), or a line of /proc/net/snmp6 (`table` "").
fn snmp(h: &Host, table: &str, field: &str) -> u64 {
    if table.is_empty() {
        let s = h.run("cat /proc/net/snmp6");
        return s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)).unwrap().parse().unwrap();
    }
    let s = h.run("cat /proc/net/snmp");
    let mut rows = s.lines().filter(|l| l.starts_with(table)).map(|l| l.split_whitespace().collect::<Vec<_>>());
    let (names, values) = (rows.next().unwrap(), rows.next().unwrap());
    values[names.iter().position(|n| *n == field).unwrap()].parse().unwrap()
}

fn drop_count(h: &Host, name: &str) -> u64 {
    status(h)["drops"][name].as_u64().unwrap()
}

/// Both hosts up over the routed underlay, and plain pings crossing.
fn up(t: &Topo, mode: &str, extra_a: &str, rx_b: &str) {
    let ca = t.write("a.toml", &config('a', mode, "xdp", extra_a, false));
    let cb = t.write("b.toml", &config('b', mode, rx_b, "", false));
    t.a().xgre_ok(Enter::Nsenter, &format!("up -c {ca}"));
    t.b().xgre_ok(Enter::Nsenter, &format!("up -c {cb}"));
    // gretap resolves the inner addresses over the tunnel first.
    let ok = within(Duration::from_secs(10), || t.a().shell("ping -c 1 -W 1 198.19.100.2 >/dev/null && echo ok || true").contains("ok"));
    assert!(ok.is_some(), "{mode}: no ping over the routed underlay:\n{}", t.a().xgre_ok(Enter::Nsenter, "status"));
}

/// The inner MTU the tunnel carries over the 1400-byte path.
fn inner_mtu(mode: &str) -> u32 {
    PATH_MTU - OVERHEAD - if mode == "gretap" { 14 } else { 0 }
}

/// TCP from a to b (to `to`, an IPv4 or IPv6 inner address): completes,
/// intact, at the path's MSS (the segments r2 forwards to b, once
/// converged).
fn tcp_converges(t: &Topo, mode: &str, to: &str) {
    // IP and TCP headers, and TCP's timestamp option (12 bytes).
    let ip = if to.contains(':') { 40 } else { 20 };
    let mss = inner_mtu(mode) - ip - 20 - 12;
    let cap = Capture::start(&t.hosts[3], "rb", "ip proto 47 and greater 1000", &["tcp.len"], 400, 20);
    let x = transfer(t.a(), t.b(), to, 20);
    assert_eq!(x.sent, x.got, "{mode}: 20 MB over TCP to {to} arrived intact");
    let lens: Vec<u32> = cap.finish().iter().filter_map(|p| p[0].parse().ok()).collect();
    assert!(!lens.is_empty(), "{mode}: tshark saw no data segments to {to}");
    assert_eq!(*lens.iter().max().unwrap(), mss, "{mode}: TCP segments to {to} after converging: the path's MSS");
}

#[test]
fn gre_and_gretap_learn_the_path_mtu_and_answer_like_ip_gre() {
    let _s = serial();
    for mode in ["gre", "gretap"] {
        let t = routed(if mode == "gre" { "pm" } else { "pt" });
        up(&t, mode, "", "tc");
        let (a, mtu) = (t.a(), inner_mtu(mode));
        assert_eq!(path_pmtu(a)["source"], "link", "{mode}: nothing learnt yet");
        // TCP first, from a cold start: the first full-size segment meets
        // the 1400-byte hop.
        tcp_converges(&t, mode, "198.19.100.2");
        let p = path_pmtu(a);
        assert_eq!(
            (p["mtu"].as_u64(), p["source"].as_str(), p["from"].as_str()),
            (Some(1400), Some("icmp"), Some("198.18.1.1")),
            "{mode}: {p}"
        );
        assert!(p["expires_in_s"].as_u64().unwrap() > 500, "{mode}: ten minutes, as Linux: {p}");
        // A new inner destination's first DF packet over the limit: the
        // error comes back from the tunnel with the usable MTU.
        a.run("ip route flush cache");
        let over = a.shell(&format!("ping -c 1 -W 1 -M do -s {} 198.19.100.2 || true", mtu + 1 - 28));
        assert!(over.contains(&format!("Frag needed and DF set (mtu = {mtu})")), "{mode}: {over}");
        let at = a.run(&format!("ping -c 2 -i 0.2 -W 2 -M do -s {} 198.19.100.2", mtu - 28));
        assert!(at.contains("2 received"), "{mode}: a DF ping at the MTU arrives: {at}");
        let over6 = a.shell(&format!("ping -6 -c 1 -W 1 -s {} 2001:db8:100::2 || true", mtu + 1 - 48));
        assert!(over6.contains(&format!("Packet too big: mtu={mtu}")), "{mode}: {over6}");
        let at6 = a.run(&format!("ping -6 -c 2 -i 0.2 -W 2 -s {} 2001:db8:100::2", mtu - 48));
        assert!(at6.contains("2 received"), "{mode}: IPv6 at the MTU arrives: {at6}");
        tcp_converges(&t, mode, "2001:db8:100::2");
        let s = status(a);
        assert!(s["pmtu_events"]["frag_needed_sent"].as_u64().unwrap() >= 1, "{mode}: {}", s["pmtu_events"]);
        assert!(s["pmtu_events"]["too_big_sent"].as_u64().unwrap() >= 1, "{mode}: {}", s["pmtu_events"]);
        // What answering could drop. (Once in a few dozen runs the gretap
        // case has counted one `no_route` or `tx_no_decision` drop as the
        // IPv6 transfer ends, which is not about path MTUs.)
        for reason in ["too_big", "helper_failed", "tx_unsupported", "truncated"] {
            assert_eq!(s["drops"][reason], 0, "{mode}: {}", s["drops"]);
        }
    }
}

/// An ICMP "fragmentation needed" from r1 to a's outer address,
/// quoting an outer packet to `remote` with GRE key `key`, claiming `mtu`.
fn forge(t: &Topo, remote: &str, key: u32, mtu: u32) {
    t.hosts[2].run(&format!(
        "/usr/bin/python3 -c 'from scapy.all import *; conf.verb=0; \
         send(IP(src=\"198.18.1.1\",dst=\"198.18.1.10\")/ICMP(type=3,code=4,nexthopmtu={mtu})/\
         IP(src=\"198.18.1.10\",dst=\"{remote}\",proto=47,len=1500,flags=\"DF\")/GRE(key_present=1,key={key},proto=0x0800))'"
    ));
}

#[test]
fn an_icmp_error_about_no_packet_of_ours_changes_nothing_and_learnt_mtus_age() {
    let _s = serial();
    let t = routed("pf");
    up(&t, "gre", "pmtu_age = 2", "tc");
    let a = t.a();
    // Another destination, another key, and ours but no lower: ignored.
    forge(&t, "198.18.2.99", 7, 600);
    forge(&t, "198.18.2.20", 8, 600);
    forge(&t, "198.18.2.20", 7, 1500);
    let ok = within(Duration::from_secs(5), || event(a, "icmp_not_ours") == 2 && event(a, "icmp_not_lower") == 1);
    assert!(ok.is_some(), "the forged errors are counted: {}", status(a)["pmtu_events"]);
    assert_eq!(event(a, "icmp_learned"), 0);
    assert_eq!(path_pmtu(a)["source"], "link", "a forged error changes nothing");
    // One that quotes our flow is believed, within bounds: raised to the
    // minimum.
    forge(&t, "198.18.2.20", 7, 300);
    let p = path_pmtu(a);
    assert_eq!((p["mtu"].as_u64(), p["source"].as_str()), (Some(552), Some("icmp")), "raised to Linux's min_pmtu: {p}");
    // Aging: after pmtu_age the link's MTU is tried again, and learnt again.
    let aged = within(Duration::from_secs(6), || path_pmtu(a)["source"] == "link");
    assert!(aged.is_some(), "a learnt MTU expires after pmtu_age: {}", path_pmtu(a));
    a.run("ip route flush cache");
    let _ = a.shell("ping -c 1 -W 1 -M do -s 1444 198.19.100.2 || true");
    let p = path_pmtu(a);
    assert_eq!((p["mtu"].as_u64(), p["source"].as_str()), (Some(1400), Some("icmp")), "learnt again: {p}");
    assert_eq!(event(a, "icmp_learned"), 2);
}

#[test]
fn with_pmtu_discovery_off_the_router_fragments_and_b_reassembles_on_both_hooks() {
    let _s = serial();
    for hook in ["xdp", "tc"] {
        let mut t = routed(if hook == "xdp" { "fx" } else { "ft" });
        // Both ends, as with ip's nopmtudisc on both: each reassembles what
        // the other's router fragments (a on XDP, b on `hook`).
        let cb = t.write("b.toml", &config('b', "gre", hook, "pmtu_discovery = false", false));
        t.start_run(1, &cb);
        let ca = t.write("a.toml", &config('a', "gre", "xdp", "pmtu_discovery = false", false));
        t.start_run(0, &ca);
        let (a, b) = (t.a(), t.b());
        assert_eq!(a.mtu("gre0"), 1500 - OVERHEAD, "a's tunnel MTU is its link's");
        let ping = a.run("ping -c 3 -i 0.2 -W 2 -M do -s 1440 198.19.100.2");
        assert!(ping.contains("3 received"), "{hook}: a full-size DF inner packet crosses the 1400-byte hop: {ping}");
        let x = transfer(a, b, "198.19.100.2", 20);
        assert_eq!(x.sent, x.got, "{hook}: 20 MB over TCP arrived intact");
        assert!(event(b, "fragment_in") >= 6, "{hook}: {}", status(b)["pmtu_events"]);
        assert!(event(a, "fragment_in") >= 6, "{hook}: {}", status(a)["pmtu_events"]);
        assert_eq!(drop_count(b, "fragment"), 0, "{hook}");
        // A flood of fragments of GRE from an address no path uses:
        // dropped before the kernel's reassembly sees any.
        let before = snmp(b, "Ip:", "ReasmReqds");
        t.hosts[3].run(
            "/usr/bin/python3 -c 'from scapy.all import *; conf.verb=0; \
             p = fragment(IP(src=\"198.18.2.1\",dst=\"198.18.2.20\",proto=47)/GRE(key_present=1,key=7)/IP(dst=\"198.19.100.2\")/ICMP()/(b\"x\"*1000), fragsize=600); \
             sendp([Ether(dst=getmacbyip(\"198.18.2.20\"))/f for f in p] * 500, iface=\"rb\")'",
        );
        let dropped = within(Duration::from_secs(5), || drop_count(b, "fragment") == 1000);
        assert!(dropped.is_some(), "{hook}: {}", status(b)["drops"]);
        assert_eq!(snmp(b, "Ip:", "ReasmReqds"), before, "{hook}: the kernel's reassembly saw none of them");
    }
}

/// GRE over IPv6 from a to b in `n`-byte fragments at `offsets` (in
/// 8-byte units; overlapping when they say so), sent from a's namespace
/// where nothing of xgre runs: an echo request for b's inner address.
fn send_v6_fragments(t: &Topo, id: u32, overlap: bool) {
    let second = if overlap { 70 } else { 75 };
    // r1's address resolved first: scapy would send the first fragment
    // while it asks.
    t.a().run("ping -6 -c 1 -W 2 2001:db8:1::1");
    t.a().run(&format!(
        "/usr/bin/python3 -c 'from scapy.all import *; conf.verb=0; \
         inner = bytes(GRE(key_present=1,key=7,proto=0x0800)/IP(src=\"198.19.100.1\",dst=\"198.19.100.2\")/ICMP(id={id})/(b\"y\"*1000)); \
         h = IPv6(src=\"2001:db8:1::10\",dst=\"2001:db8:2::20\"); \
         send([h/IPv6ExtHdrFragment(nh=47,offset=0,m=1,id={id})/Raw(inner[:600]), \
               h/IPv6ExtHdrFragment(nh=47,offset={second},m=0,id={id})/Raw(inner[{second}*8:])])'"
    ));
}

#[test]
fn ipv6_outer_fragments_are_reassembled_and_overlapping_ones_deliver_nothing() {
    let _s = serial();
    let mut t = routed("f6");
    let cb = t.write("b.toml", &config('b', "gre", "xdp", "", true));
    t.start_run(1, &cb);
    let b = t.b();
    let rx = |b: &Host| status(b)["tunnels"][0]["peers"][0]["paths"][0]["counters"]["rx_packets"].as_u64().unwrap();
    send_v6_fragments(&t, 1, false);
    let ok = within(Duration::from_secs(5), || rx(b) == 1);
    assert!(ok.is_some(), "the reassembled packet is delivered: {}", status(b));
    assert_eq!(event(b, "fragment_in"), 2);
    let before = snmp(b, "", "Ip6ReasmFails");
    send_v6_fragments(&t, 2, true);
    let refused = within(Duration::from_secs(5), || snmp(b, "", "Ip6ReasmFails") > before);
    assert!(refused.is_some(), "the kernel refuses overlapping fragments (RFC 5722)");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(rx(b), 1, "nothing of the overlapping fragments was delivered");
}
