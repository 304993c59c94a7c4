//! One alert per incident: the survivors agree on a leader ([`crate::election`]) and only the
//! leader notifies, through a gossiped alert log that makes the decision safe while views
//! disagree, after a leader dies, and across a partition and its heal.
//!
//! * [`incident`] — what is worth an alert, derived from a view (the same ids on every host);
//! * [`log`] — the gossiped log of claims and sends;
//! * [`core`] — the claim → settle → send → `sent` protocol, sans-IO;
//! * [`action`] — remediation steps, run once through the same protocol.

pub mod action;
pub mod core;
pub mod incident;
pub mod log;

pub use self::core::{AlertCore, AlertOutput, DEFAULT_SETTLE, Persisted};
pub use incident::{Incident, Kind, Rules};
pub use log::Log;
