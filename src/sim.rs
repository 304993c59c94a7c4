//! A seeded, in-process network simulator that drives the real protocol cores (gossip and one
//! watcher per peer, wired exactly as the actors wire them) in virtual time.
//!
//! It models latency, random loss, one-way blocks between nodes (partitions), crashes, hangs
//! (a stopped process: datagrams to it are lost, its timers fire late) and restarts. Every
//! datagram goes through the real encoder, so byte counts are real too. Everything random
//! comes from one seed, which the tests print so any failure can be replayed.

use crate::events::ClusterEvent;
use crate::gossip::KvError;
use crate::gossip::core::{Core, Input, Output, Settings, Status};
use crate::types::{Incarnation, NodeName, Time};
use crate::watch::{self, PeerWatch, Prober};
use crate::wire::{self, Envelope, Frame};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

/// Virtual time starts here (a plausible wall clock, so heartbeats look like real ones).
pub const EPOCH: Time = Time(1_800_000_000_000);
/// How often [`Sim::run_until`] checks its condition.
const CHECK_EVERY: Duration = Duration::from_millis(50);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    Up,
    Crashed,
    Hung,
}

pub struct SimNode {
    pub name: NodeName,
    pub addr: SocketAddr,
    pub core: Core,
    watchers: BTreeMap<NodeName, PeerWatch>,
    /// Builds the watchers' probes, as each watcher actor does.
    prober: Prober,
    pub health: Health,
    pub incarnation: Incarnation,
    /// Membership events this node emitted, with their time.
    pub events: Vec<(Time, ClusterEvent)>,
    /// When this node first saw each traced (node, key, value).
    pub traced: HashMap<(NodeName, String, String), Time>,
    pub fatal: Option<String>,
    /// The peers whose suspicion by this node proved wrong (`Output::Misjudged`), in order.
    pub misjudged: Vec<NodeName>,
    pub bytes_sent: u64,
    pub datagrams_sent: u64,
    /// Of `bytes_sent`: the watchers' probes (the core counts the rest by kind).
    pub probe_bytes: u64,
    /// When this node's next tick is due, as its gossip actor arms its alarm.
    armed: Option<Time>,
    /// When this node last made its zone's summary (see `crate::zone`), as its gossip actor
    /// does with each view.
    summarized: Option<Time>,
}

#[derive(Debug)]
enum Ev {
    /// Node `node`'s alarm armed for `at` (stale if it was armed again since).
    Due { node: usize, at: Time },
    Deliver {
        to: usize,
        from: SocketAddr,
        bytes: Vec<u8>,
    },
    Wake {
        node: usize,
        peer: NodeName,
        token: watch::TimerToken,
    },
    JoinRequest {
        seed: usize,
        from: usize,
        request: Frame,
    },
    JoinAnswer {
        to: usize,
        seed: SocketAddr,
        answer: Result<Frame, wire::ExchangeError>,
    },
}

pub struct Sim {
    pub seed: u64,
    pub now: Time,
    pub nodes: Vec<SimNode>,
    rng: SmallRng,
    queue: BinaryHeap<Reverse<(Time, u64)>>,
    pending: HashMap<u64, Ev>,
    counter: u64,
    by_addr: HashMap<SocketAddr, usize>,
    /// (from, to) pairs whose datagrams are dropped.
    blocked: BTreeSet<(usize, usize)>,
    pub loss: f64,
    pub latency: (Duration, Duration),
    pub settings: Settings,
    /// Keys whose arrival times are recorded in `SimNode::traced`.
    pub trace_prefix: Option<String>,
    /// Events not kept (state changes are many).
    pub keep_state_events: bool,
    hung_wakes: Vec<(usize, NodeName, watch::TimerToken)>,
    /// When set, datagrams sent and their bytes are counted by kind of message (`wire::Message::kind`: `ping`, `syn`...), for the
    /// benchmarks' breakdown (decoding every datagram once more costs time).
    pub tally: Option<BTreeMap<&'static str, (u64, u64)>>,
    /// When set, every round's digest sent (a `Syn` that is not news): when, from and to
    /// which node (indices).
    pub rounds: Option<Vec<(Time, usize, usize)>>,
    /// Watchers made so far: each numbers its timer tokens from its own base.
    watcher_lives: u64,
    /// The zone of each node by index (`node.zone`); a node past its end is in the default
    /// zone.
    pub zones: Vec<String>,
    /// Digits of a node's number in its name, zero-padded (0: as many as it has, `n7`): with
    /// a fixed width the names are as long at every size, as hostnames are.
    pub name_width: usize,
}

impl Sim {
    pub fn new(seed: u64, settings: Settings) -> Sim {
        Sim {
            seed,
            now: EPOCH,
            nodes: Vec::new(),
            rng: SmallRng::seed_from_u64(seed),
            queue: BinaryHeap::new(),
            pending: HashMap::new(),
            counter: 0,
            by_addr: HashMap::new(),
            blocked: BTreeSet::new(),
            loss: 0.0,
            latency: (Duration::from_micros(200), Duration::from_millis(5)),
            settings,
            trace_prefix: None,
            keep_state_events: false,
            hung_wakes: Vec::new(),
            tally: None,
            rounds: None,
            watcher_lives: 0,
            zones: Vec::new(),
            name_width: 0,
        }
    }

    /// `zones` zones of `per_zone` nodes each (node `i` in zone `z<i % zones>`), every node
    /// joining through node 0, all converged within their zones.
    pub fn zoned(seed: u64, zones: usize, per_zone: usize, settings: Settings) -> Sim {
        Sim::zoned_named(seed, zones, per_zone, settings, 0)
    }

    /// [`Sim::zoned`], the nodes named with `name_width` digits (see [`Sim::name_width`]).
    pub fn zoned_named(
        seed: u64,
        zones: usize,
        per_zone: usize,
        settings: Settings,
        name_width: usize,
    ) -> Sim {
        let mut sim = Sim::new(seed, settings);
        sim.name_width = name_width;
        let n = zones * per_zone;
        sim.zones = (0..n).map(|i| format!("z{}", i % zones)).collect();
        // A joiner's answer holds one zone, not the cluster: joins may come faster.
        let spacing = Duration::from_millis(if n <= 256 { 20 } else { 10 });
        sim.join(n, spacing, &format!("{zones} zones of {per_zone}"))
    }

    /// The zone of node `i`.
    pub fn zone(&self, i: usize) -> &str {
        (self.zones.get(i).map(String::as_str)).unwrap_or(crate::keys::zone::DEFAULT_ZONE)
    }

    /// Whether node `by` reads zone `zone` as reachable, as its last zone event said
    /// (`None`: it has read nothing of such a zone).
    pub fn zone_reachable(&self, by: usize, zone: &str) -> Option<bool> {
        self.nodes[by].core.zone_reachability().get(zone).copied()
    }

    /// A cluster of `n` nodes named `n0`, `n1`, …, each joining through `n0`, all converged.
    pub fn cluster(seed: u64, n: usize, settings: Settings) -> Sim {
        // Large clusters join at a pace a real roll-out would have, not all in one second.
        let spacing = Duration::from_millis(if n <= 256 { 20 } else { 50 });
        Sim::new(seed, settings).join(n, spacing, &format!("a cluster of {n}"))
    }

    /// Adds `n` nodes, `spacing` apart, each joining through the first, and runs until they
    /// have converged (panics, naming the seed and `what`, after 300 s).
    fn join(mut self, n: usize, spacing: Duration, what: &str) -> Sim {
        self.add_node();
        for _ in 1..n {
            self.add_node();
            self.run_for(spacing);
        }
        let deadline = self.now + Duration::from_secs(300);
        let ok = self.run_until(deadline, |s| s.converged());
        assert!(
            ok,
            "seed {}: {what} did not converge in 300 s:\n{}",
            self.seed,
            self.describe()
        );
        self
    }

    /// The name of node `i` in a simulation whose names have no fixed width (the default).
    pub fn name(i: usize) -> NodeName {
        name_of(i, 0)
    }

    fn addr_of(i: usize) -> SocketAddr {
        let ip = Ipv4Addr::new(10, 77, (i / 250) as u8, (i % 250 + 1) as u8);
        SocketAddr::V4(SocketAddrV4::new(ip, 7710))
    }

    /// Adds a node that joins through node 0 (or founds the cluster if it is the first).
    pub fn add_node(&mut self) -> usize {
        let i = self.nodes.len();
        self.add_named(i, name_of(i, self.name_width))
    }

    /// Adds a node at a new address with the name of node `of`, joining through node 0.
    pub fn add_duplicate_of(&mut self, of: usize) -> usize {
        let i = self.nodes.len();
        let name = self.nodes[of].name.clone();
        self.add_named(i, name)
    }

    fn add_named(&mut self, i: usize, name: NodeName) -> usize {
        let seeds = if i == 0 {
            vec![]
        } else {
            vec![Self::addr_of(0)]
        };
        let seed = self.seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let settings = Settings {
            zone: self.zone(i).to_string(),
            ..self.settings.clone()
        };
        let core = Core::new(
            name.clone(),
            Self::addr_of(i),
            Incarnation(1),
            seeds,
            settings,
            seed,
        );
        self.nodes.push(SimNode {
            name,
            addr: Self::addr_of(i),
            core,
            watchers: BTreeMap::new(),
            prober: Prober::new(seed.rotate_left(17), self.settings.indirect_probes),
            health: Health::Up,
            incarnation: Incarnation(1),
            events: Vec::new(),
            traced: HashMap::new(),
            fatal: None,
            misjudged: Vec::new(),
            bytes_sent: 0,
            datagrams_sent: 0,
            probe_bytes: 0,
            armed: None,
            summarized: None,
        });
        self.by_addr.insert(Self::addr_of(i), i);
        self.feed(i, Input::Tick);
        i
    }

    fn schedule(&mut self, at: Time, ev: Ev) {
        self.counter += 1;
        self.queue.push(Reverse((at, self.counter)));
        self.pending.insert(self.counter, ev);
    }

    fn latency(&mut self) -> Duration {
        let (lo, hi) = (
            self.latency.0.as_micros() as u64,
            self.latency.1.as_micros() as u64,
        );
        Duration::from_micros(if hi > lo {
            self.rng.random_range(lo..hi)
        } else {
            lo
        })
    }

    /// Runs until virtual time `until`.
    pub fn run_until_time(&mut self, until: Time) {
        while let Some(Reverse((at, id))) = self.queue.peek().copied() {
            if at > until {
                break;
            }
            self.queue.pop();
            self.now = at;
            if let Some(ev) = self.pending.remove(&id) {
                self.process(ev);
            }
        }
        self.now = until;
    }

    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until_time(until);
    }

    /// Runs until `cond` holds (checked every 50 ms of virtual time) or `deadline` passes.
    pub fn run_until(&mut self, deadline: Time, mut cond: impl FnMut(&Sim) -> bool) -> bool {
        loop {
            if cond(self) {
                return true;
            }
            if self.now >= deadline {
                return false;
            }
            let next = (self.now + CHECK_EVERY).min(deadline);
            self.run_until_time(next);
        }
    }

    fn process(&mut self, ev: Ev) {
        match ev {
            Ev::Due { node, at } => {
                if self.nodes[node].armed != Some(at) {
                    return;
                }
                self.nodes[node].armed = None;
                // A hung node ticks when it resumes; a crashed one when it restarts.
                if self.nodes[node].health == Health::Up {
                    self.summarize(node);
                    self.feed(node, Input::Tick);
                }
            }
            Ev::Deliver { to, from, bytes } => {
                if self.nodes[to].health == Health::Up {
                    self.feed(to, Input::Datagram { from, bytes });
                }
            }
            Ev::Wake { node, peer, token } => match self.nodes[node].health {
                Health::Up => self.watch_input(node, peer, watch::Input::Wake(token)),
                Health::Hung => self.hung_wakes.push((node, peer, token)),
                Health::Crashed => {}
            },
            Ev::JoinRequest {
                seed,
                from,
                request,
            } => {
                let answer = if self.nodes[seed].health == Health::Up {
                    match request {
                        Frame::JoinRequest {
                            name,
                            incarnation,
                            addr,
                        } => {
                            let now = self.now;
                            Ok(self.nodes[seed]
                                .core
                                .answer_join(now, &name, incarnation, addr))
                        }
                        _ => Err(wire::ExchangeError::NotAJoinRequest),
                    }
                } else {
                    Err(wire::ExchangeError::TimedOut)
                };
                let at = self.now + self.latency();
                let seed_addr = self.nodes[seed].addr;
                self.schedule(
                    at,
                    Ev::JoinAnswer {
                        to: from,
                        seed: seed_addr,
                        answer,
                    },
                );
            }
            Ev::JoinAnswer { to, seed, answer } => {
                if self.nodes[to].health == Health::Up {
                    self.feed(to, Input::JoinAnswer { seed, answer });
                }
            }
        }
    }

    fn feed(&mut self, i: usize, input: Input) {
        let now = self.now;
        let out = self.nodes[i].core.handle(now, input);
        self.carry_out(i, out);
    }

    fn watch_input(&mut self, i: usize, peer: NodeName, input: watch::Input) {
        let now = self.now;
        let Some(w) = self.nodes[i].watchers.get_mut(&peer) else {
            return;
        };
        let outs = w.handle(now, input);
        self.carry_out_watch(i, peer, outs);
    }

    fn carry_out_watch(&mut self, i: usize, peer: NodeName, outs: Vec<watch::Output>) {
        let more = self.watch_outputs(i, &peer, outs);
        self.carry_out(i, more);
    }

    /// Carries out a watcher's outputs as its actor does: wakes are scheduled, probes go
    /// straight out, and verdicts go to the core (whose outputs are returned).
    fn watch_outputs(
        &mut self,
        i: usize,
        peer: &NodeName,
        outs: Vec<watch::Output>,
    ) -> Vec<Output> {
        let now = self.now;
        let mut more = Vec::new();
        for o in outs {
            match o {
                watch::Output::WakeAt { at, token } => self.schedule(
                    at.max(now),
                    Ev::Wake {
                        node: i,
                        peer: peer.clone(),
                        token,
                    },
                ),
                watch::Output::Probe(probe) => self.probe(i, peer, probe),
                watch::Output::Verdict(verdict) => more.extend(self.nodes[i].core.handle(
                    now,
                    Input::Verdict {
                        peer: peer.clone(),
                        verdict,
                    },
                )),
            }
        }
        more
    }

    /// Node `i`'s watcher of `peer` probes it.
    fn probe(&mut self, i: usize, peer: &NodeName, probe: watch::Probe) {
        let node = &mut self.nodes[i];
        let Some(contact) = node.core.contact(peer) else {
            return;
        };
        let live = node.core.live_contacts();
        let messages = node.prober.messages(probe, &contact, &live);
        for (to, _, msg) in messages {
            let node = &self.nodes[i];
            let env = Envelope::at(node.name.clone(), node.core.incarnation(), self.now, msg);
            match wire::encode(&env) {
                Ok(bytes) => {
                    self.nodes[i].probe_bytes += bytes.len() as u64;
                    self.transmit(i, to, bytes);
                }
                Err(e) => panic!("a probe does not encode: {e}"),
            }
        }
    }

    /// Node `i` sends `bytes` to `to`, through the simulated network.
    fn transmit(&mut self, i: usize, to: SocketAddr, bytes: Vec<u8>) {
        self.nodes[i].bytes_sent += bytes.len() as u64;
        self.nodes[i].datagrams_sent += 1;
        // Decoding every datagram once more costs time: only when counting.
        let kind = (self.tally.is_some() || self.rounds.is_some())
            .then(|| wire::decode(&bytes).map_or("undecodable", |env| env.msg.kind()));
        if let (Some(tally), Some(kind)) = (&mut self.tally, kind) {
            let (count, sent) = tally.entry(kind).or_default();
            *count += 1;
            *sent += bytes.len() as u64;
        }
        let Some(&j) = self.by_addr.get(&to) else {
            return;
        };
        if let (Some(rounds), Some("syn")) = (&mut self.rounds, kind) {
            rounds.push((self.now, i, j));
        }
        if self.blocked.contains(&(i, j)) || self.rng.random_bool(self.loss) {
            return;
        }
        let at = self.now + self.latency();
        let from = self.nodes[i].addr;
        self.schedule(at, Ev::Deliver { to: j, from, bytes });
    }

    /// The zone's publisher makes its zone's summary about once a second, as its gossip actor
    /// does with each new view.
    fn summarize(&mut self, i: usize) {
        let now = self.now;
        let n = &mut self.nodes[i];
        if n.summarized
            .is_some_and(|t| now.since(t) < Duration::from_secs(1))
            || !n.core.wants_summary()
        {
            return;
        }
        n.summarized = Some(now);
        let summary = crate::zone::summarize(&n.core.members(now), now);
        n.core.adopt_summary(now, summary);
    }

    /// After each input, node `i`'s alarm is moved to its core's next deadline, as the gossip
    /// actor does: nodes tick when something is due, not at a fixed rate.
    fn rearm(&mut self, i: usize) {
        let due = self.nodes[i].core.next_deadline().max(self.now);
        if self.nodes[i].armed.is_none_or(|armed| due != armed) {
            self.nodes[i].armed = Some(due);
            self.schedule(due, Ev::Due { node: i, at: due });
        }
    }

    fn carry_out(&mut self, i: usize, outputs: Vec<Output>) {
        let mut work: VecDeque<Output> = outputs.into();
        while let Some(o) = work.pop_front() {
            let now = self.now;
            match o {
                Output::Send { to, bytes, .. } => self.transmit(i, to, bytes),
                Output::Join { seed, request } => {
                    let at = now + self.latency();
                    match self.by_addr.get(&seed).copied() {
                        Some(j)
                            if !self.blocked.contains(&(i, j))
                                && !self.blocked.contains(&(j, i)) =>
                        {
                            self.schedule(
                                at,
                                Ev::JoinRequest {
                                    seed: j,
                                    from: i,
                                    request,
                                },
                            )
                        }
                        _ => self.schedule(
                            now + Duration::from_secs(1),
                            Ev::JoinAnswer {
                                to: i,
                                seed,
                                answer: Err(wire::ExchangeError::TimedOut),
                            },
                        ),
                    }
                }
                Output::WatchStart(peer) => {
                    let settings = self.nodes[i].core.settings().watch.clone();
                    self.watcher_lives += 1;
                    let mut w =
                        PeerWatch::new(now, settings).with_token_base(self.watcher_lives << 32);
                    let outs = w.start(now);
                    self.nodes[i].watchers.insert(peer.clone(), w);
                    work.extend(self.watch_outputs(i, &peer, outs));
                }
                Output::WatchStop(peer) => {
                    self.nodes[i].watchers.remove(&peer);
                }
                Output::ProbeAnswered { peer, seq } => {
                    if !self.nodes[i].prober.sent(seq) {
                        continue;
                    }
                    let Some(w) = self.nodes[i].watchers.get_mut(&peer) else {
                        continue;
                    };
                    let outs = w.handle(now, watch::Input::Alive(watch::Evidence::Answered));
                    work.extend(self.watch_outputs(i, &peer, outs));
                }
                Output::Watch { peer, input } => {
                    let Some(w) = self.nodes[i].watchers.get_mut(&peer) else {
                        continue;
                    };
                    let outs = w.handle(now, input);
                    work.extend(self.watch_outputs(i, &peer, outs));
                }
                Output::Event(e) => self.record(i, e),
                Output::IncarnationChanged(inc) => self.nodes[i].incarnation = inc,
                // Counted; patience is not modelled (the simulated hosts are never starved).
                Output::Misjudged(peer) => self.nodes[i].misjudged.push(peer),
                Output::Fatal(reason) => {
                    self.nodes[i].fatal = Some(reason);
                    self.nodes[i].health = Health::Crashed;
                    return;
                }
            }
        }
        self.rearm(i);
    }

    fn record(&mut self, i: usize, e: ClusterEvent) {
        let now = self.now;
        if let ClusterEvent::StateChanged { node, key, value } = &e {
            if let (Some(prefix), Some(v)) = (&self.trace_prefix, value)
                && key.starts_with(prefix.as_str())
            {
                self.nodes[i]
                    .traced
                    .entry((node.clone(), key.clone(), v.clone()))
                    .or_insert(now);
            }
            if !self.keep_state_events {
                return;
            }
        }
        self.nodes[i].events.push((now, e));
    }

    /// Writes (`Some`) or deletes (`None`) a key of node `i`'s own state, as its actors would.
    pub fn set(&mut self, i: usize, key: &str, value: Option<String>) -> Result<(), KvError> {
        let now = self.now;
        let out = self.nodes[i].core.set(now, key, value)?;
        self.carry_out(i, out);
        Ok(())
    }

    /// An application on node `by` could not reach node `of` (`nbwatch unreachable`).
    pub fn report(&mut self, by: usize, of: usize) {
        if self.is_up(by) {
            let peer = self.nodes[of].name.clone();
            self.feed(by, Input::Report { peer });
        }
    }

    // ----- faults ---------------------------------------------------------------------------

    pub fn crash(&mut self, i: usize) {
        self.nodes[i].health = Health::Crashed;
        self.nodes[i].watchers.clear();
    }

    pub fn hang(&mut self, i: usize) {
        self.nodes[i].health = Health::Hung;
    }

    pub fn resume(&mut self, i: usize) {
        self.nodes[i].health = Health::Up;
        self.rearm(i);
        let wakes: Vec<_> = std::mem::take(&mut self.hung_wakes);
        let now = self.now;
        for (node, peer, token) in wakes {
            if node == i {
                self.schedule(now, Ev::Wake { node, peer, token });
            } else {
                self.hung_wakes.push((node, peer, token));
            }
        }
    }

    /// Restarts a crashed node: a new process, a higher incarnation, joining through `seed`.
    pub fn restart(&mut self, i: usize, seed: usize) {
        let inc = Incarnation(self.nodes[i].incarnation.0 + 1);
        let core_seed = self.seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ inc.0;
        let settings = Settings {
            zone: self.zone(i).to_string(),
            ..self.settings.clone()
        };
        let core = Core::new(
            self.nodes[i].name.clone(),
            self.nodes[i].addr,
            inc,
            vec![Self::addr_of(seed)],
            settings,
            core_seed,
        );
        let n = &mut self.nodes[i];
        n.core = core;
        n.prober = Prober::new(core_seed.rotate_left(17), self.settings.indirect_probes);
        n.incarnation = inc;
        n.watchers.clear();
        n.health = Health::Up;
        n.fatal = None;
        self.feed(i, Input::Tick);
    }

    /// Graceful leave.
    pub fn leave(&mut self, i: usize) {
        self.feed(i, Input::Leave);
        // A leaving node watches nobody any more (as its actor stops its watchers).
        self.nodes[i].watchers.clear();
    }

    /// Drops everything from `a` to `b` (one way).
    pub fn block(&mut self, a: usize, b: usize) {
        self.blocked.insert((a, b));
    }

    /// Splits the nodes into two sides that cannot talk either way.
    pub fn partition(&mut self, side_a: &[usize], side_b: &[usize]) {
        for &a in side_a {
            for &b in side_b {
                self.blocked.insert((a, b));
                self.blocked.insert((b, a));
            }
        }
    }

    pub fn heal(&mut self) {
        self.blocked.clear();
    }

    // ----- observations ---------------------------------------------------------------------

    pub fn is_up(&self, i: usize) -> bool {
        self.nodes[i].health == Health::Up
    }

    /// Status of `of` as node `by` sees it.
    pub fn status(&self, by: usize, of: usize) -> Option<Status> {
        self.nodes[by].core.status(&self.nodes[of].name)
    }

    /// Every up node sees every up node alive.
    pub fn converged(&self) -> bool {
        // Each node sees its own zone (every node, without zones).
        let mut zones: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for i in (0..self.nodes.len()).filter(|&i| self.is_up(i)) {
            zones.entry(self.zone(i)).or_default().push(i);
        }
        // Cheap test first: each up node must see exactly as many alive as there are up nodes.
        let counts = |peers: &Vec<usize>| {
            (peers.iter()).all(|&a| self.nodes[a].core.alive_count() == peers.len() - 1)
        };
        if !zones.values().all(counts) {
            return false;
        }
        zones.values().all(|peers| {
            (peers.iter()).all(|&a| {
                (peers.iter()).all(|&b| a == b || self.status(a, b) == Some(Status::Alive))
            })
        })
    }

    /// Every up node other than `of` (in `among`, if given) sees `of` as `status`.
    pub fn all_see(&self, of: usize, status: Status, among: Option<&[usize]>) -> bool {
        let all: Vec<usize> = (0..self.nodes.len()).collect();
        among
            .unwrap_or(&all)
            .iter()
            .filter(|&&i| i != of && self.is_up(i))
            .all(|&i| self.status(i, of) == Some(status))
    }

    /// `NodeDown` events any node emitted about `of`, with who emitted them.
    pub fn down_events(&self, of: usize) -> Vec<(usize, Time, Incarnation, Time)> {
        let name = &self.nodes[of].name;
        let mut v = Vec::new();
        for (i, n) in self.nodes.iter().enumerate() {
            for (at, e) in &n.events {
                if let ClusterEvent::NodeDown {
                    node,
                    incarnation,
                    last_heard,
                    ..
                } = e
                    && node == name
                {
                    v.push((i, *at, *incarnation, *last_heard));
                }
            }
        }
        v
    }

    /// Total bytes every node sent, per node.
    pub fn bytes_sent(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| n.bytes_sent).collect()
    }

    /// Each node's view of the nodes it does not see alive, for failure messages.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        for n in &self.nodes {
            let members = n.core.members(self.now);
            let odd: Vec<String> = members
                .iter()
                .filter(|m| m.status != Status::Alive)
                .map(|m| format!("{}={}/{}", m.name, m.status.as_str(), m.incarnation))
                .collect();
            if odd.is_empty() && n.health == Health::Up && members.len() == self.nodes.len() {
                continue;
            }
            s.push_str(&format!(
                "{} ({:?}, joined {}, knows {}): {}\n",
                n.name,
                n.health,
                n.core.joined(),
                members.len(),
                odd.join(" ")
            ));
        }
        s
    }

    pub fn random_index(&mut self, n: usize) -> usize {
        self.rng.random_range(0..n)
    }
}

/// The name of node `i`, its number zero-padded to `width` digits (0: as many as it has).
fn name_of(i: usize, width: usize) -> NodeName {
    NodeName(format!("n{i:0width$}"))
}
