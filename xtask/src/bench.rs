//! `cargo xtask bench ...`
use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum Bench {}

pub fn run(b: Bench) -> Result<()> {
    match b {}
}
