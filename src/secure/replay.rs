//! The replay window: a captured frame sent again is refused.
//!
//! Each sender numbers its frames (per kind) within a session, its start time in milliseconds.
//! The receiver remembers, per sender and kind, the newest session, the highest sequence
//! number seen and which of the [`WINDOW`] numbers below it were seen (a bitmap, as IPsec
//! does). A frame is fresh if its session is newer, or if its number is above the highest, or
//! within the window and not seen yet. Older sessions and numbers below the window are
//! refused: a late datagram that far behind is worthless to gossip anyway.
//!
//! Limits, stated in SECURITY.md: a receiver that restarts has forgotten its windows, so the
//! first frame it hears from a sender's current session sets the window; memory is bounded
//! by forgetting the least recently heard sender past [`MAX_SENDERS`].

use super::frame::{Kind, Origin};
use std::collections::HashMap;

/// How many sequence numbers below the highest are tracked.
pub const WINDOW: u64 = 256;
/// Senders (times kinds) remembered at once.
pub const MAX_SENDERS: usize = 4096;

#[derive(Clone, Debug, PartialEq, Eq)]
struct Window {
    session: u64,
    top: u64,
    seen: [u64; (WINDOW / 64) as usize],
    used: u64,
}

impl Window {
    fn new(session: u64, seq: u64, used: u64) -> Window {
        let mut w = Window {
            session,
            top: seq,
            seen: [0; (WINDOW / 64) as usize],
            used,
        };
        w.mark(0);
        w
    }

    fn bit(&self, back: u64) -> bool {
        self.seen[(back / 64) as usize] & (1 << (back % 64)) != 0
    }

    fn mark(&mut self, back: u64) {
        self.seen[(back / 64) as usize] |= 1 << (back % 64);
    }

    /// Shifts the bitmap up by `by` numbers (the highest moved up).
    fn shift(&mut self, by: u64) {
        if by >= WINDOW {
            self.seen = [0; (WINDOW / 64) as usize];
            return;
        }
        let words = (by / 64) as usize;
        let bits = by % 64;
        let n = self.seen.len();
        let mut out = [0u64; (WINDOW / 64) as usize];
        for (i, slot) in out.iter_mut().enumerate().skip(words) {
            let src = i - words;
            let mut v = self.seen[src] << bits;
            if bits != 0 && src > 0 {
                v |= self.seen[src - 1] >> (64 - bits);
            }
            *slot = v;
        }
        debug_assert_eq!(out.len(), n);
        self.seen = out;
    }

    fn accept(&mut self, session: u64, seq: u64) -> bool {
        if session != self.session {
            if session < self.session {
                return false;
            }
            *self = Window::new(session, seq, self.used);
            return true;
        }
        if seq > self.top {
            self.shift(seq - self.top);
            self.top = seq;
            self.mark(0);
            return true;
        }
        let back = self.top - seq;
        if back >= WINDOW || self.bit(back) {
            return false;
        }
        self.mark(back);
        true
    }
}

/// The windows of every sender heard from.
#[derive(Debug, Default)]
pub struct Replay {
    windows: HashMap<(u64, Kind), Window>,
    clock: u64,
}

impl Replay {
    /// True if the frame is fresh (and records it); false if it is a replay or too old.
    pub fn accept(&mut self, kind: Kind, origin: Origin) -> bool {
        self.clock += 1;
        let used = self.clock;
        if let Some(w) = self.windows.get_mut(&(origin.sender, kind)) {
            w.used = used;
            return w.accept(origin.session, origin.seq);
        }
        if self.windows.len() >= MAX_SENDERS
            && let Some(oldest) = self
                .windows
                .iter()
                .min_by_key(|(_, w)| w.used)
                .map(|(k, _)| *k)
        {
            self.windows.remove(&oldest);
        }
        self.windows.insert(
            (origin.sender, kind),
            Window::new(origin.session, origin.seq, used),
        );
        true
    }
}
