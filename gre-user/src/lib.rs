//! The xgre loader as a library: the `xgre` binary is a thin CLI over it,
//! and the integration tests drive the same code.

pub mod codec;
pub mod config;
pub mod datapath;
pub mod debug;
pub mod edit;
pub mod exporter;
pub mod keepalive;
pub mod links;
pub mod mesh;
pub mod mesh_entry;
pub mod mesh_status;
pub mod netlink;
pub mod rate;
pub mod reseq_window;
pub mod resequence;
pub mod run;
pub mod state;
pub mod status;
pub mod sys;
pub mod tunnel;
pub mod upgrade;
