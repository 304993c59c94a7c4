//! The codecs of the control plane's values: a command to another node (`cmd.<id>`), its
//! answer (`res.<id>`) and a node's declaration of a placed tree (`tree.<name>`), each one
//! serde type read and written only through here.

use super::{Run, ValueError, time};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// `raw` as a `T`, its time (`at(&T)`, named `field`) checked.
fn parse_timed<T: DeserializeOwned>(
    raw: &str,
    field: &'static str,
    at: impl Fn(&T) -> Vec<u64>,
) -> Result<T, ValueError> {
    let value: T = serde_json::from_str(raw).map_err(|e| ValueError::Malformed(e.to_string()))?;
    for ms in at(&value) {
        time(field, ms)?;
    }
    Ok(value)
}

/// A command as it travels in the issuer's state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteCommand {
    pub to: String,
    pub service: String,
    pub action: String,
    /// When it was issued (ms, the issuer's clock).
    pub at: u64,
    /// The operator's seal, without which no host runs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<crate::secure::operator::Seal>,
}

impl RemoteCommand {
    /// What its seal covers besides its gossip key: target, service and action.
    pub fn content(&self) -> String {
        format!("{}\n{}\n{}", self.to, self.service, self.action)
    }
}

impl RemoteCommand {
    /// An error for a value that is not a command, or whose `at` is out of range.
    pub fn parse(raw: &str) -> Result<RemoteCommand, ValueError> {
        parse_timed(raw, "at", |c: &RemoteCommand| vec![c.at])
    }
}

/// The target's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    pub ok: bool,
    pub message: String,
    /// When it was answered (ms, the target's clock).
    pub at: u64,
}

impl Answer {
    /// An error for a value that is not an answer, or whose `at` is out of range.
    pub fn parse(raw: &str) -> Result<Answer, ValueError> {
        parse_timed(raw, "at", |a: &Answer| vec![a.at])
    }
}

/// An application value as it travels in the publisher's state (`app.<key>`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    #[serde(rename = "v")]
    pub value: String,
    /// When it was published (ms since the epoch, the publisher's clock).
    #[serde(rename = "t")]
    pub at: u64,
    /// When it expires (ms since the epoch, the publisher's clock); absent: never.
    #[serde(rename = "x", default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<u64>,
}

impl Stored {
    /// An error for a value that is not an application value, or whose `t` or `x` is out of
    /// range.
    pub fn parse(raw: &str) -> Result<Stored, ValueError> {
        parse_timed(raw, "t or x", |s: &Stored| {
            std::iter::once(s.at).chain(s.expires).collect()
        })
    }
}

/// A node's `tree.<name>` value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Declaration {
    pub failover: Vec<String>,
    pub takeover: bool,
    pub run: Run,
}
