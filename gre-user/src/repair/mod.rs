//! Repair (`gre_common::repair`), the sender's side: while a peer's path
//! loses, `xgre run` keeps a copy of every numbered packet the tunnel
//! sends (`capture`, `store`), says so in its keepalives, and sends one
//! again when the peer asks, over the path that loses least. A peer's
//! request for what was not kept is a report of loss all the same, and
//! `run` starts keeping on it. The asking side is the resequencer's
//! (`crate::reseq`).

mod capture;
pub(crate) mod frame;
mod store;

use std::{
    collections::{HashMap, HashSet},
    os::fd::AsRawFd,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use aya::maps::{Array, MapData};
use gre_common::path_slot;
use socket2::Socket;

use crate::{
    daemon::{keepalive::Sender, reassemble},
    datapath::Datapath,
};

use self::{capture::Capture, frame::Outer, store::Store};

/// Longest sleep with nothing to read, to notice `stop` and a new table.
const IDLE: Duration = Duration::from_millis(50);
/// Most packets sent again per second, whatever is asked: a tenth of
/// what was kept in the last second, and at least this many.
const MIN_BUDGET: u64 = 200;

/// One path to a peer, as a frame leaves by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    pub peer_id: u32,
    /// The path's index among the peer's.
    pub path: u32,
    pub ifindex: u32,
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    /// Outer addresses, IPv4 ones mapped.
    pub local: [u8; 16],
    pub remote: [u8; 16],
}

impl Route {
    pub fn new(peer_id: u32, path: usize, p: &gre_common::Path) -> Route {
        Route { peer_id, path: path as u32, ifindex: p.ifindex, src_mac: p.src_mac, dst_mac: p.dst_mac, local: p.local, remote: p.remote }
    }

    pub fn v6(&self) -> bool {
        !(self.local[..10] == [0; 10] && self.local[10..12] == [0xff, 0xff])
    }
}

/// What the repairer works from, which the watcher keeps current.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    /// The tunnel's GRE key: frames with another belong to another tunnel.
    pub key: Option<u32>,
    /// The peers this end numbers its packets to, every path of theirs by
    /// (local, remote) address: whose requests are heard.
    pub paths: HashMap<([u8; 16], [u8; 16]), Route>,
    /// The peers among them whose packets are kept; empty: keep nothing.
    pub keep: HashSet<u32>,
    /// By peer id, the path that loses least, which packets are sent again
    /// by (absent: the path the request came by).
    pub best: HashMap<u32, Route>,
}

/// What repair did, for `run` to say when it stops.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RepairStats {
    /// Packets kept.
    pub kept: u64,
    /// Numbers peers asked for.
    pub asked: u64,
    /// Packets sent again.
    pub resent: u64,
    /// Packets sent that were not kept: the copy's buffer was full.
    #[serde(default)]
    pub missed: u64,
    /// Numbers peers asked for while nothing was kept for them: losses
    /// they reported.
    #[serde(default)]
    pub reported: u64,
}

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    table: Mutex<Arc<Table>>,
    stats: Mutex<RepairStats>,
    /// By peer id, the numbers it asked for that were not kept.
    reported: Mutex<HashMap<u32, u64>>,
}

pub struct Repairer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Repairer {
    /// Read peers' requests (and keep packets once `set_table` names
    /// peers) for as long as this runs.
    pub fn start(dp: &Datapath) -> Result<Repairer> {
        let socks = [reassemble::raw_socket(false)?, reassemble::raw_socket(true)?];
        for s in &socks {
            s.set_nonblocking(true)?;
        }
        let out = Sender::new()?;
        let bytes = dp.path_bytes()?;
        let shared = Arc::new(Shared::default());
        let theirs = shared.clone();
        let thread = std::thread::Builder::new()
            .name("xgre-repair".into())
            .spawn(move || {
                // A request waits for this thread: at a process's priority a
                // busy CPU made repairs miss the peer's hold.
                if let Err(e) = crate::net::sys::realtime() {
                    tracing::warn!("repair: staying at normal priority ({e})");
                }
                serve(socks, out, bytes, &theirs)
            })
            .context("starting the repair thread")?;
        Ok(Repairer { shared, thread: Some(thread) })
    }

    /// Keep the packets of the peers `t` names (none: stop keeping).
    pub fn set_table(&self, t: Table) {
        if let Ok(mut cur) = self.shared.table.lock() {
            if **cur != t {
                *cur = Arc::new(t);
            }
        }
    }

    pub fn stats(&self) -> RepairStats {
        self.shared.stats.lock().map(|s| *s).unwrap_or_default()
    }

    /// By peer id, how many lost numbers each peer has reported so far
    /// (asked for while nothing was kept for it).
    pub fn reported(&self) -> HashMap<u32, u64> {
        self.shared.reported.lock().map(|r| r.clone()).unwrap_or_default()
    }

    pub fn stop(mut self) -> RepairStats {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.stats()
    }
}

/// `bytes`: what the transmit program has given each path
/// (`XGRE_PATH_BYTES`), to which what is sent again is added: the path
/// carries it like the rest, and the program's fewest-bytes choice then
/// gives the other paths that much more. Unaccounted, the clean path
/// carried its share and every resend, and filled first.
fn serve(socks: [Socket; 2], out: Sender, mut bytes: Array<MapData, u64>, shared: &Shared) {
    let mut store = Store::default();
    let mut captures: Vec<Capture> = Vec::new();
    let mut stats = RepairStats::default();
    let mut buf = vec![0u8; 65536];
    // The budget for sending again: what was kept in the last second.
    let (mut second, mut kept_then, mut resent_then) = (Instant::now(), 0u64, 0u64);
    let mut table: Arc<Table> = Arc::default();
    let mut by_remote: HashMap<[u8; 16], u32> = HashMap::new();
    // The links captures were opened for (some may have failed).
    let mut links: Vec<u32> = Vec::new();
    // Bytes sent again, by path slot, this round.
    let mut sent: HashMap<u32, u64> = HashMap::new();
    while !shared.stop.load(Ordering::Relaxed) {
        let now_table = shared.table.lock().map(|t| t.clone()).unwrap_or_default();
        if !Arc::ptr_eq(&now_table, &table) {
            table = now_table;
            by_remote = table.paths.values().filter(|r| table.keep.contains(&r.peer_id)).map(|r| (r.remote, r.peer_id)).collect();
            // Copies of what the kept peers' links send, while there are any.
            let mut want: Vec<u32> = table.paths.values().filter(|r| table.keep.contains(&r.peer_id)).map(|r| r.ifindex).collect();
            want.sort_unstable();
            want.dedup();
            if want != links {
                // What the copies being closed missed, before they go.
                stats.missed += captures.iter().map(Capture::missed).sum::<u64>();
                captures = want
                    .iter()
                    .filter_map(|&l| match Capture::open(l) {
                        Ok(c) => Some(c),
                        Err(e) => {
                            tracing::warn!("repair: not keeping what link {l} sends: {e:#}");
                            None
                        }
                    })
                    .collect();
                links = want;
            }
        }
        let mut fds: Vec<libc::pollfd> = captures
            .iter()
            .map(Capture::fd)
            .chain(socks.iter().map(|s| s.as_raw_fd()))
            .map(|fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 })
            .collect();
        // SAFETY: `fds` holds fds.len() pollfds.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, IDLE.as_millis() as i32) };
        let now = Instant::now();
        for c in &mut captures {
            c.drain(&mut |f| {
                let Some(o) = Outer::parse(f) else { return };
                let (Some((seq, how)), Some(&peer)) = (o.number, by_remote.get(&o.dst)) else { return };
                if o.is_data() && o.key == table.key {
                    store.put(peer, seq, how, f, now);
                    stats.kept += 1;
                }
            });
        }
        if now.duration_since(second) >= Duration::from_secs(1) {
            (second, kept_then, resent_then) = (now, stats.kept, stats.resent);
            // A system call each: once a second, and at the end.
            stats.missed += captures.iter().map(Capture::missed).sum::<u64>();
        }
        let budget = ((stats.kept - kept_then) / 10).max(MIN_BUDGET);
        for (v6, s) in socks.iter().enumerate() {
            while let Some((len, _, src, dst)) = reassemble::receive(s.as_raw_fd(), v6 == 1, &mut buf) {
                let gre_at = if v6 == 1 { 0 } else { ((buf[0] & 0x0f) as usize) * 4 };
                let Some((key, seqs)) = buf.get(gre_at..len).and_then(frame::parse_ask) else { continue };
                let Some(came) = table.paths.get(&(ip16(dst), ip16(src))).filter(|_| key == table.key) else { continue };
                if !table.keep.contains(&came.peer_id) {
                    stats.asked += seqs.len() as u64;
                    stats.reported += seqs.len() as u64;
                    if let Ok(mut r) = shared.reported.lock() {
                        *r.entry(came.peer_id).or_default() += seqs.len() as u64;
                    }
                    continue;
                }
                let route = table.best.get(&came.peer_id).unwrap_or(came);
                for seq in seqs {
                    stats.asked += 1;
                    if stats.resent - resent_then >= budget {
                        continue;
                    }
                    if let Some(f) = store.take(route.peer_id, seq, now) {
                        if frame::readdress(f, route) && out.send_frame(route.ifindex, f).is_ok() {
                            stats.resent += 1;
                            *sent.entry(path_slot(route.peer_id, route.path)).or_default() += f.len() as u64;
                        }
                    }
                }
            }
        }
        // A read and a write: an add of the program's in between is lost,
        // a few bytes of one path's count now and then.
        for (slot, n) in sent.drain() {
            let v = bytes.get(&slot, 0).unwrap_or(0);
            let _ = bytes.set(slot, v + n, 0);
        }
        if let Ok(mut s) = shared.stats.lock() {
            *s = stats;
        }
    }
    stats.missed += captures.iter().map(Capture::missed).sum::<u64>();
    if let Ok(mut s) = shared.stats.lock() {
        *s = stats;
    }
}

fn ip16(a: std::net::IpAddr) -> [u8; 16] {
    match a {
        std::net::IpAddr::V4(a) => gre_common::v4_mapped(a.octets()),
        std::net::IpAddr::V6(a) => a.octets(),
    }
}
