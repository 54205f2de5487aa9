//! `xgre run`: bring the tunnel up, start what it needs beside the
//! datapath (reassembly, the resequencer, the mesh, the debug log), watch
//! its paths (`watch`) until told to stop, then take it down.

use std::time::Duration;

use anyhow::{anyhow, Result};
use gre_common::{names::MAP_LINK_USERS, reseq::DEFAULT_RESEQUENCE_MS};

use crate::{
    config::{Config, TunnelConfig},
    control::tunnel::{self, UpOutcome},
    daemon::reassemble::Reassembler,
    datapath::{entries, Datapath},
    mesh::Mesh,
    net::netlink::Netlink,
    repair::Repairer,
    reseq::Resequencer,
};

pub async fn run(cfg: Config, file: &str, debug: bool) -> Result<()> {
    // One `run` per tunnel: a second would fight the first over the path
    // table, and take the tunnel down under it when stopped.
    let _claim = crate::net::sys::RunLock::take(&cfg.tunnel.name)?;
    let outcome = tunnel::up(&cfg, file, false).await?;
    // Taking fragments before saying so: whoever waits for the line below
    // may send them at once.
    let reasm = start_reassembler(&cfg.tunnel.name).await?;
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
    // Keeping what is sent, to send again what a lossy peer misses: for a
    // tunnel whose data frames carry one key (not NVGRE's flow ids, not a
    // trunk's keys), announced on keepalives.
    let repair = match t.repair && t.keepalive > 0 && t.vsid.is_none() && t.vlans.is_empty() {
        // Unasked for by name: a tunnel that cannot have it still runs.
        true => match Datapath::running().and_then(|dp| Repairer::start(&dp)) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!("{}: not repairing: {e:#}", t.name);
                None
            }
        },
        false => None,
    };
    // The hold follows the paths' measured delays unless the config set it.
    let result = super::watch::watch(&t, mesh.as_mut(), reseq.as_ref(), t.resequence.is_none(), repair.as_ref()).await;
    super::status::remove(&t.name);
    println!("{}: delivered {} packets that came in outer fragments", t.name, reasm.stop(Datapath::find().ok().flatten().as_ref()));
    if let Some(r) = reseq {
        let s = r.stop(Datapath::find().ok().flatten().as_ref());
        println!(
            "{}: resequenced {} in order, {} held for a gap, {} given up on, {} late, {} repeats dropped, {} pure ACKs passed at once, {} GSO packets came whole, {} lost in the hand-off; delivered {} TCP segments merged into {} GSO packets; asked peers for {} again, {} came in time",
            t.name, s.in_order, s.held, s.skipped, s.late, s.duplicate, s.early, s.whole, s.handoff_lost, s.merged, s.merged_into, s.asked, s.repaired
        );
    }
    if let Some(r) = repair {
        let s = r.stop();
        println!(
            "{}: repair: kept {} packets sent, missed {} (its copy's buffer full), peers asked for {} ({} of them before anything was kept), sent {} again",
            t.name, s.kept, s.missed, s.asked, s.reported, s.resent
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
/// datapath decides by `TunnelFlags::RESEQ_ANNOUNCED`).
async fn start_resequencer(t: &TunnelConfig, ms: u32, announced: bool) -> Result<Resequencer> {
    let dp = Datapath::running()?;
    let (_, tun) = dp.tunnel_named(&t.name)?.ok_or_else(|| anyhow!("tunnel {} vanished", t.name))?;
    // The links the tunnel receives on, for sockets on their queues.
    let links: Vec<u32> = entries(MAP_LINK_USERS, dp.link_users()?.iter())?
        .into_iter()
        .filter(|(k, _)| k.tunnel_ifindex == tun.ifindex)
        .map(|(k, _)| k.link_ifindex)
        .collect();
    let r = Resequencer::start(&Netlink::new()?, &dp, tun.ifindex, tun.peer_ifindex, &links, Duration::from_millis(ms as u64)).await?;
    let whose = if announced { "the packets of peers that announce numbers" } else { "numbered packets" };
    println!("{}: resequencing {whose} through {} (hold {ms} ms)", t.name, r.handoff());
    Ok(r)
}

/// Deliver the tunnel's packets that arrive in outer fragments, which the
/// kernel reassembles.
async fn start_reassembler(name: &str) -> Result<Reassembler> {
    let dp = Datapath::running()?;
    let tidx = dp.tunnel_named(name)?.map(|(k, _)| k).ok_or_else(|| anyhow!("tunnel {name} vanished"))?;
    Reassembler::start(&Netlink::new()?, &dp, tidx).await
}
