//! A copy of every GRE frame a link sends: a packet socket on the link,
//! with a classic BPF filter that keeps outgoing IPv4 or IPv6 frames
//! carrying GRE and nothing else, so the kernel copies none of what the
//! link receives. Read in batches (`recvmmsg`).

use std::os::fd::{AsRawFd, RawFd};

use anyhow::{Context, Result};
use socket2::{Domain, Socket, Type};

/// Frames read per system call.
const BATCH: usize = 64;
/// Largest frame kept: a jumbo frame's 9000 bytes and its headers. A
/// longer one arrives cut short and is not kept.
const FRAME: usize = 9216;

/// cBPF: accept (whole) what leaves (`PACKET_OUTGOING`) as IPv4 or IPv6
/// with protocol / next header 47; drop everything else.
const FILTER: [libc::sock_filter; 11] = {
    const fn op(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
        libc::sock_filter { code, jt, jf, k }
    }
    const LD_W: u16 = 0x20;
    const LD_H: u16 = 0x28;
    const LD_B: u16 = 0x30;
    const JEQ: u16 = 0x15;
    const JA: u16 = 0x05;
    const RET: u16 = 0x06;
    // SKF_AD_OFF + SKF_AD_PKTTYPE
    const PKTTYPE: u32 = 0xffff_f004;
    [
        op(LD_W, 0, 0, PKTTYPE),
        op(JEQ, 0, 8, libc::PACKET_OUTGOING as u32),
        op(LD_H, 0, 0, 12),
        op(JEQ, 0, 2, libc::ETH_P_IP as u32),
        op(LD_B, 0, 0, 14 + 9),
        op(JA, 0, 0, 2),
        op(JEQ, 0, 3, libc::ETH_P_IPV6 as u32),
        op(LD_B, 0, 0, 14 + 6),
        op(JEQ, 0, 1, 47),
        op(RET, 0, 0, 0xffff),
        op(RET, 0, 0, 0),
    ]
};

pub struct Capture {
    sock: Socket,
    bufs: Vec<[u8; FRAME]>,
}

impl Capture {
    /// Start copying what link `ifindex` sends.
    pub fn open(ifindex: u32) -> Result<Capture> {
        let proto = (libc::ETH_P_ALL as u16).to_be() as i32;
        let sock = Socket::new(Domain::PACKET, Type::RAW, Some(proto.into())).context("opening a packet socket to keep sent packets")?;
        let prog = libc::sock_fprog { len: FILTER.len() as u16, filter: FILTER.as_ptr() as *mut _ };
        // Filtered before bound: nothing unfiltered queues in between.
        // SAFETY: `prog` points at FILTER, which is static; the kernel copies it.
        let r = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ATTACH_FILTER,
                (&prog as *const libc::sock_fprog).cast(),
                std::mem::size_of::<libc::sock_fprog>() as u32,
            )
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error()).context("filtering the packet socket to sent GRE");
        }
        crate::net::sys::big_recv_buffer(&sock, 8 << 20);
        crate::net::sys::bind_packet(&sock, ifindex).with_context(|| format!("binding a packet socket to link {ifindex}"))?;
        sock.set_nonblocking(true)?;
        Ok(Capture { sock, bufs: vec![[0u8; FRAME]; BATCH] })
    }

    pub fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// Frames the kernel could not copy here since the last call (the
    /// buffer full): sent, and not kept.
    pub fn missed(&self) -> u64 {
        crate::net::sys::packet_drops(&self.sock)
    }

    /// Give every frame waiting to `f`; how many there were.
    pub fn drain(&mut self, f: &mut dyn FnMut(&[u8])) -> usize {
        let mut total = 0;
        loop {
            let mut iovs: Vec<libc::iovec> =
                self.bufs.iter_mut().map(|b| libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: FRAME }).collect();
            let mut msgs: Vec<libc::mmsghdr> = iovs
                .iter_mut()
                .map(|iov| {
                    // SAFETY: mmsghdr is plain data; all-zero is valid.
                    let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                    m.msg_hdr.msg_iov = iov;
                    m.msg_hdr.msg_iovlen = 1;
                    m
                })
                .collect();
            // SAFETY: BATCH headers, each pointing at a buffer of FRAME
            // bytes that outlives the call.
            let n =
                unsafe { libc::recvmmsg(self.sock.as_raw_fd(), msgs.as_mut_ptr(), BATCH as u32, libc::MSG_DONTWAIT, std::ptr::null_mut()) };
            if n <= 0 {
                return total;
            }
            for (m, b) in msgs.iter().zip(&self.bufs).take(n as usize) {
                if m.msg_hdr.msg_flags & libc::MSG_TRUNC == 0 {
                    f(&b[..m.msg_len as usize]);
                }
            }
            total += n as usize;
            if (n as usize) < BATCH {
                return total;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    /// Run `f` on a thread of its own in a network namespace of its own,
    /// its loopback up: nothing it sends leaves it.
    fn in_own_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("a network namespace (root)");
            let up = Command::new("ip").args(["link", "set", "lo", "up"]).status().expect("ip");
            assert!(up.success());
            f()
        })
        .join()
        .unwrap()
    }

    /// A GRE frame to 198.18.0.2 out of lo, on a packet socket.
    fn send_gre(out: &Socket, n: usize) {
        let mut f = vec![0u8; 14 + 20 + 4 + 1000];
        f[12..14].copy_from_slice(&(libc::ETH_P_IP as u16).to_be_bytes());
        f[14] = 0x45;
        f[14 + 9] = 47;
        f[14 + 16..14 + 20].copy_from_slice(&[198, 18, 0, 2]);
        for _ in 0..n {
            out.send(&f).unwrap();
        }
    }

    fn packet_socket_on_lo() -> Socket {
        let s = Socket::new(Domain::PACKET, Type::RAW, Some(0.into())).unwrap();
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid start.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = 1;
        // SAFETY: a valid sockaddr_ll and its size.
        let r = unsafe {
            libc::bind(s.as_raw_fd(), (&sll as *const libc::sockaddr_ll).cast(), std::mem::size_of::<libc::sockaddr_ll>() as u32)
        };
        assert_eq!(r, 0);
        s
    }

    #[test]
    fn the_copy_holds_8_mib_whatever_rmem_max_says_and_counts_what_overflows() {
        let (buffer, copied, missed, sent) = in_own_netns(|| {
            let mut c = Capture::open(1).unwrap();
            let buffer = c.sock.recv_buffer_size().unwrap();
            // Room for a few frames only: the rest overflow.
            let small: libc::c_int = 64 << 10;
            // SAFETY: an int option, its address and size.
            unsafe { libc::setsockopt(c.fd(), libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, (&small as *const libc::c_int).cast(), 4) };
            let sent = 500;
            send_gre(&packet_socket_on_lo(), sent);
            let copied = c.drain(&mut |_| {});
            (buffer, copied, c.missed(), sent)
        });
        // The kernel doubles what it is given; rmem_max is 208 KiB by
        // default, 4 MiB on some.
        assert!(buffer >= 16 << 20, "a receive buffer of {buffer} bytes");
        assert!(missed > 0 && copied as u64 + missed == sent as u64, "{copied} copied and {missed} missed of {sent}");
    }
}
