//! `xgre run`: the watcher, keepalives and outer-fragment reassembly.

pub(crate) mod keepalive;
mod measure;
pub(crate) mod reassemble;
pub(crate) mod run;
pub(crate) mod status;
mod watch;

pub use keepalive::build as keepalive_packet;
pub use run::run;
