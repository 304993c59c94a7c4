//! Remediation by the cluster: `[[alerts.actions]]` run on an open incident, once.
//!
//! Each configured action that matches an open `node_down` or `service_failed` (by kind, and
//! by subject when it names one) is a **step** of it, due `after` the incident opened. A due
//! step is an incident of its own, `action:<key>:<incident id>` (`key`: a hash of the action's
//! content, see [`key`]), and goes through the alert log like any other: the node that sends alerts claims
//! it, waits the settle time, writes `sending` — here the **running mark** — and only then runs
//! it; the result is written `sent` ([`super::core`]).
//!
//! **At most once per incident and step.** Unlike an alert, a step whose running mark anyone
//! wrote is never run again, by anyone — not when its runner dies (its state, mark included,
//! stays in the others' views while it is down), not when it fails, not when the runner
//! restarts (the mark is kept with its sent entries and published again). So a runner that
//! dies after the mark and before the step ran leaves the step not run, never run twice;
//! one that dies before the mark is replaced by the next sender.
//!
//! **Cancelled by a return.** Steps derive only from incidents open in the current view, not
//! from latched ones: a host back before a step is due takes its steps with it, and a claim
//! not yet marked running is withdrawn.

use super::incident::{Incident, Kind};
use crate::config::{ActionKind, ActionOn, ActionSpec};
use crate::types::Time;
use serde_json::{Value, json};

/// The name of `action` in its steps' ids: the same on every host that has the same action,
/// and unchanged when the config is reordered (a place in the list would shift, and a step
/// already run would be taken for another). FNV-1a (64 bits) of the action's content.
pub fn key(action: &ActionSpec) -> String {
    let kind = match &action.kind {
        ActionKind::Wol { address } => format!("wol\u{1f}{address}"),
        ActionKind::Exec { command } => format!("exec\u{1f}{}", command.join("\u{1f}")),
        ActionKind::Named { name } => format!("named\u{1f}{name}"),
    };
    let text = format!(
        "{}\u{1f}{}\u{1f}{}\u{1f}{kind}",
        action.on.as_str(),
        action.subject.as_deref().unwrap_or(""),
        action.after.as_millis()
    );
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:08x}", hash >> 32)
}

/// The id of the step of the action keyed `key` (see [`key`]) for incident `base`.
pub fn step_id(key: &str, base: &str) -> String {
    format!("action:{key}:{base}")
}

/// The action key and the incident id of a step's id.
pub fn parse_id(id: &str) -> Option<(&str, &str)> {
    let rest = id.strip_prefix("action:")?;
    let (key, base) = rest.split_once(':')?;
    (!key.is_empty() && key.bytes().all(|b| b.is_ascii_hexdigit())).then_some((key, base))
}

fn matches(action: &ActionSpec, incident: &Incident) -> bool {
    let kind = match action.on {
        ActionOn::NodeDown => Kind::NodeDown,
        ActionOn::ServiceFailed => Kind::ServiceFailed,
    };
    if incident.kind != kind {
        return false;
    }
    match &action.subject {
        None => true,
        Some(s) => *s == incident.subject() || *s == incident.node.as_str(),
    }
}

/// The steps of `open` (incidents open in the current view) due at `now`, each with the index
/// of its action.
pub fn due(open: &[Incident], actions: &[ActionSpec], now: Time) -> Vec<(Incident, usize)> {
    let mut out = Vec::new();
    for base in open {
        for (k, action) in actions.iter().enumerate() {
            let at = base.since + action.after;
            if !matches(action, base) || now < at {
                continue;
            }
            out.push((
                Incident {
                    id: step_id(&key(action), &base.id),
                    kind: Kind::Action,
                    node: base.node.clone(),
                    service: base.service.clone(),
                    since: at,
                    observers: base.observers.clone(),
                    summary: format!(
                        "{} for {} ({}, {} after it began)",
                        action.kind.as_str(),
                        base.subject(),
                        base.id,
                        humantime::format_duration(action.after)
                    ),
                },
                k,
            ));
        }
    }
    out
}

/// The alert JSON of a step of `action` (its `action` field says which) as `sent_by` runs it at `at`.
pub fn to_json(
    step: &Incident,
    action: &ActionSpec,
    sent_by: &crate::types::NodeName,
    at: Time,
) -> Value {
    let mut v = step.to_json(sent_by, at);
    let incident = parse_id(&step.id).map(|(_, base)| base.to_string());
    v["action"] = json!({
        "type": action.kind.as_str(),
        "key": key(action),
        "after": humantime::format_duration(action.after).to_string(),
        "incident": incident,
    });
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ActionKind;
    use crate::types::NodeName;
    use std::time::Duration;

    fn incident(kind: Kind, node: &str, service: Option<&str>, since: u64) -> Incident {
        Incident {
            id: format!("{}:{node}:1", kind.as_str()),
            kind,
            node: NodeName::from(node),
            service: service.map(str::to_string),
            since: Time(since),
            observers: Vec::new(),
            summary: String::new(),
        }
    }

    fn wol(on: ActionOn, subject: Option<&str>, after: u64) -> ActionSpec {
        ActionSpec {
            on,
            subject: subject.map(str::to_string),
            after: Duration::from_millis(after),
            kind: ActionKind::Wol {
                address: "10.0.0.255:9".parse().unwrap(),
            },
        }
    }

    #[test]
    fn steps_come_due_after_their_delay_for_the_kind_and_subject_they_name() {
        let open = [
            incident(Kind::NodeDown, "nas", None, 1_000),
            incident(Kind::NodeDown, "tv", None, 1_000),
            incident(Kind::ServiceFailed, "nas", Some("pg"), 1_000),
        ];
        let actions = [
            wol(ActionOn::NodeDown, Some("nas"), 0),
            wol(ActionOn::NodeDown, None, 5_000),
            wol(ActionOn::ServiceFailed, Some("nas:pg"), 0),
            wol(ActionOn::ServiceFailed, Some("tv"), 0),
        ];
        let k: Vec<String> = actions.iter().map(key).collect();
        let ids = |now| -> Vec<String> {
            due(&open, &actions, Time(now))
                .into_iter()
                .map(|(i, _)| i.id)
                .collect()
        };
        assert_eq!(
            ids(1_000),
            [
                format!("action:{}:node_down:nas:1", k[0]),
                format!("action:{}:service_failed:nas:1", k[2])
            ]
        );
        assert_eq!(
            ids(6_000),
            [
                format!("action:{}:node_down:nas:1", k[0]),
                format!("action:{}:node_down:nas:1", k[1]),
                format!("action:{}:node_down:tv:1", k[1]),
                format!("action:{}:service_failed:nas:1", k[2])
            ]
        );
        let (step, i) = due(&open, &actions, Time(6_000)).remove(1);
        assert_eq!((step.kind, step.since, i), (Kind::Action, Time(6_000), 1));
        assert_eq!(parse_id(&step.id), Some((k[1].as_str(), "node_down:nas:1")));
        let v = to_json(&step, &actions[1], &NodeName::from("a"), Time(7_000));
        assert_eq!(v["kind"], "action");
        assert_eq!(v["action"]["type"], "wol");
        assert_eq!(v["action"]["incident"], "node_down:nas:1");
        assert_eq!(v["action"]["key"], k[1].as_str());
        // Each action its own key, the same for the same content wherever it is listed.
        let mut distinct = k.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 4);
        assert_eq!(key(&actions[3].clone()), k[3]);
        assert_eq!(parse_id("action:zz:node_down:nas:1"), None);
        assert_eq!(v["action"]["after"], "5s");
    }
}
