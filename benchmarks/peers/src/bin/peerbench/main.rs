//! `peerbench`: drives real member processes on loopback and measures
//! failure detection, gossip bandwidth, and RSS/CPU.
//!
//! ```text
//! peerbench detection --system nbwatch|chitchat|foca|memberlist --n 16 --kills 20 [--seed S] [--nbwatch-bin PATH] [--loss 10]
//! peerbench bandwidth --system ... --n 16 --metrics-interval 0|5 --seconds 60
//! peerbench rss       --system ... --n 64 [--seconds 30]
//! peerbench overload  --system ... --n 128 --seconds 120 --hogs 2 [--poll-rate 300]
//! peerbench zones     --system nbwatch --n 64 --zones 4 --kills 4 --seconds 60 --soak 600
//! ```

mod cluster;
mod nbwatch;
mod netns;
mod overload;
mod procfs;
mod zones;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use peerbench::now_ms;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use cluster::{Cluster, Launcher, System, converged, wait_until};

pub struct Opts {
    command: String,
    system: System,
    n: usize,
    kills: usize,
    seed: u64,
    metrics_interval: u64,
    seconds: u64,
    warmup: u64,
    settle: u64,
    timeout: u64,
    nbwatch_bin: PathBuf,
    bin_dir: PathBuf,
    /// nbwatch only: gossip without a key, sealed with one (`nbwatch keygen`), or one
    /// after the other in the same run.
    key: KeyMode,
    /// nbwatch only: `gossip.profile` ("default" or "lean").
    profile: String,
    /// detection, nbwatch only: how often each node's API is polled (the times come from the
    /// nodes' `node_down` events, so this only says when to look).
    poll_ms: u64,
    /// overload: busy-loop processes during the window.
    hogs: usize,
    /// overload, nbwatch only: API requests per second in total during the window.
    poll_rate: u64,
    /// overload: threads that send those requests.
    poll_threads: usize,
    /// overload: deadline for the first convergence and for the one after the load.
    converge_timeout: u64,
    recover_timeout: u64,
    /// zones: zones of the cluster, and how long to watch for false downs at the end.
    zones: usize,
    soak: u64,
    /// detection: each member in a network namespace of its own, every one dropping this
    /// share (%) of what it sends (`None`: all on loopback).
    loss: Option<u32>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum KeyMode {
    Off,
    On,
    Both,
}

fn parse() -> anyhow::Result<Opts> {
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_default();
    if !matches!(
        command.as_str(),
        "detection" | "bandwidth" | "rss" | "overload" | "zones"
    ) {
        anyhow::bail!(
            "usage: peerbench detection|bandwidth|rss|overload --system nbwatch|chitchat|foca \
             --n N [--kills K] [--seed S] [--timeout SECS] [--metrics-interval 0|5] \
             [--seconds S] [--warmup S] [--settle S] [--nbwatch-bin PATH] [--bin-dir DIR] \
             [--key off|on|both] [--profile default|lean] [--poll-ms MS] [--hogs H] [--poll-rate R] [--poll-threads T] \
             [--converge-timeout S] [--recover-timeout S] [--loss PERCENT]"
        );
    }
    let exe_dir = std::env::current_exe()?
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default();
    let mut o = Opts {
        seconds: if command == "rss" { 30 } else { 60 },
        command,
        system: System::Foca,
        n: 16,
        kills: 20,
        seed: now_ms(),
        metrics_interval: 0,
        warmup: 10,
        settle: 20,
        timeout: 60,
        nbwatch_bin: PathBuf::from("../../target/release/nbwatch"),
        bin_dir: exe_dir,
        key: KeyMode::Off,
        profile: "default".to_string(),
        poll_ms: 50,
        hogs: 0,
        poll_rate: 0,
        poll_threads: 8,
        converge_timeout: 0,
        recover_timeout: 120,
        zones: 0,
        soak: 0,
        loss: None,
    };
    let mut system = None;
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))?;
        match flag.as_str() {
            "--system" => system = Some(System::parse(&value)?),
            "--n" => o.n = value.parse()?,
            "--kills" => o.kills = value.parse()?,
            "--seed" => o.seed = value.parse()?,
            "--metrics-interval" => o.metrics_interval = value.parse()?,
            "--seconds" => o.seconds = value.parse()?,
            "--warmup" => o.warmup = value.parse()?,
            "--settle" => o.settle = value.parse()?,
            "--timeout" => o.timeout = value.parse()?,
            "--nbwatch-bin" => o.nbwatch_bin = value.into(),
            "--bin-dir" => o.bin_dir = value.into(),
            "--profile" => o.profile = value,
            "--poll-ms" => o.poll_ms = value.parse()?,
            "--hogs" => o.hogs = value.parse()?,
            "--poll-rate" => o.poll_rate = value.parse()?,
            "--poll-threads" => o.poll_threads = value.parse()?,
            "--converge-timeout" => o.converge_timeout = value.parse()?,
            "--recover-timeout" => o.recover_timeout = value.parse()?,
            "--zones" => o.zones = value.parse()?,
            "--soak" => o.soak = value.parse()?,
            "--loss" => o.loss = Some(value.parse()?),
            "--key" => {
                o.key = match value.as_str() {
                    "off" => KeyMode::Off,
                    "on" => KeyMode::On,
                    "both" => KeyMode::Both,
                    other => anyhow::bail!("--key {other}: off, on or both"),
                }
            }
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    o.system = system.ok_or_else(|| anyhow::anyhow!("--system is required"))?;
    anyhow::ensure!(
        o.key == KeyMode::Off || o.system == System::Nbwatch,
        "--key is for nbwatch runs"
    );
    anyhow::ensure!(
        o.loss.is_none() || o.command == "detection",
        "--loss is for detection runs"
    );
    anyhow::ensure!(
        o.command != "zones" || (o.system == System::Nbwatch && o.zones >= 2 && o.n >= 2 * o.zones),
        "zones is an nbwatch run with --zones 2 or more and two nodes a zone at least"
    );
    anyhow::ensure!(
        o.profile == "default" || o.system == System::Nbwatch,
        "--profile is nbwatch's gossip.profile"
    );
    anyhow::ensure!(o.n >= 2, "--n must be at least 2");
    anyhow::ensure!(
        o.poll_rate == 0 || (o.system == System::Nbwatch && o.command == "overload"),
        "--poll-rate is for nbwatch overload runs (the peers have no API)"
    );
    anyhow::ensure!(o.poll_threads >= 1, "--poll-threads must be at least 1");
    if o.converge_timeout == 0 {
        o.converge_timeout = 60 + o.n as u64;
    }
    Ok(o)
}

fn main() -> anyhow::Result<()> {
    // `peerbench hog SECONDS`: the busy loop `overload` starts, one per hog.
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some("hog") {
        let secs: u64 = args.next().unwrap_or_default().parse()?;
        overload::hog(Duration::from_secs(secs));
        return Ok(());
    }
    let o = parse()?;
    if o.system == System::Nbwatch && !o.nbwatch_bin.exists() {
        anyhow::bail!(
            "{} does not exist: build nbwatch first (cargo build --release in the repository root)",
            o.nbwatch_bin.display()
        );
    }
    let run_dir = std::env::temp_dir().join(format!(
        "peerbench-{}-{}",
        o.system.label(),
        std::process::id()
    ));
    std::fs::create_dir_all(&run_dir)?;
    eprintln!("# run dir (configs, stderr logs): {}", run_dir.display());
    let keys: &[bool] = match o.key {
        KeyMode::Off => &[false],
        KeyMode::On => &[true],
        KeyMode::Both => &[false, true],
    };
    let mut result = Ok(());
    for &keyed in keys {
        result = run_once(&o, &run_dir, keyed);
        if result.is_err() {
            break;
        }
    }
    // Members are killed on drop; keep the run dir only on failure (an
    // error, a kill not detected in time, a restart that did not rejoin) or
    // when PEERBENCH_KEEP is set.
    let keep = KEEP_RUN_DIR.load(std::sync::atomic::Ordering::Relaxed)
        || std::env::var_os("PEERBENCH_KEEP").is_some();
    if result.is_ok() && !keep {
        let _ = std::fs::remove_dir_all(&run_dir);
    }
    result
}

/// One cluster, started, measured and dropped (killed); `keyed`: gossip sealed.
fn run_once(o: &Opts, run_dir: &std::path::Path, keyed: bool) -> anyhow::Result<()> {
    let run_dir = run_dir.join(if keyed { "keyed" } else { "plain" });
    std::fs::create_dir_all(&run_dir)?;
    let key_file = if keyed {
        let file = run_dir.join("cluster.key");
        let status = std::process::Command::new(&o.nbwatch_bin)
            .arg("keygen")
            .arg("--out")
            .arg(&file)
            .stdout(std::process::Stdio::null())
            .status()?;
        anyhow::ensure!(status.success(), "nbwatch keygen failed: {status}");
        Some(file)
    } else {
        None
    };
    let launcher = Launcher {
        key_file,
        profile: o.profile.clone(),
        system: o.system,
        bin_dir: o.bin_dir.clone(),
        nbwatch_bin: o.nbwatch_bin.clone(),
        run_dir: run_dir.clone(),
        metrics_interval: o.metrics_interval,
        cluster_size: o.n,
        poll_every: match o.command.as_str() {
            "detection" => Duration::from_millis(o.poll_ms),
            // Convergence only, at a resolution of 2 s; paused in the load window.
            "overload" => Duration::from_secs(2),
            _ => Duration::from_secs(1),
        },
        paused: Default::default(),
        zones: o.zones,
        netns: match o.loss {
            Some(percent) => Some(std::sync::Arc::new(netns::Netns::new(percent)?)),
            None => None,
        },
    };
    if o.command == "overload" {
        return overload::run(launcher, o);
    }
    if o.command == "zones" {
        return zones::run(launcher, o);
    }
    let converge = Duration::from_secs(60 + o.n as u64);
    let cluster = Cluster::start(launcher, o.n, converge)?;
    if let Some(netns) = &cluster.launcher.netns {
        netns.start_loss()?;
        println!("# {} % loss on every link from now on", o.loss.unwrap_or(0));
    }
    match o.command.as_str() {
        "detection" => detection(cluster, o),
        _ => steady(cluster, o, keyed),
    }
}

/// Set when a run completed but something in it failed (its logs are kept).
static KEEP_RUN_DIR: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// ` profile=lean` for an nbwatch run with a gossip profile other than the default.
fn profile_note(o: &Opts) -> String {
    if o.profile == "default" {
        String::new()
    } else {
        format!(" profile={}", o.profile)
    }
}

fn detection(mut cluster: Cluster, o: &Opts) -> anyhow::Result<()> {
    println!(
        "# detection: system={} n={} kills={} seed={} settle={} s{}",
        o.system.label(),
        o.n,
        o.kills,
        o.seed,
        o.settle,
        profile_note(o)
    );
    let mut rng = StdRng::seed_from_u64(o.seed);
    let timeout = Duration::from_secs(o.timeout);
    let mut times_ms: Vec<u64> = Vec::new();
    let mut alerts_ms: Vec<u64> = Vec::new();
    let mut duplicate_alerts = 0usize;
    let mut firsts_ms: Vec<u64> = Vec::new();
    let mut timed_out = 0usize;
    let mut not_rejoined = 0usize;
    // Each kill: the victim's name, when it was killed and when the cluster was whole again
    // (a down said of it in between is a true one).
    let mut dead: Vec<(String, u64, u64)> = Vec::new();
    // The peers' own "down" lines, from members since killed.
    let mut lines: Vec<(u64, String)> = Vec::new();
    for k in 0..o.kills {
        // Let the cluster run a while after (re)convergence: adaptive
        // detectors (chitchat's phi) judge a node by its heartbeat history.
        std::thread::sleep(Duration::from_secs(o.settle));
        let vi = rng.random_range(0..cluster.members.len());
        let victim_name = cluster.members[vi].name.clone();
        let t_kill = cluster.members[vi].kill9();
        let victim = cluster.members.remove(vi);
        if let Ok(v) = victim.view.lock() {
            lines.extend(v.down_lines.iter().cloned());
        }
        let survivors = &cluster.members;
        let detected = wait_until(timeout, || {
            survivors.iter().all(|s| {
                s.view
                    .lock()
                    .map(|v| v.alive.get(&victim_name) == Some(&false))
                    .unwrap_or(false)
            })
        });
        if detected {
            // nbwatch: each survivor's own `node_down` event; the others: the first poll
            // that saw it.
            let downs: Vec<u64> = survivors
                .iter()
                .filter_map(|s| match (o.system, s.api) {
                    (System::Nbwatch, Some(api)) => {
                        nbwatch::down_event_at(api, &victim_name, t_kill)
                    }
                    _ => s.view.lock().ok()?.down_at.get(&victim_name).copied(),
                })
                .map(|t| t.saturating_sub(t_kill))
                .collect();
            if downs.len() < survivors.len() {
                println!(
                    "  warning: {} of {} survivors gave no time",
                    survivors.len() - downs.len(),
                    survivors.len()
                );
            }
            let all = downs.iter().copied().max().unwrap_or(0);
            let first = downs.iter().copied().min().unwrap_or(0);
            times_ms.push(all);
            firsts_ms.push(first);
            println!(
                "kill {:>2}/{}: {victim_name} down at all {} survivors after {:.2} s (first {:.2} s)",
                k + 1,
                o.kills,
                survivors.len(),
                all as f64 / 1000.0,
                first as f64 / 1000.0
            );
        } else {
            timed_out += 1;
            let seen = survivors
                .iter()
                .filter(|s| {
                    s.view
                        .lock()
                        .map(|v| v.alive.get(&victim_name) == Some(&false))
                        .unwrap_or(false)
                })
                .count();
            println!(
                "kill {:>2}/{}: {victim_name} TIMEOUT after {} s ({seen}/{} survivors saw it down)",
                k + 1,
                o.kills,
                o.timeout,
                survivors.len()
            );
        }
        if o.system == System::Nbwatch {
            // The alert: handed to the sinks by the leader (its `at`), once.
            let prefix = format!("node_down:{victim_name}:");
            let run_dir = cluster.launcher.run_dir.clone();
            let mut found = None;
            wait_until(timeout, || {
                found = nbwatch::alert_at(&run_dir, &prefix, t_kill);
                found.is_some()
            });
            match found {
                Some((at, count)) => {
                    alerts_ms.push(at.saturating_sub(t_kill));
                    if count > 1 {
                        duplicate_alerts += 1;
                    }
                    println!(
                        "  alert after {:.2} s",
                        at.saturating_sub(t_kill) as f64 / 1000.0
                    );
                }
                None => println!("  no alert within {} s", o.timeout),
            }
        }
        // Restart: nbwatch under the same name, ports and data dir (it comes
        // back with a higher incarnation); chitchat/foca under a fresh name
        // on a fresh port so their identities are unambiguous.
        let seed = cluster.members[0].gossip;
        let restarted = match o.system {
            System::Nbwatch => {
                let (gossip, api) = (victim.gossip, victim.api);
                drop(victim);
                cluster.launcher.spawn(&victim_name, gossip, api, &[seed])?
            }
            _ => {
                drop(victim);
                {
                    let base = victim_name.split('r').next().unwrap_or("n");
                    cluster.spawn_fresh(&format!("{base}r{}", k + 1), &[seed])?
                }
            }
        };
        cluster.members.push(restarted);
        if !wait_until(Duration::from_secs(60 + o.n as u64), || {
            converged(&cluster.members)
        }) {
            not_rejoined += 1;
            println!(
                "  warning: cluster not whole 60 s after restart: {}",
                cluster.describe_gaps()
            );
        }
        dead.push((victim_name, t_kill, now_ms()));
    }
    let false_downs = false_downs(&cluster, &dead, lines);
    if let Some(netns) = &cluster.launcher.netns {
        let (sent, dropped) = netns.dropped();
        println!(
            "loss: {dropped} of {sent} packets that reached the members were dropped ({:.1} %)",
            dropped as f64 * 100.0 / sent.max(1) as f64
        );
    }
    if timed_out > 0 || not_rejoined > 0 {
        KEEP_RUN_DIR.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    times_ms.sort_unstable();
    firsts_ms.sort_unstable();
    let q = |v: &[u64], p: f64| {
        percentile(v, p)
            .map(|x| format!("{:.2} s", x as f64 / 1000.0))
            .unwrap_or("-".into())
    };
    println!();
    println!(
        "detection = kill -9 until EVERY survivor reports the victim down; nearest-rank percentiles"
    );
    if o.system == System::Nbwatch {
        println!(
            "(nbwatch: times from each survivor's node_down event, its `at`; APIs polled every {} ms)",
            o.poll_ms
        );
    }
    println!(
        "| system | N | loss | kills | settle | p50 | p99 | max | first survivor p50 | timeouts (>{} s) | false downs | seed |",
        o.timeout
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {} | {} | {} | {} s | {} | {} | {} | {} | {} | {} | {} |",
        o.system.label(),
        o.n,
        match o.loss {
            Some(p) => format!("{p} % (netns)"),
            None => "none (loopback)".to_string(),
        },
        o.kills,
        o.settle,
        q(&times_ms, 0.50),
        q(&times_ms, 0.99),
        q(&times_ms, 1.0),
        q(&firsts_ms, 0.50),
        timed_out,
        false_downs.map_or("?".to_string(), |n| n.to_string()),
        o.seed
    );
    if not_rejoined > 0 {
        println!("({not_rejoined} restarts did not rejoin within the deadline)");
    }
    if o.system == System::Nbwatch {
        alerts_ms.sort_unstable();
        println!();
        println!(
            "alert = kill -9 until the leader hands the node_down alert to its sinks (its `at`)"
        );
        println!(
            "| system | N | kills | alerts | p50 | p99 | max | kills with a duplicate alert |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        println!(
            "| nbwatch | {} | {} | {} | {} | {} | {} | {} |",
            o.n,
            o.kills,
            alerts_ms.len(),
            q(&alerts_ms, 0.50),
            q(&alerts_ms, 0.99),
            q(&alerts_ms, 1.0),
            duplicate_alerts
        );
    }
    Ok(())
}

/// How many times a member said another was down while it ran: nbwatch's `node_down` events
/// in every survivor's history, the peers' own "down" lines (`lines` from members killed, then
/// the survivors'). A down said of a victim between its kill and the cluster's being whole
/// again is a true one. `None`: a history could not be read.
fn false_downs(
    cluster: &Cluster,
    dead: &[(String, u64, u64)],
    mut lines: Vec<(u64, String)>,
) -> Option<usize> {
    if cluster.launcher.system == System::Nbwatch {
        lines.clear();
        for m in &cluster.members {
            let events = nbwatch::fetch_events(m.api?).ok()?;
            lines.extend(
                (events.iter())
                    .filter(|e| e["kind"] == "node_down")
                    .filter_map(|e| {
                        Some((
                            nbwatch::humantime_ms(e["at"].as_str()?)?,
                            e["node"].as_str()?.to_string(),
                        ))
                    }),
            );
        }
    } else {
        for m in &cluster.members {
            lines.extend(m.view.lock().ok()?.down_lines.iter().cloned());
        }
    }
    let killed = |t: u64, node: &str| {
        (dead.iter()).any(|(name, from, to)| name == node && *from <= t && t <= *to)
    };
    let false_ones: Vec<&(u64, String)> = lines.iter().filter(|(t, n)| !killed(*t, n)).collect();
    for (t, n) in &false_ones {
        println!("  false down: {n} at {t} ms");
    }
    Some(false_ones.len())
}

/// Nearest-rank percentile of a sorted slice.
fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// Bandwidth and RSS/CPU over a steady-state window after convergence.
fn steady(cluster: Cluster, o: &Opts, keyed: bool) -> anyhow::Result<()> {
    let warmup = o.warmup.max(2 * o.metrics_interval);
    eprintln!("# warm-up {warmup} s, window {} s", o.seconds);
    std::thread::sleep(Duration::from_secs(warmup));
    // nbwatch's pollers stop for the window (a `/members` of 128 members every second is a
    // tenth of a daemon's CPU): its counters are read once at each end, straight from the API.
    let nbwatch = o.system == System::Nbwatch;
    if nbwatch {
        cluster.launcher.paused.store(true, Ordering::Relaxed);
        std::thread::sleep(Duration::from_secs(2));
    }
    let snap = |c: &Cluster| -> Vec<(u64, u64, u64, Option<u64>)> {
        c.members
            .iter()
            .map(|m| {
                let (b, d, t) = match m.api.filter(|_| nbwatch) {
                    Some(api) => nbwatch::fetch_stats(api)
                        .map(|(b, d)| (b, d, now_ms()))
                        .unwrap_or_default(),
                    None => m
                        .view
                        .lock()
                        .map(|v| (v.bytes_sent, v.datagrams_sent, v.stats_t_ms))
                        .unwrap_or_default(),
                };
                (b, d, t, procfs::cpu_ticks(m.pid()))
            })
            .collect()
    };
    let t0 = std::time::Instant::now();
    let before = snap(&cluster);
    std::thread::sleep(Duration::from_secs(o.seconds));
    let after = snap(&cluster);
    let wall = t0.elapsed().as_secs_f64();
    if nbwatch {
        cluster.launcher.paused.store(false, Ordering::Relaxed);
        std::thread::sleep(Duration::from_secs(3));
    }
    let whole = converged(&cluster.members);
    let n = cluster.members.len() as f64;
    let mut bps = 0.0;
    let mut dps = 0.0;
    let mut cpu = 0.0;
    let mut rss_kb = 0u64;
    let hz = procfs::clock_ticks_per_sec();
    for (m, (b0, a0)) in cluster.members.iter().zip(before.iter().zip(after.iter())) {
        let dt = (a0.2.saturating_sub(b0.2)) as f64 / 1000.0;
        if dt > 0.0 {
            bps += (a0.0.saturating_sub(b0.0)) as f64 / dt;
            dps += (a0.1.saturating_sub(b0.1)) as f64 / dt;
        }
        if let (Some(c0), Some(c1)) = (b0.3, a0.3) {
            cpu += (c1.saturating_sub(c0)) as f64 / hz / wall * 100.0;
        }
        rss_kb += procfs::vm_rss_kb(m.pid()).unwrap_or(0);
    }
    let metrics = if o.system == System::Foca && o.metrics_interval > 0 {
        "n/a (liveness only)".to_string()
    } else if o.metrics_interval == 0 {
        "off".to_string()
    } else {
        format!("every {} s", o.metrics_interval)
    };
    let label = match (o.system, keyed) {
        (System::Nbwatch, true) => "nbwatch, sealed (key)",
        (System::Nbwatch, false) if o.key != KeyMode::Off => "nbwatch, plaintext",
        (system, _) => system.label(),
    };
    println!(
        "# {}: system={label} n={} metrics={metrics} window={} s still converged={whole}{}",
        o.command,
        o.n,
        o.seconds,
        profile_note(o)
    );
    println!(
        "| system | N | metrics | bytes/s sent per node | datagrams/s per node | RSS per node | CPU per node (% of one core) | window |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {} | {metrics} | {:.0} | {:.1} | {:.1} MB | {:.2} % | {} s |",
        label,
        o.n,
        bps / n,
        dps / n,
        rss_kb as f64 / n / 1024.0,
        cpu / n,
        o.seconds
    );
    Ok(())
}
