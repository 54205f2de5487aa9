//! Devices, addresses, routes, neighbours and program attachment, all over
//! rtnetlink.
//!
//! Programs are attached through netlink (XDP via IFLA_XDP, TC as a clsact
//! `bpf` filter) rather than as bpf_link objects: such an attachment lives
//! as long as the device, so the datapath keeps forwarding after `xgre`
//! exits without any pin, even under `ip netns exec` where a bpffs mounted
//! by the process vanishes with it.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr},
    os::fd::RawFd,
};

use anyhow::{anyhow, bail, Context, Result};
use futures::TryStreamExt;
use ipnet::IpNet;
use netlink_packet_route::{
    link::{LinkAttribute, LinkFlags, LinkInfo, LinkMessage, LinkXdp},
    neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourState},
    route::{RouteAddress, RouteAttribute, RouteMetric, RouteProtocol},
    tc::{TcAttribute, TcBpfFlags, TcFilterBpfOption, TcHandle, TcMessage, TcOption},
    RouteNetlinkMessage,
};
use rtnetlink::{
    packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST},
    Handle, LinkUnspec, LinkVeth, RouteMessageBuilder,
};

/// XDP attach modes (include/uapi/linux/if_link.h).
pub const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// Priority and handle of our TC filters, so we find and remove exactly ours.
const FILTER_PRIO: u16 = 0x2e47; // "GRE"-ish; anything stable works
const FILTER_HANDLE: u32 = 1;
const ETH_P_ALL: u16 = 0x0003;

/// What we need to know about a network device.
#[derive(Debug, Clone)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mtu: u32,
    pub mac: [u8; 6],
    /// rtnetlink kind (`veth`, `bridge`, ...); `None` for physical NICs.
    pub kind: Option<String>,
    pub up: bool,
    pub lower_up: bool,
    pub xdp_prog_id: Option<u32>,
    /// Receive queues the device has (allocated; some may be unused).
    pub rx_queues: u32,
}

impl Link {
    fn from_message(m: &LinkMessage) -> Link {
        let mut l = Link {
            index: m.header.index,
            name: String::new(),
            mtu: 0,
            mac: [0; 6],
            kind: None,
            up: m.header.flags.contains(LinkFlags::Up),
            lower_up: m.header.flags.contains(LinkFlags::LowerUp),
            xdp_prog_id: None,
            rx_queues: 1,
        };
        for a in &m.attributes {
            match a {
                LinkAttribute::IfName(n) => l.name = n.clone(),
                LinkAttribute::Mtu(v) => l.mtu = *v,
                LinkAttribute::NumRxQueues(n) => l.rx_queues = *n,
                LinkAttribute::Address(a) if a.len() == 6 => l.mac.copy_from_slice(a),
                LinkAttribute::LinkInfo(infos) => {
                    for i in infos {
                        if let LinkInfo::Kind(k) = i {
                            l.kind = Some(k.to_string());
                        }
                    }
                }
                LinkAttribute::Xdp(x) => {
                    for i in x {
                        if let LinkXdp::ProgId(id) = i {
                            if *id != 0 {
                                l.xdp_prog_id = Some(*id);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        l
    }
}

pub struct Netlink {
    handle: Handle,
}

fn is_errno(e: &rtnetlink::Error, errno: i32) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -errno)
}

impl Netlink {
    /// Open a netlink socket in the current network namespace. Needs a tokio
    /// runtime: the connection runs as a task.
    pub fn new() -> Result<Netlink> {
        let (conn, handle, _) = rtnetlink::new_connection().context("opening an rtnetlink socket")?;
        tokio::spawn(conn);
        Ok(Netlink { handle })
    }

    /// Every link change in this namespace (RTNLGRP_LINK), as it happens:
    /// a device added, removed, set up or down, or losing carrier.
    pub fn link_events(&self) -> Result<futures::channel::mpsc::UnboundedReceiver<impl Sized>> {
        let (conn, _, events) =
            rtnetlink::new_multicast_connection(&[rtnetlink::MulticastGroup::Link]).context("subscribing to rtnetlink link events")?;
        tokio::spawn(conn);
        Ok(events)
    }

    pub async fn link(&self, name: &str) -> Result<Option<Link>> {
        let mut s = self.handle.link().get().match_name(name.to_string()).execute();
        match s.try_next().await {
            Ok(Some(m)) => Ok(Some(Link::from_message(&m))),
            Ok(None) => Ok(None),
            Err(e) if is_errno(&e, libc::ENODEV) => Ok(None),
            Err(e) => Err(e).with_context(|| format!("looking up device {name}")),
        }
    }

    /// Every device of this namespace (one dump).
    pub async fn links(&self) -> Result<Vec<Link>> {
        let mut out = Vec::new();
        let mut s = self.handle.link().get().execute();
        while let Some(m) = s.try_next().await.context("listing devices")? {
            out.push(Link::from_message(&m));
        }
        Ok(out)
    }

    pub async fn link_by_index(&self, index: u32) -> Result<Option<Link>> {
        let mut s = self.handle.link().get().match_index(index).execute();
        match s.try_next().await {
            Ok(Some(m)) => Ok(Some(Link::from_message(&m))),
            Ok(None) => Ok(None),
            Err(e) if is_errno(&e, libc::ENODEV) => Ok(None),
            Err(e) => Err(e).with_context(|| format!("looking up device #{index}")),
        }
    }

    /// Create a veth pair: `name` is the device users see, `peer` the hidden
    /// end. `gso_max_segs` bounds the GSO packets the stack builds for it.
    pub async fn create_veth(&self, name: &str, peer: &str, mtu: u32, gso_max_segs: Option<u32>) -> Result<()> {
        let mut b = LinkVeth::new(name, peer).mtu(mtu);
        if let Some(s) = gso_max_segs {
            b = b.append_extra_attribute(LinkAttribute::GsoMaxSegs(s));
        }
        self.handle.link().add(b.build()).execute().await.with_context(|| format!("creating device {name}"))
    }

    pub async fn set_link(&self, index: u32, up: bool, arp: bool, mtu: u32) -> Result<()> {
        let b = LinkUnspec::new_with_index(index).arp(arp).mtu(mtu);
        let b = if up { b.up() } else { b.down() };
        self.handle.link().set(b.build()).execute().await.with_context(|| format!("configuring device #{index}"))
    }

    pub async fn del_link(&self, index: u32) -> Result<()> {
        match self.handle.link().del(index).execute().await {
            Ok(()) => Ok(()),
            Err(e) if is_errno(&e, libc::ENODEV) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("deleting device #{index}")),
        }
    }

    pub async fn add_address(&self, index: u32, net: IpNet) -> Result<()> {
        match self.handle.address().add(index, net.addr(), net.prefix_len()).execute().await {
            Ok(()) => Ok(()),
            Err(e) if is_errno(&e, libc::EEXIST) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("adding address {net}")),
        }
    }

    pub async fn set_mtu(&self, index: u32, mtu: u32) -> Result<()> {
        let m = LinkUnspec::new_with_index(index).mtu(mtu).build();
        self.handle.link().set(m).execute().await.with_context(|| format!("setting the MTU of device #{index}"))
    }

    pub async fn set_gso_max_segs(&self, index: u32, segs: u32) -> Result<()> {
        let m = LinkUnspec::new_with_index(index).append_extra_attribute(LinkAttribute::GsoMaxSegs(segs)).build();
        self.handle.link().set(m).execute().await.with_context(|| format!("setting gso_max_segs of device #{index}"))
    }

    /// Up, with no ARP, and the queue `txqueuelen` long.
    pub async fn set_up_quiet(&self, index: u32, txqueuelen: u32) -> Result<()> {
        let m = LinkUnspec::new_with_index(index).arp(false).up().append_extra_attribute(LinkAttribute::TxQueueLen(txqueuelen)).build();
        self.handle.link().set(m).execute().await.with_context(|| format!("setting device #{index} up"))
    }

    /// Addresses on a device.
    pub async fn addresses(&self, index: u32) -> Result<Vec<IpNet>> {
        use netlink_packet_route::address::AddressAttribute;
        let mut out = Vec::new();
        let mut s = self.handle.address().get().set_link_index_filter(index).execute();
        while let Some(m) = s.try_next().await.context("listing addresses")? {
            if m.header.index != index {
                continue;
            }
            for a in &m.attributes {
                if let AddressAttribute::Address(ip) = a {
                    if let Ok(n) = IpNet::new(*ip, m.header.prefix_len) {
                        out.push(n);
                    }
                }
            }
        }
        Ok(out)
    }

    pub async fn del_address(&self, index: u32, net: IpNet) -> Result<()> {
        use netlink_packet_route::address::AddressAttribute;
        let mut s = self.handle.address().get().set_link_index_filter(index).execute();
        while let Some(m) = s.try_next().await.context("listing addresses")? {
            let hit = m.header.prefix_len == net.prefix_len()
                && m.attributes.iter().any(|a| matches!(a, AddressAttribute::Address(ip) if *ip == net.addr()));
            if hit {
                return self.handle.address().del(m).execute().await.with_context(|| format!("removing address {net}"));
            }
        }
        Ok(())
    }

    /// Remove xgre's route to `dst` out of `oif`. The kernel matches the
    /// protocol too, so a route anyone else installed is never removed.
    pub async fn del_route(&self, dst: IpNet, oif: u32) -> Result<()> {
        match self.handle.route().del(route_message(dst, oif)).execute().await {
            Ok(()) => Ok(()),
            Err(e) if is_errno(&e, libc::ESRCH) || is_errno(&e, libc::ENOENT) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("removing route {dst}")),
        }
    }

    /// A route to `dst` out of the tunnel `oif`, with TCP's `reordering`
    /// metric when given, marked as xgre's (`RTPROT_XGRE`). Ours already
    /// there is rewritten, so the metric follows the peer's paths and `up`
    /// twice changes nothing; anyone else's is never replaced.
    pub async fn add_route(&self, dst: IpNet, oif: u32, reordering: Option<u32>) -> Result<()> {
        let msg = || {
            let mut m = route_message(dst, oif);
            if let Some(n) = reordering {
                m.attributes.push(RouteAttribute::Metrics(vec![RouteMetric::Reordering(n)]));
            }
            m
        };
        match self.handle.route().add(msg()).execute().await {
            Ok(()) => Ok(()),
            Err(e) if is_errno(&e, libc::EEXIST) => {
                if let Some(theirs) = self.foreign_route(dst, oif).await? {
                    bail!("route {dst} would replace the host's route `{theirs}`; xgre never replaces a route it did not install");
                }
                self.handle.route().add(msg()).replace().execute().await.with_context(|| format!("rewriting route {dst}"))
            }
            Err(e) => Err(e).with_context(|| format!("adding route {dst}")),
        }
    }

    /// The host's own route to exactly `dst` in the main table (not one
    /// xgre installed out of `oif`), as `ip route` shows it.
    pub async fn foreign_route(&self, dst: IpNet, oif: u32) -> Result<Option<String>> {
        Ok(self.host_routes(oif).await?.remove(&dst))
    }

    /// Every route of the main table but the ones xgre installed out of
    /// `oif` (0: none), by prefix, as `ip route` shows them: one dump of
    /// each family, however many prefixes are checked against it.
    pub async fn host_routes(&self, oif: u32) -> Result<BTreeMap<IpNet, String>> {
        let mut out = BTreeMap::new();
        let mut names: BTreeMap<u32, String> = BTreeMap::new();
        let queries = [RouteMessageBuilder::<Ipv4Addr>::new().build(), RouteMessageBuilder::<std::net::Ipv6Addr>::new().build()];
        for query in queries {
            let mut routes = self.handle.route().get(query).execute();
            while let Some(r) = routes.try_next().await.context("listing the host's routes")? {
                if r.header.table != RT_TABLE_MAIN || (r.header.protocol == RTPROT_XGRE && oif != 0 && route_oif(&r) == oif) {
                    continue;
                }
                let (mut to, mut via) = (None, None);
                for a in &r.attributes {
                    match a {
                        RouteAttribute::Destination(d) => to = route_ip(d),
                        RouteAttribute::Gateway(g) => via = route_ip(g),
                        _ => {}
                    }
                }
                let v6 = r.header.address_family == netlink_packet_route::AddressFamily::Inet6;
                let to = to.unwrap_or(if v6 { IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED) } else { IpAddr::V4(Ipv4Addr::UNSPECIFIED) });
                let Ok(net) = IpNet::new(to, r.header.destination_prefix_length) else { continue };
                if out.contains_key(&net) {
                    continue;
                }
                let dev = route_oif(&r);
                if let std::collections::btree_map::Entry::Vacant(v) = names.entry(dev) {
                    v.insert(self.link_by_index(dev).await?.map(|l| l.name).unwrap_or_else(|| format!("#{dev}")));
                }
                let name = &names[&dev];
                let via = via.map(|g| format!(" via {g}")).unwrap_or_default();
                let proto = match r.header.protocol {
                    RTPROT_XGRE => "xgre".to_string(),
                    RouteProtocol::Other(n) => n.to_string(),
                    p => format!("{p:?}").to_lowercase(),
                };
                let shown = if net.prefix_len() == 0 { "default".to_string() } else { net.to_string() };
                out.insert(net, format!("{shown}{via} dev {name} proto {proto}"));
            }
        }
        Ok(out)
    }

    /// The neighbour the kernel sends to `dst` through: the gateway of the
    /// route it would take, or `dst` itself when that route is on-link.
    pub async fn next_hop(&self, dst: IpAddr) -> Result<IpAddr> {
        let query = match dst {
            IpAddr::V4(a) => RouteMessageBuilder::<Ipv4Addr>::new().destination_prefix(a, 32).build(),
            IpAddr::V6(a) => RouteMessageBuilder::<std::net::Ipv6Addr>::new().destination_prefix(a, 128).build(),
        };
        let mut r = self.handle.route().get(query).execute();
        let Some(m) = r.try_next().await.with_context(|| format!("looking up the route to {dst}"))? else { return Ok(dst) };
        let via = m.attributes.iter().find_map(|a| match a {
            RouteAttribute::Gateway(g) => route_ip(g),
            _ => None,
        });
        Ok(via.unwrap_or(dst))
    }

    /// The MAC the kernel's neighbour table holds for `ip` on `ifindex`.
    pub async fn neighbour(&self, ifindex: u32, ip: IpAddr) -> Result<Option<[u8; 6]>> {
        let mut s = self.handle.neighbours().get().execute();
        while let Some(m) = s.try_next().await.context("reading the neighbour table")? {
            if m.header.ifindex != ifindex {
                continue;
            }
            if matches!(m.header.state, NeighbourState::Incomplete | NeighbourState::Failed | NeighbourState::None) {
                continue;
            }
            let mut dst = None;
            let mut lladdr = None;
            for a in &m.attributes {
                match a {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => dst = Some(IpAddr::V4(*v4)),
                    NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => dst = Some(IpAddr::V6(*v6)),
                    NeighbourAttribute::LinkLayerAddress(l) if l.len() == 6 => {
                        let mut mac = [0; 6];
                        mac.copy_from_slice(l);
                        lladdr = Some(mac);
                    }
                    _ => {}
                }
            }
            if dst == Some(ip) {
                if let Some(mac) = lladdr {
                    return Ok(Some(mac));
                }
            }
        }
        Ok(None)
    }

    /// Attach (or with `fd = -1`, detach) an XDP program through IFLA_XDP.
    pub async fn xdp_set(&self, ifindex: u32, fd: RawFd, flags: u32) -> Result<()> {
        let msg = LinkUnspec::new_with_index(ifindex)
            .append_extra_attribute(LinkAttribute::Xdp(vec![LinkXdp::Fd(fd), LinkXdp::Flags(flags)]))
            .build();
        self.handle.link().set(msg).execute().await.map_err(|e| anyhow!("{e}"))
    }

    async fn tc_request(&self, msg: RouteNetlinkMessage, flags: u16) -> Result<Vec<TcMessage>, rtnetlink::Error> {
        let mut req = NetlinkMessage::from(msg);
        req.header.flags = NLM_F_REQUEST | flags;
        let mut handle = self.handle.clone();
        let mut resp = handle.request(req)?;
        let mut out = Vec::new();
        use futures::StreamExt;
        while let Some(m) = resp.next().await {
            match m.payload {
                NetlinkPayload::Error(e) => return Err(rtnetlink::Error::NetlinkError(e)),
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewTrafficFilter(t)) => out.push(t),
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewQueueDiscipline(t)) => out.push(t),
                _ => {}
            }
        }
        Ok(out)
    }

    /// Add a clsact qdisc; `Ok(false)` when the device has one already.
    pub async fn clsact_add(&self, ifindex: u32) -> Result<bool> {
        let mut m = TcMessage::with_index(ifindex as i32);
        m.header.parent = TcHandle::CLSACT;
        m.header.handle = TcHandle { major: 0xffff, minor: 0 };
        m.attributes.push(TcAttribute::Kind("clsact".into()));
        match self.tc_request(RouteNetlinkMessage::NewQueueDiscipline(m), NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL).await {
            Ok(_) => Ok(true),
            Err(e) if is_errno(&e, libc::EEXIST) => Ok(false),
            Err(e) => Err(e).with_context(|| format!("adding a clsact qdisc to device #{ifindex}")),
        }
    }

    pub async fn clsact_del(&self, ifindex: u32) -> Result<()> {
        let mut m = TcMessage::with_index(ifindex as i32);
        m.header.parent = TcHandle::CLSACT;
        m.header.handle = TcHandle { major: 0xffff, minor: 0 };
        m.attributes.push(TcAttribute::Kind("clsact".into()));
        match self.tc_request(RouteNetlinkMessage::DelQueueDiscipline(m), NLM_F_ACK).await {
            Ok(_) => Ok(()),
            Err(e) if is_errno(&e, libc::ENOENT) || is_errno(&e, libc::EINVAL) || is_errno(&e, libc::ENODEV) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("removing the clsact qdisc of device #{ifindex}")),
        }
    }

    fn filter_parent(egress: bool) -> TcHandle {
        TcHandle { major: 0xffff, minor: if egress { TcHandle::MIN_EGRESS } else { TcHandle::MIN_INGRESS } }
    }

    /// Attach a TC program in direct-action mode (replacing ours if present).
    pub async fn bpf_filter_add(&self, ifindex: u32, egress: bool, fd: RawFd, name: &str) -> Result<()> {
        self.bpf_filter_add_at(ifindex, egress, fd, name, FILTER_PRIO).await
    }

    /// Attach a TC program that runs before the one `bpf_filter_add`
    /// attaches, and hands it what it leaves alone (TC_ACT_UNSPEC).
    pub async fn bpf_filter_add_first(&self, ifindex: u32, egress: bool, fd: RawFd, name: &str) -> Result<()> {
        self.bpf_filter_add_at(ifindex, egress, fd, name, FILTER_PRIO - 1).await
    }

    async fn bpf_filter_add_at(&self, ifindex: u32, egress: bool, fd: RawFd, name: &str, prio: u16) -> Result<()> {
        let mut m = TcMessage::with_index(ifindex as i32);
        m.header.parent = Self::filter_parent(egress);
        m.header.handle = TcHandle::from(FILTER_HANDLE);
        m.header.info = ((prio as u32) << 16) | ETH_P_ALL.to_be() as u32;
        m.attributes.push(TcAttribute::Kind("bpf".into()));
        m.attributes.push(TcAttribute::Options(vec![
            TcOption::Bpf(TcFilterBpfOption::ProgFd(fd as u32)),
            TcOption::Bpf(TcFilterBpfOption::ProgName(name.into())),
            TcOption::Bpf(TcFilterBpfOption::Flags(TcBpfFlags::DirectAction)),
        ]));
        // NLM_F_REPLACE: attaching again (after an interrupted `up`) replaces
        // our filter instead of failing or adding a second one.
        self.tc_request(RouteNetlinkMessage::NewTrafficFilter(m), NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE)
            .await
            .with_context(|| format!("attaching {name} to device #{ifindex}"))?;
        Ok(())
    }

    pub async fn bpf_filter_del(&self, ifindex: u32, egress: bool) -> Result<()> {
        let mut m = TcMessage::with_index(ifindex as i32);
        m.header.parent = Self::filter_parent(egress);
        m.header.handle = TcHandle::from(FILTER_HANDLE);
        m.header.info = ((FILTER_PRIO as u32) << 16) | ETH_P_ALL.to_be() as u32;
        m.attributes.push(TcAttribute::Kind("bpf".into()));
        match self.tc_request(RouteNetlinkMessage::DelTrafficFilter(m), NLM_F_ACK).await {
            Ok(_) => Ok(()),
            Err(e) if is_errno(&e, libc::ENOENT) || is_errno(&e, libc::EINVAL) || is_errno(&e, libc::ENODEV) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("detaching the TC program of device #{ifindex}")),
        }
    }
}

/// The routing protocol number xgre's routes carry (`ip route` shows
/// `proto 88`; name it in /etc/iproute2/rt_protos.d/ to see `proto xgre`):
/// how xgre tells its own routes from the host's.
pub const RTPROT_XGRE: RouteProtocol = RouteProtocol::Other(88);

const RT_TABLE_MAIN: u8 = 254;

/// xgre's route to `dst` out of device `oif`.
fn route_message(dst: IpNet, oif: u32) -> netlink_packet_route::route::RouteMessage {
    match dst {
        IpNet::V4(n) => RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(n.network(), n.prefix_len())
            .output_interface(oif)
            .protocol(RTPROT_XGRE)
            .build(),
        IpNet::V6(n) => RouteMessageBuilder::<std::net::Ipv6Addr>::new()
            .destination_prefix(n.network(), n.prefix_len())
            .output_interface(oif)
            .protocol(RTPROT_XGRE)
            .build(),
    }
}

fn route_oif(r: &netlink_packet_route::route::RouteMessage) -> u32 {
    r.attributes.iter().find_map(|a| if let RouteAttribute::Oif(i) = a { Some(*i) } else { None }).unwrap_or(0)
}

fn route_ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v) => Some(IpAddr::V4(*v)),
        RouteAddress::Inet6(v) => Some(IpAddr::V6(*v)),
        _ => None,
    }
}

/// Virtual devices (veth, bridge, macvlan, ...) report a kind; NICs do not.
pub fn is_virtual(link: &Link) -> bool {
    link.kind.is_some()
}
