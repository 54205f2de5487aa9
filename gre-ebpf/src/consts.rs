//! Numbers from the wire's standards, in host order so `match` can use
//! them, each taken once from network-types (whose `EtherType`
//! discriminants are big-endian); and the sizes our buffers are built for.

use network_types::{
    eth::{EthHdr, EtherType},
    ip::{IpProto, Ipv6Hdr},
};

pub const ETH_P_IP: u16 = u16::from_be(EtherType::Ipv4 as u16);
pub const ETH_P_IPV6: u16 = u16::from_be(EtherType::Ipv6 as u16);
pub const ETH_P_8021Q: u16 = u16::from_be(EtherType::Ieee8021q as u16);
pub const ETH_P_ARP: u16 = u16::from_be(EtherType::Arp as u16);
pub const ETH_P_8021AD: u16 = u16::from_be(EtherType::Ieee8021ad as u16);

pub const IPPROTO_GRE: u8 = IpProto::Gre as u8;
pub const IPPROTO_TCP: u8 = IpProto::Tcp as u8;
pub const IPPROTO_UDP: u8 = IpProto::Udp as u8;
pub const IPPROTO_ICMPV6: u8 = IpProto::Ipv6Icmp as u8;
pub const IPPROTO_ICMP: u8 = IpProto::Icmp as u8;
pub const IPPROTO_FRAGMENT: u8 = IpProto::Ipv6Frag as u8;

/// More Fragments, of the 3 IPv4 flag bits (RFC 791).
pub const IP_MF: u8 = 1;

/// The longest GRE header: flags and protocol, checksum, key, sequence
/// number (RFC 2784, RFC 2890).
pub const MAX_GRE: usize = 16;
/// Outer Ethernet + IPv6 + the longest GRE header.
pub const HDR_MAX: usize = EthHdr::LEN + Ipv6Hdr::LEN + MAX_GRE;
/// Bytes checksummed per bpf_loop round.
pub const CHUNK: usize = 512;
