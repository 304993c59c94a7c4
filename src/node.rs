//! A running node: the actor tree of DESIGN §1 on ractor, started from a config and sockets
//! that are already bound.
//!
//! Taking bound sockets (and a shutdown future) instead of addresses is what lets tests and
//! benchmarks bind port 0, read the real ports, and run several nodes in one process: nothing
//! here registers a ractor name (those are process-global). [`run`] is the daemon's whole life;
//! [`start`] gives a [`NodeHandle`] for in-process use.
//!
//! ```text
//! NodeActor (root, restarts its children within an intensity)
//! ├── WatchSupervisor ── PeerWatcher(peer) ...
//! ├── GossipActor      UDP + TCP; drives gossip::Core
//! ├── HostProbeActor   metrics and priority -> gossiped state
//! ├── ManagerActor     supervision trees of this node's services
//! │   └── SupervisorActor ── ServiceActor / SupervisorActor ...
//! ├── AlertActor       the alert protocol and its sinks
//! ├── ElectionActor    the leader of this node's view; feeds the AlertActor
//! └── ApiActor         HTTP API on loopback
//! ```

mod root;

pub use root::{Child, RESTART_PERIOD, RESTARTS};

use crate::actors::gossip::GossipMsg;
use crate::config::Config;
use crate::events::{ClusterEvent, EventLog, ServiceEvent};
use crate::gossip::{KvError, MemberView};
use crate::keys::{Command, ServiceStatus, gossip_key, gossip_value};
use crate::probe::plugins::load_host_probes;
use crate::supervision::logfile::LogSettings;
use crate::supervision::manager::ManagerMsg;
use crate::supervision::service::ServiceCtx;
use crate::supervision::spec::load_trees;
use crate::supervision::status::{Board, Publish};
use crate::task::Handle;
use crate::transport::{Dialects, Outbox};
use crate::types::{Clock, NodeName, Time};
use ractor::rpc::CallResult;
use ractor::{Actor, ActorRef, OutputPort};
use root::{LEAVE_TIMEOUT, NodeActor, NodeArgs, NodeMsg, Wiring};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, UdpSocket};

/// Why a node could not start, or why it stopped on its own.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot bind the {what} socket to {addr}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("cannot use the bound sockets")]
    Socket(#[source] io::Error),
    #[error(
        "the gossip UDP socket ({udp}) and TCP listener ({tcp}) must share one port: \
         peers reach both at the one advertised address"
    )]
    PortMismatch { udp: SocketAddr, tcp: SocketAddr },
    #[error("cannot start the node: {0}")]
    Spawn(String),
    /// The gossip core cannot go on (e.g. the node's name is taken by a live node).
    #[error("{0}")]
    Fatal(String),
    /// A part of the node kept dying past the restart intensity.
    #[error("{0}")]
    GaveUp(String),
    #[error("the node is not running")]
    NotRunning,
    /// The supervision trees are invalid: every problem, one per line.
    #[error("invalid supervision trees:\n{0}")]
    Trees(String),
    /// The host probe definitions are invalid: every problem, one per line.
    #[error("invalid host probes:\n{0}")]
    HostProbes(String),
    #[error(transparent)]
    Kv(#[from] KvError),
    /// The gossip keyring cannot be read.
    #[error(transparent)]
    Key(#[from] crate::secure::KeyError),
    /// Plaintext gossip, or an API without TLS, would reach the network without being asked.
    #[error("{0}")]
    Insecure(String),
    /// A state file in the data dir was written by a newer nbwatch.
    #[error(transparent)]
    StateFile(#[from] crate::statefile::StateFileError),
    #[error("cannot read or create the API token {path}: {source}")]
    Token {
        path: std::path::PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What the node hands to the API it serves: the handles of the actors the API asks, and
/// what it reads directly. Made anew each time the HTTP actor is (re)spawned.
#[derive(Clone)]
pub struct NodeParts {
    pub name: NodeName,
    pub gossip: Handle<GossipMsg>,
    pub services: Handle<ManagerMsg>,
    /// The control actor: cluster settings are pushed through it.
    pub control: Handle<crate::actors::control::ControlMsg>,
    /// The cluster settings this node applies.
    pub settings: crate::actors::settings::AppliedSettings,
    pub store: Handle<crate::actors::store::StoreMsg>,
    pub gate: Arc<crate::secure::Gate>,
    /// The election actor's view snapshots: the one source of the leader.
    pub view: crate::actors::election::Snapshots,
    pub events: EventLog,
    pub clock: Clock,
    /// This node's local health: a late node answers from the last published view.
    pub patience: crate::watch::Patience,
    pub data_dir: std::path::PathBuf,
    /// The gossip interval and fanout (of `gossip.profile` and `gossip.interval`): the
    /// reachability window follows them.
    pub pace: (std::time::Duration, usize),
    /// The bearer token changes need.
    pub token: Arc<String>,
    /// Whose directives this node obeys; seals what its API issues to other hosts.
    pub authority: Arc<crate::secure::directive::Authority>,
    /// Where the API listens (the bound address), and the other host names a request's
    /// `Host` may name (`api.allowed_hosts`).
    pub api_addr: std::net::SocketAddr,
    pub allowed_hosts: Vec<String>,
    /// The routes of the read-only listener (`metrics.listen`): GETs that need no token.
    pub read_only: bool,
}

/// Makes the HTTP API's routes from a node's parts. The API is a layer above the node: the
/// node serves whatever routes it is given (see `daemon`, which gives it `api::router`).
pub type Routes = Arc<dyn Fn(NodeParts) -> axum::Router + Send + Sync>;

/// The node's sockets, already bound. The gossip UDP socket and TCP listener must share one
/// port (see [`bind`]).
#[derive(Debug)]
pub struct Sockets {
    pub udp: UdpSocket,
    pub tcp: TcpListener,
    pub api: TcpListener,
    /// The read-only listener of `metrics.listen`, if any.
    pub metrics: Option<TcpListener>,
}

/// How a node ended, written by the NodeActor before it stops on its own.
#[derive(Clone, Default)]
pub(crate) struct ExitSlot(Arc<Mutex<Option<NodeError>>>);

impl ExitSlot {
    /// Keeps the first reason: later ones are consequences.
    pub(crate) fn set(&self, e: NodeError) {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(e);
        }
    }
    fn take(&self) -> Option<NodeError> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// Binds `gossip.listen` (UDP, then TCP on the same port, also when the configured port is 0),
/// `api.listen` and `metrics.listen`.
pub async fn bind(config: &Config) -> Result<Sockets, NodeError> {
    let listen = config.gossip.listen;
    let bind_err = |what, addr| move |source| NodeError::Bind { what, addr, source };
    // With port 0 the TCP port the kernel picked for UDP may be taken: try a few.
    let attempts = if listen.port() == 0 { 10 } else { 1 };
    let mut last = None;
    let mut gossip = None;
    for _ in 0..attempts {
        let udp = UdpSocket::bind(listen)
            .await
            .map_err(bind_err("gossip UDP", listen))?;
        let port = udp.local_addr().map_err(NodeError::Socket)?.port();
        let tcp_addr = SocketAddr::new(listen.ip(), port);
        match TcpListener::bind(tcp_addr).await {
            Ok(tcp) => {
                gossip = Some((udp, tcp));
                break;
            }
            Err(e) => last = Some(bind_err("gossip TCP", tcp_addr)(e)),
        }
    }
    let Some((udp, tcp)) = gossip else {
        return Err(last.unwrap_or(NodeError::Spawn("no gossip socket".into())));
    };
    let api = TcpListener::bind(config.api.listen)
        .await
        .map_err(bind_err("API", config.api.listen))?;
    let metrics = match config.metrics.listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(bind_err("metrics", addr))?,
        ),
        None => None,
    };
    Ok(Sockets {
        udp,
        tcp,
        api,
        metrics,
    })
}

/// Runs a node until `shutdown` completes (then it leaves the cluster gracefully and returns
/// `Ok`) or until it stops on its own ([`NodeError::Fatal`], [`NodeError::GaveUp`]).
pub async fn run(
    config: Config,
    sockets: Sockets,
    routes: Routes,
    shutdown: impl Future<Output = ()>,
) -> Result<(), NodeError> {
    let mut node = start(config, sockets, routes).await?;
    let systemd = crate::notify::notifier();
    systemd.ready("running");
    let _watchdog = systemd.watchdog_every().map(|every| node.watchdog(every));
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| {
            tracing::warn!(error = %e, "cannot handle SIGHUP; reload with `nbwatch reload`");
        })
        .ok();
    let hangup = async |h: &mut Option<tokio::signal::unix::Signal>| match h {
        Some(h) => h.recv().await,
        None => std::future::pending().await,
    };
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            result = node.stopped() => {
                systemd.stopping();
                return result;
            }
            _ = hangup(&mut hangups) => {
                tracing::info!("SIGHUP: reloading the supervision trees");
                match node.reload().await {
                    Ok(Ok(_)) => {}
                    Ok(Err(why)) => tracing::error!("{why}"),
                    Err(e) => tracing::error!(error = %e, "cannot reload"),
                }
            }
        }
    }
    systemd.stopping();
    node.shutdown().await
}

/// Starts a node and returns at once; joining the cluster goes on in the background.
pub async fn start(
    config: Config,
    sockets: Sockets,
    routes: Routes,
) -> Result<NodeHandle, NodeError> {
    let udp_addr = sockets.udp.local_addr().map_err(NodeError::Socket)?;
    let tcp_addr = sockets.tcp.local_addr().map_err(NodeError::Socket)?;
    if udp_addr.port() != tcp_addr.port() {
        return Err(NodeError::PortMismatch {
            udp: udp_addr,
            tcp: tcp_addr,
        });
    }
    let api_addr = sockets.api.local_addr().map_err(NodeError::Socket)?;
    let advertise = config.gossip.advertise_addr(udp_addr);
    let name = config.node.name.clone();
    // Before anything in the data dir (or the key) is read or created.
    crate::statefile::check_data_dir(&config.node.data_dir)?;
    let gate = gate(&config, udp_addr)?;
    let token = crate::secure::token::load_or_create(&config.node.data_dir).map_err(|source| {
        NodeError::Token {
            path: crate::secure::token::path(&config.node.data_dir),
            source,
        }
    })?;
    let token = Arc::new(token);
    let authority = Arc::new(authority(&config)?);
    let api_tls = match &config.api.tls {
        Some(tls) => Some(
            crate::tls::server(&tls.cert, &tls.key)
                .map_err(|e| NodeError::Insecure(format!("api.tls_cert: {e}")))?,
        ),
        None => None,
    };
    let lines = |problems: Vec<crate::config::Problem>| {
        let lines: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        lines.join("\n")
    };
    let trees = load_trees(&config.supervision.trees)
        .map_err(|problems| NodeError::Trees(lines(problems)))?;
    let host_probes = load_host_probes(&config.metrics.probes)
        .map_err(|problems| NodeError::HostProbes(lines(problems)))?;
    // Before this run's services start: what a kill -9'd predecessor left running goes.
    crate::supervision::leftovers::sweep(&config.node.data_dir);
    let clock = Clock::new();
    let gate = Arc::new(gate);
    let udp = sockets.udp.into_std().map_err(NodeError::Socket)?;
    let sender = udp
        .try_clone()
        .and_then(tokio::net::UdpSocket::from_std)
        .map_err(NodeError::Socket)?;
    let dialects = Dialects::default();
    let outbox = Outbox::new(
        Arc::new(sender),
        gate.clone(),
        name.clone(),
        clock,
        dialects.clone(),
    );
    let wiring = Wiring::new(gate, outbox, dialects);
    let exit = ExitSlot::default();
    let publish = Arc::new(NodePublish {
        gossip: wiring.gossip.clone(),
        events: wiring.events.clone(),
    });
    let services = ServiceCtx {
        board: Board::new(clock, publish),
        logs: Arc::new(LogSettings {
            dir: config.node.data_dir.join("logs"),
            max_bytes: u64::from(config.supervision.log_max_bytes),
            keep: config.supervision.log_keep,
        }),
        starts: Arc::default(),
    };
    let args = NodeArgs {
        advertise,
        udp,
        tcp: sockets.tcp.into_std().map_err(NodeError::Socket)?,
        api: sockets.api.into_std().map_err(NodeError::Socket)?,
        metrics: match sockets.metrics {
            Some(l) => Some(l.into_std().map_err(NodeError::Socket)?),
            None => None,
        },
        api_tls,
        clock,
        wiring: wiring.clone(),
        exit: exit.clone(),
        trees,
        host_probes,
        services,
        config,
        token: token.clone(),
        authority,
        routes,
    };
    let (node, join) = Actor::spawn(None, NodeActor, args)
        .await
        .map_err(|e| NodeError::Spawn(e.to_string()))?;
    tracing::info!(node = %name, gossip = %advertise, api = %api_addr, "node running");
    Ok(NodeHandle {
        name,
        api_addr,
        gossip_addr: advertise,
        node,
        join: Some(join),
        gossip: wiring.gossip,
        services: wiring.services,
        events: wiring.events,
        exit,
        token,
    })
}

/// The gate for this node's gossip port: sealed with the keyring of `gossip.key_file`, or
/// with the key this node made in its data dir, or plaintext when `gossip.insecure` asks for
/// it. Also refuses a non-loopback API without `api.insecure` (the token would cross the
/// network in clear; nbwatch has no TLS).
fn gate(config: &Config, gossip: SocketAddr) -> Result<crate::secure::Gate, NodeError> {
    use crate::config::GossipKey;
    use crate::secure::{Gate, Keyring};
    // The same verdict the config's validation gave (a config built in code comes here only).
    if let Some(e) = config.exposure().into_iter().next() {
        return Err(NodeError::Insecure(e.to_string()));
    }
    let file = match config.gossip_key() {
        GossipKey::File(file) => file,
        GossipKey::Generated(file) => {
            if Keyring::create_if_missing(&file)? {
                tracing::warn!(
                    key_file = %file.display(),
                    "created this node's cluster key: only hosts given this key can join. To \
                     add a host, copy the file to it (mode 0600) and set gossip.key_file there"
                );
            }
            file
        }
        GossipKey::Plaintext => {
            tracing::warn!(
                listen = %gossip,
                "GOSSIP IS NOT ENCRYPTED (gossip.insecure = true): anyone who can reach \
                 {gossip} can read, join and command this cluster"
            );
            return Ok(Gate::plaintext());
        }
    };
    let ring = Keyring::load(&file)?;
    tracing::info!(
        key_file = %file.display(), key = %ring.primary().id(), keys = ring.ids().len(),
        cluster = %config.gossip.cluster, "gossip is encrypted and authenticated"
    );
    Ok(Gate::keyed(
        &config.gossip.cluster,
        config.node.name.as_str(),
        ring,
        Some(file),
    ))
}

/// Whose signed directives this node obeys (`control.operators`) and the operator key it
/// signs with (`control.operator_key_file`), read once at start.
fn authority(config: &Config) -> Result<crate::secure::directive::Authority, NodeError> {
    use crate::secure::directive::{Authority, Trust};
    let signer = match &config.control.operator_key_file {
        Some(file) => Some(
            crate::secure::operator::OperatorKey::load(file)
                .map_err(|e| NodeError::Insecure(e.to_string()))?,
        ),
        None => None,
    };
    let trust = Trust {
        cluster: config.gossip.cluster.clone(),
        operators: config.control.operators.clone(),
    };
    if let Some(key) = &signer {
        tracing::info!(operator = %key.id(), "this node signs the directives its API issues");
    }
    Ok(Authority::new(
        trust,
        config.node.name.as_str(),
        signer,
        &config.node.data_dir,
    ))
}

/// Where the supervisors' news goes: service states into the node's gossiped state
/// (`svc.<name>`), service events into the node's events log.
struct NodePublish {
    gossip: Handle<GossipMsg>,
    events: EventLog,
}

impl Publish for NodePublish {
    fn status(&self, status: &ServiceStatus) {
        self.gossip.cast(GossipMsg::Put {
            key: gossip_key(&status.name),
            value: Some(gossip_value(status)),
        });
    }
    fn removed(&self, name: &str) {
        self.gossip.cast(GossipMsg::Put {
            key: gossip_key(name),
            value: None,
        });
    }
    fn event(&self, at: Time, event: ServiceEvent) {
        self.events.publish_service(at, event);
    }
}

/// A node running in this process. Dropping it kills the node without leaving.
pub struct NodeHandle {
    name: NodeName,
    api_addr: SocketAddr,
    gossip_addr: SocketAddr,
    node: ActorRef<NodeMsg>,
    join: Option<tokio::task::JoinHandle<()>>,
    gossip: Handle<GossipMsg>,
    services: Handle<ManagerMsg>,
    events: EventLog,
    exit: ExitSlot,
    token: Arc<String>,
}

/// How long in-process calls wait for the gossip actor.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

impl NodeHandle {
    pub fn name(&self) -> &NodeName {
        &self.name
    }
    /// Where the HTTP API listens.
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }
    /// The bearer token its API wants for anything but a GET.
    pub fn api_token(&self) -> &str {
        &self.token
    }
    /// The address other nodes reach this one at (UDP and TCP): a seed for others.
    pub fn gossip_addr(&self) -> SocketAddr {
        self.gossip_addr
    }

    /// Every cluster event of this node (`StateChanged` included); subscribe an actor to it.
    pub fn events(&self) -> &OutputPort<ClusterEvent> {
        &self.events.events
    }

    /// This node's view of the cluster.
    pub async fn members(&self) -> Result<Vec<MemberView>, NodeError> {
        self.ask(GossipMsg::Members).await
    }

    /// Writes (`Some`) or deletes (`None`) a key of this node's gossiped state.
    pub async fn set(&self, key: &str, value: Option<String>) -> Result<(), NodeError> {
        let key = key.to_string();
        self.ask(|reply| GossipMsg::Set { key, value, reply })
            .await?
            .map_err(NodeError::from)
    }

    async fn ask<T: Send + 'static>(
        &self,
        msg: impl FnOnce(ractor::RpcReplyPort<T>) -> GossipMsg,
    ) -> Result<T, NodeError> {
        let gossip = self.gossip.get().ok_or(NodeError::NotRunning)?;
        match gossip.call(msg, Some(CALL_TIMEOUT)).await {
            Ok(CallResult::Success(v)) => Ok(v),
            _ => Err(NodeError::NotRunning),
        }
    }

    /// This node's services.
    pub async fn services(&self) -> Result<Vec<ServiceStatus>, NodeError> {
        let manager = self.services.get().ok_or(NodeError::NotRunning)?;
        match manager.call(ManagerMsg::List, Some(CALL_TIMEOUT)).await {
            Ok(CallResult::Success(v)) => Ok(v),
            _ => Err(NodeError::NotRunning),
        }
    }

    /// Starts, stops or restarts one of this node's services; `Err(Some(why))` if it failed.
    pub async fn service_command(
        &self,
        service: &str,
        command: Command,
    ) -> Result<Result<(), crate::supervision::Error>, NodeError> {
        let manager = self.services.get().ok_or(NodeError::NotRunning)?;
        let service = service.to_string();
        let msg = |reply| ManagerMsg::Command {
            service,
            command,
            reply,
        };
        match manager.call(msg, Some(Duration::from_secs(120))).await {
            Ok(CallResult::Success(v)) => Ok(v),
            _ => Err(NodeError::NotRunning),
        }
    }

    /// Re-reads the trees folder and applies the difference.
    pub async fn reload(
        &self,
    ) -> Result<
        Result<crate::supervision::manager::ReloadSummary, crate::supervision::Error>,
        NodeError,
    > {
        let manager = self.services.get().ok_or(NodeError::NotRunning)?;
        match manager
            .call(ManagerMsg::Reload, Some(Duration::from_secs(120)))
            .await
        {
            Ok(CallResult::Success(v)) => Ok(v),
            _ => Err(NodeError::NotRunning),
        }
    }

    /// Says `WATCHDOG=1` to systemd every `every` while the gossip actor answers within
    /// that time: a daemon whose actors hang is restarted by systemd. Stops when dropped.
    fn watchdog(&self, every: Duration) -> crate::task::AbortOnDrop<()> {
        let gossip = self.gossip.clone();
        crate::task::AbortOnDrop(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(g) = gossip.get() else { continue };
                if g.call(GossipMsg::Stats, Some(every)).await.is_ok() {
                    crate::notify::notifier().watchdog();
                }
            }
        }))
    }

    /// True until the node has stopped.
    pub fn is_running(&self) -> bool {
        self.join.as_ref().is_some_and(|j| !j.is_finished())
    }

    /// Waits until the node stops on its own; `Err` says why (a fatal error, or a part that
    /// kept dying). Returns at once if it already stopped.
    pub async fn stopped(&mut self) -> Result<(), NodeError> {
        if let Some(join) = self.join.as_mut() {
            let _ = join.await;
            self.join = None;
        }
        self.exit.take().map_or(Ok(()), Err)
    }

    /// Leaves the cluster gracefully and stops the node.
    pub async fn shutdown(mut self) -> Result<(), NodeError> {
        if self.is_running() {
            let _ = self
                .node
                .call(NodeMsg::Leave, Some(LEAVE_TIMEOUT * 2))
                .await;
            self.node.stop(Some("shutdown".into()));
        }
        self.stopped().await
    }

    /// Stops the node at once, without leaving: to the others it looks like a crash.
    pub async fn kill(mut self) {
        self.node.kill();
        let _ = self.stopped().await;
    }

    /// Kills one part of the node as if it had crashed (to test supervision).
    #[doc(hidden)]
    pub fn crash(&self, child: Child) {
        let _ = self.node.cast(NodeMsg::Kill(child));
    }
}

impl Drop for NodeHandle {
    fn drop(&mut self) {
        if self.join.is_some() {
            self.node.kill();
        }
    }
}
