//! Zones: the upper layer (the layers of GEMS).
//!
//! Within a zone the protocol of [`super`] runs in full; a node keeps no state of another
//! zone's members (their deltas are not taken), only that zone's **summary**. The [`REPS`]
//! first live members of a zone by name are its **representatives**. A zone **watches** its
//! [`WATCH`] neighbours on each side in the ring of zones by name ([`Core::watched`]). Every
//! slot a representative exchanges a zone digest — per zone, the version of its summary and
//! the age of the freshest sign of life of the zone — with a representative of a watched
//! zone, in turn, and the two send each other the summaries the other lacks (a digest says
//! whether it lists every zone its sender knows: only then are the zones it leaves out news to
//! it). A renewed summary does not wait for the exchanges: its publisher sends it at once to
//! every other zone's publisher, which publishes it on arrival. So what a representative
//! sends does not grow with the number of zones, but for the pushes of summaries that changed
//! (when everyone's exchanged with everyone's, at a hundred zones the digests needed to keep
//! every zone's beat fresh everywhere cost a representative 7.5 KB/s).
//!
//! Every time here is this node's: a direct message is a sign of life now, and a digest's
//! ages are read against this node's clock as it arrives, so a representative whose clock is
//! off by seconds does not make its zone look silent (one-way latency is not subtracted).
//!
//! **Two witnesses across layers.** A representative with no sign of life of a watched zone Z
//! for `zone_timeout` asks each of Z's representatives directly, [`PROBES`] times
//! `answer_timeout` apart; with no answer it suspects Z and tells every representative of
//! every zone at once, and tells them again when Z is heard from (a sign of life newer than a
//! suspicion answers it). Z is **unreachable** once two distinct representatives suspect it
//! (one, where this node reaches no other representative) and this node itself has no sign of
//! life of Z for `zone_timeout`. The publisher also sends its zone's beat to every zone it
//! does not watch, now and then, and asks a zone silent for much longer itself: a partition
//! may leave all of a zone's watchers on the far side. A zone cut off alone sees every other zone unreachable: one
//! zone event each, never a `node_down` per host, since no host watches another zone's hosts.
//!
//! **Into the zone.** The first representative (the publisher) writes `zones.<Z>` for every
//! zone it knows, its own included, whenever that changes; every host reads the zones from
//! these keys ([`Core::zones`]) and turns a change of reachability into one event. A zone's
//! own summary is made by the shell (`crate::zone::summarize`, from the same view as the
//! leader) and adopted by the publisher on a change of members, leader or incidents at once,
//! and on a change of metrics beyond a dead-band at most every [`METRICS_EVERY`]: while
//! nothing changes a summary costs nothing, however many zones there are.

use super::*;
use crate::keys::zone::{CUT_OFF_KEY, CutOff, Latest, Published, ZONES_PREFIX, latest};
use crate::wire::{ZoneDigest, ZoneSummary};

/// Representatives per zone.
pub const REPS: usize = 3;
/// A summary whose metrics alone changed is adopted at most this often.
pub const METRICS_EVERY: Duration = Duration::from_secs(30);
/// A metric's mean must move by more than this share (or 0.05 absolute) to count as changed.
const DEAD_BAND: f32 = 0.1;
/// Bytes of zone digest in one message; summaries fill the datagram up to its limit.
const ZONE_DIGEST_BUDGET: usize = 300;
/// Zones a digest lists beyond its own, those in doubt and the watched ones: a few others
/// in turn, so a summary missed is found again within seconds, and a digest is as long at a
/// hundred zones as at ten.
const ZONE_DIGEST_OTHERS: usize = 6;
/// Times a silent zone's representatives are asked before this node suspects it.
const PROBES: u32 = 2;
/// A zone not watched is asked directly by the publisher once silent for this many halves
/// of the far beats' period (see [`Core::judge_zone`]).
const UNWATCHED_SILENCE: u32 = 5;
/// A publisher sends its beat to every zone it does not watch once every this many
/// `zone_timeout`s (see [`Core::send_far_beats`])...
const FAR_BEAT: u32 = 2;
/// ... and no more than this many of them a second: beyond some forty zones the period
/// grows instead, so what a zone sends stays the same however many zones there are.
const FAR_BEATS_PER_SECOND: u32 = 5;
/// Zones watched on each side in the ring of zones (see [`Core::watched`]).
const WATCH: usize = 2;

/// A zone digest as sent: its entries, and whether they are every zone the sender knows
/// (at a hundred zones they are not: a digest holds what fits in [`ZONE_DIGEST_BUDGET`]).
#[derive(Clone, Debug, Default)]
pub(super) struct Listed {
    pub entries: Vec<ZoneDigest>,
    pub complete: bool,
}

/// What this node knows of the upper layer (used while it is a representative; a node that
/// is not keeps what it learned, so it starts warm when it becomes one).
#[derive(Debug, Default)]
pub(super) struct Upper {
    summaries: BTreeMap<String, ZoneSummary>,
    /// The freshest sign of life of each zone.
    beats: BTreeMap<String, Beat>,
    /// Representatives of each zone met directly, with their address (until a summary names
    /// them, a joiner knows no other).
    met: BTreeMap<String, BTreeMap<NodeName, SocketAddr>>,
    /// zone -> the representatives that suspect it, and when this node last heard so: a sign
    /// of life of the zone newer than that answers the suspicion.
    witnesses: BTreeMap<String, BTreeMap<NodeName, Time>>,
    /// Zones this node suspected and then heard from: the others are told at the next round.
    cleared: BTreeSet<String>,
    /// Zones asked directly: until when their answer is awaited, and how many times they
    /// were asked.
    probing: BTreeMap<String, (Time, u32)>,
    /// Zones found unreachable, with their last beat.
    unreachable: BTreeMap<String, Beat>,
    turn: u64,
    /// Where the next far beat goes, and when (see [`Core::send_far_beats`]).
    far_turn: usize,
    far_next: Option<Time>,
    /// What this node last wrote under `zones.<Z>`: the summary's version and reachability.
    published: BTreeMap<String, (u32, bool)>,
    /// When this zone's summary last changed by its metrics alone.
    metrics_at: Option<Time>,
    /// This zone's summary changed by more than its metrics: pushed at the next round.
    push: bool,
    /// Summaries this node sent to other zones' representatives.
    summaries_sent: u64,
    /// When a message from another zone last arrived.
    heard_other: Option<Time>,
    /// When this node last found a zone unreachable: a cut-off mark needs a verdict made
    /// during the silence, not one of a zone that died long before it.
    found_at: Option<Time>,
    /// The cut-off mark this node wrote (see [`CutOff`]), while it stands.
    cut_off: Option<CutOff>,
    /// publisher -> its cut-off mark, as read (this node's own included).
    cut_offs: BTreeMap<NodeName, CutOff>,
    /// zone -> who in this zone publishes it, and what (read once, as it arrived): a changed
    /// publication is judged from here, not by reading every member's state again.
    publishers: BTreeMap<String, BTreeMap<NodeName, Mark>>,
}

/// What a zone's reachability events need of one publication.
#[derive(Clone, Copy, Debug)]
struct Mark {
    at: u64,
    reachable: bool,
    since: Option<u64>,
}

/// A zone as a host reads it from its zone's publications.
#[derive(Clone, Debug, PartialEq)]
pub struct ZoneView {
    pub summary: ZoneSummary,
    pub reachable: bool,
    /// When it was last heard, while unreachable.
    pub since: Option<Time>,
    /// Who published it.
    pub by: NodeName,
}

impl Core {
    /// The zone this node is in.
    pub fn zone(&self) -> &str {
        &self.settings.zone
    }

    /// This zone's representatives as this node sees them: the first [`REPS`] live members by
    /// name, this node included.
    pub fn reps(&self) -> Vec<(NodeName, SocketAddr)> {
        let mut live: Vec<(NodeName, SocketAddr)> = (self.members.iter())
            .filter(|(_, m)| m.status.is_live())
            .map(|(n, m)| (n.clone(), m.state.addr))
            .take(REPS + 1)
            .collect();
        if !self.leaving {
            live.push((self.me.clone(), self.own.addr));
        }
        live.sort();
        live.truncate(REPS);
        live
    }

    fn is_rep(&self) -> bool {
        self.reps().iter().any(|(n, _)| *n == self.me)
    }

    /// Whether the shell should make this zone's summary (see [`Core::adopt_summary`]): this
    /// node publishes, and there are other zones to tell.
    pub fn wants_summary(&self) -> bool {
        self.is_publisher()
            && (self.upper.summaries.keys())
                .chain(self.upper.met.keys())
                .any(|z| *z != self.settings.zone)
    }

    /// Whether this node publishes the zones into its zone (the first representative).
    pub fn is_publisher(&self) -> bool {
        self.reps().first().is_some_and(|(n, _)| *n == self.me)
    }

    /// How many summaries this node sent to representatives of other zones (exchanges and
    /// pushes): while no zone changes, none.
    pub fn zone_summaries_sent(&self) -> u64 {
        self.upper.summaries_sent
    }

    /// Every zone as this node's zone publishes it: for each zone, the latest publication
    /// among the live members of this zone and this node.
    pub fn zones(&self) -> Vec<ZoneView> {
        self.latest(|state, latest, by| {
            for (key, value) in state.live_under(ZONES_PREFIX) {
                latest.offer(by, key, value);
            }
        })
    }

    /// Each zone as this node's events last told it: reachable or not (the zones whose
    /// publication it has read, this node's own included).
    pub fn zone_reachability(&self) -> &BTreeMap<String, bool> {
        &self.zone_reachable
    }

    /// [`Core::zones`] of one zone, reading only its key (and the cut-off marks).
    pub fn zone_view(&self, zone: &str) -> Option<ZoneView> {
        let key = format!("{ZONES_PREFIX}{zone}");
        self.latest(|state, latest, by| {
            for key in [key.as_str(), CUT_OFF_KEY] {
                if let Some(value) = state.value(key) {
                    latest.offer(by, key, value);
                }
            }
        })
        .pop()
    }

    /// The latest publication of each zone that `read` offers from a state, among the live
    /// members of this zone and this node.
    fn latest(&self, read: impl Fn(&NodeState, &mut Latest, &NodeName)) -> Vec<ZoneView> {
        let mut latest = Latest::default();
        let own = std::iter::once((&self.me, &self.own));
        let live = (self.members.iter())
            .filter(|(_, m)| m.status.is_live())
            .map(|(n, m)| (n, &m.state));
        for (name, state) in own.chain(live) {
            read(state, &mut latest, name);
        }
        (latest.into_map().into_values())
            .map(|(by, p)| ZoneView {
                reachable: p.reachable,
                since: p.since.map(Time::from_millis),
                summary: p.summary,
                by,
            })
            .collect()
    }

    /// `by` now publishes `p` of `zone` (`None`: it withdrew its publication).
    pub(super) fn note_publication(&mut self, by: &NodeName, zone: &str, p: Option<&Published>) {
        let publishers = self.upper.publishers.entry(zone.to_string()).or_default();
        match p {
            Some(p) => {
                let mark = Mark {
                    at: p.at,
                    reachable: p.reachable,
                    since: p.since,
                };
                publishers.insert(by.clone(), mark);
            }
            None => {
                publishers.remove(by);
            }
        }
    }

    /// A new life of `node` starts with an empty state: its old publications are gone.
    pub(super) fn forget_publications(&mut self, node: &NodeName) {
        for publishers in self.upper.publishers.values_mut() {
            publishers.remove(node);
        }
        self.upper.cut_offs.remove(node);
    }

    /// `by` now has the cut-off mark `c` (`None`: none): every zone's reachability is judged
    /// again.
    pub(super) fn note_cut_off(&mut self, by: &NodeName, c: Option<CutOff>, out: &mut Vec<Output>) {
        let before = self.upper.cut_offs.get(by).cloned();
        match c {
            Some(c) => self.upper.cut_offs.insert(by.clone(), c),
            None => self.upper.cut_offs.remove(by),
        };
        if self.upper.cut_offs.get(by) == before.as_ref() {
            return;
        }
        let zones: Vec<String> = self.upper.publishers.keys().cloned().collect();
        for z in zones {
            self.zone_published(&z, out);
        }
    }

    /// A zone's publication changed somewhere in this zone: a change of its reachability is
    /// an event. The latest publication among this node and the live members counts, as in
    /// [`Core::zones`].
    pub(super) fn zone_published(&mut self, zone: &str, out: &mut Vec<Output>) {
        let Some(publishers) = self.upper.publishers.get(zone) else {
            return;
        };
        let own = publishers.get(&self.me);
        let live = (publishers.iter())
            .filter(|(by, _)| self.members.get(*by).is_some_and(|m| m.status.is_live()))
            .map(|(_, mark)| mark);
        let Some(&(mut view)) = latest(own.into_iter().chain(live), |m| m.at) else {
            return;
        };
        // The latest cut-off mark of this node and the live members, if it covers the zone.
        let cut_off = latest(
            (self.upper.cut_offs.iter())
                .filter(|(by, _)| {
                    **by == self.me || self.members.get(*by).is_some_and(|m| m.status.is_live())
                })
                .map(|(_, c)| c),
            |c| c.at,
        );
        if let Some(c) = cut_off
            && c.covers(zone, view.at)
        {
            view = Mark {
                at: c.at,
                reachable: false,
                since: Some(c.since),
            };
        }
        let was = self.zone_reachable.insert(zone.to_string(), view.reachable);
        match (was, view.reachable) {
            (Some(true) | None, false) => {
                out.push(Output::Event(ClusterEvent::ZoneUnreachable {
                    zone: zone.to_string(),
                    last_heard: view.since.map_or(Time::ZERO, Time::from_millis),
                }));
            }
            (Some(false), true) => out.push(Output::Event(ClusterEvent::ZoneReachable {
                zone: zone.to_string(),
            })),
            _ => {}
        }
    }

    /// The shell's summary of this zone (see `crate::zone::summarize`): adopted by the
    /// publisher when it changed enough; sends nothing (the next round publishes it).
    pub fn adopt_summary(&mut self, now: Time, mut summary: ZoneSummary) {
        if !self.is_publisher() {
            return;
        }
        summary.zone = self.settings.zone.clone();
        summary.reps = self.reps();
        let old = self.upper.summaries.get(&self.settings.zone);
        let metrics_only = match old {
            None => false,
            Some(old) if !same_members(old, &summary) => false,
            Some(old) if !metrics_moved(old, &summary) => return,
            Some(_) => true,
        };
        if metrics_only
            && self
                .upper
                .metrics_at
                .is_some_and(|t| now.since(t) < METRICS_EVERY)
        {
            return;
        }
        if metrics_only {
            self.upper.metrics_at = Some(now);
        }
        // Every change is pushed to the other zones' representatives at once (metrics at most
        // every `METRICS_EVERY`): the exchanges go to a few watched zones only.
        self.upper.push = true;
        let secs = (Beat::at(now).0 / 10) as u32;
        summary.version = secs.max(old.map_or(0, |o| o.version + 1));
        self.upper
            .summaries
            .insert(self.settings.zone.clone(), summary);
    }

    /// A round of the upper layer: one exchange with another zone, the verdicts, and the
    /// publications. A node that stopped being the publisher withdraws its publications.
    pub(super) fn zones_round(&mut self, now: Time, out: &mut Vec<Output>) {
        let zone = self.settings.zone.clone();
        self.upper.beats.insert(zone.clone(), self.own.beat);
        if !self.is_publisher() && !self.upper.published.is_empty() {
            for z in std::mem::take(&mut self.upper.published).into_keys() {
                self.write_own(now, &format!("{ZONES_PREFIX}{z}"), None, out);
                self.note_publication(&self.me.clone(), &z, None);
                self.zone_published(&z, out);
            }
        }
        if !self.is_publisher() && self.upper.cut_off.take().is_some() {
            self.write_own(now, CUT_OFF_KEY, None, out);
            self.note_cut_off(&self.me.clone(), None, out);
        }
        if !self.is_rep() || self.leaving {
            return;
        }
        // A cluster of one zone has no upper layer: nothing is sent or published.
        let others: Vec<String> = (self.known_zones().into_iter())
            .filter(|z| *z != zone)
            .collect();
        if others.is_empty() {
            return;
        }
        // The watched zones in turn (see [`Core::watched`]).
        let watched: Vec<String> = self.watched().into_iter().collect();
        self.upper.turn += 1;
        let z = &watched[(self.upper.turn % watched.len() as u64) as usize];
        let contacts = self.contacts(z);
        if let Some((name, addr)) = contacts.choose(&mut self.rng).cloned() {
            let digest = self.zone_digest();
            self.send_zones(addr, &name, digest, Vec::new(), true, out);
        }
        if std::mem::take(&mut self.upper.push) {
            self.push_own_summary(&others, out);
        }
        for z in std::mem::take(&mut self.upper.cleared) {
            self.tell_everyone(&z, out);
        }
        if self.is_publisher() {
            self.send_far_beats(now, &others, out);
        }
        for z in others {
            self.judge_zone(now, &z, out);
        }
        if self.is_publisher() {
            self.publish_zones(now, out);
        }
    }

    fn known_zones(&self) -> Vec<String> {
        let mut zones: BTreeSet<String> = self.upper.summaries.keys().cloned().collect();
        zones.extend(self.upper.met.keys().cloned());
        zones.insert(self.settings.zone.clone());
        zones.into_iter().collect()
    }

    /// Whom to reach zone `z` through: its representatives (from its summary, else those met),
    /// this node's own zone's other representatives for its own zone.
    fn contacts(&self, z: &str) -> Vec<(NodeName, SocketAddr)> {
        let mut found: Vec<(NodeName, SocketAddr)> = if z == self.settings.zone {
            self.reps()
        } else if let Some(s) = self.upper.summaries.get(z)
            && !s.reps.is_empty()
        {
            s.reps.clone()
        } else {
            (self.upper.met.get(z).into_iter().flatten())
                .map(|(n, a)| (n.clone(), *a))
                .collect()
        };
        found.retain(|(n, _)| *n != self.me);
        found
    }

    /// Zone `z` as a digest lists it: the version of its summary here and the age of its
    /// freshest sign of life.
    fn zone_entry(&self, z: &str) -> ZoneDigest {
        ZoneDigest(
            z.to_string(),
            self.upper.summaries.get(z).map_or(0, |s| s.version),
            BeatAge::between(
                self.own.beat,
                self.upper.beats.get(z).copied().unwrap_or_default(),
            ),
        )
    }

    /// This node's zone digest: its own zone, then the zones in doubt, the watched zones, then
    /// [`ZONE_DIGEST_OTHERS`] others from a place that moves each time, as many as fit.
    fn zone_digest(&mut self) -> Listed {
        let zones = self.known_zones();
        let watched = self.watched();
        let mut order: Vec<&String> = Vec::with_capacity(zones.len());
        order.extend(zones.iter().filter(|z| **z == self.settings.zone));
        order.extend(
            zones
                .iter()
                .filter(|z| self.upper.witnesses.contains_key(*z)),
        );
        order.extend(watched.iter());
        let first = order.len();
        let start = if zones.is_empty() {
            0
        } else {
            self.rng.random_range(0..zones.len())
        };
        order.extend(zones[start..].iter().chain(&zones[..start]));
        let mut seen = BTreeSet::new();
        let mut used = 0;
        let mut digest = Vec::new();
        let mut complete = true;
        let mut others = 0;
        for (i, z) in order.into_iter().enumerate() {
            if !seen.insert(z) {
                continue;
            }
            let e = self.zone_entry(z);
            let len = wire::encoded_len(&e);
            if used + len > ZONE_DIGEST_BUDGET || others == ZONE_DIGEST_OTHERS {
                complete = false;
                break;
            }
            others += usize::from(i >= first);
            used += len;
            digest.push(e);
        }
        Listed {
            entries: digest,
            complete,
        }
    }

    /// This zone's summary changed by its members, leader or incidents: the publisher sends
    /// it at once to the publisher of every other zone (as their summaries name them), which
    /// publishes it into its zone as it arrives. Waiting for the zones' exchanges to carry it
    /// would take a few of them per zone in turn: at a hundred zones, seconds.
    fn push_own_summary(&mut self, others: &[String], out: &mut Vec<Output>) {
        let zone = self.settings.zone.clone();
        let Some(own) = self.upper.summaries.get(&zone).cloned() else {
            return;
        };
        let beat = BeatAge::between(self.own.beat, self.own.beat);
        for z in others {
            let Some((name, addr)) = self.contacts(z).first().cloned() else {
                continue;
            };
            let msg = Message::Zones {
                zone: zone.clone(),
                digest: vec![ZoneDigest(zone.clone(), own.version, beat)],
                summaries: vec![own.clone()],
                suspects: Vec::new(),
                reply: false,
                complete: false,
            };
            self.upper.summaries_sent += 1;
            self.send(addr, &name, msg, out);
        }
    }

    fn send_zones(
        &mut self,
        to: SocketAddr,
        name: &NodeName,
        digest: Listed,
        wanted: Vec<String>,
        reply: bool,
        out: &mut Vec<Output>,
    ) {
        let suspects: Vec<String> = (self.upper.witnesses.iter())
            .filter(|(_, by)| by.contains_key(&self.me))
            .map(|(z, _)| z.clone())
            .collect();
        let mut msg = Message::Zones {
            zone: self.settings.zone.clone(),
            digest: digest.entries,
            summaries: Vec::new(),
            suspects,
            reply,
            complete: digest.complete,
        };
        // Summaries fill what room the datagram has left.
        for z in wanted {
            let Some(s) = self.upper.summaries.get(&z).cloned() else {
                continue;
            };
            if let Message::Zones { summaries, .. } = &mut msg {
                summaries.push(s);
            }
            let len = wire::encoded_len(&msg) + 64;
            if len > MAX_DATAGRAM
                && let Message::Zones { summaries, .. } = &mut msg
            {
                summaries.pop();
                break;
            }
        }
        if let Message::Zones { summaries, .. } = &msg {
            self.upper.summaries_sent += summaries.len() as u64;
        }
        self.send(to, name, msg, out);
    }

    /// A `Zones` message from `name`, a representative of `zone`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_zones(
        &mut self,
        now: Time,
        from: SocketAddr,
        env: &Envelope,
        zone: String,
        digest: Listed,
        summaries: Vec<ZoneSummary>,
        suspects: Vec<String>,
        reply: bool,
        out: &mut Vec<Output>,
    ) {
        let name = env.from.clone();
        let complete = digest.complete;
        if zone != self.settings.zone {
            self.upper.heard_other = Some(now);
            let met = self.upper.met.entry(zone.clone()).or_default();
            met.insert(name.clone(), from);
            if met.len() > REPS * 2
                && let Some(other) = met.keys().find(|n| **n != name).cloned()
            {
                met.remove(&other);
            }
            // Read on this node's clock: a representative whose clock is off must not look
            // silent (its own beat says when by its clock, not by ours).
            self.zone_alive(now, &zone, Beat::at(now));
        }
        let mut learned = false;
        for s in summaries {
            learned |= self.learn_summary(now, s, out);
        }
        // A newer summary goes into this zone at once, not at the next round.
        if learned && self.is_publisher() {
            self.publish_zones(now, out);
        }
        for z in suspects {
            if z != zone && z != self.settings.zone {
                self.upper
                    .witnesses
                    .entry(z.clone())
                    .or_default()
                    .insert(name.clone(), now);
                self.judge_zone(now, &z, out);
            }
        }
        // What the sender lacks (summaries), and where this node is behind or fresher. A
        // representative its zone's summary does not name may be on an island of its zone
        // (hosts that joined apart): that summary names the others.
        let mut lacks = Vec::new();
        if reply
            && zone != self.settings.zone
            && (self.upper.summaries.get(&zone))
                .is_some_and(|s| !s.reps.iter().any(|(n, _)| *n == name))
        {
            lacks.push(zone.clone());
        }
        let mut answer = Vec::new();
        let mut mentioned = BTreeSet::new();
        for ZoneDigest(z, version, age) in digest.entries {
            // An age is how long before the message the sender last heard of the zone: read
            // against our clock, as the message arrives.
            let beat = age.beat(Beat::at(now));
            if z != self.settings.zone {
                self.zone_alive(now, &z, beat);
            }
            let mine = self.upper.summaries.get(&z).map_or(0, |s| s.version);
            let my_beat = self.upper.beats.get(&z).copied().unwrap_or_default();
            if mine > version {
                lacks.push(z.clone());
            }
            if reply && (version > mine || my_beat.0 >= beat.0 + BEAT_NEWS_MIN) {
                answer.push(ZoneDigest(
                    z.clone(),
                    mine,
                    BeatAge::between(self.own.beat, my_beat),
                ));
            }
            mentioned.insert(z);
        }
        if reply && complete {
            // The sender's digest listed every zone it knows: the others are news to it (their
            // versions and signs of life as room allows, and their summaries). A partial
            // digest's other zones come in its sender's next digests.
            for z in self.known_zones() {
                if !mentioned.contains(&z) {
                    let e = self.zone_entry(&z);
                    if wire::encoded_len(&answer) + wire::encoded_len(&e) < ZONE_DIGEST_BUDGET {
                        answer.push(e);
                    }
                    lacks.push(z);
                }
            }
        }
        if reply || !lacks.is_empty() {
            let answer = Listed {
                entries: answer,
                complete: false,
            };
            self.send_zones(from, &name, answer, lacks, false, out);
        }
    }

    /// A summary from elsewhere; true if it was newer than this node's of its zone (another
    /// zone's: this node's own zone's summary is made here).
    pub(super) fn learn_summary(
        &mut self,
        now: Time,
        s: ZoneSummary,
        out: &mut Vec<Output>,
    ) -> bool {
        if s.zone == self.settings.zone {
            // Hosts of this zone that joined apart (each through another zone before the
            // zone was known) find each other here: this node's digest goes to the strangers.
            let strangers: Vec<(NodeName, SocketAddr)> = (s.reps.iter())
                .filter(|(n, _)| *n != self.me && !self.members.contains_key(n))
                .cloned()
                .collect();
            if !strangers.is_empty() {
                let (digest, complete) = self.digest(now, false);
                for (name, addr) in strangers {
                    let msg = Message::Syn {
                        digest: digest.clone(),
                        complete,
                        news: false,
                    };
                    self.send(addr, &name, msg, out);
                }
            }
            if self.is_publisher() {
                // This zone's summary is made here. A newer version from elsewhere is an
                // island's (or a former publisher's): this one must outrank it.
                if let Some(own) = self.upper.summaries.get_mut(&self.settings.zone)
                    && s.version >= own.version
                {
                    own.version = s.version + 1;
                }
                return false;
            }
        }
        let newer = (self.upper.summaries.get(&s.zone)).is_none_or(|o| o.version < s.version);
        if newer {
            self.upper.summaries.insert(s.zone.clone(), s);
        }
        newer
    }

    /// A sign of life of zone `z` as old as `beat`: it answers every suspicion of the zone
    /// heard before it, and fresh enough, it clears any doubt.
    fn zone_alive(&mut self, now: Time, z: &str, beat: Beat) {
        let known = self.upper.beats.entry(z.to_string()).or_default();
        if beat <= *known {
            return;
        }
        *known = beat;
        if let Some(by) = self.upper.witnesses.get_mut(z) {
            let mine = by.contains_key(&self.me);
            by.retain(|_, heard| *heard >= beat.time());
            if mine && !by.contains_key(&self.me) {
                self.upper.cleared.insert(z.to_string());
            }
            if by.is_empty() {
                self.upper.witnesses.remove(z);
            }
        }
        if now.since(beat.time()) < self.settings.zone_timeout {
            self.upper.probing.remove(z);
            if self.upper.unreachable.remove(z).is_some() {
                tracing::info!(zone = z, "zone reachable again");
            }
        }
    }

    /// Is zone `z` (another zone) silent, suspected by enough witnesses, unreachable? The
    /// zones this zone watches ([`Core::watched`]) are asked and suspected from here after
    /// `zone_timeout`; of the others, the witnesses' word (they tell every representative) and
    /// this node's own silence of the zone decide — and the publisher, which hears every
    /// publisher's beat ([`Core::send_far_beats`]), asks a zone silent for
    /// [`UNWATCHED_SILENCE`] half-periods of those beats too, since a partition may leave all
    /// its watchers on the far side.
    fn judge_zone(&mut self, now: Time, z: &str, out: &mut Vec<Output>) {
        if z == self.settings.zone || !self.is_rep() {
            return;
        }
        let beat = self.upper.beats.get(z).copied().unwrap_or_default();
        if beat == Beat::default() || now.since(beat.time()) < self.settings.zone_timeout {
            return;
        }
        let suspected = (self.upper.witnesses.get(z)).is_some_and(|w| w.contains_key(&self.me));
        // A zone not watched from here is asked too once silent for much longer: its watchers
        // may all be on the far side of a partition.
        let asks = self.watched().contains(z)
            || (self.is_publisher()
                && now.since(beat.time()) >= self.far_period() * UNWATCHED_SILENCE / 2);
        if !suspected && asks {
            match self.upper.probing.get(z).copied().unwrap_or((now, 0)) {
                (deadline, _) if now < deadline => return,
                (_, asked) if asked < PROBES => {
                    let deadline = now + self.settings.answer_timeout;
                    self.upper
                        .probing
                        .insert(z.to_string(), (deadline, asked + 1));
                    // Only the zone asked about, and this node's own: a sign of life is
                    // all the answer needs to be.
                    let digest = Listed {
                        entries: vec![self.zone_entry(&self.settings.zone), self.zone_entry(z)],
                        complete: false,
                    };
                    for (name, addr) in self.contacts(z) {
                        self.send_zones(addr, &name, digest.clone(), Vec::new(), true, out);
                    }
                    return;
                }
                _ => {
                    tracing::info!(zone = z, "no sign of life of the zone; suspecting it");
                    self.upper.probing.remove(z);
                    (self.upper.witnesses.entry(z.to_string()).or_default())
                        .insert(self.me.clone(), now);
                    self.tell_everyone(z, out);
                }
            }
        }
        let witnesses = self.upper.witnesses.get(z).map_or(0, |w| w.len());
        let needed = if self.reaches_another_rep(z) { 2 } else { 1 };
        if witnesses >= needed && !self.upper.unreachable.contains_key(z) {
            tracing::warn!(zone = z, witnesses, "zone unreachable");
            self.upper.unreachable.insert(z.to_string(), beat);
            self.upper.found_at = Some(now);
        }
    }

    /// When the next zone asked directly is due to have answered.
    pub(super) fn zone_probe_deadline(&self) -> Option<Time> {
        self.upper
            .probing
            .values()
            .map(|(deadline, _)| *deadline)
            .min()
    }

    /// The zones asked directly whose answer is overdue: asked again, or suspected. A zone
    /// that gave a sign of life meanwhile, or a node no longer a representative, asks no more.
    pub(super) fn zone_probes_due(&mut self, now: Time, out: &mut Vec<Output>) {
        let due: Vec<String> = (self.upper.probing.iter())
            .filter(|(_, (deadline, _))| *deadline <= now)
            .map(|(z, _)| z.clone())
            .collect();
        for z in due {
            let beat = self.upper.beats.get(&z).copied().unwrap_or_default();
            if !self.is_rep() || now.since(beat.time()) < self.settings.zone_timeout {
                self.upper.probing.remove(&z);
            } else {
                self.judge_zone(now, &z, out);
            }
            // Asked again (a later deadline), suspected, or no longer asked (a zone no longer
            // watched): never due twice.
            if self
                .upper
                .probing
                .get(&z)
                .is_some_and(|(deadline, _)| *deadline <= now)
            {
                self.upper.probing.remove(&z);
            }
        }
    }

    /// The publisher sends its zone's beat to the publisher of every zone it does not watch,
    /// each once every [`Core::far_period`], one zone after the other evenly over the period:
    /// so every publisher has a sign of life of every zone a few seconds old (at a hundred
    /// zones, twenty), and finds a zone whose watchers are all beyond a partition. One small
    /// datagram per zone and period, at most [`FAR_BEATS_PER_SECOND`] from one host of each
    /// zone.
    fn send_far_beats(&mut self, now: Time, others: &[String], out: &mut Vec<Output>) {
        let watched = self.watched();
        let far: Vec<&String> = others.iter().filter(|z| !watched.contains(*z)).collect();
        if far.is_empty() {
            return;
        }
        // One every period / far zones, from where the last round stopped (not all at once
        // after a pause).
        let period = self.far_period();
        let gap = period / far.len() as u32;
        let mut next = (self.upper.far_next)
            .filter(|t| now.since(*t) < period)
            .unwrap_or(now);
        let own = self.zone_entry(&self.settings.zone);
        while next <= now {
            next = next + gap;
            let z = far[self.upper.far_turn % far.len()].clone();
            self.upper.far_turn = (self.upper.far_turn + 1) % far.len();
            let Some((name, addr)) = self.contacts(&z).first().cloned() else {
                continue;
            };
            let digest = Listed {
                entries: vec![own.clone()],
                complete: false,
            };
            self.send_zones(addr, &name, digest, Vec::new(), false, out);
        }
        self.upper.far_next = Some(next);
    }

    /// How often the publisher sends its beat to each zone it does not watch: every
    /// [`FAR_BEAT`] `zone_timeout`s, or as long as [`FAR_BEATS_PER_SECOND`] takes to reach
    /// them all.
    fn far_period(&self) -> Duration {
        let zones = self.known_zones().len() as u32;
        let far = zones.saturating_sub(1 + 2 * WATCH as u32);
        let paced = Duration::from_millis(u64::from(far) * 1000 / u64::from(FAR_BEATS_PER_SECOND));
        paced.max(self.settings.zone_timeout * FAR_BEAT)
    }

    /// Tell every representative of every zone (this one's included) what this node now
    /// thinks of zone `z`: its suspicion (every message carries them) or a sign of life. A
    /// zone is watched by a few zones only; the others take their word. Once per suspicion
    /// and once when it is answered: a few hundred small datagrams per incident.
    fn tell_everyone(&mut self, z: &str, out: &mut Vec<Output>) {
        let digest = Listed {
            entries: vec![self.zone_entry(&self.settings.zone), self.zone_entry(z)],
            complete: false,
        };
        let zones: Vec<String> = (self.known_zones().into_iter())
            .filter(|o| o != z)
            .collect();
        for o in zones {
            for (name, addr) in self.contacts(&o) {
                self.send_zones(addr, &name, digest.clone(), Vec::new(), false, out);
            }
        }
    }

    /// The zones this zone watches: its [`WATCH`] neighbours on each side in the ring of
    /// zones by name (every other zone, while there are no more than that). The relation
    /// is symmetric, so each pair of neighbours hears from each other both ways; a
    /// representative's exchanges go to these zones in turn, and so its cost does not grow
    /// with the number of zones.
    pub(super) fn watched(&self) -> BTreeSet<String> {
        let zones = self.known_zones();
        let own = &self.settings.zone;
        let Some(at) = zones.iter().position(|z| z == own) else {
            return BTreeSet::new();
        };
        let n = zones.len();
        (1..=WATCH.min(n / 2))
            .flat_map(|d| [zones[(at + d) % n].clone(), zones[(at + n - d) % n].clone()])
            .filter(|z| z != own)
            .collect()
    }

    /// Whether some representative other than this node, outside zone `z`, is in reach: one
    /// of this zone's, or one of a zone nobody suspects.
    fn reaches_another_rep(&self, z: &str) -> bool {
        self.reps().len() > 1
            || (self.known_zones().iter()).any(|o| {
                o != z
                    && *o != self.settings.zone
                    && !self.upper.witnesses.contains_key(o)
                    && !self.contacts(o).is_empty()
            })
    }

    /// The publisher writes every zone it knows whose summary or reachability changed, and
    /// the cut-off mark while this zone reaches no other.
    fn publish_zones(&mut self, now: Time, out: &mut Vec<Output>) {
        self.publish_cut_off(now, out);
        let zones: Vec<String> = self.upper.summaries.keys().cloned().collect();
        for z in zones {
            let summary = self.upper.summaries[&z].clone();
            let reachable = !self.upper.unreachable.contains_key(&z);
            let mark = (summary.version, reachable);
            if self.upper.published.get(&z) == Some(&mark) {
                continue;
            }
            // Said already, for every zone at once, by this node's cut-off mark — if this
            // node has a publication of the zone for the mark to cover (a publisher new
            // during the cut writes its own first).
            let published_at = (self.upper.publishers.get(&z))
                .and_then(|p| p.get(&self.me))
                .map(|m| m.at);
            if !reachable
                && let Some(at) = published_at
                && (self.upper.cut_off.as_ref()).is_some_and(|c| c.covers(&z, at))
            {
                self.upper.published.insert(z.clone(), mark);
                continue;
            }
            let since = self.upper.unreachable.get(&z).map(|b| b.time().as_millis());
            // Later than every mark read, so a zone published reachable again is not covered
            // by a mark of the same millisecond, or one stamped before this clock stepped back.
            let marks = self.upper.cut_offs.values().map(|c| c.at + 1);
            let mut p = Published {
                summary,
                reachable,
                since,
                at: marks.fold(now.as_millis(), u64::max),
            };
            let key = format!("{ZONES_PREFIX}{z}");
            while key.len() + p.encode().len() > MAX_ENTRY_LEN {
                if p.summary.down_names.pop().is_none() && p.summary.metrics.pop().is_none() {
                    break;
                }
            }
            self.write_own(now, &key, Some(p.encode()), out);
            self.note_publication(&self.me.clone(), &z, Some(&p));
            self.upper.published.insert(z.clone(), mark);
            self.zone_published(&z, out);
        }
    }

    /// A zone cut off from all the others would rewrite every zone's publication as
    /// unreachable, one key each: at a hundred zones tens of kilobytes for its hosts to
    /// gossip before they all know. Instead, once no message from any other zone came for
    /// `zone_timeout` and the upper layer has found a zone unreachable (two witnesses) since
    /// the last one did, the publisher takes every other zone as unreachable and says so in one
    /// key, [`CUT_OFF_KEY`]. Each zone heard from again is published reachable (a later
    /// publication than the mark wins for its zone); the mark is withdrawn once no zone is
    /// unreachable.
    fn publish_cut_off(&mut self, now: Time, out: &mut Vec<Output>) {
        let own = self.settings.zone.clone();
        let others: Vec<String> = (self.upper.summaries.keys())
            .filter(|z| **z != own)
            .cloned()
            .collect();
        match &self.upper.cut_off {
            None => {
                let Some(heard) = self.upper.heard_other else {
                    return;
                };
                let silent = now.since(heard) >= self.settings.zone_timeout;
                // A zone found unreachable since the silence began (a zone dead for days
                // says nothing of a pause in the messages from the live ones).
                let found = self.upper.found_at.is_some_and(|t| t >= heard)
                    && others
                        .iter()
                        .any(|z| self.upper.unreachable.contains_key(z));
                if !(silent && found) {
                    return;
                }
                for z in &others {
                    let beat = self.upper.beats.get(z).copied().unwrap_or_default();
                    self.upper.unreachable.entry(z.clone()).or_insert(beat);
                }
                let since = (others.iter())
                    .filter_map(|z| self.upper.unreachable.get(z))
                    .map(|b| b.time().as_millis())
                    .max()
                    .unwrap_or(0);
                tracing::warn!(
                    zones = others.len(),
                    "this zone reaches no other zone: all of them unreachable"
                );
                let c = CutOff {
                    zone: own,
                    since,
                    at: now.as_millis(),
                };
                self.write_own(now, CUT_OFF_KEY, Some(c.encode()), out);
                self.upper.cut_off = Some(c.clone());
                self.note_cut_off(&self.me.clone(), Some(c), out);
            }
            Some(_) => {
                if others
                    .iter()
                    .any(|z| self.upper.unreachable.contains_key(z))
                {
                    return;
                }
                self.write_own(now, CUT_OFF_KEY, None, out);
                self.upper.cut_off = None;
                self.note_cut_off(&self.me.clone(), None, out);
            }
        }
    }

    /// A joiner's seed was in another zone: what its answer says of the zones (every zone's
    /// publications, and the seed's zone's members as representatives met).
    pub(super) fn learn_foreign(
        &mut self,
        now: Time,
        d: &NodeDelta,
        zone: &str,
        out: &mut Vec<Output>,
    ) {
        let met = self.upper.met.entry(zone.to_string()).or_default();
        if met.len() < REPS {
            met.insert(d.node.clone(), d.addr);
        }
        for e in &d.entries {
            if e.key.starts_with(ZONES_PREFIX)
                && let Some(v) = &e.value
                && let Ok(p) = Published::parse(v)
            {
                self.learn_summary(now, p.summary, out);
            }
        }
    }

    /// The representatives of this node's own zone named by the summaries it has, other than
    /// itself: where a joiner whose seed is in another zone joins its own.
    pub(super) fn own_zone_reps(&self) -> Vec<SocketAddr> {
        (self.upper.summaries.get(&self.settings.zone).into_iter())
            .flat_map(|s| s.reps.iter())
            .filter(|(n, _)| *n != self.me)
            .map(|(_, a)| *a)
            .collect()
    }
}

/// The zone a delta that starts a node's life says it is in (`None`: not such a delta).
pub(super) fn zone_of(d: &NodeDelta) -> Option<&str> {
    if d.from != Version(0) {
        return None;
    }
    let value = (d.entries.iter())
        .find(|e| e.key == crate::keys::zone::ZONE_KEY)
        .and_then(|e| e.value.as_deref());
    Some(crate::keys::zone::of(value))
}

fn same_members(a: &ZoneSummary, b: &ZoneSummary) -> bool {
    (a.reps.iter().map(|(n, _)| n)).eq(b.reps.iter().map(|(n, _)| n))
        && (a.total, a.up, a.suspect, a.down, a.incidents)
            == (b.total, b.up, b.suspect, b.down, b.incidents)
        && a.leader == b.leader
        && (a.down_names.iter().map(|(n, _)| n)).eq(b.down_names.iter().map(|(n, _)| n))
}

/// Whether a metric's mean moved beyond the dead-band, or the metrics themselves changed.
fn metrics_moved(a: &ZoneSummary, b: &ZoneSummary) -> bool {
    if a.metrics.len() != b.metrics.len() {
        return true;
    }
    a.metrics.iter().zip(&b.metrics).any(|(x, y)| {
        x.0 != y.0 || x.4 != y.4 || (x.2 - y.2).abs() > (DEAD_BAND * x.2.abs()).max(0.05)
    })
}
