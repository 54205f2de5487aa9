//! `--debug`: the datapath's own log messages (aya-log), for as long as a
//! long-running command (`run`, `status --watch`, `exporter`) listens.
//!
//! A flag in the meta map switches kernel-side logging on while someone
//! listens and off again after, so a datapath nobody watches pays one map
//! lookup per drop and writes nothing.

use anyhow::{anyhow, Context, Result};
use aya::maps::Array;
use gre_common::{names::*, Meta};
use tokio::io::unix::AsyncFd;

use crate::datapath::Datapath;

pub struct Listening {
    meta_id: Array<aya::maps::MapData, Meta>,
    task: tokio::task::JoinHandle<()>,
}

fn set_debug(meta: &mut Array<aya::maps::MapData, Meta>, on: bool) -> Result<()> {
    let mut m = meta.get(&0, 0)?;
    m.debug = on as u32;
    meta.set(0, m, 0)?;
    Ok(())
}

/// Turn datapath logging on and print its messages until dropped.
pub fn listen(dp: &Datapath) -> Result<Listening> {
    let id = [PROG_TX, PROG_RX_TC, PROG_RX_XDP, PROG_RX_XDP_NM]
        .iter()
        .find_map(|p| dp.prog_id(p))
        .ok_or_else(|| anyhow!("no datapath program to listen to"))?;
    let logger = aya_log::EbpfLogger::init_from_id_with_logger(id, DropNames).context("opening the datapath's log ring buffer")?;
    // SAFETY: the logger owns the ring buffer's fd and lives in the AsyncFd
    // for as long as it is registered; nothing else closes it.
    let mut fd = unsafe { AsyncFd::register(logger) }.context("watching the log ring buffer")?;
    let mut meta = dp.meta()?;
    set_debug(&mut meta, true)?;
    let task = tokio::spawn(async move {
        loop {
            let Ok(mut guard) = fd.readable_mut().await else { return };
            guard.get_inner_mut().flush();
            guard.clear_ready();
        }
    });
    eprintln!("debug: printing the datapath's messages (drops and their reasons)");
    Ok(Listening { meta_id: meta, task })
}

/// The datapath logs a drop's reason as its number (a name per reason
/// would be one verifier walk of the logging code per name); this logger
/// puts the name in before handing the message on.
struct DropNames;

impl log::Log for DropNames {
    fn enabled(&self, m: &log::Metadata) -> bool {
        log::logger().enabled(m)
    }

    fn log(&self, r: &log::Record) {
        let msg = named(&r.args().to_string());
        log::logger().log(&log::Record::builder().args(format_args!("{msg}")).level(r.level()).target(r.target()).build());
    }

    fn flush(&self) {
        log::logger().flush()
    }
}

/// `xgre_tx: drop reason 10` → `xgre_tx: drop (no_path)`.
fn named(msg: &str) -> String {
    let Some((head, n)) = msg.rsplit_once("drop reason ") else { return msg.to_string() };
    match n.trim().parse::<u32>().ok().and_then(gre_common::DropReason::from_repr) {
        Some(r) => format!("{head}drop ({})", gre_common::Slots::name(r)),
        None => msg.to_string(),
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.task.abort();
        let _ = set_debug(&mut self.meta_id, false);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn drop_reasons_are_named() {
        assert_eq!(super::named("xgre_tx: drop reason 10"), "xgre_tx: drop (no_path)");
        assert_eq!(super::named("xgre_rx_xdp: drop reason 999"), "xgre_rx_xdp: drop reason 999");
        assert_eq!(super::named("something else"), "something else");
    }
}
