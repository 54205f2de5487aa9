//! What the resequencer delivers, merged the way GRO merges: a run of
//! consecutive TCP segments of one flow, in one batch, goes to the tunnel
//! device as one GSO packet (a `virtio_net_hdr` in front, for the packet
//! socket's `PACKET_VNET_HDR`). The stack then receives it once instead of
//! once per segment; delivered one by one, in a softirq pass each, GRO
//! never merges them.
//!
//! Every frame's checksum left for offload is completed here (`csum`).
//! Only segments whose checksums verified are merged (the merged packet is
//! marked for checksum offload, which the stack trusts); any other frame
//! goes alone, for the stack to check. A GSO packet handed over whole goes
//! alone, as the GSO packet it was.

use super::{
    csum::{self, Csum},
    unit::Unit,
};

/// `struct virtio_net_hdr` (legacy, 10 bytes), little-endian as the
/// kernel reads it from a packet socket on little-endian hosts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct VnetHdr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl VnetHdr {
    pub const LEN: usize = 10;
    const NEEDS_CSUM: u8 = 1;
    const GSO_TCPV4: u8 = 1;
    const GSO_TCPV6: u8 = 4;

    pub fn bytes(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        b
    }
}

/// Most segments in one merged packet, and its most bytes of IP packet.
const MAX_SEGS: usize = 44;
const MAX_IP_LEN: usize = 65_000;

const ACK: u8 = 0x10;
const PSH: u8 = 0x08;

/// A TCP segment's layout, as far as merging needs it.
#[derive(Clone, Copy)]
struct Seg {
    v6: bool,
    /// Offset of the TCP header, and its length.
    l4: usize,
    tcp_len: usize,
    payload: usize,
    seq: u32,
    flags: u8,
}

fn parse(f: &[u8]) -> Option<Seg> {
    let (v6, l4) = match f.get(12..14)? {
        [0x08, 0x00] => {
            let h = f.get(14..34)?;
            let frag = u16::from_be_bytes([h[6], h[7]]) & 0x3fff;
            if h[0] != 0x45 || h[9] != 6 || frag != 0 || u16::from_be_bytes([h[2], h[3]]) as usize + 14 != f.len() {
                return None;
            }
            (false, 34)
        }
        [0x86, 0xdd] => {
            let h = f.get(14..54)?;
            if h[0] >> 4 != 6 || h[6] != 6 || u16::from_be_bytes([h[4], h[5]]) as usize + 54 != f.len() {
                return None;
            }
            (true, 54)
        }
        _ => return None,
    };
    let t = f.get(l4..l4 + 20)?;
    let tcp_len = (t[12] >> 4) as usize * 4;
    if tcp_len < 20 || l4 + tcp_len >= f.len() {
        return None;
    }
    Some(Seg { v6, l4, tcp_len, payload: f.len() - l4 - tcp_len, seq: u32::from_be_bytes([t[4], t[5], t[6], t[7]]), flags: t[13] })
}

/// The TCP payload's length in frame `f`, if it is a TCP segment this
/// module can merge or pass on as a GSO packet.
pub(super) fn tcp_payload(f: &[u8]) -> Option<usize> {
    parse(f).map(|s| s.payload)
}

/// Whether `next` continues the run that `first` starts and `ls` ends.
fn continues(first: &[u8], fs: &Seg, ls: &Seg, next: &[u8], ns: &Seg) -> bool {
    if ns.v6 != fs.v6 || ns.tcp_len != fs.tcp_len || ls.flags != ACK || (ns.flags & !PSH) != ACK {
        return false;
    }
    if ls.payload != fs.payload || ns.payload > fs.payload || ns.seq != ls.seq.wrapping_add(ls.payload as u32) {
        return false;
    }
    // Ethernet header; IP header but for length, id and checksum (v4) or
    // length (v6); TCP header but for the sequence number and checksum.
    let same = |a: std::ops::Range<usize>| first.get(a.clone()) == next.get(a);
    let ip_same = if fs.v6 { same(14..18) && same(20..54) } else { same(14..16) && same(20..24) && same(26..34) };
    let l4 = fs.l4;
    ip_same && same(0..14) && same(l4..l4 + 4) && same(l4 + 8..l4 + 13) && same(l4 + 14..l4 + 16) && same(l4 + 18..l4 + fs.tcp_len)
}

/// The run `frames[..n]` (n ≥ 2) as one frame and its header.
fn merge(frames: &[Vec<u8>], segs: &[Seg]) -> (VnetHdr, Vec<u8>) {
    let (first, fs) = (&frames[0], segs[0]);
    let hdr = fs.l4 + fs.tcp_len;
    let payload: usize = segs.iter().map(|s| s.payload).sum();
    let mut m = Vec::with_capacity(hdr + payload);
    m.extend_from_slice(&first[..hdr]);
    for (f, s) in frames.iter().zip(segs) {
        m.extend_from_slice(&f[f.len() - s.payload..]);
    }
    // The last segment's PSH.
    m[fs.l4 + 13] |= segs[segs.len() - 1].flags & PSH;
    let vnet = gso_header(&mut m, &fs, fs.payload as u16);
    (vnet, m)
}

/// Lengths and checksums of TCP GSO packet `m`, laid out as `fs` says and
/// whole, set as a sending stack leaves them, and its `virtio_net_hdr`
/// for segments of `gso_size`.
fn gso_header(m: &mut [u8], fs: &Seg, gso_size: u16) -> VnetHdr {
    let l4_len = m.len() - fs.l4;
    if fs.v6 {
        m[18..20].copy_from_slice(&(l4_len as u16).to_be_bytes());
    } else {
        m[16..18].copy_from_slice(&((20 + l4_len) as u16).to_be_bytes());
        m[24..26].copy_from_slice(&[0, 0]);
        let c = !csum::fold(csum::sum(&m[14..34]));
        m[24..26].copy_from_slice(&c.to_be_bytes());
    }
    // Left for offload: the pseudo-header's sum.
    let addrs = if fs.v6 { &m[22..54] } else { &m[26..34] };
    let pseudo = csum::fold(csum::sum(addrs) + 6 + l4_len as u64);
    m[fs.l4 + 16..fs.l4 + 18].copy_from_slice(&pseudo.to_be_bytes());
    VnetHdr {
        flags: VnetHdr::NEEDS_CSUM,
        gso_type: if fs.v6 { VnetHdr::GSO_TCPV6 } else { VnetHdr::GSO_TCPV4 },
        hdr_len: (fs.l4 + fs.tcp_len) as u16,
        gso_size,
        csum_start: fs.l4 as u16,
        csum_offset: 16,
    }
}

/// How much merging there was.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Counts {
    /// Segments delivered in GSO packets: merged here, or come whole.
    pub segments: u64,
    /// Those GSO packets.
    pub packets: u64,
}

/// `units`, in order, as packets to deliver: runs merged, GSO packets as
/// GSO packets, everything else as it was (with an empty header: the stack
/// checks it as usual).
pub(crate) fn coalesce(units: &mut Vec<Unit>, out: &mut Vec<(VnetHdr, Vec<u8>)>, counts: &mut Counts) {
    let mut i = 0;
    let mut rest: Vec<Vec<u8>> = Vec::with_capacity(units.len());
    let mut gso: Vec<u16> = Vec::with_capacity(units.len());
    for u in units.drain(..) {
        gso.push(u.gso_size);
        rest.push(u.bytes);
    }
    // Every frame's checksum completed if it was left for offload (AF_XDP
    // hands a veth sender's frames over as they are); which frames may be
    // merged: TCP, with a checksum that verifies. A GSO packet's checksum
    // is left for offload as it came.
    let segs: Vec<Option<Seg>> = rest
        .iter_mut()
        .zip(&gso)
        .map(|(f, &g)| {
            if g != 0 {
                return None;
            }
            let c = csum::complete(f);
            parse(f).filter(|_| matches!(c, Csum::Valid | Csum::Completed))
        })
        .collect();
    while i < rest.len() {
        if gso[i] != 0 {
            let mut m = std::mem::take(&mut rest[i]);
            // `Unit::gso` parsed it so, else it would not be GSO here.
            let fs = parse(&m).expect("a GSO unit parses");
            counts.segments += fs.payload.div_ceil(gso[i] as usize) as u64;
            counts.packets += 1;
            out.push((gso_header(&mut m, &fs, gso[i]), m));
            i += 1;
            continue;
        }
        let mut n = 1;
        if let Some(fs) = segs[i] {
            let mut len = fs.l4 - 14 + fs.tcp_len + fs.payload;
            while i + n < rest.len() && n < MAX_SEGS {
                let (Some(ls), Some(ns)) = (segs[i + n - 1], segs[i + n]) else { break };
                if len + ns.payload > MAX_IP_LEN || !continues(&rest[i], &fs, &ls, &rest[i + n], &ns) {
                    break;
                }
                len += ns.payload;
                n += 1;
            }
        }
        if n == 1 {
            out.push((VnetHdr::default(), std::mem::take(&mut rest[i])));
        } else {
            let run: Vec<Seg> = segs[i..i + n].iter().map(|s| s.expect("checked")).collect();
            out.push(merge(&rest[i..i + n], &run));
            counts.segments += n as u64;
            counts.packets += 1;
        }
        i += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TCP segment of flow `port` (IPv4, or IPv6 with `v6`), with sequence
    /// number `seq`, `flags` and `len` bytes of payload, its checksums
    /// right.
    fn segment(v6: bool, port: u16, seq: u32, flags: u8, len: usize) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
        let tcp_len = 32;
        let l4_len = tcp_len + len;
        if v6 {
            f.extend([0x86, 0xdd, 0x60, 0, 0, 0]);
            f.extend((l4_len as u16).to_be_bytes());
            f.extend([6, 64]);
            f.extend((0..32).map(|i| 0x20 + i as u8));
        } else {
            f.extend([0x08, 0x00, 0x45, 0]);
            f.extend(((20 + l4_len) as u16).to_be_bytes());
            f.extend([0, 7, 0x40, 0, 64, 6, 0, 0, 198, 19, 100, 1, 198, 19, 100, 2]);
            let c = !csum::fold(csum::sum(&f[14..34]));
            f[24..26].copy_from_slice(&c.to_be_bytes());
        }
        f.extend(port.to_be_bytes());
        f.extend(5201u16.to_be_bytes());
        f.extend(seq.to_be_bytes());
        f.extend(77u32.to_be_bytes());
        f.extend([(tcp_len as u8 / 4) << 4, flags, 0x01, 0xf5, 0, 0, 0, 0]);
        // Timestamps, as Linux sends them.
        f.extend([1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 3]);
        f.extend((0..len).map(|i| (seq as usize + i) as u8));
        // The field as a sending stack leaves it for offload; `complete`
        // then writes the right one.
        let l4 = f.len() - l4_len;
        let addrs = if v6 { &f[22..54] } else { &f[26..34] };
        let pseudo = csum::fold(csum::sum(addrs) + 6 + l4_len as u64);
        f[l4 + 16..l4 + 18].copy_from_slice(&pseudo.to_be_bytes());
        assert_eq!(csum::complete(&mut f), Csum::Completed);
        f
    }

    fn run(frames: Vec<Vec<u8>>) -> Vec<(VnetHdr, Vec<u8>)> {
        let mut frames = frames.into_iter().map(Unit::one).collect();
        let mut out = Vec::new();
        coalesce(&mut frames, &mut out, &mut Counts::default());
        assert!(frames.is_empty());
        out
    }

    #[test]
    fn consecutive_segments_of_a_flow_become_one_gso_packet() {
        for v6 in [false, true] {
            let segs: Vec<Vec<u8>> = (0..5)
                .map(|i| segment(v6, 40000, 1000 + i * 1000, ACK | if i == 4 { PSH } else { 0 }, if i == 4 { 300 } else { 1000 }))
                .collect();
            let out = run(segs.clone());
            assert_eq!(out.len(), 1, "{v6}");
            let (h, m) = &out[0];
            let l4 = if v6 { 54 } else { 34 };
            assert_eq!(
                *h,
                VnetHdr {
                    flags: VnetHdr::NEEDS_CSUM,
                    gso_type: if v6 { VnetHdr::GSO_TCPV6 } else { VnetHdr::GSO_TCPV4 },
                    hdr_len: (l4 + 32) as u16,
                    gso_size: 1000,
                    csum_start: l4 as u16,
                    csum_offset: 16
                }
            );
            assert_eq!(m.len(), l4 + 32 + 4300, "{v6}");
            // The payloads in order, behind the first segment's headers.
            let payload: Vec<u8> = segs.iter().flat_map(|s| s[l4 + 32..].to_vec()).collect();
            assert_eq!(&m[l4 + 32..], &payload[..]);
            assert_eq!(&m[l4 + 4..l4 + 8], &1000u32.to_be_bytes(), "the first sequence number");
            assert_eq!(m[l4 + 13], ACK | PSH, "the last segment's PSH");
            if v6 {
                assert_eq!(u16::from_be_bytes([m[18], m[19]]) as usize, 32 + 4300);
            } else {
                assert_eq!(u16::from_be_bytes([m[16], m[17]]) as usize, 20 + 32 + 4300);
                assert_eq!(csum::fold(csum::sum(&m[14..34])), 0xffff, "the IPv4 header checksum");
            }
            // Checksum left for offload: completing it gives what the
            // segments' own checksums cover.
            let mut c = m.clone();
            assert_eq!(csum::complete(&mut c), Csum::Completed, "{v6}");
        }
    }

    #[test]
    fn what_cannot_be_merged_goes_alone_and_in_order() {
        let a = |seq, flags, len| segment(false, 40000, seq, flags, len);
        let other = segment(false, 40001, 5000, ACK, 1000);
        let mut bad = a(3000, ACK, 1000);
        bad[70] ^= 0xff;
        let cases: Vec<(&str, Vec<Vec<u8>>, usize)> = vec![
            ("another flow between", vec![a(1000, ACK, 1000), other.clone(), a(2000, ACK, 1000)], 3),
            ("a gap", vec![a(1000, ACK, 1000), a(3000, ACK, 1000)], 2),
            ("PSH ends a run", vec![a(1000, ACK | PSH, 1000), a(2000, ACK, 1000)], 2),
            ("a short one ends a run", vec![a(1000, ACK, 500), a(1500, ACK, 1000)], 2),
            ("a bad checksum", vec![a(1000, ACK, 1000), a(2000, ACK, 1000), bad.clone()], 2),
            ("a pure ACK", vec![a(1000, ACK, 0)], 1),
        ];
        for (what, frames, n) in cases {
            let out = run(frames.clone());
            assert_eq!(out.len(), n, "{what}");
            if n == frames.len() {
                let back: Vec<Vec<u8>> = out
                    .into_iter()
                    .map(|(h, f)| {
                        assert_eq!(h, VnetHdr::default(), "{what}");
                        f
                    })
                    .collect();
                assert_eq!(back, frames, "{what}: as they were, in order");
            }
        }
    }

    #[test]
    fn a_run_stops_below_64_kib() {
        let segs: Vec<Vec<u8>> = (0..100).map(|i| segment(false, 40000, i * 1448, ACK, 1448)).collect();
        let out = run(segs);
        assert!(out.iter().all(|(_, m)| m.len() - 14 <= MAX_IP_LEN));
        assert_eq!(out.iter().map(|(h, _)| if h.gso_size == 0 { 1 } else { 0 }).sum::<usize>(), 0);
        assert_eq!(out.len(), 3);
    }
}
