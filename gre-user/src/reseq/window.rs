//! One peer's resequencing window: frames that arrive ahead of a gap in
//! the peer's RFC 2890 sequence numbers wait until the gap fills or the
//! oldest of them has waited `hold`; then they leave in order. Nothing is
//! dropped for arriving late: a packet whose number was already passed
//! (its gap given up on) is delivered at once, because TCP would rather
//! have it late than resend it. Only a repeat of a number still waiting
//! is dropped. Pure TCP ACKs never wait (gre-common's `ack`): they leave
//! at once and their number counts as filled. A GSO packet (a sender's,
//! or GRO's) holds the numbers of the segments it stands for.

use std::{
    collections::{BTreeMap, VecDeque},
    time::{Duration, Instant},
};

use gre_common::reseq::is_number;

/// Most frames one peer may have waiting; one more releases the oldest
/// gap at once, so a lost packet never costs more than this much memory.
pub const MAX_HELD: usize = 4096;
/// A number this far ahead of the expected one is a restart (the peer's
/// counter began again), not a gap worth waiting for.
pub const MAX_GAP: u64 = 1 << 16;

/// What the windows did, summed over peers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WindowStats {
    /// Delivered in order without waiting (wire packets: a GSO packet
    /// counts its segments).
    pub in_order: u64,
    /// Delivered after waiting for an earlier number.
    pub held: u64,
    /// Numbers given up on (a gap that did not fill within `hold`).
    pub skipped: u64,
    /// Delivered after their number had been given up on.
    pub late: u64,
    /// Repeats of a number already waiting: dropped.
    pub duplicate: u64,
    /// Pure TCP ACKs delivered ahead of a gap, without waiting.
    pub early: u64,
    /// GSO packets that came whole (a veth peer's, or GRO's), each
    /// holding its segments' numbers.
    #[serde(default)]
    pub whole: u64,
    /// Frames the hand-off lost before the window saw them (AF_XDP: no
    /// free frame for the kernel to fill).
    pub handoff_lost: u64,
    /// TCP segments delivered in GSO packets (merged, or come whole), and
    /// those packets.
    pub merged: u64,
    pub merged_into: u64,
    /// Numbers asked of the peer again (`repair`), and those of them that
    /// came before their gap was given up on.
    pub asked: u64,
    pub repaired: u64,
}

/// Repair times a window's hold follows.
const REPAIR_SAMPLES: usize = 16;
/// How long a number asked for is looked out for (its repair timed).
const ASKED_FOR: Duration = Duration::from_secs(1);
/// A path that delivered within this long counts for `due`'s frontier.
const ACTIVE: Duration = Duration::from_millis(20);
/// A path silent this long is down or not striped over: whatever it last
/// brought holds no gap back.
const DEAD: Duration = Duration::from_secs(1);
/// How long a gap stands before `due` takes it for a loss: a path keeps
/// its order only up to the hand-off's receive queues, which `run` reads
/// in turns, and the sender's CPUs, which number and send in parallel.
const SETTLE: Duration = Duration::from_millis(1);
/// Ranges of numbers given up on that are remembered, to tell a late
/// packet from a second copy of one delivered.
const SKIPPED_RANGES: usize = 1024;

/// What the window holds: a frame's bytes, and how many numbers it takes.
pub trait Frame: Default {
    /// The consecutive numbers it stands for, from its own: a GSO
    /// packet's segments each had one.
    fn numbers(&self) -> u64 {
        1
    }
    /// A pure TCP ACK, which never waits.
    fn is_pure_ack(&self) -> bool;
    /// The empty frame (`Default`): one delivered early, whose number is
    /// kept so the gap in front of it is known filled.
    fn is_none(&self) -> bool;
}

impl Frame for Vec<u8> {
    fn is_pure_ack(&self) -> bool {
        gre_common::ack::frame_is_pure_ack(self)
    }

    fn is_none(&self) -> bool {
        self.is_empty()
    }
}

/// How many numbers are given in `start..end`.
fn numbers(start: u64, end: u64) -> u64 {
    const SPAN: u64 = 1 << 16;
    let never = end.div_ceil(SPAN).saturating_sub(start.div_ceil(SPAN));
    end.saturating_sub(start).saturating_sub(never)
}

pub struct Window<F: Frame = Vec<u8>> {
    /// The next number to deliver, extended to 64 bits so that waiting
    /// frames sort across the 32-bit wrap. None until the first frame.
    next: Option<u64>,
    /// Frames waiting, by (first) number.
    held: BTreeMap<u64, Held<F>>,
    /// Numbers below this were looked at for asking (`due`).
    ask_from: u64,
    /// Numbers asked for and not yet come, and when they were asked.
    asked: BTreeMap<u64, Instant>,
    /// How long the last few numbers asked for took to come.
    repair_times: VecDeque<Duration>,
    /// Each path's highest number so far, and when it came.
    path_high: [Option<(u64, Instant)>; gre_common::MAX_PATHS],
    /// Numbers given up on, as ranges start → end (exclusive): one that
    /// comes later is delivered late; any other number below `next` is a
    /// second copy and dropped.
    skipped: BTreeMap<u64, u64>,
}

impl<F: Frame> Default for Window<F> {
    fn default() -> Self {
        Window {
            next: None,
            held: BTreeMap::new(),
            ask_from: 0,
            asked: BTreeMap::new(),
            repair_times: VecDeque::new(),
            path_high: [None; gre_common::MAX_PATHS],
            skipped: BTreeMap::new(),
        }
    }
}

struct Held<F> {
    arrived: Instant,
    /// Not before: a frame from a faster path waits out the difference
    /// in delay (`Resequencer::set_lags`).
    ready: Instant,
    /// None (`Frame::is_none`): a number already delivered early, kept so
    /// the gap in front of it is known filled.
    frame: F,
    /// The numbers it holds, from its key on.
    numbers: u64,
}

impl<F: Frame> Window<F> {
    /// `seq` on the 64-bit line near `next`: the serial-number distance
    /// (RFC 1982) decides which side of it the number falls.
    fn extend(next: u64, seq: u32) -> u64 {
        let d = seq.wrapping_sub(next as u32) as i32 as i64;
        next.wrapping_add(d as u64)
    }

    /// Take a frame that arrived `now` over `path` and may not leave
    /// before `ready`; `out` gets what may leave now, in order.
    #[allow(clippy::too_many_arguments)]
    ///
    /// A number `is_number` refuses comes only inside a GSO packet's run
    /// (the sender gives none to a packet alone): it is put in order
    /// when it comes, and never waited for.
    pub fn push(&mut self, seq: u32, path: usize, frame: F, now: Instant, ready: Instant, stats: &mut WindowStats, out: &mut Vec<F>) {
        // Start well above 0 so numbers before the first one still extend
        // below it without wrapping.
        let next = *self.next.get_or_insert((1u64 << 32) | seq as u64);
        let e = Self::extend(next, seq);
        let numbers = frame.numbers().max(1);
        if numbers > 1 {
            stats.whole += 1;
        }
        let last = e + numbers - 1;
        if let Some(h) = self.path_high.get_mut(path) {
            *h = Some((h.map_or(last, |(high, _)| high.max(last)), now));
        }
        if e < next {
            if self.take_skipped(e) || !is_number(e as u32) {
                // Asked for, and came too late: the hold learns from it.
                if let Some(t) = self.asked.remove(&e) {
                    self.time_repair(now.duration_since(t));
                }
                stats.late += 1;
                out.push(frame);
            } else {
                stats.duplicate += 1;
            }
            return;
        }
        if e - next > MAX_GAP {
            // A restart: flush what waits, then carry on from here.
            self.release_all(stats, out);
            self.note_skipped(self.next.unwrap_or(e), e);
            self.next = Some(e);
        }
        if self.held.contains_key(&e) {
            stats.duplicate += 1;
            return;
        }
        if let Some(t) = self.asked.remove(&e) {
            stats.repaired += 1;
            self.time_repair(now.duration_since(t));
        }
        let (ready, frame) = if frame.is_pure_ack() {
            stats.early += 1;
            out.push(frame);
            (now, F::default())
        } else {
            (ready, frame)
        };
        self.held.insert(e, Held { arrived: now, ready, frame, numbers });
        self.drain(Some(now), Some(e), stats, out);
        if self.held.len() > MAX_HELD {
            self.skip_gap(stats, out);
        }
    }

    /// Deliver what is next in order and ready, and give up on gaps whose
    /// waiting frames have waited `hold`.
    pub fn expire(&mut self, now: Instant, hold: Duration, stats: &mut WindowStats, out: &mut Vec<F>) {
        loop {
            self.drain(Some(now), None, stats, out);
            match (self.gap(), self.oldest()) {
                (true, Some(oldest)) if now.duration_since(oldest) >= hold => self.skip_gap(stats, out),
                _ => break,
            }
        }
    }

    /// The missing numbers that are lost, not asked for before, into
    /// `out` (as the peer numbered them: the low 32 bits); at most `max`.
    /// Lost: every path still delivering has delivered a higher number (a
    /// path keeps its packets' order, so the number is not on its way). A
    /// path silent for `silent` (at least `ACTIVE`; about as long as it
    /// delivers behind the fastest) delivers no more, once the first frame
    /// past the gap has also waited that long: the missing number left
    /// before that frame, so a path idle until then (BBR's ProbeRTT, a
    /// stream starting again) may still bring it for as long. When no path
    /// delivers, whatever is missing is lost. A gap is judged once it has
    /// stood `SETTLE`. How long frames behind it have waited decides
    /// nothing else: a path's queue can hold a packet longer than any wait
    /// worth setting, and asking for it puts a second copy on the wire.
    pub fn due(&mut self, now: Instant, silent: Duration, max: usize, stats: &mut WindowStats, out: &mut Vec<u32>) {
        let silent = silent.max(ACTIVE);
        let Some(next) = self.next else { return };
        // What was asked for long ago is not coming.
        while self.asked.first_key_value().is_some_and(|(_, &t)| now.duration_since(t) > ASKED_FOR) {
            self.asked.pop_first();
        }
        // The least number the paths delivering now have passed, and the
        // least the paths not yet down have.
        let (mut active, mut alive) = (u64::MAX, u64::MAX);
        for &(high, seen) in self.path_high.iter().flatten() {
            let quiet = now.duration_since(seen);
            if quiet <= silent {
                active = active.min(high);
            }
            if quiet <= DEAD {
                alive = alive.min(high);
            }
        }
        let mut expected = self.ask_from.max(next);
        for (&k, h) in self.held.range(expected..) {
            if k > expected {
                let waited = now.duration_since(h.arrived);
                if waited < SETTLE {
                    break;
                }
                let frontier = if waited >= silent { active } else { alive };
                let end = k.min(frontier).min(expected + max.saturating_sub(out.len()) as u64);
                if end <= expected {
                    break;
                }
                for m in (expected..end).filter(|&m| is_number(m as u32)) {
                    out.push(m as u32);
                    self.asked.insert(m, now);
                    stats.asked += 1;
                }
                if end < k {
                    expected = end;
                    break;
                }
            }
            expected = expected.max(k + h.numbers);
        }
        self.ask_from = expected;
    }

    fn time_repair(&mut self, took: Duration) {
        if self.repair_times.len() == REPAIR_SAMPLES {
            self.repair_times.pop_front();
        }
        self.repair_times.push_back(took);
    }

    /// Remember `start..end` as given up on.
    fn note_skipped(&mut self, start: u64, end: u64) {
        if start < end {
            self.skipped.insert(start, end);
            while self.skipped.len() > SKIPPED_RANGES {
                self.skipped.pop_first();
            }
        }
    }

    /// Whether `e` was given up on and has not come since.
    fn take_skipped(&mut self, e: u64) -> bool {
        let Some((&start, &end)) = self.skipped.range(..=e).next_back() else { return false };
        if e >= end {
            return false;
        }
        self.skipped.remove(&start);
        self.note_skipped(start, e);
        self.note_skipped(e + 1, end);
        true
    }

    /// How long a gap asked for is worth waiting for: `base` until repairs
    /// have been timed, then the longest of the recent ones and a quarter.
    pub fn repair_wait(&self, base: Duration) -> Duration {
        match self.repair_times.iter().max() {
            Some(&t) => t + t / 4,
            None => base,
        }
    }

    /// When `expire` has something to do next, if anything waits.
    pub fn deadline(&self, hold: Duration) -> Option<Instant> {
        if self.gap() {
            self.oldest().map(|t| t + hold)
        } else {
            self.held.values().next().map(|h| h.ready)
        }
    }

    /// Whether the first waiting frame is behind a missing number.
    pub fn gap(&self) -> bool {
        matches!((self.next, self.held.keys().next()), (Some(n), Some(&k)) if k != n)
    }

    /// When the longest-waiting frame arrived, if any waits.
    fn oldest(&self) -> Option<Instant> {
        self.held.values().map(|h| h.arrived).min()
    }

    /// Give up on the first gap: go on from the first waiting frame.
    fn skip_gap(&mut self, stats: &mut WindowStats, out: &mut Vec<F>) {
        let (Some(next), Some(&first)) = (self.next, self.held.keys().next()) else {
            return;
        };
        stats.skipped += numbers(next, first);
        self.note_skipped(next, first);
        self.next = Some(first);
        self.drain(None, None, stats, out);
    }

    fn release_all(&mut self, stats: &mut WindowStats, out: &mut Vec<F>) {
        while !self.held.is_empty() {
            self.skip_gap(stats, out);
        }
    }

    /// Deliver from `next` on while the numbers follow (and, given `now`,
    /// are ready; given none, whether ready or not: a gap was given up).
    /// `pushed`: the number just taken, which did not wait if it leaves.
    fn drain(&mut self, now: Option<Instant>, pushed: Option<u64>, stats: &mut WindowStats, out: &mut Vec<F>) {
        let Some(mut next) = self.next else { return };
        while let Some(entry) = self.held.first_entry() {
            if *entry.key() < next {
                // Its numbers came in a GSO packet that held them too.
                entry.remove();
                stats.duplicate += 1;
                continue;
            }
            if *entry.key() != next || now.is_some_and(|t| entry.get().ready > t) {
                break;
            }
            let (k, h) = entry.remove_entry();
            if !h.frame.is_none() {
                if pushed == Some(k) {
                    stats.in_order += h.numbers;
                } else {
                    stats.held += h.numbers;
                }
                out.push(h.frame);
            }
            next = k + h.numbers;
            if !is_number(next as u32) && self.held.first_key_value().is_none_or(|(&f, _)| f != next) {
                // Given only inside a GSO packet's run, and not here: not
                // waited for (one that comes later is delivered late).
                next += 1;
            }
        }
        self.next = Some(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(seqs: &[u32], w: &mut Window, st: &mut WindowStats, now: Instant) -> Vec<u32> {
        let mut out = Vec::new();
        for &s in seqs {
            w.push(s, 0, s.to_be_bytes().to_vec(), now, now, st, &mut out);
        }
        out.iter().map(|f| u32::from_be_bytes(f[..4].try_into().unwrap())).collect()
    }

    #[test]
    fn frames_ahead_of_a_gap_wait_for_it() {
        let (mut w, mut st, now) = (Window::default(), WindowStats::default(), Instant::now());
        assert_eq!(run(&[1, 2, 4, 5, 3, 6], &mut w, &mut st, now), [1, 2, 3, 4, 5, 6]);
        assert_eq!((st.in_order, st.held, st.skipped), (4, 2, 0));
    }

    #[test]
    fn a_gap_that_does_not_fill_is_given_up_after_the_hold_and_its_packet_still_delivered() {
        let (mut w, mut st, t0) = (Window::default(), WindowStats::default(), Instant::now());
        assert_eq!(run(&[1, 3, 4], &mut w, &mut st, t0), [1]);
        let mut out = Vec::new();
        w.expire(t0 + Duration::from_micros(900), Duration::from_millis(1), &mut st, &mut out);
        assert!(out.is_empty(), "released before the hold");
        w.expire(t0 + Duration::from_millis(1), Duration::from_millis(1), &mut st, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(st.skipped, 1);
        assert_eq!(run(&[2, 5], &mut w, &mut st, t0), [2, 5]);
        assert_eq!(st.late, 1);
    }

    /// An IPv4 TCP segment in an Ethernet frame: `data` bytes of payload,
    /// TCP flags `flags`, and the frame's first four bytes set to `tag`
    /// (where a MAC would be) so `run` can tell frames apart.
    fn tcp_frame(tag: u32, flags: u8, data: usize) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 20 + data];
        f[..4].copy_from_slice(&tag.to_be_bytes());
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[16..18].copy_from_slice(&((20 + 20 + data) as u16).to_be_bytes());
        f[23] = 6;
        f[14 + 20 + 12] = 5 << 4;
        f[14 + 20 + 13] = flags;
        f
    }

    #[test]
    fn pure_acks_leave_at_once_and_fill_their_number() {
        let (mut w, mut st, now) = (Window::default(), WindowStats::default(), Instant::now());
        let mut out = Vec::new();
        let tags = |out: &Vec<Vec<u8>>| out.iter().map(|f| u32::from_be_bytes(f[..4].try_into().unwrap())).collect::<Vec<_>>();
        w.push(1, 0, tcp_frame(1, 0x10, 100), now, now, &mut st, &mut out);
        // 2 is late; 3 a pure ACK, 4 data, 5 a FIN (no data, but more than an ACK).
        w.push(3, 0, tcp_frame(3, 0x10, 0), now, now, &mut st, &mut out);
        w.push(4, 0, tcp_frame(4, 0x10, 1), now, now, &mut st, &mut out);
        w.push(5, 0, tcp_frame(5, 0x11, 0), now, now, &mut st, &mut out);
        assert_eq!(tags(&out), [1, 3], "only the pure ACK passes the gap");
        w.push(2, 0, tcp_frame(2, 0x18, 1000), now, now, &mut st, &mut out);
        assert_eq!(tags(&out), [1, 3, 2, 4, 5], "3 is not delivered twice");
        assert_eq!((st.early, st.held, st.skipped), (1, 2, 0));
    }

    #[test]
    fn a_frame_from_a_faster_path_waits_out_its_lag_and_holds_what_follows() {
        let (mut w, mut st, t0) = (Window::default(), WindowStats::default(), Instant::now());
        let lag = Duration::from_millis(35);
        let mut out = Vec::new();
        w.push(1, 0, vec![1], t0, t0 + lag, &mut st, &mut out);
        w.push(2, 0, vec![2], t0, t0, &mut st, &mut out);
        assert!(out.is_empty(), "in order, but not ready");
        assert_eq!(w.deadline(Duration::from_millis(50)), Some(t0 + lag));
        w.expire(t0 + lag - Duration::from_micros(1), Duration::from_millis(50), &mut st, &mut out);
        assert!(out.is_empty(), "released before its lag");
        w.expire(t0 + lag, Duration::from_millis(50), &mut st, &mut out);
        assert_eq!(out, [vec![1], vec![2]]);
        assert_eq!((st.held, st.skipped), (2, 0));
    }

    #[test]
    fn a_path_idle_until_the_next_frame_came_may_still_bring_the_gap_for_as_long_as_it_lags() {
        let (mut w, mut st, t0) = (Window::default(), WindowStats::default(), Instant::now());
        let ms = Duration::from_millis(1);
        let mut out = Vec::new();
        // 1 over the slow path 1, 2 over path 0; then nothing for 100 ms
        // (BBR's ProbeRTT): 3 leaves on path 1, 4 just after on path 0,
        // which delivers it first.
        w.push(1, 1, vec![1], t0, t0, &mut st, &mut out);
        w.push(2, 0, vec![2], t0, t0, &mut st, &mut out);
        let t1 = t0 + 100 * ms;
        w.push(4, 0, vec![4], t1, t1, &mut st, &mut out);
        let mut asks = Vec::new();
        w.due(t1 + SETTLE, ms, 64, &mut st, &mut asks);
        assert!(asks.is_empty(), "path 1, quiet since before 4 came, may bring 3 yet: {asks:?}");
        w.due(t1 + ACTIVE - ms, ms, 64, &mut st, &mut asks);
        assert!(asks.is_empty(), "{asks:?}");
        w.due(t1 + ACTIVE, ms, 64, &mut st, &mut asks);
        assert_eq!(asks, [3], "path 1 silent for {ACTIVE:?} after 4 came: 3 is lost");
        // A path silent past DEAD (down, or a backup) holds nothing back.
        let (mut w, mut asks) = (Window::default(), Vec::new());
        w.push(1, 1, vec![1], t0, t0, &mut st, &mut out);
        let t2 = t0 + DEAD + ms;
        for s in [2, 4] {
            w.push(s, 0, vec![s as u8], t2, t2, &mut st, &mut out);
        }
        w.due(t2 + SETTLE, ms, 64, &mut st, &mut asks);
        assert_eq!(asks, [3]);
    }

    #[test]
    fn a_gap_is_asked_for_once_when_every_path_has_passed_it_or_the_paths_before_it_fell_silent() {
        let (mut w, mut st, t0) = (Window::default(), WindowStats::default(), Instant::now());
        let ms = Duration::from_millis(1);
        let mut out = Vec::new();
        // 1, 2, 5 and 9 come over path 0, 6 over path 1: 3 and 4 are lost
        // (both paths are past them), 7 and 8 may still be on path 1.
        for (seq, path) in [(1, 0), (2, 0), (5, 0), (6, 1), (9, 0)] {
            w.push(seq, path, vec![seq as u8], t0, t0, &mut st, &mut out);
        }
        assert_eq!(out, [vec![1], vec![2]]);
        let mut asks = Vec::new();
        w.due(t0, ms, 64, &mut st, &mut asks);
        assert!(asks.is_empty(), "a path may reorder by a hair: {asks:?}");
        w.due(t0 + SETTLE, ms, 64, &mut st, &mut asks);
        assert_eq!(asks, [3, 4], "what every path has passed, once it stood {SETTLE:?}");
        asks.clear();
        // Path 0 goes on delivering; path 1, its queue full, not for a while.
        w.push(10, 0, vec![10], t0 + 15 * ms, t0 + 15 * ms, &mut st, &mut out);
        w.due(t0 + 15 * ms, ms, 64, &mut st, &mut asks);
        assert!(asks.is_empty(), "asked twice, or what path 1 may still bring: {asks:?}");
        w.due(t0 + ACTIVE + ms, ms, 64, &mut st, &mut asks);
        assert_eq!(asks, [7, 8], "path 1 silent for {ACTIVE:?}: not coming");
        asks.clear();
        w.due(t0 + 2 * ACTIVE, ms, 64, &mut st, &mut asks);
        assert!(asks.is_empty(), "asked twice");
        out.clear();
        // 3 and 4 come 3 ms after they were asked for, in time.
        let mut out = Vec::new();
        let t1 = t0 + SETTLE + 3 * ms;
        for s in [3, 4] {
            w.push(s, 1, vec![s as u8], t1, t1, &mut st, &mut out);
        }
        assert_eq!(out.len(), 4, "3 and 4, then the 5 and 6 that waited for them");
        assert_eq!(&out[..2], &[vec![3], vec![4]]);
        assert_eq!((st.asked, st.repaired), (4, 2));
        assert_eq!(w.repair_wait(Duration::from_millis(9)), Duration::from_micros(3750), "the repair took 3 ms");
        // The rest is given up on; a number asked for comes after that:
        // late, and delivered once.
        w.expire(t1 + Duration::from_secs(1), Duration::from_millis(5), &mut st, &mut out);
        let n = out.len();
        let t2 = t0 + ACTIVE + 13 * ms;
        w.push(7, 0, vec![7], t2, t2, &mut st, &mut out);
        w.push(7, 1, vec![7], t2, t2, &mut st, &mut out);
        w.push(6, 1, vec![6], t1, t1, &mut st, &mut out);
        assert_eq!(out.len(), n + 1, "a second copy of 7, or of 6, which was delivered in order");
        assert_eq!((st.repaired, st.late, st.duplicate), (2, 1, 2));
        // 7 came 12 ms after it was asked for, after its gap was given up:
        // the hold learns from it all the same.
        assert_eq!(w.repair_wait(Duration::ZERO), Duration::from_millis(15));
        // A long gap is asked for `max` numbers at a time.
        let mut w = Window::default();
        run(&[100, 200], &mut w, &mut st, t0);
        asks.clear();
        w.due(t0 + ms, ms, 64, &mut st, &mut asks);
        assert_eq!(asks.len(), 64);
        asks.clear();
        w.due(t0 + ms, ms, 64, &mut st, &mut asks);
        assert_eq!(asks.len(), 35);
        assert_eq!(asks.last(), Some(&199));
        // With every path silent, whatever is missing is lost.
        let mut w = Window::default();
        for (seq, path) in [(1, 0), (2, 0), (5, 1)] {
            w.push(seq, path, vec![seq as u8], t0, t0, &mut st, &mut out);
        }
        asks.clear();
        w.due(t0 + ms, ms, 64, &mut st, &mut asks);
        assert!(asks.is_empty(), "3 and 4 may still be on path 0: {asks:?}");
        // A path that delivers 50 ms after the fastest is silent only
        // past that.
        let late = 50 * ms;
        w.due(t0 + ACTIVE + ms, late, 64, &mut st, &mut asks);
        assert!(asks.is_empty(), "3 and 4 may still be on path 0, {late:?} behind: {asks:?}");
        w.due(t0 + late + ms, late, 64, &mut st, &mut asks);
        assert_eq!(asks, [3, 4]);
    }

    #[test]
    fn numbers_wrap_and_repeats_of_waiting_ones_are_dropped() {
        let (mut w, mut st, now) = (Window::default(), WindowStats::default(), Instant::now());
        let m = u32::MAX;
        assert_eq!(run(&[m - 1, 1, 1, 2, m, 3], &mut w, &mut st, now), [m - 1, m, 1, 2, 3]);
        assert_eq!(st.duplicate, 1);
    }

    #[test]
    fn numbers_never_given_are_neither_waited_for_nor_asked_for() {
        let (mut w, mut st, t0) = (Window::default(), WindowStats::default(), Instant::now());
        // 0x1_0000 is never given: 0xffff is followed by 0x1_0001.
        assert_eq!(run(&[0xfffe, 0x1_0001, 0xffff, 0x1_0002], &mut w, &mut st, t0), [0xfffe, 0xffff, 0x1_0001, 0x1_0002]);
        assert_eq!((st.skipped, st.held), (0, 1));
        // A gap across one is asked for without it, and counted without it.
        let mut w = Window::default();
        run(&[0x1_fffe, 0x2_0003], &mut w, &mut st, t0);
        let mut asks = Vec::new();
        w.due(t0 + Duration::from_millis(1), Duration::from_millis(1), 64, &mut st, &mut asks);
        assert_eq!(asks, [0x1_ffff, 0x2_0001, 0x2_0002]);
        let mut out = Vec::new();
        w.expire(t0 + Duration::from_secs(1), Duration::from_millis(5), &mut st, &mut out);
        assert_eq!(st.skipped, 3);
        // One inside a GSO packet's run, segmented on the way: in order
        // when it comes in its place, late (not dropped) when after its
        // successor.
        let mut w = Window::default();
        assert_eq!(run(&[0x2_fffe, 0x2_ffff, 0x3_0000, 0x3_0001], &mut w, &mut st, t0), [0x2_fffe, 0x2_ffff, 0x3_0000, 0x3_0001]);
        let late = st.late;
        let mut w = Window::default();
        assert_eq!(run(&[0x4_ffff, 0x5_0001, 0x5_0000], &mut w, &mut st, t0), [0x4_ffff, 0x5_0001, 0x5_0000]);
        assert_eq!(st.late, late + 1);
    }

    /// A frame standing for `.1` numbers, tagged `.0`.
    #[derive(Default, Debug, PartialEq, Eq)]
    struct Gso(u32, u64);

    impl Frame for Gso {
        fn numbers(&self) -> u64 {
            self.1
        }
        fn is_pure_ack(&self) -> bool {
            false
        }
        fn is_none(&self) -> bool {
            self.1 == 0
        }
    }

    #[test]
    fn a_gso_packet_holds_the_numbers_of_its_segments() {
        let (mut w, mut st, t0) = (Window::<Gso>::default(), WindowStats::default(), Instant::now());
        let mut out = Vec::new();
        // 1 alone; 2..=9 one GSO packet of 8, overtaken by 10..=11.
        for (s, n) in [(1, 1), (10, 2), (2, 8)] {
            w.push(s, 0, Gso(s, n), t0, t0, &mut st, &mut out);
        }
        assert_eq!(out, [Gso(1, 1), Gso(2, 8), Gso(10, 2)]);
        assert_eq!((st.in_order, st.held), (9, 2), "counted in wire packets");
        assert_eq!(st.whole, 2);
        // Next is 12: 14..=16 waits, and only what no packet holds is asked for.
        out.clear();
        for (s, n) in [(14, 3), (20, 1)] {
            w.push(s, 0, Gso(s, n), t0, t0, &mut st, &mut out);
        }
        let mut asks = Vec::new();
        w.due(t0 + SETTLE, Duration::from_millis(1), 64, &mut st, &mut asks);
        assert_eq!(asks, [12, 13, 17, 18, 19]);
        // A number a GSO packet delivered comes again alone: a repeat.
        w.push(12, 0, Gso(12, 2), t0, t0, &mut st, &mut out);
        w.push(13, 1, Gso(113, 1), t0, t0, &mut st, &mut out);
        assert_eq!(out, [Gso(12, 2), Gso(14, 3)]);
        assert_eq!(st.duplicate, 1);
        // One across a number never given (0x1_0000) ends past it.
        let mut w = Window::<Gso>::default();
        out.clear();
        for (s, n) in [(0xfffe, 4), (0x1_0002, 1)] {
            w.push(s, 0, Gso(s, n), t0, t0, &mut st, &mut out);
        }
        assert_eq!(out, [Gso(0xfffe, 4), Gso(0x1_0002, 1)], "0xfffe..=0x1_0001 holds the 4");
        assert!(!w.gap());
    }

    #[test]
    fn a_restart_flushes_what_waits() {
        let (mut w, mut st, now) = (Window::default(), WindowStats::default(), Instant::now());
        assert_eq!(run(&[10, 12, 1_000_000, 1_000_001], &mut w, &mut st, now), [10, 12, 1_000_000, 1_000_001]);
    }
}
