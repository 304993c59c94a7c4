//! The gossip protocol as a pure state machine: membership, versioned per-node state, and the
//! cluster's verdict on each node (alive, suspect, down, left).
//!
//! * **Anti-entropy** (Scuttlebutt): every `interval` the node sends a digest of what it knows
//!   to `fanout` random members; the answer carries what either side lacks. When a full digest
//!   does not fit in a datagram, the digest is a sample: this node, nodes with recent news, then
//!   random others. News (a changed key) also triggers an early, small *news* exchange, so a
//!   change reaches everyone in a few hops instead of a few rounds.
//! * **Heartbeats** travel in every envelope and digest entry ([`Beat`]). A fresher beat is a
//!   sign of life for that node's watcher (see `watch`), which decides when to probe it.
//! * **Suspicion and verdict.** A watcher that cannot reach its peer makes this node write
//!   `sus.<peer>` into its own state, so suspicions travel like any other state. Every node
//!   derives the verdict itself: `down` once at least two distinct members suspect the same
//!   incarnation (one, where fewer than two others are live) and the suspicion timeout — which
//!   shrinks as independent suspicions accumulate, as in Lifeguard — has run out. A suspected
//!   node refutes by raising its incarnation; a higher incarnation always wins.
//! * **Leave** is a key (`left`) the node writes and pushes before it exits.
//!
//! No I/O, no clock, no unseeded randomness: `handle(now, input) -> outputs`.

use super::state::NodeState;
use crate::types::{Incarnation, NodeName, Time, Version};
use crate::watch;
use crate::wire::{
    self, Beat, BeatAge, BeatNews, DigestEntry, Envelope, Frame, MAX_DATAGRAM, Message, NodeDelta,
    Want,
};
use rand::rngs::SmallRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

/// Key prefix of suspicions in a node's state: `sus.<peer>` = `"<incarnation>:<last_heard_ms>"`.
pub const SUSPECT_PREFIX: &str = "sus.";
/// Key written by a node that leaves gracefully.
pub const LEFT_KEY: &str = "left";
/// Keys reserved for the protocol itself.
pub const RESERVED: [&str; 2] = [SUSPECT_PREFIX, LEFT_KEY];
/// A fresher heartbeat is worth answering a digest with only when it is this much fresher
/// (in deciseconds): finer news of life costs bytes and tells phi nothing new.
const BEAT_NEWS_MIN: u64 = 5;
/// Largest key + value a subsystem may write (so an entry always fits in a datagram).
pub const MAX_ENTRY_LEN: usize = 1024;

#[derive(Clone, Debug)]
pub struct Settings {
    pub interval: Duration,
    pub fanout: usize,
    pub news_fanout: usize,
    /// How long news is collected before an early exchange pushes it.
    pub news_delay: Duration,
    /// An exchange we started and that got no answer within this is reported to the watcher.
    pub answer_timeout: Duration,
    /// Bytes of digest entries in one `Syn`.
    pub digest_budget: usize,
    pub indirect_probes: usize,
    /// Suspicions expected from independent witnesses of a real failure (Lifeguard's K).
    pub expected_witnesses: usize,
    pub suspicion_min: Duration,
    pub suspicion_max: Duration,
    /// Chance per round of also sending a digest to one member we believe down, so a healed
    /// partition or a resumed process is found again.
    pub reconnect_chance: f64,
    pub join_backoff_min: Duration,
    pub join_backoff_max: Duration,
    pub watch: watch::Settings,
}

impl Settings {
    pub fn with_interval(interval: Duration) -> Settings {
        let watch = watch::Settings {
            first_interval: interval,
            ..watch::Settings::default()
        };
        Settings {
            interval,
            fanout: 2,
            news_fanout: 2,
            news_delay: interval / 20,
            answer_timeout: Duration::from_millis(250),
            digest_budget: 400,
            indirect_probes: 3,
            expected_witnesses: 3,
            suspicion_min: Duration::from_millis(500),
            suspicion_max: Duration::from_secs(4),
            reconnect_chance: 0.3,
            join_backoff_min: Duration::from_secs(1),
            join_backoff_max: Duration::from_secs(30),
            watch,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings::with_interval(Duration::from_secs(1))
    }
}

/// The cluster's verdict on a node, as this node derives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Alive,
    Suspect,
    Down,
    Left,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Alive => "alive",
            Status::Suspect => "suspect",
            Status::Down => "down",
            Status::Left => "left",
        }
    }
    fn is_live(self) -> bool {
        matches!(self, Status::Alive | Status::Suspect)
    }
}

/// What the rest of the node (history, election, alerts, API) hears from gossip.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterEvent {
    NodeJoined {
        node: NodeName,
        addr: SocketAddr,
        incarnation: Incarnation,
    },
    NodeSuspect {
        node: NodeName,
        incarnation: Incarnation,
        by: Vec<NodeName>,
    },
    NodeDown {
        node: NodeName,
        incarnation: Incarnation,
        last_heard: Time,
        witnesses: Vec<NodeName>,
    },
    NodeUp {
        node: NodeName,
        incarnation: Incarnation,
    },
    NodeLeft {
        node: NodeName,
        incarnation: Incarnation,
    },
    /// A key of some node's state changed (`None`: deleted).
    StateChanged {
        node: NodeName,
        key: String,
        value: Option<String>,
    },
}

#[derive(Clone, Debug)]
pub enum Input {
    /// Time passes: run due rounds and timers. Call it often (every few tens of ms).
    Tick,
    Datagram {
        from: SocketAddr,
        bytes: Vec<u8>,
    },
    /// The watcher of `peer` decided something.
    Verdict {
        peer: NodeName,
        verdict: watch::Verdict,
    },
    /// The answer of a seed to our join request, or why there was none.
    JoinAnswer {
        seed: SocketAddr,
        answer: Result<Frame, String>,
    },
    /// Leave the cluster gracefully.
    Leave,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    Send {
        to: SocketAddr,
        bytes: Vec<u8>,
    },
    /// Open a TCP connection to `seed`, send `request`, feed back the answer.
    Join {
        seed: SocketAddr,
        request: Frame,
    },
    /// Start a watcher for a live peer.
    WatchStart(NodeName),
    /// Stop the watcher of a peer that is down or left.
    WatchStop(NodeName),
    /// An input for the watcher of `peer`.
    Watch {
        peer: NodeName,
        input: watch::Input,
    },
    Event(ClusterEvent),
    /// Our incarnation changed (persist it so a restart goes higher).
    IncarnationChanged(Incarnation),
    /// This node cannot go on (its name is taken by a live node).
    Fatal(String),
}

/// Counters of what went over the wire.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub bytes_sent: u64,
    pub datagrams_sent: u64,
    pub bytes_received: u64,
    pub datagrams_received: u64,
    pub dropped_malformed: u64,
    pub dropped_foreign: u64,
    pub dropped_oversized: u64,
    pub suspicions_raised: u64,
    pub refutations: u64,
    /// Bytes sent by kind of message: digests (`Syn`), answers (`SynAck`), deltas (`Ack`),
    /// news digests, and probes (pings, ping requests and their answers).
    pub bytes_syn: u64,
    pub bytes_synack: u64,
    pub bytes_ack: u64,
    pub bytes_news: u64,
    pub bytes_probe: u64,
}

/// A member as shown by `nbwatch members`.
#[derive(Clone, Debug)]
pub struct MemberView {
    pub name: NodeName,
    pub addr: SocketAddr,
    pub status: Status,
    pub incarnation: Incarnation,
    pub last_heard: Time,
    pub is_self: bool,
    pub kv: BTreeMap<String, String>,
}

#[derive(Clone, Debug)]
struct Member {
    state: NodeState,
    status: Status,
    /// When this node last had a sign of life of it (its own beat time or a direct datagram).
    last_heard: Time,
    /// When this node first saw a suspicion of the current incarnation.
    suspect_since: Option<Time>,
    /// When its state last changed in a way worth spreading early.
    news_at: Option<Time>,
}

#[derive(Clone, Debug)]
struct Relay {
    requester: SocketAddr,
    seq: u32,
    target: NodeName,
    expires: Time,
}

/// Where a `Syn` came from and how to read it.
struct Syn {
    from: SocketAddr,
    /// The sender's beat, against which the digest's ages are read.
    reference: Beat,
    complete: bool,
    news: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Sighting {
    incarnation: Incarnation,
    last_heard: Time,
}

pub struct Core {
    me: NodeName,
    settings: Settings,
    rng: SmallRng,
    own: NodeState,
    leaving: bool,
    seeds: Vec<SocketAddr>,
    joined: bool,
    join_attempts: u32,
    next_join: Option<Time>,
    members: BTreeMap<NodeName, Member>,
    /// suspect -> suspecter -> what the suspecter said.
    suspicions: BTreeMap<NodeName, BTreeMap<NodeName, Sighting>>,
    next_round: Time,
    news_round: Option<Time>,
    news: BTreeSet<NodeName>,
    awaiting: BTreeMap<NodeName, Time>,
    seq: u32,
    relays: BTreeMap<u32, Relay>,
    stats: Stats,
    started: bool,
    /// Number of live (alive or suspect) members other than us; `None` after a status change.
    live_cache: std::cell::Cell<Option<usize>>,
    /// Member names in the order they were learned, for picking random ones cheaply.
    names: Vec<NodeName>,
}

impl Core {
    pub fn new(
        me: NodeName,
        addr: SocketAddr,
        incarnation: Incarnation,
        seeds: Vec<SocketAddr>,
        settings: Settings,
        seed: u64,
    ) -> Core {
        let seeds = seeds.into_iter().filter(|s| *s != addr).collect();
        Core {
            me,
            settings,
            rng: SmallRng::seed_from_u64(seed),
            own: NodeState::new(incarnation, addr),
            leaving: false,
            seeds,
            joined: false,
            join_attempts: 0,
            next_join: None,
            members: BTreeMap::new(),
            suspicions: BTreeMap::new(),
            next_round: Time::ZERO,
            news_round: None,
            news: BTreeSet::new(),
            awaiting: BTreeMap::new(),
            seq: 0,
            relays: BTreeMap::new(),
            stats: Stats::default(),
            started: false,
            live_cache: std::cell::Cell::new(None),
            names: Vec::new(),
        }
    }

    pub fn name(&self) -> &NodeName {
        &self.me
    }
    pub fn incarnation(&self) -> Incarnation {
        self.own.incarnation
    }
    pub fn addr(&self) -> SocketAddr {
        self.own.addr
    }
    pub fn stats(&self) -> Stats {
        self.stats
    }
    pub fn settings(&self) -> &Settings {
        &self.settings
    }
    /// True once a seed answered (or there were no seeds: a new cluster).
    pub fn joined(&self) -> bool {
        self.joined
    }

    /// Status of `node` in this node's view (`None`: unknown).
    pub fn status(&self, node: &NodeName) -> Option<Status> {
        if *node == self.me {
            return Some(if self.leaving {
                Status::Left
            } else {
                Status::Alive
            });
        }
        self.members.get(node).map(|m| m.status)
    }

    /// A value of some node's state.
    pub fn value(&self, node: &NodeName, key: &str) -> Option<&str> {
        if *node == self.me {
            return self.own.value(key);
        }
        self.members.get(node).and_then(|m| m.state.value(key))
    }

    /// Every node this node knows, itself included, by name.
    pub fn members(&self, now: Time) -> Vec<MemberView> {
        let mut views = vec![MemberView {
            name: self.me.clone(),
            addr: self.own.addr,
            status: self.status(&self.me).unwrap_or(Status::Alive),
            incarnation: self.own.incarnation,
            last_heard: now,
            is_self: true,
            kv: self.own.live().map(|(k, v)| (k.into(), v.into())).collect(),
        }];
        views.extend(self.members.iter().map(|(name, m)| MemberView {
            name: name.clone(),
            addr: m.state.addr,
            status: m.status,
            incarnation: m.state.incarnation,
            last_heard: m.last_heard,
            is_self: false,
            kv: m.state.live().map(|(k, v)| (k.into(), v.into())).collect(),
        }));
        views.sort_by(|a, b| a.name.cmp(&b.name));
        views
    }

    /// Writes a key of this node's state (`None` deletes it). Keys of the protocol itself
    /// (`sus.*`, `left`) are refused, and so is an entry too large for a datagram.
    pub fn set(
        &mut self,
        now: Time,
        key: &str,
        value: Option<String>,
    ) -> Result<Vec<Output>, KvError> {
        if key.is_empty() {
            return Err(KvError::EmptyKey);
        }
        if RESERVED
            .iter()
            .any(|r| key == *r || (r.ends_with('.') && key.starts_with(r)))
        {
            return Err(KvError::Reserved(key.to_string()));
        }
        let len = key.len() + value.as_ref().map_or(0, |v| v.len());
        if len > MAX_ENTRY_LEN {
            return Err(KvError::TooLarge {
                key: key.to_string(),
                len,
            });
        }
        let mut out = Vec::new();
        self.write_own(now, key, value, &mut out);
        Ok(out)
    }

    fn write_own(&mut self, now: Time, key: &str, value: Option<String>, out: &mut Vec<Output>) {
        if self.own.write(key, value.clone()) {
            out.push(Output::Event(ClusterEvent::StateChanged {
                node: self.me.clone(),
                key: key.to_string(),
                value,
            }));
            if is_protocol_key(key) {
                self.note_urgent_news(now, None);
            } else {
                self.note_news(now, None);
            }
        }
    }

    /// What a seed answers a joiner over TCP. A name that a live member at another address
    /// already uses is refused; otherwise the joiner gets the full state of every node. The
    /// seed learns of the joiner by gossip, like everyone else.
    pub fn answer_join(
        &mut self,
        now: Time,
        name: &NodeName,
        _incarnation: Incarnation,
        addr: SocketAddr,
    ) -> Frame {
        if *name == self.me {
            return Frame::JoinRejected {
                reason: format!(
                    "the name {name} is taken by the live node at {}",
                    self.own.addr
                ),
            };
        }
        if let Some(m) = self.members.get(name)
            && m.status.is_live()
            && m.state.addr != addr
        {
            return Frame::JoinRejected {
                reason: format!(
                    "the name {name} is taken by the live node at {}",
                    m.state.addr
                ),
            };
        }
        self.own.beat = Beat::at(now);
        let mut members = vec![self.own.delta(&self.me, Version(0), usize::MAX)];
        members.extend(
            self.members
                .iter()
                .map(|(n, m)| m.state.delta(n, Version(0), usize::MAX)),
        );
        Frame::JoinAccepted { members }
    }

    pub fn handle(&mut self, now: Time, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        if !self.started {
            self.started = true;
            self.start(now, &mut out);
        }
        self.own.beat = self.own.beat.max(Beat::at(now));
        match input {
            Input::Tick => self.tick(now, &mut out),
            Input::Datagram { from, bytes } => self.receive(now, from, &bytes, &mut out),
            Input::Verdict { peer, verdict } => self.on_verdict(now, peer, verdict, &mut out),
            Input::JoinAnswer { seed, answer } => self.on_join_answer(now, seed, answer, &mut out),
            Input::Leave => self.leave(now, &mut out),
        }
        out
    }

    fn start(&mut self, now: Time, out: &mut Vec<Output>) {
        let jitter = self.jitter(self.settings.interval);
        self.next_round = now + jitter;
        if self.seeds.is_empty() {
            self.joined = true;
        } else {
            self.next_join = Some(now);
        }
        self.tick(now, out);
    }

    // ----- rounds ---------------------------------------------------------------------------

    fn tick(&mut self, now: Time, out: &mut Vec<Output>) {
        if let Some(at) = self.next_join
            && now >= at
            && !self.joined
        {
            let seed = self.seeds[self.join_attempts as usize % self.seeds.len()];
            self.next_join = None;
            out.push(Output::Join {
                seed,
                request: Frame::JoinRequest {
                    name: self.me.clone(),
                    incarnation: self.own.incarnation,
                    addr: self.own.addr,
                },
            });
        }
        if now >= self.next_round {
            self.next_round =
                now + self.settings.interval.mul_f64(0.9) + self.jitter(self.settings.interval / 5);
            self.gossip_round(now, out);
        }
        if let Some(at) = self.news_round
            && now >= at
        {
            self.news_round = None;
            self.news_exchange(now, out);
        }
        let expired: Vec<NodeName> = self
            .awaiting
            .iter()
            .filter(|(_, deadline)| now >= **deadline)
            .map(|(n, _)| n.clone())
            .collect();
        for peer in expired {
            self.awaiting.remove(&peer);
            if self.members.get(&peer).is_some_and(|m| m.status.is_live()) {
                out.push(Output::Watch {
                    peer,
                    input: watch::Input::Unanswered,
                });
            }
        }
        self.relays.retain(|_, r| r.expires > now);
        let suspected: Vec<NodeName> = self.suspicions.keys().cloned().collect();
        for node in suspected {
            self.judge(now, &node, out);
        }
    }

    fn jitter(&mut self, span: Duration) -> Duration {
        let ms = span.as_millis() as u64;
        Duration::from_millis(if ms == 0 {
            0
        } else {
            self.rng.random_range(0..ms)
        })
    }

    /// How many members other than us are live (cached between status changes).
    fn live_count(&self) -> usize {
        if let Some(n) = self.live_cache.get() {
            return n;
        }
        let n = self.members.values().filter(|m| m.status.is_live()).count();
        self.live_cache.set(Some(n));
        n
    }

    /// Up to `k` distinct live members other than `except`, at random. Draws at random first
    /// (cheap in a large cluster) and falls back to a full scan when live members are few.
    fn pick_live(&mut self, k: usize, except: Option<&NodeName>) -> Vec<NodeName> {
        let mut picked: Vec<NodeName> = Vec::with_capacity(k);
        for _ in 0..k * 4 {
            if picked.len() == k {
                return picked;
            }
            let Some(name) = self.names.choose(&mut self.rng) else {
                break;
            };
            if Some(name) != except
                && !picked.contains(name)
                && self.members.get(name).is_some_and(|m| m.status.is_live())
            {
                picked.push(name.clone());
            }
        }
        let mut live: Vec<NodeName> = self
            .live_peers()
            .into_iter()
            .filter(|n| Some(n) != except && !picked.contains(n))
            .collect();
        live.shuffle(&mut self.rng);
        picked.extend(live.into_iter().take(k - picked.len()));
        picked
    }

    fn live_peers(&self) -> Vec<NodeName> {
        self.members
            .iter()
            .filter(|(_, m)| m.status.is_live())
            .map(|(n, _)| n.clone())
            .collect()
    }

    fn gossip_round(&mut self, now: Time, out: &mut Vec<Output>) {
        if self.leaving {
            return;
        }
        let live = self.pick_live(self.settings.fanout, None);
        let (digest, complete) = self.digest(now, false);
        for peer in &live {
            self.awaiting
                .entry(peer.clone())
                .or_insert(now + self.settings.answer_timeout);
            let to = self.members[peer].state.addr;
            self.send(
                to,
                Message::Syn {
                    digest: digest.clone(),
                    complete,
                    news: false,
                },
                out,
            );
        }
        let down: Vec<NodeName> = self
            .members
            .iter()
            .filter(|(_, m)| m.status == Status::Down)
            .map(|(n, _)| n.clone())
            .collect();
        if !down.is_empty()
            && self.rng.random_bool(self.settings.reconnect_chance)
            && let Some(peer) = down.choose(&mut self.rng)
        {
            let to = self.members[peer].state.addr;
            self.send(
                to,
                Message::Syn {
                    digest,
                    complete,
                    news: false,
                },
                out,
            );
        }
    }

    /// A digest: this node first, then nodes with news (newest first), then random others,
    /// as many as fit the budget. `news_only` keeps just this node and the news.
    fn digest(&mut self, now: Time, news_only: bool) -> (Vec<DigestEntry>, bool) {
        let budget = self.settings.digest_budget;
        let reference = self.own.beat;
        let mine = DigestEntry(
            self.me.clone(),
            self.own.incarnation,
            BeatAge(0),
            self.own.version,
        );
        let mut used = wire::digest_entry_len(&mine);
        let mut entries = vec![mine];
        let entry = |name: &NodeName, m: &Member| {
            DigestEntry(
                name.clone(),
                m.state.incarnation,
                BeatAge::between(reference, m.state.beat),
                m.state.version,
            )
        };
        if !news_only {
            let total: usize = self
                .members
                .iter()
                .map(|(n, m)| wire::digest_entry_len(&entry(n, m)))
                .sum();
            if used + total <= budget {
                entries.extend(self.members.iter().map(|(n, m)| entry(n, m)));
                return (entries, true);
            }
        }
        // Suspects come first: their freshest heartbeat decides whether they are down and when
        // they were last heard, so every exchange compares it. Then news, then a random sample.
        let hot_window = self.settings.interval * 3;
        let mut order: Vec<(u8, Time, &NodeName)> = self
            .members
            .iter()
            .filter_map(|(n, m)| {
                if m.status == Status::Suspect {
                    Some((0, now, n))
                } else if news_only {
                    self.news.contains(n).then_some((1, now, n))
                } else {
                    m.news_at
                        .filter(|t| now.since(*t) <= hot_window)
                        .map(|t| (1, t, n))
                }
            })
            .collect();
        order.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        let mut chosen: BTreeSet<NodeName> = BTreeSet::new();
        let mut push =
            |name: &NodeName, m: &Member, used: &mut usize, entries: &mut Vec<DigestEntry>| {
                let e = entry(name, m);
                let size = wire::digest_entry_len(&e);
                if *used + size > budget || chosen.contains(name) {
                    return false;
                }
                *used += size;
                chosen.insert(name.clone());
                entries.push(e);
                true
            };
        for (_, _, name) in &order {
            push(name, &self.members[*name], &mut used, &mut entries);
        }
        if !news_only && !self.members.is_empty() {
            // Random others: pick positions at random until the budget is spent.
            let mut misses = 0;
            while misses < 8 {
                let Some(name) = self.names.choose(&mut self.rng) else {
                    break;
                };
                let Some(m) = self.members.get(name) else {
                    break;
                };
                if !push(name, m, &mut used, &mut entries) {
                    misses += 1;
                }
            }
        }
        (entries, false)
    }

    fn note_news(&mut self, now: Time, node: Option<&NodeName>) {
        let name = node.cloned().unwrap_or_else(|| self.me.clone());
        if let Some(m) = self.members.get_mut(&name) {
            m.news_at = Some(now);
        }
        self.news.insert(name);
        if self.news_round.is_none() {
            self.news_round = Some(now + self.settings.news_delay);
        }
    }

    /// News that cannot wait for the usual collection delay: suspicions, refutations, leaving.
    fn note_urgent_news(&mut self, now: Time, node: Option<&NodeName>) {
        self.note_news(now, node);
        self.news_round = Some(now);
    }

    fn news_exchange(&mut self, now: Time, out: &mut Vec<Output>) {
        if self.news.is_empty() {
            return;
        }
        let (digest, _) = self.digest(now, true);
        // What did not fit goes out with the next news exchange.
        for DigestEntry(name, ..) in &digest {
            self.news.remove(name);
        }
        self.news.remove(&self.me);
        if !self.news.is_empty() {
            self.news_round = Some(now + self.settings.news_delay);
        }
        for peer in self.pick_live(self.settings.news_fanout, None) {
            let to = self.members[&peer].state.addr;
            self.send(
                to,
                Message::Syn {
                    digest: digest.clone(),
                    complete: false,
                    news: true,
                },
                out,
            );
        }
    }

    fn send(&mut self, to: SocketAddr, msg: Message, out: &mut Vec<Output>) {
        let counter = match &msg {
            Message::Syn { news: true, .. } => &mut self.stats.bytes_news,
            Message::Syn { .. } => &mut self.stats.bytes_syn,
            Message::SynAck { .. } => &mut self.stats.bytes_synack,
            Message::Ack { .. } => &mut self.stats.bytes_ack,
            _ => &mut self.stats.bytes_probe,
        };
        let env = Envelope {
            from: self.me.clone(),
            incarnation: self.own.incarnation,
            beat: self.own.beat,
            msg,
        };
        match wire::encode(&env) {
            Ok(bytes) => {
                *counter += bytes.len() as u64;
                self.stats.bytes_sent += bytes.len() as u64;
                self.stats.datagrams_sent += 1;
                out.push(Output::Send { to, bytes });
            }
            Err(e) => tracing::error!(%to, error = %e, "could not encode a datagram"),
        }
    }

    // ----- receiving ------------------------------------------------------------------------

    fn receive(&mut self, now: Time, from: SocketAddr, bytes: &[u8], out: &mut Vec<Output>) {
        self.stats.bytes_received += bytes.len() as u64;
        self.stats.datagrams_received += 1;
        let env = match wire::decode(bytes) {
            Ok(env) => env,
            Err(wire::DecodeError::Foreign) => {
                self.stats.dropped_foreign += 1;
                return;
            }
            Err(wire::DecodeError::Oversized(_)) => {
                self.stats.dropped_oversized += 1;
                return;
            }
            Err(e) => {
                self.stats.dropped_malformed += 1;
                tracing::debug!(%from, error = %e, "dropped a malformed datagram");
                return;
            }
        };
        if env.from == self.me {
            return;
        }
        self.heard_directly(now, &env, out);
        match env.msg {
            Message::Syn {
                digest,
                complete,
                news,
            } => {
                let syn = Syn {
                    from,
                    reference: env.beat,
                    complete,
                    news,
                };
                self.on_syn(now, syn, digest, out)
            }
            Message::SynAck {
                wants,
                deltas,
                beats,
            } => {
                self.apply_deltas(now, &deltas, out);
                self.apply_beats(now, env.beat, &beats, out);
                let deltas = self.deltas_for(&wants, MAX_DATAGRAM - 64);
                if !deltas.is_empty() {
                    self.send(from, Message::Ack { deltas }, out);
                }
            }
            Message::Ack { deltas } => self.apply_deltas(now, &deltas, out),
            Message::Ping { seq } => self.send(from, Message::PingAck { seq }, out),
            Message::PingAck { seq } => {
                if let Some(relay) = self.relays.remove(&seq)
                    && relay.target == env.from
                {
                    self.send(
                        relay.requester,
                        Message::IndirectAck {
                            seq: relay.seq,
                            target: env.from.clone(),
                            incarnation: env.incarnation,
                            beat: env.beat,
                        },
                        out,
                    );
                }
                self.answered(&env.from, out);
            }
            Message::PingReq {
                seq,
                target,
                target_addr,
            } => {
                let my_seq = self.next_seq();
                self.relays.insert(
                    my_seq,
                    Relay {
                        requester: from,
                        seq,
                        target,
                        expires: now + self.settings.watch.indirect_timeout * 2,
                    },
                );
                self.send(target_addr, Message::Ping { seq: my_seq }, out);
            }
            Message::IndirectAck {
                target,
                incarnation,
                beat,
                ..
            } => {
                let current = self.members.get(&target).map(|m| m.state.incarnation);
                if current == Some(incarnation) {
                    self.see_beat(now, &target, beat, false, out);
                    self.answered(&target, out);
                }
            }
        }
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn answered(&mut self, peer: &NodeName, out: &mut Vec<Output>) {
        if self.members.get(peer).is_some_and(|m| m.status.is_live()) {
            out.push(Output::Watch {
                peer: peer.clone(),
                input: watch::Input::Alive(watch::Evidence::Answered),
            });
        }
    }

    /// Any datagram from a node of the incarnation we know is a sign of life and an answer.
    fn heard_directly(&mut self, now: Time, env: &Envelope, out: &mut Vec<Output>) {
        self.awaiting.remove(&env.from);
        let Some(m) = self.members.get_mut(&env.from) else {
            return;
        };
        if m.state.incarnation != env.incarnation {
            return;
        }
        if m.status.is_live() {
            m.last_heard = m.last_heard.max(now);
        }
        self.see_beat(now, &env.from.clone(), env.beat, true, out);
    }

    /// A beat of `node` arrived; if it is fresher, that is evidence for its watcher.
    fn see_beat(
        &mut self,
        now: Time,
        node: &NodeName,
        beat: Beat,
        direct: bool,
        out: &mut Vec<Output>,
    ) {
        let Some(m) = self.members.get_mut(node) else {
            return;
        };
        if beat <= m.state.beat {
            return;
        }
        m.state.beat = beat;
        m.last_heard = m.last_heard.max(beat.time().min(now));
        if !m.status.is_live() {
            return;
        }
        out.push(Output::Watch {
            peer: node.clone(),
            input: watch::Input::Alive(if direct {
                watch::Evidence::Direct
            } else {
                watch::Evidence::Relayed
            }),
        });
    }

    fn on_syn(&mut self, now: Time, syn: Syn, digest: Vec<DigestEntry>, out: &mut Vec<Output>) {
        let Syn {
            from,
            reference,
            complete,
            news,
        } = syn;
        let mut wants = Vec::new();
        let mut have: Vec<Want> = Vec::new();
        let mut beats = Vec::new();
        let mut mentioned = BTreeSet::new();
        for DigestEntry(node, inc, age, version) in digest {
            let beat = age.beat(reference);
            mentioned.insert(node.clone());
            if node == self.me {
                self.check_self(now, inc, version, out);
                if inc < self.own.incarnation
                    || (inc == self.own.incarnation && version < self.own.version)
                {
                    have.push(Want(node, inc, version));
                }
                continue;
            }
            match self.members.get(&node) {
                None => wants.push(Want(node, Incarnation(0), Version(0))),
                Some(m) => {
                    let (mi, mv, mb) = (m.state.incarnation, m.state.version, m.state.beat);
                    if inc > mi || (inc == mi && version > mv) {
                        wants.push(Want(node.clone(), mi, mv));
                    } else if inc < mi || version < mv {
                        have.push(Want(node.clone(), inc, version));
                    }
                    if inc == mi {
                        if beat > mb {
                            self.see_beat(now, &node, beat, false, out);
                        } else if mb.0 >= beat.0 + BEAT_NEWS_MIN {
                            beats.push(BeatNews(node, mi, BeatAge::between(self.own.beat, mb)));
                        }
                    }
                }
            }
        }
        if complete {
            for name in self.members.keys() {
                if !mentioned.contains(name) {
                    have.push(Want(name.clone(), Incarnation(0), Version(0)));
                }
            }
        }
        if news && wants.is_empty() && have.is_empty() {
            return;
        }
        // Fill the answer: wants first (small), then beats, then deltas with what is left.
        let mut budget = MAX_DATAGRAM - 96 - self.me.as_str().len();
        let mut sized_wants = Vec::new();
        for w in wants {
            let s = wire::encoded_len(&w) + 1;
            if s > budget {
                break;
            }
            budget -= s;
            sized_wants.push(w);
        }
        let mut sized_beats = Vec::new();
        if !news {
            for b in beats {
                let s = wire::encoded_len(&b) + 1;
                if s > budget / 2 {
                    break;
                }
                budget -= s;
                sized_beats.push(b);
            }
        }
        let deltas = self.deltas_for(&have, budget);
        self.send(
            from,
            Message::SynAck {
                wants: sized_wants,
                deltas,
                beats: sized_beats,
            },
            out,
        );
    }

    /// Deltas answering `wants` (each "I have node up to (incarnation, version)"), within
    /// `budget` bytes.
    fn deltas_for(&self, wants: &[Want], mut budget: usize) -> Vec<NodeDelta> {
        let mut deltas = Vec::new();
        for Want(node, inc, version) in wants {
            let state = if *node == self.me {
                &self.own
            } else {
                match self.members.get(node) {
                    Some(m) => &m.state,
                    None => continue,
                }
            };
            let from = if *inc == state.incarnation {
                *version
            } else {
                Version(0)
            };
            if *inc > state.incarnation || (*inc == state.incarnation && from >= state.version) {
                continue;
            }
            let header = wire::encoded_len(&state.delta(node, from, 0)) + 1;
            if header >= budget {
                break;
            }
            let delta = state.delta(node, from, budget - header);
            budget -= wire::encoded_len(&delta) + 1;
            deltas.push(delta);
        }
        deltas
    }

    /// Someone holds a view of us from a later or equal life: make sure ours is newer.
    fn check_self(&mut self, now: Time, inc: Incarnation, version: Version, out: &mut Vec<Output>) {
        if inc > self.own.incarnation || (inc == self.own.incarnation && version > self.own.version)
        {
            self.refute(now, Incarnation(inc.0.max(self.own.incarnation.0)), out);
        }
    }

    fn refute(&mut self, now: Time, above: Incarnation, out: &mut Vec<Output>) {
        self.own.incarnation = Incarnation(above.0 + 1);
        self.stats.refutations += 1;
        tracing::info!(incarnation = %self.own.incarnation, "refuting: raised our incarnation");
        out.push(Output::IncarnationChanged(self.own.incarnation));
        self.note_urgent_news(now, None);
    }

    fn apply_beats(
        &mut self,
        now: Time,
        reference: Beat,
        beats: &[BeatNews],
        out: &mut Vec<Output>,
    ) {
        for BeatNews(node, inc, age) in beats {
            let beat = age.beat(reference);
            if self
                .members
                .get(node)
                .is_some_and(|m| m.state.incarnation == *inc)
            {
                self.see_beat(now, node, beat, false, out);
            }
        }
    }

    fn apply_deltas(&mut self, now: Time, deltas: &[NodeDelta], out: &mut Vec<Output>) {
        for d in deltas {
            self.apply_delta(now, d, out);
        }
    }

    fn apply_delta(&mut self, now: Time, d: &NodeDelta, out: &mut Vec<Output>) {
        if d.node == self.me {
            self.check_self(now, d.incarnation, d.to, out);
            return;
        }
        let fresh_life = match self.members.get(&d.node) {
            None => true,
            Some(m) if d.incarnation > m.state.incarnation => true,
            Some(m) if d.incarnation < m.state.incarnation => return,
            Some(_) => false,
        };
        if fresh_life {
            if d.from != Version(0) {
                return; // we lack the start of this life; the next exchange asks for it
            }
            self.learn(
                now,
                d.node.clone(),
                NodeState::new(d.incarnation, d.addr),
                out,
            );
        }
        let Some(m) = self.members.get_mut(&d.node) else {
            return;
        };
        let old_beat = m.state.beat;
        let applied = m.state.apply(d);
        if m.state.beat > old_beat {
            m.state.beat = old_beat;
            self.see_beat(now, &d.node, d.beat, false, out);
        }
        if applied.changed.is_empty() {
            return;
        }
        if applied.changed.iter().any(|(k, _)| is_protocol_key(k)) {
            self.note_urgent_news(now, Some(&d.node));
        } else {
            self.note_news(now, Some(&d.node));
        }
        for (key, value) in applied.changed {
            self.on_changed(now, &d.node, &key, value.as_deref(), out);
            out.push(Output::Event(ClusterEvent::StateChanged {
                node: d.node.clone(),
                key,
                value,
            }));
        }
    }

    /// A node we did not know, or a new life of one we did.
    fn learn(&mut self, now: Time, name: NodeName, state: NodeState, out: &mut Vec<Output>) {
        let previous = self.members.get(&name).map(|m| m.status);
        // Suspicions written by the old life are gone with it; suspicions *of* the old life
        // no longer count (they name the old incarnation).
        for by in self.suspicions.values_mut() {
            by.remove(&name);
        }
        self.suspicions.retain(|_, by| !by.is_empty());
        let (incarnation, addr) = (state.incarnation, state.addr);
        self.live_cache.set(None);
        if previous.is_none() {
            self.names.push(name.clone());
        }
        self.members.insert(
            name.clone(),
            Member {
                state,
                status: Status::Alive,
                last_heard: now,
                suspect_since: None,
                news_at: Some(now),
            },
        );
        self.withdraw_stale_suspicion(now, &name, out);
        match previous {
            None | Some(Status::Left) => {
                out.push(Output::Event(ClusterEvent::NodeJoined {
                    node: name.clone(),
                    addr,
                    incarnation,
                }));
                out.push(Output::WatchStart(name.clone()));
            }
            Some(Status::Down) => {
                out.push(Output::Event(ClusterEvent::NodeUp {
                    node: name.clone(),
                    incarnation,
                }));
                out.push(Output::WatchStart(name.clone()));
            }
            Some(Status::Alive | Status::Suspect) => {
                out.push(Output::Watch {
                    peer: name.clone(),
                    input: watch::Input::Reset,
                });
            }
        }
        if previous == Some(Status::Suspect) {
            out.push(Output::Event(ClusterEvent::NodeUp {
                node: name.clone(),
                incarnation,
            }));
        }
        self.note_news(now, Some(&name));
    }

    /// Our own `sus.<node>` that names an older life of `node` is withdrawn.
    fn withdraw_stale_suspicion(&mut self, now: Time, node: &NodeName, out: &mut Vec<Output>) {
        let key = format!("{SUSPECT_PREFIX}{node}");
        let Some(current) = self.members.get(node).map(|m| m.state.incarnation) else {
            return;
        };
        if let Some(s) = self.own.value(&key).and_then(parse_sighting)
            && s.incarnation < current
        {
            self.write_own(now, &key, None, out);
        }
    }

    /// A key of `node`'s state changed: suspicions and leaving matter to the protocol.
    fn on_changed(
        &mut self,
        now: Time,
        node: &NodeName,
        key: &str,
        value: Option<&str>,
        out: &mut Vec<Output>,
    ) {
        if let Some(suspect) = key.strip_prefix(SUSPECT_PREFIX) {
            let suspect = NodeName::from(suspect);
            match value.and_then(parse_sighting) {
                Some(sighting) => {
                    self.suspicions
                        .entry(suspect.clone())
                        .or_default()
                        .insert(node.clone(), sighting);
                    if suspect == self.me {
                        if sighting.incarnation >= self.own.incarnation && !self.leaving {
                            self.refute(now, sighting.incarnation, out);
                        }
                        return;
                    }
                    self.on_suspicion_heard(now, &suspect, sighting, out);
                }
                None => {
                    if let Some(by) = self.suspicions.get_mut(&suspect) {
                        by.remove(node);
                        if by.is_empty() {
                            self.suspicions.remove(&suspect);
                        }
                    }
                }
            }
            self.judge(now, &suspect, out);
        } else if key == LEFT_KEY
            && value.is_some()
            && let Some(m) = self.members.get_mut(node)
            && m.status != Status::Left
        {
            m.status = Status::Left;
            self.live_cache.set(None);
            m.last_heard = m.last_heard.max(m.state.beat.time().min(now));
            out.push(Output::Event(ClusterEvent::NodeLeft {
                node: node.clone(),
                incarnation: m.state.incarnation,
            }));
            out.push(Output::WatchStop(node.clone()));
            self.awaiting.remove(node);
        }
    }

    fn on_suspicion_heard(
        &mut self,
        now: Time,
        suspect: &NodeName,
        sighting: Sighting,
        out: &mut Vec<Output>,
    ) {
        let Some(m) = self.members.get(suspect) else {
            return;
        };
        if sighting.incarnation != m.state.incarnation || !m.status.is_live() {
            return;
        }
        // Verify only while fewer than K witnesses are known, and then only with a chance that
        // makes about 2(K+1) nodes of the cluster verify, so one false suspicion does not make
        // every node probe (and, under loss, some of them fail too).
        let witnesses = self.witnesses(suspect).len();
        let live = self.live_count().max(1);
        let chance = (2.0 * (self.settings.expected_witnesses + 1) as f64 / live as f64).min(1.0);
        let verify = witnesses < self.settings.expected_witnesses && self.rng.random_bool(chance);
        let _ = now;
        out.push(Output::Watch {
            peer: suspect.clone(),
            input: watch::Input::SuspicionHeard { verify },
        });
    }

    /// Who suspects the current life of `node`.
    fn witnesses(&self, node: &NodeName) -> Vec<(NodeName, Sighting)> {
        let Some(m) = self.members.get(node) else {
            return Vec::new();
        };
        self.suspicions
            .get(node)
            .map(|by| {
                by.iter()
                    .filter(|(_, s)| s.incarnation == m.state.incarnation)
                    .map(|(n, s)| (n.clone(), *s))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Derives the verdict on `node` from the suspicions of its current life.
    fn judge(&mut self, now: Time, node: &NodeName, out: &mut Vec<Output>) {
        let witnesses = self.witnesses(node);
        let node_live = self.members.get(node).is_some_and(|m| m.status.is_live());
        let live_others = 1 + self.live_count() - usize::from(node_live);
        let settings = &self.settings;
        let Some(m) = self.members.get_mut(node) else {
            return;
        };
        if matches!(m.status, Status::Left | Status::Down) {
            return;
        }
        if witnesses.is_empty() {
            m.suspect_since = None;
            if m.status == Status::Suspect {
                m.status = Status::Alive;
            }
            return;
        }
        let since = *m.suspect_since.get_or_insert(now);
        let required = if live_others >= 2 { 2 } else { 1 };
        // Lifeguard's K, capped by how many witnesses there can be at all.
        let expected = settings.expected_witnesses.min(live_others).max(1);
        let timeout = lifeguard_timeout(settings, expected, witnesses.len());
        let names: Vec<NodeName> = witnesses.iter().map(|(n, _)| n.clone()).collect();
        if witnesses.len() >= required && now >= since + timeout {
            let last_heard = witnesses
                .iter()
                .map(|(_, s)| s.last_heard)
                .chain(std::iter::once(m.last_heard))
                .max()
                .unwrap_or(m.last_heard);
            m.status = Status::Down;
            self.live_cache.set(None);
            m.last_heard = last_heard;
            let incarnation = m.state.incarnation;
            self.awaiting.remove(node);
            out.push(Output::WatchStop(node.clone()));
            out.push(Output::Event(ClusterEvent::NodeDown {
                node: node.clone(),
                incarnation,
                last_heard,
                witnesses: names,
            }));
        } else if m.status == Status::Alive {
            m.status = Status::Suspect;
            let incarnation = m.state.incarnation;
            out.push(Output::Event(ClusterEvent::NodeSuspect {
                node: node.clone(),
                incarnation,
                by: names,
            }));
        }
    }

    fn on_verdict(
        &mut self,
        now: Time,
        peer: NodeName,
        verdict: watch::Verdict,
        out: &mut Vec<Output>,
    ) {
        let Some(m) = self.members.get(&peer) else {
            return;
        };
        if !m.status.is_live() || self.leaving {
            return;
        }
        let (addr, incarnation, last_heard) = (m.state.addr, m.state.incarnation, m.last_heard);
        let key = format!("{SUSPECT_PREFIX}{peer}");
        match verdict {
            watch::Verdict::Ping => {
                let seq = self.next_seq();
                self.send(addr, Message::Ping { seq }, out);
            }
            watch::Verdict::PingIndirect => {
                let seq = self.next_seq();
                self.send(addr, Message::Ping { seq }, out);
                let helpers = self.pick_live(self.settings.indirect_probes, Some(&peer));
                for helper in helpers {
                    let to = self.members[&helper].state.addr;
                    self.send(
                        to,
                        Message::PingReq {
                            seq,
                            target: peer.clone(),
                            target_addr: addr,
                        },
                        out,
                    );
                }
            }
            watch::Verdict::Suspect => {
                self.stats.suspicions_raised += 1;
                let value = format!("{}:{}", incarnation.0, last_heard.as_millis());
                self.write_own(now, &key, Some(value), out);
                self.on_changed(
                    now,
                    &self.me.clone(),
                    &key,
                    self.own.value(&key).map(str::to_owned).as_deref(),
                    out,
                );
                // Tell the suspect at once, so that if it is alive it can refute quickly.
                let (digest, _) = self.digest(now, true);
                self.send(
                    addr,
                    Message::Syn {
                        digest,
                        complete: false,
                        news: true,
                    },
                    out,
                );
            }
            watch::Verdict::Clear => {
                if self.own.value(&key).is_some() {
                    self.write_own(now, &key, None, out);
                    self.on_changed(now, &self.me.clone(), &key, None, out);
                }
            }
        }
    }

    fn on_join_answer(
        &mut self,
        now: Time,
        seed: SocketAddr,
        answer: Result<Frame, String>,
        out: &mut Vec<Output>,
    ) {
        if self.joined {
            return;
        }
        match answer {
            Ok(Frame::JoinAccepted { members }) => {
                self.joined = true;
                self.join_attempts = 0;
                tracing::info!(%seed, members = members.len(), "joined the cluster");
                self.apply_deltas(now, &members, out);
            }
            Ok(Frame::JoinRejected { reason }) => {
                out.push(Output::Fatal(format!("seed {seed} refused us: {reason}")));
            }
            Ok(other) => {
                self.retry_join(now, seed, format!("unexpected answer {other:?}"));
            }
            Err(why) => self.retry_join(now, seed, why),
        }
    }

    fn retry_join(&mut self, now: Time, seed: SocketAddr, why: String) {
        self.join_attempts += 1;
        let exp = self.join_attempts.min(16) - 1;
        let backoff =
            (self.settings.join_backoff_min * 2u32.pow(exp)).min(self.settings.join_backoff_max);
        self.next_join = Some(now + backoff);
        tracing::warn!(
            %seed, reason = %why, retry_in = ?backoff,
            "seed did not answer; running alone and retrying"
        );
    }

    fn leave(&mut self, now: Time, out: &mut Vec<Output>) {
        if self.leaving {
            return;
        }
        self.own.write(LEFT_KEY, Some("1".into()));
        out.push(Output::Event(ClusterEvent::StateChanged {
            node: self.me.clone(),
            key: LEFT_KEY.into(),
            value: Some("1".into()),
        }));
        // Push the news to more members than usual, since we will not be around to repeat it.
        let (digest, _) = self.digest(now, true);
        let live = self.pick_live(self.settings.fanout * 2, None);
        // `left` is our newest entry: a delta from the version before it carries just that, so
        // it fits however large our state is; peers further behind ask for the rest.
        let just_left = self.own.delta(
            &self.me,
            Version(self.own.version.0 - 1),
            MAX_DATAGRAM - 200,
        );
        for peer in live {
            let to = self.members[&peer].state.addr;
            self.send(
                to,
                Message::Ack {
                    deltas: vec![just_left.clone()],
                },
                out,
            );
            self.send(
                to,
                Message::Syn {
                    digest: digest.clone(),
                    complete: false,
                    news: true,
                },
                out,
            );
        }
        self.leaving = true;
    }
}

fn is_protocol_key(key: &str) -> bool {
    key.starts_with(SUSPECT_PREFIX) || key == LEFT_KEY
}

fn parse_sighting(value: &str) -> Option<Sighting> {
    let (inc, heard) = value.split_once(':')?;
    Some(Sighting {
        incarnation: Incarnation(inc.parse().ok()?),
        last_heard: Time(heard.parse().ok()?),
    })
}

/// Lifeguard's suspicion timeout: `max` with one witness, down to `min` once the expected
/// number of independent witnesses has spoken, on a log scale in between.
fn lifeguard_timeout(settings: &Settings, expected: usize, witnesses: usize) -> Duration {
    let (min, max) = (
        settings.suspicion_min.as_secs_f64(),
        settings.suspicion_max.as_secs_f64(),
    );
    let frac = if expected <= 1 {
        1.0
    } else {
        ((witnesses.max(1) as f64).ln() / (expected as f64).ln()).min(1.0)
    };
    Duration::from_secs_f64((max - (max - min) * frac).max(min))
}

#[cfg(test)]
mod tests;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KvError {
    #[error("a key must not be empty")]
    EmptyKey,
    #[error("the key {0:?} is reserved for the gossip protocol")]
    Reserved(String),
    #[error("{key:?} with its value is {len} bytes, more than the limit of {MAX_ENTRY_LEN}")]
    TooLarge { key: String, len: usize },
}
