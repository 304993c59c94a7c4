//! `WatchSupervisor` and its `PeerWatcher`s: one small actor per live peer, each owning a
//! [`PeerWatch`] core, so a misbehaving peer's timers and state are isolated from the others
//! and a crash of one watcher costs only that peer's history (it is respawned fresh).
//!
//! The gossip actor starts and stops watchers (`WatchStart`/`WatchStop` outputs) and routes
//! watcher inputs here; verdicts go straight back to the gossip actor through its
//! [`Handle`]. A watcher's timers are plain delayed messages: the core ignores stale wakes,
//! so nothing is ever cancelled.

use crate::actors::gossip::GossipMsg;
use crate::supervision::policy::Intensity;
use crate::task::Handle;
use crate::types::{Clock, NodeName};
use crate::watch::{Input, Output, PeerWatch, Settings};
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use std::collections::BTreeMap;
use std::time::Duration;

/// Restarts of watchers allowed in [`WATCHER_PERIOD`] before the supervisor gives up (and the
/// NodeActor restarts it, resynchronised from gossip).
const WATCHER_RESTARTS: usize = 20;
const WATCHER_PERIOD: Duration = Duration::from_secs(10);

pub enum WatchMsg {
    /// Watch `peer` (again: a running watcher is reset).
    Start(NodeName),
    Stop(NodeName),
    Input(NodeName, Input),
    /// The gossip actor was restarted: its new core starts its watchers afresh.
    StopAll,
}

pub struct WatchArgs {
    pub settings: Settings,
    pub clock: Clock,
    pub gossip: Handle<GossipMsg>,
}

pub struct WatchState {
    args: WatchArgs,
    watchers: BTreeMap<NodeName, ActorRef<Input>>,
    budget: Intensity,
}

pub struct WatchSupervisor;

impl WatchState {
    async fn spawn(&mut self, myself: &ActorRef<WatchMsg>, peer: NodeName) {
        let args = WatcherArgs {
            peer: peer.clone(),
            settings: self.args.settings.clone(),
            clock: self.args.clock,
            gossip: self.args.gossip.clone(),
        };
        match Actor::spawn_linked(None, PeerWatcher, args, myself.get_cell()).await {
            Ok((watcher, _)) => {
                self.watchers.insert(peer, watcher);
            }
            Err(e) => tracing::error!(%peer, error = %e, "cannot start a watcher"),
        }
    }

    fn peer_of(&self, id: ActorId) -> Option<NodeName> {
        self.watchers
            .iter()
            .find(|(_, w)| w.get_id() == id)
            .map(|(p, _)| p.clone())
    }
}

impl Actor for WatchSupervisor {
    type Msg = WatchMsg;
    type State = WatchState;
    type Arguments = WatchArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<WatchMsg>,
        args: WatchArgs,
    ) -> Result<WatchState, ActorProcessingErr> {
        Ok(WatchState {
            args,
            watchers: BTreeMap::new(),
            budget: Intensity::new(WATCHER_RESTARTS, WATCHER_PERIOD),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<WatchMsg>,
        msg: WatchMsg,
        state: &mut WatchState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            WatchMsg::Start(peer) => match state.watchers.get(&peer) {
                Some(watcher) => {
                    let _ = watcher.cast(Input::Reset);
                }
                None => state.spawn(&myself, peer).await,
            },
            WatchMsg::Stop(peer) => {
                if let Some(watcher) = state.watchers.remove(&peer) {
                    watcher.stop(None);
                }
            }
            WatchMsg::Input(peer, input) => {
                if let Some(watcher) = state.watchers.get(&peer) {
                    let _ = watcher.cast(input);
                }
            }
            WatchMsg::StopAll => {
                for (_, watcher) in std::mem::take(&mut state.watchers) {
                    watcher.stop(None);
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<WatchMsg>,
        event: SupervisionEvent,
        state: &mut WatchState,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, why) = match &event {
            SupervisionEvent::ActorFailed(cell, e) => (cell, e.to_string()),
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                (cell, reason.clone().unwrap_or_else(|| "stopped".into()))
            }
            _ => return Ok(()),
        };
        // A watcher we stopped on purpose is no longer in the map: nothing to do.
        let Some(peer) = state.peer_of(cell.get_id()) else {
            return Ok(());
        };
        drop(event);
        state.watchers.remove(&peer);
        if !state.budget.allow(state.args.clock.now()) {
            return Err(format!(
                "watchers fail too often ({}); last: {peer}: {why}",
                state.budget.describe()
            )
            .into());
        }
        tracing::warn!(%peer, reason = %why, "watcher died; starting a fresh one");
        state.spawn(&myself, peer).await;
        Ok(())
    }
}

struct WatcherArgs {
    peer: NodeName,
    settings: Settings,
    clock: Clock,
    gossip: Handle<GossipMsg>,
}

struct WatcherState {
    peer: NodeName,
    core: PeerWatch,
    clock: Clock,
    gossip: Handle<GossipMsg>,
}

/// Watches one peer. Its messages are the core's inputs (`Wake` included: a timer is a delayed message carrying its token).
struct PeerWatcher;

impl WatcherState {
    fn carry_out(&self, myself: &ActorRef<Input>, outputs: Vec<Output>) {
        for output in outputs {
            match output {
                Output::Verdict(verdict) => {
                    self.gossip
                        .cast(GossipMsg::Core(crate::gossip::core::Input::Verdict {
                            peer: self.peer.clone(),
                            verdict,
                        }))
                }
                Output::WakeAt { at, token } => {
                    let delay = self
                        .clock
                        .instant_at(at)
                        .saturating_duration_since(std::time::Instant::now());
                    // Fire and forget: a wake for a stopped watcher just fails to send.
                    drop(myself.send_after(delay, move || Input::Wake(token)));
                }
            }
        }
    }
}

impl Actor for PeerWatcher {
    type Msg = Input;
    type State = WatcherState;
    type Arguments = WatcherArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Input>,
        args: WatcherArgs,
    ) -> Result<WatcherState, ActorProcessingErr> {
        let now = args.clock.now();
        let mut core = PeerWatch::new(now, args.settings);
        let outputs = core.start(now);
        let state = WatcherState {
            peer: args.peer,
            core,
            clock: args.clock,
            gossip: args.gossip,
        };
        state.carry_out(&myself, outputs);
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Input>,
        input: Input,
        state: &mut WatcherState,
    ) -> Result<(), ActorProcessingErr> {
        let outputs = state.core.handle(state.clock.now(), input);
        state.carry_out(&myself, outputs);
        Ok(())
    }
}
