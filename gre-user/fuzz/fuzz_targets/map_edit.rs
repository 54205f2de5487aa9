//! The `map-edit` line parser (also `--batch` lines): any line either
//! parses to an edit, which applied to a running config yields a config
//! that validates or is refused with a reason, or is refused itself. Never
//! a panic.
#![no_main]

use gre_user::config::{edit, Config};
use libfuzzer_sys::fuzz_target;

const BASE: &str = include_str!("../seeds/config/two-peers.toml");

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else { return };
    let Ok(e) = edit::parse_line(line) else { return };
    let base = Config::parse(BASE, "base.toml").expect("the base config parses");
    if let Ok(c) = edit::apply_edit(&base, &e) {
        if c.validate("edited.toml").is_ok() {
            let back = Config::parse(&c.to_toml(), "back.toml").expect("an edited, valid config writes back");
            assert_eq!(back.fingerprint(), c.fingerprint());
        }
    }
});
