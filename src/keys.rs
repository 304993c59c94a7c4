//! Every key of a node's gossiped state, and one typed codec per kind of value: what a value
//! means is decided here once, and every reader (alerts, control, history, API) goes through
//! it instead of parsing the string itself.
//!
//! The keys of a node's state:
//!
//! | key | value | written by |
//! |---|---|---|
//! | `heartbeat`-like liveness | (the gossip core's own versions) | gossip |
//! | `sys`, `sys.boot` | host metrics sample, boot time | host probe |
//! | `node.priority` | this node's leadership priority | host probe |
//! | `probe.<name>` | a host probe's last result ([`probe`]) | host probe |
//! | `svc.<name>` | a service's status ([`ServiceStatus`]) | supervision |
//! | `alert.<id>`, `alerttest.<id>`, `silence.<id>` | alert log entries, tests, silences | alerts |
//! | `sinks` | how many sinks this node can deliver through | alerts |
//! | `tree.<tree>`, `place.<tree>` | placed trees and the leader's placement | control |
//! | `cmd.<id>`, `res.<id>` | cross-host commands and their answers | control |
//! | `app.<key>` | application data | users |
//! | `sus.<node>`, `left` | suspicions, a graceful leave | gossip |
//! | `wire` | the newest wire version the node speaks | gossip |
//! | `unheard` | the live peers it has not heard directly of late | gossip |
//! | `settings`, `settings.<i>` | the cluster settings it applies ([`settings`]) | control |

pub mod alert;
pub mod control;
pub mod probe;
pub mod reach;
pub mod sample;
pub mod settings;
#[cfg(test)]
mod tests;
pub mod zone;

use crate::types::{Time, TimeOutOfRange};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Largest key + value a subsystem may write (so an entry always fits in a datagram).
pub const MAX_ENTRY_LEN: usize = 1024;

/// This node's announced leadership priority (`node.priority`).
pub const PRIORITY_KEY: &str = "node.priority";
/// This node's weight in the owners of keys (`node.weight`, `control::owner`).
pub const WEIGHT_KEY: &str = "node.weight";
/// How many CPUs the host has (for the load per core of `control::pick`).
pub const CPUS_KEY: &str = "sys.cpus";
/// This host's MAC address (`aa:bb:cc:dd:ee:ff`), for Wake-on-LAN by the others.
pub const MAC_KEY: &str = "mac";
/// Where this host's read-only listener (`metrics.listen`) is reached (`host:port`): what
/// Prometheus' service discovery (`/api/v1/targets`) lists.
pub const SCRAPE_KEY: &str = "scrape";
/// A host probe's result: `probe.<name>`.
pub const PROBE_PREFIX: &str = "probe.";
/// The host metrics sample: the seven float metrics, space-separated, in the order of
/// `FLOAT_KEYS`, then the origin time as [`sample::origin_token`] (absent from older
/// announcements). One packed key instead of one key per metric, because every host sends its
/// sample to every other host: at 128 hosts this is about a third of the bytes.
pub const METRICS_KEY: &str = "sys";
/// Whether `key` holds a measurement a host republishes on a period (its metrics sample or a
/// host probe's result), rather than a change someone waits for.
pub fn is_sample(key: &str) -> bool {
    key == METRICS_KEY || key.starts_with(PROBE_PREFIX)
}
/// The host's boot time (Unix seconds); uptime is derived from it, so it does not change from
/// sample to sample.
pub const BOOT_KEY: &str = "sys.boot";
/// A service's status: `svc.<name>`.
pub const SERVICE_PREFIX: &str = "svc.";
/// An alert log entry: `alert.<id>`.
pub const ALERT_PREFIX: &str = "alert.";
/// The alert-log entries of steps of remediation (`alert.action:...`).
pub const ACTION_ENTRY_PREFIX: &str = "alert.action:";

/// Keys whose changes go out at once, to more members than usual, like a suspicion: a step of
/// remediation runs only once its running mark is out (see `alert::action`).
pub fn is_urgent(key: &str) -> bool {
    key.starts_with(ACTION_ENTRY_PREFIX)
}
/// How many alert sinks this node can deliver through now (absent: none, or a build from
/// before any node with sinks could send): who sends an alert ([`crate::election::sender`]).
pub const SINKS_KEY: &str = "sinks";
/// The live peers a node has not heard directly of late ([`reach`]).
pub const UNHEARD_KEY: &str = "unheard";
/// A test alert asked for: `alerttest.<at ms>`.
pub const TEST_PREFIX: &str = "alerttest.";
/// A silence: `silence.<node>` or `silence.<node>:<service>`.
pub const SILENCE_PREFIX: &str = "silence.";
/// A placed tree a node can run: `tree.<tree>`.
pub const TREE_PREFIX: &str = "tree.";
/// The leader's placement of a tree: `place.<tree>`.
pub const PLACE_PREFIX: &str = "place.";
/// A command to another node: `cmd.<id>`.
pub const COMMAND_PREFIX: &str = "cmd.";
/// The answer to a command: `res.<id>`.
pub const RESULT_PREFIX: &str = "res.";
/// Application data: `app.<key>`.
pub const APP_PREFIX: &str = "app.";
/// A suspicion of a node: `sus.<peer>` = `"<incarnation>:<last_heard_ms>"`.
pub const SUSPECT_PREFIX: &str = "sus.";
/// Present once a node has left gracefully.
pub const LEFT_KEY: &str = "left";
/// The newest wire version a node speaks (absent: a build before versioned wires, which
/// speaks version 1).
pub const WIRE_KEY: &str = "wire";

/// Why a gossiped value is not read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// Not a value this version reads (another shape, or a newer format): readers skip it.
    #[error("not a value this version reads ({0})")]
    Malformed(String),
    /// A time past [`Time::MAX`]: refused where it arrives ([`check`]), never formatted.
    #[error("{field}: {source}")]
    Time {
        field: &'static str,
        source: TimeOutOfRange,
    },
}

/// `ms` as the time of `field`, if it is at most [`Time::MAX`].
pub(crate) fn time(field: &'static str, ms: u64) -> Result<Time, ValueError> {
    Time::checked(ms).map_err(|source| ValueError::Time { field, source })
}

/// The check gossip makes before it takes an entry of another node's state: an entry whose
/// codec finds a time past [`Time::MAX`] in it (a silence `until`, an application value's
/// `x`, a command's `at`, ...) is refused, so no handler ever has to format it. Values that
/// do not parse pass: a newer release may write a shape this one does not know, and every
/// reader already skips what it cannot read.
pub fn check(key: &str, value: &str) -> Result<(), ValueError> {
    let read = if let Some(at) = key.strip_prefix(TEST_PREFIX) {
        at.parse::<u64>()
            .map_err(|e| ValueError::Malformed(e.to_string()))
            .and_then(|ms| time("the test alert's time", ms).map(drop))
    } else if key.starts_with(SILENCE_PREFIX) {
        alert::SilenceValue::parse(value).map(drop)
    } else if key.starts_with(ALERT_PREFIX) {
        alert::AlertEntry::parse(value).map(drop)
    } else if key == zone::CUT_OFF_KEY {
        zone::CutOff::parse(value).map(drop)
    } else if key.starts_with(zone::ZONES_PREFIX) {
        zone::Published::parse(value).map(drop)
    } else if key.starts_with(APP_PREFIX) {
        control::Stored::parse(value).map(drop)
    } else if key.starts_with(COMMAND_PREFIX) {
        control::RemoteCommand::parse(value).map(drop)
    } else if key.starts_with(RESULT_PREFIX) {
        control::Answer::parse(value).map(drop)
    } else if let Some(name) = key.strip_prefix(SERVICE_PREFIX) {
        parse_status(name, value).map(drop)
    } else if key.starts_with(SUSPECT_PREFIX) {
        parse_sighting_time(value).map(drop)
    } else if key == BOOT_KEY {
        sample::parse_boot(value).map(drop)
    } else if key == settings::KEY {
        settings::check(value)
    } else {
        Ok(())
    };
    match read {
        Err(e @ ValueError::Time { .. }) => Err(e),
        _ => Ok(()),
    }
}

/// The last-heard time of a suspicion's value, `"<incarnation>:<last_heard_ms>"`.
pub fn parse_sighting_time(value: &str) -> Result<Time, ValueError> {
    let (_, heard) = value
        .split_once(':')
        .ok_or_else(|| ValueError::Malformed("no ':'".into()))?;
    let ms = heard
        .parse::<u64>()
        .map_err(|e| ValueError::Malformed(e.to_string()))?;
    time("last heard", ms)
}

/// The entries of `kv` whose keys start with `prefix`, with the prefix taken off. The state is
/// ordered by key, so this is a range, not a scan.
pub fn with_prefix<'a>(
    kv: &'a BTreeMap<String, String>,
    prefix: &'a str,
) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
    kv.range(prefix.to_string()..)
        .take_while(move |(k, _)| k.starts_with(prefix))
        .map(move |(k, v)| (&k[prefix.len()..], v.as_str()))
}

/// The contract's service states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceState {
    Starting,
    Running,
    Stopping,
    Stopped,
    Restarting,
    Failed,
}

impl ServiceState {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceState::Starting => "starting",
            ServiceState::Running => "running",
            ServiceState::Stopping => "stopping",
            ServiceState::Stopped => "stopped",
            ServiceState::Restarting => "restarting",
            ServiceState::Failed => "failed",
        }
    }
}

/// One service as `services --json` shows it (without `node`, which the API adds).
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceStatus {
    pub name: String,
    pub tree: String,
    pub state: ServiceState,
    pub pid: Option<u32>,
    pub restarts: u32,
    pub last_exit: Option<String>,
    pub health: String,
    /// When the state last changed.
    pub since: Time,
    /// Where it sits in its tree and what it requires elsewhere (the graph's edges).
    pub shape: Shape,
}

/// A service's place in the dependency graph: the supervisors above it, its tree's root
/// first (`["tv", "web"]`; empty: directly under the root, `[tree]`), and the services on
/// other nodes it requires (`"nas:postgres"`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Shape {
    pub path: Vec<String>,
    pub requires: Vec<String>,
}

impl ServiceStatus {
    /// The supervisors above this service, its tree's root first.
    pub fn path(&self) -> Vec<&str> {
        if self.shape.path.is_empty() {
            vec![self.tree.as_str()]
        } else {
            self.shape.path.iter().map(String::as_str).collect()
        }
    }
}

/// The compact form of a status in the node's gossiped state (`svc.<name>`): JSON of the
/// fields other nodes need for a cluster-wide view.
pub fn gossip_value(s: &ServiceStatus) -> String {
    let mut v = serde_json::json!({
        "tree": s.tree,
        "state": s.state.as_str(),
        "pid": s.pid,
        "restarts": s.restarts,
        "last_exit": s.last_exit,
        "health": s.health,
        "since": s.since.0,
    });
    // The shape goes only where it says more than the tree, to keep the value small.
    if s.shape.path.len() > 1 {
        v["path"] = serde_json::Value::from(s.shape.path.join("/"));
    }
    if !s.shape.requires.is_empty() {
        v["requires"] = serde_json::Value::from(s.shape.requires.clone());
    }
    v.to_string()
}

/// The gossip key of a service.
pub fn gossip_key(name: &str) -> String {
    format!("{SERVICE_PREFIX}{name}")
}

/// A status read back from another node's gossiped `svc.<name>` value (see [`gossip_value`]);
/// `None` if it does not parse or its time is out of range ([`parse_status`] says which).
pub fn from_gossip(name: &str, value: &str) -> Option<ServiceStatus> {
    parse_status(name, value).ok()
}

/// [`from_gossip`], saying why not.
pub fn parse_status(name: &str, value: &str) -> Result<ServiceStatus, ValueError> {
    let malformed = |why: &str| ValueError::Malformed(why.to_string());
    let v: serde_json::Value =
        serde_json::from_str(value).map_err(|e| ValueError::Malformed(e.to_string()))?;
    let since = time("since", v["since"].as_u64().unwrap_or(0))?;
    let state = match v["state"].as_str().ok_or_else(|| malformed("no state"))? {
        "starting" => ServiceState::Starting,
        "running" => ServiceState::Running,
        "stopping" => ServiceState::Stopping,
        "stopped" => ServiceState::Stopped,
        "restarting" => ServiceState::Restarting,
        "failed" => ServiceState::Failed,
        other => return Err(malformed(&format!("unknown state {other:?}"))),
    };
    Ok(ServiceStatus {
        name: name.to_string(),
        tree: v["tree"]
            .as_str()
            .ok_or_else(|| malformed("no tree"))?
            .to_string(),
        state,
        pid: v["pid"].as_u64().and_then(|p| u32::try_from(p).ok()),
        restarts: v["restarts"].as_u64().unwrap_or(0) as u32,
        last_exit: v["last_exit"].as_str().map(str::to_string),
        health: v["health"].as_str().unwrap_or("unknown").to_string(),
        since,
        shape: Shape {
            path: v["path"]
                .as_str()
                .map(|p| p.split('/').map(str::to_string).collect())
                .unwrap_or_default(),
            requires: (v["requires"].as_array().into_iter().flatten())
                .filter_map(|r| r.as_str().map(str::to_string))
                .collect(),
        },
    })
}

/// The services a node announces in its gossiped state, by name.
pub fn announced(kv: &BTreeMap<String, String>) -> Vec<ServiceStatus> {
    with_prefix(kv, SERVICE_PREFIX)
        .filter_map(|(name, v)| from_gossip(name, v))
        .collect()
}

/// An operator's command for one service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Start,
    Stop,
    Restart,
}

impl Command {
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Start => "start",
            Command::Stop => "stop",
            Command::Restart => "restart",
        }
    }
}

/// Whether a placed tree runs on a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Run {
    Idle,
    Running,
    Failed,
}
