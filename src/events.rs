//! The node's events: what gossip tells (membership, state changes), what this node's
//! services did, leader changes and alerts sent; and [`EventLog`], where they are published.
//!
//! The log keeps a bounded copy of the recent events for the API, sends every cluster event
//! on an `OutputPort` for in-node subscribers, and hands every event to a [`Recorder`] (the
//! history store). The store does not subscribe to the `OutputPort`: ractor's output port is
//! a broadcast channel of ten that silently skips what a slow subscriber missed, and a
//! joiner's full state is hundreds of changes at once. The recorder casts into the store's
//! (unbounded) mailbox, and the store bounds what it buffers itself.
//!
//! These types sit at the bottom of the crate so that the cores that make events (gossip,
//! supervision, election, alerts) and the adapters that keep or show them (history, API)
//! share one definition without importing each other.

use crate::types::{Incarnation, NodeName, Time};
use ractor::OutputPort;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// What the rest of the node (history, election, alerts, API) hears from gossip.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterEvent {
    NodeJoined {
        node: NodeName,
        addr: SocketAddr,
        incarnation: Incarnation,
    },
    NodeSuspect {
        node: NodeName,
        incarnation: Incarnation,
        by: Vec<NodeName>,
    },
    NodeDown {
        node: NodeName,
        incarnation: Incarnation,
        last_heard: Time,
        witnesses: Vec<NodeName>,
    },
    NodeUp {
        node: NodeName,
        incarnation: Incarnation,
    },
    NodeLeft {
        node: NodeName,
        incarnation: Incarnation,
    },
    /// Two representatives of the upper layer could not reach zone `zone` (see
    /// `gossip::core::zones`): the whole zone is dead or cut off from this one.
    ZoneUnreachable {
        zone: String,
        last_heard: Time,
    },
    ZoneReachable {
        zone: String,
    },
    /// A key of some node's state changed (`None`: deleted).
    StateChanged {
        node: NodeName,
        key: String,
        value: Option<String>,
    },
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

/// One sink's delivery result: the sink (`exec`, `webhook`, ...) and `ok` or the error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkResult {
    pub sink: String,
    pub result: String,
}

impl SinkResult {
    /// The result of a sink that accepted the alert.
    pub const OK: &str = "ok";

    /// Whether the sink accepted the alert.
    pub fn accepted(&self) -> bool {
        self.result == SinkResult::OK
    }
}

/// An alert this node sent, for the events log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertSentEvent {
    pub id: String,
    pub summary: String,
    pub results: Vec<SinkResult>,
}

/// A change of leader in this node's view: the election core reports it, the events log
/// records it as `leader_changed`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderChanged {
    pub from: Option<NodeName>,
    pub to: Option<NodeName>,
}

/// How many membership events the API can show.
pub const EVENT_LOG_LEN: usize = 1000;

/// What the events log holds: membership events from gossip, and this node's service events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeEvent {
    Cluster(ClusterEvent),
    Service(ServiceEvent),
    /// The leader of this node's view changed.
    Leader(LeaderChanged),
    /// This node sent an alert.
    AlertSent(AlertSentEvent),
}

/// An event and when this node saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedEvent {
    pub at: Time,
    pub event: NodeEvent,
}

/// Where every recorded event goes (the history store); set by whoever runs the store.
pub type Recorder = Arc<dyn Fn(RecordedEvent) + Send + Sync>;

/// The node's events: owned by the node, handed to every actor that publishes or reads them,
/// and kept across the restart of any of them.
#[derive(Clone)]
pub struct EventLog {
    /// Every cluster event, `StateChanged` included, for in-node subscribers.
    pub events: Arc<OutputPort<ClusterEvent>>,
    log: Arc<Mutex<VecDeque<RecordedEvent>>>,
    recorder: Arc<Mutex<Option<Recorder>>>,
}

impl Default for EventLog {
    fn default() -> Self {
        EventLog {
            events: Arc::new(OutputPort::default()),
            log: Arc::default(),
            recorder: Arc::default(),
        }
    }
}

// Poisoning only means a panic between two plain operations on a plain collection; the data
// is still consistent, so keep going with it.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl EventLog {
    /// Publishes an event and keeps membership events (not `StateChanged`) for the API.
    pub fn publish(&self, at: Time, event: ClusterEvent) {
        let recorded = RecordedEvent {
            at,
            event: NodeEvent::Cluster(event.clone()),
        };
        if !matches!(event, ClusterEvent::StateChanged { .. }) {
            self.record(recorded.clone());
        }
        self.to_recorder(recorded);
        self.events.send(event);
    }

    /// Records a service event of this node.
    pub fn publish_service(&self, at: Time, event: ServiceEvent) {
        let recorded = RecordedEvent {
            at,
            event: NodeEvent::Service(event),
        };
        self.record(recorded.clone());
        self.to_recorder(recorded);
    }

    /// Records an event of this node's own (leader changes, alerts sent).
    pub fn publish_node(&self, at: Time, event: NodeEvent) {
        let recorded = RecordedEvent { at, event };
        self.record(recorded.clone());
        self.to_recorder(recorded);
    }

    /// Sets (or, with `None`, removes) where every event is recorded.
    pub fn set_recorder(&self, recorder: Option<Recorder>) {
        *lock(&self.recorder) = recorder;
    }

    fn to_recorder(&self, recorded: RecordedEvent) {
        let recorder = lock(&self.recorder).clone();
        if let Some(recorder) = recorder {
            recorder(recorded);
        }
    }

    fn record(&self, recorded: RecordedEvent) {
        let mut log = lock(&self.log);
        if log.len() >= EVENT_LOG_LEN {
            log.pop_front();
        }
        log.push_back(recorded);
    }

    /// The recent membership events, oldest first.
    pub fn recent(&self) -> Vec<RecordedEvent> {
        lock(&self.log).iter().cloned().collect()
    }
}

/// One event as the contract states it: `{"at", "node", "kind", "detail"}` plus, as
/// extensions, `incarnation`, for `node_down` the structured `last_heard` and `witnesses`, for
/// service events `service` and `tree`, for a leader change `leader`, for an alert `incident`.
/// The history's rows and the API's answers are both made from this, so a query gives back
/// what the API showed when it happened.
#[derive(Clone, Debug, PartialEq)]
pub struct Described {
    pub at: Time,
    pub node: NodeName,
    pub kind: &'static str,
    pub detail: String,
    pub incarnation: Option<u64>,
    pub last_heard: Option<Time>,
    /// The other extensions, by name.
    pub extra: Vec<(&'static str, Value)>,
}

impl Described {
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "at": self.at.to_rfc3339(), "node": self.node.as_str(), "kind": self.kind,
            "detail": self.detail,
        });
        if let Some(inc) = self.incarnation {
            v["incarnation"] = Value::from(inc);
        }
        if let Some(at) = self.last_heard {
            v["last_heard"] = Value::from(at.to_rfc3339());
        }
        for (k, x) in &self.extra {
            v[*k] = x.clone();
        }
        v
    }
}

impl RecordedEvent {
    /// What this event is in the contract's terms; `me` is the node whose own events
    /// (services, leader changes, alerts sent) these are. `None` for `StateChanged`, which is
    /// not an event of the log.
    pub fn describe(&self, me: &NodeName) -> Option<Described> {
        let mine = |kind, detail, extra| Described {
            at: self.at,
            node: me.clone(),
            kind,
            detail,
            incarnation: None,
            last_heard: None,
            extra,
        };
        let cluster = match &self.event {
            NodeEvent::Cluster(c) => c,
            NodeEvent::Service(e) => {
                return Some(mine(
                    e.kind_str(),
                    e.detail(),
                    vec![
                        ("service", Value::from(e.service.as_str())),
                        ("tree", Value::from(e.tree.as_str())),
                    ],
                ));
            }
            NodeEvent::Leader(l) => {
                let name = |n: &Option<NodeName>| {
                    n.as_ref().map_or("nobody", NodeName::as_str).to_string()
                };
                return Some(mine(
                    "leader_changed",
                    format!("leader {} -> {}", name(&l.from), name(&l.to)),
                    vec![("leader", json!(l.to.as_ref().map(NodeName::as_str)))],
                ));
            }
            NodeEvent::AlertSent(a) => {
                let results: Vec<String> = a
                    .results
                    .iter()
                    .map(|r| format!("{}: {}", r.sink, r.result))
                    .collect();
                return Some(mine(
                    "alert_sent",
                    format!("{} ({}) [{}]", a.summary, a.id, results.join("; ")),
                    vec![("incident", Value::from(a.id.as_str()))],
                ));
            }
        };
        let names = |v: &[NodeName]| {
            v.iter()
                .map(NodeName::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let about = |node: &NodeName, kind, incarnation: &Incarnation, detail| Described {
            at: self.at,
            node: node.clone(),
            kind,
            detail,
            incarnation: Some(incarnation.0),
            last_heard: None,
            extra: Vec::new(),
        };
        Some(match cluster {
            ClusterEvent::NodeJoined {
                node,
                addr,
                incarnation,
            } => about(
                node,
                "node_joined",
                incarnation,
                format!("joined from {addr} (incarnation {incarnation})"),
            ),
            ClusterEvent::NodeSuspect {
                node,
                incarnation,
                by,
            } => about(
                node,
                "node_suspect",
                incarnation,
                format!("suspected by {} (incarnation {incarnation})", names(by)),
            ),
            ClusterEvent::NodeDown {
                node,
                incarnation,
                last_heard,
                witnesses,
            } => Described {
                last_heard: Some(*last_heard),
                extra: vec![(
                    "witnesses",
                    json!(witnesses.iter().map(NodeName::as_str).collect::<Vec<_>>()),
                )],
                ..about(
                    node,
                    "node_down",
                    incarnation,
                    format!(
                        "last heard {}, confirmed by {} (incarnation {incarnation})",
                        last_heard.to_rfc3339(),
                        names(witnesses)
                    ),
                )
            },
            ClusterEvent::NodeUp { node, incarnation } => about(
                node,
                "node_up",
                incarnation,
                format!("back (incarnation {incarnation})"),
            ),
            ClusterEvent::NodeLeft { node, incarnation } => about(
                node,
                "node_left",
                incarnation,
                format!("left the cluster (incarnation {incarnation})"),
            ),
            ClusterEvent::ZoneUnreachable { zone, last_heard } => Described {
                at: self.at,
                node: NodeName::from(format!("zone:{zone}").as_str()),
                kind: "zone_unreachable",
                detail: format!(
                    "zone {zone} unreachable, last heard {}",
                    last_heard.to_rfc3339()
                ),
                incarnation: None,
                last_heard: Some(*last_heard),
                extra: vec![("zone", json!(zone))],
            },
            ClusterEvent::ZoneReachable { zone } => Described {
                at: self.at,
                node: NodeName::from(format!("zone:{zone}").as_str()),
                kind: "zone_reachable",
                detail: format!("zone {zone} reachable again"),
                incarnation: None,
                last_heard: None,
                extra: vec![("zone", json!(zone))],
            },
            ClusterEvent::StateChanged { .. } => return None,
        })
    }
}
