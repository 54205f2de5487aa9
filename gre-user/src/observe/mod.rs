//! What users see: `status` (collected from the maps, rendered as text or
//! JSON) and the Prometheus exporter.

mod collect;
pub(crate) mod exporter;
mod render;
mod status;

pub use collect::collect;
pub use exporter::serve;
pub use render::{render, render_watch};
pub use status::*;
