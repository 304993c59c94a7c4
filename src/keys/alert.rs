//! The codec of an alert log entry, the value of `alert.<incident id>`: the author's stage
//! for that incident, when it wrote it, each sink's result and, once sent, the summary. The
//! alert protocol writes and reads it; the history records every `sent` one.

use crate::events::SinkResult;
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

    /// `None` for a value that is not an entry this version can read.
    pub fn parse(value: &str) -> Option<AlertEntry> {
        let v: Value = serde_json::from_str(value).ok()?;
        let stage = Stage::parse(v.get("st")?.as_str()?)?;
        let at = Time(v.get("at")?.as_u64()?);
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
        Some(AlertEntry {
            stage,
            at,
            sinks,
            summary: v.get("summary").cloned(),
        })
    }
}
