//! The alert protocol of one node, sans-IO: fed this node's view of the cluster on every tick,
//! it says which keys of its own gossiped state to write and which alerts to deliver.
//!
//! For each open incident (derived from the view, the same id on every host):
//! 1. sent already (by anyone, or remembered as sent) — nothing to do;
//! 2. this node leads (lowest `(priority, name)` among live members in its view) and no live
//!    better-ranked member claims it, and no other live member is already `sending` it — it
//!    writes a `claim`;
//! 3. after a settle time, if it still leads and no better-ranked live claim and no live
//!    `sending` has appeared, it writes `sending`, delivers, and writes `sent` with the
//!    sinks' results;
//! 4. a node that stops leading, or sees a better claim, withdraws its claim.
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
//! The one window where a duplicate cannot be avoided: the sender dies after its sinks accepted
//! the alert but before its `sending`/`sent` reached anyone. The next leader then sends again.

use super::incident::{Incident, Rules, flapping_since, incidents, silences};
use super::log::{ALERT_PREFIX, Entry, Log, SinkResult, Stage, entry_value};
use crate::election::{leader, rank};
use crate::gossip::MemberView;
use crate::types::{NodeName, Time};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// How long a leader waits after its claim for a better one to show.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(1);
/// How long a change this node saw open stays open after the view stopped showing it.
pub const LATCH: Duration = Duration::from_secs(60);

#[derive(Clone, Debug, PartialEq)]
pub enum AlertOutput {
    /// Write (or delete) a key of this node's gossiped state.
    Set { key: String, value: Option<String> },
    /// Send this alert to every sink; then call [`AlertCore::delivered`].
    Deliver { id: String, alert: Value },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Mine {
    Claimed { at: Time },
    Sending,
}

pub struct AlertCore {
    me: NodeName,
    settle: Duration,
    rules: Rules,
    mine: BTreeMap<String, Mine>,
    /// Ids known to be sent (this node's own, and others' it has seen), kept across restarts.
    remembered: BTreeSet<String>,
    /// This node's own `sent` entries (id → value), kept across restarts and published again
    /// into a new life's state, so the log keeps its history.
    own: BTreeMap<String, String>,
    /// Changes seen open and not known sent, with when they were last seen open.
    latched: BTreeMap<String, (Incident, Time)>,
}

/// What an alert actor keeps on disk.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Persisted {
    pub seen: BTreeSet<String>,
    pub own: BTreeMap<String, String>,
}

impl AlertCore {
    pub fn new(me: NodeName, settle: Duration, rules: Rules, persisted: Persisted) -> AlertCore {
        let mut remembered = persisted.seen;
        remembered.extend(persisted.own.keys().cloned());
        AlertCore {
            me,
            settle,
            rules,
            mine: BTreeMap::new(),
            remembered,
            own: persisted.own,
            latched: BTreeMap::new(),
        }
    }

    /// What the actor persists: the ids known sent and this node's own sent entries.
    pub fn persisted(&self) -> Persisted {
        Persisted {
            seen: self.remembered.clone(),
            own: self.own.clone(),
        }
    }

    /// The ids this node knows were sent.
    pub fn remembered(&self) -> &BTreeSet<String> {
        &self.remembered
    }

    /// The log as this node sees it.
    pub fn log(&self, view: &[MemberView]) -> Log {
        Log::from_view(view, &self.remembered)
    }

    /// The open incidents of `view` (and the changes latched open) that nobody has sent yet,
    /// silenced ones left out.
    pub fn open(&self, now: Time, view: &[MemberView]) -> Vec<Incident> {
        let log = self.log(view);
        let silences = silences(view);
        self.with_latched(incidents(view, &log, now, &self.rules))
            .into_iter()
            .filter(|i| !log.is_sent(&i.id))
            .filter(|i| !silences.iter().any(|s| s.covers(i, now)))
            .collect()
    }

    pub fn tick(&mut self, now: Time, view: &[MemberView]) -> Vec<AlertOutput> {
        let mut out = Vec::new();
        let log = self.log(view);
        // Remember what others sent, so it stays sent even if they restart.
        let newly: Vec<String> = log
            .sent_ids()
            .filter(|id| !self.remembered.contains(*id))
            .map(str::to_string)
            .collect();
        self.remembered.extend(newly);
        let Some(me) = view.iter().find(|m| m.name == self.me) else {
            return out;
        };
        let my_rank = rank(me);
        // Own sent entries missing from this node's state (a new life, a restarted gossip
        // actor) go in again, so the log keeps its history.
        for (id, value) in &self.own {
            if !me.kv.contains_key(&format!("{ALERT_PREFIX}{id}")) {
                out.push(set(id, Some(value.clone())));
            }
        }
        let leading = leader(view).as_ref() == Some(&self.me);
        let silences = silences(view);
        let derived = incidents(view, &log, now, &self.rules);
        for i in derived.iter().filter(|i| i.kind.is_change()) {
            self.latched.insert(i.id.clone(), (i.clone(), now));
        }
        let remembered = &self.remembered;
        self.latched
            .retain(|id, (_, seen)| !remembered.contains(id) && now.since(*seen) < LATCH);
        let open: Vec<Incident> = self
            .with_latched(derived)
            .into_iter()
            .filter(|i| !self.remembered.contains(&i.id))
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
            let others = others(id);
            let better_claim = others
                .iter()
                .any(|e| e.stage == Stage::Claim && e.rank < my_rank);
            let someone_sending = others.iter().any(|e| e.stage == Stage::Sending);
            let stand_down = !leading || better_claim || someone_sending;
            match self.mine.get(id) {
                None if !stand_down => {
                    self.mine.insert(id.clone(), Mine::Claimed { at: now });
                    out.push(set(id, Some(entry_value(Stage::Claim, now, &[], None))));
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
                            result: "suppressed".into(),
                        }];
                        let alert = incident.to_json(&self.me, now);
                        out.extend(self.delivered(now, id, &alert, &suppressed));
                        continue;
                    }
                    self.mine.insert(id.clone(), Mine::Sending);
                    out.push(set(id, Some(entry_value(Stage::Sending, now, &[], None))));
                    out.push(AlertOutput::Deliver {
                        id: id.clone(),
                        alert: incident.to_json(&self.me, now),
                    });
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
        out
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

    /// The sinks are done with `id`: it is sent, with their results.
    pub fn delivered(
        &mut self,
        now: Time,
        id: &str,
        alert: &Value,
        results: &[SinkResult],
    ) -> Vec<AlertOutput> {
        self.mine.remove(id);
        self.remembered.insert(id.to_string());
        let value = entry_value(Stage::Sent, now, results, Some(alert));
        self.own.insert(id.to_string(), value.clone());
        vec![set(id, Some(value))]
    }
}

fn set(id: &str, value: Option<String>) -> AlertOutput {
    AlertOutput::Set {
        key: format!("{ALERT_PREFIX}{id}"),
        value,
    }
}
