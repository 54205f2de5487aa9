//! What changing a running tunnel from one config to another takes, as a
//! list of steps in the order they must run: pure, so the order and the
//! "only what differs" rule are unit-tested without a kernel. `state`
//! executes the steps.
//!
//! The order keeps the datapath consistent at every step: links attach
//! before peers use them and detach after the peers that used them are
//! gone; a tunnel's new keys and VLANs are in the tables before its entry
//! names them, and old ones leave after; per-packet segmentation is on
//! before a numbered entry lets bursts through.

use ipnet::IpNet;

use crate::config::{Config, LinkConfig, PeerConfig};

#[derive(Debug, Clone, PartialEq)]
pub enum Step<'a> {
    /// Attach a link that is new to the tunnel, or whose address or hook
    /// changed (`replaces`: detach the old attachment first).
    AttachLink {
        link: &'a LinkConfig,
        replaces: bool,
    },
    AddPeer(&'a PeerConfig),
    ChangePeer {
        old: &'a PeerConfig,
        new: &'a PeerConfig,
    },
    /// Only the peer's kernel routes: a tunnel-wide `tcp_reordering`
    /// change rewrites the routes of peers that did not change.
    Reroute {
        old: &'a PeerConfig,
        new: &'a PeerConfig,
    },
    RemovePeer(&'a PeerConfig),
    DetachLink(&'a str),
    AddAddress {
        index: usize,
        addr: IpNet,
    },
    DelAddress(IpNet),
    /// The tunnel's MTU and its hidden veth's, from the links and headers.
    SetMtu,
    /// TSO off (`true`: every packet segmented before the tunnel numbers
    /// it) or back on.
    SegmentPerPacket(bool),
    SetGsoMaxSegs(u32),
    /// Write the tunnel's entry; `keys`: its VLAN and key tables changed
    /// too (new entries go in before it, old ones leave after).
    Tunnel {
        keys: bool,
    },
    Neighbours,
    ArpSuppress(bool),
    /// Rebuild the replication lists (peers or groups changed).
    Flood,
}

/// The steps from `have` to `want`. `per_packet_now`: whether the
/// running device segments per packet (from its entry: edits since `up`
/// may have changed what `have` alone would say).
pub fn plan<'a>(have: &'a Config, want: &'a Config, per_packet_now: bool) -> Vec<Step<'a>> {
    let mut steps = Vec::new();
    for link in &want.links {
        if have.links.iter().all(|l| !l.same_hook(link)) {
            let replaces = have.links.iter().any(|l| l.dev == link.dev);
            steps.push(Step::AttachLink { link, replaces });
        }
    }
    let had = |name: &str| have.peers.iter().find(|o| o.name == name);
    steps.extend(want.peers.iter().filter(|p| had(&p.name).is_none()).map(Step::AddPeer));
    for new in &want.peers {
        let Some(old) = had(&new.name) else { continue };
        if old != new {
            steps.push(Step::ChangePeer { old, new });
        } else if have.peer_routes(old) != want.peer_routes(new) {
            steps.push(Step::Reroute { old, new });
        }
    }
    steps.extend(have.peers.iter().filter(|o| want.peers.iter().all(|p| p.name != o.name)).map(Step::RemovePeer));
    for old in &have.links {
        if want.links.iter().all(|l| l.dev != old.dev) {
            steps.push(Step::DetachLink(&old.dev));
        }
    }
    let (ht, wt) = (&have.tunnel, &want.tunnel);
    for (index, addr) in wt.address.iter().enumerate().filter(|(_, a)| !ht.address.contains(a)) {
        steps.push(Step::AddAddress { index, addr: *addr });
    }
    steps.extend(ht.address.iter().filter(|a| !wt.address.contains(a)).map(|a| Step::DelAddress(*a)));
    if wt.mtu != ht.mtu || want.overhead() != have.overhead() {
        steps.push(Step::SetMtu);
    }
    let per_packet = want.segments_per_packet();
    if per_packet && !per_packet_now {
        steps.push(Step::SegmentPerPacket(true));
    }
    if want.gso_max_segs() != have.gso_max_segs() {
        steps.push(Step::SetGsoMaxSegs(want.gso_max_segs().unwrap_or(65535)));
    }
    let keys = want.key_lookups() != have.key_lookups() || wt.native_key != ht.native_key || wt.vlans != ht.vlans;
    steps.push(Step::Tunnel { keys });
    if !per_packet && per_packet_now {
        steps.push(Step::SegmentPerPacket(false));
    }
    if wt.neighbors != ht.neighbors {
        steps.push(Step::Neighbours);
    }
    if wt.arp_suppress != ht.arp_suppress {
        steps.push(Step::ArpSuppress(wt.arp_suppress));
    }
    if want.peers.iter().map(|p| &p.name).ne(have.peers.iter().map(|p| &p.name)) || want.groups != have.groups {
        steps.push(Step::Flood);
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Mode, RxHook};

    fn base() -> Config {
        let text = r#"
            [tunnel]
            name = "gre1"
            mode = "gre"
            address = ["198.18.10.1/24"]
            [[link]]
            dev = "eth0"
            address = "198.18.0.1"
            [[link]]
            dev = "eth1"
            address = "198.18.1.1"
            [[peer]]
            name = "b"
            routes = ["198.18.20.0/24"]
            path = [{ link = "eth0", remote = "198.18.0.2" }]
            [[peer]]
            name = "c"
            routes = ["198.18.30.0/24"]
            path = [{ link = "eth0", remote = "198.18.0.3" }, { link = "eth1", remote = "198.18.1.3" }]
        "#;
        let c: Config = toml::from_str(text).unwrap();
        c.validate("test").unwrap();
        c
    }

    fn names(steps: &[Step]) -> Vec<String> {
        steps
            .iter()
            .map(|s| match s {
                Step::AttachLink { link, replaces } => format!("attach {}{}", link.dev, if *replaces { " (replace)" } else { "" }),
                Step::AddPeer(p) => format!("add {}", p.name),
                Step::ChangePeer { new, .. } => format!("change {}", new.name),
                Step::Reroute { new, .. } => format!("reroute {}", new.name),
                Step::RemovePeer(p) => format!("remove {}", p.name),
                Step::DetachLink(d) => format!("detach {d}"),
                Step::AddAddress { addr, .. } => format!("+addr {addr}"),
                Step::DelAddress(a) => format!("-addr {a}"),
                Step::SetMtu => "mtu".into(),
                Step::SegmentPerPacket(on) => format!("per-packet {on}"),
                Step::SetGsoMaxSegs(n) => format!("gso {n}"),
                Step::Tunnel { keys } => format!("tunnel{}", if *keys { " +keys" } else { "" }),
                Step::Neighbours => "neighbours".into(),
                Step::ArpSuppress(on) => format!("arp_suppress {on}"),
                Step::Flood => "flood".into(),
            })
            .collect()
    }

    #[test]
    fn the_same_config_only_rewrites_the_tunnel_entry() {
        let c = base();
        assert_eq!(names(&plan(&c, &c, false)), ["tunnel"]);
    }

    #[test]
    fn links_attach_before_peers_and_detach_after_them() {
        let have = base();
        let mut want = base();
        want.links.push(LinkConfig { dev: "eth2".into(), address: "198.18.2.1".parse().unwrap(), rx: RxHook::Auto, weight: 1, rate: None });
        want.peers[0].paths = vec![toml::from_str(
            r#"link = "eth2"
            remote = "198.18.2.2""#,
        )
        .unwrap()];
        want.peers[1].paths.truncate(1);
        want.links.retain(|l| l.dev != "eth1");
        let got = names(&plan(&have, &want, false));
        let at = |s: &str| got.iter().position(|g| g == s).unwrap_or_else(|| panic!("{s} not in {got:?}"));
        assert!(at("attach eth2") < at("change b"));
        assert!(at("change c") < at("detach eth1"));
    }

    #[test]
    fn a_changed_hook_replaces_the_attachment() {
        let have = base();
        let mut want = base();
        want.links[1].rx = RxHook::Tc;
        assert_eq!(names(&plan(&have, &want, false))[0], "attach eth1 (replace)");
    }

    #[test]
    fn peers_are_added_changed_and_removed_by_name_alone() {
        let have = base();
        let mut want = base();
        want.peers[0].routes.push("198.18.21.0/24".parse().unwrap());
        want.peers.remove(1);
        let mut d = want.peers[0].clone();
        d.name = "d".into();
        d.routes = vec!["198.18.40.0/24".parse().unwrap()];
        d.paths[0].remote = "198.18.0.4".parse().unwrap();
        want.peers.push(d);
        // c was the one peer striping over two paths: bursts need no bound now.
        assert_eq!(names(&plan(&have, &want, false)), ["add d", "change b", "remove c", "gso 65535", "tunnel", "flood"]);
    }

    #[test]
    fn tcp_reordering_reroutes_only_striping_peers() {
        let have = base();
        let mut want = base();
        want.tunnel.tcp_reordering = Some(100);
        // b has one path: its routes carry no metric.
        assert_eq!(names(&plan(&have, &want, false)), ["reroute c", "tunnel"]);
    }

    #[test]
    fn addresses_and_mtu_change_in_place() {
        let have = base();
        let mut want = base();
        want.tunnel.address = vec!["198.18.11.1/24".parse().unwrap()];
        want.tunnel.mtu = Some(1400);
        assert_eq!(names(&plan(&have, &want, false)), ["+addr 198.18.11.1/24", "-addr 198.18.10.1/24", "mtu", "tunnel"]);
    }

    #[test]
    fn numbering_segments_before_the_entry_and_stops_after_it() {
        let have = base();
        let mut want = base();
        want.tunnel.sequence = true;
        let on = names(&plan(&have, &want, false));
        assert_eq!(on[..3], ["mtu", "per-packet true", "tunnel"]);
        let off = names(&plan(&want, &have, true));
        assert_eq!(off[..3], ["mtu", "tunnel", "per-packet false"]);
        // The device already segments (an edit since `up`): nothing to do.
        assert!(!names(&plan(&have, &want, true)).iter().any(|s| s.starts_with("per-packet")));
    }

    #[test]
    fn a_new_key_is_a_key_change() {
        let have = base();
        let mut want = base();
        want.tunnel.key = Some(7);
        let got = names(&plan(&have, &want, false));
        assert!(got.contains(&"tunnel +keys".to_string()), "{got:?}");
        assert!(got.contains(&"mtu".to_string()), "a key adds 4 bytes of header: {got:?}");
    }

    #[test]
    fn gretap_only_steps() {
        let mut have = base();
        have.tunnel.mode = Mode::Gretap;
        let mut want = have.clone();
        want.tunnel.arp_suppress = !have.tunnel.arp_suppress;
        want.tunnel.neighbors = vec![toml::from_str(
            r#"ip = "198.18.10.2"
            mac = "02:00:00:00:00:02""#,
        )
        .unwrap()];
        assert_eq!(
            names(&plan(&have, &want, false)),
            ["tunnel", "neighbours", format!("arp_suppress {}", want.tunnel.arp_suppress).as_str()]
        );
    }

    #[test]
    fn groups_rebuild_the_flood_lists() {
        let have = base();
        let mut want = base();
        want.groups = vec![toml::from_str(
            r#"address = "239.1.1.1"
            peers = ["b"]"#,
        )
        .unwrap()];
        assert_eq!(names(&plan(&have, &want, false)), ["tunnel", "flood"]);
    }
}
