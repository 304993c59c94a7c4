//! Whom a round gossips with: a schedule on the clock instead of a random draw.
//!
//! Time is cut into slots of `interval / fanout`. In slot `s`, the member at position `i` of
//! the sorted ring of live members (this node included) gossips with the member at
//! `i + 1 + s mod (n - 1)`. Within a slot that is a rotation of the ring, so while hosts
//! agree on the ring and their clocks on the slot, **every member is contacted exactly once
//! a slot, each time by another member**, and over `n - 1` slots every member contacts every
//! other once. A crashed member is therefore found out by a new witness every slot — its
//! unanswered exchanges start the watchers' indirect probes — where a random draw leaves it
//! alone for a second or two every so often, which is the tail of the detection time. Each
//! node runs its round at its own offset within the slot (`phase`), so the cluster's rounds
//! are spread over the slot rather than all at its start.
//!
//! Where views or clocks differ (a joiner, a member going down, a clock more than a slot
//! off), some members are contacted twice in a slot and some not at all, as with a random
//! draw: the schedule only ever does as well as chance or better.

use crate::types::{NodeName, Time};
use std::time::Duration;

/// The slot of time `now` falls in, for a node whose rounds run `phase` into each slot.
pub fn slot(now: Time, length: Duration, phase: Duration) -> u64 {
    let length = length.as_millis().max(1) as u64;
    now.as_millis().saturating_sub(phase.as_millis() as u64) / length
}

/// When the round after the one of `now` is due: the start of the next slot, plus `phase`.
pub fn next_round(now: Time, length: Duration, phase: Duration) -> Time {
    let ms = length.as_millis().max(1) as u64;
    Time((slot(now, length, phase) + 1) * ms) + phase
}

/// Whom the member at `me` in a `ring` of `n` gossips with in slot `slot`: an index into the
/// ring (never `me`), or `None` when the ring holds nobody else.
pub fn target(n: usize, me: usize, slot: u64) -> Option<usize> {
    if n < 2 {
        return None;
    }
    let offset = 1 + (slot % (n as u64 - 1)) as usize;
    Some((me + offset) % n)
}

/// The live members and this node, sorted: the ring [`target`] indexes, and where `me` is.
pub fn ring<'a>(
    live: impl Iterator<Item = &'a NodeName>,
    me: &'a NodeName,
) -> (Vec<&'a NodeName>, usize) {
    let mut ring: Vec<&NodeName> = live.filter(|n| *n != me).collect();
    ring.sort();
    let at = ring.partition_point(|n| *n < me);
    ring.insert(at, me);
    (ring, at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_a_slot_every_member_is_contacted_exactly_once_by_another() {
        for n in 2..40 {
            for slot in 0..(2 * n as u64) {
                let mut contacted = vec![0; n];
                for me in 0..n {
                    let to = target(n, me, slot).unwrap();
                    assert_ne!(to, me, "n {n} slot {slot}");
                    contacted[to] += 1;
                }
                assert!(contacted.iter().all(|c| *c == 1), "n {n} slot {slot}");
            }
        }
    }

    #[test]
    fn over_n_minus_one_slots_each_member_contacts_every_other_once() {
        let n = 9;
        for start in [0, 5, 1000] {
            let mut seen: Vec<usize> = (start..start + n as u64 - 1)
                .map(|slot| target(n, 3, slot).unwrap())
                .collect();
            seen.sort();
            assert_eq!(seen, vec![0, 1, 2, 4, 5, 6, 7, 8]);
        }
    }

    #[test]
    fn a_lone_member_has_nobody_to_contact() {
        assert_eq!(target(1, 0, 7), None);
        assert_eq!(target(0, 0, 7), None);
    }

    #[test]
    fn rounds_fall_once_a_slot_at_the_phase() {
        let length = Duration::from_millis(500);
        let phase = Duration::from_millis(120);
        let first = next_round(Time(10_000), length, phase);
        assert_eq!(first, Time(10_120));
        let second = next_round(first, length, phase);
        assert_eq!(second, Time(10_620));
        assert_eq!(slot(second, length, phase), slot(first, length, phase) + 1);
        // A round run late (the process was busy) still lands the next one on the grid.
        assert_eq!(next_round(Time(10_400), length, phase), Time(10_620));
    }

    #[test]
    fn the_ring_is_sorted_and_holds_this_node_once() {
        let names: Vec<NodeName> = ["c", "a", "d", "b"]
            .iter()
            .map(|s| NodeName(s.to_string()))
            .collect();
        let me = NodeName("b".into());
        let (ring, at) = ring(names.iter(), &me);
        let ring: Vec<&str> = ring.iter().map(|n| n.as_str()).collect();
        assert_eq!(ring, ["a", "b", "c", "d"]);
        assert_eq!(at, 1);
    }
}
