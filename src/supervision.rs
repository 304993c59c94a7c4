//! Local supervision, Erlang/OTP style: trees of supervisors keep this host's services running.
//!
//! * `spec`: tree files parsed into typed specs;
//! * `policy`: the restart decision as a pure function of (now, event, history), so every OTP
//!   rule — strategies, restart types, intensity, optional backoff — is table-tested without a
//!   process in sight;
//! * `process`, `logfile`, `reaper`: one service as a process group with a rotated log, and the
//!   subreaper that leaves no orphan behind;
//! * `leftovers`: the services a kill -9'd daemon left running, killed when it starts again;
//! * `health`: tcp, http and exec (Nagios plugin) probes, and the count of consecutive
//!   criticals that restarts a service;
//! * `service`, `supervisor`, `manager`: the actors that carry the decisions out.

pub mod health;
pub mod leftovers;
pub mod logfile;
pub mod manager;
pub mod policy;
pub mod process;
pub mod reaper;
pub mod service;
pub mod spec;
pub mod status;
pub mod supervisor;

/// Why an operator's command or a reload was refused; the text is what the operator sees.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("no service \"{0}\" on this node")]
    NoService(String),
    #[error("no service \"{0}\" in this tree")]
    NotInTree(String),
    #[error("the supervisor holding \"{0}\" is not running")]
    HolderNotRunning(String),
    #[error("the supervisor holding the service did not answer")]
    HolderSilent,
    #[error("the tree's supervisor did not answer")]
    TreeSilent,
    #[error("cannot start \"{service}\": {why}")]
    CannotStart { service: String, why: String },
    #[error("tree \"{0}\" failed again while starting")]
    FailedAgain(String),
    #[error(
        "tree \"{0}\" is a cluster singleton and does not run on this node now; it runs where \
         the cluster's leader places it (see `nbwatch services --all`)"
    )]
    PlacedElsewhere(String),
    /// The trees folder has problems: nothing was changed.
    #[error("the trees were not reloaded (the running ones are unchanged):\n{0}")]
    NotReloaded(crate::config::ConfigErrors),
}
