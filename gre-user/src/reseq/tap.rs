//! The hand-off through a tap: the receive programs send each numbered
//! frame a socket does not take (TC receive, and whatever AF_XDP cannot
//! have: `xsk`) into the receive side of a tap of `xgre run`'s, where a
//! packet socket reads it, one `recv` at a time. Into, not out of: a
//! device segments on its way out a GSO packet it cannot take whole, and
//! one decapsulated by TC still asks for GRE segmentation, which no tap
//! offers. Received, TCP GSO packets (a veth peer's, or GRO's) come whole,
//! each behind a `virtio_net_hdr` (PACKET_VNET_HDR) that gives its
//! segments' size.

use std::{
    fs::File,
    os::fd::{AsRawFd, RawFd},
};

use anyhow::{Context, Result};
use socket2::{Domain, Socket, Type};

use crate::net::netlink::Netlink;

/// The tap's queue (it sends nothing, but a device needs one).
const TAP_QUEUE: u32 = 2000;
/// The packet socket's buffer: 20 ms at 1.5 Gbit/s with room for the
/// socket buffers' overhead, so a thread that falls briefly behind loses
/// nothing.
const RECV_BUFFER: usize = 16 << 20;
/// Frames up to a jumbo frame's length and our header come in (GSO
/// packets are not held to it).
const MTU: u32 = 16_384;
/// struct virtio_net_hdr: flags, gso_type, hdr_len, gso_size, csum_start,
/// csum_offset.
const VNET: usize = 10;

pub(crate) struct TapIn {
    /// Holds the tap: it goes when this closes it.
    _tap: File,
    sock: Socket,
    buf: Vec<u8>,
    lost: u64,
}

impl TapIn {
    /// Tap `name`, gone when this closes it, and a packet socket on its
    /// receive side. Returns the tap's ifindex too, for the datapath.
    pub(crate) async fn open(nl: &Netlink, name: &str) -> Result<(TapIn, u32)> {
        let (tap, index) = crate::net::tap::open(nl, name, TAP_QUEUE).await?;
        // A frame longer than the device's MTU is refused on its way in.
        nl.set_mtu(index, MTU).await?;
        let sock = packet_socket(index).with_context(|| format!("reading tap {name}"))?;
        Ok((TapIn { _tap: tap, sock, buf: vec![0; VNET + 1 + (1 << 16) + 256], lost: 0 }, index))
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// Give up to `max` waiting frames to `f`, each with its GSO segment
    /// size (0: one packet); how many there were.
    pub(crate) fn receive(&mut self, max: usize, f: &mut dyn FnMut(&mut [u8], u16)) -> usize {
        let mut n = 0;
        while n < max {
            // SAFETY: `buf` is valid for writes of its length.
            let len = unsafe { libc::recv(self.sock.as_raw_fd(), self.buf.as_mut_ptr().cast(), self.buf.len(), libc::MSG_DONTWAIT) };
            if len <= 0 {
                break;
            }
            let len = len as usize;
            if len > VNET {
                let gso_size = if self.buf[1] != 0 { u16::from_le_bytes([self.buf[4], self.buf[5]]) } else { 0 };
                f(&mut self.buf[VNET..len], gso_size);
            }
            n += 1;
        }
        n
    }

    /// Frames the socket had no room for so far.
    pub(crate) fn lost(&mut self) -> u64 {
        self.lost += crate::net::sys::packet_drops(&self.sock);
        self.lost
    }
}

/// A packet socket that receives what enters device `ifindex`, each frame
/// behind a `virtio_net_hdr`.
fn packet_socket(ifindex: u32) -> Result<Socket> {
    let proto = (libc::ETH_P_ALL as u16).to_be() as i32;
    let sock = Socket::new(Domain::PACKET, Type::RAW, Some(proto.into())).context("opening a packet socket")?;
    let on: libc::c_int = 1;
    for (opt, what) in [(libc::PACKET_VNET_HDR, "PACKET_VNET_HDR"), (libc::PACKET_IGNORE_OUTGOING, "PACKET_IGNORE_OUTGOING")] {
        // SAFETY: one c_int option value that outlives the call.
        let r = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_PACKET,
                opt,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as u32,
            )
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error()).context(what);
        }
    }
    crate::net::sys::big_recv_buffer(&sock, RECV_BUFFER);
    crate::net::sys::bind_packet(&sock, ifindex).context("binding it")?;
    sock.set_nonblocking(true)?;
    Ok(sock)
}
