//! The store on real SQLite files: idempotent writes, queries, rollups and retention in
//! virtual time.

use super::query::{self, EventFilter};
use super::record::Row;
use super::retention::maintain;
use super::writer::Writer;
use super::{StoreError, schema};
use crate::types::Time;
use crate::wire::{EventRow, Sample};
use std::time::Duration;

const DAY_MS: u64 = 86_400_000;
const T0: u64 = 1_700_000_000_000 - 1_700_000_000_000 % DAY_MS;

fn sample(node: &str, metric: &str, at: u64, value: f64) -> Row {
    Row::Sample(Sample {
        node: node.into(),
        metric: metric.into(),
        at: Time(at),
        value,
    })
}

fn event(node: &str, kind: &str, inc: u64, at: u64) -> Row {
    Row::Event(EventRow {
        at: Time(at),
        node: node.into(),
        kind: kind.into(),
        ident: format!("{kind}:{node}:{inc}"),
        incarnation: Some(inc),
        last_heard: None,
        detail: format!("{kind} {inc}"),
        json: serde_json::json!({
            "at": Time(at).to_rfc3339(), "node": node, "kind": kind, "detail": "d",
            "incarnation": inc,
        })
        .to_string(),
    })
}

fn count(w: &Writer, table: &str) -> i64 {
    w.connection()
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .expect("count")
}

#[test]
fn the_same_rows_written_twice_are_one_row_each() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut w = Writer::open(dir.path()).expect("open");
    let rows = [
        sample("a", "load1", T0, 0.5),
        sample("a", "load5", T0, 0.25),
        event("a", "node_down", 3, T0),
    ];
    let first = w.write(&rows).expect("write");
    assert_eq!((first.samples, first.events), (2, 1));
    let second = w.write(&rows).expect("write again");
    assert_eq!((second.samples, second.events), (0, 0));
    // The same incident seen later (another host's moment) is still one event.
    let later = w
        .write(&[event("a", "node_down", 3, T0 + 700)])
        .expect("write");
    assert_eq!(later.events, 0);
    drop(w);
    let w = Writer::open(dir.path()).expect("reopen");
    assert_eq!((count(&w, "samples"), count(&w, "events")), (2, 1));
}

#[test]
fn history_lists_one_nodes_samples_oldest_first_and_filters_by_metric_and_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut w = Writer::open(dir.path()).expect("open");
    let mut rows = Vec::new();
    for i in 0..10u64 {
        rows.push(sample("a", "load1", T0 + i * 5_000, i as f64));
        rows.push(sample("a", "mem_used_pct", T0 + i * 5_000, 40.0));
        rows.push(sample("b", "load1", T0 + i * 5_000, 9.0));
    }
    w.write(&rows).expect("write");
    let conn = w.connection();
    let now = Time(T0 + 60_000);
    let all = query::history(conn, "a", None, Time(T0), now).expect("history");
    assert_eq!(all.len(), 20);
    assert_eq!(all[0]["at"], Time(T0).to_rfc3339());
    let load = query::history(conn, "a", Some("load1"), Time(T0 + 25_000), now).expect("h");
    let values: Vec<f64> = load.iter().filter_map(|v| v["value"].as_f64()).collect();
    assert_eq!(values, [5.0, 6.0, 7.0, 8.0, 9.0]);
    assert_eq!(load[0]["metric"], "load1");
    assert_eq!(
        load[0].as_object().map(|o| o.len()),
        Some(3),
        "raw samples have exactly at, metric, value: {}",
        load[0]
    );
}

#[test]
fn binned_history_averages_each_bucket_and_keeps_its_extremes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut w = Writer::open(dir.path()).expect("open");
    // T0 is a multiple of 20 s, so buckets of 20 s hold samples 0..=3, 4..=7 and 8, 9.
    assert_eq!(T0 % 20_000, 0);
    let rows: Vec<_> = (0..10u64)
        .map(|i| sample("a", "load1", T0 + i * 5_000, i as f64))
        .collect();
    w.write(&rows).expect("write");
    let now = Time(T0 + 60_000);
    let binned = query::history_binned(
        w.connection(),
        "a",
        Some("load1"),
        Time(T0),
        now,
        std::time::Duration::from_secs(20),
    )
    .expect("binned");
    let cells: Vec<(f64, f64, f64, i64)> = binned
        .iter()
        .map(|b| {
            let f = |k: &str| b[k].as_f64().expect(k);
            (f("value"), f("min"), f("max"), b["n"].as_i64().expect("n"))
        })
        .collect();
    assert_eq!(
        cells,
        [(1.5, 0.0, 3.0, 4), (5.5, 4.0, 7.0, 4), (8.5, 8.0, 9.0, 2)]
    );
    assert_eq!(binned[1]["at"], Time(T0 + 20_000).to_rfc3339());
    assert_eq!(binned[0]["bucket"], "20s");
    assert_eq!(binned[0]["metric"], "load1");
}

#[test]
fn an_unknown_node_or_metric_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut w = Writer::open(dir.path()).expect("open");
    w.write(&[sample("a", "load1", T0, 1.0)]).expect("write");
    let conn = w.connection();
    let err = query::history(conn, "zz", None, Time(T0), Time(T0)).expect_err("unknown");
    assert!(matches!(err, StoreError::UnknownNode(_)), "{err}");
    assert!(err.to_string().contains("\"zz\""), "{err}");
    let err = query::history(conn, "a", Some("load9"), Time(T0), Time(T0)).expect_err("metric");
    let text = err.to_string();
    assert!(text.contains("load9") && text.contains("load1"), "{text}");
    let filter = EventFilter {
        node: Some("zz".into()),
        ..EventFilter::default()
    };
    assert!(matches!(
        query::events(conn, &filter),
        Err(StoreError::UnknownNode(_))
    ));
}

#[test]
fn events_are_listed_oldest_first_by_node_and_since_and_after_an_id_in_record_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut w = Writer::open(dir.path()).expect("open");
    w.write(&[
        event("a", "node_joined", 1, T0 + 2_000),
        event("b", "node_joined", 1, T0 + 1_000),
        event("a", "node_down", 1, T0 + 9_000),
    ])
    .expect("write");
    let conn = w.connection();
    let all = query::events(conn, &EventFilter::default()).expect("events");
    let kinds: Vec<(&str, &str)> = all
        .iter()
        .map(|e| {
            (
                e["node"].as_str().unwrap_or(""),
                e["kind"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("b", "node_joined"),
            ("a", "node_joined"),
            ("a", "node_down")
        ]
    );
    let a = query::events(
        conn,
        &EventFilter {
            node: Some("a".into()),
            since: Some(Time(T0 + 5_000)),
            after: None,
        },
    )
    .expect("events");
    assert_eq!(a.len(), 1);
    assert_eq!(a[0]["kind"], "node_down");
    let last = all[2]["id"].as_i64().expect("id");
    // A back-filled event arrives later with an older time: `after` still finds it.
    w.write(&[event("c", "node_left", 1, T0)]).expect("write");
    let newer = query::events(
        w.connection(),
        &EventFilter {
            after: Some(last),
            ..EventFilter::default()
        },
    )
    .expect("events");
    assert_eq!(newer.len(), 1);
    assert_eq!(newer[0]["node"], "c");
}

#[test]
fn retention_folds_expired_samples_into_rollups_and_history_shows_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut w = Writer::open(dir.path()).expect("open");
    // Two hours of samples every 5 s, values 0..=11 repeating each minute.
    let rows: Vec<Row> = (0..1440u64)
        .map(|i| sample("a", "load1", T0 + i * 5_000, (i % 12) as f64))
        .collect();
    w.write(&rows).expect("write");
    let raw = Duration::from_secs(7 * 86_400);
    let year = Duration::from_secs(365 * 86_400);
    // Six days later nothing has expired.
    let done = maintain(w.connection_mut(), (T0 + 6 * DAY_MS) as i64, raw, year).expect("m");
    assert_eq!(done.samples_folded, 0);
    // Seven days and one hour later the first hour is folded; the second not yet.
    let now = T0 + 7 * DAY_MS + 3_600_000 + 1;
    let done = maintain(w.connection_mut(), now as i64, raw, year).expect("m");
    assert_eq!(done.samples_folded, 720);
    assert_eq!(count(&w, "samples"), 720);
    assert_eq!(count(&w, "rollup_1m"), 60);
    assert_eq!(count(&w, "rollup_1h"), 1);
    let (n, min, avg, max): (i64, f64, f64, f64) = w
        .connection()
        .query_row("SELECT n, min, avg, max FROM rollup_1h", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .expect("rollup");
    assert_eq!((n, min, avg, max), (720, 0.0, 5.5, 11.0));
    let history = query::history(w.connection(), "a", None, Time(T0), Time(now)).expect("h");
    assert_eq!(
        history.len(),
        60 + 720,
        "minutes of the first hour, then raw"
    );
    assert_eq!(history[0]["bucket"], "1m");
    assert_eq!(history[0]["min"], 0.0);
    assert_eq!(history[0]["max"], 11.0);
    assert_eq!(history[0]["value"], 5.5);
    assert!(history[60].get("bucket").is_none());
    // A late sample of the folded hour merges into its rollups.
    w.write(&[sample("a", "load1", T0 + 1, 100.0)])
        .expect("write");
    maintain(w.connection_mut(), now as i64, raw, year).expect("m");
    let (n, max): (i64, f64) = w
        .connection()
        .query_row("SELECT n, max FROM rollup_1h", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .expect("rollup");
    assert_eq!((n, max), (721, 100.0));
    // A year after the samples, the rollups and events go too.
    w.write(&[event("a", "node_down", 1, T0)]).expect("write");
    let done = maintain(w.connection_mut(), (T0 + 366 * DAY_MS) as i64, raw, year).expect("m");
    assert_eq!(done.events_deleted, 1);
    assert_eq!(count(&w, "samples"), 0);
    assert_eq!(count(&w, "rollup_1m") + count(&w, "rollup_1h"), 0);
    schema::integrity_check(w.connection()).expect("integrity");
}

#[test]
fn a_long_window_reads_hourly_rollups() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut w = Writer::open(dir.path()).expect("open");
    let rows: Vec<Row> = (0..720u64)
        .map(|i| sample("a", "load1", T0 + i * 5_000, 1.0))
        .collect();
    w.write(&rows).expect("write");
    let now = T0 + 40 * DAY_MS;
    maintain(
        w.connection_mut(),
        now as i64,
        Duration::from_secs(7 * 86_400),
        Duration::from_secs(365 * 86_400),
    )
    .expect("m");
    let h = query::history(w.connection(), "a", None, Time(T0), Time(now)).expect("h");
    assert_eq!(h.len(), 1);
    assert_eq!(h[0]["bucket"], "1h");
    assert_eq!(h[0]["n"], 720);
}
