//! Builds the eBPF object (`gre-ebpf`) with the nightly toolchain for
//! bpfel-unknown-none and leaves it at `$OUT_DIR/xgre.bpf.o` for
//! `include_bytes_aligned!`.
//!
//! Not aya-build: the datapath needs BPF CPU v3 (atomic fetch-and-add for
//! sequence numbers) and aya-build 0.2.0 gives no way to pass it.
use std::{
    env, fs,
    path::PathBuf,
    process::{Command, Stdio},
};

fn main() {
    // The parsers alone (the fuzzers' build) need no datapath.
    if env::var_os("CARGO_FEATURE_RUNTIME").is_none() {
        return;
    }
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.parent().unwrap().to_path_buf();
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    for p in ["gre-ebpf/src", "gre-ebpf/Cargo.toml", "gre-ebpf/Cargo.lock", "gre-common/src"] {
        println!("cargo:rerun-if-changed={}", root.join(p).display());
    }
    // One target directory for every build of gre-user (check, test,
    // release, the fuzzers' own workspace): the object is the same for all
    // of them, and building core for BPF from scratch costs each ~25 s.
    // The inner cargo locks it, so builds running at once take turns.
    let target_dir = root.join("target/ebpf");
    let flags = ["-Ctarget-cpu=v3", "-Cdebuginfo=2", "-Clink-arg=--btf"].join("\x1f");
    let mut cmd = Command::new("rustup");
    cmd.args(["run", "nightly", "cargo", "build", "--release", "--locked"])
        .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
        .arg("--manifest-path")
        .arg(root.join("gre-ebpf/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .env("CARGO_ENCODED_RUSTFLAGS", flags)
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    // The outer build's toolchain and wrappers must not leak into the
    // nightly build.
    for k in ["RUSTC", "RUSTC_WORKSPACE_WRAPPER", "RUSTUP_TOOLCHAIN", "RUSTFLAGS", "CARGO_TARGET_DIR"] {
        cmd.env_remove(k);
    }
    // Nor the outer profile overrides (`CARGO_PROFILE_RELEASE_*`): they are
    // meant for the host build, and the BPF object is built one way only.
    for (k, _) in env::vars_os() {
        if k.to_str().is_some_and(|k| k.starts_with("CARGO_PROFILE_")) {
            cmd.env_remove(k);
        }
    }
    let status = cmd.status().unwrap_or_else(|e| panic!("cannot run `rustup run nightly cargo`: {e}; run `cargo xtask setup` first"));
    if !status.success() {
        panic!("building gre-ebpf failed ({status}); `cargo xtask setup` installs the nightly rust-src component and bpf-linker");
    }
    let obj = target_dir.join("bpfel-unknown-none/release/gre");
    fs::copy(&obj, out.join("xgre.bpf.o")).unwrap_or_else(|e| panic!("copy {}: {e}", obj.display()));
}
