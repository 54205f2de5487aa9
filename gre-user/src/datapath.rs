//! The datapath of one network namespace: its programs and maps, loaded
//! fresh or found again in the kernel through BPF object ids.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Context, Result};
use aya::{
    maps::{Array, HashMap, LpmTrie, Map, MapData, MapInfo, PerCpuArray, PerCpuHashMap},
    programs::{loaded_programs, ProgramFd, SchedClassifier, Xdp},
    Ebpf, EbpfLoader,
};
use gre_common::{names::*, *};

use crate::sys;

/// The compiled datapath, built by build.rs from `gre-ebpf`.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xgre.bpf.o"));

const PROGS: [&str; 7] = [PROG_TX, PROG_TX_SEND, PROG_RX_XDP, PROG_RX_TC, PROG_RX_HANDOFF, PROG_NEIGH_OUT, PROG_NEIGH_IN];

/// This build's id: the first 8 bytes of the SHA-256 of its compiled
/// datapath, so two builds with the same programs agree.
pub fn build_id() -> u64 {
    use sha2::{Digest, Sha256};
    static ID: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *ID.get_or_init(|| u64::from_be_bytes(Sha256::digest(OBJECT)[..8].try_into().expect("32 bytes")))
}

pub struct Datapath {
    progs: BTreeMap<&'static str, ProgramFd>,
    prog_ids: BTreeMap<&'static str, u32>,
    maps: BTreeMap<String, u32>,
    /// Set when this process loaded the programs: they must stay loaded
    /// until attached.
    _ebpf: Option<Ebpf>,
}

fn static_name(n: &str) -> Option<&'static str> {
    PROGS.iter().copied().find(|p| *p == n)
}

fn map_name(id: u32) -> Option<String> {
    MapInfo::from_id(id).ok().and_then(|i| i.name_as_str().map(str::to_string))
}

fn open(id: u32) -> Result<Map> {
    let data = MapData::from_id(id).with_context(|| format!("opening map #{id}"))?;
    Map::from_map_data(data).map_err(|e| anyhow!("map #{id}: {e}"))
}

impl Datapath {
    /// The datapath serving this network namespace, if one is loaded, with
    /// every program ready to attach.
    pub fn find() -> Result<Option<Datapath>> {
        Self::find_with(true)
    }

    /// The datapath's maps only, for readers (status, the path watcher):
    /// no programs are loaded again, so nothing big stays in memory.
    pub fn find_maps() -> Result<Option<Datapath>> {
        Self::find_with(false)
    }

    fn find_with(programs: bool) -> Result<Option<Datapath>> {
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
                prog_ids.insert(name, info.id());
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
        let mut dp = Datapath { progs, prog_ids, maps, _ebpf: None };
        // A datapath with no tunnel left is being torn down: its programs
        // go as they are detached. Start afresh instead of reviving it.
        if dp.tunnels()?.keys().next().is_none() {
            return Ok(None);
        }
        // A program attached nowhere (say, XDP receive while every link
        // uses TC) was freed when its loader exited; bring the set back.
        if programs && PROGS.iter().any(|p| !dp.progs.contains_key(p)) {
            dp.reload_programs()?;
        }
        Ok(Some(dp))
    }

    /// Load the programs again, bound to this datapath's existing maps: the
    /// maps are pinned for a moment in a private directory and handed to
    /// the loader by path.
    fn reload_programs(&mut self) -> Result<()> {
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
            let ebpf = loader.load(OBJECT).context("loading the BPF object again for existing maps")?;
            Datapath::from_loaded(ebpf)
        })();
        let _ = std::fs::remove_dir_all(&dir);
        let fresh = result?;
        // A map this build has and the running one had not (an upgrade
        // that adds one) was created by the load: keep it too.
        for (name, id) in fresh.maps {
            self.maps.entry(name).or_insert(id);
        }
        self.progs = fresh.progs;
        self.prog_ids = fresh.prog_ids;
        self._ebpf = fresh._ebpf;
        Ok(())
    }

    /// Load fresh programs and maps for this namespace.
    pub fn load() -> Result<Datapath> {
        let ns = sys::netns_ino()?;
        let mut ebpf = EbpfLoader::new().load(OBJECT).context("loading the BPF object (is this kernel new enough, with BTF?)")?;
        {
            let mut meta: Array<&mut MapData, Meta> = ebpf.map_mut(MAP_META).ok_or_else(|| anyhow!("no map {MAP_META}"))?.try_into()?;
            meta.set(0, Meta { netns_ino: ns, layout: LAYOUT_VERSION, debug: 0, build: build_id() }, 0)?;
        }
        Datapath::from_loaded(ebpf)
    }

    /// Verify the programs of a loaded object and note their fds and maps.
    fn from_loaded(mut ebpf: Ebpf) -> Result<Datapath> {
        for name in [PROG_TX, PROG_TX_SEND, PROG_RX_TC, PROG_RX_HANDOFF, PROG_NEIGH_OUT, PROG_NEIGH_IN] {
            let p: &mut SchedClassifier = ebpf.program_mut(name).ok_or_else(|| anyhow!("no program {name}"))?.try_into()?;
            p.load().with_context(|| format!("verifying {name}"))?;
        }
        {
            let name = PROG_RX_XDP;
            let p: &mut Xdp = ebpf.program_mut(name).ok_or_else(|| anyhow!("no program {name}"))?.try_into()?;
            p.load().with_context(|| format!("verifying {name}"))?;
        }
        let mut progs = BTreeMap::new();
        let mut prog_ids = BTreeMap::new();
        let mut maps = BTreeMap::new();
        for (name, prog) in ebpf.programs() {
            let Some(name) = static_name(name) else { continue };
            let info = prog.info()?;
            progs.insert(name, info.fd()?);
            prog_ids.insert(name, info.id());
            if let Some(ids) = info.map_ids()? {
                for id in ids {
                    if let Some(n) = map_name(id) {
                        maps.insert(n, id);
                    }
                }
            }
        }
        Ok(Datapath { progs, prog_ids, maps, _ebpf: Some(ebpf) })
    }

    /// The build whose programs the running datapath has attached.
    pub fn running_build(&self) -> Result<u64> {
        Ok(self.meta()?.get(&0, 0)?.build)
    }

    /// Load this build's programs against the running datapath's maps, for
    /// the caller to attach in place of the old ones.
    pub fn load_this_build(&mut self) -> Result<()> {
        self.reload_programs()
    }

    /// Record that this build's programs are the ones attached.
    pub fn record_build(&self) -> Result<()> {
        let mut meta = self.meta()?;
        let m = meta.get(&0, 0)?;
        meta.set(0, Meta { build: build_id(), ..m }, 0)?;
        Ok(())
    }

    pub fn prog(&self, name: &str) -> Result<&ProgramFd> {
        self.progs.get(name).ok_or_else(|| anyhow!("program {name} is not loaded"))
    }

    pub fn prog_id(&self, name: &str) -> Option<u32> {
        self.prog_ids.get(name).copied()
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
    announced: Array<PeerAnnounce> = MAP_ANNOUNCED;
    path_bytes: Array<u64> = MAP_PATH_BYTES;
    tx_seq: Array<u64> = MAP_TX_SEQ;
    rx_seq: Array<u64> = MAP_RX_SEQ;
    reorder: PerCpuArray<ReorderStats> = MAP_REORDER;
    reseq_tap: HashMap<u32, u32> = MAP_RESEQ_TAP;
    drops: PerCpuArray<u64> = MAP_DROPS;
}

/// Remove every entry of `map` that `pred` picks; returns how many went.
/// An entry already gone (another `down` racing this one) counts as gone.
pub fn remove_where<K: aya::Pod, V: aya::Pod>(map: &mut HashMap<MapData, K, V>, pred: impl Fn(&K, &V) -> bool) -> Result<usize> {
    let doomed: Vec<K> = map.iter().filter_map(Result::ok).filter(|(k, v)| pred(k, v)).map(|(k, _)| k).collect();
    for k in &doomed {
        match map.remove(k) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
            Err(aya::maps::MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(doomed.len())
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
