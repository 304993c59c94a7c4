//! `nbwatch`: the daemon (`run`) and the client commands that talk to it over its HTTP API.
//!
//! Exit codes: 0 ok, 1 error (a config problem, a fatal error of the daemon, a daemon that
//! cannot be reached), 2 usage (clap's own), 3 `status` found something that needs a person.

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use nbwatch::client;
use nbwatch::config::{self, Config, DEFAULT_API_LISTEN};
use nbwatch::node;
use nbwatch::types::Time;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// How long a client command waits for the daemon.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// Shown after `--help`: the commands people start with, and what the exit codes mean.
const EXAMPLES: &str = "\
Examples:
  nbwatch run --config /etc/nbwatch/nbwatch.toml   run the daemon
  nbwatch status                                   this node, the leader, what is down or failing
  nbwatch members                                  the cluster as this node sees it
  nbwatch services                                 this node's supervised services
  nbwatch restart mythbackend                      restart a service and wait until it is up
  nbwatch events --since 2h --node nas             what happened to the NAS lately
  nbwatch history nas --metric load1 --since 24h   its load over the last day
  nbwatch completions bash > /etc/bash_completion.d/nbwatch

The dashboard is at http://<api.listen>/ (default http://127.0.0.1:7711/), Prometheus metrics
at /metrics.

Exit codes: 0 ok; 1 error (a config problem, a daemon that cannot be reached or that refused
the request); 2 usage; 3 `status` found something that needs a person (a member down, a
failing service, an open incident).";

#[derive(Parser)]
#[command(
    name = "nbwatch",
    version,
    about = "A decentralized neighbourhood watch for computers",
    after_help = EXAMPLES
)]
struct Cli {
    /// The config file (run, check-config; client commands read api.listen from it).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The daemon's API address (client commands).
    #[arg(long, global = true, value_name = "ADDR")]
    api: Option<SocketAddr>,
    /// The daemon's API token file (commands that change something). Default: the
    /// `NBWATCH_TOKEN` variable, else `api.token` in the data_dir of `--config`.
    #[arg(long, global = true, value_name = "FILE")]
    token_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon in the foreground (SIGTERM/SIGINT: leave the cluster and exit 0).
    Run {
        /// Log format.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Check the config and print every problem with its file and key.
    CheckConfig,
    /// One screen: this node, the leader, members up and down, failing services, open
    /// incidents. Exits 3 when something needs a person.
    Status {
        /// Print the daemon's overview (GET /api/v1/overview) as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The cluster as this node sees it.
    Members {
        /// Print the JSON array as the API returns it.
        #[arg(long)]
        json: bool,
    },
    /// This node's services: state, pid, restarts, health, last exit.
    Services {
        /// Every node's services, from gossip (a down node's marked stale).
        #[arg(long)]
        all: bool,
        /// Print the JSON array as the API returns it.
        #[arg(long)]
        json: bool,
    },
    /// Restart a service (stop it by its shutdown rule, start it again), here or on NODE.
    Restart {
        /// SERVICE, or NODE:SERVICE for a service of another node.
        service: String,
        /// How long to wait for another node's answer.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
        timeout: Duration,
    },
    /// Stop a service, here or on NODE; no strategy restarts it until it is started again.
    Stop {
        /// SERVICE, or NODE:SERVICE.
        service: String,
        #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
        timeout: Duration,
    },
    /// Start a service that was stopped (or whose tree failed), here or on NODE.
    Start {
        /// SERVICE, or NODE:SERVICE.
        service: String,
        #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
        timeout: Duration,
    },
    /// Publish a value from this host for every host to read (application data).
    Publish {
        key: String,
        value: String,
        /// Expire the value everywhere after this long.
        #[arg(long, value_parser = humantime::parse_duration)]
        ttl: Option<Duration>,
    },
    /// Every host's value of KEY.
    Get {
        key: String,
        #[arg(long)]
        json: bool,
    },
    /// Print every host's values under PREFIX, then each change as it happens.
    Subscribe {
        /// A key prefix ("" for everything).
        #[arg(default_value = "")]
        prefix: String,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Re-read the supervision trees and apply only what changed (as SIGHUP does).
    Reload,
    /// Recorded events of the cluster, oldest first (from this host's history).
    Events {
        /// Only events of the last DUR (e.g. 30m, 2h, 7d).
        #[arg(long, value_name = "DUR", value_parser = client::query::parse_duration)]
        since: Option<Duration>,
        /// Only events about this node.
        #[arg(long, value_name = "NAME")]
        node: Option<String>,
        /// Keep printing new events as they are recorded (with --json: one object per line).
        #[arg(long)]
        follow: bool,
        /// Print the JSON array as the API returns it.
        #[arg(long)]
        json: bool,
    },
    /// Recorded samples of one node, oldest first (default: the last hour).
    History {
        /// The node's name.
        node: String,
        /// Only this metric (e.g. load1, mem_used_pct).
        #[arg(long, value_name = "NAME")]
        metric: Option<String>,
        /// Samples of the last DUR (e.g. 30m, 24h, 30d); default 1h.
        #[arg(long, value_name = "DUR", value_parser = client::query::parse_duration)]
        since: Option<Duration>,
        /// Print the JSON array as the API returns it.
        #[arg(long)]
        json: bool,
    },
    /// The cluster's alert log: incident, state, who sent it, when, to which sinks, result.
    Alerts {
        /// Print the JSON array as the API returns it.
        #[arg(long)]
        json: bool,
        #[command(subcommand)]
        action: Option<AlertsAction>,
    },
    /// Silence alerts about a node (NODE) or one service (NODE:SERVICE) for a while.
    Silence {
        target: String,
        /// How long, e.g. 2h or 30m.
        #[arg(long = "for", value_name = "DUR")]
        duration: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// The silences in force.
    Silences {
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(after_help = "\
Install, e.g.:
  nbwatch completions bash > /etc/bash_completion.d/nbwatch
  nbwatch completions zsh > \"${fpath[1]}/_nbwatch\"
  nbwatch completions fish > ~/.config/fish/completions/nbwatch.fish")]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print a new random cluster key (base64), or write it to a file at mode 0600.
    Keygen {
        /// Write the key to FILE (refused if FILE exists) instead of printing it.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// The daemon's gossip keyring: rotate the cluster key while the cluster runs.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
}

#[derive(Subcommand)]
enum KeysAction {
    /// The installed key ids, primary (the one gossip is sealed with) first.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Install a key (it opens gossip from now on; it seals once made primary with `use`).
    Install {
        /// The key as `nbwatch keygen` prints it, or @FILE to read it from a file.
        key: String,
    },
    /// Seal gossip with this installed key from now on (do it after installing it everywhere).
    Use {
        /// The key id, as `keys list` shows it.
        id: String,
    },
    /// Remove a key that is not the primary (do it after every node uses the new one).
    Remove { id: String },
}

#[derive(Subcommand)]
enum AlertsAction {
    /// Send a test alert through the cluster's leader and wait until it is sent.
    Test,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(file) = &cli.token_file {
        let _ = TOKEN_FILE.set(file.clone());
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("nbwatch: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run { log_format } => run(cli.config, log_format).await,
            Command::CheckConfig => check_config(cli.config),
            Command::Status { json } => status(cli.api, cli.config, json).await,
            Command::Completions { shell } => completions(shell),
            Command::Members { json } => members(cli.api, cli.config, json).await,
            Command::Services { all, json } => services(cli.api, cli.config, all, json).await,
            Command::Restart { service, timeout } => {
                act(cli.api, cli.config, &service, "restart", timeout).await
            }
            Command::Stop { service, timeout } => {
                act(cli.api, cli.config, &service, "stop", timeout).await
            }
            Command::Start { service, timeout } => {
                act(cli.api, cli.config, &service, "start", timeout).await
            }
            Command::Publish { key, value, ttl } => {
                publish(cli.api, cli.config, &key, &value, ttl).await
            }
            Command::Get { key, json } => get(cli.api, cli.config, &key, json).await,
            Command::Subscribe { prefix, json } => {
                subscribe(cli.api, cli.config, &prefix, json).await
            }
            Command::Reload => reload(cli.api, cli.config).await,
            Command::Alerts { json, action } => match action {
                None => alerts(cli.api, cli.config, json).await,
                Some(AlertsAction::Test) => alert_test(cli.api, cli.config).await,
            },
            Command::Silence {
                target,
                duration,
                reason,
            } => silence(cli.api, cli.config, &target, &duration, &reason).await,
            Command::Silences { json } => silences(cli.api, cli.config, json).await,
            Command::Keygen { out } => keygen(out),
            Command::Keys { action } => keys(cli.api, cli.config, action).await,
            Command::Events {
                since,
                node,
                follow,
                json,
            } => events(cli.api, cli.config, since, node, follow, json).await,
            Command::History {
                node,
                metric,
                since,
                json,
            } => history(cli.api, cli.config, node, metric, since, json).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("nbwatch: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Config problems, one per line, on stderr.
fn print_problems(problems: &[config::Problem]) {
    for problem in problems {
        eprintln!("{problem}");
    }
}

async fn run(path: Option<PathBuf>, log_format: LogFormat) -> anyhow::Result<ExitCode> {
    init_tracing(log_format);
    let config = match config::load(path.as_deref()) {
        Ok(config) => config,
        Err(errors) => {
            print_problems(errors.problems());
            return Ok(ExitCode::FAILURE);
        }
    };
    // Processes that leave a service's group are re-parented to the daemon, which reaps them.
    if let Err(e) = nbwatch::supervision::reaper::become_subreaper() {
        tracing::warn!(error = %e, "cannot become a child subreaper; escaped processes go to init");
    }
    let _reaper = tokio::spawn(nbwatch::supervision::reaper::run());
    let sockets = node::bind(&config).await?;
    match nbwatch::daemon::run(config, sockets, shutdown_signal()).await {
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

fn check_config(path: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let label = path
        .as_ref()
        .map_or("built-in defaults".to_string(), |p| p.display().to_string());
    let config = match config::load(path.as_deref()) {
        Ok(config) => config,
        Err(errors) => {
            print_problems(errors.problems());
            return Ok(ExitCode::FAILURE);
        }
    };
    // The supervision trees and host probes are part of the config: every problem of every
    // file, too.
    let trees = nbwatch::supervision::spec::load_trees(&config.supervision.trees);
    let probes = nbwatch::probe::plugins::load_host_probes(&config.metrics.probes);
    // The keyring is part of the config too: a node with an unreadable key does not start.
    let key = config
        .gossip
        .key_file
        .as_deref()
        .map(nbwatch::secure::Keyring::load);
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

/// `--token-file`, set once at start.
static TOKEN_FILE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// The API token for commands that change something: `NBWATCH_TOKEN`, else `--token-file`,
/// else `api.token` in the data_dir of `--config` (or of the built-in defaults). `None` if
/// none can be read: the daemon then answers 401, and says where the token is.
fn bearer(config_path: Option<&std::path::Path>) -> Option<String> {
    if let Some(token) = std::env::var_os("NBWATCH_TOKEN") {
        let token = token.to_string_lossy().trim().to_string();
        if !token.is_empty() {
            return Some(token);
        }
    }
    let file = match TOKEN_FILE.get() {
        Some(file) => file.clone(),
        None => {
            let data_dir = match config::load(config_path) {
                Ok(config) => config.node.data_dir,
                Err(_) => PathBuf::from(config::DEFAULT_DATA_DIR),
            };
            nbwatch::api::token::path(&data_dir)
        }
    };
    match nbwatch::api::token::read(&file) {
        Ok(token) => Some(token),
        Err(e) => {
            eprintln!("nbwatch: cannot read the API token {}: {e}", file.display());
            None
        }
    }
}

/// `keygen [--out FILE]`.
fn keygen(out: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let key = nbwatch::secure::Key::generate();
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
    nbwatch::secure::keyring::write_private(&out, format!("{}\n", key.encode()).as_bytes())
        .with_context(|| format!("cannot write {}", out.display()))?;
    println!("wrote key {} to {} (mode 0600)", key.id(), out.display());
    Ok(ExitCode::SUCCESS)
}

/// `keys list|install|use|remove`.
async fn keys(
    api: Option<SocketAddr>,
    path: Option<PathBuf>,
    action: KeysAction,
) -> anyhow::Result<ExitCode> {
    let token = bearer(path.as_deref());
    let addr = api_addr(api, path)?;
    let (route, body) = match action {
        KeysAction::List { json } => {
            let value = client::get_json(addr, "/api/v1/keys", CLIENT_TIMEOUT).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&value)?);
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
    let value = client::post_json(
        addr,
        &format!("/api/v1/keys/{route}"),
        &body,
        token.as_deref(),
        CLIENT_TIMEOUT,
    )
    .await
    .map_err(client::explain)?;
    print_keys(&value);
    Ok(ExitCode::SUCCESS)
}

fn print_keys(value: &serde_json::Value) {
    if value["encrypted"] == false {
        println!("no keyring: gossip is NOT encrypted on this node (set gossip.key_file)");
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

/// `--api`, else `NBWATCH_API`, else `api.listen` of `--config`, else the default.
fn api_addr(api: Option<SocketAddr>, path: Option<PathBuf>) -> anyhow::Result<SocketAddr> {
    if let Some(addr) = api {
        return Ok(addr);
    }
    if let Some(value) = std::env::var_os("NBWATCH_API") {
        let value = value.to_string_lossy();
        return value.trim().parse().with_context(|| {
            format!("NBWATCH_API={value:?} is not an address like 127.0.0.1:7711")
        });
    }
    if let Some(path) = path {
        return match config::load(Some(&path)) {
            Ok(Config { api, .. }) => Ok(api.listen),
            Err(errors) => {
                print_problems(errors.problems());
                anyhow::bail!("cannot read api.listen from {}", path.display())
            }
        };
    }
    Ok(DEFAULT_API_LISTEN)
}

/// Prints the completion script. Generated into memory first: clap_complete panics on a write
/// error, and `nbwatch completions bash | head` closes the pipe early.
fn completions(shell: clap_complete::Shell) -> anyhow::Result<ExitCode> {
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

/// The exit code of `status` when something needs a person.
const EXIT_ATTENTION: u8 = 3;

async fn status(
    api: Option<SocketAddr>,
    path: Option<PathBuf>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let addr = api_addr(api, path)?;
    let value = client::get_json(addr, "/api/v1/overview", CLIENT_TIMEOUT)
        .await
        .map_err(client::explain)?;
    let colour = client::status::use_colour(
        std::io::IsTerminal::is_terminal(&std::io::stdout()),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let status = client::status::render_status(&value, colour && !json);
    if json {
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{}", status.text);
    }
    Ok(if status.attention {
        ExitCode::from(EXIT_ATTENTION)
    } else {
        ExitCode::SUCCESS
    })
}

async fn members(
    api: Option<SocketAddr>,
    path: Option<PathBuf>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let addr = api_addr(api, path)?;
    let value = client::get_json(addr, "/api/v1/members", CLIENT_TIMEOUT).await?;
    // Plaintext gossip is said loudly, on stderr so `--json` output stays parseable.
    if let Ok(stats) = client::get_json(addr, "/api/v1/stats", CLIENT_TIMEOUT).await
        && stats["encrypted"] == false
    {
        eprintln!(
            "WARNING: gossip is NOT encrypted on this node (no gossip.key_file): anyone who \
             can reach its gossip port can read, join and command the cluster"
        );
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        let members = value
            .as_array()
            .context("the daemon's members answer is not a JSON array")?;
        print!("{}", client::render_members(members, Time::wall_now()));
    }
    Ok(ExitCode::SUCCESS)
}

async fn services(
    api: Option<SocketAddr>,
    path: Option<PathBuf>,
    all: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let addr = api_addr(api, path)?;
    let url = if all {
        "/api/v1/services?all=true"
    } else {
        "/api/v1/services"
    };
    let value = client::get_json(addr, url, CLIENT_TIMEOUT)
        .await
        .map_err(client::explain)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        let services = value
            .as_array()
            .context("the daemon's services answer is not a JSON array")?;
        if all {
            print!(
                "{}",
                client::render_all_services(services, Time::wall_now())
            );
        } else {
            print!("{}", client::render_services(services, Time::wall_now()));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// How long a service command may take: a stop waits for the service's shutdown grace.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(130);

/// `restart|stop|start [NODE:]SERVICE`: waits until it is done (another node's answer up
/// to `timeout`); exits 1, saying why, if it failed.
async fn act(
    api: Option<SocketAddr>,
    path: Option<PathBuf>,
    target: &str,
    action: &str,
    timeout: Duration,
) -> anyhow::Result<ExitCode> {
    let token = bearer(path.as_deref());
    let addr = api_addr(api, path)?;
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
                    client::query::encode(node),
                    timeout.as_millis()
                ),
                timeout + CLIENT_TIMEOUT,
            )
        }
    };
    if node.is_none() {
        eprintln!("{action}: {service} ...");
    }
    let value = client::post_json(addr, &url, &serde_json::json!({}), token.as_deref(), wait)
        .await
        .map_err(client::explain)?;
    let state = value["status"]["state"].as_str().unwrap_or("unknown");
    let pid = value["status"]["pid"]
        .as_u64()
        .map_or(String::new(), |p| format!(" (pid {p})"));
    match node {
        Some(node) => println!("{node}:{service}: {state}{pid}"),
        None => println!("{service}: {state}{pid}"),
    }
    Ok(ExitCode::SUCCESS)
}

async fn publish(
    api: Option<SocketAddr>,
    path: Option<PathBuf>,
    key: &str,
    value: &str,
    ttl: Option<Duration>,
) -> anyhow::Result<ExitCode> {
    let token = bearer(path.as_deref());
    let mut app = client::app::App::new(api_addr(api, path)?);
    if let Some(token) = token {
        app = app.with_token(token);
    }
    let answer = app
        .publish(key, value, ttl)
        .await
        .map_err(client::explain)?;
    match answer["expires"].as_str() {
        Some(x) => println!("{key} = {value} (expires {x})"),
        None => println!("{key} = {value}"),
    }
    Ok(ExitCode::SUCCESS)
}

fn app_json(v: &client::app::AppValue) -> serde_json::Value {
    serde_json::json!({
        "node": v.node, "key": v.key, "value": v.value, "at": v.at, "expires": v.expires,
    })
}

async fn get(
    api: Option<SocketAddr>,
    path: Option<PathBuf>,
    key: &str,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let app = client::app::App::new(api_addr(api, path)?);
    let values = app.get(key).await.map_err(client::explain)?;
    let list: Vec<serde_json::Value> = values.iter().map(app_json).collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        print!("{}", client::render_app_values(&list));
    }
    Ok(ExitCode::SUCCESS)
}

/// How often `subscribe` looks for changes.
const SUBSCRIBE_POLL: Duration = Duration::from_millis(250);

async fn subscribe(
    api: Option<SocketAddr>,
    path: Option<PathBuf>,
    prefix: &str,
    json: bool,
) -> anyhow::Result<ExitCode> {
    use client::app::Change;
    use std::io::Write;
    let app = client::app::App::new(api_addr(api, path)?);
    let mut subscription = app.subscribe(prefix);
    let mut first = true;
    loop {
        let changes = match subscription.changes().await {
            Ok(c) => c,
            Err(e) if first => return Err(client::explain(e)),
            Err(e) => {
                eprintln!("nbwatch: {:#}", client::explain(e));
                tokio::time::sleep(SUBSCRIBE_POLL * 4).await;
                continue;
            }
        };
        first = false;
        let mut out = std::io::stdout().lock();
        for change in changes {
            let line = match (&change, json) {
                (Change::Set(v), true) => app_json(v).to_string(),
                (Change::Set(v), false) => format!("{} {} {} = {}", v.at, v.node, v.key, v.value),
                (Change::Gone { node, key }, true) => {
                    serde_json::json!({ "node": node, "key": key, "gone": true }).to_string()
                }
                (Change::Gone { node, key }, false) => format!("- {node} {key} (gone)"),
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

async fn reload(api: Option<SocketAddr>, path: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let token = bearer(path.as_deref());
    let addr = api_addr(api, path)?;
    let value = client::post_json(
        addr,
        "/api/v1/reload",
        &serde_json::json!({}),
        token.as_deref(),
        COMMAND_TIMEOUT,
    )
    .await
    .map_err(client::explain)?;
    for what in ["started", "stopped", "changed", "unchanged"] {
        let names: Vec<&str> = value[what]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        if !names.is_empty() {
            println!("{what}: {}", names.join(", "));
        }
    }
    println!("reloaded");
    Ok(ExitCode::SUCCESS)
}

/// Prints a JSON array as pretty JSON or, for people, as a table of `columns` (key, header).
fn print_list(
    value: &serde_json::Value,
    json: bool,
    columns: &[(&str, &str)],
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
        return Ok(());
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
    print!("{}", client::render_table(&headers, &rows));
    Ok(())
}

async fn alerts(
    api: Option<SocketAddr>,
    path: Option<PathBuf>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let addr = api_addr(api, path)?;
    let value = client::get_json(addr, "/api/v1/alerts", CLIENT_TIMEOUT).await?;
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

/// How long `alerts test` waits for the leader to send.
const TEST_TIMEOUT: Duration = Duration::from_secs(60);

async fn alert_test(api: Option<SocketAddr>, path: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let token = bearer(path.as_deref());
    let addr = api_addr(api, path)?;
    let asked = client::post_json(
        addr,
        "/api/v1/alerts/test",
        &serde_json::json!({}),
        token.as_deref(),
        CLIENT_TIMEOUT,
    )
    .await
    .map_err(client::explain)?;
    let id = asked["id"]
        .as_str()
        .context("no incident id in the answer")?
        .to_string();
    eprintln!("test alert {id}: waiting for the leader to send it ...");
    let deadline = tokio::time::Instant::now() + TEST_TIMEOUT;
    loop {
        let log = client::get_json(addr, "/api/v1/alerts", CLIENT_TIMEOUT).await?;
        if let Some(entry) = log.as_array().and_then(|a| {
            a.iter()
                .find(|e| e["id"] == id.as_str() && e["state"] == "sent")
        }) {
            println!("{id}: sent by {}", entry["by"].as_str().unwrap_or("?"));
            return Ok(ExitCode::SUCCESS);
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!(
                "{id} was not sent within {}",
                humantime::format_duration(TEST_TIMEOUT)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn silence(
    api: Option<SocketAddr>,
    path: Option<PathBuf>,
    target: &str,
    duration: &str,
    reason: &str,
) -> anyhow::Result<ExitCode> {
    let token = bearer(path.as_deref());
    let addr = api_addr(api, path)?;
    let body = serde_json::json!({ "target": target, "for": duration, "reason": reason });
    let answer = client::post_json(
        addr,
        "/api/v1/silences",
        &body,
        token.as_deref(),
        CLIENT_TIMEOUT,
    )
    .await
    .map_err(client::explain)?;
    println!(
        "{target}: silenced until {}",
        answer["until"].as_str().unwrap_or("?")
    );
    Ok(ExitCode::SUCCESS)
}

async fn silences(
    api: Option<SocketAddr>,
    path: Option<PathBuf>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let addr = api_addr(api, path)?;
    let value = client::get_json(addr, "/api/v1/silences", CLIENT_TIMEOUT).await?;
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

/// A duration as the API's `since` parameter.
fn since_param(since: Option<Duration>) -> Option<String> {
    since.map(|d| format!("{}ms", d.as_millis()))
}

/// How often `events --follow` asks for new events.
const FOLLOW_POLL: Duration = Duration::from_secs(1);

async fn events(
    api: Option<SocketAddr>,
    path: Option<PathBuf>,
    since: Option<Duration>,
    node: Option<String>,
    follow: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let addr = api_addr(api, path)?;
    let query = |after: Option<i64>| {
        client::query::with_query(
            "/api/v1/events",
            &[
                ("since", since_param(since)),
                ("node", node.clone()),
                ("after", after.map(|a| a.to_string())),
            ],
        )
    };
    let value = client::get_json(addr, &query(None), CLIENT_TIMEOUT)
        .await
        .map_err(client::explain)?;
    let list = value
        .as_array()
        .context("the daemon's events answer is not a JSON array")?;
    if !follow {
        if json {
            println!("{}", serde_json::to_string_pretty(&value)?);
        } else {
            print!("{}", client::render_events(list));
        }
        return Ok(ExitCode::SUCCESS);
    }
    use std::io::Write;
    let print = |e: &serde_json::Value| {
        let line = if json {
            e.to_string()
        } else {
            client::event_line(e)
        };
        let mut out = std::io::stdout().lock();
        // A closed pipe (`| head`) ends the follow; nothing else to do about it.
        writeln!(out, "{line}").and_then(|()| out.flush())
    };
    let mut last = None;
    for e in list {
        if print(e).is_err() {
            return Ok(ExitCode::SUCCESS);
        }
        last = e["id"].as_i64().max(last);
    }
    loop {
        tokio::time::sleep(FOLLOW_POLL).await;
        let after = match last {
            Some(id) => Some(id),
            // No database yet (or empty): everything from now on has a higher id than 0.
            None => Some(0),
        };
        let value = match client::get_json(addr, &query(after), CLIENT_TIMEOUT).await {
            Ok(value) => value,
            Err(e) => {
                eprintln!("nbwatch: {:#}", client::explain(e));
                continue;
            }
        };
        for e in value.as_array().map(Vec::as_slice).unwrap_or_default() {
            // The in-memory fallback has no ids: it is shown once, not repeated.
            let Some(id) = e["id"].as_i64() else { continue };
            if print(e).is_err() {
                return Ok(ExitCode::SUCCESS);
            }
            last = Some(id).max(last);
        }
    }
}

async fn history(
    api: Option<SocketAddr>,
    path: Option<PathBuf>,
    node: String,
    metric: Option<String>,
    since: Option<Duration>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let addr = api_addr(api, path)?;
    if node.trim().is_empty() {
        anyhow::bail!("the node name is empty");
    }
    let path = client::query::with_query(
        &format!("/api/v1/history/{}", client::query::encode(&node)),
        &[("metric", metric), ("since", since_param(since))],
    );
    let value = client::get_json(addr, &path, CLIENT_TIMEOUT)
        .await
        .map_err(client::explain)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        let samples = value
            .as_array()
            .context("the daemon's history answer is not a JSON array")?;
        print!("{}", client::render_history(samples));
    }
    Ok(ExitCode::SUCCESS)
}
