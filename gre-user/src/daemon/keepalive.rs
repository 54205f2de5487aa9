//! GRE keepalives in the Cisco format: an outer GRE packet to the peer whose
//! payload is a GRE packet from the peer back to us, with protocol type 0.
//! The peer decapsulates and, seeing a packet for us, sends it back: any GRE
//! implementation does this without knowing about keepalives (xgre's
//! datapath reflects them out of the link they came in on). When ours comes
//! back, the receive program notes the time per path.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::AsRawFd,
};

use anyhow::{Context, Result};
use gre_common::{Announce, Stamp};
use socket2::{Domain, Socket, Type};

const IPPROTO_GRE: u8 = 47;

pub(crate) fn ipv4_header(src: Ipv4Addr, dst: Ipv4Addr, payload_len: usize, ttl: u8) -> [u8; 20] {
    let mut h = [0u8; 20];
    h[0] = 0x45;
    h[2..4].copy_from_slice(&((20 + payload_len) as u16).to_be_bytes());
    h[6] = 0x40; // DF
    h[8] = ttl;
    h[9] = IPPROTO_GRE;
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
    let check = gre_common::csum::ipv4_header(&h);
    h[10..12].copy_from_slice(&check.to_be_bytes());
    h
}

pub(crate) fn ipv6_header(src: Ipv6Addr, dst: Ipv6Addr, payload_len: usize, hops: u8) -> [u8; 40] {
    let mut h = [0u8; 40];
    h[0] = 0x60;
    h[4..6].copy_from_slice(&(payload_len as u16).to_be_bytes());
    h[6] = IPPROTO_GRE;
    h[7] = hops;
    h[8..24].copy_from_slice(&src.octets());
    h[24..40].copy_from_slice(&dst.octets());
    h
}

pub(crate) fn gre_header(proto: u16, key: Option<u32>) -> Vec<u8> {
    let flags: u16 = if key.is_some() { 0x2000 } else { 0 };
    let mut g = flags.to_be_bytes().to_vec();
    g.extend(proto.to_be_bytes());
    if let Some(k) = key {
        g.extend(k.to_be_bytes());
    }
    g
}

/// The whole keepalive, outer IP header included: IPv4 in IPv4, or IPv6 in
/// IPv6 for a path over an IPv6 underlay. Both GRE headers carry the
/// tunnel's key: the inner one becomes the outer header of the reply, which
/// our receive program checks like any other packet. What this end
/// announces (`gre_common::announce`) follows the inner GRE header, where
/// any GRE endpoint carries it back untouched.
pub fn build(local: IpAddr, remote: IpAddr, key: Option<u32>, announce: Option<Announce>, stamp: Option<Stamp>) -> Vec<u8> {
    let mut inner_gre = gre_header(gre_common::PROTO_KEEPALIVE, key);
    if let Some(a) = announce {
        inner_gre.extend(a.to_bytes());
    }
    if let Some(s) = stamp {
        inner_gre.extend(s.to_bytes());
    }
    let ip = |src: IpAddr, dst: IpAddr, len: usize| match (src, dst) {
        (IpAddr::V6(s), IpAddr::V6(d)) => ipv6_header(s, d, len, 255).to_vec(),
        (s, d) => ipv4_header(v4(s), v4(d), len, 255).to_vec(),
    };
    let mut inner = ip(remote, local, inner_gre.len());
    inner.extend(inner_gre);
    let proto = if local.is_ipv6() { gre_common::GreHdr::PROTO_IPV6 } else { gre_common::GreHdr::PROTO_IPV4 };
    let mut payload = gre_header(proto, key);
    payload.extend(inner);
    let mut pkt = ip(local, remote, payload.len());
    pkt.extend(payload);
    pkt
}

fn v4(a: IpAddr) -> Ipv4Addr {
    match a {
        IpAddr::V4(a) => a,
        IpAddr::V6(a) => a.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED),
    }
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

    pub fn send(&self, ifindex: u32, path: &gre_common::Path, local: IpAddr, remote: IpAddr, key: Option<u32>, announce: Option<Announce>) {
        let ethertype = if local.is_ipv6() { libc::ETH_P_IPV6 } else { libc::ETH_P_IP } as u16;
        let mut frame = path.dst_mac.to_vec();
        frame.extend(path.src_mac);
        frame.extend(ethertype.to_be_bytes());
        frame.extend(build(local, remote, key, announce, Some(Stamp::new(crate::net::sys::monotonic_ns()))));
        // A full queue or a link that is down right now is exactly what the
        // probes are there to find out; not an error.
        let _ = self.send_frame(ifindex, &frame);
    }

    /// Send a whole Ethernet frame out of link `ifindex` as it is.
    pub fn send_frame(&self, ifindex: u32, frame: &[u8]) -> std::io::Result<()> {
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid start.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = u16::from_be_bytes([frame.get(12).copied().unwrap_or(0), frame.get(13).copied().unwrap_or(0)]).to_be();
        sll.sll_ifindex = ifindex as i32;
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(frame.get(..6).unwrap_or(&[0; 6]));
        // SAFETY: the frame and the address outlive the call, and the
        // lengths are theirs.
        let r = unsafe {
            libc::sendto(
                self.sock.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        match r < 0 {
            true => Err(std::io::Error::last_os_error()),
            false => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalive_layout() {
        let p = build(Ipv4Addr::new(198, 18, 0, 10).into(), Ipv4Addr::new(198, 18, 0, 20).into(), Some(42), None, None);
        assert_eq!(p.len(), 20 + 8 + 20 + 8);
        assert_eq!(&p[12..20], &[198, 18, 0, 10, 198, 18, 0, 20], "outer: us -> peer");
        assert_eq!(&p[20..28], &[0x20, 0, 0x08, 0, 0, 0, 0, 42], "outer GRE: K, IPv4, key");
        assert_eq!(&p[40..48], &[198, 18, 0, 20, 198, 18, 0, 10], "inner: peer -> us");
        assert_eq!(&p[48..56], &[0x20, 0, 0, 0, 0, 0, 0, 42], "inner GRE: K, protocol 0, key");
        let no_key = build(Ipv4Addr::new(198, 18, 0, 10).into(), Ipv4Addr::new(198, 18, 0, 20).into(), None, None, None);
        assert_eq!(no_key.len(), 20 + 4 + 20 + 4);
        let (a, b): (Ipv6Addr, Ipv6Addr) = ("2001:db8::10".parse().unwrap(), "2001:db8::20".parse().unwrap());
        let p6 = build(a.into(), b.into(), Some(42), None, None);
        assert_eq!(p6.len(), 40 + 8 + 40 + 8);
        assert_eq!((p6[0] >> 4, p6[6]), (6, 47), "outer IPv6, next header GRE");
        assert_eq!(&p6[24..40], &b.octets(), "outer: to the peer");
        assert_eq!(&p6[40..48], &[0x20, 0, 0x86, 0xdd, 0, 0, 0, 42], "outer GRE: K, IPv6, key");
        assert_eq!(&p6[56..72], &b.octets(), "inner: from the peer");
        assert_eq!(&p6[72..88], &a.octets(), "inner: back to us");
        assert_eq!(&p6[88..96], &[0x20, 0, 0, 0, 0, 0, 0, 42], "inner GRE: protocol 0");
        let ann =
            build(Ipv4Addr::new(198, 18, 0, 10).into(), Ipv4Addr::new(198, 18, 0, 20).into(), Some(42), Some(Announce::new(1, 400)), None);
        assert_eq!(ann.len(), 20 + 8 + 20 + 8 + Announce::LEN);
        assert_eq!(&ann[2..4], &(ann.len() as u16).to_be_bytes(), "outer length covers the announcement");
        assert_eq!(&ann[30..32], &((20 + 8 + Announce::LEN) as u16).to_be_bytes(), "so does the inner one");
        assert_eq!(&ann[56..], &[0x78, 0x67, 0x61, 0x6e, 0, 0, 0, 1, 0, 0, 1, 0x90], "behind the inner GRE header: magic, flags, ttl");
    }
}
