//! Keeping the path table current under `xgre run`. A path leaves its
//! peer's rotation when its link loses carrier or is set down (seen at
//! once, from rtnetlink's link events), or when `keepalive_misses`
//! keepalives in a row do not come back (a failure beyond the local link:
//! the peer's NIC, a switch port); it rejoins as soon as both are well
//! again. Every change replaces the peer's map value whole, so the
//! datapath never sees half an update.

use gre_common::{PathFlags, PathStats, TunnelFlags};
use std::{collections::BTreeMap, time::Duration};

use anyhow::{anyhow, Result};
use aya::maps::{Array, HashMap, MapData, PerCpuArray};
use futures::StreamExt;
use gre_common::{
    names::*, path_slot, Announce, Peer, PeerAnnounce, ANNOUNCE_GRE_SEQ, ANNOUNCE_IPID, ANNOUNCE_REPAIR, ANNOUNCE_REPAIR_READY,
    ANNOUNCE_UNNUMBERED, MAX_ANNOUNCE_TTL_MS,
};

use crate::{
    config::TunnelConfig,
    daemon::{keepalive, status::RunStatus},
    datapath::{
        codec::{cstr, in_rotation, ip16},
        entries, Datapath,
    },
    mesh::{Event, Mesh},
    net::{
        netlink::{Link, Netlink},
        sys::monotonic_ns,
    },
    repair::{Repairer, Route, Table},
    reseq::{Ask, Lags, Resequencer},
};

use super::measure::{hold_for, ProbeLoss, RttWindow, NUMBER_ABOVE_NS, TOO_SLOW_NS};

/// How long this end keeps what it sends to a peer after the peer's last
/// lossy judgement.
const KEEP_AFTER_LOSS: Duration = Duration::from_secs(60);

/// The longest a map edit waits to be seen by the watcher (peers are
/// rescanned at least this often, and on every keepalive tick).
const RESCAN: Duration = Duration::from_millis(100);

/// The next mesh event, or never without a mesh.
async fn mesh_event(mesh: &mut Option<&mut Mesh>) -> Option<Event> {
    match mesh {
        Some(m) => m.next().await,
        None => std::future::pending().await,
    }
}

/// Watch tunnel `t`'s paths until SIGTERM, Ctrl-C or its device goes;
/// `reseq`: a resequencer whose hold follows the paths' delays (if
/// `adapt`) and that asks peers for what their gaps miss; `repair`: what
/// keeps this end's packets to lossy peers.
pub async fn watch(
    t: &TunnelConfig,
    mut mesh: Option<&mut Mesh>,
    reseq: Option<&Resequencer>,
    adapt: bool,
    repair: Option<&Repairer>,
) -> Result<()> {
    let mut w = Watcher::new(t, reseq, adapt, repair)?;
    let mut events = w.nl.link_events()?;
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        w.round().await?;
        tokio::select! {
            _ = tokio::time::sleep(w.until_next_round()) => {}
            Some(_) = events.next() => {
                // A burst of changes (a link flapping) costs one round.
                while events.try_recv().is_ok() {}
            }
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = sigterm.recv() => return Ok(()),
            ev = mesh_event(&mut mesh) => {
                if let (Some(ev), Some(m)) = (ev, mesh.as_mut()) {
                    m.applier.handle(&w.nl, &w.dp, ev).await;
                }
            }
        }
    }
}

/// What the watcher keeps between rounds.
struct Watcher<'a> {
    t: &'a TunnelConfig,
    dp: Datapath,
    nl: Netlink,
    tidx: u32,
    /// The key keepalives carry: NVGRE's is the VSID with FlowID 0; a
    /// trunk's, any key it carries (any one reflects the same).
    key: Option<u32>,
    interval: Duration,
    /// How long without a reply a path is still believed.
    window_ns: u64,
    sender: Option<keepalive::Sender>,
    started: u64,
    last_probe: u64,
    peers: HashMap<MapData, u32, Peer>,
    seen: Array<MapData, u64>,
    rtts: Array<MapData, u64>,
    stats: PerCpuArray<MapData, PathStats>,
    /// Each path's last logged state, by (peer id, path).
    logged: BTreeMap<(u32, usize), String>,
    /// Each path's recent round trips, by (peer id, path).
    rtt: BTreeMap<(u32, usize), RttWindow>,
    /// Each striping peer's spread: its slowest path's round trip less its
    /// fastest's (ns), among the paths in the rotation.
    spread: BTreeMap<u32, u64>,
    /// What the resequencer was last told of each peer's path lags.
    lags: BTreeMap<u32, Lags>,
    /// Keepalives sent on each path, by (peer id, path), and what came of
    /// them.
    sent: BTreeMap<(u32, usize), u64>,
    loss: BTreeMap<(u32, usize), ProbeLoss>,
    /// Striping peers with a path that loses: (keepalives lost, sent).
    lossy: BTreeMap<u32, (u64, u64)>,
    /// Until when (monotonic ns) this end keeps what it sends to a peer:
    /// `KEEP_AFTER_LOSS` past the last round its path was found lossy, so
    /// that a judgement near its threshold does not turn repair on and off.
    keep_until: BTreeMap<u32, u64>,
    /// The same, for a path found lossy by its keepalives (not a peer's
    /// report alone): while any runs, every packet leaves on its own.
    lossy_until: BTreeMap<u32, u64>,
    /// By peer id, the lost numbers it had reported by the last round.
    reported: BTreeMap<u32, u64>,
    /// When `status` was last told what the resequencer and repair did.
    said: u64,
    reseq: Option<&'a Resequencer>,
    /// Whether the resequencer's hold follows the spread (unset in the
    /// config).
    adapt: bool,
    announce: Option<Announce>,
    repair: Option<&'a Repairer>,
    /// Whether this end numbers its packets, and keeps those to some peer.
    numbered: bool,
    keeping: bool,
    /// Whether transmit gets every packet on its own (TSO off) for a
    /// lossy path's sake.
    one_by_one: bool,
    announced: Array<MapData, PeerAnnounce>,
}

impl<'a> Watcher<'a> {
    fn new(t: &'a TunnelConfig, reseq: Option<&'a Resequencer>, adapt: bool, repair: Option<&'a Repairer>) -> Result<Watcher<'a>> {
        let dp = Datapath::running()?;
        let tidx = dp.tunnel_named(&t.name)?.map(|(k, _)| k).ok_or_else(|| anyhow!("tunnel {} vanished", t.name))?;
        let key = match t.vsid {
            Some(v) => Some(v << 8),
            None => t.key.or(t.native_key).or(t.vlans.first().map(|v| v.key)),
        };
        if repair.is_some() && !t.sequence && !t.checksum {
            // What a `run` killed while a path lost (below) left off.
            crate::net::sys::set_tso(&t.name, true)?;
        }
        Ok(Watcher {
            t,
            nl: Netlink::new()?,
            tidx,
            key,
            interval: Duration::from_millis(t.keepalive as u64),
            window_ns: t.keepalive as u64 * t.keepalive_misses as u64 * 1_000_000,
            sender: if t.keepalive > 0 { Some(keepalive::Sender::new()?) } else { None },
            started: monotonic_ns(),
            last_probe: 0,
            peers: dp.peers()?,
            seen: dp.path_seen()?,
            rtts: dp.path_rtt()?,
            stats: dp.path_stats()?,
            announced: dp.announced()?,
            dp,
            logged: BTreeMap::new(),
            rtt: BTreeMap::new(),
            spread: BTreeMap::new(),
            lags: BTreeMap::new(),
            sent: BTreeMap::new(),
            loss: BTreeMap::new(),
            lossy: BTreeMap::new(),
            reported: BTreeMap::new(),
            keep_until: BTreeMap::new(),
            lossy_until: BTreeMap::new(),
            said: 0,
            reseq,
            adapt,
            announce: None,
            repair,
            numbered: false,
            keeping: false,
            one_by_one: false,
        })
    }

    /// Until the next keepalive is due, or `RESCAN` at most (map edits).
    fn until_next_round(&self) -> Duration {
        let mut wait = RESCAN;
        if self.sender.is_some() {
            let due = self.last_probe + self.interval.as_nanos() as u64;
            wait = wait.min(Duration::from_nanos(due.saturating_sub(monotonic_ns())));
        }
        wait
    }

    /// One look at every link and peer: keepalives out when one is due,
    /// and each path in or out of its peer's rotation.
    async fn round(&mut self) -> Result<()> {
        let now = monotonic_ns();
        let all: BTreeMap<u32, Link> = self.nl.links().await?.into_iter().map(|l| (l.index, l)).collect();
        if !all.contains_key(&self.tidx) {
            return Err(anyhow!("tunnel device {} is gone", self.t.name));
        }
        let probe = self.sender.is_some() && now.saturating_sub(self.last_probe) >= self.interval.as_nanos() as u64;
        if probe {
            self.last_probe = now;
            // Re-read each round: a reload may have changed the numbering.
            let flags = self.dp.tunnels()?.get(&self.tidx, 0).map(|v| v.flags).unwrap_or_default();
            self.numbered = flags.intersects(TunnelFlags::NUMBERED);
            // Valid for as long as the peer would take to miss
            // `keepalive_misses` of them and one more.
            let ttl = (self.t.keepalive as u64 * (self.t.keepalive_misses as u64 + 1)).min(MAX_ANNOUNCE_TTL_MS as u64) as u32;
            self.announce = Some(announcement(flags, self.repair.is_some(), self.keeping, ttl));
        }
        let mut table = Table { key: self.key, ..Default::default() };
        let mut asks = std::collections::HashMap::new();
        let reported = self.repair.filter(|_| probe).map(Repairer::reported).unwrap_or_default();
        // One peer at a time: with 10,000 peers a copy of them all would be
        // 6 MB every round.
        for id in entries(MAP_PEERS, self.peers.keys())? {
            let Ok(p) = self.peers.get(&id, 0) else { continue };
            if p.tunnel_ifindex == self.tidx {
                self.judge_peer(id, p, &all, probe, now)?;
                if probe {
                    self.follow_repair(id, &p, now, &reported, &mut table, &mut asks);
                }
            }
        }
        if probe {
            self.follow_spread_and_loss()?;
            if let Some(r) = self.reseq {
                r.set_asks(asks);
            }
            if let Some(r) = self.repair {
                let keeping = !table.keep.is_empty();
                if keeping != self.keeping {
                    let what = if keeping {
                        "keeping what it sends for a second, to send again what the peer misses"
                    } else {
                        "no longer keeping what it sends"
                    };
                    println!("{}: repair: {what}", self.t.name);
                    self.keeping = keeping;
                }
                // A GSO packet leaves whole to a link that cuts it itself
                // (veth, a NIC with GRE segmentation), and the copy kept
                // would be one frame for many numbers: while a path loses
                // keepalives, each packet leaves on its own. Not for a
                // peer's report alone: at 1000 + 300 Mbit/s a few requests
                // for packets that came late had it segment one run of
                // three from the start (88% against 92-94%).
                let one_by_one = self.numbered && self.lossy_until.values().any(|&t| now < t);
                if one_by_one != self.one_by_one && !self.t.sequence && !self.t.checksum {
                    crate::net::sys::set_tso(&self.t.name, !one_by_one)?;
                    self.one_by_one = one_by_one;
                }
                r.set_table(table);
            }
            if (self.reseq.is_some() || self.repair.is_some()) && now.saturating_sub(self.said) >= 1_000_000_000 {
                self.said = now;
                let s = RunStatus {
                    pid: std::process::id(),
                    resequencer: self.reseq.map(Resequencer::stats),
                    repair: self.repair.map(Repairer::stats),
                    keeping: self.keeping,
                    running: true,
                };
                super::status::write(&self.t.name, &s);
            }
        }
        Ok(())
    }

    /// Repair for peer `id`: keep what goes to it while one of its paths
    /// loses and this end numbers (the peer cannot see a gap otherwise):
    /// lost keepalives say so, and so does the peer, asking for what was
    /// not kept. Ask it for what its gaps miss when it numbers what it
    /// sends and runs repair: again if it keeps it, else to have it keep.
    /// Requests, and packets sent again, take the path that loses least.
    fn follow_repair(
        &mut self,
        id: u32,
        p: &Peer,
        now: u64,
        reported: &std::collections::HashMap<u32, u64>,
        table: &mut Table,
        asks: &mut std::collections::HashMap<u32, Ask>,
    ) {
        let paths = &p.paths[..(p.npaths as usize).min(p.paths.len())];
        let ranked = self.least_lossy(id, paths);
        let lost = reported.get(&id).copied().unwrap_or(0);
        let new = lost.saturating_sub(self.reported.insert(id, lost).unwrap_or(0));
        let kept = self.keep_until.get(&id).is_some_and(|&t| now < t);
        if new > 0 && !kept {
            println!("{}: peer {} reports {new} packets lost", self.t.name, cstr(&p.name));
        }
        if self.lossy.contains_key(&id) || new > 0 {
            self.keep_until.insert(id, now + KEEP_AFTER_LOSS.as_nanos() as u64);
        }
        if self.lossy.contains_key(&id) {
            self.lossy_until.insert(id, now + KEEP_AFTER_LOSS.as_nanos() as u64);
        }
        let keep = self.keep_until.get(&id).is_some_and(|&t| now < t);
        if self.repair.is_some() && self.numbered {
            table.paths.extend(paths.iter().enumerate().map(|(j, q)| ((q.local, q.remote), Route::new(id, j, q))));
            if keep {
                table.keep.insert(id);
                if let Some(&(_, _, j)) = ranked.first() {
                    table.best.insert(id, Route::new(id, j, &paths[j]));
                }
            }
        }
        let announced = self.announced.get(&id, 0).map_or(0, |a| a.in_force(now));
        let repairs = announced & (ANNOUNCE_REPAIR | ANNOUNCE_REPAIR_READY) != 0;
        if self.reseq.is_none() || !self.t.repair || announced & (ANNOUNCE_IPID | ANNOUNCE_GRE_SEQ) == 0 || !repairs {
            return;
        }
        let keeps = announced & ANNOUNCE_REPAIR != 0;
        if let Some(&(loss, rtt, j)) = ranked.first() {
            // A loss shows once every path is past its number: at once
            // on the slow path, the spread later on a fast one.
            let spread = self.spread.get(&id).copied().unwrap_or(0);
            let after = Duration::from_nanos(5_000_000 + spread / 2 + spread / 8);
            let base = Duration::from_nanos(2 * rtt + 3_000_000);
            // Not yet told apart by loss: ask over the next one too (the
            // peer sends again once, whichever request comes first).
            let spare = ranked.get(1).filter(|r| r.0 == loss).map(|r| Route::new(id, r.2, &paths[r.2]));
            asks.insert(id, Ask { route: Route::new(id, j, &paths[j]), spare, key: self.key, after, base, keeps });
        }
    }

    /// `paths` of peer `id` that carry traffic, as (lost per million
    /// keepalives, least round trip, index), least lossy and then fastest
    /// first.
    fn least_lossy(&self, id: u32, paths: &[gre_common::Path]) -> Vec<(u64, u64, usize)> {
        let interval = (self.interval.as_nanos() as u64).max(1);
        let mut ranked: Vec<(u64, u64, usize)> = paths
            .iter()
            .enumerate()
            .filter(|(_, q)| q.flags.intersects(PathFlags::UP) && !q.flags.intersects(PathFlags::UNHEALTHY))
            .map(|(j, _)| {
                let rtt = self.rtt.get(&(id, j)).and_then(RttWindow::min).unwrap_or(0);
                let (sent, lost) = self.loss.get(&(id, j)).map_or((0, 0), |l| l.lost(rtt / interval + 1));
                (lost * 1_000_000 / sent.max(1), rtt, j)
            })
            .collect();
        ranked.sort_unstable();
        ranked
    }

    /// Paths that differ in delay deliver a striped peer's packets out of
    /// order, and a path that loses turns the reordering TCP tolerates
    /// into more loss than there is. Once either shows: number this end's
    /// packets (so the peer can put them back in order), and wait for
    /// gaps as long as the spread makes them last.
    fn follow_spread_and_loss(&mut self) -> Result<()> {
        let spread = self.spread.values().max().copied().unwrap_or(0);
        let why = match self.lossy.values().next() {
            _ if spread > NUMBER_ABOVE_NS => format!("paths to a peer differ by {:.1} ms in round trip", spread as f64 / 1e6),
            Some((lost, sent)) => format!("a path to a peer lost {lost} of {sent} keepalives"),
            None => String::new(),
        };
        if !why.is_empty() && !self.t.sequence && !self.t.ip_id_sequence {
            // The entry, not a note of ours: a reload rewrites it from the
            // file, which numbers by default only for unequal paths.
            let mut tunnels = self.dp.tunnels()?;
            let mut v = tunnels.get(&self.tidx, 0)?;
            if !v.flags.intersects(TunnelFlags::NUMBERED | TunnelFlags::UNDERLAY6) {
                // GSO packets stay whole: each takes a number per segment.
                v.flags |= TunnelFlags::IPID_SEQ_TX;
                tunnels.insert(self.tidx, v, 0)?;
                println!("{}: {why}: numbering packets in the outer IPv4 ID, so it can put them back in order", self.t.name);
            }
        }
        if let Some(r) = self.reseq.filter(|_| self.adapt) {
            let want = hold_for(spread);
            if want.abs_diff(r.hold()) >= Duration::from_millis(1) {
                r.set_hold(want);
                println!("{}: resequencing holds {} ms for a gap (the paths' one-way spread, and a margin)", self.t.name, want.as_millis());
            }
        }
        Ok(())
    }

    /// Have the resequencer hold what `id`'s faster paths deliver for half
    /// their round trip's lead on the slowest of `striped` (path, round
    /// trip), or nothing when the paths do not differ enough to number.
    fn follow_lags(&mut self, id: u32, striped: Option<&[(usize, u64)]>) {
        let Some(r) = self.reseq.filter(|_| self.adapt) else { return };
        let lags = striped.map(|s| {
            let slowest = s.iter().map(|x| x.1).max().unwrap_or(0);
            let mut lags = Lags::default();
            for &(j, rtt) in s {
                lags[j] = Duration::from_nanos((slowest - rtt) / 2);
            }
            lags
        });
        if self.lags.get(&id) != lags.as_ref() {
            r.set_lags(id, lags);
            match lags {
                Some(l) => self.lags.insert(id, l),
                None => self.lags.remove(&id),
            };
        }
    }

    /// From what keepalives measured of `p`'s striped paths: which are too
    /// slow to stripe over (`PathFlags::SLOW`), the others' spread of
    /// round trips, their fastest (`PathFlags::FASTEST`) and what the
    /// resequencer waits out for the rest, and whether a path loses.
    /// Whether `p` changed.
    fn judge_measures(&mut self, id: u32, p: &mut Peer, healthy: &[bool], standby: &[bool]) -> bool {
        let n = healthy.len();
        let mut changed = false;
        let measured: Vec<(usize, u64)> = (0..n)
            .filter(|&j| healthy[j] && !standby[j])
            .filter_map(|j| self.rtt.get(&(id, j)).and_then(RttWindow::min).map(|r| (j, r)))
            .collect();
        let least = measured.iter().map(|m| m.1).min().unwrap_or(0);
        let slow = |rtt: u64| rtt - least > TOO_SLOW_NS;
        for (j, path) in p.paths[..n].iter_mut().enumerate() {
            let is_slow = measured.iter().any(|&(k, rtt)| k == j && slow(rtt));
            if is_slow != path.flags.intersects(PathFlags::SLOW) {
                path.flags ^= PathFlags::SLOW;
                changed = true;
                let rtt = measured.iter().find(|m| m.0 == j).map_or(0, |m| m.1);
                let how = if is_slow { "a backup" } else { "striped again" };
                println!(
                    "{}: peer {} path {j}: {:.0} ms more round trip than the fastest, beyond what resequencing holds: {how}",
                    self.t.name,
                    cstr(&p.name),
                    rtt.saturating_sub(least) as f64 / 1e6
                );
            }
        }
        let striped: Vec<(usize, u64)> = measured.into_iter().filter(|&(_, rtt)| !slow(rtt)).collect();
        let fastest = match (striped.iter().min_by_key(|s| s.1), striped.iter().map(|s| s.1).max()) {
            (Some(&(j, lo)), Some(hi)) if striped.len() > 1 => {
                self.spread.insert(id, hi - lo);
                (hi - lo > NUMBER_ABOVE_NS).then_some(j)
            }
            _ => {
                self.spread.remove(&id);
                None
            }
        };
        for (j, path) in p.paths[..n].iter_mut().enumerate() {
            if (fastest == Some(j)) != path.flags.intersects(PathFlags::FASTEST) {
                path.flags ^= PathFlags::FASTEST;
                changed = true;
            }
        }
        self.follow_lags(id, fastest.map(|_| &striped[..]));
        // Replies to the probes of the last round trip are still coming.
        let interval = (self.interval.as_nanos() as u64).max(1);
        let lossy = striped
            .iter()
            .filter(|_| striped.len() > 1)
            .filter_map(|&(j, rtt)| self.loss.get(&(id, j))?.lossy(rtt / interval + 1))
            .max_by_key(|&(lost, sent)| lost * 1_000_000 / sent.max(1));
        match lossy {
            Some(l) => self.lossy.insert(id, l),
            None => self.lossy.remove(&id),
        };
        changed
    }

    /// Send `p`'s keepalives (`probe`), judge each path and write the peer
    /// back if anything changed.
    fn judge_peer(&mut self, id: u32, mut p: Peer, all: &BTreeMap<u32, Link>, probe: bool, now: u64) -> Result<()> {
        let n = (p.npaths as usize).min(p.paths.len());
        let mut healthy = vec![false; n];
        let mut changed = false;
        for (j, ok) in healthy.iter_mut().enumerate() {
            let path = p.paths[j];
            let link = all.get(&path.ifindex);
            let link_bad = match link {
                None => Some("link device gone"),
                Some(l) if !l.up => Some("link set down"),
                Some(l) if !l.lower_up => Some("no carrier"),
                _ => None,
            };
            if probe && link_bad.is_none() && !path.flags.intersects(PathFlags::KA_OFF) {
                if let Some(s) = &self.sender {
                    s.send(path.ifindex, &path, ip16(path.local), ip16(path.remote), self.key, self.announce);
                    *self.sent.entry((id, j)).or_default() += 1;
                }
            }
            if probe {
                let slot = path_slot(p.id, j as u32);
                self.rtt.entry((id, j)).or_default().add(self.rtts.get(&slot, 0).unwrap_or(0));
                // Counted from the first reply on (probes sent before the
                // peer ran were not lost), and while the path is well.
                let replies: u64 = self.stats.get(&slot, 0).map(|v| v.iter().map(|s| s.keepalive_replies).sum()).unwrap_or(0);
                if replies > 0 && !path.flags.intersects(PathFlags::UNHEALTHY) {
                    self.loss.entry((id, j)).or_default().add(self.sent.get(&(id, j)).copied().unwrap_or(0), replies);
                }
            }
            let answered = self.seen.get(&path_slot(p.id, j as u32), 0).unwrap_or(0);
            let probe_ok = probe_verdict(path.flags, self.sender.is_some(), answered, now, self.started, self.window_ns);
            let unwell = link_bad.is_some() || !probe_ok;
            if unwell {
                // An outage, not loss: the misses that found it go too.
                self.loss.remove(&(id, j));
            }
            *ok = !unwell && !path.flags.intersects(PathFlags::ADMIN_DOWN);
            if unwell != (path.flags.intersects(PathFlags::UNHEALTHY)) {
                p.paths[j].flags ^= PathFlags::UNHEALTHY;
                changed = true;
            }
            let why = reason(link_bad, probe_ok);
            let prev = self.logged.insert((id, j), why.clone());
            if prev.as_deref() != Some(why.as_str()) && (prev.is_some() || !*ok) {
                let dev = link.map(|l| l.name.clone()).unwrap_or_else(|| format!("#{}", path.ifindex));
                let state = if *ok { "up".to_string() } else { format!("down ({why})") };
                println!("{}: peer {} path {j} ({dev} -> {}): {state}", self.t.name, cstr(&p.name), ip16(path.remote));
            }
        }
        let mut standby: Vec<bool> = p.paths[..n].iter().map(|q| q.flags.intersects(PathFlags::STANDBY)).collect();
        changed |= self.judge_measures(id, &mut p, &healthy, &standby);
        // Too slow to stripe over: a backup while a faster path is up.
        for (s, q) in standby.iter_mut().zip(&p.paths[..n]) {
            *s |= q.flags.intersects(PathFlags::SLOW);
        }
        for (j, carry) in in_rotation(&healthy, &standby).into_iter().enumerate() {
            if carry != (p.paths[j].flags.intersects(PathFlags::UP)) {
                p.paths[j].flags ^= PathFlags::UP;
                changed = true;
                if standby[j] && healthy[j] {
                    println!("{}: peer {} path {j}: standby {}", self.t.name, cstr(&p.name), if carry { "in use" } else { "idle" });
                }
            }
        }
        if changed {
            // One map update swaps the whole peer: paths and schedule.
            self.peers.insert(id, p, 0)?;
        }
        Ok(())
    }
}

/// Why a path is down, for the log.
fn reason(link_ok: Option<&str>, probe_ok: bool) -> String {
    match (link_ok, probe_ok) {
        (Some(r), _) => r.to_string(),
        (None, false) => "keepalives not coming back".into(),
        (None, true) => "up".into(),
    }
}

/// Whether keepalives say a path may carry traffic. `answered`: when a
/// reply last came back over it (0: never). A peer in "auto" mode that has
/// never answered is not judged at all: it may be a gretap or Open vSwitch
/// endpoint, which cannot reflect IP-in-GRE, and cutting off its only path
/// would kill the tunnel. Once it has answered, it is judged like any.
fn probe_verdict(flags: PathFlags, probing: bool, answered: u64, now: u64, started: u64, window_ns: u64) -> bool {
    if !probing || flags.intersects(PathFlags::KA_OFF) {
        return true;
    }
    if answered == 0 {
        return !flags.intersects(PathFlags::KA_REQUIRED) || now < started + window_ns;
    }
    now.saturating_sub(answered) < window_ns
}

/// What this end's keepalives announce, given its tunnel's flags: that it
/// takes light packets unnumbered (always: a peer that starts numbering
/// may send them so from its first numbered packet, not from this end's
/// first numbered keepalive), and when its packets are numbered, how,
/// whether it runs repair (`repairs`) and keeps them now; valid for
/// `ttl_ms`.
fn announcement(flags: TunnelFlags, repairs: bool, keeping: bool, ttl_ms: u32) -> Announce {
    let mut numbers = 0;
    if flags.intersects(TunnelFlags::IPID_NUMBERED) {
        numbers |= ANNOUNCE_IPID;
    }
    if flags.intersects(TunnelFlags::SEQ) {
        numbers |= ANNOUNCE_GRE_SEQ;
    }
    let mut what = ANNOUNCE_UNNUMBERED | numbers;
    // Repair means nothing to a peer that cannot see numbers.
    if repairs && numbers != 0 {
        what |= ANNOUNCE_REPAIR_READY;
    }
    if keeping && numbers != 0 {
        what |= ANNOUNCE_REPAIR;
    }
    Announce::new(what, ttl_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: u64 = 300_000_000;

    #[test]
    fn keepalives_say_how_packets_are_numbered_and_whether_lost_ones_can_be_asked_for() {
        let flags = |a: Announce| a.flags();
        // Nothing numbered: only that a peer may send light packets
        // unnumbered, and nothing of repair, which needs numbers.
        let u = ANNOUNCE_UNNUMBERED;
        assert_eq!(flags(announcement(TunnelFlags::empty(), true, true, 400)), u);
        assert_eq!(flags(announcement(TunnelFlags::IPID_SEQ_TX, false, false, 400)), ANNOUNCE_IPID | u);
        // Runs repair: a receiver may report losses (ask) before it keeps.
        assert_eq!(flags(announcement(TunnelFlags::IPID_SEQ_TX, true, false, 400)), ANNOUNCE_IPID | ANNOUNCE_REPAIR_READY | u);
        assert_eq!(flags(announcement(TunnelFlags::SEQ, true, true, 400)), ANNOUNCE_GRE_SEQ | ANNOUNCE_REPAIR_READY | ANNOUNCE_REPAIR | u);
        assert_eq!(announcement(TunnelFlags::SEQ, true, true, 400).ttl_ms(), 400);
    }

    #[test]
    fn a_standby_path_carries_only_while_no_other_path_is_healthy() {
        let sb = [false, false, true];
        assert_eq!(in_rotation(&[true, true, true], &sb), [true, true, false]);
        assert_eq!(in_rotation(&[false, true, true], &sb), [false, true, false]);
        assert_eq!(in_rotation(&[false, false, true], &sb), [false, false, true]);
        assert_eq!(in_rotation(&[false, false, false], &sb), [false, false, false]);
        // Only backups: they are the paths.
        assert_eq!(in_rotation(&[true, true], &[true, true]), [true, true]);
    }

    #[test]
    fn a_peer_that_never_answered_is_judged_only_when_required() {
        let (start, late) = (1_000_000_000, 5_000_000_000);
        // auto: never answered, long after start: still usable.
        assert!(probe_verdict(PathFlags::empty(), true, 0, late, start, W));
        // required: usable only during the start-up window.
        assert!(probe_verdict(PathFlags::KA_REQUIRED, true, 0, start + W / 2, start, W));
        assert!(!probe_verdict(PathFlags::KA_REQUIRED, true, 0, late, start, W));
        // Once answered, both modes judge by the last reply.
        for mode in [PathFlags::empty(), PathFlags::KA_REQUIRED] {
            assert!(probe_verdict(mode, true, late - W / 2, late, start, W));
            assert!(!probe_verdict(mode, true, late - 2 * W, late, start, W));
        }
        // off, or no keepalives at all: never judged.
        assert!(probe_verdict(PathFlags::KA_OFF | PathFlags::KA_REQUIRED, true, late - 2 * W, late, start, W));
        assert!(probe_verdict(PathFlags::KA_REQUIRED, false, 0, late, start, W));
    }
}
