//! The delay line the aggregation benchmarks and tests put between hosts
//! (this kernel has no netem), checked before it is trusted: it holds each
//! frame for its delay, loses what it is told to lose, loses nothing of its
//! own, and carries a TCP stream at its link's rate.

use std::time::Duration;

use delayline::{Line, Relay};

use crate::common::*;

/// Hosts a (198.18.0.10 on `va`) and b (198.18.0.20 on `vb`) joined through
/// a third namespace whose ends `la` and `lb` the delay line relays between;
/// GRO and segmentation off everywhere, so every frame fits the wire.
fn line(tag: &str) -> (Topo, usize) {
    let mut t = Topo::empty(tag);
    let (a, b, l) = (t.add("a"), t.add("b"), t.add("l"));
    let (na, nb, nl) = (t.hosts[a].ns.clone(), t.hosts[b].ns.clone(), t.hosts[l].ns.clone());
    sh(&format!(
        "ip link add va netns {na} type veth peer name la netns {nl} && ip link add vb netns {nb} type veth peer name lb netns {nl} && \
         ip -n {na} addr add 198.18.0.10/24 dev va && ip -n {nb} addr add 198.18.0.20/24 dev vb"
    ));
    for (ns, dev) in [(&na, "va"), (&nb, "vb"), (&nl, "la"), (&nl, "lb")] {
        sh(&format!(
            "ip -n {ns} link set {dev} up && ip netns exec {ns} ethtool -K {dev} gro off tso off gso off tx off rx off >/dev/null"
        ));
    }
    (t, l)
}

fn ping_ms(h: &Host, n: u32, interval: &str) -> (f64, f64, u32) {
    let out = h.run(&format!("ping -q -c {n} -i {interval} -W 1 198.18.0.20 || true"));
    let received: u32 = out.split(" received").next().and_then(|s| s.rsplit(' ').next()).and_then(|s| s.parse().ok()).unwrap_or(0);
    let rtt: Vec<f64> = out.split(" = ").nth(1).map(|s| s.split(['/', ' ']).filter_map(|x| x.parse().ok()).collect()).unwrap_or_default();
    (rtt.first().copied().unwrap_or(0.0), rtt.get(1).copied().unwrap_or(0.0), received)
}

#[test]
fn the_delay_line_holds_loses_and_carries_as_told() {
    let _s = serial();
    let (t, l) = line("dl");
    let ns = t.hosts[l].ns.clone();
    // 5 ms each way: every ping takes 10 ms, within 0.2 ms.
    let relay = Relay::start(&ns, "la", "lb", Line { delay: Duration::from_millis(5), ..Default::default() }).unwrap();
    // ARP first: its exchange crosses the line too.
    ping_ms(t.a(), 1, "0.02");
    // Up to three rounds of 50: a machine whose CPUs are taken away for a
    // while (a guest's steal) wakes the relay late for all of one round,
    // as it would any program; a line that is off is off every round.
    let on_time = |(min, avg, got): (f64, f64, u32)| got == 50 && (min - 10.0).abs() <= 0.2 && (avg - 10.0).abs() <= 0.2;
    let mut rounds = vec![ping_ms(t.a(), 50, "0.02")];
    while !on_time(rounds[rounds.len() - 1]) && rounds.len() < 3 {
        rounds.push(ping_ms(t.a(), 50, "0.02"));
    }
    let stats = relay.stop().unwrap();
    let (min, avg, got) = rounds[rounds.len() - 1];
    println!("5 ms each way: ping min {min} ms, avg {avg} ms, {got}/50 (rounds {rounds:?}); relay {stats:?}");
    assert_eq!(got, 50);
    assert!(on_time(rounds[rounds.len() - 1]), "ping over a 2 x 5 ms line, min / avg / received per round: {rounds:?}");
    assert!(stats.iter().all(|s| s.failed == 0 && s.lost == 0), "{stats:?}");

    // 20% lost each way: 36% of the round trips, within sampling.
    let lossy = Line { delay: Duration::from_millis(1), loss: 0.2, ..Default::default() };
    let relay = Relay::start(&ns, "la", "lb", lossy).unwrap();
    let (_, _, got) = ping_ms(t.a(), 400, "0.005");
    let stats = relay.stop().unwrap();
    let lost = 1.0 - got as f64 / 400.0;
    println!("20% each way: {:.1}% of round trips lost; relay {stats:?}", lost * 100.0);
    assert!((0.27..0.45).contains(&lost), "{lost}");
    assert!(stats.iter().all(|s| s.failed == 0), "{stats:?}");

    // Down for 0.3 s of every second: as many of the pings lost.
    let flapping =
        Line { flap: Some(delayline::Flap { every: Duration::from_secs(1), down: Duration::from_millis(300) }), ..Default::default() };
    let relay = Relay::start(&ns, "la", "lb", flapping).unwrap();
    let (_, _, got) = ping_ms(t.a(), 200, "0.01");
    let stats = relay.stop().unwrap();
    let lost = 1.0 - got as f64 / 200.0;
    println!("down 0.3 s of every 1 s: {:.1}% of round trips lost; relay {stats:?}", lost * 100.0);
    assert!((0.2..0.45).contains(&lost), "{lost}");
    assert!(stats.iter().all(|s| s.failed == 0 && s.lost == 0) && stats[0].down > 0, "{stats:?}");

    // One TCP stream over 50 Mbit/s (tbf on a's side) and 20 ms each way:
    // BBR fills the link.
    t.a().run("tc qdisc add dev va root tbf rate 50mbit burst 32kb latency 20ms");
    let relay = Relay::start(&ns, "la", "lb", Line { delay: Duration::from_millis(20), ..Default::default() }).unwrap();
    t.b().run("iperf3 -s -1 -D -B 198.18.0.20");
    let out = t.a().run("timeout 30 iperf3 -c 198.18.0.20 -t 3 -C bbr -J");
    let stats = relay.stop().unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mbps = v["end"]["sum_received"]["bits_per_second"].as_f64().unwrap() / 1e6;
    println!("TCP over 50 Mbit/s and 2 x 20 ms: {mbps:.1} Mbit/s; relay {stats:?}");
    assert!(mbps > 42.0, "{mbps} Mbit/s over a 50 Mbit/s line");
    assert!(stats.iter().all(|s| s.failed == 0), "{stats:?}");
}
