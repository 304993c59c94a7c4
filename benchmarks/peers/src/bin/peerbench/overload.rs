//! `peerbench overload`: N members on one machine, then a window of CPU starvation (busy-loop
//! processes) and, for nbwatch, API polling; counts the members that were declared down
//! although nothing was killed (false downs), and how long the cluster takes to be whole again.
//!
//! Phases (all times on the driver's clock, unix ms):
//! 1. launch: start the N members; wait until every member sees every other alive
//!    (`--converge-timeout`). Not converging is a result: it is printed and the run goes on.
//! 2. settle (`--settle` s), then the load window (`--seconds` s): `--hogs` processes of
//!    `peerbench hog S` (a busy loop that ends by itself after S s, normal priority) and, for
//!    nbwatch, `--poll-rate` requests per second in total of `GET /api/v1/members` from
//!    `--poll-threads` threads, round-robin over the daemons, a fresh connection each, 2 s
//!    timeout. The driver's own convergence pollers are paused in the window, so the only
//!    requests are the load.
//! 3. recovery: the time until every member again sees every other alive
//!    (`--recover-timeout`). nbwatch views are polled every 2 s (so +0–2 s), and are emptied
//!    when the window ends, so only answers given after the load count.
//!
//! False downs: chitchat / foca, every `"down"` line a member printed about another member;
//! nbwatch, every `node_down` event about another node in each daemon's own history, read
//! once at the end (`GET /api/v1/events`). One event per observer, split by phase. nbwatch's
//! `node_suspect` events are counted as well (suspicions), and those not followed by a
//! `node_down` of the same node and incarnation at the same observer (refuted).

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use peerbench::now_ms;

use crate::Opts;
use crate::cluster::{Cluster, Launcher, System, converged};
use crate::nbwatch;

/// Burn one core until `d` has passed (the hog processes run this).
pub fn hog(d: Duration) {
    let end = Instant::now() + d;
    let mut x = 1u64;
    while Instant::now() < end {
        for _ in 0..100_000 {
            x = std::hint::black_box(
                x.wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407),
            );
        }
    }
}

/// The hog processes; killed (and reaped) on drop even if they have not ended yet.
struct Hogs(Vec<Child>);

impl Drop for Hogs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn start_hogs(count: usize, secs: u64) -> anyhow::Result<Hogs> {
    let exe = std::env::current_exe()?;
    let mut hogs = Hogs(Vec::new());
    for _ in 0..count {
        hogs.0.push(
            Command::new(&exe)
                .arg("hog")
                .arg(secs.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()?,
        );
    }
    Ok(hogs)
}

#[derive(Default)]
struct PollStats {
    ok: AtomicU64,
    failed: AtomicU64,
    timed_out: AtomicU64,
    /// Requests not sent because the thread was more than 1 s behind its schedule.
    skipped: AtomicU64,
}

impl PollStats {
    fn get(&self) -> (u64, u64, u64, u64) {
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            self.timed_out.load(Ordering::Relaxed),
            self.skipped.load(Ordering::Relaxed),
        )
    }
}

fn is_timeout(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>().is_some_and(|e| {
        matches!(
            e.kind(),
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
        )
    })
}

/// `threads` threads that together send `rate` GET /api/v1/members per second until `end`,
/// round-robin over `apis`. Each thread keeps its own schedule; one that falls more than 1 s
/// behind (slow answers) drops the requests it missed and counts them as skipped.
fn start_polling(
    apis: Arc<Vec<SocketAddr>>,
    rate: u64,
    threads: usize,
    end: Instant,
    stats: Arc<PollStats>,
) -> Vec<std::thread::JoinHandle<()>> {
    let period = Duration::from_secs_f64(threads as f64 / rate as f64);
    let start = Instant::now();
    (0..threads)
        .map(|k| {
            let apis = apis.clone();
            let stats = stats.clone();
            std::thread::spawn(move || {
                let mut next = start + period.mul_f64(k as f64 / threads as f64);
                let mut target = k;
                while next < end {
                    let now = Instant::now();
                    if next > now {
                        std::thread::sleep(next - now);
                    } else if now - next > Duration::from_secs(1) {
                        let behind = ((now - next).as_secs_f64() / period.as_secs_f64()) as u32;
                        stats
                            .skipped
                            .fetch_add(u64::from(behind), Ordering::Relaxed);
                        next += period * behind;
                        target += threads * behind as usize;
                    }
                    let api = apis[target % apis.len()];
                    target += threads;
                    match nbwatch::http_get_within(api, "/api/v1/members", Duration::from_secs(2)) {
                        Ok(_) => stats.ok.fetch_add(1, Ordering::Relaxed),
                        Err(e) if is_timeout(&e) => stats.timed_out.fetch_add(1, Ordering::Relaxed),
                        Err(_) => stats.failed.fetch_add(1, Ordering::Relaxed),
                    };
                    next += period;
                }
            })
        })
        .collect()
}

/// The 1, 5 and 15 min load averages.
fn loadavg() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut it = text.split_whitespace().map(|x| x.parse().unwrap_or(0.0));
    [
        it.next().unwrap_or(0.0),
        it.next().unwrap_or(0.0),
        it.next().unwrap_or(0.0),
    ]
}

fn clock() -> String {
    let s = now_ms() / 1000;
    format!("{:02}:{:02}:{:02}", (s / 3600) % 24, (s / 60) % 60, s % 60)
}

/// Wait up to `deadline` for convergence, printing progress every 10 s; the seconds it took.
fn wait_converged(cluster: &Cluster, deadline: Duration, what: &str) -> Option<f64> {
    let start = Instant::now();
    let mut last_print = Instant::now();
    loop {
        if converged(&cluster.members) {
            return Some(start.elapsed().as_secs_f64());
        }
        if start.elapsed() >= deadline {
            return None;
        }
        if last_print.elapsed() >= Duration::from_secs(10) {
            last_print = Instant::now();
            println!(
                "{} {what}: +{:.0} s, {} (member, other) pairs not seen alive",
                clock(),
                start.elapsed().as_secs_f64(),
                cluster.gap_count()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Counts per phase: before the load (startup, settle), in the window, after it.
#[derive(Default, Clone, Copy)]
struct Phases {
    startup: u64,
    load: u64,
    after: u64,
}

impl Phases {
    fn add(&mut self, t: u64, load_start: u64, load_end: u64) {
        if t < load_start {
            self.startup += 1;
        } else if t < load_end {
            self.load += 1;
        } else {
            self.after += 1;
        }
    }

    fn since_load(&self) -> u64 {
        self.load + self.after
    }

    fn describe(&self) -> String {
        format!(
            "{} before the load (startup), {} in the window, {} after it",
            self.startup, self.load, self.after
        )
    }
}

pub fn run(launcher: Launcher, o: &Opts) -> anyhow::Result<()> {
    let paused = launcher.paused.clone();
    let system = o.system;
    let polling = system == System::Nbwatch && o.poll_rate > 0;
    let metrics = match (system, o.metrics_interval) {
        (System::Foca, _) => "n/a".to_string(),
        (_, 0) => "off".to_string(),
        (_, s) => format!("{s} s"),
    };
    let load_text = if polling {
        format!(
            "{} hogs + {} API req/s ({} threads)",
            o.hogs, o.poll_rate, o.poll_threads
        )
    } else if system == System::Nbwatch {
        format!("{} hogs, no API polling", o.hogs)
    } else {
        format!("{} hogs (no API to poll)", o.hogs)
    };
    println!(
        "# overload: system={} n={} metrics={metrics} load=[{load_text}] window={} s settle={} s \
         converge-timeout={} s recover-timeout={} s nproc={}",
        system.label(),
        o.n,
        o.seconds,
        o.settle,
        o.converge_timeout,
        o.recover_timeout,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    if system == System::Nbwatch {
        println!("# nbwatch binary: {}", o.nbwatch_bin.display());
    }
    let l = loadavg();
    println!(
        "{} launching {} members (load {:.2} {:.2} {:.2})",
        clock(),
        o.n,
        l[0],
        l[1],
        l[2]
    );
    let cluster = Cluster::launch(launcher, o.n)?;
    let converged_before = wait_converged(
        &cluster,
        Duration::from_secs(o.converge_timeout),
        "converging",
    );
    match converged_before {
        Some(s) => println!("{} converged {s:.1} s after the last start", clock()),
        None => println!(
            "{} NOT converged within {} s: {} (member, other) pairs not seen alive; going on",
            clock(),
            o.converge_timeout,
            cluster.gap_count()
        ),
    }
    std::thread::sleep(Duration::from_secs(o.settle));

    // The load window.
    paused.store(true, Ordering::Relaxed);
    let l0 = loadavg();
    let load_start = now_ms();
    let window = Duration::from_secs(o.seconds);
    let end = Instant::now() + window;
    println!(
        "{} load window of {} s starts: {load_text} (load {:.2} {:.2} {:.2})",
        clock(),
        o.seconds,
        l0[0],
        l0[1],
        l0[2]
    );
    let hogs = start_hogs(o.hogs, o.seconds)?;
    let stats = Arc::new(PollStats::default());
    let apis: Arc<Vec<SocketAddr>> =
        Arc::new(cluster.members.iter().filter_map(|m| m.api).collect());
    let pollers = if polling {
        start_polling(
            apis.clone(),
            o.poll_rate,
            o.poll_threads,
            end,
            stats.clone(),
        )
    } else {
        Vec::new()
    };
    let mut max_load1 = l0[0];
    let mut tick = 0u64;
    while Instant::now() < end {
        std::thread::sleep(
            Duration::from_secs(5).min(end.saturating_duration_since(Instant::now())),
        );
        tick += 1;
        let l = loadavg();
        max_load1 = max_load1.max(l[0]);
        if tick.is_multiple_of(2) {
            let (ok, failed, timed_out, skipped) = stats.get();
            let downs: usize = cluster
                .members
                .iter()
                .filter_map(|m| m.view.lock().ok().map(|v| v.down_lines.len()))
                .sum();
            let polls = if polling {
                format!(
                    ", API answers {ok}, failed {failed}, timed out {timed_out}, skipped {skipped}"
                )
            } else {
                String::new()
            };
            let downs = if system == System::Nbwatch {
                String::new()
            } else {
                format!(", down lines so far {downs}")
            };
            println!(
                "{} window +{} s: load {:.2} {:.2} {:.2}{polls}{downs}",
                clock(),
                tick * 5,
                l[0],
                l[1],
                l[2]
            );
        }
    }
    for p in pollers {
        let _ = p.join();
    }
    drop(hogs);
    let load_end = now_ms();
    let l1 = loadavg();
    let (ok, failed, timed_out, skipped) = stats.get();
    println!(
        "{} load window ends (load {:.2} {:.2} {:.2}, max 1-min {max_load1:.2})",
        clock(),
        l1[0],
        l1[1],
        l1[2]
    );
    if polling {
        println!(
            "API polling: {} sent ({:.0}/s of {} asked), {ok} answered, {failed} failed, \
             {timed_out} timed out (2 s), {skipped} not sent (thread > 1 s behind)",
            ok + failed + timed_out,
            (ok + failed + timed_out) as f64 / o.seconds as f64,
            o.poll_rate
        );
    }

    // Recovery: nbwatch views are emptied so that only answers after the window count.
    if system == System::Nbwatch {
        for m in &cluster.members {
            if let Ok(mut v) = m.view.lock() {
                v.alive.clear();
            }
        }
        paused.store(false, Ordering::Relaxed);
    }
    let recovered = wait_converged(
        &cluster,
        Duration::from_secs(o.recover_timeout),
        "re-converging",
    );
    match recovered {
        Some(s) => println!("{} whole again {s:.1} s after the window", clock()),
        None => println!(
            "{} NOT whole {} s after the window: {} pairs not seen alive; {}",
            clock(),
            o.recover_timeout,
            cluster.gap_count(),
            truncate(&cluster.describe_gaps(), 600)
        ),
    }
    paused.store(true, Ordering::Relaxed);

    let mut cluster = cluster;
    let exited: Vec<String> = cluster
        .members
        .iter_mut()
        .filter_map(|m| matches!(m.child.try_wait(), Ok(Some(_))).then(|| m.name.clone()))
        .collect();
    if !exited.is_empty() {
        println!("members that exited during the run: {}", exited.join(", "));
    }

    // False downs.
    let mut downs = Phases::default();
    let mut suspects = Phases::default();
    let mut refuted = Phases::default();
    let mut downed: BTreeSet<String> = BTreeSet::new();
    let mut observers_with_downs = 0usize;
    let mut unread = Vec::new();
    // nbwatch: every kind of event in the histories, for the raw output.
    let mut kinds: std::collections::BTreeMap<String, u64> = Default::default();
    for m in &cluster.members {
        let mut mine = 0usize;
        if system == System::Nbwatch {
            let Some(api) = m.api else { continue };
            let events = match nbwatch::fetch_events(api) {
                Ok(e) => e,
                Err(e) => {
                    unread.push(format!("{}: {e}", m.name));
                    continue;
                }
            };
            for e in &events {
                *kinds
                    .entry(e["kind"].as_str().unwrap_or("?").to_string())
                    .or_default() += 1;
            }
            // (node, incarnation) this observer declared down.
            let mut down_keys: HashMap<(String, u64), ()> = HashMap::new();
            for e in &events {
                let (Some(kind), Some(node)) = (e["kind"].as_str(), e["node"].as_str()) else {
                    continue;
                };
                if node == m.name {
                    continue;
                }
                let t = e["at"].as_str().and_then(nbwatch::at_ms).unwrap_or(0);
                let inc = e["incarnation"].as_u64().unwrap_or(0);
                match kind {
                    "node_down" => {
                        downs.add(t, load_start, load_end);
                        down_keys.insert((node.to_string(), inc), ());
                        if t >= load_start {
                            downed.insert(node.to_string());
                        }
                        mine += 1;
                    }
                    "node_suspect" => suspects.add(t, load_start, load_end),
                    _ => {}
                }
            }
            for e in &events {
                if e["kind"].as_str() != Some("node_suspect") {
                    continue;
                }
                let (Some(node), inc) =
                    (e["node"].as_str(), e["incarnation"].as_u64().unwrap_or(0))
                else {
                    continue;
                };
                if node != m.name && !down_keys.contains_key(&(node.to_string(), inc)) {
                    let t = e["at"].as_str().and_then(nbwatch::at_ms).unwrap_or(0);
                    refuted.add(t, load_start, load_end);
                }
            }
        } else if let Ok(v) = m.view.lock() {
            for (t, node) in v.down_lines.iter().filter(|(_, n)| *n != m.name) {
                downs.add(*t, load_start, load_end);
                if *t >= load_start {
                    downed.insert(node.clone());
                }
                mine += 1;
            }
        }
        if mine > 0 {
            observers_with_downs += 1;
        }
    }
    if system == System::Nbwatch {
        let list: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
        println!(
            "history events read from {} daemons, by kind: {}",
            cluster.members.len() - unread.len(),
            list.join(", ")
        );
    }
    if !unread.is_empty() {
        println!(
            "history not read from {} daemons: {}",
            unread.len(),
            truncate(&unread.join("; "), 600)
        );
    }
    println!(
        "false downs (one per observer; nothing was killed): {}",
        downs.describe()
    );
    println!(
        "  {} observers recorded at least one; {} distinct members declared down from the window on",
        observers_with_downs,
        downed.len()
    );
    if system == System::Nbwatch {
        println!("node_suspect events: {}", suspects.describe());
        println!(
            "  of which not followed by a node_down (refuted): {}",
            refuted.describe()
        );
    }
    if converged_before.is_none() || recovered.is_none() || downs.since_load() > 0 {
        crate::KEEP_RUN_DIR.store(true, Ordering::Relaxed);
    }

    println!();
    println!(
        "false down = a member reports another member down/dead although no member was killed \
         (one per observer); counts from the start of the load window to the end of the recovery"
    );
    println!(
        "| system | N | metrics | load ({} s) | converged before | false downs (window + after) | members falsely down | refuted suspicions | whole again after the load | API answers / failed / timed out | load avg 1 min (max) |",
        o.seconds
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let conv = |x: Option<f64>, limit: u64| match x {
        Some(s) => format!("yes, {s:.1} s"),
        None => format!("**no** (>{limit} s)"),
    };
    let (api, susp) = if system == System::Nbwatch {
        (
            if polling {
                format!("{ok} / {failed} / {timed_out}")
            } else {
                "no polling".to_string()
            },
            format!(
                "{} (of {} suspicions)",
                refuted.since_load(),
                suspects.since_load()
            ),
        )
    } else {
        ("n/a (no API)".to_string(), "n/a".to_string())
    };
    println!(
        "| {} | {} | {metrics} | {load_text} | {} | {} ({} + {}) | {} | {susp} | {} | {api} | {max_load1:.1} |",
        system.label(),
        o.n,
        conv(converged_before, o.converge_timeout),
        downs.since_load(),
        downs.load,
        downs.after,
        downed.len(),
        conv(recovered, o.recover_timeout),
    );
    if downs.startup > 0 {
        println!(
            "({} false downs before the load, during startup and settle)",
            downs.startup
        );
    }
    Ok(())
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &s[..cut])
}
