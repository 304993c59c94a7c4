use super::availability::{Record, measure};
use super::steady::{self, Component};
use super::*;
use crate::keys::{ServiceStatus, Shape, gossip_key, gossip_value};
use crate::types::Time;
use std::time::Duration;

fn svc(name: &str, path: &[&str], state: ServiceState, requires: &[&str]) -> (String, String) {
    let s = ServiceStatus {
        name: name.into(),
        tree: path[0].into(),
        state,
        pid: Some(1),
        restarts: 0,
        last_exit: None,
        health: "ok".into(),
        since: Time(0),
        shape: Shape {
            path: if path.len() > 1 {
                path.iter().map(|p| p.to_string()).collect()
            } else {
                Vec::new()
            },
            requires: requires.iter().map(|r| r.to_string()).collect(),
        },
    };
    (gossip_key(name), gossip_value(&s))
}

/// nas runs postgres (tree db); desk runs web (tree site, nested under front) which requires
/// nas:postgres and cache on gone (nobody announces it); tv runs recorder requiring desk:web.
fn cluster(nas: Status) -> Vec<MemberView> {
    use crate::control::test_view;
    vec![
        test_view(
            "nas",
            nas,
            [svc("postgres", &["db"], ServiceState::Running, &[])],
        ),
        test_view(
            "desk",
            Status::Alive,
            [svc(
                "web",
                &["site", "front"],
                ServiceState::Running,
                &["nas:postgres"],
            )],
        ),
        test_view(
            "tv",
            Status::Alive,
            [svc(
                "recorder",
                &["tv"],
                ServiceState::Running,
                &["desk:web"],
            )],
        ),
        test_view("old", Status::Left, []),
    ]
}

#[test]
fn the_graph_has_hosts_supervisors_services_and_their_edges() {
    let g = Graph::from_views(&cluster(Status::Alive));
    let ids: Vec<&str> = g.vertices.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "nas",
            "nas/db",
            "nas:postgres",
            "desk",
            "desk/site",
            "desk/site/front",
            "desk:web",
            "tv",
            "tv/tv",
            "tv:recorder"
        ],
        "a member that left is not in the graph"
    );
    let has = |from: &str, to: &str, kind| {
        g.edges.contains(&Edge {
            from: from.into(),
            to: to.into(),
            kind,
        })
    };
    assert!(has("nas", "nas/db", EdgeKind::Contains));
    assert!(has("nas/db", "nas:postgres", EdgeKind::Supervises));
    assert!(has("desk/site", "desk/site/front", EdgeKind::Supervises));
    assert!(has("desk/site/front", "desk:web", EdgeKind::Supervises));
    assert!(has("desk:web", "nas:postgres", EdgeKind::Requires));
    assert!(has("tv:recorder", "desk:web", EdgeKind::Requires));
    assert_eq!(g.edges.len(), 9);
    assert!(g.vertices.iter().all(|v| !v.failed));
    assert_eq!(
        g.vertex("desk/site/front").unwrap().name.as_deref(),
        Some("site/front")
    );
}

#[test]
fn a_host_failure_takes_its_services_and_their_dependents_down_with_the_path() {
    let g = Graph::from_views(&cluster(Status::Alive));
    let hits = g.impact("nas").unwrap();
    let paths: Vec<Vec<&str>> = hits
        .iter()
        .map(|h| h.path.iter().map(String::as_str).collect())
        .collect();
    assert_eq!(
        paths,
        [
            vec!["nas", "nas/db"],
            vec!["nas", "nas/db", "nas:postgres"],
            vec!["nas", "nas/db", "nas:postgres", "desk:web"],
            vec!["nas", "nas/db", "nas:postgres", "desk:web", "tv:recorder"],
        ]
    );
    assert_eq!(g.services_elsewhere("nas"), ["desk:web", "tv:recorder"]);
    // A service's failure reaches only what requires it; its host is untouched.
    let hits = g.impact("desk:web").unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].path, ["desk:web", "tv:recorder"]);
    assert!(g.impact("tv:recorder").unwrap().is_empty());
    assert!(g.impact("nowhere").is_none());
}

#[test]
fn a_down_host_and_a_missing_requirement_fail_and_mark_what_they_take_down() {
    let mut views = cluster(Status::Down);
    views.push(crate::control::test_view(
        "lab",
        Status::Alive,
        [svc(
            "probe",
            &["lab"],
            ServiceState::Running,
            &["gone:cache"],
        )],
    ));
    let g = Graph::from_views(&views);
    assert!(g.vertex("nas").unwrap().failed);
    let missing = g.vertex("gone:cache").unwrap();
    assert_eq!((missing.state.as_str(), missing.failed), ("missing", true));
    let down = g.taken_down();
    assert_eq!(
        down["desk:web"].iter().collect::<Vec<_>>(),
        ["nas"],
        "the stale `running` of a service behind a down host is overruled"
    );
    assert!(down.contains_key("nas:postgres"));
    assert_eq!(down["lab:probe"].iter().collect::<Vec<_>>(), ["gone:cache"]);
    assert!(!down.contains_key("desk"));
}

fn rec(at: u64, node: &str, kind: &str, service: Option<&str>, detail: &str) -> Record {
    Record {
        at: Time(at * 1000),
        node: node.into(),
        kind: kind.into(),
        service: service.map(str::to_string),
        detail: detail.into(),
        last_heard: None,
    }
}

fn down(at: u64, node: &str, last_heard: u64) -> Record {
    Record {
        last_heard: Some(Time(last_heard * 1000)),
        ..rec(at, node, "node_down", None, "")
    }
}

const S: fn(u64) -> Duration = Duration::from_secs;

#[test]
fn host_failures_run_from_the_last_word_to_the_return_and_a_leave_is_none() {
    let records = vec![
        rec(100, "a", "node_joined", None, ""),
        down(302, "a", 300),
        rec(400, "a", "node_up", None, ""),
        down(702, "a", 700),
        rec(750, "a", "node_joined", None, ""),
        rec(0, "b", "node_joined", None, ""),
        rec(500, "b", "node_left", None, ""),
        rec(600, "b", "node_joined", None, ""),
        rec(0, "c", "node_joined", None, ""),
        down(952, "c", 950),
    ];
    let r = measure(&records, Time(0), Time(1_000_000));
    let a = &r.hosts["a"];
    // Observed from its first record: 900 s; down 100 + 50 s in two failures.
    assert_eq!((a.failures, a.observed, a.down), (2, S(900), S(150)));
    assert_eq!(a.mttr(), Some(S(75)));
    assert_eq!(a.mtbf(), Some(S(375)));
    assert!((a.availability() - (1.0 - 150.0 / 900.0)).abs() < 1e-12);
    assert!(!a.failed_now);
    let b = &r.hosts["b"];
    assert_eq!((b.failures, b.observed, b.down), (0, S(900), S(0)));
    assert_eq!((b.availability(), b.mtbf(), b.mttr()), (1.0, None, None));
    let c = &r.hosts["c"];
    assert_eq!((c.failures, c.down, c.failed_now), (1, S(50), true));
}

#[test]
fn a_failure_across_the_window_start_counts_only_its_part_inside() {
    let records = vec![
        rec(0, "a", "node_joined", None, ""),
        down(902, "a", 900),
        rec(1100, "a", "node_up", None, ""),
    ];
    let r = measure(&records, Time(1_000_000), Time(2_000_000));
    let a = &r.hosts["a"];
    assert_eq!((a.failures, a.observed, a.down), (1, S(1000), S(100)));
    assert_eq!(a.mttr(), Some(S(100)));
}

#[test]
fn service_failures_are_abnormal_exits_and_give_ups_until_the_next_start() {
    let s = Some("db");
    let records = vec![
        rec(0, "a", "service_started", s, "started (pid 1, tree t)"),
        rec(200, "a", "service_exited", s, "exited: signal 9 (SIGKILL)"),
        rec(210, "a", "service_restarted", s, "restarted"),
        rec(500, "a", "service_exited", s, "exited: exit 3"),
        rec(501, "a", "service_failed", s, "failed: tree t gave up"),
        rec(600, "a", "service_started", s, "started"),
        rec(800, "a", "service_exited", s, "exited: exit 0"),
        rec(801, "a", "service_restarted", s, "restarted"),
        rec(900, "a", "service_stopped", s, "stopped"),
    ];
    let r = measure(&records, Time(0), Time(1_000_000));
    let db = &r.services[&("a".to_string(), "db".to_string())];
    // Up 0..200, down 200..210, up ..500, down 500..600, up ..900, stopped (left out) ..1000.
    assert_eq!((db.failures, db.observed, db.down), (2, S(900), S(110)));
    assert_eq!(db.mttr(), Some(S(55)));
    assert_eq!(db.mtbf(), Some(S(395)));
}

fn comp(mtbf: f64, mttr: f64) -> Component {
    Component {
        mtbf: Some(mtbf),
        mttr: Some(mttr),
    }
}

/// desk (0.9) runs web, which requires nas:postgres (0.99) on nas (0.95).
fn small() -> (Graph, BTreeMap<String, Component>) {
    use crate::control::test_view;
    let views = vec![
        test_view(
            "nas",
            Status::Alive,
            [svc("postgres", &["db"], ServiceState::Running, &[])],
        ),
        test_view(
            "desk",
            Status::Alive,
            [svc(
                "web",
                &["site"],
                ServiceState::Running,
                &["nas:postgres"],
            )],
        ),
    ];
    let models = [
        ("desk", comp(90.0, 10.0)),
        ("nas", comp(950.0, 50.0)),
        ("nas:postgres", comp(99.0, 1.0)),
    ]
    .into_iter()
    .map(|(k, c)| (k.to_string(), c))
    .collect();
    (Graph::from_views(&views), models)
}

#[test]
fn steady_state_availability_is_the_product_over_the_closure_computed_by_hand() {
    let (g, models) = small();
    let a = steady::exact(&g, &models);
    assert!((a["desk:web"] - 0.9 * 0.95 * 0.99).abs() < 1e-12, "{a:?}");
    assert!((a["nas:postgres"] - 0.95 * 0.99).abs() < 1e-12);
    // Doubling nas gains (0.84645 + 0.9405) * 0.05; desk only 0.84645 * 0.1.
    let (best, gain) = steady::best_redundancy(&g, &models).unwrap();
    assert_eq!(best, "nas");
    assert!((gain - (0.9 * 0.95 * 0.99 + 0.95 * 0.99) * 0.05).abs() < 1e-12);
}

#[test]
fn a_component_shared_by_two_requirements_counts_once() {
    use crate::control::test_view;
    let views = vec![
        test_view(
            "a",
            Status::Alive,
            [
                svc("x", &["t"], ServiceState::Running, &[]),
                svc("y", &["t"], ServiceState::Running, &[]),
            ],
        ),
        test_view(
            "b",
            Status::Alive,
            [svc("web", &["t"], ServiceState::Running, &["a:x", "a:y"])],
        ),
    ];
    let g = Graph::from_views(&views);
    let models: BTreeMap<String, Component> = [("a".to_string(), comp(9.0, 1.0))].into();
    let a = steady::exact(&g, &models);
    assert!((a["b:web"] - 0.9).abs() < 1e-12, "not 0.81: {a:?}");
}

#[test]
fn the_simulation_agrees_with_the_steady_state_within_its_error() {
    let (g, models) = small();
    let exact = steady::exact(&g, &models);
    let sim = steady::simulate(&g, &models, 400_000, 7);
    assert_eq!(sim.step, 0.25, "a quarter of the shortest MTTR");
    for (id, (a, err)) in &sim.services {
        assert!(*err > 0.0 && *err < 0.01, "{id}: error {err}");
        assert!(
            (a - exact[id]).abs() <= 4.0 * err,
            "{id}: simulated {a} ± {err}, exact {}",
            exact[id]
        );
    }
    assert_eq!(sim, steady::simulate(&g, &models, 400_000, 7), "seeded");
}
