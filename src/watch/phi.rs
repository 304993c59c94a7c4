//! Phi accrual (Hayashibara et al., 2004): how surprised we would be to hear nothing for this
//! long, given the intervals between the peer's earlier signs of life. Phi is monotonic in the
//! silence, so instead of recomputing it on a clock we invert it once and arm a single timer
//! for the moment it crosses the threshold.

use std::collections::VecDeque;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Phi {
    window: usize,
    intervals: VecDeque<f64>,
    sum: f64,
    sum_sq: f64,
    min_std_ms: f64,
    guess_ms: f64,
    /// `z` such that phi(mean + z*std) == threshold.
    z: f64,
}

impl Phi {
    pub fn new(threshold: f64, window: usize, min_std: Duration, first_guess: Duration) -> Phi {
        Phi {
            window: window.max(2),
            intervals: VecDeque::new(),
            sum: 0.0,
            sum_sq: 0.0,
            min_std_ms: min_std.as_secs_f64() * 1000.0,
            guess_ms: first_guess.as_secs_f64() * 1000.0,
            z: z_for_phi(threshold),
        }
    }

    /// Records the interval between two signs of life.
    pub fn record(&mut self, interval: Duration) {
        let ms = interval.as_secs_f64() * 1000.0;
        if self.intervals.len() == self.window
            && let Some(old) = self.intervals.pop_front()
        {
            self.sum -= old;
            self.sum_sq -= old * old;
        }
        self.intervals.push_back(ms);
        self.sum += ms;
        self.sum_sq += ms * ms;
    }

    pub fn clear(&mut self) {
        self.intervals.clear();
        self.sum = 0.0;
        self.sum_sq = 0.0;
    }

    fn mean_std(&self) -> (f64, f64) {
        let n = self.intervals.len();
        if n < 3 {
            // Too few samples: assume the configured cadence with a wide spread.
            return (self.guess_ms, (self.guess_ms / 2.0).max(self.min_std_ms));
        }
        let mean = self.sum / n as f64;
        let var = (self.sum_sq / n as f64 - mean * mean).max(0.0);
        (mean, var.sqrt().max(self.min_std_ms))
    }

    /// Phi after `silence` without a sign of life.
    pub fn phi(&self, silence: Duration) -> f64 {
        let (mean, std) = self.mean_std();
        let y = (silence.as_secs_f64() * 1000.0 - mean) / std;
        phi_of_z(y)
    }

    /// How long a silence makes phi reach the threshold.
    pub fn silence_to_threshold(&self) -> Duration {
        let (mean, std) = self.mean_std();
        Duration::from_secs_f64(((mean + self.z * std) / 1000.0).max(0.0))
    }
}

/// -log10 of the normal tail beyond `z`, through the logistic approximation of the normal CDF
/// that Akka and Cassandra use.
fn phi_of_z(z: f64) -> f64 {
    let e = (-z * (1.5976 + 0.070566 * z * z)).exp();
    if z > 0.0 {
        -(e / (1.0 + e)).log10()
    } else {
        -(1.0 - 1.0 / (1.0 + e)).log10()
    }
}

fn z_for_phi(threshold: f64) -> f64 {
    let (mut lo, mut hi) = (-10.0_f64, 40.0_f64);
    for _ in 0..100 {
        let mid = (lo + hi) / 2.0;
        if phi_of_z(mid) < threshold {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phi_grows_with_silence() {
        let mut p = Phi::new(8.0, 16, Duration::from_millis(10), Duration::from_secs(1));
        for _ in 0..10 {
            p.record(Duration::from_millis(1000));
        }
        assert!(p.phi(Duration::from_millis(500)) < p.phi(Duration::from_millis(1000)));
        assert!(p.phi(Duration::from_millis(1000)) < p.phi(Duration::from_millis(1100)));
    }

    #[test]
    fn the_threshold_silence_is_where_phi_crosses_the_threshold() {
        let mut p = Phi::new(8.0, 16, Duration::from_millis(50), Duration::from_secs(1));
        for ms in [900, 1100, 1000, 950, 1050] {
            p.record(Duration::from_millis(ms));
        }
        let t = p.silence_to_threshold();
        assert!(
            (p.phi(t) - 8.0).abs() < 0.01,
            "phi at deadline {}",
            p.phi(t)
        );
        assert!(t > Duration::from_millis(1000) && t < Duration::from_millis(2000));
    }

    #[test]
    fn a_regular_peer_is_suspected_sooner_than_an_irregular_one() {
        let mut regular = Phi::new(8.0, 16, Duration::from_millis(10), Duration::from_secs(1));
        let mut irregular = regular.clone();
        for i in 0..16 {
            regular.record(Duration::from_millis(1000));
            irregular.record(Duration::from_millis(if i % 2 == 0 { 500 } else { 1500 }));
        }
        assert!(regular.silence_to_threshold() < irregular.silence_to_threshold());
    }

    #[test]
    fn old_intervals_leave_the_window() {
        let mut p = Phi::new(8.0, 4, Duration::from_millis(1), Duration::from_secs(1));
        for _ in 0..4 {
            p.record(Duration::from_millis(5000));
        }
        for _ in 0..4 {
            p.record(Duration::from_millis(100));
        }
        assert!(p.silence_to_threshold() < Duration::from_millis(200));
    }
}
