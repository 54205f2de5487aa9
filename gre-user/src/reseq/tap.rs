//! The hand-off through a tap: the receive programs send each numbered
//! frame a socket does not take (TC receive, and whatever AF_XDP cannot
//! have: `xsk`) to a tap device of `xgre run`'s, read one `read` at a
//! time.

use std::{
    fs::File,
    io::Read,
    os::fd::{AsRawFd, RawFd},
};

use anyhow::Result;

use crate::net::netlink::Netlink;

/// The tap's queue: 20 ms of 1500-byte frames at 1 Gbit/s, so a thread
/// that falls briefly behind does not lose any.
const TAP_QUEUE: u32 = 2000;

pub(crate) struct TapIn {
    tap: File,
    buf: Vec<u8>,
}

impl TapIn {
    /// Tap `name`, gone when this closes it. Returns its ifindex too, for
    /// the datapath.
    pub(crate) async fn open(nl: &Netlink, name: &str) -> Result<(TapIn, u32)> {
        let (tap, index) = crate::net::tap::open(nl, name, TAP_QUEUE).await?;
        Ok((TapIn { tap, buf: vec![0; 65536] }, index))
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.tap.as_raw_fd()
    }

    /// Give up to `max` waiting frames to `f`; how many there were.
    pub(crate) fn receive(&mut self, max: usize, f: &mut dyn FnMut(&mut [u8])) -> usize {
        let mut n = 0;
        while n < max {
            let Ok(len) = self.tap.read(&mut self.buf) else { break };
            f(&mut self.buf[..len]);
            n += 1;
        }
        n
    }
}
