//! The codecs of the control plane's values: a command to another node (`cmd.<id>`), its
//! answer (`res.<id>`) and a node's declaration of a placed tree (`tree.<name>`), each one
//! serde type read and written only through here.

use super::Run;
use serde::{Deserialize, Serialize};

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

/// The target's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    pub ok: bool,
    pub message: String,
    /// When it was answered (ms, the target's clock).
    pub at: u64,
}

/// A node's `tree.<name>` value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Declaration {
    pub failover: Vec<String>,
    pub takeover: bool,
    pub run: Run,
}
