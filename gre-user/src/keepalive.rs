//! GRE keepalives in the Cisco format: an outer GRE packet to the peer whose
//! payload is a GRE packet from the peer back to us, with protocol type 0.
//! The peer decapsulates and, seeing a packet for us, sends it back: any GRE
//! implementation does this without knowing about keepalives (xgre's
//! datapath reflects them out of the link they came in on). When ours comes
//! back, the receive program notes the time per path.

use std::{net::Ipv4Addr, os::fd::AsRawFd};

use anyhow::{Context, Result};
use socket2::{Domain, Socket, Type};

const IPPROTO_GRE: u8 = 47;

fn ipv4_header(src: Ipv4Addr, dst: Ipv4Addr, payload_len: usize, ttl: u8) -> [u8; 20] {
    let mut h = [0u8; 20];
    h[0] = 0x45;
    h[2..4].copy_from_slice(&((20 + payload_len) as u16).to_be_bytes());
    h[6] = 0x40; // DF
    h[8] = ttl;
    h[9] = IPPROTO_GRE;
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
    let mut sum: u32 = h.chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]]) as u32).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    h[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    h
}

fn gre_header(proto: u16, key: Option<u32>) -> Vec<u8> {
    let flags: u16 = if key.is_some() { 0x2000 } else { 0 };
    let mut g = flags.to_be_bytes().to_vec();
    g.extend(proto.to_be_bytes());
    if let Some(k) = key {
        g.extend(k.to_be_bytes());
    }
    g
}

/// The whole keepalive, outer IPv4 header included. Both GRE headers carry
/// the tunnel's key: the inner one becomes the outer header of the reply,
/// which our receive program checks like any other packet.
pub fn build(local: Ipv4Addr, remote: Ipv4Addr, key: Option<u32>) -> Vec<u8> {
    let inner_gre = gre_header(gre_common::PROTO_KEEPALIVE, key);
    let mut inner = ipv4_header(remote, local, inner_gre.len(), 255).to_vec();
    inner.extend(inner_gre);
    let mut payload = gre_header(gre_common::GreHdr::PROTO_IPV4, key);
    payload.extend(inner);
    let mut pkt = ipv4_header(local, remote, payload.len(), 255).to_vec();
    pkt.extend(payload);
    pkt
}

/// Sends keepalives as whole Ethernet frames through a packet socket, with
/// the path's own MACs: the probe takes exactly the way the path's data
/// takes, static neighbour included, not whatever the kernel's neighbour
/// table says.
pub struct Sender {
    sock: Socket,
}

impl Sender {
    pub fn new() -> Result<Sender> {
        // Protocol 0: send only, receive nothing.
        let sock = Socket::new(Domain::PACKET, Type::RAW, None).context("opening a packet socket for keepalives")?;
        sock.set_nonblocking(true)?;
        Ok(Sender { sock })
    }

    pub fn send(&self, ifindex: u32, path: &gre_common::Path, local: Ipv4Addr, remote: Ipv4Addr, key: Option<u32>) {
        let mut frame = path.dst_mac.to_vec();
        frame.extend(path.src_mac);
        frame.extend(0x0800u16.to_be_bytes());
        frame.extend(build(local, remote, key));
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid start.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_IP as u16).to_be();
        sll.sll_ifindex = ifindex as i32;
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(&path.dst_mac);
        // A full queue or a link that is down right now is exactly what the
        // probes are there to find out; not an error.
        let _ = unsafe {
            libc::sendto(
                self.sock.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalive_layout() {
        let p = build(Ipv4Addr::new(198, 18, 0, 10), Ipv4Addr::new(198, 18, 0, 20), Some(42));
        assert_eq!(p.len(), 20 + 8 + 20 + 8);
        assert_eq!(&p[12..20], &[198, 18, 0, 10, 198, 18, 0, 20], "outer: us -> peer");
        assert_eq!(&p[20..28], &[0x20, 0, 0x08, 0, 0, 0, 0, 42], "outer GRE: K, IPv4, key");
        assert_eq!(&p[40..48], &[198, 18, 0, 20, 198, 18, 0, 10], "inner: peer -> us");
        assert_eq!(&p[48..56], &[0x20, 0, 0, 0, 0, 0, 0, 42], "inner GRE: K, protocol 0, key");
        let no_key = build(Ipv4Addr::new(198, 18, 0, 10), Ipv4Addr::new(198, 18, 0, 20), None);
        assert_eq!(no_key.len(), 20 + 4 + 20 + 4);
    }
}
