//! Turning a config into a running tunnel: plan and apply, the links, the
//! tunnel's lifecycle (up, down, reload) and replacing another build's
//! programs.

pub mod links;
pub mod peers;
pub mod plan;
pub mod state;
pub mod tunnel;
pub mod upgrade;
