//! What keepalives measure of a path: its delay (the least of its recent
//! round trips) and its loss (keepalives that did not come back), and
//! what the resequencer makes of them.

use std::{collections::VecDeque, time::Duration};

use gre_common::reseq::{DEFAULT_RESEQUENCE_MS, MAX_RESEQUENCE_MS};

/// A spread of round trips above this turns numbering on (ns): below it,
/// what arrives out of order TCP's own reordering tolerance absorbs.
pub(super) const NUMBER_ABOVE_NS: u64 = 2_000_000;

/// A path whose round trip exceeds its peer's fastest by more than this
/// (ns) is not striped over but kept as a backup: the resequencer would
/// have to hold the others' packets longer than `MAX_RESEQUENCE_MS` for
/// its (the hold `hold_for` gives this spread). Over 100 Mbit/s at 10 ms
/// and 20 Mbit/s at 300 ms each way, striping by rate ran at 5 Mbit/s.
pub(super) const TOO_SLOW_NS: u64 = (MAX_RESEQUENCE_MS as u64 * 1_000_000 - 2_000_000) * 8 / 5;

/// Round trips a path's delay is judged by: one a probe round.
const RTT_SAMPLES: usize = 32;

/// A path's recent round trips; the least of them is its delay without
/// the queues.
#[derive(Default)]
pub(super) struct RttWindow(VecDeque<u64>);

impl RttWindow {
    pub(super) fn add(&mut self, ns: u64) {
        if ns == 0 {
            return;
        }
        if self.0.len() == RTT_SAMPLES {
            self.0.pop_front();
        }
        self.0.push_back(ns);
    }

    pub(super) fn min(&self) -> Option<u64> {
        self.0.iter().min().copied()
    }
}

/// How long to wait for a gap, given the spread of round trips among a
/// peer's paths: half of it is how much later the slow path delivers (the
/// way back is assumed as long as the way out), and a quarter more and
/// 2 ms cover its jitter. Never below the default hold, never above the
/// most `resequence` may be.
pub(super) fn hold_for(spread_ns: u64) -> Duration {
    let ns = spread_ns / 2 + spread_ns / 8 + 2_000_000;
    Duration::from_nanos(ns).clamp(Duration::from_millis(DEFAULT_RESEQUENCE_MS as u64), Duration::from_millis(MAX_RESEQUENCE_MS as u64))
}

/// Probe rounds a path's loss is judged over: 30 s at the default
/// `keepalive` of 100 ms.
const LOSS_ROUNDS: usize = 300;
/// Fewest probes before a path's loss counts.
const LOSS_MIN_SENT: u64 = 100;
/// Keepalives lost (beyond those still on their way) that make a path
/// lossy: at least this many, and at least 1 in `LOSSY_ONE_IN` sent.
const LOSSY_LOST: u64 = 3;
const LOSSY_ONE_IN: u64 = 200;

/// A path's keepalives: how many went and how many came back, per probe
/// round, over the last `LOSS_ROUNDS`.
#[derive(Default)]
pub(super) struct ProbeLoss(VecDeque<(u64, u64)>);

impl ProbeLoss {
    /// One probe round: `sent` and `replies`, each counted since the
    /// start.
    pub(super) fn add(&mut self, sent: u64, replies: u64) {
        if self.0.len() == LOSS_ROUNDS {
            self.0.pop_front();
        }
        self.0.push_back((sent, replies));
    }

    /// Over the window: keepalives sent, and those lost, less the
    /// `in_flight` that may still be on their way.
    pub(super) fn lost(&self, in_flight: u64) -> (u64, u64) {
        let (Some(&(s0, r0)), Some(&(s1, r1))) = (self.0.front(), self.0.back()) else { return (0, 0) };
        let sent = s1 - s0;
        (sent, sent.saturating_sub(r1.saturating_sub(r0)).saturating_sub(in_flight))
    }

    /// Whether the path loses enough that the packets striped over it
    /// need putting back in order: TCP takes a loss among reordered
    /// packets for more loss, and a striped stream over 2 × 100 Mbit/s
    /// with 1% lost on one path reached 77% of their sum unnumbered and
    /// 93.5% numbered and resequenced (`cargo xtask bench agg --rates
    /// 100,100 --loss 0,1 --cc bbr --resequence 5 --ip-id only`).
    pub(super) fn lossy(&self, in_flight: u64) -> Option<(u64, u64)> {
        let (sent, lost) = self.lost(in_flight);
        (sent >= LOSS_MIN_SENT && lost >= LOSSY_LOST && lost * LOSSY_ONE_IN >= sent).then_some((lost, sent))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hold_covers_the_one_way_spread_and_a_margin() {
        // 5 ms and 40 ms each way: 70 ms apart in round trip, 35 ms one way.
        assert_eq!(hold_for(70_000_000), Duration::from_micros(45_750));
        assert_eq!(hold_for(0), Duration::from_millis(5), "never below the default");
        assert_eq!(hold_for(600_000_000), Duration::from_millis(100), "never above the most `resequence` may be");
    }

    #[test]
    fn a_paths_delay_is_its_least_recent_round_trip() {
        let mut w = RttWindow::default();
        assert_eq!(w.min(), None);
        w.add(0);
        assert_eq!(w.min(), None, "0: no reply measured yet");
        for ns in [12, 10, 30, 11] {
            w.add(ns);
        }
        assert_eq!(w.min(), Some(10), "queues only ever add delay");
        for _ in 0..RTT_SAMPLES {
            w.add(20);
        }
        assert_eq!(w.min(), Some(20), "an old sample ages out");
    }

    #[test]
    fn a_path_is_lossy_past_three_keepalives_and_one_in_200_not_counting_those_on_their_way() {
        let mut p = ProbeLoss::default();
        let mut replies = 0;
        for sent in 1..=150u64 {
            // Every reply but three; the last 2 still on their way.
            if sent <= 148 && ![20, 60, 100].contains(&sent) {
                replies += 1;
            }
            p.add(sent, replies);
        }
        assert_eq!(p.lost(2), (149, 3));
        assert_eq!(p.lossy(2), Some((3, 149)));
        assert_eq!(p.lossy(3), None, "one more in flight: only 2 lost");
        for sent in 151..=1000u64 {
            p.add(sent, replies + sent - 150);
        }
        assert_eq!(p.lossy(2), None, "the losses aged out of the window");
        let mut few = ProbeLoss::default();
        for sent in 1..=50u64 {
            few.add(sent, sent / 2);
        }
        assert_eq!(few.lossy(0), None, "too few probes to judge");
    }
}
