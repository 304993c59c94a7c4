//! Local supervision, Erlang/OTP style: trees of supervisors keep this host's services running.
//!
//! `policy` is the restart decision as a pure function of (now, event, history), so every OTP
//! rule — strategies, restart types, intensity, optional backoff — is table-tested without a
//! process in sight. The supervisor actors that carry the decisions out come next.

pub mod policy;
pub mod process;
pub mod spec;
