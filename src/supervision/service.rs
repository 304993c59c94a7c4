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

use super::logfile::LogSettings;
use super::policy::Exit;
use super::process::{ServiceProcess, describe_exit, exit_kind};
use super::spec::{ServiceSpec, Shutdown};
use super::status::{Board, ServiceEventKind, ServiceState};
use crate::node::directory::AbortOnDrop;
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
        format!("{}-{name}-{n}", std::process::id())
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
    Exited(Result<ExitStatus, String>),
}

type StopRequest = (Shutdown, oneshot::Sender<Result<ExitStatus, String>>);

pub struct ServiceActorState {
    spec: ServiceSpec,
    tree: String,
    ctx: ServiceCtx,
    /// Present while the process runs: ask its task to stop it.
    stop: Option<oneshot::Sender<StopRequest>>,
    _task: AbortOnDrop<()>,
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
        let process = match ServiceProcess::spawn(&spec, &ctx.logs, &ctx.instance(&name)) {
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
        board.update(&name, &tree, |s| {
            s.state = ServiceState::Running;
            s.pid = Some(pid);
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
        let task = tokio::spawn(own(process, stop_rx, myself));
        Ok(ServiceActorState {
            spec,
            tree,
            ctx,
            stop: Some(stop_tx),
            _task: AbortOnDrop(task),
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
                    Err(e) => (e, Exit::Abnormal),
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
        let (done_tx, done_rx) = oneshot::channel();
        if stop.send((state.spec.shutdown.clone(), done_tx)).is_ok() {
            let how = match done_rx.await {
                Ok(Ok(status)) => describe_exit(status),
                Ok(Err(e)) => e,
                Err(_) => "lost".to_string(),
            };
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
            let _ = actor.cast(ServiceMsg::Exited(status.map_err(|e| e.to_string())));
            // Whatever the leader left behind goes after the exit is reported: a restart
            // does not wait for this sweep (the new run has a new instance tag).
            process.cleanup().await;
        }
        request = stop => {
            if let Ok((shutdown, done)) = request {
                let result = process.stop(&shutdown).await.map_err(|e| e.to_string());
                let _ = done.send(result);
            }
        }
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

/// How long a supervisor waits for a child to stop beyond its shutdown grace.
pub const STOP_MARGIN: Duration = Duration::from_secs(5);

/// The longest a stop of this service can take.
pub fn stop_budget(spec: &ServiceSpec) -> Duration {
    match spec.shutdown {
        Shutdown::Timeout(grace) => grace + STOP_MARGIN,
        Shutdown::BrutalKill => STOP_MARGIN,
    }
}
