//! Long-term history in a real time-series database: each host exports what it owns — its own
//! samples and its own events, not everyone's — through Prometheus' remote-write protocol
//! ([`remote_write`]) to `store.remote_write`, so a site keeps one history in Prometheus,
//! VictoriaMetrics, Mimir or Thanos instead of on every host.
//!
//! The queue is the history itself: the exporter reads its own rows from the SQLite file
//! after a cursor (`export-cursor.json` in the data dir), sends them in batches, and moves the
//! cursor only once the receiver accepted a batch. So a receiver that is down or restarting
//! loses nothing: the same batch is sent again, with a growing wait, and the backlog follows
//! in order once it is back (back-pressure: one batch in flight). The queue is bounded by
//! `store.raw_retention`: samples older than that are gone from the history before they can
//! be sent. A batch the receiver refuses for good (a 4xx other than 429: out of order, too
//! old) is skipped, as Prometheus' own sender does, and said in the log.
//!
//! Series: each metric of the host's sample under the name `/metrics` gives it
//! ([`crate::keys::sample::HOST_SERIES`]: `nbwatch_node_load1`, `nbwatch_node_cpu_busy_ratio`,
//! ...) with the label `node`; each event as `nbwatch_event{node, kind}` = 1 at its time.
//! Host-probe perfdata is not exported (the history keeps its values, not its units).

pub mod remote_write;

use crate::keys::sample::HOST_SERIES;
use crate::store::query::Owned;
use remote_write::Series;
use std::collections::BTreeMap;

/// A series by its name and, for events, its kind.
type SeriesKey = (String, Option<String>);

/// The series a batch of owned rows makes.
pub fn series(node: &str, owned: &Owned) -> Vec<Series> {
    let mut by_name: BTreeMap<SeriesKey, Vec<(i64, f64)>> = BTreeMap::new();
    for (metric, at, value) in &owned.samples {
        if let Some((_, name, divisor, _)) = HOST_SERIES.iter().find(|(m, ..)| m == metric) {
            (by_name.entry((name.to_string(), None)).or_default()).push((*at, value / divisor));
        }
    }
    for (_, at, kind) in &owned.events {
        let key = ("nbwatch_event".to_string(), Some(kind.clone()));
        by_name.entry(key).or_default().push((*at, 1.0));
    }
    by_name
        .into_iter()
        .map(|((name, kind), mut samples)| {
            samples.sort_by_key(|(at, _)| *at);
            samples.dedup_by_key(|(at, _)| *at);
            let mut labels = vec![
                ("__name__".to_string(), name),
                ("node".to_string(), node.to_string()),
            ];
            if let Some(kind) = kind {
                labels.push(("kind".to_string(), kind));
            }
            Series { labels, samples }
        })
        .collect()
}

/// The number of samples `series` carry.
pub fn count(series: &[Series]) -> usize {
    series.iter().map(|s| s.samples.len()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_take_the_metrics_names_and_units_and_events_are_ones() {
        let owned = Owned {
            samples: vec![
                ("load1".into(), 1000, 0.5),
                ("cpu_pct".into(), 1000, 25.0),
                ("load1".into(), 2000, 0.75),
                ("disk_root.free".into(), 1000, 9.0),
            ],
            events: vec![(7, 1500, "service_started".into())],
        };
        let s = series("nas", &owned);
        let find = |name: &str| s.iter().find(|x| x.labels[0].1 == name).expect(name);
        assert_eq!(
            find("nbwatch_node_load1").samples,
            [(1000, 0.5), (2000, 0.75)]
        );
        assert_eq!(find("nbwatch_node_cpu_busy_ratio").samples, [(1000, 0.25)]);
        let event = find("nbwatch_event");
        assert_eq!(event.samples, [(1500, 1.0)]);
        assert!(
            event
                .labels
                .contains(&("kind".into(), "service_started".into()))
        );
        assert!(event.labels.contains(&("node".into(), "nas".into())));
        // Perfdata is not exported.
        assert_eq!(count(&s), 4);
    }
}
