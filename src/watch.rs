//! Failure detection of one peer: phi accrual over its signs of life, then a direct probe,
//! then indirect probes through others (SWIM), then a suspicion for gossip to spread.
//!
//! The verdict "down" is not taken here: it needs independent witnesses, so it is derived from
//! the gossiped suspicions by the gossip core.

pub mod core;
pub mod health;
pub mod phi;
pub mod probe;

pub use self::core::{
    Evidence, Input, Output, PeerWatch, Phase, Probe, Settings, TimerToken, Verdict,
};
pub use self::health::{LocalHealth, Patience};
pub use self::probe::{Contact, Prober};
