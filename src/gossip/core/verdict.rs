//! Suspicions and verdicts: who suspects whom, when that makes a node `down`, and what the
//! watchers' verdicts write into our own state.

use super::*;

impl Core {
    /// Our own `sus.<node>` that names an older life of `node` is withdrawn; if we held `node`
    /// live (`was_live`), it refuted us and our suspicion was a misjudgement.
    pub(super) fn withdraw_stale_suspicion(
        &mut self,
        now: Time,
        node: &NodeName,
        was_live: bool,
        out: &mut Vec<Output>,
    ) {
        let key = format!("{SUSPECT_PREFIX}{node}");
        let Some(current) = self.members.get(node).map(|m| m.state.incarnation) else {
            return;
        };
        if let Some(s) = self.own.value(&key).and_then(parse_sighting)
            && s.incarnation < current
        {
            self.write_own(now, &key, None, out);
            // It refuted our suspicion while we still held it live (not a new life after a
            // down): our judgement was wrong.
            if was_live {
                out.push(Output::Misjudged(node.clone()));
            }
        }
    }

    /// A key of `node`'s state changed: suspicions and leaving matter to the protocol.
    pub(super) fn on_changed(
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
                    self.on_suspicion_heard(&suspect, sighting, out);
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
        } else if key == crate::keys::zone::CUT_OFF_KEY {
            let c = value.and_then(|v| crate::keys::zone::CutOff::parse(v).ok());
            self.note_cut_off(node, c, out);
        } else if let Some(zone) = key.strip_prefix(ZONES_PREFIX) {
            let zone = zone.to_string();
            // Every host keeps the summaries its zone publishes: a host that becomes a
            // representative starts with them, and a stale one answers with the newest.
            let p = value.and_then(|v| crate::keys::zone::Published::parse(v).ok());
            self.note_publication(node, &zone, p.as_ref());
            if let Some(p) = p {
                self.learn_summary(now, p.summary, out);
            }
            self.zone_published(&zone, out);
        } else if key == LEFT_KEY
            && value.is_some()
            && let Some(m) = self.members.get_mut(node)
            && m.status != Status::Left
        {
            m.status = Status::Left;
            self.live_cache.set(None);
            m.last_heard = m
                .last_heard
                .max(m.clock.to_local(m.state.beat.time()).min(now));
            out.push(Output::Event(ClusterEvent::NodeLeft {
                node: node.clone(),
                incarnation: m.state.incarnation,
            }));
            out.push(Output::WatchStop(node.clone()));
            self.awaiting.remove(node);
        }
    }

    pub(super) fn on_suspicion_heard(
        &mut self,
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
        out.push(Output::Watch {
            peer: suspect.clone(),
            input: watch::Input::SuspicionHeard { verify },
        });
    }

    /// Who suspects the current life of `node`.
    pub(super) fn witnesses(&self, node: &NodeName) -> Vec<(NodeName, Sighting)> {
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

    /// Derives the verdict on `node` from the suspicions of its current life, and notes when
    /// it is next due (`verdict_next`) if its witnesses are enough and only time is missing.
    pub(super) fn judge(&mut self, now: Time, node: &NodeName, out: &mut Vec<Output>) {
        // A witness's sighting is by its clock: read it on ours.
        let witnesses: Vec<(NodeName, Sighting)> = self
            .witnesses(node)
            .into_iter()
            .map(|(w, s)| {
                let clock = self.members.get(&w).map(|m| m.clock).unwrap_or_default();
                let last_heard = clock.to_local(s.last_heard).min(now);
                (w, Sighting { last_heard, ..s })
            })
            .collect();
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
            return;
        }
        if m.status == Status::Alive {
            m.status = Status::Suspect;
            let incarnation = m.state.incarnation;
            out.push(Output::Event(ClusterEvent::NodeSuspect {
                node: node.clone(),
                incarnation,
                by: names,
            }));
        }
        if witnesses.len() >= required {
            let due = since + timeout;
            self.verdict_next = Some(self.verdict_next.map_or(due, |d| d.min(due)));
        }
    }

    pub(super) fn on_verdict(
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
            watch::Verdict::Suspect => {
                self.stats.suspicions_raised += 1;
                tracing::info!(%peer, "suspecting a peer: it answered no probe, direct or indirect");
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
                self.send_news(addr, &peer, &digest, out);
            }
            watch::Verdict::Clear => {
                if self.own.value(&key).is_some() {
                    self.write_own(now, &key, None, out);
                    self.on_changed(now, &self.me.clone(), &key, None, out);
                    out.push(Output::Misjudged(peer));
                }
            }
        }
    }
}

/// Keys whose change is urgent news (see `note_urgent_news`): suspicions and leaving, and the
/// running mark of a step of remediation (`keys::is_urgent`), which must be out before the
/// step runs.
pub(super) fn is_protocol_key(key: &str) -> bool {
    key.starts_with(SUSPECT_PREFIX) || key == LEFT_KEY || crate::keys::is_urgent(key)
}

pub(super) fn parse_sighting(value: &str) -> Option<Sighting> {
    let (inc, _) = value.split_once(':')?;
    Some(Sighting {
        incarnation: Incarnation(inc.parse().ok()?),
        last_heard: crate::keys::parse_sighting_time(value).ok()?,
    })
}

/// Lifeguard's suspicion timeout: `max` with one witness, down to `min` once the expected
/// number of independent witnesses has spoken, on a log scale in between.
pub(super) fn lifeguard_timeout(
    settings: &Settings,
    expected: usize,
    witnesses: usize,
) -> Duration {
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
