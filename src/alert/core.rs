//! The alert protocol of one node, sans-IO: fed this node's view of the cluster on every tick,
//! it says which keys of its own gossiped state to write and which alerts to deliver.
//!
//! Who sends is the best-ranked live member that can deliver ([`crate::election::sender`]):
//! a node without sinks (or without their secret files) never claims, and never marks an
//! alert sent. For each open incident (derived from the view, the same id on every host):
//! 1. sent already (by anyone, or remembered as sent) — nothing to do;
//! 2. this node sends for the cluster (best-ranked live member with sinks, skipping those
//!    whose sinks just refused this incident), no live better-ranked member claims it, and no
//!    other live member is already `sending` it — it writes a `claim`;
//! 3. after a settle time, if all that still holds, it writes `sending`, delivers, and writes
//!    `sent` with the sinks' results if at least one sink accepted the alert — or `failed`
//!    with them if none did: the incident stays open, the next member with sinks takes it, and
//!    this node tries again after [`RETRY`] if it is still the one to;
//! 4. a node that stops being the sender, or sees a better claim, withdraws its claim;
//! 5. when no live member can deliver but some member has announced sinks (it is down, or
//!    restarting), the leader writes `waiting`: the entry carries the incident, so it stays
//!    open — and `status` says so — until a node with sinks is back and sends it. A cluster in
//!    which no member has sinks writes nothing. A `waiting` or `failed` entry goes once the
//!    incident is sent, or after `keep`.
//!
//! A claim by a member that is down is ignored: a new leader completes what a dead leader
//! claimed but never sent. Each side of a partition has its own leader and sends once; when
//! the sides merge, so do their logs, and a sent incident is not sent again.
//!
//! A change (`node_down`, `node_up`, `service_failed`, `service_up`) this node has seen open
//! stays open for it until it is sent, for [`LATCH`], even if the view no longer shows it: an
//! outage that ends before the leader's settle time is still one alert, followed by its end —
//! never zero — and such outages count towards flapping.
//!
//! The log does not grow for ever: an id this node has known sent for `keep` (a week by
//! default) is forgotten — its own entry deleted from its gossiped state, the id dropped from
//! its memory — once no other node has an entry of it and the view no longer implies it: with
//! every trace of it (and of the other candidates) gone, the incident would not be derived
//! again, and nothing new (a `node_up` of a later incarnation) would be. So a `node_down` goes
//! only after its node is back and its `node_up` can go with it, a `flapping` only once its
//! `settled` is sent; an id must have qualified at two looks a minute apart (an author that
//! restarted has published its entries again by then), and nothing is forgotten in the first
//! [`GC_SETTLE`] after a start, while the view catches up.
//!
//! Latching skips silenced changes, and a newer `node_up`/`service_up` of a subject replaces a
//! latched older one.
//!
//! The one window where a duplicate cannot be avoided: the sender dies after its sinks accepted
//! the alert but before its `sending`/`sent` reached anyone. The next leader then sends again.

use super::incident::{
    Incident, Kind, Rules, flapping_since, incidents, sent_at, silences, subject_of,
};
use super::log::held_value;
use super::log::{Entry, Log, entry_value};
use crate::config::ActionSpec;
use crate::election::{ViewSnapshot, is_live, rank};
use crate::events::SinkResult;
use crate::gossip::MemberView;
use crate::keys::alert::{AlertEntry, Held, Stage};
use crate::keys::{ALERT_PREFIX, SINKS_KEY};
use crate::secure::directive::Trust;
use crate::types::{NodeName, Time};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// How long a leader waits after its claim for a better one to show.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(1);
/// How long a change this node saw open stays open after the view stopped showing it.
pub const LATCH: Duration = Duration::from_secs(60);
/// Nothing is forgotten this soon after a start: the view must have caught up first.
pub const GC_SETTLE: Duration = Duration::from_secs(600);
/// How often the log is looked over for what can be forgotten.
pub const GC_EVERY: Duration = Duration::from_secs(60);
/// How long a node whose sinks all refused an alert waits before it tries again (others with
/// sinks try first).
pub const RETRY: Duration = Duration::from_secs(30);

#[derive(Clone, Debug, PartialEq)]
pub enum AlertOutput {
    /// Write (or delete) a key of this node's gossiped state.
    Set { key: String, value: Option<String> },
    /// Send this alert to every sink; then call [`AlertCore::delivered`].
    Deliver { id: String, alert: Value },
    /// Run this step of remediation (its running mark is written); then call
    /// [`AlertCore::delivered`] with its result.
    Act {
        id: String,
        action: ActionSpec,
        alert: Value,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Mine {
    Claimed {
        at: Time,
    },
    Sending,
    /// Every sink refused it at `at`.
    Failed {
        at: Time,
    },
    /// No live member could deliver it.
    Waiting,
}

pub struct AlertCore {
    me: NodeName,
    settle: Duration,
    rules: Rules,
    mine: BTreeMap<String, Mine>,
    /// Ids known to be sent (this node's own, and others' it has seen), kept across restarts,
    /// with when they were sent (or, if that is not known, when this node first knew).
    remembered: BTreeMap<String, Time>,
    /// This node's own `sent` entries (id → value), kept across restarts and published again
    /// into a new life's state, so the log keeps its history.
    own: BTreeMap<String, String>,
    /// Changes seen open and not known sent, with when they were last seen open.
    latched: BTreeMap<String, (Incident, Time)>,
    started: Time,
    last_gc: Time,
    /// What could have been forgotten at the last look.
    gc_candidates: BTreeSet<String>,
    /// Whose silences it obeys.
    trust: Trust,
    /// How many sinks this node can deliver through (0: it never sends).
    sinks: usize,
    /// This node's own `waiting` and `failed` entries (id → value), kept across restarts.
    held: BTreeMap<String, String>,
    /// Remediation steps (`[[alerts.actions]]`, see [`super::action`]).
    actions: Vec<ActionSpec>,
}

/// What an alert actor keeps on disk.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Persisted {
    pub seen: BTreeSet<String>,
    pub own: BTreeMap<String, String>,
    /// When each id of `seen` was first known sent, in ms (absent in older files: the start).
    #[serde(default)]
    pub seen_at: BTreeMap<String, u64>,
    /// This node's `waiting` and `failed` entries (absent in older files: none).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub held: BTreeMap<String, String>,
}

impl AlertCore {
    /// The same core, obeying the silences of the operators `trust` names (none by default).
    pub fn trusting(mut self, trust: Trust) -> AlertCore {
        self.trust = trust;
        self
    }

    /// The same core, running `actions` as the node that sends.
    pub fn acting(mut self, actions: Vec<ActionSpec>) -> AlertCore {
        self.actions = actions;
        self
    }

    /// The same core, able to deliver through `sinks` sinks.
    pub fn delivering_through(mut self, sinks: usize) -> AlertCore {
        self.sinks = sinks;
        self
    }

    /// Rules changed by the cluster settings: they hold from the next tick.
    pub fn set_rules(&mut self, rules: Rules) {
        self.rules = rules;
    }

    /// How many sinks this node can deliver through now (its sinks, or their secret files,
    /// changed); announced at the next tick.
    pub fn set_sinks(&mut self, sinks: usize) {
        self.sinks = sinks;
    }

    /// A core starting at `now` with what an earlier life persisted.
    pub fn new(
        me: NodeName,
        settle: Duration,
        rules: Rules,
        persisted: Persisted,
        now: Time,
    ) -> AlertCore {
        let known = |id: &String| Time(persisted.seen_at.get(id).copied().unwrap_or(now.0));
        let remembered: BTreeMap<String, Time> = (persisted.seen.iter())
            .chain(persisted.own.keys())
            .map(|id| (id.clone(), known(id)))
            .collect();
        // Held entries of an earlier life: published again, a failed one tried again later.
        let mine = (persisted.held.iter())
            .filter(|(id, _)| !remembered.contains_key(*id))
            .filter_map(|(id, value)| {
                let mine = match AlertEntry::parse(value).ok()?.stage {
                    Stage::Failed => Mine::Failed { at: now },
                    Stage::Waiting => Mine::Waiting,
                    _ => return None,
                };
                Some((id.clone(), mine))
            })
            .collect::<BTreeMap<_, _>>();
        let held = (persisted.held.into_iter())
            .filter(|(id, _)| mine.contains_key(id))
            .collect();
        AlertCore {
            me,
            settle,
            rules,
            mine,
            remembered,
            own: persisted.own,
            latched: BTreeMap::new(),
            started: now,
            last_gc: now,
            gc_candidates: BTreeSet::new(),
            trust: Trust::default(),
            sinks: 0,
            held,
            actions: Vec::new(),
        }
    }

    /// What the actor persists: the ids known sent and this node's own sent entries.
    pub fn persisted(&self) -> Persisted {
        Persisted {
            seen: self.remembered.keys().cloned().collect(),
            own: self.own.clone(),
            seen_at: self
                .remembered
                .iter()
                .map(|(id, t)| (id.clone(), t.0))
                .collect(),
            held: self.held.clone(),
        }
    }

    /// The ids this node knows were sent.
    pub fn remembered(&self) -> impl Iterator<Item = &str> {
        self.remembered.keys().map(String::as_str)
    }

    /// The log as this node sees it.
    pub fn log(&self, view: &[MemberView]) -> Log {
        Log::from_view(view, self.remembered.keys())
    }

    /// The open incidents of `view` (and the changes latched open) that nobody has sent yet,
    /// silenced ones left out.
    pub fn open(&self, now: Time, view: &[MemberView]) -> Vec<Incident> {
        let log = self.log(view);
        let silences = silences(view, &self.trust);
        let derived = incidents(view, &log, now, &self.rules);
        let steps = super::action::due(&derived, &self.actions, now);
        (self.with_latched(derived).into_iter())
            .chain(steps.into_iter().map(|(step, _)| step))
            .filter(|i| !log.is_sent(&i.id))
            .filter(|i| !silences.iter().any(|s| s.covers(i, now)))
            .collect()
    }

    /// The alerts an `alertmanager` sink posts again while they stay open (see
    /// `sinks::alertmanager`): each firing incident of `view` that was sent with such a sink
    /// among the results (accepted or not, so one that was down gets it now), as `me` would
    /// send it at `now`. Tests and steps of remediation are not posted again.
    pub fn firing_posted(&self, now: Time, view: &[MemberView]) -> Vec<Value> {
        let log = self.log(view);
        let posted = |id: &str| {
            (log.entries(id).iter())
                .filter(|e| e.stage == Stage::Sent)
                .any(|e| e.sinks.iter().any(|s| s.sink.starts_with("alertmanager")))
        };
        (incidents(view, &log, now, &self.rules).into_iter())
            .filter(|i| i.kind.status() == "firing" && !matches!(i.kind, Kind::Test | Kind::Action))
            .filter(|i| posted(&i.id))
            .map(|i| alert_of(&i, &log, &self.me, now))
            .collect()
    }

    /// Steps the protocol with this node's latest view and its leader.
    /// When the settle time of a claim of this node runs out next (`None`: no claim waits).
    /// Everything else the core does on time is counted in seconds or minutes, so a shell
    /// that ticks it at this deadline, on each new view and now and then has it on time.
    pub fn next_deadline(&self) -> Option<Time> {
        (self.mine.values())
            .filter_map(|m| match m {
                Mine::Claimed { at } => Some(*at + self.settle),
                _ => None,
            })
            .min()
    }

    pub fn tick(&mut self, now: Time, snapshot: &ViewSnapshot) -> Vec<AlertOutput> {
        let view = &snapshot.members[..];
        let mut out = Vec::new();
        let mut log = self.log(view);
        // Remember what others sent, so it stays sent even if they restart; known since it was
        // sent (so an id heard again from an author that has not forgotten it yet is not
        // remembered for another `keep`).
        let newly: Vec<(String, Time)> = log
            .sent_ids()
            .filter(|id| !self.remembered.contains_key(*id))
            .map(|id| {
                (
                    id.to_string(),
                    sent_at(&log, id).map_or(now, |t| t.min(now)),
                )
            })
            .collect();
        self.remembered.extend(newly);
        let Some(me) = view.iter().find(|m| m.name == self.me) else {
            return out;
        };
        // Before own entries are published again: an old one may be forgotten instead.
        if now.since(self.started) >= GC_SETTLE && now.since(self.last_gc) >= GC_EVERY {
            self.last_gc = now;
            let forgotten = self.forget_closed(now, view, &log, &mut out);
            if !forgotten.is_empty() {
                // What follows must not see them sent and derive, say, their node_up again.
                // (This node's own entries of them are still in `view` until the deletes land.)
                log = log.without(&forgotten);
                self.latched.retain(|id, _| !forgotten.contains(id));
            }
        }
        let my_rank = rank(me);
        // Own sent entries missing from this node's state (a new life, a restarted gossip
        // actor) go in again, so the log keeps its history.
        for (id, value) in &self.own {
            if !me.kv.contains_key(&format!("{ALERT_PREFIX}{id}")) {
                out.push(set(id, Some(value.clone())));
            }
        }
        for (id, value) in &self.held {
            if me.kv.get(&format!("{ALERT_PREFIX}{id}")) != Some(value) {
                out.push(set(id, Some(value.clone())));
            }
        }
        let announced = (self.sinks > 0).then(|| self.sinks.to_string());
        if me.kv.get(SINKS_KEY) != announced.as_ref() {
            out.push(AlertOutput::Set {
                key: SINKS_KEY.to_string(),
                value: announced,
            });
        }
        let leading = snapshot.is_leader(&self.me);
        // Who can deliver, best-ranked first (this node by what it knows of itself now, as
        // its announcement may not be in the view yet).
        let mut senders: Vec<(i64, NodeName)> = view
            .iter()
            .filter(|m| is_live(m))
            .filter(|m| {
                if m.name == self.me {
                    self.sinks > 0
                } else {
                    crate::election::sinks(m) > 0
                }
            })
            .map(rank)
            .collect();
        senders.sort();
        let anyone_has_sinks = self.sinks > 0 || view.iter().any(|m| crate::election::sinks(m) > 0);
        let silences = silences(view, &self.trust);
        let derived = incidents(view, &log, now, &self.rules);
        for i in derived.iter().filter(|i| i.kind.is_change()) {
            // A silenced change is not latched (its silence may end within the latch).
            if silences.iter().any(|s| s.covers(i, now)) {
                continue;
            }
            // A newer resolution of the same subject (node_up at a later incarnation,
            // service_up at a later start) replaces a latched older one: one recovery, one alert.
            if matches!(i.kind, Kind::NodeUp | Kind::ServiceUp) {
                let subject = i.subject();
                self.latched
                    .retain(|id, (l, _)| id == &i.id || l.kind != i.kind || l.subject() != subject);
            }
            self.latched.insert(i.id.clone(), (i.clone(), now));
        }
        let remembered = &self.remembered;
        self.latched
            .retain(|id, (_, seen)| !remembered.contains_key(id) && now.since(*seen) < LATCH);
        // Steps of remediation: from incidents open in the view (not latched ones), so a
        // subject that is back cancels the steps not yet run.
        let steps = super::action::due(&derived, &self.actions, now);
        let open: Vec<Incident> = (self.with_latched(derived).into_iter())
            .chain(steps.iter().map(|(step, _)| step.clone()))
            .filter(|i| !self.remembered.contains_key(&i.id))
            .filter(|i| !silences.iter().any(|s| s.covers(i, now)))
            .collect();
        let me_name = self.me.clone();
        let others = |id: &str| -> Vec<&Entry> {
            log.entries(id)
                .iter()
                .filter(|e| e.by != me_name && e.live)
                .collect()
        };
        for incident in &open {
            let id = &incident.id;
            // Its running mark (kept across restarts) is this node's: it ran here.
            if self.own.contains_key(id) {
                continue;
            }
            let others = others(id);
            let better_claim = others
                .iter()
                .any(|e| e.stage == Stage::Claim && e.rank < my_rank);
            let someone_sending = others.iter().any(|e| e.stage == Stage::Sending);
            // Members whose sinks just refused it are passed over while another can try.
            let refused: BTreeSet<&NodeName> = (others.iter())
                .filter(|e| e.stage == Stage::Failed)
                .map(|e| &e.by)
                .chain(matches!(self.mine.get(id), Some(Mine::Failed { .. })).then_some(&self.me))
                .collect();
            let sender = (senders.iter())
                .find(|(_, name)| !refused.contains(name))
                .or(senders.first())
                .map(|(_, name)| name);
            // A step is never run twice: a running mark by anyone, live or not, ends it.
            let ran = incident.kind == Kind::Action
                && (log.entries(id).iter()).any(|e| e.stage == Stage::Sending && e.by != self.me);
            let stand_down = sender != Some(&self.me) || better_claim || someone_sending || ran;
            match self.mine.get(id) {
                None if !stand_down => {
                    self.mine.insert(id.clone(), Mine::Claimed { at: now });
                    out.push(set(id, Some(entry_value(Stage::Claim, now, &[], None))));
                }
                None if leading
                    && incident.kind != Kind::Action
                    && senders.is_empty()
                    && anyone_has_sinks
                    && !log.entries(id).iter().any(|e| e.stage.holds()) =>
                {
                    self.hold(id, Stage::Waiting, now, &[], incident.held(), &mut out);
                }
                None => {}
                Some(Mine::Claimed { .. }) if stand_down => {
                    self.mine.remove(id);
                    out.push(set(id, None));
                }
                Some(Mine::Claimed { at }) if now.since(*at) >= self.settle => {
                    if incident.kind.is_change()
                        && flapping_since(&log, &incident.subject(), now, &self.rules).is_some()
                    {
                        // A flapping subject's change is recorded, not sent.
                        let suppressed = [SinkResult {
                            sink: "flapping".into(),
                            result: SUPPRESSED.into(),
                        }];
                        let alert = alert_of(incident, &log, &self.me, now);
                        out.extend(self.delivered(now, id, &alert, &suppressed));
                        continue;
                    }
                    self.mine.insert(id.clone(), Mine::Sending);
                    let mark = entry_value(Stage::Sending, now, &[], None);
                    out.push(set(id, Some(mark.clone())));
                    let step = (steps.iter()).find(|(s, _)| &s.id == id);
                    match step.and_then(|(_, k)| self.actions.get(*k)) {
                        Some(action) => {
                            // The running mark outlives a restart of this node: kept and
                            // published again like a sent entry.
                            self.own.insert(id.clone(), mark);
                            out.push(AlertOutput::Act {
                                id: id.clone(),
                                action: action.clone(),
                                alert: super::action::to_json(incident, action, &self.me, now),
                            });
                        }
                        None => out.push(AlertOutput::Deliver {
                            id: id.clone(),
                            alert: alert_of(incident, &log, &self.me, now),
                        }),
                    }
                }
                // Its turn again: the waiting entry is replaced by a claim (every host has the
                // incident latched or held by now).
                Some(Mine::Waiting) if !stand_down => {
                    self.held.remove(id);
                    self.mine.insert(id.clone(), Mine::Claimed { at: now });
                    out.push(set(id, Some(entry_value(Stage::Claim, now, &[], None))));
                }
                Some(Mine::Failed { at }) if !stand_down && now.since(*at) >= RETRY => {
                    self.held.remove(id);
                    self.mine.insert(id.clone(), Mine::Claimed { at: now });
                    out.push(set(id, Some(entry_value(Stage::Claim, now, &[], None))));
                }
                Some(_) => {}
            }
        }
        // Claims of incidents that closed (sent by someone else, resolved, silenced) go.
        let stale: Vec<String> = self
            .mine
            .iter()
            .filter(|(id, m)| {
                matches!(m, Mine::Claimed { .. }) && !open.iter().any(|i| &i.id == *id)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            self.mine.remove(&id);
            out.push(set(&id, None));
        }
        // Held entries go once their incident is sent (by anyone), or after `keep`.
        let keep = self.rules.keep;
        let done: Vec<String> = self
            .held
            .keys()
            .filter(|id| {
                self.remembered.contains_key(*id)
                    || open
                        .iter()
                        .find(|i| &&i.id == id)
                        .is_some_and(|i| now.since(i.since) >= keep)
            })
            .cloned()
            .collect();
        for id in done {
            self.held.remove(&id);
            self.mine.remove(&id);
            out.push(set(&id, None));
        }
        out
    }

    /// Writes a `waiting` or `failed` entry of this node that holds `held` open.
    fn hold(
        &mut self,
        id: &str,
        stage: Stage,
        now: Time,
        results: &[SinkResult],
        held: Held,
        out: &mut Vec<AlertOutput>,
    ) {
        let mine = match stage {
            Stage::Failed => Mine::Failed { at: now },
            _ => Mine::Waiting,
        };
        let value = held_value(stage, now, results, held);
        self.mine.insert(id.to_string(), mine);
        self.held.insert(id.to_string(), value.clone());
        out.push(set(id, Some(value)));
    }

    /// Returns the ids forgotten.
    ///
    /// Forgets the ids known sent for `keep` that the view no longer implies (module doc):
    /// deletes this node's own entries of them and drops them from its memory.
    fn forget_closed(
        &mut self,
        now: Time,
        view: &[MemberView],
        log: &Log,
        out: &mut Vec<AlertOutput>,
    ) -> BTreeSet<String> {
        let keep = self.rules.keep.max(self.rules.flap_window * 2);
        let mut old: BTreeSet<String> = self
            .remembered
            .iter()
            .filter(|(_, known)| now.since(**known) >= keep)
            .map(|(id, _)| id.clone())
            // Only what then leaves the log everywhere: ids no one else has an entry of (an
            // author forgets its own entries when it is its turn).
            .filter(|id| log.entries(id).iter().all(|e| e.by == self.me))
            // A flapping episode goes only once its end is sent.
            .filter(|id| {
                id.strip_prefix("flapping:")
                    .is_none_or(|rest| log.is_sent(&format!("settled:{rest}")))
            })
            .collect();
        // Only what was a candidate at the previous look too, a minute ago: an author that
        // restarted has published its entries again by then.
        let candidates = old.clone();
        old.retain(|id| self.gc_candidates.contains(id));
        self.gc_candidates = candidates;
        let before: BTreeSet<String> = incidents(view, log, now, &self.rules)
            .into_iter()
            .map(|i| i.id)
            .collect();
        // A step of remediation stays known run while its incident is open (a host down for
        // longer than `keep`): forgotten, it would come due again.
        old.retain(|id| super::action::parse_id(id).is_none_or(|(_, base)| !before.contains(base)));
        // Forgetting some may bring others back (a `node_up` without its `node_down`): those
        // stay, and the rest is checked again. Three rounds at most, then nothing this time.
        for _ in 0..3 {
            if old.is_empty() {
                break;
            }
            let without = log.without(&old);
            // Derived again, or something new derived (a node_up at a later incarnation once
            // the older node_up is gone while its node_down is still about): every candidate
            // of that subject stays.
            let implied: BTreeSet<String> = incidents(view, &without, now, &self.rules)
                .into_iter()
                .map(|i| i.id)
                .filter(|id| old.contains(id) || !before.contains(id))
                .collect();
            if implied.is_empty() {
                for id in &old {
                    self.remembered.remove(id);
                    if self.own.remove(id).is_some() {
                        out.push(set(id, None));
                    }
                }
                return old;
            }
            let subjects: Vec<Option<String>> = implied.iter().map(|id| subject_of(id)).collect();
            if subjects.iter().any(Option::is_none) {
                break;
            }
            old.retain(|id| !implied.contains(id) && !subjects.contains(&subject_of(id)));
        }
        BTreeSet::new()
    }

    /// `derived` and the latched changes it no longer shows, oldest first.
    fn with_latched(&self, mut derived: Vec<Incident>) -> Vec<Incident> {
        for (id, (incident, _)) in &self.latched {
            if !derived.iter().any(|d| &d.id == id) {
                derived.push(incident.clone());
            }
        }
        derived.sort_by(|a, b| (a.since, &a.id).cmp(&(b.since, &b.id)));
        derived
    }

    /// The sinks are done with `id`: it is sent, with their results, if at least one of them
    /// accepted it; otherwise this node's entry says `failed` and holds the incident open.
    pub fn delivered(
        &mut self,
        now: Time,
        id: &str,
        alert: &Value,
        results: &[SinkResult],
    ) -> Vec<AlertOutput> {
        let accepted = results
            .iter()
            .any(|r| r.accepted() || r.result == SUPPRESSED);
        // A step of remediation ran, whatever came of it: it is done (run once, never again).
        let step = super::action::parse_id(id).is_some();
        if !accepted
            && !step
            && let Some(held) = held_of(alert)
        {
            let mut out = Vec::new();
            self.hold(id, Stage::Failed, now, results, held, &mut out);
            return out;
        }
        self.mine.remove(id);
        self.held.remove(id);
        self.remembered.insert(id.to_string(), now);
        let value = entry_value(Stage::Sent, now, results, Some(alert));
        self.own.insert(id.to_string(), value.clone());
        vec![set(id, Some(value))]
    }
}

/// The alert JSON of `incident` as `me` sends it at `now`: the contract's fields and, on a
/// resolution, the id of the incident it resolves (`resolves`) and when that one's problem
/// began (`firing_since`), so a receiver such as Alertmanager sees the same alert end.
fn alert_of(incident: &Incident, log: &Log, me: &NodeName, now: Time) -> Value {
    let mut alert = incident.to_json(me, now);
    if let Some((id, since)) = incident.resolves(log) {
        alert["resolves"] = Value::from(id);
        alert["firing_since"] = Value::from(since.to_rfc3339());
    }
    alert
}

/// The result of a flapping subject's change: recorded, deliberately not sent.
const SUPPRESSED: &str = "suppressed";

/// What a `failed` entry carries of the alert this core built (`Incident::to_json`).
fn held_of(alert: &Value) -> Option<Held> {
    let text = |k: &str| alert.get(k).and_then(Value::as_str).map(str::to_string);
    let since = Time::parse_rfc3339(&text("since")?)?.0;
    Some(Held {
        kind: text("kind")?,
        node: text("node")?,
        service: text("service"),
        since,
        observers: (alert.get("observers").and_then(Value::as_array))
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
        summary: text("summary").unwrap_or_default(),
    })
}

fn set(id: &str, value: Option<String>) -> AlertOutput {
    AlertOutput::Set {
        key: format!("{ALERT_PREFIX}{id}"),
        value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_memory_file_from_before_times_were_kept_still_loads_with_the_start_as_the_time() {
        let old =
            r#"{"seen":["node_down:n4:1"],"own":{"node_up:n4:2":"{\"st\":\"sent\",\"at\":5}"}}"#;
        let persisted: Persisted = serde_json::from_str(old).expect("an older file loads");
        let core = AlertCore::new(
            NodeName::from("n0"),
            DEFAULT_SETTLE,
            Rules::default(),
            persisted,
            Time(1_000),
        );
        let saved = core.persisted();
        assert_eq!(
            saved.seen.iter().map(String::as_str).collect::<Vec<_>>(),
            ["node_down:n4:1", "node_up:n4:2"]
        );
        assert_eq!(
            saved.seen_at.values().copied().collect::<Vec<_>>(),
            [1_000, 1_000]
        );
        let again: Persisted =
            serde_json::from_str(&serde_json::to_string(&saved).expect("json")).expect("loads");
        assert_eq!(again, saved);
    }
}
