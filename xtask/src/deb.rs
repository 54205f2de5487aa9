//! `cargo xtask deb`: a Debian package of xgre with the binary, the
//! systemd unit, one man page per command, shell completions and the
//! examples, built with `dpkg-deb` (no tool beyond Debian's own).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

use crate::{build_release, step, workspace_root};

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Build the release binary and package it into `target/deb/`.
pub fn deb() -> Result<()> {
    let bin = build_release()?;
    let out = package(&bin, &workspace_root().join("target/deb"), "xz")?;
    step(&format!("wrote {} (install: apt install ./{})", out.display(), out.file_name().unwrap_or_default().to_string_lossy()));
    Ok(())
}

fn run(cmd: &mut Command) -> Result<Vec<u8>> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(out.stdout)
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// The package of binary `bin`, written into `out_dir` and compressed
/// with `compression` (dpkg-deb's `-Z`); returns its path.
pub fn package(bin: &Path, out_dir: &Path, compression: &str) -> Result<PathBuf> {
    let root = workspace_root();
    let name = format!("xgre_{VERSION}_amd64");
    let stage = out_dir.join(&name);
    let _ = std::fs::remove_dir_all(&stage);
    // The binary.
    let exe = stage.join("usr/bin/xgre");
    write(&exe, &std::fs::read(bin).with_context(|| format!("reading {}", bin.display()))?)?;
    run(Command::new("chmod").arg("0755").arg(&exe))?;
    // The unit, pointing at where the package puts the binary.
    let unit = std::fs::read_to_string(root.join("dist/xgre@.service"))?.replace("/usr/local/bin/xgre", "/usr/bin/xgre");
    write(&stage.join("lib/systemd/system/xgre@.service"), unit.as_bytes())?;
    // One man page per command, compressed as Debian wants them.
    let man = stage.join("usr/share/man/man1");
    run(Command::new(&exe).arg("man").arg("--dir").arg(&man))?;
    for page in std::fs::read_dir(&man)? {
        run(Command::new("gzip").args(["-9n"]).arg(page?.path()))?;
    }
    // Completions.
    for (shell, path) in [
        ("bash", "usr/share/bash-completion/completions/xgre"),
        ("zsh", "usr/share/zsh/vendor-completions/_xgre"),
        ("fish", "usr/share/fish/vendor_completions.d/xgre.fish"),
    ] {
        write(&stage.join(path), &run(Command::new(&exe).args(["completions", shell]))?)?;
    }
    // The examples and the guide.
    let doc = stage.join("usr/share/doc/xgre");
    for e in std::fs::read_dir(root.join("examples"))? {
        let e = e?.path();
        write(&doc.join("examples").join(e.file_name().unwrap_or_default()), &std::fs::read(&e)?)?;
    }
    write(&doc.join("README.md"), &std::fs::read(root.join("README.md"))?)?;
    write(&doc.join("copyright"), b"xgre: GRE tunnels and link aggregation in eBPF.\nLicense: MIT OR Apache-2.0\n\nThe binary includes, unmodified, the Rust crate xdpilone (AF_XDP rings),\nlicensed under the EUPL-1.2: https://github.com/197g/xdpilone\n")?;
    let size_kb = du_kb(&stage)?;
    let control = format!(
        "Package: xgre\nVersion: {VERSION}\nSection: net\nPriority: optional\nArchitecture: amd64\n\
         Maintainer: xgre developers <xgre@example.org>\nDepends: libc6\nInstalled-Size: {size_kb}\n\
         Description: GRE tunnels and per-packet link aggregation in eBPF\n \
         gre and gretap tunnels to many peers on one device, one TCP connection\n \
         striped over several NICs, path MTU discovery, and every table a\n \
         live-editable BPF map (XDP and TC, Linux 6.1 or later).\n"
    );
    write(&stage.join("DEBIAN/control"), control.as_bytes())?;
    let deb = out_dir.join(format!("{name}.deb"));
    run(Command::new("dpkg-deb").args(["--root-owner-group", &format!("-Z{compression}"), "--build"]).arg(&stage).arg(&deb))?;
    Ok(deb)
}

fn du_kb(dir: &Path) -> Result<u64> {
    let out = run(Command::new("du").args(["-sk"]).arg(dir))?;
    Ok(String::from_utf8_lossy(&out).split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The package of the binary `cargo test` built: its contents, the
    /// unit's path, and its own binary checking the packaged examples on a
    /// host (a namespace) with the links they name.
    #[test]
    fn the_package_holds_everything_and_its_binary_checks_its_examples() {
        let root = workspace_root();
        let bin = root.join("target/debug/xgre");
        assert!(bin.exists(), "{} (built by `cargo test --workspace`)", bin.display());
        let dir = std::env::temp_dir().join(format!("xgre-deb-{}", std::process::id()));
        // Uncompressed: the debug binary is hundreds of MB.
        let deb = package(&bin, &dir, "none").unwrap();
        let list = String::from_utf8(run(Command::new("dpkg-deb").arg("-c").arg(&deb)).unwrap()).unwrap();
        for want in [
            "./usr/bin/xgre",
            "./lib/systemd/system/xgre@.service",
            "./usr/share/man/man1/xgre.1.gz",
            "./usr/share/man/man1/xgre-up.1.gz",
            "./usr/share/man/man1/xgre-map-edit.1.gz",
            "./usr/share/bash-completion/completions/xgre",
            "./usr/share/doc/xgre/examples/gre.toml",
            "./usr/share/doc/xgre/examples/mesh.toml",
        ] {
            assert!(list.contains(want), "{want} in the package:\n{list}");
        }
        let info = String::from_utf8(run(Command::new("dpkg-deb").arg("-f").arg(&deb).arg("Package")).unwrap()).unwrap();
        assert_eq!(info.trim(), "xgre");
        let x = dir.join("x");
        run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&x)).unwrap();
        let unit = std::fs::read_to_string(x.join("lib/systemd/system/xgre@.service")).unwrap();
        assert!(unit.contains("ExecStart=/usr/bin/xgre run -c /etc/xgre/%i.toml"), "{unit}");
        let ns = format!("xdeb{}", std::process::id() % 100000);
        let mut setup = format!("ip netns add {ns} && ip -n {ns} link set lo up");
        for (dev, addrs) in [
            ("eth0", &["198.18.0.10/24", "198.18.1.10/24", "198.18.1.1/24"][..]),
            ("eth1", &["198.18.1.10/24"][..]),
            ("eth2", &["198.18.2.10/24"][..]),
        ] {
            setup += &format!(" && ip -n {ns} link add {dev} type veth peer name {dev}p && ip -n {ns} link set {dev} up");
            for a in addrs {
                setup += &format!(" && ip -n {ns} addr add {a} dev {dev}");
            }
        }
        setup += &format!(" && ip -n {ns} addr add 2001:db8::10/64 dev eth0 nodad");
        let made = Command::new("bash").arg("-c").arg(&setup).status().unwrap();
        let mut failed = Vec::new();
        if made.success() {
            for e in std::fs::read_dir(x.join("usr/share/doc/xgre/examples")).unwrap() {
                let e = e.unwrap().path();
                if e.extension().is_none_or(|x| x != "toml") {
                    continue;
                }
                let out = Command::new("nsenter")
                    .arg(format!("--net=/run/netns/{ns}"))
                    .arg(x.join("usr/bin/xgre"))
                    .arg("check")
                    .arg("-c")
                    .arg(&e)
                    .output()
                    .unwrap();
                if !out.status.success() {
                    failed.push(format!("{}: {}", e.display(), String::from_utf8_lossy(&out.stderr)));
                }
            }
        }
        let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(made.success(), "setting up namespace {ns}");
        assert!(failed.is_empty(), "the packaged binary refuses packaged examples: {failed:?}");
    }
}
