//! What `xgre status` and the exporter show of a tunnel's mesh. They run
//! in other processes than `xgre run`, which writes this to a file per
//! tunnel and namespace (like the pins) on every change.

use std::{collections::BTreeMap, path::PathBuf, time::SystemTime};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::net::sys;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnState {
    Connecting,
    Connected,
    /// etcd cannot be reached: forwarding with the last known peers.
    Unreachable,
}

impl ConnState {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnState::Connecting => "connecting",
            ConnState::Connected => "connected",
            ConnState::Unreachable => "unreachable",
        }
    }
}

/// What `xgre status` and the exporter show of the mesh: written by
/// `xgre run` to a file per tunnel, since they run in other processes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MeshStatus {
    pub pid: u32,
    pub host: String,
    pub prefix: String,
    pub etcd: Vec<String>,
    pub state: ConnState,
    /// Unix seconds when `state` last changed.
    pub since_unix: u64,
    pub error: Option<String>,
    /// The etcd revision the peers are current to.
    pub revision: i64,
    /// Mesh peers installed.
    pub hosts: usize,
    /// Entries refused, by key: "field: reason".
    pub refused: BTreeMap<String, String>,
    /// Whether the `xgre run` that wrote this is still running.
    #[serde(default)]
    pub running: bool,
}

/// Where `xgre run` keeps tunnel `name`'s mesh status.
pub fn status_path(name: &str) -> Result<PathBuf> {
    sys::state_file(name, "mesh")
}

/// The mesh status of tunnel `name`, if it has a mesh.
pub fn read_status(name: &str) -> Option<MeshStatus> {
    let text = std::fs::read_to_string(status_path(name).ok()?).ok()?;
    let mut s: MeshStatus = serde_json::from_str(&text).ok()?;
    s.running = sys::pid_alive(s.pid);
    Some(s)
}

/// Forget tunnel `name`'s mesh status (`down`, or `run` stopping).
pub fn remove_status(name: &str) {
    if let Ok(p) = status_path(name) {
        sys::remove_state(&p);
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
