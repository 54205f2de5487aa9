//! The hand-off through a tap: the receive programs send each numbered
//! frame a socket does not take (TC receive, and whatever AF_XDP cannot
//! have: `xsk`) to a tap device of `xgre run`'s, read one `read` at a
//! time.

use std::{
    fs::File,
    io::Read,
    os::fd::{AsRawFd, RawFd},
};

use anyhow::{bail, Context, Result};

use crate::net::netlink::Netlink;

/// The tap's queue: 20 ms of 1500-byte frames at 1 Gbit/s, so a thread
/// that falls briefly behind does not lose any.
const TAP_QUEUE: u32 = 2000;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;

pub(crate) struct TapIn {
    tap: File,
    buf: Vec<u8>,
}

impl TapIn {
    /// Tap `name`, gone when this closes it. Returns its ifindex too, for
    /// the datapath.
    pub(crate) async fn open(nl: &Netlink, name: &str) -> Result<(TapIn, u32)> {
        let tap = open_tap(name)?;
        // Nothing but our frames may enter the tap: no IPv6 of its own.
        let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "1");
        let link = nl.link(name).await?.with_context(|| format!("tap {name} vanished"))?;
        nl.set_up_quiet(link.index, TAP_QUEUE).await?;
        Ok((TapIn { tap, buf: vec![0; 65536] }, link.index))
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.tap.as_raw_fd()
    }

    /// Give up to `max` waiting frames to `f`; how many there were.
    pub(crate) fn receive(&mut self, max: usize, f: &mut dyn FnMut(&mut [u8])) -> usize {
        let mut n = 0;
        while n < max {
            let Ok(len) = self.tap.read(&mut self.buf) else { break };
            f(&mut self.buf[..len]);
            n += 1;
        }
        n
    }
}

/// A tap device of this process's (gone when the descriptor closes).
fn open_tap(name: &str) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/net/tun")
        .context("opening /dev/net/tun for the resequencer's tap")?;
    #[repr(C)]
    struct IfReq {
        name: [u8; 16],
        flags: libc::c_short,
        _pad: [u8; 22],
    }
    let mut req = IfReq { name: [0; 16], flags: (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short, _pad: [0; 22] };
    if name.len() > 15 {
        bail!("tap name {name} is longer than 15 bytes");
    }
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: TUNSETIFF reads and writes one struct ifreq, which IfReq is.
    if unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, &mut req) } < 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("creating tap {name}"));
    }
    Ok(file)
}
