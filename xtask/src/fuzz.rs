//! `cargo fuzz` targets of the loader's parsers (`gre-user/fuzz`): the
//! config file and the `map-edit` line. `cargo xtask test` runs each for a
//! bounded time; `cargo xtask fuzz TARGET --seconds N` runs one longer.
//! Seeds come from `gre-user/fuzz/seeds/TARGET`; the corpus a run grows is
//! kept under `target/fuzz-corpus/`, out of the source tree. The ASan build
//! goes to a cache outside the checkout (`~/.cache/xgre/fuzz-target`): built
//! from scratch it takes 78 s, and each fresh clone (CI's) would pay it
//! again; with the cache only the workspace's own crates rebuild.

use std::process::Command;

use anyhow::Result;

use crate::{run, step, workspace_root};

pub const TARGETS: [&str; 2] = ["config", "map_edit"];

pub fn fuzz(target: &str, seconds: u32) -> Result<()> {
    let root = workspace_root();
    let corpus = root.join("target/fuzz-corpus").join(target);
    std::fs::create_dir_all(&corpus)?;
    let seeds = root.join("gre-user/fuzz/seeds").join(target);
    for e in std::fs::read_dir(&seeds)?.filter_map(Result::ok) {
        std::fs::copy(e.path(), corpus.join(e.file_name()))?;
    }
    step(&format!("fuzzing {target} for {seconds} s (cargo fuzz, libFuzzer)"));
    run(Command::new("cargo")
        .args(["+nightly", "fuzz", "run", target, "--target-dir"])
        .arg(build_cache())
        .arg(&corpus)
        .args(["--", &format!("-max_total_time={seconds}"), "-max_len=4096", "-print_final_stats=1"])
        .current_dir(root.join("gre-user")))
}

/// Where the fuzzers' ASan build is kept between checkouts.
fn build_cache() -> std::path::PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| workspace_root().join("target"));
    base.join("xgre/fuzz-target")
}
