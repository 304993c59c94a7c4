//! Simulator figures for BENCHMARKS.md: bytes per second per node (liveness alone and with
//! 5-second host metrics) and the time for one changed key to reach 99 % of the nodes.
//!
//! `cargo run --release --example simbench -- [--seed N] [--sizes 128,1000] [--seconds S]
//! [--digest-budget BYTES] [--fanout N] [--interval-ms N] [--phi X] [--news-delay-ms N] [--kills N] [--loss P] [--profile lean]`
//! (`--profile` first: it sets every setting the other flags change) (`SIMBENCH_DETECTION=1`: kill → down instead;
//! `SIMBENCH_BREAKDOWN=1`: bytes by kind of message on stderr; `--zones Z`: each size in Z
//! zones, with the zone figures instead). Sealed figures add the sealed frame's fixed overhead
//! to every datagram. With metrics, every simulated host reads the samples of a real host
//! recorded in `--samples FILE` (default `benchmarks/host-samples.csv`, made by
//! `examples/hosttrace.rs`) and announces them by the daemon's dead-band rule.

use nbwatch::gossip::core::Settings;
use nbwatch::gossip::core::zones::METRICS_EVERY;
use nbwatch::sim::Sim;
use nbwatch::types::Time;
use std::time::Duration;

struct Args {
    seed: u64,
    sizes: Vec<usize>,
    seconds: u64,
    /// Kills per size for `SIMBENCH_DETECTION`, and the loss on every link then.
    kills: usize,
    loss: f64,
    /// The gossip settings, defaults unless a flag changes one (to try a profile).
    settings: Settings,
    /// Zones per size (0: no zones).
    zones: usize,
    /// The host samples every simulated host reads (see [`Trace`]).
    samples: String,
    /// Digits in every node's name (`Sim::name_width`; 0: `n7`, `n1234`).
    name_width: usize,
}

fn args() -> Args {
    let mut a = Args {
        seed: 42,
        sizes: vec![128, 1000],
        seconds: 30,
        kills: 20,
        loss: 0.0,
        settings: Settings::default(),
        zones: 0,
        samples: concat!(env!("CARGO_MANIFEST_DIR"), "/benchmarks/host-samples.csv").to_string(),
        name_width: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_default();
        match flag.as_str() {
            "--seed" => a.seed = value.parse().expect("--seed N"),
            "--sizes" => {
                a.sizes = value
                    .split(',')
                    .map(|s| s.parse().expect("--sizes 128,1000"))
                    .collect()
            }
            "--seconds" => a.seconds = value.parse().expect("--seconds N"),
            "--kills" => a.kills = value.parse().expect("--kills N"),
            "--zones" => a.zones = value.parse().expect("--zones Z"),
            "--samples" => a.samples = value,
            "--name-width" => a.name_width = value.parse().expect("--name-width N"),
            "--loss" => a.loss = value.parse().expect("--loss 0.1"),
            "--digest-budget" => {
                a.settings.digest_budget = value.parse().expect("--digest-budget BYTES")
            }
            "--fanout" => a.settings.fanout = value.parse().expect("--fanout N"),
            "--phi" => a.settings.watch.phi_threshold = value.parse().expect("--phi X"),
            "--news-delay-ms" => {
                a.settings.news_delay =
                    Duration::from_millis(value.parse().expect("--news-delay-ms N"))
            }
            "--profile" => {
                let profile =
                    nbwatch::config::Profile::parse(&value).expect("--profile default|lean");
                a.settings = Settings::profile(profile, profile.interval());
            }
            "--interval-ms" => {
                let ms = value.parse().expect("--interval-ms N");
                let mut s = Settings::with_interval(Duration::from_millis(ms));
                s.digest_budget = a.settings.digest_budget;
                s.fanout = a.settings.fanout;
                s.watch.phi_threshold = a.settings.watch.phi_threshold;
                a.settings = s;
            }
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// A recorded trace of a real host's samples (`examples/hosttrace.rs`), one every 5 s: the
/// figures every simulated host reads, as every real daemon of a benchmark on one machine
/// reads that machine.
struct Trace(Vec<[f64; 7]>);

impl Trace {
    fn load(path: &str) -> Trace {
        let text =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("--samples {path}: {e}"));
        let rows: Vec<[f64; 7]> = (text.lines().skip(1))
            .enumerate()
            .map(|(n, line)| {
                let v: Vec<f64> = (line.split(','))
                    .map(|x| {
                        x.trim()
                            .parse()
                            .unwrap_or_else(|_| panic!("{path}:{}: {line}", n + 2))
                    })
                    .collect();
                v.try_into()
                    .unwrap_or_else(|_| panic!("{path}:{}: seven figures", n + 2))
            })
            .collect();
        assert!(!rows.is_empty(), "{path}: no samples");
        Trace(rows)
    }
}

/// Every node's metrics: what it reads each round, and which samples it announces.
struct Metrics {
    trace: Trace,
    announcers: Vec<nbwatch::probe::metrics::Announcer>,
    /// Where in the trace each node starts: all at its start (every daemon of a benchmark on
    /// one machine reads that machine), or spread over it (the hosts of a site are not busy
    /// in step; see [`Metrics::spread`]).
    offsets: Vec<usize>,
    /// Rounds of 5 s read so far.
    round: usize,
}

impl Metrics {
    fn new(trace: Trace, n: usize) -> Metrics {
        let every = Duration::from_secs(5);
        Metrics {
            trace,
            announcers: (0..n)
                .map(|_| nbwatch::probe::metrics::Announcer::new(every))
                .collect(),
            offsets: vec![0; n],
            round: 0,
        }
    }

    /// Node `i` starts `i` rows into the trace: the hosts of a zone are at different points
    /// of the recorded day, as the hosts of a site are, so a zone's aggregates move as a
    /// fleet's do and not as one host's.
    fn spread(trace: Trace, n: usize) -> Metrics {
        let len = trace.0.len();
        let mut m = Metrics::new(trace, n);
        m.offsets = (0..n).map(|i| i % len).collect();
        m
    }
}

/// Every node takes a sample of round `round` of the trace and, as the daemon does, announces
/// it only if it left the dead-band of its last announced one or that one is 30 s old.
fn announce_metrics(sim: &mut Sim, metrics: &mut Metrics) {
    let now = sim.now;
    let round = metrics.round;
    metrics.round += 1;
    let since = Duration::from_millis(now.as_millis());
    for i in 0..sim.nodes.len() {
        let row = metrics.trace.0[(round + metrics.offsets[i]) % metrics.trace.0.len()];
        let m = nbwatch::probe::metrics::HostMetrics {
            load1: row[0],
            load5: row[1],
            load15: row[2],
            cpu_pct: row[3],
            mem_used_pct: row[4],
            swap_used_pct: row[5],
            disk_used_pct: row[6],
            uptime_s: 0,
            boot_time: 1_790_000_000,
            at: now,
        };
        if !metrics.announcers[i].offer(&m, since) {
            continue;
        }
        // Encoded as the daemon encodes a sample (trimmed figures, origin token).
        for (k, v) in m.to_kv() {
            let _ = sim.nodes[i].core.set(now, &k, Some(v));
        }
    }
}

/// Bytes and datagrams sent per node per second.
fn bytes_per_node_per_second(
    sim: &mut Sim,
    seconds: u64,
    mut metrics: Option<&mut Metrics>,
) -> (f64, f64) {
    let n = sim.nodes.len();
    let before = sim.bytes_sent();
    let datagrams_before: u64 = sim.nodes.iter().map(|n| n.datagrams_sent).sum();
    let breakdown = std::env::var("SIMBENCH_BREAKDOWN").is_ok();
    if breakdown {
        sim.tally = Some(Default::default());
    }
    let start = sim.now;
    while sim.now.since(start) < Duration::from_secs(seconds) {
        if let Some(m) = metrics.as_deref_mut() {
            announce_metrics(sim, m);
        }
        sim.run_for(Duration::from_secs(5));
    }
    let after = sim.bytes_sent();
    let elapsed = sim.now.since(start).as_secs_f64();
    let total: u64 = before.iter().zip(&after).map(|(a, b)| b - a).sum();
    if let Some(tally) = sim.tally.take() {
        let secs = sim.now.since(start).as_secs_f64() * n as f64;
        let per: Vec<String> = (tally.iter())
            .map(|(kind, (count, sent))| {
                let (count, sent) = (*count as f64 / secs, *sent as f64 / secs);
                format!(
                    "{kind} {count:.2} ({sent:.0} B, sealed {:.0} B)",
                    sealed((sent, count))
                )
            })
            .collect();
        eprintln!("datagrams/s per node by kind (bytes/s): {}", per.join(", "));
    }
    if breakdown {
        let mut k = [0u64; 6];
        for node in &sim.nodes {
            let st = node.core.stats();
            for (slot, v) in k.iter_mut().zip([
                st.bytes_syn,
                st.bytes_synack,
                st.bytes_ack,
                st.bytes_news,
                st.bytes_probe,
                node.probe_bytes,
            ]) {
                *slot += v;
            }
        }
        let sum: u64 = k.iter().sum();
        eprintln!(
            "cumulative share: syn {:.0}% synack {:.0}% ack {:.0}% news {:.0}% pings and answers {:.0}% watchers' probes {:.0}%",
            100.0 * k[0] as f64 / sum as f64,
            100.0 * k[1] as f64 / sum as f64,
            100.0 * k[2] as f64 / sum as f64,
            100.0 * k[3] as f64 / sum as f64,
            100.0 * k[4] as f64 / sum as f64,
            100.0 * k[5] as f64 / sum as f64
        );
    }
    let datagrams: u64 = sim.nodes.iter().map(|n| n.datagrams_sent).sum::<u64>() - datagrams_before;
    (
        total as f64 / n as f64 / elapsed,
        datagrams as f64 / n as f64 / elapsed,
    )
}

/// What `bytes` and `datagrams` per second come to sealed with a cluster key: each datagram
/// carries the sealed frame's fixed overhead.
fn sealed((bytes, datagrams): (f64, f64)) -> f64 {
    bytes + datagrams * nbwatch::secure::frame::COMPACT_OVERHEAD as f64
}

fn propagation(sim: &mut Sim, samples: usize) -> (Duration, Duration) {
    sim.trace_prefix = Some("app.".into());
    let n = sim.nodes.len();
    let mut times = Vec::new();
    for s in 0..samples {
        let origin = sim.random_index(n);
        let key = format!("app.probe{s}");
        let value = format!("v{s}");
        let at: Time = sim.now;
        let _ = sim.nodes[origin].core.set(at, &key, Some(value.clone()));
        let name = sim.nodes[origin].name.clone();
        let need = (n as f64 * 0.99).ceil() as usize;
        let ok = sim.run_until(at + Duration::from_secs(30), |s| {
            s.nodes
                .iter()
                .filter(|x| x.core.value(&name, &key) == Some(value.as_str()))
                .count()
                >= need
        });
        assert!(ok, "a key did not reach 99 % in 30 s");
        let mut arrivals: Vec<Time> = sim
            .nodes
            .iter()
            .map(|x| {
                if x.name == name {
                    at
                } else {
                    x.traced
                        .get(&(name.clone(), key.clone(), value.clone()))
                        .copied()
                        .unwrap_or(Time(u64::MAX))
                }
            })
            .collect();
        arrivals.sort();
        times.push(arrivals[need - 1].since(at));
        sim.run_for(Duration::from_secs(2));
    }
    times.sort();
    (
        times[times.len() / 2],
        *times.last().unwrap_or(&Duration::ZERO),
    )
}

/// Kill → every survivor says down, in virtual time, under `loss` on every link: p50, p99
/// over `kills` crashes, and how many times a node was declared down while it ran.
fn detection(
    seed: u64,
    n: usize,
    kills: usize,
    loss: f64,
    settings: &Settings,
) -> (Duration, Duration, usize) {
    let mut sim = Sim::cluster(seed, n, settings.clone());
    sim.loss = loss;
    let mut times = Vec::new();
    // Per node, the spans it was dead: a down event outside them is a false one.
    let mut dead: Vec<Vec<(Time, Time)>> = vec![Vec::new(); n];
    for _ in 0..kills {
        sim.run_for(Duration::from_secs(5));
        let victim = 1 + sim.random_index(n - 1);
        let at = sim.now;
        sim.crash(victim);
        let ok = sim.run_until(at + Duration::from_secs(30), |s| {
            s.all_see(victim, nbwatch::gossip::core::Status::Down, None)
        });
        assert!(ok, "seed {seed}: no detection in 30 s");
        times.push(sim.now.since(at));
        dead[victim].push((at, sim.now + Duration::from_secs(1)));
        sim.restart(victim, 0);
        // A lean cluster of a hundred hosts and more under loss can take a minute to carry
        // a restarted host's new life to everyone.
        let back = sim.now + Duration::from_secs(120);
        assert!(
            sim.run_until(back, |s| s.converged()),
            "seed {seed}: no rejoin"
        );
    }
    sim.run_for(Duration::from_secs(5));
    let false_downs = (0..n)
        .map(|i| {
            (sim.down_events(i).iter())
                .filter(|(_, at, ..)| !dead[i].iter().any(|(a, b)| a <= at && at <= b))
                .count()
        })
        .sum();
    times.sort();
    let p99 = times[((times.len() as f64 * 0.99).ceil() as usize).saturating_sub(1)];
    (times[times.len() / 2], p99, false_downs)
}

/// Node indices of zone `z`.
fn zone_members(sim: &Sim, z: &str) -> Vec<usize> {
    (0..sim.nodes.len()).filter(|&i| sim.zone(i) == z).collect()
}

/// The zone figures at `n` nodes in `zones` zones: bytes per node (liveness, then 5 s
/// metrics; the upper layer's share), kill → down inside a zone, a summary change to 99 % of
/// all hosts, and a zone cut to every host.
fn zoned(a: &Args, n: usize, zones: usize) {
    let t = std::time::Instant::now();
    let mut sim = Sim::zoned_named(a.seed, zones, n / zones, a.settings.clone(), a.name_width);
    let all: Vec<usize> = (0..sim.nodes.len()).collect();
    let names: Vec<String> = (0..zones).map(|z| format!("z{z}")).collect();
    let everyone_reads = |s: &Sim| {
        all.iter().all(|&i| {
            let v = s.nodes[i].core.zone_reachability();
            v.len() == zones && v.values().all(|&reachable| reachable)
        })
    };
    assert!(
        sim.run_until(sim.now + Duration::from_secs(300), everyone_reads),
        "seed {}: the zones did not reach every host",
        a.seed
    );
    // A zone's hosts are first known to each other as they join (over 100 s at 10,000 hosts
    // in zones of 100, 10 s at 1,000 in zones of 10), and a peer not heard directly for half
    // a reachability window is pinged: those pings belong to the join, not to the steady
    // cost. Counting starts a whole window after every host reads every zone, at every size.
    sim.run_for(nbwatch::gossip::core::reach::WINDOW);
    let zone_bytes = |s: &Sim| {
        s.nodes
            .iter()
            .map(|x| x.core.stats().bytes_zones)
            .sum::<u64>()
    };
    let z0 = zone_bytes(&sim);
    let idle = bytes_per_node_per_second(&mut sim, a.seconds, None);
    let upper = (zone_bytes(&sim) - z0) as f64 / sim.nodes.len() as f64 / a.seconds as f64;
    // With metrics: each zone's first aggregates (one publication per zone, read by every
    // host) are the start, not the steady cost; they are sent before the count starts.
    let mut metrics = Metrics::spread(Trace::load(&a.samples), sim.nodes.len());
    let warm = METRICS_EVERY.as_secs() + 10;
    let _ = bytes_per_node_per_second(&mut sim, warm, Some(&mut metrics));
    let busy = bytes_per_node_per_second(&mut sim, a.seconds, Some(&mut metrics));
    // Kill → every host of its zone says down; then the zone's summary counting it down at
    // 99 % of all hosts, from the moment its zone agreed.
    let mut detect = Vec::new();
    let mut spread = Vec::new();
    for k in 0..a.kills.max(1) {
        let zone = &names[k % zones];
        let members = zone_members(&sim, zone);
        let victim = members[1 + sim.random_index(members.len() - 1)];
        let at = sim.now;
        sim.crash(victim);
        let ok = sim.run_until(at + Duration::from_secs(30), |s| {
            s.all_see(victim, nbwatch::gossip::core::Status::Down, Some(&members))
        });
        assert!(ok, "seed {}: no detection in 30 s", a.seed);
        detect.push(sim.now.since(at));
        let agreed = sim.now;
        let victim_name = sim.nodes[victim].name.clone();
        let need = (sim.nodes.len() as f64 * 0.99).ceil() as usize;
        // A host that has read the summary counting the victim down keeps it (the victim
        // restarts only after): each host is read until it has.
        let mut read = vec![false; sim.nodes.len()];
        let ok = sim.run_until(agreed + Duration::from_secs(30), |s| {
            for (i, done) in read.iter_mut().enumerate() {
                *done = *done
                    || (s.is_up(i)
                        && (s.nodes[i].core.zone_view(zone)).is_some_and(|v| {
                            v.summary.down_names.iter().any(|(n, _)| *n == victim_name)
                        }));
            }
            read.iter().filter(|&&d| d).count() >= need.min(s.nodes.len() - 1)
        });
        assert!(ok, "seed {}: the summary did not spread in 30 s", a.seed);
        spread.push(sim.now.since(agreed));
        sim.restart(victim, members[0]);
        assert!(
            sim.run_until(sim.now + Duration::from_secs(120), |s| s.converged()),
            "seed {}: no rejoin",
            a.seed
        );
    }
    // The last zone cut off from the others: every other host reads it unreachable, and
    // every host of it reads the others unreachable.
    let cut_zone = names[zones - 1].clone();
    let cut = zone_members(&sim, &cut_zone);
    let rest: Vec<usize> = all.iter().copied().filter(|i| !cut.contains(i)).collect();
    sim.run_for(Duration::from_secs(5));
    let at = sim.now;
    sim.partition(&cut, &rest);
    let unreachable = |s: &Sim, by: &[usize], zs: &[String]| {
        by.iter()
            .all(|&i| zs.iter().all(|z| s.zone_reachable(i, z) == Some(false)))
    };
    let others: Vec<String> = names[..zones - 1].to_vec();
    let ok = sim.run_until(at + Duration::from_secs(60), |s| {
        unreachable(s, &rest, std::slice::from_ref(&cut_zone))
    });
    let seen_out = sim.now.since(at);
    assert!(ok, "seed {}: the cut was not seen in 60 s", a.seed);
    let ok = sim.run_until(at + Duration::from_secs(60), |s| {
        unreachable(s, &cut, &others)
    });
    let seen_in = sim.now.since(at);
    assert!(
        ok,
        "seed {}: the cut zone did not see the others in 60 s",
        a.seed
    );
    let false_downs: usize = (0..sim.nodes.len())
        .map(|i| {
            (sim.down_events(i).iter())
                .filter(|(by, ..)| sim.zone(*by) != sim.zone(i))
                .count()
        })
        .sum();
    detect.sort();
    spread.sort();
    println!(
        "| {n} | {zones} | {:.0} ({:.0}) | {:.0} ({:.0}) | {upper:.0} | {:.2} / {:.2} s | {:.2} / {:.2} s | {:.2} s | {:.2} s | {false_downs} |",
        idle.0,
        sealed(idle),
        busy.0,
        sealed(busy),
        detect[detect.len() / 2].as_secs_f64(),
        detect[detect.len() - 1].as_secs_f64(),
        spread[spread.len() / 2].as_secs_f64(),
        spread[spread.len() - 1].as_secs_f64(),
        seen_out.as_secs_f64(),
        seen_in.as_secs_f64(),
    );
    eprintln!(
        "(N={n} in {zones} zones took {:?} of wall time)",
        t.elapsed()
    );
}

fn main() {
    let a = args();
    if a.zones > 0 {
        println!(
            "simulator, seed {}, latency 0.2-5 ms, no loss, interval {:?}, {} kills per size",
            a.seed, a.settings.interval, a.kills
        );
        println!(
            "| N | zones | bytes/s per node, liveness (sealed) | bytes/s per node, 5 s metrics (sealed) | of which upper layer | kill → down in its zone p50 / max | summary to 99 % of hosts p50 / max | zone cut seen by every other host | cut zone sees the others | downs across zones |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|");
        for &n in &a.sizes {
            zoned(&a, n, a.zones);
        }
        return;
    }
    if std::env::var("SIMBENCH_DETECTION").is_ok() {
        println!(
            "| N | detection p50 | detection p99 (virtual time, {} kills, loss {}) | false downs |",
            a.kills, a.loss
        );
        println!("|---|---|---|---|");
        for &n in &a.sizes {
            let (p50, p99, false_downs) = detection(a.seed, n, a.kills, a.loss, &a.settings);
            println!(
                "| {n} | {:.2} s | {:.2} s | {false_downs} |",
                p50.as_secs_f64(),
                p99.as_secs_f64()
            );
        }
        return;
    }
    println!(
        "simulator, seed {}, latency 0.2-5 ms, no loss, interval {:?}, fanout {}, digest budget {}, phi {}",
        a.seed,
        a.settings.interval,
        a.settings.fanout,
        a.settings.digest_budget,
        a.settings.watch.phi_threshold
    );
    println!(
        "| N | bytes/s per node, liveness only (sealed) | datagrams/s | bytes/s per node, 5 s metrics (sealed) | datagrams/s | key to 99 % p50 | key to 99 % max |"
    );
    println!("|---|---|---|---|---|---|---|");
    for &n in &a.sizes {
        let t = std::time::Instant::now();
        let mut sim = Sim::cluster(a.seed, n, a.settings.clone());
        sim.run_for(Duration::from_secs(10));
        let idle = bytes_per_node_per_second(&mut sim, a.seconds, None);
        let mut metrics = Metrics::new(Trace::load(&a.samples), sim.nodes.len());
        let busy = bytes_per_node_per_second(&mut sim, a.seconds, Some(&mut metrics));
        let (p50, max) = propagation(&mut sim, 10);
        println!(
            "| {n} | {:.0} ({:.0}) | {:.1} | {:.0} ({:.0}) | {:.1} | {:.2} s | {:.2} s |",
            idle.0,
            sealed(idle),
            idle.1,
            busy.0,
            sealed(busy),
            busy.1,
            p50.as_secs_f64(),
            max.as_secs_f64()
        );
        eprintln!("(N={n} took {:?} of wall time)", t.elapsed());
    }
}
