//! The config parser: any text either parses, and then writes back to a
//! config that parses to the same thing, or is refused with an error that
//! starts with the file's name. Never a panic.
#![no_main]

use gre_user::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Config::parse(text, "fuzz.toml") {
        Ok(c) => {
            let back = Config::parse(&c.to_toml(), "back.toml").expect("a config xgre wrote back parses");
            assert_eq!(back.fingerprint(), c.fingerprint(), "written back, the config changed");
        }
        Err(e) => assert!(e.to_string().starts_with("fuzz.toml:"), "an error that does not name the file: {e}"),
    }
});
