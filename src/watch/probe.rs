//! The datagrams of one probe: a direct ping, or a direct ping again plus ping-requests to
//! a few live helpers (SWIM's indirect probe). Pure and seeded, so the daemon's watchers and
//! the simulator send exactly the same messages.
//!
//! A watcher's probes carry sequence numbers with the high bit set: the gossip core numbers
//! the pings it relays for others without it, so an answer to one can never be taken for an
//! answer to the other. The prober remembers the numbers of its last [`REMEMBERED`] probes,
//! and only an answer carrying one of them counts ([`Prober::sent`]): an answer replayed
//! from long ago, or to a probe never sent, says nothing about the peer now.

use super::core::Probe;
use crate::types::NodeName;
use crate::wire::Message;
use rand::rngs::SmallRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use std::net::SocketAddr;

/// The bit that marks a watcher's sequence numbers.
pub const WATCHER_SEQ: u32 = 1 << 31;
/// How many of its last probes' numbers a prober accepts answers to: a probe and its
/// indirect retry, with room for answers that arrive late.
pub const REMEMBERED: usize = 16;

/// A member as a probe needs it: its name and where it listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contact {
    pub name: NodeName,
    pub addr: SocketAddr,
}

/// Builds the messages of a watcher's probes.
#[derive(Clone, Debug)]
pub struct Prober {
    seq: u32,
    helpers: usize,
    rng: SmallRng,
    /// The numbers of the last [`REMEMBERED`] probes, newest last.
    recent: std::collections::VecDeque<u32>,
}

impl Prober {
    /// `helpers`: how many others an indirect probe asks (SWIM's k).
    pub fn new(seed: u64, helpers: usize) -> Prober {
        let mut rng = SmallRng::seed_from_u64(seed);
        Prober {
            seq: rng.random(),
            helpers,
            rng,
            recent: std::collections::VecDeque::with_capacity(REMEMBERED),
        }
    }

    /// True if `seq` numbers one of the last probes this prober sent: only an answer to one
    /// of those is evidence that the peer is alive.
    pub fn sent(&self, seq: u32) -> bool {
        self.recent.contains(&seq)
    }

    /// What to send for `probe` of `peer`, and to whom (address and name); `live` are the
    /// live members the helpers are drawn from (the peer itself and duplicates are skipped).
    pub fn messages(
        &mut self,
        probe: Probe,
        peer: &Contact,
        live: &[Contact],
    ) -> Vec<(SocketAddr, NodeName, Message)> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq | WATCHER_SEQ;
        if self.recent.len() == REMEMBERED {
            self.recent.pop_front();
        }
        self.recent.push_back(seq);
        let mut out = vec![(peer.addr, peer.name.clone(), Message::Ping { seq })];
        if probe == Probe::Indirect {
            let others: Vec<&Contact> = live.iter().filter(|c| c.name != peer.name).collect();
            let mut picked: Vec<&Contact> = Vec::with_capacity(self.helpers);
            for helper in others.choose_multiple(&mut self.rng, self.helpers) {
                if !picked.iter().any(|p| p.name == helper.name) {
                    picked.push(helper);
                }
            }
            out.extend(picked.into_iter().map(|helper| {
                (
                    helper.addr,
                    helper.name.clone(),
                    Message::PingReq {
                        seq,
                        target: peer.name.clone(),
                        target_addr: peer.addr,
                    },
                )
            }));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact(i: u16) -> Contact {
        Contact {
            name: NodeName::from(format!("n{i}").as_str()),
            addr: SocketAddr::from(([127, 0, 0, 1], 7000 + i)),
        }
    }

    #[test]
    fn a_direct_probe_is_one_ping_to_the_peer() {
        let mut p = Prober::new(1, 3);
        let live: Vec<Contact> = (0..5).map(contact).collect();
        let out = p.messages(Probe::Direct, &contact(0), &live);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].0, &out[0].1), (contact(0).addr, &contact(0).name));
        assert!(matches!(out[0].2, Message::Ping { seq } if seq & WATCHER_SEQ != 0));
    }

    #[test]
    fn an_indirect_probe_pings_again_and_asks_k_distinct_others() {
        let mut p = Prober::new(7, 3);
        let live: Vec<Contact> = (0..6).map(contact).collect();
        let out = p.messages(Probe::Indirect, &contact(2), &live);
        assert_eq!(out.len(), 4);
        let Message::Ping { seq } = out[0].2 else {
            panic!("first a direct ping: {:?}", out[0]);
        };
        assert_eq!(out[0].0, contact(2).addr);
        let mut helpers: Vec<SocketAddr> = Vec::new();
        for (to, name, msg) in &out[1..] {
            assert!(live.iter().any(|c| c.addr == *to && c.name == *name));
            assert_eq!(
                *msg,
                Message::PingReq {
                    seq,
                    target: contact(2).name,
                    target_addr: contact(2).addr,
                }
            );
            assert_ne!(*to, contact(2).addr, "the peer is not its own helper");
            assert!(!helpers.contains(to), "helpers are distinct");
            helpers.push(*to);
        }
    }

    #[test]
    fn with_fewer_live_members_than_k_every_other_one_helps() {
        let mut p = Prober::new(3, 3);
        let live = vec![contact(0), contact(1), contact(1)];
        let out = p.messages(Probe::Indirect, &contact(0), &live);
        assert_eq!(out.len(), 2, "one ping and one helper: {out:?}");
        assert_eq!(out[1].0, contact(1).addr);
    }

    #[test]
    fn each_probe_has_a_new_sequence_number() {
        let mut p = Prober::new(9, 0);
        let a = p.messages(Probe::Direct, &contact(0), &[]);
        let b = p.messages(Probe::Direct, &contact(0), &[]);
        assert_ne!(a[0].2, b[0].2);
    }

    #[test]
    fn only_the_numbers_of_its_last_probes_count_as_answers() {
        let mut p = Prober::new(11, 2);
        let live: Vec<Contact> = (0..4).map(contact).collect();
        let seq_of = |out: &[(SocketAddr, NodeName, Message)]| match out[0].2 {
            Message::Ping { seq } => seq,
            ref other => panic!("{other:?}"),
        };
        let first = seq_of(&p.messages(Probe::Indirect, &contact(0), &live));
        assert!(p.sent(first));
        assert!(!p.sent(first.wrapping_add(1)), "a probe not sent yet");
        assert!(!p.sent(first & !WATCHER_SEQ), "a relayed ping's number");
        for _ in 1..REMEMBERED {
            p.messages(Probe::Direct, &contact(0), &live);
        }
        assert!(p.sent(first), "still among the last {REMEMBERED}");
        let last = seq_of(&p.messages(Probe::Direct, &contact(0), &live));
        assert!(p.sent(last));
        assert!(!p.sent(first), "forgotten after {REMEMBERED} newer probes");
    }
}
