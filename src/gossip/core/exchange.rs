//! The anti-entropy exchange: rounds, digests, news, and applying what peers send.

use super::zones;
use super::*;

impl Core {
    pub(super) fn gossip_round(&mut self, now: Time, out: &mut Vec<Output>) {
        if self.leaving {
            return;
        }
        self.reachability_round(now, out);
        let (digest, complete) = self.digest(now, false);
        if let Some(peer) = self.scheduled(now) {
            self.awaiting
                .entry(peer.clone())
                .or_insert(now + self.settings.answer_timeout);
            let to = self.members[&peer].state.addr;
            self.send(
                to,
                &peer,
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
        // `fanout` rounds an interval share the interval's chance.
        let chance = self.settings.reconnect_chance / self.settings.fanout.max(1) as f64;
        if !down.is_empty()
            && self.rng.random_bool(chance)
            && let Some(peer) = down.choose(&mut self.rng)
        {
            let to = self.members[peer].state.addr;
            self.send(
                to,
                peer,
                Message::Syn {
                    digest,
                    complete,
                    news: false,
                },
                out,
            );
        }
        self.zones_round(now, out);
    }

    /// The member this round gossips with, on the schedule (see [`super::schedule`]).
    fn scheduled(&self, now: Time) -> Option<NodeName> {
        let live = (self.members.iter()).filter(|(_, m)| m.status.is_live());
        let (ring, me) = schedule::ring(live.map(|(n, _)| n), &self.me);
        let slot = schedule::slot(now, self.slot_length(), self.phase);
        schedule::target(ring.len(), me, slot).map(|i| ring[i].clone())
    }

    /// Pings the live peers not heard directly for a while, and publishes the ones not heard
    /// within the window (see [`super::reach`]).
    fn reachability_round(&mut self, now: Time, out: &mut Vec<Output>) {
        let live = (self.members.iter()).filter(|(_, m)| m.status.is_live());
        let window = super::reach::window(
            live.clone().count(),
            self.settings.interval,
            self.settings.fanout,
        );
        let due = self.reach.due(now, live.map(|(n, _)| n), window);
        for peer in due {
            let to = self.members[&peer].state.addr;
            let seq = self.next_seq();
            self.send(to, &peer, Message::Ping { seq }, out);
        }
        let unheard = crate::keys::reach::encode(
            &(self.reach.unheard(now, window).iter())
                .map(NodeName::as_str)
                .collect::<Vec<_>>(),
        );
        self.write_own(now, UNHEARD_KEY, Some(unheard), out);
    }

    /// A digest: this node first, then nodes with news (newest first), then random others,
    /// as many as fit the budget. `news_only` keeps just this node and the news.
    pub(super) fn digest(&mut self, now: Time, news_only: bool) -> (Vec<DigestEntry>, bool) {
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

    pub(super) fn note_news(&mut self, now: Time, node: Option<&NodeName>) {
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
    /// It goes out at once, to twice the usual number of members, and again in the next
    /// [`URGENT_ROUNDS`] news exchanges: a refutation must reach every node before the
    /// suspicion timeout runs out there, and loss must not make that a matter of luck.
    pub(super) fn note_urgent_news(&mut self, now: Time, node: Option<&NodeName>) {
        self.note_news(now, node);
        let name = node.cloned().unwrap_or_else(|| self.me.clone());
        self.urgent.insert(name, URGENT_ROUNDS);
        self.news_round = Some(now);
    }

    pub(super) fn news_exchange(&mut self, now: Time, out: &mut Vec<Output>) {
        if self.news.is_empty() && self.urgent.is_empty() {
            return;
        }
        self.news.extend(self.urgent.keys().cloned());
        let (digest, _) = self.digest(now, true);
        // What did not fit goes out with the next news exchange.
        for DigestEntry(name, ..) in &digest {
            self.news.remove(name);
        }
        self.news.remove(&self.me);
        let fanout = if self.urgent.is_empty() {
            self.settings.news_fanout
        } else {
            self.settings.news_fanout * 2
        };
        self.urgent.retain(|_, left| {
            *left -= 1;
            *left > 0
        });
        if !self.urgent.is_empty() {
            self.news_round = Some(now + self.settings.news_delay * 4);
        }
        if !self.news.is_empty() {
            self.news_round = Some(now + self.settings.news_delay);
        }
        for peer in self.pick_live(fanout, None) {
            let to = self.members[&peer].state.addr;
            self.send_news(to, &peer, &digest, out);
        }
    }

    /// A news digest: answered only by a peer that wants or has something newer.
    pub(super) fn send_news(
        &mut self,
        to: SocketAddr,
        name: &NodeName,
        digest: &[DigestEntry],
        out: &mut Vec<Output>,
    ) {
        let msg = Message::Syn {
            digest: digest.to_vec(),
            complete: false,
            news: true,
        };
        self.send(to, name, msg, out);
    }

    /// Encodes `msg` for node `name` at `to`.
    pub(super) fn send(
        &mut self,
        to: SocketAddr,
        name: &NodeName,
        msg: Message,
        out: &mut Vec<Output>,
    ) {
        let counter = match &msg {
            Message::Syn { news: true, .. } => &mut self.stats.bytes_news,
            Message::Syn { .. } => &mut self.stats.bytes_syn,
            Message::SynAck { .. } => &mut self.stats.bytes_synack,
            Message::Ack { .. } => &mut self.stats.bytes_ack,
            Message::Zones { .. } => &mut self.stats.bytes_zones,
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
                out.push(Output::Send {
                    to,
                    name: name.clone(),
                    bytes,
                });
            }
            Err(e) => tracing::error!(%to, error = %e, "could not encode a datagram"),
        }
    }

    pub(super) fn on_syn(
        &mut self,
        now: Time,
        syn: Syn,
        digest: Vec<DigestEntry>,
        out: &mut Vec<Output>,
    ) {
        let Syn {
            from,
            name,
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
            &name,
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
    pub(super) fn deltas_for(&self, wants: &[Want], mut budget: usize) -> Vec<NodeDelta> {
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
    pub(super) fn check_self(
        &mut self,
        now: Time,
        inc: Incarnation,
        version: Version,
        out: &mut Vec<Output>,
    ) {
        if inc > self.own.incarnation || (inc == self.own.incarnation && version > self.own.version)
        {
            self.refute(now, Incarnation(inc.0.max(self.own.incarnation.0)), out);
        }
    }

    pub(super) fn refute(&mut self, now: Time, above: Incarnation, out: &mut Vec<Output>) {
        self.own.incarnation = Incarnation(above.0 + 1);
        self.stats.refutations += 1;
        tracing::info!(incarnation = %self.own.incarnation, "refuting: raised our incarnation");
        out.push(Output::IncarnationChanged(self.own.incarnation));
        self.note_urgent_news(now, None);
    }

    pub(super) fn apply_beats(
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

    pub(super) fn apply_deltas(&mut self, now: Time, deltas: &[NodeDelta], out: &mut Vec<Output>) {
        for d in deltas {
            self.apply_delta(now, d, out);
        }
    }

    pub(super) fn apply_delta(&mut self, now: Time, d: &NodeDelta, out: &mut Vec<Output>) {
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
            if let Some(zone) = zones::zone_of(d)
                && zone != self.settings.zone
            {
                // Another zone's host: only what it says of the zones is taken.
                let zone = zone.to_string();
                self.learn_foreign(now, d, &zone, out);
                return;
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
        let applied = m.state.apply(&refuse_out_of_range(d));
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
    pub(super) fn learn(
        &mut self,
        now: Time,
        name: NodeName,
        state: NodeState,
        out: &mut Vec<Output>,
    ) {
        let previous = self.members.get(&name).map(|m| m.status);
        let reports = self.members.get(&name).map_or(0, |m| m.reports);
        // Suspicions written by the old life are gone with it; suspicions *of* the old life
        // no longer count (they name the old incarnation).
        for by in self.suspicions.values_mut() {
            by.remove(&name);
        }
        self.suspicions.retain(|_, by| !by.is_empty());
        self.forget_publications(&name);
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
                last_heard: Time::ZERO,
                clock: Default::default(),
                suspect_since: None,
                news_at: Some(now),
                reports,
            },
        );
        let was_live = previous.is_some_and(Status::is_live);
        self.withdraw_stale_suspicion(now, &name, was_live, out);
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
}

/// `d` without the values [`crate::keys::check`] refuses (a time no formatter can write, from
/// a buggy or hostile key holder): each is logged and taken as a deletion, so the version
/// still advances, an older value of the key does not linger, and no reader ever sees it.
fn refuse_out_of_range(d: &NodeDelta) -> std::borrow::Cow<'_, NodeDelta> {
    let refused = |e: &crate::wire::KvEntry| {
        let value = e.value.as_deref()?;
        crate::keys::check(&e.key, value).err()
    };
    if !d.entries.iter().any(|e| refused(e).is_some()) {
        return std::borrow::Cow::Borrowed(d);
    }
    let mut d = d.clone();
    for entry in &mut d.entries {
        if let Some(error) = refused(entry) {
            tracing::warn!(node = %d.node, key = %entry.key, %error, "refused a gossiped value");
            entry.value = None;
        }
    }
    std::borrow::Cow::Owned(d)
}
