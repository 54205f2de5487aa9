//! Layouts of the per-CPU buffers the maps hold: the verifier bounds
//! stack use, so anything bigger than a header is built in a map value.

use network_types::ip::Ipv6Hdr;

use crate::consts::{CHUNK, HDR_MAX};

/// A chunk being checksummed, plus a word so a tail padded to 4 bytes
/// stays in bounds.
#[repr(C)]
pub struct Scratch {
    pub buf: [u8; CHUNK + 4],
}

/// Where outer headers are built (see `encap::header`).
pub type OuterHdr = [u8; HDR_MAX];

/// Where the inner IP header is read to account for an unfilled TCP/UDP
/// checksum (see `lco.rs`): room for an IPv6 header.
pub type InnerIpHdr = [u8; Ipv6Hdr::LEN];
