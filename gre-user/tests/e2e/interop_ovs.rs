//! Interoperability with Open vSwitch 3.1 (Debian's openvswitch-switch,
//! userspace datapath): gretap (its default GRE port) and L3 GRE
//! (`packet_type=legacy_l3`), with and without key, checksum and sequence
//! numbers. Host a runs xgre on `va`; host b runs OVS with `vb` as a port of
//! its underlay bridge.

use std::time::Duration;

use crate::common::{interop::*, ovs::*, *};

/// MAC the OVS side gives frames it delivers to its own stack in L3 mode.
const L3_SRC_MAC: &str = "02:00:00:00:0b:03";

/// The OVS host and xgre's host, underlay up.
fn topo(tag: &str) -> (Topo, Ovs) {
    let t = Topo::pair(tag);
    // No IPv6 on the tunnel device: its router solicitations would make
    // the first frames of a case unpredictable.
    t.a().run("sysctl -qw net.ipv6.conf.default.disable_ipv6=1");
    t.b().run("ip addr flush dev vb");
    // Like a NIC: the inner checksums are finished before the frame is on
    // the wire, which OVS reads.
    t.a().run("ethtool -K va tx off");
    let ovs = Ovs::start(t.b(), &t.dir, "vb", "198.18.0.20/24");
    let ping = t.a().run("ping -c 1 -W 5 198.18.0.20");
    assert!(ping.contains("1 received"), "underlay through OVS: {ping}\n{}", ovs.log_tail());
    (t, ovs)
}

/// OVS's side of `case`: bridge `brt` with GRE port `t0` and the inner
/// address on its internal port, whose MTU is xgre's tunnel MTU.
fn ovs_tunnel(t: &Topo, ovs: &Ovs, c: Case, mtu: u32) {
    let mut opts = format!("options:remote_ip=198.18.0.10 options:csum={} options:seq={}", c.csum, c.seq);
    if let Some(k) = c.key {
        opts += &format!(" options:key={k}");
    }
    if !c.tap {
        opts += " options:packet_type=legacy_l3";
    }
    ovs.vsctl(&format!(
        "--if-exists del-br brt -- add-br brt -- set bridge brt datapath_type=netdev other-config:hwaddr={OVERLAY_MAC} \
         -- add-port brt t0 -- set interface t0 type=gre {opts}"
    ));
    let b = t.b();
    b.run("sysctl -qw net.ipv6.conf.brt.disable_ipv6=1");
    b.run(&format!("ip link set brt mtu {mtu} up"));
    if !c.tap {
        b.run("ip addr replace 198.19.100.2/32 dev brt");
        b.run("ip route replace 198.19.100.1/32 dev brt");
        b.run(&format!("ip neigh replace 198.19.100.1 lladdr {L3_SRC_MAC} dev brt"));
        // The bridge is not packet-type aware: OVS gives L3 packets from t0
        // a zeroed Ethernet header before the table, and takes it off again
        // on output to t0.
        ovs.ofctl(&format!("add-flow brt priority=10,in_port=t0,ip,actions=mod_dl_src:{L3_SRC_MAC},mod_dl_dst:{OVERLAY_MAC},output:LOCAL"));
        // NORMAL does not output to an L3 port.
        ovs.ofctl("add-flow brt priority=10,in_port=LOCAL,ip,actions=output:t0");
    } else {
        b.run("ip addr replace 198.19.100.2/24 dev brt");
    }
}

#[track_caller]
fn wait_for_tunnel(t: &Topo, ovs: &Ovs, c: Case) {
    // OVS sets the port up in its own time: wait (bounded) until the
    // tunnel carries a ping before anything is measured.
    let up = (0..20).any(|_| t.a().shell("ping -c 1 -W 1 198.19.100.2 >/dev/null && echo ok || true").contains("ok"));
    if !up {
        panic!(
            "{c:?}: no ping crossed the tunnel in 20 s\n{}\n{}\n{}\nxgre: {}",
            ovs.log_tail(),
            ovs.ofctl("dump-flows brt"),
            ovs.run(&format!("ovs-appctl -t {}/vswitchd.ctl dpctl/dump-flows", ovs.dir())),
            t.a().xgre_ok(Enter::Nsenter, "status")
        );
    }
}

/// One case end to end: ping, DF ping at the tunnel MTU (exactly 1500-byte
/// outer packets), tshark's view of both sides' frames, 4 MiB each way.
fn exercise(t: &Topo, ovs: &Ovs, c: Case) {
    let _ = t.a().xgre(Enter::Nsenter, "down gre0");
    let ca = t.write("a.toml", &xgre_config(c, "va"));
    t.a().xgre_ok(Enter::Nsenter, &format!("up -c {ca}"));
    let mtu = t.a().mtu("gre0");
    let overhead = 24 + 4 * (c.key.is_some() as u32 + c.csum as u32 + c.seq as u32) + if c.tap { 14 } else { 0 };
    assert_eq!(mtu, 1500 - overhead, "{c:?}");
    ovs_tunnel(t, ovs, c, mtu);
    // The first frame each side sends (ARP or the first echo, and its
    // answer): where their numbering starts.
    let first = c.seq.then(|| Capture::start(t.a(), "va", "ip proto 47", &["ip.src", "gre.sequence_number"], 2, 20));
    wait_for_tunnel(t, ovs, c);
    let first = first.map(Capture::finish).unwrap_or_default();
    // 3 echoes and 2 DF echoes, both ways (ARP was done by the warm-up).
    let frames = 10;
    let cap = Capture::start_all(t.a(), "va", "ip proto 47", &FRAME_FIELDS, frames, 20);
    let ping = t.a().run("ping -c 3 -i 0.2 -W 3 198.19.100.2");
    assert!(ping.contains("3 received"), "{c:?}: {ping}\n{}", ovs.log_tail());
    // The largest ICMP payload that fits the tunnel MTU, DF set.
    let df = t.a().run(&format!("ping -c 2 -i 0.2 -W 3 -M do -s {} 198.19.100.2", mtu - 28));
    assert!(df.contains("2 received"), "{c:?}: DF ping at the tunnel MTU: {df}");
    let pkts = cap.finish();
    assert_eq!(pkts.len() as u32, frames, "{c:?}: {pkts:?}");
    check_frames(c, &pkts, "198.18.0.20");
    if c.seq {
        assert_eq!(first_seq(&first, "198.18.0.10").as_deref(), Some("1"), "{c:?}: xgre numbers from 1: {first:?}");
        assert_eq!(first_seq(&first, "198.18.0.20").as_deref(), Some("0"), "{c:?}: OVS numbers from 0: {first:?}");
    }
    let x = transfer(t.a(), t.b(), "198.19.100.2", 4);
    assert_eq!(x.sent, x.got, "{c:?}: xgre -> OVS");
    let x = transfer(t.b(), t.a(), "198.19.100.1", 4);
    assert_eq!(x.sent, x.got, "{c:?}: OVS -> xgre");
    let s = status(t.a());
    assert!(drops(&s).is_empty(), "{c:?}: xgre dropped {:?}", drops(&s));
    if c.seq {
        let r = &s["tunnels"][0]["peers"][0]["reorder"];
        assert_eq!(r["out_of_order"], 0, "{c:?}: {r}");
    }
}

#[test]
fn gretap_interoperates_with_open_vswitch() {
    let _s = serial();
    let (t, ovs) = topo("ot");
    for c in [
        Case { tap: true, key: Some(42), csum: false, seq: false },
        Case { tap: true, key: None, csum: false, seq: false },
        Case { tap: true, key: Some(42), csum: true, seq: false },
        Case { tap: true, key: Some(42), csum: false, seq: true },
    ] {
        exercise(&t, &ovs, c);
    }
}

#[test]
fn l3_gre_interoperates_with_open_vswitch() {
    let _s = serial();
    let (t, ovs) = topo("ol");
    for c in [
        Case { tap: false, key: Some(42), csum: false, seq: false },
        Case { tap: false, key: None, csum: true, seq: false },
        Case { tap: false, key: Some(42), csum: false, seq: true },
    ] {
        exercise(&t, &ovs, c);
    }
}

#[test]
fn xgre_run_keeps_an_open_vswitch_peer_that_cannot_reflect_keepalives() {
    let _s = serial();
    let (mut t, ovs) = topo("ok");
    let c = Case { tap: true, key: Some(42), csum: false, seq: false };
    let ca = t.write("a.toml", &xgre_config(c, "va"));
    t.start_run(0, &ca);
    ovs_tunnel(&t, &ovs, c, t.a().mtu("gre0"));
    wait_for_tunnel(&t, &ovs, c);
    // Ten keepalive intervals: OVS's gretap port drops IPv4-in-GRE, so no
    // keepalive comes back, and the only path must stay.
    std::thread::sleep(Duration::from_millis(1000));
    let s = status(t.a());
    let p = &s["tunnels"][0]["peers"][0]["paths"][0];
    assert_eq!(p["up"], true, "{p}");
    assert_eq!(p["counters"]["keepalive_replies"], 0, "OVS reflected a keepalive after all: {p}");
    assert_eq!(s["tunnels"][0]["peers"][0]["keepalive"], "auto");
    let text = t.a().xgre_ok(Enter::Nsenter, "status");
    assert!(text.contains("keepalive auto (never answered: judged by link state only)"), "{text}");
    let ping = t.a().run("ping -c 3 -i 0.2 -W 3 198.19.100.2");
    assert!(ping.contains("3 received"), "{ping}");
}

#[test]
fn open_vswitch_sums_its_gre_checksum_before_writing_the_sequence_number() {
    // A difference the README states: with both `csum` and `seq`, OVS 3.1's
    // userspace datapath computes the checksum over a zero sequence field,
    // so every frame it sends fails the check (xgre's, Linux's, tshark's).
    let _s = serial();
    let (t, ovs) = topo("oc");
    let c = Case { tap: true, key: Some(42), csum: true, seq: true };
    let ca = t.write("a.toml", &xgre_config(c, "va"));
    t.a().xgre_ok(Enter::Nsenter, &format!("up -c {ca}"));
    ovs_tunnel(&t, &ovs, c, t.a().mtu("gre0"));
    let cap = Capture::start(t.a(), "va", "ip proto 47 and src host 198.18.0.20", &["gre.sequence_number", "gre.checksum.status"], 3, 10);
    let ping = t.a().shell("ping -c 3 -i 0.2 -W 1 198.19.100.2 || true");
    assert!(ping.contains(" 0 received"), "{ping}");
    let pkts = cap.finish();
    // Its frame numbered 0 is right: the zero it summed is what it sent.
    let numbered: Vec<_> = pkts.iter().filter(|p| p[0] != "0").collect();
    assert!(!numbered.is_empty() && numbered.iter().all(|p| p[1] == "0"), "tshark: OVS's GRE checksums are bad once numbered: {pkts:?}");
    let d = drops(&status(t.a()));
    assert!(d.iter().any(|(k, n)| k == "bad_checksum" && *n > 0), "{d:?}");
}
