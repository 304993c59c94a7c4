//! The actor shells: each owns one pure core (or one adapter), turns messages into the core's
//! inputs and carries out its outputs. A shell holds only the [`Handle`](crate::task::Handle)s
//! of the actors it sends to, given to it at spawn by the node's wiring ([`crate::node`]).

pub mod alert;
pub mod backfill;
pub mod control;
pub mod election;
pub mod export;
pub mod gossip;
pub mod http;
pub mod probe;
pub mod settings;
pub mod store;
pub mod watch;
