//! `cluster-config push FILE` and `cluster-config show [--json]`: the cluster settings
//! document (`control::settings`).

use super::app::App;
use super::client::{Client, ClientError};
use super::{explain, print_json};
use crate::text::visible;
use anyhow::Context;
use serde_json::Value;
use std::path::Path;
use std::process::ExitCode;

/// `cluster-config push FILE`: its problems are shown against FILE, one per line.
pub async fn push(client: &Client, file: &Path) -> anyhow::Result<ExitCode> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let app = App::from(client.clone());
    match app.push_cluster_config(&text).await {
        Ok(value) => {
            let signed = match value["signed_by"].as_str() {
                Some(op) => format!("signed by operator {op}"),
                None => "unsigned".to_string(),
            };
            let line = format!(
                "pushed cluster settings {} by {} ({signed}); every host applies them as \
                 gossip spreads them (`nbwatch cluster-config show`)",
                value["version"].as_str().unwrap_or("?"),
                value["author"].as_str().unwrap_or("?"),
            );
            println!("{}", visible(&line));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => match problems(&e) {
            Some(problems) => {
                eprintln!("{}: refused, nothing was pushed:", file.display());
                for (key, message) in problems {
                    let line = match key.is_empty() {
                        true => format!("{}: {message}", file.display()),
                        false => format!("{}: {key}: {message}", file.display()),
                    };
                    eprintln!("{}", visible(&line));
                }
                Ok(ExitCode::from(1))
            }
            None => Err(explain(e)),
        },
    }
}

/// The problems of a refused document, if that is why the daemon refused it.
fn problems(e: &ClientError) -> Option<Vec<(String, String)>> {
    let ClientError::Status { body, .. } = e else {
        return None;
    };
    let v: Value = serde_json::from_str(body).ok()?;
    let list = v.get("problems")?.as_array()?;
    Some(
        list.iter()
            .map(|p| {
                let text = |k: &str| p[k].as_str().unwrap_or("").to_string();
                (text("key"), text("message"))
            })
            .collect(),
    )
}

/// `cluster-config show [--json]`.
pub async fn show(client: &Client, json: bool) -> anyhow::Result<ExitCode> {
    let value = App::from(client.clone())
        .cluster_config()
        .await
        .map_err(explain)?;
    if json {
        print_json(&value)?;
    } else {
        print!("{}", render(&value));
    }
    Ok(ExitCode::SUCCESS)
}

/// The text of `show`: a few lines about the document, then the document.
pub fn render(value: &Value) -> String {
    let Some(version) = value["version"].as_str() else {
        return "no cluster settings were pushed: each host uses its own [alerts]\n".to_string();
    };
    let names = |k: &str| -> Vec<String> {
        (value[k].as_array().into_iter().flatten())
            .filter_map(|n| n.as_str().map(str::to_string))
            .collect()
    };
    let (applied, behind) = (names("applied_by"), names("behind"));
    let mut out = format!("version    {version}\n");
    out += &format!("author     {}\n", value["author"].as_str().unwrap_or("?"));
    out += &format!("time       {}\n", value["time"].as_str().unwrap_or("?"));
    out += &match value["signed_by"].as_str() {
        Some(op) => format!("signed by  operator {op}\n"),
        None => "signed by  nobody (exec sinks only by command_name)\n".to_string(),
    };
    out += &format!(
        "applied by {} of {} live hosts{}\n",
        applied.len(),
        applied.len() + behind.len(),
        match behind.is_empty() {
            true => String::new(),
            false => format!(" (not yet: {})", behind.join(", ")),
        }
    );
    out += "\n";
    out += value["content"].as_str().unwrap_or("");
    // Line by line: a control character in a name or the document is shown escaped.
    out.lines().map(|l| format!("{}\n", visible(l))).collect()
}
