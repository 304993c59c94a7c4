//! Records this host's samples as the daemon takes them (`probe::metrics::Sampler`), one CSV
//! line every `--every` seconds (default 5) for `--seconds` seconds (default 600): the trace
//! simbench replays (`--samples`), so that the simulated hosts' figures move as a real host's
//! do and the dead-band keeps back as many samples as it does on real daemons.
//!
//! `cargo run --release --example hosttrace -- --seconds 600 > benchmarks/host-samples.csv`
//! (run beside a real-daemon bandwidth run, whose daemons all read this machine).
//!
//! `benchmarks/host-samples.csv` holds the 14 samples (70 s) taken during the metrics-128 run of
//! 2026-12-06 01:54:27–01:56:01 UTC (build 0f3377b; the whole 150 s recording, whose later rows
//! are after that run ended, is `benchmarks/results/2026-12-06-0f3377b/host-samples-150s.csv`).

use nbwatch::probe::metrics::Sampler;
use std::time::{Duration, Instant};

fn main() {
    let (mut seconds, mut every) = (600u64, 5u64);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value: u64 = (args.next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{flag} needs a number of seconds"));
        match flag.as_str() {
            "--seconds" => seconds = value,
            "--every" => every = value.max(1),
            other => panic!("unknown flag {other} (--seconds S, --every S)"),
        }
    }
    let dir = std::env::temp_dir();
    let mut sampler = Sampler::new(&dir).expect("this host's metrics");
    println!("load1,load5,load15,cpu_pct,mem_used_pct,swap_used_pct,disk_used_pct");
    let start = Instant::now();
    let mut next = start;
    while start.elapsed() < Duration::from_secs(seconds) {
        next += Duration::from_secs(every);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        let m = sampler.sample();
        println!(
            "{},{},{},{},{},{},{}",
            m.load1, m.load5, m.load15, m.cpu_pct, m.mem_used_pct, m.swap_used_pct, m.disk_used_pct
        );
    }
}
