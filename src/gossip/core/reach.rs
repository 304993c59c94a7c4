//! Who this node hears directly: for each live peer, when a datagram from the peer itself
//! (not a relayed beat) last arrived. Gossip exchanges bring most of them; a peer not heard
//! directly for half of [`WINDOW`] gets a ping, so a peer that can be reached is heard within
//! the window even in a large cluster, where a random exchange with one given peer can be
//! minutes apart. A peer known for a whole window and not heard in it is *unheard*; every
//! node gossips its unheard peers (`unheard`), and the readers build the matrix of who hears
//! whom (`nbwatch reachability`), which shows one-way and partial cuts that leave every
//! verdict alive.
//!
//! The window is long on purpose: the matrix is for cuts that last. It grows with the
//! cluster ([`window`]) so that chance exchanges meet about 95 % of the peers within it and
//! the pings stay a few per minute per node at any size, instead of growing with N.

use crate::types::{NodeName, Time};
use std::collections::BTreeMap;
use std::time::Duration;

/// A peer not heard directly for this long (at least) is unheard.
pub const WINDOW: Duration = Duration::from_secs(120);

/// The window for `live` peers gossiping `fanout` times an `interval`: at least [`WINDOW`],
/// and long enough for three expected exchanges with each peer (each node starts `fanout`
/// exchanges an interval and answers as many, so a given pair meets about `2 × fanout / live`
/// times an interval).
pub fn window(live: usize, interval: Duration, fanout: usize) -> Duration {
    let rounds = 3.0 * live as f64 / (2.0 * fanout.max(1) as f64);
    WINDOW.max(interval.mul_f64(rounds))
}
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
    /// The last round it was live in.
    live: Time,
}

impl Reach {
    /// A datagram from `peer` itself arrived.
    pub fn heard(&mut self, now: Time, peer: &NodeName) {
        self.peer(now, peer).heard = Some(now);
    }

    fn peer(&mut self, now: Time, peer: &NodeName) -> &mut Peer {
        // Looked up first: no allocation for a peer already known (every datagram comes here).
        if !self.peers.contains_key(peer) {
            let new = Peer {
                known: now,
                heard: None,
                pinged: None,
                live: now,
            };
            self.peers.insert(peer.clone(), new);
        }
        self.peers.get_mut(peer).expect("just inserted")
    }

    /// The live peers to ping now for reachability (the least recently heard first), and
    /// the ones `live` no longer lists forgotten.
    pub fn due<'a>(
        &mut self,
        now: Time,
        live: impl IntoIterator<Item = &'a NodeName>,
        window: Duration,
    ) -> Vec<NodeName> {
        let half = window / 2;
        let mut due: Vec<(Time, NodeName)> = Vec::new();
        for name in live {
            let p = self.peer(now, name);
            p.live = now;
            let p = *p;
            let last = p.heard.unwrap_or(p.known);
            let pinged_lately = p.pinged.is_some_and(|t| now.since(t) < half / 2);
            if now.since(last) >= half && !pinged_lately {
                due.push((last, name.clone()));
            }
        }
        self.peers.retain(|_, p| p.live == now);
        due.sort();
        due.truncate(MAX_PINGS);
        for (_, name) in &due {
            self.peer(now, name).pinged = Some(now);
        }
        due.into_iter().map(|(_, n)| n).collect()
    }

    /// The live peers known for a whole window and not heard directly within it, by name.
    pub fn unheard(&self, now: Time, window: Duration) -> Vec<NodeName> {
        self.peers
            .iter()
            .filter(|(_, p)| now.since(p.known) >= window)
            .filter(|(_, p)| p.heard.is_none_or(|t| now.since(t) >= window))
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
        assert!(r.due(t(0), &live, WINDOW).is_empty());
        r.heard(t(10), &a);
        assert!(r.due(t(59), &live, WINDOW).is_empty());
        assert_eq!(r.due(t(60), &live, WINDOW), std::slice::from_ref(&b));
        // Not again at once; `a` (heard at 10) is due at 70.
        assert!(r.due(t(61), &live, WINDOW).is_empty());
        assert_eq!(r.due(t(70), &live, WINDOW), std::slice::from_ref(&a));
        assert!(r.unheard(t(119), WINDOW).is_empty());
        assert_eq!(r.unheard(t(120), WINDOW), std::slice::from_ref(&b));
        r.heard(t(121), &b);
        assert!(r.unheard(t(121), WINDOW).is_empty());
        // `a` last heard at 10: unheard from 130.
        assert_eq!(r.unheard(t(130), WINDOW), std::slice::from_ref(&a));
        // Gone from the live list: forgotten.
        r.due(t(131), [&b], WINDOW);
        assert!(r.unheard(t(200), WINDOW).iter().all(|n| n == &b));
    }

    #[test]
    fn at_most_a_few_pings_go_per_round_the_longest_silent_first() {
        let live: Vec<NodeName> = (0..10)
            .map(|i| NodeName::from(format!("n{i}").as_str()))
            .collect();
        let mut r = Reach::default();
        r.due(t(0), &live, WINDOW);
        r.heard(t(5), &live[0]);
        let due = r.due(t(200), &live, WINDOW);
        assert_eq!(due.len(), MAX_PINGS);
        assert!(!due.contains(&live[0]));
    }

    #[test]
    fn the_window_grows_with_the_cluster_past_its_floor() {
        let s = Duration::from_secs(1);
        assert_eq!(window(6, s, 2), WINDOW);
        assert_eq!(window(128, s, 2), WINDOW);
        assert_eq!(window(1000, s, 2), Duration::from_secs(750));
    }
}
