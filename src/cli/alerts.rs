//! `alerts`, `alerts test`, `silence` and `silences`: the cluster's alert log and the silences
//! in force.

use super::client::Client;
use super::{explain, print_json, table};
use crate::text::visible;
use anyhow::Context;
use std::process::ExitCode;
use std::time::Duration;

/// How long `alerts test` waits for the leader to send.
const TEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Prints a JSON array as pretty JSON or, for people, as a table of `columns` (key, header).
fn print_list(
    value: &serde_json::Value,
    json: bool,
    columns: &[(&str, &str)],
) -> anyhow::Result<()> {
    if json {
        return print_json(value);
    }
    let rows: Vec<Vec<String>> = value
        .as_array()
        .context("the daemon's answer is not a JSON array")?
        .iter()
        .map(|row| {
            columns
                .iter()
                .map(|(key, _)| match &row[*key] {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Null => "-".to_string(),
                    serde_json::Value::Array(a) => a
                        .iter()
                        .map(|x| match x {
                            serde_json::Value::Object(o) => format!(
                                "{}: {}",
                                o.get("sink").and_then(|v| v.as_str()).unwrap_or("?"),
                                o.get("result").and_then(|v| v.as_str()).unwrap_or("?")
                            ),
                            other => other.to_string(),
                        })
                        .collect::<Vec<_>>()
                        .join("; "),
                    other => other.to_string(),
                })
                .collect()
        })
        .collect();
    let headers: Vec<&str> = columns.iter().map(|(_, h)| *h).collect();
    print!("{}", table::render_table(&headers, &rows));
    Ok(())
}

/// `alerts [--json]`.
pub async fn alerts(client: &Client, json: bool) -> anyhow::Result<ExitCode> {
    let value = client.get("/api/v1/alerts").await?;
    print_list(
        &value,
        json,
        &[
            ("id", "INCIDENT"),
            ("state", "STATE"),
            ("by", "BY"),
            ("at", "AT"),
            ("sinks", "SINKS"),
        ],
    )?;
    Ok(ExitCode::SUCCESS)
}

/// How many times (200 ms apart) `alerts test` looks for a node that can send before it says
/// there is none.
const SENDER_LOOKS: usize = 15;

/// `alerts test`: asks for a test alert, then waits until the node that sends alerts has sent
/// it (a sink accepted it).
pub async fn test(client: &Client) -> anyhow::Result<ExitCode> {
    // A daemon that has just started may not have heard from the one with sinks yet.
    let mut no_sender = true;
    for _ in 0..SENDER_LOOKS {
        let overview = client.get("/api/v1/overview").await?;
        no_sender = overview.get("sender") == Some(&serde_json::Value::Null);
        if !no_sender {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if no_sender {
        anyhow::bail!(
            "no live node can send alerts: none has an [[alerts.sinks]] entry that can deliver (its secret file readable, its program there)"
        );
    }
    let asked = client
        .post("/api/v1/alerts/test", &serde_json::json!({}))
        .await
        .map_err(explain)?;
    let id = asked["id"]
        .as_str()
        .context("no incident id in the answer")?
        .to_string();
    eprintln!("test alert {id}: waiting for the node that sends alerts to send it ...");
    let deadline = tokio::time::Instant::now() + TEST_TIMEOUT;
    loop {
        let log = client.get("/api/v1/alerts").await?;
        if let Some(entry) = log.as_array().and_then(|a| {
            a.iter()
                .find(|e| e["id"] == id.as_str() && e["state"] == "sent")
        }) {
            let line = format!("{id}: sent by {}", entry["by"].as_str().unwrap_or("?"));
            println!("{}", visible(&line));
            return Ok(ExitCode::SUCCESS);
        }
        if tokio::time::Instant::now() >= deadline {
            let entry = log
                .as_array()
                .and_then(|a| a.iter().find(|e| e["id"] == id.as_str()));
            let why = match entry {
                Some(e) if e["state"] == "failed" => {
                    format!(
                        ": every sink of {} refused it ({})",
                        text(e, "by"),
                        visible(&e["sinks"].to_string())
                    )
                }
                Some(e) if e["state"] == "waiting" => {
                    ": no live node can deliver it (none has a ready sink)".to_string()
                }
                _ => String::new(),
            };
            anyhow::bail!(
                "{id} was not sent within {}{why}",
                humantime::format_duration(TEST_TIMEOUT)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn text(v: &serde_json::Value, key: &str) -> String {
    visible(v[key].as_str().unwrap_or("?")).into_owned()
}

/// `silence NODE[:SERVICE] --for DUR [--reason TEXT]`.
pub async fn silence(
    client: &Client,
    target: &str,
    duration: Duration,
    reason: &str,
) -> anyhow::Result<ExitCode> {
    let duration = format!("{}ms", duration.as_millis());
    let body = serde_json::json!({ "target": target, "for": duration, "reason": reason });
    let answer = client
        .post("/api/v1/silences", &body)
        .await
        .map_err(explain)?;
    let line = format!(
        "{target}: silenced until {}",
        answer["until"].as_str().unwrap_or("?")
    );
    println!("{}", visible(&line));
    Ok(ExitCode::SUCCESS)
}

/// `silences [--json]`.
pub async fn silences(client: &Client, json: bool) -> anyhow::Result<ExitCode> {
    let value = client.get("/api/v1/silences").await?;
    print_list(
        &value,
        json,
        &[
            ("target", "TARGET"),
            ("by", "BY"),
            ("until", "UNTIL"),
            ("reason", "REASON"),
        ],
    )?;
    Ok(ExitCode::SUCCESS)
}
