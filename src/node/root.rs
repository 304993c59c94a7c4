//! `NodeActor`: the root of a node's actor tree. It spawns the children, hands each the
//! handles of exactly the siblings it sends to (rebinding a handle when its actor is
//! respawned), and restarts a child that fails or stops unexpectedly
//! — within a restart intensity, past which the node stops with an error instead of looping.
//!
//! ractor's default supervisor stops when any child exits, hence the override of
//! `handle_supervisor_evt`. Restarts are one-for-one plus a resynchronisation: a new gossip
//! core starts its watchers afresh (the old watchers are stopped), and a new watch supervisor
//! is told every live peer again.

use super::{ExitSlot, NodeError, NodeParts, Routes};
use crate::actors::alert::AlertMsg;
use crate::actors::alert::{AlertActor, AlertArgs};
use crate::actors::backfill::Peers;
use crate::actors::control::ControlMsg;
use crate::actors::control::{ControlActor, ControlArgs};
use crate::actors::election::{ElectionActor, ElectionArgs};
use crate::actors::election::{ElectionMsg, SnapshotSender, Snapshots, snapshots};
use crate::actors::export::{ExportActor, ExportArgs};
use crate::actors::gossip::{GossipActor, GossipArgs, GossipMsg, KnownPeers};
use crate::actors::http::{HttpActor, HttpArgs};
use crate::actors::probe::{HostProbeActor, ProbeArgs};
use crate::actors::settings::SettingsSender;
use crate::actors::store::{StoreActor, StoreArgs, StoreMsg};
use crate::actors::watch::{WatchArgs, WatchMsg, WatchSupervisor};
use crate::alert::DEFAULT_SETTLE;
use crate::config::Config;
use crate::events::EventLog;
use crate::gossip::Settings;
use crate::probe::plugins::HostProbeSpec;
use crate::secure::Gate;
use crate::supervision::manager::{ManagerActor, ManagerArgs, ManagerMsg};
use crate::supervision::policy::Intensity;
use crate::supervision::service::ServiceCtx;
use crate::supervision::spec::{TreeSpec, load_trees};
use crate::task::Handle;
use crate::transport::{Dialects, Outbox};
use crate::types::Clock;
use crate::watch::Patience;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// At most this many restarts of children ...
pub const RESTARTS: usize = 5;
/// ... in this period, else the node gives up.
pub const RESTART_PERIOD: Duration = Duration::from_secs(10);
/// How long to wait before retrying a child that could not even start.
const RESPAWN_DELAY: Duration = Duration::from_millis(200);
/// The longest the node waits for its services to stop when it stops.
const SERVICES_STOP_TIMEOUT: Duration = Duration::from_secs(600);
/// How long the leave may take before the node stops anyway.
pub(super) const LEAVE_TIMEOUT: Duration = Duration::from_secs(1);

/// The children of a node, in start order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Child {
    Store,
    Watch,
    Gossip,
    Probe,
    Services,
    Control,
    Alerts,
    Election,
    Api,
    /// The read-only listener (`metrics.listen`), when configured.
    Metrics,
    /// The export to `store.remote_write`, when configured.
    Export,
}

pub(crate) enum NodeMsg {
    /// The gossip core says this node cannot go on.
    Fatal(String),
    /// Try again to start a child that failed to start.
    Respawn(Child),
    /// Leave the cluster (the reply comes once the leave is sent); the node then is stopped.
    Leave(RpcReplyPort<()>),
    /// For tests of supervision: kill a child as if it had crashed.
    Kill(Child),
}

pub(crate) struct NodeArgs {
    pub config: Config,
    pub advertise: SocketAddr,
    pub udp: std::net::UdpSocket,
    pub tcp: std::net::TcpListener,
    pub api: std::net::TcpListener,
    /// The read-only listener, if `metrics.listen` is set.
    pub metrics: Option<std::net::TcpListener>,
    /// The API's TLS, if `api.tls_cert` is set.
    pub api_tls: Option<tokio_rustls::TlsAcceptor>,
    pub clock: Clock,
    pub wiring: Wiring,
    pub exit: ExitSlot,
    /// The trees the node started with (used again if the folder turns invalid later).
    pub trees: Vec<TreeSpec>,
    /// The host probes, loaded once at start.
    pub host_probes: Vec<HostProbeSpec>,
    pub services: ServiceCtx,
    /// The API's bearer token.
    pub token: std::sync::Arc<String>,
    /// Whose directives this node obeys, and its operator key if it has one.
    pub authority: std::sync::Arc<crate::secure::directive::Authority>,
    /// Makes the API's routes from the node's handles.
    pub routes: Routes,
}

/// What the node's children share, made once per node and kept across their restarts: one
/// handle per actor that others send to, the gossip port's gate, the events log, the view
/// snapshots and the known peers. Only the node holds all of it; each child is given the
/// parts it uses when it is spawned.
#[derive(Clone)]
pub(crate) struct Wiring {
    pub gate: Arc<Gate>,
    /// Sends every datagram of the node, the gossip core's and the watchers'.
    pub outbox: Outbox,
    /// The wire version each peer speaks, noted by the reader, read by the outbox.
    pub dialects: Dialects,
    pub gossip: Handle<GossipMsg>,
    pub watch: Handle<WatchMsg>,
    pub services: Handle<ManagerMsg>,
    pub alerts: Handle<AlertMsg>,
    pub control: Handle<ControlMsg>,
    pub store: Handle<StoreMsg>,
    pub election: Handle<ElectionMsg>,
    pub events: EventLog,
    pub known: KnownPeers,
    pub snapshots: SnapshotSender,
    pub view: Snapshots,
    /// The cluster settings this node applies: the control actor sends, others read.
    pub settings: SettingsSender,
    /// This node's local health: measured by the gossip actor, read by the watchers and the
    /// API.
    pub patience: Patience,
}

impl Wiring {
    pub(crate) fn new(gate: Arc<Gate>, outbox: Outbox, dialects: Dialects) -> Wiring {
        let (snapshots, view) = snapshots();
        let (settings, _) = crate::actors::settings::channel();
        Wiring {
            gate,
            outbox,
            dialects,
            gossip: Handle::new(),
            watch: Handle::new(),
            services: Handle::new(),
            alerts: Handle::new(),
            control: Handle::new(),
            store: Handle::new(),
            election: Handle::new(),
            events: EventLog::default(),
            known: KnownPeers::default(),
            snapshots,
            view,
            settings,
            patience: Patience::default(),
        }
    }

    /// Unbinds the handle of a child that died, so nothing is sent to its old ref.
    fn unbind(&self, child: Child) {
        match child {
            Child::Gossip => self.gossip.bind(None),
            Child::Watch => self.watch.bind(None),
            Child::Services => self.services.bind(None),
            Child::Alerts => self.alerts.bind(None),
            Child::Control => self.control.bind(None),
            Child::Election => self.election.bind(None),
            Child::Store => {
                self.events.set_recorder(None);
                self.store.bind(None);
            }
            Child::Probe | Child::Api | Child::Metrics | Child::Export => {}
        }
    }
}

/// Why a child could not be (re)started.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ChildError {
    #[error(transparent)]
    Spawn(#[from] ractor::SpawnErr),
    #[error("cannot use the bound socket: {0}")]
    Socket(#[from] std::io::Error),
}

pub(crate) struct NodeState {
    args: NodeArgs,
    settings: Settings,
    children: HashMap<ActorId, Child>,
    refs: HashMap<Child, ractor::ActorCell>,
    budget: Intensity,
    stopping: bool,
}

pub(crate) struct NodeActor;

impl Actor for NodeActor {
    type Msg = NodeMsg;
    type State = NodeState;
    type Arguments = NodeArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<NodeMsg>,
        args: NodeArgs,
    ) -> Result<NodeState, ActorProcessingErr> {
        let gossip = &args.config.gossip;
        let mut settings = Settings::profile(gossip.profile, gossip.interval);
        settings.zone = args.config.node.zone.clone();
        let mut state = NodeState {
            args,
            settings,
            children: HashMap::new(),
            refs: HashMap::new(),
            budget: Intensity::new(RESTARTS, RESTART_PERIOD),
            stopping: false,
        };
        for child in [
            Child::Store,
            Child::Watch,
            Child::Gossip,
            Child::Probe,
            Child::Services,
            Child::Control,
            Child::Alerts,
            Child::Election,
            Child::Api,
            Child::Metrics,
            Child::Export,
        ] {
            if (child == Child::Metrics && state.args.metrics.is_none())
                || (child == Child::Export && state.args.config.store.remote_write.is_none())
            {
                continue;
            }
            if let Err(why) = state.spawn(&myself, child).await {
                // Children already started are linked to an actor that will never run.
                for cell in state.refs.values() {
                    cell.kill();
                }
                return Err(format!("cannot start {child:?}: {why}").into());
            }
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<NodeMsg>,
        msg: NodeMsg,
        state: &mut NodeState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            NodeMsg::Fatal(reason) => {
                state.args.exit.set(NodeError::Fatal(reason.clone()));
                state.stopping = true;
                myself.stop(Some(reason));
            }
            NodeMsg::Respawn(child) => state.restart(&myself, child).await,
            NodeMsg::Leave(reply) => {
                state.stopping = true;
                let _ = state
                    .args
                    .wiring
                    .gossip
                    .call(GossipMsg::Leave, Some(LEAVE_TIMEOUT))
                    .await;
                let _ = reply.send(());
            }
            NodeMsg::Kill(child) => {
                if let Some(cell) = state.refs.get(&child) {
                    cell.kill();
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<NodeMsg>,
        event: SupervisionEvent,
        state: &mut NodeState,
    ) -> Result<(), ActorProcessingErr> {
        let (id, why) = match &event {
            SupervisionEvent::ActorFailed(cell, e) => (cell.get_id(), format!("failed: {e}")),
            SupervisionEvent::ActorTerminated(cell, _, reason) => (
                cell.get_id(),
                format!("stopped: {}", reason.as_deref().unwrap_or("no reason")),
            ),
            _ => return Ok(()),
        };
        // The dead actor's state (its sockets and tasks) goes now, before a new one starts.
        drop(event);
        let Some(child) = state.children.remove(&id) else {
            return Ok(());
        };
        state.refs.remove(&child);
        state.args.wiring.unbind(child);
        if state.stopping {
            return Ok(());
        }
        tracing::error!(?child, reason = %why, "a part of the node died; restarting it");
        state.restart(&myself, child).await;
        Ok(())
    }

    async fn post_stop(
        &self,
        myself: ActorRef<NodeMsg>,
        state: &mut NodeState,
    ) -> Result<(), ActorProcessingErr> {
        state.stopping = true;
        // Stop the children gracefully (so their post_stop runs), not by the kill that a
        // stopped supervisor would otherwise send them. Services first, each tree by its
        // shutdown rules, however long those take.
        let _ = state
            .args
            .wiring
            .services
            .call(ManagerMsg::StopAll, Some(SERVICES_STOP_TIMEOUT))
            .await;
        myself
            .stop_children_and_wait(Some("node stopping".into()), Some(Duration::from_secs(2)))
            .await;
        Ok(())
    }
}

impl NodeState {
    async fn restart(&mut self, myself: &ActorRef<NodeMsg>, child: Child) {
        if self.stopping {
            return;
        }
        if !self.budget.allow(self.args.clock.now()) {
            let why = format!(
                "{child:?} keeps dying ({}); stopping the node",
                self.budget.describe()
            );
            tracing::error!("{why}");
            self.args.exit.set(NodeError::GaveUp(why.clone()));
            self.stopping = true;
            myself.stop(Some(why));
            return;
        }
        if let Err(why) = self.spawn(myself, child).await {
            tracing::error!(?child, reason = %why, "cannot restart; trying again shortly");
            drop(myself.send_after(RESPAWN_DELAY, move || NodeMsg::Respawn(child)));
        }
    }

    async fn spawn(&mut self, myself: &ActorRef<NodeMsg>, child: Child) -> Result<(), ChildError> {
        let supervisor = myself.get_cell();
        let w = self.args.wiring.clone();
        let clock = self.args.clock;
        let cell = match child {
            Child::Store => {
                let config = &self.args.config;
                let args = StoreArgs {
                    data_dir: config.node.data_dir.clone(),
                    me: config.node.name.clone(),
                    config: config.store.clone(),
                    clock,
                    peers: Peers {
                        gossip: w.gossip.clone(),
                        gate: w.gate.clone(),
                    },
                };
                let (store, _) = Actor::spawn_linked(None, StoreActor, args, supervisor).await?;
                w.store.bind(Some(store.clone()));
                let recorder = store.clone();
                w.events.set_recorder(Some(Arc::new(move |recorded| {
                    let _ = recorder.cast(StoreMsg::Record(recorded));
                })));
                store.get_cell()
            }
            Child::Watch => {
                let args = WatchArgs {
                    settings: self.settings.watch.clone(),
                    patience: w.patience.clone(),
                    helpers: self.settings.indirect_probes,
                    clock,
                    gossip: w.gossip.clone(),
                    outbox: w.outbox.clone(),
                    view: w.view.clone(),
                };
                let (watch, _) =
                    Actor::spawn_linked(None, WatchSupervisor, args, supervisor).await?;
                w.watch.bind(Some(watch.clone()));
                // A new supervisor has no watchers: have gossip start them again.
                w.gossip.cast(GossipMsg::ResyncWatchers);
                watch.get_cell()
            }
            Child::Gossip => {
                // A new core starts its watchers itself; the old core's must go.
                w.watch.cast(WatchMsg::StopAll);
                let udp = self.args.udp.try_clone()?;
                let tcp = self.args.tcp.try_clone()?;
                let node = myself.clone();
                let config = &self.args.config;
                let args = GossipArgs {
                    name: config.node.name.clone(),
                    advertise: self.args.advertise,
                    seeds: config.gossip.seeds.clone(),
                    settings: self.settings.clone(),
                    data_dir: config.node.data_dir.clone(),
                    udp: tokio::net::UdpSocket::from_std(udp)?,
                    tcp: tokio::net::TcpListener::from_std(tcp)?,
                    outbox: w.outbox.clone(),
                    dialects: w.dialects.clone(),
                    clock,
                    gate: w.gate.clone(),
                    watch: w.watch.clone(),
                    store: w.store.clone(),
                    election: w.election.clone(),
                    events: w.events.clone(),
                    known: w.known.clone(),
                    patience: w.patience.clone(),
                    discover: config.gossip.discover,
                    on_fatal: Arc::new(move |reason| {
                        let _ = node.cast(NodeMsg::Fatal(reason));
                    }),
                };
                let (gossip, _) = Actor::spawn_linked(None, GossipActor, args, supervisor).await?;
                w.gossip.bind(Some(gossip.clone()));
                // A new core has an empty state: the services' states go in again.
                self.args.services.board.republish();
                gossip.get_cell()
            }
            Child::Probe => {
                let args = ProbeArgs {
                    interval: self.args.config.metrics.interval,
                    data_dir: self.args.config.node.data_dir.clone(),
                    priority: self.args.config.node.priority,
                    weight: self.args.config.node.weight,
                    plugins: self.args.host_probes.clone(),
                    gossip: w.gossip.clone(),
                    clock,
                    advertise: self.args.advertise.ip(),
                    scrape: (self.args.metrics.as_ref())
                        .and_then(|l| l.local_addr().ok())
                        .map(|a| reachable(a, self.args.advertise)),
                };
                let (probe, _) =
                    Actor::spawn_linked(None, HostProbeActor, args, supervisor).await?;
                probe.get_cell()
            }
            Child::Services => {
                let dir = self.args.config.supervision.trees.clone();
                // A respawned manager starts the trees as the folder has them now (as a
                // reload would), or as they were at start if the folder is invalid now.
                let trees = load_trees(&dir).unwrap_or_else(|_| self.args.trees.clone());
                let args = ManagerArgs {
                    dir,
                    trees,
                    ctx: self.args.services.clone(),
                };
                let (manager, _) =
                    Actor::spawn_linked(None, ManagerActor, args, supervisor).await?;
                w.services.bind(Some(manager.clone()));
                manager.get_cell()
            }
            Child::Alerts => {
                let config = &self.args.config;
                let args = AlertArgs {
                    me: config.node.name.clone(),
                    settle: DEFAULT_SETTLE.max(self.settings.interval),
                    local: config.alerts.clone(),
                    cluster: w.settings.subscribe(),
                    trust: self.args.authority.trust.clone(),
                    data_dir: config.node.data_dir.clone(),
                    gossip: w.gossip.clone(),
                    view: w.view.clone(),
                    events: w.events.clone(),
                    clock,
                    dashboard: dashboard_url(
                        self.args.api.local_addr()?,
                        self.args.api_tls.is_some(),
                        (self.args.metrics.as_ref()).and_then(|l| l.local_addr().ok()),
                        self.args.advertise,
                    ),
                };
                let (alerts, _) = Actor::spawn_linked(None, AlertActor, args, supervisor).await?;
                w.alerts.bind(Some(alerts.clone()));
                alerts.get_cell()
            }
            Child::Control => {
                let args = ControlArgs {
                    me: self.args.config.node.name.clone(),
                    gossip: w.gossip.clone(),
                    services: w.services.clone(),
                    view: w.view.clone(),
                    clock,
                    authority: self.args.authority.clone(),
                    data_dir: self.args.config.node.data_dir.clone(),
                    settings: w.settings.clone(),
                };
                let (control, _) =
                    Actor::spawn_linked(None, ControlActor, args, supervisor).await?;
                w.control.bind(Some(control.clone()));
                control.get_cell()
            }
            Child::Election => {
                let args = ElectionArgs {
                    snapshots: w.snapshots.clone(),
                    events: w.events.clone(),
                    clock,
                };
                let (election, _) =
                    Actor::spawn_linked(None, ElectionActor, args, supervisor).await?;
                w.election.bind(Some(election.clone()));
                election.get_cell()
            }
            Child::Export => {
                let args = ExportArgs {
                    me: self.args.config.node.name.clone(),
                    data_dir: self.args.config.node.data_dir.clone(),
                    url: (self.args.config.store.remote_write.clone()).unwrap_or_default(),
                    clock,
                };
                let (export, _) = Actor::spawn_linked(None, ExportActor, args, supervisor).await?;
                export.get_cell()
            }
            Child::Api | Child::Metrics => {
                let read_only = child == Child::Metrics;
                let listener = match (read_only, &self.args.metrics) {
                    (true, Some(l)) => l.try_clone()?,
                    _ => self.args.api.try_clone()?,
                };
                let api_addr = listener.local_addr()?;
                let args = HttpArgs {
                    listener: tokio::net::TcpListener::from_std(listener)?,
                    tls: (!read_only).then(|| self.args.api_tls.clone()).flatten(),
                    router: (self.args.routes)(NodeParts {
                        name: self.args.config.node.name.clone(),
                        gossip: w.gossip.clone(),
                        services: w.services.clone(),
                        control: w.control.clone(),
                        settings: w.settings.subscribe(),
                        store: w.store.clone(),
                        gate: w.gate.clone(),
                        view: w.view.clone(),
                        events: w.events.clone(),
                        clock,
                        patience: w.patience.clone(),
                        data_dir: self.args.config.node.data_dir.clone(),
                        pace: (self.settings.interval, self.settings.fanout),
                        token: self.args.token.clone(),
                        authority: self.args.authority.clone(),
                        api_addr,
                        allowed_hosts: self.args.config.api.allowed_hosts.clone(),
                        read_only,
                    }),
                };
                let (api, _) = Actor::spawn_linked(None, HttpActor, args, supervisor).await?;
                api.get_cell()
            }
        };
        self.children.insert(cell.get_id(), child);
        self.refs.insert(child, cell);
        Ok(())
    }
}

/// Where a listener bound to `addr` is reached from elsewhere: on every address (`0.0.0.0`,
/// `::`), the gossip address's host and the listener's port.
fn reachable(addr: SocketAddr, advertise: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::new(advertise.ip(), addr.port())
    } else {
        addr
    }
}

/// The link to this node's dashboard that its alerts carry: the read-only listener when it
/// has one (it can be opened from another machine), else the API (https with TLS).
fn dashboard_url(
    api: SocketAddr,
    tls: bool,
    metrics: Option<SocketAddr>,
    advertise: SocketAddr,
) -> String {
    match metrics {
        Some(m) => format!("http://{}/", reachable(m, advertise)),
        None => {
            let scheme = if tls { "https" } else { "http" };
            format!("{scheme}://{}/", reachable(api, advertise))
        }
    }
}
