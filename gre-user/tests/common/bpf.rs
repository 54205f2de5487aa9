//! The compiled datapath under BPF_PROG_RUN: loaded and verified once per
//! copy a test needs at the same time, and handed from test to test with
//! its maps emptied (so tests share no map state); the test's view of its
//! maps, and frame builders written here by hand, byte by byte.

use gre_common::{PathFlags, TunnelFlags};
use std::{
    collections::BTreeMap,
    io::Write,
    process::{Command, Stdio},
};

use aya::{
    maps::{lpm_trie::Key, HashMap, LpmTrie, MapData, PerCpuArray},
    programs::{SchedClassifier, TestRun, TestRunOptions, Xdp},
    Ebpf,
};
use gre_common::{names::*, *};
use gre_user::datapath::OBJECT;

pub const TC_ACT_OK: u32 = 0;
pub const TC_ACT_SHOT: u32 = 2;
pub const TC_ACT_REDIRECT: u32 = 7;
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;

/// The tunnel device as the programs see it in a test run: `lo`, the only
/// device BPF_PROG_RUN can put an skb on without creating one.
pub const TUN: u32 = 1;
pub const HIDDEN: u32 = 77;
pub const LINK: u32 = 55;
pub const TUN_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x99];
pub const LOCAL: [u8; 4] = [198, 18, 0, 10];
pub const REMOTE: [u8; 4] = [198, 18, 0, 20];
pub const LINK_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x10];
pub const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x20];
pub const INNER_SRC: [u8; 4] = [198, 19, 100, 1];
pub const INNER_DST: [u8; 4] = [198, 19, 100, 2];
pub const INNER6_SRC: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
pub const INNER6_DST: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

/// An IPv6 packet (UDP payload, checksum not needed here) with traffic class `tc`.
pub fn ipv6(src: [u8; 16], dst: [u8; 16], tc: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x60 | (tc >> 4), tc << 4, 0, 0];
    h.extend((payload.len() as u16).to_be_bytes());
    h.extend([17, 64]);
    h.extend(src);
    h.extend(dst);
    h.extend(payload);
    h
}

pub struct Dp {
    pub ebpf: Loaded,
}

/// A loaded datapath, back to the spares when its test is done with it.
pub struct Loaded(Option<Ebpf>);

impl std::ops::Deref for Loaded {
    type Target = Ebpf;
    fn deref(&self) -> &Ebpf {
        self.0.as_ref().expect("a Dp holds its datapath until dropped")
    }
}

impl std::ops::DerefMut for Loaded {
    fn deref_mut(&mut self) -> &mut Ebpf {
        self.0.as_mut().expect("a Dp holds its datapath until dropped")
    }
}

/// Loaded datapaths no test holds: verifying the programs costs about a
/// second, emptying the maps a few milliseconds.
static SPARE: std::sync::Mutex<Vec<Ebpf>> = std::sync::Mutex::new(Vec::new());

impl Drop for Dp {
    fn drop(&mut self) {
        if let Some(e) = self.ebpf.0.take() {
            SPARE.lock().unwrap_or_else(|e| e.into_inner()).push(e);
        }
    }
}

pub fn sum16(b: &[u8]) -> u16 {
    let mut s: u32 = 0;
    for c in b.chunks(2) {
        s += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32;
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// An IPv4 packet with a correct header checksum.
pub fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, tos: u8, frags: u16, payload: &[u8]) -> Vec<u8> {
    let len = 20 + payload.len();
    let mut h = vec![0x45, tos];
    h.extend((len as u16).to_be_bytes());
    h.extend([0, 0]);
    h.extend(frags.to_be_bytes());
    h.extend([64, proto, 0, 0]);
    h.extend(src);
    h.extend(dst);
    let c = sum16(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend(payload);
    h
}

/// An ICMP echo request from INNER_SRC to INNER_DST with `n` payload bytes.
pub fn inner_packet(n: usize, tos: u8) -> Vec<u8> {
    let mut icmp = vec![8, 0, 0, 0, 0x12, 0x34, 0, 1];
    icmp.extend((0..n).map(|i| (i * 7 + 3) as u8));
    let c = sum16(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    ipv4(INNER_SRC, INNER_DST, 1, tos, 0, &icmp)
}

pub fn eth(dst: [u8; 6], src: [u8; 6], ty: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend(src);
    f.extend(ty.to_be_bytes());
    f.extend(payload);
    f
}

#[derive(Default, Clone, Copy)]
pub struct Gre {
    pub flags: u16,
    pub proto: u16,
    pub csum: bool,
    pub key: Option<u32>,
    pub seq: Option<u32>,
}

/// GRE header + payload, hand-built; the checksum covers both.
pub fn gre(g: Gre, payload: &[u8]) -> Vec<u8> {
    let mut flags = g.flags;
    if g.csum {
        flags |= 0x8000;
    }
    if g.key.is_some() {
        flags |= 0x2000;
    }
    if g.seq.is_some() {
        flags |= 0x1000;
    }
    let mut h = flags.to_be_bytes().to_vec();
    h.extend(g.proto.to_be_bytes());
    if g.csum {
        h.extend([0, 0, 0, 0]);
    }
    if let Some(k) = g.key {
        h.extend(k.to_be_bytes());
    }
    if let Some(s) = g.seq {
        h.extend(s.to_be_bytes());
    }
    h.extend(payload);
    if g.csum {
        let c = sum16(&h);
        h[4..6].copy_from_slice(&c.to_be_bytes());
    }
    h
}

/// A GRE frame as a peer would send it to us.
pub fn gre_frame(src: [u8; 4], dst: [u8; 4], frags: u16, g: Gre, inner: &[u8]) -> Vec<u8> {
    eth(LINK_MAC, PEER_MAC, 0x0800, &ipv4(src, dst, 47, 0, frags, &gre(g, inner)))
}

/// `__sk_buff` for BPF_PROG_RUN: only the fields the kernel lets us set.
pub fn skb_ctx(ifindex: u32, gso_segs: u32) -> Vec<u8> {
    skb_ctx_from(ifindex, gso_segs, 0)
}

/// ... and the device the packet came in on (`ingress_ifindex`).
pub fn skb_ctx_from(ifindex: u32, gso_segs: u32, ingress: u32) -> Vec<u8> {
    let mut c = vec![0u8; 192];
    c[36..40].copy_from_slice(&ingress.to_ne_bytes());
    c[40..44].copy_from_slice(&ifindex.to_ne_bytes());
    c[164..168].copy_from_slice(&gso_segs.to_ne_bytes());
    c
}

impl Dp {
    /// A datapath whose maps are all empty, as a fresh load has them.
    pub fn new() -> Dp {
        let spare = SPARE.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut dp = Dp { ebpf: Loaded(Some(spare.unwrap_or_else(load))) };
        dp.empty_maps();
        dp
    }

    /// Empty every map: hash maps and tries of every entry, arrays back
    /// to zero in every slot a test can have written (those of the peer
    /// ids the maps name, and of the first 64), per-CPU scratch left as
    /// is (each program run writes before it reads).
    fn empty_maps(&mut self) {
        let mut ids: std::collections::BTreeSet<u32> = (0..64).collect();
        ids.extend(self.peers().keys().map(Result::unwrap));
        ids.extend(self.rx_paths().iter().map(|r| r.unwrap().1.peer_id));
        let mut done = vec![MAP_SCRATCH, MAP_HDR, "XGRE_LCO_HDR", "XGRE_PMTU_CLM", "AYA_LOGS"];
        macro_rules! empty_hash {
            ($($name:expr => $k:ty, $v:ty;)*) => {$(
                let mut m: HashMap<&mut MapData, $k, $v> = self.hash($name);
                for k in m.keys().map(Result::unwrap).collect::<Vec<_>>() {
                    m.remove(&k).unwrap();
                }
                done.push($name);
            )*};
        }
        empty_hash! {
            MAP_TUNNELS => u32, Tunnel;
            MAP_TUNNEL_BY_KEY => KeyLookup, u32;
            MAP_PEERS => u32, Peer;
            MAP_RX_PATHS => RxKey, RxPath;
            MAP_LOCAL_ADDRS => [u8; 16], LocalAddr;
            MAP_LINK_USERS => LinkUseKey, LinkUse;
            MAP_RESEQ_TAP => u32, u32;
            MAP_REASM_TAP => u32, u32;
            MAP_RESEQ_LINK => u32, ReseqLink;
            MAP_FDB => FdbKey, FdbEntry;
            MAP_BULK_FLOWS => u32, u64;
            MAP_VLANS => VlanMapKey, u32;
            MAP_NEIGH => NeighKey, NeighEntry;
            MAP_FLOOD => FloodKey, FloodList;
            MAP_OUTER_PAIRS => OuterPair, u32;
        }
        let mut stats: aya::maps::PerCpuHashMap<&mut MapData, u32, NeighStats> =
            self.ebpf.map_mut(MAP_NEIGH_STATS).unwrap().try_into().unwrap();
        for k in stats.keys().map(Result::unwrap).collect::<Vec<_>>() {
            stats.remove(&k).unwrap();
        }
        let mut r4: LpmTrie<&mut MapData, Route4, u32> = self.ebpf.map_mut(MAP_ROUTES4).unwrap().try_into().unwrap();
        for k in r4.keys().map(Result::unwrap).collect::<Vec<_>>() {
            r4.remove(&k).unwrap();
        }
        let mut r6: LpmTrie<&mut MapData, Route6, u32> = self.ebpf.map_mut(MAP_ROUTES6).unwrap().try_into().unwrap();
        for k in r6.keys().map(Result::unwrap).collect::<Vec<_>>() {
            r6.remove(&k).unwrap();
        }
        done.extend([MAP_NEIGH_STATS, MAP_ROUTES4, MAP_ROUTES6]);
        let slots: Vec<u32> = ids.iter().flat_map(|&id| (0..MAX_PATHS as u32).map(move |j| path_slot(id, j))).collect();
        self.zero::<PathStats>(MAP_PATH_STATS, &slots, true);
        self.zero::<u64>(MAP_PATH_SEEN, &slots, false);
        self.zero::<u64>(MAP_PATH_RTT, &slots, false);
        self.zero::<u64>(MAP_PATH_BYTES, &slots, false);
        self.zero::<PathMtu>(MAP_PATH_MTU, &slots, false);
        let ids: Vec<u32> = ids.into_iter().collect();
        self.zero::<u64>(MAP_TX_SEQ, &ids, false);
        self.zero::<u64>(MAP_RX_SEQ, &ids, false);
        self.zero::<ReorderStats>(MAP_REORDER, &ids, true);
        self.zero::<PeerAnnounce>(MAP_ANNOUNCED, &ids, false);
        self.zero::<u64>(MAP_DROPS, &(0..drop::DROP_SLOTS as u32).collect::<Vec<_>>(), true);
        self.zero::<u64>(MAP_PMTU_EVENTS, &(0..pmtu::PMTU_EVENT_SLOTS as u32).collect::<Vec<_>>(), true);
        self.zero::<Meta>(MAP_META, &[0], false);
        done.extend([
            MAP_PATH_STATS,
            MAP_PATH_SEEN,
            MAP_PATH_RTT,
            MAP_PATH_BYTES,
            MAP_PATH_MTU,
            MAP_TX_SEQ,
            MAP_RX_SEQ,
            MAP_REORDER,
            MAP_ANNOUNCED,
        ]);
        done.extend([MAP_DROPS, MAP_PMTU_EVENTS, MAP_META]);
        // Sockets only, which leave it as they close: these tests open none.
        done.push(MAP_RESEQ_XSK);
        // A map added to the datapath must be emptied here too.
        let left: Vec<String> =
            self.ebpf.maps().map(|(n, _)| n.to_string()).filter(|n| !n.starts_with('.') && !done.contains(&n.as_str())).collect();
        assert!(left.is_empty(), "Dp::empty_maps does not empty {left:?}");
    }

    /// Slots `idx` of array `name` (per-CPU or not) back to zero.
    fn zero<V: aya::Pod + Default>(&mut self, name: &str, idx: &[u32], per_cpu: bool) {
        let map = self.ebpf.map_mut(name).unwrap();
        if per_cpu {
            let mut m: PerCpuArray<&mut MapData, V> = map.try_into().unwrap();
            let ncpu = aya::util::nr_cpus().unwrap();
            for &i in idx {
                m.set(i, aya::maps::PerCpuValues::try_from((0..ncpu).map(|_| V::default()).collect::<Vec<_>>()).unwrap(), 0).unwrap();
            }
        } else {
            let mut m: aya::maps::Array<&mut MapData, V> = map.try_into().unwrap();
            for &i in idx {
                m.set(i, V::default(), 0).unwrap();
            }
        }
    }
}

/// Load the datapath and verify its programs (never attached).
fn load() -> Ebpf {
    let mut ebpf = Ebpf::load(OBJECT).expect("loading the compiled datapath (are we root?)");
    for name in [PROG_TX, PROG_TX_SEND, PROG_RX_TC, PROG_RX_HANDOFF] {
        let p: &mut SchedClassifier = ebpf.program_mut(name).unwrap().try_into().unwrap();
        p.load().unwrap_or_else(|e| panic!("verifier rejected {name}: {e}"));
    }
    let p: &mut Xdp = ebpf.program_mut(PROG_RX_XDP_NM).unwrap().try_into().unwrap();
    p.load().unwrap_or_else(|e| panic!("verifier rejected {PROG_RX_XDP_NM}: {e}"));
    // Where the kernel refuses XDP metadata, `xgre_rx_xdp_nm` stands in
    // for it (`xdp_meta`).
    let p: &mut Xdp = ebpf.program_mut(PROG_RX_XDP).unwrap().try_into().unwrap();
    if let Err(e) = p.load() {
        let mut said = XDP_REFUSED.lock().unwrap_or_else(|e| e.into_inner());
        if said.is_none() {
            eprintln!("this kernel refuses {PROG_RX_XDP} ({e}): its tests run {PROG_RX_XDP_NM} and the TC programs only");
            *said = Some(format!("{e}"));
        }
    }
    ebpf
}

/// Why this kernel refused `xgre_rx_xdp`, once it has.
static XDP_REFUSED: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// The XDP receive program that hands frames on in metadata, where this
/// kernel takes it (`xgre_rx_xdp`); None where it refuses XDP programs
/// metadata, and `xgre_rx_xdp_nm` runs instead.
pub fn xdp_meta() -> Option<&'static str> {
    drop(Dp::new());
    XDP_REFUSED.lock().unwrap_or_else(|e| e.into_inner()).is_none().then_some(PROG_RX_XDP)
}

/// The receive programs a test of what both hooks do runs: TC, and XDP
/// where this kernel takes `xgre_rx_xdp`.
pub fn rx_hooks() -> Vec<&'static str> {
    [Some(PROG_RX_TC), xdp_meta()].into_iter().flatten().collect()
}

impl Dp {
    pub fn hash<K: aya::Pod, V: aya::Pod>(&mut self, name: &str) -> HashMap<&mut MapData, K, V> {
        self.ebpf.map_mut(name).unwrap().try_into().unwrap()
    }

    pub fn tunnels(&mut self) -> HashMap<&mut MapData, u32, Tunnel> {
        self.hash(MAP_TUNNELS)
    }

    pub fn tunnel_by_key(&mut self) -> HashMap<&mut MapData, KeyLookup, u32> {
        self.hash(MAP_TUNNEL_BY_KEY)
    }

    pub fn peers(&mut self) -> HashMap<&mut MapData, u32, Peer> {
        self.hash(MAP_PEERS)
    }

    pub fn rx_paths(&mut self) -> HashMap<&mut MapData, RxKey, RxPath> {
        self.hash(MAP_RX_PATHS)
    }

    pub fn local_addrs(&mut self) -> HashMap<&mut MapData, [u8; 16], LocalAddr> {
        self.hash(MAP_LOCAL_ADDRS)
    }

    pub fn flood(&mut self) -> HashMap<&mut MapData, FloodKey, FloodList> {
        self.hash(MAP_FLOOD)
    }

    pub fn fdb_map(&mut self) -> HashMap<&mut MapData, FdbKey, FdbEntry> {
        self.hash(MAP_FDB)
    }

    pub fn tunnel(&mut self, key: Option<u32>, flags: TunnelFlags) {
        self.tunnel_mode(MODE_GRE, key, flags);
    }

    /// A tunnel of `mode`; with `TunnelFlags::NVGRE` in `flags`, `key` is the VSID.
    pub fn tunnel_mode(&mut self, mode: u32, key: Option<u32>, flags: TunnelFlags) {
        let nvgre = flags.intersects(TunnelFlags::NVGRE);
        let key = if nvgre { key.map(|v| v << 8) } else { key };
        let mut f = flags;
        if key.is_some() {
            f |= TunnelFlags::KEY;
        }
        let t = Tunnel {
            ifindex: TUN,
            peer_ifindex: HIDDEN,
            mode,
            flags: if nvgre { f & !TunnelFlags::KEY } else { f },
            key: key.unwrap_or(0),
            mac: TUN_MAC,
            ..Default::default()
        };
        self.tunnels().insert(TUN, t, 0).unwrap();
        let has_key = if nvgre { KEY_NVGRE } else { key.is_some() as u32 };
        let k = KeyLookup { key: key.unwrap_or(0), has_key };
        self.tunnel_by_key().insert(k, TUN, 0).unwrap();
        // BPF_PROG_RUN delivers on lo (ifindex 1): that is "our link" here.
        let l = LocalAddr { ifindex: 1, mac: LINK_MAC, _pad: [0; 2] };
        self.local_addrs().insert(v4_mapped(LOCAL), l, 0).unwrap();
    }

    /// A peer with one path per weight, remote addresses REMOTE, .21, .22 ...
    pub fn peer(&mut self, id: u32, weights: &[u32]) {
        let mut p = Peer { id, tunnel_ifindex: TUN, npaths: weights.len() as u32, ..Default::default() };
        for (j, &w) in weights.iter().enumerate() {
            let mut remote = REMOTE;
            remote[3] += j as u8;
            let mut dst_mac = PEER_MAC;
            dst_mac[5] += j as u8;
            p.paths[j] = Path {
                ifindex: LINK + j as u32,
                flags: PathFlags::UP,
                local: v4_mapped(LOCAL),
                remote: v4_mapped(remote),
                src_mac: LINK_MAC,
                dst_mac,
                weight: w,
                rate_kbps: 0,
            };
            let rx = RxKey { tunnel_ifindex: TUN, remote: v4_mapped(remote), local: v4_mapped(LOCAL) };
            self.rx_paths().insert(rx, RxPath { peer_id: id, path: j as u32 }, 0).unwrap();
        }
        self.peers().insert(id, p, 0).unwrap();
        let mut routes: LpmTrie<&mut MapData, Route4, u32> = self.ebpf.map_mut(MAP_ROUTES4).unwrap().try_into().unwrap();
        let key = Key::new(64, Route4 { tunnel: TUN.to_be_bytes(), addr: INNER_DST });
        routes.insert(&key, id, 0).unwrap();
        let mut routes6: LpmTrie<&mut MapData, Route6, u32> = self.ebpf.map_mut(MAP_ROUTES6).unwrap().try_into().unwrap();
        // 2001:db8:100::/64 to this peer.
        let key = Key::new(32 + 64, Route6 { tunnel: TUN.to_be_bytes(), addr: INNER6_DST });
        routes6.insert(&key, id, 0).unwrap();
    }

    pub fn run(&self, prog: &str, data: &[u8], ctx: Option<&[u8]>) -> (u32, Vec<u8>) {
        self.try_run(prog, data, ctx).unwrap_or_else(|e| panic!("BPF_PROG_RUN of {prog}: {e}"))
    }

    /// `run`, or why BPF_PROG_RUN refused the frame.
    pub fn try_run(&self, prog: &str, data: &[u8], ctx: Option<&[u8]>) -> Result<(u32, Vec<u8>), String> {
        self.try_run_ctx(prog, data, ctx).map(|(r, out, _)| (r, out))
    }

    /// `try_run`, with the context as the program left it.
    pub fn try_run_ctx(&self, prog: &str, data: &[u8], ctx: Option<&[u8]>) -> Result<(u32, Vec<u8>, Vec<u8>), String> {
        let mut out = vec![0u8; data.len() + 256];
        let mut ctx_out = [0u8; 192];
        let opts = TestRunOptions {
            data_in: Some(data),
            data_out: Some(&mut out),
            ctx_in: ctx,
            ctx_out: ctx.map(|_| &mut ctx_out[..]),
            ..Default::default()
        };
        let prog_ref = self.ebpf.program(prog).unwrap();
        let r = match prog {
            PROG_RX_XDP | PROG_RX_XDP_NM => <&Xdp>::try_from(prog_ref).unwrap().test_run(opts),
            _ => <&SchedClassifier>::try_from(prog_ref).unwrap().test_run(opts),
        }
        .map_err(|e| format!("{e:?}"))?;
        out.truncate(r.data_size_out as usize);
        Ok((r.return_value, out, ctx_out.to_vec()))
    }

    pub fn tx(&self, frame: &[u8], gso_segs: u32) -> (u32, Vec<u8>) {
        self.tx_ctx(frame, &skb_ctx(TUN, gso_segs))
    }

    /// What the tunnel device's transmit does to `frame`: the decision on
    /// its egress and, when that lets the packet cross the veth pair, the
    /// send on the hidden end's ingress, handed the decision in `cb` as
    /// veth hands it. Returns the last program's verdict and output.
    pub fn tx_ctx(&self, frame: &[u8], ctx: &[u8]) -> (u32, Vec<u8>) {
        let (ret, out, ctx_out) = self.try_run_ctx(PROG_TX, frame, Some(ctx)).unwrap_or_else(|e| panic!("BPF_PROG_RUN of {PROG_TX}: {e}"));
        if ret != TC_ACT_OK {
            return (ret, out);
        }
        assert_eq!(out, frame, "{PROG_TX} decides; it must not change the packet");
        // The hidden end: ifindex 1 (lo), as there is no device HIDDEN here;
        // the control block (cb, bytes 48..68) and gso_segs as they were.
        let mut send = skb_ctx(1, 0);
        send[48..68].copy_from_slice(&ctx_out[48..68]);
        send[164..168].copy_from_slice(&ctx[164..168]);
        self.run(PROG_TX_SEND, &out, Some(&send))
    }

    /// The decision `xgre_tx` hands over for `frame`, if it let it through.
    pub fn tx_decision(&self, frame: &[u8], ctx: &[u8]) -> Option<TxDecision> {
        let (ret, _, ctx_out) = self.try_run_ctx(PROG_TX, frame, Some(ctx)).unwrap();
        (ret == TC_ACT_OK).then(|| {
            let w: Vec<u32> = ctx_out[48..68].chunks(4).map(|c| u32::from_ne_bytes(c.try_into().unwrap())).collect();
            TxDecision::from_words(&w.try_into().unwrap())
        })
    }

    /// Teach the forwarding table that `mac` lives behind `peer`, now.
    pub fn learn(&mut self, mac: [u8; 6], peer: u32) {
        let now = boot_ns();
        self.fdb_map().insert(FdbKey { tunnel_ifindex: TUN, mac, vid: 0 }, FdbEntry { peer_id: peer, _pad: 0, seen_ns: now }, 0).unwrap();
    }

    pub fn fdb(&mut self, mac: [u8; 6]) -> Option<FdbEntry> {
        self.fdb_map().get(&FdbKey { tunnel_ifindex: TUN, mac, vid: 0 }, 0).ok()
    }

    pub fn drops(&self) -> BTreeMap<&'static str, u64> {
        let m: PerCpuArray<&MapData, u64> = self.ebpf.map(MAP_DROPS).unwrap().try_into().unwrap();
        DropReason::all().map(|r| (r.name(), m.get(&(r as u32), 0).unwrap().iter().sum())).filter(|(_, v)| *v > 0).collect()
    }

    pub fn path_stats(&self, peer: u32, path: u32) -> PathStats {
        let m: PerCpuArray<&MapData, PathStats> = self.ebpf.map(MAP_PATH_STATS).unwrap().try_into().unwrap();
        m.get(&path_slot(peer, path), 0).unwrap().iter().fold(PathStats::default(), |mut a, s| {
            a += *s;
            a
        })
    }
}

/// Frames the tunnel device hands the transmit program: Ethernet + inner IP.
pub fn tunnel_frame(inner: &[u8]) -> Vec<u8> {
    eth(TUN_MAC, TUN_MAC, 0x0800, inner)
}

pub fn scapy_reference(specs: serde_json::Value) -> Vec<Vec<u8>> {
    let mut child = Command::new("/usr/bin/python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/gre_ref.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("running /usr/bin/python3 (scapy; `cargo xtask setup` installs python3-scapy)");
    child.stdin.take().unwrap().write_all(specs.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "gre_ref.py failed");
    let hex: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
    hex.iter().map(|h| (0..h.len()).step_by(2).map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap()).collect()).collect()
}

/// CLOCK_MONOTONIC in ns: what bpf_ktime_get_ns reads.
pub fn boot_ns() -> u64 {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC");
    ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64
}

pub fn hexdump(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join("")
}
