//! `cargo xtask setup`: check for each thing the project needs and install
//! what is missing, saying what it does.

use std::{path::PathBuf, process::Command};

use anyhow::{anyhow, bail, Context, Result};

use crate::{run, step};

/// Debian packages the tests, demo and benchmarks drive.
const PACKAGES: &[&str] = &[
    "iproute2",
    "iputils-ping",
    "iperf3",
    "tshark",
    "tcpdump",
    "python3-scapy",
    "ethtool",
    "iptables",
    "util-linux",
    "mptcpize",
    // Counting BPF_PROG_LOAD calls: readers and editors load no programs.
    "strace",
    // Interop tests: dropping frames on a test switch (this kernel has no
    // tc gact action), and Open vSwitch as a GRE peer (userspace datapath).
    "nftables",
    "openvswitch-switch",
    // The Linux test peer: Debian's kernel under qemu (TCG), with a busybox
    // initramfs (see guest.rs).
    "qemu-system-x86",
    "busybox-static",
    // Scenario tests: VRRP over gretap, OSPF and PIM over gre.
    "keepalived",
    "frr",
    // The mesh (`[mesh]`): etcd members and etcdctl for its tests and
    // benchmark, and protoc, which the etcd-client crate's build runs.
    "etcd-server",
    "etcd-client",
    "protobuf-compiler",
];

const BPF_LINKER_VERSION: &str = "0.13.0";

fn output(cmd: &mut Command) -> Option<String> {
    cmd.output().ok().filter(|o| o.status.success()).map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
}

pub fn setup() -> Result<()> {
    rust_src()?;
    bpf_linker()?;
    cargo_fuzz()?;
    debian_packages()?;
    crate::guest::guest()
}

fn rust_src() -> Result<()> {
    let sysroot = output(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))
        .ok_or_else(|| anyhow!("no `nightly` toolchain (rustc +nightly); the eBPF crate needs one"))?;
    let src = PathBuf::from(sysroot.trim()).join("lib/rustlib/src/rust/library/core");
    if src.exists() {
        return Ok(());
    }
    step("installing the rust-src component of the nightly toolchain (for -Z build-std=core)");
    run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))
}

/// LLVM major version of the nightly toolchain: bpf-linker must match it.
fn nightly_llvm_major() -> Result<u32> {
    let vv = output(Command::new("rustc").args(["+nightly", "-vV"])).ok_or_else(|| anyhow!("rustc +nightly -vV failed"))?;
    let line = vv.lines().find(|l| l.starts_with("LLVM version:")).ok_or_else(|| anyhow!("no LLVM version in `rustc +nightly -vV`"))?;
    let v = line.trim_start_matches("LLVM version:").trim();
    v.split('.').next().unwrap().parse().with_context(|| format!("LLVM version `{v}`"))
}

fn bpf_linker() -> Result<()> {
    if let Some(v) = output(Command::new("bpf-linker").arg("--version")) {
        if v.contains(BPF_LINKER_VERSION) {
            return Ok(());
        }
        println!("found {} ; want {BPF_LINKER_VERSION}", v.trim());
    }
    let major = nightly_llvm_major()?;
    // Link bpf-linker against the nightly's own libLLVM: a folder of
    // symlinks named as its build script expects (libLLVM.so and the
    // library's soname).
    let sysroot = output(Command::new("rustc").args(["+nightly", "--print", "sysroot"])).unwrap();
    let libdir = PathBuf::from(sysroot.trim()).join("lib");
    let lib = std::fs::read_dir(&libdir)?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("libLLVM.so."))
        .ok_or_else(|| anyhow!("no libLLVM in {}", libdir.display()))?;
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let prefix = PathBuf::from(home).join(format!(".cache/xgre/llvm-{major}"));
    let plib = prefix.join("lib");
    step(&format!(
        "building bpf-linker {BPF_LINKER_VERSION} against the nightly's LLVM {major} ({}); takes a minute or two",
        libdir.join(&lib).display()
    ));
    std::fs::create_dir_all(&plib)?;
    for name in ["libLLVM.so".to_string(), lib.clone()] {
        let link = plib.join(&name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(libdir.join(&lib), &link).with_context(|| format!("symlink {}", link.display()))?;
    }
    run(Command::new("cargo")
        .args(["+stable", "install", &format!("bpf-linker@{BPF_LINKER_VERSION}"), "--locked", "--force"])
        .args(["--no-default-features", "--features", &format!("llvm-{major}")])
        .env("LLVM_PREFIX", &prefix))
    .context("installing bpf-linker")?;
    Ok(())
}

const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// cargo-fuzz, for the parsers' fuzz targets (`cargo xtask test` runs them
/// briefly).
fn cargo_fuzz() -> Result<()> {
    if output(Command::new("cargo").args(["fuzz", "--version"])).is_some_and(|v| v.contains(CARGO_FUZZ_VERSION)) {
        return Ok(());
    }
    step(&format!("installing cargo-fuzz {CARGO_FUZZ_VERSION}; takes a minute"));
    run(Command::new("cargo").args(["+stable", "install", &format!("cargo-fuzz@{CARGO_FUZZ_VERSION}"), "--locked"]))
}

fn installed(pkg: &str) -> bool {
    output(Command::new("dpkg-query").args(["-W", "-f", "${Status}", pkg])).is_some_and(|s| s.contains("install ok installed"))
}

fn debian_packages() -> Result<()> {
    let missing: Vec<&str> = PACKAGES.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    step(&format!("installing Debian packages: {}", missing.join(" ")));
    run(Command::new("apt-get").args(["update", "-q"]))?;
    let status = Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()?;
    if !status.success() {
        bail!("apt-get install {} failed", missing.join(" "));
    }
    Ok(())
}
