//! `AlertActor`: the alert protocol of a running node. It steps the [`AlertCore`] with the
//! latest view snapshot the election actor published each time a new one comes, when the
//! settle time of one of its claims runs out (the core's `next_deadline`), and every
//! [`TICK`] for what is counted in seconds or minutes; it writes the core's keys into the
//! node's gossiped state and delivers its alerts to the sinks on tasks of their own. So a
//! `node_down` is claimed as soon as the view says so, and sent as soon as the settle time
//! allows.
//!
//! The ids known to be sent are kept in `<data_dir>/alerts-sent.json`, so a restarted node
//! neither re-sends nor lets others re-send.
//!
//! Every [`READY_EVERY`] it looks again at which of its sinks can deliver (their secret files,
//! their programs) and tells the core, which announces the count: only a node with a ready
//! sink sends.
//!
//! Its rules and sinks are the node's own `[alerts]` with the cluster settings over them
//! (`config::cluster`); when the control actor applies a new document, the next tick uses it,
//! without a restart.

use crate::actors::election::Snapshots;
use crate::actors::gossip::GossipMsg;
use crate::actors::settings::AppliedSettings;
use crate::alert::core::{AlertCore, AlertOutput, Persisted};
use crate::alert::incident::Rules;
use crate::config::{AlertsConfig, SinkSpec};
use crate::control::settings::Applied;
use crate::events::{AlertSentEvent, EventLog, NodeEvent, SinkResult};
use crate::sinks::deliver_all;
use crate::statefile;
use crate::task::{AbortOnDrop, Alarm, Handle, OnChange, on_change, ticker};
use crate::types::{Clock, NodeName};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

const SENT_FILE: &str = statefile::ALERTS_SENT;
/// How often the core is stepped when no new view and no deadline has stepped it.
pub const TICK: Duration = Duration::from_secs(1);
/// How long a step of remediation waits, once its running mark is in this node's gossiped
/// state, before it runs: time for the next news exchange to carry the mark to others.
pub const MARK_SPREAD: Duration = Duration::from_millis(200);
/// How often the sinks' readiness is looked at again.
pub const READY_EVERY: Duration = Duration::from_secs(10);

pub struct AlertArgs {
    pub me: NodeName,
    pub settle: Duration,
    /// This node's own `[alerts]`.
    pub local: AlertsConfig,
    /// The cluster settings in force, over `local`.
    pub cluster: AppliedSettings,
    /// Whose silences it obeys.
    pub trust: crate::secure::directive::Trust,
    pub data_dir: PathBuf,
    pub gossip: Handle<GossipMsg>,
    pub view: Snapshots,
    pub events: EventLog,
    pub clock: Clock,
    /// This node's dashboard, which its alerts link to (`dashboard` in the alert JSON).
    pub dashboard: String,
}

pub enum AlertMsg {
    /// Step the core with the latest view.
    Tick,
    Delivered {
        id: String,
        alert: Value,
        results: Vec<SinkResult>,
    },
}

pub struct AlertState {
    args: AlertArgs,
    core: AlertCore,
    /// What is on disk.
    saved: Persisted,
    /// The sinks in force.
    sinks: Vec<SinkSpec>,
    /// Sinks ready at the last look, and when that was.
    ready: usize,
    looked: std::time::Instant,
    /// Armed at the core's next deadline after each step.
    alarm: Alarm,
    /// When the open alerts were last posted again to the `alertmanager` sinks.
    reposted: std::time::Instant,
    _ticker: AbortOnDrop<()>,
    on_view: OnChange,
}

/// Why each of `sinks` that cannot deliver now cannot, by its number (1-based); the others
/// are ready.
fn unready_sinks(sinks: &[SinkSpec]) -> Vec<(usize, String)> {
    (sinks.iter().enumerate())
        .filter_map(|(i, sink)| Some((i + 1, crate::sinks::unready(sink)?)))
        .collect()
}

/// Says which sinks cannot deliver, and why.
fn log_unready(unready: &[(usize, String)]) {
    for (sink, why) in unready {
        tracing::warn!(sink, %why, "this alert sink cannot deliver");
    }
}

/// Format 1 had no `"format"` field; format 2 has the same fields.
const SENT_MIGRATIONS: [fn(&mut serde_json::Value); 1] = [|_| {}];

/// What an earlier life knew sent. A file that cannot be read is moved aside and the node
/// starts without it: an incident it had alerted may then be alerted once more (README,
/// "Alerts"), which is better than none.
fn load_sent(path: &std::path::Path) -> Persisted {
    match statefile::read_json(path, statefile::ALERTS_SENT_FORMAT, &SENT_MIGRATIONS) {
        Ok(read) => read.unwrap_or_default(),
        Err(e) => {
            let aside = statefile::move_aside(path);
            tracing::error!(
                error = %e, moved_to = ?aside.as_ref().ok(),
                "cannot read what was alerted; starting without it (an alert may come twice)"
            );
            Persisted::default()
        }
    }
}

fn save_sent(path: &std::path::Path, ids: &Persisted) -> std::io::Result<()> {
    statefile::write_json(path, statefile::ALERTS_SENT_FORMAT, ids)
}

/// The secret files of `sinks` (SMTP passwords, webhook URLs and tokens) that others can
/// read, with their modes (SECURITY.md says 0600).
fn open_password_files(sinks: &[SinkSpec]) -> Vec<(PathBuf, u32)> {
    use crate::config::WebhookUrl;
    use std::os::unix::fs::PermissionsExt;
    sinks
        .iter()
        .flat_map(|sink| match sink {
            SinkSpec::Email {
                auth: Some(auth), ..
            } => vec![&auth.password_file],
            SinkSpec::Webhook {
                url, token_file, ..
            } => {
                let url = match url {
                    WebhookUrl::File(f) => Some(f),
                    WebhookUrl::Given(_) => None,
                };
                url.into_iter().chain(token_file).collect()
            }
            _ => Vec::new(),
        })
        .filter_map(|file| {
            let mode = std::fs::metadata(file).ok()?.permissions().mode() & 0o777;
            (mode & 0o077 != 0).then(|| (file.clone(), mode))
        })
        .collect()
}

/// The rules and sinks in force: this node's `[alerts]` with the cluster settings over them;
/// an exec sink of the cluster's naming a command this node does not declare is left out.
fn in_force(local: &AlertsConfig, cluster: Option<&Applied>) -> (Rules, Vec<SinkSpec>) {
    let alerts = local.with_cluster(cluster.map(|a| &a.settings.alerts));
    let (sinks, left_out) = alerts.resolved();
    for (sink, why) in left_out {
        tracing::warn!(sink, %why, "this alert sink cannot deliver from this node");
    }
    let rules = Rules {
        flap_threshold: alerts.flap_threshold,
        flap_window: alerts.flap_window,
        repeat: alerts.repeat,
        probe_warning: alerts.probe_warning,
        ..Rules::default()
    };
    (rules, sinks)
}

fn warn_about_open_password_files(sinks: &[SinkSpec]) {
    for (file, mode) in open_password_files(sinks) {
        tracing::warn!(
            file = %file.display(), mode = format!("{mode:o}"),
            "this secret file of an alert sink can be read by others; chmod 600 it"
        );
    }
}

pub struct AlertActor;

impl Actor for AlertActor {
    type Msg = AlertMsg;
    type State = AlertState;
    type Arguments = AlertArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<AlertMsg>,
        mut args: AlertArgs,
    ) -> Result<AlertState, ActorProcessingErr> {
        let persisted = load_sent(&args.data_dir.join(SENT_FILE));
        let cluster = args.cluster.borrow_and_update().clone();
        let (rules, sinks) = in_force(&args.local, cluster.as_deref());
        warn_about_open_password_files(&sinks);
        let unready = unready_sinks(&sinks);
        log_unready(&unready);
        let ready = sinks.len() - unready.len();
        if ready == 0 {
            tracing::info!(
                sinks = sinks.len(),
                "no alert sink can deliver from this node: others with sinks send the alerts"
            );
        }

        let core = AlertCore::new(
            args.me.clone(),
            args.settle,
            rules,
            persisted.clone(),
            args.clock.now(),
        )
        .trusting(args.trust.clone())
        .delivering_through(ready)
        .acting(args.local.actions.clone());
        // Said at once, not at the first tick: `alerts test` right after a start looks for it.
        args.gossip.cast(GossipMsg::Put {
            key: crate::keys::SINKS_KEY.to_string(),
            value: (ready > 0).then(|| ready.to_string()),
        });
        let alarm = Alarm::new(myself.clone(), args.clock, |_| AlertMsg::Tick);
        let on_view = on_change(args.view.clone(), myself.clone(), || AlertMsg::Tick);
        let ticker = ticker(myself, args.clock, TICK, || AlertMsg::Tick);
        Ok(AlertState {
            args,
            core,
            saved: persisted,
            sinks,
            ready,
            looked: std::time::Instant::now(),
            alarm,
            reposted: std::time::Instant::now(),
            _ticker: ticker,
            on_view,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<AlertMsg>,
        msg: AlertMsg,
        state: &mut AlertState,
    ) -> Result<(), ActorProcessingErr> {
        let now = state.args.clock.now();
        match msg {
            AlertMsg::Tick => {
                state.on_view.seen();
                let changed = state.args.cluster.has_changed().unwrap_or(false);
                if changed {
                    let cluster = state.args.cluster.borrow_and_update().clone();
                    let (rules, sinks) = in_force(&state.args.local, cluster.as_deref());
                    tracing::info!(
                        version = ?cluster.as_ref().map(|a| a.doc.version.to_string()),
                        sinks = sinks.len(),
                        "alert rules and sinks from the cluster settings"
                    );
                    warn_about_open_password_files(&sinks);
                    state.core.set_rules(rules);
                    state.sinks = sinks;
                }
                if changed || state.looked.elapsed() >= READY_EVERY {
                    state.looked = std::time::Instant::now();
                    let unready = unready_sinks(&state.sinks);
                    let ready = state.sinks.len() - unready.len();
                    if ready != state.ready {
                        tracing::info!(from = state.ready, to = ready, "alert sinks ready");
                        log_unready(&unready);
                        state.ready = ready;
                        state.core.set_sinks(ready);
                    }
                }
                let view = state.args.view.borrow().clone();
                let outputs = state.core.tick(now, &view);
                state.carry_out(&myself, outputs);
                if state.reposted.elapsed() >= crate::sinks::alertmanager::RESEND {
                    state.reposted = std::time::Instant::now();
                    state.post_again(now, &view.members);
                }
                if let Some(at) = state.core.next_deadline() {
                    state.alarm.arm(at);
                }
            }
            AlertMsg::Delivered { id, alert, results } => {
                let outputs = state.core.delivered(now, &id, &alert, &results);
                state.carry_out(&myself, outputs);
                let step = crate::alert::action::parse_id(&id).is_some();
                if !step && !results.iter().any(SinkResult::accepted) {
                    tracing::warn!(
                        %id, ?results, retry_in = ?crate::alert::core::RETRY,
                        "no sink accepted the alert: it stays open"
                    );
                    state.save();
                    return Ok(());
                }
                tracing::info!(%id, ?results, "alert sent");
                let summary = alert
                    .get("summary")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                state.args.events.publish_node(
                    now,
                    NodeEvent::AlertSent(AlertSentEvent {
                        id,
                        summary,
                        results,
                    }),
                );
            }
        }
        state.save();
        Ok(())
    }
}

impl AlertState {
    fn carry_out(&mut self, myself: &ActorRef<AlertMsg>, outputs: Vec<AlertOutput>) {
        for o in outputs {
            match o {
                AlertOutput::Set { key, value } => {
                    self.args.gossip.cast(GossipMsg::Put { key, value });
                }
                AlertOutput::Act { id, action, alert } => {
                    tracing::info!(%id, action = action.kind.as_str(), "running a step of remediation");
                    let commands = self.args.local.commands.clone();
                    let mac = (self.args.view.borrow().members.iter())
                        .find(|m| alert["node"] == m.name.as_str())
                        .and_then(|m| m.kv.get(crate::keys::MAC_KEY).cloned());
                    let gossip = self.args.gossip.clone();
                    let me = myself.clone();
                    tokio::spawn(async move {
                        // The running mark went to the gossip actor before this: an answer
                        // from it says the mark is in this node's state. Then a moment for
                        // the next news exchange to carry it to the others.
                        if let Some(g) = gossip.get() {
                            let _ = g.call(GossipMsg::Stats, Some(Duration::from_secs(2))).await;
                        }
                        tokio::time::sleep(MARK_SPREAD).await;
                        let results = vec![
                            crate::sinks::actions::run(
                                &action.kind,
                                &commands,
                                &alert,
                                mac.as_deref(),
                            )
                            .await,
                        ];
                        let _ = me.cast(AlertMsg::Delivered { id, alert, results });
                    });
                }
                AlertOutput::Deliver { id, mut alert } => {
                    tracing::info!(%id, "sending alert");
                    alert["dashboard"] = Value::from(self.args.dashboard.clone());
                    let sinks = self.sinks.clone();
                    let me = myself.clone();
                    // The task outlives a restart of this actor: a delivery is never cut off.
                    tokio::spawn(async move {
                        let how = crate::sinks::Delivery::default();
                        let results = deliver_all(&sinks, &alert, &how).await;
                        let _ = me.cast(AlertMsg::Delivered { id, alert, results });
                    });
                }
            }
        }
    }

    /// Posts the open alerts again to this node's `alertmanager` sinks, if it is the one
    /// that sends (see `sinks::alertmanager`: Alertmanager ends an alert at its `endsAt`).
    fn post_again(&self, now: crate::types::Time, view: &[crate::gossip::MemberView]) {
        let urls: Vec<Vec<String>> = (self.sinks.iter())
            .filter_map(|s| match s {
                SinkSpec::Alertmanager { urls } => Some(urls.clone()),
                _ => None,
            })
            .collect();
        if urls.is_empty() || crate::election::sender(view).as_ref() != Some(&self.args.me) {
            return;
        }
        let alerts = self.core.firing_posted(now, view);
        if alerts.is_empty() {
            return;
        }
        let dashboard = Value::from(self.args.dashboard.clone());
        tokio::spawn(async move {
            for mut alert in alerts {
                alert["dashboard"] = dashboard.clone();
                for urls in &urls {
                    let posted = tokio::time::timeout(
                        crate::sinks::ATTEMPT_TIMEOUT,
                        crate::sinks::post_to_alertmanagers(urls, &alert),
                    )
                    .await;
                    if !matches!(posted, Ok(Ok(()))) {
                        tracing::warn!(id = %alert["id"], ?posted, "cannot post an open alert to Alertmanager again");
                    }
                }
            }
        });
    }

    fn save(&mut self) {
        let persisted = self.core.persisted();
        if persisted == self.saved {
            return;
        }
        let path = self.args.data_dir.join(SENT_FILE);
        match save_sent(&path, &persisted) {
            Ok(()) => self.saved = persisted,
            Err(e) => tracing::warn!(file = %path.display(), error = %e, "cannot save sent alerts"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{SmtpAuth, SmtpTls};
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn what_was_sent_survives_in_format_2_and_a_format_1_file_still_loads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(SENT_FILE);
        // As every build before format 2 wrote it.
        std::fs::write(&path, r#"{"seen":["node_down:n4:1"],"own":{}}"#).expect("write");
        let loaded = load_sent(&path);
        assert!(loaded.seen.contains("node_down:n4:1"));
        save_sent(&path, &loaded).expect("save");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.contains(r#""format":2"#), "{text}");
        assert_eq!(load_sent(&path), loaded);
    }

    #[test]
    fn an_unreadable_memory_is_moved_aside_and_the_node_starts_without_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(SENT_FILE);
        std::fs::write(&path, r#"{"seen":["node_down:n4:1"],"own":"#).expect("write");
        assert_eq!(load_sent(&path), Persisted::default());
        assert!(!path.exists());
        let aside = dir.path().join(format!("{SENT_FILE}.corrupt"));
        assert_eq!(
            std::fs::read_to_string(aside).expect("kept aside"),
            r#"{"seen":["node_down:n4:1"],"own":"#
        );
    }

    #[test]
    fn a_password_file_others_can_read_is_found_and_a_0600_one_is_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("pw");
        std::fs::write(&file, "pw\n").expect("write");
        let sink = SinkSpec::Email {
            host: "127.0.0.1".into(),
            port: 25,
            tls: SmtpTls::Plain,
            from: "a@b.org".into(),
            to: vec!["c@d.org".into()],
            auth: Some(SmtpAuth {
                username: "u".into(),
                password_file: file.clone(),
            }),
        };
        let chmod = |mode| {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).expect("chmod")
        };
        chmod(0o644);
        assert_eq!(
            open_password_files(std::slice::from_ref(&sink)),
            [(file.clone(), 0o644)]
        );
        chmod(0o600);
        assert!(open_password_files(&[sink]).is_empty());
    }
}
