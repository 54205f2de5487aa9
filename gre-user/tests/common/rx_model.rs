//! A reference model of xgre's receive rules, written from the RFCs and
//! the README rather than from the datapath's code: what a frame arriving
//! on a link must become. The differential fuzzer compares the real
//! programs with it.
//!
//! - Ethernet: a frame for a VLAN is not ours; a priority tag (VID 0) is
//!   untagged (802.1Q). TC sees the first tag already taken off by the
//!   kernel, so a tag still in the frame at TC is a second one.
//! - Outer IPv4 (RFC 791, RFC 1122 3.2.1.2): GRE (47) to one of our link
//!   addresses, on that link, to its MAC; IHL and total length sane, header
//!   checksum right. A fragment goes to the kernel to reassemble when it
//!   comes from the peer's address (and the pair is known), else it is
//!   dropped.
//! - Outer IPv6 (RFC 8200, RFC 7676): next header 47 directly; IPv4-mapped
//!   addresses never on the wire (RFC 4291 2.5.5.2); payload length within
//!   the frame. A fragment header (44) before GRE: as IPv4 fragments.
//! - GRE (RFC 2784, RFC 2890): reserved bits 1-5 clear, version 0, the
//!   optional fields the flags announce all there, checksum right, the
//!   tunnel's key, a known peer on that path. Protocol 0 is our keepalive
//!   coming back; IP-in-GRE from our address back to the sender is the
//!   peer's keepalive, sent back. A gre-mode tunnel carries IPv4 and IPv6
//!   and nothing shorter than their headers.

/// Where frames arrive and who may send them.
#[derive(Clone, Copy)]
pub struct Env {
    pub link_mac: [u8; 6],
    pub tun_mac: [u8; 6],
    pub key: u32,
    pub local4: [u8; 4],
    pub remote4: [u8; 4],
    /// The link's IPv6 address and the peer's, if the link has one.
    pub v6: Option<([u8; 16], [u8; 16])>,
    /// Whether the peer's address pairs are known (`XGRE_PAIRS`): its
    /// fragments are then reassembled.
    pub pairs: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Hook {
    Tc,
    Xdp,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Want {
    /// Not ours: handed on untouched.
    Pass,
    /// An outer fragment of the peer's: handed on untouched, for the
    /// kernel to reassemble.
    Reassemble,
    /// Dropped and counted under this reason.
    Drop(&'static str),
    /// Our keepalive came back: consumed, no drop counted.
    Consumed,
    /// Delivered to the tunnel: the frame the tunnel device gets, and the
    /// RFC 2890 sequence number it came with (XDP hands it on to be
    /// resequenced).
    Deliver(Vec<u8>, Option<u32>),
    /// The peer's keepalive, sent back out: the frame that leaves.
    Reflect(Vec<u8>),
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// RFC 1071 sum, folded, not inverted.
pub fn ones_sum(b: &[u8]) -> u16 {
    let mut s: u64 = 0;
    for c in b.chunks(2) {
        s += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u64;
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

fn mapped(a: [u8; 4]) -> [u8; 16] {
    let mut m = [0u8; 16];
    m[10] = 0xff;
    m[11] = 0xff;
    m[12..].copy_from_slice(&a);
    m
}

fn is_mapped(a: &[u8]) -> bool {
    a[..10].iter().all(|&b| b == 0) && a[10] == 0xff && a[11] == 0xff
}

pub fn model(env: &Env, hook: Hook, f: &[u8]) -> Want {
    if f.len() < 14 {
        return Want::Pass;
    }
    // Layer 2.
    let mut l2 = 14;
    let mut ty = be16(f, 12);
    if ty == 0x8100 || ty == 0x88a8 {
        if hook == Hook::Tc || f.len() < 18 || be16(f, 14) & 0x0fff != 0 {
            return Want::Pass;
        }
        ty = be16(f, 16);
        l2 = 18;
    }
    let to_us = f[..6] == env.link_mac;
    // Outer IP: (header length, bytes from the IP header to the GRE end,
    // source, our address, IPv4?).
    let (ihl, tot, src, local, v4) = match ty {
        0x0800 => {
            if f.len() < l2 + 20 {
                return Want::Pass;
            }
            let ip = &f[l2..];
            if ip[0] >> 4 != 4 || ip[9] != 47 || !(to_us && ip[16..20] == env.local4) {
                return Want::Pass;
            }
            let ihl = (ip[0] & 0x0f) as usize * 4;
            let tot = be16(ip, 2) as usize;
            if ihl < 20 || tot < ihl || l2 + tot > f.len() {
                return Want::Drop("bad_outer");
            }
            if ones_sum(&ip[..ihl]) != 0xffff {
                return Want::Drop("bad_ip_checksum");
            }
            if ip[6] & 0x3f != 0 || ip[7] != 0 {
                return if env.pairs && ip[12..16] == env.remote4 { Want::Reassemble } else { Want::Drop("fragment") };
            }
            (ihl, tot, mapped(ip[12..16].try_into().unwrap()), mapped(env.local4), true)
        }
        0x86DD => {
            if f.len() < l2 + 40 {
                return Want::Pass;
            }
            let ip = &f[l2..];
            let dst: [u8; 16] = ip[24..40].try_into().unwrap();
            let ours = env.v6.is_some_and(|(l, _)| l == dst) || dst == mapped(env.local4);
            if ip[0] >> 4 != 6 || !(ip[6] == 47 || ip[6] == 44) || !(to_us && ours) {
                return Want::Pass;
            }
            if is_mapped(&ip[8..24]) || is_mapped(&dst) {
                return Want::Drop("mapped_address");
            }
            if ip[6] == 44 {
                return match f.get(l2 + 40) {
                    None => Want::Drop("bad_outer"),
                    Some(&47) if env.pairs && env.v6.is_some_and(|(l, r)| l == dst && ip[8..24] == r) => Want::Reassemble,
                    Some(&47) => Want::Drop("fragment"),
                    Some(_) => Want::Pass,
                };
            }
            let tot = 40 + be16(ip, 4) as usize;
            if l2 + tot > f.len() {
                return Want::Drop("bad_outer");
            }
            (40, tot, ip[8..24].try_into().unwrap(), dst, false)
        }
        _ => return Want::Pass,
    };
    // GRE.
    if tot < ihl + 4 {
        return Want::Drop("truncated");
    }
    let g = &f[l2 + ihl..l2 + tot];
    let flags = be16(g, 0);
    if flags & 0x4c00 != 0 {
        return Want::Drop("reserved_bits");
    }
    if flags & 7 != 0 {
        return Want::Drop("bad_version");
    }
    let (c, k, s) = (flags & 0x8000 != 0, flags & 0x2000 != 0, flags & 0x1000 != 0);
    let glen = 4 + 4 * (c as usize + k as usize + s as usize);
    if g.len() < glen {
        return Want::Drop("truncated");
    }
    if c && ones_sum(g) != 0xffff {
        return Want::Drop("bad_checksum");
    }
    let key_at = 4 + 4 * c as usize;
    if !k || u32::from_be_bytes(g[key_at..key_at + 4].try_into().unwrap()) != env.key {
        return Want::Drop("key_mismatch");
    }
    let known = if v4 { src == mapped(env.remote4) && local == mapped(env.local4) } else { env.v6 == Some((local, src)) };
    if !known {
        return Want::Drop("unknown_peer");
    }
    let proto = be16(g, 2);
    if proto == 0 {
        return Want::Consumed;
    }
    let inner_at = l2 + ihl + glen;
    let inner = &f[inner_at..];
    // Addresses as they stand in the IP header.
    let (src_ip, local_ip): (&[u8], &[u8]) = if v4 { (&src[12..], &local[12..]) } else { (&src, &local) };
    let back = if proto == 0x0800 && v4 && inner.len() >= 20 {
        inner[9] == 47 && inner[12..16] == *local_ip && inner[16..20] == *src_ip
    } else if proto == 0x86DD && !v4 && inner.len() >= 40 {
        inner[6] == 47 && inner[8..24] == *local_ip && inner[24..40] == *src_ip
    } else {
        false
    };
    if back {
        let mut out = f[6..12].to_vec();
        out.extend(&f[..6]);
        out.extend(if v4 { [0x08, 0x00] } else { [0x86, 0xdd] });
        out.extend(inner);
        return Want::Reflect(out);
    }
    let min = match proto {
        0x0800 => 20,
        0x86DD => 40,
        _ => return Want::Drop("unknown_proto"),
    };
    if tot - ihl - glen < min {
        return Want::Drop("truncated");
    }
    let mut out = env.tun_mac.to_vec();
    out.extend(&f[6..12]);
    out.extend(proto.to_be_bytes());
    out.extend(inner);
    let seq_at = 4 + 4 * (c as usize + k as usize);
    Want::Deliver(out, s.then(|| u32::from_be_bytes(g[seq_at..seq_at + 4].try_into().unwrap())))
}
