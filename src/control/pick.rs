//! Where to send the next job, decided on this host from its view alone (`nbwatch pick`).
//!
//! Every live member with a value of the metric is a candidate, scored by it (lower is
//! better; the default is the 1-minute load per core). Each of the `count` choices takes two
//! distinct candidates at random and keeps the lower-scored one (the power of two choices,
//! Mitzenmacher): the least loaded hosts are favoured, but many hosts picking at the same
//! moment from the same gossiped loads spread their jobs instead of all sending them to the
//! single least loaded host, which "always the minimum" does (and herds). A sample older than
//! [`STALE`] by this host's clock loses against a fresh one whatever its value: a host that
//! stopped reporting is not a host known to be idle. Hosts without the metric are left out.

use crate::gossip::{MemberView, Status};
use crate::keys::sample::{metrics_from_kv, parse_sample};
use crate::keys::{CPUS_KEY, METRICS_KEY};
use crate::types::Time;
use rand::Rng;
use rand::seq::SliceRandom;
use std::time::Duration;

/// The default metric: the 1-minute load average divided by the host's CPUs.
pub const LOAD_PER_CORE: &str = "load_per_core";
/// A sample older than this ranks after every fresh one.
pub const STALE: Duration = Duration::from_secs(60);

/// A host work may be sent to, and its score (the metric's value; lower is better).
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub node: String,
    pub addr: std::net::SocketAddr,
    pub score: f64,
    /// Its sample is older than [`STALE`].
    pub stale: bool,
}

impl Candidate {
    /// The order of preference: fresh before stale, then the lower score.
    fn better_than(&self, other: &Candidate) -> bool {
        (self.stale, self.score) < (other.stale, other.score)
    }
}

/// The value of `metric` (a gossiped metric, a probe's `<probe>.<label>`, or
/// [`LOAD_PER_CORE`]) for `m`, as of `now`, with whether its sample is stale.
pub fn score(m: &MemberView, metric: &str, now: Time) -> Option<(f64, bool)> {
    let stale =
        m.kv.get(METRICS_KEY)
            .and_then(|v| parse_sample(v, now).1)
            .is_some_and(|origin| now.since(m.local(origin)) > STALE);
    let metrics = metrics_from_kv(m.kv.iter().map(|(k, v)| (k.as_str(), v.as_str())), now);
    let value = if metric == LOAD_PER_CORE {
        let load = metrics.get("load1")?.as_f64()?;
        let cpus =
            m.kv.get(CPUS_KEY)
                .and_then(|c| c.parse::<f64>().ok())
                .filter(|c| c.is_finite() && *c >= 1.0)
                .unwrap_or(1.0);
        load / cpus
    } else {
        metrics.get(metric)?.as_f64()?
    };
    value.is_finite().then_some((value, stale))
}

/// The live members (this host included) with a value of `metric`, except `exclude`.
pub fn candidates(
    views: &[MemberView],
    metric: &str,
    exclude: &[String],
    now: Time,
) -> Vec<Candidate> {
    views
        .iter()
        .filter(|m| m.status == Status::Alive && !exclude.iter().any(|e| e == m.name.as_str()))
        .filter_map(|m| {
            let (score, stale) = score(m, metric, now)?;
            Some(Candidate {
                node: m.name.to_string(),
                addr: m.addr,
                score,
                stale,
            })
        })
        .collect()
}

/// `count` distinct candidates, each the better of two drawn at random from those not yet
/// chosen (the last one left is taken as it is).
pub fn pick(mut candidates: Vec<Candidate>, count: usize, rng: &mut impl Rng) -> Vec<Candidate> {
    let mut chosen = Vec::new();
    while chosen.len() < count && !candidates.is_empty() {
        let i = rng.random_range(0..candidates.len());
        let j = if candidates.len() > 1 {
            let j = rng.random_range(0..candidates.len() - 1);
            if j >= i { j + 1 } else { j }
        } else {
            i
        };
        let best = if candidates[j].better_than(&candidates[i]) {
            j
        } else {
            i
        };
        chosen.push(candidates.swap_remove(best));
    }
    chosen
}

/// The `count` best candidates, always the same: "always the minimum", which herds when many
/// hosts pick at once (kept to show it in the tests and benchmarks).
pub fn minimum(mut candidates: Vec<Candidate>, count: usize) -> Vec<Candidate> {
    candidates.sort_by(|a, b| {
        (a.stale, a.score)
            .partial_cmp(&(b.stale, b.score))
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| a.node.cmp(&b.node))
    });
    candidates.truncate(count);
    candidates
}

/// `count` candidates chosen uniformly at random, whatever their score (the baseline).
pub fn uniform(mut candidates: Vec<Candidate>, count: usize, rng: &mut impl Rng) -> Vec<Candidate> {
    candidates.shuffle(rng);
    candidates.truncate(count);
    candidates
}

#[cfg(test)]
mod tests;
