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
