//! `GossipActor`: the thin shell around [`Core`]. It owns the UDP socket and the TCP listener,
//! turns datagrams, ticks, watcher verdicts and join answers into core inputs, and carries out
//! what the core decides: datagrams out, join connections, watcher start/stop/inputs, cluster
//! events (published on an `OutputPort`), incarnation persistence and fatal errors.
//!
//! The actor never waits on the network itself: socket loops and join connections run in
//! helper tasks ([`net`]) that talk to it by message. UDP sends are done inline; they do not
//! block on a datagram socket, and doing them inline means a `Leave` has sent its datagrams by
//! the time its reply goes out.
//!
//! A restarted gossip actor has a new core: it takes a higher incarnation (persisted) and uses
//! as seeds the configured ones plus the members the previous life knew, so it finds its way
//! back even when every configured seed is down.

use crate::actors::election::ElectionMsg;
use crate::actors::store::StoreMsg;
use crate::actors::watch::WatchMsg;
use crate::events::{ClusterEvent, EventLog};
use crate::gossip::core::{Input, Output};
use crate::gossip::{Core, KvError, MemberView, Settings, Stats, Status};
use crate::keys::WIRE_KEY;
use crate::secure::Gate;
use crate::store::incarnation;
use crate::task::{AbortOnDrop, Alarm, Handle};
use crate::transport::{self as net, Dialects, Outbox};
use crate::types::{Clock, Incarnation, NodeName, Time};
use crate::watch::{Contact, Input as WatchInput, LocalHealth, Patience};
use crate::wire::{ExchangeError, Frame};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinSet;

/// How often, at most, the election actor is told the view when only state changed.
const VIEW_EVERY: Duration = Duration::from_millis(200);
/// How often, at most, when only samples changed (`keys::is_sample`): at 128 hosts with 5 s
/// metrics some sample changes every 40 ms, and every view told costs the actors that read
/// it; a sample is seconds old by nature.
const SAMPLES_EVERY: Duration = Duration::from_secs(1);
/// How long membership changes are collected before the election actor is told the view.
const VIEW_SOON: Duration = Duration::from_millis(20);
/// How often, at most, the view is told when membership changed: quiet, a change is told
/// within [`VIEW_SOON`]; in a burst of suspicions and refutations (a loaded cluster) the
/// view is not rebuilt, and read by the election, alert and control actors, for every one.
const MEMBERSHIP_EVERY: Duration = Duration::from_millis(100);
/// The shortest wait between two ticks when the core says something is still due after a
/// tick (it should not be; this keeps a mistake from becoming a busy loop).
const MIN_GAP: Duration = Duration::from_millis(10);

pub enum GossipMsg {
    /// An input for the core as it is: a datagram, a watcher's verdict, a join answer.
    Core(Input),
    /// The deadline armed for this time has come: how late it is handled is noted, and what
    /// is due is done as after any message.
    Alarm(Time),
    /// A joiner asks over TCP (from the accept task).
    AnswerJoin {
        name: NodeName,
        incarnation: Incarnation,
        addr: SocketAddr,
        reply: RpcReplyPort<Frame>,
    },
    Members(RpcReplyPort<Vec<MemberView>>),
    /// This node's zone and every zone as its zone publishes them.
    Zones(RpcReplyPort<(String, Vec<crate::gossip::core::zones::ZoneView>)>),
    Stats(RpcReplyPort<StatsSnapshot>),
    /// Writes (`Some`) or deletes (`None`) a key of this node's state.
    Set {
        key: String,
        value: Option<String>,
        reply: RpcReplyPort<Result<(), KvError>>,
    },
    /// [`GossipMsg::Set`] without a reply: a refused write is logged.
    Put {
        key: String,
        value: Option<String>,
    },
    /// Leaves the cluster; the reply comes once the leave datagrams are sent.
    Leave(RpcReplyPort<()>),
    /// The watch supervisor was restarted: start a watcher for every live peer again.
    ResyncWatchers,
}

/// `GET /api/v1/stats`: the core's counters and who they belong to.
#[derive(Clone, Debug)]
pub struct StatsSnapshot {
    pub node: NodeName,
    pub incarnation: Incarnation,
    pub stats: Stats,
    /// What the gate sealed, opened and dropped.
    pub gate: crate::secure::GateStats,
}

/// Called with the reason when the core says this node cannot go on.
pub type FatalHook = Arc<dyn Fn(String) + Send + Sync>;

pub struct GossipArgs {
    pub name: NodeName,
    /// The address others reach us at (UDP and TCP).
    pub advertise: SocketAddr,
    /// The configured seeds (the known members are added on a restart).
    pub seeds: Vec<SocketAddr>,
    pub settings: Settings,
    pub data_dir: PathBuf,
    /// Where datagrams are read (they are sent through `outbox`).
    pub udp: UdpSocket,
    pub tcp: TcpListener,
    pub outbox: Outbox,
    /// Where the reader notes the wire version each peer speaks (the outbox reads it).
    pub dialects: Dialects,
    pub clock: Clock,
    /// Seals and opens everything on the gossip port; fixed for the node's life.
    pub gate: Arc<Gate>,
    pub watch: Handle<WatchMsg>,
    pub store: Handle<StoreMsg>,
    pub election: Handle<ElectionMsg>,
    pub events: EventLog,
    pub known: KnownPeers,
    /// Where this node's local health is published for the watchers and the API.
    pub patience: Patience,
    /// Finding the cluster on the LAN segment (`gossip.discover`), if on.
    pub discover: Option<crate::config::Discover>,
    pub on_fatal: FatalHook,
}

/// The addresses of the members a gossip actor knew, kept by the node across the actor's
/// restarts: the seeds of its next life, so it finds the cluster again even when the
/// configured seeds are down.
#[derive(Clone, Default)]
pub struct KnownPeers(Arc<Mutex<Vec<SocketAddr>>>);

impl KnownPeers {
    fn set(&self, addrs: Vec<SocketAddr>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = addrs;
    }
    fn get(&self) -> Vec<SocketAddr> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

pub struct GossipState {
    core: Core,
    outbox: Outbox,
    dialects: Dialects,
    clock: Clock,
    gate: Arc<Gate>,
    watch: Handle<WatchMsg>,
    store: Handle<StoreMsg>,
    election: Handle<ElectionMsg>,
    events: EventLog,
    known: KnownPeers,
    data_dir: PathBuf,
    on_fatal: FatalHook,
    /// This node's own lateness (Lifeguard's local health), measured on the alarms.
    health: LocalHealth,
    patience: Patience,
    /// Woken at the core's next deadline (or the view's), never at a fixed rate.
    alarm: Alarm,
    /// When the election actor is to be told the view (something changed in it).
    view_due: Option<Time>,
    /// When the election actor was last told the view.
    last_view: Time,
    joins: JoinSet<()>,
    /// True while this node knows no live member (discovery seeks then).
    alone: Arc<std::sync::atomic::AtomicBool>,
    _tasks: Vec<AbortOnDrop<()>>,
}

pub struct GossipActor;

impl Actor for GossipActor {
    type Msg = GossipMsg;
    type State = GossipState;
    type Arguments = GossipArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<GossipMsg>,
        args: GossipArgs,
    ) -> Result<GossipState, ActorProcessingErr> {
        let incarnation = incarnation::next(&args.data_dir);
        let mut seeds = args.seeds.clone();
        for addr in args.known.get() {
            if !seeds.contains(&addr) {
                seeds.push(addr);
            }
        }
        let rng_seed = RandomState::new().hash_one(&args.name);
        let core = Core::new(
            args.name.clone(),
            args.advertise,
            incarnation,
            seeds,
            args.settings,
            rng_seed,
        );
        tracing::info!(
            node = %args.name, addr = %args.advertise, %incarnation,
            "gossip started"
        );
        args.outbox.set_incarnation(incarnation);
        let mut tasks = vec![
            AbortOnDrop(tokio::spawn(net::read_datagrams(
                Arc::new(args.udp),
                myself.clone(),
                args.gate.clone(),
                args.dialects.clone(),
            ))),
            AbortOnDrop(tokio::spawn(net::serve_joins(
                args.tcp,
                myself.clone(),
                args.data_dir.clone(),
                args.gate.clone(),
            ))),
        ];
        let alarm = Alarm::new(myself.clone(), args.clock, GossipMsg::Alarm);
        let alone = Arc::new(std::sync::atomic::AtomicBool::new(true));
        if let Some(spec) = args.discover {
            match crate::transport::discover::bind(&spec, args.advertise) {
                Ok(socket) => {
                    tracing::info!(mode = ?spec.mode, address = %spec.address, "discovery on");
                    let me = myself.clone();
                    let seeker = crate::transport::discover::Seeker {
                        spec,
                        me: args.name.clone(),
                        gossip: args.advertise,
                        gate: args.gate.clone(),
                        clock: args.clock,
                        alone: alone.clone(),
                    };
                    tasks.push(AbortOnDrop(tokio::spawn(crate::transport::discover::run(
                        socket,
                        seeker,
                        move |seed| {
                            let _ = me.cast(GossipMsg::Core(Input::Discovered { seed }));
                        },
                    ))));
                }
                Err(e) => tracing::warn!(
                    address = %spec.address, error = %e,
                    "cannot listen for discovery beacons; running without discovery"
                ),
            }
        }
        Ok(GossipState {
            core,
            outbox: args.outbox,
            dialects: args.dialects,
            clock: args.clock,
            gate: args.gate,
            watch: args.watch,
            store: args.store,
            election: args.election,
            events: args.events,
            known: args.known,
            data_dir: args.data_dir,
            on_fatal: args.on_fatal,
            health: LocalHealth::default(),
            patience: args.patience,
            alarm,
            view_due: Some(Time::ZERO),
            last_view: Time::ZERO,
            joins: JoinSet::new(),
            alone,
            _tasks: tasks,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<GossipMsg>,
        msg: GossipMsg,
        state: &mut GossipState,
    ) -> Result<(), ActorProcessingErr> {
        let now = state.clock.now();
        let outputs = match msg {
            GossipMsg::Core(input) => state.core.handle(now, input),
            // What is due is done by `rearm` below, with whatever else is due by now.
            GossipMsg::Alarm(at) => {
                state.note_lateness(now, now.since(at));
                Vec::new()
            }
            GossipMsg::AnswerJoin {
                name,
                incarnation,
                addr,
                reply,
            } => {
                let frame = state.core.answer_join(now, &name, incarnation, addr);
                if let Frame::JoinRejected { reason } = &frame {
                    tracing::warn!(node = %name, %addr, %reason, "refused a joiner");
                }
                let _ = reply.send(frame);
                Vec::new()
            }
            GossipMsg::Members(reply) => {
                let _ = reply.send(state.core.members(now));
                Vec::new()
            }
            GossipMsg::Zones(reply) => {
                let _ = reply.send((state.core.zone().to_string(), state.core.zones()));
                Vec::new()
            }
            GossipMsg::Stats(reply) => {
                // The core counts what it sends; the watchers' probes go out beside it.
                let mut stats = state.core.stats();
                let probes = state.outbox.probe_count();
                stats.bytes_probe += probes.bytes;
                stats.bytes_sent += probes.bytes;
                stats.datagrams_sent += probes.datagrams;
                let _ = reply.send(StatsSnapshot {
                    node: state.core.name().clone(),
                    incarnation: state.core.incarnation(),
                    stats,
                    gate: state.gate.stats(),
                });
                Vec::new()
            }
            GossipMsg::Set { key, value, reply } => match state.core.set(now, &key, value) {
                Ok(outputs) => {
                    state.carry_out(&myself, now, outputs).await;
                    let _ = reply.send(Ok(()));
                    Vec::new()
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                    Vec::new()
                }
            },
            GossipMsg::Put { key, value } => match state.core.set(now, &key, value) {
                Ok(outputs) => outputs,
                Err(e) => {
                    tracing::warn!(%key, error = %e, "cannot publish a key in the gossiped state");
                    Vec::new()
                }
            },
            GossipMsg::Leave(reply) => {
                let outputs = state.core.handle(now, Input::Leave);
                state.carry_out(&myself, now, outputs).await;
                // A leaving node watches nobody any more.
                state.watch.cast(WatchMsg::StopAll);
                tracing::info!("left the cluster");
                let _ = reply.send(());
                Vec::new()
            }
            GossipMsg::ResyncWatchers => {
                for m in state.core.members(now) {
                    if !m.is_self && matches!(m.status, Status::Alive | Status::Suspect) {
                        state.watch.cast(WatchMsg::Start(Contact {
                            name: m.name,
                            addr: m.addr,
                        }));
                    }
                }
                Vec::new()
            }
        };
        state.carry_out(&myself, now, outputs).await;
        state.rearm(&myself, now).await;
        Ok(())
    }
}

impl GossipState {
    /// A member announced the wire version it speaks: speak it to it.
    fn note_dialect(&self, event: &ClusterEvent) {
        if let ClusterEvent::StateChanged {
            node,
            key,
            value: Some(value),
        } = event
            && key == WIRE_KEY
            && let Ok(version) = value.parse::<u8>()
            && let Some(contact) = self.core.contact(node)
        {
            self.dialects.note(contact.addr, version);
        }
    }

    /// Starts (or resets) the watcher of `peer` with the address it has now.
    fn start_watching(&self, peer: NodeName) {
        if let Some(contact) = self.core.contact(&peer) {
            self.watch.cast(WatchMsg::Start(contact));
        }
    }

    /// An alarm handled `late_by` after its deadline: `health::LATE` or more means this node
    /// is starved or its messages wait (its local health worsens); the score is published for
    /// the watchers and the API, and its changes are logged.
    fn note_lateness(&mut self, now: Time, late_by: Duration) {
        self.update_health(now, |h| h.tick(now, late_by));
    }

    /// The next time anything is due: the core's next deadline or the view's.
    fn due(&self) -> Time {
        let core = self.core.next_deadline();
        self.view_due.map_or(core, |v| v.min(core))
    }

    /// After each message: what is due already is done now, and the alarm is set for the
    /// rest (an urgent piece of news goes out without waiting for a tick).
    async fn rearm(&mut self, myself: &ActorRef<GossipMsg>, now: Time) {
        for _ in 0..3 {
            let due = self.due();
            if due > now {
                self.alarm.arm(due);
                return;
            }
            self.maintain(now);
            let outputs = self.core.handle(now, Input::Tick);
            self.carry_out(myself, now, outputs).await;
        }
        tracing::debug!("something is still due after three ticks; looking again shortly");
        self.alarm.arm(now + MIN_GAP);
    }

    fn update_health(&mut self, now: Time, change: impl FnOnce(&mut LocalHealth)) {
        let before = self.health.score();
        change(&mut self.health);
        let after = self.health.score();
        self.patience.publish(&self.health);
        if before == 0 && after > 0 {
            tracing::warn!(
                score = after, %now,
                "this node is late (starved of CPU or its work piling up): it waits longer \
                 before suspecting others and answers its API from the last view"
            );
        } else if before > 0 && after == 0 {
            tracing::info!("this node is on time again");
        }
    }

    /// Housekeeping before a tick: reap finished join tasks, and when the view changed, tell
    /// the election actor and keep the known members' addresses for a restart.
    fn maintain(&mut self, now: Time) {
        while self.joins.try_join_next().is_some() {}
        self.alone.store(
            !self.core.knows_live_member(),
            std::sync::atomic::Ordering::Relaxed,
        );
        if self.view_due.is_some_and(|due| now >= due) {
            self.view_due = None;
            self.last_view = now;
            let view = self.core.members(now);
            self.known
                .set(view.iter().filter(|m| !m.is_self).map(|m| m.addr).collect());
            // This zone's summary, for the upper layer (made only by the zone's publisher,
            // and only where there are other zones).
            if self.core.wants_summary() {
                let summary = crate::zone::summarize(&view, now);
                self.core.adopt_summary(now, summary);
            }
            self.election.cast(ElectionMsg::View(view));
        }
    }

    /// The view changed: membership changes are told to the election actor soon (at most
    /// every [`MEMBERSHIP_EVERY`]), changes of state alone at most every [`VIEW_EVERY`], of
    /// samples alone every [`SAMPLES_EVERY`].
    fn view_changed(&mut self, now: Time, event: &ClusterEvent) {
        let soon = now + VIEW_SOON;
        let due = match event {
            ClusterEvent::StateChanged { key, .. } if crate::keys::is_sample(key) => {
                soon.max(self.last_view + SAMPLES_EVERY)
            }
            ClusterEvent::StateChanged { .. } => soon.max(self.last_view + VIEW_EVERY),
            _ => soon.max(self.last_view + MEMBERSHIP_EVERY),
        };
        self.view_due = Some(self.view_due.map_or(due, |d| d.min(due)));
    }

    async fn carry_out(&mut self, myself: &ActorRef<GossipMsg>, now: Time, outputs: Vec<Output>) {
        for output in outputs {
            match output {
                Output::Send { to, name, bytes } => self.outbox.send(to, &name, bytes).await,
                Output::Join { seed, request } => {
                    tracing::debug!(%seed, "asking a seed to join");
                    let gate = self.gate.clone();
                    let myself = myself.clone();
                    self.joins.spawn(async move {
                        let answer = net::join(seed, request, gate).await;
                        let _ = myself.cast(GossipMsg::Core(Input::JoinAnswer { seed, answer }));
                    });
                }
                Output::WatchStart(peer) => self.start_watching(peer),
                Output::WatchStop(peer) => self.watch.cast(WatchMsg::Stop(peer)),
                // A new life may listen elsewhere: the watcher is reset with its address.
                Output::Watch {
                    peer,
                    input: WatchInput::Reset,
                } => self.start_watching(peer),
                Output::Watch { peer, input } => self.watch.cast(WatchMsg::Input(peer, input)),
                Output::ProbeAnswered { peer, seq } => {
                    self.watch.cast(WatchMsg::Answered(peer, seq))
                }
                Output::Event(event) => {
                    log_event(&event);
                    self.note_dialect(&event);
                    self.view_changed(now, &event);
                    self.events.publish(now, event);
                }
                Output::IncarnationChanged(inc) => {
                    self.outbox.set_incarnation(inc);
                    if let Err(e) = incarnation::save(&self.data_dir, inc) {
                        tracing::warn!(
                            incarnation = %inc, error = %e,
                            "cannot store the new incarnation; a restart may start lower"
                        );
                    }
                    // Refuted: the others doubted us, and their record of it is fetched. That
                    // they could not reach us in time also says we may be the late one.
                    self.store.cast(StoreMsg::Refuted);
                    self.update_health(now, |h| h.refuted(now));
                }
                Output::Misjudged(peer) => {
                    tracing::debug!(%peer, "a peer this node suspected was alive after all");
                    self.update_health(now, |h| h.misjudged(now));
                }
                Output::Fatal(reason) => {
                    tracing::error!(%reason, "this node cannot go on");
                    (self.on_fatal)(reason);
                }
            }
        }
    }
}

/// The transport hands datagrams and join requests to the gossip actor.
impl net::Inbox for ActorRef<GossipMsg> {
    fn datagram(&self, from: SocketAddr, bytes: Vec<u8>) -> bool {
        self.cast(GossipMsg::Core(Input::Datagram { from, bytes }))
            .is_ok()
    }

    async fn answer_join(
        &self,
        name: NodeName,
        incarnation: Incarnation,
        addr: SocketAddr,
    ) -> Result<Frame, ExchangeError> {
        let reply = self
            .call(
                |reply| GossipMsg::AnswerJoin {
                    name,
                    incarnation,
                    addr,
                    reply,
                },
                None,
            )
            .await
            .map_err(|e| ExchangeError::Unanswered(format!("the gossip actor is gone: {e}")))?;
        reply
            .success_or_else(|| ExchangeError::Unanswered("the gossip actor did not answer".into()))
    }
}

fn log_event(event: &ClusterEvent) {
    match event {
        ClusterEvent::NodeJoined {
            node,
            addr,
            incarnation,
        } => tracing::info!(%node, %addr, %incarnation, "node joined"),
        ClusterEvent::NodeSuspect {
            node,
            incarnation,
            by,
        } => tracing::info!(%node, %incarnation, ?by, "node suspect"),
        ClusterEvent::NodeDown {
            node,
            incarnation,
            last_heard,
            witnesses,
        } => tracing::warn!(%node, %incarnation, %last_heard, ?witnesses, "node down"),
        ClusterEvent::NodeUp { node, incarnation } => {
            tracing::info!(%node, %incarnation, "node up")
        }
        ClusterEvent::NodeLeft { node, incarnation } => {
            tracing::info!(%node, %incarnation, "node left")
        }
        ClusterEvent::ZoneUnreachable { zone, last_heard } => {
            tracing::warn!(%zone, %last_heard, "zone unreachable")
        }
        ClusterEvent::ZoneReachable { zone } => tracing::info!(%zone, "zone reachable"),
        ClusterEvent::StateChanged { node, key, value } => {
            tracing::trace!(%node, %key, ?value, "state changed")
        }
    }
}
