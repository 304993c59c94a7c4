//! Real hosts on one machine, real faults: network namespaces joined by a bridge, a real
//! `nbwatch run` in each, nftables rules, signals, CPU cgroup quotas and skewed wall clocks
//! (libfaketime) as the faults (see `netns/harness.rs`). Needs root, iproute2, nftables and
//! Debian's libfaketime.
//!
//! Each scenario checks, after its fault, what the seeds promise (see `netns/invariants.rs`):
//! every live host records each incident with `last_heard` within 2 s of the moment of the
//! fault; one alert per incident per side of a partition, never zero; the same incidents in
//! every history once the network is whole; no false `down` under loss, a rolling restart, a
//! starved CPU or clocks an hour apart, where each host's times are right by its own clock;
//! no orphaned service process. Each prints one `REPORT` line with its figures (BENCHMARKS.md,
//! "Faults on a real network", is copied from them).
//!
//! The short scenarios run with `cargo test`; the long ones (a 30 s hang, 5 minutes of loss,
//! a rolling restart) are ignored there and run with
//! `cargo test --release --test netns -- --include-ignored --skip soak --test-threads=1 --nocapture`
//! (`--skip soak` leaves out the soak).
//! The rolling upgrade (`u_...`) also needs the previous release's binary in
//! `NBWATCH_PREVIOUS` (README, "Upgrades").
//!
//! The soak (`s_...`, `netns/soak.rs`) runs those faults one after the other for an hour from
//! a seeded schedule, checks each round as its scenario does, and samples every daemon's RSS,
//! open descriptors, history size and gossip bytes to show that nothing grows:
//! `cargo test --release --test netns -- --ignored soak --nocapture --test-threads=1`
//! (`NBWATCH_SOAK_SECS`, `NBWATCH_SOAK_SEED`, `NBWATCH_SOAK_OUT`; BENCHMARKS.md has a run).
//! Scenarios never overlap: each holds a global lock while its namespaces exist.

mod common;
#[path = "netns/harness.rs"]
mod harness;
#[path = "netns/invariants.rs"]
mod invariants;
#[path = "netns/soak.rs"]
mod soak;

use harness::{Net, Side, ms, wall_ms};
use invariants::{
    Report, check_no_down, check_no_down_by_clocks, check_no_duplicate_alert,
    check_no_duplicate_alert_by, wait_alerted_once, wait_down_recorded,
    wait_down_recorded_by_clocks, wait_new_alert_once, wait_same_incidents,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Hosts in most scenarios: a majority and a minority both have two witnesses or more.
const N: usize = 7;

fn all(net: &Net) -> Side {
    (0..net.len()).collect()
}

fn except(net: &Net, gone: &[usize]) -> Side {
    (0..net.len()).filter(|i| !gone.contains(i)).collect()
}

/// For `span`, looks at every host's members once every `every` (bounded) and fails at the
/// first one that sees a member `down`.
fn watch_no_down(net: &Net, hosts: &[usize], span: Duration, every: Duration) {
    let end = Instant::now() + span;
    while Instant::now() < end {
        for &i in hosts {
            let down: Vec<Value> = net
                .members(i)
                .into_iter()
                .filter(|m| m["state"] == "down")
                .collect();
            assert!(down.is_empty(), "n{i} sees a false down: {down:#?}");
        }
        std::thread::sleep(every.min(end - Instant::now().min(end)));
    }
}

/// The end of a scenario where nothing failed: no host recorded a `down` since `since`, no
/// service is orphaned and no alert was sent; prints the report.
fn finish_without_failure(net: &Net, mut report: Report, since: u64) {
    let everyone = all(net);
    report.suspicions = check_no_down(net, &everyone, since);
    net.wait_no_orphans();
    report.alerts = check_no_duplicate_alert(net, &[everyone]);
    assert_eq!(
        report.alerts,
        0,
        "alerts without a failure: {:#?}",
        net.alerts()
    );
    report.print();
}

/// SIGTERM host `i`, wait until every other host has it `left`, and start it again (with
/// this build) on the same data dir.
fn stop_and_start_again(net: &mut Net, i: usize) {
    net.stop(i);
    let name = net.hosts[i].name.clone();
    for &j in &except(net, &[i]) {
        net.wait_until(&format!("n{j} sees {name} left"), || {
            net.state_of(j, &name).as_deref() == Some("left")
        });
    }
    net.start(i);
}

#[test]
fn a_one_host_of_seven_killed_with_kill_9_is_down_everywhere_alerted_once_and_its_service_goes_when_it_restarts()
 {
    let mut net = Net::new("a", N, "");
    net.start_all();
    let mut report = Report::new("a_kill9_one_of_seven", &net);
    let since = wall_ms();
    let victim = 5;
    let truth = wall_ms();
    net.kill9(victim);
    let others = except(&net, &[victim]);
    let seen = wait_down_recorded(&net, victim, &others, truth);
    wait_alerted_once(&net, &seen.id, &others);
    report.detection_ms.push(seen.detection_ms);
    // Its service outlived it (nobody can stop a process on a kill -9) ...
    assert!(
        !net.orphans().is_empty(),
        "n5's service went with its daemon: the orphan check below proves nothing"
    );
    // ... until the daemon starts again on the same data dir.
    net.start(victim);
    let everyone = all(&net);
    net.wait_all_alive(&everyone);
    wait_alerted_once(&net, "node_up:n5:", &everyone);
    net.wait_no_orphans();
    report.rows_compared = wait_same_incidents(&net, &everyone, since, &[seen.id].into());
    report.alerts = check_no_duplicate_alert(&net, &[everyone]);
    report.print();
}

#[test]
#[ignore = "long: a 30 s hang; run with --include-ignored"]
fn b_a_host_hung_for_30_s_is_down_everywhere_and_back_alive_after_sigcont() {
    let mut net = Net::new("b", N, "");
    net.start_all();
    let mut report = Report::new("b_sigstop_30s", &net);
    let since = wall_ms();
    let victim = 4;
    let truth = wall_ms();
    net.hang(victim);
    let others = except(&net, &[victim]);
    let seen = wait_down_recorded(&net, victim, &others, truth);
    wait_alerted_once(&net, &seen.id, &others);
    report.detection_ms.push(seen.detection_ms);
    let hung = Duration::from_millis(truth + 30_000 - wall_ms().min(truth + 30_000));
    std::thread::sleep(hung);
    net.resume(victim);
    let everyone = all(&net);
    net.wait_all_alive(&everyone);
    wait_alerted_once(&net, "node_up:n4:", &everyone);
    net.wait_no_orphans();
    report.rows_compared = wait_same_incidents(&net, &everyone, since, &[seen.id].into());
    report.alerts = check_no_duplicate_alert(&net, &[everyone]);
    report.print();
}

#[test]
fn c_a_three_four_partition_alerts_once_per_side_and_after_the_heal_every_history_agrees() {
    let mut net = Net::new("c", N, "");
    net.start_all();
    let mut report = Report::new("c_partition_3_4", &net);
    let since = wall_ms();
    let (a, b): (Side, Side) = ((0..3).collect(), (3..N).collect());
    let truth = wall_ms();
    net.partition(&a, &b);
    let mut expected = BTreeSet::new();
    for (lost, seen_by) in [(&b, &a), (&a, &b)] {
        for &subject in lost {
            let seen = wait_down_recorded(&net, subject, seen_by, truth);
            wait_alerted_once(&net, &seen.id, seen_by);
            report.detection_ms.push(seen.detection_ms);
            expected.insert(seen.id);
        }
    }
    net.heal();
    let everyone = all(&net);
    net.wait_all_alive(&everyone);
    // Every host was down on the other side: one node_up each, once the logs have merged.
    for name in net.names() {
        wait_alerted_once(&net, &format!("node_up:{name}:"), &everyone);
    }
    report.rows_compared = wait_same_incidents(&net, &everyone, since, &expected);
    net.wait_no_orphans();
    report.alerts = check_no_duplicate_alert(&net, &[a, b]);
    report.print();
}

/// `loss_for`: how long every link loses 10 %.
fn ten_percent_loss(tag: &str, scenario: &'static str, loss_for: Duration) {
    let mut net = Net::new(tag, N, "");
    net.start_all();
    let mut report = Report::new(scenario, &net);
    let since = wall_ms();
    let everyone = all(&net);
    net.loss(10);
    watch_no_down(&net, &everyone, loss_for, Duration::from_secs(5));
    net.heal();
    net.wait_all_alive(&everyone);
    report.suspicions = check_no_down(&net, &everyone, since);
    report.rows_compared = wait_same_incidents(&net, &everyone, since, &BTreeSet::new());
    net.wait_no_orphans();
    report.alerts = check_no_duplicate_alert(&net, &[everyone]);
    assert_eq!(
        report.alerts,
        0,
        "alerts without a fault: {:#?}",
        net.alerts()
    );
    report.print();
}

#[test]
fn d_ten_percent_loss_on_every_link_for_a_minute_makes_no_false_down() {
    ten_percent_loss("d", "d_loss_10pct_60s", Duration::from_secs(60));
}

#[test]
#[ignore = "long: 5 minutes of loss; run with --include-ignored"]
fn d_ten_percent_loss_on_every_link_for_five_minutes_makes_no_false_down() {
    ten_percent_loss("D", "d_loss_10pct_300s", Duration::from_secs(300));
}

#[test]
fn e_a_flapping_link_is_alerted_once_per_outage_until_it_is_flapping_then_once_as_flapping() {
    let mut net = Net::new("e", N, "");
    net.start_all();
    let mut report = Report::new("e_flapping_link", &net);
    let since = wall_ms();
    let flapper = N - 1;
    let rest = except(&net, &[flapper]);
    let everyone = all(&net);
    // Glitches shorter than a gossip round (1 s): 300 ms cut, 1.7 s whole, ten times. Nobody
    // may be declared down. (A 1 s cut is an outage: detection takes about 1.1 s.)
    for _ in 0..10 {
        net.isolate(flapper);
        std::thread::sleep(Duration::from_millis(300));
        net.heal();
        std::thread::sleep(Duration::from_millis(1_700));
    }
    net.wait_all_alive(&everyone);
    report.suspicions = check_no_down(&net, &everyone, since);
    // Slower than detection: cut until the others have recorded it down, whole until all see
    // it alive, five times. Four changes within the flap window make it flapping.
    let mut expected = BTreeSet::new();
    for cycle in 0..5 {
        let truth = wall_ms();
        net.isolate(flapper);
        let seen = wait_down_recorded(&net, flapper, &rest, truth);
        if cycle == 0 {
            wait_alerted_once(&net, &seen.id, &rest);
        }
        report.detection_ms.push(seen.detection_ms);
        expected.insert(seen.id);
        net.heal();
        net.wait_all_alive(&everyone);
    }
    wait_alerted_once(&net, "flapping:n6:", &rest);
    // The two outages before it was flapping were each alerted, and their ends (four
    // changes); the three after were not.
    let alerts = net.alerts();
    for kind in ["node_down:n6:", "node_up:n6:"] {
        let sent = alerts.keys().filter(|id| id.starts_with(kind)).count();
        assert_eq!(sent, 2, "{kind} alerts around the flapping: {alerts:#?}");
    }
    report.rows_compared = wait_same_incidents(&net, &everyone, since, &expected);
    net.wait_no_orphans();
    report.alerts = check_no_duplicate_alert(&net, &[rest, vec![flapper]]);
    report.print();
}

#[test]
#[ignore = "long: seven restarts one after the other; run with --include-ignored"]
fn f_a_rolling_restart_of_every_host_makes_no_false_down_and_leaves_no_process() {
    let mut net = Net::new("f", N, "");
    net.start_all();
    let mut report = Report::new("f_rolling_restart", &net);
    let since = wall_ms();
    let everyone = all(&net);
    for i in 0..N {
        stop_and_start_again(&mut net, i);
        net.wait_all_alive(&everyone);
        net.wait_no_orphans();
    }
    report.suspicions = check_no_down(&net, &everyone, since);
    report.rows_compared = wait_same_incidents(&net, &everyone, since, &BTreeSet::new());
    report.alerts = check_no_duplicate_alert(&net, &[everyone]);
    assert_eq!(
        report.alerts,
        0,
        "alerts for a restart: {:#?}",
        net.alerts()
    );
    report.print();
}

#[test]
fn g_the_leaders_host_cut_off_alone_is_alerted_once_by_the_others_new_leader() {
    let mut net = Net::new("g", N, "");
    net.start_all();
    let mut report = Report::new("g_leader_isolated", &net);
    let since = wall_ms();
    let leader = net.leader(0).expect("a leader");
    let rest = except(&net, &[leader]);
    let truth = wall_ms();
    net.isolate(leader);
    let seen = wait_down_recorded(&net, leader, &rest, truth);
    wait_alerted_once(&net, &seen.id, &rest);
    report.detection_ms.push(seen.detection_ms);
    let new_leader = net.leader(rest[0]).expect("a new leader");
    assert_ne!(new_leader, leader);
    let by = &net.alerts()[&seen.id][0]["sent_by"];
    assert_eq!(by, net.hosts[new_leader].name.as_str());
    // Alone, the old leader is one witness: it suspects everyone and declares nobody down
    // (docs/semantics.md: down takes two witnesses while two others are live).
    net.wait_until("the cut-off leader suspects everyone", || {
        let m = net.members(leader);
        rest.iter().all(|j| {
            m.iter()
                .any(|e| e["name"] == net.hosts[*j].name.as_str() && e["state"] == "suspect")
        })
    });
    net.heal();
    let everyone = all(&net);
    net.wait_all_alive(&everyone);
    wait_alerted_once(
        &net,
        &format!("node_up:{}:", net.hosts[leader].name),
        &everyone,
    );
    report.rows_compared = wait_same_incidents(&net, &everyone, since, &[seen.id].into());
    net.wait_no_orphans();
    report.alerts = check_no_duplicate_alert(&net, &[rest, vec![leader]]);
    report.print();
}

#[test]
fn h_a_host_that_joins_mid_incident_records_it_and_it_is_alerted_once() {
    let mut net = Net::new("h", N, "");
    net.start_all();
    let mut report = Report::new("h_join_mid_incident", &net);
    let since = wall_ms();
    let victim = N - 1;
    let truth = wall_ms();
    net.kill9(victim);
    let joiner = net.add_host();
    net.start(joiner);
    report.hosts = net.len();
    let observers = except(&net, &[victim]);
    let seen = wait_down_recorded(&net, victim, &observers, truth);
    wait_alerted_once(&net, &seen.id, &observers);
    report.detection_ms.push(seen.detection_ms);
    net.wait_all_alive(&observers);
    report.rows_compared = wait_same_incidents(&net, &observers, since, &[seen.id.clone()].into());
    // The victim back: its services from before the kill go, its history gets the incident,
    // and its return is an incident too: every host that saw it down, the joiner among them,
    // records it up again, and it is alerted once.
    let back = wall_ms();
    net.start(victim);
    let everyone = all(&net);
    net.wait_all_alive(&everyone);
    let name = net.hosts[victim].name.clone();
    let mut recorded = BTreeSet::new();
    net.wait_until(&format!("{observers:?} record {name} up again"), || {
        for &i in &observers {
            let up = net.events(i).is_some_and(|list| {
                list.iter().any(|e| {
                    e["kind"] == "node_up"
                        && e["node"] == name.as_str()
                        && ms(e, "at").is_some_and(|at| at >= back)
                })
            });
            if up {
                recorded.insert(i);
            }
        }
        recorded.len() == observers.len()
    });
    wait_alerted_once(&net, &format!("node_up:{name}:"), &everyone);
    net.wait_no_orphans();
    report.rows_compared += wait_same_incidents(&net, &everyone, since, &[seen.id].into());
    report.alerts = check_no_duplicate_alert(&net, &[everyone]);
    report.print();
}

#[test]
fn after_a_partition_heals_each_side_back_fills_what_the_other_recorded_meanwhile() {
    let mut net = Net::new("k", 4, "");
    net.start_all();
    let cut = wall_ms();
    net.partition(&[0, 1], &[2, 3]);
    net.wait_until("n0 sees n3 down", || {
        net.state_of(0, "n3").as_deref() == Some("down")
    });
    let samples = |i: usize| -> Vec<u64> {
        let Ok(out) = net.client(
            i,
            &[
                "history", "n3", "--metric", "load1", "--since", "10m", "--json",
            ],
        ) else {
            return Vec::new();
        };
        let Ok(Value::Array(samples)) = serde_json::from_str::<Value>(&out) else {
            return Vec::new();
        };
        samples.iter().filter_map(|s| ms(s, "at")).collect()
    };
    // Until n3's own side has recorded a few of its samples that n0 cannot hear.
    net.wait_until("n2 recorded n3's samples during the partition", || {
        samples(2).iter().filter(|at| **at > cut + 2_500).count() >= 3
    });
    let healed = wall_ms();
    net.heal();
    // From the cut (plus detection) to the heal n0 heard nothing from n3; its history must
    // still hold n3's samples of that time, fetched from n3 when it came back.
    let (from, to) = (cut + 2_500, healed - 500);
    net.wait_until("n0's history has n3's samples from the partition", || {
        samples(0).iter().any(|at| (from..to).contains(at))
    });
}

#[test]
fn i_a_one_way_cut_between_two_hosts_makes_no_one_down() {
    let mut net = Net::new("i", N, "");
    net.start_all();
    let report = Report::new("i_one_way_cut", &net);
    let since = wall_ms();
    let everyone = all(&net);
    // n1 hears nothing from n2 (n2 -> n1 is cut), and the reverse direction works; n2's
    // heartbeats still reach n1 through the others, and its probes through them succeed.
    net.one_way(&[2], &[1]);
    watch_no_down(
        &net,
        &everyone,
        Duration::from_secs(30),
        Duration::from_secs(2),
    );
    net.heal();
    finish_without_failure(&net, report, since);
}

#[test]
fn j_a_host_starved_to_5_percent_of_a_core_for_60_s_is_called_down_by_no_one_and_accuses_no_one() {
    let mut net = Net::new("j", N, "");
    net.start_all();
    let report = Report::new("j_cpu_quota_5pct_60s", &net);
    let since = wall_ms();
    let everyone = all(&net);
    let starved = 3;
    // `NBWATCH_CPU_PERIOD_MS` (default 100) lengthens the quota's period: 1000 freezes the
    // daemon for 950 ms of every second (BENCHMARKS.md has both).
    let period = Duration::from_millis(
        std::env::var("NBWATCH_CPU_PERIOD_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(100),
    );
    net.throttle(starved, Some(5), period);
    let span = Duration::from_secs(60);
    let mut hog = net.hog(starved, span);
    let pollers = net.poll_api(starved, 4, span);
    watch_no_down(&net, &everyone, span, Duration::from_secs(5));
    let _ = hog.wait();
    let mut answered = 0;
    for (mut p, count) in pollers {
        let _ = p.wait();
        answered += std::fs::read_to_string(count)
            .unwrap_or_default()
            .lines()
            .count();
    }
    println!("j: n{starved} answered {answered} API requests in {span:?}");
    let raised: Vec<usize> = everyone
        .iter()
        .map(|&i| net.log(i).matches("suspecting a peer").count())
        .collect();
    println!(
        "j: suspicions raised by each host: {raised:?}; n{starved} was late {} times",
        net.log(starved).matches("this node is late").count()
    );
    assert_eq!(raised[starved], 0, "the starved n{starved} accused others");
    let held = net.throttled(starved);
    net.throttle(starved, None, period);
    let lifted = Instant::now();
    net.wait_all_alive(&everyone);
    let converged = lifted.elapsed();
    println!(
        "j: n{starved} held back {:.1} s by its quota ({period:?} period) in 60 s; converged \
         {:.1} s after the lift",
        held.as_secs_f64(),
        converged.as_secs_f64()
    );
    assert!(
        held >= Duration::from_secs(1),
        "the quota held n{starved} back only {held:?}: the scenario starved nothing"
    );
    assert!(
        converged <= Duration::from_secs(30),
        "the cluster took {converged:?} to converge after the quota was lifted"
    );
    finish_without_failure(&net, report, since);
}

/// The hosts of scenario k whose wall clocks are off, and by how much (ms; libfaketime).
const SKEWED: [(usize, i64); 3] = [(1, 3_600_000), (2, -3_600_000), (3, -300_000)];

fn skew(i: usize) -> i64 {
    SKEWED
        .iter()
        .find(|(h, _)| *h == i)
        .map_or(0, |(_, ms)| *ms)
}

#[test]
fn k_hosts_whose_clocks_are_an_hour_off_call_no_one_down_and_say_when_by_each_observers_clock() {
    let mut net = Net::new("k", N, "");
    for (i, ms) in SKEWED {
        net.skew_clock(i, &format!("{:+}", ms / 1000));
    }
    net.start_all();
    let mut report = Report::new("k_clocks_an_hour_off", &net);
    let since = wall_ms();
    let everyone = all(&net);
    // Every observer's `last_heard` of every live member is a moment ago by its own clock.
    for &i in &everyone {
        net.wait_until(&format!("n{i} shows every last_heard on its clock"), || {
            let now = wall_ms().saturating_add_signed(skew(i));
            let m = net.members(i);
            m.len() == N
                && m.iter().all(|m| {
                    ms(m, "last_heard")
                        .is_some_and(|t| (-5_000..=1_000).contains(&(t as i64 - now as i64)))
                })
        });
    }
    // A value with a 20 s TTL published on the host an hour ahead is read, and expires, on
    // each reader's clock: not at once (the reader an hour behind) nor an hour late.
    let ahead = net.hosts[1].config.to_string_lossy().into_owned();
    net.client(
        1,
        &["--config", &ahead, "publish", "job", "7", "--ttl", "20s"],
    )
    .expect("publish on n1");
    for &i in &everyone {
        net.wait_until(&format!("n{i} reads n1's job, expiring in 20 s"), || {
            let now = wall_ms().saturating_add_signed(skew(i));
            let Ok(out) = net.client(i, &["get", "job", "--json"]) else {
                return false;
            };
            let list: Value = serde_json::from_str(&out).unwrap_or_default();
            let expires = ms(&list[0], "expires").unwrap_or(0);
            // A reader knows the writer's clock once the writer sent it a datagram itself
            // (every member does within a few slots); until then it reads the writer's time
            // as written, and the value may arrive first, relayed. So: right once it knows.
            if !(now..=now + 21_000).contains(&expires) {
                eprintln!(
                    "n{i} reads job expiring at {expires}, {} ms from its now (not yet \
                     knowing n1's clock?): {list}",
                    expires as i64 - now as i64
                );
                return false;
            }
            true
        });
    }
    let published = Instant::now();
    for &i in &everyone {
        net.wait_until(&format!("n{i} no longer reads job"), || {
            net.client(i, &["get", "job", "--json"]).is_err()
        });
    }
    assert!(
        published.elapsed() < Duration::from_secs(40),
        "the 20 s value lived {:?}",
        published.elapsed()
    );
    watch_no_down(
        &net,
        &everyone,
        Duration::from_secs(10),
        Duration::from_secs(2),
    );
    report.suspicions = check_no_down_by_clocks(&net, &everyone, since, skew);
    // The host an hour ahead dies: each survivor says it stopped talking at the moment it
    // died by the survivor's own clock, and it is alerted once.
    let victim = 1;
    let truth = wall_ms();
    net.kill9(victim);
    let others = except(&net, &[victim]);
    let seen = wait_down_recorded_by_clocks(&net, victim, &others, truth, skew);
    wait_alerted_once(&net, &seen.id, &others);
    report.detection_ms.push(seen.detection_ms);
    let alert = &net.alerts()[&seen.id][0];
    let sender = net
        .hosts
        .iter()
        .position(|h| alert["sent_by"] == h.name.as_str())
        .unwrap_or_else(|| panic!("no sender in {alert}"));
    // Its times are by its sender's clock: "since" the death, "at" a moment after it.
    let on = truth.saturating_add_signed(skew(sender));
    let (since_ms, at_ms) = (
        ms(alert, "since").unwrap_or(0),
        ms(alert, "at").unwrap_or(0),
    );
    assert!(
        since_ms.abs_diff(on) <= invariants::LAST_HEARD_SLACK && (on..on + 30_000).contains(&at_ms),
        "the alert from n{sender} is {} ms (since) and {} ms (at) from the death by its clock: \
         {alert}",
        since_ms as i64 - on as i64,
        at_ms as i64 - on as i64
    );
    net.wait_all_alive(&others);
    net.start(victim);
    net.wait_all_alive(&everyone);
    wait_alerted_once(&net, "node_up:n1:", &everyone);
    report.alerts = check_no_duplicate_alert(&net, &[everyone]);
    report.print();
}

/// The previous release's binary, for the rolling upgrade.
fn previous_release() -> std::path::PathBuf {
    let Some(path) = std::env::var_os("NBWATCH_PREVIOUS") else {
        panic!(
            "set NBWATCH_PREVIOUS to the nbwatch binary of the previous release \
             (README, \"Upgrades\", shows how to build it from its tag)"
        );
    };
    let path = std::path::PathBuf::from(path);
    assert!(path.is_file(), "NBWATCH_PREVIOUS={path:?} is not a file");
    path
}

#[test]
#[ignore = "needs the previous release's binary in NBWATCH_PREVIOUS; run with --include-ignored"]
fn u_a_rolling_upgrade_from_the_previous_release_makes_no_false_down_and_alerts_once() {
    let previous = previous_release();
    let mut net = Net::new("u", N, "");
    for i in 0..N {
        net.start_with(i, &previous);
    }
    let everyone = all(&net);
    net.wait_all_alive(&everyone);
    let mut report = Report::new("u_rolling_upgrade", &net);
    let since = wall_ms();
    // Host by host, oldest index first: a graceful stop, the new build on the same data dir.
    let victim = N - 1;
    let mut incident = None;
    for i in 0..N - 1 {
        stop_and_start_again(&mut net, i);
        net.wait_all_alive(&everyone);
        if i == N / 2 {
            // Half upgraded: a mixed cluster still agrees on an incident and alerts it once.
            let others = except(&net, &[victim]);
            let truth = wall_ms();
            net.kill9(victim);
            let seen = wait_down_recorded(&net, victim, &others, truth);
            wait_alerted_once(&net, &seen.id, &others);
            report.detection_ms.push(seen.detection_ms);
            incident = Some(seen.id);
            net.start_with(victim, &previous);
            net.wait_all_alive(&everyone);
            wait_alerted_once(&net, &format!("node_up:n{victim}:"), &everyone);
        }
    }
    // The last host, killed in the middle of the upgrade, is upgraded too.
    net.stop(victim);
    net.start(victim);
    net.wait_all_alive(&everyone);
    net.wait_no_orphans();
    // History continuous, no false down: every host, old or new when it happened, holds the
    // one incident made on purpose, and no other.
    let incident = incident.expect("the incident was made");
    report.rows_compared = wait_same_incidents(&net, &everyone, since, &[incident].into());
    report.alerts = check_no_duplicate_alert(&net, &[everyone]);
    report.print();
}

/// What one soak round checks its new alerts against: the sides that may each alert an
/// incident of the round once.
type Sides = Vec<Side>;

/// One round of the soak: the fault, then every check of the scenario above that makes the
/// same fault, until the cluster is whole again. `known`: the alert ids before the round.
/// Returns the sides of the round (a partition's two, else everyone).
fn soak_round(
    net: &mut Net,
    fault: &soak::Fault,
    known: &BTreeSet<String>,
    report: &mut Report,
    sampler: &mut soak::Sampler,
    round: usize,
) -> Sides {
    use soak::Fault;
    let since = wall_ms();
    let everyone = all(net);
    let up_once = |net: &Net, host: usize| {
        let prefix = format!("node_up:{}:", net.hosts[host].name);
        wait_new_alert_once(net, &prefix, &everyone, known);
    };
    let no_new_alert = |net: &Net| {
        let new: Vec<String> = net
            .alerts()
            .into_keys()
            .filter(|id| !known.contains(id))
            .collect();
        assert!(new.is_empty(), "alerts without an outage: {new:?}");
    };
    let sides = match fault {
        Fault::Kill { victim } | Fault::Hang { victim, .. } => {
            let victim = *victim;
            let others = except(net, &[victim]);
            let truth = wall_ms();
            if let Fault::Hang { .. } = fault {
                net.hang(victim);
            } else {
                net.kill9(victim);
            }
            let seen = wait_down_recorded(net, victim, &others, truth);
            wait_alerted_once(net, &seen.id, &others);
            report.detection_ms.push(seen.detection_ms);
            if let Fault::Hang { secs, .. } = fault {
                let until = truth + secs * 1000;
                std::thread::sleep(Duration::from_millis(until.saturating_sub(wall_ms())));
                net.resume(victim);
            } else {
                net.start(victim);
            }
            net.wait_all_alive(&everyone);
            up_once(net, victim);
            report.rows_compared += wait_same_incidents(net, &everyone, since, &[seen.id].into());
            vec![everyone]
        }
        Fault::Partition { a, b } => {
            let truth = wall_ms();
            net.partition(a, b);
            let mut expected = BTreeSet::new();
            for (lost, seen_by) in [(b, a), (a, b)] {
                for &subject in lost {
                    let seen = wait_down_recorded(net, subject, seen_by, truth);
                    wait_alerted_once(net, &seen.id, seen_by);
                    report.detection_ms.push(seen.detection_ms);
                    expected.insert(seen.id);
                }
            }
            net.heal();
            net.wait_all_alive(&everyone);
            for host in 0..net.len() {
                up_once(net, host);
            }
            report.rows_compared += wait_same_incidents(net, &everyone, since, &expected);
            vec![a.clone(), b.clone()]
        }
        Fault::Loss { secs } => {
            net.loss(10);
            let end = Instant::now() + Duration::from_secs(*secs);
            // Bounded: one look every 5 s, each host asked once.
            while Instant::now() < end {
                for &i in &everyone {
                    let down: Vec<Value> = net
                        .members(i)
                        .into_iter()
                        .filter(|m| m["state"] == "down")
                        .collect();
                    assert!(down.is_empty(), "n{i} sees a false down: {down:#?}");
                }
                sampler.sample_if_due(net, round, &[]);
                std::thread::sleep(Duration::from_secs(5).min(end - Instant::now().min(end)));
            }
            net.heal();
            net.wait_all_alive(&everyone);
            report.suspicions += check_no_down(net, &everyone, since);
            report.rows_compared += wait_same_incidents(net, &everyone, since, &BTreeSet::new());
            no_new_alert(net);
            vec![everyone]
        }
        Fault::Restart { victim } => {
            stop_and_start_again(net, *victim);
            net.wait_all_alive(&everyone);
            report.suspicions += check_no_down(net, &everyone, since);
            report.rows_compared += wait_same_incidents(net, &everyone, since, &BTreeSet::new());
            no_new_alert(net);
            vec![everyone]
        }
    };
    net.wait_no_orphans();
    sides
}

/// No incident of the whole run was alerted twice by one side: `sides_of` holds the sides of
/// the round each incident was first alerted in (a partition's two; else everyone).
fn check_each_alert_once(net: &Net, sides_of: &BTreeMap<String, Sides>) -> usize {
    let everyone = vec![all(net)];
    check_no_duplicate_alert_by(net, |id| sides_of.get(id).unwrap_or(&everyone))
}

/// The soak: an hour (`NBWATCH_SOAK_SECS`) of rounds from a seeded schedule
/// (`NBWATCH_SOAK_SEED`, printed first), each one fault of scenarios a, b, c, d or f on a
/// random host or split, checked as that scenario checks it, then 20–40 s of quiet. Each
/// daemon's RSS, open descriptors, history size and gossip bytes are sampled after every round
/// and every minute of quiet or loss, written to a CSV (`NBWATCH_SOAK_OUT`), and must stay flat
/// from the second quarter of the run to the last (`netns/soak.rs`, `check_flat`).
#[test]
#[ignore = "long: a one-hour soak; run with --ignored soak (README)"]
fn s_a_soak_of_kills_hangs_partitions_loss_and_restarts_keeps_every_invariant_and_leaks_nothing() {
    let plan = soak::Plan::from_env();
    println!(
        "soak seed = {} for {} s",
        plan.seed,
        plan.duration.as_secs()
    );
    let mut net = Net::new("s", N, soak::CONFIG);
    // Dropped before the net: the logs are copied before its folder goes.
    let _logs = soak::KeepLogs::new(&net, &plan.out);
    net.start_all();
    let mut report = Report::new("s_soak", &net);
    let mut rng = SmallRng::seed_from_u64(plan.seed);
    let mut sampler = soak::Sampler::create(&plan.out);
    let mut sides_of: BTreeMap<String, Sides> = BTreeMap::new();
    let mut rounds: BTreeMap<&'static str, usize> = BTreeMap::new();
    sampler.quiet(&net, 0, Duration::from_secs(30));
    let mut round = 0;
    while sampler.elapsed() < plan.duration {
        round += 1;
        let fault = soak::Fault::draw(&mut rng, N);
        let quiet = Duration::from_secs(rng.random_range(20..=40));
        println!(
            "soak round {round} at {:.0} s: {fault:?}",
            sampler.elapsed().as_secs_f64()
        );
        let known: BTreeSet<String> = net.alerts().into_keys().collect();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let sides = soak_round(&mut net, &fault, &known, &mut report, &mut sampler, round);
            // Within the round's sides first; over the whole run at the end.
            for id in net.alerts().into_keys().filter(|id| !known.contains(id)) {
                sides_of.insert(id, sides.clone());
            }
            check_each_alert_once(&net, &sides_of);
        }));
        if let Err(e) = outcome {
            let why = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!(
                "soak seed = {}, round {round} ({fault:?}) failed: {why}",
                plan.seed
            );
        }
        let kind = match fault {
            soak::Fault::Kill { .. } => "kill",
            soak::Fault::Hang { .. } => "hang",
            soak::Fault::Partition { .. } => "partition",
            soak::Fault::Loss { .. } => "loss",
            soak::Fault::Restart { .. } => "restart",
        };
        *rounds.entry(kind).or_default() += 1;
        sampler.sample(&net, round, None, &[]);
        sampler.quiet(&net, round, quiet);
    }
    report.alerts = check_each_alert_once(&net, &sides_of);
    println!("soak seed = {}: {round} rounds {rounds:?}", plan.seed);
    report.print();
    let total = sampler.elapsed().as_secs_f64();
    soak::check_flat(&sampler.samples, total, plan.seed);
}

/// Discovery (`gossip.discover`) in `mode`, with `address` as the beacon address on the first
/// bridge (and `routed` on the second): n0 and n1 form a keyed cluster through their seeds;
/// n2 has no seeds and finds it by itself; n3 has another cluster's key and finds nothing
/// (its beacons are refused, and it refuses theirs); n4, on a second bridge reached only
/// through a router, finds nothing either (a beacon has a TTL of 1 and no router forwards it)
/// and joins once it is given a seed.
fn discovery(scenario: &'static str, mode: &str, address: &str, routed: &str) {
    let mut net = Net::new(scenario, 4, "");
    let routed_host = net.add_routed_host();
    let on = |addr: &str| format!("discover = \"{mode}\"\ndiscover_address = \"{addr}\"\n");
    net.set_gossip(0, &["10.77.0.2:7710"], &on(address));
    net.set_gossip(1, &["10.77.0.1:7710"], &on(address));
    net.set_gossip(2, &[], &on(address));
    net.set_gossip(3, &[], &on(address));
    net.own_key(3);
    net.set_gossip(routed_host, &[], &on(routed));
    let since = wall_ms();
    net.start(0);
    net.start(1);
    net.wait_all_alive(&[0, 1]);

    // A host with no seeds but the key finds the cluster.
    let started = Instant::now();
    net.start(2);
    net.wait_all_alive(&[0, 1, 2]);
    let join_ms = started.elapsed().as_millis();
    println!("JOIN scenario={scenario} mode={mode} join_ms={join_ms}");
    assert!(
        net.log(2).contains("discovered a member of the cluster"),
        "{}",
        net.log(2)
    );

    // Another cluster's host on the same bridge, and a host behind a router: for five
    // seconds (five beacons each), neither finds anyone nor is found.
    net.start(3);
    net.start(routed_host);
    net.wait_until("n0 refuses the other cluster's beacon", || {
        net.log(0).contains("kind=Beacon")
    });
    let watched = Instant::now();
    net.wait_until("five seconds of beacons", || {
        watched.elapsed() >= Duration::from_secs(5)
    });
    for lonely in [3, routed_host] {
        let m = net.members(lonely);
        assert_eq!(m.len(), 1, "n{lonely} found someone: {m:?}");
        assert!(
            !net.log(lonely).contains("discovered a member"),
            "{}",
            net.log(lonely)
        );
    }
    for i in 0..3 {
        let m = net.members(i);
        assert_eq!(m.len(), 3, "n{i} sees strangers: {m:?}");
    }

    // Given a seed, the routed host joins.
    net.stop(routed_host);
    net.set_gossip(routed_host, &["10.77.0.1:7710"], "");
    net.start(routed_host);
    net.wait_all_alive(&[0, 1, 2, routed_host]);
    check_no_down(&net, &[0, 1, 2], since);
}

#[test]
fn l_a_host_without_seeds_finds_its_cluster_by_multicast_and_no_other_cluster_or_subnet() {
    discovery("l", "multicast", "239.255.77.10:7712", "239.255.77.10:7712");
}

#[test]
fn m_a_host_without_seeds_finds_its_cluster_by_broadcast_and_no_other_cluster_or_subnet() {
    discovery("m", "broadcast", "10.77.0.255:7712", "10.78.0.255:7712");
}

/// The runs a step's command wrote to `file` (one line each, its step id) of incidents whose
/// id starts with `incident`.
fn runs_of(file: &std::path::Path, incident: &str) -> usize {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            nbwatch::alert::action::parse_id(l).is_some_and(|(_, i)| i.starts_with(incident))
        })
        .count()
}

/// Host `i`'s alert log entries of the steps of incidents whose id starts with `incident`:
/// (state, by, entry).
fn log_steps(net: &Net, i: usize, incident: &str) -> Vec<(String, String, Value)> {
    let Some(list) = net
        .client(i, &["alerts", "--json"])
        .ok()
        .and_then(|t| serde_json::from_str::<Vec<Value>>(&t).ok())
    else {
        return Vec::new();
    };
    (list.into_iter())
        .filter(|e| {
            (e["id"].as_str())
                .and_then(nbwatch::alert::action::parse_id)
                .is_some_and(|(_, base)| base.starts_with(incident))
        })
        .filter_map(|e| {
            let state = e["state"].as_str()?.to_string();
            let by = e["by"].as_str()?.to_string();
            Some((state, by, e))
        })
        .collect()
}

/// Watches for `span` that at most `most` runs of steps of `incident` are in `file`; the count.
fn watch_at_most(file: &std::path::Path, incident: &str, most: usize, span: Duration) -> usize {
    let end = Instant::now() + span;
    loop {
        let n = runs_of(file, incident);
        assert!(
            n <= most,
            "{n} runs of steps of {incident}, at most {most} allowed"
        );
        if Instant::now() >= end {
            return n;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn n_a_down_host_gets_one_magic_packet_on_the_bridge_and_one_command_and_a_return_cancels_nothing_run()
 {
    let work = tempfile::tempdir().expect("tempdir");
    let runs = work.path().join("runs");
    let actions = format!(
        "[[alerts.actions]]\non = \"node_down\"\ntype = \"wol\"\naddress = \"10.77.0.255:9\"\n\
         [[alerts.actions]]\non = \"node_down\"\nafter = \"2s\"\ntype = \"exec\"\n\
         command = [\"/bin/sh\", \"-c\", \"echo \\\"$NBWATCH_ALERT_ID\\\" >> {}\"]\n",
        runs.display()
    );
    let mut net = Net::new("n", 4, &actions);
    let (mut tcpdump, pcap) = net.capture_wol();
    net.start_all();
    let victim = 3;
    let mac = net.mac(victim);
    let others = except(&net, &[victim]);
    let truth = wall_ms();
    net.kill9(victim);
    let seen = wait_down_recorded(&net, victim, &others, truth);
    wait_alerted_once(&net, &seen.id, &others);
    net.wait_until(
        "the magic packet is on the bridge and the command ran",
        || {
            harness::magic_packets_for(&harness::pcap_packets(&pcap), &mac) >= 1
                && runs_of(&runs, &seen.id) >= 1
        },
    );
    // Nothing runs twice, though every host has the actions and the leader's view moves.
    watch_at_most(&runs, &seen.id, 1, Duration::from_secs(8));
    let _ = tcpdump.kill();
    let _ = tcpdump.wait();
    let packets = harness::pcap_packets(&pcap);
    assert_eq!(
        harness::magic_packets_for(&packets, &mac),
        1,
        "{} datagrams to port 9",
        packets.len()
    );
    let steps = log_steps(&net, 0, &seen.id);
    let mut kinds: Vec<String> = Vec::new();
    for (state, by, entry) in &steps {
        assert_eq!(state, "sent", "{entry}");
        assert_ne!(by, "n3", "{entry}");
        assert_eq!(entry["node"], "n3", "{entry}");
        assert_eq!(entry["sinks"][0]["result"], "ok", "{entry}");
        kinds.push(
            entry["sinks"][0]["sink"]
                .as_str()
                .unwrap_or("?")
                .to_string(),
        );
    }
    kinds.sort();
    assert_eq!(kinds, ["exec", "wol"], "{steps:?}");
    net.start(victim);
    net.wait_all_alive(&all(&net));
    wait_alerted_once(&net, "node_up:n3:", &all(&net));
    assert_eq!(runs_of(&runs, ""), 1, "only n3's exec step ever ran");
}

#[test]
fn o_a_runner_killed_after_its_running_mark_is_not_replaced_and_the_step_runs_once_at_most() {
    let work = tempfile::tempdir().expect("tempdir");
    let runs = work.path().join("runs");
    let actions = format!(
        "[[alerts.actions]]\non = \"node_down\"\ntype = \"exec\"\n\
         command = [\"/bin/sh\", \"-c\", \"echo \\\"$NBWATCH_ALERT_ID\\\" >> {}; sleep 3\"]\n",
        runs.display()
    );
    let mut net = Net::new("o", 5, &actions);
    net.start_all();
    let truth = wall_ms();
    net.kill9(4);
    let seen = wait_down_recorded(&net, 4, &except(&net, &[4]), truth);
    let step = seen.id.clone();
    net.wait_until("the step runs", || runs_of(&runs, &step) >= 1);
    // Its runner dies while it runs, after its running mark.
    let (state, by, entry) = log_steps(&net, 1, &step)
        .pop()
        .expect("the step is in the log");
    assert_eq!(state, "sending", "{entry}");
    let runner = net.hosts.iter().position(|h| h.name == by).expect("a host");
    net.kill9(runner);
    let survivors = except(&net, &[4, runner]);
    wait_down_recorded(&net, runner, &survivors, wall_ms());
    // The runner's own death has a step too, run by the next sender: then the first step
    // has had every chance to be taken over, and was not.
    let runners = format!("node_down:{by}:");
    net.wait_until("the runner's own step runs", || {
        runs_of(&runs, &runners) >= 1
    });
    assert_eq!(watch_at_most(&runs, &step, 1, Duration::from_secs(5)), 1);
    assert_eq!(runs_of(&runs, &runners), 1);
}

#[test]
fn p_a_runner_killed_before_its_running_mark_is_replaced_and_the_step_runs_once_at_most() {
    let work = tempfile::tempdir().expect("tempdir");
    let runs = work.path().join("runs");
    let actions = format!(
        "[[alerts.actions]]\non = \"node_down\"\ntype = \"exec\"\n\
         command = [\"/bin/sh\", \"-c\", \"echo \\\"$NBWATCH_ALERT_ID\\\" >> {}\"]\n",
        runs.display()
    );
    let mut net = Net::new("p", 5, &actions);
    net.start_all();
    net.kill9(4);
    let prefix = "node_down:n4:";
    // Catch the claim within its settle time (a second) and kill the claimer then.
    let end = Instant::now() + harness::DEADLINE;
    let claimer = loop {
        assert!(Instant::now() < end, "no claim seen\n{}", net.logs());
        // Seen past its claim already (a slow poll): its runner is killed all the same, and
        // the check below is then the one of a runner killed after its mark.
        if let Some((_, by, _)) = log_steps(&net, 1, prefix).pop() {
            break by;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let c = net
        .hosts
        .iter()
        .position(|h| h.name == claimer)
        .expect("a host");
    net.kill9(c);
    let survivors = except(&net, &[4, c]);
    wait_down_recorded(&net, c, &survivors, wall_ms());
    let claimers = format!("node_down:{claimer}:");
    net.wait_until("the claimer's own step runs", || {
        runs_of(&runs, &claimers) >= 1
    });
    let n = watch_at_most(&runs, prefix, 1, Duration::from_secs(5));
    let (state, by, entry) = log_steps(&net, survivors[0], prefix)
        .pop()
        .expect("in the log");
    if by == claimer {
        // It marked the step running before it died: not replaced, whether it ran or not.
        assert!(state == "sending" || state == "sent", "{entry}");
    } else {
        assert_eq!(
            (state.as_str(), n),
            ("sent", 1),
            "replaced, run once: {entry}"
        );
    }
    eprintln!("REPORT p claimer={claimer} replaced_by={by} runs={n}");
}
