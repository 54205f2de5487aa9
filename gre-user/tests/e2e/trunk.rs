//! `gretap` trunks: one tunnel per host carries every VLAN of a VLAN-aware
//! bridge, VLAN ⇄ key. Three hosts, each with a VM in VLAN 100 and one in
//! VLAN 200 (all in one IP subnet, so only the VLANs keep them apart), in
//! namespaces torn down by Drop.
//!
//! The bridge is Open vSwitch's userspace datapath (gre0 a trunk port, each
//! VM an access port): this kernel has no 802.1Q (`CONFIG_VLAN_8021Q` is
//! not set, so neither VLAN devices nor a bridge's `vlan_filtering 1`
//! exist: "Operation not supported"). OVS hands gre0 frames with the tag in
//! the frame; the kernel's bridge would hand it in the skb's metadata,
//! which `trunk::frame_vid` reads too (and BPF_PROG_RUN cannot set).

use crate::common::{ovs::Ovs, *};
use gre_user::config::VlanConfig;

const VLANS: [(u16, u32); 2] = [(100, 5100), (200, 5200)];

fn vm_mac(k: u32, vid: u16) -> String {
    format!("02:00:00:{:02x}:00:{k:02x}", vid / 100)
}

/// VM k (host 1-3) of VLAN 100 has 198.19.1.k, of VLAN 200 198.19.1.1k.
fn vm_ip(k: u32, vid: u16) -> String {
    format!("198.19.1.{}", if vid == 100 { k } else { 10 + k })
}

fn config(k: u32) -> String {
    let mut c = Config::new("gre0", Mode::Gretap).with_link("e0", &format!("198.18.0.{}", 10 * k), RxHook::Tc);
    c.tunnel.vlans = VLANS.iter().map(|&(vid, key)| VlanConfig { vid, key }).collect();
    for j in (1..=3u32).filter(|&j| j != k) {
        c = c.with_peer(&format!("h{j}"), &[], &[("e0", &format!("198.18.0.{}", 10 * j))]);
    }
    c.to_toml()
}

fn ping(vm: &Host, ip: &str) -> bool {
    sh_out(&vm.cmd(Enter::Nsenter, &format!("ping -c 1 -W 1 {ip}"))).status.success()
}

fn drops(h: &Host, reason: &str) -> u64 {
    let s: serde_json::Value = serde_json::from_str(&h.xgre_ok(Enter::Nsenter, "status --json")).unwrap();
    s["drops"][reason].as_u64().unwrap()
}

#[test]
fn one_trunk_carries_each_vlan_under_its_own_key_and_keeps_them_apart() {
    let _s = serial();
    let mut t = Topo::empty("v");
    let sw = t.add("vsw");
    t.hosts[sw].shell("ip link add br0 type bridge && ip link set br0 up");
    let mut hosts = Vec::new();
    let mut vms = std::collections::BTreeMap::new();
    let mut ovss = Vec::new();
    for k in 1..=3u32 {
        let h = t.add(&format!("vh{k}"));
        let (hn, sn) = (t.hosts[h].ns.clone(), t.hosts[sw].ns.clone());
        sh(&format!(
            "ip link add e0 netns {hn} type veth peer name s{k} netns {sn} && ip -n {sn} link set s{k} master br0 up && \
             ip -n {hn} addr add 198.18.0.{}/24 dev e0 && ip -n {hn} link set e0 up",
            10 * k
        ));
        hosts.push(h);
    }
    for (k, &h) in (1..=3u32).zip(&hosts) {
        let cfg = t.write(&format!("h{k}.toml"), &config(k));
        t.hosts[h].xgre_ok(Enter::Nsenter, &format!("up -c {cfg}"));
        // The VLAN-aware bridge: gre0 a trunk port of both VLANs, each VM an
        // access port of its own. OVS reads frames as a NIC would send them:
        // offloads off, so checksums are complete.
        let ovs = Ovs::daemons(&t.hosts[h], &t.dir.join(format!("ovs{k}")));
        for (vid, _) in VLANS {
            let vm = t.add(&format!("vm{k}{}", vid / 100));
            let (hn, vn) = (t.hosts[h].ns.clone(), t.hosts[vm].ns.clone());
            sh(&format!(
                "ip link add p{vid} netns {hn} type veth peer name eth0 netns {vn} && ip -n {hn} link set p{vid} up && \
                 ip netns exec {vn} sysctl -qw net.ipv6.conf.all.disable_ipv6=1 && \
                 ip -n {vn} link set eth0 address {} mtu 1458 && ip -n {vn} addr add {}/24 dev eth0 && ip -n {vn} link set eth0 up && \
                 ip netns exec {vn} ethtool -K eth0 tx off rx off tso off gso off gro off >/dev/null",
                vm_mac(k, vid),
                vm_ip(k, vid)
            ));
            vms.insert((k, vid), vm);
        }
        ovs.vsctl(
            "add-br vbr -- set bridge vbr datapath_type=netdev -- add-port vbr gre0 trunks=100,200 \
             -- add-port vbr p100 tag=100 -- add-port vbr p200 tag=200",
        );
        t.hosts[h].run("ip link set vbr up");
        ovss.push(ovs);
    }
    let h1 = &t.hosts[hosts[0]];
    let vm = |k: u32, vid: u16| &t.hosts[vms[&(k, vid)]];

    // Each VLAN reaches its own VMs on the other hosts, over its own key,
    // untagged on the wire.
    let cap =
        Capture::start_all(h1, "e0", "ip proto 47 and src host 198.18.0.10", &["gre.key", "eth.type", "vlan.id", "icmp.type"], 100, 6);
    for (vid, _) in VLANS {
        for other in [2, 3] {
            assert!(ping(vm(1, vid), &vm_ip(other, vid)), "VLAN {vid}: host 1 cannot reach host {other}");
        }
    }
    let frames = cap.finish_now();
    let echo: Vec<&Vec<String>> = frames.iter().filter(|f| f[3].split(';').next() == Some("8")).collect();
    assert_eq!(echo.len(), 4, "{frames:?}");
    let mut keys: Vec<&str> = echo.iter().map(|f| f[0].as_str()).collect();
    keys.sort();
    assert_eq!(keys, ["0x000013ec", "0x000013ec", "0x00001450", "0x00001450"], "keys 5100 and 5200: {frames:?}");
    for f in &echo {
        assert!(f[2].is_empty() && !f[1].contains("0x8100"), "a tag went on the wire: {f:?}");
    }

    // Kept apart: the same subnet in the other VLAN is not reachable, and
    // the bridge's table and ours learned each MAC in its own VLAN.
    assert!(!ping(vm(1, 100), &vm_ip(2, 200)), "VLAN 100 reached VLAN 200");
    let s: serde_json::Value = serde_json::from_str(&h1.xgre_ok(Enter::Nsenter, "status --json")).unwrap();
    let fdb = s["tunnels"][0]["fdb"].as_array().unwrap();
    for (k, vid) in [(2, 100), (3, 100), (2, 200), (3, 200)] {
        assert!(
            fdb.iter().any(|e| e["mac"] == vm_mac(k, vid) && e["vid"] == vid && e["peer"] == format!("h{k}")),
            "{} not learned in VLAN {vid}: {fdb:?}",
            vm_mac(k, vid)
        );
    }
    assert!(!fdb.iter().any(|e| e["mac"] == vm_mac(2, 200) && e["vid"] == 100), "{fdb:?}");
    let text = h1.xgre_ok(Enter::Nsenter, "status gre0");
    assert!(text.contains("trunk   vlan 100 -> key 5100, 200 -> key 5200; untagged -> dropped"), "{text}");

    // An unknown destination in VLAN 100 is flooded once to each other
    // host, under VLAN 100's key, and reaches only VLAN 100's VMs.
    let unknown = "02:00:00:00:99:99";
    vm(1, 100).run(&format!("ip neigh replace 198.19.1.99 lladdr {unknown} dev eth0"));
    let cap = Capture::start_all(&t.hosts[sw], "br0", "ip proto 47", &["ip.src", "ip.dst", "gre.key", "eth.dst"], 100, 5);
    let spy100 = Capture::start(vm(2, 100), "eth0", &format!("ether dst {unknown}"), &["eth.dst"], 10, 5);
    let spy200 = Capture::start(vm(2, 200), "eth0", &format!("ether dst {unknown}"), &["eth.dst"], 10, 5);
    let _ = sh_out(&vm(1, 100).cmd(Enter::Nsenter, "ping -c 1 -W 1 198.19.1.99"));
    let flooded: Vec<Vec<String>> = cap.finish_now().into_iter().filter(|f| f[3].contains(unknown)).collect();
    let outer = |f: &str| f.split(';').next().unwrap_or_default().to_string();
    let mut to: Vec<String> = flooded.iter().map(|f| format!("{}>{} {}", outer(&f[0]), outer(&f[1]), f[2])).collect();
    to.sort();
    assert_eq!(to, ["198.18.0.10>198.18.0.20 0x000013ec", "198.18.0.10>198.18.0.30 0x000013ec"], "flooded: {flooded:?}");
    assert_eq!(spy100.finish_now().len(), 1, "VLAN 100 on host 2 did not get the flooded frame");
    assert!(spy200.finish_now().is_empty(), "VLAN 200 on host 2 got VLAN 100's flood");

    // Untagged frames: dropped and counted without a native key; with one
    // (a live edit), carried under it.
    // (A refused frame fails the send with ENOBUFS: veth drops it where it
    // counts it, see tx::drop_where_counted.)
    let send_untagged = || {
        sh_out(&h1.cmd(
            Enter::Nsenter,
            "/usr/bin/python3 -c \"from scapy.all import Ether, IP, ICMP, sendp; \
             sendp(Ether(dst='02:00:00:00:99:98')/IP(src='198.19.1.50', dst='198.19.1.51')/ICMP(), iface='gre0', verbose=False)\"",
        ))
    };
    let before = drops(h1, "untagged");
    send_untagged();
    assert_eq!(drops(h1, "untagged"), before + 1);
    h1.xgre_ok(Enter::Nsenter, "map-edit gre0 vlan native 5000");
    let cap = Capture::start(h1, "e0", "ip proto 47 and src host 198.18.0.10", &["gre.key"], 10, 4);
    send_untagged();
    let keys: Vec<String> = cap.finish_now().into_iter().map(|f| f[0].clone()).collect();
    assert_eq!(keys, ["0x00001388", "0x00001388"], "untagged frames under the native key 5000, flooded to both");

    // Live: VLAN 200 no longer carried from host 1 (dropped, counted).
    h1.xgre_ok(Enter::Nsenter, "map-edit gre0 vlan del 200");
    let before = drops(h1, "vlan_unknown");
    assert!(!ping(vm(1, 200), &vm_ip(2, 200)));
    assert!(drops(h1, "vlan_unknown") > before);
    assert!(ping(vm(1, 100), &vm_ip(2, 100)), "VLAN 100 broke when 200 was removed");
    // `show` reads the trunk back: `up` of it is a no-op.
    let shown = h1.xgre_ok(Enter::Nsenter, "show gre0");
    assert!(shown.contains("native_key = 5000") && shown.contains("[[tunnel.vlan]]") && !shown.contains("vid = 200"), "{shown}");
    let again = t.write("shown.toml", &shown);
    assert!(h1.xgre_ok(Enter::Nsenter, &format!("up -c {again}")).contains("already up"));

    // ARP suppression on a trunk, turned on live: what VLAN 100 said
    // answers VLAN 100's requests, tagged back into VLAN 100; VLAN 200 is
    // not answered from it.
    let on = t.write("suppress.toml", &shown.replacen("[tunnel]\n", "[tunnel]\narp_suppress = true\n", 1));
    h1.xgre_ok(Enter::Nsenter, &format!("reload -c {on}"));
    h1.xgre_ok(Enter::Nsenter, "map-edit gre0 vlan add 200 5200");
    vm(1, 100).run("ip neigh flush dev eth0");
    assert!(ping(vm(1, 100), &vm_ip(2, 100)), "VLAN 100 broke with suppression on");
    let ask = |vm: &Host, ip: &str| -> serde_json::Value {
        let out = vm.run(&format!("timeout 20 /usr/bin/python3 {}/tests/neigh.py arp eth0 {ip}", env!("CARGO_MANIFEST_DIR")));
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("neigh.py: {e}: {out}"))
    };
    let answered = |h: &Host| -> u64 {
        let s: serde_json::Value = serde_json::from_str(&h.xgre_ok(Enter::Nsenter, "status --json")).unwrap();
        s["tunnels"][0]["neigh"]["arp_answered"].as_u64().unwrap()
    };
    let before = answered(h1);
    let r = ask(vm(1, 100), &vm_ip(2, 100));
    assert_eq!(r["sha"], vm_mac(2, 100), "VLAN 100's request not answered in VLAN 100: {r}");
    assert_eq!(answered(h1), before + 1, "answered by the VM itself, not by host 1");
    let r = ask(vm(1, 200), &vm_ip(2, 100));
    assert_eq!(r["answered"], false, "VLAN 200 was answered from VLAN 100's table: {r}");
    assert_eq!(answered(h1), before + 1);
}
