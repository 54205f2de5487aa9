//! Path MTU discovery, packet by packet: which ICMP errors lower a path's
//! MTU, and the error an inner packet too big for its path gets back.

use aya::maps::{Array, MapData, PerCpuArray};
use gre_common::TunnelFlags;
use gre_common::{names::*, path_slot, pmtu::PathMtu, v4_mapped, OuterPair, PmtuEvent};

use crate::common::bpf::*;

const ROUTER: [u8; 4] = [198, 18, 0, 1];

fn path_mtu(dp: &Dp, peer: u32, path: u32) -> PathMtu {
    let m: Array<&MapData, PathMtu> = dp.ebpf.map(MAP_PATH_MTU).unwrap().try_into().unwrap();
    m.get(&path_slot(peer, path), 0).unwrap()
}

fn set_path_mtu(dp: &mut Dp, peer: u32, path: u32, mtu: u32, secs: u64) {
    let mut m: Array<&mut MapData, PathMtu> = dp.ebpf.map_mut(MAP_PATH_MTU).unwrap().try_into().unwrap();
    let e = PathMtu { mtu, _pad: 0, expires_ns: boot_ns() + secs * 1_000_000_000, from: v4_mapped(ROUTER) };
    m.set(path_slot(peer, path), e, 0).unwrap();
}

fn event(dp: &Dp, e: PmtuEvent) -> u64 {
    let m: PerCpuArray<&MapData, u64> = dp.ebpf.map(MAP_PMTU_EVENTS).unwrap().try_into().unwrap();
    m.get(&(e as u32), 0).unwrap().iter().sum()
}

/// What a router sends back about one of our 1500-byte outer packets:
/// ICMP "fragmentation needed" with `mtu`, quoting `quote` bytes of an
/// outer packet from `src` to `dst` with GRE key `key`.
struct Icmp {
    to: [u8; 4],
    src: [u8; 4],
    dst: [u8; 4],
    key: u32,
    mtu: u16,
    quote: usize,
    bad_sum: bool,
}

impl Icmp {
    fn ours(mtu: u16) -> Icmp {
        Icmp { to: LOCAL, src: LOCAL, dst: REMOTE, key: 42, mtu, quote: 548, bad_sum: false }
    }

    fn frame(&self) -> Vec<u8> {
        let outer =
            ipv4(self.src, self.dst, 47, 0, 0x4000, &gre(Gre { proto: 0x0800, key: Some(self.key), ..Default::default() }, &[7; 1472]));
        let mut icmp = vec![3, 4, 0, 0, 0, 0];
        icmp.extend(self.mtu.to_be_bytes());
        icmp.extend(&outer[..self.quote]);
        let c = sum16(&icmp) ^ if self.bad_sum { 1 } else { 0 };
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        eth(LINK_MAC, PEER_MAC, 0x0800, &ipv4(ROUTER, self.to, 1, 0xc0, 0, &icmp))
    }
}

#[test]
fn only_an_icmp_error_about_a_packet_we_send_lowers_its_path_mtu() {
    let lower = |mtu| Icmp::ours(mtu);
    let cases: Vec<(&str, Icmp, PmtuEvent, u32)> = vec![
        ("another key", Icmp { key: 43, ..lower(1400) }, PmtuEvent::IcmpNotOurs, 0),
        ("another remote", Icmp { dst: [198, 18, 0, 99], ..lower(1400) }, PmtuEvent::IcmpNotOurs, 0),
        ("quoting someone else's packet", Icmp { src: [198, 18, 0, 11], ..lower(1400) }, PmtuEvent::IcmpNotOurs, 0),
        ("a bad checksum", Icmp { bad_sum: true, ..lower(1400) }, PmtuEvent::IcmpNotOurs, 0),
        ("no MTU (pre-RFC 1191)", lower(0), PmtuEvent::IcmpNotOurs, 0),
        ("no lower than the quoted packet", lower(1500), PmtuEvent::IcmpNotLower, 0),
        ("the minimal 8-byte quote", Icmp { quote: 28, ..lower(1400) }, PmtuEvent::IcmpLearned, 1400),
        ("ours", lower(1400), PmtuEvent::IcmpLearned, 1400),
        ("below the minimum: raised to 552", lower(300), PmtuEvent::IcmpLearned, 552),
    ];
    for (what, icmp, want, mtu) in cases {
        for prog in rx_hooks() {
            let mut dp = Dp::new();
            dp.tunnel(Some(42), TunnelFlags::empty());
            dp.peer(0, &[1]);
            let frame = icmp.frame();
            let (ret, out) = match prog {
                PROG_RX_XDP => dp.run(prog, &frame, None),
                _ => dp.run(prog, &frame, Some(&skb_ctx(1, 1))),
            };
            assert_eq!(ret, if prog == PROG_RX_XDP { XDP_PASS } else { TC_ACT_OK }, "{what} ({prog}): handed to the stack");
            assert_eq!(out, frame, "{what} ({prog}): untouched");
            assert_eq!(event(&dp, want), 1, "{what} ({prog})");
            let e = path_mtu(&dp, 0, 0);
            assert_eq!(e.mtu, mtu, "{what} ({prog})");
            if mtu != 0 {
                assert_eq!(e.from, v4_mapped(ROUTER), "{what}: who said so");
                let left = e.expires_ns.saturating_sub(boot_ns()) / 1_000_000_000;
                assert!((595..=600).contains(&left), "{what}: ten minutes by default, {left} s");
            }
        }
    }
    // Once learnt, a higher claim is not believed.
    let mut dp = Dp::new();
    dp.tunnel(Some(42), TunnelFlags::empty());
    dp.peer(0, &[1]);
    dp.run(PROG_RX_TC, &lower(1400).frame(), Some(&skb_ctx(1, 1)));
    dp.run(PROG_RX_TC, &lower(1450).frame(), Some(&skb_ctx(1, 1)));
    assert_eq!((path_mtu(&dp, 0, 0).mtu, event(&dp, PmtuEvent::IcmpNotLower)), (1400, 1));
}

/// An inner IPv4 packet of `len` bytes, DF set or not.
fn inner_v4(len: usize, df: bool) -> Vec<u8> {
    let mut icmp = vec![8, 0, 0, 0, 0x12, 0x34, 0, 1];
    icmp.extend((0..len - 28).map(|i| i as u8));
    let c = sum16(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    ipv4(INNER_SRC, INNER_DST, 1, 0, if df { 0x4000 } else { 0 }, &icmp)
}

/// The error the tunnel sends its own device: from the inner destination
/// back to the sender, its checksums right, quoting the packet's start.
fn frag_needed(inner: &[u8], mtu: u16) -> Vec<u8> {
    let mut icmp = vec![3, 4, 0, 0, 0, 0];
    icmp.extend(mtu.to_be_bytes());
    icmp.extend(&inner[..inner.len().min(548)]);
    let c = sum16(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    eth(TUN_MAC, TUN_MAC, 0x0800, &ipv4(INNER_DST, INNER_SRC, 1, 0xc0, 0, &icmp))
}

#[test]
fn an_inner_packet_too_big_for_its_path_gets_the_error_ip_gre_sends() {
    let mut dp = Dp::new();
    dp.tunnel(Some(42), TunnelFlags::empty());
    dp.peer(0, &[1, 1]);
    // Striped over two paths: the smaller MTU holds for both.
    set_path_mtu(&mut dp, 0, 0, 1400, 600);
    set_path_mtu(&mut dp, 0, 1, 1300, 600);
    let inner_mtu = 1300 - 28;
    let big = inner_v4(inner_mtu + 1, true);
    let (ret, out) = dp.tx(&tunnel_frame(&big), 1);
    assert_eq!(ret, TC_ACT_REDIRECT, "into the tunnel device; drops {:?}", dp.drops());
    assert_eq!(hexdump(&out), hexdump(&frag_needed(&big, inner_mtu as u16)));
    assert_eq!(event(&dp, PmtuEvent::FragNeededSent), 1);
    // At the MTU it leaves, with DF.
    let (ret, out) = dp.tx(&tunnel_frame(&inner_v4(inner_mtu, true)), 1);
    assert_eq!((ret, out.len()), (TC_ACT_REDIRECT, 14 + 1300), "sent whole");
    assert_eq!(out[14 + 6] & 0x40, 0x40, "DF set");
    // Without DF, too big: it leaves with DF clear and an ID to be
    // reassembled by, for the underlay to fragment.
    let (ret, out) = dp.tx(&tunnel_frame(&inner_v4(1400, false)), 1);
    assert_eq!((ret, out.len()), (TC_ACT_REDIRECT, 14 + 1428));
    assert_eq!(out[14 + 6] & 0x40, 0, "DF clear");
    assert_eq!(event(&dp, PmtuEvent::DfCleared), 1);
    // IPv6 never hears of an MTU below 1280 (RFC 8200 section 5): over a
    // path that cannot carry 1280, the tunnel has the underlay fragment.
    let big6 = ipv6(INNER6_SRC, INNER6_DST, 0, &[9; 1300]);
    let (ret, out) = dp.tx(&eth(TUN_MAC, TUN_MAC, 0x86dd, &big6), 1);
    assert_eq!((ret, out.len(), out[14 + 6] & 0x40), (TC_ACT_REDIRECT, 14 + 28 + big6.len(), 0), "sent with DF clear");
    // Over paths that can: Packet Too Big.
    set_path_mtu(&mut dp, 0, 1, 1400, 600);
    let big6 = ipv6(INNER6_SRC, INNER6_DST, 0, &[9; 1400]);
    let (ret, out) = dp.tx(&eth(TUN_MAC, TUN_MAC, 0x86dd, &big6), 1);
    assert_eq!(ret, TC_ACT_REDIRECT);
    let ip6 = &out[14..];
    assert_eq!((ip6[6], &ip6[8..24], &ip6[24..40]), (58, &INNER6_DST[..], &INNER6_SRC[..]), "ICMPv6 from the destination to the sender");
    assert_eq!((ip6[40], ip6[41], u32::from_be_bytes(ip6[44..48].try_into().unwrap())), (2, 0, 1400 - 28), "Packet Too Big");
    assert_eq!(&ip6[48..], &big6[..1232], "quoting as much as fits in 1280 bytes");
    let mut pseudo = ip6[8..40].to_vec();
    pseudo.extend((ip6.len() as u32 - 40).to_be_bytes());
    pseudo.extend([0, 0, 0, 58]);
    pseudo.extend(&ip6[40..]);
    assert_eq!(sum16(&pseudo), 0, "ICMPv6 checksum");
    // Expired: the links' MTU again.
    set_path_mtu(&mut dp, 0, 0, 1400, 0);
    set_path_mtu(&mut dp, 0, 1, 1300, 0);
    let (ret, out) = dp.tx(&tunnel_frame(&big), 1);
    assert_eq!((ret, out.len()), (TC_ACT_REDIRECT, 14 + 28 + big.len()), "expired entries hold no more");
}

#[test]
fn pmtu_discovery_off_sends_everything_with_df_clear_and_answers_nothing() {
    let mut dp = Dp::new();
    dp.tunnel(Some(42), TunnelFlags::NO_PMTUDISC);
    dp.peer(0, &[1]);
    set_path_mtu(&mut dp, 0, 0, 1300, 600);
    let mut ids = Vec::new();
    for len in [100, 1400] {
        let (ret, out) = dp.tx(&tunnel_frame(&inner_v4(len, true)), 1);
        assert_eq!((ret, out.len()), (TC_ACT_REDIRECT, 14 + 28 + len));
        assert_eq!(out[14 + 6] & 0x40, 0, "DF clear");
        ids.push(u16::from_be_bytes([out[18], out[19]]));
    }
    assert_ne!(ids[0], ids[1], "fragmentable datagrams get distinct IDs (RFC 6864)");
    assert_eq!(event(&dp, PmtuEvent::FragNeededSent), 0);
}

#[test]
fn outer_fragments_of_a_configured_peer_go_to_the_stack_others_are_dropped() {
    let inner = inner_packet(64, 0);
    let g = Gre { proto: 0x0800, key: Some(42), ..Default::default() };
    for (known, want_xdp, want_tc) in [(true, XDP_PASS, TC_ACT_OK), (false, XDP_DROP, TC_ACT_SHOT)] {
        let mut dp = Dp::new();
        dp.tunnel(Some(42), TunnelFlags::empty());
        dp.peer(0, &[1]);
        if known {
            let mut pairs: aya::maps::HashMap<&mut MapData, OuterPair, u32> = dp.ebpf.map_mut(MAP_OUTER_PAIRS).unwrap().try_into().unwrap();
            pairs.insert(OuterPair { local: v4_mapped(LOCAL), remote: v4_mapped(REMOTE) }, 1, 0).unwrap();
        }
        // MF set; then a non-zero offset.
        for frags in [0x2000, 0x0010] {
            let frame = gre_frame(REMOTE, LOCAL, frags, g, &inner);
            if let Some(xdp) = xdp_meta() {
                assert_eq!(dp.run(xdp, &frame, None).0, want_xdp, "known {known}, frags {frags:#x}");
            }
            assert_eq!(dp.run(PROG_RX_TC, &frame, Some(&skb_ctx(1, 1))).0, want_tc, "known {known}, frags {frags:#x}");
        }
        let (passed, dropped) = (event(&dp, PmtuEvent::FragmentIn), dp.drops().get("fragment").copied().unwrap_or(0));
        let runs = 2 * rx_hooks().len() as u64;
        assert_eq!((passed, dropped), if known { (runs, 0) } else { (0, runs) }, "known {known}");
    }
}
