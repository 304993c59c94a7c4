//! `publish`, `get` and `subscribe`: application data through gossip (see
//! [`crate::control::appdata`] for how it travels).

use super::app::{App, AppValue, Change};
use super::client::Client;
use super::{explain, print_json, table};
use crate::text::visible;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

/// How often `subscribe` looks for changes.
const SUBSCRIBE_POLL: Duration = Duration::from_millis(250);

/// `publish KEY VALUE [--ttl DUR]`.
pub async fn publish(
    client: &Client,
    key: &str,
    value: &str,
    ttl: Option<Duration>,
) -> anyhow::Result<ExitCode> {
    let app = App::from(client.clone());
    let answer = app.publish(key, value, ttl).await.map_err(explain)?;
    let line = match answer["expires"].as_str() {
        Some(x) => format!("{key} = {value} (expires {x})"),
        None => format!("{key} = {value}"),
    };
    println!("{}", visible(&line));
    Ok(ExitCode::SUCCESS)
}

fn app_json(v: &AppValue) -> serde_json::Value {
    serde_json::json!({
        "node": v.node, "key": v.key, "value": v.value, "at": v.at, "expires": v.expires,
    })
}

/// `get KEY [--json]`: every host's value (exit 1 if none publishes it).
pub async fn get(client: &Client, key: &str, json: bool) -> anyhow::Result<ExitCode> {
    let app = App::from(client.clone());
    let values = app.get(key).await.map_err(explain)?;
    let list: Vec<serde_json::Value> = values.iter().map(app_json).collect();
    if json {
        print_json(&serde_json::Value::Array(list))?;
    } else {
        print!("{}", table::render_app_values(&list));
    }
    Ok(ExitCode::SUCCESS)
}

/// `subscribe [PREFIX] [--json]`: every value under PREFIX, then each change, until stdout
/// closes.
pub async fn subscribe(client: &Client, prefix: &str, json: bool) -> anyhow::Result<ExitCode> {
    let app = App::from(client.clone());
    let mut subscription = app.subscribe(prefix);
    let mut first = true;
    loop {
        let changes = match subscription.changes().await {
            Ok(c) => c,
            Err(e) if first => return Err(explain(e)),
            Err(e) => {
                eprintln!("nbwatch: {}", visible(&format!("{:#}", explain(e))));
                tokio::time::sleep(SUBSCRIBE_POLL * 4).await;
                continue;
            }
        };
        first = false;
        let mut out = std::io::stdout().lock();
        for change in changes {
            let line = match (&change, json) {
                (Change::Set(v), true) => app_json(v).to_string(),
                (Change::Set(v), false) => {
                    visible(&format!("{} {} {} = {}", v.at, v.node, v.key, v.value)).into_owned()
                }
                (Change::Gone { node, key }, true) => {
                    serde_json::json!({ "node": node, "key": key, "gone": true }).to_string()
                }
                (Change::Gone { node, key }, false) => {
                    visible(&format!("- {node} {key} (gone)")).into_owned()
                }
            };
            // A closed pipe (`| head`) ends the subscription.
            if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                return Ok(ExitCode::SUCCESS);
            }
        }
        drop(out);
        tokio::time::sleep(SUBSCRIBE_POLL).await;
    }
}
