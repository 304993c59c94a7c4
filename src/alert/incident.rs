//! What is worth an alert, read off a node's view of the cluster — the same on every host, so
//! every host derives the same incident ids:
//!
//! * `node_down:<node>:<incarnation>` — a member is down; `since` is its `last_heard`, the
//!   observers are the members that gossip a suspicion of it (`sus.<node>`);
//! * `node_up:<node>:<incarnation>` — a member is alive again after a `node_down` of an older
//!   incarnation was sent, and no `node_up` since;
//! * `service_failed:<node>:<service>:<since>` — a node's tree gave up on a service
//!   (`svc.<service>` in its state says `failed`, since that moment);
//! * `service_up:<node>:<service>:<since>` — running again after a sent `service_failed`;
//! * `test:<node>:<at>` — `nbwatch alerts test` on that node asked for one.
//!
//! Silences (`silence.<target>` keys) hide incidents of their target until they expire.

use super::log::Log;
use crate::gossip::{MemberView, Status};
use crate::types::{NodeName, Time};
use serde_json::{Value, json};
use std::time::Duration;

/// The prefix of a test request key in a node's state: `alerttest.<at ms>`.
pub const TEST_PREFIX: &str = "alerttest.";
/// A test request older than this is not sent any more.
pub const TEST_WINDOW: Duration = Duration::from_secs(600);
/// The prefix of a silence key in a node's state: `silence.<node>` or `silence.<node>:<service>`.
pub const SILENCE_PREFIX: &str = "silence.";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    NodeDown,
    NodeUp,
    ServiceFailed,
    ServiceUp,
    Test,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::NodeDown => "node_down",
            Kind::NodeUp => "node_up",
            Kind::ServiceFailed => "service_failed",
            Kind::ServiceUp => "service_up",
            Kind::Test => "test",
        }
    }

    /// `firing` for a problem, `resolved` for its end.
    pub fn status(self) -> &'static str {
        match self {
            Kind::NodeUp | Kind::ServiceUp => "resolved",
            Kind::NodeDown | Kind::ServiceFailed | Kind::Test => "firing",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Incident {
    pub id: String,
    pub kind: Kind,
    pub node: NodeName,
    pub service: Option<String>,
    pub since: Time,
    pub observers: Vec<NodeName>,
    pub summary: String,
}

impl Incident {
    /// The contract's alert JSON, as sent by `sent_by` at `at`.
    pub fn to_json(&self, sent_by: &NodeName, at: Time) -> Value {
        json!({
            "id": self.id,
            "kind": self.kind.as_str(),
            "status": self.kind.status(),
            "node": self.node.as_str(),
            "service": self.service,
            "sent_by": sent_by.as_str(),
            "at": at.to_rfc3339(),
            "since": self.since.to_rfc3339(),
            "observers": self.observers.iter().map(NodeName::as_str).collect::<Vec<_>>(),
            "summary": self.summary,
        })
    }
}

/// "15:30:02" (UTC) of a time.
fn clock(t: Time) -> String {
    let s = t.to_rfc3339();
    s.get(11..19).unwrap_or(&s).to_string()
}

fn names(v: &[NodeName]) -> String {
    v.iter()
        .map(NodeName::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `svc.<name>` entries of a member: (service, state, since).
fn services(m: &MemberView) -> impl Iterator<Item = (&str, String, Time)> {
    m.kv.iter().filter_map(|(k, v)| {
        let name = k.strip_prefix("svc.")?;
        let value: Value = serde_json::from_str(v).ok()?;
        let state = value.get("state")?.as_str()?.to_string();
        let since = Time(value.get("since")?.as_u64()?);
        Some((name, state, since))
    })
}

/// The incarnation in a `node_down:<node>:<inc>` / `node_up:...` id of `node`.
fn incarnation_of(id: &str, kind: Kind, node: &NodeName) -> Option<u64> {
    let rest = id.strip_prefix(kind.as_str())?.strip_prefix(':')?;
    let rest = rest.strip_prefix(node.as_str())?.strip_prefix(':')?;
    rest.parse().ok()
}

/// The `since` in a `service_failed:<node>:<service>:<since>` / `service_up:...` id.
fn service_since(id: &str, kind: Kind, node: &NodeName, service: &str) -> Option<u64> {
    let rest = id.strip_prefix(kind.as_str())?.strip_prefix(':')?;
    let rest = rest.strip_prefix(node.as_str())?.strip_prefix(':')?;
    let rest = rest.strip_prefix(service)?.strip_prefix(':')?;
    rest.parse().ok()
}

/// Every incident in `view` (with `log` for the resolutions), sorted by id.
pub fn incidents(view: &[MemberView], log: &Log, now: Time) -> Vec<Incident> {
    let mut out = Vec::new();
    for m in view {
        match m.status {
            Status::Down => {
                let observers: Vec<NodeName> = view
                    .iter()
                    .filter(|o| o.kv.contains_key(&format!("sus.{}", m.name)))
                    .map(|o| o.name.clone())
                    .collect();
                let summary = if observers.is_empty() {
                    format!("{} stopped talking at {}", m.name, clock(m.last_heard))
                } else {
                    format!(
                        "{} stopped talking at {} (confirmed by {})",
                        m.name,
                        clock(m.last_heard),
                        names(&observers)
                    )
                };
                out.push(Incident {
                    id: format!("node_down:{}:{}", m.name, m.incarnation.0),
                    kind: Kind::NodeDown,
                    node: m.name.clone(),
                    service: None,
                    since: m.last_heard,
                    observers,
                    summary,
                });
            }
            Status::Alive | Status::Suspect => {
                // Up again: the newest sent node_down of an older incarnation, and no node_up
                // sent since it.
                let inc = m.incarnation.0;
                let last_down = log
                    .sent_ids()
                    .filter_map(|id| incarnation_of(id, Kind::NodeDown, &m.name))
                    .filter(|i| *i < inc)
                    .max();
                if let Some(down) = last_down {
                    let resolved = log
                        .sent_ids()
                        .filter_map(|id| incarnation_of(id, Kind::NodeUp, &m.name))
                        .any(|i| i > down && i < inc);
                    if !resolved {
                        out.push(Incident {
                            id: format!("node_up:{}:{}", m.name, inc),
                            kind: Kind::NodeUp,
                            node: m.name.clone(),
                            service: None,
                            since: now,
                            observers: Vec::new(),
                            summary: format!("{} is back (incarnation {inc})", m.name),
                        });
                    }
                }
            }
            Status::Left => {}
        }
        for (service, state, since) in services(m) {
            match state.as_str() {
                "failed" => out.push(Incident {
                    id: format!("service_failed:{}:{service}:{}", m.name, since.0),
                    kind: Kind::ServiceFailed,
                    node: m.name.clone(),
                    service: Some(service.to_string()),
                    since,
                    observers: vec![m.name.clone()],
                    summary: format!(
                        "{service} on {} failed at {}: its supervision tree gave up",
                        m.name,
                        clock(since)
                    ),
                }),
                "running" => {
                    let last_failed = log
                        .sent_ids()
                        .filter_map(|id| service_since(id, Kind::ServiceFailed, &m.name, service))
                        .filter(|t| *t < since.0)
                        .max();
                    if let Some(failed) = last_failed {
                        let resolved = log
                            .sent_ids()
                            .filter_map(|id| service_since(id, Kind::ServiceUp, &m.name, service))
                            .any(|t| t > failed && t < since.0);
                        if !resolved {
                            out.push(Incident {
                                id: format!("service_up:{}:{service}:{}", m.name, since.0),
                                kind: Kind::ServiceUp,
                                node: m.name.clone(),
                                service: Some(service.to_string()),
                                since,
                                observers: vec![m.name.clone()],
                                summary: format!("{service} on {} is running again", m.name),
                            });
                        }
                    }
                }
                _ => {}
            }
        }
        for key in m.kv.keys() {
            let Some(at) = key
                .strip_prefix(TEST_PREFIX)
                .and_then(|t| t.parse::<u64>().ok())
            else {
                continue;
            };
            if now.since(Time(at)) < TEST_WINDOW {
                out.push(Incident {
                    id: format!("test:{}:{at}", m.name),
                    kind: Kind::Test,
                    node: m.name.clone(),
                    service: None,
                    since: Time(at),
                    observers: vec![m.name.clone()],
                    summary: format!("test alert requested on {}", m.name),
                });
            }
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out.dedup_by(|a, b| a.id == b.id);
    out
}

/// A silence as gossiped: who set it, until when, why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Silence {
    pub target: String,
    pub by: NodeName,
    pub until: Time,
    pub reason: String,
}

impl Silence {
    pub fn value(&self) -> String {
        json!({ "until": self.until.0, "reason": self.reason }).to_string()
    }

    /// True if it hides `incident` at `now`.
    pub fn covers(&self, incident: &Incident, now: Time) -> bool {
        if now >= self.until || incident.kind == Kind::Test {
            return false;
        }
        match self.target.split_once(':') {
            Some((node, service)) => {
                incident.node.as_str() == node && incident.service.as_deref() == Some(service)
            }
            None => incident.node.as_str() == self.target,
        }
    }
}

/// Every silence gossiped by any member (expired ones included).
pub fn silences(view: &[MemberView]) -> Vec<Silence> {
    let mut out = Vec::new();
    for m in view {
        for (k, v) in &m.kv {
            let Some(target) = k.strip_prefix(SILENCE_PREFIX) else {
                continue;
            };
            let Ok(value) = serde_json::from_str::<Value>(v) else {
                continue;
            };
            let Some(until) = value.get("until").and_then(Value::as_u64) else {
                continue;
            };
            out.push(Silence {
                target: target.to_string(),
                by: m.name.clone(),
                until: Time(until),
                reason: value
                    .get("reason")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            });
        }
    }
    out
}
