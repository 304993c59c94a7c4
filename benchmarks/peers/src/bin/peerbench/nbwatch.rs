//! nbwatch adapter: one `nbwatch run --config FILE` per node, observed by
//! polling its HTTP API (`/api/v1/members`, `/api/v1/stats`) with a tiny
//! hand-written HTTP/1.1 GET (`Connection: close`).
//!
//! A survivor has detected the victim when the victim's entry in its
//! `/members` has `"state": "down"` (or `"left"`); the detection timestamp
//! is the driver's clock at the first poll that saw it (50 ms polls).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use peerbench::now_ms;

use crate::cluster::{Launcher, View};

/// The config file of node `name` of `launcher`'s cluster.
pub fn write_config(
    launcher: &Launcher,
    name: &str,
    gossip: SocketAddr,
    seeds: &[SocketAddr],
    api: SocketAddr,
) -> anyhow::Result<PathBuf> {
    let run_dir = launcher.run_dir.as_path();
    let metrics_interval_s = launcher.metrics_interval;
    // Written only when not the default, so that builds older than the key still start.
    let profile = match launcher.profile.as_str() {
        "default" => String::new(),
        other => format!("profile = \"{other}\"\n"),
    };
    // Without a key file the run is plaintext on purpose (a node given no key would make its
    // own, and nodes with different keys never meet).
    let key_file = launcher
        .key_file
        .as_deref()
        .map_or("insecure = true\n".to_string(), |k| {
            format!("key_file = \"{}\"\n", k.display())
        });
    let data_dir = run_dir.join(name);
    std::fs::create_dir_all(&data_dir)?;
    let zone = match zone_of(name, launcher.zones) {
        Some(z) => format!("zone = \"{z}\"\n"),
        None => String::new(),
    };
    let seeds: Vec<String> = seeds.iter().map(|s| format!("\"{s}\"")).collect();
    let toml = format!(
        "[node]\nname = \"{name}\"\ndata_dir = \"{}\"\n{zone}\n\
         [gossip]\nlisten = \"{gossip}\"\nseeds = [{}]\n{profile}{key_file}\n\
         [metrics]\ninterval = \"{metrics_interval_s}s\"\n\n\
         [api]\nlisten = \"{api}\"\n\n\
         [supervision]\ntrees = \"{}\"\n\n\
         [alerts]\nflap_threshold = 0\n\n\
         [[alerts.sinks]]\ntype = \"exec\"\ncommand = [\"/bin/sh\", \"-c\", \"cat >> {}\"]\n",
        data_dir.display(),
        seeds.join(", "),
        run_dir.join("no-trees").display(),
        alerts_file(run_dir).display(),
    );
    let path = run_dir.join(format!("{name}.toml"));
    std::fs::write(&path, toml)?;
    Ok(path)
}

/// The zone of node `n<i>` among `zones` zones (`None`: no zones).
pub fn zone_of(name: &str, zones: usize) -> Option<String> {
    let i: usize = name.strip_prefix('n')?.parse().ok()?;
    (zones > 0).then(|| format!("z{}", i % zones))
}

/// Where every node's exec sink appends the alerts it sends (one JSON per line).
pub fn alerts_file(run_dir: &Path) -> PathBuf {
    run_dir.join("alerts.jsonl")
}

/// The `at` (ms) of the first alert whose id starts with `prefix` and that was handed to the
/// sinks at or after `after_ms`, with the number of such alerts.
pub fn alert_at(run_dir: &Path, prefix: &str, after_ms: u64) -> Option<(u64, usize)> {
    let text = std::fs::read_to_string(alerts_file(run_dir)).ok()?;
    let mut ats: Vec<u64> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|a| a["id"].as_str().is_some_and(|id| id.starts_with(prefix)))
        .filter_map(|a| {
            let at = a["at"].as_str()?;
            let t = humantime_ms(at)?;
            (t >= after_ms).then_some(t)
        })
        .collect();
    ats.sort_unstable();
    ats.first().map(|t| (*t, ats.len()))
}

/// "2026-11-22T15:30:09.120Z" as ms since the epoch (UTC, the only form nbwatch writes).
pub fn humantime_ms(s: &str) -> Option<u64> {
    let (date, time) = s.strip_suffix('Z')?.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, ms) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|x| x.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    Some((secs * 1000 + ms.parse::<i64>().ok()?) as u64)
}

/// GET `path` from `addr`; returns the body of a 200 response.
pub fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<Vec<u8>> {
    http_get_within(addr, path, Duration::from_millis(1000))
}

/// [`http_get`] with `timeout` for the connect and for each read and write.
pub fn http_get_within(addr: SocketAddr, path: &str, timeout: Duration) -> anyhow::Result<Vec<u8>> {
    crate::netns::reach(addr, || get(addr, path, timeout))
}

fn get(addr: SocketAddr, path: &str, timeout: Duration) -> anyhow::Result<Vec<u8>> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no header end"))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let body = &raw[split + 4..];
    let status_ok = head
        .lines()
        .next()
        .map(|l| l.split_whitespace().nth(1) == Some("200"))
        .unwrap_or(false);
    if !status_ok {
        anyhow::bail!("GET {path}: {}", head.lines().next().unwrap_or(""));
    }
    if head.contains("transfer-encoding: chunked") {
        return dechunk(body);
    }
    Ok(body.to_vec())
}

fn dechunk(mut body: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| anyhow::anyhow!("bad chunk"))?;
        let size_text = String::from_utf8_lossy(&body[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)?;
        body = &body[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if body.len() < size {
            anyhow::bail!("short chunk");
        }
        out.extend_from_slice(&body[..size]);
        body = body.get(size + 2..).unwrap_or(&[]);
    }
}

/// Poll `/members` every `every` and `/stats` about once a second into `view`; nothing while
/// `paused` is set.
pub fn spawn_poller(
    me: String,
    api: SocketAddr,
    view: Arc<Mutex<View>>,
    stop: Arc<AtomicBool>,
    paused: Arc<AtomicBool>,
    every: Duration,
) {
    std::thread::spawn(move || {
        // In the node's namespace, if it has one, for good: no thread per request.
        if let Some(ns) = crate::netns::Netns::ns_of(api)
            && let Err(e) = crate::netns::enter(&ns)
        {
            eprintln!("# poller of {me}: {e}");
        }
        let mut last_stats: Option<Instant> = None;
        while !stop.load(Ordering::Relaxed) {
            if paused.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            let tick = Instant::now();
            if let Some(members) = fetch_members(api) {
                let t = now_ms();
                if let Ok(mut v) = view.lock() {
                    for (name, state) in members.iter().filter(|(n, _)| *n != me) {
                        // "suspect" is not a verdict: the node still counts as up.
                        v.mark(name, matches!(state.as_str(), "alive" | "suspect"), t);
                    }
                }
            }
            // `/stats` about once a second; with slow polls (`overload`, which needs no bytes)
            // only until the first answer.
            let stats_due = last_stats.is_none_or(|t| {
                every < Duration::from_secs(2) && t.elapsed() >= Duration::from_secs(1)
            });
            if stats_due && let Some((bytes, datagrams)) = fetch_stats(api) {
                if let Ok(mut v) = view.lock() {
                    v.bytes_sent = bytes;
                    v.datagrams_sent = datagrams;
                    v.stats_t_ms = now_ms();
                    v.ready = true;
                }
                last_stats = Some(Instant::now());
            }
            if let Some(rest) = every.checked_sub(tick.elapsed()) {
                std::thread::sleep(rest);
            }
        }
    });
}

/// When the node at `api` itself declared `victim` down, at or after `after_ms`: the `at`
/// (ms) of its first such `node_down` event (`GET /api/v1/events`), by its own clock, which on
/// one machine is the driver's. Detection times taken from these do not depend on how often
/// the driver polls, so the polls can be slow enough not to load the machine.
pub fn down_event_at(api: SocketAddr, victim: &str, after_ms: u64) -> Option<u64> {
    let path = format!("/api/v1/events?since=10m&node={victim}");
    let body = http_get_within(api, &path, Duration::from_secs(5)).ok()?;
    let serde_json::Value::Array(events) = serde_json::from_slice(&body).ok()? else {
        return None;
    };
    events
        .iter()
        .filter(|e| e["kind"] == "node_down" && e["node"] == victim)
        .filter_map(|e| humantime_ms(e["at"].as_str()?))
        .filter(|at| *at >= after_ms)
        .min()
}

/// (name, state) of every entry of `GET /api/v1/members`.
fn fetch_members(api: SocketAddr) -> Option<Vec<(String, String)>> {
    let body = http_get(api, "/api/v1/members").ok()?;
    let serde_json::Value::Array(members) = serde_json::from_slice(&body).ok()? else {
        return None;
    };
    Some(
        members
            .iter()
            .filter_map(|m| {
                Some((
                    m["name"].as_str()?.to_string(),
                    m["state"].as_str()?.to_string(),
                ))
            })
            .collect(),
    )
}

/// (bytes_sent, datagrams_sent) from `GET /api/v1/stats`.
/// Bytes (on the wire) and datagrams the node at `api` has sent (`GET /api/v1/stats`).
pub fn fetch_stats(api: SocketAddr) -> Option<(u64, u64)> {
    let body = http_get(api, "/api/v1/stats").ok()?;
    let s: serde_json::Value = serde_json::from_slice(&body).ok()?;
    // What went on the wire (sealed frames included) where the daemon counts it; the
    // protocol's own count (plaintext) from daemons that predate the gate.
    let bytes = s["wire_bytes_sent"]
        .as_u64()
        .or_else(|| s["bytes_sent"].as_u64())?;
    Some((bytes, s["datagrams_sent"].as_u64()?))
}

/// Every event in the daemon's history (`GET /api/v1/events?after=ID`, page by page).
pub fn fetch_events(api: SocketAddr) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut all = Vec::new();
    let mut after = 0i64;
    loop {
        let body = http_get_within(
            api,
            &format!("/api/v1/events?after={after}"),
            Duration::from_secs(15),
        )?;
        let serde_json::Value::Array(page) = serde_json::from_slice(&body)? else {
            anyhow::bail!("/api/v1/events: not an array");
        };
        let Some(last) = page.last().and_then(|e| e["id"].as_i64()) else {
            return Ok(all);
        };
        after = last;
        all.extend(page);
    }
}

/// "2026-11-22T15:30:09.120Z" as ms since the epoch.
pub fn at_ms(s: &str) -> Option<u64> {
    humantime_ms(s)
}
