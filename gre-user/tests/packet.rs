//! Packet-exact tests: the real compiled programs run on crafted frames
//! through BPF_PROG_RUN. Transmit output is compared with frames scapy
//! builds (an independent GRE implementation); receive input is built here
//! by hand, byte by byte.
//!
//! Needs root (BPF). Each test loads its own copy of the object, so tests
//! share no map state.

mod common;
#[path = "packet/pmtu.rs"]
mod pmtu;

use std::{collections::BTreeMap, time::Duration};

use common::bpf::*;

use aya::maps::{Array, MapData, PerCpuArray};
use gre_common::{names::*, *};

#[test]
fn encapsulation_matches_scapy_byte_for_byte() {
    let cases: [(Option<u32>, bool, bool, u8); 5] = [
        (None, false, false, 0),
        (Some(42), false, false, 0),
        (Some(0xdeadbeef), true, false, 0xb8),
        (Some(7), true, true, 0),
        (None, false, true, 0x10),
    ];
    let mut specs = Vec::new();
    let mut got = Vec::new();
    for (key, seq, csum, tos) in cases {
        let mut dp = Dp::new();
        let mut flags = TunnelFlags::empty();
        if seq {
            flags |= TunnelFlags::SEQ;
        }
        if csum {
            flags |= TunnelFlags::CSUM;
        }
        dp.tunnel(key, flags);
        dp.peer(0, &[1]);
        // An odd-length payload exercises the checksum's padding.
        let inner = inner_packet(101, tos);
        let (ret, out) = dp.tx(&tunnel_frame(&inner), 1);
        assert_eq!(ret, TC_ACT_REDIRECT, "key {key:?} seq {seq} csum {csum}: not redirected; drops {:?}", dp.drops());
        // Two packets: the sequence number must advance by one.
        let (_, out2) = dp.tx(&tunnel_frame(&inner), 1);
        got.push(out);
        got.push(out2);
        for n in 1..=2u32 {
            specs.push(serde_json::json!({
                "eth": ["02:00:00:00:00:20", "02:00:00:00:00:10"],
                "ip": {"src": "198.18.0.10", "dst": "198.18.0.20", "tos": tos},
                "gre": {"key": key, "seq": if seq { Some(n) } else { None }, "csum": csum},
                "inner_hex": hexdump(&inner),
            }));
        }
        let s = dp.path_stats(0, 0);
        assert_eq!((s.tx_packets, s.tx_bytes), (2, 2 * inner.len() as u64), "tx counters count inner bytes");
    }
    let want = scapy_reference(serde_json::Value::Array(specs));
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(hexdump(g), hexdump(w), "frame {i} differs from scapy's");
    }
}

/// `ip_id_sequence`: the number is the outer IPv4 ID, and the GRE header
/// stays as it is without numbers (no S bit, no 4 more bytes).
#[test]
fn ip_id_sequence_numbers_packets_in_the_outer_ipv4_id() {
    let mut dp = Dp::new();
    dp.tunnel(Some(42), TunnelFlags::IPID_SEQ);
    dp.peer(0, &[1]);
    let inner = inner_packet(64, 0);
    let mut got = Vec::new();
    let mut specs = Vec::new();
    for n in 1..=3u32 {
        let (ret, out) = dp.tx(&tunnel_frame(&inner), 1);
        assert_eq!(ret, TC_ACT_REDIRECT, "packet {n}: not sent; drops {:?}", dp.drops());
        got.push(out);
        specs.push(serde_json::json!({
            "eth": ["02:00:00:00:00:20", "02:00:00:00:00:10"],
            "ip": {"src": "198.18.0.10", "dst": "198.18.0.20", "id": n},
            "gre": {"key": 42},
            "inner_hex": hexdump(&inner),
        }));
    }
    let want = scapy_reference(serde_json::Value::Array(specs));
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(hexdump(g), hexdump(w), "frame {i} differs from scapy's");
    }
    // A GSO packet of 4 segments takes 4 numbers, the first in its
    // header: GSO counts the ID up segment by segment (4, 5, 6, 7).
    let id = |out: &[u8]| u16::from_be_bytes([out[18], out[19]]);
    let (ret, out) = dp.tx(&tunnel_frame(&inner), 4);
    assert_eq!(ret, TC_ACT_REDIRECT, "drops {:?}", dp.drops());
    assert_eq!(id(&out), 4);
    let (_, out) = dp.tx(&tunnel_frame(&inner), 1);
    assert_eq!(id(&out), 8, "the next packet after the GSO packet's segments");
    // Never starting on a number that says "unnumbered" (65,536): the
    // whole packet would arrive as unnumbered, its other numbers a gap.
    let set = |dp: &mut Dp, v: u64| {
        let mut seqs: Array<&mut MapData, u64> = dp.ebpf.map_mut(MAP_TX_SEQ).unwrap().try_into().unwrap();
        seqs.set(0, v, 0).unwrap();
    };
    set(&mut dp, 0xffff);
    let (_, out) = dp.tx(&tunnel_frame(&inner), 3);
    assert_eq!(id(&out), 1, "65,537 to 65,539");
    // Its middle may hold one: that segment is taken unnumbered.
    set(&mut dp, 0x1_fffe);
    let (_, out) = dp.tx(&tunnel_frame(&inner), 3);
    assert_eq!(id(&out), 0xffff);
    let (_, out) = dp.tx(&tunnel_frame(&inner), 1);
    assert_eq!(id(&out), 2, "0x1_ffff..=0x2_0001 went; 0x2_0002 is next");
    // RFC 2890 sequence numbers GSO would copy to every segment.
    let mut dp = Dp::new();
    dp.tunnel(Some(42), TunnelFlags::SEQ);
    dp.peer(0, &[1]);
    let (ret, _) = dp.tx(&tunnel_frame(&inner), 4);
    assert_eq!(ret, TC_ACT_SHOT);
    assert_eq!(dp.drops().get("tx_gso_per_packet"), Some(&1), "{:?}", dp.drops());
}

/// A GRE frame from the peer whose outer IPv4 ID is `id` (the number of
/// `ip_id_sequence`), its header checksum redone.
fn frame_with_ip_id(id: u16, g: Gre, inner: &[u8]) -> Vec<u8> {
    let mut f = gre_frame(REMOTE, LOCAL, 0x4000, g, inner);
    f[18..20].copy_from_slice(&id.to_be_bytes());
    f[24..26].copy_from_slice(&[0, 0]);
    let c = sum16(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f
}

/// The (peer, number) XDP receive handed on in metadata for the
/// resequencer, if it handed any.
fn handed_number(out: &[u8]) -> Option<(u32, u32)> {
    let s = &out[HandoffMeta::LEN..HandoffMeta::LEN + HandoffSeq::LEN];
    let word = |i: usize| u32::from_ne_bytes(s[i..i + 4].try_into().unwrap());
    (word(0) == HandoffSeq::MAGIC).then(|| (word(4), word(8)))
}

/// Receive `frame` on a link for what goes to the resequencer: the (peer,
/// number) handed on, if any, and the inner frame. Through `xgre_rx_xdp`'s
/// metadata where this kernel takes that program, else through the TC
/// program's hand-over to the resequencer's tap (`lo` stands in for it).
fn receive_handed(dp: &mut Dp, frame: &[u8]) -> (Option<(u32, u32)>, Vec<u8>) {
    if let Some(xdp) = xdp_meta() {
        let (ret, out) = dp.run(xdp, frame, None);
        assert_eq!(ret, XDP_PASS, "drops {:?}", dp.drops());
        let handed = handed_number(&out);
        let at = HandoffMeta::LEN + if handed.is_some() { HandoffSeq::LEN } else { 0 };
        return (handed, out[at..].to_vec());
    }
    dp.hash::<u32, u32>(MAP_RESEQ_TAP).insert(TUN, TUN, 0).unwrap();
    let (ret, out) = dp.run(PROG_RX_TC, frame, None);
    assert_eq!(ret, TC_ACT_REDIRECT, "drops {:?}", dp.drops());
    match ReseqHdr::parse(&out) {
        Some(h) => (Some((h.peer_id(), h.seq())), out[ReseqHdr::LEN..].to_vec()),
        None => (None, out),
    }
}

/// Receive takes an `ip_id_sequence` peer's IPv4 ID as its number,
/// widened across the 16-bit wrap, and hands it on like an RFC 2890 one;
/// a tunnel without the setting ignores the ID.
#[test]
fn ip_id_numbers_are_widened_across_the_wrap_and_handed_on() {
    let inner = inner_packet(40, 0);
    let with_id = |id: u16| frame_with_ip_id(id, valid(Some(42)), &inner);
    let mut dp = Dp::new();
    dp.tunnel(Some(42), TunnelFlags::IPID_SEQ);
    dp.peer(3, &[1]);
    // 65534, 65535, then 1 is 65537 (0 is never a number); 65533 arriving
    // late stays below the wrap.
    for (id, want) in [(65534u16, 65534u32), (65535, 65535), (65533, 65533), (1, 65537), (3, 65539), (2, 65538)] {
        let (handed, out) = receive_handed(&mut dp, &with_id(id));
        assert_eq!(handed, Some((3, want)), "id {id}: peer and number handed on");
        assert_eq!(out, eth(TUN_MAC, PEER_MAC, 0x0800, &inner), "id {id}: inner frame");
    }
    let r = reorder_stats(&dp, 3);
    assert_eq!((r.in_order, r.out_of_order, r.max_displacement), (4, 2, 2), "reorder telemetry across the wrap: {r:?}");
    let mut plain = Dp::new();
    plain.tunnel(Some(42), TunnelFlags::empty());
    plain.peer(3, &[1]);
    let (handed, _) = receive_handed(&mut plain, &with_id(7));
    assert_eq!(handed, None, "a tunnel without ip_id_sequence hands on no number");
}

/// `resequence` unset (`TunnelFlags::RESEQ_ANNOUNCED`): a peer's IPv4 IDs are
/// numbers, and its numbered packets go to the resequencer, only while its
/// keepalives announce that it numbers them. Another implementation's IDs
/// (no announcement) are never taken for numbers.
#[test]
fn a_peers_numbers_count_only_while_its_keepalives_announce_them() {
    let inner = inner_packet(40, 0);
    let with_id = |id: u16, g: Gre| frame_with_ip_id(id, g, &inner);
    let keepalive = |a: Option<Announce>| {
        eth(LINK_MAC, PEER_MAC, 0x0800, &gre_user::daemon::keepalive_packet(REMOTE.into(), LOCAL.into(), Some(42), a, None))
    };
    let announced = |dp: &Dp| -> PeerAnnounce {
        let m: Array<&MapData, PeerAnnounce> = dp.ebpf.map(MAP_ANNOUNCED).unwrap().try_into().unwrap();
        m.get(&3, 0).unwrap()
    };
    let mut dp = Dp::new();
    dp.tunnel(Some(42), TunnelFlags::RESEQ_ANNOUNCED);
    dp.peer(3, &[1]);
    let handed = |dp: &mut Dp, frame: &[u8]| receive_handed(dp, frame).0;
    assert_eq!(handed(&mut dp, &with_id(7, valid(Some(42)))), None, "an IPv4 ID nobody announced is no number");
    // The peer announces: its keepalive is reflected as ever, the
    // announcement carried back untouched, and noted.
    let ka = keepalive(Some(Announce::new(ANNOUNCE_IPID, 400)));
    let out = match xdp_meta() {
        Some(xdp) => {
            let (ret, out) = dp.run(xdp, &ka, None);
            assert_eq!(ret, XDP_PASS);
            assert_eq!(&out[4..8], &0u32.to_ne_bytes(), "reflected: back out of the link");
            out
        }
        None => {
            let (ret, out) = dp.run(PROG_RX_TC, &ka, None);
            assert_eq!(ret, TC_ACT_REDIRECT, "reflected: back out of the link");
            out
        }
    };
    assert_eq!(&out[out.len() - Announce::LEN..], &Announce::new(ANNOUNCE_IPID, 400).to_bytes(), "the announcement goes back as it came");
    let a = announced(&dp);
    assert_eq!(a.flags, ANNOUNCE_IPID);
    assert!(a.expires_ns > 0, "{a:?}");
    for (id, want) in [(8u16, 8u32), (10, 10), (9, 9)] {
        assert_eq!(handed(&mut dp, &with_id(id, valid(Some(42)))), Some((3, want)), "id {id}: announced, so a number, handed on");
    }
    assert_eq!(reorder_stats(&dp, 3).out_of_order, 1, "9 after 10");
    // RFC 2890 numbers too are taken only from a peer that announces them.
    let gre_seq = |n: u32| with_id(0, Gre { seq: Some(n), ..valid(Some(42)) });
    assert_eq!(handed(&mut dp, &gre_seq(11)), Some((3, 11)), "any number of an announcing peer");
    // A keepalive without the announcement ends it at once.
    dp.run(PROG_RX_TC, &keepalive(None), None);
    assert_eq!(announced(&dp).flags & ANNOUNCE_IPID, 0);
    assert_eq!(handed(&mut dp, &with_id(12, valid(Some(42)))), None, "no longer announced");
    assert_eq!(handed(&mut dp, &gre_seq(13)), None, "sequence numbers of a peer that does not announce are not resequenced by default");
    // And it lapses when not renewed.
    dp.run(PROG_RX_TC, &keepalive(Some(Announce::new(ANNOUNCE_IPID, 50))), None);
    assert_eq!(handed(&mut dp, &with_id(14, valid(Some(42)))), Some((3, 14)), "in force for 50 ms");
    std::thread::sleep(std::time::Duration::from_millis(60));
    assert_eq!(handed(&mut dp, &with_id(15, valid(Some(42)))), None, "lapsed after 50 ms");
    // With `resequence` set (no TunnelFlags::RESEQ_ANNOUNCED), every numbered
    // packet goes, announced or not, as before.
    let mut set = Dp::new();
    set.tunnel(Some(42), TunnelFlags::empty());
    set.peer(3, &[1]);
    assert_eq!(handed(&mut set, &gre_seq(5)), Some((3, 5)));
}

#[test]
fn per_packet_headers_cross_the_pair_even_without_device_counters() {
    // `device_counters = false` skips the veth crossing, but the crossing
    // is where the kernel segments TCP's bursts for per-packet headers:
    // a sequenced tunnel must still hand its decision to the hidden end.
    for (flags, crosses) in [
        (TunnelFlags::NO_DEV_COUNTERS, false),
        (TunnelFlags::SEQ | TunnelFlags::NO_DEV_COUNTERS, true),
        (TunnelFlags::IPID_SEQ | TunnelFlags::NO_DEV_COUNTERS, true),
        (TunnelFlags::CSUM | TunnelFlags::NO_DEV_COUNTERS, true),
        (TunnelFlags::SEQ, true),
    ] {
        let mut dp = Dp::new();
        dp.tunnel(Some(1), flags);
        dp.peer(0, &[1]);
        let frame = tunnel_frame(&inner_packet(10, 0));
        let (ret, _, _) = dp.try_run_ctx(PROG_TX, &frame, Some(&skb_ctx(TUN, 1))).unwrap();
        let want = if crosses { TC_ACT_OK } else { TC_ACT_REDIRECT };
        assert_eq!(ret, want, "flags {flags:#x}: {PROG_TX} returned {ret}; drops {:?}", dp.drops());
        let (ret, out) = dp.tx(&frame, 1);
        assert_eq!(ret, TC_ACT_REDIRECT, "flags {flags:#x}: not sent; drops {:?}", dp.drops());
        assert_eq!(out.len(), frame.len() + 20 + 4 + 4 + 4 * (flags.intersects(TunnelFlags::SEQ | TunnelFlags::CSUM)) as usize);
    }
}

#[test]
fn transmit_drops_what_it_cannot_send() {
    let mut dp = Dp::new();
    dp.tunnel(Some(1), TunnelFlags::SEQ);
    dp.peer(0, &[1]);
    // No route for this destination.
    let mut inner = inner_packet(10, 0);
    inner[19] = 77;
    let (ret, _) = dp.tx(&tunnel_frame(&inner), 1);
    assert_eq!(ret, TC_ACT_SHOT);
    // A GSO packet on a tunnel stamping sequence numbers.
    let (ret, _) = dp.tx(&tunnel_frame(&inner_packet(10, 0)), 4);
    assert_eq!(ret, TC_ACT_SHOT);
    // ARP is not IP: a gre-mode tunnel carries no Ethernet payloads.
    let (ret, _) = dp.tx(&eth(TUN_MAC, TUN_MAC, 0x0806, &[0u8; 28]), 1);
    assert_eq!(ret, TC_ACT_SHOT);
    let d = dp.drops();
    assert_eq!(d.get("no_route"), Some(&1), "{d:?}");
    assert_eq!(d.get("tx_gso_per_packet"), Some(&1), "{d:?}");
    assert_eq!(d.get("tx_unsupported"), Some(&1), "{d:?}");
}

fn valid(key: Option<u32>) -> Gre {
    Gre { proto: 0x0800, key, ..Default::default() }
}

#[test]
fn decapsulation_yields_the_exact_inner_packet_on_both_hooks() {
    for g in [valid(Some(42)), Gre { csum: true, seq: Some(9), ..valid(Some(42)) }] {
        let mut dp = Dp::new();
        dp.tunnel(Some(42), TunnelFlags::empty());
        dp.peer(3, &[1]);
        let inner = inner_packet(333, 0);
        let frame = gre_frame(REMOTE, LOCAL, 0x4000, g, &inner);
        let want = eth(TUN_MAC, PEER_MAC, 0x0800, &inner);

        let (ret, out) = dp.run(PROG_RX_TC, &frame, None);
        assert_eq!(ret, TC_ACT_REDIRECT, "tc: drops {:?}", dp.drops());
        assert_eq!(hexdump(&out), hexdump(&want), "tc output");

        // XDP hands the frame on with the tunnel's and its hidden end's
        // ifindexes in metadata in front of it, for the link's TC handoff
        // (where this kernel gives XDP programs metadata).
        let Some(xdp) = xdp_meta() else {
            assert_eq!(dp.path_stats(3, 0).rx_packets, 1);
            continue;
        };
        let (ret, out) = dp.run(xdp, &frame, None);
        assert_eq!(ret, XDP_PASS, "xdp: drops {:?}", dp.drops());
        assert_eq!(&out[..4], &HandoffMeta::MAGIC.to_ne_bytes(), "xdp metadata magic");
        assert_eq!(&out[4..8], &TUN.to_ne_bytes(), "xdp metadata tunnel");
        assert_eq!(&out[8..12], &HIDDEN.to_ne_bytes(), "xdp metadata hidden end");
        // A numbered frame's peer and number follow, to be resequenced.
        let mut at = HandoffMeta::LEN;
        if let Some(seq) = g.seq {
            let s = [HandoffSeq::MAGIC.to_ne_bytes(), 3u32.to_ne_bytes(), seq.to_ne_bytes(), 0u32.to_ne_bytes()].concat();
            assert_eq!(hexdump(&out[at..at + HandoffSeq::LEN]), hexdump(&s), "xdp metadata sequence number");
            at += HandoffSeq::LEN;
        }
        assert_eq!(hexdump(&out[at..]), hexdump(&want), "xdp output");
        let s = dp.path_stats(3, 0);
        assert_eq!((s.rx_packets, s.rx_bytes), (2, 2 * inner.len() as u64));
        assert!(dp.drops().is_empty(), "{:?}", dp.drops());
    }
}

#[test]
fn receive_passes_what_is_not_ours_untouched() {
    let mut dp = Dp::new();
    dp.tunnel(Some(42), TunnelFlags::empty());
    dp.peer(0, &[1]);
    let inner = inner_packet(20, 0);
    let frames = [
        // GRE to an address that is not one of our links (another tunnel).
        gre_frame(REMOTE, [198, 18, 0, 99], 0, valid(Some(42)), &inner),
        // Plain UDP to us.
        eth(LINK_MAC, PEER_MAC, 0x0800, &ipv4(REMOTE, LOCAL, 17, 0, 0, &[0, 53, 0, 53, 0, 8, 0, 0])),
        // ARP.
        eth([0xff; 6], PEER_MAC, 0x0806, &[0u8; 28]),
    ];
    for f in &frames {
        let (ret, out) = dp.run(PROG_RX_TC, f, None);
        assert_eq!((ret, &out), (TC_ACT_OK, f), "tc changed or dropped a frame that is not ours");
        for xdp in xdp_meta().into_iter().chain([PROG_RX_XDP_NM]) {
            let (ret, out) = dp.run(xdp, f, None);
            assert_eq!((ret, &out), (XDP_PASS, f), "{xdp} changed or dropped a frame that is not ours");
        }
    }
    assert!(dp.drops().is_empty(), "{:?}", dp.drops());
}

/// A peer's repair request (`gre_common::repair`) is for `xgre run`'s raw
/// GRE socket: handed to the stack as it came, on both hooks, and only
/// from a configured peer's path; from anyone else it is GRE from an
/// unknown peer, dropped.
#[test]
fn a_repair_request_from_a_peer_goes_to_the_stack_and_from_anyone_else_is_dropped() {
    let ask = [0x78, 0x67, 0x72, 0x72, 0, 1, 0, 0, 0, 0, 0, 7];
    let from_peer = gre_frame(REMOTE, LOCAL, 0, Gre { proto: gre_common::repair::PROTO_REPAIR, ..valid(Some(42)) }, &ask);
    let from_stranger = gre_frame([198, 18, 0, 66], LOCAL, 0, Gre { proto: gre_common::repair::PROTO_REPAIR, ..valid(Some(42)) }, &ask);
    for prog in rx_hooks() {
        let mut dp = Dp::new();
        dp.tunnel(Some(42), TunnelFlags::IPID_SEQ);
        dp.peer(0, &[1]);
        let (ret, out) = dp.run(prog, &from_peer, None);
        let pass = if prog == PROG_RX_TC { TC_ACT_OK } else { XDP_PASS };
        assert_eq!((ret, &out), (pass, &from_peer), "{prog}: the request was not handed to the stack as it came");
        assert!(dp.drops().is_empty(), "{prog}: {:?}", dp.drops());
        assert_eq!(dp.path_stats(0, 0).rx_packets, 0, "{prog}: a request counted as delivered");
        let (ret, _) = dp.run(prog, &from_stranger, None);
        assert_eq!(ret, if prog == PROG_RX_TC { TC_ACT_SHOT } else { XDP_DROP }, "{prog}: a stranger's request");
        assert_eq!(dp.drops(), BTreeMap::from([("unknown_peer", 1)]), "{prog}");
    }
}

#[test]
fn every_malformed_packet_is_dropped_and_counted_under_its_reason() {
    let inner = inner_packet(64, 0);
    let ok = gre_frame(REMOTE, LOCAL, 0, valid(Some(42)), &inner);
    let bad_csum = {
        let mut f = gre_frame(REMOTE, LOCAL, 0, Gre { csum: true, ..valid(Some(42)) }, &inner);
        f[14 + 20 + 4] ^= 0x55;
        f
    };
    // An outer header whose total length claims `n` GRE bytes of a frame.
    let cut = |n: usize, g: Gre| {
        let full = gre(g, &inner);
        eth(LINK_MAC, PEER_MAC, 0x0800, &ipv4(REMOTE, LOCAL, 47, 0, 0, &full[..n]))
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("reserved_bits", gre_frame(REMOTE, LOCAL, 0, Gre { flags: 0x4000, ..valid(Some(42)) }, &inner)),
        ("reserved_bits", gre_frame(REMOTE, LOCAL, 0, Gre { flags: 0x0800, ..valid(Some(42)) }, &inner)),
        ("reserved_bits", gre_frame(REMOTE, LOCAL, 0, Gre { flags: 0x0400, ..valid(Some(42)) }, &inner)),
        ("bad_version", gre_frame(REMOTE, LOCAL, 0, Gre { flags: 0x0001, ..valid(Some(42)) }, &inner)),
        ("bad_version", gre_frame(REMOTE, LOCAL, 0, Gre { flags: 0x0007, ..valid(Some(42)) }, &inner)),
        ("unknown_proto", gre_frame(REMOTE, LOCAL, 0, Gre { proto: 0x88be, ..valid(Some(42)) }, &inner)),
        ("unknown_proto", gre_frame(REMOTE, LOCAL, 0, Gre { proto: 0x6558, ..valid(Some(42)) }, &inner)),
        ("truncated", cut(2, valid(Some(42)))),
        ("truncated", cut(6, valid(Some(42)))),
        ("truncated", cut(6, Gre { csum: true, ..valid(Some(42)) })),
        ("truncated", cut(10, Gre { seq: Some(1), ..valid(Some(42)) })),
        ("bad_outer", {
            let mut f = ok.clone();
            f.truncate(40); // the IP header still claims the whole packet
            f
        }),
        ("bad_checksum", bad_csum),
        ("key_mismatch", gre_frame(REMOTE, LOCAL, 0, valid(None), &inner)),
        ("key_mismatch", gre_frame(REMOTE, LOCAL, 0, valid(Some(43)), &inner)),
        ("unknown_peer", gre_frame([198, 18, 0, 66], LOCAL, 0, valid(Some(42)), &inner)),
        ("fragment", gre_frame(REMOTE, LOCAL, 0x2000, valid(Some(42)), &inner)),
        ("fragment", gre_frame(REMOTE, LOCAL, 0x0010, valid(Some(42)), &inner)),
    ];
    for (reason, frame) in &cases {
        for prog in rx_hooks().into_iter().chain([PROG_RX_XDP_NM]) {
            let mut dp = Dp::new();
            dp.tunnel(Some(42), TunnelFlags::empty());
            dp.peer(0, &[1]);
            // Where `xgre run` has AF_XDP sockets on the link, the XDP
            // program without metadata judges every frame.
            sockets_on_lo(&mut dp);
            let (ret, _) = dp.run(prog, frame, None);
            let want = if prog == PROG_RX_TC { TC_ACT_SHOT } else { XDP_DROP };
            assert_eq!(ret, want, "{prog}: a `{reason}` frame was not dropped");
            let d = dp.drops();
            assert_eq!(d, BTreeMap::from([(*reason, 1)]), "{prog}: `{reason}` counted as {d:?}");
            let s = dp.path_stats(0, 0);
            assert_eq!(s.rx_packets, 0, "{prog}: `{reason}` was counted as delivered");
        }
    }
    // And the well-formed version of the same packet goes through.
    let mut dp = Dp::new();
    dp.tunnel(Some(42), TunnelFlags::empty());
    dp.peer(0, &[1]);
    assert_eq!(dp.run(PROG_RX_TC, &ok, None).0, TC_ACT_REDIRECT);
}

#[test]
fn weights_are_honoured_within_five_percent_over_10000_packets() {
    for weights in [vec![1, 1], vec![2, 1], vec![11, 45], vec![3, 1, 1, 1]] {
        let mut dp = Dp::new();
        dp.tunnel(None, TunnelFlags::empty());
        dp.peer(5, &weights);
        let frame = tunnel_frame(&inner_packet(32, 0));
        // One run per packet: a repeated skb run would re-encapsulate its
        // own output.
        for _ in 0..10_000 {
            assert_eq!(dp.tx(&frame, 1).0, TC_ACT_REDIRECT);
        }
        let total: u32 = weights.iter().sum();
        let counts: Vec<u64> = (0..weights.len() as u32).map(|j| dp.path_stats(5, j).tx_packets).collect();
        assert_eq!(counts.iter().sum::<u64>(), 10_000, "{weights:?}: {counts:?}");
        for (j, &w) in weights.iter().enumerate() {
            let want = 10_000.0 * w as f64 / total as f64;
            let err = (counts[j] as f64 - want).abs() / want;
            assert!(err <= 0.05, "weights {weights:?}: path {j} got {} packets, want {want:.0} (off by {:.1}%)", counts[j], err * 100.0);
        }
    }
}

/// A peer that announces `ANNOUNCE_UNNUMBERED` gets pure ACKs without a
/// number (0 where the number goes) by its fastest path, and numbered
/// where it has none; no data packet ever carries a number whose low 16
/// bits are 0; such a packet received is delivered at once instead of
/// through the resequencer.
#[test]
fn pure_acks_to_a_peer_that_takes_them_so_leave_unnumbered_and_arrive_past_the_resequencer() {
    let ack = tunnel_frame(&tcp_packet(false, 0, true));
    let data = tunnel_frame(&tcp_packet(false, 100, true));
    let id = |out: &[u8]| u16::from_be_bytes([out[18], out[19]]);
    // Outer IPv4 ID numbering, and RFC 2890 numbers (key, then sequence).
    for (flags, number) in [
        (TunnelFlags::IPID_SEQ_TX, &id as &dyn Fn(&[u8]) -> u16),
        (TunnelFlags::SEQ, &|out: &[u8]| u32::from_be_bytes(out[42..46].try_into().unwrap()) as u16),
    ] {
        let mut dp = two_paths_the_second_fastest(Some(42), flags);
        let send = |dp: &Dp, frame: &[u8]| {
            let (ret, out) = dp.tx(frame, 1);
            assert_eq!(ret, TC_ACT_REDIRECT, "{flags:?}: drops {:?}", dp.drops());
            number(&out)
        };
        assert_eq!([send(&dp, &ack), send(&dp, &data)], [1, 2], "{flags:?}: a peer that never said so numbers ACKs");
        announce(&mut dp, 5, ANNOUNCE_IPID);
        assert_eq!(send(&dp, &ack), 3, "{flags:?}: announcing other things is not saying so");
        announce(&mut dp, 5, ANNOUNCE_UNNUMBERED);
        assert_eq!([send(&dp, &ack), send(&dp, &data), send(&dp, &ack)], [0, 4, 0], "{flags:?}");
        fastest(&mut dp, 5, 1, false);
        assert_eq!(send(&dp, &ack), 5, "{flags:?}: striped, an ACK is numbered");
        // The counter at 65,535: the next number, 65,536, is never given.
        let mut seqs: Array<&mut MapData, u64> = dp.ebpf.map_mut(MAP_TX_SEQ).unwrap().try_into().unwrap();
        seqs.set(5, 0xfffe, 0).unwrap();
        assert_eq!([send(&dp, &data), send(&dp, &data)], [0xffff, 1], "{flags:?}");
    }
    // Received: an IPv4 ID of 0 from a numbering peer is no number.
    let inner = inner_packet(40, 0);
    let mut dp = Dp::new();
    dp.tunnel(Some(42), TunnelFlags::IPID_SEQ);
    dp.peer(3, &[1]);
    for (id, want) in [(7u16, Some((3, 7))), (0, None), (8, Some((3, 8)))] {
        let (handed, out) = receive_handed(&mut dp, &frame_with_ip_id(id, valid(Some(42)), &inner));
        assert_eq!(handed, want, "id {id}");
        if want.is_none() {
            assert_eq!(out, eth(TUN_MAC, PEER_MAC, 0x0800, &inner), "id 0: to the tunnel as it is");
        }
    }
    assert_eq!(reorder_stats(&dp, 3).in_order, 2, "nor counted among the numbers");
    // A TCP segment with data and ID 0 is a GSO packet's segment whose
    // number ends in 16 zero bits (the sender gives ID 0 to no other):
    // numbered, next to the highest number seen. A pure ACK is not.
    let tcp = |flags: u8, data: usize| {
        let mut seg = vec![0u8; 20 + data];
        seg[12] = 5 << 4;
        seg[13] = flags;
        ipv4(INNER_SRC, INNER_DST, 6, 0, 0, &seg)
    };
    for id in [0x4000, 0x8000, 0xc000, 0xfffe] {
        receive_handed(&mut dp, &frame_with_ip_id(id, valid(Some(42)), &inner));
    }
    let (handed, _) = receive_handed(&mut dp, &frame_with_ip_id(0, valid(Some(42)), &tcp(0x18, 100)));
    assert_eq!(handed, Some((3, 0x1_0000)), "a segment of a GSO packet's run");
    let (handed, _) = receive_handed(&mut dp, &frame_with_ip_id(0, valid(Some(42)), &tcp(0x10, 0)));
    assert_eq!(handed, None, "a pure ACK sent unnumbered");
}

/// Light packets (ICMP, small UDP datagrams) to a peer that takes them
/// unnumbered leave by the fastest path without a number; a datagram
/// bigger than `LIGHT_MAX` is numbered and striped and makes its flow
/// bulk, whose small datagrams are then numbered too. Without a fastest
/// path, or to a peer that never said it takes them, all are numbered.
#[test]
fn light_packets_take_the_fastest_path_unnumbered_and_a_big_datagram_makes_its_flow_bulk() {
    let mut dp = two_paths_the_second_fastest(None, TunnelFlags::IPID_SEQ_TX);
    let udp = |port: u16, len: usize| {
        let mut d = [&4000u16.to_be_bytes()[..], &port.to_be_bytes(), &((8 + len) as u16).to_be_bytes(), &[0, 0]].concat();
        d.extend(std::iter::repeat_n(7u8, len));
        tunnel_frame(&ipv4(INNER_SRC, INNER_DST, 17, 0, 0x4000, &d))
    };
    let ping = tunnel_frame(&ipv4(INNER_SRC, INNER_DST, 1, 0, 0, &[8, 0, 0, 0, 0, 1, 0, 1]));
    let ping6 = eth(TUN_MAC, TUN_MAC, 0x86dd, &{
        let mut h = ipv6(INNER6_SRC, INNER6_DST, 0, &[128, 0, 0, 0, 0, 1, 0, 1]);
        h[6] = 58;
        h
    });
    // (path, outer IPv4 ID: 0 is no number) of each frame sent.
    let send = |dp: &Dp, frame: &[u8]| {
        let before: Vec<u64> = (0..2).map(|j| dp.path_stats(5, j).tx_packets).collect();
        let (ret, out) = dp.tx(frame, 1);
        assert_eq!(ret, TC_ACT_REDIRECT, "drops {:?}", dp.drops());
        let path = (0..2).find(|&j| dp.path_stats(5, j).tx_packets > before[j as usize]).unwrap();
        (path, u16::from_be_bytes([out[18], out[19]]))
    };
    let numbered = |(_, id): (u32, u16)| id != 0;
    // A peer that never said it takes them: numbered, and striped.
    assert!(numbered(send(&dp, &ping)) && numbered(send(&dp, &udp(53, 60))), "numbered for a peer that did not say");
    announce(&mut dp, 5, ANNOUNCE_IPID | ANNOUNCE_UNNUMBERED);
    for (what, frame) in [("ping", &ping), ("ping6", &ping6), ("DNS query", &udp(53, 60)), ("voice", &udp(5004, 172))] {
        assert_eq!(send(&dp, frame), (1, 0), "{what}: by the fastest path, unnumbered");
    }
    assert!(numbered(send(&dp, &tunnel_frame(&ipv4(INNER_SRC, INNER_DST, 1, 0, 0x2000, &[8; 8])))), "a fragment is numbered");
    // A QUIC-sized datagram: numbered, striped; its flow's small ones then too.
    let big: Vec<(u32, u16)> = (0..4).map(|_| send(&dp, &udp(443, 1200))).collect();
    assert!(big.iter().all(|&b| numbered(b)) && big.iter().any(|b| b.0 == 0), "big datagrams numbered and striped: {big:?}");
    assert!(numbered(send(&dp, &udp(443, 40))), "a bulk flow's small datagram is numbered");
    assert_eq!(send(&dp, &udp(53, 60)), (1, 0), "another flow stays light");
    // Ten seconds past its last big datagram the flow is light again; its
    // next big one stamps it anew.
    age_bulk_flows(&mut dp, Duration::from_secs(11));
    assert_eq!(send(&dp, &udp(443, 40)), (1, 0), "light 11 s past the flow's last big datagram");
    assert!(numbered(send(&dp, &udp(443, 1200))) && numbered(send(&dp, &udp(443, 40))), "bulk again from its next big one");
    fastest(&mut dp, 5, 1, false);
    assert!(numbered(send(&dp, &udp(53, 60))) && numbered(send(&dp, &ping)), "no fastest path: numbered, striped");
}

/// Pure TCP ACKs take the path `xgre run` marked fastest, over IPv4 and
/// IPv6, and leave the byte shares to the data; a FIN, data, and an ACK
/// of a tunnel that does not number are striped like everything else.
#[test]
fn pure_acks_take_the_fastest_path_and_data_keeps_its_shares() {
    let mut dp = two_paths_the_second_fastest(None, TunnelFlags::IPID_SEQ_TX);
    let sent = |dp: &Dp| (0..2).map(|j| dp.path_stats(5, j).tx_packets).collect::<Vec<_>>();
    let send = |dp: &Dp, frame: &[u8]| assert_eq!(dp.tx(frame, 1).0, TC_ACT_REDIRECT, "drops {:?}", dp.drops());
    let ack4 = tunnel_frame(&tcp_packet(false, 0, true));
    let ack6 = eth(TUN_MAC, TUN_MAC, 0x86dd, &tcp_packet(true, 0, true));
    for _ in 0..3 {
        send(&dp, &ack4);
        send(&dp, &ack6);
    }
    assert_eq!(sent(&dp), [0, 6], "every pure ACK on the fastest path");
    for _ in 0..4 {
        send(&dp, &tunnel_frame(&tcp_packet(false, 100, true)));
    }
    assert_eq!(sent(&dp), [2, 8], "the data striped as if no ACK had gone");
    let mut fin = tcp_packet(false, 0, true);
    fin[20 + 13] |= 0x01;
    send(&dp, &tunnel_frame(&fin));
    send(&dp, &tunnel_frame(&fin));
    assert_eq!(sent(&dp), [3, 9], "a FIN is more than an ACK");
    dp.tunnel(None, TunnelFlags::empty());
    send(&dp, &ack4);
    send(&dp, &ack4);
    assert_eq!(sent(&dp), [4, 10], "not numbered: nothing to overtake");
}

#[test]
fn every_program_holds_every_map_and_the_loader_tags_the_namespace() {
    // Any one program must keep the whole datapath alive and findable: a
    // link's receive programs go with the link, the rest must not.
    let dp = Dp::new();
    let all: std::collections::BTreeSet<String> = dp.ebpf.maps().map(|(n, _)| n.to_string()).filter(|n| !n.starts_with('.')).collect();
    for name in [PROG_TX, PROG_TX_SEND, PROG_RX_TC, PROG_RX_XDP_NM, PROG_RX_HANDOFF].into_iter().chain(xdp_meta()) {
        let info = dp.ebpf.program(name).unwrap().info().unwrap();
        let ids = info.map_ids().unwrap().unwrap();
        let names: std::collections::BTreeSet<String> =
            ids.iter().map(|&id| aya::maps::MapInfo::from_id(id).unwrap().name_as_str().unwrap().to_string()).collect();
        let missing: Vec<&String> = all.iter().filter(|m| !names.contains(*m)).collect();
        assert!(missing.is_empty(), "{name} does not reference {missing:?}");
    }
    // The loader writes which namespace, layout and build the maps serve.
    let loaded = gre_user::datapath::Datapath::load().expect("loading the datapath");
    let meta = loaded.meta().unwrap().get(&0, 0).unwrap();
    assert_eq!(meta.netns_ino, gre_user::net::netns_ino().unwrap());
    assert_eq!(meta.layout, LAYOUT_VERSION);
    assert_eq!(meta.build, gre_user::datapath::build_id());
}

/// A tunnel (`key`, `flags`) to peer 5 over two paths, the second marked
/// fastest as `xgre run` marks it.
fn two_paths_the_second_fastest(key: Option<u32>, flags: TunnelFlags) -> Dp {
    let mut dp = Dp::new();
    dp.tunnel(key, flags);
    dp.peer(5, &[1, 1]);
    fastest(&mut dp, 5, 1, true);
    dp
}

/// Mark path `j` of `peer` fastest (as `xgre run` does where its paths
/// differ in delay), or not.
fn fastest(dp: &mut Dp, peer: u32, j: usize, on: bool) {
    let mut p = dp.peers().get(&peer, 0).unwrap();
    p.paths[j].flags.set(PathFlags::FASTEST, on);
    dp.peers().insert(peer, p, 0).unwrap();
}

/// Move every flow's last big datagram `by` into the past.
fn age_bulk_flows(dp: &mut Dp, by: Duration) {
    let mut m: aya::maps::HashMap<&mut MapData, u32, u64> = dp.ebpf.map_mut(MAP_BULK_FLOWS).unwrap().try_into().unwrap();
    let flows: Vec<(u32, u64)> = m.iter().map(Result::unwrap).collect();
    assert!(!flows.is_empty(), "no flow stamped");
    for (flow, stamp) in flows {
        m.insert(flow, stamp - by.as_nanos() as u64, 0).unwrap();
    }
}

/// What `peer`'s keepalives announce from now on, for good.
fn announce(dp: &mut Dp, peer: u32, flags: u32) {
    let mut m: Array<&mut MapData, PeerAnnounce> = dp.ebpf.map_mut(MAP_ANNOUNCED).unwrap().try_into().unwrap();
    m.set(peer, PeerAnnounce { expires_ns: u64::MAX, flags, _pad: 0 }, 0).unwrap();
}

fn reorder_stats(dp: &Dp, peer: u32) -> ReorderStats {
    let m: PerCpuArray<&MapData, ReorderStats> = dp.ebpf.map(MAP_REORDER).unwrap().try_into().unwrap();
    m.get(&peer, 0).unwrap().iter().fold(ReorderStats::default(), |mut a, s| {
        a.in_order += s.in_order;
        a.out_of_order += s.out_of_order;
        a.late += s.late;
        a.max_displacement = a.max_displacement.max(s.max_displacement);
        a
    })
}

#[test]
fn out_of_order_packets_are_delivered_and_measured() {
    for prog in rx_hooks() {
        let mut dp = Dp::new();
        dp.tunnel(Some(42), TunnelFlags::SEQ);
        dp.peer(2, &[1]);
        let inner = inner_packet(40, 0);
        for seq in [1u32, 2, 3, 5, 4, 10, 6, 200, 100] {
            let f = gre_frame(REMOTE, LOCAL, 0, Gre { seq: Some(seq), ..valid(Some(42)) }, &inner);
            let (ret, _) = dp.run(prog, &f, None);
            let want = if prog == PROG_RX_TC { TC_ACT_REDIRECT } else { XDP_PASS };
            assert_eq!(ret, want, "{prog}: seq {seq} was not delivered");
        }
        let r = reorder_stats(&dp, 2);
        assert_eq!(
            (r.in_order, r.out_of_order, r.max_displacement, r.late),
            (6, 3, 100, 1),
            "{prog}: 4, 6 and 100 came late; 100 by 100 packets, beyond the window of {LATE_DISPLACEMENT}"
        );
        assert_eq!(dp.path_stats(2, 0).rx_packets, 9);
    }
}

#[test]
fn keepalive_replies_mark_the_path_alive_and_are_consumed() {
    for prog in rx_hooks() {
        let mut dp = Dp::new();
        dp.tunnel(Some(42), TunnelFlags::empty());
        dp.peer(4, &[1]);
        // What comes back when the peer reflects our keepalive: GRE with
        // protocol type 0, from the peer's address to ours.
        let reply = gre_frame(REMOTE, LOCAL, 0, Gre { proto: 0, ..valid(Some(42)) }, &ipv4(REMOTE, LOCAL, 47, 0, 0, &[])[..0]);
        let (ret, _) = dp.run(prog, &reply, None);
        assert_eq!(ret, if prog == PROG_RX_TC { TC_ACT_SHOT } else { XDP_DROP }, "{prog}: consumed");
        let seen: Array<&MapData, u64> = dp.ebpf.map(MAP_PATH_SEEN).unwrap().try_into().unwrap();
        assert_ne!(seen.get(&path_slot(4, 0), 0).unwrap(), 0, "{prog}: path not marked alive");
        let s = dp.path_stats(4, 0);
        assert_eq!((s.keepalive_replies, s.rx_packets), (1, 0), "{prog}");
        assert!(dp.drops().is_empty(), "{prog}: a keepalive is not a drop: {:?}", dp.drops());
    }
}

/// Our keepalive comes back with the stamp we sent it with (behind our
/// announcement, or alone): the path's round trip is the time since.
#[test]
fn keepalive_replies_measure_the_round_trip() {
    for (prog, announce) in rx_hooks().into_iter().flat_map(|p| [(p, None), (p, Some(Announce::new(1, 400)))]) {
        let mut dp = Dp::new();
        dp.tunnel(Some(42), TunnelFlags::empty());
        dp.peer(4, &[1]);
        let sent = boot_ns() - 35_000_000;
        let mut behind = announce.map(|a| a.to_bytes().to_vec()).unwrap_or_default();
        behind.extend(Stamp::new(sent).to_bytes());
        let reply = gre_frame(REMOTE, LOCAL, 0, Gre { proto: 0, ..valid(Some(42)) }, &behind);
        let before = boot_ns();
        dp.run(prog, &reply, None);
        let after = boot_ns();
        let rtt: Array<&MapData, u64> = dp.ebpf.map(MAP_PATH_RTT).unwrap().try_into().unwrap();
        let got = rtt.get(&path_slot(4, 0), 0).unwrap();
        assert!((before - sent..=after - sent).contains(&got), "{prog} {announce:?}: rtt {got} ns, want about 35 ms");
        // A stamp from the future, or none, leaves it alone.
        let future = gre_frame(REMOTE, LOCAL, 0, Gre { proto: 0, ..valid(Some(42)) }, &Stamp::new(after + 1_000_000_000).to_bytes());
        dp.run(prog, &future, None);
        let none = gre_frame(REMOTE, LOCAL, 0, Gre { proto: 0, ..valid(Some(42)) }, &[]);
        dp.run(prog, &none, None);
        assert_eq!(rtt.get(&path_slot(4, 0), 0).unwrap(), got, "{prog}");
    }
}

#[test]
fn the_peers_keepalives_are_sent_back_out_of_the_link() {
    let ka = gre_user::daemon::keepalive_packet(REMOTE.into(), LOCAL.into(), Some(42), None, None);
    let frame = eth(LINK_MAC, PEER_MAC, 0x0800, &ka);
    let inner = &ka[20 + 8..];
    let want = eth(PEER_MAC, LINK_MAC, 0x0800, inner);
    assert_eq!(&inner[12..20], &[LOCAL, REMOTE].concat()[..], "inner: us -> peer");
    // Whatever the tunnel carries: a gretap peer running `xgre run` probes
    // with the same IPv4-in-GRE keepalives.
    for (prog, mode) in rx_hooks().into_iter().flat_map(|p| [(p, MODE_GRE), (p, MODE_GRETAP)]) {
        let mut dp = Dp::new();
        dp.tunnel_mode(mode, Some(42), TunnelFlags::empty());
        dp.peer(1, &[1]);
        let (ret, out) = dp.run(prog, &frame, None);
        if prog == PROG_RX_TC {
            assert_eq!(ret, TC_ACT_REDIRECT);
            assert_eq!(hexdump(&out), hexdump(&want));
        } else {
            assert_eq!(ret, XDP_PASS);
            assert_eq!(&out[4..8], &0u32.to_ne_bytes(), "tunnel 0: back out of the link");
            assert_eq!(hexdump(&out[HandoffMeta::LEN..]), hexdump(&want));
        }
        let s = dp.path_stats(1, 0);
        assert_eq!((s.keepalives_reflected, s.rx_packets), (1, 0), "{prog}");
    }
}

#[test]
fn gre_for_our_address_on_the_wrong_link_or_mac_is_not_taken() {
    let inner = inner_packet(20, 0);
    let good = gre_frame(REMOTE, LOCAL, 0, valid(Some(42)), &inner);
    let mut other_mac = good.clone();
    other_mac[5] ^= 1;
    for (what, frame, owner) in [("flooded from another link", &good, 55u32), ("another MAC", &other_mac, 1)] {
        let mut dp = Dp::new();
        dp.tunnel(Some(42), TunnelFlags::empty());
        dp.peer(0, &[1]);
        let l = LocalAddr { ifindex: owner, mac: LINK_MAC, _pad: [0; 2] };
        dp.local_addrs().insert(v4_mapped(LOCAL), l, 0).unwrap();
        for prog in rx_hooks() {
            let (ret, out) = dp.run(prog, frame, None);
            let pass = if prog == PROG_RX_TC { TC_ACT_OK } else { XDP_PASS };
            assert_eq!((ret, &out), (pass, frame), "{prog}: {what}");
        }
        assert_eq!(dp.path_stats(0, 0).rx_packets, 0, "{what}");
    }
}

/// A packet `xgre run` reassembled from outer fragments comes in by its
/// tap (`XGRE_REASM_TAP`; `lo`, ifindex 1, stands for it here), once it
/// has checked the link the fragments came by: taken there as if it had
/// come by that link, and from no other device than such a tap.
#[test]
fn a_reassembled_packet_is_taken_from_runs_tap_as_from_its_link() {
    let inner = inner_packet(20, 0);
    let frame = gre_frame(REMOTE, LOCAL, 0, valid(Some(42)), &inner);
    let mut dp = Dp::new();
    dp.tunnel(Some(42), TunnelFlags::empty());
    dp.peer(0, &[1]);
    let l = LocalAddr { ifindex: LINK, mac: LINK_MAC, _pad: [0; 2] };
    dp.local_addrs().insert(v4_mapped(LOCAL), l, 0).unwrap();
    let on_tap = skb_ctx(1, 1);
    let (ret, out) = dp.run(PROG_RX_TC, &frame, Some(&on_tap));
    assert_eq!((ret, &out), (TC_ACT_OK, &frame), "not by its link, and no tap of run's: not ours");
    dp.hash::<u32, u32>(MAP_REASM_TAP).insert(1, TUN, 0).unwrap();
    let (ret, out) = dp.run(PROG_RX_TC, &frame, Some(&on_tap));
    assert_eq!(ret, TC_ACT_REDIRECT, "drops {:?}", dp.drops());
    assert_eq!(hexdump(&out), hexdump(&eth(TUN_MAC, PEER_MAC, 0x0800, &inner)));
    assert_eq!(dp.path_stats(0, 0).rx_packets, 1);
}

#[test]
fn inner_ipv6_is_carried_both_ways() {
    let mut dp = Dp::new();
    dp.tunnel(Some(42), TunnelFlags::empty());
    dp.peer(0, &[1]);
    let udp: Vec<u8> = (0..37u8).collect();
    let inner = ipv6(INNER6_SRC, INNER6_DST, 0xb8, &udp);
    let (ret, out) = dp.tx(&eth(TUN_MAC, TUN_MAC, 0x86DD, &inner), 1);
    assert_eq!(ret, TC_ACT_REDIRECT, "drops {:?}", dp.drops());
    let want = scapy_reference(serde_json::json!([{
        "eth": ["02:00:00:00:00:20", "02:00:00:00:00:10"],
        "ip": {"src": "198.18.0.10", "dst": "198.18.0.20", "tos": 0xb8},
        "gre": {"key": 42},
        "proto": 0x86DD,
        "inner_hex": hexdump(&inner),
    }]));
    assert_eq!(hexdump(&out), hexdump(&want[0]), "IPv6 in GRE (protocol 0x86DD), traffic class copied");

    // The peer's IPv6 comes out with an IPv6 Ethernet type.
    let frame = gre_frame(REMOTE, LOCAL, 0, Gre { proto: 0x86DD, ..valid(Some(42)) }, &inner);
    let (ret, out) = dp.run(PROG_RX_TC, &frame, None);
    assert_eq!(ret, TC_ACT_REDIRECT);
    assert_eq!(hexdump(&out), hexdump(&eth(TUN_MAC, PEER_MAC, 0x86DD, &inner)));

    // Multicast is replicated by flood list, never routed: a tunnel with
    // no list sends it nowhere (and says why).
    let mut ns = INNER6_DST;
    ns[..2].copy_from_slice(&[0xff, 0x02]);
    let (ret, _) = dp.tx(&eth(TUN_MAC, TUN_MAC, 0x86DD, &ipv6(INNER6_SRC, ns, 0, &udp)), 1);
    assert_eq!(ret, TC_ACT_SHOT);
    assert_eq!(dp.drops(), BTreeMap::from([("no_route", 1)]));
}

const HOST_A: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 1];
const HOST_B: [u8; 6] = [0x02, 0xbb, 0, 0, 0, 2];

#[test]
fn gretap_carries_whole_ethernet_frames_both_ways_and_learns_macs() {
    let mut dp = Dp::new();
    dp.tunnel_mode(MODE_GRETAP, Some(7), TunnelFlags::empty());
    dp.peer(2, &[1]);
    // A frame from a local host to one the table placed behind peer 2.
    let frame = eth(HOST_B, HOST_A, 0x0800, &inner_packet(61, 0x28));
    dp.learn(HOST_B, 2);
    let (ret, out) = dp.tx(&frame, 1);
    assert_eq!(ret, TC_ACT_REDIRECT, "drops {:?}", dp.drops());
    let want = scapy_reference(serde_json::json!([{
        "eth": ["02:00:00:00:00:20", "02:00:00:00:00:10"],
        "ip": {"src": "198.18.0.10", "dst": "198.18.0.20", "tos": 0x28},
        "gre": {"key": 7},
        "proto": 0x6558,
        "inner_hex": hexdump(&frame),
    }]));
    assert_eq!(hexdump(&out), hexdump(&want[0]), "Ethernet in GRE (0x6558), inner frame whole, DSCP copied");
    assert_eq!(dp.path_stats(2, 0).tx_bytes, frame.len() as u64, "gretap counts the whole inner frame");

    // The way back: the inner frame comes out exactly, on both hooks, and
    // its source is learned as living behind the peer it came from.
    let back = eth(HOST_A, [0x02, 0xcc, 0, 0, 0, 3], 0x0806, &[7u8; 28]);
    let gre_in = gre_frame(REMOTE, LOCAL, 0, Gre { proto: 0x6558, ..valid(Some(7)) }, &back);
    let (ret, out) = dp.run(PROG_RX_TC, &gre_in, None);
    assert_eq!(ret, TC_ACT_REDIRECT, "tc: drops {:?}", dp.drops());
    assert_eq!(hexdump(&out), hexdump(&back), "tc delivers the inner frame as it was sent");
    let learned = dp.fdb([0x02, 0xcc, 0, 0, 0, 3]).expect("source MAC learned");
    assert_eq!(learned.peer_id, 2);
    assert!(boot_ns() - learned.seen_ns < 5_000_000_000, "learned just now");
    if let Some(xdp) = xdp_meta() {
        let (ret, out) = dp.run(xdp, &gre_in, None);
        assert_eq!(ret, XDP_PASS);
        assert_eq!(&out[4..8], &TUN.to_ne_bytes(), "xdp metadata tunnel");
        assert_eq!(hexdump(&out[HandoffMeta::LEN..]), hexdump(&back), "xdp delivers the inner frame as it was sent");
    }
    // A gretap tunnel takes no IP-in-GRE, and a gre one no Ethernet.
    let ip_in = gre_frame(REMOTE, LOCAL, 0, valid(Some(7)), &inner_packet(10, 0));
    assert_eq!(dp.run(PROG_RX_TC, &ip_in, None).0, TC_ACT_SHOT);
    assert_eq!(dp.drops(), BTreeMap::from([("unknown_proto", 1)]));
    // Group source addresses are never learned.
    let bogus = eth(HOST_A, [0x03, 0, 0, 0, 0, 9], 0x0806, &[7u8; 28]);
    dp.run(PROG_RX_TC, &gre_frame(REMOTE, LOCAL, 0, Gre { proto: 0x6558, ..valid(Some(7)) }, &bogus), None);
    assert!(dp.fdb([0x03, 0, 0, 0, 0, 9]).is_none());
}

#[test]
fn a_frame_never_goes_back_to_the_peer_it_came_from() {
    let mut dp = Dp::new();
    dp.tunnel_mode(MODE_GRETAP, Some(7), TunnelFlags::empty());
    dp.peer(2, &[1]);
    dp.learn(HOST_A, 2);
    dp.learn(HOST_B, 2);
    let frame = eth(HOST_B, HOST_A, 0x0800, &inner_packet(20, 0));
    // Came in through the tunnel device (a bridge hairpinning it): both
    // ends live behind peer 2, so it would go straight back.
    let (ret, _) = dp.tx_ctx(&frame, &skb_ctx_from(TUN, 1, TUN));
    assert_eq!(ret, TC_ACT_SHOT);
    assert_eq!(dp.drops(), BTreeMap::from([("split_horizon", 1)]));
    // From a local port, the same frame is simply sent.
    let (ret, _) = dp.tx_ctx(&frame, &skb_ctx_from(TUN, 1, 9));
    assert_eq!(ret, TC_ACT_REDIRECT);
    // Broadcast from peer 2's side, with peer 2 the only peer: no copy.
    let mut list = FloodList { n: 1, ..Default::default() };
    list.peers[0] = 2;
    dp.flood().insert(FloodKey { tunnel_ifindex: TUN, group: [0; 16] }, list, 0).unwrap();
    let bcast = eth([0xff; 6], HOST_A, 0x0806, &[0u8; 28]);
    let (ret, _) = dp.tx_ctx(&bcast, &skb_ctx_from(TUN, 1, TUN));
    assert_eq!(ret, TC_ACT_SHOT);
    assert_eq!(dp.drops().get("split_horizon"), Some(&2), "{:?}", dp.drops());
}

#[test]
fn stale_macs_are_flooded_again() {
    let mut dp = Dp::new();
    dp.tunnel_mode(MODE_GRETAP, Some(7), TunnelFlags::empty());
    dp.peer(2, &[1]);
    // Learned 301 s ago: past the default aging time of 300 s.
    let old = boot_ns().saturating_sub(301_000_000_000);
    dp.fdb_map().insert(FdbKey { tunnel_ifindex: TUN, mac: HOST_B, vid: 0 }, FdbEntry { peer_id: 2, _pad: 0, seen_ns: old }, 0).unwrap();
    let frame = eth(HOST_B, HOST_A, 0x0800, &inner_packet(20, 0));
    // No flood list: flooding has nowhere to go, which shows it flooded.
    let (ret, _) = dp.tx(&frame, 1);
    assert_eq!(ret, TC_ACT_SHOT);
    assert_eq!(dp.drops(), BTreeMap::from([("no_route", 1)]));
    dp.learn(HOST_B, 2);
    assert_eq!(dp.tx(&frame, 1).0, TC_ACT_REDIRECT, "fresh again: unicast");
}

#[test]
fn nvgre_puts_the_vsid_and_a_flow_id_in_the_key() {
    let mut dp = Dp::new();
    dp.tunnel_mode(MODE_GRETAP, Some(0x1234), TunnelFlags::NVGRE);
    dp.peer(0, &[1]);
    dp.learn(HOST_B, 0);
    let frame = eth(HOST_B, HOST_A, 0x0800, &inner_packet(40, 0));
    let (ret, out) = dp.tx(&frame, 1);
    assert_eq!(ret, TC_ACT_REDIRECT, "drops {:?}", dp.drops());
    // RFC 7637: K set, C and S clear, protocol 0x6558, key = VSID << 8 | FlowID.
    assert_eq!(&out[34..38], &[0x20, 0x00, 0x65, 0x58]);
    let key = u32::from_be_bytes(out[38..42].try_into().unwrap());
    assert_eq!(key >> 8, 0x1234, "VSID");
    assert_eq!(hexdump(&out[42..]), hexdump(&frame));
    // The same flow keeps its FlowID.
    let (_, again) = dp.tx(&frame, 1);
    assert_eq!(&again[38..42], &out[38..42], "one flow, one FlowID");

    // Any FlowID reaches the VSID's tunnel; another VSID does not.
    for flow in [0u32, 0x5a, 0xff] {
        let f = gre_frame(REMOTE, LOCAL, 0, Gre { proto: 0x6558, ..valid(Some(0x1234 << 8 | flow)) }, &frame);
        assert_eq!(dp.run(PROG_RX_TC, &f, None), (TC_ACT_REDIRECT, frame.clone()), "FlowID {flow:#x}");
    }
    let other = gre_frame(REMOTE, LOCAL, 0, Gre { proto: 0x6558, ..valid(Some(0x1235 << 8)) }, &frame);
    assert_eq!(dp.run(PROG_RX_TC, &other, None).0, TC_ACT_SHOT);
    assert_eq!(dp.drops(), BTreeMap::from([("key_mismatch", 1)]));
}

#[test]
fn gre_multicast_without_a_list_goes_nowhere_and_with_one_skips_its_source() {
    let mut dp = Dp::new();
    dp.tunnel(Some(42), TunnelFlags::empty());
    dp.peer(0, &[1]);
    let mut mc = inner_packet(20, 0);
    mc[16..20].copy_from_slice(&[239, 0, 0, 10]);
    let (ret, _) = dp.tx(&tunnel_frame(&mc), 1);
    assert_eq!(ret, TC_ACT_SHOT);
    assert_eq!(dp.drops(), BTreeMap::from([("no_route", 1)]));
    // A group list naming only the peer the packet came from (its source
    // is routed to peer 0): routed back out of the tunnel, it gets no copy.
    let mut list = FloodList { n: 1, ..Default::default() };
    list.peers[0] = 0;
    let group = FloodKey { tunnel_ifindex: TUN, group: v4_mapped([239, 0, 0, 10]) };
    dp.flood().insert(group, list, 0).unwrap();
    let mut from_peer = mc.clone();
    from_peer[12..16].copy_from_slice(&INNER_DST);
    let (ret, _) = dp.tx_ctx(&tunnel_frame(&from_peer), &skb_ctx_from(TUN, 1, TUN));
    assert_eq!(ret, TC_ACT_SHOT);
    assert_eq!(dp.drops().get("split_horizon"), Some(&1), "{:?}", dp.drops());
}

const LOCAL6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10];
const REMOTE6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x20];

#[test]
fn an_ipv6_underlay_carries_gre_after_next_header_47() {
    let mut dp = Dp::new();
    dp.tunnel(Some(42), TunnelFlags::UNDERLAY6);
    v6_peer(&mut dp);

    let inner = inner_packet(77, 0xb8);
    let (ret, out) = dp.tx(&tunnel_frame(&inner), 1);
    assert_eq!(ret, TC_ACT_REDIRECT, "drops {:?}", dp.drops());
    // The flow label comes from the inner flow's hash: take it from the
    // output, check everything else against scapy.
    let fl = u32::from_be_bytes(out[14..18].try_into().unwrap()) & 0xf_ffff;
    let want = scapy_reference(serde_json::json!([{
        "eth": ["02:00:00:00:00:20", "02:00:00:00:00:10"],
        "ip6": {"src": "2001:db8::10", "dst": "2001:db8::20", "tc": 0xb8, "fl": fl},
        "gre": {"key": 42},
        "inner_hex": hexdump(&inner),
    }]));
    assert_eq!(hexdump(&out), hexdump(&want[0]), "outer IPv6, next header 47, traffic class copied");
    let (_, again) = dp.tx(&tunnel_frame(&inner), 1);
    assert_eq!(&again[14..18], &out[14..18], "one flow keeps its flow label");

    // Receive: what scapy built, back to the inner packet, on both hooks.
    let mut frame = want[0].clone();
    frame[0..6].copy_from_slice(&LINK_MAC);
    frame[6..12].copy_from_slice(&PEER_MAC);
    frame[22..38].copy_from_slice(&REMOTE6);
    frame[38..54].copy_from_slice(&LOCAL6);
    let expect = eth(TUN_MAC, PEER_MAC, 0x0800, &inner);
    let (ret, got) = dp.run(PROG_RX_TC, &frame, None);
    assert_eq!(ret, TC_ACT_REDIRECT, "tc: drops {:?}", dp.drops());
    assert_eq!(hexdump(&got), hexdump(&expect));
    if let Some(xdp) = xdp_meta() {
        let (ret, got) = dp.run(xdp, &frame, None);
        assert_eq!(ret, XDP_PASS);
        assert_eq!(hexdump(&got[HandoffMeta::LEN..]), hexdump(&expect));
    }
    assert_eq!(dp.path_stats(1, 0).rx_packets, rx_hooks().len() as u64);
    // A payload length past the frame's end is malformed.
    let mut bad = frame.clone();
    bad[18..20].copy_from_slice(&2000u16.to_be_bytes());
    assert_eq!(dp.run(PROG_RX_TC, &bad, None).0, TC_ACT_SHOT);
    assert_eq!(dp.drops(), BTreeMap::from([("bad_outer", 1)]));
}

/// Peer 1 with one path over IPv6 (LOCAL6 -> REMOTE6).
fn v6_peer(dp: &mut Dp) {
    dp.peer(1, &[1]);
    let mut p = dp.peers().get(&1, 0).unwrap();
    p.paths[0].local = LOCAL6;
    p.paths[0].remote = REMOTE6;
    dp.peers().insert(1, p, 0).unwrap();
    let rx = RxKey { tunnel_ifindex: TUN, remote: REMOTE6, local: LOCAL6 };
    dp.rx_paths().insert(rx, RxPath { peer_id: 1, path: 0 }, 0).unwrap();
    let l = LocalAddr { ifindex: 1, mac: LINK_MAC, _pad: [0; 2] };
    dp.local_addrs().insert(LOCAL6, l, 0).unwrap();
}

#[test]
fn a_small_frame_behind_a_40_byte_ipv6_header_is_decapsulated() {
    // An ARP request is 28 bytes after its Ethernet header: shorter than
    // the IPv6 header it arrived behind.
    let mut dp = Dp::new();
    dp.tunnel_mode(MODE_GRETAP, Some(42), TunnelFlags::UNDERLAY6);
    v6_peer(&mut dp);
    let arp = eth([0xff; 6], HOST_A, 0x0806, &[1u8; 28]);
    let g = gre(Gre { proto: 0x6558, ..valid(Some(42)) }, &arp);
    let mut ip6 = vec![0x60, 0, 0, 0];
    ip6.extend((g.len() as u16).to_be_bytes());
    ip6.extend([47, 64]);
    ip6.extend(REMOTE6);
    ip6.extend(LOCAL6);
    ip6.extend(&g);
    let frame = eth(LINK_MAC, PEER_MAC, 0x86DD, &ip6);
    for prog in rx_hooks() {
        let (ret, out) = dp.run(prog, &frame, None);
        let (want_ret, skip) = if prog == PROG_RX_TC { (TC_ACT_REDIRECT, 0) } else { (XDP_PASS, HandoffMeta::LEN) };
        assert_eq!(ret, want_ret, "{prog}: drops {:?}", dp.drops());
        assert_eq!(hexdump(&out[skip..]), hexdump(&arp), "{prog}");
    }
    assert_eq!(dp.fdb(HOST_A).map(|e| e.peer_id), Some(1), "learned over IPv6 too");
}

#[test]
fn keepalives_over_an_ipv6_underlay_and_nvgre_come_and_go() {
    let (l6, r6) = (std::net::Ipv6Addr::from(LOCAL6), std::net::Ipv6Addr::from(REMOTE6));
    // The peer's IPv6 keepalive is sent back as IPv6.
    let mut dp = Dp::new();
    dp.tunnel(Some(42), TunnelFlags::UNDERLAY6);
    v6_peer(&mut dp);
    let ka = gre_user::daemon::keepalive_packet(r6.into(), l6.into(), Some(42), None, None);
    let frame = eth(LINK_MAC, PEER_MAC, 0x86DD, &ka);
    let want = eth(PEER_MAC, LINK_MAC, 0x86DD, &ka[40 + 8..]);
    for prog in rx_hooks() {
        let (ret, out) = dp.run(prog, &frame, None);
        let skip = if prog == PROG_RX_TC { 0 } else { HandoffMeta::LEN };
        assert!(ret == TC_ACT_REDIRECT || ret == XDP_PASS, "{prog}: {ret}, drops {:?}", dp.drops());
        assert_eq!(hexdump(&out[skip..]), hexdump(&want), "{prog}");
    }
    assert_eq!(dp.path_stats(1, 0).keepalives_reflected, rx_hooks().len() as u64);
    // Ours, come back: the inner part of what we sent, as the peer returns it.
    let ours = gre_user::daemon::keepalive_packet(l6.into(), r6.into(), Some(42), None, None);
    let back = eth(LINK_MAC, PEER_MAC, 0x86DD, &ours[40 + 8..]);
    assert_eq!(dp.run(PROG_RX_TC, &back, None).0, TC_ACT_SHOT, "a reply is consumed");
    assert_eq!(dp.path_stats(1, 0).keepalive_replies, 1);
    assert!(dp.drops().is_empty(), "{:?}", dp.drops());

    // NVGRE: probes carry the VSID with FlowID 0 and reach the tunnel.
    let mut dp = Dp::new();
    dp.tunnel_mode(MODE_GRETAP, Some(0x1234), TunnelFlags::NVGRE);
    dp.peer(1, &[1]);
    let ka = gre_user::daemon::keepalive_packet(REMOTE.into(), LOCAL.into(), Some(0x1234 << 8), None, None);
    let (ret, _) = dp.run(PROG_RX_TC, &eth(LINK_MAC, PEER_MAC, 0x0800, &ka), None);
    assert_eq!(ret, TC_ACT_REDIRECT, "drops {:?}", dp.drops());
    assert_eq!(dp.path_stats(1, 0).keepalives_reflected, 1);
}

#[test]
fn a_static_mac_neither_ages_nor_moves() {
    let mut dp = Dp::new();
    dp.tunnel_mode(MODE_GRETAP, Some(7), TunnelFlags::empty());
    dp.peer(2, &[1]);
    let set = |dp: &mut Dp, peer: u32| {
        dp.fdb_map()
            .insert(FdbKey { tunnel_ifindex: TUN, mac: HOST_B, vid: 0 }, FdbEntry { peer_id: peer, _pad: 0, seen_ns: FDB_STATIC }, 0)
            .unwrap();
    };
    let claim = gre_frame(REMOTE, LOCAL, 0, Gre { proto: 0x6558, ..valid(Some(7)) }, &eth(HOST_A, HOST_B, 0x0806, &[1u8; 28]));
    // Placed behind peer 5: a frame from peer 2 claiming the address does
    // not move it.
    set(&mut dp, 5);
    assert_eq!(dp.run(PROG_RX_TC, &claim, None).0, TC_ACT_REDIRECT);
    let e = dp.fdb(HOST_B).unwrap();
    assert_eq!((e.peer_id, e.seen_ns), (5, FDB_STATIC), "learning moved a static entry");
    // Placed behind peer 2: frames from it do not turn it into a learned
    // entry that could age...
    set(&mut dp, 2);
    dp.run(PROG_RX_TC, &claim, None);
    assert_eq!(dp.fdb(HOST_B).unwrap().seen_ns, FDB_STATIC, "a static entry became a learned one");
    // ...and frames to it are unicast to peer 2, not flooded.
    let (ret, out) = dp.tx(&eth(HOST_B, HOST_A, 0x0800, &inner_packet(20, 0)), 1);
    assert_eq!(ret, TC_ACT_REDIRECT, "drops {:?}", dp.drops());
    assert_eq!(&out[30..34], &REMOTE, "to peer 2's address");
}

/// An outer IPv6 GRE frame from `src` to `dst`.
fn gre6_frame(src: [u8; 16], dst: [u8; 16], g: Gre, inner: &[u8]) -> Vec<u8> {
    let body = gre(g, inner);
    let mut ip6 = vec![0x60, 0, 0, 0];
    ip6.extend((body.len() as u16).to_be_bytes());
    ip6.extend([47, 64]);
    ip6.extend(src);
    ip6.extend(dst);
    ip6.extend(&body);
    eth(LINK_MAC, PEER_MAC, 0x86DD, &ip6)
}

#[test]
fn ipv4_mapped_ipv6_frames_never_reach_an_ipv4_tunnel() {
    let inner = inner_packet(40, 0);
    // Data, and a keepalive that would be reflected: both from and to
    // IPv4-mapped addresses of the peer and of our link.
    let keepalive = {
        let k = gre(Gre { proto: 0, ..valid(Some(42)) }, &[]);
        ipv4(LOCAL, REMOTE, 47, 0, 0, &k)
    };
    for payload in [inner.clone(), keepalive] {
        let frame = gre6_frame(v4_mapped(REMOTE), v4_mapped(LOCAL), valid(Some(42)), &payload);
        for (prog, want) in rx_hooks().into_iter().map(|p| (p, if p == PROG_RX_TC { TC_ACT_SHOT } else { XDP_DROP })) {
            let mut dp = Dp::new();
            dp.tunnel(Some(42), TunnelFlags::empty());
            dp.peer(0, &[1]);
            let (ret, _) = dp.run(prog, &frame, None);
            assert_eq!(ret, want, "{prog}: a mapped-address frame was not dropped");
            assert_eq!(dp.drops(), BTreeMap::from([("mapped_address", 1)]), "{prog}");
            let s = dp.path_stats(0, 0);
            assert_eq!((s.rx_packets, s.keepalives_reflected), (0, 0), "{prog}: delivered or reflected");
        }
    }
}

/// An IPv4 header with a Router Alert option (IHL 6; RFC 2113) and a right
/// checksum. Its bytes differ from their swap, as the checksum's byte
/// order must be right.
fn ipv4_with_options(src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x46, 0];
    h.extend(((24 + payload.len()) as u16).to_be_bytes());
    h.extend([0, 0, 0, 0, 64, 47, 0, 0]);
    h.extend(src);
    h.extend(dst);
    h.extend([0x94, 0x04, 0, 0]);
    let c = sum16(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend(payload);
    h
}

#[test]
fn a_bad_outer_ipv4_header_checksum_is_dropped_options_included() {
    let inner = inner_packet(40, 0);
    let good = gre_frame(REMOTE, LOCAL, 0, valid(Some(42)), &inner);
    let mut bad = good.clone();
    bad[14 + 10] ^= 0x01;
    let with_opts = eth(LINK_MAC, PEER_MAC, 0x0800, &ipv4_with_options(REMOTE, LOCAL, &gre(valid(Some(42)), &inner)));
    let mut bad_opts = with_opts.clone();
    bad_opts[14 + 21] ^= 0x40; // an option byte: only the options' sum sees it
    let hooks = rx_hooks();
    let verdicts = |p| if p == PROG_RX_TC { (p, TC_ACT_SHOT, TC_ACT_REDIRECT) } else { (p, XDP_DROP, XDP_PASS) };
    for (prog, drop, deliver) in hooks.into_iter().map(verdicts) {
        for frame in [&bad, &bad_opts] {
            let mut dp = Dp::new();
            dp.tunnel(Some(42), TunnelFlags::empty());
            dp.peer(0, &[1]);
            assert_eq!(dp.run(prog, frame, None).0, drop, "{prog}");
            assert_eq!(dp.drops(), BTreeMap::from([("bad_ip_checksum", 1)]), "{prog}");
            assert_eq!(dp.path_stats(0, 0).rx_packets, 0, "{prog}");
        }
        let mut dp = Dp::new();
        dp.tunnel(Some(42), TunnelFlags::empty());
        dp.peer(0, &[1]);
        let (ret, out) = dp.run(prog, &with_opts, None);
        assert_eq!(ret, deliver, "{prog}: options with a right checksum: drops {:?}", dp.drops());
        let skip = if prog == PROG_RX_XDP { HandoffMeta::LEN } else { 0 };
        assert_eq!(hexdump(&out[skip..]), hexdump(&eth(TUN_MAC, PEER_MAC, 0x0800, &inner)), "{prog}");
    }
}

/// `frame` with a VLAN tag (`tpid`, `vid`) after its MAC addresses.
fn tagged(frame: &[u8], tpid: u16, vid: u16) -> Vec<u8> {
    let mut f = frame[..12].to_vec();
    f.extend(tpid.to_be_bytes());
    f.extend((vid | 0x6000).to_be_bytes()); // PCP 3: a priority tag
    f.extend(&frame[12..]);
    f
}

#[test]
fn gre_on_a_vlan_is_not_ours_but_a_priority_tag_is() {
    let inner = inner_packet(40, 0);
    let plain = gre_frame(REMOTE, LOCAL, 0, valid(Some(42)), &inner);
    let want = eth(TUN_MAC, PEER_MAC, 0x0800, &inner);
    let new = || {
        let mut dp = Dp::new();
        dp.tunnel(Some(42), TunnelFlags::empty());
        dp.peer(0, &[1]);
        dp
    };
    // On a VLAN: for that VLAN's device, whatever the hook.
    let qinq = tagged(&tagged(&plain, 0x8100, 7), 0x88a8, 0);
    for frame in [tagged(&plain, 0x8100, 7), tagged(&plain, 0x88a8, 7), tagged(&plain, 0x8100, 4095), qinq] {
        let dp = new();
        let (ret, out) = dp.run(PROG_RX_TC, &frame, None);
        assert_eq!((ret, &out), (TC_ACT_OK, &frame), "tc took a tagged frame");
        for xdp in xdp_meta().into_iter().chain([PROG_RX_XDP_NM]) {
            let (ret, out) = dp.run(xdp, &frame, None);
            assert_eq!((ret, &out), (XDP_PASS, &frame), "{xdp} took a tagged frame");
        }
        assert!(dp.drops().is_empty() && dp.path_stats(0, 0).rx_packets == 0);
    }
    // A priority tag (VID 0) is no VLAN (802.1Q): XDP sees it in the frame
    // and decapsulates. (TC sees it already taken off by the kernel; the
    // namespace test covers that.)
    for tpid in xdp_meta().map_or(vec![], |_| vec![0x8100, 0x88a8]) {
        let dp = new();
        let (ret, out) = dp.run(PROG_RX_XDP, &tagged(&plain, tpid, 0), None);
        assert_eq!(ret, XDP_PASS, "drops {:?}", dp.drops());
        assert_eq!(&out[..4], &HandoffMeta::MAGIC.to_ne_bytes(), "priority-tagged GRE was not decapsulated");
        assert_eq!(hexdump(&out[HandoffMeta::LEN..]), hexdump(&want));
        assert_eq!(dp.path_stats(0, 0).rx_packets, 1);
    }
}

/// Sum of the pseudo-header and the L4 bytes, folded (0xffff: verifies).
fn l4_sum(pseudo: &[u8], l4: &[u8]) -> u16 {
    !sum16(&[pseudo, l4].concat())
}

/// A TCP segment in IPv4 or IPv6 whose checksum field holds what the stack
/// leaves there with CHECKSUM_PARTIAL (the pseudo-header sum, not
/// inverted), or the finished checksum when `finished`.
fn tcp_packet(v6: bool, payload: usize, finished: bool) -> Vec<u8> {
    let mut tcp = vec![0x30, 0x39, 0x13, 0x89, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0];
    tcp.extend((0..payload).map(|i| (i * 13 + 5) as u8));
    let len = tcp.len() as u32;
    type Wrap = Box<dyn Fn(&[u8]) -> Vec<u8>>;
    let (pseudo, ip): (Vec<u8>, Wrap) = if v6 {
        let p = [&INNER6_SRC[..], &INNER6_DST[..], &len.to_be_bytes(), &[0, 0, 0, 6]].concat();
        (
            p,
            Box::new(|t: &[u8]| {
                let mut h = ipv6(INNER6_SRC, INNER6_DST, 0, t);
                h[6] = 6;
                h
            }),
        )
    } else {
        let p = [&INNER_SRC[..], &INNER_DST[..], &[0, 6], &(len as u16).to_be_bytes()].concat();
        (p, Box::new(|t: &[u8]| ipv4(INNER_SRC, INNER_DST, 6, 0, 0x4000, t)))
    };
    let field = if finished { sum16(&[&pseudo[..], &tcp[..]].concat()) } else { !sum16(&pseudo) };
    tcp[16..18].copy_from_slice(&field.to_be_bytes());
    ip(&tcp)
}

/// What a NIC (or the stack, for a device without offload) does to a
/// CHECKSUM_PARTIAL packet after we are done: fill the TCP checksum of
/// the IP packet at `at` of `frame`.
fn fill_tcp_checksum(frame: &mut [u8], at: usize) {
    let v6 = frame[at] >> 4 == 6;
    let (l4, pseudo_addrs) = if v6 { (at + 40, frame[at + 8..at + 40].to_vec()) } else { (at + 20, frame[at + 12..at + 20].to_vec()) };
    let len = (frame.len() - l4) as u32;
    let pseudo = if v6 {
        [&pseudo_addrs[..], &len.to_be_bytes(), &[0, 0, 0, 6]].concat()
    } else {
        [&pseudo_addrs[..], &[0, 6], &(len as u16).to_be_bytes()].concat()
    };
    // The field holds the pseudo-header sum; summing from the L4 header
    // with it in place and inverting gives the checksum (csum_start and
    // csum_offset, as the kernel does it).
    let c = sum16(&frame[l4..]);
    frame[l4 + 16..l4 + 18].copy_from_slice(&c.to_be_bytes());
    assert_eq!(l4_sum(&pseudo, &frame[l4..]), 0xffff, "the test's own TCP checksum fill is wrong");
}

#[test]
fn the_gre_checksum_covers_the_inner_checksum_the_stack_fills_later() {
    // gre mode over IPv4 and IPv6 inner packets, gretap; partial and
    // finished inner checksums; odd and even payloads.
    for (mode, v6, finished, payload) in [
        (MODE_GRE, false, false, 100),
        (MODE_GRE, false, false, 1401),
        (MODE_GRE, true, false, 77),
        (MODE_GRETAP, false, false, 300),
        (MODE_GRETAP, true, false, 31),
        (MODE_GRE, false, true, 100),
        (MODE_GRETAP, true, true, 64),
    ] {
        let mut dp = Dp::new();
        dp.tunnel_mode(mode, Some(42), TunnelFlags::CSUM);
        dp.peer(0, &[1]);
        let inner = tcp_packet(v6, payload, finished);
        let ty = if v6 { 0x86DD } else { 0x0800 };
        let frame = if mode == MODE_GRETAP { eth(PEER_MAC, HOST_A, ty, &inner) } else { eth(TUN_MAC, TUN_MAC, ty, &inner) };
        if mode == MODE_GRETAP {
            dp.learn(PEER_MAC, 0);
        }
        let (ret, mut out) = dp.tx(&frame, 1);
        let what = format!("mode {mode} v6 {v6} finished {finished} payload {payload}");
        assert_eq!(ret, TC_ACT_REDIRECT, "{what}: drops {:?}", dp.drops());
        let gre_at = 14 + 20;
        let inner_ip = gre_at + 12 + if mode == MODE_GRETAP { 14 } else { 0 };
        if !finished {
            fill_tcp_checksum(&mut out, inner_ip);
        }
        assert_eq!(sum16(&out[gre_at..]), 0, "{what}: the GRE checksum does not verify over the bytes on the wire");
    }
}

/// Tell the datapath `xgre run` has AF_XDP sockets on `lo` (the link of
/// every XDP test run) for the tunnel, none of them open: the XDP program
/// without metadata then judges every frame, and hands none over.
fn sockets_on_lo(dp: &mut Dp) {
    let link = ReseqLink { tunnel_ifindex: TUN, base: 0, queues: 1, _pad: 0 };
    dp.hash::<u32, ReseqLink>(MAP_RESEQ_LINK).insert(TUN, link, 0).unwrap();
}

/// Where the kernel refuses XDP programs metadata, `xgre_rx_xdp_nm` is
/// the XDP receive program, with the full TC program beside it: it hands
/// TC every frame exactly as it came, uncounted (TC counts it), and drops
/// only what it judged, under its reason, on a link where `xgre run`
/// takes frames over AF_XDP. It loads on every kernel, so this runs on
/// every kernel.
#[test]
fn xdp_without_metadata_leaves_every_frame_to_tc_but_the_resequencers() {
    let inner = inner_packet(40, 0);
    let plain = gre_frame(REMOTE, LOCAL, 0, valid(Some(42)), &inner);
    let numbered = gre_frame(REMOTE, LOCAL, 0, Gre { seq: Some(9), ..valid(Some(42)) }, &inner);
    let keepalive = eth(LINK_MAC, PEER_MAC, 0x0800, &gre_user::daemon::keepalive_packet(REMOTE.into(), LOCAL.into(), Some(42), None, None));
    let hostile = gre_frame([198, 18, 0, 66], LOCAL, 0, valid(Some(42)), &inner);
    for sockets in [false, true] {
        let mut dp = Dp::new();
        dp.tunnel(Some(42), TunnelFlags::SEQ);
        dp.peer(3, &[1]);
        if sockets {
            sockets_on_lo(&mut dp);
        }
        for f in [&plain, &numbered, &keepalive] {
            let (ret, out) = dp.run(PROG_RX_XDP_NM, f, None);
            assert_eq!((ret, &out), (XDP_PASS, f), "sockets {sockets}: not handed to TC as it came");
        }
        let s = dp.path_stats(3, 0);
        assert_eq!((s.rx_packets, s.keepalives_reflected), (0, 0), "sockets {sockets}: counted here, and again by TC");
        let (ret, out) = dp.run(PROG_RX_XDP_NM, &hostile, None);
        if sockets {
            assert_eq!(ret, XDP_DROP, "a stranger's GRE, judged");
            assert_eq!(dp.drops(), BTreeMap::from([("unknown_peer", 1)]));
        } else {
            assert_eq!((ret, &out), (XDP_PASS, &hostile), "no sockets: not even looked at");
            assert!(dp.drops().is_empty(), "{:?}", dp.drops());
            // TC, beside it, judges it as on any TC link.
            assert_eq!(dp.run(PROG_RX_TC, &hostile, None).0, TC_ACT_SHOT);
            assert_eq!(dp.drops(), BTreeMap::from([("unknown_peer", 1)]));
        }
    }
}
