//! Reading the history: `events` and `history` as the CLI and the API show them. Every query
//! runs on a read-only connection of its own (WAL lets it read while the StoreActor writes).

use super::StoreError;
use crate::graph::availability::Record;
use crate::types::Time;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Value, json};

/// At most this many events in one answer (the newest, oldest first).
pub const MAX_EVENTS: usize = 10_000;
/// Windows longer than this read hourly rollups where raw samples are gone; shorter ones
/// read minutely rollups.
pub const HOURLY_BEYOND: std::time::Duration = std::time::Duration::from_secs(31 * 86_400);

/// Which events to list.
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    /// Only events at or after this time.
    pub since: Option<Time>,
    /// Only events about this node.
    pub node: Option<String>,
    /// Only events recorded after the one with this id (for `--follow`), in record order.
    pub after: Option<i64>,
}

/// The events matching `filter`, as the contract's objects plus `id` (this host's record
/// number; `after=id` asks for newer ones). Oldest first, or in record order with `after`.
pub fn events(conn: &Connection, filter: &EventFilter) -> Result<Vec<Value>, StoreError> {
    if let Some(node) = &filter.node {
        known_node(conn, node)?;
    }
    let since = filter.since.map_or(i64::MIN, |t| t.as_millis() as i64);
    let after = filter.after.unwrap_or(-1);
    let node = filter.node.as_deref();
    let sql = if filter.after.is_some() {
        "SELECT id, json FROM events
         WHERE at >= ?1 AND id > ?2 AND (?3 IS NULL OR node = ?3)
         ORDER BY id LIMIT ?4"
    } else {
        "SELECT id, json FROM (
             SELECT id, at, json FROM events
             WHERE at >= ?1 AND id > ?2 AND (?3 IS NULL OR node = ?3)
             ORDER BY at DESC, id DESC LIMIT ?4)
         ORDER BY at, id"
    };
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params![since, after, node, MAX_EVENTS as i64], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, text) = row?;
        let mut value: Value = serde_json::from_str(&text).unwrap_or_else(|_| json!({}));
        if let Value::Object(map) = &mut value {
            map.insert("id".into(), Value::from(id));
        }
        out.push(value);
    }
    Ok(out)
}

/// The event kinds failure models are made of (see `graph::availability`).
const FAILURE_KINDS: &str = "'node_down', 'node_up', 'node_joined', 'node_left', \
     'service_exited', 'service_failed', 'service_started', 'service_restarted', \
     'service_stopped'";

/// The events failure models are made of, from `since` on, and for each host and service the
/// last one before `since` (the state the window starts in), oldest first.
pub fn failure_records(conn: &Connection, since: Time) -> Result<Vec<Record>, StoreError> {
    let since = since.as_millis() as i64;
    let columns = "e.at, e.node, e.kind, json_extract(e.json, '$.service'), e.detail, e.last_heard";
    let sql = format!(
        "SELECT {columns} FROM events e
         WHERE e.at >= ?1 AND e.kind IN ({FAILURE_KINDS})
         UNION ALL
         SELECT {columns} FROM events e
         JOIN (SELECT node, json_extract(json, '$.service') AS service, MAX(at) AS at
               FROM events WHERE at < ?1 AND kind IN ({FAILURE_KINDS})
               GROUP BY node, service) last
           ON e.node = last.node AND e.at = last.at
          AND json_extract(e.json, '$.service') IS last.service
         WHERE e.kind IN ({FAILURE_KINDS})
         ORDER BY 1"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![since], |r| {
        Ok(Record {
            at: Time::from_millis(r.get::<_, i64>(0)?.max(0) as u64),
            node: r.get(1)?,
            kind: r.get(2)?,
            service: r.get(3)?,
            detail: r.get(4)?,
            last_heard: r
                .get::<_, Option<i64>>(5)?
                .map(|t| Time::from_millis(t.max(0) as u64)),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The samples of `node` since `since` (one metric or all), oldest first, as the contract's
/// `{"at", "metric", "value"}`. Where raw samples have expired, rollups stand in: `value` is
/// the bucket's average and `min`, `max`, `n` and `bucket` ("1m" or "1h") are added.
pub fn history(
    conn: &Connection,
    node: &str,
    metric: Option<&str>,
    since: Time,
    now: Time,
) -> Result<Vec<Value>, StoreError> {
    let (rows, label) = rows(conn, node, metric, since, now)?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let mut v = json!({
                "at": Time::from_millis(r.at.max(0) as u64).to_rfc3339(),
                "metric": r.metric,
                "value": r.value,
            });
            if let (Some((min, max, n)), Value::Object(map)) = (r.rollup, &mut v) {
                map.insert("min".into(), json!(min));
                map.insert("max".into(), json!(max));
                map.insert("n".into(), json!(n));
                map.insert("bucket".into(), json!(label));
            }
            v
        })
        .collect())
}

/// [`history`] averaged into buckets of `step` (aligned to multiples of `step` since the
/// epoch), so a week of 1-second samples is a chart's few hundred points, not a 10 MB answer.
/// Each bucket is `{"at" (its start), "metric", "value" (the mean), "min", "max", "n",
/// "bucket" (the step, e.g. "10m")}`; `n` counts raw samples (a rollup row counts its own n).
pub fn history_binned(
    conn: &Connection,
    node: &str,
    metric: Option<&str>,
    since: Time,
    now: Time,
    step: std::time::Duration,
) -> Result<Vec<Value>, StoreError> {
    let step_ms = (step.as_millis() as i64).max(1);
    let (rows, _) = rows(conn, node, metric, since, now)?;
    // (metric, bucket start) -> (sum, min, max, n); BTreeMap keeps metric then time order.
    let mut bins: std::collections::BTreeMap<(String, i64), (f64, f64, f64, i64)> =
        Default::default();
    for r in rows {
        let (min, max, n) = r.rollup.unwrap_or((r.value, r.value, 1));
        let n = n.max(1);
        let start = r.at.div_euclid(step_ms) * step_ms;
        let bin =
            bins.entry((r.metric, start))
                .or_insert((0.0, f64::INFINITY, f64::NEG_INFINITY, 0));
        bin.0 += r.value * n as f64;
        bin.1 = bin.1.min(min);
        bin.2 = bin.2.max(max);
        bin.3 += n;
    }
    let label =
        humantime::format_duration(std::time::Duration::from_millis(step_ms as u64)).to_string();
    let mut out: Vec<Value> = bins
        .into_iter()
        .map(|((metric, start), (sum, min, max, n))| {
            json!({
                "at": Time::from_millis(start.max(0) as u64).to_rfc3339(),
                "metric": metric,
                "value": sum / n as f64,
                "min": min,
                "max": max,
                "n": n,
                "bucket": label,
            })
        })
        .collect();
    // Oldest first across metrics, as `history` answers.
    out.sort_by(|a, b| {
        (a["at"].as_str(), a["metric"].as_str()).cmp(&(b["at"].as_str(), b["metric"].as_str()))
    });
    Ok(out)
}

/// One row of a history answer: a raw sample, or a rollup bucket with its (min, max, n).
struct Row {
    at: i64,
    metric: String,
    value: f64,
    rollup: Option<(f64, f64, i64)>,
}

/// The rows of [`history`], and the label of the rollup table they read ("1m" or "1h").
fn rows(
    conn: &Connection,
    node: &str,
    metric: Option<&str>,
    since: Time,
    now: Time,
) -> Result<(Vec<Row>, &'static str), StoreError> {
    let metrics = known_node(conn, node)?;
    if let Some(metric) = metric
        && !metrics.iter().any(|m| m == metric)
    {
        return Err(StoreError::UnknownMetric {
            node: node.to_string(),
            metric: metric.to_string(),
            known: metrics,
        });
    }
    let since_ms = since.as_millis() as i64;
    let (rollup, label) = if now.since(since) > HOURLY_BEYOND {
        ("rollup_1h", "1h")
    } else {
        ("rollup_1m", "1m")
    };
    // Per series: rollups before its first raw sample, then the raw samples.
    let sql = format!(
        "WITH s AS (SELECT id, metric FROM series WHERE node = ?1 AND (?2 IS NULL OR metric = ?2)),
              first AS (SELECT s.id, (SELECT min(at) FROM samples WHERE series = s.id) AS at
                        FROM s)
         SELECT r.bucket, s.metric, r.avg, r.min, r.max, r.n FROM {rollup} r
             JOIN s ON s.id = r.series JOIN first ON first.id = r.series
             WHERE r.bucket >= ?3 AND (first.at IS NULL OR r.bucket < first.at)
         UNION ALL
         SELECT x.at, s.metric, x.value, NULL, NULL, NULL FROM samples x
             JOIN s ON s.id = x.series WHERE x.at >= ?3
         ORDER BY 1, 2"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params![node, metric, since_ms], |r| {
        let min: Option<f64> = r.get(3)?;
        let max: Option<f64> = r.get(4)?;
        let n: Option<i64> = r.get(5)?;
        Ok(Row {
            at: r.get(0)?,
            metric: r.get(1)?,
            value: r.get(2)?,
            rollup: match (min, max, n) {
                (Some(min), Some(max), Some(n)) => Some((min, max, n)),
                _ => None,
            },
        })
    })?;
    Ok((rows.collect::<Result<_, _>>()?, label))
}

/// The metrics recorded of `node`, or [`StoreError::UnknownNode`] if nothing at all (no
/// sample, no event) was ever recorded of it.
fn known_node(conn: &Connection, node: &str) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT metric FROM series WHERE node = ?1 ORDER BY 1")?;
    let metrics: Vec<String> = stmt
        .query_map([node], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    if metrics.is_empty() {
        let any_event: Option<i64> = conn
            .query_row(
                "SELECT 1 FROM events WHERE node = ?1 LIMIT 1",
                [node],
                |r| r.get(0),
            )
            .optional()?;
        if any_event.is_none() {
            return Err(StoreError::UnknownNode(node.to_string()));
        }
    }
    Ok(metrics)
}

/// Where an export stands: the last sample sent (its time in ms and metric: samples are
/// ordered by both) and the last event sent (its id).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExportCursor {
    pub at: i64,
    pub metric: String,
    pub event: i64,
}

/// What a host owns in the history and exports (`store.remote_write`): its own samples after
/// `cursor` and up to `until` (ms), and its own events after the cursor's, oldest first, at
/// most `limit` of each.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Owned {
    /// (metric, at in ms, value).
    pub samples: Vec<(String, i64, f64)>,
    /// (id, at in ms, kind).
    pub events: Vec<(i64, i64, String)>,
}

pub fn owned(
    conn: &Connection,
    node: &str,
    cursor: &ExportCursor,
    until: i64,
    limit: usize,
) -> Result<Owned, StoreError> {
    let limit = limit as i64;
    let mut stmt = conn.prepare_cached(
        "SELECT series.metric, samples.at, samples.value FROM samples
         JOIN series ON series.id = samples.series
         WHERE series.node = ?1 AND samples.at <= ?3
           AND (samples.at > ?2 OR (samples.at = ?2 AND series.metric > ?4))
         ORDER BY samples.at, series.metric LIMIT ?5",
    )?;
    let samples = stmt
        .query_map(params![node, cursor.at, until, cursor.metric, limit], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<Result<_, _>>()?;
    let mut stmt = conn.prepare_cached(
        "SELECT id, at, kind FROM events WHERE node = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
    )?;
    let events = stmt
        .query_map(params![node, cursor.event, limit], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<Result<_, _>>()?;
    Ok(Owned { samples, events })
}
