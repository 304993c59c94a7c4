//! The alert log: the union of every member's `alert.<incident id>` keys, each the author's
//! stage for that incident — `claim` (it sends for the cluster and means to send), `sending`
//! (settled; the sinks are being called), `sent` (with each sink's result, at least one of
//! which accepted it), `failed` (every sink it has refused it; retried) and `waiting` (no
//! live member can deliver it). The last two carry the incident, which stays open until
//! someone sends it. Every node writes only its own
//! keys, so gossip merges the log without conflicts, also when a partition heals.
//!
//! A node also remembers (on disk, by its actor) every id it has seen `sent`: a restarted node
//! starts with an empty gossiped state, and without that memory its own sent entries would be
//! gone and the incident would look unsent.

use crate::election::{is_live, rank};
use crate::events::SinkResult;
use crate::gossip::MemberView;
use crate::keys::ALERT_PREFIX;
use crate::keys::alert::{AlertEntry, Held, Stage};
use crate::types::{NodeName, Time};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// One member's entry for one incident.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub by: NodeName,
    pub stage: Stage,
    /// The author's clock when it wrote the entry.
    pub at: Time,
    /// Whether the author is live (alive or suspect) in this view.
    pub live: bool,
    pub rank: (i64, NodeName),
    pub sinks: Vec<SinkResult>,
    /// The alert as sent (on `sent` entries).
    pub alert: Option<Value>,
    /// The incident it holds open (on `waiting` and `failed` entries).
    pub held: Option<Held>,
    /// When the problem began, on `sent` entries of firing incidents.
    pub since: Option<Time>,
}

/// The value of an `alert.<id>` key (see [`AlertEntry`]).
pub fn entry_value(stage: Stage, at: Time, sinks: &[SinkResult], alert: Option<&Value>) -> String {
    AlertEntry {
        stage,
        at,
        sinks: sinks.to_vec(),
        // Only what `alerts` shows and the others need: the rest is derived again.
        summary: alert.map(|a| a.get("summary").cloned().unwrap_or(Value::Null)),
        held: None,
        since: alert
            .filter(|a| stage == Stage::Sent && a["status"] == "firing")
            .and_then(|a| crate::types::Time::parse_rfc3339(a["since"].as_str()?)),
    }
    .encode()
}

/// The value of an `alert.<id>` key that holds `held` open (`waiting` or `failed`).
pub fn held_value(stage: Stage, at: Time, sinks: &[SinkResult], held: Held) -> String {
    AlertEntry {
        stage,
        at,
        sinks: sinks.to_vec(),
        summary: None,
        held: Some(held.bounded()),
        since: None,
    }
    .encode()
}

fn parse_entry(m: &MemberView, value: &str) -> Option<Entry> {
    let e = AlertEntry::parse(value).ok()?;
    Some(Entry {
        by: m.name.clone(),
        stage: e.stage,
        at: e.at,
        live: is_live(m),
        rank: rank(m),
        sinks: e.sinks,
        alert: e.summary.map(|s| json!({ "summary": s })),
        held: e.held,
        since: e.since,
    })
}

#[derive(Clone, Debug, Default)]
pub struct Log {
    entries: BTreeMap<String, Vec<Entry>>,
    remembered: BTreeSet<String>,
}

impl Log {
    /// The log as `view` shows it, plus the ids this node remembers as sent.
    pub fn from_view<'a>(
        view: &[MemberView],
        remembered: impl IntoIterator<Item = &'a String>,
    ) -> Log {
        let mut entries: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
        for m in view {
            for (k, v) in m.kv.iter() {
                let Some(id) = k.strip_prefix(ALERT_PREFIX) else {
                    continue;
                };
                if let Some(e) = parse_entry(m, v) {
                    entries.entry(id.to_string()).or_default().push(e);
                }
            }
        }
        Log {
            entries,
            remembered: remembered.into_iter().cloned().collect(),
        }
    }

    /// This log as it would be if every trace of `ids` were gone: their entries and their
    /// being remembered.
    pub fn without(&self, ids: &BTreeSet<String>) -> Log {
        Log {
            entries: self
                .entries
                .iter()
                .filter(|(id, _)| !ids.contains(*id))
                .map(|(id, es)| (id.clone(), es.clone()))
                .collect(),
            remembered: self.remembered.difference(ids).cloned().collect(),
        }
    }

    /// Every id that was sent (by anyone, as far as this node knows), each once.
    pub fn sent_ids(&self) -> impl Iterator<Item = &str> {
        let ids: BTreeSet<&str> = self
            .entries
            .iter()
            .filter(|(_, es)| es.iter().any(|e| e.stage == Stage::Sent))
            .map(|(id, _)| id.as_str())
            .chain(self.remembered.iter().map(String::as_str))
            .collect();
        ids.into_iter()
    }

    /// When the problem of the sent incident `id` began, as its `sent` entries say.
    pub fn firing_since(&self, id: &str) -> Option<Time> {
        (self.entries(id).iter())
            .filter(|e| e.stage == Stage::Sent)
            .find_map(|e| e.since)
    }

    /// When the incident `id` was first sent, as its `sent` entries say.
    pub fn sent_at(&self, id: &str) -> Option<Time> {
        (self.entries(id).iter())
            .filter(|e| e.stage == Stage::Sent)
            .map(|e| e.at)
            .min()
    }

    pub fn is_sent(&self, id: &str) -> bool {
        self.remembered.contains(id) || self.entries(id).iter().any(|e| e.stage == Stage::Sent)
    }

    pub fn entries(&self, id: &str) -> &[Entry] {
        self.entries.get(id).map_or(&[], Vec::as_slice)
    }

    /// Every id with entries, and its entries.
    pub fn all(&self) -> impl Iterator<Item = (&str, &[Entry])> {
        self.entries
            .iter()
            .map(|(id, es)| (id.as_str(), es.as_slice()))
    }
}
