//! The Linux test peer: Debian's own kernel (ip_gre and gretap, which this
//! machine's kernel lacks) booted under qemu by the interop tests. `setup`
//! fetches the kernel package with `apt-get download` and unpacks it with
//! `dpkg -x` (it is never installed), then builds a busybox initramfs with
//! the package's virtio-net and GRE modules and iproute2's `ip`
//! (`guest/build-initramfs.sh`). Both land in `target/guest/`.

use std::{path::Path, process::Command};

use anyhow::{anyhow, Context, Result};

use crate::{run, step, workspace_root};

/// The metapackage that names the current kernel.
const KERNEL_META: &str = "linux-image-amd64";

fn newer(a: &Path, b: &Path) -> bool {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match (m(a), m(b)) {
        (Some(a), Some(b)) => a > b,
        _ => true,
    }
}

pub fn guest() -> Result<()> {
    let root = workspace_root();
    let out = root.join("target/guest");
    let (kernel, initrd) = (out.join("vmlinuz"), out.join("initrd.gz"));
    let (init, script) = (root.join("xtask/guest/init"), root.join("xtask/guest/build-initramfs.sh"));
    let unpacked = out.join("kernel-root");
    if kernel.exists() && initrd.exists() && !newer(&init, &initrd) && !newer(&script, &initrd) {
        return Ok(());
    }
    std::fs::create_dir_all(&out)?;
    if !kernel.exists() || !unpacked.join("lib/modules").exists() {
        let deps = Command::new("apt-cache").args(["depends", KERNEL_META]).output().context("apt-cache depends")?;
        let deps = String::from_utf8_lossy(&deps.stdout);
        let pkg = deps
            .lines()
            .filter_map(|l| l.trim().strip_prefix("Depends: "))
            .find(|p| p.starts_with("linux-image-"))
            .ok_or_else(|| anyhow!("`apt-cache depends {KERNEL_META}` names no kernel (run apt-get update?)"))?
            .to_string();
        step(&format!("fetching {pkg} for the Linux test peer (apt-get download; not installed)"));
        let dl = out.join("download");
        let _ = std::fs::remove_dir_all(&dl);
        std::fs::create_dir_all(&dl)?;
        run(Command::new("apt-get").args(["download", &pkg]).current_dir(&dl))?;
        let deb = std::fs::read_dir(&dl)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "deb"))
            .ok_or_else(|| anyhow!("apt-get download {pkg} left no .deb"))?;
        let _ = std::fs::remove_dir_all(&unpacked);
        run(Command::new("dpkg").arg("-x").arg(&deb).arg(&unpacked))?;
        let boot = unpacked.join("boot");
        let vmlinuz = std::fs::read_dir(&boot)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-")))
            .ok_or_else(|| anyhow!("no vmlinuz in {}", boot.display()))?;
        std::fs::copy(&vmlinuz, &kernel)?;
        // The modules stay in kernel-root for the initramfs; the rest goes.
        let _ = std::fs::remove_dir_all(&dl);
    }
    step("building the Linux test peer's initramfs (busybox, iproute2, virtio-net and ip_gre modules)");
    run(Command::new("bash").arg(&script).arg(&unpacked).arg(&initrd))
}
