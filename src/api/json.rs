//! The contract's JSON shapes, built from the gossip core's views. Pure functions, so the
//! shapes are tested without a running node.

use crate::actors::gossip::StatsSnapshot;
use crate::alert::log::Log;
use crate::events::RecordedEvent;
use crate::gossip::MemberView;
use crate::keys::alert::Stage;
use crate::keys::sample::metrics_from_kv;
use crate::keys::{ServiceStatus, announced};
use crate::types::{NodeName, Time};
use serde_json::{Value, json};

/// `GET /api/v1/members`: every member, with `is_leader` on `leader` (the election actor's),
/// `reports`, the applications' reports on this host that they could not reach it, and
/// `probes`, each host probe's health and perfdata (see `keys::probe::to_json`).
pub fn members(views: &[MemberView], leader: Option<&NodeName>, now: Time) -> Value {
    Value::Array(
        views
            .iter()
            .map(|m| {
                let metrics =
                    metrics_from_kv(m.kv.iter().map(|(k, v)| (k.as_str(), v.as_str())), now);
                let probes: serde_json::Map<String, Value> =
                    crate::keys::with_prefix(&m.kv, crate::keys::PROBE_PREFIX)
                        .filter(|(name, _)| !name.is_empty())
                        .map(|(name, v)| (name.to_string(), crate::keys::probe::to_json(v)))
                        .collect();
                json!({
                    "name": m.name.as_str(),
                    "addr": m.addr.to_string(),
                    "state": m.status.as_str(),
                    "incarnation": m.incarnation.0,
                    "last_heard": m.last_heard.to_rfc3339(),
                    "is_leader": leader == Some(&m.name),
                    "reports": m.reports,
                    "metrics": metrics,
                    "probes": probes,
                })
            })
            .collect(),
    )
}

/// `GET /api/v1/stats`.
pub fn stats(snapshot: &StatsSnapshot) -> Value {
    let mut value = serde_json::to_value(snapshot.stats).unwrap_or_else(|_| json!({}));
    if let Value::Object(map) = &mut value {
        map.insert("node".into(), Value::from(snapshot.node.as_str()));
        map.insert("incarnation".into(), Value::from(snapshot.incarnation.0));
        if let Ok(Value::Object(gate)) = serde_json::to_value(snapshot.gate) {
            map.extend(gate);
        }
    }
    value
}

/// `GET /api/v1/alerts`: every incident of the gossiped alert log, with its furthest stage
/// (`waiting`, `failed`, `claim`, `sending`, `sent`), who is at it, when, and each sink's
/// result.
pub fn alerts(views: &[MemberView]) -> Value {
    let log = Log::from_view(views, []);
    Value::Array(
        log.all()
            .filter_map(|(id, entries)| {
                let e = entries.iter().max_by_key(|e| (e.stage, e.at))?;
                let kind = id.split(':').next().unwrap_or("");
                // A step of remediation names its incident's node after its own number.
                let about = crate::alert::action::parse_id(id).map_or(id, |(_, base)| base);
                let node = about.split(':').nth(1).unwrap_or("");
                Some(json!({
                    "id": id,
                    "kind": kind,
                    "node": node,
                    "state": e.stage.as_str(),
                    "sent_by": (e.stage == Stage::Sent).then(|| e.by.as_str()),
                    "by": e.by.as_str(),
                    "at": e.at.to_rfc3339(),
                    "sinks": e.sinks.iter().map(|s| json!({"sink": s.sink, "result": s.result})).collect::<Vec<_>>(),
                    "summary": e.alert.as_ref().and_then(|a| a.get("summary")).cloned()
                        .or_else(|| entries.iter().find_map(|e| e.held.as_ref()).map(|h| Value::from(h.summary.clone()))),
                }))
            })
            .collect(),
    )
}

/// The incidents open at `now`: members down and services whose tree gave up, as
/// `{"id", "kind", "node", "service", "since", "summary", "alerted"}` (`alerted`: the alert
/// log has it sent). What `nbwatch status` and the dashboard count as needing a person.
pub fn open_incidents(views: &[MemberView], now: Time) -> Value {
    use crate::alert::incident::{Kind, Rules, incidents};
    let log = Log::from_view(views, []);
    Value::Array(
        incidents(views, &log, now, &Rules::default())
            .into_iter()
            .filter(|i| {
                matches!(
                    i.kind,
                    Kind::NodeDown | Kind::ServiceFailed | Kind::ProbeCritical | Kind::ProbeWarning
                )
            })
            .map(|i| {
                json!({
                    "id": i.id, "kind": i.kind.as_str(), "node": i.node.as_str(),
                    "service": i.service, "since": i.since.to_rfc3339(),
                    "summary": i.summary, "alerted": log.is_sent(&i.id),
                })
            })
            .collect(),
    )
}

/// `GET /api/v1/silences`: the silences still in force at `now`.
pub fn silences(views: &[MemberView], trust: &crate::secure::directive::Trust, now: Time) -> Value {
    Value::Array(
        crate::alert::incident::silences(views, trust)
            .into_iter()
            .filter(|s| s.until > now)
            .map(|s| {
                json!({
                    "target": s.target, "by": s.by.as_str(),
                    "until": s.until.to_rfc3339(), "reason": s.reason,
                })
            })
            .collect(),
    )
}

/// `GET /api/v1/services`: this node's services, by name.
pub fn services(list: &[ServiceStatus], me: &NodeName) -> Value {
    Value::Array(list.iter().map(|s| service(s, me)).collect())
}

/// One service as the contract says, plus `since` (when its state last changed).
pub fn service(s: &ServiceStatus, me: &NodeName) -> Value {
    json!({
        "node": me.as_str(),
        "name": s.name,
        "tree": s.tree,
        "state": s.state.as_str(),
        "pid": s.pid,
        "restarts": s.restarts,
        "last_exit": s.last_exit,
        "health": s.health,
        "since": s.since.to_rfc3339(),
    })
}

/// Every node's services as the contract's objects plus `node_state` (the member's state, so
/// a reader knows the services of a down node are its last word): this node's from its own
/// board (`local`), the others' from their gossiped `svc.<name>` entries. By node, then name.
pub fn cluster_services(views: &[MemberView], me: &NodeName, local: &[ServiceStatus]) -> Value {
    let mut out = Vec::new();
    for m in views {
        let mut list: Vec<Value> = if &m.name == me {
            local.iter().map(|s| service(s, me)).collect()
        } else {
            // Read through the one codec of `svc.<name>` values; one this version cannot
            // read is left out.
            announced(&m.kv)
                .iter()
                .map(|s| service(s, &m.name))
                .collect()
        };
        for s in &mut list {
            if let Value::Object(map) = s {
                map.insert("node_state".into(), Value::from(m.status.as_str()));
            }
        }
        out.extend(list);
    }
    Value::Array(out)
}

/// `GET /api/v1/events`: membership events and this node's (`me`) service events, oldest
/// first (`StateChanged` is not listed).
pub fn events(recorded: &[RecordedEvent], me: &NodeName) -> Value {
    Value::Array(recorded.iter().filter_map(|r| event(r, me)).collect())
}

/// One event in the contract's shape (see [`crate::events::Described`]).
pub fn event(recorded: &RecordedEvent, me: &NodeName) -> Option<Value> {
    recorded.describe(me).map(|d| d.to_json())
}

/// `GET /api/v1/zones` (and `nbwatch zones --json`): an array of
/// `{"name", "this", "reachable", "since", "members_up", "members_total", "suspect", "down",
/// "down_members": [{"node", "last_heard"}], "leader", "representatives": [{"node", "addr"}],
/// "incidents", "aggregates": {METRIC: {"min", "mean", "max", "count"}}, "version",
/// "published_by"}`, one per zone.
pub fn zones(this: &str, views: &[crate::gossip::core::zones::ZoneView]) -> Value {
    let zones: Vec<Value> = views
        .iter()
        .map(|v| {
            let s = &v.summary;
            let aggregates: serde_json::Map<String, Value> = (s.metrics.iter())
                .map(|(name, min, mean, max, count)| {
                    let n = |x: f32| serde_json::Number::from_f64(x as f64).map(Value::Number);
                    let value =
                        json!({"min": n(*min), "mean": n(*mean), "max": n(*max), "count": count});
                    (name.clone(), value)
                })
                .collect();
            json!({
                "name": s.zone,
                "this": s.zone == this,
                "reachable": v.reachable,
                "since": v.since.map(|t| t.to_rfc3339()),
                "members_up": s.up,
                "members_total": s.total,
                "suspect": s.suspect,
                "down": s.down,
                "down_members": s.down_names.iter().map(|(n, b)| json!({
                    "node": n.as_str(), "last_heard": b.time().to_rfc3339(),
                })).collect::<Vec<_>>(),
                "leader": s.leader.as_ref().map(NodeName::as_str),
                "representatives": s.reps.iter().map(|(n, a)| json!({
                    "node": n.as_str(), "addr": a.to_string(),
                })).collect::<Vec<_>>(),
                "incidents": s.incidents,
                "aggregates": aggregates,
                "version": s.version,
                "published_by": v.by.as_str(),
            })
        })
        .collect();
    Value::Array(zones)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{ClusterEvent, NodeEvent};
    use crate::gossip::Status;
    use crate::keys::PRIORITY_KEY;
    use crate::types::Incarnation;
    use std::collections::BTreeMap;

    fn view(name: &str, status: Status, priority: Option<&str>) -> MemberView {
        let mut kv = BTreeMap::new();
        if let Some(p) = priority {
            kv.insert(PRIORITY_KEY.to_string(), p.to_string());
        }
        let sample = crate::probe::metrics::HostMetrics {
            load1: 0.5,
            ..Default::default()
        };
        kv.extend(sample.to_kv());
        MemberView {
            name: NodeName::from(name),
            addr: "127.0.0.1:7710".parse().expect("addr"),
            status,
            incarnation: Incarnation(3),
            last_heard: Time(1_700_000_000_123),
            is_self: false,
            clock_offset: None,
            reports: 0,
            kv: kv.into(),
        }
    }

    #[test]
    fn a_member_has_the_contract_shape() {
        let views = [view("a", Status::Alive, None)];
        let leader = crate::election::ViewSnapshot::new(views.to_vec()).leader;
        let json = members(&views, leader.as_ref(), Time(1_700_000_001_000));
        let m = &json[0];
        assert_eq!(m["name"], "a");
        assert_eq!(m["addr"], "127.0.0.1:7710");
        assert_eq!(m["state"], "alive");
        assert_eq!(m["incarnation"], 3);
        assert_eq!(m["last_heard"], "2023-11-14T22:13:20.123Z");
        assert_eq!(m["is_leader"], true);
        assert_eq!(m["metrics"]["load1"], 0.5);
    }

    #[test]
    fn cluster_services_read_the_others_from_gossip_and_mark_a_down_nodes_as_such() {
        use crate::keys::{ServiceState, gossip_key, gossip_value};
        let status = |name: &str, state| ServiceStatus {
            name: name.into(),
            tree: "tv".into(),
            state,
            pid: Some(42),
            restarts: 2,
            last_exit: Some("exit 3".into()),
            health: "ok".into(),
            since: Time(1_700_000_000_000),
            shape: Default::default(),
        };
        let mut other = view("nas", Status::Down, None);
        let db = status("db", ServiceState::Running);
        let kv = std::sync::Arc::make_mut(&mut other.kv);
        kv.insert(gossip_key("db"), gossip_value(&db));
        kv.insert(gossip_key("junk"), "not json".into());
        let mine = view("me", Status::Alive, None);
        let local = [status("web", ServiceState::Failed)];
        let json = cluster_services(&[mine, other], &NodeName::from("me"), &local);
        let list = json.as_array().expect("array");
        assert_eq!(list.len(), 2, "{json}");
        assert_eq!(
            (&list[0]["node"], &list[0]["name"], &list[0]["state"]),
            (&json!("me"), &json!("web"), &json!("failed"))
        );
        let db = &list[1];
        assert_eq!(db["node"], "nas");
        assert_eq!(db["name"], "db");
        assert_eq!(db["state"], "running");
        assert_eq!(db["node_state"], "down");
        assert_eq!(db["restarts"], 2);
        assert_eq!(db["since"], "2023-11-14T22:13:20.000Z");
    }

    #[test]
    fn state_changes_are_not_listed_and_down_carries_its_witnesses() {
        let at = Time(1_700_000_000_000);
        let recorded = [
            RecordedEvent {
                at,
                event: NodeEvent::Cluster(ClusterEvent::StateChanged {
                    node: NodeName::from("a"),
                    key: "k".into(),
                    value: None,
                }),
            },
            RecordedEvent {
                at,
                event: NodeEvent::Cluster(ClusterEvent::NodeDown {
                    node: NodeName::from("a"),
                    incarnation: Incarnation(2),
                    last_heard: Time(1_699_999_990_000),
                    witnesses: vec![NodeName::from("b"), NodeName::from("c")],
                }),
            },
        ];
        let json = events(&recorded, &NodeName::from("me"));
        assert_eq!(json.as_array().map(Vec::len), Some(1));
        let e = &json[0];
        assert_eq!(e["kind"], "node_down");
        assert_eq!(e["node"], "a");
        assert_eq!(e["at"], "2023-11-14T22:13:20.000Z");
        assert_eq!(e["last_heard"], "2023-11-14T22:13:10.000Z");
        assert_eq!(e["witnesses"], json!(["b", "c"]));
        let detail = e["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains("2023-11-14T22:13:10.000Z") && detail.contains("b, c"),
            "{detail}"
        );
    }

    #[test]
    fn a_service_event_names_this_node_the_service_and_its_tree() {
        use crate::events::{ServiceEvent, ServiceEventKind};
        let recorded = [RecordedEvent {
            at: Time(1_700_000_000_000),
            event: NodeEvent::Service(ServiceEvent {
                service: "db".into(),
                tree: "tv".into(),
                kind: ServiceEventKind::Failed {
                    reason: "gave up".into(),
                },
            }),
        }];
        let json = events(&recorded, &NodeName::from("mythbox"));
        let e = &json[0];
        assert_eq!(e["kind"], "service_failed");
        assert_eq!(e["node"], "mythbox");
        assert_eq!(e["service"], "db");
        assert_eq!(e["tree"], "tv");
    }
}
