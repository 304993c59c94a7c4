//! The alert protocol in the seeded simulator: every node runs the real gossip core and the
//! real alert core; a sink delivery takes a little virtual time, as a real one would. Each
//! test prints its seed on failure; `SIM_SEED=<n>` replays one.

use nbwatch::actors::alert::MARK_SPREAD;
use nbwatch::alert::action::key;
use nbwatch::alert::{AlertCore, AlertOutput, DEFAULT_SETTLE, Persisted, Rules};
use nbwatch::config::{ActionKind, ActionOn, ActionSpec};
use nbwatch::election::ViewSnapshot;
use nbwatch::events::SinkResult;
use nbwatch::gossip::{Settings, Status};
use nbwatch::sim::Sim;
use nbwatch::types::Time;
use std::collections::BTreeMap;
use std::time::Duration;

/// How long a sink takes to accept an alert.
const DELIVERY: Duration = Duration::from_millis(200);
/// How long a step of remediation runs.
const ACTION: Duration = Duration::from_secs(3);
/// How often each node's alert core is ticked.
const STEP: Duration = Duration::from_millis(100);

#[derive(Clone, Debug)]
struct Delivery {
    at: Time,
    by: usize,
    id: String,
    /// The sender died before it could write `sent` (the documented duplicate window).
    sender_died: bool,
    /// Its sinks refused it.
    refused: bool,
    /// The alert JSON given to the sinks.
    alert: serde_json::Value,
}

struct AlertSim {
    sim: Sim,
    cores: Vec<AlertCore>,
    /// Accepted by the sink at `at`; `sent` is written at `done` if the sender is still up.
    pending: Vec<(Time, usize, String, serde_json::Value, usize)>,
    deliveries: Vec<Delivery>,
    rules: Rules,
    /// Partitions: from, until (None: still on), one side.
    partitions: Vec<(Time, Option<Time>, Vec<usize>)>,
    /// How many sinks each node has (1 unless a test says otherwise).
    sinks: Vec<usize>,
    /// Nodes whose sinks refuse every alert for now.
    refusing: std::collections::BTreeSet<usize>,
    /// What the sinks' results call the sink ("sim"; "alertmanager#1" for that sink).
    sink_name: &'static str,
    /// Remediation steps every node runs as the sender (`[[alerts.actions]]`).
    actions: Vec<ActionSpec>,
    /// Each step started: when, by whom, which.
    runs: Vec<(Time, usize, String)>,
    /// Steps running: done at, runner, id, alert.
    running: Vec<(Time, usize, String, serde_json::Value)>,
    /// Steps whose running mark is written, to start once it has had time to spread.
    marked: Vec<(Time, usize, String, serde_json::Value)>,
}

impl AlertSim {
    fn new(seed: u64, n: usize) -> AlertSim {
        AlertSim::with_rules(seed, n, Rules::default())
    }

    fn with_rules(seed: u64, n: usize, rules: Rules) -> AlertSim {
        AlertSim::with_sinks(seed, &vec![1; n], rules)
    }

    /// A cluster of `sinks.len()` nodes, node `i` with `sinks[i]` sinks.
    fn with_sinks(seed: u64, sinks: &[usize], rules: Rules) -> AlertSim {
        let settings = Settings::default();
        let sim = Sim::cluster(seed, sinks.len(), settings);
        let cores = (0..sinks.len())
            .map(|i| alert_core(i, sinks[i], rules, Persisted::default(), sim.now))
            .collect();
        AlertSim {
            rules,
            sim,
            cores,
            pending: Vec::new(),
            deliveries: Vec::new(),
            partitions: Vec::new(),
            sinks: sinks.to_vec(),
            refusing: Default::default(),
            sink_name: "sim",
            actions: Vec::new(),
            runs: Vec::new(),
            running: Vec::new(),
            marked: Vec::new(),
        }
    }

    /// `n` nodes with one sink each, all running `actions`.
    fn with_actions(seed: u64, n: usize, actions: Vec<ActionSpec>) -> AlertSim {
        AlertSim::with_actions_and_rules(seed, n, actions, Rules::default())
    }

    fn with_actions_and_rules(
        seed: u64,
        n: usize,
        actions: Vec<ActionSpec>,
        rules: Rules,
    ) -> AlertSim {
        let mut s = AlertSim::with_rules(seed, n, rules);
        let now = s.sim.now;
        s.cores = (0..n)
            .map(|i| alert_core(i, 1, s.rules, Persisted::default(), now).acting(actions.clone()))
            .collect();
        s.actions = actions;
        s
    }

    /// How many times each step id started running.
    fn run_count(&self, prefix: &str) -> usize {
        self.runs
            .iter()
            .filter(|(_, _, id)| id.starts_with(prefix))
            .count()
    }

    fn step(&mut self) {
        let now = self.sim.now;
        // Deliveries that are done: the sender writes `sent` if it is still up.
        let (done, waiting): (Vec<_>, Vec<_>) =
            self.pending.drain(..).partition(|(due, ..)| *due <= now);
        self.pending = waiting;
        for (_, i, id, alert, k) in done {
            if self.sim.is_up(i) {
                let result = if self.refusing.contains(&i) {
                    self.deliveries[k].refused = true;
                    "HTTP/1.1 503 Service Unavailable"
                } else {
                    SinkResult::OK
                };
                let results = [SinkResult {
                    sink: self.sink_name.into(),
                    result: result.into(),
                }];
                let outs = self.cores[i].delivered(now, &id, &alert, &results);
                self.apply(i, outs);
            } else {
                self.deliveries[k].sender_died = true;
            }
        }
        let (start, waiting): (Vec<_>, Vec<_>) =
            self.marked.drain(..).partition(|(due, ..)| *due <= now);
        self.marked = waiting;
        for (_, i, id, alert) in start {
            if self.sim.is_up(i) {
                self.runs.push((now, i, id.clone()));
                self.running.push((now + ACTION, i, id, alert));
            }
        }
        let (done, waiting): (Vec<_>, Vec<_>) =
            self.running.drain(..).partition(|(due, ..)| *due <= now);
        self.running = waiting;
        for (_, i, id, alert) in done {
            if self.sim.is_up(i) {
                let results = [SinkResult {
                    sink: "wol".into(),
                    result: SinkResult::OK.into(),
                }];
                let outs = self.cores[i].delivered(now, &id, &alert, &results);
                self.apply(i, outs);
            }
        }
        for i in 0..self.cores.len() {
            if !self.sim.is_up(i) {
                continue;
            }
            let view = self.sim.nodes[i].core.members(now);
            let outs = self.cores[i].tick(now, &ViewSnapshot::new(view));
            self.apply(i, outs);
        }
    }

    fn apply(&mut self, i: usize, outs: Vec<AlertOutput>) {
        let now = self.sim.now;
        for o in outs {
            match o {
                AlertOutput::Set { key, value } => {
                    self.sim
                        .set(i, &key, value)
                        .expect("alert keys are allowed");
                }
                AlertOutput::Deliver { id, alert } => {
                    self.deliveries.push(Delivery {
                        at: now,
                        by: i,
                        id: id.clone(),
                        sender_died: false,
                        refused: false,
                        alert: alert.clone(),
                    });
                    let k = self.deliveries.len() - 1;
                    self.pending.push((now + DELIVERY, i, id, alert, k));
                }
                // As the alert actor does: the step starts once its mark had time to spread.
                AlertOutput::Act { id, alert, .. } => {
                    self.marked.push((now + MARK_SPREAD, i, id, alert));
                }
            }
        }
    }

    fn run_for(&mut self, d: Duration) {
        let until = self.sim.now + d;
        while self.sim.now < until {
            self.sim.run_for(STEP);
            self.step();
        }
    }

    /// A new node joins, with an alert core that remembers nothing.
    fn join(&mut self) {
        let joined = self.sim.add_node();
        self.sinks.push(1);
        self.cores.push(alert_core(
            joined,
            1,
            self.rules,
            Persisted::default(),
            self.sim.now,
        ));
    }

    /// A restarted node keeps what its alert actor persisted (the ids it knows were sent). It
    /// joins through a live node it can reach (one on its side of a partition, if any), as a
    /// host with sensibly configured seeds would.
    fn restart(&mut self, i: usize) {
        let seed = self.live_seed(i);
        self.sim.restart(i, seed);
        let persisted = self.cores[i].persisted();
        self.cores[i] = alert_core(i, self.sinks[i], self.rules, persisted, self.sim.now)
            .acting(self.actions.clone());
    }

    /// The first live node other than `i`, preferring one that `i` can reach now.
    fn live_seed(&self, i: usize) -> usize {
        let now = self.sim.now;
        let live: Vec<usize> = (0..self.cores.len())
            .filter(|&j| j != i && self.sim.is_up(j))
            .collect();
        live.iter()
            .copied()
            .find(|&j| !self.separated(i, j, now))
            .or(live.first().copied())
            .unwrap_or_else(|| panic!("seed {}: no live node for n{i} to join", self.sim.seed))
    }

    fn partition(&mut self, side_a: &[usize], side_b: &[usize]) {
        self.sim.partition(side_a, side_b);
        self.partitions.push((self.sim.now, None, side_a.to_vec()));
    }

    fn heal(&mut self) {
        self.sim.heal();
        let now = self.sim.now;
        for p in &mut self.partitions {
            p.1.get_or_insert(now);
        }
    }

    /// True if `i` and `j` were on different sides of a partition at `t`.
    fn separated(&self, i: usize, j: usize, t: Time) -> bool {
        self.partitions.iter().any(|(from, until, side)| {
            *from <= t && until.is_none_or(|u| t < u) && side.contains(&i) != side.contains(&j)
        })
    }

    /// How many times each incident id was delivered (accepted by a sink).
    fn counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for d in self.deliveries.iter().filter(|d| !d.refused) {
            *counts.entry(d.id.clone()).or_insert(0) += 1;
        }
        counts
    }

    /// Deliveries of ids starting with `prefix` that a sink accepted.
    fn count(&self, prefix: &str) -> usize {
        self.deliveries
            .iter()
            .filter(|d| d.id.starts_with(prefix) && !d.refused)
            .count()
    }

    fn explain(&self) -> String {
        format!(
            "seed {}: deliveries {:#?}\n{}",
            self.sim.seed,
            self.deliveries,
            self.sim.describe()
        )
    }
}

/// Node `i`'s alert core, with `sinks` sinks and what an earlier life persisted.
fn alert_core(i: usize, sinks: usize, rules: Rules, persisted: Persisted, now: Time) -> AlertCore {
    AlertCore::new(Sim::name(i), DEFAULT_SETTLE, rules, persisted, now)
        .trusting(trust())
        .delivering_through(sinks)
}

fn seeds(default: &[u64]) -> Vec<u64> {
    match std::env::var("SIM_SEED") {
        Ok(s) => vec![s.parse().expect("SIM_SEED is a number")],
        Err(_) => default.to_vec(),
    }
}

const DETECT: Duration = Duration::from_secs(30);

#[test]
fn a_crashed_follower_is_alerted_exactly_once_by_the_leader() {
    for seed in seeds(&[1, 2, 3, 4]) {
        let mut s = AlertSim::new(seed, 12);
        s.run_for(Duration::from_secs(3));
        s.sim.crash(7);
        s.run_for(DETECT);
        let id_prefix = format!("node_down:{}:", Sim::name(7));
        assert_eq!(s.count(&id_prefix), 1, "{}", s.explain());
        let d = &s.deliveries[0];
        assert_eq!(d.by, 0, "not sent by the leader n0: {}", s.explain());
        assert_eq!(s.deliveries.len(), 1, "{}", s.explain());
    }
}

#[test]
fn an_open_alert_an_alertmanager_got_is_posted_again_by_the_sender_until_it_ends() {
    let mut s = AlertSim::new(8, 6);
    s.sink_name = "alertmanager#1";
    s.run_for(Duration::from_secs(3));
    let again = |s: &AlertSim, i: usize| {
        let view = s.sim.nodes[i].core.members(s.sim.now);
        s.cores[i].firing_posted(s.sim.now, &view)
    };
    assert!(again(&s, 0).is_empty());
    s.sim.crash(4);
    s.run_for(DETECT);
    let down = format!("node_down:{}:", Sim::name(4));
    assert_eq!(s.count(&down), 1, "{}", s.explain());
    // Every host would post it again (the shell lets only the sender), as of now.
    for i in [0, 1] {
        let posted = again(&s, i);
        assert_eq!(posted.len(), 1, "{posted:?}");
        assert!(
            posted[0]["id"]
                .as_str()
                .is_some_and(|id| id.starts_with(&down))
        );
        assert_eq!(posted[0]["at"], s.sim.now.to_rfc3339());
    }
    s.restart(4);
    s.run_for(DETECT);
    assert_eq!(s.count(&format!("node_up:{}:", Sim::name(4))), 1);
    assert!(again(&s, 0).is_empty(), "{:?}", again(&s, 0));
}

#[test]
fn a_crashed_leader_is_alerted_once_by_the_next_leader_and_its_return_once() {
    for seed in seeds(&[5, 6, 7]) {
        let mut s = AlertSim::new(seed, 10);
        s.run_for(Duration::from_secs(3));
        s.sim.crash(0);
        s.run_for(DETECT);
        let down = format!("node_down:{}:", Sim::name(0));
        assert_eq!(s.count(&down), 1, "{}", s.explain());
        assert_eq!(
            s.deliveries[0].by,
            1,
            "not the next leader: {}",
            s.explain()
        );
        s.restart(0);
        s.run_for(DETECT);
        let up = format!("node_up:{}:", Sim::name(0));
        assert_eq!(s.count(&up), 1, "{}", s.explain());
        assert_eq!(s.count(&down), 1, "down sent again: {}", s.explain());
        // Its return names the incident it ends and when that one began, although another
        // node sent that one (a receiver such as Alertmanager ends the same alert).
        let (fired, ended) = (&s.deliveries[0], &s.deliveries[1]);
        assert_ne!(fired.by, ended.by, "{}", s.explain());
        assert_eq!(
            ended.alert["resolves"],
            fired.id.as_str(),
            "{}",
            ended.alert
        );
        assert_eq!(
            ended.alert["firing_since"], fired.alert["since"],
            "{}",
            ended.alert
        );
        assert_eq!(fired.alert.get("resolves"), None, "{}", fired.alert);
        // n0 leads again and remembers; nothing more is sent.
        s.run_for(DETECT);
        assert_eq!(s.deliveries.len(), 2, "{}", s.explain());
    }
}

#[test]
fn a_leader_that_dies_right_after_claiming_is_replaced_and_the_incident_still_sent_once() {
    for seed in seeds(&[8, 9, 10]) {
        let mut s = AlertSim::new(seed, 10);
        s.run_for(Duration::from_secs(3));
        s.sim.crash(5);
        // Run until n0 has claimed n5's incident, then kill n0 before its settle time ends.
        let deadline = s.sim.now + DETECT;
        let claimed = |s: &AlertSim| {
            let now = s.sim.now;
            s.sim.nodes[0]
                .core
                .members(now)
                .iter()
                .find(|m| m.is_self)
                .is_some_and(|m| m.kv.keys().any(|k| k.starts_with("alert.node_down:n5:")))
        };
        while !claimed(&s) {
            assert!(s.sim.now < deadline, "n0 never claimed: {}", s.explain());
            s.run_for(STEP);
        }
        s.sim.crash(0);
        s.run_for(DETECT * 2);
        let counts = s.counts();
        assert_eq!(
            counts
                .keys()
                .filter(|k| k.starts_with("node_down:n5:"))
                .count(),
            1,
            "{}",
            s.explain()
        );
        assert_eq!(s.count("node_down:n5:"), 1, "{}", s.explain());
        assert_eq!(s.count("node_down:n0:"), 1, "{}", s.explain());
        assert!(
            s.deliveries.iter().all(|d| d.by != 0),
            "the dead leader sent: {}",
            s.explain()
        );
    }
}

#[test]
fn a_claim_is_due_when_its_settle_time_runs_out_and_is_delivered_at_that_deadline() {
    for seed in seeds(&[14]) {
        let mut s = AlertSim::new(seed, 6);
        s.run_for(Duration::from_secs(3));
        assert_eq!(s.cores[0].next_deadline(), None, "no claim yet");
        s.sim.crash(4);
        let deadline = s.sim.now + DETECT;
        // Step n0's core alone, on each 10 ms of virtual time, until it claims.
        let claimed_at = loop {
            assert!(s.sim.now < deadline, "n0 never claimed: {}", s.explain());
            s.sim.run_for(Duration::from_millis(10));
            let now = s.sim.now;
            let view = ViewSnapshot::new(s.sim.nodes[0].core.members(now));
            let outs = s.cores[0].tick(now, &view);
            let claims = outs.iter().any(|o| matches!(o, AlertOutput::Set { key, .. } if key.starts_with("alert.node_down:n4:")));
            s.apply(0, outs);
            if claims {
                break now;
            }
        };
        let due = s.cores[0].next_deadline().expect("a claim waits");
        assert_eq!(due, claimed_at + DEFAULT_SETTLE);
        // A tick just before the deadline delivers nothing; one at the deadline delivers.
        s.sim.run_until_time(Time(due.0 - 1));
        let now = s.sim.now;
        let early = s.cores[0].tick(now, &ViewSnapshot::new(s.sim.nodes[0].core.members(now)));
        assert!(
            !early
                .iter()
                .any(|o| matches!(o, AlertOutput::Deliver { .. })),
            "{early:?}"
        );
        s.apply(0, early);
        s.sim.run_until_time(due);
        let now = s.sim.now;
        let outs = s.cores[0].tick(now, &ViewSnapshot::new(s.sim.nodes[0].core.members(now)));
        assert!(
            outs.iter().any(
                |o| matches!(o, AlertOutput::Deliver { id, .. } if id.starts_with("node_down:n4:"))
            ),
            "nothing delivered at the deadline: {outs:?}"
        );
        s.apply(0, outs);
        assert_eq!(
            s.cores[0].next_deadline(),
            None,
            "the claim became a delivery"
        );
    }
}

#[test]
fn a_partition_sends_one_alert_per_side_and_nothing_again_after_the_heal() {
    for seed in seeds(&[11, 12, 13]) {
        let n = 9;
        let mut s = AlertSim::new(seed, n);
        s.run_for(Duration::from_secs(3));
        let side_a: Vec<usize> = (0..3).collect();
        let side_b: Vec<usize> = (3..n).collect();
        s.partition(&side_a, &side_b);
        s.run_for(DETECT * 2);
        // Each side alerts once for each node of the other side, from its own leader (n0, n3).
        for i in 0..n {
            let id = format!("node_down:{}:", Sim::name(i));
            assert_eq!(s.count(&id), 1, "{id}: {}", s.explain());
            let by = s
                .deliveries
                .iter()
                .find(|d| d.id.starts_with(&id))
                .map(|d| d.by);
            let expected = if i < 3 { 3 } else { 0 };
            assert_eq!(by, Some(expected), "{id}: {}", s.explain());
        }
        let before = s.counts();
        s.heal();
        s.run_for(DETECT * 2);
        // After the heal: no node_down again; each node that was down somewhere is back once.
        for (id, count) in s.counts() {
            if id.starts_with("node_down:") {
                assert_eq!(
                    Some(&count),
                    before.get(&id),
                    "{id} re-sent: {}",
                    s.explain()
                );
            } else {
                assert!(id.starts_with("node_up:"), "{id}: {}", s.explain());
                assert_eq!(count, 1, "{id}: {}", s.explain());
            }
        }
        assert_eq!(s.count("node_up:"), n, "{}", s.explain());
    }
}

/// After the last fault, every live node must see every other live node alive within this
/// (simulated time). A restarted node joins through a live node and its new incarnation
/// spreads within a round or two; the sides of a healed partition find each other when a
/// member tries a member it believes down (30 % of its 1 s rounds) or hears of it through a
/// node that joined, and refutations spread. docs/semantics.md gives 30 s for a healed
/// partition of 256 nodes; for these 8, 10 s. Observed over these seeds: at most 0.3 s.
const CONVERGE: Duration = Duration::from_secs(10);

#[test]
fn random_crashes_restarts_and_partitions_converge_and_never_send_twice_within_one_side() {
    for seed in seeds(&(100..112).collect::<Vec<_>>()) {
        let n = 8;
        let mut s = AlertSim::new(seed, n);
        s.run_for(Duration::from_secs(3));
        let mut partitioned = false;
        for _ in 0..6 {
            let r = s.sim.random_index(5);
            let who = 1 + s.sim.random_index(n - 1);
            match r {
                0 | 1 => s.sim.crash(who),
                2 => {
                    if !s.sim.is_up(who) {
                        s.restart(who);
                    }
                }
                3 => {
                    if !partitioned {
                        let cut = 1 + s.sim.random_index(n - 1);
                        let a: Vec<usize> = (0..cut).collect();
                        let b: Vec<usize> = (cut..n).collect();
                        s.partition(&a, &b);
                        partitioned = true;
                    }
                }
                _ => {
                    s.heal();
                    partitioned = false;
                }
            }
            s.run_for(Duration::from_secs(20));
        }
        // The faults stop: the network heals and every crashed node comes back.
        s.heal();
        for i in 1..n {
            if !s.sim.is_up(i) {
                s.restart(i);
            }
        }
        let quiet = s.sim.now;
        assert!(
            (0..n).all(|i| s.sim.is_up(i)),
            "seed {seed}: a node is still down"
        );
        while !s.sim.converged() {
            assert!(
                s.sim.now.since(quiet) < CONVERGE,
                "seed {seed}: {CONVERGE:?} after the faults stopped, not every live node sees \
                 every other alive:\n{}",
                s.explain()
            );
            s.run_for(STEP);
        }
        eprintln!(
            "seed {seed}: every node sees every node alive {:?} after the faults stopped",
            s.sim.now.since(quiet)
        );
        s.run_for(DETECT * 2);
        assert!(
            s.sim.converged(),
            "seed {seed}: converged, then not any more:\n{}",
            s.explain()
        );
        // A duplicate is allowed only between senders that could not hear each other
        // (partitioned at the time) or after a sender died before `sent` spread.
        for (id, count) in s.counts() {
            if count == 1 {
                continue;
            }
            let ds: Vec<&Delivery> = s.deliveries.iter().filter(|d| d.id == id).collect();
            for (k, later) in ds.iter().enumerate().skip(1) {
                let excused = ds[..k].iter().all(|earlier| {
                    earlier.sender_died || s.separated(earlier.by, later.by, later.at)
                });
                assert!(
                    excused,
                    "{id} sent {count} times, {later:?} by a node that could hear an earlier \
                     sender that did not die: {}",
                    s.explain()
                );
            }
        }
        // Never zero: every node that is up now and was ever declared down got its node_up,
        // and nothing is left unsent in anyone's view.
        let now = s.sim.now;
        for i in 0..n {
            if s.sim.is_up(i) {
                let view = s.sim.nodes[i].core.members(now);
                let open = s.cores[i].open(now, &view);
                assert!(
                    open.is_empty(),
                    "n{i} sees unsent {open:?}: {}",
                    s.explain()
                );
            }
        }
    }
}

#[test]
fn a_flapping_node_gets_one_flapping_alert_instead_of_a_storm_and_one_when_it_settles() {
    for seed in seeds(&[21, 22]) {
        let rules = Rules {
            flap_threshold: 2,
            flap_window: Duration::from_secs(300),
            repeat: Duration::ZERO,
            ..Rules::default()
        };
        let mut s = AlertSim::with_rules(seed, 6, rules);
        s.run_for(Duration::from_secs(3));
        for _ in 0..4 {
            s.sim.crash(4);
            s.run_for(DETECT);
            s.restart(4);
            s.run_for(DETECT);
        }
        // The first two changes (down, up) are sent; then one flapping alert, nothing else.
        assert_eq!(s.count("node_down:n4:"), 1, "{}", s.explain());
        assert_eq!(s.count("node_up:n4:"), 1, "{}", s.explain());
        assert_eq!(s.count("flapping:n4:"), 1, "{}", s.explain());
        assert_eq!(s.count("settled:n4:"), 0, "{}", s.explain());
        // Quiet for the window: one settled.
        s.run_for(rules.flap_window + DETECT);
        assert_eq!(s.count("settled:n4:"), 1, "{}", s.explain());
        assert_eq!(s.deliveries.len(), 4, "{}", s.explain());
    }
}

#[test]
fn an_open_incident_is_reminded_every_repeat_once_per_reminder() {
    for seed in seeds(&[31]) {
        let rules = Rules {
            repeat: Duration::from_secs(30),
            ..Rules::default()
        };
        let mut s = AlertSim::with_rules(seed, 6, rules);
        s.run_for(Duration::from_secs(3));
        s.sim.crash(3);
        s.run_for(DETECT);
        assert_eq!(s.count("node_down:n3:"), 1, "{}", s.explain());
        s.run_for(Duration::from_secs(100));
        let reminders: Vec<String> = s
            .deliveries
            .iter()
            .filter(|d| d.id.starts_with("node_down:n3:") && d.id.contains('#'))
            .map(|d| d.id.clone())
            .collect();
        assert!(reminders.len() >= 3, "{reminders:?}: {}", s.explain());
        let distinct: std::collections::BTreeSet<&String> = reminders.iter().collect();
        assert_eq!(
            distinct.len(),
            reminders.len(),
            "a reminder twice: {reminders:?}"
        );
        // Back up: the reminders stop, and node_up is sent once.
        s.restart(3);
        s.run_for(DETECT);
        let before = s.deliveries.len();
        s.run_for(Duration::from_secs(90));
        assert_eq!(s.count("node_up:n3:"), 1, "{}", s.explain());
        assert_eq!(s.deliveries.len(), before, "{}", s.explain());
    }
}

/// Cuts `i` off until every other node sees it down, then heals at once: an outage shorter
/// than the leader's settle time.
fn brief_outage(s: &mut AlertSim, i: usize) {
    let n = s.cores.len();
    let rest: Vec<usize> = (0..n).filter(|&j| j != i).collect();
    s.partition(&[i], &rest);
    let deadline = s.sim.now + DETECT;
    while !s.sim.all_see(i, Status::Down, Some(&rest)) {
        assert!(s.sim.now < deadline, "{i} never seen down: {}", s.explain());
        s.run_for(STEP);
    }
    s.heal();
    let deadline = s.sim.now + DETECT;
    while !s.sim.all_see(i, Status::Alive, None) {
        assert!(
            s.sim.now < deadline,
            "{i} never alive again: {}",
            s.explain()
        );
        s.run_for(STEP);
    }
}

#[test]
fn an_outage_that_ends_before_the_settle_time_is_still_alerted_once_and_so_is_its_end() {
    for seed in seeds(&[41, 42, 43]) {
        let mut s = AlertSim::new(seed, 6);
        s.run_for(Duration::from_secs(3));
        brief_outage(&mut s, 4);
        s.run_for(DETECT);
        assert_eq!(s.count("node_down:n4:"), 1, "{}", s.explain());
        assert_eq!(s.count("node_up:n4:"), 1, "{}", s.explain());
        assert_eq!(s.deliveries.len(), 2, "{}", s.explain());
    }
}

#[test]
fn brief_outages_over_and_over_become_one_flapping_alert() {
    for seed in seeds(&[51, 52]) {
        let mut s = AlertSim::new(seed, 6);
        s.run_for(Duration::from_secs(3));
        for _ in 0..5 {
            brief_outage(&mut s, 5);
            s.run_for(Duration::from_secs(5));
        }
        s.run_for(DETECT);
        // Four changes (down, up, down, up) make it flapping; the rest are suppressed.
        assert_eq!(s.count("node_down:n5:"), 2, "{}", s.explain());
        assert_eq!(s.count("node_up:n5:"), 2, "{}", s.explain());
        assert_eq!(s.count("flapping:n5:"), 1, "{}", s.explain());
        assert_eq!(s.deliveries.len(), 5, "{}", s.explain());
    }
}

/// The alert keys about `prefix` in any up node's view of anyone's state, and the cores that
/// still remember such an id.
fn traces(s: &AlertSim, prefix: &str) -> (usize, usize) {
    let now = s.sim.now;
    let key = format!("alert.{prefix}");
    let mut keys = 0;
    for i in (0..s.cores.len()).filter(|&i| s.sim.is_up(i)) {
        for m in s.sim.nodes[i].core.members(now) {
            keys += m.kv.keys().filter(|k| k.starts_with(&key)).count();
        }
    }
    let remembering = (0..s.cores.len())
        .filter(|&i| s.sim.is_up(i) && s.cores[i].remembered().any(|id| id.starts_with(prefix)))
        .count();
    (keys, remembering)
}

/// Six nodes that keep closed incidents 20 minutes, settled for 3 s.
fn short_keep(seed: u64) -> AlertSim {
    let rules = Rules {
        keep: Duration::from_secs(1200),
        ..Rules::default()
    };
    let mut s = AlertSim::with_rules(seed, 6, rules);
    s.run_for(Duration::from_secs(3));
    s
}

#[test]
fn closed_incidents_are_forgotten_after_keep_and_nothing_is_ever_sent_again() {
    for seed in seeds(&[61, 62]) {
        let mut s = short_keep(seed);
        // n4 goes down and comes back (closed); n5 goes down for good (open).
        s.sim.crash(4);
        s.run_for(DETECT);
        s.restart(4);
        s.run_for(DETECT);
        s.sim.crash(5);
        s.run_for(DETECT);
        assert_eq!(s.count("node_down:n4:"), 1, "{}", s.explain());
        assert_eq!(s.count("node_up:n4:"), 1, "{}", s.explain());
        assert_eq!(s.count("node_down:n5:"), 1, "{}", s.explain());
        assert!(
            traces(&s, "node_down:n4:").0 > 0,
            "the log holds the closed incident"
        );
        // Within `keep` nothing is forgotten.
        s.run_for(Duration::from_secs(900));
        assert!(traces(&s, "node_down:n4:").0 > 0, "forgotten too soon");
        // After it, the closed incident is gone from every state and every memory; the open
        // one stays sent.
        s.run_for(Duration::from_secs(900));
        for prefix in ["node_down:n4:", "node_up:n4:"] {
            assert_eq!(traces(&s, prefix), (0, 0), "{prefix} not forgotten");
        }
        assert!(
            traces(&s, "node_down:n5:").1 > 0,
            "the open incident forgotten"
        );
        // A node restarted from its persisted memory, and one that joins now, send nothing.
        s.restart(0);
        s.join();
        s.run_for(Duration::from_secs(900));
        assert_eq!(s.deliveries.len(), 3, "{}", s.explain());
        assert_eq!(s.counts().values().max(), Some(&1), "{}", s.explain());
    }
}

#[test]
fn an_entry_left_by_a_dead_leader_keeps_what_depends_on_it_and_nothing_is_sent_again() {
    for seed in seeds(&[71, 72]) {
        let mut s = short_keep(seed);
        // n0 leads and sends n4's node_down, then dies for good (its state, that entry
        // included, stays in every view); n1 leads and sends n0's node_down and n4's node_up.
        s.sim.crash(4);
        s.run_for(DETECT);
        s.sim.crash(0);
        s.run_for(DETECT);
        s.restart(4);
        s.run_for(DETECT);
        let by = |s: &AlertSim, prefix: &str| {
            s.deliveries
                .iter()
                .find(|d| d.id.starts_with(prefix))
                .map(|d| d.by)
        };
        assert_eq!(by(&s, "node_down:n4:"), Some(0), "{}", s.explain());
        assert_eq!(by(&s, "node_up:n4:"), Some(1), "{}", s.explain());
        assert_eq!(s.deliveries.len(), 3, "{}", s.explain());
        // Long after `keep`: n4's node_up is not forgotten while n0's node_down entry, which
        // would make it look unsent, is still about; nothing is sent again, not even by a node
        // that joins now.
        s.run_for(Duration::from_secs(2400));
        assert!(
            traces(&s, "node_up:n4:").0 > 0,
            "node_up forgotten under its node_down"
        );
        // n4 restarts cleanly (a new incarnation, no outage seen): forgetting its node_up
        // must not make a node_up of the new incarnation look due.
        s.restart(4);
        s.run_for(Duration::from_secs(600));
        assert_eq!(s.deliveries.len(), 3, "{}", s.explain());
        s.join();
        s.run_for(Duration::from_secs(900));
        assert_eq!(s.deliveries.len(), 3, "{}", s.explain());
    }
}

#[test]
fn a_restart_right_after_a_brief_outage_is_one_node_down_and_one_node_up() {
    for seed in seeds(&[81, 82, 83]) {
        let mut s = AlertSim::new(seed, 6);
        s.run_for(Duration::from_secs(3));
        // Back from a brief outage, and restarted at once (a newer incarnation) before the
        // node_up of the first return could be sent.
        brief_outage(&mut s, 4);
        s.run_for(Duration::from_millis(300));
        assert_eq!(s.count("node_up:n4:"), 0, "{}", s.explain());
        s.restart(4);
        s.run_for(DETECT);
        assert_eq!(s.count("node_down:n4:"), 1, "{}", s.explain());
        assert_eq!(s.count("node_up:n4:"), 1, "{}", s.explain());
    }
}

#[test]
fn an_outage_under_a_silence_that_ends_soon_after_is_not_alerted() {
    for seed in seeds(&[91, 92]) {
        let mut s = AlertSim::new(seed, 6);
        s.run_for(Duration::from_secs(3));
        let until = s.sim.now + Duration::from_secs(20);
        s.sim
            .set(1, "silence.n4", Some(sealed_silence("n1", "n4", until, 1)))
            .expect("a silence key");
        s.run_for(Duration::from_secs(3));
        brief_outage(&mut s, 4);
        s.run_for(DETECT);
        assert!(s.sim.now > until, "the silence has ended");
        assert_eq!(s.deliveries.len(), 0, "{}", s.explain());
    }
}

/// The operator every simulated node trusts.
static OPERATOR: std::sync::LazyLock<nbwatch::secure::operator::OperatorKey> =
    std::sync::LazyLock::new(nbwatch::secure::operator::OperatorKey::generate);

fn trust() -> nbwatch::secure::directive::Trust {
    nbwatch::secure::directive::Trust {
        cluster: "nbwatch".into(),
        operators: vec![OPERATOR.id()],
    }
}

/// A silence of `target` until `until`, written by `issuer` and sealed by the operator.
fn sealed_silence(issuer: &str, target: &str, until: nbwatch::types::Time, seq: u64) -> String {
    let mut silence = nbwatch::alert::incident::Silence {
        target: target.into(),
        by: nbwatch::types::NodeName::new(issuer),
        until,
        reason: "maintenance".into(),
        seal: None,
    };
    let (key, content) = (silence.key(), silence.content());
    let directive = silence.directive("nbwatch", &key, &content);
    silence.seal = Some(OPERATOR.seal(&directive, seq));
    silence.value()
}

#[test]
fn an_outage_under_a_silence_no_trusted_operator_sealed_is_alerted() {
    for seed in seeds(&[93]) {
        let mut s = AlertSim::new(seed, 6);
        s.run_for(Duration::from_secs(3));
        let until = s.sim.now + Duration::from_secs(600);
        // A key holder's silence without a seal, and one whose seal was moved from another
        // target: neither hides anything.
        let unsealed = serde_json::json!({ "until": until.0, "reason": "hush" }).to_string();
        s.sim
            .set(1, "silence.n4", Some(unsealed))
            .expect("a silence key");
        let moved = sealed_silence("n1", "n5", until, 2);
        s.sim
            .set(2, "silence.n4", Some(moved))
            .expect("a silence key");
        s.run_for(Duration::from_secs(3));
        brief_outage(&mut s, 4);
        s.run_for(DETECT);
        assert!(
            s.deliveries
                .iter()
                .any(|d| d.id.starts_with("node_down:n4:")),
            "{}",
            s.explain()
        );
    }
}

impl AlertSim {
    /// The stage of node `i`'s own entry for the incident whose id starts with `prefix`.
    fn stage_of(&self, i: usize, prefix: &str) -> Option<String> {
        let me = self.sim.nodes[i]
            .core
            .members(self.sim.now)
            .into_iter()
            .find(|m| m.is_self)?;
        let (_, value) = me
            .kv
            .iter()
            .find(|(k, _)| k.starts_with(&format!("alert.{prefix}")))?;
        let v: serde_json::Value = serde_json::from_str(value).ok()?;
        Some(v["st"].as_str()?.to_string())
    }

    /// Every `alert.*` key in any live node's own state.
    fn alert_keys(&self) -> Vec<String> {
        (0..self.cores.len())
            .filter(|&i| self.sim.is_up(i))
            .flat_map(|i| self.sim.nodes[i].core.members(self.sim.now))
            .filter(|m| m.is_self)
            .flat_map(|m| m.kv.keys().cloned().collect::<Vec<_>>())
            .filter(|k| k.starts_with("alert."))
            .collect()
    }
}

#[test]
fn only_a_node_with_sinks_sends_and_when_it_dies_its_outage_waits_for_its_return() {
    for seed in seeds(&[101, 102, 103]) {
        // Five nodes; only n3 can deliver. n0 leads.
        let mut s = AlertSim::with_sinks(seed, &[0, 0, 0, 1, 0], Rules::default());
        s.run_for(Duration::from_secs(3));
        s.sim.crash(1);
        s.run_for(DETECT);
        assert_eq!(s.count("node_down:n1:"), 1, "{}", s.explain());
        assert!(s.deliveries.iter().all(|d| d.by == 3), "{}", s.explain());
        // The one with sinks dies: nobody can deliver, and nothing is marked sent. The leader
        // holds the incident open.
        s.sim.crash(3);
        s.run_for(DETECT);
        assert_eq!(s.count("node_down:n3:"), 0, "{}", s.explain());
        assert_eq!(
            s.stage_of(0, "node_down:n3:").as_deref(),
            Some("waiting"),
            "{}",
            s.explain()
        );
        // It comes back (a new life that remembers what it sent): its outage is sent once,
        // then its return once.
        s.restart(3);
        s.run_for(DETECT);
        assert_eq!(s.count("node_down:n3:"), 1, "{}", s.explain());
        assert_eq!(s.count("node_up:n3:"), 1, "{}", s.explain());
        assert_eq!(s.stage_of(0, "node_down:n3:"), None, "{}", s.explain());
        s.restart(1);
        s.run_for(DETECT);
        assert_eq!(s.count("node_up:n1:"), 1, "{}", s.explain());
        assert!(s.deliveries.iter().all(|d| d.by == 3), "{}", s.explain());
        assert!(s.counts().values().all(|&c| c == 1), "{}", s.explain());
    }
}

#[test]
fn a_sender_whose_sinks_refuse_passes_the_alert_on_and_nothing_is_sent_twice() {
    for seed in seeds(&[111, 112]) {
        // n0 and n2 have sinks; n0's refuse everything.
        let mut s = AlertSim::with_sinks(seed, &[1, 0, 1, 0, 0, 0], Rules::default());
        s.refusing.insert(0);
        s.run_for(Duration::from_secs(3));
        s.sim.crash(5);
        s.run_for(DETECT);
        assert_eq!(s.count("node_down:n5:"), 1, "{}", s.explain());
        let tried: Vec<(usize, bool)> = s.deliveries.iter().map(|d| (d.by, d.refused)).collect();
        assert_eq!(tried, [(0, true), (2, false)], "{}", s.explain());
        // Past n0's retry, nothing more: it is sent.
        s.run_for(nbwatch::alert::core::RETRY * 2);
        assert_eq!(s.deliveries.len(), 2, "{}", s.explain());
        // n0's `failed` entry went once n2's `sent` reached it.
        assert_eq!(s.stage_of(0, "node_down:n5:"), None, "{}", s.explain());
        assert_eq!(s.stage_of(2, "node_down:n5:").as_deref(), Some("sent"));
    }
}

#[test]
fn when_every_sink_refuses_the_incident_stays_open_and_is_sent_once_a_sink_accepts() {
    for seed in seeds(&[121, 122]) {
        let mut s = AlertSim::with_sinks(seed, &[1, 1, 0, 0, 0], Rules::default());
        s.refusing.extend([0, 1]);
        s.run_for(Duration::from_secs(3));
        s.sim.crash(4);
        s.run_for(DETECT);
        assert_eq!(s.count("node_down:n4:"), 0, "{}", s.explain());
        assert!(s.deliveries.iter().all(|d| d.refused), "{}", s.explain());
        assert_eq!(
            s.stage_of(0, "node_down:n4:").as_deref(),
            Some("failed"),
            "{}",
            s.explain()
        );
        // The receiver is back; within a retry the alert goes out, once.
        s.refusing.clear();
        s.run_for(nbwatch::alert::core::RETRY + DETECT);
        assert_eq!(s.count("node_down:n4:"), 1, "{}", s.explain());
        s.run_for(nbwatch::alert::core::RETRY * 2);
        assert_eq!(s.count("node_down:n4:"), 1, "{}", s.explain());
        assert!(
            s.alert_keys()
                .iter()
                .all(|k| k.starts_with("alert.node_down:n4:")),
            "{}",
            s.explain()
        );
        assert_eq!(s.stage_of(0, "node_down:n4:").as_deref(), Some("sent"));
        assert_eq!(s.stage_of(1, "node_down:n4:"), None, "{}", s.explain());
    }
}

#[test]
fn a_cluster_where_no_node_has_sinks_writes_no_alert_entries() {
    for seed in seeds(&[131]) {
        let mut s = AlertSim::with_sinks(seed, &[0; 4], Rules::default());
        s.run_for(Duration::from_secs(3));
        s.sim.crash(2);
        s.run_for(DETECT);
        s.sim.restart(2, 0);
        s.run_for(DETECT);
        assert!(s.deliveries.is_empty(), "{}", s.explain());
        assert!(s.alert_keys().is_empty(), "{:?}", s.alert_keys());
    }
}

fn step(after: u64) -> ActionSpec {
    ActionSpec {
        on: ActionOn::NodeDown,
        subject: None,
        after: Duration::from_secs(after),
        kind: ActionKind::Wol {
            address: "10.0.0.255:9".parse().expect("an address"),
        },
    }
}

/// The id of node `i`'s own entry whose id starts with `prefix`, and its stage.
fn own_entry(s: &AlertSim, i: usize, prefix: &str) -> Option<(String, String)> {
    let me = s.sim.nodes[i]
        .core
        .members(s.sim.now)
        .into_iter()
        .find(|m| m.is_self)?;
    let key = format!("alert.{prefix}");
    let (k, v) = me.kv.iter().find(|(k, _)| k.starts_with(&key))?;
    let stage = serde_json::from_str::<serde_json::Value>(v).ok()?["st"]
        .as_str()?
        .to_string();
    Some((k["alert.".len()..].to_string(), stage))
}

#[test]
fn each_step_of_a_down_host_runs_once_in_turn_and_its_return_cancels_the_rest() {
    for seed in seeds(&[1, 2, 3]) {
        let mut s = AlertSim::with_actions(seed, 8, vec![step(0), step(40)]);
        s.run_for(Duration::from_secs(3));
        s.sim.crash(5);
        s.run_for(DETECT);
        let first = format!("action:{}:node_down:{}:", key(&step(0)), Sim::name(5));
        let second = format!("action:{}:node_down:{}:", key(&step(40)), Sim::name(5));
        assert_eq!(s.run_count(&first), 1, "{:?}\n{}", s.runs, s.explain());
        assert_eq!(s.runs[0].1, 0, "run by the sender n0: {:?}", s.runs);
        // Back before the second step is due: it never runs.
        s.restart(5);
        s.run_for(Duration::from_secs(60));
        assert_eq!(s.run_count(&first), 1, "{:?}", s.runs);
        assert_eq!(s.run_count(&second), 0, "{:?}", s.runs);
        assert_eq!(s.count(&first), 0, "a step is not an alert to the sinks");
        // The step's result is in the log as sent.
        let sent = (0..8).any(|i| own_entry(&s, i, &first).is_some_and(|(_, st)| st == "sent"));
        assert!(sent, "{}", s.explain());
    }
}

#[test]
fn a_runner_that_dies_after_its_running_mark_is_not_replaced_for_that_step() {
    for seed in seeds(&[4, 5, 6]) {
        let mut s = AlertSim::with_actions(seed, 8, vec![step(0)]);
        s.run_for(Duration::from_secs(3));
        s.sim.crash(6);
        let prefix = format!("action:{}:node_down:{}:", key(&step(0)), Sim::name(6));
        let until = s.sim.now + DETECT;
        while s.run_count(&prefix) == 0 && s.sim.now < until {
            s.run_for(STEP);
        }
        let runner = s.runs.first().map(|r| r.1).expect("the step ran");
        // The runner dies while the step runs, its running mark written.
        s.sim.crash(runner);
        s.run_for(Duration::from_secs(60));
        assert_eq!(s.run_count(&prefix), 1, "{:?}\n{}", s.runs, s.explain());
        // The runner's own death has steps of its own, run once.
        let runners = format!("action:{}:node_down:{}:", key(&step(0)), Sim::name(runner));
        assert_eq!(s.run_count(&runners), 1, "{:?}", s.runs);
        // And a runner back from a restart does not run it again either.
        s.restart(runner);
        s.run_for(Duration::from_secs(30));
        assert_eq!(s.run_count(&prefix), 1, "{:?}", s.runs);
    }
}

#[test]
fn a_runner_that_dies_before_its_running_mark_is_replaced_and_the_step_runs_once() {
    for seed in seeds(&[7, 8, 9]) {
        let mut s = AlertSim::with_actions(seed, 8, vec![step(0)]);
        s.run_for(Duration::from_secs(3));
        s.sim.crash(6);
        let prefix = format!("action:{}:node_down:{}:", key(&step(0)), Sim::name(6));
        let until = s.sim.now + DETECT;
        let claimer = loop {
            s.run_for(STEP);
            assert!(s.sim.now < until, "no claim: {}", s.explain());
            assert_eq!(s.run_count(&prefix), 0, "ran before its claim was seen");
            if let Some(i) = (0..8).find(|&i| {
                s.sim.is_up(i) && own_entry(&s, i, &prefix).is_some_and(|(_, st)| st == "claim")
            }) {
                break i;
            }
        };
        // Dead within its settle time: no running mark, so the next sender runs the step.
        s.sim.crash(claimer);
        s.run_for(Duration::from_secs(60));
        assert_eq!(s.run_count(&prefix), 1, "{:?}\n{}", s.runs, s.explain());
        assert_ne!(
            s.runs
                .iter()
                .find(|r| r.2.starts_with(&prefix))
                .map(|r| r.1),
            Some(claimer)
        );
    }
}

#[test]
fn a_step_run_for_a_host_down_longer_than_keep_is_not_forgotten_and_run_again() {
    for seed in seeds(&[11, 12]) {
        let rules = Rules {
            keep: Duration::from_secs(1200),
            ..Rules::default()
        };
        let mut s = AlertSim::with_actions_and_rules(seed, 6, vec![step(0)], rules);
        s.run_for(Duration::from_secs(3));
        s.sim.crash(4);
        // Past the settle after a start, past `keep` and two looks at what can be forgotten.
        s.run_for(Duration::from_secs(2_000));
        let prefix = format!("action:{}:node_down:{}:", key(&step(0)), Sim::name(4));
        assert_eq!(s.run_count(&prefix), 1, "{:?}", s.runs);
    }
}
