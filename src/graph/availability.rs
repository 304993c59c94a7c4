//! Failure models measured from the history: for each host and each service, how often it
//! failed, for how long, and what share of the time it was up.
//!
//! * A **host failure** runs from the moment the host stopped talking (`node_down`'s
//!   `last_heard`) to its return (`node_up`, or `node_joined` when this host did not know it
//!   meanwhile). A graceful `node_left` is no failure: the time until the host is back is
//!   left out of the observed time, as planned downtime is.
//! * A **service failure** starts with an abnormal exit (`service_exited` other than
//!   `exit 0`) or `service_failed` (its tree gave up), and runs until the service is started
//!   again; a `service_failed` during a failure is the same failure. An operator's stop ends
//!   it and leaves the time until the next start out.
//!
//! Over a window `[from, to]`, with `failures` the failures that reach into it (one still
//! going at `to` included) and `down` the failure time inside it: availability = 1 − down / observed, MTTR = down / failures and
//! MTBF = (observed − down) / failures (none without a failure). A subject is observed from
//! its first record or `from`, whichever is later. Records are taken in time order; those
//! before `from` only set the state the window starts in.

use crate::types::Time;
use std::collections::BTreeMap;
use std::time::Duration;

/// One recorded event, as the history holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub at: Time,
    pub node: String,
    pub kind: String,
    /// For service events.
    pub service: Option<String>,
    pub detail: String,
    /// For `node_down`: when the host stopped talking.
    pub last_heard: Option<Time>,
}

/// What the history says of one host or service over the window.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Model {
    pub failures: u32,
    /// The time it was watched: the window from its first record, less planned downtime.
    pub observed: Duration,
    /// The time it was failed within the window.
    pub down: Duration,
    /// It is failed at the window's end.
    pub failed_now: bool,
}

impl Model {
    /// Share of the observed time it was up (1 when nothing was observed).
    pub fn availability(&self) -> f64 {
        if self.observed.is_zero() {
            return 1.0;
        }
        1.0 - self.down.as_secs_f64() / self.observed.as_secs_f64()
    }
    /// Mean time between failures: up time per failure.
    pub fn mtbf(&self) -> Option<Duration> {
        (self.failures > 0).then(|| self.observed.saturating_sub(self.down) / self.failures)
    }
    /// Mean time to repair: failure time per failure.
    pub fn mttr(&self) -> Option<Duration> {
        (self.failures > 0).then(|| self.down / self.failures)
    }
}

/// Every host's and every service's model over `[from, to]`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    pub from: Time,
    pub to: Time,
    pub hosts: BTreeMap<String, Model>,
    /// By (node, service).
    pub services: BTreeMap<(String, String), Model>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum State {
    Up,
    Failed(Time),
    /// Out of service on purpose (left, stopped by an operator) since then.
    Out(Time),
}

/// Follows one subject through its records.
#[derive(Clone, Debug)]
struct Track {
    state: State,
    start: Time,
    /// When it last came back (or was first seen).
    back: Time,
    model: Model,
}

impl Track {
    fn new(first: Time, from: Time) -> Track {
        Track {
            state: State::Up,
            start: first.max(from),
            back: first,
            model: Model::default(),
        }
    }

    fn fail(&mut self, at: Time, since: Time, from: Time) {
        match self.state {
            // A `last_heard` before the subject was watched, or before its last return, is
            // not failure time of this record.
            State::Up => self.state = State::Failed(since.min(at).max(self.back)),
            State::Out(_) => {
                self.end_out(at, from);
                self.state = State::Failed(at);
            }
            State::Failed(_) => {}
        }
    }

    /// A failure from `since` ends at `at`: it counts if it reaches into the window.
    fn close(&mut self, since: Time, at: Time, from: Time) {
        self.model.down += span(since, at, from);
        if at > from {
            self.model.failures += 1;
        }
    }

    fn back(&mut self, at: Time, from: Time) {
        match self.state {
            State::Failed(since) => self.close(since, at, from),
            State::Out(_) => self.end_out(at, from),
            State::Up => {}
        }
        self.state = State::Up;
        self.back = at;
    }

    fn out(&mut self, at: Time, from: Time) {
        if let State::Failed(since) = self.state {
            self.close(since, at, from);
        }
        if !matches!(self.state, State::Out(_)) {
            self.state = State::Out(at);
        }
    }

    /// Leaves the planned downtime begun at `Out(since)` out of the observed time.
    fn end_out(&mut self, at: Time, from: Time) {
        if let State::Out(since) = self.state {
            self.start = self.start + span(since, at, from);
            self.state = State::Up;
        }
    }

    fn finish(mut self, to: Time, from: Time) -> Model {
        match self.state {
            State::Failed(since) => {
                self.close(since, to, from);
                self.model.failed_now = true;
            }
            State::Out(_) => self.end_out(to, from),
            State::Up => {}
        }
        self.model.observed = to.since(self.start.min(to));
        self.model.down = self.model.down.min(self.model.observed);
        self.model
    }
}

/// The part of `[a, b]` after `from`.
fn span(a: Time, b: Time, from: Time) -> Duration {
    b.since(a.max(from).min(b))
}

/// An exit counts as a failure unless the program ended with status 0.
fn abnormal_exit(detail: &str) -> bool {
    detail.trim() != "exited: exit 0"
}

/// The models of every host and service in `records` (any order; sorted here) over
/// `[from, to]`. Records after `to` are ignored.
pub fn measure(records: &[Record], from: Time, to: Time) -> Report {
    let mut sorted: Vec<&Record> = records.iter().filter(|r| r.at <= to).collect();
    sorted.sort_by_key(|r| r.at);
    let mut hosts: BTreeMap<String, Track> = BTreeMap::new();
    let mut services: BTreeMap<(String, String), Track> = BTreeMap::new();
    for r in sorted {
        match (r.kind.as_str(), &r.service) {
            ("node_down" | "node_up" | "node_joined" | "node_left", _) => {
                let t = (hosts.entry(r.node.clone())).or_insert_with(|| Track::new(r.at, from));
                match r.kind.as_str() {
                    "node_down" => t.fail(r.at, r.last_heard.unwrap_or(r.at), from),
                    "node_left" => t.out(r.at, from),
                    _ => t.back(r.at, from),
                }
            }
            (kind, Some(service)) if kind.starts_with("service_") => {
                let key = (r.node.clone(), service.clone());
                let t = services
                    .entry(key)
                    .or_insert_with(|| Track::new(r.at, from));
                match kind {
                    "service_exited" if abnormal_exit(&r.detail) => t.fail(r.at, r.at, from),
                    "service_failed" => t.fail(r.at, r.at, from),
                    "service_started" | "service_restarted" => t.back(r.at, from),
                    "service_stopped" => t.out(r.at, from),
                    _ => {}
                }
            }
            _ => {}
        }
    }
    Report {
        from,
        to,
        hosts: (hosts.into_iter())
            .map(|(k, t)| (k, t.finish(to, from)))
            .collect(),
        services: (services.into_iter())
            .map(|(k, t)| (k, t.finish(to, from)))
            .collect(),
    }
}
