//! `ElectionActor`: the one place a running node decides who leads. The gossip actor tells it
//! the view whenever the view changes (membership at once, state at most every 200 ms); it
//! feeds the [`Election`] core (a new leader is a `leader_changed` event in the node's log)
//! and publishes the view with its leader as a [`ViewSnapshot`]. The alert and control actors,
//! the API, the dashboard and the metrics read that snapshot; none computes a leader itself.

use crate::election::{Election, ViewSnapshot};
use crate::events::{EventLog, NodeEvent};
use crate::gossip::MemberView;
use crate::types::Clock;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::sync::Arc;
use tokio::sync::watch;

/// Where the latest snapshot is read: a new one replaces the old; readers that want to act
/// on each change wait on `changed()`.
pub type Snapshots = watch::Receiver<Arc<ViewSnapshot>>;

/// The sending side, made by the node and kept across the election actor's restarts so that
/// readers never lose their receiver.
pub type SnapshotSender = Arc<watch::Sender<Arc<ViewSnapshot>>>;

/// A new pair with an empty view.
pub fn snapshots() -> (SnapshotSender, Snapshots) {
    let (tx, rx) = watch::channel(Arc::new(ViewSnapshot::default()));
    (Arc::new(tx), rx)
}

pub struct ElectionArgs {
    pub snapshots: SnapshotSender,
    pub events: EventLog,
    pub clock: Clock,
}

pub enum ElectionMsg {
    /// The view changed.
    View(Vec<MemberView>),
}

pub struct ElectionState {
    args: ElectionArgs,
    election: Election,
}

pub struct ElectionActor;

impl Actor for ElectionActor {
    type Msg = ElectionMsg;
    type State = ElectionState;
    type Arguments = ElectionArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<ElectionMsg>,
        args: ElectionArgs,
    ) -> Result<ElectionState, ActorProcessingErr> {
        Ok(ElectionState {
            args,
            election: Election::default(),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<ElectionMsg>,
        msg: ElectionMsg,
        state: &mut ElectionState,
    ) -> Result<(), ActorProcessingErr> {
        let ElectionMsg::View(members) = msg;
        let snapshot = ViewSnapshot::new(members);
        if let Some(change) = state.election.update(&snapshot) {
            tracing::info!(from = ?change.from, to = ?change.to, "leader changed");
            state
                .args
                .events
                .publish_node(state.args.clock.now(), NodeEvent::Leader(change));
        }
        state.args.snapshots.send_replace(Arc::new(snapshot));
        Ok(())
    }
}
