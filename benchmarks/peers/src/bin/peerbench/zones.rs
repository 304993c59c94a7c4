//! `peerbench zones`: real nbwatch daemons in zones, sealed, with 5 s metrics (the figures of
//! the scale issue). Node `n<i>` is in zone `z<i % zones>`.
//!
//! 1. Every daemon reads every zone with all its members up (`/api/v1/zones`).
//! 2. Bytes on the wire per node over `--seconds`, pollers paused.
//! 3. `--kills` kills, one per zone in turn: kill -9 → every host of its zone has a
//!    `node_down` event (the latest event time); then, polling the other zones' hosts every
//!    250 ms, when 99 % of them read the victim down in its zone's summary, from the moment
//!    its zone agreed.
//! 4. The last zone cut off from the others with nftables (UDP between its ports and the
//!    others' dropped both ways, on loopback): every other host's `zone_unreachable` event of
//!    it, and every host of it reading the others unreachable, from the cut (event times).
//! 5. `--soak` seconds more, then every daemon's events: a `node_down` of a node that was
//!    not killed is a false down.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use peerbench::now_ms;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::Opts;
use crate::cluster::{Cluster, Launcher, Member, wait_until, wait_until_every};
use crate::nbwatch::{
    down_event_at, fetch_events, fetch_stats, http_get_within, humantime_ms, zone_of,
};

const NFT_TABLE: &str = "peerbench_zone_cut";

fn zone(m: &Member, zones: usize) -> String {
    zone_of(&m.name, zones).unwrap_or_default()
}

fn zones_of(api: SocketAddr) -> Option<Vec<serde_json::Value>> {
    let body = http_get_within(api, "/api/v1/zones", Duration::from_secs(2)).ok()?;
    match serde_json::from_slice(&body).ok()? {
        serde_json::Value::Array(z) => Some(z),
        _ => None,
    }
}

/// Every member sees every member of its zone alive.
fn zones_converged(members: &[Member], zones: usize) -> bool {
    members.iter().all(|m| {
        let Ok(view) = m.view.lock() else {
            return false;
        };
        (members.iter())
            .filter(|o| o.name != m.name && zone(o, zones) == zone(m, zones))
            .all(|o| view.alive.get(&o.name).copied().unwrap_or(false))
    })
}

fn nft(script: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut child = std::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdin"))?
        .write_all(script.as_bytes())?;
    let status = child.wait()?;
    anyhow::ensure!(status.success(), "nft failed: {status}");
    Ok(())
}

/// The time of the first `zone_unreachable` event of `zone` at or after `after` (ms).
fn unreachable_at(api: SocketAddr, zone: &str, after: u64) -> Option<u64> {
    let events = fetch_events(api).ok()?;
    (events.iter())
        .filter(|e| e["kind"] == "zone_unreachable" && e["node"] == format!("zone:{zone}").as_str())
        .filter_map(|e| ms(e["at"].as_str()?))
        .filter(|at| *at >= after)
        .min()
}

fn ms(rfc3339: &str) -> Option<u64> {
    humantime_ms(rfc3339)
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0
}

pub fn run(launcher: Launcher, o: &Opts) -> anyhow::Result<()> {
    let zones = o.zones;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "# zones: n={} zones={zones} kills={} seconds={} soak={} s seed={} sealed, metrics every {} s; load before: {}",
        o.n,
        o.kills,
        o.seconds,
        o.soak,
        o.seed,
        launcher.metrics_interval,
        load.trim()
    );
    let mut cluster = Cluster::launch(launcher, o.n)?;
    let started = Instant::now();
    let deadline = Duration::from_secs(120 + o.n as u64);
    anyhow::ensure!(
        wait_until(deadline, || zones_converged(&cluster.members, zones)),
        "the zones did not converge within {deadline:?}"
    );
    let names: Vec<String> = (0..zones).map(|z| format!("z{z}")).collect();
    let per_zone = o.n / zones;
    let all_read = |c: &Cluster| {
        c.members.iter().all(|m| {
            m.api.and_then(zones_of).is_some_and(|z| {
                z.len() == zones
                    && z.iter().all(|z| {
                        z["reachable"] == true && z["members_up"].as_u64() >= Some(per_zone as u64)
                    })
            })
        })
    };
    anyhow::ensure!(
        wait_until_every(deadline, Duration::from_secs(1), || all_read(&cluster)),
        "not every daemon read every zone within {deadline:?}"
    );
    println!(
        "every daemon reads {zones} zones of {per_zone} up {:.1} s after the starts",
        started.elapsed().as_secs_f64()
    );

    // Bytes on the wire, pollers paused.
    std::thread::sleep(Duration::from_secs(10));
    cluster.launcher.paused.store(true, Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(2));
    let snap = |c: &Cluster| -> Vec<(u64, u64)> {
        (c.members.iter())
            .map(|m| m.api.and_then(fetch_stats).unwrap_or_default())
            .collect()
    };
    let t0 = Instant::now();
    let before = snap(&cluster);
    std::thread::sleep(Duration::from_secs(o.seconds));
    let after = snap(&cluster);
    let secs = t0.elapsed().as_secs_f64();
    cluster.launcher.paused.store(false, Ordering::Relaxed);
    let per_node: Vec<f64> = (before.iter().zip(&after))
        .map(|(b, a)| a.0.saturating_sub(b.0) as f64 / secs)
        .collect();
    let mean = per_node.iter().sum::<f64>() / per_node.len() as f64;
    let max = per_node.iter().copied().fold(0.0, f64::max);
    println!(
        "bytes on the wire per node: mean {mean:.0} B/s, max {max:.0} B/s (sealed, {secs:.0} s)"
    );

    // Kills, one per zone in turn.
    let mut rng = StdRng::seed_from_u64(o.seed);
    let mut detect_ms = Vec::new();
    let mut spread_ms = Vec::new();
    let mut killed: Vec<String> = Vec::new();
    for k in 0..o.kills {
        std::thread::sleep(Duration::from_secs(5));
        let z = &names[k % zones];
        let in_zone: Vec<usize> = (0..cluster.members.len())
            .filter(|&i| zone(&cluster.members[i], zones) == *z)
            .collect();
        let vi = in_zone[rng.random_range(1..in_zone.len())];
        let victim = cluster.members[vi].name.clone();
        let t_kill = cluster.members[vi].kill9();
        cluster.members.remove(vi);
        killed.push(victim.clone());
        let mates: Vec<SocketAddr> = (cluster.members.iter())
            .filter(|m| zone(m, zones) == *z)
            .filter_map(|m| m.api)
            .collect();
        let others: Vec<SocketAddr> = (cluster.members.iter())
            .filter(|m| zone(m, zones) != *z)
            .filter_map(|m| m.api)
            .collect();
        let mut downs = Vec::new();
        let seen = wait_until_every(Duration::from_secs(30), Duration::from_millis(500), || {
            downs = (mates.iter())
                .filter_map(|api| down_event_at(*api, &victim, t_kill))
                .collect();
            downs.len() == mates.len()
        });
        anyhow::ensure!(seen, "{victim} was not down in its zone within 30 s");
        let agreed = downs.iter().copied().max().unwrap_or(t_kill);
        detect_ms.push(agreed.saturating_sub(t_kill));
        // The other zones' hosts reading it down in its zone's summary.
        let mut first_read: BTreeMap<SocketAddr, u64> = BTreeMap::new();
        let need = ((others.len() as f64) * 0.99).ceil() as usize;
        let spread = wait_until_every(Duration::from_secs(30), Duration::from_millis(250), || {
            for api in &others {
                if first_read.contains_key(api) {
                    continue;
                }
                let reads = zones_of(*api).is_some_and(|zs| {
                    zs.iter().any(|s| {
                        s["name"] == z.as_str()
                            && (s["down_members"].as_array().into_iter().flatten())
                                .any(|d| d["node"] == victim.as_str())
                    })
                });
                if reads {
                    first_read.insert(*api, now_ms());
                }
            }
            first_read.len() >= need
        });
        anyhow::ensure!(
            spread,
            "the summary with {victim} down did not spread within 30 s"
        );
        let mut reads: Vec<u64> = first_read
            .values()
            .map(|t| t.saturating_sub(agreed))
            .collect();
        reads.sort_unstable();
        let at99 = reads[need - 1];
        spread_ms.push(at99);
        println!(
            "kill {}/{}: {victim} ({z}) down in its zone after {:.2} s; its summary at 99 % of the other zones' hosts {:.2} s later",
            k + 1,
            o.kills,
            agreed.saturating_sub(t_kill) as f64 / 1000.0,
            at99 as f64 / 1000.0
        );
    }

    // The last zone cut off with nftables.
    std::thread::sleep(Duration::from_secs(5));
    let cut_zone = names[zones - 1].clone();
    let ports = |inside: bool| -> Vec<String> {
        (cluster.members.iter())
            .filter(|m| (zone(m, zones) == cut_zone) == inside)
            .map(|m| m.gossip.port().to_string())
            .collect()
    };
    let (cut, rest) = (ports(true).join(", "), ports(false).join(", "));
    nft(&format!(
        "table inet {NFT_TABLE} {{\n chain out {{\n  type filter hook output priority 0;\n  \
         udp sport {{ {cut} }} udp dport {{ {rest} }} drop\n  \
         udp sport {{ {rest} }} udp dport {{ {cut} }} drop\n }}\n}}\n"
    ))?;
    let t_cut = now_ms();
    let inside: Vec<SocketAddr> = (cluster.members.iter())
        .filter(|m| zone(m, zones) == cut_zone)
        .filter_map(|m| m.api)
        .collect();
    let outside: Vec<SocketAddr> = (cluster.members.iter())
        .filter(|m| zone(m, zones) != cut_zone)
        .filter_map(|m| m.api)
        .collect();
    let mut seen_out = Vec::new();
    let mut seen_in = Vec::new();
    let cut_seen = wait_until_every(Duration::from_secs(60), Duration::from_secs(1), || {
        seen_out = (outside.iter())
            .filter_map(|api| unreachable_at(*api, &cut_zone, t_cut))
            .collect();
        seen_in = (inside.iter())
            .filter_map(|api| {
                (names[..zones - 1].iter())
                    .map(|z| unreachable_at(*api, z, t_cut))
                    .collect::<Option<Vec<u64>>>()
                    .and_then(|v| v.into_iter().max())
            })
            .collect();
        seen_out.len() == outside.len() && seen_in.len() == inside.len()
    });
    let _ = nft(&format!("delete table inet {NFT_TABLE}\n"));
    anyhow::ensure!(cut_seen, "the cut was not seen everywhere within 60 s");
    let out_max = seen_out.iter().max().map_or(0, |t| t - t_cut);
    let in_max = seen_in.iter().max().map_or(0, |t| t - t_cut);
    println!(
        "zone cut ({cut_zone}): every other host reads it unreachable after {:.2} s, every host of it reads the others unreachable after {:.2} s",
        out_max as f64 / 1000.0,
        in_max as f64 / 1000.0
    );
    // The killed hosts stay dead: every zone reachable again is the heal.
    let healed = wait_until_every(Duration::from_secs(60), Duration::from_secs(1), || {
        cluster.members.iter().all(|m| {
            m.api
                .and_then(zones_of)
                .is_some_and(|z| z.len() == zones && z.iter().all(|z| z["reachable"] == true))
        })
    });
    println!("after the heal every zone reachable again: {healed}");

    // Soak, then false downs.
    if o.soak > 0 {
        println!("# soak {} s", o.soak);
        std::thread::sleep(Duration::from_secs(o.soak));
    }
    let mut false_downs = 0;
    for m in &cluster.members {
        let Some(api) = m.api else { continue };
        for e in fetch_events(api).unwrap_or_default() {
            let node = e["node"].as_str().unwrap_or("");
            if e["kind"] == "node_down" && !killed.iter().any(|k| k == node) {
                false_downs += 1;
                println!("  false down: {} says {node} down at {}", m.name, e["at"]);
            }
        }
    }
    detect_ms.sort_unstable();
    spread_ms.sort_unstable();
    println!(
        "| {} | {zones} | {mean:.0} | {max:.0} | {:.2} / {:.2} s | {:.2} / {:.2} s | {:.2} s | {:.2} s | {false_downs} | {:.0} s |",
        o.n,
        pct(&detect_ms, 0.5),
        pct(&detect_ms, 1.0),
        pct(&spread_ms, 0.5),
        pct(&spread_ms, 1.0),
        out_max as f64 / 1000.0,
        in_max as f64 / 1000.0,
        started.elapsed().as_secs_f64(),
    );
    Ok(())
}
