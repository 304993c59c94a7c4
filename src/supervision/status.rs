//! What the node knows of its services right now (the `services` listing), and the service
//! events it records. The supervisor actors write; the API, the CLI and gossip read.

use crate::events::{ServiceEvent, ServiceEventKind};
use crate::keys::{ServiceState, ServiceStatus, Shape};
use crate::types::Time;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

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
    /// Each declared service's place in the graph, set when its tree is loaded.
    shapes: Arc<Mutex<BTreeMap<String, Shape>>>,
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
            shapes: Arc::default(),
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
                    shape: Default::default(),
                });
            let before = entry.state;
            entry.tree = tree.to_string();
            if let Some(shape) = lock(&self.shapes).get(name) {
                entry.shape.clone_from(shape);
            }
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

    /// Declares where `name` sits in its tree and what it requires; a service already listed
    /// is published again if that changed.
    pub fn shape(&self, name: &str, shape: Shape) {
        lock(&self.shapes).insert(name.to_string(), shape.clone());
        let changed = {
            let mut map = lock(&self.inner);
            match map.get_mut(name) {
                Some(entry) if entry.shape != shape => {
                    entry.shape = shape;
                    Some(entry.clone())
                }
                _ => None,
            }
        };
        if let Some(status) = changed {
            self.publish.status(&status);
        }
    }

    pub fn remove(&self, name: &str) {
        lock(&self.shapes).remove(name);
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

#[cfg(test)]
mod gossip_tests {
    use super::*;
    use crate::keys::{announced, gossip_key, gossip_value};

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
            shape: Default::default(),
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
