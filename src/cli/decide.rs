//! `pick` and `owner`: the local decisions made from the gossiped view (see
//! [`crate::control::pick`] and [`crate::control::owner`]).

use super::app::App;
use super::client::Client;
use super::{explain, print_json};
use crate::text::visible;
use serde_json::json;
use std::process::ExitCode;

/// `pick [--count K] [--by METRIC] [--exclude NODE,..] [--json]`: exit 1 when no live host
/// reports the metric.
pub async fn pick(
    client: &Client,
    count: usize,
    by: Option<&str>,
    exclude: &[String],
    json: bool,
) -> anyhow::Result<ExitCode> {
    let app = App::from(client.clone());
    let picked = app.pick(count, by, exclude).await.map_err(explain)?;
    if json {
        let list: Vec<_> = picked
            .iter()
            .map(|p| json!({"node": p.node, "addr": p.addr, "score": p.score}))
            .collect();
        print_json(&serde_json::Value::Array(list))?;
    } else {
        for p in &picked {
            println!(
                "{}",
                visible(&format!("{}\t{}\t{}", p.node, p.addr, p.score))
            );
        }
    }
    if picked.is_empty() {
        eprintln!(
            "nbwatch: no live host reports {}",
            by.unwrap_or(crate::control::pick::LOAD_PER_CORE)
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// `owner KEY [--replicas R] [--json]`: exit 1 when no host is live.
pub async fn owner(
    client: &Client,
    key: &str,
    replicas: usize,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let app = App::from(client.clone());
    let owners = app.owners(key, replicas).await.map_err(explain)?;
    if json {
        let list: Vec<_> = owners
            .iter()
            .map(|o| json!({"node": o.node, "addr": o.addr, "weight": o.weight}))
            .collect();
        print_json(&json!({"key": key, "owners": list}))?;
    } else {
        for o in &owners {
            println!("{}", visible(&format!("{}\t{}", o.node, o.addr)));
        }
    }
    Ok(if owners.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
