//! The TOML config file: the contract users and tests write against.
//! Fields may be added; none is ever renamed.
//!
//! Parsing (serde) checks types and rejects unknown fields; `validate` checks
//! everything that needs more than one field. Every error names the file,
//! the field and the reason.

mod derived;
pub mod edit;
mod model;
pub mod rate;
#[cfg(test)]
mod tests;
mod validate;

pub use model::*;
pub use rate::Rate;
pub use validate::*;
