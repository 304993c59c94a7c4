//! `ServiceActor`: one run of one service. It starts the process (and waits for its readiness
//! probe, if any) in `pre_start`, so a supervisor that awaits the spawn has the service up
//! before it starts the next sibling. It lives as long as the process: when the process exits
//! by itself, or its health probes give up on it, the actor stops with a reason that tells
//! its supervisor whether the exit was normal (see [`exit_from_reason`]). When the supervisor
//! stops it, `post_stop` stops the process by its shutdown rule first.
//!
//! The process itself is owned by a task that waits for it, so the exit is noticed at once.
//! If the actor is killed outright (its supervisor died), the task's stop channel closes and
//! the task drops the process, which kills it.

use super::health::{Health, Outcome, Tracker, Verdict, check};
use super::logfile::LogSettings;
use super::policy::Exit;
use super::process::{ProcessError, ServiceProcess, describe_exit, exit_kind};
use super::spec::{ProbeSpec, ReadySpec, ServiceSpec, Shutdown};
use super::status::Board;
use crate::events::ServiceEventKind;
use crate::keys::ServiceState;
use crate::task::AbortOnDrop;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::process::ExitStatus;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::oneshot;

/// What every service actor of a node shares.
#[derive(Clone)]
pub struct ServiceCtx {
    pub board: Board,
    pub logs: Arc<LogSettings>,
    /// Makes instance tags unique within the daemon's life.
    pub starts: Arc<AtomicU64>,
}

impl ServiceCtx {
    fn instance(&self, name: &str) -> String {
        let n = self.starts.fetch_add(1, Ordering::Relaxed);
        // The run id first: the next daemon on this data dir finds what a kill -9 left.
        format!("{}-{name}-{n}", super::leftovers::run_id())
    }
}

pub struct ServiceArgs {
    pub spec: ServiceSpec,
    pub tree: String,
    pub ctx: ServiceCtx,
    /// A restart by the supervisor's policy (counted in `restarts`), not a first start.
    pub restart: bool,
}

pub enum ServiceMsg {
    /// The process exited by itself.
    Exited(Result<ExitStatus, ProcessError>),
    /// Health probe `n` of the spec has an outcome.
    Probed(usize, Outcome),
}

type StopRequest = (Shutdown, oneshot::Sender<Result<ExitStatus, ProcessError>>);

pub struct ServiceActorState {
    spec: ServiceSpec,
    tree: String,
    ctx: ServiceCtx,
    /// Present while the process runs: ask its task to stop it.
    stop: Option<oneshot::Sender<StopRequest>>,
    _task: AbortOnDrop<()>,
    /// One tracker and one latest health per health probe, and the tasks that run them.
    trackers: Vec<Tracker>,
    health: Vec<Health>,
    _probes: Vec<AbortOnDrop<()>>,
}

/// The stop reason of a service actor whose process exited normally (status 0).
pub const NORMAL: &str = "normal";

/// How a supervisor reads a child actor's stop reason: only [`NORMAL`] is a normal exit.
pub fn exit_from_reason(reason: Option<&str>) -> Exit {
    match reason {
        Some(NORMAL) => Exit::Normal,
        _ => Exit::Abnormal,
    }
}

pub struct ServiceActor;

impl Actor for ServiceActor {
    type Msg = ServiceMsg;
    type State = ServiceActorState;
    type Arguments = ServiceArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<ServiceMsg>,
        args: ServiceArgs,
    ) -> Result<ServiceActorState, ActorProcessingErr> {
        let ServiceArgs {
            spec,
            tree,
            ctx,
            restart,
        } = args;
        let board = ctx.board.clone();
        let name = spec.name.clone();
        board.set_state(&name, &tree, ServiceState::Starting);
        let mut process = match ServiceProcess::spawn(&spec, &ctx.logs, &ctx.instance(&name)) {
            Ok(p) => p,
            Err(e) => {
                let why = error_chain(&e);
                board.update(&name, &tree, |s| {
                    s.state = ServiceState::Stopped;
                    s.pid = None;
                    s.last_exit = Some(why.clone());
                });
                return Err(why.into());
            }
        };
        let pid = process.pid().unwrap_or(0);
        if let Some(ready) = &spec.ready {
            board.update(&name, &tree, |s| s.pid = Some(pid));
            if let Err(why) = wait_ready(&mut process, ready).await {
                process.stop(&spec.shutdown).await.ok();
                board.update(&name, &tree, |s| {
                    s.state = ServiceState::Stopped;
                    s.pid = None;
                    s.last_exit = Some(why.to_string());
                });
                return Err(why.into());
            }
        }
        // Without probes, a running process is all there is to know: ok.
        let health = if spec.probes.is_empty() {
            Health::Ok
        } else {
            Health::Unknown
        };
        board.update(&name, &tree, |s| {
            s.state = ServiceState::Running;
            s.pid = Some(pid);
            s.health = health.as_str().to_string();
            if restart {
                s.restarts += 1;
            }
        });
        let kind = if restart {
            let restarts = board.get(&name).map_or(0, |s| s.restarts);
            ServiceEventKind::Restarted { pid, restarts }
        } else {
            ServiceEventKind::Started { pid }
        };
        board.event(&name, &tree, kind);
        let (stop_tx, stop_rx) = oneshot::channel::<StopRequest>();
        let probes = spec
            .probes
            .iter()
            .enumerate()
            .map(|(n, probe)| {
                AbortOnDrop(tokio::spawn(run_probe(n, probe.clone(), myself.clone())))
            })
            .collect();
        let task = tokio::spawn(own(process, stop_rx, myself));
        Ok(ServiceActorState {
            trackers: spec
                .probes
                .iter()
                .map(|p| Tracker::new(p.failures))
                .collect(),
            health: vec![Health::Unknown; spec.probes.len()],
            spec,
            tree,
            ctx,
            stop: Some(stop_tx),
            _task: AbortOnDrop(task),
            _probes: probes,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<ServiceMsg>,
        msg: ServiceMsg,
        state: &mut ServiceActorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ServiceMsg::Exited(result) => {
                state.stop = None;
                let (how, exit) = match result {
                    Ok(status) => (describe_exit(status), exit_kind(status)),
                    Err(e) => (e.to_string(), Exit::Abnormal),
                };
                let board = &state.ctx.board;
                let name = &state.spec.name;
                board.update(name, &state.tree, |s| {
                    s.state = ServiceState::Stopped;
                    s.pid = None;
                    s.last_exit = Some(how.clone());
                });
                board.event(
                    name,
                    &state.tree,
                    ServiceEventKind::Exited { how: how.clone() },
                );
                let reason = match exit {
                    Exit::Normal => NORMAL.to_string(),
                    Exit::Abnormal => how,
                };
                myself.stop(Some(reason));
            }
            ServiceMsg::Probed(n, outcome) => {
                if state.stop.is_none() {
                    return Ok(());
                }
                let Some(tracker) = state.trackers.get_mut(n) else {
                    return Ok(());
                };
                let verdict = tracker.observe(&outcome);
                state.health[n] = outcome.health;
                let worst = worst(&state.health);
                let name = &state.spec.name;
                state.ctx.board.update(name, &state.tree, |s| {
                    s.health = worst.as_str().to_string();
                });
                if outcome.health != Health::Ok {
                    tracing::warn!(service = %name, probe = n, health = outcome.health.as_str(),
                        message = %outcome.message, "health probe");
                }
                if verdict == Verdict::Restart {
                    let failures = state.spec.probes[n].failures;
                    let why = format!(
                        "health probe failed {failures} times in a row: {}",
                        outcome.message
                    );
                    tracing::error!(service = %name, "{why}; restarting it through its tree");
                    if let Some(stop) = state.stop.take() {
                        stop_process(stop, &state.spec.shutdown).await;
                    }
                    let board = &state.ctx.board;
                    board.update(name, &state.tree, |s| {
                        s.state = ServiceState::Stopped;
                        s.pid = None;
                        s.last_exit = Some(why.clone());
                    });
                    board.event(
                        name,
                        &state.tree,
                        ServiceEventKind::Exited { how: why.clone() },
                    );
                    myself.stop(Some(why));
                }
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<ServiceMsg>,
        state: &mut ServiceActorState,
    ) -> Result<(), ActorProcessingErr> {
        let Some(stop) = state.stop.take() else {
            return Ok(());
        };
        let board = &state.ctx.board;
        let name = &state.spec.name;
        board.set_state(name, &state.tree, ServiceState::Stopping);
        if let Some(how) = stop_process(stop, &state.spec.shutdown).await {
            board.update(name, &state.tree, |s| {
                s.state = ServiceState::Stopped;
                s.pid = None;
                s.last_exit = Some(how);
            });
            board.event(name, &state.tree, ServiceEventKind::Stopped);
        }
        Ok(())
    }
}

/// The task that owns the process: it reports a natural exit to the actor, or stops the
/// process on request; if the actor is gone without asking, dropping the process kills it.
async fn own(
    mut process: ServiceProcess,
    stop: oneshot::Receiver<StopRequest>,
    actor: ActorRef<ServiceMsg>,
) {
    tokio::select! {
        status = process.wait() => {
            let _ = actor.cast(ServiceMsg::Exited(status));
            // Whatever the leader left behind goes after the exit is reported, and a moment
            // later, so the sweep of /proc does not compete with the replacement's start (the
            // new run has a new instance tag).
            tokio::time::sleep(CLEANUP_DELAY).await;
            process.cleanup().await;
        }
        request = stop => {
            if let Ok((shutdown, done)) = request {
                let result = process.stop(&shutdown).await;
                let _ = done.send(result);
            }
        }
    }
}

/// Asks the owning task to stop the process by `shutdown`; returns how it ended (`None` if the
/// task was already gone).
async fn stop_process(stop: oneshot::Sender<StopRequest>, shutdown: &Shutdown) -> Option<String> {
    let (done_tx, done_rx) = oneshot::channel();
    stop.send((shutdown.clone(), done_tx)).ok()?;
    Some(match done_rx.await {
        Ok(Ok(status)) => describe_exit(status),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "lost".to_string(),
    })
}

/// Runs health probe `n` every interval (the first one interval after the start) and tells the
/// actor each outcome.
async fn run_probe(n: usize, probe: ProbeSpec, actor: ActorRef<ServiceMsg>) {
    loop {
        tokio::time::sleep(probe.interval).await;
        let outcome = check(&probe.target, probe.timeout).await;
        if actor.cast(ServiceMsg::Probed(n, outcome)).is_err() {
            return;
        }
    }
}

/// The service's health is its worst probe's: critical, then warning, then unknown, then ok.
fn worst(health: &[Health]) -> Health {
    let rank = |h: &Health| match h {
        Health::Critical => 3,
        Health::Warning => 2,
        Health::Unknown => 1,
        Health::Ok => 0,
    };
    health
        .iter()
        .copied()
        .max_by_key(rank)
        .unwrap_or(Health::Ok)
}

/// Why a service with a readiness probe counts as a failed start.
#[derive(Debug, thiserror::Error)]
enum NotReady {
    #[error("exited before it was ready: {}", describe_exit(*.0))]
    Exited(ExitStatus),
    #[error("exited before it was ready: {0}")]
    Lost(ProcessError),
    #[error("not ready within {} (last check: {last})", humantime::format_duration(*.deadline))]
    Late { deadline: Duration, last: String },
}

/// Holds the start back until the readiness probe says ok. Fails if the process exits first
/// or the deadline passes.
async fn wait_ready(process: &mut ServiceProcess, ready: &ReadySpec) -> Result<(), NotReady> {
    let probe = &ready.probe;
    let mut last = String::from("no check has finished");
    let checks = async {
        loop {
            let outcome = check(&probe.target, probe.timeout).await;
            if outcome.health == Health::Ok {
                return;
            }
            last = format!("{}: {}", outcome.health.as_str(), outcome.message);
            tokio::time::sleep(probe.interval).await;
        }
    };
    tokio::select! {
        () = checks => Ok(()),
        status = process.wait() => Err(match status {
            Ok(s) => NotReady::Exited(s),
            Err(e) => NotReady::Lost(e),
        }),
        () = tokio::time::sleep(ready.deadline) => Err(NotReady::Late {
            deadline: ready.deadline,
            last,
        }),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.join(": ")
}

/// How long after a natural exit what is left of the run is swept up.
const CLEANUP_DELAY: Duration = Duration::from_millis(50);

/// How long a supervisor waits for a child to stop beyond its shutdown grace.
pub const STOP_MARGIN: Duration = Duration::from_secs(5);

/// The longest a stop of this service can take.
pub fn stop_budget(spec: &ServiceSpec) -> Duration {
    match spec.shutdown {
        Shutdown::Timeout(grace) => grace + STOP_MARGIN,
        Shutdown::BrutalKill => STOP_MARGIN,
    }
}
