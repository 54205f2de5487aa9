//! The way out of the resequencer, whichever hand-off brought the frames
//! in: `sendmmsg` on a packet socket out of the tunnel's hidden veth end,
//! each packet behind a `virtio_net_hdr` (merged ones are GSO packets).

use std::os::fd::{AsRawFd, OwnedFd};

use anyhow::{Context, Result};

use super::coalesce::VnetHdr;

/// A packet socket that sends frames out of a device and receives nothing.
pub(crate) struct PacketOut {
    fd: OwnedFd,
    sa: libc::sockaddr_ll,
}

impl PacketOut {
    /// A socket out of `ifindex` whose frames carry a `virtio_net_hdr` in
    /// front (PACKET_VNET_HDR), for merged GSO packets (`coalesce`).
    pub(crate) fn new(ifindex: u32) -> Result<PacketOut> {
        let out = PacketOut::bare(ifindex)?;
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

    fn bare(ifindex: u32) -> Result<PacketOut> {
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
