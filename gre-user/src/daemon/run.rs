//! `xgre run`: keep the path table current. A path leaves its peer's
//! rotation when its link loses carrier or is set down (seen within one
//! 20 ms poll), or when `keepalive_misses` keepalives in a row do not come
//! back (a failure beyond the local link: the peer's NIC, a switch port);
//! it rejoins as soon as both are well again. Every change replaces the
//! peer's map value whole, so the datapath never sees half an update.

use std::{collections::BTreeMap, time::Duration};

use anyhow::{anyhow, Result};
use gre_common::{
    path_slot, reseq::DEFAULT_RESEQUENCE_MS, Announce, ANNOUNCE_GRE_SEQ, ANNOUNCE_IPID, MAX_ANNOUNCE_TTL_MS, PATH_KA_OFF, PATH_KA_REQUIRED,
    PATH_STANDBY, PATH_UNHEALTHY, PATH_UP, TUN_IPID_NUMBERED, TUN_SEQ,
};

use crate::datapath::entries;
use crate::{
    config::{Config, TunnelConfig},
    control::tunnel::{self, UpOutcome},
    daemon::keepalive,
    daemon::reassemble::Reassembler,
    datapath::codec::{cstr, in_rotation, ip16},
    datapath::Datapath,
    mesh::{Event, Mesh},
    net::netlink::{Link, Netlink},
    reseq::Resequencer,
};
use gre_common::names::*;

use crate::net::sys::monotonic_ns;

const POLL: Duration = Duration::from_millis(20);

/// Why a path is down, for the log.
fn reason(link_ok: Option<&str>, probe_ok: bool) -> String {
    match (link_ok, probe_ok) {
        (Some(r), _) => r.to_string(),
        (None, false) => "keepalives not coming back".into(),
        (None, true) => "up".into(),
    }
}

/// Whether keepalives say a path may carry traffic. `answered`: when a
/// reply last came back over it (0: never). A peer in "auto" mode that has
/// never answered is not judged at all: it may be a gretap or Open vSwitch
/// endpoint, which cannot reflect IP-in-GRE, and cutting off its only path
/// would kill the tunnel. Once it has answered, it is judged like any.
fn probe_verdict(flags: u32, probing: bool, answered: u64, now: u64, started: u64, window_ns: u64) -> bool {
    if !probing || flags & PATH_KA_OFF != 0 {
        return true;
    }
    if answered == 0 {
        return flags & PATH_KA_REQUIRED == 0 || now < started + window_ns;
    }
    now.saturating_sub(answered) < window_ns
}

/// What this end's keepalives announce, given its tunnel's flags: how its
/// packets are numbered (nothing when they are not), valid for as long as
/// the peer would take to miss `keepalive_misses` of them and one more.
fn announcement(flags: u32, t: &TunnelConfig) -> Option<Announce> {
    let mut what = 0;
    if flags & TUN_IPID_NUMBERED != 0 {
        what |= ANNOUNCE_IPID;
    }
    if flags & TUN_SEQ != 0 {
        what |= ANNOUNCE_GRE_SEQ;
    }
    let ttl = (t.keepalive as u64 * (t.keepalive_misses as u64 + 1)).min(MAX_ANNOUNCE_TTL_MS as u64) as u32;
    (what != 0).then(|| Announce::new(what, ttl))
}

pub async fn run(cfg: Config, file: &str, debug: bool) -> Result<()> {
    // One `run` per tunnel: a second would fight the first over the path
    // table, and take the tunnel down under it when stopped.
    let _claim = crate::net::sys::RunLock::take(&cfg.tunnel.name)?;
    let outcome = tunnel::up(&cfg, file, false).await?;
    // Taking fragments before saying so: whoever waits for the line below
    // may send them at once.
    let reasm = start_reassembler(&cfg.tunnel.name)?;
    match outcome {
        UpOutcome::AlreadyUp => println!("{}: already up; watching its paths", cfg.tunnel.name),
        UpOutcome::Created { ifindex, mtu, .. } => println!("{}: up (ifindex {ifindex}, mtu {mtu}); watching its paths", cfg.tunnel.name),
    }
    // The watcher needs only the tunnel's settings: drop the config (with
    // 10,000 peers it and what parsing left around it are tens of MB) and
    // hand the freed heap back before settling in for the long run.
    let mut mesh = match cfg.mesh.is_some() {
        true => {
            let dp = Datapath::running()?;
            Some(Mesh::start(&cfg, file, &Netlink::new()?, &dp).await?)
        }
        false => None,
    };
    let t = cfg.tunnel.clone();
    let auto_reseq = cfg.auto_resequence();
    drop(cfg);
    // SAFETY: malloc_trim only releases memory that is already free.
    unsafe { libc::malloc_trim(0) };
    let log = match debug {
        true => Some(crate::datapath::debug::listen(&Datapath::running()?)?),
        false => None,
    };
    let reseq = match t.resequence {
        Some(0) => None,
        Some(ms) => Some(start_resequencer(&t, ms, false).await?),
        // Unasked for: a tunnel that cannot have one still runs.
        None if auto_reseq => match start_resequencer(&t, DEFAULT_RESEQUENCE_MS, true).await {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!("{}: not resequencing: {e:#}", t.name);
                None
            }
        },
        None => None,
    };
    let result = watch(&t, mesh.as_mut()).await;
    println!("{}: delivered {} packets that came in outer fragments", t.name, reasm.stop());
    if let Some(r) = reseq {
        let s = r.stop(Datapath::find().ok().flatten().as_ref());
        println!(
            "{}: resequenced {} in order, {} held for a gap, {} given up on, {} late, {} repeats dropped",
            t.name, s.in_order, s.held, s.skipped, s.late, s.duplicate
        );
    }
    drop(log);
    if let Some(m) = mesh {
        println!("{}: mesh: withdrawing this host", t.name);
        m.stop().await;
    }
    println!("{}: stopping; taking the tunnel down", t.name);
    tunnel::down(&t.name).await?;
    result
}

/// Resequence the tunnel's numbered packets for as long as this runs
/// (`announced`: only those of peers that announce numbering, which the
/// datapath decides by `TUN_RESEQ_ANNOUNCED`).
async fn start_resequencer(t: &TunnelConfig, ms: u32, announced: bool) -> Result<Resequencer> {
    let dp = Datapath::running()?;
    let (_, tun) = dp.tunnel_named(&t.name)?.ok_or_else(|| anyhow!("tunnel {} vanished", t.name))?;
    let r = Resequencer::start(&Netlink::new()?, &dp, tun.ifindex, tun.peer_ifindex, Duration::from_millis(ms as u64)).await?;
    let whose = if announced { "the packets of peers that announce numbers" } else { "numbered packets" };
    println!("{}: resequencing {whose} through {} (hold {ms} ms)", t.name, r.tap());
    Ok(r)
}

/// Deliver the tunnel's packets that arrive in outer fragments, which the
/// kernel reassembles.
fn start_reassembler(name: &str) -> Result<Reassembler> {
    let dp = Datapath::running()?;
    let tidx = dp.tunnel_named(name)?.map(|(k, _)| k).ok_or_else(|| anyhow!("tunnel {name} vanished"))?;
    Reassembler::start(&dp, tidx)
}

/// The next mesh event, or never without a mesh.
async fn mesh_event(mesh: &mut Option<&mut Mesh>) -> Option<Event> {
    match mesh {
        Some(m) => m.next().await,
        None => std::future::pending().await,
    }
}

async fn watch(t: &TunnelConfig, mut mesh: Option<&mut Mesh>) -> Result<()> {
    let name = &t.name;
    let dp = Datapath::running()?;
    let nl = Netlink::new()?;
    let tidx = dp.tunnel_named(name)?.map(|(k, _)| k).ok_or_else(|| anyhow!("tunnel {name} vanished"))?;
    // The key on the wire: NVGRE's is the VSID with FlowID 0.
    // A trunk: a key it carries (any one reflects the same).
    let key = match t.vsid {
        Some(v) => Some(v << 8),
        None => t.key.or(t.native_key).or(t.vlans.first().map(|v| v.key)),
    };
    let interval = Duration::from_millis(t.keepalive as u64);
    let window_ns = t.keepalive as u64 * t.keepalive_misses as u64 * 1_000_000;

    let sender = if t.keepalive > 0 { Some(keepalive::Sender::new()?) } else { None };
    let started = monotonic_ns();
    let mut last_probe = 0u64;
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut peers = dp.peers()?;
    let seen = dp.path_seen()?;
    let mut state: BTreeMap<(u32, usize), String> = BTreeMap::new();
    // Link states as last seen: (exists, admin up, carrier).
    let mut last_links: BTreeMap<u32, (bool, bool, bool)> = BTreeMap::new();
    let mut last_scan = 0u64;
    let mut announce = None;
    // Peers are rescanned on a keepalive tick, when a link changes, and at
    // least every 100 ms (to pick up map edits); a 20 ms poll costs one
    // netlink dump, not a walk over every peer.
    let rescan_ns = interval.as_nanos().clamp(1, 100_000_000) as u64;
    loop {
        let ev = tokio::select! {
            _ = tokio::time::sleep(POLL) => None,
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = sigterm.recv() => return Ok(()),
            ev = mesh_event(&mut mesh) => ev,
        };
        if let (Some(ev), Some(m)) = (ev, mesh.as_mut()) {
            m.applier.handle(&nl, &dp, ev).await;
        }
        let now = monotonic_ns();
        let all_links = nl.links().await?;
        if !all_links.iter().any(|l| l.index == tidx) {
            return Err(anyhow!("tunnel device {name} is gone"));
        }
        let mut links: BTreeMap<u32, Option<Link>> = BTreeMap::new();
        let mut changed_link = false;
        for (idx, was) in last_links.iter_mut() {
            let l = all_links.iter().find(|l| l.index == *idx);
            let now_state = l.map(|l| (true, l.up, l.lower_up)).unwrap_or((false, false, false));
            if now_state != *was {
                *was = now_state;
                changed_link = true;
            }
        }
        let probe_now = sender.is_some() && now.saturating_sub(last_probe) >= interval.as_nanos() as u64;
        if probe_now {
            last_probe = now;
        }
        if !(probe_now || changed_link || last_links.is_empty() || now.saturating_sub(last_scan) >= rescan_ns) {
            continue;
        }
        last_scan = now;
        if probe_now {
            // Re-read each round: a reload may have changed the numbering.
            announce = dp.tunnels()?.get(&tidx, 0).ok().and_then(|v| announcement(v.flags, t));
        }
        for l in &all_links {
            links.insert(l.index, Some(l.clone()));
        }
        // One peer at a time: with 10,000 peers a copy of them all would be
        // 6 MB every scan.
        let ids: Vec<u32> = entries(MAP_PEERS, peers.keys())?;
        for id in ids {
            let Ok(mut p) = peers.get(&id, 0) else { continue };
            if p.tunnel_ifindex != tidx {
                continue;
            }
            let n = p.npaths as usize;
            let mut healthy = vec![false; n];
            let mut health_changed = false;
            for (j, ok) in healthy.iter_mut().enumerate() {
                let path = p.paths[j];
                let link = links.entry(path.ifindex).or_insert(None);
                last_links
                    .entry(path.ifindex)
                    .or_insert_with(|| link.as_ref().map(|l| (true, l.up, l.lower_up)).unwrap_or((false, false, false)));
                let link_bad = match link {
                    None => Some("link device gone"),
                    Some(l) if !l.up => Some("link set down"),
                    Some(l) if !l.lower_up => Some("no carrier"),
                    _ => None,
                };
                let ka_off = path.flags & PATH_KA_OFF != 0;
                if probe_now && link_bad.is_none() && !ka_off {
                    if let Some(s) = &sender {
                        s.send(path.ifindex, &path, ip16(path.local), ip16(path.remote), key, announce);
                    }
                }
                let answered = seen.get(&path_slot(p.id, j as u32), 0).unwrap_or(0);
                let probe_ok = probe_verdict(path.flags, sender.is_some(), answered, now, started, window_ns);
                let admin_down = path.flags & gre_common::PATH_ADMIN_DOWN != 0;
                let unwell = link_bad.is_some() || !probe_ok;
                *ok = !unwell && !admin_down;
                if unwell != (path.flags & PATH_UNHEALTHY != 0) {
                    p.paths[j].flags ^= PATH_UNHEALTHY;
                    health_changed = true;
                }
                let why = reason(link_bad, probe_ok);
                let prev = state.insert((id, j), why.clone());
                if prev.as_deref() != Some(why.as_str()) && (prev.is_some() || !*ok) {
                    let remote = ip16(path.remote).to_string();
                    let dev = link.as_ref().map(|l| l.name.clone()).unwrap_or_else(|| format!("#{}", path.ifindex));
                    println!(
                        "{name}: peer {} path {j} ({dev} -> {remote}): {}",
                        cstr(&p.name),
                        if *ok { "up".to_string() } else { format!("down ({why})") }
                    );
                }
            }
            let standby: Vec<bool> = p.paths[..n].iter().map(|q| q.flags & PATH_STANDBY != 0).collect();
            let mut changed = health_changed;
            for (j, carry) in in_rotation(&healthy, &standby).into_iter().enumerate() {
                if carry != (p.paths[j].flags & PATH_UP != 0) {
                    p.paths[j].flags = if carry { p.paths[j].flags | PATH_UP } else { p.paths[j].flags & !PATH_UP };
                    changed = true;
                    if standby[j] && healthy[j] {
                        println!("{name}: peer {} path {j}: standby {}", cstr(&p.name), if carry { "in use" } else { "idle" });
                    }
                }
            }
            if changed {
                // One map update swaps the whole peer: paths and schedule.
                peers.insert(id, p, 0)?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: u64 = 300_000_000;

    #[test]
    fn a_standby_path_carries_only_while_no_other_path_is_healthy() {
        let sb = [false, false, true];
        assert_eq!(in_rotation(&[true, true, true], &sb), [true, true, false]);
        assert_eq!(in_rotation(&[false, true, true], &sb), [false, true, false]);
        assert_eq!(in_rotation(&[false, false, true], &sb), [false, false, true]);
        assert_eq!(in_rotation(&[false, false, false], &sb), [false, false, false]);
        // Only backups: they are the paths.
        assert_eq!(in_rotation(&[true, true], &[true, true]), [true, true]);
    }

    #[test]
    fn a_peer_that_never_answered_is_judged_only_when_required() {
        let (start, late) = (1_000_000_000, 5_000_000_000);
        // auto: never answered, long after start: still usable.
        assert!(probe_verdict(0, true, 0, late, start, W));
        // required: usable only during the start-up window.
        assert!(probe_verdict(PATH_KA_REQUIRED, true, 0, start + W / 2, start, W));
        assert!(!probe_verdict(PATH_KA_REQUIRED, true, 0, late, start, W));
        // Once answered, both modes judge by the last reply.
        for mode in [0, PATH_KA_REQUIRED] {
            assert!(probe_verdict(mode, true, late - W / 2, late, start, W));
            assert!(!probe_verdict(mode, true, late - 2 * W, late, start, W));
        }
        // off, or no keepalives at all: never judged.
        assert!(probe_verdict(PATH_KA_OFF | PATH_KA_REQUIRED, true, late - 2 * W, late, start, W));
        assert!(probe_verdict(PATH_KA_REQUIRED, false, 0, late, start, W));
    }
}
