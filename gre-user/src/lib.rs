//! The xgre loader as a library: the `xgre` binary is a thin CLI over it,
//! and the integration tests drive the same code. Without the `runtime`
//! feature only the parsers (`config`, `edit`, `rate`) are built: what the
//! fuzzers need.

#[cfg(feature = "runtime")]
pub mod codec;
pub mod config;
#[cfg(feature = "runtime")]
pub mod datapath;
#[cfg(feature = "runtime")]
pub mod debug;
pub mod edit;
#[cfg(feature = "runtime")]
pub mod exporter;
#[cfg(feature = "runtime")]
pub mod keepalive;
#[cfg(feature = "runtime")]
pub mod links;
#[cfg(feature = "runtime")]
pub mod mesh;
#[cfg(feature = "runtime")]
pub mod mesh_entry;
#[cfg(feature = "runtime")]
pub mod mesh_status;
#[cfg(feature = "runtime")]
pub mod netlink;
#[cfg(feature = "runtime")]
pub mod pairs;
pub mod rate;
#[cfg(feature = "runtime")]
pub mod reassemble;
#[cfg(feature = "runtime")]
pub mod reseq_window;
#[cfg(feature = "runtime")]
pub mod resequence;
#[cfg(feature = "runtime")]
pub mod run;
#[cfg(feature = "runtime")]
pub mod state;
#[cfg(feature = "runtime")]
pub mod status;
#[cfg(feature = "runtime")]
pub mod sys;
#[cfg(feature = "runtime")]
pub mod tunnel;
#[cfg(feature = "runtime")]
pub mod upgrade;
