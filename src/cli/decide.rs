//! `pick` and `owner`: the local decisions made from the gossiped view (see
//! [`crate::control::pick`] and [`crate::control::owner`]); `unreachable` and `reachability`:
//! what applications and hosts know of who reaches whom.

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

/// `unreachable NODE [--reason TEXT]`.
pub async fn unreachable(client: &Client, node: &str, reason: &str) -> anyhow::Result<ExitCode> {
    let app = App::from(client.clone());
    let reports = app.unreachable(node, reason).await.map_err(explain)?;
    let line = format!("{node}: probing it now ({reports} reports from applications here)");
    println!("{}", visible(&line));
    Ok(ExitCode::SUCCESS)
}

/// `reachability [--json]`: a grid, `from` in rows and `to` in columns: `yes` (heard directly
/// within the window), `NO`, `?` (the row's host does not say), `-` (itself).
pub async fn reachability(client: &Client, json: bool) -> anyhow::Result<ExitCode> {
    let value = client.get("/api/v1/reachability").await?;
    if json {
        print_json(&value)?;
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", render_reachability(&value));
    Ok(ExitCode::SUCCESS)
}

/// The grid of a reachability answer, and a line per row with more unheard hosts than fit.
pub fn render_reachability(value: &serde_json::Value) -> String {
    let names: Vec<&str> = (value["nodes"].as_array().into_iter().flatten())
        .filter_map(|n| n.as_str())
        .collect();
    let mut headers = vec!["FROM\\TO"];
    headers.extend(names.iter().copied());
    let rows: Vec<Vec<String>> = (value["rows"].as_array().into_iter().flatten())
        .map(|row| {
            let from = row["node"].as_str().unwrap_or("?");
            let unheard: Vec<&str> = (row["unheard"].as_array().into_iter().flatten())
                .filter_map(|n| n.as_str())
                .collect();
            let mut cells = vec![visible(from).into_owned()];
            for to in &names {
                cells.push(
                    if *to == from {
                        "-"
                    } else if row["known"] != true {
                        "?"
                    } else if unheard.contains(to) {
                        "NO"
                    } else {
                        "yes"
                    }
                    .to_string(),
                );
            }
            cells
        })
        .collect();
    let mut out = super::table::render_table(&headers, &rows);
    for row in value["rows"].as_array().into_iter().flatten() {
        if let Some(more) = row["more"].as_u64().filter(|m| *m > 0) {
            let from = row["node"].as_str().unwrap_or("?");
            out.push_str(&format!("{}: {more} more hosts not heard\n", visible(from)));
        }
    }
    out.push_str(&format!(
        "(heard directly within the last {} s)\n",
        value["window_s"].as_u64().unwrap_or(0)
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grid_marks_who_does_not_hear_whom_and_who_does_not_say() {
        let v = json!({"window_s": 120, "nodes": ["a", "b", "c"], "rows": [
            {"node": "a", "known": true, "hears": ["b"], "unheard": ["c"], "more": 0},
            {"node": "b", "known": true, "hears": ["a", "c"], "unheard": [], "more": 0},
            {"node": "c", "known": false, "hears": [], "unheard": [], "more": 0}]});
        let text = render_reachability(&v);
        let lines: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(lines[0], ["FROM\\TO", "a", "b", "c"]);
        assert_eq!(lines[1], ["a", "-", "yes", "NO"]);
        assert_eq!(lines[2], ["b", "yes", "-", "yes"]);
        assert_eq!(lines[3], ["c", "?", "?", "-"]);
        assert!(
            text.ends_with("(heard directly within the last 120 s)\n"),
            "{text}"
        );
    }
}
