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
    Ok(PathBuf::from(format!("/run/xgre/net{}/{name}.run.json", sys::netns_ino()?)))
}

/// Write tunnel `name`'s status (atomically: a reader sees the old or the
/// new file whole).
pub fn write(name: &str, s: &RunStatus) {
    let r = path(name).and_then(|p| {
        let tmp = p.with_extension("tmp");
        std::fs::create_dir_all(p.parent().expect("a directory"))?;
        std::fs::write(&tmp, serde_json::to_string(s)?)?;
        std::fs::rename(&tmp, &p)?;
        Ok(())
    });
    if let Err(e) = r {
        tracing::warn!("{name}: cannot write the run status: {e:#}");
    }
}

/// Tunnel `name`'s status as its `xgre run` last wrote it, if any.
pub fn read(name: &str) -> Option<RunStatus> {
    let mut s: RunStatus = serde_json::from_str(&std::fs::read_to_string(path(name).ok()?).ok()?).ok()?;
    s.running = nix::sys::signal::kill(nix::unistd::Pid::from_raw(s.pid as i32), None).is_ok();
    Some(s)
}

/// Forget it (`run` stopping).
pub fn remove(name: &str) {
    if let Ok(p) = path(name) {
        let _ = std::fs::remove_file(&p);
        let _ = p.parent().map(std::fs::remove_dir);
    }
}
