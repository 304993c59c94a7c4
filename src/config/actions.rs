//! `[[alerts.actions]]`: remediation the cluster runs on an incident, after a delay, once.
//!
//! ```toml
//! [[alerts.actions]]
//! on = "node_down"              # or "service_failed"
//! subject = "nas"               # a node (NODE:SERVICE for service_failed); absent: any
//! after = "30s"                 # how long the incident is open first (default 0s)
//! type = "wol"                  # a Wake-on-LAN magic packet to the down host's MAC address
//! address = "192.168.1.255:9"   # where magic packets go (default 255.255.255.255:9)
//!
//! [[alerts.actions]]
//! on = "node_down"
//! after = "2m"
//! type = "exec"                 # runs a command with the alert on stdin
//! command = ["/usr/local/bin/plug", "cycle"]   # or command_name = "..." ([alerts.commands])
//! ```
//!
//! Actions of the same incident are its steps of escalation, in the order of `after`.

use super::walk::{Table, Walker};
use super::{ActionKind, ActionOn, ActionSpec, ProblemKind};
use config::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// Keys of an action, by type (`on`, `subject`, `after` and `type` in all).
pub(super) const KEYS: &[(&str, &[&str])] = &[
    ("wol", &["on", "subject", "after", "type", "address"]),
    (
        "exec",
        &["on", "subject", "after", "type", "command", "command_name"],
    ),
];

/// Where magic packets go unless an action says otherwise: the local segment's broadcast.
pub const WOL_ADDRESS: &str = "255.255.255.255:9";

/// The longest `after`: steps are minutes or hours apart, not months.
pub const MAX_AFTER: Duration = Duration::from_secs(7 * 86_400);

/// The actions at `key`; `commands` are the node's `[alerts.commands]`, which an exec action
/// by `command_name` must name.
pub(super) fn actions(
    w: &mut Walker,
    v: &Value,
    key: &str,
    commands: &BTreeMap<String, Vec<String>>,
) -> Option<Vec<ActionSpec>> {
    w.array_of(
        v,
        key,
        "an array of tables ([[alerts.actions]])",
        |w, item, k| action(w, item, k, commands),
    )
}

fn action(
    w: &mut Walker,
    v: &Value,
    key: &str,
    commands: &BTreeMap<String, Vec<String>>,
) -> Option<ActionSpec> {
    let table = w.table(v, key, "a table")?;
    let present = |_: &mut Walker, v: &Value, _: &str| Some(v.clone());
    let type_value = w.required(
        table,
        key,
        "type",
        "missing key \"type\" for an action",
        present,
    );
    let on_value = w.required(
        table,
        key,
        "on",
        "missing key \"on\" for an action",
        present,
    );
    let type_key = format!("{key}.type");
    let kind = type_value.as_ref().and_then(|t| {
        w.choice(
            t,
            &type_key,
            &[("wol", "wol"), ("exec", "exec")],
            |name, names| format!("unknown action type \"{name}\" ({})", names.join(", ")),
        )
    });
    if let Some(kind) = kind {
        let known = KEYS
            .iter()
            .find(|(t, _)| *t == kind)
            .map_or(&[][..], |(_, k)| k);
        w.unknown_keys(table, key, known, &format!("for a {kind} action"));
    }
    let on = on_value.as_ref().and_then(|o| {
        let options = [
            ("node_down", ActionOn::NodeDown),
            ("service_failed", ActionOn::ServiceFailed),
        ];
        w.choice(o, &format!("{key}.on"), &options, |name, names| {
            format!(
                "an action runs on \"{name}\"? it runs on an incident that stays open: {}",
                names.join(" or ")
            )
        })
    });
    let subject = match table.get("subject") {
        Some(s) => Some(w.non_empty(s, &format!("{key}.subject"))?),
        None => None,
    };
    let after_key = format!("{key}.after");
    let after = match table.get("after") {
        Some(a) => {
            let d = w.duration(a, &after_key)?;
            if d > MAX_AFTER {
                let message = format!(
                    "{} is longer than {}",
                    humantime::format_duration(d),
                    humantime::format_duration(MAX_AFTER)
                );
                w.problem(a, &after_key, ProblemKind::BadValue, message);
                return None;
            }
            d
        }
        None => Duration::ZERO,
    };
    let parsed = match kind {
        Some("wol") => match table.get("address") {
            Some(a) => w
                .socket_addr(a, &format!("{key}.address"))
                .map(|address| ActionKind::Wol { address }),
            None => Some(ActionKind::Wol {
                address: WOL_ADDRESS.parse::<SocketAddr>().expect("a valid address"),
            }),
        },
        Some(_) => exec(w, v, table, key, commands),
        None => None,
    };
    // What could never do anything is refused: a magic packet wakes a host that is down, and
    // a node_down's subject is a node.
    let on = on?;
    if kind == Some("wol") && on == ActionOn::ServiceFailed {
        let message = "a wol action wakes a down host: it runs on \"node_down\"".to_string();
        w.problem(v, &format!("{key}.on"), ProblemKind::BadValue, message);
        return None;
    }
    if on == ActionOn::NodeDown && subject.as_deref().is_some_and(|s| s.contains(':')) {
        let message = "the subject of a node_down action is a node, not NODE:SERVICE".to_string();
        w.problem(v, &format!("{key}.subject"), ProblemKind::BadValue, message);
        return None;
    }
    let kind = parsed?;
    Some(ActionSpec {
        on,
        subject,
        after,
        kind,
    })
}

fn exec(
    w: &mut Walker,
    v: &Value,
    table: &Table,
    key: &str,
    commands: &BTreeMap<String, Vec<String>>,
) -> Option<ActionKind> {
    let command_key = format!("{key}.command");
    match (table.get("command"), table.get("command_name")) {
        (Some(_), Some(n)) => {
            let message = "give \"command\" or \"command_name\", not both".to_string();
            w.problem(
                n,
                &format!("{key}.command_name"),
                ProblemKind::BadValue,
                message,
            );
            None
        }
        (None, Some(n)) => {
            let name_key = format!("{key}.command_name");
            let name = w.non_empty(n, &name_key)?;
            if !commands.contains_key(&name) {
                let names: Vec<&str> = commands.keys().map(String::as_str).collect();
                let message = format!(
                    "command \"{name}\" is not declared in [alerts.commands]{}",
                    super::schema::hint(&name, &names, false)
                );
                w.problem(n, &name_key, ProblemKind::BadValue, message);
                return None;
            }
            Some(ActionKind::Named { name })
        }
        (Some(c), None) => {
            let command = w.strings(c, &command_key)?;
            if command.first().is_none_or(|p| p.trim().is_empty()) {
                let message = "empty command: give the program and its arguments".to_string();
                w.problem(c, &command_key, ProblemKind::EmptyCommand, message);
                return None;
            }
            Some(ActionKind::Exec { command })
        }
        (None, None) => {
            let message = "missing key \"command\" (or \"command_name\", a command declared in \
                           [alerts.commands]) for an exec action"
                .to_string();
            w.problem(v, &command_key, ProblemKind::MissingKey, message);
            None
        }
    }
}
