//! What a config implies beyond its fields: loading, fingerprints, headers,
//! keys, numbering and segmentation.

use std::path::Path;

use super::*;

impl Config {
    /// Read, parse and validate a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let err = |reason: String| ConfigError { file: file.clone(), field: "-".into(), reason };
        // At most one byte past the limit is read: a device that never
        // ends (/dev/zero) or a huge file is refused, not read into memory.
        let mut text = String::new();
        let f = std::fs::File::open(path).map_err(|e| err(format!("cannot read: {e}")))?;
        std::io::Read::read_to_string(&mut std::io::Read::take(f, MAX_CONFIG_BYTES + 1), &mut text)
            .map_err(|e| err(format!("cannot read: {e}")))?;
        if text.len() as u64 > MAX_CONFIG_BYTES {
            return Err(err(format!("longer than {} MiB; a config with 10,000 peers is about 2 MiB", MAX_CONFIG_BYTES >> 20)));
        }
        Self::parse(&text, &file)
    }

    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let cfg: Config = serde_path_to_error::deserialize(toml::Deserializer::new(text)).map_err(|e| toml_error(file, text, e))?;
        cfg.validate(file)?;
        Ok(cfg)
    }

    /// Fingerprint of the whole config: `up` with an unchanged file is a
    /// no-op. Order-insensitive where order means nothing (links, peers,
    /// routes, addresses), so `xgre show` output fingerprints the same.
    pub fn fingerprint(&self) -> u64 {
        let mut c = self.clone();
        // What the file says: `[mesh]` is read by `xgre run` only, and the
        // peers it brings change while the file does not.
        c.mesh = None;
        c.peers.retain(|p| p.origin == Origin::File);
        for l in &mut c.links {
            l.weight = default_weight();
            l.rate = None;
        }
        c.links.sort_by(|a, b| a.dev.cmp(&b.dev));
        c.groups.sort_by_key(|g| g.address);
        for g in &mut c.groups {
            g.peers.sort();
        }
        c.peers.sort_by(|a, b| a.name.cmp(&b.name));
        c.tunnel.address.sort();
        for p in &mut c.peers {
            p.routes.sort();
            p.macs.sort();
        }
        // Stored in the tunnel map and compared by later runs, possibly of a
        // newer build: a defined digest of the canonical text, not
        // DefaultHasher, whose output may change between Rust releases.
        // TOML leaves unset optional fields out, so a field a later
        // release adds does not change the fingerprint of configs that do
        // not use it.
        fingerprint_of(&c.to_toml())
    }

    /// The tunnel and links of this config, with no peers (cheap to clone
    /// for a one-peer change).
    pub fn clone_without_peers(&self) -> Config {
        Config { tunnel: self.tunnel.clone(), links: self.links.clone(), peers: vec![], groups: self.groups.clone(), mesh: None }
    }

    /// What a file should hold of a running tunnel: not the mesh's peers,
    /// which register themselves (a file naming them would clash).
    pub fn without_mesh_peers(&self) -> Config {
        let mut c = self.clone();
        c.peers.retain(|p| p.origin == Origin::File);
        c
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a config always serializes")
    }

    pub fn link(&self, dev: &str) -> Option<&LinkConfig> {
        self.links.iter().find(|l| l.dev == dev)
    }

    /// The `gso_max_segs` the tunnel device gets: how many segments one
    /// transmit program run may send down one path.
    pub fn gso_max_segs(&self) -> Option<u32> {
        let t = &self.tunnel;
        if self.peers.iter().any(|p| p.paths.len() > 1) {
            return Some(t.stripe_burst.unwrap_or(DEFAULT_STRIPE_BURST));
        }
        t.stripe_burst
    }

    /// The kernel routes `peer` gets. Their `reordering` metric is set
    /// when the peer stripes, that is when more than one of its paths is not
    /// a standby.
    pub fn peer_routes<'a>(&self, peer: &'a PeerConfig) -> PeerRoutes<'a> {
        let n = self.tunnel.tcp_reordering.unwrap_or(0);
        let striping = peer.paths.iter().filter(|p| !p.standby).count() > 1;
        PeerRoutes { routes: &peer.routes, reordering: (n != 0 && striping).then_some(n) }
    }

    /// Peers striped over non-standby paths of unequal weight or rate,
    /// whose packets overtake each other by more than TCP tolerates (300+100
    /// with BBR: 3.6-8.9% of segments retransmitted, issue 10), with their
    /// index and what is unequal ("weight" or "rate").
    pub fn unequal_peers(&self) -> impl Iterator<Item = (usize, &PeerConfig, &'static str)> {
        self.peers.iter().enumerate().filter_map(|(i, peer)| {
            let shares: Vec<u32> = peer.paths.iter().filter(|p| !p.standby).map(|p| p.rate.map_or(p.weight, |r| r.kbps)).collect();
            let unequal = shares.iter().any(|&s| s != shares[0]);
            unequal.then_some((i, peer, if peer.paths.iter().any(|p| p.rate.is_some()) { "rate" } else { "weight" }))
        })
    }

    /// Whether packets leave numbered in the outer IPv4 ID without
    /// `ip_id_sequence` saying so: a peer is striped over unequal paths, so
    /// it will want to put them back in order, and nothing else numbers
    /// them. Harmless to any receiver (RFC 6864); an xgre receiver takes
    /// the IDs for numbers only while `xgre run` here announces them.
    pub fn auto_ip_id_sequence(&self) -> bool {
        let t = &self.tunnel;
        !t.ip_id_sequence && !t.sequence && !self.underlay6() && self.unequal_peers().next().is_some()
    }

    /// Whether `xgre run` starts a resequencer without `resequence` saying
    /// so, for the packets of peers that announce numbering: some peer
    /// stripes (more than one path not a standby), so it may stripe back.
    pub fn auto_resequence(&self) -> bool {
        self.tunnel.resequence.is_none() && self.peers.iter().any(|p| p.paths.iter().filter(|q| !q.standby).count() > 1)
    }

    /// What a valid config will do that its author likely does not want,
    /// as lines naming the file and the field. Today one thing: a peer
    /// striped over paths of unequal speed whose packets will not be put
    /// back in order, because this end turns resequencing off, or cannot
    /// number or announce its own.
    pub fn advice(&self, file: &str) -> Vec<String> {
        let t = &self.tunnel;
        let mut out = Vec::new();
        for (i, peer, what) in self.unequal_peers() {
            let why = if t.resequence == Some(0) {
                "`resequence = 0` here delivers the peer's packets as they arrive; leave it unset (resequenced when the peer announces numbers) or set it".to_string()
            } else if self.underlay6() && !t.sequence {
                "IPv6 links have no IPv4 ID to number packets in by themselves; set tunnel.sequence = true on both ends".to_string()
            } else if t.keepalive == 0 || peer.keepalive == KeepaliveMode::Off {
                let field = if t.keepalive == 0 { "tunnel.keepalive = 0".to_string() } else { format!("peer[{i}].keepalive = \"off\"") };
                format!("{field}: numbering is announced with keepalives, so the peer will not resequence unless it sets `resequence`")
            } else {
                continue;
            };
            out.push(format!("{file}: peer[{i}] `{}`: paths of unequal {what} reorder one TCP connection's packets; {why}", peer.name));
        }
        out
    }

    /// Whether every wire packet needs a header of its own (an RFC 2890
    /// sequence number, a checksum): the tunnel device then segments GSO
    /// packets itself (TSO off) before they reach the transmit program, in
    /// the veth crossing its transmit then makes whatever `device_counters`
    /// says (`gre_common::tx_crosses_pair`). Numbers in the outer IPv4 ID
    /// need not: GSO counts them up segment by segment.
    pub fn segments_per_packet(&self) -> bool {
        self.tunnel.sequence || self.tunnel.checksum
    }

    /// Bytes of outer header the tunnel adds on an IPv4 underlay (IP + GRE,
    /// and the inner Ethernet header in `gretap` mode).
    pub fn overhead(&self) -> u32 {
        let t = &self.tunnel;
        let gre = gre_common::GreHdr::len_for(t.checksum, t.key.is_some() || t.vsid.is_some() || self.is_trunk(), t.sequence) as u32;
        let eth = if t.mode == Mode::Gretap { 14 } else { 0 };
        let ip = if self.underlay6() { 40 } else { 20 };
        ip + gre + eth
    }

    /// Whether the links (and so every path) are IPv6.
    pub fn underlay6(&self) -> bool {
        self.links.first().is_some_and(|l| l.address.is_ipv6())
    }

    /// A `gretap` trunk: keys come from VLANs.
    pub fn is_trunk(&self) -> bool {
        !self.tunnel.vlans.is_empty()
    }

    /// Every key this tunnel receives: one, or a trunk's VLAN keys and its
    /// native key.
    pub fn key_lookups(&self) -> Vec<gre_common::KeyLookup> {
        if !self.is_trunk() {
            return vec![self.key_lookup()];
        }
        let t = &self.tunnel;
        t.vlans.iter().map(|v| v.key).chain(t.native_key).map(|key| gre_common::KeyLookup { key, has_key: 1 }).collect()
    }

    /// The receive-side key lookup of this tunnel.
    pub fn key_lookup(&self) -> gre_common::KeyLookup {
        let t = &self.tunnel;
        match (t.vsid, t.key) {
            (Some(v), _) => gre_common::KeyLookup { key: v << 8, has_key: gre_common::KEY_NVGRE },
            (None, Some(k)) => gre_common::KeyLookup { key: k, has_key: 1 },
            (None, None) => gre_common::KeyLookup { key: 0, has_key: 0 },
        }
    }

    /// What the key lookup means, for messages.
    pub fn key_text(&self) -> String {
        if self.is_trunk() {
            let keys: Vec<String> = self.key_lookups().iter().map(|k| k.key.to_string()).collect();
            return format!("trunk keys {}", keys.join(", "));
        }
        match (self.tunnel.vsid, self.tunnel.key) {
            (Some(v), _) => format!("VSID {v}"),
            (None, Some(k)) => format!("key {k}"),
            (None, None) => "packets without a key".into(),
        }
    }
}
