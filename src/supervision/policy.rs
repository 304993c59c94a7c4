//! What a supervisor does when one of its children exits.
//!
//! OTP's rules, exactly:
//! * restart types: `permanent` children are always restarted, `transient` ones only after an
//!   abnormal exit (non-zero status, a signal, or a failed health probe), `temporary` ones
//!   never (and they leave the child list);
//! * strategies: `one_for_one` restarts the child alone; `one_for_all` stops the others (in
//!   reverse start order) and starts them all again (in order); `rest_for_one` does the same
//!   for the children started after it;
//! * intensity: more than `intensity` restarts within `period` and the supervisor gives up:
//!   it stops all its children, in reverse order, and fails to its parent.
//!
//! Optional backoff (systemd's and supervisord's pacing, off by default): a child that keeps
//! failing waits `initial`, then twice that, up to `max`; once it has run for `reset_after`
//! its next restart is immediate again.

use crate::types::Time;
use std::collections::VecDeque;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    OneForOne,
    OneForAll,
    RestForOne,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartType {
    Permanent,
    Transient,
    Temporary,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub reset_after: Duration,
}

/// A supervisor's restart rules and its children's restart types, in start order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub strategy: Strategy,
    pub intensity: u32,
    pub period: Duration,
    pub children: Vec<RestartType>,
    pub backoff: Option<Backoff>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Exit status 0.
    Normal,
    /// Non-zero status, killed by a signal, or failed its health probe.
    Abnormal,
}

/// What the supervisor has done so far: restart times within the period, and per child when
/// it last started and how many restarts in a row it has had (for backoff).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    restarts: VecDeque<Time>,
    started: Vec<Option<Time>>,
    in_a_row: Vec<u32>,
    removed: Vec<bool>,
}

impl History {
    pub fn new(children: usize) -> History {
        History {
            restarts: VecDeque::new(),
            started: vec![None; children],
            in_a_row: vec![0; children],
            removed: vec![false; children],
        }
    }

    /// Records that `child` (re)started at `now`.
    pub fn started(mut self, child: usize, now: Time) -> History {
        if let Some(s) = self.started.get_mut(child) {
            *s = Some(now);
        }
        self
    }

    /// Makes room for `n` children (a history made for fewer never indexes out of bounds).
    fn fit(&mut self, n: usize) {
        if self.started.len() < n {
            self.started.resize(n, None);
            self.in_a_row.resize(n, 0);
            self.removed.resize(n, false);
        }
    }

    /// True once a temporary child has exited: it is no longer part of the supervisor.
    pub fn is_removed(&self, child: usize) -> bool {
        self.removed.get(child).copied().unwrap_or(false)
    }
}

/// Records a restart at `now` in `recent` and returns how many restarts, this one included,
/// fall within `period`: the one count of restart intensity, for supervision trees, the
/// node's own children and the peer watchers alike.
pub fn record_restart(recent: &mut VecDeque<Time>, now: Time, period: Duration) -> usize {
    forget_old(recent, now, period);
    recent.push_back(now);
    recent.len()
}

/// Drops the restarts that are `period` or more before `now`.
fn forget_old(recent: &mut VecDeque<Time>, now: Time, period: Duration) {
    while recent.front().is_some_and(|t| now.since(*t) >= period) {
        recent.pop_front();
    }
}

/// Restart intensity on its own (Erlang/OTP): at most `max` restarts within `period`; past
/// that, something is wrong that restarting does not fix, and the supervisor gives up (and
/// fails to its parent) instead of looping. The node's children and the peer watchers use it;
/// a supervision tree keeps its count in its [`History`].
#[derive(Clone, Debug)]
pub struct Intensity {
    max: usize,
    period: Duration,
    recent: VecDeque<Time>,
}

impl Intensity {
    pub fn new(max: usize, period: Duration) -> Intensity {
        Intensity {
            max,
            period,
            recent: VecDeque::new(),
        }
    }

    /// Records a restart at `now`; false (and not recorded) when it would be one too many.
    pub fn allow(&mut self, now: Time) -> bool {
        forget_old(&mut self.recent, now, self.period);
        if self.recent.len() >= self.max {
            return false;
        }
        self.recent.push_back(now);
        true
    }

    /// "at most 5 restarts in 10s", for messages.
    pub fn describe(&self) -> String {
        format!(
            "at most {} restarts in {}",
            self.max,
            humantime::format_duration(self.period)
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing to restart; `remove` children (temporary ones that exited) leave the list.
    Leave { remove: Vec<usize> },
    /// Stop `stop` (already in stopping order), wait `after`, then start `start` (in order).
    /// `remove`: temporary children stopped on the way, which are not started again.
    Restart {
        stop: Vec<usize>,
        start: Vec<usize>,
        remove: Vec<usize>,
        after: Duration,
    },
    /// Intensity exceeded: stop every child (in this order) and fail to the parent.
    GiveUp { stop: Vec<usize> },
}

impl Policy {
    /// The decision when `child` exits with `exit` at `now`, and the history after it.
    pub fn decide(
        &self,
        now: Time,
        child: usize,
        exit: Exit,
        history: &History,
    ) -> (Decision, History) {
        let mut h = history.clone();
        let n = self.children.len();
        h.fit(n);
        let Some(&kind) = self.children.get(child) else {
            return (Decision::Leave { remove: vec![] }, h);
        };
        let restart = match kind {
            RestartType::Permanent => true,
            RestartType::Transient => exit == Exit::Abnormal,
            RestartType::Temporary => false,
        };
        if !restart {
            let remove = if kind == RestartType::Temporary {
                h.removed[child] = true;
                vec![child]
            } else {
                vec![]
            };
            return (Decision::Leave { remove }, h);
        }
        let within = record_restart(&mut h.restarts, now, self.period);
        let live = |i: &usize| !h.removed[*i];
        if within as u32 > self.intensity {
            let stop: Vec<usize> = (0..n).rev().filter(|i| *i != child).filter(live).collect();
            return (Decision::GiveUp { stop }, h);
        }
        let group: Vec<usize> = match self.strategy {
            Strategy::OneForOne => vec![child],
            Strategy::OneForAll => (0..n).filter(live).collect(),
            Strategy::RestForOne => (child..n).filter(live).collect(),
        };
        let stop: Vec<usize> = group
            .iter()
            .rev()
            .copied()
            .filter(|i| *i != child)
            .collect();
        let remove: Vec<usize> = group
            .iter()
            .copied()
            .filter(|i| *i != child && self.children[*i] == RestartType::Temporary)
            .collect();
        for &i in &remove {
            h.removed[i] = true;
        }
        let start: Vec<usize> = group
            .iter()
            .copied()
            .filter(|i| !remove.contains(i))
            .collect();
        let after = self.backoff_delay(now, child, &mut h);
        (
            Decision::Restart {
                stop,
                start,
                remove,
                after,
            },
            h,
        )
    }

    fn backoff_delay(&self, now: Time, child: usize, h: &mut History) -> Duration {
        let Some(b) = self.backoff else {
            return Duration::ZERO;
        };
        let stable = h.started[child].is_some_and(|s| now.since(s) >= b.reset_after);
        if stable {
            h.in_a_row[child] = 0;
        }
        let k = h.in_a_row[child];
        h.in_a_row[child] = k.saturating_add(1);
        if k == 0 {
            return Duration::ZERO;
        }
        let factor = 2u32.saturating_pow(k - 1);
        b.initial.saturating_mul(factor).min(b.max)
    }
}

#[cfg(test)]
mod tests;
