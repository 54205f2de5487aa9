//! Differential fuzzing of the receive programs: mutated and random frames
//! through BPF_PROG_RUN on both hooks, each compared with the reference
//! model (common/rx_model.rs): return code, output bytes and the drop
//! counter. `XGRE_FUZZ_SEED` picks another seed (CI uses a fixed one),
//! `XGRE_FUZZ_FRAMES` another count (default 100,000 frames, each through
//! both hooks).

mod common;

use std::collections::BTreeMap;

use aya::maps::{HashMap, MapData, PerCpuArray};
use common::{
    bpf::*,
    p2p_config,
    rx_model::{model, ones_sum, Env, Hook, Want},
    serial, Enter, Topo,
};
use gre_common::{names::*, *};

const LOCAL6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10];
const REMOTE6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x20];
const KEY: u32 = 42;
/// An IPv6 address no test host has.
const DOC6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0xde, 0xad, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

const ENV: Env =
    Env { link_mac: LINK_MAC, tun_mac: TUN_MAC, key: KEY, local4: LOCAL, remote4: REMOTE, v6: Some((LOCAL6, REMOTE6)), pairs: true };

/// xorshift64*: small, and the same frames for the same seed everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn fix_ipv4_checksum(ip: &mut [u8]) {
    let ihl = (ip[0] & 0x0f) as usize * 4;
    if ihl < 20 || ip.len() < ihl {
        return;
    }
    ip[10] = 0;
    ip[11] = 0;
    let c = !ones_sum(&ip[..ihl]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
}

/// A GRE frame of one of the families, mostly well-formed so that the
/// mutations reach every rule.
fn frame(r: &mut Rng, env: &Env) -> Vec<u8> {
    // Without IPv6 on the link, IPv6 frames still go to a documentation
    // address, which must be passed.
    let (local6, remote6) = env.v6.unwrap_or((DOC6, DOC6));
    if r.chance(4) {
        // Fully random bytes (at least an Ethernet header: BPF_PROG_RUN
        // takes nothing shorter).
        let n = 14 + r.below(200) as usize;
        let mut f = r.bytes(n);
        if r.chance(50) {
            f[..6].copy_from_slice(&env.link_mac);
        }
        return f;
    }
    let v6 = r.chance(25);
    // The inner packet and its protocol type.
    let (proto, inner): (u16, Vec<u8>) = match r.below(10) {
        0 => (0, vec![]), // our keepalive coming back
        1 => {
            // the peer's keepalive: GRE from us back to it
            let mut k = vec![0x20, 0, 0, 0];
            k.extend(env.key.to_be_bytes());
            if v6 {
                let mut h = vec![0x60, 0, 0, 0, 0, 8, 47, 255];
                h.extend(local6);
                h.extend(remote6);
                h.extend(k);
                (0x86DD, h)
            } else {
                (0x0800, ipv4(env.local4, env.remote4, 47, 0, 0, &k))
            }
        }
        2 => {
            let n = r.below(80) as usize;
            (0x6558, r.bytes(n))
        }
        3 => {
            let (p, n) = (r.next() as u16, r.below(60) as usize);
            (p, r.bytes(n))
        }
        4 | 5 => {
            let n = r.below(300) as usize;
            (0x86DD, ipv6(local6, remote6, 0, &r.bytes(n)))
        }
        _ => {
            let n = if r.chance(10) { 1000 + r.below(1800) } else { r.below(200) } as usize;
            (0x0800, ipv4([198, 19, 100, 2], [198, 19, 100, 1], 17, 0, 0, &r.bytes(n)))
        }
    };
    let g = Gre {
        flags: if r.chance(8) { (r.next() as u16) & 0x4fff } else { 0 },
        proto,
        csum: r.chance(30),
        key: if r.chance(90) { Some(if r.chance(90) { env.key } else { r.next() as u32 }) } else { None },
        seq: r.chance(30).then(|| r.next() as u32),
    };
    let body = gre(g, &inner);
    let mut f = if v6 {
        let (src, dst) = match r.below(12) {
            0 => (v4_mapped(env.remote4), v4_mapped(env.local4)),
            1 => (remote6, v4_mapped(env.local4)),
            2 => (v4_mapped(env.remote4), local6),
            3 => (local6, local6),
            _ => (remote6, local6),
        };
        let mut ip6 = vec![0x60, 0, 0, 0];
        ip6.extend((body.len() as u16).to_be_bytes());
        // Now and then an extension header instead of GRE (hop-by-hop,
        // routing, fragment, destination options).
        ip6.push(if r.chance(10) { [0, 43, 44, 60][r.below(4) as usize] } else { 47 });
        ip6.push(64);
        ip6.extend(src);
        ip6.extend(dst);
        ip6.extend(&body);
        eth(env.link_mac, PEER_MAC, 0x86DD, &ip6)
    } else {
        // Options (IHL 6..15) now and then, fragments, TTLs.
        let opts = if r.chance(15) { 4 * (1 + r.below(10) as usize) } else { 0 };
        let mut ip = ipv4(if r.chance(95) { env.remote4 } else { [198, 18, 0, r.next() as u8] }, env.local4, 47, r.next() as u8, 0, &[]);
        ip[0] = 0x45 + (opts / 4) as u8;
        ip.extend(r.bytes(opts));
        ip.extend(&body);
        let len = ip.len() as u16;
        ip[2..4].copy_from_slice(&len.to_be_bytes());
        if r.chance(10) {
            ip[6..8].copy_from_slice(&[[0x20, 0], [0, 1], [0x40, 0], [0x3f, 0xff]][r.below(4) as usize]);
        }
        ip[8] = r.next() as u8;
        fix_ipv4_checksum(&mut ip);
        eth(env.link_mac, PEER_MAC, 0x0800, &ip)
    };
    // VLAN tags: 802.1Q, 802.1ad, QinQ, priority tags (VID 0).
    if r.chance(12) {
        let tpid = if r.chance(50) { 0x8100u16 } else { 0x88a8 };
        let vid = if r.chance(50) { 0 } else { 1 + r.below(4094) as u16 };
        let mut t = f[..12].to_vec();
        t.extend(tpid.to_be_bytes());
        t.extend(vid.to_be_bytes());
        if r.chance(20) {
            t.extend(0x8100u16.to_be_bytes());
            t.extend((r.below(4095) as u16).to_be_bytes());
        }
        t.extend(&f[12..]);
        f = t;
    }
    if r.chance(5) {
        f[..6].copy_from_slice(&PEER_MAC); // not our MAC
    }
    f
}

/// 0 to 3 mutations: bit flips and byte writes in the headers, truncation
/// at any byte, a GRE checksum made right again or an IPv4 header checksum
/// recomputed so the later rules are reached.
fn mutate(r: &mut Rng, f: &mut Vec<u8>) {
    for _ in 0..r.below(4) {
        let head = f.len().min(120);
        match r.below(5) {
            0 => {
                let i = r.below(head as u64) as usize;
                f[i] ^= 1 << r.below(8);
            }
            1 => {
                let i = r.below(head as u64) as usize;
                f[i] = r.next() as u8;
            }
            2 => {
                let n = 14 + r.below((f.len() - 13) as u64) as usize;
                f.truncate(n);
            }
            3 => {
                let n = r.below(40) as usize;
                f.extend(r.bytes(n));
            }
            _ => {}
        }
    }
    if r.chance(50) && f.len() >= 34 && f[12..14] == [0x08, 0x00] {
        let end = f.len();
        fix_ipv4_checksum(&mut f[14..end]);
    }
}

fn per_cpu_sum(m: &PerCpuArray<&MapData, u64>, slot: u32) -> u64 {
    m.get(&slot, 0).unwrap().iter().sum()
}

fn reason_slot(name: &str) -> u32 {
    DropReason::all().find(|r| r.name() == name).map(|r| r as u32).unwrap_or_else(|| panic!("no drop reason {name}"))
}

/// An IPv4 or IPv6 frame without room for its IP header.
fn short_l3(f: &[u8]) -> bool {
    match u16::from_be_bytes([f[12], f[13]]) {
        0x0800 => f.len() < 14 + 20,
        0x86DD => f.len() < 14 + 40,
        _ => false,
    }
}

fn datapath() -> Dp {
    let mut dp = Dp::new();
    dp.tunnel(Some(KEY), TunnelFlags::empty());
    dp.peer(0, &[1]);
    let rx = RxKey { tunnel_ifindex: TUN, remote: REMOTE6, local: LOCAL6 };
    dp.rx_paths().insert(rx, RxPath { peer_id: 0, path: 0 }, 0).unwrap();
    let l = LocalAddr { ifindex: 1, mac: LINK_MAC, _pad: [0; 2] };
    let mut local: HashMap<&mut MapData, [u8; 16], LocalAddr> = dp.ebpf.map_mut(MAP_LOCAL_ADDRS).unwrap().try_into().unwrap();
    local.insert(LOCAL6, l, 0).unwrap();
    let mut pairs: HashMap<&mut MapData, OuterPair, u32> = dp.ebpf.map_mut(MAP_OUTER_PAIRS).unwrap().try_into().unwrap();
    pairs.insert(OuterPair { local: v4_mapped(LOCAL), remote: v4_mapped(REMOTE) }, 1, 0).unwrap();
    pairs.insert(OuterPair { local: LOCAL6, remote: REMOTE6 }, 1, 0).unwrap();
    let link = ReseqLink { tunnel_ifindex: TUN, base: 0, queues: 1, _pad: 0 };
    dp.hash::<u32, ReseqLink>(MAP_RESEQ_LINK).insert(1, link, 0).unwrap();
    dp
}

#[test]
fn receive_programs_agree_with_the_reference_model() {
    let seed: u64 = std::env::var("XGRE_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_2784);
    let frames: usize = std::env::var("XGRE_FUZZ_FRAMES").ok().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let dp = datapath();
    let drops: PerCpuArray<&MapData, u64> = dp.ebpf.map(MAP_DROPS).unwrap().try_into().unwrap();
    // Each program against the model of its hook: the XDP program that
    // hands on metadata where this kernel takes it, and the one without
    // (on a link where `xgre run` has AF_XDP sockets, so that it judges).
    let progs: Vec<(Hook, &str)> = [Some((Hook::Tc, PROG_RX_TC)), xdp_meta().map(|p| (Hook::Xdp, p)), Some((Hook::Xdp, PROG_RX_XDP_NM))]
        .into_iter()
        .flatten()
        .collect();
    let mut r = Rng(seed | 1);
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    for n in 0..frames {
        let mut f = frame(&mut r, &ENV);
        mutate(&mut r, &mut f);
        for &(hook, prog) in &progs {
            let want = model(&ENV, hook, &f);
            let slot = match &want {
                Want::Drop(reason) => Some(reason_slot(reason)),
                _ => None,
            };
            let before = slot.map(|s| per_cpu_sum(&drops, s));
            let (ret, out) = match dp.try_run(prog, &f, None) {
                Ok(r) => r,
                // This kernel's BPF_PROG_RUN builds no skb whose IPv4 or
                // IPv6 header is cut short (on a wire TC would see one).
                Err(_) if hook == Hook::Tc && short_l3(&f) => {
                    *seen.entry("not runnable at tc (short ip header)".into()).or_default() += 1;
                    continue;
                }
                Err(e) => panic!("seed {seed}, frame {n}: BPF_PROG_RUN refused it ({e}): {}", hexdump(&f)),
            };
            let meta = |target: u32| [HandoffMeta::MAGIC.to_ne_bytes(), target.to_ne_bytes(), HIDDEN.to_ne_bytes()].concat();
            // A numbered frame's peer (0 here), number and path (0) follow,
            // for the hand-off to resequence it.
            let seq_meta = |seq: Option<u32>| {
                seq.map_or(vec![], |s| [HandoffSeq::MAGIC.to_ne_bytes(), 0u32.to_ne_bytes(), s.to_ne_bytes(), 0u32.to_ne_bytes()].concat())
            };
            // Without metadata XDP judges (a link with sockets) and drops
            // what the model drops; everything else goes on to TC as it came.
            let nm = prog == PROG_RX_XDP_NM;
            let ok = match (&want, hook) {
                (Want::Drop(_), _) if nm => ret == XDP_DROP,
                _ if nm => ret == XDP_PASS && out == f,
                (Want::Pass | Want::Reassemble, Hook::Tc) => ret == TC_ACT_OK && out == f,
                (Want::Pass | Want::Reassemble, Hook::Xdp) => ret == XDP_PASS && out == f,
                (Want::Drop(_) | Want::Consumed, Hook::Tc) => ret == TC_ACT_SHOT,
                (Want::Drop(_) | Want::Consumed, Hook::Xdp) => ret == XDP_DROP,
                (Want::Deliver(w, _), Hook::Tc) | (Want::Reflect(w), Hook::Tc) => ret == TC_ACT_REDIRECT && out == *w,
                (Want::Deliver(w, seq), Hook::Xdp) => ret == XDP_PASS && out == [meta(TUN), seq_meta(*seq), w.clone()].concat(),
                (Want::Reflect(w), Hook::Xdp) => ret == XDP_PASS && out == [meta(0), w.clone()].concat(),
            };
            let counted = match (slot, before) {
                (Some(s), Some(b)) => per_cpu_sum(&drops, s) == b + 1,
                _ => true,
            };
            assert!(
                ok && counted,
                "seed {seed}, frame {n}, {hook:?}: the model wants {want:?}, the program returned {ret} (drop counted: {counted})\nframe: {}\nout:   {}\nreplay: XGRE_FUZZ_SEED={seed} cargo xtask test -- --test fuzz_rx",
                hexdump(&f),
                hexdump(&out)
            );
            let kind = match &want {
                Want::Drop(r) => format!("drop {r}"),
                w => format!("{:?}", w).split('(').next().unwrap().to_lowercase(),
            };
            *seen.entry(kind).or_default() += 1;
        }
    }
    // Every drop was counted under its reason, and nothing else was.
    let total: u64 = DropReason::all().map(|r| per_cpu_sum(&drops, r as u32)).sum();
    let want_total: u64 = seen.iter().filter(|(k, _)| k.starts_with("drop ")).map(|(_, v)| v).sum();
    assert_eq!(total, want_total, "drops counted {total}, the model's {want_total}: {seen:?}");
    eprintln!("seed {seed}: {frames} frames x 2 hooks: {seen:?}");
    // The families must reach every verdict, or the fuzzer tests less than
    // it claims.
    for kind in [
        "pass",
        "reassemble",
        "deliver",
        "reflect",
        "consumed",
        "drop bad_outer",
        "drop bad_ip_checksum",
        "drop fragment",
        "drop mapped_address",
        "drop truncated",
        "drop reserved_bits",
        "drop bad_version",
        "drop bad_checksum",
        "drop key_mismatch",
        "drop unknown_peer",
        "drop unknown_proto",
    ] {
        assert!(seen.get(kind).copied().unwrap_or(0) > 0, "no frame reached `{kind}`: {seen:?}");
    }
}

/// A sample of the same frames on a real wire: b sends them through a
/// packet socket to a's link, where xgre receives on each hook, and a's
/// counters must say what the model says. On a wire the kernel takes one
/// VLAN tag off before TC runs, which is the model's in-frame (XDP) view.
#[test]
fn a_sample_on_the_wire_is_judged_as_the_model_says() {
    let seed: u64 = std::env::var("XGRE_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_2784);
    for rx in ["tc", "xdp"] {
        let _s = serial();
        let t = Topo::pair(&format!("w{}", &rx[..1]));
        let ca = t.write("a.toml", &p2p_config('a', &format!("key = {KEY}"), rx));
        t.a().xgre_ok(Enter::Nsenter, &format!("up -c {ca}"));
        let mac = |dev: &str| -> [u8; 6] {
            let j: serde_json::Value = serde_json::from_str(&t.a().run(&format!("ip -j link show {dev}"))).unwrap();
            let m: Vec<u8> = j[0]["address"].as_str().unwrap().split(':').map(|x| u8::from_str_radix(x, 16).unwrap()).collect();
            m.try_into().unwrap()
        };
        let env = Env {
            link_mac: mac("va"),
            tun_mac: mac("gre0"),
            key: KEY,
            local4: [198, 18, 0, 10],
            remote4: [198, 18, 0, 20],
            v6: None,
            pairs: true,
        };
        let mut r = Rng(seed | 1);
        let mut want: BTreeMap<String, u64> = BTreeMap::new();
        let mut hex = String::new();
        let mut sent = 0;
        while sent < 3000 {
            let mut f = frame(&mut r, &env);
            mutate(&mut r, &mut f);
            // What a veth with a 1500-byte MTU takes from a packet socket.
            if f.len() > 1514 {
                continue;
            }
            let kind = match model(&env, Hook::Xdp, &f) {
                Want::Drop(reason) => format!("drop {reason}"),
                Want::Deliver(..) => "deliver".into(),
                Want::Reflect(_) => "reflect".into(),
                Want::Consumed => "consumed".into(),
                Want::Pass => "pass".into(),
                Want::Reassemble => "reassemble".into(),
            };
            *want.entry(kind).or_default() += 1;
            hex += &hexdump(&f);
            hex.push('\n');
            sent += 1;
        }
        let frames = t.write("frames.hex", &hex);
        t.b().run(&format!(
            // Paced: a burst overflows the receiver's backlog (1,000).
            "/usr/bin/python3 -c \"import socket, time; s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); s.bind(('vb', 0)); \
             [(s.send(bytes.fromhex(l.strip())), i % 50 == 49 and time.sleep(0.005)) for i, l in enumerate(open('{frames}')) if l.strip()]\""
        ));
        std::thread::sleep(std::time::Duration::from_millis(500));
        let s: serde_json::Value = serde_json::from_str(&t.a().xgre_ok(Enter::Nsenter, "status --json")).unwrap();
        let mut got: BTreeMap<String, u64> = s["drops"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, v)| v.as_u64().unwrap() > 0)
            .map(|(k, v)| (format!("drop {k}"), v.as_u64().unwrap()))
            .collect();
        let c = &s["tunnels"][0]["peers"][0]["paths"][0]["counters"];
        for (kind, field) in [("deliver", "rx_packets"), ("reflect", "keepalives_reflected"), ("consumed", "keepalive_replies")] {
            let n = c[field].as_u64().unwrap();
            if n > 0 {
                got.insert(kind.into(), n);
            }
        }
        let reassembled = s["pmtu_events"]["fragment_in"].as_u64().unwrap();
        if reassembled > 0 {
            got.insert("reassemble".into(), reassembled);
        }
        want.remove("pass");
        assert_eq!(got, want, "rx={rx}, seed {seed}: a's counters against the model's verdicts for {sent} frames");
    }
}
