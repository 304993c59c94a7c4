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

mod events;
pub(crate) mod net;

pub use events::{EVENT_LOG_LEN, GossipShared, NodeEvent, RecordedEvent, Recorder};

use crate::gossip::core::{Input, Output};
use crate::gossip::{ClusterEvent, Core, KvError, MemberView, Settings, Stats, Status};
use crate::node::directory::{AbortOnDrop, Directory, ticker};
use crate::node::incarnation;
use crate::types::{Clock, Incarnation, NodeName, Time};
use crate::watch::actor::WatchMsg;
use crate::wire::Frame;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinSet;

/// How often the core is ticked.
pub const TICK: Duration = Duration::from_millis(50);
/// How often the addresses of known members are saved for a restart.
const SAVE_KNOWN_EVERY: Duration = Duration::from_secs(2);

pub enum GossipMsg {
    /// An input for the core as it is: a tick, a datagram, a watcher's verdict, a join answer.
    Core(Input),
    /// A joiner asks over TCP (from the accept task).
    AnswerJoin {
        name: NodeName,
        incarnation: Incarnation,
        addr: SocketAddr,
        reply: RpcReplyPort<Frame>,
    },
    Members(RpcReplyPort<Vec<MemberView>>),
    Stats(RpcReplyPort<StatsSnapshot>),
    Events(RpcReplyPort<Vec<RecordedEvent>>),
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
    pub udp: UdpSocket,
    pub tcp: TcpListener,
    pub clock: Clock,
    pub directory: Directory,
    pub shared: GossipShared,
    pub on_fatal: FatalHook,
}

pub struct GossipState {
    core: Core,
    udp: Arc<UdpSocket>,
    clock: Clock,
    directory: Directory,
    shared: GossipShared,
    data_dir: PathBuf,
    on_fatal: FatalHook,
    next_save: Time,
    joins: JoinSet<()>,
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
        for addr in args.shared.known() {
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
        let udp = Arc::new(args.udp);
        let tasks = vec![
            AbortOnDrop(tokio::spawn(net::read_datagrams(
                udp.clone(),
                myself.clone(),
                args.directory.gate().clone(),
            ))),
            AbortOnDrop(tokio::spawn(net::serve_joins(
                args.tcp,
                myself.clone(),
                args.data_dir.clone(),
                args.directory.gate().clone(),
            ))),
            ticker(myself.clone(), TICK, || GossipMsg::Core(Input::Tick)),
        ];
        Ok(GossipState {
            core,
            udp,
            clock: args.clock,
            directory: args.directory,
            shared: args.shared,
            data_dir: args.data_dir,
            on_fatal: args.on_fatal,
            next_save: Time::ZERO,
            joins: JoinSet::new(),
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
            GossipMsg::Core(input) => {
                if matches!(input, Input::Tick) {
                    state.maintain(now);
                }
                state.core.handle(now, input)
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
            GossipMsg::Stats(reply) => {
                let _ = reply.send(StatsSnapshot {
                    node: state.core.name().clone(),
                    incarnation: state.core.incarnation(),
                    stats: state.core.stats(),
                    gate: state.directory.gate().stats(),
                });
                Vec::new()
            }
            GossipMsg::Events(reply) => {
                let _ = reply.send(state.shared.recent());
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
                tracing::info!("left the cluster");
                let _ = reply.send(());
                Vec::new()
            }
            GossipMsg::ResyncWatchers => {
                for m in state.core.members(now) {
                    if !m.is_self && matches!(m.status, Status::Alive | Status::Suspect) {
                        state.directory.cast_watch(WatchMsg::Start(m.name));
                    }
                }
                Vec::new()
            }
        };
        state.carry_out(&myself, now, outputs).await;
        Ok(())
    }
}

impl GossipState {
    /// Housekeeping on a tick: reap finished join tasks, save the known members' addresses.
    fn maintain(&mut self, now: Time) {
        while self.joins.try_join_next().is_some() {}
        if now >= self.next_save {
            self.next_save = now + SAVE_KNOWN_EVERY;
            let known = self
                .core
                .members(now)
                .into_iter()
                .filter(|m| !m.is_self)
                .map(|m| m.addr)
                .collect();
            self.shared.set_known(known);
        }
    }

    async fn carry_out(&mut self, myself: &ActorRef<GossipMsg>, now: Time, outputs: Vec<Output>) {
        for output in outputs {
            match output {
                Output::Send { to, bytes } => {
                    let bytes = self.directory.gate().seal_datagram(&bytes);
                    if let Err(e) = self.udp.send_to(&bytes, to).await {
                        tracing::debug!(%to, error = %e, "sending a datagram failed");
                    }
                }
                Output::Join { seed, request } => {
                    tracing::debug!(%seed, "asking a seed to join");
                    let gate = self.directory.gate().clone();
                    self.joins
                        .spawn(net::join(seed, request, myself.clone(), gate));
                }
                Output::WatchStart(peer) => self.directory.cast_watch(WatchMsg::Start(peer)),
                Output::WatchStop(peer) => self.directory.cast_watch(WatchMsg::Stop(peer)),
                Output::Watch { peer, input } => {
                    self.directory.cast_watch(WatchMsg::Input(peer, input))
                }
                Output::Event(event) => {
                    log_event(&event);
                    self.shared.publish(now, event);
                }
                Output::IncarnationChanged(inc) => {
                    if let Err(e) = incarnation::save(&self.data_dir, inc) {
                        tracing::warn!(
                            incarnation = %inc, error = %e,
                            "cannot store the new incarnation; a restart may start lower"
                        );
                    }
                    // Refuted: the others doubted us, and their record of it is fetched.
                    if let Some(store) = self.directory.store() {
                        let _ = store.cast(crate::store::StoreMsg::Refuted);
                    }
                }
                Output::Fatal(reason) => {
                    tracing::error!(%reason, "this node cannot go on");
                    (self.on_fatal)(reason);
                }
            }
        }
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
        ClusterEvent::StateChanged { node, key, value } => {
            tracing::trace!(%node, %key, ?value, "state changed")
        }
    }
}
