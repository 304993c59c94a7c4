//! Gossip: membership and every node's versioned key/value state.
//!
//! `core` is the protocol, pure; `state` is one node's replicated map; `actor` is the shell
//! that owns the sockets and carries out what the core decides.

pub mod core;
pub mod state;

pub use self::core::{Core, KvError, MemberView, Settings, Stats, Status};
