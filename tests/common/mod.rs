//! Helpers shared by the integration tests that run real daemons.
// Each test binary compiles this module and uses only some of it.
#![allow(dead_code)]

use serde_json::Value;
use std::path::Path;

/// The alerts an exec sink appended to `file`, one JSON object per line.
pub fn sunk(file: &Path) -> Vec<Value> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Those of them whose incident id starts with `prefix`.
pub fn sunk_ids(file: &Path, prefix: &str) -> Vec<Value> {
    sunk(file)
        .into_iter()
        .filter(|a| a["id"].as_str().is_some_and(|id| id.starts_with(prefix)))
        .collect()
}
