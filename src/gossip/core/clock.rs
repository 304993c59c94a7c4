//! How far a peer's wall clock is from ours, learned from its own datagrams.
//!
//! Every envelope carries the sender's beat: its clock when it sent, to a tenth of a second.
//! Received at `now` by our clock, `beat − now` is the sender's clock minus ours, less the
//! datagram's time in flight and less the beat's rounding (both never negative). The largest
//! such sample is therefore the best estimate and never too large. The daemon's clock is its
//! wall clock at start plus a monotonic elapsed time, so a peer's offset only drifts (parts
//! per million) within one life: the estimate is the largest sample of the last two windows,
//! so it follows a drift within [`WINDOW`], and a new life (a new `Member`) starts afresh.
//!
//! Offsets within [`TOLERANCE`] are taken as clocks that agree (NTP keeps hosts far closer):
//! then a peer's times are used as they are, as before any offset was known. A larger offset
//! turns the peer's times into ours: "stopped talking at 15:30" is true by this host's clock.

use crate::types::Time;
use std::time::Duration;

/// Offsets up to this are clocks that agree.
pub const TOLERANCE: Duration = Duration::from_secs(1);
/// The estimate is the largest sample of the current and the previous window of this length.
const WINDOW: Duration = Duration::from_secs(300);

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerClock {
    current: Option<i64>,
    previous: Option<i64>,
    window_start: Time,
    told: bool,
}

impl PeerClock {
    /// A datagram sent at `sent` by the peer's clock arrived at `now` by ours. True the first
    /// time the offset is past [`TOLERANCE`] (worth a warning: someone's clock is wrong).
    pub fn observe(&mut self, now: Time, sent: Time) -> bool {
        if now >= self.window_start + WINDOW {
            self.previous = self.current.take();
            self.window_start = now;
        }
        let sample = sent.as_millis() as i64 - now.as_millis() as i64;
        self.current = Some(self.current.map_or(sample, |c| c.max(sample)));
        let off = self
            .offset()
            .is_some_and(|o| o.unsigned_abs() > TOLERANCE.as_millis() as u64);
        let first = off && !self.told;
        self.told |= off;
        first
    }

    /// The peer's clock minus ours in milliseconds, once it has sent anything directly.
    pub fn offset(&self) -> Option<i64> {
        match (self.current, self.previous) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// `t` by the peer's clock as a time by ours (unchanged while the clocks agree or the
    /// offset is not known yet).
    pub fn to_local(&self, t: Time) -> Time {
        to_local(self.offset(), t)
    }
}

/// `t`, read on a clock `offset` ms ahead of ours, as a time by ours (unchanged when the
/// offset is unknown or within [`TOLERANCE`]), never past [`Time::MAX`].
pub fn to_local(offset: Option<i64>, t: Time) -> Time {
    match offset {
        Some(o) if o.unsigned_abs() > TOLERANCE.as_millis() as u64 => {
            let local = (t.as_millis() as i128 - o as i128).clamp(0, Time::MAX.0 as i128);
            Time(local as u64)
        }
        _ => t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    fn at(ms: i64) -> Time {
        Time(ms as u64)
    }

    #[test]
    fn the_estimate_is_the_largest_sample_and_never_more_than_the_true_offset() {
        let mut c = PeerClock::default();
        assert_eq!(c.offset(), None);
        let base = 1_800_000_000_000;
        // The peer is an hour ahead; its datagrams take 3 to 40 ms and its beat is rounded
        // down to a tenth of a second.
        for (i, flight) in [40, 3, 17, 25, 9].into_iter().enumerate() {
            let sent = base + i as i64 * 1_000 + 55;
            let beat = (sent + HOUR) / 100 * 100;
            c.observe(at(sent + flight), at(beat));
        }
        let o = c.offset().unwrap();
        assert!((HOUR - 100..=HOUR).contains(&o), "{o}");
    }

    #[test]
    fn an_offset_within_the_tolerance_changes_nothing_and_a_larger_one_is_taken_off() {
        let t = at(1_800_000_000_000);
        assert_eq!(to_local(None, t), t);
        assert_eq!(to_local(Some(-900), t), t);
        assert_eq!(to_local(Some(HOUR), t), at(1_800_000_000_000 - HOUR));
        assert_eq!(to_local(Some(-HOUR), t), at(1_800_000_000_000 + HOUR));
        assert_eq!(to_local(Some(i64::MAX), at(5)), Time(0));
        assert_eq!(to_local(Some(i64::MIN), Time::MAX), Time::MAX);
    }

    #[test]
    fn a_drift_is_followed_within_two_windows() {
        let mut c = PeerClock::default();
        let base = 1_800_000_000_000;
        assert!(
            c.observe(at(base), at(base + 5_000)),
            "the first offset past the tolerance"
        );
        // The peer's clock now runs 2 s less ahead: the old sample counts until its window
        // has passed twice.
        assert!(
            !c.observe(at(base + 301_000), at(base + 301_000 + 3_000)),
            "told once"
        );
        assert_eq!(c.offset(), Some(5_000));
        c.observe(at(base + 602_000), at(base + 602_000 + 3_000));
        assert_eq!(c.offset(), Some(3_000));
    }
}
