//! Host probes: this host's metrics, announced through gossip.

pub mod actor;
pub mod metrics;
