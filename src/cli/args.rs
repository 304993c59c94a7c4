//! The command line as clap reads it: the global options, every command and its flags.
//!
//! Names, flags and help texts are promised to users (CONTRACT.md, README "Commands"): change
//! them only with a migration note. Types here carry no `///` comment of their own where clap
//! would turn it into help text.

use crate::types::duration;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

/// Shown after `--help`: the commands people start with, and what the exit codes mean.
const EXAMPLES: &str = "\
Examples:
  nbwatch run --config /etc/nbwatch/nbwatch.toml   run the daemon
  nbwatch status                                   this node, the leader, what is down or failing
  nbwatch members                                  the cluster as this node sees it
  nbwatch zones                                    every zone: members up, leader, incidents
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
pub struct Cli {
    /// The config file (run, check-config; client commands read api.listen from it).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The daemon's API address (client commands): IP:PORT, or https://IP:PORT for an API
    /// with TLS (trusting the system's roots and NBWATCH_CA_FILE).
    #[arg(long, global = true, value_name = "ADDR")]
    pub api: Option<super::connect::ApiAddr>,
    /// The daemon's API token file (commands that change something). Default: the
    /// `NBWATCH_TOKEN` variable, else `api.token` in the data_dir of `--config`.
    #[arg(long, global = true, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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
    /// The cluster as this node sees it: this zone's members, then one line per other zone.
    Members {
        /// Print the JSON array of this zone's members as the API returns it.
        #[arg(long)]
        json: bool,
        /// The members of zone Z known here: in full for this zone, from its summary for
        /// another (representatives, down members, how many more are up).
        #[arg(long, value_name = "Z", conflicts_with = "all")]
        zone: Option<String>,
        /// This zone in full, then every other zone's members known from its summary.
        #[arg(long)]
        all: bool,
    },
    /// Every zone: members up of total, leader, representatives, open incidents, whether it
    /// is reachable, and its load.
    Zones {
        /// Print the JSON array as the API returns it (GET /api/v1/zones).
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
        #[arg(long, value_parser = duration::parse, default_value = "60s")]
        timeout: Duration,
    },
    /// Stop a service, here or on NODE; no strategy restarts it until it is started again.
    Stop {
        /// SERVICE, or NODE:SERVICE.
        service: String,
        #[arg(long, value_parser = duration::parse, default_value = "60s")]
        timeout: Duration,
    },
    /// Start a service that was stopped (or whose tree failed), here or on NODE.
    Start {
        /// SERVICE, or NODE:SERVICE.
        service: String,
        #[arg(long, value_parser = duration::parse, default_value = "60s")]
        timeout: Duration,
    },
    /// Publish a value from this host for every host to read (application data).
    Publish {
        key: String,
        value: String,
        /// Expire the value everywhere after this long.
        #[arg(long, value_parser = duration::parse)]
        ttl: Option<Duration>,
    },
    /// The live hosts to send work to, least loaded first by two random choices (so many
    /// hosts picking at once spread their work).
    Pick {
        /// How many hosts.
        #[arg(long, default_value_t = 1)]
        count: usize,
        /// The metric to rank by: load_per_core (default), load1, cpu_pct, mem_used_pct, ...
        /// or a host probe's <probe>.<label>.
        #[arg(long)]
        by: Option<String>,
        /// Hosts not to pick, comma-separated.
        #[arg(long, value_delimiter = ',')]
        exclude: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// The live hosts that own KEY (weighted rendezvous hashing: every host answers the same).
    Owner {
        key: String,
        /// How many owners.
        #[arg(long, default_value_t = 1)]
        replicas: usize,
        #[arg(long)]
        json: bool,
    },
    /// Say that an application on this host could not reach NODE: it is probed at once (two
    /// witnesses still decide whether it is down).
    Unreachable {
        node: String,
        /// Why, for the log.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Who hears whom directly: one row per live host (a one-way or partial cut shows here).
    Reachability {
        #[arg(long)]
        json: bool,
    },
    /// The cluster as a dependency graph: hosts, their trees and services, supervision and
    /// `requires` edges, and what each failure takes down.
    Graph {
        #[arg(long, conflicts_with = "dot")]
        json: bool,
        /// Graphviz output (`nbwatch graph --dot | dot -Tsvg > graph.svg`).
        #[arg(long)]
        dot: bool,
    },
    /// What stops working if VERTEX (a host, or NODE:SERVICE) fails, with the way each failure
    /// goes.
    Impact {
        vertex: String,
        #[arg(long)]
        json: bool,
    },
    /// Failures, MTBF, MTTR and availability of every host and service from the history, and
    /// each service's availability with its dependencies.
    Availability {
        /// The window (from that long ago to now).
        #[arg(long, default_value = "30d")]
        since: String,
        /// Also run the failure models for this many steps and compare.
        #[arg(long)]
        simulate: Option<u64>,
        /// The simulation's seed (default: the time; the answer says which).
        #[arg(long, requires = "simulate")]
        seed: Option<u64>,
        #[arg(long)]
        json: bool,
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
        #[arg(long, value_name = "DUR", value_parser = duration::parse)]
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
        #[arg(long, value_name = "DUR", value_parser = duration::parse)]
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
        /// How long, e.g. 2h or 30m (at most 100y).
        #[arg(long = "for", value_name = "DUR", value_parser = duration::parse)]
        duration: Duration,
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
        /// Make an operator key (Ed25519) instead: the private key goes to --out (required),
        /// the public key, for control.operators, is printed.
        #[arg(long, requires = "out")]
        operator: bool,
    },
    /// The daemon's gossip keyring: rotate the cluster key while the cluster runs.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// The cluster settings every host applies ([alerts] for now), spread by gossip.
    ClusterConfig {
        #[command(subcommand)]
        action: ClusterConfigAction,
    },
}

#[derive(Subcommand)]
pub enum ClusterConfigAction {
    /// Check FILE and push it from this host; every host applies it without a restart.
    Push { file: PathBuf },
    /// The document this host applies: version, author, time, signature, content.
    Show {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum KeysAction {
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
pub enum AlertsAction {
    /// Send a test alert through the node that sends alerts and wait until a sink accepted it.
    Test,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}
