//! The hand-off over AF_XDP. On each link whose receive hook is XDP,
//! `xgre run` binds a socket to every receive queue; the receive program
//! puts a numbered frame of the tunnel's straight into the ring of the
//! queue's socket (`to_socket` in the datapath): no skb, no system call per
//! frame.
//!
//! Copy mode (veth has no zero-copy; it works on every driver): the
//! resequencer's window keeps copies, and each frame goes back to the
//! kernel as soon as it is read.

use std::{num::NonZeroU32, os::fd::RawFd, ptr::NonNull};

use anyhow::{anyhow, bail, Context, Result};
use gre_common::{names::MAP_RESEQ_LINK, ReseqLink, RESEQ_XSK_SLOTS};
use xdpilone::{DeviceQueue, IfInfo, RingRx, Socket, SocketConfig, Umem, UmemConfig};

use crate::{
    datapath::{entries, Datapath},
    net::netlink::Link,
};

/// Bytes per frame: the kernel's 256 bytes of headroom and
/// a frame of up to 3,840 (XDP without fragments takes a page at most).
const FRAME: u32 = 4096;
/// Frames the kernel can fill on one queue before this process reads:
/// 8 ms at 1 Gbit/s of 1500-byte frames.
const RX_FRAMES: u32 = 1024;
/// Receive queues of one link given a socket (4 MiB each, pinned): the
/// frames of a NIC's further queues come through the tap.
const MAX_QUEUES: u32 = 16;

/// An anonymous mapping, page-aligned as a UMEM must be.
struct Area {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory, owned by whoever holds the Area.
unsafe impl Send for Area {}

impl Area {
    fn new(frames: u32) -> Result<Area> {
        let len = (frames * FRAME) as usize;
        // SAFETY: a fresh private anonymous mapping; nothing else refers to it.
        let p = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error()).context("mapping the resequencer's frames");
        }
        Ok(Area { ptr: NonNull::new(p.cast()).expect("mmap succeeded"), len })
    }

    fn slice(&self) -> NonNull<[u8]> {
        NonNull::slice_from_raw_parts(self.ptr, self.len)
    }

    /// The bytes at `addr..addr + len`, if they lie in the area.
    fn at_mut(&mut self, addr: u64, len: u32) -> Option<&mut [u8]> {
        let end = (addr as usize).checked_add(len as usize)?;
        // SAFETY: within the mapping, checked; the kernel does not write a
        // frame between handing it over and getting it back, and
        // `&mut self` makes this the only reference.
        (end <= self.len).then(|| unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(addr as usize), len as usize) })
    }
}

impl Drop for Area {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`; the sockets that shared it
        // were dropped before (fields drop in order).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// A receiving socket on queue `queue` of `ifindex`, with its own area.
fn socket(ifindex: u32, queue: u32, frames: u32) -> Result<(Umem, DeviceQueue, xdpilone::User, Area)> {
    let area = Area::new(frames)?;
    let cfg = UmemConfig { fill_size: frames, complete_size: frames, frame_size: FRAME, headroom: 0, flags: 0 };
    // SAFETY: the area is page-aligned and outlives the Umem (the caller
    // keeps them together, the area dropped last).
    let umem = unsafe { Umem::new(cfg, area.slice()) }.map_err(|e| anyhow!("registering AF_XDP memory: {e}"))?;
    let mut info = IfInfo::invalid();
    info.from_ifindex(ifindex).map_err(|e| anyhow!("device #{ifindex}: {e}"))?;
    info.set_queue(queue);
    let sock = Socket::with_shared(&info, &umem).map_err(|e| anyhow!("opening an AF_XDP socket: {e}"))?;
    let device = umem.fq_cq(&sock).map_err(|e| anyhow!("AF_XDP fill and completion rings: {e}"))?;
    let user = umem
        .rx_tx(&sock, &SocketConfig { rx_size: NonZeroU32::new(frames), tx_size: None, bind_flags: SocketConfig::XDP_BIND_COPY })
        .map_err(|e| anyhow!("AF_XDP rings: {e}"))?;
    Ok((umem, device, user, area))
}

/// A socket on one receive queue of one link.
pub(crate) struct RxSocket {
    // Rings first: fields drop in order, and the area must go last.
    ring: RingRx,
    fill: DeviceQueue,
    /// Frames read, for the fill ring.
    refill: Vec<u64>,
    _umem: Umem,
    area: Area,
}

// SAFETY: the Umem points at the area the socket owns, and one thread at a
// time uses the whole (it moves into the resequencer's thread once).
unsafe impl Send for RxSocket {}

impl RxSocket {
    fn open(ifindex: u32, queue: u32) -> Result<RxSocket> {
        let (umem, mut fill, user, area) = socket(ifindex, queue, RX_FRAMES)?;
        let ring = user.map_rx().map_err(|e| anyhow!("mapping the AF_XDP receive ring: {e}"))?;
        umem.bind(&user).map_err(|e| anyhow!("binding an AF_XDP socket to queue {queue} of #{ifindex}: {e}"))?;
        let mut w = fill.fill(RX_FRAMES);
        if w.insert((0..RX_FRAMES as u64).map(|i| i * FRAME as u64)) != RX_FRAMES {
            bail!("the AF_XDP fill ring took fewer than its {RX_FRAMES} frames");
        }
        w.commit();
        drop(w);
        Ok(RxSocket { ring, fill, refill: Vec::new(), _umem: umem, area })
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.ring.as_raw_fd()
    }

    /// Give up to `max` waiting frames to `f`; how many there were.
    pub(crate) fn receive(&mut self, max: usize, f: &mut dyn FnMut(&mut [u8])) -> usize {
        let mut read = self.ring.receive(max as u32);
        let mut n = 0;
        while let Some(d) = read.read() {
            if let Some(frame) = self.area.at_mut(d.addr, d.len) {
                f(frame);
            }
            self.refill.push(d.addr);
            n += 1;
        }
        read.release();
        drop(read);
        // Each frame back to the kernel at once. The ring may offer fewer
        // slots than asked (its cached view of the kernel's side): what
        // does not fit waits for the next round.
        while !self.refill.is_empty() {
            let mut w = self.fill.fill(self.refill.len() as u32);
            let room = w.capacity() as usize;
            if room == 0 {
                break;
            }
            let from = self.refill.len() - room;
            w.insert(self.refill[from..].iter().copied());
            w.commit();
            drop(w);
            self.refill.truncate(from);
        }
        n
    }

    /// Frames the kernel had no room for (a fill ring run dry).
    pub(crate) fn lost(&self) -> u64 {
        self.fill.statistics_v2().map_or(0, |s| s.rx_dropped)
    }
}

/// Sockets on every receive queue of each of `links` that receives by
/// XDP, entered in the datapath for `tunnel_ifindex`; how many links have
/// them; and what could not be had, said. A queue another tunnel's
/// resequencer holds is left to the tap.
pub(crate) fn open_links(dp: &Datapath, tunnel_ifindex: u32, links: &[Link]) -> Result<(Vec<RxSocket>, usize, Vec<String>)> {
    let mut sockets = Vec::new();
    let mut on_links = 0;
    let mut notes = Vec::new();
    let mut map = dp.reseq_link()?;
    let mut xsk = dp.reseq_xsk()?;
    for link in links.iter().filter(|l| l.xdp_prog_id.is_some()) {
        let mut here = Vec::new();
        for q in 0..link.rx_queues.clamp(1, MAX_QUEUES) {
            match RxSocket::open(link.index, q) {
                Ok(s) => here.push(s),
                // A queue past those the device uses refuses the bind.
                Err(_) if q > 0 => break,
                Err(e) => {
                    notes.push(format!("{}: {e:#}", link.name));
                    break;
                }
            }
        }
        if here.is_empty() {
            continue;
        }
        let used: Vec<(u32, ReseqLink)> = entries(MAP_RESEQ_LINK, map.iter())?;
        let queues = here.len() as u32;
        let Some(base) = free_slots(&used, link.index, queues) else {
            notes.push(format!("{}: all {RESEQ_XSK_SLOTS} socket slots are taken", link.name));
            continue;
        };
        for (i, s) in here.iter().enumerate() {
            xsk.set(base + i as u32, s.fd(), 0).context("adding a resequencer socket to the datapath")?;
        }
        map.insert(link.index, ReseqLink { tunnel_ifindex, base, queues, _pad: 0 }, 0)?;
        sockets.extend(here);
        on_links += 1;
    }
    Ok((sockets, on_links, notes))
}

/// The first of `n` consecutive slots no other link's entry holds.
fn free_slots(used: &[(u32, ReseqLink)], link: u32, n: u32) -> Option<u32> {
    let taken = |s: u32| used.iter().any(|(l, e)| *l != link && (e.base..e.base + e.queues).contains(&s));
    (0..=RESEQ_XSK_SLOTS.checked_sub(n)?).find(|&b| (b..b + n).all(|s| !taken(s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(base: u32, queues: u32) -> ReseqLink {
        ReseqLink { tunnel_ifindex: 9, base, queues, _pad: 0 }
    }

    #[test]
    fn slots_are_found_between_other_links_and_a_links_own_are_reused() {
        let used = [(2, entry(0, 2)), (3, entry(4, 4))];
        assert_eq!(free_slots(&used, 5, 2), Some(2));
        assert_eq!(free_slots(&used, 5, 3), Some(8));
        // Link 3's own entry, from a run that was killed, is no obstacle.
        assert_eq!(free_slots(&used, 3, 4), Some(2));
        assert_eq!(free_slots(&used, 5, RESEQ_XSK_SLOTS), None);
        assert_eq!(free_slots(&[], 5, RESEQ_XSK_SLOTS), Some(0));
    }
}
