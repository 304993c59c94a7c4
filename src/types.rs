//! Small newtypes shared by every subsystem: who a node is, which life of it we talk about,
//! how new a piece of its state is, and what time it is.
//!
//! Time is an argument everywhere in the protocol cores (`Time`), never read from a clock, so the
//! simulator can run them in virtual time. `Time` is milliseconds since the Unix epoch: the
//! daemon feeds the wall clock as it was at start plus a monotonic elapsed time, so it never
//! steps backwards while the daemon runs, and `last_heard` values are comparable across hosts.

pub mod duration;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// A node's name: unique in the cluster, the `NODE` of every command.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeName(pub String);

impl NodeName {
    pub fn new(name: impl Into<String>) -> Self {
        NodeName(name.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl From<&str> for NodeName {
    fn from(s: &str) -> Self {
        NodeName(s.to_string())
    }
}

/// Which life of a node: bumped when the node restarts or refutes a suspicion about itself.
/// Higher always wins.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Incarnation(pub u64);

impl fmt::Display for Incarnation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Version of one node's key/value state within one incarnation: every write bumps it.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Version(pub u64);

/// Milliseconds since the Unix epoch (see the module doc). Any `u64` can arrive from another
/// node, so a time read from outside is checked with [`Time::checked`] (at most [`Time::MAX`]),
/// and [`Time::to_rfc3339`] renders even an unchecked one without panicking.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Time(pub u64);

/// A time past [`Time::MAX`]: refused wherever a time is read from outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0} ms after 1970 is past 9999-12-31T23:59:59.999Z, the latest time nbwatch accepts \
     (RFC 3339 has four-digit years)"
)]
pub struct TimeOutOfRange(pub u64);

impl Time {
    pub const ZERO: Time = Time(0);
    /// The latest time nbwatch accepts or shows, 9999-12-31T23:59:59.999Z: the last instant
    /// RFC 3339's four-digit years (and `humantime::format_rfc3339_millis`) can write.
    pub const MAX: Time = Time(253_402_300_799_999);

    /// `ms` as a time, if it is at most [`Time::MAX`].
    pub fn checked(ms: u64) -> Result<Time, TimeOutOfRange> {
        match ms <= Time::MAX.0 {
            true => Ok(Time(ms)),
            false => Err(TimeOutOfRange(ms)),
        }
    }

    pub fn from_millis(ms: u64) -> Time {
        Time(ms)
    }
    pub fn as_millis(self) -> u64 {
        self.0
    }
    /// `self` put off to the next multiple of `step` (itself if it is one; a zero `step`:
    /// itself). Timers put on one grid share instants, so one wake serves them all.
    pub fn on_grid(self, step: Duration) -> Time {
        let step = step.as_millis() as u64;
        if step == 0 {
            return self;
        }
        Time(self.0.div_ceil(step).saturating_mul(step))
    }
    /// `self - earlier`, or zero when `earlier` is later.
    pub fn since(self, earlier: Time) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
    /// The wall clock now (used by the actor shells only, never by a core).
    pub fn wall_now() -> Time {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Time(d.as_millis() as u64)
    }
    /// RFC 3339 UTC with milliseconds, as every JSON time in the contract. Total: a time past
    /// [`Time::MAX`] (which no checked input yields) reads `out of range (N ms after 1970)`
    /// instead of panicking, as humantime's formatter would.
    pub fn to_rfc3339(self) -> String {
        if self > Time::MAX {
            return format!("out of range ({} ms after 1970)", self.0);
        }
        let t = std::time::UNIX_EPOCH + Duration::from_millis(self.0);
        humantime::format_rfc3339_millis(t).to_string()
    }
    /// The time an RFC 3339 text says (as [`Time::to_rfc3339`] writes it), if it reads and is
    /// in range.
    pub fn parse_rfc3339(text: &str) -> Option<Time> {
        let t = humantime::parse_rfc3339_weak(text).ok()?;
        let ms = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis();
        Time::checked(u64::try_from(ms).ok()?).ok()
    }
}

impl std::ops::Add<Duration> for Time {
    type Output = Time;
    /// Saturating: a sum past `u64::MAX` milliseconds is `u64::MAX` (and renders as out of range).
    fn add(self, d: Duration) -> Time {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Time(self.0.saturating_add(ms))
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// A clock for the actor shells: the wall clock at creation plus monotonic elapsed time, so it
/// never goes backwards while the daemon runs.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    start_wall: Time,
    start: std::time::Instant,
}

impl Clock {
    pub fn new() -> Clock {
        Clock {
            start_wall: Time::wall_now(),
            start: std::time::Instant::now(),
        }
    }
    pub fn now(&self) -> Time {
        self.start_wall + self.start.elapsed()
    }
    /// The `Instant` at which this clock reads `t` (for tokio sleeps).
    pub fn instant_at(&self, t: Time) -> std::time::Instant {
        self.start + t.since(self.start_wall)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}
