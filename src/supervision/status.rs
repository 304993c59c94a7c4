//! What the node knows of its services right now (the `services` listing), and the service
//! events it records. The supervisor actors write; the API, the CLI and gossip read.

use crate::types::Time;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

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
}

/// Something that happened to a service, as the events log records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceEvent {
    pub service: String,
    pub tree: String,
    pub kind: ServiceEventKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceEventKind {
    Started {
        pid: u32,
    },
    Restarted {
        pid: u32,
        restarts: u32,
    },
    Exited {
        how: String,
    },
    Stopped,
    /// Its root tree gave up: nothing restarts it until an operator does.
    Failed {
        reason: String,
    },
}

impl ServiceEvent {
    /// The contract's event kind.
    pub fn kind_str(&self) -> &'static str {
        match self.kind {
            ServiceEventKind::Started { .. } => "service_started",
            ServiceEventKind::Restarted { .. } => "service_restarted",
            ServiceEventKind::Exited { .. } => "service_exited",
            ServiceEventKind::Stopped => "service_stopped",
            ServiceEventKind::Failed { .. } => "service_failed",
        }
    }

    pub fn detail(&self) -> String {
        let tree = &self.tree;
        match &self.kind {
            ServiceEventKind::Started { pid } => format!("started (pid {pid}, tree {tree})"),
            ServiceEventKind::Restarted { pid, restarts } => {
                format!("restarted (pid {pid}, restart {restarts}, tree {tree})")
            }
            ServiceEventKind::Exited { how } => format!("exited: {how}"),
            ServiceEventKind::Stopped => "stopped".to_string(),
            ServiceEventKind::Failed { reason } => {
                format!("failed: tree {tree} gave up ({reason})")
            }
        }
    }
}

/// Told of every status change and every event (the node publishes them).
pub trait Publish: Send + Sync {
    fn status(&self, status: &ServiceStatus);
    fn removed(&self, name: &str);
    fn event(&self, at: Time, event: ServiceEvent);
}

/// The node's table of services.
#[derive(Clone)]
pub struct Board {
    inner: Arc<Mutex<BTreeMap<String, ServiceStatus>>>,
    publish: Arc<dyn Publish>,
    clock: crate::types::Clock,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Board {
    pub fn new(clock: crate::types::Clock, publish: Arc<dyn Publish>) -> Board {
        Board {
            inner: Arc::default(),
            publish,
            clock,
        }
    }

    pub fn now(&self) -> Time {
        self.clock.now()
    }

    /// Every service, by name.
    pub fn list(&self) -> Vec<ServiceStatus> {
        lock(&self.inner).values().cloned().collect()
    }

    pub fn get(&self, name: &str) -> Option<ServiceStatus> {
        lock(&self.inner).get(name).cloned()
    }

    /// Changes `name`'s entry (created as `stopped` in `tree` if new) and publishes it.
    pub fn update(&self, name: &str, tree: &str, f: impl FnOnce(&mut ServiceStatus)) {
        let now = self.clock.now();
        let status = {
            let mut map = lock(&self.inner);
            let entry = map
                .entry(name.to_string())
                .or_insert_with(|| ServiceStatus {
                    name: name.to_string(),
                    tree: tree.to_string(),
                    state: ServiceState::Stopped,
                    pid: None,
                    restarts: 0,
                    last_exit: None,
                    health: "unknown".to_string(),
                    since: now,
                });
            let before = entry.state;
            entry.tree = tree.to_string();
            f(entry);
            if entry.state != before {
                entry.since = now;
            }
            entry.clone()
        };
        self.publish.status(&status);
    }

    /// Sets the state (and, for states without a process, clears the pid).
    pub fn set_state(&self, name: &str, tree: &str, state: ServiceState) {
        self.update(name, tree, |s| {
            s.state = state;
            if matches!(
                state,
                ServiceState::Stopped | ServiceState::Failed | ServiceState::Restarting
            ) {
                s.pid = None;
            }
        });
    }

    /// Publishes every status again (a restarted gossip actor starts from an empty state).
    pub fn republish(&self) {
        for status in self.list() {
            self.publish.status(&status);
        }
    }

    pub fn remove(&self, name: &str) {
        if lock(&self.inner).remove(name).is_some() {
            self.publish.removed(name);
        }
    }

    pub fn event(&self, service: &str, tree: &str, kind: ServiceEventKind) {
        let event = ServiceEvent {
            service: service.to_string(),
            tree: tree.to_string(),
            kind,
        };
        tracing::info!(
            service,
            tree,
            event = event.kind_str(),
            "{}",
            event.detail()
        );
        self.publish.event(self.clock.now(), event);
    }
}

/// The compact form of a status in the node's gossiped state (`svc.<name>`): JSON of the
/// fields other nodes need for a cluster-wide view.
pub fn gossip_value(s: &ServiceStatus) -> String {
    serde_json::json!({
        "tree": s.tree,
        "state": s.state.as_str(),
        "pid": s.pid,
        "restarts": s.restarts,
        "last_exit": s.last_exit,
        "health": s.health,
        "since": s.since.0,
    })
    .to_string()
}

/// The gossip key of a service.
pub fn gossip_key(name: &str) -> String {
    format!("svc.{name}")
}

/// A status read back from another node's gossiped `svc.<name>` value (see [`gossip_value`]);
/// `None` if it does not parse.
pub fn from_gossip(name: &str, value: &str) -> Option<ServiceStatus> {
    let v: serde_json::Value = serde_json::from_str(value).ok()?;
    let state = match v["state"].as_str()? {
        "starting" => ServiceState::Starting,
        "running" => ServiceState::Running,
        "stopping" => ServiceState::Stopping,
        "stopped" => ServiceState::Stopped,
        "restarting" => ServiceState::Restarting,
        "failed" => ServiceState::Failed,
        _ => return None,
    };
    Some(ServiceStatus {
        name: name.to_string(),
        tree: v["tree"].as_str()?.to_string(),
        state,
        pid: v["pid"].as_u64().and_then(|p| u32::try_from(p).ok()),
        restarts: v["restarts"].as_u64().unwrap_or(0) as u32,
        last_exit: v["last_exit"].as_str().map(str::to_string),
        health: v["health"].as_str().unwrap_or("unknown").to_string(),
        since: Time(v["since"].as_u64().unwrap_or(0)),
    })
}

/// The services a node announces in its gossiped state, by name.
pub fn announced(kv: &BTreeMap<String, String>) -> Vec<ServiceStatus> {
    crate::control::with_prefix(kv, "svc.")
        .filter_map(|(name, v)| from_gossip(name, v))
        .collect()
}

#[cfg(test)]
mod gossip_tests {
    use super::*;

    #[test]
    fn a_status_survives_the_trip_through_gossip() {
        let s = ServiceStatus {
            name: "db".into(),
            tree: "tv".into(),
            state: ServiceState::Running,
            pid: Some(42),
            restarts: 2,
            last_exit: Some("exit 3".into()),
            health: "ok".into(),
            since: Time(1_234),
        };
        let kv: BTreeMap<String, String> = [
            (gossip_key("db"), gossip_value(&s)),
            ("svc.bad".into(), "{".into()),
            ("sys".into(), "1".into()),
        ]
        .into_iter()
        .collect();
        assert_eq!(announced(&kv), vec![s]);
    }
}
