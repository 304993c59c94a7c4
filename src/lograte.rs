//! At most one log line per period for things a stranger can cause as often as he likes:
//! dropped gossip frames ([`crate::secure`]), connections to the gossip port that end without
//! an exchange ([`crate::transport`]). Each line carries how many happened since the last one,
//! so nothing is hidden, and a flood costs one line per period instead of one per packet —
//! journald's rate limit would otherwise drop the daemon's real messages with the noise.
//!
//! [`Every`] is the decision, with time as an argument; [`Limit`] is the shared form the
//! socket tasks use.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The period every rate-limited line of the daemon uses.
pub const EVERY: Duration = Duration::from_secs(10);

/// When the last line went out and what happened since.
#[derive(Debug)]
pub struct Every {
    period: Duration,
    last: Option<Instant>,
    since: u64,
}

impl Every {
    pub const fn new(period: Duration) -> Every {
        Every {
            period,
            last: None,
            since: 0,
        }
    }

    /// One more occurrence at `now`. `Some(n)`: write a line now, for the `n` occurrences
    /// since the last line (this one included); `None`: stay quiet, it is counted.
    pub fn note(&mut self, now: Instant) -> Option<u64> {
        self.since += 1;
        if self
            .last
            .is_some_and(|t| now.saturating_duration_since(t) < self.period)
        {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.since))
    }
}

/// [`Every`] behind a lock, on the wall of [`Instant::now`].
#[derive(Debug)]
pub struct Limit(Mutex<Every>);

impl Limit {
    pub const fn new(period: Duration) -> Limit {
        Limit(Mutex::new(Every::new(period)))
    }

    /// See [`Every::note`].
    pub fn note(&self) -> Option<u64> {
        let mut every = self.0.lock().unwrap_or_else(|e| e.into_inner());
        every.note(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_occurrence_is_logged_then_one_line_per_period_counts_those_in_between() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut every = Every::new(Duration::from_secs(10));
        assert_eq!(every.note(at(0)), Some(1));
        for ms in (1..10_000).step_by(7) {
            assert_eq!(every.note(at(ms)), None, "at {ms} ms");
        }
        assert_eq!(every.note(at(10_000)), Some(1429 + 1));
        assert_eq!(every.note(at(10_001)), None);
        assert_eq!(
            every.note(at(60_000)),
            Some(2),
            "a quiet spell ends with its count"
        );
    }

    #[test]
    fn a_flood_of_any_length_costs_one_line_per_period() {
        let t0 = Instant::now();
        let mut every = Every::new(Duration::from_secs(10));
        // 100,000 occurrences over 35 s: lines at 0, 10, 20 and 30 s.
        let lines: Vec<u64> = (0..100_000u64)
            .filter_map(|i| every.note(t0 + Duration::from_micros(i * 350)))
            .collect();
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert_eq!(lines.iter().sum::<u64>() + every.since, 100_000);
    }
}
