//! What the store records of an event, as rows: pure functions, so every mapping is tested
//! without a database.
//!
//! **Samples.** A `sys` announcement of any node (its own included) becomes one sample per
//! metric, at the announcement's origin time (see `probe::metrics`; 250 ms resolution). The key of a sample is
//! (origin node, metric, origin time): the origin's clock never steps back while it runs, so
//! the origin time is the per-origin sequence number, and it is the same on every host, so a
//! sample gossiped twice or back-filled from a peer is one row. An announcement of an older
//! nbwatch carries no time and is recorded at the time it arrived here.
//!
//! A host probe's result (`probe.<name>` = "<health> <label>=<value> ...") becomes one sample
//! per perfdata item, metric `<name>.<label>`, at the time it arrived (it carries no origin
//! time; its key is then per host).
//!
//! Another zone's summary (`zones.<Z>`, see `gossip::core::zones`) becomes samples of node
//! `zone:<Z>` at the summary's version (see [`zone_rows`]): a host keeps its own zone in full
//! and the other zones as their summaries.
//!
//! **Events.** Membership events are derived by each host on its own, at slightly different
//! moments, so their key is what they are about, not when: `<kind>:<node>:<incarnation>`
//! (`node_down:mythbox:3`, the alert id of DESIGN §5). Every host's record then holds one
//! `node_down` per incident, and back-fill does not add a second one. A service event is only
//! seen by its own node; its key adds the service and the time: `<kind>:<node>:<service>:<ms>`.
//! A leader change is this node's: `leader_changed:<node>:<ms>`. An alert sent by any node (a
//! `sent` entry of the gossiped alert log, or this node's own send) is `alert_sent:<incident>`.

use crate::events::{ClusterEvent, NodeEvent, RecordedEvent};
use crate::keys::ALERT_PREFIX;
use crate::keys::alert::{AlertEntry, Stage};
use crate::keys::probe::add_metrics;
use crate::keys::sample::parse_sample;
use crate::keys::zone::{Published, ZONES_PREFIX};
use crate::keys::{METRICS_KEY, PROBE_PREFIX};
use crate::types::{NodeName, Time};
use crate::wire::{EventRow, Sample};

#[derive(Clone, Debug, PartialEq)]
pub enum Row {
    Sample(Sample),
    Event(EventRow),
}

/// The rows `recorded` adds to the history of node `me` (whose service events it may be).
pub fn rows(recorded: &RecordedEvent, me: &NodeName, out: &mut Vec<Row>) {
    if let NodeEvent::Cluster(ClusterEvent::StateChanged { node, key, value }) = &recorded.event {
        if key == METRICS_KEY
            && let Some(value) = value
        {
            let (metrics, origin) = parse_sample(value, recorded.at);
            let at = origin.unwrap_or(recorded.at);
            out.extend(metrics.into_iter().map(|(metric, value)| {
                Row::Sample(Sample {
                    node: node.0.clone(),
                    metric: metric.to_string(),
                    at,
                    value,
                })
            }));
        }
        if let (Some(zone), Some(value)) = (key.strip_prefix(ZONES_PREFIX), value) {
            out.extend(zone_rows(zone, value));
        }
        if let (Some(id), Some(value)) = (key.strip_prefix(ALERT_PREFIX), value) {
            out.extend(alert_row(recorded.at, node, id, value).map(Row::Event));
        }
        if let (Some(probe), Some(value)) = (key.strip_prefix(PROBE_PREFIX), value) {
            // A host probe's perfdata: `<probe>.<label>` samples, at the time they arrived (a
            // probe result carries no origin time).
            let mut metrics = serde_json::Map::new();
            add_metrics(probe, value, &mut metrics);
            out.extend(metrics.into_iter().filter_map(|(metric, v)| {
                Some(Row::Sample(Sample {
                    node: node.0.clone(),
                    metric,
                    at: recorded.at,
                    value: v.as_f64()?,
                }))
            }));
        }
        return;
    }
    if let Some(event) = event_row(recorded, me) {
        out.push(Row::Event(event));
    }
}

/// Another zone's summary, as its zone's publisher wrote it (`zones.<Z>`), as samples of node
/// `zone:<Z>`: `up`, `total`, `down`, `incidents`, and `<metric>.min`, `.mean`, `.max` of each
/// aggregate, at the summary's version (a time), so each summary is one set of rows on every
/// host however often it is published.
pub fn zone_rows(zone: &str, value: &str) -> Vec<Row> {
    let Ok(p) = Published::parse(value) else {
        return Vec::new();
    };
    let s = &p.summary;
    let at = crate::wire::Beat(u64::from(s.version) * 10).time();
    let node = format!("zone:{zone}");
    let mut values: Vec<(String, f64)> = vec![
        ("up".into(), f64::from(s.up)),
        ("total".into(), f64::from(s.total)),
        ("down".into(), f64::from(s.down)),
        ("incidents".into(), f64::from(s.incidents)),
    ];
    for (metric, min, mean, max, _) in &s.metrics {
        values.push((format!("{metric}.min"), f64::from(*min)));
        values.push((format!("{metric}.mean"), f64::from(*mean)));
        values.push((format!("{metric}.max"), f64::from(*max)));
    }
    (values.into_iter())
        .map(|(metric, value)| {
            Row::Sample(Sample {
                node: node.clone(),
                metric,
                at,
                value,
            })
        })
        .collect()
}

/// A `sent` entry of any node's alert log, as an `alert_sent` event of the sender: every host
/// records every alert sent in the cluster, once per incident (its key is the incident id, the
/// same as when the sender records its own send).
pub fn alert_row(at: Time, by: &NodeName, id: &str, value: &str) -> Option<EventRow> {
    let entry = AlertEntry::parse(value).ok()?;
    if entry.stage != Stage::Sent {
        return None;
    }
    let summary = entry
        .summary
        .as_ref()
        .and_then(|s| s.as_str())
        .unwrap_or("");
    let results: Vec<String> = entry
        .sinks
        .iter()
        .map(|r| format!("{}: {}", r.sink, r.result))
        .collect();
    let detail = format!("{summary} ({id}) [{}]", results.join("; "));
    let json = serde_json::json!({
        "at": at.to_rfc3339(), "node": by.as_str(), "kind": "alert_sent",
        "detail": detail, "incident": id,
    });
    Some(EventRow {
        at,
        node: by.to_string(),
        kind: "alert_sent".into(),
        ident: format!("alert_sent:{id}"),
        incarnation: None,
        last_heard: None,
        detail,
        json: json.to_string(),
    })
}

/// The event row of a membership or service event (`None` for `StateChanged`): its fields
/// from the typed event, its `json` the same event as the API shows it.
pub fn event_row(recorded: &RecordedEvent, me: &NodeName) -> Option<EventRow> {
    let d = recorded.describe(me)?;
    let (node, kind) = (d.node.as_str(), d.kind);
    let ident = match &recorded.event {
        NodeEvent::Cluster(_) => format!("{kind}:{node}:{}", d.incarnation.unwrap_or(0)),
        NodeEvent::Service(e) => {
            format!("{kind}:{node}:{}:{}", e.service, recorded.at.as_millis())
        }
        NodeEvent::Leader(_) => format!("{kind}:{node}:{}", recorded.at.as_millis()),
        NodeEvent::AlertSent(a) => format!("alert_sent:{}", a.id),
    };
    Some(EventRow {
        at: recorded.at,
        json: d.to_json().to_string(),
        node: d.node.to_string(),
        kind: kind.to_string(),
        ident,
        incarnation: d.incarnation,
        last_heard: d.last_heard,
        detail: d.detail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{ServiceEvent, ServiceEventKind};
    use crate::types::Incarnation;

    fn cluster(at: u64, event: ClusterEvent) -> RecordedEvent {
        RecordedEvent {
            at: Time(at),
            event: NodeEvent::Cluster(event),
        }
    }

    fn all(recorded: &RecordedEvent) -> Vec<Row> {
        let mut out = Vec::new();
        rows(recorded, &NodeName::from("me"), &mut out);
        out
    }

    #[test]
    fn a_sys_announcement_is_one_sample_per_metric_at_its_origin_time() {
        let r = cluster(
            5_000,
            ClusterEvent::StateChanged {
                node: NodeName::from("a"),
                key: "sys".into(),
                value: Some(format!(
                    "0.5 1 2 3 4 5 6 {}",
                    crate::keys::sample::origin_token(Time(4_250))
                )),
            },
        );
        let out = all(&r);
        assert_eq!(out.len(), 7);
        assert_eq!(
            out[0],
            Row::Sample(Sample {
                node: "a".into(),
                metric: "load1".into(),
                at: Time(4_250),
                value: 0.5
            })
        );
    }

    #[test]
    fn an_announcement_without_origin_time_is_recorded_when_it_arrived() {
        let r = cluster(
            5_000,
            ClusterEvent::StateChanged {
                node: NodeName::from("a"),
                key: "sys".into(),
                value: Some("0.5 1 2 3 4 5 6".into()),
            },
        );
        assert!(
            all(&r)
                .iter()
                .all(|row| matches!(row, Row::Sample(s) if s.at == Time(5_000)))
        );
    }

    #[test]
    fn other_keys_and_deletes_record_nothing() {
        for (key, value) in [
            ("sys", None),
            ("svc.db", Some("x")),
            ("sys.boot", Some("9")),
        ] {
            let r = cluster(
                1,
                ClusterEvent::StateChanged {
                    node: NodeName::from("a"),
                    key: key.into(),
                    value: value.map(str::to_string),
                },
            );
            assert!(all(&r).is_empty(), "{key}");
        }
    }

    #[test]
    fn a_down_event_is_keyed_by_node_and_incarnation_and_keeps_last_heard() {
        let down = |at| {
            cluster(
                at,
                ClusterEvent::NodeDown {
                    node: NodeName::from("a"),
                    incarnation: Incarnation(3),
                    last_heard: Time(900),
                    witnesses: vec![NodeName::from("b"), NodeName::from("c")],
                },
            )
        };
        let (one, two) = (all(&down(1_000)), all(&down(1_700)));
        let (Row::Event(one), Row::Event(two)) = (&one[0], &two[0]) else {
            panic!("not events: {one:?}");
        };
        assert_eq!(one.ident, "node_down:a:3");
        assert_eq!(one.ident, two.ident, "seen at two times, one incident");
        assert_eq!(one.last_heard, Some(Time(900)));
        assert_eq!(one.incarnation, Some(3));
        assert_eq!(one.kind, "node_down");
        let json: serde_json::Value = serde_json::from_str(&one.json).expect("json");
        assert_eq!(json["witnesses"], serde_json::json!(["b", "c"]));
    }

    #[test]
    fn a_service_event_is_keyed_by_node_service_and_time() {
        let r = RecordedEvent {
            at: Time(42),
            event: NodeEvent::Service(ServiceEvent {
                service: "db".into(),
                tree: "tv".into(),
                kind: ServiceEventKind::Stopped,
            }),
        };
        let Row::Event(e) = &all(&r)[0] else {
            panic!("not an event");
        };
        assert_eq!(e.ident, "service_stopped:me:db:42");
        assert_eq!(e.node, "me");
    }

    #[test]
    fn a_sent_entry_of_any_nodes_alert_log_is_one_alert_sent_event_per_incident() {
        let sent = r#"{"st":"sent","at":5000,"sinks":[["exec#1","ok"]],"summary":"a stopped"}"#;
        let r = cluster(
            6_000,
            ClusterEvent::StateChanged {
                node: NodeName::from("b"),
                key: "alert.node_down:a:3".into(),
                value: Some(sent.into()),
            },
        );
        let out = all(&r);
        let [Row::Event(e)] = out.as_slice() else {
            panic!("{out:?}");
        };
        assert_eq!(e.kind, "alert_sent");
        assert_eq!(e.node, "b");
        assert_eq!(e.ident, "alert_sent:node_down:a:3");
        assert!(
            e.detail.contains("exec#1: ok") && e.detail.contains("a stopped"),
            "{}",
            e.detail
        );
        // A claim is not a send.
        let claim = cluster(
            6_000,
            ClusterEvent::StateChanged {
                node: NodeName::from("b"),
                key: "alert.node_down:a:3".into(),
                value: Some(r#"{"st":"claim","at":5000}"#.into()),
            },
        );
        assert!(all(&claim).is_empty());
    }

    #[test]
    fn a_host_probes_perfdata_is_one_sample_per_item() {
        let r = cluster(
            7_000,
            ClusterEvent::StateChanged {
                node: NodeName::from("a"),
                key: "probe.disk_root".into(),
                value: Some("warning free_pct=12.5 free_mb=2048 junk".into()),
            },
        );
        let mut samples: Vec<(String, f64)> = all(&r)
            .into_iter()
            .filter_map(|row| match row {
                Row::Sample(s) if s.node == "a" && s.at == Time(7_000) => Some((s.metric, s.value)),
                _ => None,
            })
            .collect();
        samples.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(
            samples,
            vec![
                ("disk_root.free_mb".to_string(), 2048.0),
                ("disk_root.free_pct".to_string(), 12.5)
            ]
        );
    }
}
