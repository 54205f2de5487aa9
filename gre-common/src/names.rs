//! Program and map names. The kernel keeps 15 characters of an object name, so
//! every name here fits in 15; the loader finds a running datapath by them.

/// TC egress on the tunnel device: decide where a packet goes (or drop it
/// where veth counts the drop).
pub const PROG_TX: &str = "xgre_tx";
/// TC ingress on the tunnel device's hidden veth end: encapsulate as
/// `xgre_tx` decided and send out of a link.
pub const PROG_TX_SEND: &str = "xgre_tx_send";
/// XDP receive on a link.
pub const PROG_RX_XDP: &str = "xgre_rx_xdp";
/// XDP receive on a link where the kernel refuses XDP programs metadata
/// (`bpf_xdp_adjust_meta`): hands `xgre run` its AF_XDP frames and passes
/// everything else to `xgre_rx_tc` on the same link.
pub const PROG_RX_XDP_NM: &str = "xgre_rx_xdp_nm";
/// TC ingress receive on a link.
pub const PROG_RX_TC: &str = "xgre_rx_tc";
/// TC ingress on a link received by XDP: hands frames XDP decapsulated to
/// the tunnel device.
pub const PROG_RX_HANDOFF: &str = "xgre_rx_handoff";

/// TC egress on a `gretap` tunnel device, before `xgre_tx`: ARP/ND
/// suppression (answer, keep local, learn what this host's side says).
pub const PROG_NEIGH_OUT: &str = "xgre_neigh_out";
/// TC ingress on a `gretap` tunnel device: learn what peers' sides say.
pub const PROG_NEIGH_IN: &str = "xgre_neigh_in";

pub const MAP_META: &str = "XGRE_META";
pub const MAP_TUNNELS: &str = "XGRE_TUNNELS";
pub const MAP_TUNNEL_BY_KEY: &str = "XGRE_TUN_KEY";
pub const MAP_PEERS: &str = "XGRE_PEERS";
pub const MAP_ROUTES4: &str = "XGRE_ROUTES4";
pub const MAP_ROUTES6: &str = "XGRE_ROUTES6";
pub const MAP_RX_PATHS: &str = "XGRE_RX_PATHS";
pub const MAP_LOCAL_ADDRS: &str = "XGRE_LOCAL";
pub const MAP_LINK_USERS: &str = "XGRE_LINK_USERS";
pub const MAP_PATH_STATS: &str = "XGRE_PATH_STATS";
pub const MAP_DROPS: &str = "XGRE_DROPS";
pub const MAP_TX_SEQ: &str = "XGRE_TX_SEQ";
pub const MAP_PATH_BYTES: &str = "XGRE_PATH_BYTES";
pub const MAP_SCRATCH: &str = "XGRE_SCRATCH";
pub const MAP_RX_SEQ: &str = "XGRE_RX_SEQ";
pub const MAP_REORDER: &str = "XGRE_REORDER";
/// Tunnel ifindex -> the tap `xgre run` resequences through (`resequence`).
pub const MAP_RESEQ_TAP: &str = "XGRE_RESEQ_TAP";
pub const MAP_REASM_TAP: &str = "XGRE_REASM_TAP";
/// Link ifindex -> the tunnel whose resequencer takes its numbered frames
/// over AF_XDP, and their slots (`reseq::ReseqLink`).
pub const MAP_RESEQ_LINK: &str = "XGRE_RESEQ_LINK";
/// Slot -> an AF_XDP socket of a resequencer, on one link's queue.
pub const MAP_RESEQ_XSK: &str = "XGRE_RESEQ_XSK";
pub const MAP_PATH_SEEN: &str = "XGRE_PATH_SEEN";
/// Each path's last round trip, measured by keepalive (ns).
pub const MAP_PATH_RTT: &str = "XGRE_PATH_RTT";
/// Peer id -> what it last announced about numbering, until when.
pub const MAP_ANNOUNCED: &str = "XGRE_ANNOUNCED";
/// Flow hash -> when the flow last sent a datagram too big to be light
/// (`light`), ns since boot.
pub const MAP_BULK_FLOWS: &str = "XGRE_BULK_FLOWS";
pub const MAP_FDB: &str = "XGRE_FDB";
pub const MAP_VLANS: &str = "XGRE_VLANS";
pub const MAP_NEIGH: &str = "XGRE_NEIGH";
pub const MAP_NEIGH_STATS: &str = "XGRE_NEIGH_STAT";
pub const MAP_FLOOD: &str = "XGRE_FLOOD";
pub const MAP_HDR: &str = "XGRE_HDR";
/// Path MTU learnt per path (`pmtu::PathMtu`).
pub const MAP_PATH_MTU: &str = "XGRE_PATH_MTU";
/// Outer address pairs in use (`pmtu::OuterPair`): whose fragments are
/// reassembled.
pub const MAP_OUTER_PAIRS: &str = "XGRE_PAIRS";
/// Path MTU and fragment events (`pmtu::PmtuEvent`), per CPU.
pub const MAP_PMTU_EVENTS: &str = "XGRE_PMTU_EV";
