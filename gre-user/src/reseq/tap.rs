//! The hand-off through a tap: the receive programs send each numbered
//! frame a socket does not take (TC receive, and whatever AF_XDP cannot
//! have: `xsk`) to a tap device of `xgre run`'s, read one `read` at a
//! time. And the way out: `sendmmsg` on a packet socket.

use std::{
    fs::File,
    io::Read,
    os::fd::{AsRawFd, OwnedFd, RawFd},
};

use anyhow::{bail, Context, Result};

use super::coalesce::VnetHdr;
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

/// A packet socket that sends frames out of a device and receives nothing.
pub(crate) struct PacketOut {
    fd: OwnedFd,
    sa: libc::sockaddr_ll,
}

impl PacketOut {
    /// A socket out of `ifindex` whose frames carry a `virtio_net_hdr` in
    /// front (PACKET_VNET_HDR), for merged GSO packets (`coalesce`).
    pub(crate) fn new(ifindex: u32) -> Result<PacketOut> {
        let out = PacketOut::plain(ifindex)?;
        const PACKET_VNET_HDR: libc::c_int = 15;
        let on: libc::c_int = 1;
        // SAFETY: one c_int option value that outlives the call.
        let r = unsafe {
            libc::setsockopt(
                out.fd.as_raw_fd(),
                libc::SOL_PACKET,
                PACKET_VNET_HDR,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as u32,
            )
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error()).context("PACKET_VNET_HDR on the resequencer's packet socket");
        }
        Ok(out)
    }

    fn plain(ifindex: u32) -> Result<PacketOut> {
        // Protocol 0: a packet socket that joins no tap, so it receives nothing.
        let sock = socket2::Socket::new(socket2::Domain::PACKET, socket2::Type::RAW, Some(socket2::Protocol::from(0)))
            .context("opening the resequencer's packet socket")?;
        // SAFETY: sockaddr_ll is plain data; all zeros is a valid value.
        let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sa.sll_family = libc::AF_PACKET as u16;
        sa.sll_ifindex = ifindex as i32;
        sa.sll_halen = 6;
        Ok(PacketOut { fd: OwnedFd::from(sock), sa })
    }

    /// Send `packets`, each behind its header, in as few calls as sendmmsg
    /// takes, and empty it. A packet the kernel refuses is lost, as it
    /// would be on a full device queue.
    pub(crate) fn send(&self, packets: &mut Vec<(VnetHdr, Vec<u8>)>) {
        let hdrs: Vec<[u8; VnetHdr::LEN]> = packets.iter().map(|(h, _)| h.bytes()).collect();
        let mut iov: Vec<[libc::iovec; 2]> = hdrs
            .iter()
            .zip(packets.iter())
            .map(|(h, (_, f))| {
                [
                    libc::iovec { iov_base: h.as_ptr() as *mut _, iov_len: h.len() },
                    libc::iovec { iov_base: f.as_ptr() as *mut _, iov_len: f.len() },
                ]
            })
            .collect();
        self.send_msgs(&mut iov);
        packets.clear();
    }

    /// One message per entry of `iov`, each of its N pieces.
    fn send_msgs<const N: usize>(&self, iov: &mut [[libc::iovec; N]]) {
        let mut msgs: Vec<libc::mmsghdr> = iov
            .iter_mut()
            .map(|v| {
                // SAFETY: msghdr is plain data; all zeros is a valid value.
                let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
                h.msg_name = (&self.sa as *const libc::sockaddr_ll).cast_mut().cast();
                h.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as u32;
                h.msg_iov = v.as_mut_ptr();
                h.msg_iovlen = N;
                libc::mmsghdr { msg_hdr: h, msg_len: 0 }
            })
            .collect();
        let mut done = 0;
        while done < msgs.len() {
            // SAFETY: every header points at an iovec and a frame that live
            // until this function returns.
            let n = unsafe { libc::sendmmsg(self.fd.as_raw_fd(), msgs[done..].as_mut_ptr(), (msgs.len() - done) as u32, 0) };
            // A refused frame: skip it and go on with the rest.
            done += if n > 0 { n as usize } else { 1 };
        }
    }
}
