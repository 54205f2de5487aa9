//! The flag words of the map values (`Tunnel::flags`, `Path::flags`,
//! `Peer::flags`), as bitflags: `repr(transparent)` over `u32`, so the
//! values keep their layout and stay `Pod`.

use bytemuck::{Pod, Zeroable};

bitflags::bitflags! {
    /// `Tunnel::flags`: how the tunnel's packets are built and read.
    #[repr(transparent)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
    pub struct TunnelFlags: u32 {
        /// A GRE key is sent.
        const KEY = 1 << 0;
        /// RFC 2890 sequence numbers.
        const SEQ = 1 << 1;
        /// GRE checksums (RFC 2784).
        const CSUM = 1 << 2;
        /// NVGRE (RFC 7637): the key is a 24-bit VSID and an 8-bit FlowID; the
        /// FlowID is taken from the inner flow's hash on transmit and ignored on
        /// receive.
        const NVGRE = 1 << 3;
        /// The tunnel's links are IPv6: outer IPv6 (next header 47).
        const UNDERLAY6 = 1 << 4;
        /// `device_counters = false`: packets skip the veth crossings that let the
        /// kernel count them in the tunnel device's statistics (a few percent
        /// faster; `ip -s link` then reads 0). Transmit keeps its crossing while
        /// packets need headers of their own: see [`crate::tx_crosses_pair`].
        const NO_DEV_COUNTERS = 1 << 5;
        /// `gretap` trunk: the key comes from the frame's VLAN (`XGRE_VLANS`), and
        /// received frames are tagged with the VLAN of their key.
        const TRUNK = 1 << 6;
        /// `arp_suppress = true` (`gretap`): ARP requests and Neighbour
        /// Solicitations for addresses known behind a peer are answered on this
        /// host; only the unknown ones are flooded (`XGRE_NEIGH`).
        const ARP_SUPPRESS = 1 << 7;
        /// `ip_id_sequence = true`: packets are numbered per peer as with
        /// `SEQ`, but in the outer IPv4 header's Identification field (16 bits,
        /// meaningless in a DF datagram, RFC 6864) instead of 4 more GRE bytes;
        /// receive takes a peer's IPv4 ID as its number. Between xgre peers only.
        const IPID_SEQ = 1 << 8;
        /// `ip_id_sequence` unset on a tunnel with a peer striped over paths of
        /// unequal speed: packets leave numbered in the outer IPv4 ID as with
        /// `IPID_SEQ` (harmless to any receiver, RFC 6864), but a peer's IDs
        /// are taken for numbers only while it announces that it numbers them
        /// (`announce.rs`).
        const IPID_SEQ_TX = 1 << 9;
        /// `resequence` unset: under `xgre run`, only the packets of peers that
        /// announce numbering are resequenced (with it set, every numbered one).
        const RESEQ_ANNOUNCED = 1 << 10;
        /// `pmtu_discovery = false` (Linux's `nopmtudisc`): the outer IPv4 header
        /// leaves with DF clear, so the underlay fragments what does not fit, and
        /// no oversized inner packet is refused with an ICMP error.
        const NO_PMTUDISC = 1 << 11;
        /// Tunnels that number their packets in the outer IPv4 ID.
        const IPID_NUMBERED = Self::IPID_SEQ.bits() | Self::IPID_SEQ_TX.bits();
        /// Tunnels that number their packets, one way or the other.
        const NUMBERED = Self::SEQ.bits() | Self::IPID_NUMBERED.bits();
        /// Tunnels whose every wire packet needs a header of its own.
        const PER_PACKET = Self::NUMBERED.bits() | Self::CSUM.bits();
    }

    /// `Path::flags`.
    #[repr(transparent)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
    pub struct PathFlags: u32 {
        /// In its peer's rotation.
        const UP = 1 << 0;
        /// The neighbour MAC came from the config (not from ARP).
        const STATIC_MAC = 1 << 2;
        /// Taken out of the rotation by the operator (`path set --down`); health
        /// checks never bring it back.
        const ADMIN_DOWN = 1 << 3;
        /// The peer's keepalive mode (`keepalive` of a `[[peer]]`), on each of its
        /// paths; neither bit: "auto", judged once the peer has answered a probe.
        /// Judged from the start: the peer is known to reflect keepalives.
        const KA_REQUIRED = 1 << 4;
        /// No keepalives to this peer.
        const KA_OFF = 1 << 5;
        /// A backup path (`standby = true`): used only while no other path of its
        /// peer is up.
        const STANDBY = 1 << 6;
        /// `xgre run` found the path unwell (its link down, or keepalives not
        /// coming back). Every writer of a peer keeps it, so an edit never puts a
        /// dead path back into the rotation; only `run` clears it.
        const UNHEALTHY = 1 << 7;
        /// `xgre run` measured this path's round trip as its peer's least,
        /// by more than the spread that turns numbering on. Pure TCP ACKs
        /// take it: their order means nothing to TCP, and over the slow
        /// path they would add its delay to every round trip.
        const FASTEST = 1 << 8;
        /// `xgre run` measured this path's round trip as more above its
        /// peer's fastest than resequencing can wait for: it is used as a
        /// backup (as `STANDBY`) while a faster path is up.
        const SLOW = 1 << 9;
    }

    /// `Peer::flags`.
    #[repr(transparent)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
    pub struct PeerFlags: u32 {
        /// The peer came from the mesh (etcd), not the config file: `xgre
        /// run` owns it, and `reload` and `show` leave it alone.
        const MESH = 1 << 0;
    }
}
