//! What users see: `status` (collected from the maps, rendered as text or
//! JSON) and the Prometheus exporter.

pub mod exporter;
pub mod status;
