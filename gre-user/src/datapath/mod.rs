//! The datapath of one network namespace: its programs and maps, loaded
//! fresh or found again in the kernel through BPF object ids.

pub(crate) mod codec;
pub(crate) mod debug;
pub(crate) mod pairs;

pub use debug::listen as listen_to_log;

use std::{collections::BTreeMap, sync::Mutex};

use anyhow::{anyhow, bail, Context, Result};
use aya::{
    maps::{Array, HashMap, LpmTrie, Map, MapData, MapInfo, PerCpuArray, PerCpuHashMap},
    programs::{loaded_programs, ProgramError, ProgramFd, ProgramInfo, SchedClassifier, Xdp},
    Ebpf, EbpfLoader,
};
use gre_common::{names::*, *};

use crate::net::sys;

/// The compiled datapath, built by build.rs from `gre-ebpf`.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xgre.bpf.o"));

const PROGS: [&str; 8] = [PROG_TX, PROG_TX_SEND, PROG_RX_XDP, PROG_RX_XDP_NM, PROG_RX_TC, PROG_RX_HANDOFF, PROG_NEIGH_OUT, PROG_NEIGH_IN];

/// The XDP receive program this kernel takes, and the TC ingress program
/// that goes beside it on the same link.
pub struct RxXdp {
    pub name: &'static str,
    pub fd: ProgramFd,
    /// `xgre_rx_handoff` beside `xgre_rx_xdp`; the full `xgre_rx_tc`
    /// beside `xgre_rx_xdp_nm`, which leaves it the decapsulating.
    pub beside: &'static str,
}

/// One program's verifier cost, or why this kernel refused it.
pub struct Cost {
    pub name: &'static str,
    pub verified: Result<u32, String>,
}

/// This build's id: the first 8 bytes of the SHA-256 of its compiled
/// datapath, so two builds with the same programs agree.
pub fn build_id() -> u64 {
    use sha2::{Digest, Sha256};
    static ID: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *ID.get_or_init(|| u64::from_be_bytes(Sha256::digest(OBJECT)[..8].try_into().expect("32 bytes")))
}

pub struct Datapath {
    /// Programs found attached, or loaded by this process: loading is
    /// done on demand (`prog`), one program at a time, so that readers
    /// and editors (`status`, `show`, `map-edit`, `reload`) verify nothing.
    progs: Mutex<BTreeMap<&'static str, ProgramFd>>,
    /// Each program's id and verified instructions.
    prog_ids: Mutex<BTreeMap<&'static str, (u32, u32)>>,
    maps: BTreeMap<String, u32>,
    /// The object this process loads programs from, bound to the maps
    /// above; programs loaded from it live as long as it does, at least
    /// until attached.
    object: Mutex<Option<Ebpf>>,
}

fn static_name(n: &str) -> Option<&'static str> {
    PROGS.iter().copied().find(|p| *p == n)
}

fn map_name(id: u32) -> Option<String> {
    MapInfo::from_id(id).ok().and_then(|i| i.name_as_str().map(str::to_string))
}

/// The kinds of map the datapath has (aya-log's included).
fn map_data(m: &Map) -> Option<&MapData> {
    match m {
        Map::Array(d)
        | Map::HashMap(d)
        | Map::LpmTrie(d)
        | Map::LruHashMap(d)
        | Map::PerCpuArray(d)
        | Map::PerCpuHashMap(d)
        | Map::PerfEventArray(d)
        | Map::RingBuf(d)
        | Map::XskMap(d) => Some(d),
        _ => None,
    }
}

fn open(id: u32) -> Result<Map> {
    let data = MapData::from_id(id).with_context(|| format!("opening map #{id}"))?;
    Map::from_map_data(data).map_err(|e| anyhow!("map #{id}: {e}"))
}

impl Datapath {
    /// The datapath serving this network namespace, if one is loaded: its
    /// maps, and the programs attached. Nothing is loaded or verified.
    /// The datapath a running tunnel needs: one that vanished (`down`
    /// from another shell) is an error.
    pub fn running() -> Result<Datapath> {
        Datapath::find()?.ok_or_else(|| anyhow!("the datapath vanished (taken down from elsewhere?)"))
    }

    /// Tunnel `name`'s device index and entry, if it is up.
    pub fn tunnel_named(&self, name: &str) -> Result<Option<(u32, Tunnel)>> {
        Ok(entries(MAP_TUNNELS, self.tunnels()?.iter())?.into_iter().find(|(_, t)| codec::cstr(&t.name) == name))
    }

    pub fn find() -> Result<Option<Datapath>> {
        let ns = sys::netns_ino()?;
        let mut progs = BTreeMap::new();
        let mut prog_ids = BTreeMap::new();
        let mut maps = BTreeMap::new();
        for info in loaded_programs() {
            let Ok(info) = info else { continue };
            let Some(name) = info.name_as_str().and_then(static_name) else { continue };
            let Ok(Some(ids)) = info.map_ids() else { continue };
            let named: Vec<(String, u32)> = ids.iter().filter_map(|&id| map_name(id).map(|n| (n, id))).collect();
            let Some(&(_, meta_id)) = named.iter().find(|(n, _)| n == MAP_META) else { continue };
            let meta: Array<MapData, Meta> = open(meta_id)?.try_into()?;
            let m = meta.get(&0, 0)?;
            if m.netns_ino != ns {
                continue;
            }
            if m.layout != LAYOUT_VERSION {
                bail!("a datapath of map layout {} is loaded here; this xgre speaks layout {LAYOUT_VERSION}. Run `xgre down` with the old binary first", m.layout);
            }
            if let Ok(fd) = info.fd() {
                progs.insert(name, fd);
                prog_ids.insert(name, (info.id(), info.verified_instruction_count().unwrap_or(0)));
            }
            maps.extend(named);
        }
        // No programs, or only ones that do not transmit: the leftovers of
        // a loader killed before it attached anything, which the kernel is
        // freeing (a live datapath always has a tunnel's transmit program,
        // and with it the tunnel map).
        if progs.is_empty() || !maps.contains_key(MAP_TUNNELS) {
            return Ok(None);
        }
        let dp = Datapath { progs: Mutex::new(progs), prog_ids: Mutex::new(prog_ids), maps, object: Mutex::new(None) };
        // A datapath with no tunnel left is being torn down: its programs
        // go as they are detached. Start afresh instead of reviving it.
        if dp.tunnels()?.keys().next().is_none() {
            return Ok(None);
        }
        Ok(Some(dp))
    }

    /// Parse the object with its maps bound to this datapath's: the maps
    /// are pinned for a moment in a private directory and handed to the
    /// loader by path. Verifies nothing.
    fn bind_object(&self) -> Result<Ebpf> {
        sys::ensure_bpffs()?;
        let dir = std::path::PathBuf::from(format!("{}/xgre-load-{}", sys::BPFFS, std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let result = (|| {
            let mut loader = EbpfLoader::new();
            // Section maps (.rodata and the like) hold constants: a fresh
            // copy is the same, and the kernel will not pin frozen ones.
            for (name, &id) in self.maps.iter().filter(|(n, _)| !n.starts_with('.')) {
                let path = dir.join(name);
                MapData::from_id(id)?.pin(&path).map_err(|e| anyhow!("pinning {name}: {e}"))?;
                loader.map_pin_path(name.as_str(), path);
            }
            loader.load(OBJECT).context("reading the BPF object against the running datapath's maps")
        })();
        let _ = std::fs::remove_dir_all(&dir);
        result
    }

    /// Load fresh maps for this namespace; programs follow on demand.
    pub fn load() -> Result<Datapath> {
        let ns = sys::netns_ino()?;
        let mut ebpf = EbpfLoader::new().load(OBJECT).context("loading the BPF object (is this kernel new enough, with BTF?)")?;
        {
            let mut meta: Array<&mut MapData, Meta> = ebpf.map_mut(MAP_META).ok_or_else(|| anyhow!("no map {MAP_META}"))?.try_into()?;
            meta.set(0, Meta { netns_ino: ns, layout: LAYOUT_VERSION, debug: 0, build: build_id() }, 0)?;
        }
        let maps = ebpf.maps().filter_map(|(name, m)| Some((name.to_string(), map_data(m)?.info().ok()?.id()))).collect();
        Ok(Datapath { progs: Mutex::default(), prog_ids: Mutex::default(), maps, object: Mutex::new(Some(ebpf)) })
    }

    /// Program `name`: the one attached, or this build's, verified now.
    pub fn prog(&self, name: &str) -> Result<ProgramFd> {
        let name = static_name(name).ok_or_else(|| anyhow!("no program {name} in the datapath"))?;
        if let Some(fd) = self.progs.lock().unwrap().get(name) {
            return fd.try_clone().with_context(|| format!("duplicating the fd of {name}"));
        }
        let mut object = self.object.lock().unwrap();
        if object.is_none() {
            *object = Some(self.bind_object()?);
        }
        let ebpf = object.as_mut().expect("bound above");
        let info = verify(ebpf, name)?;
        // A map this build has and the running one had not (an upgrade
        // that adds one) was created by the load: the program holds it.
        let fd = info.fd()?;
        self.prog_ids.lock().unwrap().insert(name, (info.id(), info.verified_instruction_count().unwrap_or(0)));
        self.progs.lock().unwrap().insert(name, fd.try_clone()?);
        Ok(fd)
    }

    /// The XDP receive program: the one attached or loaded, else
    /// `xgre_rx_xdp` verified now, else, where this kernel refuses it (a
    /// verifier that does not give XDP programs metadata, as some builds
    /// do not), `xgre_rx_xdp_nm`.
    pub fn rx_xdp(&self) -> Result<RxXdp> {
        let beside = |name| if name == PROG_RX_XDP { PROG_RX_HANDOFF } else { PROG_RX_TC };
        let have = self.progs.lock().unwrap().keys().copied().find(|n| [PROG_RX_XDP, PROG_RX_XDP_NM].contains(n));
        if let Some(name) = have {
            return Ok(RxXdp { name, fd: self.prog(name)?, beside: beside(name) });
        }
        let (name, fd) = match self.prog(PROG_RX_XDP) {
            Ok(fd) => (PROG_RX_XDP, fd),
            Err(refused) => {
                let fd = self.prog(PROG_RX_XDP_NM).with_context(|| format!("{refused:#}; and then"))?;
                tracing::info!("{refused:#}; XDP receive takes {PROG_RX_XDP_NM} instead (TC decapsulates; the resequencer still takes its frames over AF_XDP)");
                (PROG_RX_XDP_NM, fd)
            }
        };
        Ok(RxXdp { name, fd, beside: beside(name) })
    }

    /// Verified instructions of each of this build's programs, loaded
    /// fresh (against fresh maps) and freed again, or the kernel's reason
    /// for refusing one: what `xgre check --kernel` and the verifier test
    /// report. An error only when the datapath cannot run here: a program
    /// refused that has no stand-in (`xgre_rx_xdp` has `xgre_rx_xdp_nm`).
    pub fn verifier_costs() -> Result<Vec<Cost>> {
        let mut ebpf = EbpfLoader::new().load(OBJECT).context("loading the BPF object (is this kernel new enough, with BTF?)")?;
        let costs: Vec<Cost> = PROGS
            .iter()
            .map(|&name| Cost {
                name,
                verified: verify(&mut ebpf, name).map(|i| i.verified_instruction_count().unwrap_or(0)).map_err(|e| format!("{e:#}")),
            })
            .collect();
        let refused = |name: &str| costs.iter().any(|c| c.name == name && c.verified.is_err());
        for c in &costs {
            let stand_in = c.name == PROG_RX_XDP && !refused(PROG_RX_XDP_NM);
            if let (Err(e), false) = (&c.verified, stand_in) {
                bail!("{e}");
            }
        }
        Ok(costs)
    }

    /// The build whose programs the running datapath has attached.
    pub fn running_build(&self) -> Result<u64> {
        Ok(self.meta()?.get(&0, 0)?.build)
    }

    /// From now on `prog` gives this build's programs, loaded against the
    /// running datapath's maps, for the caller to attach in place of the
    /// old ones.
    pub fn load_this_build(&mut self) {
        self.progs.get_mut().unwrap().clear();
        self.prog_ids.get_mut().unwrap().clear();
    }

    /// Record that this build's programs are the ones attached.
    pub fn record_build(&self) -> Result<()> {
        let mut meta = self.meta()?;
        let m = meta.get(&0, 0)?;
        meta.set(0, Meta { build: build_id(), ..m }, 0)?;
        Ok(())
    }

    /// The programs found or loaded, with their ids and verifier costs.
    pub fn programs(&self) -> Vec<(&'static str, u32, u32)> {
        self.prog_ids.lock().unwrap().iter().map(|(&name, &(id, verified))| (name, id, verified)).collect()
    }

    pub fn prog_id(&self, name: &str) -> Option<u32> {
        self.prog_ids.lock().unwrap().get(name).map(|&(id, _)| id)
    }

    fn map(&self, name: &str) -> Result<Map> {
        let id = *self.maps.get(name).ok_or_else(|| anyhow!("map {name} not found in the datapath"))?;
        open(id)
    }

    /// Map `name` as the caller's type; the typed accessors below are the
    /// way in, so each map's key and value types are written once.
    fn typed<T: TryFrom<Map>>(&self, name: &str) -> Result<T>
    where
        T::Error: std::error::Error + Send + Sync + 'static,
    {
        Ok(self.map(name)?.try_into()?)
    }

    /// An LPM map of either family, for code that serves both.
    pub fn lpm<K: aya::Pod>(&self, name: &str) -> Result<LpmTrie<MapData, K, u32>> {
        self.typed(name)
    }

    /// Kernel memory charged to the datapath's maps (`memlock` of each).
    pub fn map_memory(&self) -> u64 {
        use std::os::fd::{AsFd, AsRawFd};
        let mut total = 0;
        for &id in self.maps.values() {
            let Ok(m) = MapData::from_id(id) else { continue };
            let path = format!("/proc/self/fdinfo/{}", m.fd().as_fd().as_raw_fd());
            if let Ok(info) = std::fs::read_to_string(path) {
                total += info.lines().find_map(|l| l.strip_prefix("memlock:")).and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(0);
            }
        }
        total
    }

    /// Pin every map under the namespace's pin directory, for bpftool users
    /// (`xgre up --pin`). The datapath does not depend on pins: under
    /// `ip netns exec` they live in a bpffs private to the process.
    pub fn pin_maps(&self) -> Result<()> {
        collect_orphan_pins();
        let dir = sys::pin_dir(sys::netns_ino()?);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        for (name, &id) in self.maps.iter().filter(|(n, _)| !n.starts_with('.')) {
            let path = dir.join(name);
            if path.exists() {
                continue;
            }
            MapData::from_id(id)?.pin(&path).map_err(|e| anyhow!("pinning {}: {e}", path.display()))?;
        }
        Ok(())
    }
}

/// One accessor per map, typed once here.
macro_rules! typed_maps {
    ($($(#[$doc:meta])* $fn:ident: $kind:ident<$($t:ty),+> = $name:ident;)*) => {
        impl Datapath {
            $(
                $(#[$doc])*
                pub fn $fn(&self) -> Result<$kind<MapData, $($t),+>> {
                    self.typed($name)
                }
            )*
        }
    };
}

typed_maps! {
    meta: Array<Meta> = MAP_META;
    tunnels: HashMap<u32, Tunnel> = MAP_TUNNELS;
    tunnel_by_key: HashMap<KeyLookup, u32> = MAP_TUNNEL_BY_KEY;
    vlans: HashMap<VlanMapKey, u32> = MAP_VLANS;
    neigh: HashMap<NeighKey, NeighEntry> = MAP_NEIGH;
    neigh_stats: PerCpuHashMap<u32, NeighStats> = MAP_NEIGH_STATS;
    peers: HashMap<u32, Peer> = MAP_PEERS;
    routes4: LpmTrie<Route4, u32> = MAP_ROUTES4;
    routes6: LpmTrie<Route6, u32> = MAP_ROUTES6;
    rx_paths: HashMap<RxKey, RxPath> = MAP_RX_PATHS;
    local_addrs: HashMap<[u8; 16], LocalAddr> = MAP_LOCAL_ADDRS;
    link_users: HashMap<LinkUseKey, LinkUse> = MAP_LINK_USERS;
    fdb: HashMap<FdbKey, FdbEntry> = MAP_FDB;
    flood: HashMap<FloodKey, FloodList> = MAP_FLOOD;
    path_stats: PerCpuArray<PathStats> = MAP_PATH_STATS;
    path_seen: Array<u64> = MAP_PATH_SEEN;
    path_rtt: Array<u64> = MAP_PATH_RTT;
    announced: Array<PeerAnnounce> = MAP_ANNOUNCED;
    path_bytes: Array<u64> = MAP_PATH_BYTES;
    tx_seq: Array<u64> = MAP_TX_SEQ;
    rx_seq: Array<u64> = MAP_RX_SEQ;
    reorder: PerCpuArray<ReorderStats> = MAP_REORDER;
    reseq_tap: HashMap<u32, u32> = MAP_RESEQ_TAP;
    reasm_tap: HashMap<u32, u32> = MAP_REASM_TAP;
    reseq_link: HashMap<u32, ReseqLink> = MAP_RESEQ_LINK;
    drops: PerCpuArray<u64> = MAP_DROPS;
    path_mtu: Array<PathMtu> = MAP_PATH_MTU;
    outer_pairs: HashMap<OuterPair, u32> = MAP_OUTER_PAIRS;
    pmtu_events: PerCpuArray<u64> = MAP_PMTU_EVENTS;
}

impl Datapath {
    pub fn reseq_xsk(&self) -> Result<aya::maps::XskMap<MapData>> {
        self.typed(MAP_RESEQ_XSK)
    }
}

/// Every item a map iterator yields, or the error that stopped reading
/// `map`: a failed read is an error, never a missing entry. An entry
/// deleted while the map is walked (`KeyNotFound`) is simply not there.
pub fn entries<T>(map: &str, it: impl Iterator<Item = Result<T, aya::maps::MapError>>) -> Result<Vec<T>> {
    let mut out = Vec::new();
    for r in it {
        match r {
            Ok(x) => out.push(x),
            Err(aya::maps::MapError::KeyNotFound) => {}
            Err(e) => return Err(anyhow::Error::new(e).context(format!("reading map {map}"))),
        }
    }
    Ok(out)
}

/// Remove every entry of `map` that `pred` picks; returns how many went.
/// An entry already gone (another `down` racing this one) counts as gone.
pub fn remove_where<K: aya::Pod, V: aya::Pod>(map: &mut HashMap<MapData, K, V>, pred: impl Fn(&K, &V) -> bool) -> Result<usize> {
    let doomed: Vec<K> = entries("to clean", map.iter())?.into_iter().filter(|(k, v)| pred(k, v)).map(|(k, _)| k).collect();
    for k in &doomed {
        removed(map.remove(k))?;
    }
    Ok(doomed.len())
}

/// The result of removing a map entry: whether it was there. One already
/// gone is what removal wanted (another `down` may be racing this one).
pub fn removed(r: Result<(), aya::maps::MapError>) -> Result<bool> {
    match r {
        Ok(()) => Ok(true),
        Err(aya::maps::MapError::KeyNotFound) => Ok(false),
        Err(aya::maps::MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Remove pin directories whose datapath no program uses any more: left by
/// a namespace deleted without `xgre down`. Their pins alone keep the maps.
pub fn collect_orphan_pins() {
    let root = std::path::Path::new(sys::BPFFS).join("xgre");
    let Ok(dirs) = std::fs::read_dir(&root) else { return };
    let used: std::collections::BTreeSet<u32> = loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| p.name_as_str().is_some_and(|n| static_name(n).is_some()))
        .filter_map(|p| p.map_ids().ok().flatten())
        .flatten()
        .collect();
    for d in dirs.filter_map(Result::ok) {
        let meta = d.path().join(MAP_META);
        let id = MapInfo::from_pin(&meta).ok().map(|i| i.id());
        if id.is_some_and(|id| !used.contains(&id)) {
            tracing::info!("removing orphaned pins {}", d.path().display());
            let _ = std::fs::remove_dir_all(d.path());
        }
    }
}

/// Remove this namespace's pins, where this mount namespace can see them
/// (the maps themselves go with the programs), and any orphans.
pub fn unpin_maps() -> Result<()> {
    collect_orphan_pins();
    let dir = sys::pin_dir(sys::netns_ino()?);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    let parent = dir.parent().unwrap();
    if parent.exists() && std::fs::read_dir(parent).map(|mut d| d.next().is_none()).unwrap_or(false) {
        let _ = std::fs::remove_dir(parent);
    }
    Ok(())
}

/// Verify one program of `ebpf` in the kernel. A refusal is one message:
/// the program, the instructions the verifier walked against its limit,
/// the kernel, and where the full verifier log went (thousands of lines,
/// never printed).
fn verify(ebpf: &mut Ebpf, name: &'static str) -> Result<ProgramInfo> {
    let prog = ebpf.program_mut(name).ok_or_else(|| anyhow!("no program {name} in the BPF object"))?;
    let r = if name == PROG_RX_XDP || name == PROG_RX_XDP_NM {
        let p: &mut Xdp = prog.try_into()?;
        p.load().and_then(|_| p.info())
    } else {
        let p: &mut SchedClassifier = prog.try_into()?;
        p.load().and_then(|_| p.info())
    };
    r.map_err(|e| refused(name, e))
}

fn refused(name: &str, e: ProgramError) -> anyhow::Error {
    let ProgramError::LoadError { io_error, verifier_log } = e else {
        return anyhow!("loading {name}: {e}");
    };
    let log = verifier_log.to_string();
    let kernel = nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default();
    let path = std::env::temp_dir().join(format!("xgre-verifier-{name}.log"));
    let saved = match std::fs::write(&path, &log) {
        Ok(()) => format!("full verifier log: {}", path.display()),
        Err(e) => format!("the verifier log could not be saved to {}: {e}", path.display()),
    };
    anyhow!("the kernel (Linux {kernel}) refused program {name}: {}; {}; {saved}", verdict(&log), io_error)
}

/// The verifier's own summary of a refusal: its last error line and the
/// instructions it walked, against its limit.
fn verdict(log: &str) -> String {
    let lines: Vec<&str> = log.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let processed = lines.iter().rev().find(|l| l.starts_with("processed ")).map(|l| {
        let words: Vec<&str> = l.split_whitespace().collect();
        let n = words.get(1).copied().unwrap_or("?");
        let limit = l.split("(limit ").nth(1).and_then(|r| r.split(')').next()).unwrap_or("1000000");
        format!("{n} instructions verified of a {limit} limit")
    });
    // The reason is the last line that is neither statistics nor a dump.
    let reason = lines
        .iter()
        .rev()
        .find(|l| {
            !(l.starts_with("processed ")
                || l.starts_with("verification time")
                || l.starts_with("stack depth")
                || l.chars().next().is_some_and(|c| c.is_ascii_digit()))
        })
        .copied()
        .unwrap_or("no reason given");
    match processed {
        Some(p) => format!("{reason} ({p})"),
        None => reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_refusal_is_summed_up_in_one_line() {
        let log = "0: (bf) r6 = r1\n1: (85) call foo\nBPF program is too large. Processed 1000001 insn\nverification time 5131876 usec\nstack depth 304+0\nprocessed 1000001 insns (limit 1000000) max_states_per_insn 35 total_states 39843\n";
        assert_eq!(
            super::verdict(log),
            "BPF program is too large. Processed 1000001 insn (1000001 instructions verified of a 1000000 limit)"
        );
        assert_eq!(super::verdict("R1 invalid mem access 'scalar'\n"), "R1 invalid mem access 'scalar'");
    }
}
