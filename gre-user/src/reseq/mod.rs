//! `resequence` under `xgre run`: the receive programs hand numbered
//! packets to this process (see gre-common's `reseq`), over AF_XDP
//! (`xsk`) or, where that cannot be set up, through a tap (`tap`); a
//! thread puts each peer's packets back in sequence-number order
//! (`reseq_window`) and sends them out of the tunnel's hidden veth end,
//! the way the programs deliver everything else, so the tunnel device
//! receives and counts them. BPF cannot hold a packet; this can.

mod tap;
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
use gre_common::ReseqHdr;

use crate::{
    control,
    datapath::{codec, Datapath},
    net::netlink::Netlink,
    reseq::window::{Window, WindowStats},
};

/// Longest sleep without a frame or a deadline, to notice `stop`.
const IDLE: Duration = Duration::from_millis(50);
/// While frames keep coming, read them this often rather than per frame:
/// 7 frames at 400 Mbit/s, for 0.1 ms of delay.
const NAP: Duration = Duration::from_micros(100);
/// Most frames read before the deadlines are looked at again.
const BATCH: usize = 256;

/// How frames reach the resequencer and leave it.
trait Handoff: Send {
    /// Sleep until a frame waits or `timeout` passes (µs precision: holds
    /// are a millisecond or two).
    fn wait(&mut self, timeout: Duration);
    /// Give up to `max` waiting frames to `f`, each a `ReseqHdr` and the
    /// frame; how many there were.
    fn receive(&mut self, max: usize, f: &mut dyn FnMut(&[u8])) -> usize;
    /// Deliver `frames` to the tunnel device, in order, and empty it.
    fn deliver(&mut self, frames: &mut Vec<Vec<u8>>);
    /// Frames lost on the way in so far.
    fn lost(&self) -> u64 {
        0
    }
}

/// Which hand-off a resequencer runs over.
enum Kind {
    Xsk { slot: u32 },
    Tap,
}

pub struct Resequencer {
    tunnel_ifindex: u32,
    tap: String,
    kind: Kind,
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

fn serve(mut handoff: Box<dyn Handoff>, shared: Arc<Shared>) {
    let mut windows: HashMap<u32, Window> = HashMap::new();
    let mut stats = WindowStats::default();
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut busy = false;
    let mut counted = Instant::now();
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
            handoff.wait(timeout);
        }
        // A bounded batch, so deadlines are seen to under a steady stream.
        let n = handoff.receive(BATCH, &mut |buf| {
            let Some(h) = ReseqHdr::parse(buf) else { return };
            let frame = buf[ReseqHdr::LEN..].to_vec();
            let lag = lags.get(&h.peer_id()).and_then(|l| l.get(h.path() as usize)).copied().unwrap_or_default();
            let now = Instant::now();
            windows.entry(h.peer_id()).or_default().push(h.seq(), frame, now, now + lag, &mut stats, &mut out);
        });
        busy = n > 0;
        let now = Instant::now();
        for w in windows.values_mut() {
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
        if let Ok(mut s) = shared.stats.lock() {
            *s = stats;
        }
    }
}

impl Resequencer {
    /// Resequence what tunnel `tunnel_ifindex` receives, delivering
    /// through its hidden veth end `hidden_ifindex`.
    ///
    /// Over AF_XDP unless `XGRE_RESEQ_HANDOFF=tap` is set (benchmarks
    /// compare the two) or its setup fails (a tunnel MTU beyond what veth
    /// takes with XDP, a kernel without AF_XDP): then through a tap.
    pub async fn start(nl: &Netlink, dp: &Datapath, tunnel_ifindex: u32, hidden_ifindex: u32, hold: Duration) -> Result<Resequencer> {
        let (name, _) = codec::reseq_names(tunnel_ifindex);
        // What a killed `xgre run` left.
        control::clear_resequencer(nl, dp, tunnel_ifindex).await?;
        let want_tap = std::env::var("XGRE_RESEQ_HANDOFF").is_ok_and(|v| v == "tap");
        let xsk = if want_tap { None } else { Some(xsk::open(nl, dp, tunnel_ifindex, hidden_ifindex).await) };
        let (handoff, entry, kind): (Box<dyn Handoff>, u32, Kind) = match xsk {
            Some(Ok(o)) => (Box::new(o.handoff), o.entry, Kind::Xsk { slot: o.slot }),
            other => {
                if let Some(Err(e)) = other {
                    tracing::warn!("resequencer: AF_XDP hand-off unavailable, using a tap ({e:#})");
                }
                let (t, index) = tap::TapHandoff::open(nl, &name, hidden_ifindex).await?;
                (Box::new(t), index, Kind::Tap)
            }
        };
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
                serve(handoff, theirs)
            })
            .context("starting the resequencer thread")?;
        // Back only once the thread runs as it will, so that what `run`
        // says next (it resequences) is already true of its priority.
        let _ = ready_rx.recv_timeout(Duration::from_secs(1));
        dp.reseq_tap()?.insert(tunnel_ifindex, entry, 0).context("pointing the datapath at the resequencer")?;
        Ok(Resequencer { tunnel_ifindex, tap: name, kind, shared, thread: Some(thread) })
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

    /// What the receive programs hand frames to, for `run` to say.
    pub fn handoff(&self) -> String {
        match self.kind {
            Kind::Xsk { slot, .. } => format!("AF_XDP (via {}, slot {slot})", self.tap),
            Kind::Tap => format!("tap {}", self.tap),
        }
    }

    pub fn stats(&self) -> WindowStats {
        self.shared.stats.lock().map(|s| *s).unwrap_or_default()
    }

    /// Deliver as they arrive again, then end the thread (its tap or
    /// sockets go with it) and remove the veth pair and slot entries.
    pub async fn stop(mut self, nl: Option<&Netlink>, dp: Option<&Datapath>) -> WindowStats {
        if let Some(dp) = dp {
            if let Ok(mut m) = dp.reseq_tap() {
                let _ = m.remove(&self.tunnel_ifindex);
            }
        }
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let (Some(nl), Some(dp)) = (nl, dp) {
            let _ = control::clear_resequencer(nl, dp, self.tunnel_ifindex).await;
        }
        self.stats()
    }
}
