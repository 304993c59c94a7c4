//! What is worth an alert, read off a node's view of the cluster — the same on every host, so
//! every host derives the same incident ids:
//!
//! * `node_down:<node>:<incarnation>` — a member is down; `since` is its `last_heard`, the
//!   observers are the members that gossip a suspicion of it (`sus.<node>`);
//! * `node_up:<node>:<incarnation>` — a member is alive again after a `node_down` of an older
//!   incarnation was sent, and no `node_up` since;
//! * `service_failed:<node>:<service>:<since>` — a node's tree gave up on a service
//!   (`svc.<service>` in its state says `failed`, since that moment);
//! * `service_up:<node>:<service>:<since>` — running again after a sent `service_failed`;
//! * `test:<node>:<at>` — `nbwatch alerts test` on that node asked for one.
//!
//! Silences (`silence.<target>` keys) hide incidents of their target until they expire.
//!
//! An incident no live node could deliver (a `waiting` entry) or whose sinks all refused it (a
//! `failed` entry) is carried by that entry and derived from the log until it is sent, also
//! once the view no longer shows it.
//!
//! Two rules work on the log itself, so they too come out the same on every host:
//! * flapping — a subject (a node, or `node:service`) whose state changed (sent or suppressed
//!   down/up incidents) `flap_threshold` times within `flap_window` is flapping: its further
//!   changes are recorded as suppressed instead of sent, one `flapping:<subject>:<start>` alert
//!   goes out, and one `settled:<subject>:<start>` when it has been quiet for the window;
//! * reminders — with `repeat` set, a firing incident still open gets `<id>#<k>` every
//!   `repeat` after it was sent.

use super::log::Log;
use crate::gossip::{MemberView, Status};
use crate::keys::alert::Stage;
use crate::keys::alert::{Held, SilenceValue};
use crate::keys::{SILENCE_PREFIX, TEST_PREFIX};
use crate::secure::directive::Trust;
use crate::secure::operator::{Directive, Seal};
use crate::types::{NodeName, Time};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// A test request older than this is not sent any more.
pub const TEST_WINDOW: Duration = Duration::from_secs(600);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    NodeDown,
    NodeUp,
    ServiceFailed,
    ServiceUp,
    Test,
    Flapping,
    Settled,
    /// A step of remediation (see `alert::action`).
    Action,
    /// A host probe says critical (or warning, with `alerts.probe_warning`), and its end.
    ProbeCritical,
    ProbeWarning,
    ProbeOk,
    /// A whole zone unreachable (see `gossip::core::zones`), and reachable again.
    ZoneDown,
    ZoneUp,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::NodeDown => "node_down",
            Kind::NodeUp => "node_up",
            Kind::ServiceFailed => "service_failed",
            Kind::ServiceUp => "service_up",
            Kind::Test => "test",
            Kind::Flapping => "flapping",
            Kind::Settled => "settled",
            Kind::Action => "action",
            Kind::ProbeCritical => "probe_critical",
            Kind::ProbeWarning => "probe_warning",
            Kind::ProbeOk => "probe_ok",
            Kind::ZoneDown => "zone_down",
            Kind::ZoneUp => "zone_up",
        }
    }

    /// Kinds that are a change of a subject's state (counted for flapping; a zone's
    /// reachability is not: its subject would read as a host's).
    pub fn is_change(self) -> bool {
        matches!(
            self,
            Kind::NodeDown
                | Kind::NodeUp
                | Kind::ServiceFailed
                | Kind::ServiceUp
                | Kind::ProbeCritical
                | Kind::ProbeWarning
                | Kind::ProbeOk
        )
    }

    fn from_id(id: &str) -> Option<Kind> {
        Some(match id.split(':').next()? {
            "node_down" => Kind::NodeDown,
            "node_up" => Kind::NodeUp,
            "service_failed" => Kind::ServiceFailed,
            "service_up" => Kind::ServiceUp,
            "test" => Kind::Test,
            "flapping" => Kind::Flapping,
            "settled" => Kind::Settled,
            "action" => Kind::Action,
            "probe_critical" => Kind::ProbeCritical,
            "probe_warning" => Kind::ProbeWarning,
            "probe_ok" => Kind::ProbeOk,
            "zone_down" => Kind::ZoneDown,
            "zone_up" => Kind::ZoneUp,
            _ => return None,
        })
    }

    /// `firing` for a problem, `resolved` for its end.
    pub fn status(self) -> &'static str {
        match self {
            Kind::NodeUp | Kind::ServiceUp | Kind::Settled | Kind::ProbeOk | Kind::ZoneUp => {
                "resolved"
            }
            Kind::ZoneDown
            | Kind::NodeDown
            | Kind::ServiceFailed
            | Kind::Test
            | Kind::Flapping
            | Kind::Action
            | Kind::ProbeCritical
            | Kind::ProbeWarning => "firing",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Incident {
    pub id: String,
    pub kind: Kind,
    pub node: NodeName,
    pub service: Option<String>,
    pub since: Time,
    pub observers: Vec<NodeName>,
    pub summary: String,
}

/// How long a closed incident stays in the alert log by default: a week.
pub const KEEP: Duration = Duration::from_secs(7 * 24 * 3600);

/// The flapping and reminder rules (`alerts.flap_threshold`, `flap_window`, `repeat`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rules {
    pub flap_threshold: u32,
    pub flap_window: Duration,
    /// Zero: no reminders.
    pub repeat: Duration,
    /// How long a closed incident stays in the alert log (at least twice `flap_window`).
    pub keep: Duration,
    /// A host probe's `warning` is an incident too (`probe_warning`), not only `critical`.
    pub probe_warning: bool,
}

impl Default for Rules {
    fn default() -> Rules {
        Rules {
            flap_threshold: 4,
            flap_window: Duration::from_secs(600),
            repeat: Duration::ZERO,
            keep: KEEP,
            probe_warning: false,
        }
    }
}

/// The subject of an incident id: `node` or `node:service` (the parts between kind and the
/// last number).
pub fn subject_of(id: &str) -> Option<String> {
    let id = id.split('#').next()?;
    if let Some((_, base)) = super::action::parse_id(id) {
        return subject_of(base);
    }
    Kind::from_id(id)?;
    let rest = id.split_once(':')?.1;
    Some(rest.rsplit_once(':')?.0.to_string())
}

impl Incident {
    /// `node` or `node:service`.
    pub fn subject(&self) -> String {
        match &self.service {
            Some(s) => format!("{}:{s}", self.node),
            None => self.node.to_string(),
        }
    }

    /// What a `waiting` or `failed` entry carries of it.
    pub fn held(&self) -> Held {
        Held {
            kind: self.kind.as_str().to_string(),
            node: self.node.to_string(),
            service: self.service.clone(),
            since: self.since.0,
            observers: self.observers.iter().map(NodeName::to_string).collect(),
            summary: self.summary.clone(),
        }
    }

    /// The contract's alert JSON, as sent by `sent_by` at `at`.
    pub fn to_json(&self, sent_by: &NodeName, at: Time) -> Value {
        json!({
            "id": self.id,
            "kind": self.kind.as_str(),
            "status": self.kind.status(),
            "node": self.node.as_str(),
            "service": self.service,
            "sent_by": sent_by.as_str(),
            "at": at.to_rfc3339(),
            "since": self.since.to_rfc3339(),
            "observers": self.observers.iter().map(NodeName::as_str).collect::<Vec<_>>(),
            "summary": self.summary,
        })
    }
}

impl Incident {
    /// The firing incident this one resolves (a `node_up` its `node_down`, a `service_up` its
    /// `service_failed`, a `probe_ok` its `probe_critical` or `probe_warning`, a `settled`
    /// its `flapping`): that incident's id and when its problem began, so a receiver sees the
    /// same alert end. `None` for a firing incident, or when no sent one is found.
    pub fn resolves(&self, log: &Log) -> Option<(String, Time)> {
        let node = &self.node;
        let before = |t: &u64| *t < self.since.0;
        let id = match self.kind {
            Kind::NodeUp => {
                let inc = incarnation_of(&self.id, Kind::NodeUp, node)?;
                let down = (log.sent_ids())
                    .filter_map(|id| incarnation_of(id, Kind::NodeDown, node))
                    .filter(|i| *i < inc)
                    .max()?;
                format!("node_down:{node}:{down}")
            }
            Kind::ServiceUp | Kind::ProbeOk => {
                let name = self.service.as_deref()?;
                let kinds: &[Kind] = match self.kind {
                    Kind::ServiceUp => &[Kind::ServiceFailed],
                    _ => &[Kind::ProbeCritical, Kind::ProbeWarning],
                };
                let (since, kind) = (log.sent_ids())
                    .flat_map(|id| {
                        (kinds.iter())
                            .filter_map(move |k| Some((service_since(id, *k, node, name)?, *k)))
                    })
                    .filter(|(t, _)| before(t))
                    .max()?;
                format!("{}:{node}:{name}:{since}", kind.as_str())
            }
            Kind::Settled => {
                let id = self.id.replacen("settled:", "flapping:", 1);
                log.is_sent(&id).then_some(id)?
            }
            Kind::ZoneUp => {
                let id = self.id.replacen("zone_up:", "zone_down:", 1);
                log.is_sent(&id).then_some(id)?
            }
            _ => return None,
        };
        // Its `since` as its sent entry says; else the one in its id (all but `node_down`
        // carry it); else when it was sent.
        let in_id = || {
            (!id.starts_with("node_down:") && !id.starts_with("zone_down:"))
                .then(|| id.rsplit(':').next()?.parse::<u64>().ok())
                .flatten()
                .and_then(|t| Time::checked(t).ok())
        };
        let since = (log.firing_since(&id))
            .or_else(in_id)
            .or_else(|| log.sent_at(&id))?;
        Some((id, since))
    }
}

/// "15:30:02" (UTC) of a time.
fn clock(t: Time) -> String {
    let s = t.to_rfc3339();
    s.get(11..19).unwrap_or(&s).to_string()
}

fn names(v: &[NodeName]) -> String {
    v.iter()
        .map(NodeName::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The services a member announces (`svc.<name>`, read through their codec): (service,
/// state, since).
fn services(m: &MemberView) -> impl Iterator<Item = (String, String, Time)> {
    crate::keys::announced(&m.kv)
        .into_iter()
        .map(|s| (s.name, s.state.as_str().to_string(), s.since))
}

/// The incarnation in a `node_down:<node>:<inc>` / `node_up:...` id of `node`.
fn incarnation_of(id: &str, kind: Kind, node: &NodeName) -> Option<u64> {
    let rest = id.strip_prefix(kind.as_str())?.strip_prefix(':')?;
    let rest = rest.strip_prefix(node.as_str())?.strip_prefix(':')?;
    rest.parse().ok()
}

/// The `since` in a `service_failed:<node>:<service>:<since>` / `service_up:...` id.
fn service_since(id: &str, kind: Kind, node: &NodeName, service: &str) -> Option<u64> {
    let rest = id.strip_prefix(kind.as_str())?.strip_prefix(':')?;
    let rest = rest.strip_prefix(node.as_str())?.strip_prefix(':')?;
    let rest = rest.strip_prefix(service)?.strip_prefix(':')?;
    rest.parse().ok()
}

/// When the sent entries of `id` were first written (by anyone).
pub(super) fn sent_at(log: &Log, id: &str) -> Option<Time> {
    log.entries(id)
        .iter()
        .filter(|e| e.stage == Stage::Sent)
        .map(|e| e.at)
        .min()
}

/// The state changes of each subject that were sent or suppressed, with their times.
fn changes(log: &Log) -> BTreeMap<String, Vec<Time>> {
    let mut out: BTreeMap<String, Vec<Time>> = BTreeMap::new();
    for id in log.sent_ids() {
        if id.contains('#') || !Kind::from_id(id).is_some_and(Kind::is_change) {
            continue;
        }
        if let (Some(subject), Some(at)) = (subject_of(id), sent_at(log, id)) {
            out.entry(subject).or_default().push(at);
        }
    }
    out
}

/// The start of `subject`'s current flapping (`None`: not flapping), by the log.
pub fn flapping_since(log: &Log, subject: &str, now: Time, rules: &Rules) -> Option<Time> {
    if rules.flap_threshold == 0 {
        return None;
    }
    let all = changes(log);
    let times = all.get(subject)?;
    let recent: Vec<Time> = times
        .iter()
        .copied()
        .filter(|t| now.since(*t) < rules.flap_window)
        .collect();
    if (recent.len() as u32) < rules.flap_threshold {
        return None;
    }
    // An episode already alerted keeps its start; otherwise it starts with the window's first.
    let open = log.sent_ids().filter_map(|id| {
        let rest = id.strip_prefix("flapping:")?;
        let (s, start) = rest.rsplit_once(':')?;
        let settled = format!("settled:{rest}");
        (s == subject && !log.is_sent(&settled)).then(|| start.parse::<u64>().ok().map(Time))?
    });
    open.max().or_else(|| recent.iter().copied().min())
}

/// Every incident in `view` (with `log` for resolutions, flapping and reminders), by id.
pub fn incidents(view: &[MemberView], log: &Log, now: Time, rules: &Rules) -> Vec<Incident> {
    let mut out = base_incidents(view, log, now, rules);
    let subjects: BTreeSet<String> = changes(log).into_keys().collect();
    for subject in &subjects {
        let (node, service) = match subject.split_once(':') {
            Some((n, s)) => (n, Some(s.to_string())),
            None => (subject.as_str(), None),
        };
        match flapping_since(log, subject, now, rules) {
            Some(start) => out.push(Incident {
                id: format!("flapping:{subject}:{}", start.0),
                kind: Kind::Flapping,
                node: NodeName::from(node),
                service,
                since: start,
                observers: Vec::new(),
                summary: format!(
                    "{subject} is flapping: {} or more changes within {}; further changes are not sent until it settles",
                    rules.flap_threshold,
                    humantime::format_duration(rules.flap_window)
                ),
            }),
            None => {
                // Settled: an alerted episode whose end is not sent yet.
                for id in log.sent_ids() {
                    let Some(rest) = id.strip_prefix("flapping:") else {
                        continue;
                    };
                    let Some((s, start)) = rest.rsplit_once(':') else {
                        continue;
                    };
                    if s != subject || log.is_sent(&format!("settled:{rest}")) {
                        continue;
                    }
                    out.push(Incident {
                        id: format!("settled:{rest}"),
                        kind: Kind::Settled,
                        node: NodeName::from(node),
                        service: service.clone(),
                        since: Time(start.parse().unwrap_or(0)),
                        observers: Vec::new(),
                        summary: format!(
                            "{subject} has settled: no change within {}",
                            humantime::format_duration(rules.flap_window)
                        ),
                    });
                }
            }
        }
    }
    if !rules.repeat.is_zero() {
        let mut reminders = Vec::new();
        for i in &out {
            if i.kind.status() != "firing" || matches!(i.kind, Kind::Test | Kind::Action) {
                continue;
            }
            let Some(at) = sent_at(log, &i.id) else {
                continue;
            };
            let k = now.since(at).as_millis() / rules.repeat.as_millis().max(1);
            if k >= 1 {
                let mut r = i.clone();
                r.id = format!("{}#{k}", i.id);
                r.summary = format!("still: {}", i.summary);
                reminders.push(r);
            }
        }
        out.extend(reminders);
    }
    let derived: BTreeSet<String> = out.iter().map(|i| i.id.clone()).collect();
    out.extend(
        held(log)
            .into_iter()
            .filter(|i| !derived.contains(&i.id) && !log.is_sent(&i.id)),
    );
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out.dedup_by(|a, b| a.id == b.id);
    out
}

/// The incidents the log's `waiting` and `failed` entries hold open, each once.
fn held(log: &Log) -> Vec<Incident> {
    let mut out: Vec<Incident> = Vec::new();
    for (id, entries) in log.all() {
        let Some(h) = entries.iter().find_map(|e| e.held.as_ref()) else {
            continue;
        };
        let (Some(kind), Ok(since)) = (Kind::from_id(&h.kind), Time::checked(h.since)) else {
            continue;
        };
        out.push(Incident {
            id: id.to_string(),
            kind,
            node: NodeName::from(h.node.as_str()),
            service: h.service.clone(),
            since,
            observers: h
                .observers
                .iter()
                .map(|o| NodeName::from(o.as_str()))
                .collect(),
            summary: h.summary.clone(),
        });
    }
    out
}

/// A whole zone unreachable, and its return, as this zone reads the zones. Every zone reads
/// the same dead zone, so only one alerts it: the reachable zone first by name (this one,
/// when no reachable zone comes before it); under a partition, one per side. The id names
/// the dead zone's last summary version, the same on every host of every zone.
fn zone_incidents(view: &[MemberView], log: &Log) -> Vec<Incident> {
    use crate::keys::zone::{Latest, ZONE_KEY};
    let mut latest = Latest::default();
    for m in view
        .iter()
        .filter(|m| m.is_self || crate::election::is_live(m))
    {
        for (key, value) in crate::keys::with_prefix(&m.kv, crate::keys::zone::ZONES_PREFIX) {
            latest.offer(
                &m.name,
                &format!("{}{key}", crate::keys::zone::ZONES_PREFIX),
                value,
            );
        }
    }
    let zones = latest.into_map();
    let me = view.iter().find(|m| m.is_self);
    let mine = crate::keys::zone::of(me.and_then(|m| m.kv.get(ZONE_KEY)).map(String::as_str));
    let first = (zones.iter())
        .filter(|(_, (_, p))| p.reachable)
        .map(|(z, _)| z.as_str())
        .chain(std::iter::once(mine))
        .min();
    if first != Some(mine) {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (zone, (by, p)) in &zones {
        let version = p.summary.version;
        let subject = NodeName::from(format!("zone:{zone}").as_str());
        if !p.reachable {
            let since = p
                .since
                .and_then(|t| Time::checked(t).ok())
                .unwrap_or(Time::ZERO);
            out.push(Incident {
                id: format!("zone_down:{zone}:{version}"),
                kind: Kind::ZoneDown,
                node: subject,
                service: None,
                since,
                observers: vec![by.clone()],
                summary: format!(
                    "zone {zone} is unreachable: its {} hosts last heard at {} (confirmed by two representatives)",
                    p.summary.total,
                    clock(since)
                ),
            });
        } else {
            // Reachable: every sent zone_down of it not yet resolved is resolved now.
            let prefix = format!("zone_down:{zone}:");
            let open: Vec<String> = (log.sent_ids())
                .filter_map(|id| id.strip_prefix(&prefix).map(str::to_string))
                .filter(|v| !log.is_sent(&format!("zone_up:{zone}:{v}")))
                .collect();
            for v in open {
                out.push(Incident {
                    id: format!("zone_up:{zone}:{v}"),
                    kind: Kind::ZoneUp,
                    node: subject.clone(),
                    service: None,
                    since: Time::from_millis(p.at),
                    observers: Vec::new(),
                    summary: format!("zone {zone} is reachable again"),
                });
            }
        }
    }
    out
}

fn base_incidents(view: &[MemberView], log: &Log, now: Time, rules: &Rules) -> Vec<Incident> {
    let mut out = zone_incidents(view, log);
    // What a down host takes with it on other hosts, through `requires` (built once).
    let graph = (view.iter().any(|m| m.status == Status::Down))
        .then(|| crate::graph::Graph::from_views(view));
    for m in view {
        match m.status {
            Status::Down => {
                let elsewhere = (graph.as_ref())
                    .map(|g| g.services_elsewhere(m.name.as_str()))
                    .unwrap_or_default();
                let takes = if elsewhere.is_empty() {
                    String::new()
                } else {
                    format!("; it takes down {}", elsewhere.join(", "))
                };
                let observers: Vec<NodeName> = view
                    .iter()
                    .filter(|o| o.kv.contains_key(&format!("sus.{}", m.name)))
                    .map(|o| o.name.clone())
                    .collect();
                let summary = if observers.is_empty() {
                    format!(
                        "{} stopped talking at {}{takes}",
                        m.name,
                        clock(m.last_heard)
                    )
                } else {
                    format!(
                        "{} stopped talking at {} (confirmed by {}){takes}",
                        m.name,
                        clock(m.last_heard),
                        names(&observers)
                    )
                };
                out.push(Incident {
                    id: format!("node_down:{}:{}", m.name, m.incarnation.0),
                    kind: Kind::NodeDown,
                    node: m.name.clone(),
                    service: None,
                    since: m.last_heard,
                    observers,
                    summary,
                });
            }
            Status::Alive | Status::Suspect => {
                // Up again: the newest sent node_down of an older incarnation, and no node_up
                // sent since it.
                let inc = m.incarnation.0;
                let last_down = log
                    .sent_ids()
                    .filter_map(|id| incarnation_of(id, Kind::NodeDown, &m.name))
                    .filter(|i| *i < inc)
                    .max();
                if let Some(down) = last_down {
                    let resolved = log
                        .sent_ids()
                        .filter_map(|id| incarnation_of(id, Kind::NodeUp, &m.name))
                        .any(|i| i > down && i < inc);
                    if !resolved {
                        out.push(Incident {
                            id: format!("node_up:{}:{}", m.name, inc),
                            kind: Kind::NodeUp,
                            node: m.name.clone(),
                            service: None,
                            since: now,
                            observers: Vec::new(),
                            summary: format!("{} is back (incarnation {inc})", m.name),
                        });
                    }
                }
            }
            Status::Left => {}
        }
        for (service, state, since) in services(m) {
            match state.as_str() {
                "failed" => out.push(Incident {
                    id: format!("service_failed:{}:{service}:{}", m.name, since.0),
                    kind: Kind::ServiceFailed,
                    node: m.name.clone(),
                    service: Some(service.to_string()),
                    since,
                    observers: vec![m.name.clone()],
                    summary: format!(
                        "{service} on {} failed at {}: its supervision tree gave up",
                        m.name,
                        clock(since)
                    ),
                }),
                "running" => {
                    let last_failed = log
                        .sent_ids()
                        .filter_map(|id| service_since(id, Kind::ServiceFailed, &m.name, &service))
                        .filter(|t| *t < since.0)
                        .max();
                    if let Some(failed) = last_failed {
                        let resolved = log
                            .sent_ids()
                            .filter_map(|id| service_since(id, Kind::ServiceUp, &m.name, &service))
                            .any(|t| t > failed && t < since.0);
                        if !resolved {
                            out.push(Incident {
                                id: format!("service_up:{}:{service}:{}", m.name, since.0),
                                kind: Kind::ServiceUp,
                                node: m.name.clone(),
                                service: Some(service.to_string()),
                                since,
                                observers: vec![m.name.clone()],
                                summary: format!("{service} on {} is running again", m.name),
                            });
                        }
                    }
                }
                _ => {}
            }
        }
        if matches!(m.status, Status::Alive | Status::Suspect) {
            probe_incidents(m, log, rules, &mut out);
        }
        for key in m.kv.keys() {
            let Some(at) = key
                .strip_prefix(TEST_PREFIX)
                .and_then(|t| t.parse::<u64>().ok())
                .filter(|at| Time::checked(*at).is_ok())
            else {
                continue;
            };
            if now.since(Time(at)) < TEST_WINDOW {
                out.push(Incident {
                    id: format!("test:{}:{at}", m.name),
                    kind: Kind::Test,
                    node: m.name.clone(),
                    service: None,
                    since: Time(at),
                    observers: vec![m.name.clone()],
                    summary: format!("test alert requested on {}", m.name),
                });
            }
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out.dedup_by(|a, b| a.id == b.id);
    out
}

/// A silence as gossiped: who set it, until when, why, and the operator's seal that makes
/// other hosts obey it (SECURITY.md, "Command another host").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Silence {
    pub target: String,
    pub by: NodeName,
    pub until: Time,
    pub reason: String,
    pub seal: Option<Seal>,
}

impl Silence {
    pub fn value(&self) -> String {
        SilenceValue {
            until: self.until,
            reason: self.reason.clone(),
            seal: self.seal.clone(),
        }
        .encode()
    }

    /// What its seal covers: the gossip key, then this content.
    pub fn content(&self) -> String {
        format!("{}\n{}", self.until.0, self.reason)
    }

    /// Its gossip key.
    pub fn key(&self) -> String {
        format!("{SILENCE_PREFIX}{}", self.target)
    }

    /// The directive its seal is checked against.
    pub fn directive<'a>(
        &'a self,
        cluster: &'a str,
        key: &'a str,
        content: &'a str,
    ) -> Directive<'a> {
        Directive {
            cluster,
            issuer: self.by.as_str(),
            key,
            content,
        }
    }

    /// True if it hides `incident` at `now`.
    pub fn covers(&self, incident: &Incident, now: Time) -> bool {
        if now >= self.until || incident.kind == Kind::Test {
            return false;
        }
        match self.target.split_once(':') {
            Some((node, service)) => {
                incident.node.as_str() == node && incident.service.as_deref() == Some(service)
            }
            None => incident.node.as_str() == self.target,
        }
    }
}

/// Every silence gossiped by any member (expired ones included) that this host obeys: sealed
/// by an operator `trust` names, its end read on this host's clock. Others are left out, so a key holder without an operator key
/// cannot hide an incident.
pub fn silences(view: &[MemberView], trust: &Trust) -> Vec<Silence> {
    let mut out = Vec::new();
    for m in view {
        for (k, v) in m.kv.iter() {
            let Some(target) = k.strip_prefix(SILENCE_PREFIX) else {
                continue;
            };
            let Ok(value) = SilenceValue::parse(v) else {
                continue;
            };
            let silence = Silence {
                target: target.to_string(),
                by: m.name.clone(),
                until: value.until,
                reason: value.reason,
                seal: value.seal,
            };
            let content = silence.content();
            let directive = silence.directive(&trust.cluster, k, &content);
            if trust.check(&directive, silence.seal.as_ref()).is_ok() {
                // Its end is by its issuer's clock: read it on ours (after the seal check,
                // which covers the time as written).
                out.push(Silence {
                    until: m.local(silence.until),
                    ..silence
                });
            }
        }
    }
    out
}

/// The incidents of a live member's host probes: `probe_critical:<node>:<probe>:<since>` while
/// one says critical (`probe_warning:...` for warning, with `rules.probe_warning`), and
/// `probe_ok:<node>:<probe>:<since>` when it is ok again after one of them was sent. `since`
/// is when the probe came to that health, by the member's clock, as it announced it.
fn probe_incidents(m: &MemberView, log: &Log, rules: &Rules, out: &mut Vec<Incident>) {
    use crate::keys::probe::decode;
    for (probe, value) in crate::keys::with_prefix(&m.kv, crate::keys::PROBE_PREFIX) {
        let announced = decode(value);
        let Some(since) = announced.since else {
            continue;
        };
        let items: Vec<String> = (announced.items.iter().take(3))
            .map(|i| {
                format!(
                    "{}={}{}",
                    i.label,
                    crate::keys::probe::number(i.value),
                    i.unit
                )
            })
            .collect();
        let shown = if items.is_empty() {
            String::new()
        } else {
            format!(" ({})", items.join(" "))
        };
        let kind = match announced.health {
            "critical" => Kind::ProbeCritical,
            "warning" if rules.probe_warning => Kind::ProbeWarning,
            "ok" => {
                let problem = |id: &str| {
                    service_since(id, Kind::ProbeCritical, &m.name, probe)
                        .or_else(|| service_since(id, Kind::ProbeWarning, &m.name, probe))
                };
                let last = log
                    .sent_ids()
                    .filter_map(problem)
                    .filter(|t| *t < since.0)
                    .max();
                let Some(last) = last else {
                    continue;
                };
                let resolved = (log.sent_ids())
                    .filter_map(|id| service_since(id, Kind::ProbeOk, &m.name, probe))
                    .any(|t| t > last && t < since.0);
                if !resolved {
                    out.push(Incident {
                        id: format!("probe_ok:{}:{probe}:{}", m.name, since.0),
                        kind: Kind::ProbeOk,
                        node: m.name.clone(),
                        service: Some(probe.to_string()),
                        since,
                        observers: vec![m.name.clone()],
                        summary: format!("probe {probe} on {} is ok again{shown}", m.name),
                    });
                }
                continue;
            }
            _ => continue,
        };
        out.push(Incident {
            id: format!("{}:{}:{probe}:{}", kind.as_str(), m.name, since.0),
            kind,
            node: m.name.clone(),
            service: Some(probe.to_string()),
            since,
            observers: vec![m.name.clone()],
            summary: format!(
                "probe {probe} on {} is {} since {}{shown}",
                m.name,
                announced.health,
                clock(since)
            ),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::test_view;

    fn ids(view: &[MemberView], sent: &[&str], rules: &Rules) -> Vec<String> {
        let sent: Vec<String> = sent.iter().map(|s| s.to_string()).collect();
        let log = Log::from_view(view, sent.iter());
        incidents(view, &log, Time(10_000), rules)
            .into_iter()
            .map(|i| i.id)
            .collect()
    }

    fn host(status: Status, probe: &str) -> Vec<MemberView> {
        vec![test_view(
            "nas",
            status,
            [("probe.disk".to_string(), probe.to_string())],
        )]
    }

    #[test]
    fn a_critical_host_probe_is_an_incident_and_ok_again_its_end() {
        let rules = Rules::default();
        let critical = host(Status::Alive, "critical@5000 free_pct=8%;20:;10: free=1B");
        assert_eq!(
            ids(&critical, &[], &rules),
            ["probe_critical:nas:disk:5000"]
        );
        let log = Log::from_view(&critical, std::iter::empty());
        let i = &incidents(&critical, &log, Time(10_000), &rules)[0];
        assert_eq!(
            (i.kind, i.service.as_deref()),
            (Kind::ProbeCritical, Some("disk"))
        );
        assert_eq!(
            i.summary,
            "probe disk on nas is critical since 00:00:05 (free_pct=8% free=1B)"
        );
        // Stale on a down host (its node_down says it all); no time: an older build's.
        assert_eq!(
            ids(&host(Status::Down, "critical@5000"), &[], &rules),
            ["node_down:nas:1"]
        );
        assert!(ids(&host(Status::Alive, "critical x=1"), &[], &rules).is_empty());
        // A warning only where the rules say so.
        let warning = host(Status::Alive, "warning@6000 free_pct=15%");
        assert!(ids(&warning, &[], &rules).is_empty());
        let strict = Rules {
            probe_warning: true,
            ..rules
        };
        assert_eq!(ids(&warning, &[], &strict), ["probe_warning:nas:disk:6000"]);
        // Ok again: its end, once the problem was sent, and only until that end is sent.
        let ok = host(Status::Alive, "ok@7000 free_pct=30%");
        assert!(ids(&ok, &[], &rules).is_empty());
        let sent = ["probe_critical:nas:disk:5000"];
        assert_eq!(ids(&ok, &sent, &rules), ["probe_ok:nas:disk:7000"]);
        let ended = ["probe_critical:nas:disk:5000", "probe_ok:nas:disk:7000"];
        assert!(ids(&host(Status::Alive, "ok@9000"), &ended, &rules).is_empty());
        assert_eq!(
            subject_of("probe_ok:nas:disk:7000").as_deref(),
            Some("nas:disk")
        );
    }
}
