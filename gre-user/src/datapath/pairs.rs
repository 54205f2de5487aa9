//! The outer address pairs receive paths use (`XGRE_PAIRS`), counted: the
//! datapath has the kernel reassemble the outer fragments of these pairs
//! and drops all others. Every receive path is added and removed through
//! here, so the count is the number of `XGRE_RX_PATHS` entries per pair.

use anyhow::Result;
use aya::maps::{HashMap, MapData};
use gre_common::{OuterPair, RxKey, RxPath};

use crate::datapath::{removed, Datapath};

fn pair(k: &RxKey) -> OuterPair {
    OuterPair { local: k.local, remote: k.remote }
}

/// Add (or replace) a receive path.
pub fn add_rx_path(dp: &Datapath, rx: &mut HashMap<MapData, RxKey, RxPath>, key: RxKey, value: RxPath) -> Result<()> {
    let new = rx.get(&key, 0).is_err();
    rx.insert(key, value, 0)?;
    if new {
        count(dp, pair(&key), 1)?;
    }
    Ok(())
}

/// Remove a receive path; one already gone is what removal wanted.
pub fn remove_rx_path(dp: &Datapath, rx: &mut HashMap<MapData, RxKey, RxPath>, key: &RxKey) -> Result<()> {
    if removed(rx.remove(key))? {
        count(dp, pair(key), -1)?;
    }
    Ok(())
}

fn count(dp: &Datapath, p: OuterPair, delta: i64) -> Result<()> {
    let mut pairs = dp.outer_pairs()?;
    let n = pairs.get(&p, 0).unwrap_or(0) as i64 + delta;
    if n > 0 {
        pairs.insert(p, n as u32, 0)?;
    } else {
        let _ = pairs.remove(&p);
    }
    Ok(())
}
