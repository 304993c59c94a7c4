//! `status` and `members`: the cluster as this node sees it, on one screen or as a table.

use super::client::Client;
use super::{explain, print_json, status, table};
use crate::types::Time;
use anyhow::Context;
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

/// `members [--json]`.
pub async fn members(client: &Client, json: bool) -> anyhow::Result<ExitCode> {
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
    if json {
        print_json(&value)?;
    } else {
        let members = value
            .as_array()
            .context("the daemon's members answer is not a JSON array")?;
        print!("{}", table::render_members(members, Time::wall_now()));
    }
    Ok(ExitCode::SUCCESS)
}
