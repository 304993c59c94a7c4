//! The codec of an alert log entry, the value of `alert.<incident id>`: the author's stage
//! for that incident, when it wrote it, each sink's result and, once sent, the summary. The
//! alert protocol writes and reads it; the history records every `sent` one. And the codec
//! of a silence, the value of `silence.<target>`: until when, and why.

use super::{ValueError, time};
use crate::events::SinkResult;
use crate::secure::operator::Seal;
use crate::types::Time;
use serde_json::{Value, json};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    Claim,
    Sending,
    Sent,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Claim => "claim",
            Stage::Sending => "sending",
            Stage::Sent => "sent",
        }
    }
    pub fn parse(s: &str) -> Option<Stage> {
        match s {
            "claim" => Some(Stage::Claim),
            "sending" => Some(Stage::Sending),
            "sent" => Some(Stage::Sent),
            _ => None,
        }
    }
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
        Ok(AlertEntry {
            stage,
            at,
            sinks,
            summary: v.get("summary").cloned(),
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
