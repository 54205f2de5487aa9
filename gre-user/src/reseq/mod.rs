//! `resequence` under `xgre run`: the receive programs hand numbered
//! packets to this process (see gre-common's `reseq`): XDP receive over
//! AF_XDP (`xsk`), TC receive and anything without a socket through a
//! tap (`tap`). A thread puts each peer's packets back in sequence-number order
//! (`reseq_window`) and sends them out of the tunnel's hidden veth end,
//! the way the programs deliver everything else, so the tunnel device
//! receives and counts them. BPF cannot hold a packet; this can. A gap
//! in the numbers of a peer that keeps what it sends is asked for again
//! (`crate::repair`) before it is given up on; one of a peer that does
//! not is asked for all the same, as a report that makes it keep.

mod coalesce;
mod csum;
mod out;
mod tap;
mod unit;
pub(crate) mod window;
mod xsk;

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use gre_common::{repair::MAX_ASK, reseq::MAX_RESEQUENCE_MS, ReseqHdr};

use crate::{
    control,
    daemon::keepalive,
    datapath::Datapath,
    net::netlink::Netlink,
    repair::{frame, Route},
    reseq::{
        unit::Unit,
        window::{Window, WindowStats},
    },
};

/// Longest sleep without a frame or a deadline, to notice `stop`.
const IDLE: Duration = Duration::from_millis(50);
/// While frames keep coming, read them this often rather than per frame:
/// 7 frames at 400 Mbit/s, for 0.1 ms of delay.
const NAP: Duration = Duration::from_micros(100);
/// Most frames read before the deadlines are looked at again.
const BATCH: usize = 256;
/// Frames read from one socket before the next socket's turn.
const TURN: usize = 16;
/// While a gap waits to be asked for, look at it this often.
const ASK_TICK: Duration = Duration::from_micros(500);

/// Asking a peer that keeps what it sends for what a gap misses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ask {
    /// The path the request goes by.
    pub route: Route,
    /// Another the request also goes by, while the paths are not yet told
    /// apart by loss.
    pub spare: Option<Route>,
    /// The tunnel's key.
    pub key: Option<u32>,
    /// How long a lost packet may take to be known lost: about as long
    /// as the paths' spread makes a packet late (the slow path passing
    /// its number, or silent this long), which the hold adds to a
    /// repair's time.
    pub after: Duration,
    /// How long a repair should take until some have been timed: the
    /// route's round trip, and a margin.
    pub base: Duration,
    /// Whether the peer keeps what it sends (says so): else a request is
    /// only a report of the loss, and the gap is not waited for longer.
    pub keeps: bool,
}

impl Ask {
    /// How long the window waits for a gap: long enough for it to be
    /// asked for and come, and never less than `hold`.
    fn hold(&self, w: &Window<Unit>, hold: Duration) -> Duration {
        if !self.keeps {
            return hold;
        }
        hold.max(self.after + w.repair_wait(self.base)).min(Duration::from_millis(MAX_RESEQUENCE_MS as u64))
    }
}

/// How frames reach the resequencer and leave it.
struct Handoff {
    sockets: Vec<xsk::RxSocket>,
    tap: tap::TapIn,
    /// Out through the hidden veth end, runs of TCP segments merged.
    out: out::PacketOut,
    merged: Vec<(coalesce::VnetHdr, Vec<u8>)>,
    counts: coalesce::Counts,
    /// Requests out, as whole frames.
    asker: keepalive::Sender,
}

impl Handoff {
    /// Sleep until a frame waits or `timeout` passes (µs precision: holds
    /// are a millisecond or two).
    fn wait(&mut self, timeout: Duration) {
        let mut fds: Vec<libc::pollfd> = self
            .sockets
            .iter()
            .map(|s| s.fd())
            .chain([self.tap.fd()])
            .map(|fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 })
            .collect();
        let ts = libc::timespec { tv_sec: timeout.as_secs() as libc::time_t, tv_nsec: timeout.subsec_nanos() as libc::c_long };
        // SAFETY: `fds` holds fds.len() pollfds; a valid timespec, no mask.
        unsafe { libc::ppoll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, &ts, std::ptr::null()) };
    }

    /// Give up to `max` waiting frames to `f`, each a `ReseqHdr` and the
    /// frame, with its GSO segment size (0: one packet); how many there
    /// were.
    fn receive(&mut self, max: usize, f: &mut dyn FnMut(&[u8], u16)) -> usize {
        let mut n = 0;
        // The links' sockets in turns of a few frames, close to the order
        // frames came in: the first socket taking the whole batch would
        // leave another's frames waiting past the hold.
        loop {
            let before = n;
            for s in &mut self.sockets {
                if n >= max {
                    break;
                }
                // Checksums left for offload are completed as the window's
                // frames go out (`coalesce`).
                n += s.receive(TURN.min(max - n), &mut |frame| f(frame, 0));
            }
            if n == before || n >= max {
                break;
            }
        }
        n + self.tap.receive(max - n, &mut |frame, gso| f(frame, gso))
    }

    /// Deliver `frames` to the tunnel device, in order, and empty it.
    fn deliver(&mut self, frames: &mut Vec<Unit>) {
        coalesce::coalesce(frames, &mut self.merged, &mut self.counts);
        self.out.send(&mut self.merged);
    }

    /// Frames lost on the way in so far.
    fn lost(&mut self) -> u64 {
        self.sockets.iter().map(xsk::RxSocket::lost).sum::<u64>() + self.tap.lost()
    }
}

pub struct Resequencer {
    tunnel_ifindex: u32,
    tap: String,
    /// Sockets, and the links they are on.
    sockets: (usize, usize),
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
    /// Peers to ask for what their gaps miss, by id (`set_asks`).
    asks: Mutex<Arc<HashMap<u32, Ask>>>,
}

fn serve(mut handoff: Handoff, shared: Arc<Shared>) {
    let mut windows: HashMap<u32, Window<Unit>> = HashMap::new();
    let mut stats = WindowStats::default();
    let mut out: Vec<Unit> = Vec::new();
    let mut busy = false;
    let mut counted = Instant::now();
    let mut seqs: Vec<u32> = Vec::new();
    while !shared.stop.load(Ordering::Relaxed) {
        let hold = Duration::from_nanos(shared.hold.load(Ordering::Relaxed));
        let lags = shared.lags.lock().map(|l| l.clone()).unwrap_or_default();
        let asks = shared.asks.lock().map(|a| a.clone()).unwrap_or_default();
        let now = Instant::now();
        let deadline = windows
            .iter()
            .filter_map(|(peer, w)| match asks.get(peer) {
                Some(a) if a.keeps && w.gap() => w.deadline(a.hold(w, hold)).map(|d| d.min(now + ASK_TICK)),
                Some(a) => w.deadline(a.hold(w, hold)),
                None => w.deadline(hold),
            })
            .min();
        let timeout = deadline.map_or(IDLE, |d| d.saturating_duration_since(now).min(IDLE));
        if busy {
            // Frames are coming: let a few gather instead of waking for
            // each, which costs more than the frame.
            std::thread::sleep(timeout.min(NAP));
        } else if !timeout.is_zero() {
            handoff.wait(timeout);
        }
        // A bounded batch, so deadlines are seen to under a steady stream.
        let n = handoff.receive(BATCH, &mut |buf, gso| {
            let Some(h) = ReseqHdr::parse(buf) else { return };
            let frame = Unit::gso(buf[ReseqHdr::LEN..].to_vec(), gso);
            let lag = lags.get(&h.peer_id()).and_then(|l| l.get(h.path() as usize)).copied().unwrap_or_default();
            let now = Instant::now();
            windows.entry(h.peer_id()).or_default().push(h.seq(), h.path() as usize, frame, now, now + lag, &mut stats, &mut out);
        });
        busy = n > 0;
        let now = Instant::now();
        for (peer, w) in windows.iter_mut() {
            let hold = match asks.get(peer) {
                Some(a) => {
                    w.due(now, a.after, MAX_ASK, &mut stats, &mut seqs);
                    if !seqs.is_empty() {
                        // A report needs to arrive only once: not over the spare.
                        for r in std::iter::once(&a.route).chain(a.spare.iter().filter(|_| a.keeps)) {
                            let _ = handoff.asker.send_frame(r.ifindex, &frame::ask(r, a.key, &seqs));
                        }
                        seqs.clear();
                    }
                    a.hold(w, hold)
                }
                None => hold,
            };
            w.expire(now, hold, &mut stats, &mut out);
        }
        if !out.is_empty() {
            handoff.deliver(&mut out);
        }
        // The hand-off's count costs a system call: once a second, and
        // at the end.
        let ending = shared.stop.load(Ordering::Relaxed);
        if ending || now.duration_since(counted) >= Duration::from_secs(1) {
            stats.handoff_lost = handoff.lost();
            counted = now;
        }
        (stats.merged, stats.merged_into) = (handoff.counts.segments, handoff.counts.packets);
        if let Ok(mut s) = shared.stats.lock() {
            *s = stats;
        }
    }
}

impl Resequencer {
    /// Resequence what tunnel `tunnel_ifindex` receives over `links`,
    /// delivering through its hidden veth end `hidden_ifindex`.
    ///
    /// `XGRE_RESEQ_HANDOFF=tap` in the environment takes everything
    /// through the tap, as before AF_XDP (benchmarks compare the two).
    pub async fn start(
        nl: &Netlink,
        dp: &Datapath,
        tunnel_ifindex: u32,
        hidden_ifindex: u32,
        links: &[u32],
        hold: Duration,
    ) -> Result<Resequencer> {
        let name = format!("xrsq{tunnel_ifindex}");
        // What a killed `xgre run` left.
        control::clear_resequencer(dp, tunnel_ifindex)?;
        let (tap, tap_index) = tap::TapIn::open(nl, &name).await?;
        let want_xsk = !std::env::var("XGRE_RESEQ_HANDOFF").is_ok_and(|v| v == "tap");
        let (sockets, on_links) = if want_xsk {
            let mut found = Vec::new();
            for &l in links {
                found.extend(nl.link_by_index(l).await?);
            }
            let (sockets, on_links, notes) = xsk::open_links(dp, tunnel_ifindex, &found)?;
            for n in notes {
                tracing::warn!("resequencer: no AF_XDP socket on {n}; its packets come through the tap");
            }
            (sockets, on_links)
        } else {
            (Vec::new(), 0)
        };
        let counts = (sockets.len(), on_links);
        let out = out::PacketOut::new(hidden_ifindex)?;
        let asker = keepalive::Sender::new()?;
        let handoff = Handoff { sockets, tap, out, merged: Vec::new(), counts: Default::default(), asker };
        let shared = Arc::new(Shared { hold: AtomicU64::new(hold.as_nanos() as u64), ..Default::default() });
        let theirs = shared.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("xgre-reseq".into())
            .spawn(move || {
                if let Err(e) = crate::net::sys::realtime() {
                    tracing::warn!("resequencer: staying at normal priority ({e})");
                }
                let _ = ready_tx.send(());
                serve(handoff, theirs)
            })
            .context("starting the resequencer thread")?;
        // Back only once the thread runs as it will, so that what `run`
        // says next (it resequences) is already true of its priority.
        let _ = ready_rx.recv_timeout(Duration::from_secs(1));
        dp.reseq_tap()?.insert(tunnel_ifindex, tap_index, 0).context("pointing the datapath at the resequencer")?;
        Ok(Resequencer { tunnel_ifindex, tap: name, sockets: counts, shared, thread: Some(thread) })
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

    /// Ask these peers for what their gaps miss (by id; the others not).
    pub fn set_asks(&self, asks: HashMap<u32, Ask>) {
        if let Ok(mut a) = self.shared.asks.lock() {
            if **a != asks {
                *a = Arc::new(asks);
            }
        }
    }

    /// What the receive programs hand frames to, for `run` to say.
    pub fn handoff(&self) -> String {
        match self.sockets {
            (0, _) => format!("tap {}", self.tap),
            (s, l) => format!("AF_XDP ({s} sockets on {l} links; tap {} for the rest)", self.tap),
        }
    }

    pub fn stats(&self) -> WindowStats {
        self.shared.stats.lock().map(|s| *s).unwrap_or_default()
    }

    /// Deliver as they arrive again, then end the thread (its tap and
    /// sockets go with it).
    pub fn stop(mut self, dp: Option<&Datapath>) -> WindowStats {
        if let Some(dp) = dp {
            let _ = control::clear_resequencer(dp, self.tunnel_ifindex);
        }
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.stats()
    }
}
