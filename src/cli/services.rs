//! `services`, `restart|stop|start [NODE:]SERVICE` and `reload`: the supervised services of this
//! node (or, through the cluster, of another).

use super::client::Client;
use super::{explain, print_json, query, table};
use crate::text::visible;
use crate::types::Time;
use anyhow::Context;
use std::process::ExitCode;
use std::time::Duration;

/// How long a service command may take: a stop waits for the service's shutdown grace.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(130);

/// `services [--all] [--json]`.
pub async fn services(client: &Client, all: bool, json: bool) -> anyhow::Result<ExitCode> {
    let url = if all {
        "/api/v1/services?all=true"
    } else {
        "/api/v1/services"
    };
    let value = client.get(url).await.map_err(explain)?;
    if json {
        print_json(&value)?;
    } else {
        let services = value
            .as_array()
            .context("the daemon's services answer is not a JSON array")?;
        if all {
            print!("{}", table::render_all_services(services, Time::wall_now()));
        } else {
            print!("{}", table::render_services(services, Time::wall_now()));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `restart|stop|start [NODE:]SERVICE`: waits until it is done (another node's answer up
/// to `timeout`); exits 1, saying why, if it failed.
pub async fn act(
    client: &Client,
    target: &str,
    action: &str,
    timeout: Duration,
) -> anyhow::Result<ExitCode> {
    let (node, service) = match target.split_once(':') {
        Some((node, service)) => (Some(node), service),
        None => (None, target),
    };
    let usable = |s: &str| {
        !s.is_empty() && !s.contains(['/', '?', '#', '%', ':']) && !s.contains(char::is_whitespace)
    };
    if !usable(service) || node.is_some_and(|n| !usable(n)) {
        anyhow::bail!("{target:?} is not SERVICE or NODE:SERVICE");
    }
    let (url, wait) = match node {
        None => (
            format!("/api/v1/services/{service}/{action}"),
            COMMAND_TIMEOUT,
        ),
        Some(node) => {
            eprintln!(
                "{action}: {service} on {node}, waiting up to {} for its answer ...",
                humantime::format_duration(timeout)
            );
            (
                format!(
                    "/api/v1/nodes/{}/services/{service}/{action}?timeout={}ms",
                    query::encode(node),
                    timeout.as_millis()
                ),
                timeout + client.timeout(),
            )
        }
    };
    if node.is_none() {
        eprintln!("{action}: {service} ...");
    }
    let value = client
        .clone()
        .with_timeout(wait)
        .post(&url, &serde_json::json!({}))
        .await
        .map_err(explain)?;
    let state = value["status"]["state"].as_str().unwrap_or("unknown");
    let pid = value["status"]["pid"]
        .as_u64()
        .map_or(String::new(), |p| format!(" (pid {p})"));
    let line = match node {
        Some(node) => format!("{node}:{service}: {state}{pid}"),
        None => format!("{service}: {state}{pid}"),
    };
    println!("{}", visible(&line));
    Ok(ExitCode::SUCCESS)
}

/// `reload`: what the daemon started, stopped and changed.
pub async fn reload(client: &Client) -> anyhow::Result<ExitCode> {
    let value = client
        .clone()
        .with_timeout(COMMAND_TIMEOUT)
        .post("/api/v1/reload", &serde_json::json!({}))
        .await
        .map_err(explain)?;
    for what in ["started", "stopped", "changed", "unchanged"] {
        let names: Vec<&str> = value[what]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        if !names.is_empty() {
            println!("{what}: {}", visible(&names.join(", ")));
        }
    }
    println!("reloaded");
    Ok(ExitCode::SUCCESS)
}
