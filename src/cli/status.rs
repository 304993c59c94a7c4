//! `nbwatch status`: one screen of what needs a person, from `GET /api/v1/overview`: this node,
//! the leader, members up and down, failing services and open incidents.
//!
//! Colour marks states (green fine, yellow in between, red needs a person) only when asked to:
//! the caller decides ([`use_colour`]: a terminal, and no `NO_COLOR`), so piped output and
//! tests see plain text. Colour is added after the columns are aligned, so escape codes never
//! count towards a column's width.

use super::table::{format_age, render_table};
use crate::keys::sample::format_trimmed;
use crate::text::visible;
use crate::types::Time;
use serde_json::Value;

/// Colour on a terminal, unless `NO_COLOR` is set to anything non-empty (no-color.org).
pub fn use_colour(stdout_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stdout_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// What `status` found: the text, and whether something needs a person (a member down or
/// suspect, a failing service, an open incident), which the command's exit code reports.
pub struct Status {
    pub text: String,
    pub attention: bool,
}

/// The ANSI colour of a state word, if it has one.
fn colour_of(word: &str) -> Option<&'static str> {
    match word {
        "alive" | "running" | "ok" | "sent" | "yes" => Some("32"),
        "suspect" | "starting" | "restarting" | "stopping" | "warning" | "claim" | "sending" => {
            Some("33")
        }
        "down" | "failed" | "critical" | "no" => Some("31"),
        "left" | "stopped" | "unknown" => Some("2"),
        _ => None,
    }
}

/// Colours the state words of `text` (an aligned table) in the columns that start at the
/// byte offsets of the header's `columns`.
fn paint(table: &str, columns: &[&str]) -> String {
    let mut lines = table.lines();
    let Some(header) = lines.next() else {
        return String::new();
    };
    // Columns are aligned in characters (a name may hold multi-byte ones): find each
    // column's character offset in the header, then its byte offset in each line.
    let mut starts: Vec<usize> = columns
        .iter()
        .filter_map(|c| header.find(c).map(|b| header[..b].chars().count()))
        .collect();
    starts.sort_unstable();
    let mut out = format!("\x1b[1m{header}\x1b[0m\n");
    for line in lines {
        let mut painted = String::new();
        let mut from = 0;
        for &column in &starts {
            let Some((start, _)) = line.char_indices().nth(column) else {
                continue;
            };
            let cell = &line[start..];
            let word = cell.split(' ').next().unwrap_or("");
            if let Some(code) = colour_of(word) {
                painted.push_str(&line[from..start]);
                painted.push_str(&format!("\x1b[{code}m{word}\x1b[0m"));
                from = start + word.len();
            }
        }
        painted.push_str(&line[from..]);
        out.push_str(&painted);
        out.push('\n');
    }
    out
}

/// A field for people: a string is shown through [`visible`], so it cannot reach the
/// terminal as control characters.
fn text(v: &Value, key: &str) -> String {
    match &v[key] {
        Value::String(s) => visible(s).into_owned(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => if *b { "yes" } else { "no" }.to_string(),
        _ => "-".to_string(),
    }
}

fn ago(v: &Value, key: &str, now: Time) -> String {
    v[key]
        .as_str()
        .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or("-".to_string(), |e| {
            format_age(now.since(Time(e.as_millis() as u64)))
        })
}

fn array(v: &Value, key: &str) -> Vec<Value> {
    v[key].as_array().cloned().unwrap_or_default()
}

/// The status screen of an overview answer. `now` is the daemon's clock (the overview's
/// `now`), so ages do not depend on this machine's clock.
pub fn render_status(overview: &Value, colour: bool) -> Status {
    let now = overview["now"]
        .as_str()
        .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or_else(Time::wall_now, |e| Time(e.as_millis() as u64));
    let members = array(overview, "members");
    let services = array(overview, "services");
    let incidents = array(overview, "incidents");
    let up = members
        .iter()
        .filter(|m| m["state"] == "alive" || m["state"] == "suspect")
        .count();
    let not_alive: Vec<&Value> = members.iter().filter(|m| m["state"] != "alive").collect();
    let failing: Vec<&Value> = services
        .iter()
        .filter(|s| {
            s["state"] == "failed"
                || s["health"] == "critical"
                || s["state"] == "restarting"
                || (s["state"] == "stopped" && s["last_exit"].is_string())
        })
        .collect();
    let mut out = String::new();
    let bold = |s: &str| {
        if colour {
            format!("\x1b[1m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    };
    // Who sends the alerts, when it is not the leader (older daemons do not say).
    let sender = match (overview.get("sender"), overview["leader"].as_str()) {
        (Some(Value::String(s)), Some(l)) if s != l => format!(", alerts sent by {}", visible(s)),
        (Some(Value::Null), Some(_)) => ", no live node can send alerts (no sinks)".to_string(),
        _ => String::new(),
    };
    out.push_str(&format!(
        "{} {} (nbwatch {}), leader {}{sender}\n",
        bold("node"),
        text(overview, "node"),
        text(overview, "version"),
        overview["leader"]
            .as_str()
            .map_or("none (no live member)".into(), visible),
    ));
    out.push_str(&format!(
        "{} {up} of {} up\n\n",
        bold("members"),
        members.len()
    ));
    let table = |headers: &[&str], rows: Vec<Vec<String>>, coloured: &[&str]| {
        let plain = render_table(headers, &rows);
        if colour {
            paint(&plain, coloured)
        } else {
            plain
        }
    };
    let member_rows = members
        .iter()
        .map(|m| {
            let metric = |k: &str, d: usize| {
                m["metrics"][k]
                    .as_f64()
                    .map_or("-".to_string(), |v| format_trimmed(v, d))
            };
            vec![
                text(m, "name"),
                text(m, "state"),
                ago(m, "last_heard", now),
                if m["is_leader"] == true { "*" } else { "" }.to_string(),
                metric("load1", 2),
                metric("mem_used_pct", 1),
            ]
        })
        .collect();
    out.push_str(&table(
        &["MEMBER", "STATE", "LAST HEARD", "LEADER", "LOAD1", "MEM%"],
        member_rows,
        &["STATE"],
    ));
    out.push('\n');
    if failing.is_empty() {
        out.push_str(&format!("{} none\n", bold("failing services")));
    } else {
        out.push_str(&format!("{}\n", bold("failing services")));
        let rows = failing
            .iter()
            .map(|s| {
                vec![
                    text(s, "node"),
                    text(s, "name"),
                    text(s, "state"),
                    text(s, "health"),
                    text(s, "restarts"),
                    text(s, "last_exit"),
                    ago(s, "since", now),
                ]
            })
            .collect();
        out.push_str(&table(
            &[
                "NODE",
                "SERVICE",
                "STATE",
                "HEALTH",
                "RESTARTS",
                "LAST EXIT",
                "SINCE",
            ],
            rows,
            &["STATE", "HEALTH"],
        ));
    }
    out.push('\n');
    if incidents.is_empty() {
        out.push_str(&format!("{} none\n", bold("open incidents")));
    } else {
        out.push_str(&format!("{}\n", bold("open incidents")));
        let rows = incidents
            .iter()
            .map(|i| {
                vec![
                    text(i, "id"),
                    ago(i, "since", now),
                    text(i, "alerted"),
                    text(i, "summary"),
                ]
            })
            .collect();
        out.push_str(&table(
            &["INCIDENT", "SINCE", "ALERTED", "SUMMARY"],
            rows,
            &["ALERTED"],
        ));
    }
    Status {
        text: out,
        attention: !not_alive.iter().all(|m| m["state"] == "left")
            || !failing.is_empty()
            || !incidents.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn overview() -> Value {
        json!({
            "node": "n1", "version": "0.1.0", "now": "2026-11-22T15:31:00.000Z", "leader": "n1",
            "members": [
                {"name": "n1", "state": "alive", "last_heard": "2026-11-22T15:31:00.000Z",
                 "is_leader": true, "metrics": {"load1": 0.5, "mem_used_pct": 41.0}},
                {"name": "nas", "state": "down", "last_heard": "2026-11-22T15:30:00.000Z",
                 "is_leader": false, "metrics": {}},
            ],
            "services": [
                {"node": "n1", "name": "web", "state": "running", "health": "ok",
                 "restarts": 0, "last_exit": null, "since": "2026-11-22T15:00:00.000Z"},
                {"node": "n1", "name": "mythbackend", "state": "failed", "health": "critical",
                 "restarts": 3, "last_exit": "exit 1", "since": "2026-11-22T15:30:30.000Z"},
            ],
            "incidents": [
                {"id": "node_down:nas:2", "kind": "node_down", "node": "nas",
                 "since": "2026-11-22T15:30:00.000Z", "alerted": true,
                 "summary": "nas stopped talking at 15:30:00"},
            ],
        })
    }

    #[test]
    fn status_lists_what_needs_a_person_and_says_so() {
        let status = render_status(&overview(), false);
        let t = &status.text;
        assert!(status.attention);
        assert!(
            t.starts_with("node n1 (nbwatch 0.1.0), leader n1\nmembers 1 of 2 up\n"),
            "{t}"
        );
        assert!(t.contains("nas     down   1m ago"), "{t}");
        assert!(
            t.contains("n1    mythbackend  failed  critical  3         exit 1     30s ago"),
            "{t}"
        );
        assert!(!t.contains("web"), "a running service is not failing: {t}");
        assert!(
            t.contains("node_down:nas:2  1m ago  yes      nas stopped talking at 15:30:00"),
            "{t}"
        );
        assert!(!t.contains('\x1b'), "no colour unless asked: {t:?}");
    }

    #[test]
    fn a_healthy_cluster_needs_nobody() {
        let mut o = overview();
        o["members"][1]["state"] = json!("left");
        o["services"].as_array_mut().expect("services").pop();
        o["incidents"] = json!([]);
        let status = render_status(&o, false);
        assert!(!status.attention, "{}", status.text);
        assert!(
            status.text.contains("failing services none"),
            "{}",
            status.text
        );
        assert!(
            status.text.contains("open incidents none"),
            "{}",
            status.text
        );
    }

    #[test]
    fn colour_marks_state_words_without_moving_the_columns() {
        let plain = render_status(&overview(), false).text;
        let coloured = render_status(&overview(), true).text;
        assert!(coloured.contains("\x1b[31mdown\x1b[0m"), "{coloured:?}");
        assert!(coloured.contains("\x1b[32malive\x1b[0m"), "{coloured:?}");
        let strip = |s: &str| {
            let mut out = String::new();
            let mut chars = s.chars();
            while let Some(c) = chars.next() {
                if c == '\x1b' {
                    for c in chars.by_ref() {
                        if c == 'm' {
                            break;
                        }
                    }
                } else {
                    out.push(c);
                }
            }
            out
        };
        assert_eq!(strip(&coloured), plain);
    }

    #[test]
    fn no_color_and_pipes_turn_colour_off() {
        use std::ffi::OsStr;
        assert!(use_colour(true, None));
        assert!(use_colour(true, Some(OsStr::new(""))));
        assert!(!use_colour(true, Some(OsStr::new("1"))));
        assert!(!use_colour(false, None));
    }
}
