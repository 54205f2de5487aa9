//! Checksums of frames taken over AF_XDP. A frame a veth peer sent keeps
//! a TCP or UDP checksum left for offload (the pseudo-header's sum alone,
//! `CHECKSUM_PARTIAL`): the stack would have completed it, but XDP hands
//! the bytes as they are. A NIC's frames carry full checksums. So a
//! checksum that does not verify but holds exactly the pseudo-header's sum
//! is completed here; any other wrong one is left for the stack to drop.

/// What `complete` found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Csum {
    /// Not TCP or UDP over IPv4 or IPv6 (or a fragment, or cut short).
    NotL4,
    Valid,
    /// Left for offload; now complete.
    Completed,
    /// Wrong: left as it is, for the stack to drop.
    Bad,
}

/// One's-complement sum of `b` (big-endian 16-bit words, an odd last
/// byte padded), not folded.
pub(super) fn sum(b: &[u8]) -> u64 {
    let mut chunks = b.chunks_exact(8);
    let mut s: u64 = 0;
    for c in &mut chunks {
        let w = u64::from_be_bytes(c.try_into().expect("8 bytes"));
        // Four 16-bit words at once; the carries land in the upper bits.
        s += (w >> 48) + ((w >> 32) & 0xffff) + ((w >> 16) & 0xffff) + (w & 0xffff);
    }
    let mut rest = chunks.remainder().chunks_exact(2);
    for c in &mut rest {
        s += u16::from_be_bytes([c[0], c[1]]) as u64;
    }
    if let [last] = rest.remainder() {
        s += (*last as u64) << 8;
    }
    s
}

pub(super) fn fold(mut s: u64) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// Verify the TCP or UDP checksum of Ethernet frame `frame`, completing
/// one left for offload.
pub(crate) fn complete(frame: &mut [u8]) -> Csum {
    let Some(&[t0, t1]) = frame.get(12..14) else { return Csum::NotL4 };
    let l3 = &frame[14..];
    let (pseudo, proto, l4_at, l4_len) = match u16::from_be_bytes([t0, t1]) {
        0x0800 => {
            let Some(h) = l3.get(..20) else { return Csum::NotL4 };
            let ihl = (h[0] & 0x0f) as usize * 4;
            let total = u16::from_be_bytes([h[2], h[3]]) as usize;
            // A fragment's checksum covers the whole datagram.
            let frag = u16::from_be_bytes([h[6], h[7]]) & 0x3fff;
            if h[0] >> 4 != 4 || ihl < 20 || total < ihl || total > l3.len() || frag != 0 {
                return Csum::NotL4;
            }
            let l4_len = total - ihl;
            (sum(&h[12..20]) + h[9] as u64 + l4_len as u64, h[9], 14 + ihl, l4_len)
        }
        0x86dd => {
            let Some(h) = l3.get(..40) else { return Csum::NotL4 };
            let l4_len = u16::from_be_bytes([h[4], h[5]]) as usize;
            if h[0] >> 4 != 6 || 40 + l4_len > l3.len() {
                return Csum::NotL4;
            }
            // Extension headers: not followed; left to the stack.
            (sum(&h[8..40]) + h[6] as u64 + l4_len as u64, h[6], 14 + 40, l4_len)
        }
        _ => return Csum::NotL4,
    };
    let field = match proto {
        6 => 16,
        17 => 6,
        _ => return Csum::NotL4,
    };
    let l4 = &mut frame[l4_at..l4_at + l4_len];
    if l4.len() < field + 2 {
        return Csum::NotL4;
    }
    let stored = u16::from_be_bytes([l4[field], l4[field + 1]]);
    if proto == 17 && stored == 0 && t0 == 0x08 {
        // IPv4 UDP without a checksum.
        return Csum::Valid;
    }
    // The sum with the field taken out: adding its complement subtracts it.
    let without = pseudo + sum(l4) + (!stored) as u64;
    let mut full = !fold(without);
    if proto == 17 && full == 0 {
        full = 0xffff;
    }
    if stored == full {
        return Csum::Valid;
    }
    if stored == fold(pseudo) {
        l4[field..field + 2].copy_from_slice(&full.to_be_bytes());
        return Csum::Completed;
    }
    Csum::Bad
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 1071's checksum, word by word: the reference.
    fn reference(words: &[u8]) -> u16 {
        let mut s: u32 = 0;
        for c in words.chunks(2) {
            s += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32;
        }
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    }

    /// An Ethernet frame with IPv4 (`v6` false) or IPv6 and a TCP (6) or
    /// UDP (17) segment of `payload` bytes, its checksum field zero.
    fn frame(v6: bool, proto: u8, payload: usize) -> (Vec<u8>, usize, Vec<u8>) {
        let l4_len = if proto == 6 { 20 } else { 8 } + payload;
        let mut f = vec![0u8; 12];
        let mut pseudo = Vec::new();
        if v6 {
            f.extend([0x86, 0xdd, 0x60, 0, 0, 0]);
            f.extend((l4_len as u16).to_be_bytes());
            f.extend([proto, 64]);
            let addrs: Vec<u8> = (0..32).map(|i| 0x20 + i).collect();
            f.extend(&addrs);
            pseudo.extend(&addrs);
        } else {
            f.extend([0x08, 0x00, 0x45, 0]);
            f.extend(((20 + l4_len) as u16).to_be_bytes());
            f.extend([0, 1, 0x40, 0, 64, proto, 0, 0, 198, 18, 0, 10, 198, 18, 0, 20]);
            pseudo.extend([198, 18, 0, 10, 198, 18, 0, 20]);
        }
        pseudo.extend([0, proto]);
        pseudo.extend((l4_len as u16).to_be_bytes());
        let at = f.len();
        f.extend((0..l4_len).map(|i| (i * 7 + 3) as u8));
        let field = at + if proto == 6 { 16 } else { 6 };
        f[field] = 0;
        f[field + 1] = 0;
        (f, field, pseudo)
    }

    fn set(f: &mut [u8], at: usize, v: u16) {
        f[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }

    #[test]
    fn a_checksum_left_for_offload_is_completed_and_a_full_one_kept() {
        for (v6, proto, payload) in [(false, 6, 1400), (false, 6, 1), (true, 6, 999), (false, 17, 33), (true, 17, 1200)] {
            let (mut f, field, pseudo) = frame(v6, proto, payload);
            let mut all = pseudo.clone();
            all.extend(&f[field - if proto == 6 { 16 } else { 6 }..]);
            let want = reference(&all);
            // As the sending stack leaves it for offload: the folded sum of
            // the pseudo-header, not complemented.
            set(&mut f, field, !reference(&pseudo));
            assert_eq!(complete(&mut f), Csum::Completed, "{v6} {proto} {payload}");
            assert_eq!(u16::from_be_bytes([f[field], f[field + 1]]), want, "{v6} {proto} {payload}");
            assert_eq!(complete(&mut f), Csum::Valid, "{v6} {proto} {payload}: complete now");
        }
    }

    #[test]
    fn a_wrong_checksum_is_left_for_the_stack() {
        let (mut f, field, _) = frame(false, 6, 500);
        set(&mut f, field, 0x1234);
        let before = f.clone();
        assert_eq!(complete(&mut f), Csum::Bad);
        assert_eq!(f, before);
    }

    #[test]
    fn other_frames_are_not_touched() {
        let (mut f, _, _) = frame(false, 1, 40);
        let before = f.clone();
        assert_eq!(complete(&mut f), Csum::NotL4, "ICMP");
        // A fragment: its checksum covers the whole datagram.
        let (mut g, _, _) = frame(false, 6, 40);
        g[14 + 6] = 0x20;
        assert_eq!(complete(&mut g), Csum::NotL4, "fragment");
        assert_eq!(complete(&mut f[..30]), Csum::NotL4, "cut short");
        assert_eq!(f, before);
    }
}
