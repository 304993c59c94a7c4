//! `ControlActor`: carries out the control plane's decisions. On every view snapshot the
//! election actor publishes, and every [`TICK`] besides (for what only time changes), it reads
//! the latest one; it asks the supervision manager what this node declares (services with
//! requirements, placed trees), and then
//!
//! * deletes this node's expired application data, old command answers and old commands;
//! * runs the remote commands addressed to this node, each once, and answers them;
//! * starts and stops services whose requirements on other nodes come and go;
//! * as the leader, writes where each placed tree should run; on every node, announces its
//!   placed trees and starts or stops them as the leader says.
//!
//! Commands to the manager run on tasks of their own (a stop can take a service's whole
//! shutdown grace), so a tick never waits for one; at most one is in flight per service or tree.

use crate::actors::election::Snapshots;
use crate::actors::gossip::GossipMsg;
use crate::actors::settings::{SettingsSender, SettingsShell};
use crate::control::placement::{self, Decision, Placer};
use crate::control::settings::{Applied, PushError};
use crate::control::{appdata, deps, remote};
use crate::election::ViewSnapshot;
use crate::gossip::MemberView;
use crate::keys::control::Answer;
use crate::keys::{Command, Run};
use crate::secure::directive::{Authority, Ledger};
use crate::secure::operator::Directive;
use crate::supervision::manager::{ControlInfo, ManagerMsg};
use crate::task::{AbortOnDrop, Handle, OnChange, on_change, ticker};
use crate::types::{Clock, NodeName};
use ractor::rpc::CallResult;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// How long a service command may take (a stop waits for the service's shutdown grace).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
const INFO_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the control plane looks at the view when no new one came.
pub const TICK: Duration = Duration::from_secs(1);

pub struct ControlArgs {
    pub me: NodeName,
    pub gossip: Handle<GossipMsg>,
    pub services: Handle<ManagerMsg>,
    pub view: Snapshots,
    pub clock: Clock,
    /// Whose commands it obeys.
    pub authority: std::sync::Arc<Authority>,
    /// Where the ledger of commands run and the cluster settings are kept.
    pub data_dir: std::path::PathBuf,
    /// Where the applied cluster settings go.
    pub settings: SettingsSender,
}

pub enum ControlMsg {
    /// Look at the latest view.
    Tick,
    /// A task started for `key` (a command id, `svc:<name>` or `tree:<name>`) is done.
    Done(String),
    /// Push a new cluster settings document from this node.
    PushSettings {
        text: String,
        reply: RpcReplyPort<Result<Arc<Applied>, PushError>>,
    },
}

pub struct ControlState {
    args: ControlArgs,
    /// Keys of the manager commands in flight.
    busy: HashSet<String>,
    /// Whether each service's requirements were met at the last look.
    met: HashMap<String, bool>,
    placer: Placer,
    /// The signed commands run here, by issuer (saved before each one runs).
    ledger: Ledger,
    /// The cluster settings this node applies.
    settings: SettingsShell,
    _ticker: AbortOnDrop<()>,
    on_view: OnChange,
}

pub struct ControlActor;

impl Actor for ControlActor {
    type Msg = ControlMsg;
    type State = ControlState;
    type Arguments = ControlArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<ControlMsg>,
        args: ControlArgs,
    ) -> Result<ControlState, ActorProcessingErr> {
        // A ledger that cannot be read is moved aside: starting without it could let a
        // command captured before run once more, but only within its issuer's window.
        let path = args.data_dir.join(crate::secure::directive::LEDGER_FILE);
        let ledger = Ledger::load(&args.data_dir).unwrap_or_else(|e| {
            let aside = crate::statefile::move_aside(&path);
            tracing::error!(error = %e, moved_to = ?aside.as_ref().ok(), "cannot read the ledger of commands run; starting without it");
            None
        });
        let settings = SettingsShell::start(
            args.me.clone(),
            args.authority.clone(),
            args.data_dir.clone(),
            args.gossip.clone(),
            args.settings.clone(),
        );
        let on_view = on_change(args.view.clone(), myself.clone(), || ControlMsg::Tick);
        let ticker = ticker(myself, args.clock, TICK, || ControlMsg::Tick);
        Ok(ControlState {
            ledger: ledger.unwrap_or_default(),
            settings,
            args,
            busy: HashSet::new(),
            met: HashMap::new(),
            placer: Placer::default(),
            _ticker: ticker,
            on_view,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<ControlMsg>,
        msg: ControlMsg,
        state: &mut ControlState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ControlMsg::Done(key) => {
                state.busy.remove(&key);
            }
            ControlMsg::Tick => {
                state.on_view.seen();
                let view = state.args.view.borrow().clone();
                state.settings.step(&view);
                state.step(&myself, &view).await
            }
            ControlMsg::PushSettings { text, reply } => {
                let now = state.args.clock.now().as_millis();
                let _ = reply.send(state.settings.push(&text, now));
            }
        }
        Ok(())
    }
}

impl ControlState {
    fn put(&self, key: String, value: Option<String>) {
        self.args.gossip.cast(GossipMsg::Put { key, value });
    }

    async fn step(&mut self, myself: &ActorRef<ControlMsg>, view: &ViewSnapshot) {
        let views = &view.members[..];
        let Some(me) = view.me() else {
            return;
        };
        let now = self.args.clock.now();
        let mut stale = appdata::expired(me, now);
        stale.extend(remote::old_answers(me, now));
        stale.extend(remote::old_commands(me, now));
        for key in stale {
            self.put(key, None);
        }
        let busy = self.busy.clone();
        for cmd in remote::pending(views, me, &|id| busy.contains(id)) {
            match self.obey(&cmd) {
                Ok(()) => self.run_remote(myself, cmd),
                Err(why) => self.refuse(&cmd, why, now),
            }
        }
        let Some(manager) = self.args.services.get() else {
            return;
        };
        let info = match manager
            .call(ManagerMsg::ControlInfo, Some(INFO_TIMEOUT))
            .await
        {
            Ok(CallResult::Success(info)) => info,
            _ => return,
        };
        self.requirements(myself, &manager, &info, views);
        self.placement(myself, &manager, &info, view, me);
    }

    /// Whether this node obeys `cmd`: sealed by an operator it trusts, and fresh by its
    /// issuer's numbering. A command obeyed is recorded in the ledger, on disk, before it
    /// runs, so it never runs twice, not even across a restart.
    fn obey(&mut self, cmd: &remote::Pending) -> Result<(), String> {
        let key = format!("{}{}", crate::keys::COMMAND_PREFIX, cmd.id);
        let directive = Directive {
            cluster: &self.args.authority.trust.cluster,
            issuer: &cmd.from,
            key: &key,
            content: &cmd.content,
        };
        let trust = &self.args.authority.trust;
        let op = trust
            .check(&directive, cmd.seal.as_ref())
            .map_err(|r| r.to_string())?;
        let seq = cmd.seal.as_ref().map_or(0, |s| s.seq);
        self.ledger
            .fresh(&op, &cmd.from, seq)
            .map_err(|r| r.to_string())?;
        self.ledger.ran(&op, &cmd.from, seq);
        self.ledger
            .save(&self.args.data_dir)
            .map_err(|e| format!("refused: cannot record it before running it ({e})"))
    }

    /// Answers a command this node does not obey, saying why (once: the answer ends it).
    fn refuse(&self, cmd: &remote::Pending, why: String, now: crate::types::Time) {
        tracing::warn!(id = %cmd.id, from = %cmd.from, service = %cmd.service, action = cmd.command.as_str(), why = %why, "refused a command from another node");
        let answer = Answer {
            ok: false,
            message: why,
            at: now.as_millis(),
        };
        let (key, value) = remote::encode_answer(&cmd.id, &answer);
        self.put(key, Some(value));
    }

    /// Runs a command addressed to this node and answers it in gossip.
    fn run_remote(&mut self, myself: &ActorRef<ControlMsg>, cmd: remote::Pending) {
        self.busy.insert(cmd.id.clone());
        tracing::info!(id = %cmd.id, from = %cmd.from, service = %cmd.service, action = cmd.command.as_str(), "running a command from another node");
        let (services, gossip, clock, myself) = (
            self.args.services.clone(),
            self.args.gossip.clone(),
            self.args.clock,
            myself.clone(),
        );
        tokio::spawn(async move {
            let result = match services.get() {
                None => Err("the supervisor is restarting; try again".to_string()),
                Some(manager) => {
                    let service = cmd.service.clone();
                    match manager
                        .call(
                            |reply| ManagerMsg::Command {
                                service,
                                command: cmd.command,
                                reply,
                            },
                            Some(COMMAND_TIMEOUT),
                        )
                        .await
                    {
                        Ok(CallResult::Success(r)) => r.map_err(|e| e.to_string()),
                        Ok(CallResult::Timeout) => {
                            Err(format!("not done within {COMMAND_TIMEOUT:?}"))
                        }
                        _ => Err("the supervisor is restarting; try again".to_string()),
                    }
                }
            };
            let answer = Answer {
                ok: result.is_ok(),
                message: match result {
                    Ok(()) => format!("{}: {} done", cmd.service, cmd.command.as_str()),
                    Err(why) => why,
                },
                at: clock.now().as_millis(),
            };
            let (key, value) = remote::encode_answer(&cmd.id, &answer);
            gossip.cast(GossipMsg::Put {
                key,
                value: Some(value),
            });
            let _ = myself.cast(ControlMsg::Done(cmd.id));
        });
    }

    /// Sends `command` for `service` to the manager on a task, unless one is in flight.
    fn command(
        &mut self,
        myself: &ActorRef<ControlMsg>,
        manager: &ActorRef<ManagerMsg>,
        service: &str,
        command: Command,
    ) {
        let key = format!("svc:{service}");
        if !self.busy.insert(key.clone()) {
            return;
        }
        let (manager, myself, service) = (manager.clone(), myself.clone(), service.to_string());
        tokio::spawn(async move {
            let name = service.clone();
            let result = manager
                .call(
                    |reply| ManagerMsg::Command {
                        service,
                        command,
                        reply,
                    },
                    Some(COMMAND_TIMEOUT),
                )
                .await;
            if let Ok(CallResult::Success(Err(why))) = result {
                tracing::warn!(service = %name, error = %why, "cannot {} the service", command.as_str());
            }
            let _ = myself.cast(ControlMsg::Done(key));
        });
    }

    fn requirements(
        &mut self,
        myself: &ActorRef<ControlMsg>,
        manager: &ActorRef<ManagerMsg>,
        info: &ControlInfo,
        views: &[MemberView],
    ) {
        let declared: HashSet<&str> = info.requires.iter().map(|(s, _, _)| s.as_str()).collect();
        self.met.retain(|s, _| declared.contains(s.as_str()));
        for (service, reqs, on_loss) in &info.requires {
            if self.busy.contains(&format!("svc:{service}")) {
                continue;
            }
            let now_met = deps::all_met(reqs, views);
            let before = self.met.get(service).copied();
            if before == Some(now_met.is_ok()) {
                continue;
            }
            let command = deps::transition(before, now_met.is_ok(), *on_loss);
            match &now_met {
                Ok(()) => tracing::info!(service = %service, "its requirements are met"),
                Err(why) => {
                    tracing::info!(service = %service, waiting_for = %why, "a requirement is not met")
                }
            }
            self.met.insert(service.clone(), now_met.is_ok());
            if let Some(command) = command {
                self.command(myself, manager, service, command);
            }
        }
    }

    fn placement(
        &mut self,
        myself: &ActorRef<ControlMsg>,
        manager: &ActorRef<ManagerMsg>,
        info: &ControlInfo,
        view: &ViewSnapshot,
        me: &MemberView,
    ) {
        let views = &view.members[..];
        let leader = view.leader.as_ref();
        // The leader's word on every declared tree; a node that is not the leader has none.
        if view.is_leader(&me.name) {
            let entries = placement::leader_entries(views);
            for (key, value) in &entries {
                if me.kv.get(key) != Some(value) {
                    self.put(key.clone(), Some(value.clone()));
                }
            }
            for key in placement::own_places(me) {
                if !entries.iter().any(|(k, _)| *k == key) {
                    self.put(key, None);
                }
            }
        } else {
            for key in placement::own_places(me) {
                self.put(key, None);
            }
        }
        let now = self.args.clock.now();
        let leader = leader.map(NodeName::as_str);
        for (tree, spec, run) in &info.placed {
            let (key, value) = placement::declaration(tree, spec, *run);
            if me.kv.get(&key) != Some(&value) {
                self.put(key, Some(value));
            }
            let busy_key = format!("tree:{tree}");
            if self.busy.contains(&busy_key) {
                continue;
            }
            let running = *run == Run::Running;
            let run = match self
                .placer
                .step(now, views, me.name.as_str(), tree, leader, running)
            {
                Decision::Start => true,
                Decision::Stop => false,
                Decision::Nothing => continue,
            };
            self.busy.insert(busy_key.clone());
            let (manager, myself, tree) = (manager.clone(), myself.clone(), tree.clone());
            tokio::spawn(async move {
                let _ = manager
                    .call(
                        |reply| ManagerMsg::Place { tree, run, reply },
                        Some(COMMAND_TIMEOUT),
                    )
                    .await;
                let _ = myself.cast(ControlMsg::Done(busy_key));
            });
        }
    }
}
