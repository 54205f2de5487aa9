//! Open vSwitch as an independent GRE peer: its userspace datapath
//! (`datapath_type=netdev`, no kernel module) in a test namespace, with its
//! own database, run and log folders in the test's directory. The daemons
//! run inside the namespace, so the topology's teardown (kill every process
//! of the namespace) stops them.
//!
//! Set-up facts, each of which breaks the peer when missed:
//! - the underlay NIC is a port of an OVS bridge, and the address lives on
//!   the bridge's internal port;
//! - that bridge has a MAC of its own, and the NIC answers no ARP
//!   (`arp_ignore=8`): otherwise the namespace's own kernel takes the GRE
//!   frames too and answers them with ICMP protocol-unreachable;
//! - offloads are off on the veths, so OVS reads finished checksums (it
//!   reads frames through a packet socket, as a NIC would put them on the
//!   wire).

use super::{sh, Host};

/// MAC of the underlay bridge's internal port (not the NIC's).
pub const UNDERLAY_MAC: &str = "02:00:00:00:0b:01";
/// MAC of the overlay bridge's internal port, where the inner address is.
pub const OVERLAY_MAC: &str = "02:00:00:00:0b:02";

pub struct Ovs {
    ns: String,
    dir: String,
}

impl Ovs {
    /// Start ovsdb-server and ovs-vswitchd in `host`'s namespace, and make
    /// `nic` (holding no address yet) a port of bridge `br0`, which gets
    /// `addr` (e.g. "198.18.0.20/24").
    pub fn start(host: &Host, dir: &std::path::Path, nic: &str, addr: &str) -> Ovs {
        let o = Ovs::daemons(host, &dir.join("ovs"));
        host.run(&format!("ethtool -K {nic} tx off rx off tso off gso off gro off"));
        host.run(&format!("sysctl -qw net.ipv4.conf.{nic}.arp_ignore=8"));
        o.vsctl(&format!("add-br br0 -- set bridge br0 datapath_type=netdev other-config:hwaddr={UNDERLAY_MAC} -- add-port br0 {nic}"));
        host.run(&format!("ip addr add {addr} dev br0"));
        host.run("ip link set br0 up");
        o
    }

    /// Only ovsdb-server and ovs-vswitchd, in `host`'s namespace, with
    /// their files in `dir`: bridges are the caller's.
    pub fn daemons(host: &Host, dir: &std::path::Path) -> Ovs {
        let dir = dir.display().to_string();
        let o = Ovs { ns: host.ns.clone(), dir };
        sh(&format!("rm -rf {d} && mkdir -p {d}", d = o.dir));
        o.run(&format!("ovsdb-tool create {d}/conf.db /usr/share/openvswitch/vswitch.ovsschema", d = o.dir));
        o.run(&format!(
            "ovsdb-server {d}/conf.db --remote=punix:{d}/db.sock --pidfile={d}/ovsdb.pid --detach --log-file={d}/ovsdb.log --unixctl={d}/ovsdb.ctl",
            d = o.dir
        ));
        o.vsctl("--no-wait init");
        o.run(&format!(
            "ovs-vswitchd unix:{d}/db.sock --pidfile={d}/vswitchd.pid --detach --log-file={d}/vswitchd.log --unixctl={d}/vswitchd.ctl",
            d = o.dir
        ));
        o
    }

    fn env(&self) -> String {
        let d = &self.dir;
        format!("nsenter --net=/run/netns/{} env OVS_RUNDIR={d} OVS_DBDIR={d} OVS_LOGDIR={d} OVS_SYSCONFDIR={d}", self.ns)
    }

    #[track_caller]
    pub fn run(&self, cmd: &str) -> String {
        sh(&format!("{} {cmd}", self.env()))
    }

    #[track_caller]
    pub fn vsctl(&self, args: &str) -> String {
        self.run(&format!("ovs-vsctl --db=unix:{}/db.sock {args}", self.dir))
    }

    #[track_caller]
    pub fn ofctl(&self, args: &str) -> String {
        self.run(&format!("ovs-ofctl {args}"))
    }

    /// Where its sockets, database and logs are.
    pub fn dir(&self) -> &str {
        &self.dir
    }

    /// The end of the vswitchd log, for failure messages.
    pub fn log_tail(&self) -> String {
        std::fs::read_to_string(format!("{}/vswitchd.log", self.dir))
            .map(|l| l.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    }
}
