//! The codec of an alert log entry, the value of `alert.<incident id>`: the author's stage
//! for that incident, when it wrote it, each sink's result and, once sent, the summary; on an
//! entry that holds an incident open (`waiting`, `failed`), the incident itself. The alert
//! protocol writes and reads it; the history records every `sent` one. The codec of a
//! silence, the value of `silence.<target>`: until when, and why. And the value of `sinks`:
//! how many sinks a node can deliver through.

use super::{ValueError, time};
use crate::events::SinkResult;
use crate::secure::operator::Seal;
use crate::types::Time;
use serde_json::{Value, json};

/// The stages of an entry, in the order `alerts` shows the furthest one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// Open, and no live member can deliver it: written by the leader so that the incident is
    /// not lost until one can (a node with sinks that comes back).
    Waiting,
    /// The author tried every sink it has and none accepted it; it stays open.
    Failed,
    Claim,
    Sending,
    Sent,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Waiting => "waiting",
            Stage::Failed => "failed",
            Stage::Claim => "claim",
            Stage::Sending => "sending",
            Stage::Sent => "sent",
        }
    }
    pub fn parse(s: &str) -> Option<Stage> {
        match s {
            "waiting" => Some(Stage::Waiting),
            "failed" => Some(Stage::Failed),
            "claim" => Some(Stage::Claim),
            "sending" => Some(Stage::Sending),
            "sent" => Some(Stage::Sent),
            _ => None,
        }
    }

    /// The stages whose entry holds its incident open until someone sends it.
    pub fn holds(self) -> bool {
        matches!(self, Stage::Waiting | Stage::Failed)
    }
}

/// An incident as a `waiting` or `failed` entry carries it, so that every host (and a node
/// with sinks that starts later) derives it even when the view no longer shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Held {
    pub kind: String,
    pub node: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    pub since: u64,
    #[serde(default)]
    pub observers: Vec<String>,
    pub summary: String,
}

impl Held {
    /// At most this many observers and this many bytes of summary travel, so the entry fits
    /// [`super::MAX_ENTRY_LEN`].
    pub const MAX_OBSERVERS: usize = 8;
    pub const MAX_SUMMARY: usize = 400;

    /// The same, cut to what travels.
    pub fn bounded(mut self) -> Held {
        self.observers.truncate(Held::MAX_OBSERVERS);
        if self.summary.len() > Held::MAX_SUMMARY {
            let mut end = Held::MAX_SUMMARY;
            while !self.summary.is_char_boundary(end) {
                end -= 1;
            }
            self.summary.truncate(end);
            self.summary.push('…');
        }
        self
    }
}

/// How many sinks the `sinks` value says a node can deliver through (unreadable: none).
pub fn sinks_ready(value: Option<&str>) -> usize {
    value.and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

/// One `alert.<id>` value.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertEntry {
    pub stage: Stage,
    /// The author's clock when it wrote the entry.
    pub at: Time,
    pub sinks: Vec<SinkResult>,
    /// The alert's summary, on `sent` entries.
    pub summary: Option<Value>,
    /// The incident, on `waiting` and `failed` entries.
    pub held: Option<Held>,
    /// When the problem began (the alert's `since`), on `sent` entries of firing incidents:
    /// the alert that resolves it carries it, so that a receiver sees the same alert end
    /// (`node_down`'s `last_heard` is not in its id, and is gone from the view once the host
    /// is back). Absent from older builds' entries.
    pub since: Option<Time>,
}

impl AlertEntry {
    pub fn encode(&self) -> String {
        let mut v = json!({ "st": self.stage.as_str(), "at": self.at.0 });
        if !self.sinks.is_empty() {
            v["sinks"] = Value::Array(
                self.sinks
                    .iter()
                    .map(|s| json!([s.sink, s.result]))
                    .collect(),
            );
        }
        if let Some(summary) = &self.summary {
            v["summary"] = summary.clone();
        }
        if let Some(held) = &self.held {
            v["inc"] = serde_json::to_value(held).unwrap_or(Value::Null);
        }
        if let Some(since) = self.since {
            v["sn"] = Value::from(since.0);
        }
        v.to_string()
    }

    /// An error for a value that is not an entry this version can read, or whose time is
    /// out of range.
    pub fn parse(value: &str) -> Result<AlertEntry, ValueError> {
        let malformed = |why: &str| ValueError::Malformed(why.to_string());
        let v: Value =
            serde_json::from_str(value).map_err(|e| ValueError::Malformed(e.to_string()))?;
        let stage = v
            .get("st")
            .and_then(Value::as_str)
            .and_then(Stage::parse)
            .ok_or_else(|| malformed("no stage"))?;
        let at = v
            .get("at")
            .and_then(Value::as_u64)
            .ok_or_else(|| malformed("no time"))?;
        let at = time("at", at)?;
        let sinks = v
            .get("sinks")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| {
                        Some(SinkResult {
                            sink: s.get(0)?.as_str()?.to_string(),
                            result: s.get(1)?.as_str()?.to_string(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let held = match v.get("inc") {
            None => None,
            Some(inc) => {
                let held: Held = serde_json::from_value(inc.clone())
                    .map_err(|e| malformed(&format!("incident: {e}")))?;
                time("since", held.since)?;
                Some(held)
            }
        };
        if stage.holds() && held.is_none() {
            return Err(malformed("no incident"));
        }
        let since = match v.get("sn") {
            None => None,
            Some(sn) => Some(time(
                "since",
                sn.as_u64().ok_or_else(|| malformed("since"))?,
            )?),
        };
        Ok(AlertEntry {
            stage,
            at,
            sinks,
            summary: v.get("summary").cloned(),
            held,
            since,
        })
    }
}

/// One `silence.<target>` value: alerts about the target are hidden until `until`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SilenceValue {
    pub until: Time,
    pub reason: String,
    /// The operator's seal that makes other hosts obey it (SECURITY.md, "Command another
    /// host"); a value without one, or with one that is not an object of the seal's shape,
    /// parses with none and hides nothing.
    pub seal: Option<Seal>,
}

impl SilenceValue {
    pub fn encode(&self) -> String {
        json!({ "until": self.until.0, "reason": self.reason, "seal": self.seal }).to_string()
    }

    /// An error for a value that is not a silence, or whose `until` is out of range.
    pub fn parse(value: &str) -> Result<SilenceValue, ValueError> {
        let v: Value =
            serde_json::from_str(value).map_err(|e| ValueError::Malformed(e.to_string()))?;
        let until = v
            .get("until")
            .and_then(Value::as_u64)
            .ok_or_else(|| ValueError::Malformed("no until".into()))?;
        Ok(SilenceValue {
            until: time("until", until)?,
            reason: v
                .get("reason")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            seal: v
                .get("seal")
                .and_then(|s| serde_json::from_value(s.clone()).ok()),
        })
    }
}
