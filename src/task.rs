//! Small pieces every actor shell uses and nothing else: helper tasks that die with their
//! owner ([`AbortOnDrop`]), tickers, and [`Handle`], the address of a sibling actor that
//! stays valid when that sibling is restarted.
//!
//! Why a handle and not an `ActorRef`: the node restarts a child that dies, and the new child
//! has a new ref. Each actor is given, at spawn, exactly the handles of the actors it sends
//! to; the node rebinds a handle when it respawns that actor, so senders reach the new one
//! without being told. There is no registry of every actor: a handle is typed by one
//! message type and names nothing else.

use ractor::rpc::CallResult;
use ractor::{ActorRef, Message, RpcReplyPort};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// A task that is aborted when this handle is dropped: actors keep their helper tasks (socket
/// readers, tickers, servers) in these, because a panicked or killed actor skips `post_stop`
/// but its state is still dropped.
#[derive(Debug)]
pub struct AbortOnDrop<T>(pub tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Casts `msg()` to `actor` every `period` (the first at once; a slow receiver delays the next
/// tick instead of bunching them) until the actor is gone or the returned handle is dropped.
pub fn ticker<M: Message>(
    actor: ActorRef<M>,
    period: Duration,
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

/// The current ref of one sibling actor, or nothing while it is being restarted. A message
/// sent in that gap is lost, which the protocols tolerate (gossip repeats itself; watchers are
/// resynchronised; a caller gets an error and may retry).
pub struct Handle<M: Message> {
    current: Arc<RwLock<Option<ActorRef<M>>>>,
}

impl<M: Message> Clone for Handle<M> {
    fn clone(&self) -> Self {
        Handle {
            current: self.current.clone(),
        }
    }
}

impl<M: Message> Default for Handle<M> {
    fn default() -> Self {
        Handle {
            current: Arc::default(),
        }
    }
}

impl<M: Message> Handle<M> {
    /// A handle bound to nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Binds the handle to a (re)spawned actor, or unbinds it with `None`.
    pub fn bind(&self, actor: Option<ActorRef<M>>) {
        // A poisoned lock only means a writer panicked between two plain assignments: the
        // value is still a valid ref (or None), so go on with it.
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = actor;
    }

    /// The actor's current ref, if it is running.
    pub fn get(&self) -> Option<ActorRef<M>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Sends without waiting; lost (logged at debug) while the actor is being restarted.
    pub fn cast(&self, msg: M) {
        if let Some(actor) = self.get()
            && actor.cast(msg).is_err()
        {
            tracing::debug!(
                actor = std::any::type_name::<M>(),
                "the actor is gone; message dropped"
            );
        }
    }

    /// Asks and waits at most `timeout`; `None` when the actor is not running or did not
    /// answer in time.
    pub async fn call<T: Send + 'static>(
        &self,
        msg: impl FnOnce(RpcReplyPort<T>) -> M,
        timeout: Option<Duration>,
    ) -> Option<T> {
        let actor = self.get()?;
        match actor.call(msg, timeout).await {
            Ok(CallResult::Success(v)) => Some(v),
            _ => None,
        }
    }
}
