//! `ManagerActor`: the node's supervisory actor. It starts one root [`SupervisorActor`] per
//! tree file, in file order, and stops them in reverse; it routes operator commands to the
//! tree that holds the service; it reloads the trees folder, applying only the difference;
//! and it is the parent of every root, so a root that gives up is reported here: its services
//! are marked `failed`, a `service_failed` event is recorded for each, and their state (in the
//! node's gossiped state) tells the cluster's leader.

use super::Error;
use super::service::ServiceCtx;
use super::spec::{
    ChildSpec, OnDependencyLoss, Placement, Requirement, ServiceSpec, TreeSpec, load_trees,
};
use super::supervisor::{
    GAVE_UP, SupervisorActor, SupervisorArgs, SupervisorMsg, services_of, supervisor_stop_budget,
};
use crate::config::ConfigErrors;
use crate::events::ServiceEventKind;
use crate::keys::{Command, Run, ServiceState, ServiceStatus, Shape};
use ractor::rpc::CallResult;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use std::path::PathBuf;

pub struct ManagerArgs {
    /// The trees folder, re-read on reload.
    pub dir: PathBuf,
    pub trees: Vec<TreeSpec>,
    pub ctx: ServiceCtx,
}

/// What a reload changed, by tree name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReloadSummary {
    pub started: Vec<String>,
    pub stopped: Vec<String>,
    pub changed: Vec<String>,
    pub unchanged: Vec<String>,
}

pub enum ManagerMsg {
    List(RpcReplyPort<Vec<ServiceStatus>>),
    Command {
        service: String,
        command: Command,
        reply: RpcReplyPort<Result<(), Error>>,
    },
    /// Re-reads the trees folder; an invalid folder is refused whole, with its problems.
    Reload(RpcReplyPort<Result<ReloadSummary, Error>>),
    /// Stops every tree, last first (the daemon is stopping).
    StopAll(RpcReplyPort<()>),
    /// What the control plane needs: requirements of services and placed trees.
    ControlInfo(RpcReplyPort<ControlInfo>),
    /// Starts (`run`) or stops a placed tree, as the cluster's leader placed it.
    Place {
        tree: String,
        run: bool,
        reply: RpcReplyPort<()>,
    },
}

/// The node's services that require services elsewhere, and its placed trees.
#[derive(Clone, Debug, Default)]
pub struct ControlInfo {
    pub requires: Vec<(String, Vec<Requirement>, OnDependencyLoss)>,
    pub placed: Vec<(String, Placement, Run)>,
}

struct Tree {
    spec: TreeSpec,
    root: Option<ActorRef<SupervisorMsg>>,
    /// The root gave up (until an operator starts the tree again).
    failed: bool,
}

impl Tree {
    fn name(&self) -> &str {
        &self.spec.root.name
    }
    fn services(&self) -> Vec<String> {
        let mut out = Vec::new();
        services_of(&ChildSpec::Supervisor(self.spec.root.clone()), &mut out);
        out
    }
    fn has(&self, service: &str) -> bool {
        self.services().iter().any(|s| s == service)
    }
    fn run(&self) -> Run {
        match (&self.root, self.failed) {
            (Some(_), _) => Run::Running,
            (None, true) => Run::Failed,
            (None, false) => Run::Idle,
        }
    }
}

/// Every service of `sup` with its place in the graph: the supervisors above it (from `path`
/// down) and its requirements.
fn shapes(
    sup: &super::spec::SupervisorSpec,
    path: &mut Vec<String>,
    out: &mut Vec<(String, Shape)>,
) {
    path.push(sup.name.clone());
    for child in &sup.children {
        match child {
            ChildSpec::Service(s) => out.push((
                s.name.clone(),
                Shape {
                    path: if path.len() > 1 {
                        path.clone()
                    } else {
                        Vec::new()
                    },
                    requires: s.requires.iter().map(ToString::to_string).collect(),
                },
            )),
            ChildSpec::Supervisor(nested) => shapes(nested, path, out),
        }
    }
    path.pop();
}

fn service_specs<'a>(sup: &'a super::spec::SupervisorSpec, out: &mut Vec<&'a ServiceSpec>) {
    for child in &sup.children {
        match child {
            ChildSpec::Service(s) => out.push(s),
            ChildSpec::Supervisor(nested) => service_specs(nested, out),
        }
    }
}

pub struct ManagerState {
    dir: PathBuf,
    trees: Vec<Tree>,
    ctx: ServiceCtx,
    stopping: bool,
}

pub struct ManagerActor;

impl Actor for ManagerActor {
    type Msg = ManagerMsg;
    type State = ManagerState;
    type Arguments = ManagerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<ManagerMsg>,
        args: ManagerArgs,
    ) -> Result<ManagerState, ActorProcessingErr> {
        let mut state = ManagerState {
            dir: args.dir,
            trees: Vec::new(),
            ctx: args.ctx,
            stopping: false,
        };
        for spec in args.trees {
            state.add(&myself, spec).await;
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<ManagerMsg>,
        msg: ManagerMsg,
        state: &mut ManagerState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ManagerMsg::List(reply) => {
                let _ = reply.send(state.ctx.board.list());
            }
            ManagerMsg::Command {
                service,
                command,
                reply,
            } => {
                let result = state.command(&myself, &service, command).await;
                let _ = reply.send(result);
            }
            ManagerMsg::Reload(reply) => {
                let systemd = crate::notify::notifier();
                systemd.reloading();
                let result = state.reload(&myself).await;
                match &result {
                    Ok(_) => systemd.ready("running"),
                    Err(e) => systemd.ready(&format!("running; the last reload was refused: {e}")),
                }
                let _ = reply.send(result);
            }
            ManagerMsg::StopAll(reply) => {
                state.stopping = true;
                state.stop_all().await;
                let _ = reply.send(());
            }
            ManagerMsg::ControlInfo(reply) => {
                let _ = reply.send(state.control_info());
            }
            ManagerMsg::Place { tree, run, reply } => {
                if let Some(k) = state.trees.iter().position(|t| t.name() == tree)
                    && state.trees[k].spec.placement.is_some()
                    && !state.stopping
                {
                    match (run, state.trees[k].root.is_some()) {
                        (true, false) if !state.trees[k].failed => {
                            tracing::info!(tree = %tree, "the leader placed the tree here");
                            state.start(&myself, k).await;
                        }
                        (false, true) => {
                            tracing::info!(tree = %tree, "the leader placed the tree elsewhere");
                            state.stop_tree(k).await;
                            state.mark(k, ServiceState::Stopped);
                        }
                        _ => {}
                    }
                }
                let _ = reply.send(());
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<ManagerMsg>,
        event: SupervisionEvent,
        state: &mut ManagerState,
    ) -> Result<(), ActorProcessingErr> {
        let (id, why) = match &event {
            SupervisionEvent::ActorTerminated(cell, _, reason) => (
                cell.get_id(),
                reason.clone().unwrap_or_else(|| "stopped".into()),
            ),
            SupervisionEvent::ActorFailed(cell, e) => (cell.get_id(), format!("crashed: {e}")),
            _ => return Ok(()),
        };
        drop(event);
        let Some(k) = state
            .trees
            .iter()
            .position(|t| t.root.as_ref().map(|r| r.get_id()) == Some(id))
        else {
            return Ok(());
        };
        state.trees[k].root = None;
        if !state.stopping {
            state.failed(k, &why);
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<ManagerMsg>,
        state: &mut ManagerState,
    ) -> Result<(), ActorProcessingErr> {
        state.stopping = true;
        state.stop_all().await;
        Ok(())
    }
}

impl ManagerState {
    async fn add(&mut self, myself: &ActorRef<ManagerMsg>, spec: TreeSpec) {
        let tree = Tree {
            spec,
            root: None,
            failed: false,
        };
        self.trees.push(tree);
        let k = self.trees.len() - 1;
        self.mark(k, ServiceState::Stopped);
        // A placed tree waits for the leader to place it here.
        if self.trees[k].spec.placement.is_none() {
            self.start(myself, k).await;
        }
    }

    fn mark(&self, k: usize, state: ServiceState) {
        let tree = &self.trees[k];
        self.declare_shapes(k);
        for service in tree.services() {
            self.ctx.board.set_state(&service, tree.name(), state);
        }
    }

    /// Tells the board where each of tree `k`'s services sits (see [`Shape`]).
    fn declare_shapes(&self, k: usize) {
        let mut out = Vec::new();
        shapes(&self.trees[k].spec.root, &mut Vec::new(), &mut out);
        for (service, shape) in out {
            self.ctx.board.shape(&service, shape);
        }
    }

    fn control_info(&self) -> ControlInfo {
        let mut info = ControlInfo::default();
        for tree in &self.trees {
            let mut specs = Vec::new();
            service_specs(&tree.spec.root, &mut specs);
            for s in specs.into_iter().filter(|s| !s.requires.is_empty()) {
                info.requires
                    .push((s.name.clone(), s.requires.clone(), s.on_dependency_loss));
            }
            if let Some(p) = &tree.spec.placement {
                info.placed
                    .push((tree.name().to_string(), p.clone(), tree.run()));
            }
        }
        info
    }

    /// Starts tree `k`'s root supervisor; a root that gives up while starting is `failed`.
    async fn start(&mut self, myself: &ActorRef<ManagerMsg>, k: usize) {
        let tree = &self.trees[k];
        let args = SupervisorArgs {
            spec: tree.spec.root.clone(),
            tree: tree.name().to_string(),
            ctx: self.ctx.clone(),
        };
        tracing::info!(tree = %tree.name(), file = %tree.spec.file.display(), "starting tree");
        match Actor::spawn_linked(None, SupervisorActor, args, myself.get_cell()).await {
            Ok((root, _)) => {
                self.trees[k].root = Some(root);
                self.trees[k].failed = false;
            }
            Err(e) => {
                let why = match &e {
                    ractor::SpawnErr::StartupFailed(inner) => inner.to_string(),
                    other => other.to_string(),
                };
                self.failed(k, &why);
            }
        }
    }

    /// Tree `k`'s root gave up: its services are failed until an operator starts them.
    fn failed(&mut self, k: usize, why: &str) {
        self.trees[k].failed = true;
        let tree = &self.trees[k];
        let reason = if why.contains(GAVE_UP) {
            GAVE_UP.to_string()
        } else {
            why.to_string()
        };
        tracing::error!(tree = %tree.name(), reason = %reason, "tree failed; its services stay down");
        for service in tree.services() {
            self.ctx
                .board
                .set_state(&service, tree.name(), ServiceState::Failed);
            self.ctx.board.event(
                &service,
                tree.name(),
                ServiceEventKind::Failed {
                    reason: reason.clone(),
                },
            );
        }
    }

    async fn stop_tree(&mut self, k: usize) {
        if let Some(root) = self.trees[k].root.take() {
            let budget = supervisor_stop_budget(&self.trees[k].spec.root);
            let cell = root.get_cell();
            if cell
                .stop_and_wait(Some("stopping".into()), Some(budget))
                .await
                .is_err()
            {
                tracing::warn!(tree = %self.trees[k].name(), "tree did not stop in time; killing it");
                cell.kill();
            }
        }
    }

    async fn stop_all(&mut self) {
        for k in (0..self.trees.len()).rev() {
            self.stop_tree(k).await;
        }
    }

    async fn command(
        &mut self,
        myself: &ActorRef<ManagerMsg>,
        service: &str,
        command: Command,
    ) -> Result<(), Error> {
        let Some(k) = self.trees.iter().position(|t| t.has(service)) else {
            return Err(Error::NoService(service.to_string()));
        };
        let Some(root) = self.trees[k].root.clone() else {
            if self.trees[k].spec.placement.is_some() {
                return self.command_on_placed(k, command);
            }
            // The tree failed: starting one of its services starts the tree afresh.
            return match command {
                Command::Stop => Ok(()),
                Command::Start | Command::Restart => {
                    self.start(myself, k).await;
                    match self.trees[k].root {
                        Some(_) => Ok(()),
                        None => Err(Error::FailedAgain(self.trees[k].name().to_string())),
                    }
                }
            };
        };
        let budget = supervisor_stop_budget(&self.trees[k].spec.root) * 2;
        let service = service.to_string();
        match root
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
            _ => Err(Error::TreeSilent),
        }
    }

    /// A command for a placed tree that does not run here: a start clears a failure (the
    /// leader may then place the tree here again); it does not start the tree, which runs
    /// only where the leader places it.
    fn command_on_placed(&mut self, k: usize, command: Command) -> Result<(), Error> {
        let name = self.trees[k].name().to_string();
        match command {
            Command::Stop => Ok(()),
            Command::Start | Command::Restart if self.trees[k].failed => {
                self.trees[k].failed = false;
                self.mark(k, ServiceState::Stopped);
                tracing::info!(tree = %name, "failure cleared; the tree may be placed here again");
                Ok(())
            }
            Command::Start | Command::Restart => Err(Error::PlacedElsewhere(name)),
        }
    }

    async fn reload(&mut self, myself: &ActorRef<ManagerMsg>) -> Result<ReloadSummary, Error> {
        let new =
            load_trees(&self.dir).map_err(|problems| Error::NotReloaded(ConfigErrors(problems)))?;
        let mut summary = ReloadSummary::default();
        // Trees gone from the folder stop first, last first.
        for k in (0..self.trees.len()).rev() {
            let name = self.trees[k].name().to_string();
            if !new.iter().any(|t| t.root.name == name) {
                self.stop_tree(k).await;
                for service in self.trees[k].services() {
                    self.ctx.board.remove(&service);
                }
                self.trees.remove(k);
                summary.stopped.push(name);
            }
        }
        for spec in new {
            let name = spec.root.name.clone();
            match self.trees.iter().position(|t| t.name() == name) {
                None => {
                    self.add(myself, spec).await;
                    summary.started.push(name);
                }
                Some(k) if self.trees[k].spec.root == spec.root => {
                    let unplaced = self.trees[k].spec.placement.is_some()
                        && spec.placement.is_none()
                        && self.trees[k].root.is_none();
                    self.trees[k].spec = spec;
                    if unplaced {
                        self.start(myself, k).await;
                        summary.changed.push(name);
                    } else {
                        summary.unchanged.push(name);
                    }
                }
                Some(k) => {
                    let before = self.trees[k].services();
                    self.trees[k].spec = spec.clone();
                    let after = self.trees[k].services();
                    for gone in before.iter().filter(|s| !after.contains(s)) {
                        self.ctx.board.remove(gone);
                    }
                    self.declare_shapes(k);
                    match self.trees[k].root.clone() {
                        Some(root) => {
                            let budget = supervisor_stop_budget(&spec.root) * 2;
                            let _ = root
                                .call(
                                    |reply| SupervisorMsg::Reconfigure {
                                        spec: spec.root,
                                        reply,
                                    },
                                    Some(budget),
                                )
                                .await;
                        }
                        None if self.trees[k].spec.placement.is_none() => {
                            self.start(myself, k).await
                        }
                        // A placed tree starts where the leader places it.
                        None => {}
                    }
                    summary.changed.push(name);
                }
            }
        }
        tracing::info!(?summary, "trees reloaded");
        Ok(summary)
    }
}
