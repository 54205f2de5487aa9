//! `xgre run`: deliver GRE that arrived in outer fragments. The datapath
//! passes the fragments of a configured peer (`XGRE_PAIRS`) to the
//! kernel, whose IP reassembly is bounded in memory
//! (`net.ipv4.ipfrag_high_thresh`, `net.ipv6.ip6frag_high_thresh`), times
//! out what never completes, and drops overlapping IPv6 fragments (RFC
//! 5722). The whole packet reaches a raw GRE socket here and is written
//! into a tap of this process's whose ingress runs the TC receive program,
//! which takes what arrives there as if it had come whole by its link
//! (`XGRE_REASM_TAP`; the link is checked here): the same checks,
//! counters, learning, resequencing and delivery as every other packet.
//! Not `BPF_PROG_RUN` with live frames, which would spare the tap: some
//! kernel builds refuse live frames (EPERM).

use std::{
    fs::File,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::{AsFd, AsRawFd},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::Duration,
};

use anyhow::{Context, Result};
use aya::maps::{HashMap, MapData};
use gre_common::{names::PROG_RX_TC, repair::PROTO_REPAIR, v4_mapped, GreHdr, KeyLookup, LocalAddr, KEY_NVGRE, NVGRE_FLOWID_MASK};
use nix::sys::socket::{recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, SockaddrIn6};
use socket2::{Domain, Protocol, Socket, Type};

use crate::{
    datapath::{self, Datapath},
    net::netlink::Netlink,
};

const IPPROTO_GRE: i32 = 47;
/// How often a reader looks up from its socket to see whether to stop.
const TICK: Duration = Duration::from_millis(200);

/// The tap's queue: a burst of reassembled packets while TC takes them.
const TAP_QUEUE: u32 = 1000;

pub struct Reassembler {
    stop: Arc<AtomicBool>,
    delivered: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
    /// The tap's ifindex, to take out of the datapath again.
    tap: u32,
}

/// What a reader needs to judge and replay a packet.
struct Replay {
    tunnel_ifindex: u32,
    local: HashMap<MapData, [u8; 16], LocalAddr>,
    by_key: HashMap<MapData, KeyLookup, u32>,
    /// The way in: the tap whose ingress runs the TC receive program.
    tap: Arc<File>,
}

impl Reassembler {
    /// Take the reassembled GRE packets of tunnel `tunnel_ifindex` (both
    /// families) for as long as this runs.
    pub async fn start(nl: &Netlink, dp: &Datapath, tunnel_ifindex: u32) -> Result<Reassembler> {
        let mut taps = dp.reasm_tap()?;
        // What a killed `xgre run` left (its tap went with it).
        datapath::remove_where(&mut taps, |_, &t| t == tunnel_ifindex)?;
        let (tap, index) = crate::net::tap::open(nl, &format!("xrsm{tunnel_ifindex}"), TAP_QUEUE).await?;
        nl.clsact_add(index).await?;
        nl.bpf_filter_add(index, false, dp.prog(PROG_RX_TC)?.as_fd().as_raw_fd(), PROG_RX_TC).await?;
        taps.insert(index, tunnel_ifindex, 0).context("telling the datapath of the reassembled packets' tap")?;
        let tap = Arc::new(tap);
        let stop = Arc::new(AtomicBool::new(false));
        let delivered = Arc::new(AtomicU64::new(0));
        let mut threads = Vec::new();
        for v6 in [false, true] {
            let r = Replay { tunnel_ifindex, local: dp.local_addrs()?, by_key: dp.tunnel_by_key()?, tap: tap.clone() };
            let sock = raw_socket(v6)?;
            let (stop, delivered) = (stop.clone(), delivered.clone());
            threads.push(std::thread::spawn(move || read(sock, v6, r, &stop, &delivered)));
        }
        Ok(Reassembler { stop, delivered, threads, tap: index })
    }

    /// Stop; returns how many packets were delivered. The tap goes with
    /// the last of its descriptors.
    pub fn stop(self, dp: Option<&Datapath>) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        if let Some(mut taps) = dp.and_then(|d| d.reasm_tap().ok()) {
            let _ = taps.remove(&self.tap);
        }
        self.delivered.load(Ordering::Relaxed)
    }
}

pub(crate) fn raw_socket(v6: bool) -> Result<Socket> {
    let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
    let s = Socket::new(domain, Type::RAW, Some(Protocol::from(IPPROTO_GRE))).context("opening a raw GRE socket")?;
    if v6 {
        setsockopt(&s, sockopt::Ipv6RecvPacketInfo, &true)?;
    } else {
        setsockopt(&s, sockopt::Ipv4PacketInfo, &true)?;
    }
    s.set_read_timeout(Some(TICK))?;
    // Room for a burst of whole packets while the reader replays.
    crate::net::sys::big_recv_buffer(&s, 4 << 20);
    Ok(s)
}

/// One family's reader: receive, judge, replay, until told to stop.
fn read(sock: Socket, v6: bool, r: Replay, stop: &AtomicBool, delivered: &AtomicU64) {
    let mut buf = vec![0u8; 65536];
    let fd = sock.as_raw_fd();
    while !stop.load(Ordering::Relaxed) {
        let Some((len, ifindex, src, dst)) = receive(fd, v6, &mut buf) else { continue };
        let frame = match (src, dst) {
            (IpAddr::V4(_), IpAddr::V4(d)) => r.frame(&buf[..len], &v4_mapped(d.octets()), ifindex, None),
            (IpAddr::V6(s), IpAddr::V6(d)) => r.frame(&buf[..len], &d.octets(), ifindex, Some(s.octets())),
            _ => None,
        };
        if let Some(f) = frame {
            match r.replay(&f) {
                Ok(()) => {
                    delivered.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => tracing::debug!("replaying a reassembled packet: {e:#}"),
            }
        }
    }
}

/// One packet: its length in `buf` (IPv4: with its IP header; IPv6: the
/// GRE packet alone), the link it came in on, source and destination.
pub(crate) fn receive(fd: i32, v6: bool, buf: &mut [u8]) -> Option<(usize, u32, IpAddr, IpAddr)> {
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!(libc::in6_pktinfo);
    let msg = recvmsg::<SockaddrIn6>(fd, &mut iov, Some(&mut space), MsgFlags::empty()).ok()?;
    let len = msg.bytes;
    let from = msg.address;
    let mut info = None;
    for c in msg.cmsgs().ok()? {
        match c {
            ControlMessageOwned::Ipv4PacketInfo(p) => {
                info = Some((p.ipi_ifindex as u32, IpAddr::V4(Ipv4Addr::from(u32::from_be(p.ipi_addr.s_addr)))))
            }
            ControlMessageOwned::Ipv6PacketInfo(p) => info = Some((p.ipi6_ifindex, IpAddr::V6(Ipv6Addr::from(p.ipi6_addr.s6_addr)))),
            _ => {}
        }
    }
    let (ifindex, dst) = info?;
    let src = if v6 {
        IpAddr::V6(from?.ip())
    } else {
        let b = iov[0].get(12..16)?;
        IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
    };
    Some((len, ifindex, src, dst))
}

impl Replay {
    /// The frame to replay: Ethernet to the link's MAC, the IP header (an
    /// IPv6 one built from `src6`, which the socket does not return), the
    /// GRE packet. None when the packet is not this tunnel's, or did not
    /// come by the link that owns its destination (the receive program
    /// would pass it to the stack, and it would come back here).
    fn frame(&self, pkt: &[u8], dst: &[u8; 16], ifindex: u32, src6: Option<[u8; 16]>) -> Option<Vec<u8>> {
        let la = self.local.get(dst, 0).ok()?;
        if la.ifindex != ifindex {
            return None;
        }
        let gre_at = match src6 {
            Some(_) => 0,
            None => ((*pkt.first()? & 0x0f) as usize) * 4,
        };
        if self.tunnel_of(pkt.get(gre_at..)?)? != self.tunnel_ifindex {
            return None;
        }
        // A peer's repair request reaches every raw GRE socket; it is the
        // repairer's (`crate::repair`), and replayed it would come back.
        if pkt.get(gre_at + 2..gre_at + 4)? == PROTO_REPAIR.to_be_bytes() {
            return None;
        }
        let mut f = Vec::with_capacity(14 + 40 + pkt.len());
        f.extend_from_slice(&la.mac);
        f.extend_from_slice(&[0; 6]);
        match src6 {
            Some(src) => {
                f.extend_from_slice(&0x86ddu16.to_be_bytes());
                f.extend_from_slice(&[0x60, 0, 0, 0]);
                f.extend_from_slice(&u16::try_from(pkt.len()).ok()?.to_be_bytes());
                f.extend_from_slice(&[IPPROTO_GRE as u8, 64]);
                f.extend_from_slice(&src);
                f.extend_from_slice(dst);
            }
            None => f.extend_from_slice(&0x0800u16.to_be_bytes()),
        }
        f.extend_from_slice(pkt);
        Some(f)
    }

    /// The tunnel the GRE header's key names, as the datapath finds it.
    fn tunnel_of(&self, gre: &[u8]) -> Option<u32> {
        let flags = u16::from_be_bytes([*gre.first()?, *gre.get(1)?]);
        let lookup = if flags & GreHdr::K != 0 {
            let at = GreHdr::LEN + if flags & GreHdr::C != 0 { 4 } else { 0 };
            KeyLookup { key: u32::from_be_bytes(gre.get(at..at + 4)?.try_into().ok()?), has_key: 1 }
        } else {
            KeyLookup { key: 0, has_key: 0 }
        };
        self.by_key.get(&lookup, 0).ok().or_else(|| {
            let vsid = KeyLookup { key: lookup.key & !NVGRE_FLOWID_MASK, has_key: KEY_NVGRE };
            (lookup.has_key == 1).then(|| self.by_key.get(&vsid, 0).ok()).flatten()
        })
    }

    /// Hand the frame to the TC receive program on the tap, which takes
    /// it as if it had come whole by its link.
    fn replay(&self, frame: &[u8]) -> Result<()> {
        use std::io::Write;
        let n = (&*self.tap).write(frame).context("writing a reassembled packet into the tap")?;
        anyhow::ensure!(n == frame.len(), "the tap took {n} of {} bytes", frame.len());
        Ok(())
    }
}
