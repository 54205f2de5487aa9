//! Weighted round-robin schedules for the transmit program.
//!
//! The datapath keeps no weights: it walks a peer's schedule, one slot per
//! packet. Building the schedule here with smooth weighted round-robin (the
//! nginx algorithm) interleaves the paths, so a 2:1 split goes A B A A B A
//! rather than A A B, and no link gets a burst.

use gre_common::SCHEDULE_LEN;

/// Scale weights so they sum to at most `SCHEDULE_LEN` slots, keeping every
/// weighted path at least one slot (largest-remainder apportionment).
pub fn apportion(weights: &[u32]) -> Vec<u32> {
    let total: u64 = weights.iter().map(|&w| w as u64).sum();
    if total == 0 {
        return vec![0; weights.len()];
    }
    let g = weights.iter().fold(0u32, |g, &w| gcd(g, w));
    let reduced: Vec<u32> = weights.iter().map(|&w| w / g.max(1)).collect();
    let rtotal: u64 = reduced.iter().map(|&w| w as u64).sum();
    if rtotal as usize <= SCHEDULE_LEN {
        return reduced;
    }
    let live = weights.iter().filter(|&&w| w > 0).count() as u64;
    let slots = SCHEDULE_LEN as u64 - live; // one slot reserved per live path
    let mut out: Vec<u32> = weights.iter().map(|&w| (w > 0) as u32).collect();
    let mut rema: Vec<(u64, usize)> = Vec::new();
    let mut used = 0u64;
    for (i, &w) in weights.iter().enumerate() {
        let exact = w as u64 * slots;
        out[i] += (exact / total) as u32;
        used += exact / total;
        rema.push((exact % total, i));
    }
    rema.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for &(_, i) in rema.iter().take((slots - used) as usize) {
        out[i] += 1;
    }
    out
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The schedule for paths with the given weights (0 = not in rotation):
/// path indices, one per slot.
pub fn build(weights: &[u32]) -> Vec<u8> {
    let w = apportion(weights);
    let total: i64 = w.iter().map(|&x| x as i64).sum();
    let mut current = vec![0i64; w.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for i in 0..w.len() {
            current[i] += w[i] as i64;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        out.push(best as u8);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(s: &[u8], n: usize) -> Vec<usize> {
        (0..n).map(|i| s.iter().filter(|&&x| x as usize == i).count()).collect()
    }

    #[test]
    fn exact_small_weights() {
        assert_eq!(build(&[1, 1]), vec![0, 1]);
        assert_eq!(counts(&build(&[2, 1]), 2), vec![2, 1]);
        assert_eq!(counts(&build(&[11, 45]), 2), vec![11, 45]);
        assert_eq!(counts(&build(&[4, 4, 4, 4]), 4), vec![1, 1, 1, 1], "reduced by the gcd");
    }

    #[test]
    fn interleaves() {
        assert_eq!(build(&[2, 1]), vec![0, 1, 0]);
        let s = build(&[1, 1, 1, 1]);
        assert_eq!(s, vec![0, 1, 2, 3]);
    }

    #[test]
    fn zero_weight_paths_get_no_slot() {
        assert_eq!(counts(&build(&[1, 0, 1]), 3), vec![1, 0, 1]);
        assert!(build(&[0, 0]).is_empty());
    }

    #[test]
    fn large_weights_fit_and_stay_proportional() {
        let w = [1000, 999, 1];
        let a = apportion(&w);
        assert!(a.iter().sum::<u32>() as usize <= SCHEDULE_LEN);
        assert!(a[2] >= 1, "every live path keeps a slot");
        let share0 = a[0] as f64 / a.iter().sum::<u32>() as f64;
        assert!((share0 - 0.5).abs() < 0.02, "{a:?}");
        assert_eq!(build(&w).len(), a.iter().sum::<u32>() as usize);
    }
}
