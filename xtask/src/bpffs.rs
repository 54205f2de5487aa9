//! Leave the host's BPF filesystem as the task found it.
//!
//! `xgre` mounts bpffs at /sys/fs/bpf when it is missing (as systemd would),
//! and tests that run it through `nsenter` do that on the host. The kernel
//! then adds its bpf_preload iterators (`maps.debug`, `progs.debug`), which
//! nobody can remove. A task that found no bpffs unmounts the one its runs
//! mounted, but only when nothing else is in it: a leftover pin stays for
//! someone to see.

use std::path::Path;
use std::process::Command;

const BPFFS: &str = "/sys/fs/bpf";
const KERNEL_FILES: [&str; 2] = ["maps.debug", "progs.debug"];

fn mounted() -> bool {
    std::fs::read_to_string("/proc/self/mountinfo").map(|m| m.lines().any(|l| l.split(' ').nth(4) == Some(BPFFS))).unwrap_or(false)
}

pub struct Guard {
    was_mounted: bool,
}

impl Guard {
    pub fn new() -> Self {
        Self { was_mounted: mounted() }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.was_mounted || !mounted() {
            return;
        }
        let Ok(dir) = std::fs::read_dir(Path::new(BPFFS)) else { return };
        let names: Vec<String> = dir.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        if names.iter().any(|n| !KERNEL_FILES.contains(&n.as_str())) {
            eprintln!("xtask: {BPFFS} still holds {names:?}: left mounted for inspection");
            return;
        }
        let _ = Command::new("umount").arg(BPFFS).status();
    }
}
