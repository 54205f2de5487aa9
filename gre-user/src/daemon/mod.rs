//! `xgre run`: the watcher, keepalives and outer-fragment reassembly.

pub mod keepalive;
pub mod reassemble;
pub mod run;
mod watch;
