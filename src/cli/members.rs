//! `status` and `members`: the cluster as this node sees it, on one screen or as a table.

use super::client::Client;
use super::{explain, print_json, status, table};
use crate::types::Time;
use anyhow::Context;
use serde_json::Value;
use std::process::ExitCode;

/// The exit code of `status` when something needs a person.
const EXIT_ATTENTION: u8 = 3;

/// `status [--json]`: exits 3 when something needs a person.
pub async fn status(client: &Client, json: bool) -> anyhow::Result<ExitCode> {
    let value = client.get("/api/v1/overview").await.map_err(explain)?;
    let colour = status::use_colour(
        std::io::IsTerminal::is_terminal(&std::io::stdout()),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let status = status::render_status(&value, colour && !json);
    if json {
        print_json(&value)?;
    } else {
        print!("{}", status.text);
    }
    Ok(if status.attention {
        ExitCode::from(EXIT_ATTENTION)
    } else {
        ExitCode::SUCCESS
    })
}

/// `members [--json] [--zone Z | --all]`.
pub async fn members(
    client: &Client,
    json: bool,
    zone: Option<&str>,
    all: bool,
) -> anyhow::Result<ExitCode> {
    let value = client.get("/api/v1/members").await?;
    // Plaintext gossip is said loudly, on stderr so `--json` output stays parseable.
    if let Ok(stats) = client.get("/api/v1/stats").await
        && stats["encrypted"] == false
    {
        eprintln!(
            "WARNING: gossip is NOT encrypted on this node (gossip.insecure = true): anyone who \
             can reach its gossip port can read, join and command the cluster"
        );
    }
    let zones = client.get("/api/v1/zones").await.unwrap_or(Value::Null);
    let zones = zones.as_array().cloned().unwrap_or_default();
    let this = |z: &Value| z["this"] == true;
    let other = zone.and_then(|name| {
        zones
            .iter()
            .find(|z| z["name"] == name && !this(z))
            .cloned()
    });
    if let Some(name) = zone
        && other.is_none()
        && !zones.iter().any(|z| z["name"] == name)
        && !zones.is_empty()
    {
        let known: Vec<&str> = zones.iter().filter_map(|z| z["name"].as_str()).collect();
        anyhow::bail!(
            "no zone {name:?} is known here (zones: {})",
            known.join(", ")
        );
    }
    if json {
        match &other {
            Some(z) => print_json(&table::zone_members_json(z))?,
            None => print_json(&value)?,
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(z) = &other {
        print!("{}", table::render_zone_members(std::slice::from_ref(z)));
        return Ok(ExitCode::SUCCESS);
    }
    let members = value
        .as_array()
        .context("the daemon's members answer is not a JSON array")?;
    print!("{}", table::render_members(members, Time::wall_now()));
    let others: Vec<Value> = zones.into_iter().filter(|z| !this(z)).collect();
    if zone.is_some() || others.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    println!();
    if all {
        print!("{}", table::render_zone_members(&others));
    } else {
        print!("{}", table::render_zone_lines(&others));
    }
    Ok(ExitCode::SUCCESS)
}

/// `zones [--json]`.
pub async fn zones(client: &Client, json: bool) -> anyhow::Result<ExitCode> {
    let value = client.get("/api/v1/zones").await.map_err(explain)?;
    if json {
        print_json(&value)?;
    } else {
        let zones = value
            .as_array()
            .context("the daemon's zones answer is not a JSON array")?;
        if zones.is_empty() {
            println!("one zone: this cluster knows no other zone (node.zone, README \"Zones\")");
        } else {
            print!("{}", table::render_zones(zones));
        }
    }
    Ok(ExitCode::SUCCESS)
}
