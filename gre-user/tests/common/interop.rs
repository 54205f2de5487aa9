//! What the interop suites share: the cases, xgre's side of each, and the
//! checks on what tshark saw on the wire.

use serde_json::Value;

use super::{p2p_config, Enter, Host};

/// One combination of GRE settings, both sides alike.
#[derive(Clone, Copy, Debug)]
pub struct Case {
    /// gretap (Ethernet inside); else gre (IP inside).
    pub tap: bool,
    pub key: Option<u32>,
    pub csum: bool,
    pub seq: bool,
}

/// The fields `check_frames` reads, for `Capture::start_all`.
pub const FRAME_FIELDS: [&str; 6] =
    ["ip.src", "frame.len", "gre.checksum.status", "gre.sequence_number", "_ws.malformed", "_ws.expert.message"];

pub fn status(h: &Host) -> Value {
    serde_json::from_str(&h.xgre_ok(Enter::Nsenter, "status --json")).expect("status --json is JSON")
}

/// The drop reasons that counted anything.
pub fn drops(s: &Value) -> Vec<(String, u64)> {
    s["drops"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_u64().unwrap())).filter(|(_, v)| *v > 0).collect()
}

/// xgre's side of `c` on link `dev` (198.18.0.10, the peer at .20), from
/// the standard point-to-point config.
pub fn xgre_config(c: Case, dev: &str) -> String {
    let mut extra = String::new();
    if let Some(k) = c.key {
        extra += &format!("key = {k}\n");
    }
    if c.csum {
        extra += "checksum = true\n";
    }
    if c.seq {
        extra += "sequence = true\n";
    }
    let cfg = p2p_config('a', &extra, "tc").replace("\"va\"", &format!("\"{dev}\""));
    if !c.tap {
        return cfg;
    }
    cfg.replace("mode = \"gre\"", "mode = \"gretap\"")
        .replace("address = [\"198.19.100.1/32\"]", "address = [\"198.19.100.1/24\"]")
        .replace("routes = [\"198.19.100.2/32\"]\n", "")
}

/// tshark's view of both sides' frames (`FRAME_FIELDS`, every occurrence):
/// nothing malformed, no GRE or checksum warning, every checksum good, the
/// DF ping at the tunnel MTU exactly one 1500-byte outer packet, and each
/// side's sequence numbers consecutive. `peer` is the other side's outer
/// address.
#[track_caller]
pub fn check_frames(c: Case, pkts: &[Vec<String>], peer: &str) {
    let mut seqs: [Vec<u64>; 2] = [vec![], vec![]];
    for p in pkts {
        assert!(p[4].is_empty(), "{c:?}: tshark calls a frame malformed: {p:?}");
        for m in p[5].split(';') {
            let m = m.to_lowercase();
            assert!(!(m.contains("gre") || m.contains("checksum") || m.contains("malformed")), "{c:?}: tshark warns: {p:?}");
        }
        if c.csum {
            assert_eq!(p[2], "1", "{c:?}: tshark verifies the GRE checksum (1 = good): {p:?}");
        }
        if c.seq {
            seqs[p[0].starts_with(peer) as usize].push(p[3].parse().unwrap());
        }
    }
    let largest = pkts.iter().map(|p| p[1].parse::<u32>().unwrap()).max().unwrap();
    assert_eq!(largest, 1514, "{c:?}: the DF ping at the tunnel MTU is one full 1500-byte outer packet");
    for (side, s) in seqs.iter().enumerate() {
        assert!(s.windows(2).all(|w| w[1] == w[0] + 1), "{c:?}: side {side}: {s:?}");
    }
}

/// Where each side's numbering starts: the sequence number of the first
/// frame from `src` among `first` (fields ip.src, gre.sequence_number).
pub fn first_seq(first: &[Vec<String>], src: &str) -> Option<String> {
    first.iter().find(|p| p[0] == src).map(|p| p[1].clone())
}
