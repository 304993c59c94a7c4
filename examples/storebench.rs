//! History store figures for BENCHMARKS.md: sustained write rate, disk bytes per node-day
//! (raw samples, then rollups) and the latency of a one-day `history` query, for N simulated
//! nodes announcing their 7 host metrics every 5 s, written through the store's own writer
//! into a real SQLite file (WAL, synchronous=FULL).
//!
//! `cargo run --release --example storebench -- [--nodes 128] [--hours 24] [--dir DIR]`

use nbwatch::store::query;
use nbwatch::store::record::Row;
use nbwatch::store::retention::maintain;
use nbwatch::store::writer::Writer;
use nbwatch::types::Time;
use nbwatch::wire::Sample;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const METRICS: [&str; 7] = [
    "load1",
    "load5",
    "load15",
    "cpu_pct",
    "mem_used_pct",
    "swap_used_pct",
    "disk_used_pct",
];
const INTERVAL_MS: u64 = 5_000;
const DAY_MS: u64 = 86_400_000;

fn main() -> anyhow::Result<()> {
    let mut nodes = 128usize;
    let mut hours = 24u64;
    let mut dir: Option<PathBuf> = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_default();
        match flag.as_str() {
            "--nodes" => nodes = value.parse()?,
            "--hours" => hours = value.parse()?,
            "--dir" => dir = Some(value.into()),
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    let tmp = tempfile::tempdir()?;
    let dir = dir.unwrap_or_else(|| tmp.path().to_path_buf());
    let mut writer = Writer::open(&dir)?;
    let start = Time::wall_now().as_millis() / DAY_MS * DAY_MS - 30 * DAY_MS;
    let mut rng = SmallRng::seed_from_u64(7);
    let names: Vec<String> = (0..nodes).map(|i| format!("node-{i:03}")).collect();
    let mut state: Vec<[f64; 7]> = (0..nodes)
        .map(|_| [0.5, 0.5, 0.5, 10.0, 40.0, 0.0, 60.0])
        .collect();
    let rounds = hours * 3_600_000 / INTERVAL_MS;
    let mut sample_round = |round: u64, rows: &mut Vec<Row>| {
        for (n, name) in names.iter().enumerate() {
            // Each node announces at its own phase within the 5 s.
            let at = start + round * INTERVAL_MS + (n as u64 * 37) % INTERVAL_MS;
            let s = &mut state[n];
            for (i, v) in s.iter_mut().enumerate() {
                let step: f64 = rng.random_range(-1.0..1.0);
                *v = (*v + step * if i < 3 { 0.05 } else { 0.5 }).clamp(0.0, 100.0);
                let decimals = if i < 3 { 100.0 } else { 10.0 };
                rows.push(Row::Sample(Sample {
                    node: name.clone(),
                    metric: METRICS[i].to_string(),
                    at: Time(at),
                    value: (*v * decimals).round() / decimals,
                }));
            }
        }
    };

    // 1. Per-tick batches, as the StoreActor writes in real time (one 500 ms tick holds a
    //    tenth of a round): each is a transaction with its fsync.
    let mut rows = Vec::new();
    let tick_rounds = 20u64;
    let t = Instant::now();
    let mut tick_rows = 0usize;
    for round in 0..tick_rounds {
        rows.clear();
        sample_round(round, &mut rows);
        for chunk in rows.chunks(rows.len().div_ceil(10)) {
            writer.write(chunk)?;
            tick_rows += chunk.len();
        }
    }
    let per_tick = t.elapsed();
    println!(
        "per-tick batches of {} rows: {:.0} rows/s ({:.2} ms per commit)",
        rows.len().div_ceil(10),
        tick_rows as f64 / per_tick.as_secs_f64(),
        per_tick.as_secs_f64() * 1e3 / (tick_rounds * 10) as f64
    );

    // 2. Backlog batches (MAX_BATCH rows per transaction): the sustained rate.
    let t = Instant::now();
    let mut total = 0usize;
    let mut batch = Vec::new();
    for round in tick_rounds..rounds {
        sample_round(round, &mut batch);
        if batch.len() >= nbwatch::actors::store::MAX_BATCH {
            writer.write(&batch)?;
            total += batch.len();
            batch.clear();
        }
    }
    writer.write(&batch)?;
    total += batch.len();
    let sustained = t.elapsed();
    println!(
        "sustained, {} rows per transaction: {:.0} rows/s ({total} rows in {:.1} s)",
        nbwatch::actors::store::MAX_BATCH,
        total as f64 / sustained.as_secs_f64(),
        sustained.as_secs_f64()
    );

    let conn = writer.connection();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    let file = dir.join(nbwatch::store::schema::FILE_NAME);
    let node_days = nodes as f64 * hours as f64 / 24.0;
    let raw_bytes = std::fs::metadata(&file)?.len();
    println!(
        "raw: {} bytes for {node_days:.0} node-days = {:.0} bytes per node-day ({:.1} bytes per sample)",
        raw_bytes,
        raw_bytes as f64 / node_days,
        raw_bytes as f64 / (node_days * 7.0 * 17_280.0)
    );

    // 3. A one-day history query of one node (all metrics, and one metric).
    let end = Time(start + rounds * INTERVAL_MS);
    let since = Time(end.as_millis().saturating_sub(DAY_MS));
    for metric in [None, Some("load1")] {
        let mut times = Vec::new();
        let mut n = 0;
        for _ in 0..7 {
            let t = Instant::now();
            n = query::history(conn, "node-042", metric, since, end)?.len();
            times.push(t.elapsed());
        }
        times.sort();
        println!(
            "history node-042 --since 24h{}: {n} rows, median {:.1} ms (min {:.1} ms)",
            metric.map_or(String::new(), |m| format!(" --metric {m}")),
            times[3].as_secs_f64() * 1e3,
            times[0].as_secs_f64() * 1e3
        );
    }

    // 4. Fold everything into rollups (virtual time past the raw retention) and measure.
    let t = Instant::now();
    let later = end.as_millis() as i64 + 8 * DAY_MS as i64 + 3_600_000;
    let done = maintain(
        writer.connection_mut(),
        later,
        Duration::from_secs(7 * 86_400),
        Duration::from_secs(365 * 86_400),
    )?;
    let conn = writer.connection();
    conn.execute_batch("VACUUM")?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    let rollup_bytes = std::fs::metadata(&file)?.len();
    println!(
        "rollups: folded {} samples in {:.1} s; {} bytes = {:.0} bytes per node-day (1m + 1h)",
        done.samples_folded,
        t.elapsed().as_secs_f64(),
        rollup_bytes,
        rollup_bytes as f64 / node_days
    );
    Ok(())
}
