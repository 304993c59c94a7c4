//! In-process clusters: several nodes in one test process on loopback, port 0, talking through
//! real sockets; observed through their HTTP API like a user would.

use nbwatch::cli::client::get_json;
use nbwatch::config::Config;
use nbwatch::node::{self, Child, NodeError, NodeHandle};
use serde_json::Value;
use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::Instant;

const DEADLINE: Duration = Duration::from_secs(20);
const HTTP: Duration = Duration::from_secs(2);

/// Polls `check` until it is true or `deadline` passes (then panics with `what`).
async fn wait_until<F, Fut>(what: &str, deadline: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let end = Instant::now() + deadline;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < end, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn config(name: &str, dir: &tempfile::TempDir, seeds: Vec<SocketAddr>) -> Config {
    let mut config = Config::defaults_for_test(name, &dir.path().join(name));
    config.gossip.interval = Duration::from_millis(200);
    config.gossip.seeds = seeds;
    config
}

async fn start(config: Config) -> NodeHandle {
    let sockets = node::bind(&config).await.expect("bind");
    nbwatch::daemon::start(config, sockets)
        .await
        .expect("start")
}

/// `GET /api/v1/members` (empty while the API does not answer).
async fn members(node: &NodeHandle) -> Vec<Value> {
    match get_json(node.api_addr(), "/api/v1/members", HTTP).await {
        Ok(Value::Array(members)) => members,
        _ => Vec::new(),
    }
}

async fn state_of(node: &NodeHandle, name: &str) -> Option<String> {
    members(node)
        .await
        .into_iter()
        .find(|m| m["name"] == name)
        .and_then(|m| m["state"].as_str().map(str::to_string))
}

async fn all_alive(node: &NodeHandle, names: &[&str]) -> bool {
    let members = members(node).await;
    members.len() == names.len()
        && names.iter().all(|n| {
            members
                .iter()
                .any(|m| m["name"] == *n && m["state"] == "alive")
        })
}

/// The names `node` reports as leader.
async fn leaders(node: &NodeHandle) -> Vec<String> {
    members(node)
        .await
        .into_iter()
        .filter(|m| m["is_leader"] == true)
        .filter_map(|m| m["name"].as_str().map(str::to_string))
        .collect()
}

async fn three_nodes(dir: &tempfile::TempDir) -> Vec<NodeHandle> {
    let a = start(config("a", dir, vec![])).await;
    let seed = vec![a.gossip_addr()];
    let b = start(config("b", dir, seed.clone())).await;
    let c = start(config("c", dir, seed)).await;
    let nodes = vec![a, b, c];
    for node in &nodes {
        wait_until("every node sees three alive members", DEADLINE, || {
            all_alive(node, &["a", "b", "c"])
        })
        .await;
    }
    nodes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_join_through_the_first_and_all_see_three_alive_members() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nodes = three_nodes(&dir).await;
    // The election settles after the membership: wait for b to name one leader.
    wait_until("b names exactly one leader", DEADLINE, || async {
        leaders(&nodes[1]).await.len() == 1
    })
    .await;
    let members = members(&nodes[1]).await;
    let leaders: Vec<&Value> = members.iter().filter(|m| m["is_leader"] == true).collect();
    assert_eq!(leaders.len(), 1, "{members:#?}");
    assert_eq!(leaders[0]["name"], "a");
    for m in &members {
        assert!(
            m["addr"]
                .as_str()
                .is_some_and(|a| a.starts_with("127.0.0.1:")),
            "{m}"
        );
        assert!(m["incarnation"].as_u64().is_some_and(|i| i >= 1), "{m}");
        assert!(
            m["last_heard"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{m}"
        );
    }
    let events = get_json(nodes[0].api_addr(), "/api/v1/events", HTTP)
        .await
        .expect("events");
    let joined: Vec<&Value> = events
        .as_array()
        .expect("array")
        .iter()
        .filter(|e| e["kind"] == "node_joined")
        .collect();
    assert!(joined.len() >= 2, "{events:#}");
    for node in nodes {
        node.shutdown().await.expect("clean shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_set_on_one_node_shows_in_the_others_view() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut quiet = config("a", &dir, vec![]);
    quiet.metrics.interval = Duration::ZERO; // so the probe does not overwrite our sample
    let a = start(quiet).await;
    let b = start(config("b", &dir, vec![a.gossip_addr()])).await;
    wait_until("b sees a", DEADLINE, || all_alive(&b, &["a", "b"])).await;

    let sample = nbwatch::probe::metrics::HostMetrics {
        load1: 7.25,
        ..Default::default()
    };
    for (key, value) in sample.to_kv() {
        a.set(&key, Some(value)).await.expect("set");
    }
    wait_until("b sees a's load", DEADLINE, || async {
        members(&b)
            .await
            .iter()
            .any(|m| m["name"] == "a" && m["metrics"]["load1"] == 7.25)
    })
    .await;

    // b announces its own metrics, and a lower priority makes it the leader everywhere.
    wait_until("a sees b's metrics", DEADLINE, || async {
        members(&a)
            .await
            .iter()
            .any(|m| m["name"] == "b" && m["metrics"]["mem_used_pct"].is_number())
    })
    .await;
    a.set("node.priority", Some("5".into())).await.expect("set");
    wait_until("b leads in a's view", DEADLINE, || async {
        members(&a)
            .await
            .iter()
            .any(|m| m["name"] == "b" && m["is_leader"] == true)
    })
    .await;

    let refused = a.set("left", Some("1".into())).await;
    assert!(matches!(refused, Err(NodeError::Kv(_))), "{refused:?}");
    a.shutdown().await.expect("shutdown");
    b.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_node_with_a_live_nodes_name_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = start(config("a", &dir, vec![])).await;
    let twin_dir = tempfile::tempdir().expect("tempdir");
    let mut twin = start(config("a", &twin_dir, vec![a.gossip_addr()])).await;
    let outcome = tokio::time::timeout(DEADLINE, twin.stopped())
        .await
        .expect("the twin stops on its own");
    match outcome {
        Err(NodeError::Fatal(reason)) => {
            assert!(reason.contains("name a is taken"), "{reason}");
        }
        other => panic!("expected a fatal error, got {other:?}"),
    }
    assert!(all_alive(&a, &["a"]).await);
    a.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_that_shuts_down_is_left_on_the_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut nodes = three_nodes(&dir).await;
    let c = nodes.pop().expect("c");
    c.shutdown().await.expect("shutdown");
    for node in &nodes {
        wait_until("c is left", DEADLINE, || async {
            state_of(node, "c").await.as_deref() == Some("left")
        })
        .await;
    }
    let events = get_json(nodes[0].api_addr(), "/api/v1/events", HTTP)
        .await
        .expect("events");
    assert!(
        events
            .as_array()
            .expect("array")
            .iter()
            .any(|e| e["kind"] == "node_left" && e["node"] == "c"),
        "{events:#}"
    );
    for node in nodes {
        node.shutdown().await.expect("shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_whose_seed_never_answers_keeps_running_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A listener that never accepts: the join times out rather than being refused.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let mut lonely = start(config(
        "lonely",
        &dir,
        vec![silent.local_addr().expect("addr")],
    ))
    .await;
    wait_until("it shows itself alive", DEADLINE, || {
        all_alive(&lonely, &["lonely"])
    })
    .await;
    // Past the 3 s join timeout it is still there and answering.
    let past_timeout = Instant::now() + Duration::from_secs(4);
    wait_until("the join timed out", DEADLINE, || async {
        Instant::now() >= past_timeout
    })
    .await;
    assert!(lonely.is_running());
    assert!(all_alive(&lonely, &["lonely"]).await);
    let still = tokio::time::timeout(Duration::from_millis(100), lonely.stopped()).await;
    assert!(still.is_err(), "the node stopped: {still:?}");
    lonely.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garbage_datagrams_are_counted_and_dropped_and_the_node_keeps_working() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = start(config("a", &dir, vec![])).await;
    let b = start(config("b", &dir, vec![a.gossip_addr()])).await;
    wait_until("b sees a", DEADLINE, || all_alive(&b, &["a", "b"])).await;

    let sender = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let to = a.gossip_addr();
    // A valid datagram to truncate: the same header a real one has.
    let valid = nbwatch::wire::encode(&nbwatch::wire::Envelope {
        from: "mallory".into(),
        incarnation: nbwatch::types::Incarnation(1),
        beat: nbwatch::wire::Beat(1),
        msg: nbwatch::wire::Message::Ping { seq: 1 },
    })
    .expect("encode");
    let random: Vec<u8> = (0..300u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut truncated = valid.clone();
    truncated.truncate(valid.len() - 3);
    let mut bad_version = valid.clone();
    bad_version[3] = 0x7f;
    let garbage: Vec<Vec<u8>> = vec![
        nbwatch::wire::MAGIC
            .iter()
            .copied()
            .chain(random.clone())
            .collect(),
        truncated,
        vec![b'N'; 2000],
        b"HTTP/1.1 200 OK\r\n\r\n".to_vec(),
        random,
        bad_version,
    ];
    for g in &garbage {
        sender.send_to(g, to).await.expect("send");
    }
    wait_until("every garbage datagram is counted", DEADLINE, || async {
        let Ok(stats) = get_json(a.api_addr(), "/api/v1/stats", HTTP).await else {
            return false;
        };
        let n = |k: &str| stats[k].as_u64().unwrap_or(0);
        n("dropped_oversized") >= 1
            && n("dropped_foreign") >= 2
            && n("dropped_malformed") >= 3
            && stats["node"] == "a"
            && n("incarnation") >= 1
    })
    .await;
    // Still gossiping: a key written now reaches b.
    a.set("app.after", Some("garbage".into()))
        .await
        .expect("set");
    wait_until("b sees a's key", DEADLINE, || async {
        b.members().await.is_ok_and(|ms| {
            ms.iter().any(|m| {
                m.name.as_str() == "a"
                    && m.kv.get("app.after").map(String::as_str) == Some("garbage")
            })
        })
    })
    .await;
    assert!(all_alive(&b, &["a", "b"]).await);
    a.shutdown().await.expect("shutdown");
    b.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crashed_gossip_actor_is_restarted_with_a_higher_incarnation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = start(config("a", &dir, vec![])).await;
    let b = start(config("b", &dir, vec![a.gossip_addr()])).await;
    wait_until("a sees b", DEADLINE, || all_alive(&a, &["a", "b"])).await;
    let inc = |ms: Vec<Value>| {
        ms.iter()
            .find(|m| m["name"] == "b")
            .and_then(|m| m["incarnation"].as_u64())
            .unwrap_or(0)
    };
    let before = inc(members(&a).await);
    b.crash(Child::Gossip);
    wait_until("a sees b's new life", DEADLINE, || async {
        inc(members(&a).await) > before && all_alive(&a, &["a", "b"]).await
    })
    .await;
    b.crash(Child::Api);
    b.crash(Child::Watch);
    wait_until("b answers again", DEADLINE, || all_alive(&b, &["a", "b"])).await;
    assert!(b.is_running());
    a.shutdown().await.expect("shutdown");
    b.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unknown_api_paths_are_a_json_404() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = start(config("a", &dir, vec![])).await;
    let err = get_json(a.api_addr(), "/api/v1/nope", HTTP).await;
    match err {
        Err(nbwatch::cli::client::ClientError::Status { code: 404, body }) => {
            assert!(body.contains("no such endpoint"), "{body}");
        }
        other => panic!("expected a 404, got {other:?}"),
    }
    a.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_that_dies_without_leaving_is_down_on_the_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut nodes = three_nodes(&dir).await;
    // Kill a joiner: two witnesses are needed, so the seed must be watching it too.
    let c = nodes.pop().expect("c");
    c.kill().await;
    for node in &nodes {
        wait_until("c is down", DEADLINE, || async {
            state_of(node, "c").await.as_deref() == Some("down")
        })
        .await;
    }
    let events = get_json(nodes[0].api_addr(), "/api/v1/events", HTTP)
        .await
        .expect("events");
    let down = events
        .as_array()
        .expect("array")
        .iter()
        .find(|e| e["kind"] == "node_down" && e["node"] == "c")
        .cloned()
        .unwrap_or_default();
    // Down takes two independent witnesses (docs/semantics.md): here the two survivors.
    let witnesses: BTreeSet<&str> = down["witnesses"]
        .as_array()
        .map(|w| w.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(
        witnesses.len() >= 2 && !witnesses.contains("c"),
        "c's node_down needs two distinct witnesses other than c, has {witnesses:?}: {events:#}"
    );
    for node in nodes {
        node.shutdown().await.expect("shutdown");
    }
}

/// A node whose own state does not fit in one datagram still gets `left` across.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_with_a_large_state_that_shuts_down_is_left_on_the_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = start(config("a", &dir, vec![])).await;
    let b = start(config("b", &dir, vec![a.gossip_addr()])).await;
    wait_until("a sees b", DEADLINE, || all_alive(&a, &["a", "b"])).await;
    for i in 0..20 {
        let key = format!("app.k{i}");
        b.set(&key, Some("x".repeat(100))).await.expect("set");
    }
    wait_until("a has b's keys", DEADLINE, || async {
        a.members().await.is_ok_and(|ms| {
            ms.iter()
                .any(|m| m.name.as_str() == "b" && m.kv.contains_key("app.k19"))
        })
    })
    .await;
    b.shutdown().await.expect("shutdown");
    wait_until("b is left", DEADLINE, || async {
        state_of(&a, "b").await.as_deref() == Some("left")
    })
    .await;
    a.shutdown().await.expect("shutdown");
}

/// The gossiped state of a service of `node` as `other` sees it (`svc.<name>`).
async fn service_seen(other: &NodeHandle, node: &str, service: &str) -> Option<Value> {
    let views = other.members().await.ok()?;
    let view = views.iter().find(|m| m.name.as_str() == node)?;
    let value = view.kv.get(&format!("svc.{service}"))?;
    serde_json::from_str(value).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_nodes_service_states_reach_the_other_nodes_through_gossip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let trees = dir.path().join("a-trees");
    std::fs::create_dir_all(&trees).expect("trees");
    std::fs::write(
        trees.join("t.toml"),
        "name = \"t\"\n[[children]]\nname = \"app\"\ncommand = [\"/bin/sleep\", \"1000\"]\n",
    )
    .expect("tree");
    let mut with_tree = config("a", &dir, vec![]);
    with_tree.supervision.trees = trees;
    let a = start(with_tree).await;
    let b = start(config("b", &dir, vec![a.gossip_addr()])).await;
    wait_until("b sees app running on a", DEADLINE, || async {
        service_seen(&b, "a", "app")
            .await
            .is_some_and(|v| v["state"] == "running" && v["tree"] == "t" && v["pid"].is_u64())
    })
    .await;
    let stopped = a
        .service_command("app", nbwatch::keys::Command::Stop)
        .await
        .expect("the node answers");
    assert_eq!(stopped, Ok(()));
    wait_until("b sees app stopped on a", DEADLINE, || async {
        service_seen(&b, "a", "app")
            .await
            .is_some_and(|v| v["state"] == "stopped" && v["pid"].is_null())
    })
    .await;
    // A restarted gossip actor starts a new incarnation with an empty state: the services'
    // states are published into it again.
    let incarnation = |views: Vec<nbwatch::gossip::MemberView>| {
        views
            .iter()
            .find(|m| m.name.as_str() == "a")
            .map_or(0, |m| m.incarnation.0)
    };
    let before = incarnation(b.members().await.expect("members"));
    a.crash(Child::Gossip);
    wait_until("b sees a's new life with app in it", DEADLINE, || async {
        incarnation(b.members().await.unwrap_or_default()) > before
            && service_seen(&b, "a", "app")
                .await
                .is_some_and(|v| v["state"] == "stopped")
    })
    .await;
    a.shutdown().await.expect("shutdown");
    b.shutdown().await.expect("shutdown");
}
