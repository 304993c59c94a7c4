//! This node's own health, as Lifeguard's local health multiplier: a node that is itself late
//! (starved of CPU, its messages waiting) must not take its peers' silence for theirs.
//!
//! The score goes up by one each time this node finds itself late — a tick of the gossip
//! actor that came [`LATE`] or more after it was due, a suspicion of itself that it had to
//! refute (others could not reach it in time), or a suspicion of its own that the peer
//! answered after all (Lifeguard raises it for a probe that failed while the peer was alive)
//! — up to [`MAX_SCORE`], and comes down by one
//! for every [`RECOVER`] without being late. Its [`patience`](LocalHealth::patience),
//! `1 + score`, multiplies how long this node's watchers wait for an answer before they
//! suspect a peer, and a late node answers its API from the last published view instead of
//! asking the gossip actor (see `api::routes`), so probes and gossip keep the CPU it has.
//!
//! Pure: times are arguments. The score is shared with the watchers and the API through a
//! [`Patience`].

use crate::types::Time;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// The highest score (Lifeguard's S): at most nine times the usual patience.
pub const MAX_SCORE: u32 = 8;
/// A tick this much later than due means the node itself is late.
pub const LATE: Duration = Duration::from_millis(100);
/// The score comes down by one after this long without lateness.
pub const RECOVER: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LocalHealth {
    score: u32,
    /// When the score last changed.
    changed: Time,
}

impl LocalHealth {
    /// A timer due `by` ago has just fired (`by` zero: on time).
    pub fn tick(&mut self, now: Time, by: Duration) {
        if by >= LATE {
            self.raise(now);
        } else if self.score > 0 && now >= self.changed + RECOVER {
            self.score -= 1;
            self.changed = now;
        }
    }

    /// This node had to refute a suspicion of itself.
    pub fn refuted(&mut self, now: Time) {
        self.raise(now);
    }

    /// A peer this node suspected answered after all: the answers, or this node's reading of
    /// them, came late. In a cluster whose hosts are all starved at once (every suspicion then
    /// costs more work: probes to verify it, its refutation, the news of both), each node that
    /// misjudges waits longer before its next suspicion, so the suspicions die down instead of
    /// feeding the load that causes them.
    pub fn misjudged(&mut self, now: Time) {
        self.raise(now);
    }

    fn raise(&mut self, now: Time) {
        self.score = (self.score + 1).min(MAX_SCORE);
        self.changed = now;
    }

    pub fn score(&self) -> u32 {
        self.score
    }

    /// How many times the usual time this node's watchers wait for an answer.
    pub fn patience(&self) -> u32 {
        1 + self.score
    }
}

/// The score as the watchers and the API read it; the gossip actor, which measures it,
/// publishes it here.
#[derive(Clone, Debug, Default)]
pub struct Patience(Arc<AtomicU32>);

impl Patience {
    pub fn publish(&self, health: &LocalHealth) {
        self.0.store(health.score(), Ordering::Relaxed);
    }

    /// The local health score (0: healthy).
    pub fn score(&self) -> u32 {
        self.0.load(Ordering::Relaxed)
    }

    /// The multiplier of the watchers' timeouts (1: healthy).
    pub fn factor(&self) -> u32 {
        1 + self.score()
    }

    /// True while this node is late and sheds work.
    pub fn is_late(&self) -> bool {
        self.score() > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lateness_raises_the_score_up_to_the_cap_and_time_on_time_brings_it_down_one_by_one() {
        let mut h = LocalHealth::default();
        let t = |ms: u64| Time(1_000_000 + ms);
        h.tick(t(0), Duration::from_millis(20));
        assert_eq!(h.patience(), 1, "a little late is on time");
        for i in 0..12 {
            h.tick(t(i * 50), Duration::from_millis(400));
        }
        assert_eq!(h.score(), MAX_SCORE);
        // On time again: nothing for RECOVER, then one step per RECOVER.
        h.tick(t(600 + 1_000), Duration::ZERO);
        assert_eq!(h.score(), MAX_SCORE);
        h.tick(t(550 + 2_000), Duration::ZERO);
        assert_eq!(h.score(), MAX_SCORE - 1);
        h.tick(t(550 + 3_000), Duration::ZERO);
        assert_eq!(h.score(), MAX_SCORE - 1);
        let mut at = 550 + 2_000;
        for _ in 0..MAX_SCORE {
            at += 2_000;
            h.tick(t(at), Duration::ZERO);
        }
        assert_eq!((h.score(), h.patience()), (0, 1));
        h.refuted(t(at));
        assert_eq!(h.patience(), 2, "a refutation is lateness too");
        h.misjudged(t(at + 1));
        assert_eq!(h.patience(), 3, "so is a suspicion of a live peer");
    }

    #[test]
    fn the_shared_score_is_what_was_published_last() {
        let p = Patience::default();
        assert_eq!((p.factor(), p.is_late()), (1, false));
        let mut h = LocalHealth::default();
        h.refuted(Time(5));
        h.refuted(Time(6));
        p.clone().publish(&h);
        assert_eq!((p.score(), p.factor(), p.is_late()), (2, 3, true));
    }
}
