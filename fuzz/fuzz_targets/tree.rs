//! A supervision tree file: any text gives a tree or problems, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut problems = Vec::new();
    let tree =
        nbwatch::supervision::spec::parse_tree(Path::new("/fuzz/tv.toml"), text, &mut problems);
    assert!(
        tree.is_some() || !problems.is_empty(),
        "refused without saying why"
    );
});
