//! Turning a config into a running tunnel: plan and apply, the links, the
//! tunnel's lifecycle (up, down, reload) and replacing another build's
//! programs.

pub(crate) mod links;
pub(crate) mod peers;
pub(crate) mod plan;
pub(crate) mod state;
pub(crate) mod tunnel;
pub(crate) mod upgrade;

pub use links::resolve_links;
pub use peers::apply_edits;
pub use state::{apply, check_routes, show, tunnel_mtu, Running};
pub use tunnel::{clear_resequencer, down, up, UpOutcome};
