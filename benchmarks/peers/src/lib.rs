//! Shared by the `peer-*` binaries: argument parsing, the JSON lines they
//! print, and the host-metric-like key/values they gossip.
//!
//! Every peer prints to stdout, one JSON object per line:
//! `{"t_ms":..,"event":"up"|"down","node":NAME}` when the library reports a
//! membership change, and `{"t_ms":..,"stats":{"bytes_sent":N,"datagrams_sent":N}}`
//! once a second (cumulative counters of UDP payload bytes this process sent).

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Command line of a `peer-*` binary.
#[derive(Debug, Clone)]
pub struct PeerArgs {
    pub name: String,
    pub listen: SocketAddr,
    pub seeds: Vec<SocketAddr>,
    /// Zero means "do not publish metrics".
    pub metrics_interval: Duration,
    /// Expected cluster size (foca's `Config::new_lan` needs it).
    pub cluster_size: u32,
}

impl PeerArgs {
    pub fn parse() -> anyhow::Result<Self> {
        let mut name = None;
        let mut listen = None;
        let mut seeds = Vec::new();
        let mut metrics_interval = Duration::ZERO;
        let mut cluster_size = 16;
        let mut args = std::env::args().skip(1);
        while let Some(flag) = args.next() {
            let mut value = || {
                args.next()
                    .ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))
            };
            match flag.as_str() {
                "--name" => name = Some(value()?),
                "--listen" => listen = Some(value()?.parse()?),
                "--seed" => seeds.push(value()?.parse()?),
                "--metrics-interval" => metrics_interval = Duration::from_secs(value()?.parse()?),
                "--cluster-size" => cluster_size = value()?.parse()?,
                other => anyhow::bail!("unknown argument {other}"),
            }
        }
        Ok(Self {
            name: name.ok_or_else(|| anyhow::anyhow!("--name is required"))?,
            listen: listen.ok_or_else(|| anyhow::anyhow!("--listen is required"))?,
            seeds,
            metrics_interval,
            cluster_size,
        })
    }
}

fn emit(line: serde_json::Value) {
    let mut out = std::io::stdout().lock();
    // The driver reads a pipe; if it is gone we have nothing to report to.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

pub fn emit_membership(event: &str, node: &str) {
    emit(serde_json::json!({"t_ms": now_ms(), "event": event, "node": node}));
}

pub fn emit_note(note: &str) {
    emit(serde_json::json!({"t_ms": now_ms(), "note": note}));
}

/// Counters of UDP payload bytes / datagrams handed to the kernel.
#[derive(Default, Debug)]
pub struct SendCounters {
    pub bytes: AtomicU64,
    pub datagrams: AtomicU64,
}

impl SendCounters {
    pub fn record(&self, bytes: usize) {
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        self.datagrams.fetch_add(1, Ordering::Relaxed);
    }

    pub fn emit(&self) {
        emit(serde_json::json!({
            "t_ms": now_ms(),
            "stats": {
                "bytes_sent": self.bytes.load(Ordering::Relaxed),
                "datagrams_sent": self.datagrams.load(Ordering::Relaxed),
            }
        }));
    }
}

/// Eight host-metric-like key/values, read from /proc so they change the way
/// real metrics do (a few digits move every interval).
pub fn host_metrics() -> Vec<(String, String)> {
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut load = loadavg.split_whitespace();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem = |key: &str| {
        meminfo
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("0")
            .to_string()
    };
    let uptime = std::fs::read_to_string("/proc/uptime").unwrap_or_default();
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpu_busy = stat
        .lines()
        .next()
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .take(3)
                .filter_map(|v| v.parse::<u64>().ok())
                .sum::<u64>()
        })
        .unwrap_or(0);
    vec![
        ("load1".into(), load.next().unwrap_or("0").into()),
        ("load5".into(), load.next().unwrap_or("0").into()),
        ("load15".into(), load.next().unwrap_or("0").into()),
        ("mem_free_kb".into(), mem("MemFree:")),
        ("mem_available_kb".into(), mem("MemAvailable:")),
        ("cached_kb".into(), mem("Cached:")),
        (
            "uptime_s".into(),
            uptime.split_whitespace().next().unwrap_or("0").into(),
        ),
        ("cpu_busy_ticks".into(), cpu_busy.to_string()),
    ]
}
