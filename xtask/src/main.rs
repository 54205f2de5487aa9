//! Development tasks: `cargo xtask setup|build|run|demo|test|bench`.
//!
//! Everything the project needs on a fresh machine is installed by `setup`,
//! which every other task runs first.

mod arp;
mod bench;
mod bpffs;
mod control;
mod deb;
mod demo;
mod fuzz;
mod guest;
mod mesh;
mod net;
mod overlay;
mod progcost;
mod setup;
mod testrun;

use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what the build and the tests need (nightly rust-src,
    /// bpf-linker, Debian packages). Idempotent.
    Setup,
    /// Build the eBPF object and the `xgre` binary (release).
    Build,
    /// Build, then run `xgre` with the given arguments.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Two hosts in namespaces, a tunnel between them, ping, iperf3 and
    /// `xgre status`, then clean up.
    Demo,
    /// Unit, packet (BPF_PROG_RUN) and namespace tests.
    Test {
        /// Extra arguments for `cargo test` (a test name filter, ...).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run one `cargo fuzz` target of the parsers (config, map_edit).
    Fuzz {
        target: String,
        #[arg(long, default_value_t = 300)]
        seconds: u32,
    },
    /// Build a Debian package (binary, systemd unit, man pages,
    /// completions, examples) into target/deb/.
    Deb,
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        which: Box<bench::Bench>,
    },
}

pub fn step(msg: &str) {
    println!("\x1b[1m==> {msg}\x1b[0m");
}

/// Run a command, streaming its output; fail with the command line.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

pub fn build_release() -> Result<std::path::PathBuf> {
    step("building xgre (release, with the eBPF object)");
    run(Command::new(env!("CARGO")).args(["build", "--release", "-p", "gre-user"]).current_dir(workspace_root()))?;
    Ok(workspace_root().join("target/release/xgre"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _bpffs = bpffs::Guard::new();
    let r = match cli.cmd {
        Cmd::Setup => setup::setup(),
        Cmd::Build => setup::setup().and_then(|_| build_release().map(|_| ())),
        Cmd::Run { args } => setup::setup().and_then(|_| {
            let bin = build_release()?;
            run(Command::new(bin).args(args))
        }),
        Cmd::Demo => setup::setup().and_then(|_| demo::demo()),
        Cmd::Test { args } => setup::setup().and_then(|_| {
            step("running the tests (unit, BPF_PROG_RUN packet tests, fuzzing against a model, namespace and interop tests)");
            let costs = workspace_root().join("target/verifier-costs.txt");
            let _ = std::fs::remove_file(&costs);
            let tests = testrun::run(
                Command::new(env!("CARGO")).args(["test", "--workspace", "--no-fail-fast"]).args(&args).current_dir(workspace_root()),
            );
            // A filtered run is someone looking at a few tests: no fuzzing.
            let fuzz_start = std::time::Instant::now();
            // A short run each (the corpus stays under target/ between runs
            // of one checkout); longer ones:
            // `cargo xtask fuzz TARGET --seconds N`.
            let fuzzed = if args.is_empty() { fuzz::TARGETS.iter().try_for_each(|t| fuzz::fuzz(t, 10)) } else { Ok(()) };
            let fuzz_time = ("fuzzers (build and run)".to_string(), fuzz_start.elapsed());
            if let Ok(table) = std::fs::read_to_string(&costs) {
                step("what verifying each program cost this kernel (the netns test fails any entry over its budget)");
                print!("{table}");
            }
            tests.finish(if args.is_empty() { std::slice::from_ref(&fuzz_time) } else { &[] }).and(fuzzed)
        }),
        Cmd::Fuzz { target, seconds } => setup::setup().and_then(|_| fuzz::fuzz(&target, seconds)),
        Cmd::Deb => setup::setup().and_then(|_| deb::deb()),
        Cmd::Bench { which } => setup::setup().and_then(|_| bench::run(*which)),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}
