//! `ElectionActor`: reads the gossip actor's view every tick, tells the [`Election`] core (a
//! new leader is a `leader_changed` event in the node's log) and hands the view on to the
//! alert actor, which steps the alert protocol with it, and to the control actor (the control
//! plane across hosts).

use super::Election;
use crate::alert::actor::AlertMsg;
use crate::gossip::actor::{GossipMsg, GossipShared, NodeEvent};
use crate::node::directory::{AbortOnDrop, Directory, ticker};
use crate::types::{Clock, NodeName};
use ractor::rpc::CallResult;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::time::Duration;

/// How often the view is read.
pub const TICK: Duration = Duration::from_millis(200);

/// A change of leader, for the events log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderEvent {
    pub from: Option<NodeName>,
    pub to: Option<NodeName>,
}

pub struct ElectionArgs {
    pub directory: Directory,
    pub shared: GossipShared,
    pub clock: Clock,
}

pub enum ElectionMsg {
    Tick,
}

pub struct ElectionState {
    args: ElectionArgs,
    election: Election,
    _ticker: AbortOnDrop<()>,
}

pub struct ElectionActor;

impl Actor for ElectionActor {
    type Msg = ElectionMsg;
    type State = ElectionState;
    type Arguments = ElectionArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<ElectionMsg>,
        args: ElectionArgs,
    ) -> Result<ElectionState, ActorProcessingErr> {
        Ok(ElectionState {
            args,
            election: Election::default(),
            _ticker: ticker(myself, TICK, || ElectionMsg::Tick),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<ElectionMsg>,
        msg: ElectionMsg,
        state: &mut ElectionState,
    ) -> Result<(), ActorProcessingErr> {
        let ElectionMsg::Tick = msg;
        let Some(gossip) = state.args.directory.gossip() else {
            return Ok(());
        };
        let view = match gossip
            .call(GossipMsg::Members, Some(Duration::from_secs(2)))
            .await
        {
            Ok(CallResult::Success(view)) => view,
            _ => return Ok(()),
        };
        if let Some(change) = state.election.update(&view) {
            tracing::info!(from = ?change.from, to = ?change.to, "leader changed");
            state.args.shared.publish_node(
                state.args.clock.now(),
                NodeEvent::Leader(LeaderEvent {
                    from: change.from,
                    to: change.to,
                }),
            );
        }
        if let Some(control) = state.args.directory.control() {
            let _ = control.cast(crate::control::actor::ControlMsg::View(view.clone()));
        }
        if let Some(alerts) = state.args.directory.alerts() {
            let _ = alerts.cast(AlertMsg::View(view));
        }
        Ok(())
    }
}
