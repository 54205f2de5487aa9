//! Repair's frames on the wire: what a kept packet's outer headers say,
//! the same packet readdressed to another path, and a request.

use gre_common::{repair::RepairAsk, repair::PROTO_REPAIR, reseq::is_number, v4_mapped, GreHdr};

use crate::daemon::keepalive::{gre_header, ipv4_header, ipv6_header};

use super::{store::Numbered, Route};

const ETH_LEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const IPPROTO_GRE: u8 = 47;

/// An outgoing GRE frame's outer headers.
#[derive(Debug, PartialEq, Eq)]
pub struct Outer {
    pub v6: bool,
    /// Outer addresses, IPv4 ones mapped.
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub key: Option<u32>,
    pub proto: u16,
    /// The packet's number and how it is carried, if it has one (an
    /// unnumbered light packet has none: `is_number`).
    pub number: Option<(u32, Numbered)>,
}

impl Outer {
    /// The outer headers of an Ethernet frame carrying IPv4 or IPv6 with
    /// GRE straight after (no options, no extension headers: what xgre
    /// sends), or None.
    pub fn parse(frame: &[u8]) -> Option<Outer> {
        let ty = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
        let ip = frame.get(ETH_LEN..)?;
        let (v6, src, dst, id, gre) = match ty {
            ETH_P_IP if ip.len() >= 20 && ip[0] == 0x45 && ip[9] == IPPROTO_GRE => {
                let a = |at: usize| v4_mapped([ip[at], ip[at + 1], ip[at + 2], ip[at + 3]]);
                (false, a(12), a(16), Some(u16::from_be_bytes([ip[4], ip[5]])), &ip[20..])
            }
            ETH_P_IPV6 if ip.len() >= 40 && ip[0] >> 4 == 6 && ip[6] == IPPROTO_GRE => {
                (true, ip[8..24].try_into().ok()?, ip[24..40].try_into().ok()?, None, &ip[40..])
            }
            _ => return None,
        };
        let flags = u16::from_be_bytes([*gre.first()?, *gre.get(1)?]);
        let proto = u16::from_be_bytes([*gre.get(2)?, *gre.get(3)?]);
        let mut at = GreHdr::LEN + if flags & GreHdr::C != 0 { 4 } else { 0 };
        let word = |at: usize| gre.get(at..at + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        let key = match flags & GreHdr::K != 0 {
            true => {
                at += 4;
                Some(word(at - 4)?)
            }
            false => None,
        };
        let number = match flags & GreHdr::S != 0 {
            true => Some((word(at)?, Numbered::GreSeq)),
            false => id.map(|id| (id as u32, Numbered::IpId)),
        }
        .filter(|(n, _)| is_number(*n));
        Some(Outer { v6, src, dst, key, proto, number })
    }

    /// Whether it carries a tunnel's payload (not a keepalive, a request
    /// or anything else).
    pub fn is_data(&self) -> bool {
        matches!(self.proto, GreHdr::PROTO_IPV4 | GreHdr::PROTO_IPV6 | GreHdr::PROTO_TEB)
    }
}

/// Readdress a kept frame (`Outer::parse` took it) to leave by `route`:
/// its MACs and outer addresses, the IPv4 header's checksum again. The
/// number, the GRE header and what it carries stay as they were. False
/// when the route is of the other family.
pub fn readdress(frame: &mut [u8], route: &Route) -> bool {
    let v6 = frame.get(12..14) == Some(&ETH_P_IPV6.to_be_bytes()[..]);
    if v6 != route.v6() || frame.len() < ETH_LEN + if v6 { 40 } else { 20 } {
        return false;
    }
    frame[..6].copy_from_slice(&route.dst_mac);
    frame[6..12].copy_from_slice(&route.src_mac);
    let ip = &mut frame[ETH_LEN..];
    if v6 {
        ip[8..24].copy_from_slice(&route.local);
        ip[24..40].copy_from_slice(&route.remote);
    } else {
        ip[12..16].copy_from_slice(&route.local[12..]);
        ip[16..20].copy_from_slice(&route.remote[12..]);
        ip[10..12].fill(0);
        let h: [u8; 20] = ip[..20].try_into().expect("20 bytes");
        ip[10..12].copy_from_slice(&gre_common::csum::ipv4_header(&h).to_be_bytes());
    }
    true
}

/// A request for `seqs` (at most `MAX_ASK`) over `route`, whole Ethernet
/// frame, with the tunnel's `key`.
pub fn ask(route: &Route, key: Option<u32>, seqs: &[u32]) -> Vec<u8> {
    let mut payload = gre_header(PROTO_REPAIR, key);
    let at = payload.len();
    payload.resize(at + RepairAsk::LEN + 4 * seqs.len(), 0);
    let n = RepairAsk::write(seqs, &mut payload[at..]);
    payload.truncate(at + n);
    let mut f = route.dst_mac.to_vec();
    f.extend(route.src_mac);
    if route.v6() {
        f.extend(ETH_P_IPV6.to_be_bytes());
        f.extend(ipv6_header(route.local.into(), route.remote.into(), payload.len(), 255));
    } else {
        f.extend(ETH_P_IP.to_be_bytes());
        let a = |x: &[u8; 16]| std::net::Ipv4Addr::new(x[12], x[13], x[14], x[15]);
        f.extend(ipv4_header(a(&route.local), a(&route.remote), payload.len(), 255));
    }
    f.extend(payload);
    f
}

/// What a request received by a raw GRE socket asks: the tunnel key its
/// GRE header carries and the numbers. `gre`: from the GRE header on.
pub fn parse_ask(gre: &[u8]) -> Option<(Option<u32>, Vec<u32>)> {
    let flags = u16::from_be_bytes([*gre.first()?, *gre.get(1)?]);
    if u16::from_be_bytes([*gre.get(2)?, *gre.get(3)?]) != PROTO_REPAIR || flags & (GreHdr::C | GreHdr::S) != 0 {
        return None;
    }
    let (key, at) = match flags & GreHdr::K != 0 {
        true => (Some(u32::from_be_bytes(gre.get(4..8)?.try_into().ok()?)), 8),
        false => (None, 4),
    };
    Some((key, RepairAsk::parse(gre.get(at..)?)?.collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(v6: bool, last: u8) -> Route {
        let addr = |b: u8| match v6 {
            true => {
                let mut a = [0u8; 16];
                a[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
                a[15] = b;
                a
            }
            false => v4_mapped([198, 18, last, b]),
        };
        Route {
            peer_id: 3,
            path: 1,
            ifindex: 9,
            src_mac: [2, 0, 0, 0, 0, last],
            dst_mac: [2, 0, 0, 0, 1, last],
            local: addr(10),
            remote: addr(20),
        }
    }

    #[test]
    fn a_request_goes_out_as_gre_and_reads_back() {
        for v6 in [false, true] {
            let r = route(v6, 1);
            let f = ask(&r, Some(42), &[5, 6]);
            let o = Outer::parse(&f).unwrap();
            assert_eq!((o.v6, o.src, o.dst, o.key, o.proto), (v6, r.local, r.remote, Some(42), PROTO_REPAIR));
            assert!(!o.is_data());
            let gre = &f[ETH_LEN + if v6 { 40 } else { 20 }..];
            assert_eq!(parse_ask(gre), Some((Some(42), vec![5, 6])));
        }
        let f = ask(&route(false, 1), None, &[1]);
        assert_eq!(parse_ask(&f[ETH_LEN + 20..]), Some((None, vec![1])));
        assert_eq!(&f[..6], &[2, 0, 0, 0, 1, 1], "to the path's neighbour");
    }

    #[test]
    fn a_kept_packet_is_readdressed_to_another_path_with_its_number_and_payload() {
        // A numbered data packet as it left over path 1: IPv4 ID 0x1234.
        let mut f = ask(&route(false, 1), Some(42), &[1]);
        f[ETH_LEN + 4..ETH_LEN + 6].copy_from_slice(&0x1234u16.to_be_bytes());
        f[ETH_LEN + 20 + 2..ETH_LEN + 20 + 4].copy_from_slice(&GreHdr::PROTO_IPV4.to_be_bytes());
        let before = f.clone();
        let two = route(false, 2);
        assert!(readdress(&mut f, &two));
        let o = Outer::parse(&f).unwrap();
        assert_eq!((o.src, o.dst, o.number), (two.local, two.remote, Some((0x1234, Numbered::IpId))));
        assert!(o.is_data());
        assert_eq!(&f[..12], &[2, 0, 0, 0, 1, 2, 2, 0, 0, 0, 0, 2]);
        assert_eq!(gre_common::csum::ipv4_header(&f[ETH_LEN..ETH_LEN + 20].try_into().unwrap()), 0, "the header sums right");
        assert_eq!(&f[ETH_LEN + 20..], &before[ETH_LEN + 20..], "GRE and payload untouched");
        assert!(!readdress(&mut f, &route(true, 2)), "not onto the other family");
    }
}
