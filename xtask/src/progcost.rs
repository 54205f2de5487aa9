//! What xgre's programs cost per run, from the kernel's BPF run-time
//! statistics (`bench agg --prog-cost`): where the CPU goes when the two
//! cores are the bound (issue 10, item 3).

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use aya::{
    programs::loaded_programs,
    sys::{enable_stats, Stats},
};

/// Keeps the kernel's run-time statistics on while it lives (they cost a
/// clock read per program run of their own, so they are opt-in).
pub struct StatsOn(#[allow(dead_code)] std::os::fd::OwnedFd);

pub fn stats_on() -> Result<StatsOn> {
    Ok(StatsOn(enable_stats(Stats::RunTime).context("enabling BPF run-time statistics (BPF_ENABLE_STATS)")?))
}

/// Run time and run count of every loaded program whose name starts with
/// `xgre`, by program id.
pub type Snapshot = BTreeMap<u32, (String, u64, u64)>;

pub fn snapshot() -> Snapshot {
    loaded_programs()
        .filter_map(|p| p.ok())
        .filter_map(|p| {
            let name = p.name_as_str()?.to_string();
            name.starts_with("xgre").then(|| (p.id(), (name, p.run_time().as_nanos() as u64, p.run_count())))
        })
        .collect()
}

/// One program's share of a run: nanoseconds per run and runs.
#[derive(Clone, Debug)]
pub struct Cost {
    pub name: String,
    pub ns_per_run: f64,
    pub runs: u64,
}

/// Costs between two snapshots, summed over programs of the same name
/// (both hosts load each program once per link or device).
pub fn between(before: &Snapshot, after: &Snapshot) -> Vec<Cost> {
    let mut by_name: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (id, (name, ns, cnt)) in after {
        let (ns0, cnt0) = before.get(id).map(|b| (b.1, b.2)).unwrap_or((0, 0));
        let e = by_name.entry(name.clone()).or_default();
        e.0 += ns.saturating_sub(ns0);
        e.1 += cnt.saturating_sub(cnt0);
    }
    by_name
        .into_iter()
        .filter(|(_, (_, cnt))| *cnt > 0)
        .map(|(name, (ns, cnt))| Cost { name, ns_per_run: ns as f64 / cnt as f64, runs: cnt })
        .collect()
}

/// `xgre_tx 95 ns × 240k, ...; 1.2 s of program time`
pub fn describe(costs: &[Cost]) -> String {
    let total: f64 = costs.iter().map(|c| c.ns_per_run * c.runs as f64).sum();
    let parts: Vec<String> = costs.iter().map(|c| format!("{} {:.0} ns × {}", c.name, c.ns_per_run, thousands(c.runs))).collect();
    format!("{}; {:.2} s of program time", parts.join(", "), total / 1e9)
}

fn thousands(n: u64) -> String {
    match n {
        n if n >= 1_000_000 => format!("{:.1}M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.0}k", n as f64 / 1e3),
        n => n.to_string(),
    }
}
