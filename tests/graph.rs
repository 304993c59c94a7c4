//! The dependency graph with real daemons on loopback: `graph`, `impact` and a `node_down`
//! alert that names what a dead host takes down elsewhere; `availability` from a history
//! holding a hand-made record of failures.

mod common;
use common::daemons::*;
use common::{sunk, wait_for};
use nbwatch::cli::client::get_json;
use nbwatch::events::{ClusterEvent, NodeEvent, RecordedEvent, ServiceEvent, ServiceEventKind};
use nbwatch::store::record::{Row, event_row};
use nbwatch::types::{Incarnation, NodeName, Time};
use nix::sys::signal::Signal;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(25);
const HTTP: Duration = Duration::from_secs(2);

fn stdout_json(out: &std::process::Output) -> Value {
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"))
}

fn vertex<'a>(graph: &'a Value, id: &str) -> Option<&'a Value> {
    (graph["vertices"].as_array().into_iter().flatten()).find(|v| v["id"] == id)
}

fn has_edge(graph: &Value, from: &str, to: &str, kind: &str) -> bool {
    (graph["edges"].as_array().into_iter().flatten())
        .any(|e| e["from"] == from && e["to"] == to && e["kind"] == kind)
}

async fn graph(api: SocketAddr) -> Result<Value, String> {
    get_json(api, "/api/v1/graph", HTTP)
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_graph_shows_trees_and_requirements_and_a_dead_host_names_what_it_takes_down() {
    let mut cluster = Cluster::new();
    let sink = cluster.dir.path().join("alerts.jsonl");
    let sink_q = toml::Value::String(sink.display().to_string());
    let db = own_trees(&mut cluster, "n1", Vec::new(), "n1-trees");
    std::fs::write(
        cluster.dir.path().join("n1-trees/db.toml"),
        "name = \"db\"\n[[children]]\nname = \"pg\"\ncommand = [\"/bin/sleep\", \"1000\"]\n",
    )
    .expect("tree");
    cluster.restart(db).await;
    let seed = vec![cluster.nodes[db].gossip];
    let web = own_trees(&mut cluster, "n2", seed.clone(), "n2-trees");
    std::fs::write(
        cluster.dir.path().join("n2-trees/site.toml"),
        "name = \"site\"\n[[children]]\nname = \"front\"\nstrategy = \"one_for_all\"\n\
         [[children.children]]\nname = \"web\"\nrequires = [\"n1:pg\"]\n\
         command = [\"/bin/sleep\", \"1000\"]\n",
    )
    .expect("tree");
    cluster.restart(web).await;
    let third = cluster.add("n3", "n3", seed);
    cluster.nodes[third].extra = format!(
        "[[alerts.sinks]]\ntype = \"exec\"\n\
         command = [\"/bin/sh\", \"-c\", \"cat >> {}\"]\n",
        sink_q.as_str().unwrap_or_default()
    );
    cluster.restart(third).await;
    let api3 = cluster.nodes[third].api;
    let api3_s = api3.to_string();

    let g = wait_for(
        "n3 sees both trees and the requirement",
        DEADLINE,
        async || {
            let g = graph(api3).await?;
            match vertex(&g, "n2:web") {
                Some(v)
                    if v["state"] == "running" && has_edge(&g, "n2:web", "n1:pg", "requires") =>
                {
                    Ok(g)
                }
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    for (from, to, kind) in [
        ("n1", "n1/db", "contains"),
        ("n1/db", "n1:pg", "supervises"),
        ("n2", "n2/site", "contains"),
        ("n2/site", "n2/site/front", "supervises"),
        ("n2/site/front", "n2:web", "supervises"),
    ] {
        assert!(has_edge(&g, from, to, kind), "{from} -> {to}: {g}");
    }
    assert!(vertex(&g, "n3").is_some_and(|v| v["kind"] == "host"));
    let cli_graph = stdout_json(&client(&["graph", "--json", "--api", &api3_s], &[]).await);
    assert!(vertex(&cli_graph, "n2/site/front").is_some(), "{cli_graph}");
    let dot = client(&["graph", "--dot", "--api", &api3_s], &[]).await;
    let dot = String::from_utf8_lossy(&dot.stdout).to_string();
    assert!(
        dot.starts_with("digraph nbwatch {")
            && dot.contains("\"n2:web\" -> \"n1:pg\" [style=dashed"),
        "{dot}"
    );

    let impact = stdout_json(&client(&["impact", "n1", "--json", "--api", &api3_s], &[]).await);
    let hit = (impact["impacted"].as_array().into_iter().flatten())
        .find(|h| h["id"] == "n2:web")
        .unwrap_or_else(|| panic!("n2:web fails with n1: {impact}"));
    assert_eq!(
        hit["path"],
        serde_json::json!(["n1", "n1/db", "n1:pg", "n2:web"])
    );
    let text = client(&["impact", "n1:pg", "--api", &api3_s], &[]).await;
    let text = String::from_utf8_lossy(&text.stdout).to_string();
    assert!(
        text.contains("if n1:pg fails, 1 more fail:") && text.contains("n1:pg -> n2:web"),
        "{text}"
    );
    let unknown = client(&["impact", "n9:nothing", "--api", &api3_s], &[]).await;
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("no vertex \"n9:nothing\""),
        "{unknown:?}"
    );

    cluster.nodes[db].signal(Signal::SIGKILL);
    let g = wait_for("n1 fails and takes n2:web down", DEADLINE, async || {
        let g = graph(api3).await?;
        let web = vertex(&g, "n2:web").cloned().unwrap_or_default();
        match vertex(&g, "n1") {
            Some(v) if v["failed"] == true && web["down_by"] == serde_json::json!(["n1"]) => Ok(g),
            other => Err(format!("{other:?} / {web}")),
        }
    })
    .await;
    assert_eq!(
        vertex(&g, "n1:pg").expect("n1:pg")["down_by"],
        serde_json::json!(["n1"])
    );
    let alert = wait_for("the node_down alert", DEADLINE, async || {
        (sunk(&sink).into_iter())
            .find(|a| a["kind"] == "node_down" && a["node"] == "n1")
            .ok_or_else(|| "none yet".to_string())
    })
    .await;
    let summary = alert["summary"].as_str().unwrap_or_default();
    assert!(summary.ends_with("; it takes down n2:web"), "{alert}");
}

fn recorded(at: Time, event: NodeEvent, me: &str) -> Row {
    let r = RecordedEvent { at, event };
    Row::Event(event_row(&r, &NodeName::from(me)).expect("an event row"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn availability_is_measured_from_the_recorded_history() {
    let mut cluster = Cluster::new();
    let i = cluster.add("n1", "n1", Vec::new());
    let dir = cluster.nodes[i].data_dir.clone();
    std::fs::create_dir_all(&dir).expect("data dir");
    // A host `ghost` watched for 4,000 s two days ago: down 100 s, then 300 s, then it left.
    let t0 = Time::wall_now().as_millis() - 2 * 86_400_000;
    let at = |s: u64| Time(t0 + s * 1000);
    let ghost = NodeName::from("ghost");
    let inc = Incarnation(1);
    let node = |e: ClusterEvent| NodeEvent::Cluster(e);
    let down = |heard: u64, life: u64| {
        node(ClusterEvent::NodeDown {
            node: ghost.clone(),
            incarnation: Incarnation(life),
            last_heard: at(heard),
            witnesses: vec![NodeName::from("n1"), NodeName::from("n2")],
        })
    };
    let up = |n: u64| {
        node(ClusterEvent::NodeUp {
            node: ghost.clone(),
            incarnation: Incarnation(n),
        })
    };
    let svc = |kind| {
        NodeEvent::Service(ServiceEvent {
            service: "db".into(),
            tree: "db".into(),
            kind,
        })
    };
    let rows = vec![
        recorded(
            at(0),
            node(ClusterEvent::NodeJoined {
                node: ghost.clone(),
                addr: "127.0.0.1:9".parse().expect("addr"),
                incarnation: inc,
            }),
            "n1",
        ),
        recorded(at(1002), down(1000, 1), "n1"),
        recorded(at(1100), up(2), "n1"),
        recorded(at(3002), down(3000, 2), "n1"),
        recorded(at(3300), up(3), "n1"),
        recorded(
            at(4000),
            node(ClusterEvent::NodeLeft {
                node: ghost.clone(),
                incarnation: Incarnation(3),
            }),
            "n1",
        ),
        recorded(at(0), svc(ServiceEventKind::Started { pid: 10 }), "ghost"),
        recorded(
            at(500),
            svc(ServiceEventKind::Exited {
                how: "signal 9 (SIGKILL)".into(),
            }),
            "ghost",
        ),
        recorded(
            at(510),
            svc(ServiceEventKind::Restarted {
                pid: 11,
                restarts: 1,
            }),
            "ghost",
        ),
        recorded(at(4000), svc(ServiceEventKind::Stopped), "ghost"),
    ];
    let mut writer = nbwatch::store::writer::Writer::open(&dir).expect("open the history");
    writer.write(&rows).expect("write the history");
    drop(writer);
    cluster.restart(i).await;
    let api = cluster.nodes[i].api.to_string();

    let report = stdout_json(
        &client(
            &[
                "availability",
                "--since",
                "3d",
                "--simulate",
                "20000",
                "--seed",
                "5",
                "--json",
                "--api",
                &api,
            ],
            &[],
        )
        .await,
    );
    let host = (report["hosts"].as_array().into_iter().flatten())
        .find(|h| h["node"] == "ghost")
        .unwrap_or_else(|| panic!("ghost: {report}"));
    assert_eq!(host["failures"], 2, "{host}");
    assert_eq!(host["observed_s"], 4000.0, "{host}");
    assert_eq!(host["down_s"], 400.0, "{host}");
    assert_eq!(host["mttr_s"], 200.0, "{host}");
    assert_eq!(host["mtbf_s"], 1800.0, "{host}");
    assert_eq!(host["availability"], 0.9, "{host}");
    let db = (report["services"].as_array().into_iter().flatten())
        .find(|s| s["id"] == "ghost:db")
        .unwrap_or_else(|| panic!("ghost:db: {report}"));
    assert_eq!(
        (&db["failures"], &db["mttr_s"], &db["mtbf_s"]),
        (&Value::from(1), &Value::from(10.0), &Value::from(3990.0)),
        "{db}"
    );
    assert_eq!(report["simulation"]["seed"], 5, "{report}");
    let text = client(&["availability", "--since", "3d", "--api", &api], &[]).await;
    let text = String::from_utf8_lossy(&text.stdout).to_string();
    let line = text
        .lines()
        .find(|l| l.starts_with("ghost "))
        .unwrap_or_default();
    let cells: Vec<&str> = line
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        cells,
        ["ghost", "2", "30m 0s", "3m 20s", "90.000 %"],
        "{text}"
    );
    let bad = client(&["availability", "--since", "soon", "--api", &api], &[]).await;
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("since"),
        "{bad:?}"
    );
}
