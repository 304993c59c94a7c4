//! `run` and `check-config`: the daemon itself, and the check of everything it would load.

use super::args::LogFormat;
use super::print_problems;
use crate::{config, node};
use std::path::Path;
use std::process::ExitCode;

/// Logs to stderr, filtered by `RUST_LOG` (default `info`). The spans the actor library opens
/// around every actor (`Actor{id="0.0"}:Actor{id="0.5"}:` before each line) are left out:
/// they say which actor, by a number that means nothing to a reader, and every event names
/// what it is about anyway.
fn init_tracing(format: LogFormat) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer, filter::filter_fn, fmt};
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let no_actor_spans = filter_fn(|meta| !(meta.is_span() && meta.target().starts_with("ractor")));
    let layer = fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let layer = match format {
        LogFormat::Text => layer.boxed(),
        LogFormat::Json => layer.json().boxed(),
    };
    tracing_subscriber::registry()
        .with(layer.with_filter(no_actor_spans).with_filter(filter))
        .init();
}

/// `run`: the daemon in the foreground until SIGTERM or SIGINT.
pub async fn run(path: Option<&Path>, log_format: LogFormat) -> anyhow::Result<ExitCode> {
    init_tracing(log_format);
    let config = match config::load(path) {
        Ok(config) => config,
        Err(errors) => {
            print_problems(errors.problems());
            return Ok(ExitCode::FAILURE);
        }
    };
    // Processes that leave a service's group are re-parented to the daemon, which reaps them.
    if let Err(e) = crate::supervision::reaper::become_subreaper() {
        tracing::warn!(error = %e, "cannot become a child subreaper; escaped processes go to init");
    }
    let _reaper = tokio::spawn(crate::supervision::reaper::run());
    let sockets = node::bind(&config).await?;
    match crate::daemon::run(config, sockets, shutdown_signal()).await {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            tracing::error!(error = %e, "the node stopped");
            Err(e.into())
        }
    }
}

/// Completes on the first SIGTERM or SIGINT. If the handlers cannot be installed the daemon
/// still runs; it then stops only by being killed.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (term, int) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: leaving the cluster"),
                _ = int.recv() => tracing::info!("SIGINT: leaving the cluster"),
            }
        }
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "cannot handle SIGTERM/SIGINT");
            std::future::pending::<()>().await;
        }
    }
}

/// `check-config`: every problem of the config, its trees, its host probes and its key.
pub fn check_config(path: Option<&Path>) -> anyhow::Result<ExitCode> {
    let label = path.map_or("built-in defaults".to_string(), |p| p.display().to_string());
    let config = match config::load(path) {
        Ok(config) => config,
        Err(errors) => {
            print_problems(errors.problems());
            return Ok(ExitCode::FAILURE);
        }
    };
    // The supervision trees and host probes are part of the config: every problem of every
    // file, too.
    let trees = crate::supervision::spec::load_trees(&config.supervision.trees);
    let probes = crate::probe::plugins::load_host_probes(&config.metrics.probes);
    // The keyring is part of the config too: a node with an unreadable key does not start.
    // (A key the node makes for itself is checked once it is there.)
    let key = match config.gossip_key() {
        config::GossipKey::File(file) => Some(crate::secure::Keyring::load(&file)),
        config::GossipKey::Generated(file) if file.exists() => {
            Some(crate::secure::Keyring::load(&file))
        }
        _ => None,
    };
    if let Some(Err(e)) = &key {
        eprintln!("{e}");
    }
    let key_ok = !matches!(key, Some(Err(_)));
    match (trees, probes) {
        (Ok(trees), Ok(probes)) if key_ok => {
            println!(
                "ok: {label} ({} supervision trees, {} host probes)",
                trees.len(),
                probes.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        (trees, probes) => {
            print_problems(trees.as_ref().err().map_or(&[], Vec::as_slice));
            print_problems(probes.as_ref().err().map_or(&[], Vec::as_slice));
            Ok(ExitCode::FAILURE)
        }
    }
}
