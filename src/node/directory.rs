//! Where a node's actors find each other.
//!
//! ractor's registry of named actors is process-global, and tests and the simulator run many
//! nodes in one process, so names cannot be used. Instead each node has this small directory of
//! the *current* refs of the actors others talk to. The NodeActor writes it whenever it
//! (re)spawns a child; senders look the ref up at send time, so a restarted actor is reached
//! without telling every sender. A message to an actor that is being restarted is lost, which
//! the protocols tolerate (gossip repeats itself; the watchers are resynchronised).

use crate::alert::actor::AlertMsg;
use crate::gossip::actor::GossipMsg;
use crate::secure::Gate;
use crate::store::StoreMsg;
use crate::supervision::manager::ManagerMsg;
use crate::watch::actor::WatchMsg;
use ractor::ActorRef;
use std::sync::{Arc, RwLock};

#[derive(Clone)]
pub struct Directory {
    inner: Arc<RwLock<Refs>>,
    /// Seals and opens everything on the gossip port; fixed for the node's life.
    gate: Arc<Gate>,
}

/// A directory whose gate lets plaintext through (tests and the simulator).
impl Default for Directory {
    fn default() -> Self {
        Directory::new(Arc::new(Gate::plaintext()))
    }
}

#[derive(Default)]
struct Refs {
    gossip: Option<ActorRef<GossipMsg>>,
    watch: Option<ActorRef<WatchMsg>>,
    services: Option<ActorRef<ManagerMsg>>,
    alerts: Option<ActorRef<AlertMsg>>,
    control: Option<ActorRef<crate::control::actor::ControlMsg>>,
    store: Option<ActorRef<StoreMsg>>,
}

impl Directory {
    pub fn new(gate: Arc<Gate>) -> Directory {
        Directory {
            inner: Arc::default(),
            gate,
        }
    }
    /// The node's gate for the gossip port.
    pub fn gate(&self) -> &Arc<Gate> {
        &self.gate
    }
    pub fn gossip(&self) -> Option<ActorRef<GossipMsg>> {
        self.read(|r| r.gossip.clone())
    }
    pub fn watch(&self) -> Option<ActorRef<WatchMsg>> {
        self.read(|r| r.watch.clone())
    }
    pub fn alerts(&self) -> Option<ActorRef<AlertMsg>> {
        self.read(|r| r.alerts.clone())
    }
    pub(crate) fn set_alerts(&self, actor: Option<ActorRef<AlertMsg>>) {
        self.write(|r| r.alerts = actor);
    }
    pub fn control(&self) -> Option<ActorRef<crate::control::actor::ControlMsg>> {
        self.read(|r| r.control.clone())
    }
    pub(crate) fn set_control(&self, actor: Option<ActorRef<crate::control::actor::ControlMsg>>) {
        self.write(|r| r.control = actor);
    }
    pub fn services(&self) -> Option<ActorRef<ManagerMsg>> {
        self.read(|r| r.services.clone())
    }
    pub fn store(&self) -> Option<ActorRef<StoreMsg>> {
        self.read(|r| r.store.clone())
    }
    pub(crate) fn set_store(&self, actor: Option<ActorRef<StoreMsg>>) {
        self.write(|r| r.store = actor);
    }
    pub(crate) fn set_services(&self, actor: Option<ActorRef<ManagerMsg>>) {
        self.write(|r| r.services = actor);
    }
    pub(crate) fn set_gossip(&self, actor: Option<ActorRef<GossipMsg>>) {
        self.write(|r| r.gossip = actor);
    }
    pub(crate) fn set_watch(&self, actor: Option<ActorRef<WatchMsg>>) {
        self.write(|r| r.watch = actor);
    }

    /// Sends to the gossip actor; lost (logged at debug) when it is being restarted.
    pub fn cast_gossip(&self, msg: GossipMsg) {
        if let Some(gossip) = self.gossip()
            && gossip.cast(msg).is_err()
        {
            tracing::debug!("the gossip actor is gone; message dropped");
        }
    }

    /// Sends to the watch supervisor; lost (logged at debug) when it is being restarted.
    pub fn cast_watch(&self, msg: WatchMsg) {
        if let Some(watch) = self.watch()
            && watch.cast(msg).is_err()
        {
            tracing::debug!("the watch supervisor is gone; message dropped");
        }
    }

    // A poisoned lock only means a writer panicked between two plain assignments: the value is
    // still a valid ref (or None), so go on with it.
    fn read<T>(&self, f: impl FnOnce(&Refs) -> T) -> T {
        f(&self.inner.read().unwrap_or_else(|e| e.into_inner()))
    }
    fn write(&self, f: impl FnOnce(&mut Refs)) {
        f(&mut self.inner.write().unwrap_or_else(|e| e.into_inner()))
    }
}

/// A task that is aborted when this handle is dropped: actors keep their helper tasks (socket
/// readers, tickers, servers) in these, because a panicked or killed actor skips `post_stop`
/// but its state is still dropped.
#[derive(Debug)]
pub struct AbortOnDrop<T>(pub tokio::task::JoinHandle<T>);

/// Casts `msg()` to `actor` every `period` (the first at once; a slow receiver delays the next
/// tick instead of bunching them) until the actor is gone or the returned handle is dropped.
pub fn ticker<M: ractor::Message>(
    actor: ActorRef<M>,
    period: std::time::Duration,
    msg: impl Fn() -> M + Send + 'static,
) -> AbortOnDrop<()> {
    AbortOnDrop(tokio::spawn(async move {
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            if actor.cast(msg()).is_err() {
                return;
            }
        }
    }))
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
