//! The node config: any bytes give a config or a list of problems naming file and key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Err(errors) = nbwatch::config::parse_bytes(Path::new("/fuzz/nbwatch.toml"), data, &[]) {
        for problem in errors.problems() {
            assert!(problem.file.starts_with("/fuzz") || problem.file == "defaults");
        }
    }
});
