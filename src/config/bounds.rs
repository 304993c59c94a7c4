//! The floor and ceiling of every duration and count of the node config, in one table, so a
//! value that would hurt the host (`metrics.interval = "1ms"` took 16 % of a CPU) or make no
//! sense (a zero retention) is a problem naming the file and the key, not a surprise at run
//! time. `etc/nbwatch.toml` and the README list the same bounds. Every duration is also at
//! most [`crate::types::duration::MAX`] (100 years), wherever it is read.

use super::ProblemKind;
use super::walk::Walker;
use config::Value;
use std::time::Duration;

const S: Duration = Duration::from_secs(1);
const MIN: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

/// The range of a duration key; `off`: `"0s"` is allowed too and turns the feature off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DurationBound {
    pub key: &'static str,
    pub min: Duration,
    pub max: Duration,
    pub off: bool,
}

/// Why each bound is where it is:
/// - `gossip.interval`: below 10 ms gossip is a busy loop (a datagram per peer per round);
///   above a minute failure detection takes many minutes.
/// - `metrics.interval`: a sample costs reading /proc and a gossip entry on every host; once a
///   second is plenty for load and memory. A day is the longest that still shows a trend.
/// - retentions: below an hour the history is gone before anyone looks at it.
/// - `store.backfill`: beyond a year is past any retention worth filling in.
/// - `alerts.flap_window`: below 10 s nothing flaps (a node is not even declared down that
///   fast); above a day an incident never settles.
/// - `alerts.repeat`: a reminder more often than every minute is a storm, not a reminder.
pub const DURATIONS: [DurationBound; 8] = [
    bound("gossip.interval", ms(10), MIN, false),
    bound("metrics.interval", S, DAY, true),
    bound(
        "store.raw_retention",
        HOUR,
        crate::types::duration::MAX,
        false,
    ),
    bound(
        "store.rollup_retention",
        HOUR,
        crate::types::duration::MAX,
        false,
    ),
    bound("store.backfill", MIN, DAY.saturating_mul(366), true),
    bound("alerts.flap_window", S.saturating_mul(10), DAY, false),
    bound("alerts.repeat", MIN, DAY.saturating_mul(30), true),
    // Not a config key of its own: the ceiling every other duration shares.
    bound("*", Duration::ZERO, crate::types::duration::MAX, true),
];

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const fn bound(key: &'static str, min: Duration, max: Duration, off: bool) -> DurationBound {
    DurationBound { key, min, max, off }
}

/// The range of a count key; `off` as for durations (`0` turns the feature off).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CountBound {
    pub key: &'static str,
    pub min: u32,
    pub max: u32,
    pub off: bool,
}

/// - `alerts.flap_threshold`: 1 would call every single change flapping; 0 turns it off.
/// - `supervision.log_keep`: more than 100 rotated files is a job for logrotate.
/// - `supervision.log_max_bytes`: below 4 KiB a log rotates on every few lines.
pub const COUNTS: [CountBound; 3] = [
    CountBound {
        key: "alerts.flap_threshold",
        min: 2,
        max: 1000,
        off: true,
    },
    CountBound {
        key: "supervision.log_keep",
        min: 0,
        max: 100,
        off: false,
    },
    CountBound {
        key: "supervision.log_max_bytes",
        min: 4096,
        max: u32::MAX,
        off: false,
    },
];

/// The bound of `key` (the shared ceiling for a key not in the table).
pub fn duration_bound(key: &str) -> DurationBound {
    let shared = DURATIONS[DURATIONS.len() - 1];
    DURATIONS
        .iter()
        .find(|b| b.key == key)
        .copied()
        .unwrap_or(shared)
}

fn count_bound(key: &str) -> Option<CountBound> {
    COUNTS.iter().find(|b| b.key == key).copied()
}

fn text(d: Duration) -> String {
    crate::types::duration::format(d)
}

/// Why `d` is outside `b`, if it is.
pub fn check_duration(b: &DurationBound, d: Duration) -> Option<String> {
    if (d.is_zero() && b.off) || (b.min..=b.max).contains(&d) {
        return None;
    }
    let off = if b.off {
        " (or \"0s\" to turn it off)"
    } else {
        ""
    };
    Some(format!(
        "\"{}\" is out of range: {} must be from {} to {}{off}",
        text(d),
        b.key,
        text(b.min),
        text(b.max)
    ))
}

/// Why `n` is outside `b`, if it is.
pub fn check_count(b: &CountBound, n: u32) -> Option<String> {
    if (n == 0 && b.off) || (b.min..=b.max).contains(&n) {
        return None;
    }
    let off = if b.off { " (or 0 to turn it off)" } else { "" };
    Some(format!(
        "{n} is out of range: {} must be from {} to {}{off}",
        b.key, b.min, b.max
    ))
}

impl Walker {
    /// A duration within the bound of `key` ([`DURATIONS`]).
    pub(super) fn bounded_duration(&mut self, v: &Value, key: &str) -> Option<Duration> {
        let d = self.duration(v, key)?;
        self.within(v, key, check_duration(&duration_bound(key), d))?;
        Some(d)
    }

    /// A count within the bound of `key` ([`COUNTS`]; a key not there has none).
    pub(super) fn bounded_u32(&mut self, v: &Value, key: &str) -> Option<u32> {
        let n = self.u32(v, key)?;
        let why = count_bound(key).and_then(|b| check_count(&b, n));
        self.within(v, key, why)?;
        Some(n)
    }

    fn within(&mut self, v: &Value, key: &str, why: Option<String>) -> Option<()> {
        match why {
            None => Some(()),
            Some(message) => {
                self.problem(v, key, ProblemKind::BadValue, message);
                None
            }
        }
    }
}
