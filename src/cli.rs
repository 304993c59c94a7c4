//! The `nbwatch` command line: the daemon (`run`, `check-config`) and the client commands that
//! talk to it over its HTTP API. `src/main.rs` only parses the arguments and calls [`run`].
//!
//! The top of the layers: the cli imports the node, the config and the API's token file; nothing
//! below imports the cli (a test here keeps it so). Commands are grouped by family, one file
//! each ([`args`] holds the clap definitions); a client command gets one [`client::Client`],
//! made once from the global options (`connect.rs`), and prints what the daemon answers:
//! aligned tables for people ([`table`], [`status`]), `--json` for scripts.
//!
//! Exit codes: 0 ok, 1 error (a config problem, a fatal error of the daemon, a daemon that
//! cannot be reached), 2 usage (clap's own), 3 `status` found something that needs a person.
//!
//! `anyhow` is used here, at the application's edge; the reusable parts ([`client`], [`app`],
//! [`query`]) have typed errors.

pub mod app;
pub mod args;
pub mod client;
pub mod query;
pub mod status;
pub mod table;

mod alerts;
mod appdata;
mod connect;
mod daemon;
mod decide;
mod graph;
mod history;
mod keys;
mod members;
mod services;
mod settings;

pub use args::Cli;

use args::{AlertsAction, ClusterConfigAction, Command};
use client::ClientError;
use connect::{Access, Target};
use std::process::ExitCode;

/// Runs one parsed command line to its exit code; errors are printed as `nbwatch: ...`.
pub fn run(cli: Cli) -> ExitCode {
    // One thread runs every actor: the daemon's work is many small messages, and a second
    // worker mostly wakes to steal them (a third fewer context switches and less CPU on one
    // thread, measured at 32 daemons). Blocking work (SQLite, reaping, signals to process
    // groups) goes to the blocking pool, as before.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("nbwatch: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            // An error may quote what the daemon or a file said: shown, not obeyed.
            eprintln!("nbwatch: {}", crate::text::visible(&chain(&e)));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes, `: `-separated, leaving out a cause the text so far already
/// says (most of nbwatch's errors quote their cause in their own message).
fn chain(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let said = cause.to_string();
        if text.is_empty() {
            text = said;
        } else if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
    }
    text
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let Cli {
        config,
        api,
        token_file,
        command,
    } = cli;
    let target = Target::from_process(api, config, token_file);
    let client = |access| target.client(access);
    use Access::{Change, Read};
    match command {
        Command::Run { log_format } => daemon::run(target.config.as_deref(), log_format).await,
        Command::CheckConfig => daemon::check_config(target.config.as_deref()),
        Command::Completions { shell } => keys::completions(shell),
        Command::Keygen { out, operator } => keys::keygen(out, operator),
        Command::Status { json } => members::status(&client(Read)?, json).await,
        Command::Members { json, zone, all } => {
            members::members(&client(Read)?, json, zone.as_deref(), all).await
        }
        Command::Zones { json } => members::zones(&client(Read)?, json).await,
        Command::Services { all, json } => services::services(&client(Read)?, all, json).await,
        Command::Restart { service, timeout } => {
            services::act(&client(Change)?, &service, "restart", timeout).await
        }
        Command::Stop { service, timeout } => {
            services::act(&client(Change)?, &service, "stop", timeout).await
        }
        Command::Start { service, timeout } => {
            services::act(&client(Change)?, &service, "start", timeout).await
        }
        Command::Reload => services::reload(&client(Change)?).await,
        Command::Publish { key, value, ttl } => {
            appdata::publish(&client(Change)?, &key, &value, ttl).await
        }
        Command::Get { key, json } => appdata::get(&client(Read)?, &key, json).await,
        Command::Pick {
            count,
            by,
            exclude,
            json,
        } => decide::pick(&client(Read)?, count, by.as_deref(), &exclude, json).await,
        Command::Owner {
            key,
            replicas,
            json,
        } => decide::owner(&client(Read)?, &key, replicas, json).await,
        Command::Unreachable { node, reason } => {
            decide::unreachable(&client(Change)?, &node, &reason).await
        }
        Command::Reachability { json } => decide::reachability(&client(Read)?, json).await,
        Command::Graph { json, dot } => graph::graph(&client(Read)?, json, dot).await,
        Command::Impact { vertex, json } => graph::impact(&client(Read)?, &vertex, json).await,
        Command::Availability {
            since,
            simulate,
            seed,
            json,
        } => graph::availability(&client(Read)?, &since, simulate, seed, json).await,
        Command::Subscribe { prefix, json } => {
            appdata::subscribe(&client(Read)?, &prefix, json).await
        }
        Command::Alerts { json, action } => match action {
            None => alerts::alerts(&client(Read)?, json).await,
            Some(AlertsAction::Test) => alerts::test(&client(Change)?).await,
        },
        Command::Silence {
            target,
            duration,
            reason,
        } => alerts::silence(&client(Change)?, &target, duration, &reason).await,
        Command::Silences { json } => alerts::silences(&client(Read)?, json).await,
        Command::Keys { action } => keys::keys(&client(Change)?, action).await,
        Command::ClusterConfig { action } => match action {
            ClusterConfigAction::Push { file } => settings::push(&client(Change)?, &file).await,
            ClusterConfigAction::Show { json } => settings::show(&client(Read)?, json).await,
        },
        Command::Events {
            since,
            node,
            follow,
            json,
        } => history::events(&client(Read)?, since, node, follow, json).await,
        Command::History {
            node,
            metric,
            since,
            json,
        } => history::history(&client(Read)?, node, metric, since, json).await,
    }
}

/// An error for a person: an HTTP error whose body is the API's `{"error": ...}` shows just
/// that message.
fn explain(e: ClientError) -> anyhow::Error {
    match e.api_message() {
        Some(msg) => anyhow::anyhow!("{msg}"),
        None => e.into(),
    }
}

/// Config problems, one per line, on stderr.
fn print_problems(problems: &[crate::config::Problem]) {
    for problem in problems {
        eprintln!("{}", crate::text::visible(&problem.to_string()));
    }
}

/// Prints a JSON value as people read it (what `--json` prints).
fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_error_that_quotes_its_cause_is_shown_once() {
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, "bad bytes");
        let quoted = anyhow::Error::new(crate::secure::KeyError::Read {
            path: "/k".into(),
            source: io,
        });
        assert_eq!(
            super::chain(&quoted),
            "cannot read the key file /k: bad bytes"
        );
        let wrapped = anyhow::anyhow!("bad bytes").context("reading /k");
        assert_eq!(super::chain(&wrapped), "reading /k: bad bytes");
    }

    /// Layering: the cli is the top; no module below it may name it (or the old `client`).
    #[test]
    fn nothing_below_the_cli_imports_it() {
        fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for entry in std::fs::read_dir(dir).expect("read src").flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, out);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    out.push(path);
                }
            }
        }
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        walk(&src, &mut files);
        let above = [src.join("cli"), src.join("cli.rs"), src.join("main.rs")];
        let mut offenders = Vec::new();
        for file in files {
            if above.iter().any(|a| file.starts_with(a)) {
                continue;
            }
            let text = std::fs::read_to_string(&file).expect("read a source file");
            if text.contains("crate::cli") || text.contains("crate::client") {
                offenders.push(file.display().to_string());
            }
        }
        assert!(offenders.is_empty(), "{offenders:?} reach up into the cli");
    }
}
