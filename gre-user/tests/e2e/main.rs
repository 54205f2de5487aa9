//! End-to-end tests, one binary: namespaces with veth, bridges, Open
//! vSwitch and a qemu Linux peer, driving the real `xgre` and the real
//! kernel. Each module is one area; `common` builds and tears down the
//! hosts.

#[path = "../common/mod.rs"]
mod common;

mod aggregation;
mod delay_line;
mod interop_linux;
mod interop_ovs;
mod mesh;
mod neigh;
mod netns;
mod operations;
mod scenarios;
mod trunk;
