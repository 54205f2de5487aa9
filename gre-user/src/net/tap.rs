//! Tap devices of this process's: gone when the descriptor closes, so a
//! killed `xgre run` leaves none behind.

use std::{fs::File, os::fd::AsRawFd};

use anyhow::{bail, Context, Result};

use crate::net::netlink::Netlink;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;

/// Tap `name`, up, with a queue of `queue` frames and no IPv6 of its own
/// (nothing but what it is given may enter it). Returns its ifindex too.
pub(crate) async fn open(nl: &Netlink, name: &str, queue: u32) -> Result<(File, u32)> {
    let tap = open_tap(name)?;
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "1");
    let link = nl.link(name).await?.with_context(|| format!("tap {name} vanished"))?;
    nl.set_up_quiet(link.index, queue).await?;
    Ok((tap, link.index))
}

fn open_tap(name: &str) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/net/tun")
        .with_context(|| format!("opening /dev/net/tun for tap {name}"))?;
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
