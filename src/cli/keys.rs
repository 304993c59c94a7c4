//! `keygen`, `keys list|install|use|remove` and `completions`: the cluster key, the daemon's
//! keyring, and the shell's knowledge of these commands.

use super::args::{Cli, KeysAction};
use super::client::Client;
use super::{explain, print_json};
use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;

/// `keygen [--out FILE]`.
pub fn keygen(out: Option<PathBuf>, operator: bool) -> anyhow::Result<ExitCode> {
    if operator {
        let out = out.context("--operator needs --out FILE")?;
        let key = crate::secure::operator::OperatorKey::generate();
        key.write_new(&out)?;
        println!("{}", key.id());
        eprintln!(
            "wrote the operator key to {} (mode 0600); the line above is its public key: list \
             it in control.operators on every host that should obey it, and set \
             control.operator_key_file = {:?} on the hosts you command from",
            out.display(),
            out.display().to_string()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let key = crate::secure::Key::generate();
    let Some(out) = out else {
        println!("{}", key.encode());
        return Ok(ExitCode::SUCCESS);
    };
    if out.exists() {
        anyhow::bail!(
            "{} exists: not overwriting a key (remove it first, or rotate with `nbwatch keys`)",
            out.display()
        );
    }
    crate::secure::keyring::write_private(&out, format!("{}\n", key.encode()).as_bytes())
        .with_context(|| format!("cannot write {}", out.display()))?;
    println!("wrote key {} to {} (mode 0600)", key.id(), out.display());
    // How a host joins: the same key file everywhere.
    println!(
        "copy it to every host of the cluster (mode 0600) and set gossip.key_file = {:?} there; \
         a host without it cannot join",
        out.display().to_string()
    );
    Ok(ExitCode::SUCCESS)
}

/// `keys list|install|use|remove`.
pub async fn keys(client: &Client, action: KeysAction) -> anyhow::Result<ExitCode> {
    let (route, body) = match action {
        KeysAction::List { json } => {
            let value = client.get("/api/v1/keys").await?;
            if json {
                print_json(&value)?;
            } else {
                print_keys(&value);
            }
            return Ok(ExitCode::SUCCESS);
        }
        KeysAction::Install { key } => {
            let key = match key.strip_prefix('@') {
                Some(file) => std::fs::read_to_string(file)
                    .with_context(|| format!("cannot read the key file {file}"))?,
                None => key,
            };
            let key = key
                .lines()
                .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
            (
                "install",
                serde_json::json!({ "key": key.unwrap_or("").trim() }),
            )
        }
        KeysAction::Use { id } => ("use", serde_json::json!({ "id": id })),
        KeysAction::Remove { id } => ("remove", serde_json::json!({ "id": id })),
    };
    let value = client
        .post(&format!("/api/v1/keys/{route}"), &body)
        .await
        .map_err(explain)?;
    print_keys(&value);
    Ok(ExitCode::SUCCESS)
}

fn print_keys(value: &serde_json::Value) {
    if value["encrypted"] == false {
        println!("no keyring: gossip is NOT encrypted on this node (gossip.insecure = true)");
        return;
    }
    for key in value["keys"].as_array().into_iter().flatten() {
        let primary = if key["primary"] == true {
            "  primary"
        } else {
            ""
        };
        println!("{}{primary}", key["id"].as_str().unwrap_or("?"));
    }
}

/// `completions SHELL`: prints the completion script. Generated into memory first:
/// clap_complete panics on a write error, and `nbwatch completions bash | head` closes the
/// pipe early.
pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<ExitCode> {
    use clap::CommandFactory;
    use std::io::Write;
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "nbwatch", &mut script);
    match std::io::stdout().lock().write_all(&script) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(e).context("cannot write the completion script"))
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}
