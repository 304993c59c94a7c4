//! The history store end to end, on real SQLite files: in-process nodes on loopback (port 0)
//! observed through the API and the CLI, and a writer process killed with SIGKILL in a loop.
//! Tests wait on conditions with deadlines, never fixed sleeps.

mod common;
use common::wait_for;
use nbwatch::cli::client::get_json;
use nbwatch::config::Config;
use nbwatch::node::{self, NodeHandle};
use nbwatch::store::record::Row;
use nbwatch::store::schema;
use nbwatch::store::writer::Writer;
use nbwatch::types::Time;
use nbwatch::wire::Sample;
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(25);
const HTTP: Duration = Duration::from_secs(5);
const BIN: &str = env!("CARGO_BIN_EXE_nbwatch");

fn config(name: &str, dir: &Path, seeds: Vec<SocketAddr>) -> Config {
    let mut config = Config::defaults_for_test(name, &dir.join(name));
    config.gossip.interval = Duration::from_millis(200);
    config.metrics.interval = Duration::from_millis(300);
    config.gossip.seeds = seeds;
    config
}

async fn start(config: Config) -> NodeHandle {
    let sockets = node::bind(&config).await.expect("bind");
    nbwatch::daemon::start(config, sockets)
        .await
        .expect("start")
}

async fn array(api: SocketAddr, path: &str) -> Result<Vec<Value>, String> {
    match get_json(api, path, HTTP).await {
        Ok(Value::Array(list)) => Ok(list),
        Ok(other) => Err(format!("{path}: not an array: {other}")),
        Err(e) => Err(format!("{path}: {e}")),
    }
}

async fn all_alive(node: &NodeHandle, names: &[&str]) -> Result<(), String> {
    let members = array(node.api_addr(), "/api/v1/members").await?;
    let alive = members.iter().filter(|m| m["state"] == "alive").count();
    if alive == names.len() && members.len() == names.len() {
        Ok(())
    } else {
        Err(format!("{members:?}"))
    }
}

async fn cluster(dir: &Path, names: &[&str]) -> Vec<NodeHandle> {
    let first = start(config(names[0], dir, vec![])).await;
    let seed = vec![first.gossip_addr()];
    let mut nodes = vec![first];
    for name in &names[1..] {
        nodes.push(start(config(name, dir, seed.clone())).await);
    }
    for node in &nodes {
        wait_for("every node sees every node alive", DEADLINE, async || {
            all_alive(node, names).await
        })
        .await;
    }
    nodes
}

fn millis(rfc3339: &Value) -> Option<u64> {
    let t = humantime::parse_rfc3339(rfc3339.as_str()?).ok()?;
    Some(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_survivor_records_a_killed_node_down_with_the_same_last_heard_and_its_samples() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut nodes = cluster(dir.path(), &["a", "b", "c"]).await;
    for node in &nodes {
        wait_for("samples of c are recorded", DEADLINE, async || {
            let h = array(node.api_addr(), "/api/v1/history/c?metric=load1").await?;
            if h.len() >= 2 {
                Ok(())
            } else {
                Err(format!("{h:?}"))
            }
        })
        .await;
    }
    let c = nodes.pop().expect("c");
    c.kill().await;
    let mut last_heard = Vec::new();
    for node in &nodes {
        let down = wait_for("c is down in the recorded events", DEADLINE, async || {
            let events = array(node.api_addr(), "/api/v1/events?node=c").await?;
            events
                .into_iter()
                .find(|e| e["kind"] == "node_down")
                .ok_or_else(|| "no node_down yet".to_string())
        })
        .await;
        assert!(
            down["id"].as_i64().is_some(),
            "served from the database: {down}"
        );
        // Down takes two independent witnesses (docs/semantics.md): here the two survivors.
        let witnesses: BTreeSet<&str> = down["witnesses"]
            .as_array()
            .map(|w| w.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        assert!(
            witnesses.len() >= 2 && !witnesses.contains("c"),
            "c's node_down needs two distinct witnesses other than c, has {witnesses:?}: {down}"
        );
        last_heard.push(millis(&down["last_heard"]).expect("last_heard"));
    }
    let spread = last_heard.iter().max().unwrap_or(&0) - last_heard.iter().min().unwrap_or(&0);
    assert!(
        spread <= 1_000,
        "last_heard differs by {spread} ms: {last_heard:?}"
    );
    // The file itself, as `sqlite3` would read it, while the daemons run.
    for name in ["a", "b"] {
        let conn = schema::open_reader(&dir.path().join(name))
            .expect("open")
            .expect("a database");
        let (n, lh): (i64, i64) = conn
            .query_row(
                "SELECT count(*), max(last_heard) FROM events WHERE node = 'c' AND kind = 'node_down'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("query");
        assert_eq!(n, 1, "one down event for one incident on {name}");
        assert!(last_heard.contains(&(lh as u64)), "{lh} in {last_heard:?}");
        let samples: i64 = conn
            .query_row(
                "SELECT count(*) FROM samples_v WHERE node = 'c' AND metric = 'load1'",
                [],
                |r| r.get(0),
            )
            .expect("query");
        assert!(samples >= 2, "{name} holds c's samples: {samples}");
        schema::integrity_check(&conn).expect("integrity");
    }
    for node in nodes {
        node.shutdown().await.expect("shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_query_arguments_are_clear_errors_in_the_api_and_the_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = start(config("a", dir.path(), vec![])).await;
    let api = a.api_addr();
    wait_for("a's own samples are recorded", DEADLINE, async || {
        array(api, "/api/v1/history/a").await.and_then(|h| {
            if h.is_empty() {
                Err("none".into())
            } else {
                Ok(())
            }
        })
    })
    .await;
    let cases = [
        (
            "/api/v1/history/zz",
            404,
            "nothing is recorded of node \"zz\"",
        ),
        (
            "/api/v1/history/a?metric=nope",
            404,
            "has no metric \"nope\"",
        ),
        ("/api/v1/history/a?since=yesterday", 400, "not a duration"),
        ("/api/v1/events?since=5x", 400, "not a duration"),
        ("/api/v1/events?node=zz", 404, "nothing is recorded of node"),
        ("/api/v1/events?after=x", 400, "not an event id"),
        ("/api/v1/events?nod=a", 400, "unknown parameter \"nod\""),
    ];
    for (path, code, text) in cases {
        match get_json(api, path, HTTP).await {
            Err(nbwatch::cli::client::ClientError::Status { code: c, body }) => {
                assert_eq!(c, code, "{path}: {body}");
                let json: Value = serde_json::from_str(&body).expect("a JSON error");
                let error = json["error"].as_str().unwrap_or_default();
                assert!(error.contains(text), "{path}: {error}");
            }
            other => panic!("{path}: expected HTTP {code}, got {other:?}"),
        }
    }
    let cli = |args: &[&str]| {
        let mut cmd = Command::new(BIN);
        cmd.args(args).args(["--api", &api.to_string()]);
        cmd.output().expect("run the CLI")
    };
    let out = cli(&["history", "zz"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("nothing is recorded of node \"zz\""),
        "{stderr}"
    );
    let out = cli(&["events", "--since", "yesterday"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not a duration"), "{stderr}");
    let out = cli(&["history", "a", "--metric", "load1", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let json: Value = serde_json::from_slice(&out.stdout).expect("json");
    let first = &json[0];
    assert_eq!(first["metric"], "load1");
    assert!(
        first["value"].is_number() && first["at"].is_string(),
        "{first}"
    );
    let out = cli(&["events"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let header: Vec<&str> = stdout
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(header, ["AT", "NODE", "KIND", "DETAIL"], "{stdout}");
    a.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unwritable_history_leaves_the_node_running_and_writing_resumes_when_it_can() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("a");
    // A directory where the database file should be: every open fails (as root, permissions
    // would not stop us).
    std::fs::create_dir_all(data.join(schema::FILE_NAME).join("blocker")).expect("mkdir");
    let a = start(config("a", dir.path(), vec![])).await;
    let api = a.api_addr();
    // Samples are announced (and buffered) while the history cannot be written.
    wait_for("the node announces its metrics", DEADLINE, async || {
        let members = array(api, "/api/v1/members").await?;
        match members.first() {
            Some(m) if m["metrics"]["load1"].is_number() => Ok(()),
            _ => Err(format!("{members:?}")),
        }
    })
    .await;
    // Events still answer (from memory); history says why it cannot.
    array(api, "/api/v1/events").await.expect("events answer");
    match get_json(api, "/api/v1/history/a", HTTP).await {
        Err(nbwatch::cli::client::ClientError::Status { code: 500, body }) => {
            assert!(body.contains("history.db"), "{body}");
        }
        other => panic!("expected an error naming the file, got {other:?}"),
    }
    let unblocked = Time::wall_now();
    std::fs::remove_dir_all(data.join(schema::FILE_NAME)).expect("unblock");
    let history = wait_for("samples reach the database", DEADLINE, async || {
        let h = array(api, "/api/v1/history/a?metric=load1").await?;
        if h.is_empty() {
            Err("none".into())
        } else {
            Ok(h)
        }
    })
    .await;
    let first = millis(&history[0]["at"]).expect("at");
    assert!(
        first < unblocked.as_millis(),
        "samples buffered before the database could be written are kept"
    );
    a.shutdown().await.expect("shutdown");
}

/// Env var that turns [`crash_child_writer`] into the writer the crash test kills.
const CRASH_CHILD: &str = "NBWATCH_STORE_CRASH_CHILD";
const ROWS_PER_BATCH: u64 = 500;

/// Not a test on its own: with [`CRASH_CHILD`] set to a directory it writes batches of samples
/// there as fast as it can, printing `committed N` after batch N is committed, until killed.
#[test]
fn crash_child_writer() {
    let Some(dir) = std::env::var_os(CRASH_CHILD) else {
        return;
    };
    let mut writer = Writer::open(Path::new(&dir)).expect("open");
    let start: u64 = writer
        .connection()
        .query_row("SELECT coalesce(max(at), -1) + 1 FROM samples", [], |r| {
            r.get::<_, i64>(0)
        })
        .expect("max") as u64;
    let mut batch = start / ROWS_PER_BATCH;
    loop {
        let rows: Vec<Row> = (0..ROWS_PER_BATCH)
            .map(|j| {
                Row::Sample(Sample {
                    node: format!("n{}", j % 16),
                    metric: "load1".into(),
                    at: Time(batch * ROWS_PER_BATCH + j),
                    value: j as f64,
                })
            })
            .collect();
        writer.write(&rows).expect("write");
        println!("committed {batch}");
        batch += 1;
    }
}

#[test]
fn a_writer_killed_with_sigkill_in_a_loop_leaves_an_intact_file_with_every_committed_row() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("test binary");
    let mut committed: Option<u64> = None;
    for round in 0..6u64 {
        let mut child = Command::new(&exe)
            .args([
                "crash_child_writer",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CRASH_CHILD, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the writer");
        let stdout = child.stdout.take().expect("stdout");
        // Kill it after a varying number of commits, in the middle of writing.
        let target = 3 + round * 7;
        let mut seen = 0;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(n) = line.strip_prefix("committed ") {
                let n: u64 = n.trim().parse().expect("batch number");
                committed = Some(n).max(committed);
                seen += 1;
                if seen >= target {
                    break;
                }
            }
        }
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("kill -9");
        let status = child.wait().expect("wait");
        assert!(!status.success(), "round {round}: the writer was killed");
        // Every batch reported committed is there, whole, and the file is intact.
        let writer = Writer::open(dir.path()).expect("the database opens after kill -9");
        schema::integrity_check(writer.connection()).expect("integrity_check is ok");
        let last = committed.expect("some batch committed");
        let rows: i64 = writer
            .connection()
            .query_row(
                "SELECT count(*) FROM samples WHERE at < ?1",
                [((last + 1) * ROWS_PER_BATCH) as i64],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(rows as u64, (last + 1) * ROWS_PER_BATCH, "round {round}");
        let total: i64 = writer
            .connection()
            .query_row("SELECT count(*) FROM samples", [], |r| r.get(0))
            .expect("count");
        assert_eq!(total as u64 % ROWS_PER_BATCH, 0, "no half batch");
    }
}

/// `(metric, at)` of `node`'s samples in `[from, to)` as recorded in the database in `dir`.
fn recorded(dir: &Path, node: &str, from: Time, to: Time) -> Vec<(String, i64)> {
    let Ok(Some(conn)) = schema::open_reader(dir) else {
        return Vec::new();
    };
    let mut stmt = conn
        .prepare(
            "SELECT metric, at FROM samples_v WHERE node = ?1 AND at >= ?2 AND at < ?3
             ORDER BY at, metric",
        )
        .expect("prepare");
    stmt.query_map(
        rusqlite::params![node, from.as_millis() as i64, to.as_millis() as i64],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .expect("query")
    .collect::<Result<_, _>>()
    .expect("rows")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_stopped_for_a_while_back_fills_what_the_others_recorded_meanwhile() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut nodes = cluster(dir.path(), &["a", "b", "c"]).await;
    let c = nodes.pop().expect("c");
    c.shutdown().await.expect("stop c");
    let stopped = Time::wall_now();
    // While c is away, a records samples of a and b.
    let (a_dir, c_dir) = (dir.path().join("a"), dir.path().join("c"));
    wait_for("a records a few seconds of samples", DEADLINE, async || {
        let n = recorded(&a_dir, "b", stopped, Time::wall_now()).len();
        if n >= 7 * 8 {
            Ok(())
        } else {
            Err(format!("{n} samples"))
        }
    })
    .await;
    let returned = Time::wall_now();
    let missed_a = recorded(&a_dir, "a", stopped, returned);
    let missed_b = recorded(&a_dir, "b", stopped, returned);
    assert!(recorded(&c_dir, "b", stopped, returned).is_empty());
    let c = start(config("c", dir.path(), vec![nodes[0].gossip_addr()])).await;
    wait_for("c holds the samples it missed", DEADLINE, async || {
        let has_a = recorded(&c_dir, "a", stopped, returned);
        let has_b = recorded(&c_dir, "b", stopped, returned);
        let missing = missed_a.iter().filter(|s| !has_a.contains(s)).count()
            + missed_b.iter().filter(|s| !has_b.contains(s)).count();
        if missing == 0 {
            Ok(())
        } else {
            Err(format!(
                "{missing} of {} missing",
                missed_a.len() + missed_b.len()
            ))
        }
    })
    .await;
    // The event of c's own leave, recorded by the others, came back too.
    wait_for("c holds its own node_left", DEADLINE, async || {
        let events = array(c.api_addr(), "/api/v1/events?node=c").await?;
        if events.iter().any(|e| e["kind"] == "node_left") {
            Ok(())
        } else {
            Err(format!("{events:?}"))
        }
    })
    .await;
    c.shutdown().await.expect("shutdown");
    for node in nodes {
        node.shutdown().await.expect("shutdown");
    }
}
