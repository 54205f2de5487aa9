//! What `xgre status` shows of `xgre run`'s own work (the resequencer and
//! repair), which lives in that process: written to a file per tunnel
//! and namespace, beside the mesh's, about once a second.

use std::path::PathBuf;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::{net::sys, repair::RepairStats, reseq::window::WindowStats};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunStatus {
    pub pid: u32,
    /// What the resequencer's windows did since `run` started.
    pub resequencer: Option<WindowStats>,
    /// What this end kept and sent again, and whether it keeps now.
    pub repair: Option<RepairStats>,
    pub keeping: bool,
    /// Whether the `xgre run` that wrote this is still running.
    #[serde(default)]
    pub running: bool,
}

fn path(name: &str) -> Result<PathBuf> {
    sys::state_file(name, "run")
}

/// Write tunnel `name`'s status.
pub fn write(name: &str, s: &RunStatus) {
    let r = path(name).and_then(|p| Ok(sys::write_state(&p, &serde_json::to_string(s)?)?));
    if let Err(e) = r {
        tracing::warn!("{name}: cannot write the run status: {e:#}");
    }
}

/// Tunnel `name`'s status as its `xgre run` last wrote it, if any.
pub fn read(name: &str) -> Option<RunStatus> {
    let mut s: RunStatus = serde_json::from_str(&std::fs::read_to_string(path(name).ok()?).ok()?).ok()?;
    s.running = sys::pid_alive(s.pid);
    Some(s)
}

/// Forget it (`run` stopping).
pub fn remove(name: &str) {
    if let Ok(p) = path(name) {
        sys::remove_state(&p);
    }
}
