//! What the gossip actor shares with the rest of the node, and keeps across its own restarts:
//! the cluster events (an `OutputPort` for subscribers, plus a bounded copy of the recent
//! membership events for the API) and the addresses of the members it knew (the seeds of a
//! restarted gossip actor, so it finds the cluster again even when the configured seeds are
//! down).
//!
//! The history store gets every event, `StateChanged` and service events included, through a
//! [`Recorder`] rather than the `OutputPort`: ractor's output port is a broadcast channel of
//! ten that silently skips what a slow subscriber missed, and a joiner's full state is
//! hundreds of changes at once. The recorder casts into the store's (unbounded) mailbox, and
//! the store bounds what it buffers itself.

use crate::alert::actor::AlertSentEvent;
use crate::election::actor::LeaderEvent;
use crate::gossip::ClusterEvent;
use crate::supervision::status::ServiceEvent;
use crate::types::Time;
use ractor::OutputPort;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// How many membership events the API can show.
pub const EVENT_LOG_LEN: usize = 1000;

/// What the events log holds: membership events from gossip, and this node's service events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeEvent {
    Cluster(ClusterEvent),
    Service(ServiceEvent),
    /// The leader of this node's view changed.
    Leader(LeaderEvent),
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

/// Owned by the NodeActor, handed to every life of the gossip actor.
#[derive(Clone)]
pub struct GossipShared {
    /// Every cluster event, `StateChanged` included, for in-node subscribers.
    pub events: Arc<OutputPort<ClusterEvent>>,
    log: Arc<Mutex<VecDeque<RecordedEvent>>>,
    known: Arc<Mutex<Vec<SocketAddr>>>,
    recorder: Arc<Mutex<Option<Recorder>>>,
}

impl Default for GossipShared {
    fn default() -> Self {
        GossipShared {
            events: Arc::new(OutputPort::default()),
            log: Arc::default(),
            known: Arc::default(),
            recorder: Arc::default(),
        }
    }
}

// Poisoning only means a panic between two plain operations on a plain collection; the data
// is still consistent, so keep going with it.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl GossipShared {
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

    pub fn set_known(&self, addrs: Vec<SocketAddr>) {
        *lock(&self.known) = addrs;
    }

    pub fn known(&self) -> Vec<SocketAddr> {
        lock(&self.known).clone()
    }
}
