//! Helpers shared by the integration tests that run real daemons.
// Each test binary compiles this module and uses only some of it.
#![allow(dead_code)]

use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

pub mod daemons;
pub mod receiver;

/// Polls `check` every 100 ms until it gives a value; panics with what it last saw once
/// `deadline` has passed.
pub async fn wait_for<T>(
    what: &str,
    deadline: Duration,
    mut check: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let end = Instant::now() + deadline;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(seen) if Instant::now() >= end => {
                panic!("timed out after {deadline:?} waiting until {what}; last seen: {seen}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

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
