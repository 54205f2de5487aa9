//! A link rate, written as tc writes one (`300mbit`, `1gbit`, `500kbit`, a
//! bare number of bit/s), kept in kbit/s as the datapath takes it.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Rate {
    pub kbps: u32,
}

impl std::str::FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a rate (want a number and bit, kbit, mbit or gbit, like 300mbit)");
        let l = s.trim().to_ascii_lowercase();
        let (num, scale) = [("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3), ("bit", 1.0)]
            .iter()
            .find_map(|(unit, scale)| l.strip_suffix(unit).map(|n| (n.trim().to_string(), *scale)))
            .unwrap_or((l.clone(), 1.0));
        let v: f64 = num.parse().map_err(|_| bad())?;
        if !v.is_finite() || v <= 0.0 {
            return Err(bad());
        }
        let kbps = (v * scale / 1e3).round();
        if kbps < 1.0 || kbps > u32::MAX as f64 {
            return Err(format!("`{s}` is outside 1kbit..=4294gbit"));
        }
        Ok(Rate { kbps: kbps as u32 })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kbps {
            k if k % 1_000_000 == 0 => write!(f, "{}gbit", k / 1_000_000),
            k if k % 1_000 == 0 => write!(f, "{}mbit", k / 1_000),
            k => write!(f, "{k}kbit"),
        }
    }
}

impl fmt::Debug for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Rate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Rates are all-or-none among a peer's paths (or a host's links, `noun`)
/// and never beside a weight: the field (`"rate"` or `"weight"`) and why,
/// for the first rule `rate`/`weight` break against the first one's rate.
pub fn check_rate_or_weight(noun: &str, rate: Option<Rate>, first: Option<Rate>, weight: u32) -> Result<(), (&'static str, String)> {
    if rate.is_some() != first.is_some() {
        return Err(("rate", format!("give every {noun} a rate, or none (then weights share)")));
    }
    if rate.is_some() && weight != 1 {
        return Err(("weight", "set `rate` or `weight`, not both: rates are shares with units".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Rate;

    #[test]
    fn rates_read_and_write_as_tc_does() {
        let r = |s: &str| s.parse::<Rate>().map(|r| (r.kbps, r.to_string()));
        assert_eq!(r("300mbit"), Ok((300_000, "300mbit".into())));
        assert_eq!(r("1Gbit"), Ok((1_000_000, "1gbit".into())));
        assert_eq!(r("2.5gbit"), Ok((2_500_000, "2500mbit".into())));
        assert_eq!(r("64kbit"), Ok((64, "64kbit".into())));
        assert_eq!(r("1000000"), Ok((1_000, "1mbit".into())));
        assert!(r("fast").unwrap_err().contains("not a rate"));
        assert!(r("0mbit").is_err());
        assert!(r("10bit").unwrap_err().contains("outside"));
        assert!(r("5000gbit").unwrap_err().contains("outside"));
    }
}
