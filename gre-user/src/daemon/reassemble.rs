//! `xgre run`: deliver GRE that arrived in outer fragments. The datapath
//! passes the fragments of a configured peer (`XGRE_PAIRS`) to the
//! kernel, whose IP reassembly is bounded in memory
//! (`net.ipv4.ipfrag_high_thresh`, `net.ipv6.ip6frag_high_thresh`), times
//! out what never completes, and drops overlapping IPv6 fragments (RFC
//! 5722). The whole packet reaches a raw GRE socket here and is run
//! through the receive program (`BPF_PROG_RUN` with live frames) as if it
//! had arrived whole on its link: the same checks, counters, learning and
//! delivery as every other packet.

use std::{
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
use aya::{
    maps::{HashMap, MapData},
    programs::ProgramFd,
};
use gre_common::{repair::PROTO_REPAIR, v4_mapped, GreHdr, KeyLookup, LocalAddr, KEY_NVGRE, NVGRE_FLOWID_MASK};
use nix::sys::socket::{recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, SockaddrIn6};
use socket2::{Domain, Protocol, Socket, Type};

use crate::datapath::Datapath;

const IPPROTO_GRE: i32 = 47;
/// How often a reader looks up from its socket to see whether to stop.
const TICK: Duration = Duration::from_millis(200);

pub struct Reassembler {
    stop: Arc<AtomicBool>,
    delivered: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
}

/// What a reader needs to judge and replay a packet.
struct Replay {
    tunnel_ifindex: u32,
    local: HashMap<MapData, [u8; 16], LocalAddr>,
    by_key: HashMap<MapData, KeyLookup, u32>,
    prog: ProgramFd,
}

impl Reassembler {
    /// Take the reassembled GRE packets of tunnel `tunnel_ifindex` (both
    /// families) for as long as this runs.
    pub fn start(dp: &Datapath, tunnel_ifindex: u32) -> Result<Reassembler> {
        let stop = Arc::new(AtomicBool::new(false));
        let delivered = Arc::new(AtomicU64::new(0));
        let mut threads = Vec::new();
        for v6 in [false, true] {
            let prog = dp.rx_xdp()?.fd;
            let r = Replay { tunnel_ifindex, local: dp.local_addrs()?, by_key: dp.tunnel_by_key()?, prog };
            let sock = raw_socket(v6)?;
            let (stop, delivered) = (stop.clone(), delivered.clone());
            threads.push(std::thread::spawn(move || read(sock, v6, r, &stop, &delivered)));
        }
        Ok(Reassembler { stop, delivered, threads })
    }

    /// Stop; returns how many packets were delivered.
    pub fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
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
fn read(sock: Socket, v6: bool, mut r: Replay, stop: &AtomicBool, delivered: &AtomicU64) {
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
            match r.replay(&f, ifindex) {
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

    /// Run the frame through the receive program as if it had arrived on
    /// link `ifindex`: live (`BPF_F_TEST_XDP_LIVE_FRAMES`, Linux 5.18), so
    /// its verdict (deliver to the tunnel device) is carried out.
    fn replay(&mut self, frame: &[u8], ifindex: u32) -> Result<()> {
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex,
        // rx_queue_index, egress_ifindex.
        let md: [u32; 6] = [0, frame.len() as u32, 0, ifindex, 0, 0];
        let mut attr = TestRunAttr {
            prog_fd: self.prog.as_fd().as_raw_fd() as u32,
            data_size_in: frame.len() as u32,
            data_in: frame.as_ptr() as u64,
            repeat: 1,
            ctx_size_in: std::mem::size_of_val(&md) as u32,
            ctx_in: md.as_ptr() as u64,
            flags: BPF_F_TEST_XDP_LIVE_FRAMES,
            batch_size: 1,
            ..Default::default()
        };
        // SAFETY: `attr` is the BPF_PROG_TEST_RUN member of union bpf_attr,
        // its size passed along; the buffers it points to outlive the call
        // and the kernel only reads them (no data or context out).
        let r =
            unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_TEST_RUN, &mut attr as *mut TestRunAttr, std::mem::size_of::<TestRunAttr>()) };
        if r < 0 {
            return Err(std::io::Error::last_os_error()).context("BPF_PROG_RUN of the receive program");
        }
        Ok(())
    }
}

const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;

/// `union bpf_attr`'s `test` member (include/uapi/linux/bpf.h). aya's own
/// test run wants an `Xdp` handle, and builds one from a loaded program
/// only with an attach type it does not export.
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}
