//! The gossip protocol as a pure state machine: membership, versioned per-node state, and the
//! cluster's verdict on each node (alive, suspect, down, left).
//!
//! * **Anti-entropy** (Scuttlebutt): `fanout` times an `interval` the node sends a digest of
//!   what it knows to one member, the one the clock's schedule names (see [`schedule`]: every
//!   member is contacted once a slot, by another each time, so an unanswered exchange finds a
//!   crashed member within a slot); the answer carries what either side lacks. When a full digest
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
use crate::config::Profile;
use crate::events::ClusterEvent;
use crate::keys::zone::{ZONE_KEY, ZONES_PREFIX};
use crate::keys::{LEFT_KEY, MAX_ENTRY_LEN, SUSPECT_PREFIX, UNHEARD_KEY, WIRE_KEY};
use crate::types::{Incarnation, NodeName, Time, Version};
use crate::watch;
use crate::wire::{
    self, Beat, BeatAge, BeatNews, DigestEntry, Envelope, ExchangeError, Frame, MAX_DATAGRAM,
    Message, NodeDelta, Want,
};
use rand::rngs::SmallRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

/// Keys reserved for the protocol itself.
pub const RESERVED: [&str; 6] = [
    SUSPECT_PREFIX,
    LEFT_KEY,
    WIRE_KEY,
    UNHEARD_KEY,
    ZONE_KEY,
    ZONES_PREFIX,
];
/// A fresher heartbeat is worth answering a digest with only when it is this much fresher
/// (in deciseconds): finer news of life costs bytes and tells phi nothing new.
const BEAT_NEWS_MIN: u64 = 5;
/// How many news exchanges carry an urgent piece of news (see `note_urgent_news`).
const URGENT_ROUNDS: u8 = 3;

#[derive(Clone, Debug)]
pub struct Settings {
    pub interval: Duration,
    /// Rounds per `interval`, each with one member.
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
    /// Chance per `interval` of also sending a digest to one member we believe down, so a
    /// healed partition or a resumed process is found again.
    pub reconnect_chance: f64,
    pub join_backoff_min: Duration,
    pub join_backoff_max: Duration,
    pub watch: watch::Settings,
    /// The zone this node is in (`node.zone`; see [`zones`]).
    pub zone: String,
    /// A zone with no sign of life for this long is asked directly, then suspected.
    pub zone_timeout: Duration,
}

impl Settings {
    /// The settings of `profile` (`gossip.profile`; see [`Profile`]) for an `interval`:
    /// `lean` gossips with one member an interval instead of two.
    pub fn profile(profile: Profile, interval: Duration) -> Settings {
        let mut s = Settings::with_interval(interval);
        if profile == Profile::Lean {
            s.fanout = 1;
        }
        s
    }

    pub fn with_interval(interval: Duration) -> Settings {
        let watch = watch::Settings {
            first_interval: interval,
            ..watch::Settings::default()
        };
        Settings {
            interval,
            fanout: 2,
            news_fanout: 2,
            news_delay: interval / 40,
            answer_timeout: Duration::from_millis(250),
            digest_budget: 120,
            indirect_probes: 3,
            expected_witnesses: 3,
            suspicion_min: Duration::from_millis(500),
            suspicion_max: Duration::from_secs(4),
            reconnect_chance: 0.3,
            join_backoff_min: Duration::from_secs(1),
            join_backoff_max: Duration::from_secs(30),
            watch,
            zone: crate::keys::zone::DEFAULT_ZONE.to_string(),
            zone_timeout: interval * 2,
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

#[derive(Clone, Debug)]
pub enum Input {
    /// Time passes: run due rounds and timers. Call it at [`Core::next_deadline`] (calling it
    /// more often does no harm).
    Tick,
    Datagram {
        from: SocketAddr,
        bytes: Vec<u8>,
    },
    /// The watcher of `peer` suspects it, or clears its suspicion. (A watcher sends its
    /// probes itself: see [`crate::watch::probe`].)
    Verdict {
        peer: NodeName,
        verdict: watch::Verdict,
    },
    /// The answer of a seed to our join request, or why there was none.
    JoinAnswer {
        seed: SocketAddr,
        answer: Result<Frame, ExchangeError>,
    },
    /// Leave the cluster gracefully.
    Leave,
    /// Discovery found a member of this cluster at `seed` (see `crate::discover`): a node that
    /// knows no live member joins through it; one that does ignores it.
    Discovered {
        seed: SocketAddr,
    },
    /// An application on this host could not reach `peer` (`nbwatch unreachable`): counted,
    /// and its watcher probes it at once (never a verdict by itself).
    Report {
        peer: NodeName,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// A datagram for node `name` at `to` (sealed for that node by name).
    Send {
        to: SocketAddr,
        name: NodeName,
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
    /// `peer` answered the watcher's probe numbered `seq`, directly or through a relay: the
    /// watcher takes it as an answer only if it sent a probe of that number lately
    /// ([`watch::Prober::sent`]).
    ProbeAnswered {
        peer: NodeName,
        seq: u32,
    },
    /// An input for the watcher of `peer`.
    Watch {
        peer: NodeName,
        input: watch::Input,
    },
    Event(ClusterEvent),
    /// Our incarnation changed (persist it so a restart goes higher).
    IncarnationChanged(Incarnation),
    /// A suspicion this node raised proved wrong: the peer answered after all, or refuted it
    /// (see `watch::LocalHealth::misjudged`).
    Misjudged(NodeName),
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
    /// Bytes of the upper layer of zones.
    pub bytes_zones: u64,
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
    /// Its live keys, shared with the core until they change (see `NodeState::shown`).
    pub kv: std::sync::Arc<BTreeMap<String, String>>,
    /// Its wall clock minus ours in milliseconds, once it has sent us a datagram itself
    /// (see `clock`); times it wrote in its state are read through [`MemberView::local`].
    pub clock_offset: Option<i64>,
    /// Reports from applications on this host that could not reach it (`nbwatch
    /// unreachable`), since this node started.
    pub reports: u64,
}

impl MemberView {
    /// `t`, a time this member wrote by its own clock (a TTL's end, a silence's end), as a
    /// time by ours (see `clock::to_local`).
    pub fn local(&self, t: Time) -> Time {
        clock::to_local(self.clock_offset, t)
    }
}

#[derive(Clone, Debug)]
struct Member {
    state: NodeState,
    status: Status,
    /// When this node last had a sign of life of it (its own beat time or a direct datagram),
    /// by our clock.
    last_heard: Time,
    /// Its clock against ours, from its own datagrams.
    clock: clock::PeerClock,
    /// When this node first saw a suspicion of the current incarnation.
    suspect_since: Option<Time>,
    /// When its state last changed in a way worth spreading early.
    news_at: Option<Time>,
    /// Reports from applications on this host that could not reach it.
    reports: u64,
}

#[derive(Clone, Debug)]
struct Relay {
    requester: SocketAddr,
    requester_name: NodeName,
    seq: u32,
    target: NodeName,
    expires: Time,
}

/// Where a `Syn` came from and how to read it.
struct Syn {
    from: SocketAddr,
    name: NodeName,
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
    /// The earliest a suspect's timeout runs out with enough witnesses: exact after a tick
    /// (which judges every suspect), only ever earlier between ticks (judging a suspicion as
    /// it arrives); a suspicion withdrawn meanwhile makes it early, which costs one idle tick.
    verdict_next: Option<Time>,
    next_round: Time,
    news_round: Option<Time>,
    news: BTreeSet<NodeName>,
    /// Urgent news and how many more news exchanges repeat it.
    urgent: BTreeMap<NodeName, u8>,
    awaiting: BTreeMap<NodeName, Time>,
    seq: u32,
    relays: BTreeMap<u32, Relay>,
    stats: Stats,
    started: bool,
    /// Number of live (alive or suspect) members other than us; `None` after a status change.
    live_cache: std::cell::Cell<Option<usize>>,
    /// Member names in the order they were learned, for picking random ones cheaply.
    names: Vec<NodeName>,
    /// Who this node hears directly.
    reach: reach::Reach,
    /// How far into each slot this node's rounds run (see [`schedule`]).
    phase: Duration,
    /// The upper layer of zones (see [`zones`]).
    upper: zones::Upper,
    /// Each zone's reachability as last reported in an event.
    zone_reachable: BTreeMap<String, bool>,
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
        // Every node says which wire version it speaks, so the others speak it to it.
        let mut own = NodeState::new(incarnation, addr);
        own.write(WIRE_KEY, Some(crate::wire::VERSION.to_string()));
        // It hears everyone it knows of (nobody yet); the rounds keep it current.
        own.write(UNHEARD_KEY, Some(String::new()));
        // Hosts of the default zone write nothing, as before zones.
        if settings.zone != crate::keys::zone::DEFAULT_ZONE {
            own.write(ZONE_KEY, Some(settings.zone.clone()));
        }
        Core {
            me,
            settings,
            rng: SmallRng::seed_from_u64(seed),
            own,
            leaving: false,
            seeds,
            joined: false,
            join_attempts: 0,
            next_join: None,
            members: BTreeMap::new(),
            suspicions: BTreeMap::new(),
            verdict_next: None,
            next_round: Time::ZERO,
            news_round: None,
            news: BTreeSet::new(),
            urgent: BTreeMap::new(),
            awaiting: BTreeMap::new(),
            seq: 0,
            relays: BTreeMap::new(),
            stats: Stats::default(),
            started: false,
            live_cache: std::cell::Cell::new(None),
            names: Vec::new(),
            phase: Duration::ZERO,
            reach: reach::Reach::default(),
            upper: zones::Upper::default(),
            zone_reachable: BTreeMap::new(),
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
    /// Where a member listens, for its watcher's probes.
    pub fn contact(&self, node: &NodeName) -> Option<watch::Contact> {
        self.members.get(node).map(|m| watch::Contact {
            name: node.clone(),
            addr: m.state.addr,
        })
    }
    /// The live members other than us: the helpers an indirect probe is drawn from.
    /// Whether any other member is live (alive or suspect) in this node's view.
    pub fn knows_live_member(&self) -> bool {
        self.members.values().any(|m| m.status.is_live())
    }

    pub fn live_contacts(&self) -> Vec<watch::Contact> {
        self.members
            .iter()
            .filter(|(_, m)| m.status.is_live())
            .map(|(n, m)| watch::Contact {
                name: n.clone(),
                addr: m.state.addr,
            })
            .collect()
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

    /// How many other members this node sees alive.
    pub fn alive_count(&self) -> usize {
        self.members
            .values()
            .filter(|m| m.status == Status::Alive)
            .count()
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
            kv: self.own.shown(),
            clock_offset: Some(0),
            reports: 0,
        }];
        views.extend(self.members.iter().map(|(name, m)| MemberView {
            name: name.clone(),
            addr: m.state.addr,
            status: m.status,
            incarnation: m.state.incarnation,
            last_heard: m.last_heard,
            is_self: false,
            kv: m.state.shown(),
            clock_offset: m.clock.offset(),
            reports: m.reports,
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
            Input::Discovered { seed } => {
                if !self.knows_live_member() && seed != self.own.addr && !self.leaving {
                    tracing::info!(%seed, "discovered a member of the cluster; joining through it");
                    if !self.seeds.contains(&seed) {
                        self.seeds.insert(0, seed);
                    }
                    self.joined = false;
                    self.join_attempts =
                        self.seeds.iter().position(|s| *s == seed).unwrap_or(0) as u32;
                    self.next_join = Some(now);
                    self.tick(now, &mut out);
                }
            }
            Input::Report { peer } => {
                if let Some(m) = self.members.get_mut(&peer) {
                    m.reports += 1;
                    if m.status.is_live() {
                        out.push(Output::Watch {
                            peer,
                            input: watch::Input::Reported,
                        });
                    }
                }
            }
        }
        out
    }

    fn start(&mut self, now: Time, out: &mut Vec<Output>) {
        self.phase = self.jitter(self.slot_length());
        self.next_round = schedule::next_round(now, self.slot_length(), self.phase);
        if self.seeds.is_empty() {
            self.joined = true;
        } else {
            self.next_join = Some(now);
        }
        self.tick(now, out);
    }

    /// When [`Input::Tick`] next has something to do: a join attempt, a round, a news
    /// exchange, an exchange that went unanswered, a verdict whose suspicion timeout runs
    /// out, or a zone asked directly that is due to have answered. A time not after `now` means at once. Every input may move it earlier, so a
    /// driver asks again after each one instead of ticking at a fixed rate.
    pub fn next_deadline(&self) -> Time {
        let join = self
            .next_join
            .filter(|_| !self.joined && !self.seeds.is_empty());
        [
            join,
            self.news_round,
            self.awaiting.values().min().copied(),
            self.verdict_next,
            self.zone_probe_deadline(),
        ]
        .into_iter()
        .flatten()
        .fold(self.next_round, Time::min)
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
        let round = now >= self.next_round;
        if round {
            self.next_round = schedule::next_round(now, self.slot_length(), self.phase);
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
        self.zone_probes_due(now, out);
        // Suspicions are judged as they arrive; the rest is time: every suspect is judged
        // again when a timeout runs out, and on every round in case the cluster shrank under
        // one (fewer witnesses are then enough).
        if round || self.verdict_next.is_some_and(|due| now >= due) {
            self.verdict_next = None;
            let suspected: Vec<NodeName> = self.suspicions.keys().cloned().collect();
            for node in suspected {
                self.judge(now, &node, out);
            }
        }
    }

    /// A round every `interval / fanout`, each with one member (see [`schedule`]).
    fn slot_length(&self) -> Duration {
        self.settings.interval / self.settings.fanout.max(1) as u32
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
        if let Message::Zones {
            zone,
            digest,
            summaries,
            suspects,
            reply,
            complete,
        } = env.msg
        {
            if self.members.contains_key(&env.from) {
                self.heard_directly(now, &env_header(&env.from, env.incarnation, env.beat), out);
            }
            let header = env_header(&env.from, env.incarnation, env.beat);
            let digest = zones::Listed {
                entries: digest,
                complete,
            };
            self.on_zones(
                now, from, &header, zone, digest, summaries, suspects, reply, out,
            );
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
                    name: env.from.clone(),
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
                    self.send(from, &env.from, Message::Ack { deltas }, out);
                }
            }
            Message::Ack { deltas } => self.apply_deltas(now, &deltas, out),
            Message::Ping { seq } => self.send(from, &env.from, Message::PingAck { seq }, out),
            // An answer counts only as the answer to a probe actually sent: a watcher's (it
            // checks the number) or a ping this node relayed for another.
            Message::PingAck { seq } if seq & watch::probe::WATCHER_SEQ != 0 => {
                if self
                    .members
                    .get(&env.from)
                    .is_some_and(|m| m.status.is_live())
                {
                    out.push(Output::ProbeAnswered {
                        peer: env.from.clone(),
                        seq,
                    });
                }
            }
            Message::PingAck { seq } => {
                let relayed = self.relays.get(&seq).is_some_and(|r| r.target == env.from);
                if relayed && let Some(relay) = self.relays.remove(&seq) {
                    self.send(
                        relay.requester,
                        &relay.requester_name,
                        Message::IndirectAck {
                            seq: relay.seq,
                            target: env.from.clone(),
                            incarnation: env.incarnation,
                            beat: env.beat,
                        },
                        out,
                    );
                    // The ping was ours: the target answered this node too.
                    self.answered(&env.from, out);
                }
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
                        requester_name: env.from.clone(),
                        seq,
                        target: target.clone(),
                        expires: now + self.settings.watch.indirect_timeout * 2,
                    },
                );
                self.send(target_addr, &target, Message::Ping { seq: my_seq }, out);
            }
            Message::Zones { .. } => {}
            Message::IndirectAck {
                seq,
                target,
                incarnation,
                beat,
            } => {
                let current = self.members.get(&target).map(|m| m.state.incarnation);
                if current == Some(incarnation) {
                    self.see_beat(now, &target, beat, false, out);
                    if self
                        .members
                        .get(&target)
                        .is_some_and(|m| m.status.is_live())
                    {
                        out.push(Output::ProbeAnswered { peer: target, seq });
                    }
                }
            }
        }
    }

    /// The number of a ping relayed for another node; watchers number theirs with
    /// [`watch::probe::WATCHER_SEQ`] set, so the two never meet.
    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1) & !watch::probe::WATCHER_SEQ;
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
        self.reach.heard(now, &env.from);
        let Some(m) = self.members.get_mut(&env.from) else {
            return;
        };
        if m.state.incarnation != env.incarnation {
            return;
        }
        if m.clock.observe(now, env.beat.time()) {
            let offset_s = m.clock.offset().unwrap_or(0) as f64 / 1000.0;
            tracing::warn!(peer = %env.from, offset_s, "this peer's wall clock is off ours; its times are read on ours");
        }
        // `last_heard` follows the sender's beat (its clock when it sent, read on ours), not our
        // receive time: a datagram still in flight when its sender died must not make it later
        // than the death.
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
        m.last_heard = m.last_heard.max(m.clock.to_local(beat.time()).min(now));
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

    fn on_join_answer(
        &mut self,
        now: Time,
        seed: SocketAddr,
        answer: Result<Frame, ExchangeError>,
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
                // A seed in another zone: join this zone through its representatives.
                let reps = self.own_zone_reps();
                if !self.knows_live_member() && !reps.is_empty() && !reps.contains(&seed) {
                    tracing::info!(zone = %self.settings.zone, "the seed is in another zone; joining this zone through its representatives");
                    for r in reps.into_iter().rev() {
                        self.seeds.retain(|s| *s != r);
                        self.seeds.insert(0, r);
                    }
                    self.joined = false;
                    self.join_attempts = 0;
                    self.next_join = Some(now);
                }
            }
            Ok(Frame::JoinRejected { reason }) => {
                out.push(Output::Fatal(format!("seed {seed} refused us: {reason}")));
            }
            Ok(other) => {
                self.retry_join(now, seed, format!("unexpected answer {other:?}"));
            }
            Err(why) => self.retry_join(now, seed, why.to_string()),
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
                &peer,
                Message::Ack {
                    deltas: vec![just_left.clone()],
                },
                out,
            );
            self.send_news(to, &peer, &digest, out);
        }
        self.leaving = true;
    }
}

pub mod clock;
mod exchange;
pub mod reach;
pub mod schedule;
mod verdict;
pub mod zones;

use verdict::is_protocol_key;

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

/// An envelope with no message: who sent it, in which life, how alive (for the handlers that
/// read only that).
fn env_header(from: &NodeName, incarnation: Incarnation, beat: Beat) -> Envelope {
    Envelope {
        from: from.clone(),
        incarnation,
        beat,
        msg: Message::PingAck { seq: 0 },
    }
}
