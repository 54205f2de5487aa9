//! The hand-off over AF_XDP. The receive programs send each numbered frame
//! out of a veth end of `xgre run`'s (`xrsq<ifindex>`); `xgre_reseq_xsk`,
//! XDP on the other end (`xrsq<ifindex>x`), puts it in the ring of this
//! process's socket, with no system call per frame; frames go back out
//! through a second socket's ring on the tunnel's hidden veth end, one
//! `sendto` per batch the kernel takes (32).
//!
//! Both sockets run in copy mode (veth has no zero-copy). The entry end's
//! transmit checksumming is off: the stack completes a checksum a veth
//! peer left for offload as the frame leaves, since XDP cannot.

use std::{
    num::NonZeroU32,
    os::fd::{AsFd, AsRawFd},
    ptr::NonNull,
    time::Duration,
};

use anyhow::{anyhow, bail, Context, Result};
use gre_common::{names::PROG_RESEQ_XSK, ReseqHdr, RESEQ_XSK_SLOTS};
use xdpilone::{xdp::XdpDesc, DeviceQueue, IfInfo, RingRx, RingTx, Socket, SocketConfig, Umem, UmemConfig};

use super::Handoff;
use crate::{
    datapath::{codec, entries, Datapath},
    net::{
        netlink::{Netlink, XDP_FLAGS_DRV_MODE},
        sys,
    },
};

/// Bytes per frame in both areas: a tunnel MTU of up to 3,500 bytes (veth
/// with XDP takes no more anyway).
const FRAME: u32 = 4096;
/// Frames the kernel can fill before this process reads: 16 ms at
/// 1.5 Gbit/s of 1500-byte frames (the tap held 2000).
const RX_FRAMES: u32 = 2048;
/// Frames on their way out: more than one batch of the window's.
const TX_FRAMES: u32 = 1024;

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
    fn at(&self, addr: u64, len: u32) -> Option<&[u8]> {
        let end = (addr as usize).checked_add(len as usize)?;
        // SAFETY: within the mapping, checked; the kernel does not write a
        // frame between handing it over and getting it back.
        (end <= self.len).then(|| unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(addr as usize), len as usize) })
    }

    /// `at`, to write: a frame the kernel does not hold.
    fn at_mut(&mut self, addr: u64, len: u32) -> Option<&mut [u8]> {
        let end = (addr as usize).checked_add(len as usize)?;
        // SAFETY: as in `at`; `&mut self` makes this the only reference.
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

/// One socket on queue 0 of `ifindex`, with its own area.
fn socket(ifindex: u32, frames: u32, rx: bool) -> Result<(Umem, DeviceQueue, xdpilone::User, Area)> {
    let area = Area::new(frames)?;
    let cfg = UmemConfig { fill_size: frames, complete_size: frames, frame_size: FRAME, headroom: 0, flags: 0 };
    // SAFETY: the area is page-aligned and outlives the Umem (the caller
    // keeps them together, the area dropped last).
    let umem = unsafe { Umem::new(cfg, area.slice()) }.map_err(|e| anyhow!("registering AF_XDP memory: {e}"))?;
    let mut info = IfInfo::invalid();
    info.from_ifindex(ifindex).map_err(|e| anyhow!("device #{ifindex}: {e}"))?;
    info.set_queue(0);
    let sock = Socket::with_shared(&info, &umem).map_err(|e| anyhow!("opening an AF_XDP socket: {e}"))?;
    let device = umem.fq_cq(&sock).map_err(|e| anyhow!("AF_XDP fill and completion rings: {e}"))?;
    let ring = NonZeroU32::new(frames);
    let (rx_size, tx_size) = if rx { (ring, None) } else { (None, ring) };
    let user = umem
        .rx_tx(&sock, &SocketConfig { rx_size, tx_size, bind_flags: SocketConfig::XDP_BIND_COPY })
        .map_err(|e| anyhow!("AF_XDP rings: {e}"))?;
    Ok((umem, device, user, area))
}

pub(crate) struct XskHandoff {
    // Rings first: fields drop in order, and the areas must go last.
    rx: RingRx,
    fill: DeviceQueue,
    tx: RingTx,
    complete: DeviceQueue,
    /// Frames of the transmit area the kernel has given back.
    free: Vec<u64>,
    /// Frames of the receive area read, for the fill ring.
    refill: Vec<u64>,
    _rx_umem: Umem,
    _tx_umem: Umem,
    rx_area: Area,
    tx_area: Area,
}

// SAFETY: the Umems point at areas the handoff owns, and one thread at a
// time uses the whole (it moves into the resequencer's thread once).
unsafe impl Send for XskHandoff {}

/// What `open` set up, for the datapath's maps and for tearing down.
pub(crate) struct Opened {
    pub handoff: XskHandoff,
    /// The end the receive programs send into.
    pub entry: u32,
    pub slot: u32,
}

/// The veth pair `xrsq<ifindex>` / `xrsq<ifindex>x` and both sockets; the datapath's slot
/// maps point at them, but not yet `XGRE_RESEQ_TAP` (the caller's last
/// step). On failure nothing is left behind.
pub(crate) async fn open(nl: &Netlink, dp: &Datapath, tunnel_ifindex: u32, hidden_ifindex: u32) -> Result<Opened> {
    let (name, far_name) = codec::reseq_names(tunnel_ifindex);
    let name = name.as_str();
    let tunnel = nl.link_by_index(tunnel_ifindex).await?.with_context(|| format!("tunnel #{tunnel_ifindex} vanished"))?;
    nl.create_veth(name, &far_name, tunnel.mtu + ReseqHdr::LEN as u32, None).await?;
    let entry = nl.link(name).await?.with_context(|| format!("{name} vanished"))?;
    let r = set_up(nl, dp, name, &far_name, entry.index, tunnel_ifindex, hidden_ifindex).await;
    if r.is_err() {
        let _ = nl.del_link(entry.index).await;
    }
    r
}

#[allow(clippy::too_many_arguments)]
async fn set_up(
    nl: &Netlink,
    dp: &Datapath,
    name: &str,
    far_name: &str,
    entry: u32,
    tunnel_ifindex: u32,
    hidden_ifindex: u32,
) -> Result<Opened> {
    let far = nl.link(far_name).await?.with_context(|| format!("{far_name} vanished"))?.index;
    for n in [name, far_name] {
        let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{n}/disable_ipv6"), "1");
    }
    sys::set_tx_csum(name, false)?;
    nl.xdp_set(far, dp.prog(PROG_RESEQ_XSK)?.as_fd().as_raw_fd(), XDP_FLAGS_DRV_MODE)
        .await
        .with_context(|| format!("attaching {PROG_RESEQ_XSK} to {far_name}"))?;
    nl.set_up_quiet(far, 1000).await?;
    nl.set_up_quiet(entry, 1000).await?;

    let (rx_umem, mut fill, rx_user, rx_area) = socket(far, RX_FRAMES, true)?;
    let rx = rx_user.map_rx().map_err(|e| anyhow!("mapping the AF_XDP receive ring: {e}"))?;
    rx_umem.bind(&rx_user).map_err(|e| anyhow!("binding an AF_XDP socket to {far_name}: {e}"))?;
    let mut w = fill.fill(RX_FRAMES);
    if w.insert((0..RX_FRAMES as u64).map(|i| i * FRAME as u64)) != RX_FRAMES {
        bail!("the AF_XDP fill ring took fewer than its {RX_FRAMES} frames");
    }
    w.commit();
    drop(w);

    let (tx_umem, complete, tx_user, tx_area) = socket(hidden_ifindex, TX_FRAMES, false)?;
    let tx = tx_user.map_tx().map_err(|e| anyhow!("mapping the AF_XDP transmit ring: {e}"))?;
    tx_umem.bind(&tx_user).map_err(|e| anyhow!("binding an AF_XDP socket to the hidden end #{hidden_ifindex}: {e}"))?;

    let slot = free_slot(dp)?;
    dp.reseq_xsk()?.set(slot, rx.as_raw_fd(), 0).context("adding the resequencer's socket to the datapath")?;
    let mut slots = dp.reseq_slot()?;
    slots.insert(far, slot, 0)?;
    slots.insert(tunnel_ifindex, slot, 0)?;
    let free = (0..TX_FRAMES as u64).map(|i| i * FRAME as u64).collect();
    let handoff = XskHandoff { rx, fill, tx, complete, free, refill: Vec::new(), _rx_umem: rx_umem, _tx_umem: tx_umem, rx_area, tx_area };
    Ok(Opened { handoff, entry, slot })
}

/// The least slot no resequencer of this namespace holds.
fn free_slot(dp: &Datapath) -> Result<u32> {
    let used: Vec<u32> = entries(gre_common::names::MAP_RESEQ_SLOT, dp.reseq_slot()?.iter())?.into_iter().map(|(_, s)| s).collect();
    match (0..RESEQ_XSK_SLOTS).find(|s| !used.contains(s)) {
        Some(s) => Ok(s),
        None => bail!("all {RESEQ_XSK_SLOTS} resequencer slots are taken"),
    }
}

impl XskHandoff {
    /// Take back the transmit frames the kernel is done with.
    fn reclaim(&mut self) {
        let mut r = self.complete.complete(TX_FRAMES);
        while let Some(addr) = r.read() {
            self.free.push(addr);
        }
        r.release();
    }
}

impl Handoff for XskHandoff {
    fn wait(&mut self, timeout: Duration) {
        let mut pfd = libc::pollfd { fd: self.rx.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        let ts = libc::timespec { tv_sec: timeout.as_secs() as libc::time_t, tv_nsec: timeout.subsec_nanos() as libc::c_long };
        // SAFETY: one pollfd, a valid timespec, no signal mask.
        unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
    }

    fn receive(&mut self, max: usize, f: &mut dyn FnMut(&[u8])) -> usize {
        let mut read = self.rx.receive(max as u32);
        let mut n = 0;
        while let Some(d) = read.read() {
            if let Some(frame) = self.rx_area.at(d.addr, d.len) {
                f(frame);
            }
            self.refill.push(d.addr);
            n += 1;
        }
        read.release();
        drop(read);
        // Each frame back to the kernel at once: the window keeps copies.
        // The ring may offer fewer slots than asked (its cached view of the
        // kernel's side): what does not fit waits for the next round.
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

    fn deliver(&mut self, frames: &mut Vec<Vec<u8>>) {
        let mut next = 0;
        // Bounded: each round either queues frames or the kernel sends some.
        for _ in 0..4 * TX_FRAMES {
            self.reclaim();
            let want = (frames.len() - next).min(self.free.len());
            if want > 0 {
                // The ring may offer fewer slots than asked (its cached view
                // of the kernel's side): the rest go next round.
                let mut w = self.tx.transmit(want as u32);
                let room = w.capacity() as usize;
                let mut descs = Vec::with_capacity(room);
                for frame in &frames[next..next + room] {
                    let addr = self.free.pop().expect("want <= free");
                    match self.tx_area.at_mut(addr, frame.len() as u32).filter(|_| frame.len() <= FRAME as usize) {
                        Some(buf) => {
                            buf.copy_from_slice(frame);
                            descs.push(XdpDesc { addr, len: frame.len() as u32, options: 0 });
                        }
                        // Longer than a frame of ours: lost, as on a device
                        // whose MTU it exceeds.
                        None => self.free.push(addr),
                    }
                }
                let queued = descs.len();
                let n = w.insert(descs.into_iter()) as usize;
                debug_assert_eq!(n, queued);
                w.commit();
                next += room;
            }
            // Copy mode sends in the system call, 32 frames per call.
            self.tx.wake();
            if next == frames.len() && self.tx.pending() == 0 {
                break;
            }
        }
        self.reclaim();
        frames.clear();
    }

    fn lost(&self) -> u64 {
        self.fill.statistics_v2().map_or(0, |s| s.rx_dropped)
    }
}
