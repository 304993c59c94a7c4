//! `WatchSupervisor` and its `PeerWatcher`s: one small actor per live peer, each owning a
//! [`PeerWatch`] core, so a misbehaving peer's timers and state are isolated from the others
//! and a crash of one watcher costs only that peer's history (it is respawned fresh).
//!
//! The gossip actor starts and stops watchers (`WatchStart`/`WatchStop` outputs) and routes
//! to the watcher of a peer what concerns it: signs of life and the answers to its probes.
//! A watcher sends its probes itself, through the node's [`Outbox`], drawing the helpers of
//! an indirect probe from the election's view; only its verdicts (suspect, clear) go to the
//! gossip actor, through its [`Handle`], since they change the gossiped state. A watcher's
//! timers are plain delayed messages: the core ignores stale wakes, so nothing is ever
//! cancelled.

use crate::actors::election::Snapshots;
use crate::actors::gossip::GossipMsg;
use crate::election::is_live;
use crate::supervision::policy::Intensity;
use crate::task::Handle;
use crate::transport::Outbox;
use crate::types::{Clock, NodeName};
use crate::watch::{Contact, Input, Output, Patience, PeerWatch, Prober, Settings};
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

/// Restarts of watchers allowed in [`WATCHER_PERIOD`] before the supervisor gives up (and the
/// NodeActor restarts it, resynchronised from gossip).
const WATCHER_RESTARTS: usize = 20;
const WATCHER_PERIOD: Duration = Duration::from_secs(10);

pub enum WatchMsg {
    /// Watch the peer at its address (again: a running watcher is reset and takes the
    /// address, which changes when the peer comes back in a new life).
    Start(Contact),
    Stop(NodeName),
    Input(NodeName, Input),
    /// The peer answered the probe numbered so (the watcher checks that it sent it).
    Answered(NodeName, u32),
    /// The gossip actor was restarted: its new core starts its watchers afresh.
    StopAll,
}

pub struct WatchArgs {
    pub settings: Settings,
    /// This node's local health, published by the gossip actor.
    pub patience: Patience,
    /// How many others an indirect probe asks.
    pub helpers: usize,
    pub clock: Clock,
    pub gossip: Handle<GossipMsg>,
    pub outbox: Outbox,
    /// The election's view: the live members an indirect probe's helpers come from.
    pub view: Snapshots,
}

pub struct WatchState {
    args: WatchArgs,
    /// Each peer's watcher and the address it probes.
    watchers: BTreeMap<NodeName, (Contact, ActorRef<WatcherMsg>)>,
    budget: Intensity,
}

pub struct WatchSupervisor;

impl WatchState {
    async fn spawn(&mut self, myself: &ActorRef<WatchMsg>, peer: Contact) {
        let name = peer.name.clone();
        let contact = peer.clone();
        let args = WatcherArgs {
            prober: Prober::new(RandomState::new().hash_one(&name), self.args.helpers),
            peer,
            settings: self.args.settings.clone(),
            patience: self.args.patience.clone(),
            clock: self.args.clock,
            gossip: self.args.gossip.clone(),
            outbox: self.args.outbox.clone(),
            view: self.args.view.clone(),
        };
        match Actor::spawn_linked(None, PeerWatcher, args, myself.get_cell()).await {
            Ok((watcher, _)) => {
                self.watchers.insert(name, (contact, watcher));
            }
            Err(e) => tracing::error!(peer = %name, error = %e, "cannot start a watcher"),
        }
    }

    fn peer_of(&self, id: ActorId) -> Option<Contact> {
        self.watchers
            .values()
            .find(|(_, w)| w.get_id() == id)
            .map(|(c, _)| c.clone())
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
            WatchMsg::Start(peer) => match state.watchers.get_mut(&peer.name) {
                Some((contact, watcher)) => {
                    contact.addr = peer.addr;
                    let _ = watcher.cast(WatcherMsg::Reset(peer.addr));
                }
                None => state.spawn(&myself, peer).await,
            },
            WatchMsg::Stop(peer) => {
                if let Some((_, watcher)) = state.watchers.remove(&peer) {
                    watcher.stop(None);
                }
            }
            WatchMsg::Input(peer, input) => {
                if let Some((_, watcher)) = state.watchers.get(&peer) {
                    let _ = watcher.cast(WatcherMsg::Input(input));
                }
            }
            WatchMsg::Answered(peer, seq) => {
                if let Some((_, watcher)) = state.watchers.get(&peer) {
                    let _ = watcher.cast(WatcherMsg::Answered(seq));
                }
            }
            WatchMsg::StopAll => {
                for (_, (_, watcher)) in std::mem::take(&mut state.watchers) {
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
        state.watchers.remove(&peer.name);
        if !state.budget.allow(state.args.clock.now()) {
            return Err(format!(
                "watchers fail too often ({}); last: {}: {why}",
                state.budget.describe(),
                peer.name
            )
            .into());
        }
        tracing::warn!(peer = %peer.name, reason = %why, "watcher died; starting a fresh one");
        state.spawn(&myself, peer).await;
        Ok(())
    }
}

struct WatcherArgs {
    peer: Contact,
    settings: Settings,
    patience: Patience,
    clock: Clock,
    gossip: Handle<GossipMsg>,
    outbox: Outbox,
    view: Snapshots,
    prober: Prober,
}

struct WatcherState {
    peer: Contact,
    core: PeerWatch,
    /// This node's own health: a late node waits longer before it suspects.
    patience: Patience,
    clock: Clock,
    gossip: Handle<GossipMsg>,
    outbox: Outbox,
    view: Snapshots,
    prober: Prober,
}

/// A watcher's messages: the core's inputs (`Wake` included: a timer is a delayed message
/// carrying its token), and a reset that may bring the peer's new address.
enum WatcherMsg {
    Input(Input),
    /// An answer to the probe numbered so: an answer only if this watcher sent that probe.
    Answered(u32),
    Reset(std::net::SocketAddr),
}

/// Watches one peer.
struct PeerWatcher;

impl WatcherState {
    async fn carry_out(&mut self, myself: &ActorRef<WatcherMsg>, outputs: Vec<Output>) {
        for output in outputs {
            match output {
                Output::Probe(probe) => {
                    let live: Vec<Contact> = self
                        .view
                        .borrow()
                        .members
                        .iter()
                        .filter(|m| !m.is_self && is_live(m))
                        .map(|m| Contact {
                            name: m.name.clone(),
                            addr: m.addr,
                        })
                        .collect();
                    for (to, name, msg) in self.prober.messages(probe, &self.peer, &live) {
                        self.outbox.probe(to, &name, msg).await;
                    }
                }
                Output::Verdict(verdict) => {
                    self.gossip
                        .cast(GossipMsg::Core(crate::gossip::core::Input::Verdict {
                            peer: self.peer.name.clone(),
                            verdict,
                        }))
                }
                Output::WakeAt { at, token } => {
                    let delay = self
                        .clock
                        .instant_at(at)
                        .saturating_duration_since(std::time::Instant::now());
                    // Fire and forget: a wake for a stopped watcher just fails to send.
                    drop(myself.send_after(delay, move || WatcherMsg::Input(Input::Wake(token))));
                }
            }
        }
    }
}

impl Actor for PeerWatcher {
    type Msg = WatcherMsg;
    type State = WatcherState;
    type Arguments = WatcherArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<WatcherMsg>,
        args: WatcherArgs,
    ) -> Result<WatcherState, ActorProcessingErr> {
        let now = args.clock.now();
        let mut core = PeerWatch::new(now, args.settings);
        let outputs = core.start(now);
        let mut state = WatcherState {
            peer: args.peer,
            core,
            patience: args.patience,
            clock: args.clock,
            gossip: args.gossip,
            outbox: args.outbox,
            view: args.view,
            prober: args.prober,
        };
        state.carry_out(&myself, outputs).await;
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<WatcherMsg>,
        msg: WatcherMsg,
        state: &mut WatcherState,
    ) -> Result<(), ActorProcessingErr> {
        let input = match msg {
            WatcherMsg::Input(input) => input,
            WatcherMsg::Answered(seq) if state.prober.sent(seq) => {
                Input::Alive(crate::watch::Evidence::Answered)
            }
            WatcherMsg::Answered(seq) => {
                tracing::debug!(peer = %state.peer.name, seq, "an answer to no probe sent lately: ignored");
                return Ok(());
            }
            WatcherMsg::Reset(addr) => {
                state.peer.addr = addr;
                Input::Reset
            }
        };
        state.core.set_patience(state.patience.factor());
        let outputs = state.core.handle(state.clock.now(), input);
        state.carry_out(&myself, outputs).await;
        Ok(())
    }
}
