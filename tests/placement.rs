//! Singleton trees in the seeded simulator: every node runs the real gossip core and the real
//! placement logic (the leader's assignment, each node's start/stop decision with its handover
//! delay) on its own view, while hosts crash, come back, and the network splits and heals.
//! Checked all along: no connected component that has been connected for [`SETTLE`] runs two
//! instances; and once things are quiet, exactly one runs. Each test prints its seed on
//! failure; `SIM_SEED=<n>` replays one.

use nbwatch::control::placement::{self, Decision, Placer};
use nbwatch::election;
use nbwatch::gossip::Settings;
use nbwatch::keys::Run;
use nbwatch::sim::Sim;
use nbwatch::supervision::spec::Placement;
use nbwatch::types::Time;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::time::Duration;

/// How often each node looks at its view (the election tick).
const STEP: Duration = Duration::from_millis(200);
/// After a heal, two sides' instances may both run until the merged cluster has agreed.
const SETTLE: Duration = Duration::from_secs(10);
const TREE: &str = "tv";

struct PlaceSim {
    sim: Sim,
    placers: Vec<Placer>,
    running: Vec<bool>,
    placement: Placement,
    /// The nodes of one side while a partition is on.
    side: Option<Vec<usize>>,
    last_heal: Time,
    /// Instance-seconds of overlap within one component before [`SETTLE`] after a heal.
    overlap: Duration,
}

impl PlaceSim {
    fn new(seed: u64, n: usize, placement: Placement) -> PlaceSim {
        PlaceSim {
            sim: Sim::cluster(seed, n, Settings::default()),
            placers: (0..n).map(|_| Placer::default()).collect(),
            running: vec![false; n],
            placement,
            side: None,
            last_heal: Time::ZERO,
            overlap: Duration::ZERO,
        }
    }

    /// One tick of every up node's control logic.
    fn step(&mut self) {
        let now = self.sim.now;
        for i in 0..self.sim.nodes.len() {
            if !self.sim.is_up(i) {
                continue;
            }
            let views = self.sim.nodes[i].core.members(now);
            let me = Sim::name(i);
            let Some(own) = views.iter().find(|v| v.is_self).cloned() else {
                continue;
            };
            let leader = election::leader(&views);
            if leader.as_ref() == Some(&me) {
                for (k, v) in placement::leader_entries(&views) {
                    if own.kv.get(&k) != Some(&v) {
                        self.sim.set(i, &k, Some(v)).expect("set");
                    }
                }
            } else {
                for k in placement::own_places(&own) {
                    self.sim.set(i, &k, None).expect("delete");
                }
            }
            let run = if self.running[i] {
                Run::Running
            } else {
                Run::Idle
            };
            let (k, v) = placement::declaration(TREE, &self.placement, run);
            if own.kv.get(&k) != Some(&v) {
                self.sim.set(i, &k, Some(v)).expect("declare");
            }
            let leader = leader.as_ref().map(|l| l.as_str().to_string());
            match self.placers[i].step(
                now,
                &views,
                me.as_str(),
                TREE,
                leader.as_deref(),
                self.running[i],
            ) {
                Decision::Start => self.running[i] = true,
                Decision::Stop => self.running[i] = false,
                Decision::Nothing => {}
            }
        }
        self.sim.run_for(STEP);
        self.check();
    }

    fn components(&self) -> Vec<Vec<usize>> {
        let up: Vec<usize> = (0..self.sim.nodes.len())
            .filter(|&i| self.sim.is_up(i))
            .collect();
        match &self.side {
            None => vec![up],
            Some(side) => {
                let (a, b): (Vec<usize>, Vec<usize>) = up.iter().partition(|i| side.contains(i));
                vec![a, b]
            }
        }
    }

    fn runners(&self, among: &[usize]) -> Vec<usize> {
        among.iter().copied().filter(|&i| self.running[i]).collect()
    }

    fn check(&mut self) {
        let settled = self.sim.now.since(self.last_heal) >= SETTLE;
        for component in self.components() {
            let runners = self.runners(&component);
            if runners.len() > 1 {
                assert!(
                    !settled,
                    "seed {}: at {:?} the component {component:?} (connected for {:?}) runs {runners:?}\n{}",
                    self.sim.seed,
                    self.sim.now,
                    self.sim.now.since(self.last_heal),
                    self.sim.describe()
                );
                self.overlap += STEP * (runners.len() as u32 - 1);
            }
        }
    }

    fn run(&mut self, d: Duration) {
        let end = self.sim.now + d;
        while self.sim.now < end {
            self.step();
        }
    }

    fn crash(&mut self, i: usize) {
        self.sim.crash(i);
        // The host is gone, and its services with it.
        self.running[i] = false;
        self.placers[i] = Placer::default();
    }

    fn heal(&mut self) {
        self.sim.heal();
        if self.side.take().is_some() {
            self.last_heal = self.sim.now;
        }
    }

    /// Once quiet: exactly one instance in every component that has a live candidate.
    fn assert_exactly_one(&self) {
        for component in self.components() {
            if component.is_empty() {
                continue;
            }
            let runners = self.runners(&component);
            assert_eq!(
                runners.len(),
                1,
                "seed {}: component {component:?} runs {runners:?} once quiet",
                self.sim.seed
            );
        }
    }
}

fn seeds() -> Vec<u64> {
    match std::env::var("SIM_SEED") {
        Ok(s) => vec![s.parse().expect("SIM_SEED is a number")],
        Err(_) => (1..=12).collect(),
    }
}

fn failover(n: usize) -> Placement {
    Placement {
        failover: (0..n).rev().map(|i| Sim::name(i).to_string()).collect(),
        takeover: true,
    }
}

#[test]
fn a_singleton_runs_once_per_component_through_crashes_restarts_partitions_and_heals() {
    let n = 5;
    for seed in seeds() {
        for placement in [
            failover(n),
            Placement {
                failover: vec![],
                takeover: false,
            },
        ] {
            let mut s = PlaceSim::new(seed, n, placement);
            let mut rng = SmallRng::seed_from_u64(seed);
            s.run(Duration::from_secs(20));
            s.assert_exactly_one();
            for _ in 0..12 {
                let crashed: Vec<usize> = (0..n).filter(|&i| !s.sim.is_up(i)).collect();
                match rng.random_range(0..4) {
                    0 if crashed.len() < n - 2 => {
                        // Crash a node that runs it, if any, else any up node.
                        let up: Vec<usize> = (0..n).filter(|&i| s.sim.is_up(i)).collect();
                        let target = up
                            .iter()
                            .copied()
                            .find(|&i| s.running[i])
                            .unwrap_or(up[rng.random_range(0..up.len())]);
                        s.crash(target);
                    }
                    1 if !crashed.is_empty() => {
                        let i = crashed[rng.random_range(0..crashed.len())];
                        let seed_node = (0..n).find(|&j| s.sim.is_up(j)).expect("an up node");
                        s.sim.restart(i, seed_node);
                    }
                    2 if s.side.is_none() => {
                        let k = rng.random_range(1..n);
                        let side: Vec<usize> = (0..k).collect();
                        let other: Vec<usize> = (k..n).collect();
                        s.sim.partition(&side, &other);
                        s.side = Some(side);
                    }
                    _ => s.heal(),
                }
                let wait = Duration::from_secs(rng.random_range(6..16));
                s.run(wait);
            }
            // Quiet: heal, bring every host back, and let the cluster settle.
            s.heal();
            for i in 0..n {
                if !s.sim.is_up(i) {
                    let seed_node = (0..n).find(|&j| s.sim.is_up(j)).expect("an up node");
                    s.sim.restart(i, seed_node);
                }
            }
            s.run(Duration::from_secs(30));
            s.assert_exactly_one();
            if s.placement.takeover {
                // Takeover: the most preferred host has it.
                let first = s.placement.failover[0].clone();
                let holder = (0..n).find(|&i| s.running[i]).expect("a holder");
                assert_eq!(Sim::name(holder).as_str(), first, "seed {seed}");
            }
            eprintln!(
                "seed {seed} takeover={}: overlap right after heals {:?}",
                s.placement.takeover, s.overlap
            );
        }
    }
}
