//! Who this node hears directly: for each live peer, when a datagram from the peer itself
//! (not a relayed beat) last arrived. Gossip exchanges bring most of them; a peer not heard
//! directly for half of [`WINDOW`] gets a ping, so a peer that can be reached is heard within
//! the window even in a large cluster, where a random exchange with one given peer can be
//! minutes apart. A peer known for a whole window and not heard in it is *unheard*; every
//! node gossips its unheard peers (`unheard`), and the readers build the matrix of who hears
//! whom (`nbwatch reachability`), which shows one-way and partial cuts that leave every
//! verdict alive.
//!
//! The window is long on purpose: the matrix is for cuts that last, and the pings it costs at
//! 128 hosts are a few per second cluster-wide (about one in six peers is not met by chance
//! in a minute).

use crate::types::{NodeName, Time};
use std::collections::BTreeMap;
use std::time::Duration;

/// A peer not heard directly for this long is unheard.
pub const WINDOW: Duration = Duration::from_secs(120);
/// At most this many reachability pings per round.
pub const MAX_PINGS: usize = 4;

#[derive(Clone, Debug, Default)]
pub struct Reach {
    /// Per peer: when it was first known (in this life of ours or its), when last heard
    /// directly, when last pinged for reachability.
    peers: BTreeMap<NodeName, Peer>,
}

#[derive(Clone, Copy, Debug)]
struct Peer {
    known: Time,
    heard: Option<Time>,
    pinged: Option<Time>,
}

impl Reach {
    /// A datagram from `peer` itself arrived.
    pub fn heard(&mut self, now: Time, peer: &NodeName) {
        self.peer(now, peer).heard = Some(now);
    }

    fn peer(&mut self, now: Time, peer: &NodeName) -> &mut Peer {
        self.peers.entry(peer.clone()).or_insert(Peer {
            known: now,
            heard: None,
            pinged: None,
        })
    }

    /// `peer` is down, left or started a new life: it starts over.
    pub fn forget(&mut self, peer: &NodeName) {
        self.peers.remove(peer);
    }

    /// The live peers to ping now for reachability (the least recently heard first), and
    /// the ones `live` no longer lists forgotten.
    pub fn due(&mut self, now: Time, live: &[NodeName]) -> Vec<NodeName> {
        self.peers.retain(|name, _| live.contains(name));
        let half = WINDOW / 2;
        let mut due: Vec<(Time, NodeName)> = Vec::new();
        for name in live {
            let p = *self.peer(now, name);
            let last = p.heard.unwrap_or(p.known);
            let pinged_lately = p.pinged.is_some_and(|t| now.since(t) < half / 2);
            if now.since(last) >= half && !pinged_lately {
                due.push((last, name.clone()));
            }
        }
        due.sort();
        due.truncate(MAX_PINGS);
        for (_, name) in &due {
            self.peer(now, name).pinged = Some(now);
        }
        due.into_iter().map(|(_, n)| n).collect()
    }

    /// The live peers known for a whole window and not heard directly within it, by name.
    pub fn unheard(&self, now: Time) -> Vec<NodeName> {
        self.peers
            .iter()
            .filter(|(_, p)| now.since(p.known) >= WINDOW)
            .filter(|(_, p)| p.heard.is_none_or(|t| now.since(t) >= WINDOW))
            .map(|(name, _)| name.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: u64) -> Time {
        Time(1_000_000 + s * 1000)
    }

    #[test]
    fn a_peer_never_heard_is_pinged_after_half_a_window_and_unheard_after_a_whole_one() {
        let (a, b) = (NodeName::from("a"), NodeName::from("b"));
        let live = [a.clone(), b.clone()];
        let mut r = Reach::default();
        assert!(r.due(t(0), &live).is_empty());
        r.heard(t(10), &a);
        assert!(r.due(t(59), &live).is_empty());
        assert_eq!(r.due(t(60), &live), std::slice::from_ref(&b));
        // Not again at once; `a` (heard at 10) is due at 70.
        assert!(r.due(t(61), &live).is_empty());
        assert_eq!(r.due(t(70), &live), std::slice::from_ref(&a));
        assert!(r.unheard(t(119)).is_empty());
        assert_eq!(r.unheard(t(120)), std::slice::from_ref(&b));
        r.heard(t(121), &b);
        assert!(r.unheard(t(121)).is_empty());
        // `a` last heard at 10: unheard from 130.
        assert_eq!(r.unheard(t(130)), std::slice::from_ref(&a));
        // Gone from the live list: forgotten.
        r.due(t(131), std::slice::from_ref(&b));
        assert!(r.unheard(t(200)).iter().all(|n| n == &b));
    }

    #[test]
    fn at_most_a_few_pings_go_per_round_the_longest_silent_first() {
        let live: Vec<NodeName> = (0..10)
            .map(|i| NodeName::from(format!("n{i}").as_str()))
            .collect();
        let mut r = Reach::default();
        r.due(t(0), &live);
        r.heard(t(5), &live[0]);
        let due = r.due(t(200), &live);
        assert_eq!(due.len(), MAX_PINGS);
        assert!(!due.contains(&live[0]));
    }
}
