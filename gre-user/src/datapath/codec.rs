//! Between config terms and map values: addresses, names, hooks, peers
//! and the tunnel entry, both ways. Pure functions; nothing here touches
//! the kernel.

use gre_common::{PathFlags, PeerFlags, TunnelFlags};
use std::{collections::BTreeMap, net::IpAddr};

use ipnet::IpNet;

use gre_common::*;

use crate::{
    config::{Config, KeepaliveMode, Mode, Origin, PeerConfig, RxHook, TunnelConfig, MAX_WEIGHT},
    net::netlink::Link,
};

pub fn addr16(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(v4) => v4_mapped(v4.octets()),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// An address as the maps store it back to an `IpAddr` (IPv4-mapped ones
/// as IPv4).
pub fn ip16(a: [u8; 16]) -> IpAddr {
    let v6 = std::net::Ipv6Addr::from(a);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

pub fn name16(name: &str) -> [u8; 16] {
    let mut n = [0u8; 16];
    n[..name.len().min(15)].copy_from_slice(&name.as_bytes()[..name.len().min(15)]);
    n
}

pub fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// MTU of the hidden veth end behind a tunnel of `mtu`. Packets cross to
/// it already decided but not yet encapsulated, so the tunnel's MTU would
/// do; what matters is the margin, by which `xgre_tx` knows how long a
/// packet must be for veth to drop it (and count it as the tunnel's
/// tx_dropped).
pub fn hidden_mtu(mtu: u32) -> u32 {
    (mtu + 128).min(65535)
}

/// Name of the hidden veth end behind tunnel `name`.
pub fn hidden_name(name: &str) -> String {
    if name.len() <= 12 {
        format!("{name}-xg")
    } else {
        let h = name.bytes().fold(5381u32, |h, c| h.wrapping_mul(33) ^ c as u32);
        format!("xg{h:08x}")
    }
}

pub fn hook_name(h: u32) -> &'static str {
    match h {
        HOOK_XDP => "xdp",
        HOOK_TC => "tc",
        _ => "?",
    }
}

/// A path as the datapath wants it, from the config plus what the kernel
/// told us (link index and MAC, neighbour MAC).
pub fn build_peer(id: u32, tunnel_ifindex: u32, cfg: &Config, peer: &PeerConfig, links: &BTreeMap<String, Link>, macs: &[[u8; 6]]) -> Peer {
    let flags = if peer.origin == Origin::Mesh { PeerFlags::MESH } else { PeerFlags::empty() };
    let mut p = Peer { id, tunnel_ifindex, npaths: peer.paths.len() as u32, flags, ..Default::default() };
    let weights = path_weights(peer);
    for (j, pc) in peer.paths.iter().enumerate() {
        let link = &links[&pc.link];
        let lc = cfg.link(&pc.link).expect("validated");
        p.paths[j] = Path {
            ifindex: link.index,
            flags: PathFlags::UP,
            local: addr16(lc.address),
            remote: addr16(pc.remote),
            src_mac: link.mac,
            dst_mac: macs[j],
            weight: weights[j],
            rate_kbps: pc.rate.map_or(0, |r| r.kbps),
        };
    }
    let n = peer.name.as_bytes();
    p.name[..n.len().min(31)].copy_from_slice(&n[..n.len().min(31)]);
    p
}

pub fn hook_cfg(r: RxHook) -> u32 {
    match r {
        RxHook::Auto => 0,
        RxHook::Xdp => HOOK_XDP,
        RxHook::Tc => HOOK_TC,
    }
}

/// The datapath's weight of each path of `peer`: its `weight`, or, with
/// rates (shares with units), the rate scaled so the fastest path weighs
/// MAX_WEIGHT.
pub fn path_weights(peer: &PeerConfig) -> Vec<u32> {
    let top = peer.paths.iter().filter_map(|p| p.rate).map(|r| r.kbps as u64).max().unwrap_or(1);
    peer.paths
        .iter()
        .map(|pc| match pc.rate {
            Some(r) => ((r.kbps as u64 * MAX_WEIGHT as u64 + top / 2) / top).max(1) as u32,
            None => pc.weight,
        })
        .collect()
}

/// Tunnel-wide settings into the tunnel's map value.
pub fn tunnel_value(cfg: &Config, base: Tunnel) -> Tunnel {
    let t = &cfg.tunnel;
    let mut flags = TunnelFlags::empty();
    if t.key.is_some() {
        flags |= TunnelFlags::KEY;
    }
    if cfg.is_trunk() {
        // Every frame carries a key, the one of its VLAN.
        flags |= TunnelFlags::KEY | TunnelFlags::TRUNK;
    }
    if t.sequence {
        flags |= TunnelFlags::SEQ;
    }
    if t.ip_id_sequence {
        flags |= TunnelFlags::IPID_SEQ;
    } else if cfg.auto_ip_id_sequence() {
        flags |= TunnelFlags::IPID_SEQ_TX;
    }
    if t.resequence.is_none() {
        flags |= TunnelFlags::RESEQ_ANNOUNCED;
    }
    if t.checksum {
        flags |= TunnelFlags::CSUM;
    }
    if t.vsid.is_some() {
        flags |= TunnelFlags::NVGRE;
    }
    if cfg.underlay6() {
        flags |= TunnelFlags::UNDERLAY6;
    }
    if !t.device_counters {
        flags |= TunnelFlags::NO_DEV_COUNTERS;
    }
    if t.arp_suppress {
        flags |= TunnelFlags::ARP_SUPPRESS;
    }
    if !t.pmtu_discovery {
        flags |= TunnelFlags::NO_PMTUDISC;
    }
    Tunnel {
        mode: match t.mode {
            Mode::Gre => MODE_GRE,
            Mode::Gretap => MODE_GRETAP,
        },
        flags,
        key: match t.vsid {
            Some(v) => v << 8,
            None => t.key.unwrap_or(0),
        },
        fdb_age: t.fdb_age,
        pmtu_age: t.pmtu_age,
        mtu_cfg: t.mtu.unwrap_or(0),
        stripe_burst: t.stripe_burst.unwrap_or(0),
        tcp_reordering: t.tcp_reordering.map_or(0, |n| n as u16 + 1),
        keepalive: t.keepalive,
        keepalive_misses: t.keepalive_misses,
        config_hash: cfg.fingerprint(),
        ..base
    }
}

/// The tunnel entry back in config terms, for `show` and `status` alike.
/// The inner addresses live on the device, not in the entry.
pub fn tunnel_config(name: &str, t: &Tunnel, address: Vec<IpNet>) -> TunnelConfig {
    let nvgre = t.flags.intersects(TunnelFlags::NVGRE);
    TunnelConfig {
        name: name.to_string(),
        mode: if t.mode == MODE_GRETAP { Mode::Gretap } else { Mode::Gre },
        address,
        mtu: (t.mtu_cfg != 0).then_some(t.mtu_cfg),
        key: (t.flags.intersects(TunnelFlags::KEY) && !nvgre && !t.flags.intersects(TunnelFlags::TRUNK)).then_some(t.key),
        // Trunks keep their pairs in `XGRE_VLANS` (`state::show` adds them).
        native_key: None,
        vlans: vec![],
        arp_suppress: t.flags.intersects(TunnelFlags::ARP_SUPPRESS),
        // Static neighbours live in `XGRE_NEIGH` (`state::show` adds them).
        neighbors: vec![],
        vsid: nvgre.then_some(t.key >> 8),
        fdb_age: if t.fdb_age == 0 { DEFAULT_FDB_AGE } else { t.fdb_age },
        pmtu_discovery: !t.flags.intersects(TunnelFlags::NO_PMTUDISC),
        pmtu_age: if t.pmtu_age == 0 { gre_common::pmtu::DEFAULT_PMTU_AGE } else { t.pmtu_age },
        sequence: t.flags.intersects(TunnelFlags::SEQ),
        ip_id_sequence: t.flags.intersects(TunnelFlags::IPID_SEQ),
        checksum: t.flags.intersects(TunnelFlags::CSUM),
        stripe_burst: (t.stripe_burst != 0).then_some(t.stripe_burst),
        tcp_reordering: t.tcp_reordering.checked_sub(1).map(u32::from),
        // A setting of `xgre run`'s, not of the datapath: the entry has no
        // room for it, and nothing resequences without `run` anyway.
        resequence: None,
        repair: true,
        keepalive: t.keepalive,
        keepalive_misses: t.keepalive_misses,
        device_counters: !t.flags.intersects(TunnelFlags::NO_DEV_COUNTERS),
    }
}

/// The static `XGRE_NEIGH` entries of `[[tunnel.neighbor]]`: behind the
/// tunnel, so answered for, and never aged.
pub fn neigh_entries(cfg: &Config, tunnel_ifindex: u32) -> Vec<(NeighKey, NeighEntry)> {
    cfg.tunnel
        .neighbors
        .iter()
        .map(|n| {
            (
                NeighKey { tunnel_ifindex, vid: n.vid, _pad: 0, addr: addr16(n.ip) },
                NeighEntry { mac: n.mac.0, flags: NEIGH_REMOTE, seen_ns: FDB_STATIC },
            )
        })
        .collect()
}

/// A trunk's `XGRE_VLANS` entries, both ways.
pub fn vlan_entries(cfg: &Config, tunnel_ifindex: u32) -> Vec<(VlanMapKey, u32)> {
    let t = &cfg.tunnel;
    let pairs = t.vlans.iter().map(|v| (v.vid as u32, v.key)).chain(t.native_key.map(|k| (0, k)));
    pairs
        .flat_map(|(vid, key)| {
            [
                (VlanMapKey { tunnel_ifindex, dir: VLAN_TO_KEY, id: vid }, key),
                (VlanMapKey { tunnel_ifindex, dir: KEY_TO_VLAN, id: key }, vid),
            ]
        })
        .collect()
}

/// A peer's keepalive mode, kept in its paths' flags.
pub fn keepalive_flags(m: KeepaliveMode) -> PathFlags {
    match m {
        KeepaliveMode::Auto => PathFlags::empty(),
        KeepaliveMode::Required => PathFlags::KA_REQUIRED,
        KeepaliveMode::Off => PathFlags::KA_OFF,
    }
}

/// ... and back.
pub fn keepalive_mode(path_flags: PathFlags) -> KeepaliveMode {
    match path_flags {
        f if f.intersects(PathFlags::KA_OFF) => KeepaliveMode::Off,
        f if f.intersects(PathFlags::KA_REQUIRED) => KeepaliveMode::Required,
        _ => KeepaliveMode::Auto,
    }
}

/// Which paths carry traffic: the healthy ones, except that a standby path
/// carries only while no other path is healthy. The datapath sees only the
/// result (`PathFlags::UP`), so it pays nothing for backups.
pub fn in_rotation(healthy: &[bool], standby: &[bool]) -> Vec<bool> {
    let primary_ok = healthy.iter().zip(standby).any(|(&h, &s)| h && !s);
    healthy.iter().zip(standby).map(|(&h, &s)| h && (!s || !primary_ok)).collect()
}

#[cfg(test)]
mod tests {
    use super::path_weights;
    use crate::config::{Config, Mode, Rate};

    #[test]
    fn rates_become_weights_in_proportion() {
        let c = Config::new("t", Mode::Gre).with_peer("p", &[], &[("e0", "198.18.0.1"), ("e1", "198.18.1.1"), ("e2", "198.18.2.1")]);
        let mut p = c.peers[0].clone();
        assert_eq!(path_weights(&p), [1, 1, 1]);
        for (pc, r) in p.paths.iter_mut().zip(["300mbit", "100mbit", "1kbit"]) {
            pc.rate = Some(r.parse::<Rate>().unwrap());
        }
        // 3:1 as the rates say; a path far slower still gets a share.
        assert_eq!(path_weights(&p), [1000, 333, 1]);
    }
}
