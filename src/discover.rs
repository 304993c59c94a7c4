//! Hosts that join by themselves (`gossip.discover`): a node that knows no live member sends a
//! *seek* beacon to its LAN segment (a multicast group, or a broadcast address), sealed with
//! the cluster's key for anyone of the cluster; every node with discovery on that opens it
//! answers *here* with its gossip address, and the seeker joins through the first answer, as
//! through a seed. A beacon of another cluster (another key, another cluster name) does not
//! open, so it is neither answered nor followed.
//!
//! This is the sans-IO part: when to seek, whom to answer, what to join. The socket is in
//! `transport::discover`.
//!
//! Rates: a lone node seeks every second for its first [`FAST_SEEKS`] beacons, then every
//! [`SLOW_SEEK`], and stops once it knows a live member; a node answers one source at most
//! once per [`ANSWER_GAP`] and at most [`MAX_ANSWERS`] sources per second, so a flood of
//! beacons (even sealed ones, from a key holder) costs it a bounded trickle of answers.

use crate::types::{NodeName, Time};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// The first bytes of a beacon's payload, inside the seal.
pub const MAGIC: [u8; 4] = *b"NBD\x01";
/// A lone node's first beacons go this often ...
pub const FAST_SEEK: Duration = Duration::from_secs(1);
/// ... this many of them ...
pub const FAST_SEEKS: u32 = 10;
/// ... and then this often.
pub const SLOW_SEEK: Duration = Duration::from_secs(10);
/// One answer per source at most this often.
pub const ANSWER_GAP: Duration = Duration::from_secs(1);
/// At most this many answers per second.
pub const MAX_ANSWERS: u32 = 20;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Beacon {
    /// "I know no one: who is there?", from `name`, whose gossip port is `gossip`.
    #[serde(rename = "s")]
    Seek { name: NodeName, gossip: SocketAddr },
    /// "Here: join through `gossip`."
    #[serde(rename = "h")]
    Here { name: NodeName, gossip: SocketAddr },
}

impl Beacon {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        // A beacon is a name and an address: it always encodes.
        out.extend(rmp_serde::to_vec(self).unwrap_or_default());
        out
    }

    /// `None` for anything that is not a whole beacon.
    pub fn decode(bytes: &[u8]) -> Option<Beacon> {
        let body = bytes.strip_prefix(&MAGIC)?;
        let mut reader = body;
        let beacon: Beacon = rmp_serde::from_read(&mut reader).ok()?;
        reader.is_empty().then_some(beacon)
    }
}

/// What to do with a beacon received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send `beacon` back to `to` (the seeker's discovery socket).
    Answer {
        to: SocketAddr,
        beacon: Beacon,
    },
    /// A member of the cluster is at this gossip address: join through it if still alone.
    Join(SocketAddr),
    Nothing,
}

#[derive(Clone, Debug)]
pub struct Discovery {
    me: NodeName,
    gossip: SocketAddr,
    next_seek: Option<Time>,
    seeks: u32,
    answered: BTreeMap<SocketAddr, Time>,
    /// The second answers are counted in, and how many so far.
    second: (Time, u32),
}

impl Discovery {
    pub fn new(me: NodeName, gossip: SocketAddr) -> Discovery {
        Discovery {
            me,
            gossip,
            next_seek: None,
            seeks: 0,
            answered: BTreeMap::new(),
            second: (Time::ZERO, 0),
        }
    }

    /// The seek beacon to send now, if any: while `alone` (no live member known).
    pub fn poll(&mut self, now: Time, alone: bool) -> Option<Beacon> {
        if !alone {
            self.next_seek = None;
            self.seeks = 0;
            return None;
        }
        if self.next_seek.is_some_and(|at| now < at) {
            return None;
        }
        self.seeks += 1;
        let gap = if self.seeks < FAST_SEEKS {
            FAST_SEEK
        } else {
            SLOW_SEEK
        };
        self.next_seek = Some(now + gap);
        Some(Beacon::Seek {
            name: self.me.clone(),
            gossip: self.gossip,
        })
    }

    /// A beacon from `from` (the sender's discovery socket) that opened with the cluster's key.
    pub fn receive(&mut self, now: Time, from: SocketAddr, beacon: Beacon) -> Action {
        match beacon {
            Beacon::Seek { name, .. } if name == self.me => Action::Nothing,
            Beacon::Seek { .. } => {
                self.answered.retain(|_, at| now.since(*at) < ANSWER_GAP);
                if self.answered.contains_key(&from) {
                    return Action::Nothing;
                }
                if now.since(self.second.0) >= Duration::from_secs(1) {
                    self.second = (now, 0);
                }
                if self.second.1 >= MAX_ANSWERS {
                    return Action::Nothing;
                }
                self.second.1 += 1;
                self.answered.insert(from, now);
                Action::Answer {
                    to: from,
                    beacon: Beacon::Here {
                        name: self.me.clone(),
                        gossip: self.gossip,
                    },
                }
            }
            Beacon::Here { name, .. } if name == self.me => Action::Nothing,
            Beacon::Here { gossip, .. } if gossip == self.gossip => Action::Nothing,
            Beacon::Here { gossip, .. } => Action::Join(gossip),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> Time {
        Time(1_000_000 + ms)
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 77, 0, 1], port))
    }

    #[test]
    fn a_lone_node_seeks_every_second_then_every_ten_and_stops_once_it_has_company() {
        let mut d = Discovery::new(NodeName::from("a"), addr(7710));
        let mut sent = Vec::new();
        for ms in (0..30_000).step_by(100) {
            if d.poll(t(ms), true).is_some() {
                sent.push(ms);
            }
        }
        assert_eq!(&sent[..3], [0, 1_000, 2_000]);
        assert_eq!(sent[(FAST_SEEKS - 1) as usize], 9_000);
        assert_eq!(sent[FAST_SEEKS as usize], 19_000);
        assert_eq!(sent.len(), FAST_SEEKS as usize + 2);
        assert_eq!(d.poll(t(40_000), false), None);
        // Alone again later: fast again.
        assert!(d.poll(t(50_000), true).is_some());
        assert!(d.poll(t(51_000), true).is_some());
    }

    #[test]
    fn a_seek_is_answered_once_per_source_per_second_and_twenty_sources_per_second() {
        let mut d = Discovery::new(NodeName::from("a"), addr(7710));
        let seek = |n: &str| Beacon::Seek {
            name: NodeName::from(n),
            gossip: addr(1),
        };
        assert!(matches!(
            d.receive(t(0), addr(1), seek("b")),
            Action::Answer { to, beacon: Beacon::Here { .. } } if to == addr(1)
        ));
        assert_eq!(d.receive(t(10), addr(1), seek("b")), Action::Nothing);
        assert_ne!(d.receive(t(1_000), addr(1), seek("b")), Action::Nothing);
        assert_eq!(
            d.receive(t(1_100), addr(2), seek("a")),
            Action::Nothing,
            "its own"
        );
        let answered = (0..50)
            .filter(|i| d.receive(t(2_000), addr(100 + i), seek("x")) != Action::Nothing)
            .count();
        assert_eq!(answered, MAX_ANSWERS as usize);
    }

    #[test]
    fn an_answer_is_joined_through_unless_it_is_this_node() {
        let mut d = Discovery::new(NodeName::from("a"), addr(7710));
        let here = |n: &str, port| Beacon::Here {
            name: NodeName::from(n),
            gossip: addr(port),
        };
        assert_eq!(
            d.receive(t(0), addr(9), here("b", 7720)),
            Action::Join(addr(7720))
        );
        assert_eq!(d.receive(t(0), addr(9), here("a", 7720)), Action::Nothing);
        assert_eq!(d.receive(t(0), addr(9), here("c", 7710)), Action::Nothing);
    }

    #[test]
    fn beacons_round_trip_and_anything_else_is_refused() {
        let b = Beacon::Seek {
            name: NodeName::from("mythbox"),
            gossip: addr(7710),
        };
        assert_eq!(Beacon::decode(&b.encode()), Some(b.clone()));
        let mut longer = b.encode();
        longer.push(0);
        assert_eq!(Beacon::decode(&longer), None);
        assert_eq!(Beacon::decode(b"NBD\x02xx"), None);
        assert_eq!(Beacon::decode(&[]), None);
    }
}
