//! `resequence` under `xgre run`: the receive programs hand numbered
//! packets to a tap device this process reads (see gre-common's `reseq`);
//! a thread puts each peer's packets back in sequence-number order
//! (`reseq_window`) and sends them out of the tunnel's hidden veth end,
//! the way the programs deliver everything else, so the tunnel device
//! receives and counts them. BPF cannot hold a packet; this can.

pub(crate) mod window;

use std::{
    collections::HashMap,
    fs::File,
    io::Read,
    os::fd::{AsRawFd, OwnedFd},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use gre_common::ReseqHdr;

use crate::{
    datapath::Datapath,
    net::netlink::Netlink,
    reseq::window::{Window, WindowStats},
};

/// The tap's queue: 20 ms of 1500-byte frames at 1 Gbit/s, so a thread
/// that falls briefly behind does not lose any.
const TAP_QUEUE: u32 = 2000;
/// Longest sleep without a frame or a deadline, to notice `stop`.
const IDLE: Duration = Duration::from_millis(50);
/// While frames keep coming, read them this often rather than per frame:
/// 7 frames at 400 Mbit/s, for 0.1 ms of delay.
const NAP: Duration = Duration::from_micros(100);
/// Most frames read before the deadlines are looked at again.
const BATCH: usize = 256;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;

pub struct Resequencer {
    tunnel_ifindex: u32,
    tap: String,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// Each path's lag: how much sooner than the peer's slowest path it
/// delivers, by path index.
pub type Lags = [Duration; gre_common::MAX_PATHS];

/// What the thread and `xgre run` share.
#[derive(Default)]
struct Shared {
    /// How long a gap is waited for, ns; `set_hold` changes it live.
    hold: AtomicU64,
    stop: AtomicBool,
    stats: Mutex<WindowStats>,
    /// By peer id; swapped whole by `set_lags`, so the thread takes a
    /// reference per round instead of a copy.
    lags: Mutex<Arc<HashMap<u32, Lags>>>,
}

/// A tap device of this process's (gone when the descriptor closes).
fn open_tap(name: &str) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/net/tun")
        .context("opening /dev/net/tun for the resequencer's tap")?;
    #[repr(C)]
    struct IfReq {
        name: [u8; 16],
        flags: libc::c_short,
        _pad: [u8; 22],
    }
    let mut req = IfReq { name: [0; 16], flags: (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short, _pad: [0; 22] };
    if name.len() > 15 {
        bail!("tap name {name} is longer than 15 bytes");
    }
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: TUNSETIFF reads and writes one struct ifreq, which IfReq is.
    if unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, &mut req) } < 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("creating tap {name}"));
    }
    Ok(file)
}

/// A packet socket that sends frames out of `ifindex` and receives nothing.
fn sender(ifindex: u32) -> Result<(OwnedFd, libc::sockaddr_ll)> {
    // Protocol 0: a packet socket that joins no tap, so it receives nothing.
    let sock = socket2::Socket::new(socket2::Domain::PACKET, socket2::Type::RAW, Some(socket2::Protocol::from(0)))
        .context("opening the resequencer's packet socket")?;
    let fd = OwnedFd::from(sock);
    // SAFETY: sockaddr_ll is plain data; all zeros is a valid value.
    let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sa.sll_family = libc::AF_PACKET as u16;
    sa.sll_ifindex = ifindex as i32;
    sa.sll_halen = 6;
    Ok((fd, sa))
}

/// Send `frames` out in as few calls as sendmmsg takes. A frame the
/// kernel refuses is lost, as it would be on a full device queue.
fn send_all(fd: &OwnedFd, sa: &libc::sockaddr_ll, frames: &mut Vec<Vec<u8>>) {
    let mut iov: Vec<libc::iovec> = frames.iter().map(|f| libc::iovec { iov_base: f.as_ptr() as *mut _, iov_len: f.len() }).collect();
    let mut msgs: Vec<libc::mmsghdr> = iov
        .iter_mut()
        .map(|v| {
            // SAFETY: msghdr is plain data; all zeros is a valid value.
            let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
            h.msg_name = (sa as *const libc::sockaddr_ll).cast_mut().cast();
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            h.msg_iov = v;
            h.msg_iovlen = 1;
            libc::mmsghdr { msg_hdr: h, msg_len: 0 }
        })
        .collect();
    let mut done = 0;
    while done < msgs.len() {
        // SAFETY: every header points at an iovec and a frame that live
        // until this function returns.
        let n = unsafe { libc::sendmmsg(fd.as_raw_fd(), msgs[done..].as_mut_ptr(), (msgs.len() - done) as u32, 0) };
        // A refused frame: skip it and go on with the rest.
        done += if n > 0 { n as usize } else { 1 };
    }
    frames.clear();
}

/// Sleep until the tap has a frame or `timeout` passes (µs precision:
/// holds are a millisecond or two).
fn wait(tap: &File, timeout: Duration) {
    let mut pfd = libc::pollfd { fd: tap.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    let ts = libc::timespec { tv_sec: timeout.as_secs() as libc::time_t, tv_nsec: timeout.subsec_nanos() as libc::c_long };
    // SAFETY: one pollfd, a valid timespec, no signal mask.
    unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
}

/// Run the calling thread under SCHED_FIFO at the lowest real-time
/// priority, so that a busy process on its CPU cannot keep the receive
/// path waiting for a time slice: without resequencing the stack receives
/// in softirq, which pre-empts any process. The thread sleeps between
/// batches, and the kernel's real-time throttling bounds it anyway.
fn realtime() -> std::io::Result<()> {
    let p = libc::sched_param { sched_priority: 1 };
    // SAFETY: a valid sched_param for the calling thread.
    match unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &p) } {
        0 => Ok(()),
        e => Err(std::io::Error::from_raw_os_error(e)),
    }
}

fn serve(mut tap: File, out_fd: OwnedFd, sa: libc::sockaddr_ll, shared: Arc<Shared>) {
    let mut windows: HashMap<u32, Window> = HashMap::new();
    let mut stats = WindowStats::default();
    let mut buf = vec![0u8; 65536];
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut busy = false;
    while !shared.stop.load(Ordering::Relaxed) {
        let hold = Duration::from_nanos(shared.hold.load(Ordering::Relaxed));
        let lags = shared.lags.lock().map(|l| l.clone()).unwrap_or_default();
        let now = Instant::now();
        let deadline = windows.values().filter_map(|w| w.deadline(hold)).min();
        let timeout = deadline.map_or(IDLE, |d| d.saturating_duration_since(now).min(IDLE));
        if busy {
            // Frames are coming: let a few gather instead of waking for
            // each, which costs more than the frame.
            std::thread::sleep(timeout.min(NAP));
        } else if !timeout.is_zero() {
            wait(&tap, timeout);
        }
        busy = false;
        // A bounded batch, so deadlines are seen to under a steady stream.
        for _ in 0..BATCH {
            let n = match tap.read(&mut buf) {
                Ok(n) => n,
                Err(_) => break,
            };
            busy = true;
            let Some(h) = ReseqHdr::parse(&buf[..n]) else { continue };
            let frame = buf[ReseqHdr::LEN..n].to_vec();
            let lag = lags.get(&h.peer_id()).and_then(|l| l.get(h.path() as usize)).copied().unwrap_or_default();
            let now = Instant::now();
            windows.entry(h.peer_id()).or_default().push(h.seq(), frame, now, now + lag, &mut stats, &mut out);
        }
        let now = Instant::now();
        for w in windows.values_mut() {
            w.expire(now, hold, &mut stats, &mut out);
        }
        send_all(&out_fd, &sa, &mut out);
        if let Ok(mut s) = shared.stats.lock() {
            *s = stats;
        }
    }
}

impl Resequencer {
    /// Resequence what tunnel `tunnel_ifindex` receives, delivering
    /// through its hidden veth end `hidden_ifindex`.
    pub async fn start(nl: &Netlink, dp: &Datapath, tunnel_ifindex: u32, hidden_ifindex: u32, hold: Duration) -> Result<Resequencer> {
        let name = format!("xrsq{tunnel_ifindex}");
        let tap = open_tap(&name)?;
        // Nothing but our frames may enter the tap: no IPv6 of its own.
        let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "1");
        let link = nl.link(&name).await?.with_context(|| format!("tap {name} vanished"))?;
        nl.set_up_quiet(link.index, TAP_QUEUE).await?;
        let (out_fd, sa) = sender(hidden_ifindex)?;
        let shared = Arc::new(Shared { hold: AtomicU64::new(hold.as_nanos() as u64), ..Default::default() });
        let theirs = shared.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("xgre-reseq".into())
            .spawn(move || {
                if let Err(e) = realtime() {
                    tracing::warn!("resequencer: staying at normal priority ({e})");
                }
                let _ = ready_tx.send(());
                serve(tap, out_fd, sa, theirs)
            })
            .context("starting the resequencer thread")?;
        // Back only once the thread runs as it will, so that what `run`
        // says next (it resequences) is already true of its priority.
        let _ = ready_rx.recv_timeout(Duration::from_secs(1));
        dp.reseq_tap()?.insert(tunnel_ifindex, link.index, 0).context("pointing the datapath at the resequencer")?;
        Ok(Resequencer { tunnel_ifindex, tap: name, shared, thread: Some(thread) })
    }

    pub fn hold(&self) -> Duration {
        Duration::from_nanos(self.shared.hold.load(Ordering::Relaxed))
    }

    /// Wait this long for a gap from now on.
    pub fn set_hold(&self, hold: Duration) {
        self.shared.hold.store(hold.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Hold what each path of `peer_id` delivers for its lag behind the
    /// slowest (none: deliver as it comes), so that every packet of the
    /// peer's takes as long as over the slowest path. Waiting only for
    /// gaps let a packet through the fast path whenever nothing before it
    /// was still on its way: TCP then measured the fast path's round trip
    /// now and then and the slow one's otherwise, and BBR, sizing its
    /// window by the least, sent a fifth of what the paths carry.
    pub fn set_lags(&self, peer_id: u32, lags: Option<Lags>) {
        if let Ok(mut l) = self.shared.lags.lock() {
            let mut m = HashMap::clone(&l);
            match lags {
                Some(v) => m.insert(peer_id, v),
                None => m.remove(&peer_id),
            };
            *l = Arc::new(m);
        }
    }

    pub fn tap(&self) -> &str {
        &self.tap
    }

    pub fn stats(&self) -> WindowStats {
        self.shared.stats.lock().map(|s| *s).unwrap_or_default()
    }

    /// Deliver as they arrive again, then end the thread (its tap goes
    /// with it).
    pub fn stop(mut self, dp: Option<&Datapath>) -> WindowStats {
        if let Some(dp) = dp {
            if let Ok(mut m) = dp.reseq_tap() {
                let _ = m.remove(&self.tunnel_ifindex);
            }
        }
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.stats()
    }
}
