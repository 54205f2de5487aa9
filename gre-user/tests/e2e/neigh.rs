//! ARP and ND suppression on a `gretap` mesh of three hosts, each a Linux
//! bridge with the tunnel and its VMs as ports: host 1 has VMs a1 and a2,
//! host 2 has b, host 3 has c. Namespaces torn down by Drop.

use crate::common::*;
use gre_user::config::{Mac, NeighborConfig};
use serde_json::Value;

const B4: &str = "198.19.1.2";
const C4: &str = "198.19.1.3";
const B6: &str = "2001:db8:1::2";
const A2_4: &str = "198.19.1.12";
const A2_6: &str = "2001:db8:1::12";

/// VM name, host, last address octet.
const VMS: [(&str, u32, u32); 4] = [("a1", 1, 11), ("a2", 1, 12), ("b", 2, 2), ("c", 3, 3)];

fn vm_mac(last: u32) -> String {
    format!("02:00:00:00:01:{last:02x}")
}

fn config(k: u32) -> String {
    let mut c = Config::new("gre0", Mode::Gretap).with_link("e0", &format!("198.18.0.{}", 10 * k), RxHook::Tc);
    c.tunnel.arp_suppress = true;
    if k == 1 {
        // Host 1 knows c without ever hearing from it.
        c.tunnel.neighbors.push(NeighborConfig { ip: C4.parse().unwrap(), mac: vm_mac(3).parse::<Mac>().unwrap(), vid: 0 });
    }
    for j in (1..=3u32).filter(|&j| j != k) {
        c = c.with_peer(&format!("h{j}"), &[], &[("e0", &format!("198.18.0.{}", 10 * j))]);
    }
    c.to_toml()
}

fn ask(t: &Topo, vm: usize, args: &str) -> Value {
    let out = t.hosts[vm].run(&format!("timeout 20 /usr/bin/python3 {}/tests/neigh.py {args}", env!("CARGO_MANIFEST_DIR")));
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("neigh.py {args}: {e}: {out}"))
}

fn ping(vm: &Host, ip: &str) -> bool {
    sh_out(&vm.cmd(Enter::Nsenter, &format!("ping -c 1 -W 2 {ip}"))).status.success()
}

/// ARP requests and Neighbour Solicitations host 1 sends into the tunnel:
/// "arp <target>" or "ns <target>" per frame.
fn requests(cap: Capture) -> Vec<String> {
    cap.finish_now()
        .into_iter()
        .filter_map(|f| {
            if f[0] == "1" {
                Some(format!("arp {}", f[1]))
            } else if f[2].split(';').any(|t| t == "135") {
                Some(format!("ns {}", f[3]))
            } else {
                None
            }
        })
        .collect()
}

fn capture(h1: &Host) -> Capture {
    Capture::start_all(
        h1,
        "e0",
        "ip proto 47 and src host 198.18.0.10",
        &["arp.opcode", "arp.dst.proto_ipv4", "icmpv6.type", "icmpv6.nd.ns.target_address"],
        200,
        6,
    )
}

fn neigh_status(h: &Host) -> Value {
    let s: Value = serde_json::from_str(&h.xgre_ok(Enter::Nsenter, "status --json")).unwrap();
    s["tunnels"][0]["neigh"].clone()
}

#[test]
fn known_addresses_are_answered_on_the_host_and_only_unknown_ones_flood() {
    let _s = serial();
    let mut t = Topo::empty("n");
    let sw = t.add("nsw");
    t.hosts[sw].shell("ip link add br0 type bridge && ip link set br0 up");
    let mut hosts = Vec::new();
    for k in 1..=3u32 {
        let h = t.add(&format!("nh{k}"));
        let (hn, sn) = (t.hosts[h].ns.clone(), t.hosts[sw].ns.clone());
        sh(&format!(
            "ip link add e0 netns {hn} type veth peer name s{k} netns {sn} && ip -n {sn} link set s{k} master br0 up && \
             ip -n {hn} addr add 198.18.0.{}/24 dev e0 && ip -n {hn} link set e0 up && \
             ip netns exec {hn} sysctl -qw net.ipv6.conf.default.disable_ipv6=1",
            10 * k
        ));
        hosts.push(h);
    }
    for (k, &h) in (1..=3u32).zip(&hosts) {
        let cfg = t.write(&format!("h{k}.toml"), &config(k));
        t.hosts[h].xgre_ok(Enter::Nsenter, &format!("up -c {cfg}"));
        t.hosts[h].shell("ip link add br0 type bridge && ip link set gre0 master br0 && ip link set br0 up");
    }
    let mut vms = std::collections::BTreeMap::new();
    for (name, k, last) in VMS {
        let vm = t.add(&format!("n{name}"));
        let (hn, vn) = (t.hosts[hosts[k as usize - 1]].ns.clone(), t.hosts[vm].ns.clone());
        sh(&format!(
            "ip link add p{name} netns {hn} type veth peer name eth0 netns {vn} && ip -n {hn} link set p{name} master br0 up && \
             ip netns exec {vn} sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 && \
             ip -n {vn} link set eth0 address {} mtu 1400 && ip -n {vn} addr add 198.19.1.{last}/24 dev eth0 && \
             ip -n {vn} addr add 2001:db8:1::{last}/64 dev eth0 nodad && ip -n {vn} link set eth0 up",
            vm_mac(last)
        ));
        vms.insert(name, vm);
    }
    let h1 = &t.hosts[hosts[0]];
    let vm = |n: &str| &t.hosts[vms[n]];

    // First resolutions: host 1 knows nothing of b, so a1's requests are
    // flooded to both peers, and b's answers teach host 1.
    let cap = capture(h1);
    assert!(ping(vm("a1"), B4), "a1 cannot reach b");
    assert!(ping(vm("a1"), B6), "a1 cannot reach b over IPv6");
    let first = requests(cap);
    assert_eq!(first.iter().filter(|r| *r == &format!("arp {B4}")).count(), 2, "{first:?}");
    assert_eq!(first.iter().filter(|r| *r == &format!("ns {B6}")).count(), 2, "{first:?}");

    // Another VM asks for the same addresses: host 1 answers, nothing for
    // them goes to the underlay. c's address is static in host 1's config.
    let cap = capture(h1);
    let arp = ask(&t, vms["a2"], &format!("arp eth0 {B4}"));
    let nd = ask(&t, vms["a2"], &format!("nd eth0 {B6} {A2_6}"));
    let fixed = ask(&t, vms["a2"], &format!("arp eth0 {C4}"));
    assert!(ping(vm("a2"), B4) && ping(vm("a2"), B6), "a2 cannot reach b");
    let second = requests(cap);
    let flooded: Vec<&String> = second.iter().filter(|r| r.ends_with(B4) || r.ends_with(B6) || r.ends_with(C4)).collect();
    assert!(flooded.is_empty(), "requests for known addresses went to the underlay: {flooded:?}");
    let neigh_table = vm("a2").run("ip neigh show dev eth0");
    assert!(neigh_table.contains(&format!("{B4} lladdr {}", vm_mac(2))), "{neigh_table}");
    assert!(neigh_table.contains(&format!("{B6} lladdr {}", vm_mac(2))), "{neigh_table}");

    // RFC 826: the reply's sender is the asked address and its MAC, the
    // target the asker; sent to the asker from the answered MAC.
    let (b_mac, a2_mac) = (vm_mac(2), vm_mac(12));
    assert_eq!(arp["answered"], true, "{arp}");
    for (field, want) in [
        ("op", Value::from(2)),
        ("htype", 1.into()),
        ("ptype", 0x0800.into()),
        ("hlen", 6.into()),
        ("plen", 4.into()),
        ("sha", b_mac.clone().into()),
        ("spa", B4.into()),
        ("tha", a2_mac.clone().into()),
        ("tpa", A2_4.into()),
        ("eth_src", b_mac.clone().into()),
        ("eth_dst", a2_mac.clone().into()),
    ] {
        assert_eq!(arp[field], want, "ARP reply {field}: {arp}");
    }
    assert_eq!(fixed["sha"], vm_mac(3), "static entry: {fixed}");
    // RFC 4861 4.4 and 7.2.4: a solicited advertisement from the target
    // address to the asker, hop limit 255, Override clear (a proxy's
    // answer, 7.2.8), the target's link-layer address, a valid checksum.
    assert_eq!(nd["answered"], true, "{nd}");
    for (field, want) in [
        ("type", Value::from(136)),
        ("code", 0.into()),
        ("R", 0.into()),
        ("S", 1.into()),
        ("O", 0.into()),
        ("tgt", B6.into()),
        ("tlla", b_mac.clone().into()),
        ("ip_src", B6.into()),
        ("ip_dst", A2_6.into()),
        ("hlim", 255.into()),
        ("plen", 32.into()),
        ("eth_src", b_mac.clone().into()),
        ("eth_dst", a2_mac.clone().into()),
    ] {
        assert_eq!(nd[field], want, "NA {field}: {nd}");
    }
    assert_eq!(nd["cksum"], nd["cksum_expected"], "NA checksum: {nd}");

    // A gratuitous ARP from a2 says it lives on host 1: a1's request for
    // it goes to no peer (a2 answers through the bridge), and host 2, which
    // saw the announcement arrive, answers b's.
    vm("a2").run(&format!(
        "/usr/bin/python3 -c \"from scapy.all import Ether, ARP, sendp; \
         sendp(Ether(dst='ff:ff:ff:ff:ff:ff', src='{a2_mac}')/ARP(op=1, hwsrc='{a2_mac}', psrc='{A2_4}', pdst='{A2_4}'), iface='eth0', verbose=False)\""
    ));
    std::thread::sleep(std::time::Duration::from_millis(300));
    let cap = capture(h1);
    assert!(ping(vm("a1"), A2_4), "a1 cannot reach a2");
    // (b resolved a2 when a2 pinged it: forget that, so it asks again.)
    vm("b").run("ip neigh flush dev eth0");
    assert!(ping(vm("b"), A2_4), "b cannot reach a2");
    let third = requests(cap);
    assert!(!third.contains(&format!("arp {A2_4}")), "a request for a local address went to the peers: {third:?}");
    let h2 = neigh_status(&t.hosts[hosts[1]]);
    assert!(h2["arp_answered"].as_u64().unwrap() >= 1, "host 2 did not answer for a2: {h2}");

    // Counted where a user looks.
    let n = neigh_status(h1);
    assert!(n["arp_answered"].as_u64().unwrap() >= 3, "{n}");
    assert!(n["nd_answered"].as_u64().unwrap() >= 2, "{n}");
    assert!(n["kept_local"].as_u64().unwrap() >= 1, "{n}");
    assert!(n["flooded"].as_u64().unwrap() >= 2, "{n}");
    assert_eq!(n["static"], 1, "{n}");
    let text = h1.xgre_ok(Enter::Nsenter, "status gre0");
    assert!(text.contains("  arp     suppressed "), "{text}");
    let mut exporter = h1.spawn(&format!("timeout 20 {XGRE} exporter --listen 127.0.0.1:19479"));
    std::thread::sleep(std::time::Duration::from_millis(500));
    let metrics = h1.run(
        "/usr/bin/python3 -c \"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:19479/metrics', timeout=10).read().decode())\"",
    );
    let answered = format!(r#"xgre_neigh_suppressed_total{{tunnel="gre0",kind="arp_answered"}} {}"#, n["arp_answered"]);
    let _ = exporter.kill();
    let _ = exporter.wait();
    assert!(metrics.contains(&answered), "{answered} not in:\n{metrics}");
    assert!(metrics.contains(r#"xgre_neigh_entries{tunnel="gre0",kind="static"} 1"#), "{metrics}");

    // Static entries are a live table too; a bad one changes nothing.
    h1.xgre_ok(Enter::Nsenter, &format!("map-edit gre0 arp del {C4}"));
    assert_eq!(neigh_status(h1)["static"], 0);
    let bad = h1.xgre(Enter::Nsenter, "map-edit gre0 arp add 198.19.1.4 01:00:00:00:00:01");
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("tunnel.neighbor[0].mac") && err.contains("unicast"), "{err}");
    assert_eq!(neigh_status(h1)["static"], 0);
    h1.xgre_ok(Enter::Nsenter, &format!("map-edit gre0 arp add {C4} {}", vm_mac(3)));
    assert_eq!(neigh_status(h1)["static"], 1);

    // `show` writes the static entry and the switch back: `up` is a no-op.
    let shown = h1.xgre_ok(Enter::Nsenter, "show gre0");
    assert!(shown.contains("arp_suppress = true") && shown.contains("[[tunnel.neighbor]]"), "{shown}");
    let cfg = t.write("shown.toml", &shown);
    let again = h1.xgre_ok(Enter::Nsenter, &format!("up -c {cfg}"));
    assert!(again.contains("already up"), "{again}");
}
