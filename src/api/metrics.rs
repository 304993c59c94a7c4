//! `GET /metrics`: the node in the Prometheus text exposition format (version 0.0.4), so an
//! existing Prometheus or VictoriaMetrics scrapes it without an exporter in between.
//!
//! Each node exports its own counters (gossip traffic, suspicions it raised, its services) and
//! its view of the cluster (member states, the alert log). The rendering is a pure function
//! of a [`Snapshot`], tested without a node; the handler only gathers the snapshot.

mod hosts;

use super::ApiError;
use super::json;
use super::routes::{Ctx, ask, ask_services_quick, views};
use crate::actors::gossip::{GossipMsg, StatsSnapshot};
use crate::gossip::{MemberView, Status};
use crate::keys::{ServiceState, ServiceStatus};
use crate::probe::process::ProcessFigures;
use crate::store::schema::FILE_NAME;
use crate::supervision::manager::ManagerMsg;
use crate::types::{NodeName, Time};
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write;

/// The content type Prometheus expects of the text format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub(super) fn router() -> Router<Ctx> {
    Router::new().route("/metrics", get(metrics))
}

/// What one scrape reports.
pub struct Snapshot {
    pub stats: StatsSnapshot,
    pub views: Vec<MemberView>,
    /// This node's services; `None` while the supervisor is restarting (then no service
    /// series are reported rather than a misleading empty set).
    pub services: Option<Vec<ServiceStatus>>,
    /// The history database's files and their sizes in bytes (absent files are left out).
    pub store_files: Vec<(String, u64)>,
    pub now: Time,
    /// The leader the election actor published.
    pub leader: Option<NodeName>,
    /// This node's local health score (0: on time; see `watch::health`).
    pub health: u32,
    /// This daemon's own figures; `None` where `/proc` cannot be read.
    pub process: Option<ProcessFigures>,
}

async fn metrics(State(ctx): State<Ctx>) -> Result<impl IntoResponse, ApiError> {
    let stats = ask(&ctx, GossipMsg::Stats).await?;
    let views = views(&ctx).await?;
    let services = ask_services_quick(&ctx, ManagerMsg::List).await.ok();
    let dir = ctx.data_dir.clone();
    let (store_files, process) = tokio::task::spawn_blocking(move || {
        let process = ProcessFigures::read()
            .inspect_err(|e| tracing::debug!(error = %e, "no process figures"))
            .ok();
        (store_files(&dir), process)
    })
    .await
    .unwrap_or_default();
    let snapshot = Snapshot {
        stats,
        views,
        services,
        store_files,
        now: ctx.clock.now(),
        leader: ctx.leader(),
        health: ctx.patience.score(),
        process,
    };
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], render(&snapshot)))
}

/// The database and its write-ahead log (which holds recent commits until a checkpoint).
fn store_files(dir: &std::path::Path) -> Vec<(String, u64)> {
    [FILE_NAME.to_string(), format!("{FILE_NAME}-wal")]
        .into_iter()
        .filter_map(|name| {
            let len = std::fs::metadata(dir.join(&name)).ok()?.len();
            Some((name, len))
        })
        .collect()
}

const MEMBER_STATES: [Status; 4] = [Status::Alive, Status::Suspect, Status::Down, Status::Left];
const SERVICE_STATES: [ServiceState; 6] = [
    ServiceState::Starting,
    ServiceState::Running,
    ServiceState::Stopping,
    ServiceState::Stopped,
    ServiceState::Restarting,
    ServiceState::Failed,
];
const HEALTHS: [&str; 4] = ["ok", "warning", "critical", "unknown"];

/// The exposition text of `s`.
pub fn render(s: &Snapshot) -> String {
    let mut out = Exposition::default();
    let me = s.stats.node.as_str();
    let version = env!("CARGO_PKG_VERSION");
    out.family(
        "nbwatch_info",
        "gauge",
        "This node's name and version (always 1).",
    );
    out.sample("nbwatch_info", &[("node", me), ("version", version)], 1.0);
    out.family(
        "nbwatch_incarnation",
        "gauge",
        "This node's incarnation; it rises at every restart.",
    );
    out.sample("nbwatch_incarnation", &[], s.stats.incarnation.0 as f64);
    out.family(
        "nbwatch_local_health_score",
        "gauge",
        "How late this node itself is (0: on time, up to 8); its watchers wait 1 + this times \
         longer before suspecting a peer.",
    );
    out.sample("nbwatch_local_health_score", &[], f64::from(s.health));

    // Members.
    out.family(
        "nbwatch_members",
        "gauge",
        "Members of the cluster by state, as this node sees them.",
    );
    for state in MEMBER_STATES {
        let n = s.views.iter().filter(|m| m.status == state).count();
        out.sample("nbwatch_members", &[("state", state.as_str())], n as f64);
    }
    out.family(
        "nbwatch_member_up",
        "gauge",
        "1 while a member is alive or suspect, 0 once it is down or has left.",
    );
    for m in &s.views {
        let up = matches!(m.status, Status::Alive | Status::Suspect);
        out.sample("nbwatch_member_up", &[("node", m.name.as_str())], f(up));
    }
    out.family(
        "nbwatch_probe_status",
        "gauge",
        "Each live member's host probes by the Nagios codes: 0 ok, 1 warning, 2 critical, \
         3 unknown.",
    );
    for m in s
        .views
        .iter()
        .filter(|m| matches!(m.status, Status::Alive | Status::Suspect))
    {
        for (probe, value) in crate::keys::with_prefix(&m.kv, crate::keys::PROBE_PREFIX) {
            let code = match crate::keys::probe::decode(value).health {
                "ok" => 0.0,
                "warning" => 1.0,
                "critical" => 2.0,
                _ => 3.0,
            };
            let labels = [("node", m.name.as_str()), ("probe", probe)];
            out.sample("nbwatch_probe_status", &labels, code);
        }
    }
    out.family(
        "nbwatch_member_last_heard_seconds",
        "gauge",
        "Seconds since this node last heard of each member's heartbeat.",
    );
    for m in &s.views {
        let age = s.now.since(m.last_heard).as_secs_f64();
        out.sample(
            "nbwatch_member_last_heard_seconds",
            &[("node", m.name.as_str())],
            age,
        );
    }
    out.family(
        "nbwatch_member_clock_offset_seconds",
        "gauge",
        "Each member's wall clock minus this node's, from its own datagrams (once it sent one).",
    );
    for m in s.views.iter().filter(|m| !m.is_self) {
        if let Some(offset) = m.clock_offset {
            out.sample(
                "nbwatch_member_clock_offset_seconds",
                &[("node", m.name.as_str())],
                offset as f64 / 1000.0,
            );
        }
    }
    out.family(
        "nbwatch_is_leader",
        "gauge",
        "1 if this node leads its part of the cluster.",
    );
    let leads = s.leader.as_ref().is_some_and(|l| l.as_str() == me);
    out.sample("nbwatch_is_leader", &[], f(leads));
    out.family(
        "nbwatch_is_alert_sender",
        "gauge",
        "1 if this node sends the alerts of its part of the cluster (the best-ranked live member with sinks).",
    );
    let sends = crate::election::sender(&s.views).is_some_and(|l| l.as_str() == me);
    out.sample("nbwatch_is_alert_sender", &[], f(sends));

    // Gossip.
    let g = &s.stats.stats;
    let gate = &s.stats.gate;
    let counters: [(&str, &str, u64); 8] = [
        (
            "nbwatch_gossip_dropped_unauthenticated_total",
            "Gossip frames dropped before decoding: they failed authentication with every key.",
            gate.dropped_auth,
        ),
        (
            "nbwatch_gossip_dropped_replayed_total",
            "Authentic gossip frames dropped as replays.",
            gate.dropped_replay,
        ),
        (
            "nbwatch_gossip_sent_bytes_total",
            "Bytes of gossip datagrams sent.",
            g.bytes_sent,
        ),
        (
            "nbwatch_gossip_sent_messages_total",
            "Gossip datagrams sent.",
            g.datagrams_sent,
        ),
        (
            "nbwatch_gossip_received_bytes_total",
            "Bytes of gossip datagrams received.",
            g.bytes_received,
        ),
        (
            "nbwatch_gossip_received_messages_total",
            "Gossip datagrams received.",
            g.datagrams_received,
        ),
        (
            "nbwatch_suspicions_raised_total",
            "Times this node suspected a member (after its probes and its helpers' failed).",
            g.suspicions_raised,
        ),
        (
            "nbwatch_refutations_total",
            "Times this node refuted a suspicion of itself.",
            g.refutations,
        ),
    ];
    for (name, help, value) in counters {
        out.family(name, "counter", help);
        out.sample(name, &[], value as f64);
    }
    let name = "nbwatch_gossip_sent_kind_bytes_total";
    out.family(name, "counter", "Bytes of gossip sent, by kind of message.");
    for (kind, value) in [
        ("syn", g.bytes_syn),
        ("synack", g.bytes_synack),
        ("ack", g.bytes_ack),
        ("news", g.bytes_news),
        ("probe", g.bytes_probe),
    ] {
        out.sample(name, &[("kind", kind)], value as f64);
    }
    let name = "nbwatch_gossip_dropped_messages_total";
    out.family(
        name,
        "counter",
        "Datagrams dropped unread: malformed, of a foreign cluster, or too large.",
    );
    for (reason, value) in [
        ("malformed", g.dropped_malformed),
        ("foreign", g.dropped_foreign),
        ("oversized", g.dropped_oversized),
    ] {
        out.sample(name, &[("reason", reason)], value as f64);
    }

    // Services.
    if let Some(services) = &s.services {
        render_services(&mut out, services);
    }

    // Alerts.
    render_alerts(&mut out, &json::alerts(&s.views));

    // Store.
    let name = "nbwatch_store_size_bytes";
    out.family(
        name,
        "gauge",
        "Size of the history database's files on disk.",
    );
    for (file, bytes) in &s.store_files {
        out.sample(name, &[("file", file)], *bytes as f64);
    }

    // Hosts, and this process.
    hosts::render_hosts(&mut out, &s.views, s.now);
    render_zones(&mut out, &s.views);
    if let Some(process) = &s.process {
        hosts::render_process(&mut out, process);
    }
    out.text
}

fn render_services(out: &mut Exposition, services: &[ServiceStatus]) {
    let name = "nbwatch_service_state";
    out.family(
        name,
        "gauge",
        "1 for the state each of this node's services is in, 0 for the others.",
    );
    for s in services {
        for state in SERVICE_STATES {
            let labels = [
                ("service", s.name.as_str()),
                ("tree", s.tree.as_str()),
                ("state", state.as_str()),
            ];
            out.sample(name, &labels, f(s.state == state));
        }
    }
    let name = "nbwatch_service_health";
    out.family(
        name,
        "gauge",
        "1 for the health of each service (the worst of its probes), 0 for the others.",
    );
    for s in services {
        for health in HEALTHS {
            let labels = [
                ("service", s.name.as_str()),
                ("tree", s.tree.as_str()),
                ("health", health),
            ];
            out.sample(name, &labels, f(s.health == health));
        }
    }
    let name = "nbwatch_service_restarts_total";
    out.family(
        name,
        "counter",
        "Restarts of each service since the daemon started it.",
    );
    for s in services {
        let labels = [("service", s.name.as_str()), ("tree", s.tree.as_str())];
        out.sample(name, &labels, f64::from(s.restarts));
    }
}

/// Incidents by kind and stage, and the sinks' deliveries by kind, sink and result (`ok` or
/// `failed`: the error text itself would make a new series per message).
/// Every zone as this node's zone publishes it (see `gossip::core::zones`): reachability,
/// members by state and open incidents, labelled by zone. Nothing before the first
/// publication.
fn render_zones(out: &mut Exposition, views: &[MemberView]) {
    let mut latest = crate::keys::zone::Latest::default();
    for m in views
        .iter()
        .filter(|m| m.is_self || crate::election::is_live(m))
    {
        for (key, value) in m.kv.iter() {
            latest.offer(&m.name, key, value);
        }
    }
    let zones = latest.into_map();
    if zones.is_empty() {
        return;
    }
    out.family(
        "nbwatch_zone_reachable",
        "gauge",
        "1 while a zone is reachable from this node's zone, 0 once two representatives could not reach it.",
    );
    for (zone, (_, p)) in &zones {
        out.sample("nbwatch_zone_reachable", &[("zone", zone)], f(p.reachable));
    }
    out.family(
        "nbwatch_zone_members",
        "gauge",
        "Members of each zone by state, from its summary.",
    );
    for (zone, (_, p)) in &zones {
        let s = &p.summary;
        for (state, n) in [
            ("up", s.up),
            ("suspect", s.suspect),
            ("down", s.down),
            ("total", s.total),
        ] {
            out.sample(
                "nbwatch_zone_members",
                &[("zone", zone), ("state", state)],
                f64::from(n),
            );
        }
    }
    out.family(
        "nbwatch_zone_incidents",
        "gauge",
        "Open incidents of each zone (members down, services failed), from its summary.",
    );
    for (zone, (_, p)) in &zones {
        out.sample(
            "nbwatch_zone_incidents",
            &[("zone", zone)],
            f64::from(p.summary.incidents),
        );
    }
}

fn render_alerts(out: &mut Exposition, alerts: &Value) {
    let mut incidents: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut deliveries: BTreeMap<(String, String, &'static str), u64> = BTreeMap::new();
    for a in alerts.as_array().map(Vec::as_slice).unwrap_or_default() {
        let text = |k: &str| a[k].as_str().unwrap_or("").to_string();
        *incidents.entry((text("kind"), text("state"))).or_default() += 1;
        for sink in a["sinks"].as_array().map(Vec::as_slice).unwrap_or_default() {
            let result = if sink["result"] == "ok" {
                "ok"
            } else {
                "failed"
            };
            let key = (
                text("kind"),
                sink["sink"].as_str().unwrap_or("").to_string(),
                result,
            );
            *deliveries.entry(key).or_default() += 1;
        }
    }
    let name = "nbwatch_alerts";
    out.family(
        name,
        "gauge",
        "Incidents in the cluster's alert log by kind and stage (claim, sending, sent).",
    );
    for ((kind, state), n) in &incidents {
        out.sample(name, &[("kind", kind), ("state", state)], *n as f64);
    }
    let name = "nbwatch_alert_deliveries";
    out.family(
        name,
        "gauge",
        "Deliveries of the alert log's incidents to sinks, by kind, sink and result.",
    );
    for ((kind, sink, result), n) in &deliveries {
        let labels = [("kind", kind.as_str()), ("sink", sink), ("result", result)];
        out.sample(name, &labels, *n as f64);
    }
}

fn f(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

/// Text being built: `# HELP` and `# TYPE` once per family, then its samples.
#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            let pairs: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
                .collect();
            let _ = write!(self.text, "{{{}}}", pairs.join(","));
        }
        let _ = writeln!(self.text, " {}", number(value));
    }
}

/// A sample value: integers without a fraction, NaN and infinities as the format spells them.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// Label values escape backslash, double quote and newline.
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Help texts escape backslash and newline.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gossip::Stats;
    use crate::types::{Incarnation, NodeName};

    fn member(name: &str, status: Status) -> MemberView {
        MemberView {
            name: NodeName::from(name),
            addr: "127.0.0.1:7710".parse().expect("addr"),
            status,
            incarnation: Incarnation(1),
            last_heard: Time(1_000),
            is_self: name == "a",
            kv: Default::default(),
            clock_offset: None,
            reports: 0,
        }
    }

    fn snapshot() -> Snapshot {
        Snapshot {
            stats: StatsSnapshot {
                node: NodeName::from("a"),
                incarnation: Incarnation(4),
                stats: Stats {
                    bytes_sent: 1234,
                    suspicions_raised: 2,
                    ..Default::default()
                },
                gate: crate::secure::GateStats {
                    dropped_auth: 7,
                    ..Default::default()
                },
            },
            views: vec![
                MemberView {
                    kv: std::sync::Arc::new(
                        [
                            ("probe.disk", "critical@1000 free=1B"),
                            ("sys", "0.5 0.25 0.1 12.5 40 0 63.2 abc"),
                            ("sys.boot", "1700000000"),
                            (
                                "probe.web",
                                "ok@1000 time=0.25s;1;2 up=99.5%;90:;80:;0;100 hits=12c \
                                 temp=40C n=3",
                            ),
                        ]
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .into(),
                    ),
                    ..member("a", Status::Alive)
                },
                MemberView {
                    clock_offset: Some(-3_600_250),
                    reports: 0,
                    kv: std::sync::Arc::new(
                        [("sys".to_string(), "9 9 9 99 99 99 99".to_string())].into(),
                    ),
                    ..member("b", Status::Down)
                },
                member("c\"x", Status::Alive),
            ],
            leader: Some(NodeName::from("a")),
            services: Some(vec![ServiceStatus {
                name: "db".into(),
                tree: "tv".into(),
                state: ServiceState::Running,
                pid: Some(7),
                restarts: 3,
                last_exit: None,
                health: "ok".into(),
                since: Time(0),
                shape: Default::default(),
            }]),
            store_files: vec![("history.db".into(), 4096)],
            now: Time(3_500),
            health: 2,
            process: Some(ProcessFigures {
                cpu_seconds: 1.5,
                resident_bytes: 9_000_000,
                virtual_bytes: 100_000_000,
                start_time_seconds: 1_700_000_100.25,
                open_fds: 12,
                max_fds: Some(1024),
                threads: 5,
            }),
        }
    }

    #[test]
    fn every_family_has_help_and_type_and_samples_are_exact() {
        let text = render(&snapshot());
        for line in [
            "nbwatch_members{state=\"alive\"} 2",
            "nbwatch_members{state=\"down\"} 1",
            "nbwatch_member_up{node=\"b\"} 0",
            "nbwatch_member_last_heard_seconds{node=\"a\"} 2.5",
            "nbwatch_member_clock_offset_seconds{node=\"b\"} -3600.25",
            "nbwatch_gossip_sent_bytes_total 1234",
            "nbwatch_suspicions_raised_total 2",
            "nbwatch_gossip_dropped_unauthenticated_total 7",
            "nbwatch_incarnation 4",
            "nbwatch_local_health_score 2",
            "nbwatch_is_leader 1",
            "nbwatch_service_state{service=\"db\",tree=\"tv\",state=\"running\"} 1",
            "nbwatch_service_state{service=\"db\",tree=\"tv\",state=\"failed\"} 0",
            "nbwatch_service_restarts_total{service=\"db\",tree=\"tv\"} 3",
            "nbwatch_store_size_bytes{file=\"history.db\"} 4096",
            "nbwatch_probe_status{node=\"a\",probe=\"disk\"} 2",
            "nbwatch_node_load1{node=\"a\"} 0.5",
            "nbwatch_node_load15{node=\"a\"} 0.1",
            "nbwatch_node_cpu_busy_ratio{node=\"a\"} 0.125",
            "nbwatch_node_memory_used_ratio{node=\"a\"} 0.4",
            "nbwatch_node_swap_used_ratio{node=\"a\"} 0",
            "nbwatch_node_filesystem_used_ratio{node=\"a\"} 0.632",
            "nbwatch_node_boot_time_seconds{node=\"a\"} 1700000000",
            "nbwatch_probe_bytes{node=\"a\",probe=\"disk\",label=\"free\"} 1",
            "nbwatch_probe_seconds{node=\"a\",probe=\"web\",label=\"time\"} 0.25",
            "nbwatch_probe_ratio{node=\"a\",probe=\"web\",label=\"up\"} 0.995",
            "nbwatch_probe_total{node=\"a\",probe=\"web\",label=\"hits\"} 12",
            "nbwatch_probe_value{node=\"a\",probe=\"web\",label=\"temp\",unit=\"C\"} 40",
            "nbwatch_probe_value{node=\"a\",probe=\"web\",label=\"n\",unit=\"\"} 3",
            "process_cpu_seconds_total 1.5",
            "process_resident_memory_bytes 9000000",
            "process_start_time_seconds 1700000100.25",
            "process_open_fds 12",
            "process_max_fds 1024",
            "process_threads 5",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        // A member that is down exports no host figures: they would read as current.
        assert!(!text.contains("nbwatch_node_load1{node=\"b\"}"), "{text}");
        // A quote in a label value is escaped.
        assert!(
            text.contains("nbwatch_member_up{node=\"c\\\"x\"} 1"),
            "{text}"
        );
        let mut typed = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap_or("");
                assert!(typed.insert(name.to_string()), "{name} typed twice");
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap_or("");
                assert!(typed.contains(name), "{name} sampled before its TYPE");
            }
        }
    }

    #[test]
    fn numbers_are_written_as_the_format_spells_them() {
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(f64::NEG_INFINITY), "-Inf");
        assert_eq!(escape_label("a\\b\nc\"d"), "a\\\\b\\nc\\\"d");
    }
}

#[cfg(test)]
mod zone_tests {
    use super::*;
    use crate::keys::zone::Published;
    use crate::types::{Incarnation, NodeName};
    use crate::wire::ZoneSummary;

    #[test]
    fn each_zone_published_in_this_zone_is_a_series_by_zone() {
        let p = |zone: &str, reachable: bool| Published {
            summary: ZoneSummary {
                zone: zone.into(),
                version: 9,
                reps: Vec::new(),
                total: 16,
                up: if reachable { 15 } else { 0 },
                suspect: 0,
                down: 1,
                down_names: Vec::new(),
                leader: None,
                incidents: 1,
                metrics: Vec::new(),
            },
            reachable,
            since: None,
            at: 5,
        };
        let kv: std::collections::BTreeMap<String, String> = [
            ("zones.attic".to_string(), p("attic", true).encode()),
            ("zones.barn".to_string(), p("barn", false).encode()),
        ]
        .into();
        let me = MemberView {
            name: NodeName::from("a1"),
            addr: "127.0.0.1:7710".parse().expect("addr"),
            status: Status::Alive,
            incarnation: Incarnation(1),
            last_heard: Time(1_000),
            is_self: true,
            kv: std::sync::Arc::new(kv),
            clock_offset: Some(0),
            reports: 0,
        };
        let mut out = Exposition::default();
        render_zones(&mut out, &[me]);
        for line in [
            "nbwatch_zone_reachable{zone=\"attic\"} 1",
            "nbwatch_zone_reachable{zone=\"barn\"} 0",
            "nbwatch_zone_members{zone=\"attic\",state=\"up\"} 15",
            "nbwatch_zone_members{zone=\"barn\",state=\"total\"} 16",
            "nbwatch_zone_incidents{zone=\"barn\"} 1",
        ] {
            assert!(
                out.text.lines().any(|l| l == line),
                "no {line} in\n{}",
                out.text
            );
        }
        let mut none = Exposition::default();
        render_zones(&mut none, &[]);
        assert!(none.text.is_empty());
    }
}
