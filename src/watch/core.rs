//! The liveness of one peer as seen from this node: a pure state machine.
//!
//! ```text
//!   Watching --phi >= threshold--> Direct --timeout--> Indirect --timeout--> Suspecting
//!      ^  \--unanswered / verify a suspicion------------^                        |
//!      +----------------- answer from the peer (direct or through a relay) ------+ (Clear)
//! ```
//!
//! A report from an application on this host (`Reported`) starts the direct probe at once, as
//! if phi had crossed the threshold; a peer that answers is back to `Watching`, so reports
//! against a healthy peer cost one ping each and raise nothing.
//!
//! A relayed heartbeat feeds phi but does not end a probe or a suspicion: only the peer itself
//! (or a relay that reached it) can say "I am here" to us. A gossip exchange the peer left
//! unanswered already was a failed direct contact, so it goes straight to the indirect stage,
//! which also pings the peer directly once more.
//!
//! Timers are data: each `WakeAt` carries a [`TimerToken`], and a `Wake` whose token is not
//! the one armed last is stale and ignored (as foca's `TimerToken`), so the shell never
//! cancels a timer and a late or superseded wake can never be taken for the current one.

use super::phi::Phi;
use crate::types::Time;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Settings {
    pub phi_threshold: f64,
    pub phi_window: usize,
    pub phi_min_std: Duration,
    /// Expected cadence of signs of life before any has been measured.
    pub first_interval: Duration,
    /// How long a direct ping may take.
    pub probe_timeout: Duration,
    /// How long the indirect probes (and the repeated direct ping) may take.
    pub indirect_timeout: Duration,
    /// While nothing is amiss, a watcher's wake is put off to the next multiple of this (in
    /// milliseconds of the clock): every watcher of a node then wakes at the same instants,
    /// so a node watching hundreds of peers wakes a few times a second instead of once per
    /// peer and beat. Probes under way keep their exact deadlines.
    pub wake_grid: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            phi_threshold: 8.0,
            phi_window: 64,
            phi_min_std: Duration::from_millis(100),
            first_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(200),
            indirect_timeout: Duration::from_millis(350),
            wake_grid: Duration::from_millis(50),
        }
    }
}

/// How we came to know that the peer was alive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Evidence {
    /// A datagram from the peer itself carrying a newer heartbeat.
    Direct,
    /// The peer answered a probe, directly or through a relay.
    Answered,
    /// A newer heartbeat of the peer relayed by someone else.
    Relayed,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    Alive(Evidence),
    /// A gossip exchange we started with the peer got no answer in time.
    Unanswered,
    /// Another node suspects the peer; `verify` asks us to probe it ourselves.
    SuspicionHeard {
        verify: bool,
    },
    /// The peer started a new life (higher incarnation): forget its history.
    Reset,
    /// An application on this host could not reach the peer (`nbwatch unreachable`): evidence
    /// that starts a direct probe at once, never a verdict by itself — the probe's answer, or
    /// the usual probe stages and two witnesses, decide.
    Reported,
    /// The timer of this token is due (a stale token is ignored).
    Wake(TimerToken),
}

/// A probe the watcher sends itself, straight through the transport (see [`super::probe`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// Ping the peer directly.
    Direct,
    /// Ping it directly again and ask `k` others to ping it.
    Indirect,
}

/// What the watcher tells the gossip layer: these change the gossiped state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nobody reached it: gossip our suspicion.
    Suspect,
    /// It answered after all: withdraw our suspicion.
    Clear,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    Probe(Probe),
    Verdict(Verdict),
    /// Send `Wake(token)` at `at`.
    WakeAt {
        at: Time,
        token: TimerToken,
    },
}

/// Names one armed timer; only the latest one armed counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerToken(pub u64);

/// Where the watcher is; a probe's phase keeps when it began, and its deadline is that plus
/// the timeout times the current patience (see `set_patience`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Watching,
    Direct { since: Time },
    Indirect { since: Time },
    Suspecting,
}

#[derive(Clone, Debug)]
pub struct PeerWatch {
    settings: Settings,
    phi: Phi,
    last_alive: Time,
    phase: Phase,
    /// The timer armed last, and when it is due.
    armed: Option<(Time, TimerToken)>,
    tokens: u64,
    /// This node's own local health multiplier (1: healthy; see `health`).
    patience: u32,
}

impl PeerWatch {
    pub fn new(now: Time, settings: Settings) -> PeerWatch {
        let phi = Phi::new(
            settings.phi_threshold,
            settings.phi_window,
            settings.phi_min_std,
            settings.first_interval,
        );
        PeerWatch {
            settings,
            phi,
            last_alive: now,
            phase: Phase::Watching,
            armed: None,
            tokens: 0,
            patience: 1,
        }
    }

    /// This node's local health multiplier (`health::Patience::factor`): a late node waits
    /// that many times longer for answers before it suspects the peer, also for a probe under
    /// way. Call before `handle`.
    pub fn set_patience(&mut self, patience: u32) {
        self.patience = patience.max(1);
    }

    fn deadline(&self) -> Option<Time> {
        let (since, timeout) = match self.phase {
            Phase::Direct { since } => (since, self.settings.probe_timeout),
            Phase::Indirect { since } => (since, self.settings.indirect_timeout),
            Phase::Watching | Phase::Suspecting => return None,
        };
        Some(since + timeout * self.patience)
    }

    /// Numbers this watcher's tokens from `base` on: a driver that keeps one timer queue for
    /// many watchers of the same peer over time (the simulator) gives each a distinct base, so
    /// a wake meant for a replaced watcher can never match the new one's token.
    pub fn with_token_base(mut self, base: u64) -> PeerWatch {
        self.tokens = base;
        self
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Phi of the peer now (for display).
    pub fn phi(&self, now: Time) -> f64 {
        self.phi.phi(now.since(self.last_alive))
    }

    /// Call once after `new` to arm the first timer.
    pub fn start(&mut self, now: Time) -> Vec<Output> {
        let mut out = Vec::new();
        self.arm(self.next_deadline(now), &mut out);
        out
    }

    pub fn handle(&mut self, now: Time, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        match input {
            Input::Alive(evidence) => {
                if evidence != Evidence::Answered {
                    self.phi.record(now.since(self.last_alive));
                }
                self.last_alive = self.last_alive.max(now);
                if evidence != Evidence::Relayed {
                    if self.phase == Phase::Suspecting {
                        out.push(Output::Verdict(Verdict::Clear));
                    }
                    self.phase = Phase::Watching;
                }
            }
            Input::Unanswered | Input::SuspicionHeard { verify: true } => {
                if self.phase == Phase::Watching {
                    self.start_indirect(now, &mut out);
                }
            }
            Input::SuspicionHeard { verify: false } => {}
            // While a probe is under way (or the peer is suspected) a report adds nothing.
            Input::Reported => {
                if self.phase == Phase::Watching {
                    self.phase = Phase::Direct { since: now };
                    out.push(Output::Probe(Probe::Direct));
                }
            }
            Input::Reset => {
                self.phi.clear();
                self.last_alive = now;
                self.phase = Phase::Watching;
            }
            Input::Wake(token) => {
                if self.armed.is_none_or(|(_, armed)| armed != token) {
                    return out; // stale: superseded by the timer armed since
                }
                self.armed = None;
                self.on_wake(now, &mut out);
            }
        }
        let next = self.next_deadline(now);
        self.arm(next, &mut out);
        out
    }

    fn on_wake(&mut self, now: Time, out: &mut Vec<Output>) {
        match self.phase {
            Phase::Watching if now >= self.last_alive + self.phi.silence_to_threshold() => {
                self.phase = Phase::Direct { since: now };
                out.push(Output::Probe(Probe::Direct));
            }
            Phase::Direct { .. } if self.deadline().is_some_and(|d| now >= d) => {
                self.start_indirect(now, out)
            }
            Phase::Indirect { .. } if self.deadline().is_some_and(|d| now >= d) => {
                self.phase = Phase::Suspecting;
                out.push(Output::Verdict(Verdict::Suspect));
            }
            _ => {}
        }
    }

    fn start_indirect(&mut self, now: Time, out: &mut Vec<Output>) {
        self.phase = Phase::Indirect { since: now };
        out.push(Output::Probe(Probe::Indirect));
    }

    fn next_deadline(&self, now: Time) -> Option<Time> {
        match self.phase {
            Phase::Watching => Some(
                (self.last_alive + self.phi.silence_to_threshold())
                    .max(now)
                    .on_grid(self.settings.wake_grid),
            ),
            Phase::Direct { .. } | Phase::Indirect { .. } => self.deadline(),
            Phase::Suspecting => None,
        }
    }

    fn arm(&mut self, at: Option<Time>, out: &mut Vec<Output>) {
        let Some(at) = at else { return };
        if self.armed.is_none_or(|(armed, _)| at < armed) {
            self.tokens += 1;
            let token = TimerToken(self.tokens);
            self.armed = Some((at, token));
            out.push(Output::WakeAt { at, token });
        }
    }
}

#[cfg(test)]
mod tests;
