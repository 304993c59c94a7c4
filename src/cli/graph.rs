//! `graph`, `impact` and `availability`: the cluster as a dependency graph (see
//! [`crate::graph`]).

use super::client::Client;
use super::table::render_table;
use super::{explain, print_json};
use crate::text::visible;
use serde_json::Value;
use std::fmt::Write;
use std::process::ExitCode;

fn strings(v: &Value) -> Vec<&str> {
    (v.as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .collect()
}

fn text(v: &Value) -> String {
    v.as_str().map_or("-", |s| s).to_string()
}

/// `graph [--json|--dot]`.
pub async fn graph(client: &Client, json: bool, dot: bool) -> anyhow::Result<ExitCode> {
    let value = client.get("/api/v1/graph").await.map_err(explain)?;
    if json {
        print_json(&value)?;
    } else if dot {
        print!("{}", render_dot(&value));
    } else {
        print!("{}", render_graph(&value));
    }
    Ok(ExitCode::SUCCESS)
}

/// One row per vertex: its state, what it requires, and what takes it down.
pub fn render_graph(value: &Value) -> String {
    let requires = |id: &str| -> String {
        let to: Vec<&str> = (value["edges"].as_array().into_iter().flatten())
            .filter(|e| e["kind"] == "requires" && e["from"] == id)
            .filter_map(|e| e["to"].as_str())
            .collect();
        if to.is_empty() {
            "-".into()
        } else {
            to.join(",")
        }
    };
    let rows: Vec<Vec<String>> = (value["vertices"].as_array().into_iter().flatten())
        .map(|v| {
            let id = v["id"].as_str().unwrap_or("?");
            let down_by = strings(&v["down_by"]);
            let state = if v["failed"] == true {
                format!("{} FAILED", text(&v["state"]))
            } else if !down_by.is_empty() {
                format!("{} (down)", text(&v["state"]))
            } else {
                text(&v["state"])
            };
            [
                id.to_string(),
                text(&v["kind"]),
                state,
                text(&v["health"]),
                requires(id),
                if down_by.is_empty() {
                    "-".into()
                } else {
                    down_by.join(",")
                },
            ]
            .map(|c| visible(&c).into_owned())
            .to_vec()
        })
        .collect();
    render_table(
        &[
            "VERTEX",
            "KIND",
            "STATE",
            "HEALTH",
            "REQUIRES",
            "DOWN BECAUSE OF",
        ],
        &rows,
    )
}

/// A Graphviz digraph: hosts as boxes, supervisors as ellipses, services as rounded boxes;
/// failed vertices red, vertices they take down orange; `requires` dashed.
pub fn render_dot(value: &Value) -> String {
    let escape = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    let quote = |s: &str| format!("\"{}\"", escape(s));
    let mut out =
        String::from("digraph nbwatch {\n  rankdir=LR;\n  node [fontname=\"sans-serif\"];\n");
    for v in value["vertices"].as_array().into_iter().flatten() {
        let id = v["id"].as_str().unwrap_or("?");
        let shape = match v["kind"].as_str() {
            Some("host") => "box",
            Some("supervisor") => "ellipse",
            _ => "box, style=rounded",
        };
        let colour = if v["failed"] == true {
            ", color=red, fontcolor=red"
        } else if !strings(&v["down_by"]).is_empty() {
            ", color=orange, fontcolor=orange"
        } else {
            ""
        };
        // `\n` is Graphviz's line break: it goes between the escaped parts, not through them.
        let label = format!("\"{}\\n{}\"", escape(id), escape(&text(&v["state"])));
        let _ = writeln!(
            out,
            "  {} [shape={shape}, label={label}{colour}];",
            quote(id)
        );
    }
    for e in value["edges"].as_array().into_iter().flatten() {
        let (from, to) = (text(&e["from"]), text(&e["to"]));
        let style = if e["kind"] == "requires" {
            " [style=dashed, label=\"requires\"]"
        } else {
            ""
        };
        let _ = writeln!(out, "  {} -> {}{style};", quote(&from), quote(&to));
    }
    out.push_str("}\n");
    out
}

/// `impact NODE[:SERVICE] [--json]`.
pub async fn impact(client: &Client, vertex: &str, json: bool) -> anyhow::Result<ExitCode> {
    let value = (client
        .get(&format!("/api/v1/impact/{}", escape(vertex)))
        .await)
        .map_err(explain)?;
    if json {
        print_json(&value)?;
    } else {
        print!("{}", render_impact(&value));
    }
    Ok(ExitCode::SUCCESS)
}

/// What fails with the vertex, one line each with the way the failure goes.
pub fn render_impact(value: &Value) -> String {
    let vertex = text(&value["vertex"]);
    let hits = value["impacted"].as_array().cloned().unwrap_or_default();
    if hits.is_empty() {
        return format!("nothing else fails with {}\n", visible(&vertex));
    }
    let rows: Vec<Vec<String>> = (hits.iter())
        .map(|h| {
            [
                text(&h["id"]),
                text(&h["kind"]),
                strings(&h["path"]).join(" -> "),
            ]
            .map(|c| visible(&c).into_owned())
            .to_vec()
        })
        .collect();
    let mut out = format!("if {} fails, {} more fail:\n", visible(&vertex), hits.len());
    out.push_str(&render_table(&["VERTEX", "KIND", "HOW"], &rows));
    out
}

/// `text` for a URL: every byte but letters, digits and `-._~:/` percent-encoded.
fn escape(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:/".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `availability [--since DUR] [--simulate STEPS] [--seed N] [--json]`.
pub async fn availability(
    client: &Client,
    since: &str,
    simulate: Option<u64>,
    seed: Option<u64>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let mut path = format!("/api/v1/availability?since={}", escape(since));
    if let Some(steps) = simulate {
        let _ = write!(path, "&simulate={steps}");
    }
    if let Some(seed) = seed {
        let _ = write!(path, "&seed={seed}");
    }
    let value = client.get(&path).await.map_err(explain)?;
    if json {
        print_json(&value)?;
    } else {
        print!("{}", render_availability(&value));
    }
    Ok(ExitCode::SUCCESS)
}

/// Seconds as people read them: `42s`, `5m 3s`, `2h 10m`, `3d 4h`.
pub fn span(v: &Value) -> String {
    let Some(s) = v.as_f64() else {
        return "-".into();
    };
    let s = s.round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86_400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// A share as a percentage with three decimals.
pub fn percent(v: &Value) -> String {
    v.as_f64()
        .map_or("-".into(), |a| format!("{:.3} %", a * 100.0))
}

/// Hosts, then services (their own availability and with their dependencies), the best place
/// for redundancy, and the simulation beside the steady state.
pub fn render_availability(value: &Value) -> String {
    let mut out = format!(
        "from {} to {}\n",
        text(&value["since"]),
        text(&value["until"])
    );
    let model = |m: &Value| {
        let failures = m["failures"].as_u64().unwrap_or(0);
        let now = if m["failed_now"] == true {
            " (now)"
        } else {
            ""
        };
        vec![
            format!("{failures}{now}"),
            span(&m["mtbf_s"]),
            span(&m["mttr_s"]),
            percent(&m["availability"]),
        ]
    };
    let hosts: Vec<Vec<String>> = (value["hosts"].as_array().into_iter().flatten())
        .map(|h| {
            let mut row = vec![visible(&text(&h["node"])).into_owned()];
            row.extend(model(h));
            row
        })
        .collect();
    out.push_str(&render_table(
        &["HOST", "FAILURES", "MTBF", "MTTR", "AVAILABILITY"],
        &hosts,
    ));
    let services: Vec<Vec<String>> = (value["services"].as_array().into_iter().flatten())
        .map(|s| {
            let mut row = vec![visible(&text(&s["id"])).into_owned()];
            row.extend(model(s));
            row.push(percent(&s["steady"]));
            row.push(visible(&text(&s["weakest"])).into_owned());
            row
        })
        .collect();
    if !services.is_empty() {
        out.push('\n');
        out.push_str(&render_table(
            &[
                "SERVICE",
                "FAILURES",
                "MTBF",
                "MTTR",
                "OWN",
                "WITH DEPENDENCIES",
                "WEAKEST",
            ],
            &services,
        ));
    }
    if let Some(r) = value["redundancy"].as_object() {
        let gain = r["gain"].as_f64().unwrap_or(0.0) * 100.0;
        let _ = writeln!(
            out,
            "\na second {} would raise the services' availability most (+{gain:.3} points in sum)",
            visible(&text(&r["vertex"]))
        );
    }
    if let Some(sim) = value["simulation"].as_object() {
        let steady: std::collections::BTreeMap<&str, &Value> =
            (value["services"].as_array().into_iter().flatten())
                .filter_map(|s| Some((s["id"].as_str()?, &s["steady"])))
                .collect();
        let _ = writeln!(
            out,
            "\nsimulated {} steps of {} (seed {}):",
            sim["steps"],
            span(&sim["step_s"]),
            sim["seed"]
        );
        let rows: Vec<Vec<String>> = (sim["services"].as_array().into_iter().flatten())
            .map(|s| {
                let id = s["id"].as_str().unwrap_or("?");
                vec![
                    visible(id).into_owned(),
                    percent(&s["availability"]),
                    format!("± {}", percent(&json_times(&s["error"], 2.0))),
                    steady.get(id).map_or("-".into(), |v| percent(v)),
                ]
            })
            .collect();
        out.push_str(&render_table(
            &["SERVICE", "SIMULATED", "95 % INTERVAL", "STEADY STATE"],
            &rows,
        ));
    }
    out
}

fn json_times(v: &Value, k: f64) -> Value {
    v.as_f64().map_or(Value::Null, |x| Value::from(x * k))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Value {
        json!({"vertices": [
            {"id": "nas", "kind": "host", "node": "nas", "name": null, "state": "down", "health": null, "failed": true, "down_by": []},
            {"id": "nas/db", "kind": "supervisor", "node": "nas", "name": "db", "state": "running", "health": null, "failed": false, "down_by": ["nas"]},
            {"id": "nas:pg", "kind": "service", "node": "nas", "name": "pg", "state": "running", "health": "ok", "failed": false, "down_by": ["nas"]},
            {"id": "desk:web", "kind": "service", "node": "desk", "name": "web", "state": "running", "health": "ok", "failed": false, "down_by": []}],
          "edges": [
            {"from": "nas", "to": "nas/db", "kind": "contains"},
            {"from": "nas/db", "to": "nas:pg", "kind": "supervises"},
            {"from": "desk:web", "to": "nas:pg", "kind": "requires"}]})
    }

    #[test]
    fn the_table_marks_failed_and_taken_down_vertices_and_requirements() {
        let text = render_graph(&sample());
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[1].starts_with("nas ") && lines[1].contains("down FAILED"),
            "{text}"
        );
        assert!(
            lines[3].contains("running (down)") && lines[3].ends_with("nas"),
            "{text}"
        );
        assert!(
            lines[4].contains("nas:pg"),
            "desk:web requires nas:pg: {text}"
        );
    }

    #[test]
    fn dot_output_is_a_digraph_with_every_vertex_and_edge() {
        let dot = render_dot(&sample());
        assert!(dot.starts_with("digraph nbwatch {\n") && dot.ends_with("}\n"));
        assert!(dot.contains("\"nas\" [shape=box, label=\"nas\\ndown\", color=red"));
        assert!(dot.contains(
            "\"nas:pg\" [shape=box, style=rounded, label=\"nas:pg\\nrunning\", color=orange"
        ));
        assert!(dot.contains("\"desk:web\" -> \"nas:pg\" [style=dashed"));
        assert_eq!(dot.matches(" -> ").count(), 3);
    }

    #[test]
    fn what_goes_in_a_url_is_escaped() {
        assert_eq!(escape("nas:pg"), "nas:pg");
        assert_eq!(escape("a b+c&d"), "a%20b%2Bc%26d");
    }

    #[test]
    fn spans_and_percentages_read_as_people_write_them() {
        assert_eq!(span(&json!(42.4)), "42s");
        assert_eq!(span(&json!(303)), "5m 3s");
        assert_eq!(span(&json!(7800)), "2h 10m");
        assert_eq!(span(&json!(273_600)), "3d 4h");
        assert_eq!(span(&Value::Null), "-");
        assert_eq!(percent(&json!(0.84645)), "84.645 %");
    }
}
