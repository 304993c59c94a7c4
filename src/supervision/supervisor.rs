//! `SupervisorActor`: carries out [`Policy`] decisions for one supervisor of a tree. Its
//! children are [`ServiceActor`]s and nested supervisors, linked to it; ractor's default
//! `handle_supervisor_evt` would stop the supervisor on any child exit, so it is overridden:
//! an exit goes to the pure policy, and the decision is executed here — stop (in the order
//! given), wait the backoff, start (in order). A child that cannot even start counts as an
//! abnormal exit, so a missing binary ends in the intensity limit like a crash loop does.
//!
//! Giving up (intensity exceeded) stops every child in reverse order and then the supervisor
//! itself, with a reason its parent reads as an abnormal exit: a nested supervisor is
//! restarted by its parent's strategy, a root one is reported by the manager.
//!
//! Operator commands (start, stop, restart of one service) and reconfiguration (reload) come
//! as messages; a stopped service is *held*: no strategy starts it until it is started again.

use super::Error;
use super::policy::{Decision, Exit, History, Policy, RestartType};
use super::service::{ServiceActor, ServiceArgs, ServiceCtx, ServiceMsg, exit_from_reason};
use super::spec::{ChildSpec, SupervisorSpec};
use crate::keys::{Command, ServiceState};
use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor::{SpawnErr, SupervisionEvent, rpc::CallResult};
use std::collections::VecDeque;
use std::time::Duration;

/// The stop reason of a supervisor that exceeded its restart intensity.
pub const GAVE_UP: &str = "gave up: restart intensity exceeded";

pub struct SupervisorArgs {
    pub spec: SupervisorSpec,
    pub tree: String,
    pub ctx: ServiceCtx,
}

pub enum SupervisorMsg {
    /// A backoff delay has passed: start these children (unless a later decision superseded
    /// the one that scheduled them).
    StartLater {
        children: Vec<usize>,
        generation: u64,
    },
    /// Start, stop or restart the service `service` of this supervisor or a nested one.
    Command {
        service: String,
        command: Command,
        reply: RpcReplyPort<Result<(), Error>>,
    },
    /// Apply a changed spec: only the children that changed are stopped and started.
    Reconfigure {
        spec: SupervisorSpec,
        reply: RpcReplyPort<()>,
    },
}

enum Running {
    Service(ActorRef<ServiceMsg>),
    Supervisor(ActorRef<SupervisorMsg>),
}

impl Running {
    fn cell(&self) -> ActorCell {
        match self {
            Running::Service(r) => r.get_cell(),
            Running::Supervisor(r) => r.get_cell(),
        }
    }
}

struct Slot {
    spec: ChildSpec,
    running: Option<Running>,
    /// Stopped by an operator: strategies leave it alone until it is started again.
    held: bool,
}

/// A service that requires services on other nodes starts held: the control plane starts it
/// once they are running and healthy (see [`crate::control::deps`]).
fn waits_for_requirements(spec: &ChildSpec) -> bool {
    matches!(spec, ChildSpec::Service(s) if !s.requires.is_empty())
}

impl Slot {
    fn name(&self) -> &str {
        child_name(&self.spec)
    }
    fn id(&self) -> Option<ActorId> {
        self.running.as_ref().map(|r| r.cell().get_id())
    }
}

fn child_name(spec: &ChildSpec) -> &str {
    match spec {
        ChildSpec::Service(s) => &s.name,
        ChildSpec::Supervisor(s) => &s.name,
    }
}

/// True if `spec` (or a supervisor nested in it) has the service `name`.
fn contains(spec: &ChildSpec, name: &str) -> bool {
    match spec {
        ChildSpec::Service(s) => s.name == name,
        ChildSpec::Supervisor(s) => s.children.iter().any(|c| contains(c, name)),
    }
}

/// Every service name under `spec`.
pub fn services_of(spec: &ChildSpec, out: &mut Vec<String>) {
    match spec {
        ChildSpec::Service(s) => out.push(s.name.clone()),
        ChildSpec::Supervisor(s) => s.children.iter().for_each(|c| services_of(c, out)),
    }
}

fn policy_of(spec: &SupervisorSpec) -> Policy {
    Policy {
        strategy: spec.strategy,
        intensity: spec.intensity,
        period: spec.period,
        backoff: spec.backoff,
        children: spec
            .children
            .iter()
            .map(|c| match c {
                ChildSpec::Service(s) => s.restart,
                ChildSpec::Supervisor(_) => RestartType::Permanent,
            })
            .collect(),
    }
}

pub struct SupervisorState {
    spec: SupervisorSpec,
    tree: String,
    ctx: ServiceCtx,
    policy: Policy,
    history: History,
    slots: Vec<Slot>,
    /// Bumped by every decision, so a pending delayed start of an older one is dropped.
    generation: u64,
    gave_up: bool,
}

pub struct SupervisorActor;

impl Actor for SupervisorActor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<SupervisorMsg>,
        args: SupervisorArgs,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        let policy = policy_of(&args.spec);
        let slots = args
            .spec
            .children
            .iter()
            .map(|c| Slot {
                spec: c.clone(),
                running: None,
                held: waits_for_requirements(c),
            })
            .collect();
        let mut state = SupervisorState {
            history: History::new(args.spec.children.len()),
            spec: args.spec,
            tree: args.tree,
            ctx: args.ctx,
            policy,
            slots,
            generation: 0,
            gave_up: false,
        };
        let all: Vec<usize> = (0..state.slots.len()).collect();
        let failed = state.start(&myself, &all, false).await;
        state.handle_exits(&myself, failed).await;
        if state.gave_up {
            return Err(GAVE_UP.into());
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<SupervisorMsg>,
        msg: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::StartLater {
                children,
                generation,
            } => {
                if generation == state.generation && !state.gave_up {
                    let failed = state.start(&myself, &children, true).await;
                    state.handle_exits(&myself, failed).await;
                }
            }
            SupervisorMsg::Command {
                service,
                command,
                reply,
            } => {
                let result = state.command(&myself, &service, command).await;
                let _ = reply.send(result);
            }
            SupervisorMsg::Reconfigure { spec, reply } => {
                state.reconfigure(&myself, spec).await;
                let _ = reply.send(());
            }
        }
        if state.gave_up {
            myself.stop(Some(GAVE_UP.into()));
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<SupervisorMsg>,
        event: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let (id, exit) = match &event {
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                (cell.get_id(), exit_from_reason(reason.as_deref()))
            }
            SupervisionEvent::ActorFailed(cell, _) => (cell.get_id(), Exit::Abnormal),
            _ => return Ok(()),
        };
        drop(event);
        // An exit of a child this supervisor already stopped or replaced is old news.
        let Some(i) = state.slots.iter().position(|s| s.id() == Some(id)) else {
            return Ok(());
        };
        state.slots[i].running = None;
        if state.gave_up {
            return Ok(());
        }
        state.handle_exits(&myself, vec![(i, exit)]).await;
        if state.gave_up {
            myself.stop(Some(GAVE_UP.into()));
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        // Stopped by the parent (or after giving up): children go in reverse start order.
        let all: Vec<usize> = (0..state.slots.len()).rev().collect();
        state.stop(&all).await;
        Ok(())
    }
}

impl SupervisorState {
    /// Decides on each exit (and on each start that failed on the way) until none is left.
    async fn handle_exits(&mut self, myself: &ActorRef<SupervisorMsg>, exits: Vec<(usize, Exit)>) {
        let mut queue: VecDeque<(usize, Exit)> = exits.into();
        while let Some((child, exit)) = queue.pop_front() {
            let now = self.ctx.board.now();
            let (decision, history) = self.policy.decide(now, child, exit, &self.history);
            self.history = history;
            self.generation += 1;
            match decision {
                Decision::Leave { remove } => {
                    for i in remove {
                        self.mark(i, ServiceState::Stopped);
                    }
                }
                Decision::Restart {
                    stop,
                    mut start,
                    after,
                    ..
                } => {
                    self.stop(&stop).await;
                    // Services an operator stopped stay stopped.
                    start.retain(|i| self.slots.get(*i).is_some_and(|s| !s.held));
                    for &i in &start {
                        self.mark(i, ServiceState::Restarting);
                    }
                    if after.is_zero() {
                        queue.extend(self.start(myself, &start, true).await);
                    } else {
                        tracing::info!(
                            tree = %self.tree, supervisor = %self.spec.name,
                            delay = ?after, "restart delayed by backoff"
                        );
                        let generation = self.generation;
                        drop(myself.send_after(after, move || SupervisorMsg::StartLater {
                            children: start,
                            generation,
                        }));
                    }
                }
                Decision::GiveUp { stop } => {
                    tracing::error!(
                        tree = %self.tree, supervisor = %self.spec.name,
                        intensity = self.spec.intensity, period = ?self.spec.period,
                        "restart intensity exceeded; stopping every child and giving up"
                    );
                    self.stop(&stop).await;
                    self.gave_up = true;
                    return;
                }
            }
        }
    }

    /// Starts the listed children in order (skipping held and running ones); returns those
    /// that failed to start, as abnormal exits.
    async fn start(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        children: &[usize],
        restart: bool,
    ) -> Vec<(usize, Exit)> {
        let mut failed = Vec::new();
        for &i in children {
            let Some(slot) = self.slots.get(i) else {
                continue;
            };
            if slot.held || slot.running.is_some() {
                continue;
            }
            match self.spawn(myself, i, restart).await {
                Ok(running) => {
                    self.slots[i].running = Some(running);
                    let now = self.ctx.board.now();
                    self.history = std::mem::take(&mut self.history).started(i, now);
                }
                Err(why) => {
                    tracing::warn!(
                        tree = %self.tree, child = %self.slots[i].name(), reason = %why,
                        "cannot start"
                    );
                    failed.push((i, Exit::Abnormal));
                }
            }
        }
        failed
    }

    async fn spawn(
        &self,
        myself: &ActorRef<SupervisorMsg>,
        i: usize,
        restart: bool,
    ) -> Result<Running, SpawnErr> {
        let parent = myself.get_cell();
        match &self.slots[i].spec {
            ChildSpec::Service(spec) => {
                let args = ServiceArgs {
                    spec: spec.clone(),
                    tree: self.tree.clone(),
                    ctx: self.ctx.clone(),
                    restart,
                };
                let (r, _) = Actor::spawn_linked(None, ServiceActor, args, parent).await?;
                Ok(Running::Service(r))
            }
            ChildSpec::Supervisor(spec) => {
                let args = SupervisorArgs {
                    spec: spec.clone(),
                    tree: self.tree.clone(),
                    ctx: self.ctx.clone(),
                };
                let (r, _) = Actor::spawn_linked(None, SupervisorActor, args, parent).await?;
                Ok(Running::Supervisor(r))
            }
        }
    }

    /// Stops the listed children, in the order given, each by its own shutdown rule.
    async fn stop(&mut self, children: &[usize]) {
        for &i in children {
            let Some(running) = self.slots.get_mut(i).and_then(|s| s.running.take()) else {
                continue;
            };
            let budget = match &self.slots[i].spec {
                ChildSpec::Service(s) => super::service::stop_budget(s),
                ChildSpec::Supervisor(s) => supervisor_stop_budget(s),
            };
            let cell = running.cell();
            if cell
                .stop_and_wait(Some("stopped by its supervisor".into()), Some(budget))
                .await
                .is_err()
            {
                tracing::warn!(tree = %self.tree, child = %self.slots[i].name(),
                    "did not stop in time; killing it");
                cell.kill();
            }
        }
    }

    /// Sets the board state of a service child (nested supervisors keep their own).
    fn mark(&self, i: usize, state: ServiceState) {
        if let Some(ChildSpec::Service(s)) = self.slots.get(i).map(|s| &s.spec) {
            self.ctx.board.set_state(&s.name, &self.tree, state);
        }
    }

    async fn command(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        service: &str,
        command: Command,
    ) -> Result<(), Error> {
        let Some(i) = self.slots.iter().position(|s| contains(&s.spec, service)) else {
            return Err(Error::NotInTree(service.to_string()));
        };
        if let ChildSpec::Supervisor(_) = self.slots[i].spec {
            let Some(Running::Supervisor(nested)) = &self.slots[i].running else {
                return Err(Error::HolderNotRunning(service.to_string()));
            };
            let budget = supervisor_stop_budget(&self.spec) * 2;
            let service = service.to_string();
            return match nested
                .call(
                    |reply| SupervisorMsg::Command {
                        service,
                        command,
                        reply,
                    },
                    Some(budget),
                )
                .await
            {
                Ok(CallResult::Success(r)) => r,
                _ => Err(Error::HolderSilent),
            };
        }
        match command {
            Command::Stop => {
                self.slots[i].held = true;
                self.stop(&[i]).await;
                Ok(())
            }
            Command::Start | Command::Restart => {
                self.slots[i].held = false;
                if command == Command::Restart {
                    self.stop(&[i]).await;
                }
                if self.start(myself, &[i], false).await.is_empty() {
                    Ok(())
                } else {
                    let why = self
                        .ctx
                        .board
                        .get(service)
                        .and_then(|s| s.last_exit)
                        .unwrap_or_else(|| "unknown reason".into());
                    Err(Error::CannotStart {
                        service: service.to_string(),
                        why,
                    })
                }
            }
        }
    }

    /// Applies a new spec of this supervisor: children whose spec is unchanged keep running
    /// (same process), removed ones stop, changed and new ones start, in the new order.
    async fn reconfigure(&mut self, myself: &ActorRef<SupervisorMsg>, spec: SupervisorSpec) {
        let mut old: Vec<Slot> = std::mem::take(&mut self.slots);
        let mut slots = Vec::with_capacity(spec.children.len());
        let mut nested = Vec::new();
        for child in &spec.children {
            let name = child_name(child);
            let found = old.iter().position(|s| s.name() == name);
            let slot = match found.map(|k| old.remove(k)) {
                Some(s) if s.spec == *child => s,
                Some(Slot {
                    spec: ChildSpec::Supervisor(_),
                    running: Some(Running::Supervisor(r)),
                    held,
                }) if matches!(child, ChildSpec::Supervisor(_)) => {
                    if let ChildSpec::Supervisor(new) = child {
                        nested.push((r.clone(), new.clone()));
                    }
                    Slot {
                        spec: child.clone(),
                        running: Some(Running::Supervisor(r)),
                        held,
                    }
                }
                Some(changed) => {
                    // Changed: the old one goes now, the new one starts below.
                    self.slots = vec![changed];
                    self.stop(&[0]).await;
                    self.slots.clear();
                    Slot {
                        spec: child.clone(),
                        running: None,
                        held: waits_for_requirements(child),
                    }
                }
                None => Slot {
                    spec: child.clone(),
                    running: None,
                    held: waits_for_requirements(child),
                },
            };
            slots.push(slot);
        }
        // Children no longer in the spec stop, last started first.
        let mut removed = Vec::new();
        for slot in &old {
            if let ChildSpec::Service(_) = slot.spec {
                removed.push(slot.name().to_string());
            } else {
                let mut names = Vec::new();
                services_of(&slot.spec, &mut names);
                removed.extend(names);
            }
        }
        self.slots = old;
        let all: Vec<usize> = (0..self.slots.len()).rev().collect();
        self.stop(&all).await;
        for name in removed {
            self.ctx.board.remove(&name);
        }
        self.slots = slots;
        for (r, new) in nested {
            let _ = r
                .call(
                    |reply| SupervisorMsg::Reconfigure { spec: new, reply },
                    Some(supervisor_stop_budget(&self.spec) * 2),
                )
                .await;
        }
        self.policy = policy_of(&spec);
        self.history = History::new(spec.children.len());
        self.spec = spec;
        self.generation += 1;
        let all: Vec<usize> = (0..self.slots.len()).collect();
        let failed = self.start(myself, &all, false).await;
        self.handle_exits(myself, failed).await;
    }
}

/// The longest a supervisor's stop can take: each child's budget, in turn.
pub fn supervisor_stop_budget(spec: &SupervisorSpec) -> Duration {
    spec.children
        .iter()
        .map(|c| match c {
            ChildSpec::Service(s) => super::service::stop_budget(s),
            ChildSpec::Supervisor(s) => supervisor_stop_budget(s),
        })
        .sum::<Duration>()
        + super::service::STOP_MARGIN
}
