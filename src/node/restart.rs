//! Restart intensity, as in Erlang/OTP: a supervisor may restart its children at most `max`
//! times within `period`; past that, something is wrong that restarting does not fix, and the
//! supervisor gives up (and fails to its own parent) instead of looping forever.
//!
//! Pure: time is an argument, so the policy is table-tested without sleeping.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub(crate) struct RestartBudget {
    max: usize,
    period: Duration,
    recent: VecDeque<Instant>,
}

impl RestartBudget {
    pub(crate) fn new(max: usize, period: Duration) -> RestartBudget {
        RestartBudget {
            max,
            period,
            recent: VecDeque::new(),
        }
    }

    /// Records a restart at `now`; false when it would exceed the intensity.
    pub(crate) fn allow(&mut self, now: Instant) -> bool {
        while let Some(first) = self.recent.front()
            && now.saturating_duration_since(*first) >= self.period
        {
            self.recent.pop_front();
        }
        if self.recent.len() >= self.max {
            return false;
        }
        self.recent.push_back(now);
        true
    }

    /// "at most 5 restarts in 10s", for messages.
    pub(crate) fn describe(&self) -> String {
        format!(
            "at most {} restarts in {}",
            self.max,
            humantime::format_duration(self.period)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_within_the_intensity_are_allowed_and_the_next_one_is_not() {
        let t0 = Instant::now();
        let mut budget = RestartBudget::new(3, Duration::from_secs(10));
        for i in 0..3 {
            assert!(budget.allow(t0 + Duration::from_secs(i)), "restart {i}");
        }
        assert!(!budget.allow(t0 + Duration::from_secs(5)));
    }

    #[test]
    fn old_restarts_fall_out_of_the_period() {
        let t0 = Instant::now();
        let mut budget = RestartBudget::new(2, Duration::from_secs(10));
        assert!(budget.allow(t0));
        assert!(budget.allow(t0 + Duration::from_secs(1)));
        assert!(!budget.allow(t0 + Duration::from_secs(9)));
        assert!(budget.allow(t0 + Duration::from_secs(10)));
        assert!(!budget.allow(t0 + Duration::from_secs(10)));
        assert!(budget.allow(t0 + Duration::from_secs(30)));
    }
}
