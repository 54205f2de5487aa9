//! One peer's resequencing window: frames that arrive ahead of a gap in
//! the peer's RFC 2890 sequence numbers wait until the gap fills or the
//! oldest of them has waited `hold`; then they leave in order. Nothing is
//! dropped for arriving late: a packet whose number was already passed
//! (its gap given up on) is delivered at once, because TCP would rather
//! have it late than resend it. Only a repeat of a number still waiting
//! is dropped.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

/// Most frames one peer may have waiting; one more releases the oldest
/// gap at once, so a lost packet never costs more than this much memory.
pub const MAX_HELD: usize = 4096;
/// A number this far ahead of the expected one is a restart (the peer's
/// counter began again), not a gap worth waiting for.
pub const MAX_GAP: u64 = 1 << 16;

/// What the windows did, summed over peers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WindowStats {
    /// Delivered in order without waiting.
    pub in_order: u64,
    /// Delivered after waiting for an earlier number.
    pub held: u64,
    /// Numbers given up on (a gap that did not fill within `hold`).
    pub skipped: u64,
    /// Delivered after their number had been given up on.
    pub late: u64,
    /// Repeats of a number already waiting: dropped.
    pub duplicate: u64,
}

#[derive(Default)]
pub struct Window {
    /// The next number to deliver, extended to 64 bits so that waiting
    /// frames sort across the 32-bit wrap. None until the first frame.
    next: Option<u64>,
    held: BTreeMap<u64, (Instant, Vec<u8>)>,
}

impl Window {
    /// `seq` on the 64-bit line near `next`: the serial-number distance
    /// (RFC 1982) decides which side of it the number falls.
    fn extend(next: u64, seq: u32) -> u64 {
        let d = seq.wrapping_sub(next as u32) as i32 as i64;
        next.wrapping_add(d as u64)
    }

    /// Take a frame; `out` gets what may leave now, in order.
    pub fn push(&mut self, seq: u32, frame: Vec<u8>, now: Instant, stats: &mut WindowStats, out: &mut Vec<Vec<u8>>) {
        // Start well above 0 so numbers before the first one still extend
        // below it without wrapping.
        let next = *self.next.get_or_insert((1u64 << 32) | seq as u64);
        let e = Self::extend(next, seq);
        if e < next {
            stats.late += 1;
            out.push(frame);
            return;
        }
        if e == next {
            stats.in_order += 1;
            out.push(frame);
            self.next = Some(next + 1);
            self.drain(stats, out);
            return;
        }
        if e - next > MAX_GAP {
            // A restart: flush what waits, then carry on from here.
            self.release_all(stats, out);
            stats.in_order += 1;
            out.push(frame);
            self.next = Some(e + 1);
            return;
        }
        if self.held.contains_key(&e) {
            stats.duplicate += 1;
            return;
        }
        self.held.insert(e, (now, frame));
        if self.held.len() > MAX_HELD {
            self.skip_gap(stats, out);
        }
    }

    /// Give up on gaps whose waiting frames have waited `hold`.
    pub fn expire(&mut self, now: Instant, hold: Duration, stats: &mut WindowStats, out: &mut Vec<Vec<u8>>) {
        while let Some(oldest) = self.oldest() {
            if now.duration_since(oldest) < hold {
                break;
            }
            self.skip_gap(stats, out);
        }
    }

    /// When the longest-waiting frame arrived, if any waits.
    pub fn oldest(&self) -> Option<Instant> {
        self.held.values().map(|(t, _)| *t).min()
    }

    /// Give up on the first gap: deliver from the first waiting frame on.
    fn skip_gap(&mut self, stats: &mut WindowStats, out: &mut Vec<Vec<u8>>) {
        let (Some(next), Some(&first)) = (self.next, self.held.keys().next()) else {
            return;
        };
        stats.skipped += first - next;
        self.next = Some(first);
        self.drain(stats, out);
    }

    fn release_all(&mut self, stats: &mut WindowStats, out: &mut Vec<Vec<u8>>) {
        while !self.held.is_empty() {
            self.skip_gap(stats, out);
        }
    }

    fn drain(&mut self, stats: &mut WindowStats, out: &mut Vec<Vec<u8>>) {
        let Some(mut next) = self.next else { return };
        while let Some(entry) = self.held.first_entry() {
            if *entry.key() != next {
                break;
            }
            out.push(entry.remove().1);
            stats.held += 1;
            next += 1;
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
            w.push(s, s.to_be_bytes().to_vec(), now, st, &mut out);
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

    #[test]
    fn numbers_wrap_and_repeats_of_waiting_ones_are_dropped() {
        let (mut w, mut st, now) = (Window::default(), WindowStats::default(), Instant::now());
        let m = u32::MAX;
        assert_eq!(run(&[m - 1, 0, 0, 1, m, 2], &mut w, &mut st, now), [m - 1, m, 0, 1, 2]);
        assert_eq!(st.duplicate, 1);
    }

    #[test]
    fn a_restart_flushes_what_waits() {
        let (mut w, mut st, now) = (Window::default(), WindowStats::default(), Instant::now());
        assert_eq!(run(&[10, 12, 1_000_000, 1_000_001], &mut w, &mut st, now), [10, 12, 1_000_000, 1_000_001]);
    }
}
