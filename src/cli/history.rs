//! `events` and `history`: what this host's history recorded about the cluster.

use super::client::Client;
use super::{explain, print_json, query, table};
use crate::text::visible;
use anyhow::Context;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

/// How often `events --follow` asks for new events.
const FOLLOW_POLL: Duration = Duration::from_secs(1);

/// A duration as the API's `since` parameter.
fn since_param(since: Option<Duration>) -> Option<String> {
    since.map(|d| format!("{}ms", d.as_millis()))
}

/// `events [--since DUR] [--node NAME] [--follow] [--json]`.
pub async fn events(
    client: &Client,
    since: Option<Duration>,
    node: Option<String>,
    follow: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let query = |after: Option<i64>| {
        query::with_query(
            "/api/v1/events",
            &[
                ("since", since_param(since)),
                ("node", node.clone()),
                ("after", after.map(|a| a.to_string())),
            ],
        )
    };
    let value = client.get(&query(None)).await.map_err(explain)?;
    let list = value
        .as_array()
        .context("the daemon's events answer is not a JSON array")?;
    if !follow {
        if json {
            print_json(&value)?;
        } else {
            print!("{}", table::render_events(list));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let print = |e: &serde_json::Value| {
        let line = if json {
            e.to_string()
        } else {
            table::event_line(e)
        };
        let mut out = std::io::stdout().lock();
        // A closed pipe (`| head`) ends the follow; nothing else to do about it.
        writeln!(out, "{line}").and_then(|()| out.flush())
    };
    let mut last = None;
    for e in list {
        if print(e).is_err() {
            return Ok(ExitCode::SUCCESS);
        }
        last = e["id"].as_i64().max(last);
    }
    loop {
        tokio::time::sleep(FOLLOW_POLL).await;
        let after = match last {
            Some(id) => Some(id),
            // No database yet (or empty): everything from now on has a higher id than 0.
            None => Some(0),
        };
        let value = match client.get(&query(after)).await {
            Ok(value) => value,
            Err(e) => {
                eprintln!("nbwatch: {}", visible(&format!("{:#}", explain(e))));
                continue;
            }
        };
        for e in value.as_array().map(Vec::as_slice).unwrap_or_default() {
            // The in-memory fallback has no ids: it is shown once, not repeated.
            let Some(id) = e["id"].as_i64() else { continue };
            if print(e).is_err() {
                return Ok(ExitCode::SUCCESS);
            }
            last = Some(id).max(last);
        }
    }
}

/// `history NODE [--metric NAME] [--since DUR] [--json]`.
pub async fn history(
    client: &Client,
    node: String,
    metric: Option<String>,
    since: Option<Duration>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    if node.trim().is_empty() {
        anyhow::bail!("the node name is empty");
    }
    let path = query::with_query(
        &format!("/api/v1/history/{}", query::encode(&node)),
        &[("metric", metric), ("since", since_param(since))],
    );
    let value = client.get(&path).await.map_err(explain)?;
    if json {
        print_json(&value)?;
    } else {
        let samples = value
            .as_array()
            .context("the daemon's history answer is not a JSON array")?;
        print!("{}", table::render_history(samples));
    }
    Ok(ExitCode::SUCCESS)
}
