//! The xgre loader as a library: the `xgre` binary is a thin CLI over it,
//! and the integration tests drive the same code. Without the `runtime`
//! feature only `config` (the file, the map-edit language and rates) is
//! built: what the fuzzers need.
//!
//! The layers, each importing only those above it:
//! - `config`: the TOML model, its validation and the map-edit language;
//! - `net`: netlink, ioctls and bpffs, the host's side;
//! - `datapath`: the loaded programs and maps and the codec between the
//!   config and the map values;
//! - `control`: plan and apply a config, links, the tunnel's lifecycle and
//!   upgrades;
//! - `reseq`, `mesh`: the resequencer and the etcd mesh;
//! - `daemon`: `xgre run`, keepalives and reassembly;
//! - `observe`: `status` and the Prometheus exporter.

//!
//! Each layer is a module whose parts are private to the crate; what the
//! binary and the tests use is re-exported at the layer's top.

pub mod config;
#[cfg(feature = "runtime")]
pub mod control;
#[cfg(feature = "runtime")]
pub mod daemon;
#[cfg(feature = "runtime")]
pub mod datapath;
#[cfg(feature = "runtime")]
pub mod mesh;
#[cfg(feature = "runtime")]
pub mod net;
#[cfg(feature = "runtime")]
pub mod observe;
#[cfg(feature = "runtime")]
mod repair;
#[cfg(feature = "runtime")]
mod reseq;
