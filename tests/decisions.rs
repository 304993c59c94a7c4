//! Local decisions from the gossiped view, in the seeded simulator: where 50 hosts send 1,000
//! jobs at once (`pick`), and who owns keys before and after a host dies (`owner`). Each test
//! prints one `FIGURES` line (BENCHMARKS.md, "Local decisions", is copied from them) and its
//! seed when it fails; `SIM_SEED=<n>` replays one seed.

use nbwatch::control::{owner, pick};
use nbwatch::gossip::MemberView;
use nbwatch::gossip::core::{Settings, Status};
use nbwatch::keys::sample::encode_sample;
use nbwatch::keys::{METRICS_KEY, WEIGHT_KEY};
use nbwatch::sim::Sim;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::time::Duration;

const HOSTS: usize = 100;

fn seeds() -> Vec<u64> {
    match std::env::var("SIM_SEED") {
        Ok(s) => vec![s.parse().expect("SIM_SEED must be a number")],
        Err(_) => vec![1, 2],
    }
}

/// Writes `key` on every host, then runs until every host's view holds every host's value.
fn announce(sim: &mut Sim, key: &str, value: impl Fn(usize) -> String) {
    for i in 0..sim.nodes.len() {
        sim.set(i, key, Some(value(i))).expect("a small key");
    }
    let deadline = sim.now + Duration::from_secs(60);
    let n = sim.nodes.len();
    let ok = sim.run_until(deadline, |s| {
        (0..n).all(|i| {
            let view = s.nodes[i].core.members(s.now);
            view.len() == n && view.iter().all(|m| m.kv.contains_key(key))
        })
    });
    assert!(ok, "seed {}: {key} did not reach every host", sim.seed);
}

fn view(sim: &Sim, i: usize) -> Vec<MemberView> {
    sim.nodes[i].core.members(sim.now)
}

/// Skewed loads, in jobs: most hosts nearly idle, a few busy (40 u³ for u uniform in [0, 1)).
fn skewed_loads(seed: u64) -> Vec<f64> {
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x10ad);
    (0..HOSTS)
        .map(|_| (40.0 * rng.random::<f64>().powi(3)).round())
        .collect()
}

type Strategy = fn(Vec<pick::Candidate>, &mut SmallRng) -> Vec<pick::Candidate>;

#[test]
fn fifty_hosts_placing_a_thousand_jobs_at_once_spread_them_where_always_the_minimum_herds() {
    for seed in seeds() {
        let mut sim = Sim::cluster(seed, HOSTS, Settings::default());
        let loads = skewed_loads(seed);
        let at = sim.now;
        announce(&mut sim, METRICS_KEY, |i| {
            encode_sample([loads[i], loads[i], loads[i], 0.0, 30.0, 0.0, 50.0], at)
        });
        let index: BTreeMap<String, usize> =
            (0..HOSTS).map(|i| (Sim::name(i).to_string(), i)).collect();
        let strategies: [(&str, Strategy); 3] = [
            ("pick", |c, rng| pick::pick(c, 1, rng)),
            ("uniform", |c, rng| pick::uniform(c, 1, rng)),
            ("minimum", |c, _| pick::minimum(c, 1)),
        ];
        // Each of 50 hosts places 20 jobs from its own view, all at the same moment: nobody
        // sees the others' jobs before placing its own (the loads are the gossiped ones).
        let mut busiest = BTreeMap::new();
        for (name, strategy) in strategies {
            let mut total = loads.clone();
            for placer in 0..50 {
                let cands =
                    pick::candidates(&view(&sim, placer), pick::LOAD_PER_CORE, &[], sim.now);
                assert_eq!(cands.len(), HOSTS, "seed {seed}: n{placer} sees every load");
                let mut rng = SmallRng::seed_from_u64(seed * 1_000 + placer as u64);
                for _ in 0..20 {
                    let chosen = strategy(cands.clone(), &mut rng);
                    total[index[&chosen[0].node]] += 1.0;
                }
            }
            let mean = total.iter().sum::<f64>() / HOSTS as f64;
            let max = total.iter().cloned().fold(0.0, f64::max);
            busiest.insert(name, max / mean);
        }
        println!(
            "FIGURES pick seed={seed} hosts={HOSTS} placers=50 jobs=1000 initial_max={} \
             busiest_over_mean: pick={:.2} uniform={:.2} minimum={:.2}",
            loads.iter().cloned().fold(0.0, f64::max),
            busiest["pick"],
            busiest["uniform"],
            busiest["minimum"]
        );
        assert!(busiest["pick"] <= 3.0, "seed {seed}: {busiest:?}");
        assert!(
            busiest["pick"] < busiest["uniform"],
            "seed {seed}: {busiest:?}"
        );
        assert!(busiest["minimum"] >= 10.0, "seed {seed}: {busiest:?}");
    }
}

#[test]
fn owners_take_shares_within_two_percent_of_their_weights() {
    let views: Vec<MemberView> = (1..=5)
        .map(|w| {
            let mut m = view_of(&format!("w{w}"));
            std::sync::Arc::make_mut(&mut m.kv).insert(WEIGHT_KEY.into(), w.to_string());
            m
        })
        .collect();
    let keys = 1_000_000;
    let mut owned: BTreeMap<String, usize> = BTreeMap::new();
    for k in 0..keys {
        let o = owner::owners(&views, &format!("user:{k}"), 1);
        *owned.entry(o[0].node.clone()).or_default() += 1;
    }
    let mut shares = Vec::new();
    for w in 1..=5 {
        let share = owned[&format!("w{w}")] as f64 / keys as f64;
        let expected = w as f64 / 15.0;
        shares.push(format!("w{w}={share:.4}/{expected:.4}"));
        assert!(
            (share / expected - 1.0).abs() <= 0.02,
            "weight {w}: share {share}, expected {expected}"
        );
    }
    println!("FIGURES owner_shares keys={keys} {}", shares.join(" "));
}

fn view_of(name: &str) -> MemberView {
    MemberView {
        name: name.into(),
        addr: "10.0.0.1:7710".parse().expect("an address"),
        status: Status::Alive,
        incarnation: nbwatch::types::Incarnation(1),
        last_heard: nbwatch::types::Time(0),
        is_self: false,
        kv: Default::default(),
        clock_offset: None,
        reports: 0,
    }
}

#[test]
fn when_one_of_a_hundred_hosts_dies_only_its_keys_move_and_every_host_agrees() {
    for seed in seeds() {
        let mut sim = Sim::cluster(seed, HOSTS, Settings::default());
        announce(&mut sim, WEIGHT_KEY, |i| (1 + i % 4).to_string());
        let keys: Vec<String> = (0..10_000).map(|k| format!("user:{k}")).collect();
        let before: Vec<String> = keys
            .iter()
            .map(|k| owner::owners(&view(&sim, 0), k, 1)[0].node.clone())
            .collect();
        let victim = 1 + sim.random_index(HOSTS - 1);
        sim.crash(victim);
        let deadline = sim.now + Duration::from_secs(30);
        let ok = sim.run_until(deadline, |s| s.all_see(victim, Status::Down, None));
        assert!(ok, "seed {seed}: n{victim} is not down everywhere");
        let after: Vec<String> = keys
            .iter()
            .map(|k| owner::owners(&view(&sim, 0), k, 1)[0].node.clone())
            .collect();
        let dead = Sim::name(victim).to_string();
        let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
        for (k, (b, a)) in before.iter().zip(&after).enumerate() {
            assert!(
                b == a || *b == dead,
                "seed {seed}: {} moved from {b}, alive",
                keys[k]
            );
        }
        assert!(
            moved as f64 <= keys.len() as f64 * (1.0 / HOSTS as f64 + 0.01),
            "seed {seed}: {moved} of {} keys moved",
            keys.len()
        );
        // Every live host names the same owners (checked on the first 1,000 keys).
        for i in (1..HOSTS).filter(|&i| i != victim) {
            let v = view(&sim, i);
            for (k, key) in keys.iter().take(1_000).enumerate() {
                let o = owner::owners(&v, key, 1);
                assert_eq!(o[0].node, after[k], "seed {seed}: n{i} disagrees on {key}");
            }
        }
        println!(
            "FIGURES owner_death seed={seed} hosts={HOSTS} keys={} moved={moved} ({:.2} %) \
             dead_weight={} agreeing_hosts={}",
            keys.len(),
            100.0 * moved as f64 / keys.len() as f64,
            1 + victim % 4,
            HOSTS - 1
        );
    }
}
