//! Alerts in Alertmanager's terms: the webhook payload (version 4) a `format = "alertmanager"`
//! webhook posts, and the alerts an `alertmanager` sink posts to `/api/v2/alerts` as
//! Prometheus does, so routing, grouping, inhibition and silences work on them.
//!
//! An incident is one Alertmanager alert: its labels are `alertname` (the kind of the firing
//! incident: `node_down`, `service_failed`, ...), `node`, `service` (when it has one),
//! `incident` (the firing incident's id) and `severity`. Its resolution (`node_up`,
//! `service_up`, `probe_ok`, `settled`) is the same alert resolved: the same labels, hence the
//! same fingerprint and group key, the firing alert's `startsAt`, and `endsAt` set.
//!
//! Alertmanager ends an alert by itself at its `endsAt`; Prometheus therefore posts a firing
//! alert with `endsAt` a few resend intervals ahead and posts it again every interval. The
//! sender does the same ([`RESEND`], [`HORIZON`]), so an alert stays firing while its incident
//! is open, and ends by itself within [`HORIZON`] if every sender is gone.

use serde_json::{Map, Value, json};
use std::time::Duration;

/// How often the sender posts the open alerts again (Prometheus' `--rules.alert.resend-delay`
/// default).
pub const RESEND: Duration = Duration::from_secs(60);
/// How far ahead a firing alert's `endsAt` is: four resends, as Prometheus sets it.
pub const HORIZON: Duration = Duration::from_secs(4 * 60);
/// The zero time Alertmanager's webhook uses for "not ended".
const NOT_ENDED: &str = "0001-01-01T00:00:00Z";

/// The string field `k` of an alert (empty when it has none).
fn text(alert: &Value, k: &str) -> String {
    alert
        .get(k)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// One alert as Alertmanager sees it.
struct Shape {
    labels: Map<String, Value>,
    annotations: Value,
    status: String,
    starts_at: String,
    /// The firing incident's id (the one a resolution resolves).
    incident: String,
    generator: String,
}

fn shape(alert: &Value) -> Shape {
    let resolves = alert.get("resolves").and_then(Value::as_str);
    let incident = resolves.map_or_else(|| text(alert, "id"), str::to_string);
    let kind = incident.split(':').next().unwrap_or("").to_string();
    let severity = match kind.as_str() {
        "test" => "info",
        "probe_warning" => "warning",
        _ => "critical",
    };
    let mut labels = Map::new();
    labels.insert("alertname".into(), Value::from(kind));
    labels.insert("node".into(), Value::from(text(alert, "node")));
    if let Some(service) = alert.get("service").and_then(Value::as_str) {
        labels.insert("service".into(), Value::from(service));
    }
    labels.insert("incident".into(), Value::from(incident.clone()));
    labels.insert("severity".into(), Value::from(severity));
    let dashboard = text(alert, "dashboard");
    let mut annotations =
        json!({ "summary": text(alert, "summary"), "sent_by": text(alert, "sent_by") });
    if !dashboard.is_empty() {
        annotations["dashboard"] = Value::from(dashboard.clone());
    }
    let starts_at = match resolves {
        Some(_) => text(alert, "firing_since"),
        None => text(alert, "since"),
    };
    Shape {
        labels,
        annotations,
        status: text(alert, "status"),
        starts_at,
        incident,
        generator: dashboard,
    }
}

/// Alertmanager's webhook payload (version 4) for one alert.
pub fn webhook_v4(alert: &Value) -> Value {
    let s = shape(alert);
    let ends_at = if s.status == "resolved" {
        text(alert, "at")
    } else {
        NOT_ENDED.to_string()
    };
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{incident=\"{}\"}}", s.incident),
        "truncatedAlerts": 0,
        "status": s.status,
        "receiver": "nbwatch",
        "groupLabels": { "incident": s.incident },
        "commonLabels": s.labels,
        "commonAnnotations": s.annotations,
        "externalURL": s.generator,
        "alerts": [{
            "status": s.status,
            "labels": s.labels,
            "annotations": s.annotations,
            "startsAt": s.starts_at,
            "endsAt": ends_at,
            "generatorURL": s.generator,
            "fingerprint": super::fingerprint(&s.incident),
        }],
    })
}

/// The body of a POST to `/api/v2/alerts` for one alert: a firing one ends [`HORIZON`] after
/// it is sent unless posted again; a resolved one ends when it was resolved.
pub fn postable(alert: &Value) -> Value {
    let s = shape(alert);
    let at = text(alert, "at");
    let ends_at = if s.status == "resolved" {
        at
    } else {
        crate::types::Time::parse_rfc3339(&at)
            .map(|t| (t + HORIZON).to_rfc3339())
            .unwrap_or_default()
    };
    let mut one = json!({
        "labels": s.labels,
        "annotations": s.annotations,
        "startsAt": s.starts_at,
    });
    if !ends_at.is_empty() {
        one["endsAt"] = Value::from(ends_at);
    }
    if !s.generator.is_empty() {
        one["generatorURL"] = Value::from(s.generator);
    }
    json!([one])
}

/// `<base>/api/v2/alerts` for the base URL of an Alertmanager.
pub fn alerts_url(base: &str) -> String {
    format!("{}/api/v2/alerts", base.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn down() -> Value {
        json!({"id": "node_down:a:3", "kind": "node_down", "status": "firing",
            "node": "a", "service": null, "sent_by": "b", "at": "2026-11-22T15:30:09.120Z",
            "since": "2026-11-22T15:30:02.004Z", "observers": ["b"], "summary": "a stopped",
            "dashboard": "http://127.0.0.1:7711/"})
    }

    fn up() -> Value {
        json!({"id": "node_up:a:4", "kind": "node_up", "status": "resolved",
            "node": "a", "service": null, "sent_by": "c", "at": "2026-11-22T15:40:00.000Z",
            "since": "2026-11-22T15:39:58.000Z", "observers": [], "summary": "a is back",
            "resolves": "node_down:a:3", "firing_since": "2026-11-22T15:30:02.004Z",
            "dashboard": "http://127.0.0.1:7712/"})
    }

    #[test]
    fn the_webhook_shape_carries_labels_and_times() {
        let am = webhook_v4(&down());
        assert_eq!(am["version"], "4");
        assert_eq!(am["status"], "firing");
        assert_eq!(am["externalURL"], "http://127.0.0.1:7711/");
        let a = &am["alerts"][0];
        assert_eq!(a["labels"]["alertname"], "node_down");
        assert_eq!(a["labels"]["node"], "a");
        assert_eq!(a["labels"]["severity"], "critical");
        assert_eq!(a["startsAt"], "2026-11-22T15:30:02.004Z");
        assert_eq!(a["endsAt"], NOT_ENDED);
        assert_eq!(a["generatorURL"], "http://127.0.0.1:7711/");
        assert_eq!(a["annotations"]["summary"], "a stopped");
        assert_eq!(a["fingerprint"].as_str().map(str::len), Some(16));
    }

    #[test]
    fn a_resolution_is_the_same_alert_resolved() {
        let (firing, resolved) = (webhook_v4(&down()), webhook_v4(&up()));
        assert_eq!(resolved["status"], "resolved");
        assert_eq!(resolved["groupKey"], firing["groupKey"]);
        let (f, r) = (&firing["alerts"][0], &resolved["alerts"][0]);
        assert_eq!(r["labels"], f["labels"]);
        assert_eq!(r["labels"]["alertname"], "node_down");
        assert_eq!(r["labels"]["severity"], "critical");
        assert_eq!(r["fingerprint"], f["fingerprint"]);
        assert_eq!(r["startsAt"], f["startsAt"]);
        assert_eq!(r["endsAt"], "2026-11-22T15:40:00.000Z");
        // The resolving node's dashboard.
        assert_eq!(resolved["externalURL"], "http://127.0.0.1:7712/");
    }

    #[test]
    fn posted_alerts_end_ahead_while_firing_and_when_resolved() {
        let firing = postable(&down());
        assert_eq!(firing[0]["labels"]["incident"], "node_down:a:3");
        assert_eq!(firing[0]["startsAt"], "2026-11-22T15:30:02.004Z");
        assert_eq!(firing[0]["endsAt"], "2026-11-22T15:34:09.120Z");
        let resolved = postable(&up());
        assert_eq!(resolved[0]["labels"], firing[0]["labels"]);
        assert_eq!(resolved[0]["startsAt"], firing[0]["startsAt"]);
        assert_eq!(resolved[0]["endsAt"], "2026-11-22T15:40:00.000Z");
        assert_eq!(alerts_url("http://h:9093/"), "http://h:9093/api/v2/alerts");
        assert_eq!(alerts_url("http://h/am"), "http://h/am/api/v2/alerts");
    }

    #[test]
    fn a_probe_warning_is_a_warning() {
        let mut warn = down();
        warn["id"] = Value::from("probe_warning:a:disk:5");
        warn["service"] = Value::from("disk");
        let a = postable(&warn);
        assert_eq!(a[0]["labels"]["severity"], "warning");
        assert_eq!(a[0]["labels"]["service"], "disk");
        assert_eq!(a[0]["labels"]["alertname"], "probe_warning");
    }
}
