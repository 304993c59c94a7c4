//! Availability of each service with its dependencies, two ways.
//!
//! The **components** are hosts and services, each with the failure model measured from the
//! history ([`super::availability`]): its availability `A = MTBF / (MTBF + MTTR)` (1 for one
//! that never failed). A service works while every component in its **closure** works: itself,
//! its host, and, through `requires`, every service it needs with their hosts, transitively.
//! Requirements are all needed (no alternatives), so a service is a series system of the
//! distinct components of its closure.
//!
//! * **Steady state** ([`exact`]): with components failing independently, the service's
//!   availability is the product of its closure's availabilities — exact on the graph, since
//!   a component shared by two paths (a host under two required services) is counted once.
//! * **Simulation** ([`simulate`]): time in steps; each component is a two-state chain that
//!   fails with probability `step / MTBF` and is repaired with `step / MTTR` per step (its
//!   stationary availability is `MTBF / (MTBF + MTTR)`, the same `A`); failures propagate
//!   along the graph at each step. The step is a quarter of the shortest MTBF or MTTR, so no
//!   probability exceeds ¼. The estimate's standard error comes from batch means (20 batches),
//!   which holds though successive steps are correlated. Seeded: the same seed, the same answer.
//!
//! **Redundancy.** A second, independent instance of a component with availability `a` makes it
//! `1 − (1 − a)²`; for a service whose closure holds it, availability rises by `A_s · (1 − a)`.
//! [`best_redundancy`] names the component whose doubling raises the services' availabilities
//! most in sum.

use super::{EdgeKind, Graph, Kind};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};

/// A component's failure model, in seconds (`None`: never failed).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Component {
    pub mtbf: Option<f64>,
    pub mttr: Option<f64>,
}

impl Component {
    pub fn availability(&self) -> f64 {
        match (self.mtbf, self.mttr) {
            (Some(b), Some(r)) if b + r > 0.0 => b / (b + r),
            _ => 1.0,
        }
    }
}

/// The components a service needs (see the module doc), by id; `service` included.
pub fn closure(graph: &Graph, service: &str) -> BTreeSet<String> {
    let mut needs: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for e in graph.edges.iter().filter(|e| e.kind == EdgeKind::Requires) {
        needs
            .entry(e.from.as_str())
            .or_default()
            .push(e.to.as_str());
    }
    let mut seen = BTreeSet::new();
    let mut stack = vec![service];
    while let Some(s) = stack.pop() {
        if !seen.insert(s.to_string()) {
            continue;
        }
        if let Some(v) = graph.vertex(s) {
            seen.insert(v.node.clone());
        }
        stack.extend(needs.get(s).into_iter().flatten().copied());
    }
    seen
}

/// The services of `graph`, by id.
pub fn services(graph: &Graph) -> Vec<String> {
    (graph.vertices.iter())
        .filter(|v| v.kind == Kind::Service)
        .map(|v| v.id.clone())
        .collect()
}

fn availability_of(models: &BTreeMap<String, Component>, id: &str) -> f64 {
    models.get(id).map_or(1.0, Component::availability)
}

/// Each service's steady-state availability with its dependencies.
pub fn exact(graph: &Graph, models: &BTreeMap<String, Component>) -> BTreeMap<String, f64> {
    services(graph)
        .into_iter()
        .map(|s| {
            let a = (closure(graph, &s).iter())
                .map(|c| availability_of(models, c))
                .product();
            (s, a)
        })
        .collect()
}

/// The component whose second instance would raise the services' availabilities most, and
/// by how much in sum; `None` when no component ever failed.
pub fn best_redundancy(
    graph: &Graph,
    models: &BTreeMap<String, Component>,
) -> Option<(String, f64)> {
    let steady = exact(graph, models);
    let mut gain: BTreeMap<String, f64> = BTreeMap::new();
    for (s, a) in &steady {
        for c in closure(graph, s) {
            let weak = 1.0 - availability_of(models, &c);
            if weak > 0.0 {
                *gain.entry(c).or_default() += a * weak;
            }
        }
    }
    gain.into_iter()
        .max_by(|a, b| a.1.total_cmp(&b.1).then_with(|| b.0.cmp(&a.0)))
}

/// What [`simulate`] found.
#[derive(Clone, Debug, PartialEq)]
pub struct Simulation {
    pub steps: u64,
    /// Seconds of time a step stands for.
    pub step: f64,
    pub seed: u64,
    /// Per service: the share of steps it worked, and that estimate's standard error.
    pub services: BTreeMap<String, (f64, f64)>,
}

/// Batches the steps are cut into for the standard error.
const BATCHES: u64 = 20;

/// Runs the components' failure models for `steps` steps and propagates failures along the
/// graph at each (see the module doc).
pub fn simulate(
    graph: &Graph,
    models: &BTreeMap<String, Component>,
    steps: u64,
    seed: u64,
) -> Simulation {
    let services = services(graph);
    let mut closures: Vec<Vec<usize>> = Vec::new();
    let mut ids: Vec<String> = Vec::new();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    for s in &services {
        let mut c = Vec::new();
        for id in closure(graph, s) {
            let next = ids.len();
            let i = *index.entry(id.clone()).or_insert(next);
            if i == next {
                ids.push(id);
            }
            c.push(i);
        }
        closures.push(c);
    }
    let shortest = (ids.iter())
        .filter_map(|id| models.get(id))
        .flat_map(|m| [m.mtbf, m.mttr])
        .flatten()
        .filter(|t| *t > 0.0)
        .fold(f64::INFINITY, f64::min);
    let step = if shortest.is_finite() {
        shortest / 4.0
    } else {
        1.0
    };
    // Per component: the chance to fail and to be repaired in a step (0: never fails).
    let chances: Vec<(f64, f64)> = (ids.iter())
        .map(|id| match models.get(id).map(|m| (m.mtbf, m.mttr)) {
            // Down the whole window (no up time between failures): fails at once, every time.
            Some((Some(b), Some(r))) if b <= 0.0 && r > 0.0 => (1.0, (step / r).min(1.0)),
            Some((Some(b), Some(r))) if b > 0.0 && r > 0.0 => {
                ((step / b).min(1.0), (step / r).min(1.0))
            }
            _ => (0.0, 1.0),
        })
        .collect();
    let mut rng = SmallRng::seed_from_u64(seed);
    // Start from the stationary distribution, so no warm-up is needed.
    let mut up: Vec<bool> = (ids.iter())
        .map(|id| rng.random_bool(availability_of(models, id).clamp(0.0, 1.0)))
        .collect();
    let steps = steps.max(BATCHES);
    let per_batch = steps / BATCHES;
    let steps = per_batch * BATCHES;
    let mut batch_up = vec![vec![0u64; BATCHES as usize]; services.len()];
    for t in 0..steps {
        for (u, (fail, repair)) in up.iter_mut().zip(&chances) {
            if *u {
                if *fail > 0.0 && rng.random_bool(*fail) {
                    *u = false;
                }
            } else if rng.random_bool(*repair) {
                *u = true;
            }
        }
        let batch = (t / per_batch) as usize;
        for (k, c) in closures.iter().enumerate() {
            if c.iter().all(|&i| up[i]) {
                batch_up[k][batch] += 1;
            }
        }
    }
    let services = (services.into_iter().zip(batch_up))
        .map(|(s, batches)| {
            let means: Vec<f64> = (batches.iter())
                .map(|&n| n as f64 / per_batch as f64)
                .collect();
            let mean = means.iter().sum::<f64>() / BATCHES as f64;
            let var = means.iter().map(|m| (m - mean).powi(2)).sum::<f64>() / (BATCHES - 1) as f64;
            (s, (mean, (var / BATCHES as f64).sqrt()))
        })
        .collect();
    Simulation {
        steps,
        step,
        seed,
        services,
    }
}
