//! The process's surroundings: privileges, network namespace identity,
//! the BPF filesystem, and what the kernel gives a packet path (priority,
//! buffers).

use std::{
    os::{fd::AsRawFd, unix::fs::MetadataExt},
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};
use nix::mount::{mount, MsFlags};

pub const BPFFS: &str = "/sys/fs/bpf";

pub fn require_root(what: &str) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("xgre {what} must run as root (it loads BPF programs and changes network devices)");
    }
    Ok(())
}

/// Inode of this process's network namespace: unique while the namespace
/// lives, and how one datapath is told from another namespace's.
pub fn netns_ino() -> Result<u64> {
    Ok(std::fs::metadata("/proc/self/ns/net").context("reading /proc/self/ns/net")?.ino())
}

/// Where `xgre run` leaves tunnel `name`'s `kind` of state for `status`
/// and the exporter, per namespace like the pins.
pub fn state_file(name: &str, kind: &str) -> Result<std::path::PathBuf> {
    Ok(std::path::PathBuf::from(format!("/run/xgre/net{}/{name}.{kind}.json", netns_ino()?)))
}

/// Write a state file whole: a reader sees the old one or the new one.
pub fn write_state(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::create_dir_all(path.parent().unwrap_or(Path::new("/")))?;
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// Remove a state file, and its directory once the namespace has none.
pub fn remove_state(path: &Path) {
    let _ = std::fs::remove_file(path);
    let _ = path.parent().map(std::fs::remove_dir);
}

/// Whether the process that wrote a state file still runs (no signal
/// sent: only whether it exists).
pub fn pid_alive(pid: u32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
}

fn is_bpffs(p: &Path) -> bool {
    const BPF_FS_MAGIC: i64 = 0xcafe4a11;
    nix::sys::statfs::statfs(p).map(|s| s.filesystem_type().0 == BPF_FS_MAGIC).unwrap_or(false)
}

/// Mount the BPF filesystem at /sys/fs/bpf when it is not there. Under
/// `ip netns exec` this mount is private to the process and goes with it,
/// which is why nothing the datapath needs lives only in a pin.
pub fn ensure_bpffs() -> Result<()> {
    let p = Path::new(BPFFS);
    if is_bpffs(p) {
        return Ok(());
    }
    if !p.exists() {
        bail!("{BPFFS} does not exist: is sysfs mounted?");
    }
    mount(Some("bpffs"), p, Some("bpf"), MsFlags::empty(), None::<&str>)
        .with_context(|| format!("mounting the BPF filesystem at {BPFFS}"))?;
    tracing::info!("mounted the BPF filesystem at {BPFFS}");
    Ok(())
}

/// Where this namespace's datapath maps are pinned, for bpftool and scripts.
pub fn pin_dir(netns: u64) -> PathBuf {
    PathBuf::from(format!("{BPFFS}/xgre/net{netns}"))
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of bpf_ktime_get_ns, which
/// the datapath stamps learned MACs and keepalive replies with.
pub fn monotonic_ns() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC");
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

/// Turn generic receive offload on for device `name` (ETHTOOL_SGRO, the
/// ethtool ioctl: rtnetlink has no say over offloads). On a veth it also
/// gives the device the NAPI context that frames XDP redirects to it need.
pub fn enable_gro(name: &str) -> Result<()> {
    const ETHTOOL_SGRO: u32 = 0x2c;
    ethtool_set(name, ETHTOOL_SGRO, 1).with_context(|| format!("turning GRO on for {name}"))
}

/// TCP segmentation offload on or off for device `name` (ETHTOOL_STSO: all
/// TSO features). Off, the stack still builds GSO packets for the device
/// (generic segmentation offload stays on) and segments them in software
/// as it hands them to the device's driver: after the device's TC egress,
/// before the veth crossing. On, but for GSO packets with fixed IPv4 IDs
/// (`fixed_ids_segmented`).
pub fn set_tso(name: &str, on: bool) -> Result<()> {
    const ETHTOOL_STSO: u32 = 0x1f;
    ethtool_set(name, ETHTOOL_STSO, on as u32).with_context(|| format!("turning TSO {} for {name}", if on { "on" } else { "off" }))?;
    if on {
        fixed_ids_segmented(name)?;
    }
    Ok(())
}

/// `tx-tcp-mangleid-segmentation` off for device `name`: a GSO packet
/// whose IPv4 IDs GRO found fixed (SKB_GSO_TCP_FIXEDID) is then segmented
/// as the device takes it, and every GSO packet that passes has IDs that
/// count up segment by segment. A tunnel that numbers in the outer ID
/// keeps its TSO so (a GSO packet takes as many numbers as it has
/// segments), where ETHTOOL_STSO would turn all of TSO off.
pub fn fixed_ids_segmented(name: &str) -> Result<()> {
    set_feature(name, "tx-tcp-mangleid-segmentation", false).with_context(|| format!("turning tx-tcp-mangleid-segmentation off for {name}"))
}

/// Set one of the device's features by its name (ETHTOOL_SFEATURES, the
/// index found among ETH_SS_FEATURES' strings).
fn set_feature(name: &str, feature: &str, on: bool) -> Result<()> {
    const ETHTOOL_GSSET_INFO: u32 = 0x37;
    const ETHTOOL_GSTRINGS: u32 = 0x1b;
    const ETHTOOL_SFEATURES: u32 = 0x3b;
    const ETH_SS_FEATURES: u32 = 4;
    const ETH_GSTRING_LEN: usize = 32;
    // struct ethtool_sset_info: cmd, reserved, sset_mask (u64), data[1].
    let mut info = [0u32; 5];
    info[0] = ETHTOOL_GSSET_INFO;
    info[2] = 1 << ETH_SS_FEATURES;
    ethtool_ioctl(name, info.as_mut_ptr().cast())?;
    if info[2] & (1 << ETH_SS_FEATURES) == 0 {
        bail!("the kernel names no features of {name}");
    }
    let count = info[4] as usize;
    // struct ethtool_gstrings: cmd, string_set, len, then the strings.
    let mut strings = vec![0u8; 12 + count * ETH_GSTRING_LEN];
    strings[..4].copy_from_slice(&ETHTOOL_GSTRINGS.to_ne_bytes());
    strings[4..8].copy_from_slice(&ETH_SS_FEATURES.to_ne_bytes());
    strings[8..12].copy_from_slice(&(count as u32).to_ne_bytes());
    ethtool_ioctl(name, strings.as_mut_ptr())?;
    let index = strings[12..]
        .chunks(ETH_GSTRING_LEN)
        .position(|s| s.split(|&b| b == 0).next() == Some(feature.as_bytes()))
        .with_context(|| format!("{name} has no feature {feature}"))?;
    // struct ethtool_sfeatures: cmd, size, then {valid, requested} blocks
    // of 32 features each.
    let blocks = count.div_ceil(32);
    let mut set = vec![0u32; 2 + 2 * blocks];
    set[0] = ETHTOOL_SFEATURES;
    set[1] = blocks as u32;
    let (block, bit) = (index / 32, 1u32 << (index % 32));
    set[2 + 2 * block] = bit;
    if on {
        set[3 + 2 * block] = bit;
    }
    ethtool_ioctl(name, set.as_mut_ptr().cast())
}

/// One `struct ethtool_value` set command.
fn ethtool_set(name: &str, cmd: u32, data: u32) -> Result<()> {
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    let mut value = EthtoolValue { cmd, data };
    ethtool_ioctl(name, (&mut value as *mut EthtoolValue).cast())
}

/// SIOCETHTOOL on device `name` with the command at `data`, which must be
/// as long as its command makes the kernel read and write.
fn ethtool_ioctl(name: &str, data: *mut u8) -> Result<()> {
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    #[repr(C)]
    struct IfReq {
        name: [libc::c_char; libc::IFNAMSIZ],
        data: *mut u8,
        _pad: [u8; 16],
    }
    if name.len() >= libc::IFNAMSIZ {
        bail!("device name {name} is too long");
    }
    let mut req = IfReq { name: [0; libc::IFNAMSIZ], data, _pad: [0; 16] };
    for (d, s) in req.name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).context("opening a socket for the ethtool ioctl")?;
    // SAFETY: SIOCETHTOOL reads one struct ifreq, which `IfReq` is, whose
    // data points at a command the caller sized for it, which outlives
    // the call.
    if unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&sock), SIOCETHTOOL, &mut req) } < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(())
}

/// `xgre run`'s claim on a tunnel: an exclusive lock on
/// `/run/xgre/net<netns inode>/<tunnel>.pid`, which holds the claimant's
/// PID. The kernel releases it when the process ends, however it ends, so
/// a second `run` can tell a live holder from a stale file. The file stays:
/// removing it could let two processes hold locks on two files of one name.
pub struct RunLock {
    _held: nix::fcntl::Flock<std::fs::File>,
}

impl RunLock {
    /// The PID of the `xgre run` that holds `tunnel`, if one does.
    pub fn holder(tunnel: &str) -> Option<String> {
        let path = PathBuf::from(format!("/run/xgre/net{}/{tunnel}.pid", netns_ino().ok()?));
        let file = std::fs::File::open(&path).ok()?;
        match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockSharedNonblock) {
            // Nobody holds it: a stale file.
            Ok(_) => None,
            Err(_) => std::fs::read_to_string(&path).ok().map(|p| p.trim().to_string()),
        }
    }

    pub fn take(tunnel: &str) -> Result<RunLock> {
        use std::io::{Read, Seek, Write};
        let dir = PathBuf::from(format!("/run/xgre/net{}", netns_ino()?));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(format!("{tunnel}.pid"));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        let mut held = match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(h) => h,
            Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                bail!("tunnel {tunnel} is already run by `xgre run` (PID {}); stop that one first", pid.trim());
            }
            Err((_, e)) => return Err(e).with_context(|| format!("locking {}", path.display())),
        };
        held.set_len(0)?;
        held.rewind()?;
        write!(held, "{}", std::process::id())?;
        Ok(RunLock { _held: held })
    }
}

/// Run the calling thread under SCHED_FIFO at the lowest real-time
/// priority, so that a busy process on its CPU cannot keep a packet path
/// (the resequencer, repair) waiting for a time slice: the stack moves
/// packets in softirq, which pre-empts any process. The thread sleeps between
/// batches, and the kernel's real-time throttling bounds it anyway.
pub fn realtime() -> std::io::Result<()> {
    let p = libc::sched_param { sched_priority: 1 };
    // SAFETY: a valid sched_param for the calling thread.
    match unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &p) } {
        0 => Ok(()),
        e => Err(std::io::Error::from_raw_os_error(e)),
    }
}

/// Give `sock` a receive buffer of `bytes`, past `net.core.rmem_max`
/// where this process may (CAP_NET_ADMIN: SO_RCVBUFFORCE): that limit's
/// default, 208 KiB, holds a couple of milliseconds of a gigabit link, and
/// what overflows a copy of the sent packets cannot be sent again.
pub fn big_recv_buffer(sock: &socket2::Socket, bytes: usize) {
    let n = bytes as libc::c_int;
    // SAFETY: an int option, its address and size.
    let forced =
        unsafe { libc::setsockopt(sock.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, (&n as *const libc::c_int).cast(), 4) };
    if forced != 0 {
        let _ = sock.set_recv_buffer_size(bytes);
    }
}

/// Bind packet socket `sock` to device `ifindex`, for every protocol.
pub fn bind_packet(sock: &socket2::Socket, ifindex: u32) -> std::io::Result<()> {
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid start.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: a valid sockaddr_ll and its size.
    let r =
        unsafe { libc::bind(sock.as_raw_fd(), (&sll as *const libc::sockaddr_ll).cast(), std::mem::size_of::<libc::sockaddr_ll>() as u32) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Frames packet socket `sock` had no room for since the last call
/// (PACKET_STATISTICS, which zeroes the socket's counts).
pub fn packet_drops(sock: &socket2::Socket) -> u64 {
    let mut st = libc::tpacket_stats { tp_packets: 0, tp_drops: 0 };
    let mut len = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
    // SAFETY: PACKET_STATISTICS fills a tpacket_stats of `len` bytes.
    let r = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            (&mut st as *mut libc::tpacket_stats).cast(),
            &mut len,
        )
    };
    if r == 0 {
        st.tp_drops as u64
    } else {
        0
    }
}
