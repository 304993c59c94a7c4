//! Aligned tables for people; scripts use `--json`. Every cell is shown through
//! [`visible`]: a value from another host cannot move the cursor or fake a line.

use crate::keys::sample::format_trimmed;
use crate::text::visible;
use crate::types::Time;
use serde_json::Value;
use std::time::Duration;

/// Columns padded to their widest cell, two spaces apart, no trailing spaces. Rows shorter than
/// the header get empty cells; longer rows keep their extra cells. Control characters in a
/// cell are shown as escapes ([`visible`]).
pub fn render_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let columns = rows
        .iter()
        .map(Vec::len)
        .chain([headers.len()])
        .max()
        .unwrap_or(0);
    let mut widths = vec![0usize; columns];
    let all_rows: Vec<Vec<std::borrow::Cow<'_, str>>> = std::iter::once(headers.to_vec())
        .chain(rows.iter().map(|r| r.iter().map(String::as_str).collect()))
        .map(|r| r.into_iter().map(visible).collect())
        .collect();
    for row in &all_rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &all_rows {
        let mut line = String::new();
        for (i, width) in widths.iter().enumerate() {
            let cell = row.get(i).map_or("", |c| c.as_ref());
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            let pad = width - cell.chars().count();
            line.extend(std::iter::repeat_n(' ', pad));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The events array of `GET /api/v1/events` as a table (`AT NODE KIND DETAIL`).
pub fn render_events(events: &[Value]) -> String {
    render_table(&["AT", "NODE", "KIND", "DETAIL"], &event_rows(events))
}

/// One event per line, unaligned: what `events --follow` prints as events arrive.
pub fn event_line(event: &Value) -> String {
    let line = event_rows(std::slice::from_ref(event))
        .pop()
        .unwrap_or_default()
        .join("  ");
    visible(&line).into_owned()
}

fn event_rows(events: &[Value]) -> Vec<Vec<String>> {
    events
        .iter()
        .map(|e| {
            let text = |key: &str| {
                e.get(key)
                    .and_then(Value::as_str)
                    .unwrap_or("-")
                    .to_string()
            };
            vec![text("at"), text("node"), text("kind"), text("detail")]
        })
        .collect()
}

/// The samples array of `GET /api/v1/history/{node}` as a table; rollup rows (past the raw
/// retention) also show their minimum and maximum.
pub fn render_history(samples: &[Value]) -> String {
    let number = |v: Option<&Value>| {
        v.and_then(Value::as_f64)
            .map_or("-".to_string(), |x| format_trimmed(x, 3))
    };
    let rows: Vec<Vec<String>> = samples
        .iter()
        .map(|s| {
            let text = |key: &str| {
                s.get(key)
                    .and_then(Value::as_str)
                    .unwrap_or("-")
                    .to_string()
            };
            let mut row = vec![text("at"), text("metric"), number(s.get("value"))];
            if s.get("bucket").is_some() {
                row.extend([number(s.get("min")), number(s.get("max")), text("bucket")]);
            }
            row
        })
        .collect();
    render_table(&["AT", "METRIC", "VALUE", "MIN", "MAX", "BUCKET"], &rows)
}

/// The members array of `GET /api/v1/members` as a table. Fields that are missing or of the
/// wrong type show as `-`.
pub fn render_members(members: &[Value], now: Time) -> String {
    let rows: Vec<Vec<String>> = members
        .iter()
        .map(|m| {
            let text = |key: &str| m.get(key).and_then(Value::as_str).map(str::to_string);
            let metric = |key: &str, decimals: usize| {
                m.get("metrics")
                    .and_then(|x| x.get(key))
                    .and_then(Value::as_f64)
                    .map(|v| format_trimmed(v, decimals))
            };
            let last_heard = text("last_heard")
                .and_then(|t| humantime::parse_rfc3339_weak(&t).ok())
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|since_epoch| format_age(now.since(Time(since_epoch.as_millis() as u64))));
            let leader = m
                .get("is_leader")
                .and_then(Value::as_bool)
                .map(|l| if l { "*" } else { "" }.to_string());
            [
                text("name"),
                text("addr"),
                text("state"),
                m.get("incarnation")
                    .and_then(Value::as_u64)
                    .map(|i| i.to_string()),
                last_heard,
                leader,
                metric("load1", 2),
                metric("mem_used_pct", 1),
            ]
            .into_iter()
            .map(|cell| cell.unwrap_or_else(|| "-".to_string()))
            .collect()
        })
        .collect();
    render_table(
        &[
            "NAME",
            "ADDR",
            "STATE",
            "INC",
            "LAST HEARD",
            "LEADER",
            "LOAD1",
            "MEM%",
        ],
        &rows,
    )
}

/// `zones`: one row per zone of `GET /api/v1/zones`.
pub fn render_zones(zones: &[Value]) -> String {
    let rows: Vec<Vec<String>> = zones
        .iter()
        .map(|z| {
            let reps: Vec<&str> = (z["representatives"].as_array().into_iter().flatten())
                .filter_map(|r| r["node"].as_str())
                .collect();
            vec![
                format!(
                    "{}{}",
                    z["name"].as_str().unwrap_or("-"),
                    if z["this"] == true { " *" } else { "" }
                ),
                zone_state(z),
                format!("{}/{}", z["members_up"], z["members_total"]),
                z["leader"].as_str().unwrap_or("-").to_string(),
                reps.join(","),
                z["incidents"].to_string(),
                aggregate(z, "load1"),
            ]
        })
        .collect();
    render_table(
        &[
            "ZONE",
            "STATE",
            "UP",
            "LEADER",
            "REPRESENTATIVES",
            "INCIDENTS",
            "LOAD1 MEAN/MAX",
        ],
        &rows,
    )
}

/// Under `members`: one line per other zone.
pub fn render_zone_lines(zones: &[Value]) -> String {
    let rows: Vec<Vec<String>> = zones
        .iter()
        .map(|z| {
            vec![
                format!("zone {}", z["name"].as_str().unwrap_or("-")),
                zone_state(z),
                format!("{}/{} up", z["members_up"], z["members_total"]),
                format!("{} down", z["down"]),
                format!("leader {}", z["leader"].as_str().unwrap_or("-")),
                aggregate(z, "load1"),
            ]
        })
        .collect();
    render_table(
        &["ZONE", "STATE", "UP", "DOWN", "LEADER", "LOAD1 MEAN/MAX"],
        &rows,
    )
}

/// `members --zone Z` for another zone, and `members --all`: what each zone's summary names.
pub fn render_zone_members(zones: &[Value]) -> String {
    let mut rows: Vec<Vec<String>> = Vec::new();
    for z in zones {
        let name = z["name"].as_str().unwrap_or("-").to_string();
        for m in zone_members_json(z).as_array().into_iter().flatten() {
            let text = |k: &str| m[k].as_str().unwrap_or("-").to_string();
            rows.push(vec![
                name.clone(),
                text("name"),
                text("addr"),
                text("state"),
                text("last_heard"),
            ]);
        }
    }
    render_table(&["ZONE", "NAME", "ADDR", "STATE", "LAST HEARD"], &rows)
}

/// The members another zone's summary names: its representatives (alive, or as the zone is
/// reachable), its down members with when they were last heard, and a line for the others up.
pub fn zone_members_json(z: &Value) -> Value {
    let reachable = z["reachable"] != false;
    let mut out: Vec<Value> = Vec::new();
    let reps = z["representatives"].as_array().cloned().unwrap_or_default();
    for r in &reps {
        out.push(serde_json::json!({
            "name": r["node"], "addr": r["addr"],
            "state": if reachable { "alive" } else { "unreachable" },
            "last_heard": z["since"],
        }));
    }
    for d in z["down_members"].as_array().into_iter().flatten() {
        out.push(serde_json::json!({
            "name": d["node"], "addr": null, "state": "down", "last_heard": d["last_heard"],
        }));
    }
    let up = z["members_up"].as_u64().unwrap_or(0);
    let more = up.saturating_sub(reps.len() as u64);
    if more > 0 {
        out.push(serde_json::json!({
            "name": format!("(+{more} more up)"), "addr": null,
            "state": if reachable { "alive" } else { "unreachable" }, "last_heard": null,
        }));
    }
    Value::Array(out)
}

fn zone_state(z: &Value) -> String {
    if z["reachable"] == false {
        "unreachable".into()
    } else {
        "reachable".into()
    }
}

fn aggregate(z: &Value, metric: &str) -> String {
    let a = &z["aggregates"][metric];
    match (a["mean"].as_f64(), a["max"].as_f64()) {
        (Some(mean), Some(max)) => {
            format!("{}/{}", format_trimmed(mean, 2), format_trimmed(max, 2))
        }
        _ => "-".into(),
    }
}

/// The services array of `GET /api/v1/services` as a table; `SINCE` is how long the service
/// has been in its state.
pub fn render_services(services: &[Value], now: Time) -> String {
    let rows: Vec<Vec<String>> = services.iter().map(|s| service_row(s, now)).collect();
    render_table(&SERVICE_HEADERS, &rows)
}

/// `services --all`: every node's services, the node first; a service whose node is not live
/// shows its last known state as `stale`.
pub fn render_all_services(services: &[Value], now: Time) -> String {
    let rows: Vec<Vec<String>> = services
        .iter()
        .map(|s| {
            let mut row = vec![s["node"].as_str().unwrap_or("-").to_string()];
            row.extend(service_row(s, now));
            if s["stale"] == Value::Bool(true) {
                row[3] = format!("{} (stale)", row[3]);
            }
            row
        })
        .collect();
    let mut headers = vec!["NODE"];
    headers.extend(SERVICE_HEADERS);
    render_table(&headers, &rows)
}

const SERVICE_HEADERS: [&str; 8] = [
    "NAME",
    "TREE",
    "STATE",
    "PID",
    "RESTARTS",
    "HEALTH",
    "LAST EXIT",
    "SINCE",
];

fn service_row(s: &Value, now: Time) -> Vec<String> {
    let text = |key: &str| s.get(key).and_then(Value::as_str).map(str::to_string);
    let number = |key: &str| s.get(key).and_then(Value::as_u64).map(|n| n.to_string());
    let since = text("since")
        .and_then(|t| humantime::parse_rfc3339_weak(&t).ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|e| format_age(now.since(Time(e.as_millis() as u64))));
    [
        text("name"),
        text("tree"),
        text("state"),
        number("pid"),
        number("restarts"),
        text("health"),
        text("last_exit"),
        since,
    ]
    .into_iter()
    .map(|cell| cell.unwrap_or_else(|| "-".to_string()))
    .collect()
}

/// `get` and `subscribe`: one application value per line.
pub fn render_app_values(values: &[Value]) -> String {
    let rows: Vec<Vec<String>> = values
        .iter()
        .map(|v| {
            ["node", "key", "value", "at", "expires"]
                .iter()
                .map(|k| v[k].as_str().unwrap_or("-").to_string())
                .collect()
        })
        .collect();
    render_table(&["NODE", "KEY", "VALUE", "AT", "EXPIRES"], &rows)
}

/// How long ago, for people: `0.4s ago` under 10 s, then `42s ago`, `3m ago`, `5h ago`, `2d ago`.
pub fn format_age(age: Duration) -> String {
    let secs = age.as_secs();
    if secs < 10 {
        // Truncated, not rounded, so 9.96 s does not read as "10.0s".
        let tenths = age.as_millis() / 100;
        format!("{}.{}s ago", tenths / 10, tenths % 10)
    } else if secs < 60 {
        format!("{secs}s ago")
    } else if secs < 3600 {
        format!("{}m ago", secs / 60)
    } else if secs < 48 * 3600 {
        format!("{}h ago", secs / 3600)
    } else {
        format!("{}d ago", secs / 86_400)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn render_table_aligns_columns_two_spaces_apart_without_trailing_spaces() {
        let rows = vec![
            vec!["mythbox".to_string(), "1".to_string(), "x".to_string()],
            vec!["ab".to_string(), "12345".to_string()],
        ];
        let out = render_table(&["NAME", "N", "LAST"], &rows);
        assert_eq!(
            out,
            "NAME     N      LAST\n\
             mythbox  1      x\n\
             ab       12345\n"
        );
    }

    #[test]
    fn render_table_counts_characters_not_bytes() {
        let rows = vec![vec!["häus".to_string(), "1".to_string()]];
        let out = render_table(&["A", "B"], &rows);
        assert_eq!(out, "A     B\nhäus  1\n");
    }

    #[test]
    fn a_cell_cannot_move_the_cursor_or_start_a_line() {
        let rows = vec![vec!["\x1b[2Jx".to_string(), "a\rb\nc".to_string()]];
        let out = render_table(&["A", "B"], &rows);
        assert_eq!(out, "A         B\n\\x1b[2Jx  a\\rb\\nc\n");
        let event =
            serde_json::json!({"at": "t", "node": "n\x1b]0;x\x07", "kind": "k", "detail": "d\n"});
        assert_eq!(event_line(&event), "t  n\\x1b]0;x\\x07  k  d\\n");
    }

    #[test]
    fn render_members_shows_ages_leader_metrics_and_dashes() {
        let now = Time::from_millis(1_795_000_000_000);
        let members = vec![
            json!({
                "name": "mythbox", "addr": "192.168.1.10:7710", "state": "alive",
                "incarnation": 3, "last_heard": Time::from_millis(1_795_000_000_000 - 400).to_rfc3339(),
                "is_leader": true, "metrics": {"load1": 0.4, "mem_used_pct": 41.0}
            }),
            json!({
                "name": "study", "addr": "192.168.1.11:7710", "state": "suspect",
                "incarnation": 12, "last_heard": Time::from_millis(1_795_000_000_000 - 185_000).to_rfc3339(),
                "is_leader": false, "metrics": {"load1": 1.256}
            }),
            json!({"name": "new", "last_heard": "not a time", "incarnation": "x"}),
        ];
        let out = render_members(&members, now);
        let expected = "\
NAME     ADDR               STATE    INC  LAST HEARD  LEADER  LOAD1  MEM%
mythbox  192.168.1.10:7710  alive    3    0.4s ago    *       0.4    41
study    192.168.1.11:7710  suspect  12   3m ago              1.26   -
new      -                  -        -    -           -       -      -
";
        assert_eq!(out, expected);
    }

    #[test]
    fn ages_read_naturally() {
        let ms = Duration::from_millis;
        assert_eq!(format_age(ms(0)), "0.0s ago");
        assert_eq!(format_age(ms(9_990)), "9.9s ago");
        assert_eq!(format_age(ms(42_000)), "42s ago");
        assert_eq!(format_age(ms(185_000)), "3m ago");
        assert_eq!(format_age(ms(5 * 3_600_000)), "5h ago");
        assert_eq!(format_age(ms(3 * 86_400_000)), "3d ago");
    }
}
