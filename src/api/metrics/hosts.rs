//! The host figures of `/metrics`: every live member's vital signs and host-probe perfdata
//! as gossip brought them here, labelled by `node`, and this daemon's own `process_*`
//! figures. One scrape of one node gives the whole cluster's hosts.
//!
//! Names follow node_exporter's where one exists (`node_load1`, `node_boot_time_seconds`)
//! under the `nbwatch_` prefix, so they never clash with a node_exporter scraped by the same
//! Prometheus; percentages are exported as ratios (0–1), Prometheus' base unit. A member that
//! is down or has left exports nothing here: its last figures would read as current.
//! These are also the names the samples carry when they are exported elsewhere.

use super::Exposition;
use crate::gossip::{MemberView, Status};
use crate::keys::sample::{HOST_SERIES, parse_sample};
use crate::keys::{BOOT_KEY, METRICS_KEY, PROBE_PREFIX};
use crate::probe::process::ProcessFigures;
use crate::types::Time;

/// The series of probe perfdata by base unit: (unit, series name, divisor, type, help).
const PROBE_SERIES: [(&str, &str, f64, &str, &str); 4] = [
    (
        "s",
        "nbwatch_probe_seconds",
        1.0,
        "gauge",
        "Host-probe perfdata measured in time, in seconds.",
    ),
    (
        "B",
        "nbwatch_probe_bytes",
        1.0,
        "gauge",
        "Host-probe perfdata measured in bytes.",
    ),
    (
        "%",
        "nbwatch_probe_ratio",
        100.0,
        "gauge",
        "Host-probe perfdata given in percent, as a ratio (0-1).",
    ),
    (
        "c",
        "nbwatch_probe_total",
        1.0,
        "counter",
        "Host-probe perfdata that counts (Nagios unit c).",
    ),
];
/// Perfdata without a unit, or in a unit nbwatch does not scale (its `unit` label says which).
const PROBE_OTHER: &str = "nbwatch_probe_value";

fn live(views: &[MemberView]) -> impl Iterator<Item = &MemberView> {
    views
        .iter()
        .filter(|m| matches!(m.status, Status::Alive | Status::Suspect))
}

/// Every live member's vital signs, boot time and probe perfdata.
pub(super) fn render_hosts(out: &mut Exposition, views: &[MemberView], now: Time) {
    for (metric, name, divisor, help) in HOST_SERIES {
        out.family(name, "gauge", help);
        for m in live(views) {
            let Some(value) = m.kv.get(METRICS_KEY) else {
                continue;
            };
            let (values, _) = parse_sample(value, now);
            if let Some((_, v)) = values.iter().find(|(k, _)| *k == metric) {
                out.sample(name, &[("node", m.name.as_str())], v / divisor);
            }
        }
    }
    let name = "nbwatch_node_boot_time_seconds";
    out.family(
        name,
        "gauge",
        "When each live member booted (Unix seconds).",
    );
    for m in live(views) {
        let boot =
            m.kv.get(BOOT_KEY)
                .map(|v| crate::keys::sample::parse_boot(v));
        if let Some(Ok(boot)) = boot {
            let secs = boot.as_millis() as f64 / 1000.0;
            out.sample(name, &[("node", m.name.as_str())], secs);
        }
    }
    render_probe_perfdata(out, views);
}

/// One family per base unit; each sample labelled by node, probe and perfdata label.
fn render_probe_perfdata(out: &mut Exposition, views: &[MemberView]) {
    let items: Vec<(&str, &str, crate::keys::probe::Item)> = live(views)
        .flat_map(|m| {
            crate::keys::with_prefix(&m.kv, PROBE_PREFIX).flat_map(move |(probe, value)| {
                let items = crate::keys::probe::decode(value).items;
                items
                    .into_iter()
                    .map(move |item| (m.name.as_str(), probe, item))
            })
        })
        .collect();
    for (unit, name, divisor, kind, help) in PROBE_SERIES {
        out.family(name, kind, help);
        for (node, probe, item) in items.iter().filter(|(_, _, i)| i.unit == unit) {
            let labels = [
                ("node", *node),
                ("probe", *probe),
                ("label", item.label.as_str()),
            ];
            out.sample(name, &labels, item.value / divisor);
        }
    }
    out.family(
        PROBE_OTHER,
        "gauge",
        "Host-probe perfdata without a unit, or in a unit nbwatch does not scale (label unit).",
    );
    let scaled = |u: &str| PROBE_SERIES.iter().any(|(unit, ..)| *unit == u);
    for (node, probe, item) in items.iter().filter(|(_, _, i)| !scaled(&i.unit)) {
        let labels = [
            ("node", *node),
            ("probe", *probe),
            ("label", item.label.as_str()),
            ("unit", item.unit.as_str()),
        ];
        out.sample(PROBE_OTHER, &labels, item.value);
    }
}

/// This daemon's `process_*` figures, named as every Prometheus client library names them.
pub(super) fn render_process(out: &mut Exposition, p: &ProcessFigures) {
    let gauges: [(&str, &str, &str, f64); 6] = [
        (
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            p.cpu_seconds,
        ),
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            p.resident_bytes as f64,
        ),
        (
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            p.virtual_bytes as f64,
        ),
        (
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            p.start_time_seconds,
        ),
        (
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            p.open_fds as f64,
        ),
        (
            "process_threads",
            "gauge",
            "Number of OS threads in the process.",
            p.threads as f64,
        ),
    ];
    for (name, kind, help, value) in gauges {
        out.family(name, kind, help);
        out.sample(name, &[], value);
    }
    if let Some(max) = p.max_fds {
        let name = "process_max_fds";
        out.family(name, "gauge", "Maximum number of open file descriptors.");
        out.sample(name, &[], max as f64);
    }
}
