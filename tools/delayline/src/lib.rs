//! A delay line between two network interfaces of one network namespace:
//! every frame that arrives on one leaves by the other after `delay` (plus
//! up to `jitter`), unless it is lost (probability `loss`) or the line is
//! down (`flap`). It stands in for netem, which this kernel lacks, between
//! the hosts of the benchmarks and tests: one namespace per link, a veth
//! end to each host, and this relay in between.
//!
//! Frames are copied with AF_PACKET sockets, one thread per direction that
//! sleeps until the next frame is due or one arrives. Jitter never
//! reorders: a frame leaves no earlier than the one before it, as on a
//! wire. The interfaces must not aggregate (GRO off), so that every frame
//! fits the link it leaves by.

use std::{
    collections::VecDeque,
    ffi::CString,
    fs::File,
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

/// What the line does to each frame, both ways.
#[derive(Clone, Copy, Debug, Default)]
pub struct Line {
    pub delay: Duration,
    /// Each frame's delay is `delay` plus a uniform share of this.
    pub jitter: Duration,
    /// Probability of losing a frame, 0..=1.
    pub loss: f64,
    pub flap: Option<Flap>,
}

/// The line goes down for `down` at the end of every `every`, counted from
/// the relay's start: up for `every - down`, down for `down`, and again.
#[derive(Clone, Copy, Debug)]
pub struct Flap {
    pub every: Duration,
    pub down: Duration,
}

impl Flap {
    fn is_down(&self, since_start: Duration) -> bool {
        let every = self.every.as_nanos().max(1);
        since_start.as_nanos() % every >= every - self.down.as_nanos().min(every)
    }
}

/// What one direction did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub forwarded: u64,
    /// Lost on purpose (`loss`).
    pub lost: u64,
    /// Dropped while the line was down (`flap`).
    pub down: u64,
    /// Dropped by the relay itself: its queue full, or the kernel refusing
    /// to send (a frame larger than the link: GRO left on). Zero on a line
    /// that can be trusted.
    pub failed: u64,
    /// The longest a frame left after its time: how long the relay itself
    /// was kept from running. Under a millisecond on a line that can be
    /// trusted.
    pub worst_late: Duration,
}

/// Frames held at most, per direction: 100 ms at 10 Gbit/s of full frames.
const QUEUE: usize = 100_000;

/// A running relay; stops when dropped.
pub struct Relay {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<io::Result<Stats>>>,
}

impl Relay {
    /// Relay between interfaces `a` and `b` of network namespace `netns`
    /// (a name under /run/netns).
    pub fn start(netns: &str, a: &str, b: &str, line: Line) -> io::Result<Relay> {
        let stop = Arc::new(AtomicBool::new(false));
        let start = Instant::now();
        let mut threads = Vec::new();
        for (i, (from, to)) in [(a, b), (b, a)].into_iter().enumerate() {
            let ns = File::open(format!("/run/netns/{netns}"))?;
            let (from, to) = (from.to_string(), to.to_string());
            let stop = stop.clone();
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            threads.push(std::thread::spawn(move || {
                let sockets = enter(&ns).and_then(|()| Ok((packet_socket(&from, true)?, packet_socket(&to, false)?)));
                let (rx, tx) = match sockets {
                    Ok(s) => {
                        let _ = ready_tx.send(Ok(()));
                        s
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(io::Error::new(e.kind(), format!("{from} -> {to}: {e}"))));
                        return Err(e);
                    }
                };
                forward(&rx, &tx, line, start, 0x9e37_79b9_7f4a_7c15 ^ (i as u64 + 1), &stop)
            }));
            ready_rx.recv().map_err(|_| io::Error::other("relay thread died"))??;
        }
        Ok(Relay { stop, threads })
    }

    /// Stop both directions; what each did (a to b, then b to a).
    pub fn stop(mut self) -> io::Result<[Stats; 2]> {
        self.stop.store(true, Ordering::Relaxed);
        let mut out = [Stats::default(); 2];
        for (i, t) in self.threads.drain(..).enumerate() {
            out[i] = t.join().map_err(|_| io::Error::other("relay thread panicked"))??;
        }
        Ok(out)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Move the calling thread into the network namespace `ns` refers to.
fn enter(ns: &File) -> io::Result<()> {
    // SAFETY: setns(2) on a descriptor we hold; it changes this thread's
    // namespace only.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A packet socket on interface `dev`: every frame it receives (`rx`,
/// not the ones it sends itself), or a way out of it.
fn packet_socket(dev: &str, rx: bool) -> io::Result<OwnedFd> {
    let name = CString::new(dev).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "device name with NUL"))?;
    // SAFETY: a NUL-terminated name.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        return Err(io::Error::last_os_error());
    }
    let proto = if rx { (libc::ETH_P_ALL as u16).to_be() } else { 0 };
    // SAFETY: socket(2) with constant arguments.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, proto as i32) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: just opened, owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain data; all zeros is a valid value.
    let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sa.sll_family = libc::AF_PACKET as u16;
    sa.sll_protocol = proto;
    sa.sll_ifindex = ifindex as i32;
    let len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
    // SAFETY: the address and its length are those of `sa`.
    if unsafe { libc::bind(fd.as_raw_fd(), (&sa as *const libc::sockaddr_ll).cast(), len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if rx {
        // Only what arrives: the frames this relay sends on the other
        // side's socket would come back otherwise (Linux 4.20+).
        const PACKET_IGNORE_OUTGOING: i32 = 23;
        let one: i32 = 1;
        // SAFETY: an int option, its address and size.
        let r = unsafe { libc::setsockopt(fd.as_raw_fd(), libc::SOL_PACKET, PACKET_IGNORE_OUTGOING, (&one as *const i32).cast(), 4) };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(fd)
}

/// xorshift64*: the relay's own coin, so a run's losses do not depend on
/// any other crate.
struct Coin(u64);

impl Coin {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// CLOCK_MONOTONIC or CLOCK_REALTIME in ns.
fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid clock and a timespec to fill.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Receive one frame into `buf` with the kernel's receive time
/// (SO_TIMESTAMPNS, CLOCK_REALTIME) in ns; None when nothing is queued.
fn recv_stamped(fd: &OwnedFd, buf: &mut [u8]) -> Option<(usize, Option<u64>)> {
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    let mut control = [0u64; 8];
    // SAFETY: msghdr is plain data; all zeros is a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: the header points at `iov` and `control`, alive for the call.
    let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        return None;
    }
    let mut stamp = None;
    // SAFETY: the kernel filled `control` and set its length; CMSG_* walk
    // only within it.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts = (libc::CMSG_DATA(c) as *const libc::timespec).read_unaligned();
                stamp = Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Some((n as usize, stamp))
}

fn forward(rx: &OwnedFd, tx: &OwnedFd, line: Line, start: Instant, seed: u64, stop: &AtomicBool) -> io::Result<Stats> {
    // Wake when asked: the default 50 µs of timer slack, twice per
    // frame, would show in every round trip.
    // SAFETY: prctl(2) with integer arguments, for this thread.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1u64, 0u64, 0u64, 0u64) };
    // A wire is served in softirq, which pre-empts every process: as a
    // real-time thread the line is not kept waiting by the processes it
    // carries traffic for (xgre's resequencer runs at priority 1). Best
    // effort: without the right to, the line runs as it is.
    let p = libc::sched_param { sched_priority: 2 };
    // SAFETY: a valid sched_param for the calling thread.
    unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &p) };
    let one: i32 = 1;
    // SAFETY: an int option, its address and size.
    if unsafe { libc::setsockopt(rx.as_raw_fd(), libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, (&one as *const i32).cast(), 4) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // Kernel receive times are CLOCK_REALTIME; the line runs on
    // CLOCK_MONOTONIC.
    let realtime_ahead = clock_ns(libc::CLOCK_REALTIME).wrapping_sub(clock_ns(libc::CLOCK_MONOTONIC));
    let start_ns = clock_ns(libc::CLOCK_MONOTONIC) - start.elapsed().as_nanos() as u64;
    let (delay, jitter) = (line.delay.as_nanos() as u64, line.jitter.as_nanos() as f64);
    let mut stats = Stats::default();
    let mut coin = Coin(seed);
    let mut queue: VecDeque<(u64, Vec<u8>)> = VecDeque::new();
    let mut buf = vec![0u8; 65536];
    let mut last_release = 0u64;
    // How late a wake-up comes, on average (ns): wakes are asked for that
    // much early, so frames leave on time on average rather than late.
    let mut lateness = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let now = clock_ns(libc::CLOCK_MONOTONIC);
        let target = queue.front().map(|(t, _)| t.saturating_sub(lateness));
        let wait = target.map_or(10_000_000, |t| t.saturating_sub(now)).min(10_000_000);
        wait_readable(rx, Duration::from_nanos(wait));
        let woke = clock_ns(libc::CLOCK_MONOTONIC);
        if let Some(t) = target.filter(|&t| woke >= t && woke - t < 1_000_000) {
            lateness = (lateness * 7 + (woke - t)) / 8;
        }
        while let Some((n, stamp)) = recv_stamped(rx, &mut buf) {
            let at = stamp.map_or_else(|| clock_ns(libc::CLOCK_MONOTONIC), |s| s.wrapping_sub(realtime_ahead));
            if line.flap.is_some_and(|f| f.is_down(Duration::from_nanos(at.saturating_sub(start_ns)))) {
                stats.down += 1;
                continue;
            }
            if line.loss > 0.0 && coin.next() < line.loss {
                stats.lost += 1;
                continue;
            }
            if queue.len() >= QUEUE {
                stats.failed += 1;
                continue;
            }
            let release = (at + delay + (jitter * coin.next()) as u64).max(last_release);
            last_release = release;
            queue.push_back((release, buf[..n].to_vec()));
        }
        let now = clock_ns(libc::CLOCK_MONOTONIC);
        let due = now + lateness;
        while queue.front().is_some_and(|(t, _)| *t <= due) {
            let (t, frame) = queue.pop_front().expect("checked non-empty");
            stats.worst_late = stats.worst_late.max(Duration::from_nanos(now.saturating_sub(t)));
            // SAFETY: the frame and its length.
            let n = unsafe { libc::send(tx.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
            if n == frame.len() as isize {
                stats.forwarded += 1;
            } else {
                stats.failed += 1;
            }
        }
    }
    Ok(stats)
}

/// Sleep until `fd` has a frame or `timeout` passes (ppoll: µs precision).
fn wait_readable(fd: &OwnedFd, timeout: Duration) {
    let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    let ts = libc::timespec { tv_sec: timeout.as_secs() as libc::time_t, tv_nsec: timeout.subsec_nanos() as libc::c_long };
    // SAFETY: one pollfd, a valid timespec, no signal mask.
    unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flapping_line_is_down_at_the_end_of_each_period() {
        let f = Flap { every: Duration::from_secs(10), down: Duration::from_secs(2) };
        assert!(!f.is_down(Duration::from_secs(0)));
        assert!(!f.is_down(Duration::from_millis(7999)));
        assert!(f.is_down(Duration::from_millis(8000)));
        assert!(f.is_down(Duration::from_millis(9999)));
        assert!(!f.is_down(Duration::from_secs(10)));
        assert!(f.is_down(Duration::from_secs(19)));
    }

    #[test]
    fn the_coin_is_fair_enough_for_loss() {
        let mut c = Coin(1);
        let n = 100_000;
        let heads = (0..n).filter(|_| c.next() < 0.01).count();
        assert!((800..1200).contains(&heads), "{heads} of {n} at 1%");
    }
}
