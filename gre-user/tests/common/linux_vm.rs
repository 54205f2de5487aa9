//! Linux's own ip_gre and gretap as a GRE peer: Debian's kernel booted
//! under qemu with software emulation (TCG; KVM guests hang on these
//! machines), from the kernel and initramfs `cargo xtask setup` leaves in
//! `target/guest/`. Its NIC is a tap device in a test namespace. Commands
//! go to the guest's shell over the serial console, one line each; its
//! init ends each command's output with `XGRE-DONE <status>`.

use std::{
    io::{BufRead, BufReader, Write},
    process::{Child, ChildStdin, Command, Stdio},
    sync::mpsc::{channel, Receiver},
    time::Duration,
};

use super::Host;

pub struct LinuxVm {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

fn guest_file(name: &str) -> String {
    let p = format!("{}/../target/guest/{name}", env!("CARGO_MANIFEST_DIR"));
    assert!(std::path::Path::new(&p).exists(), "{p} is missing: `cargo xtask setup` builds the Linux test peer");
    p
}

/// The guest's initrd with `files` added: a second archive behind the
/// first, which the kernel unpacks over it.
fn initrd_with(files: &[(&str, &str)], dir: &std::path::Path) -> String {
    let work = dir.join("initrd-extra");
    let _ = std::fs::remove_dir_all(&work);
    let mut script = String::from("set -euo pipefail\n");
    for (src, dst) in files {
        let to = work.join(dst.trim_start_matches('/'));
        script += &format!("mkdir -p {}\n", to.parent().unwrap().display());
        script += &format!(
            "if [ \"$(head -c 4 {src} | tail -c 3)\" = ELF ]; then strip -o {to} {src}; for l in $(ldd {src} | awk '/=>/ {{print $3}} /ld-linux/ {{print $1}}'); do mkdir -p {w}$(dirname $l); cp -L $l {w}$l; done; else cp {src} {to}; fi\n",
            to = to.display(),
            w = work.display()
        );
    }
    let out = dir.join("initrd-with.gz");
    script += &format!(
        "(cd {} && find . | busybox cpio -o -H newc 2>/dev/null | gzip -1) > {out}.extra && cat {} {out}.extra > {out} && rm {out}.extra\n",
        work.display(),
        guest_file("initrd.gz"),
        out = out.display()
    );
    super::sh(&script);
    let _ = std::fs::remove_dir_all(&work);
    out.display().to_string()
}

impl LinuxVm {
    /// Boot the guest in `host`'s namespace with its NIC on tap `tap`
    /// (made by qemu) and wait until its shell listens. `offload`: the
    /// guest's NIC offers checksum offload, so the guest leaves checksums
    /// to be filled (CHECKSUM_PARTIAL frames on the tap); without it every
    /// frame carries finished checksums, as on a wire.
    pub fn boot(host: &Host, tap: &str, mac: &str, offload: bool) -> LinuxVm {
        Self::boot_initrd(host, tap, mac, offload, &guest_file("initrd.gz"), 256)
    }

    /// `boot` with `files` (host path, guest path) in the guest too, each
    /// program stripped and with its libraries; `dir` holds the initrd
    /// made for it.
    pub fn boot_with(host: &Host, tap: &str, mac: &str, files: &[(&str, &str)], dir: &std::path::Path) -> LinuxVm {
        let initrd = initrd_with(files, dir);
        Self::boot_initrd(host, tap, mac, true, &initrd, 512)
    }

    fn boot_initrd(host: &Host, tap: &str, mac: &str, offload: bool, initrd: &str, mib: u32) -> LinuxVm {
        let kernel = guest_file("vmlinuz");
        let csum = if offload { "" } else { ",csum=off,guest_csum=off" };
        let mut child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", host.ns))
            .args(["timeout", "600", "qemu-system-x86_64", "-accel", "tcg", "-m", &mib.to_string(), "-nographic", "-no-reboot"])
            .args(["-kernel", &kernel, "-initrd", initrd, "-append", "console=ttyS0 quiet loglevel=1 panic=-1"])
            .args(["-netdev", &format!("tap,id=n0,ifname={tap},script=no,downscript=no")])
            .args(["-device", &format!("virtio-net-pci,netdev=n0,mac={mac},romfile={csum}")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting qemu-system-x86_64 (`cargo xtask setup` installs it)");
        let stdin = child.stdin.take().unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for l in out.lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let mut vm = LinuxVm { child, stdin, lines };
        if let Err(seen) = vm.wait_for("XGRE-GUEST-READY", Duration::from_secs(120)) {
            panic!("the Linux guest did not boot within 120 s; it said:\n{}", seen.join("\n"));
        }
        vm
    }

    /// Lines up to the one containing `marker` (the console puts escape
    /// codes in front of the first), or what came before the time ran out.
    fn wait_for(&mut self, marker: &str, limit: Duration) -> Result<(Vec<String>, String), Vec<String>> {
        let mut seen = Vec::new();
        loop {
            match self.lines.recv_timeout(limit) {
                Ok(l) if l.contains(marker) => return Ok((seen, l)),
                Ok(l) => seen.push(l),
                Err(_) => return Err(seen),
            }
        }
    }

    /// Run `cmd` in the guest; its exit status (-1: no answer within
    /// `limit`) and output.
    pub fn sh_status(&mut self, cmd: &str, limit: Duration) -> (i32, String) {
        writeln!(self.stdin, "{cmd}").expect("writing to the guest console");
        self.stdin.flush().unwrap();
        match self.wait_for("XGRE-DONE", limit) {
            Ok((out, done)) => (done.rsplit(' ').next().and_then(|s| s.trim().parse().ok()).unwrap_or(-1), out.join("\n")),
            Err(seen) => (-1, format!("(no answer within {limit:?})\n{}", seen.join("\n"))),
        }
    }

    /// Run `cmd` in the guest; it must succeed.
    #[track_caller]
    pub fn sh(&mut self, cmd: &str) -> String {
        let (rc, out) = self.sh_status(cmd, Duration::from_secs(120));
        assert_eq!(rc, 0, "guest: `{cmd}` failed:\n{out}");
        out
    }

    /// Start `cmd` in the guest without waiting; `finish` collects it.
    pub fn start(&mut self, cmd: &str) {
        writeln!(self.stdin, "{cmd}").expect("writing to the guest console");
        self.stdin.flush().unwrap();
    }

    /// The status and output of what `start` started.
    pub fn finish(&mut self, limit: Duration) -> (i32, String) {
        match self.wait_for("XGRE-DONE", limit) {
            Ok((out, done)) => (done.rsplit(' ').next().and_then(|s| s.trim().parse().ok()).unwrap_or(-1), out.join("\n")),
            Err(seen) => (-1, format!("(no answer within {limit:?})\n{}", seen.join("\n"))),
        }
    }
}

impl Drop for LinuxVm {
    fn drop(&mut self) {
        // The child is `timeout`, which does not pass SIGKILL on to qemu.
        let _ = Command::new("pkill").args(["-KILL", "-P", &self.child.id().to_string()]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
