//! Keeping the file bounded: raw samples older than `store.raw_retention` are folded into
//! 1-minute and 1-hour rollups (n, min, avg, max) and deleted; rollups and events older than
//! `store.rollup_retention` are deleted.
//!
//! Rollups are made when raw samples expire, not as they arrive, so a sample that comes late
//! (back-fill) is still counted; one that comes after its hour was folded is merged into the
//! existing rollup (counts add, the average is weighted). The work goes one hour of samples per
//! transaction, so a large backlog never holds the writer for long. `now` is an argument: tests
//! run a year in virtual time.

use super::StoreError;
use rusqlite::{Connection, params};
use std::time::Duration;

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;

/// What one maintenance pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Maintained {
    pub samples_folded: usize,
    pub rollups_deleted: usize,
    pub events_deleted: usize,
}

/// Folds and deletes what `now` puts past the retentions.
pub fn maintain(
    conn: &mut Connection,
    now_ms: i64,
    raw_retention: Duration,
    rollup_retention: Duration,
) -> Result<Maintained, StoreError> {
    let mut done = Maintained::default();
    // Fold whole hours only, so an hour's rollup is made from all of its samples at once.
    let cutoff = floor(now_ms - raw_retention.as_millis() as i64, HOUR_MS);
    // Tables are clustered on (series, at): ask per series, never scan by time alone.
    let oldest: Option<i64> = conn.query_row(
        "SELECT min((SELECT min(at) FROM samples WHERE series = series.id)) FROM series",
        [],
        |r| r.get(0),
    )?;
    if let Some(oldest) = oldest {
        let mut hour = floor(oldest, HOUR_MS);
        while hour < cutoff {
            let end = hour + HOUR_MS;
            let tx = conn.transaction()?;
            for (table, width) in [("rollup_1m", MINUTE_MS), ("rollup_1h", HOUR_MS)] {
                tx.execute(&fold_sql(table), params![hour, end, width])?;
            }
            done.samples_folded += tx.execute(
                "DELETE FROM samples
                 WHERE series IN (SELECT id FROM series) AND at >= ?1 AND at < ?2",
                params![hour, end],
            )?;
            tx.commit()?;
            hour = end;
        }
    }
    let horizon = now_ms - rollup_retention.as_millis() as i64;
    let tx = conn.transaction()?;
    for table in ["rollup_1m", "rollup_1h"] {
        done.rollups_deleted += tx.execute(
            &format!("DELETE FROM {table} WHERE series IN (SELECT id FROM series) AND bucket < ?1"),
            [horizon],
        )?;
    }
    done.events_deleted += tx.execute("DELETE FROM events WHERE at < ?1", [horizon])?;
    tx.commit()?;
    Ok(done)
}

fn floor(ms: i64, width: i64) -> i64 {
    ms.div_euclid(width) * width
}

/// Folds the samples of `[?1, ?2)` into `table`'s buckets of width `?3`, merging with a bucket
/// that is already there.
fn fold_sql(table: &str) -> String {
    format!(
        "INSERT INTO {table} (series, bucket, n, min, avg, max)
             SELECT x.series, x.at - (x.at % ?3), count(*), min(x.value), avg(x.value),
                    max(x.value)
             FROM series s JOIN samples x ON x.series = s.id AND x.at >= ?1 AND x.at < ?2
             GROUP BY x.series, x.at - (x.at % ?3)
         ON CONFLICT (series, bucket) DO UPDATE SET
             n = n + excluded.n,
             min = min(min, excluded.min),
             max = max(max, excluded.max),
             avg = (avg * n + excluded.avg * excluded.n) / (n + excluded.n)"
    )
}
