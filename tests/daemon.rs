//! End to end: real `nbwatch run` processes on loopback, one config file and data dir per node
//! in a tempdir, observed through the HTTP API and the CLI like a user would.
//!
//! Every process is killed when its [`Cluster`] is dropped, also when a test panics; a failing
//! test prints the tail of every process's log. Ports are picked by binding port 0 and released
//! right before the spawn; a process that then loses the port to someone else is started again
//! on new ones. Tests wait on conditions by polling with deadlines, never by fixed sleeps.

mod common;
use common::daemons::*;
use common::{sunk, sunk_ids, wait_for};
use nbwatch::cli::client::get_json;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_is_down_everywhere_with_its_last_heard_time_and_back_with_a_higher_incarnation()
 {
    let mut cluster = Cluster::new();
    cluster.start_many(5).await;
    let survivors = cluster.others("n3");
    let before = max_incarnation(&cluster.others(""), "n3").await;

    let victim = cluster.index("n3");
    cluster.nodes[victim].signal(Signal::SIGKILL);
    let killed_at = SystemTime::now();
    cluster.nodes[victim].wait_exit(PROCESS_DEADLINE).await;

    let down = cluster.wait_state(&survivors, "n3", "down").await;
    let slack = Duration::from_millis(50);
    for ((observer, _), e) in survivors.iter().zip(&down) {
        let text = e["last_heard"].as_str().unwrap_or_default();
        let heard = humantime::parse_rfc3339_weak(text)
            .unwrap_or_else(|err| panic!("{observer}: last_heard {text:?}: {err}"));
        assert!(
            heard <= killed_at + slack,
            "{observer} last heard n3 at {text}, after the kill at {}",
            humantime::format_rfc3339_millis(killed_at)
        );
        assert!(
            heard + Duration::from_secs(3) >= killed_at,
            "{observer} last heard n3 at {text}, over 3 s before the kill at {}",
            humantime::format_rfc3339_millis(killed_at)
        );
    }

    cluster.restart(victim).await;
    wait_back(&cluster, "n3", before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_node_is_down_everywhere_and_back_with_a_higher_incarnation_once_continued() {
    let mut cluster = Cluster::new();
    cluster.start_many(5).await;
    let survivors = cluster.others("n2");
    let before = max_incarnation(&cluster.others(""), "n2").await;

    let victim = cluster.index("n2");
    cluster.nodes[victim].signal(Signal::SIGSTOP);
    cluster.wait_state(&survivors, "n2", "down").await;
    cluster.nodes[victim].signal(Signal::SIGCONT);

    wait_back(&cluster, "n2", before).await;
    let names = cluster.names();
    for node in &cluster.nodes {
        wait_for(
            &format!("{} sees all five alive again", node.name),
            DEADLINE,
            async || all_alive(node.api, &names).await,
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_sent_sigterm_exits_0_and_is_left_and_never_down_everywhere() {
    let mut cluster = Cluster::new();
    cluster.start_many(5).await;
    let survivors = cluster.others("n4");
    let leaver = cluster.index("n4");
    cluster.nodes[leaver].signal(Signal::SIGTERM);
    let status = cluster.nodes[leaver].wait_exit(PROCESS_DEADLINE).await;
    assert_eq!(status.code(), Some(0), "n4 exited with {status}");

    for (observer, api) in &survivors {
        wait_for(
            &format!("{observer} reports n4 left"),
            DEADLINE,
            async || {
                let members = members(*api).await?;
                match entry(&members, "n4").map(|e| e["state"].clone()) {
                    Some(state) if state == "left" => Ok(()),
                    Some(state) if state == "down" => {
                        panic!("{observer} reports n4 down, not left: {members:?}")
                    }
                    other => Err(format!("{other:?}")),
                }
            },
        )
        .await;
    }
    for (observer, api) in &survivors {
        let events = events(*api).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(
            events
                .iter()
                .any(|e| e["kind"] == "node_left" && e["node"] == "n4"),
            "{observer} has no node_left for n4: {events:#?}"
        );
        assert!(
            !events
                .iter()
                .any(|e| e["kind"] == "node_down" && e["node"] == "n4"),
            "{observer} recorded n4 down: {events:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_members_command_prints_a_table_or_json_and_says_when_the_daemon_is_not_running() {
    let mut cluster = Cluster::new();
    cluster.start_many(3).await;
    let api = cluster.nodes[0].api.to_string();
    let names = cluster.names();

    let table = client(&["members", "--api", &api], &[]).await;
    let stdout = text(&table.stdout);
    assert!(table.status.success(), "{table:?}");
    assert!(stdout.starts_with("NAME"), "{stdout}");
    for name in &names {
        assert!(
            stdout
                .lines()
                .any(|l| l.split_whitespace().next() == Some(name) && l.contains("alive")),
            "no alive row for {name}:\n{stdout}"
        );
    }

    let json = client(&["members", "--json", "--api", &api], &[]).await;
    assert!(json.status.success(), "{json:?}");
    let parsed: Value = serde_json::from_slice(&json.stdout).expect("members --json is JSON");
    let rows = parsed.as_array().expect("members --json is an array");
    assert_eq!(rows.len(), names.len(), "{parsed:#}");
    for row in rows {
        for key in [
            "name",
            "addr",
            "state",
            "incarnation",
            "last_heard",
            "is_leader",
            "metrics",
        ] {
            assert!(row.get(key).is_some(), "no {key:?} in {row}");
        }
    }

    let by_env = client(&["members"], &[("NBWATCH_API", &api)]).await;
    assert!(by_env.status.success(), "{by_env:?}");
    let stdout = text(&by_env.stdout);
    for name in &names {
        assert!(
            stdout
                .lines()
                .any(|l| l.split_whitespace().next() == Some(name) && l.contains("alive")),
            "no alive row for {name} with NBWATCH_API:\n{stdout}"
        );
    }

    let closed = closed_port().to_string();
    let refused = client(&["members", "--api", &closed], &[]).await;
    let stderr = text(&refused.stderr);
    assert!(!refused.status.success(), "{refused:?}");
    assert!(
        stderr.contains("not running") && stderr.contains(&closed),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_names_the_file_and_key_of_every_problem_and_accepts_the_sample() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[node]\nname = \"x\"\ncolour = \"blue\"\n\
         [gossip]\ninterval = \"soon\"\nlisten = \"nowhere\"\n",
    )
    .expect("write");
    let bad_path = bad.to_string_lossy().into_owned();
    let out = client(&["check-config", "--config", &bad_path], &[]).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 3, "one line per problem:\n{stderr}");
    for key in ["node.colour", "gossip.interval", "gossip.listen"] {
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&bad_path) && l.contains(key)),
            "no line naming {bad_path} and {key}:\n{stderr}"
        );
    }

    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/etc/nbwatch.toml");
    let out = client(&["check-config", "--config", sample], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_also_names_the_file_and_key_of_every_problem_in_the_trees() {
    let dir = tempfile::tempdir().expect("tempdir");
    let trees = dir.path().join("supervisors");
    std::fs::create_dir(&trees).expect("mkdir");
    std::fs::write(
        trees.join("tv.toml"),
        "name = \"tv\"\nstrategy = \"one_for_some\"\n\
         [[children]]\nname = \"db\"\ncommand = []\nshutdown = \"later\"\n",
    )
    .expect("write");
    std::fs::write(
        trees.join("web.toml"),
        "name = \"web\"\n[[children]]\nname = \"db\"\ncommand = [\"sleep\", \"9\"]\n",
    )
    .expect("write");
    let config = dir.path().join("nbwatch.toml");
    std::fs::write(&config, "[node]\nname = \"x\"\n").expect("write");
    let config_path = config.to_string_lossy().into_owned();
    let out = client(&["check-config", "--config", &config_path], &[]).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    for (file, key) in [
        ("tv.toml", "strategy"),
        ("tv.toml", "children[0].command"),
        ("tv.toml", "children[0].shutdown"),
    ] {
        assert!(
            stderr.lines().any(|l| l.contains(file) && l.contains(key)),
            "no line naming {file} and {key}:\n{stderr}"
        );
    }

    // Fixed, the duplicate service name across the two trees is what remains.
    std::fs::write(
        trees.join("tv.toml"),
        "name = \"tv\"\n[[children]]\nname = \"db\"\ncommand = [\"sleep\", \"9\"]\n",
    )
    .expect("write");
    let out = client(&["check-config", "--config", &config_path], &[]).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stderr.contains("web.toml") && stderr.contains("\"db\""),
        "{stderr}"
    );

    std::fs::remove_file(trees.join("web.toml")).expect("rm");
    let out = client(&["check-config", "--config", &config_path], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(text(&out.stdout).contains("1 supervision trees"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_also_names_the_file_and_key_of_every_problem_in_the_host_probes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let probes = dir.path().join("probes");
    std::fs::create_dir(&probes).expect("mkdir");
    std::fs::write(
        probes.join("disk.toml"),
        "command = [\"./check_nothing.sh\"]\ninterval = \"often\"\n",
    )
    .expect("write");
    let config = dir.path().join("nbwatch.toml");
    std::fs::write(&config, "[node]\nname = \"x\"\n").expect("write");
    let config_path = config.to_string_lossy().into_owned();
    let out = client(&["check-config", "--config", &config_path], &[]).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    for key in ["command", "interval"] {
        assert!(
            stderr
                .lines()
                .any(|l| l.contains("disk.toml") && l.contains(key)),
            "no line naming disk.toml and {key}:\n{stderr}"
        );
    }

    std::fs::write(probes.join("disk.toml"), "command = [\"true\"]\n").expect("write");
    let out = client(&["check-config", "--config", &config_path], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(text(&out.stdout).contains("1 host probes"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_sees_the_perfdata_of_another_nodes_host_probes() {
    let mut cluster = Cluster::new();
    // Every node's config is in the cluster's folder, so they share this probes folder.
    let probes = cluster.dir.path().join("probes");
    std::fs::create_dir(&probes).expect("mkdir");
    std::fs::write(
        probes.join("answer.toml"),
        "command = [\"sh\", \"-c\", \"echo 'WARNING - odd | answer=42 ratio=0.5% \
         time=250ms;500;1000;0 size=3MB tiny=0.000103s'; exit 1\"]\n\
         interval = \"1s\"\n",
    )
    .expect("write");
    cluster.start_many(2).await;
    let api = cluster.nodes[cluster.index("n1")].api;
    let n2 = wait_for("n1 has n2's probe metrics", DEADLINE, async || {
        let members = members(api).await?;
        match entry(&members, "n2") {
            Some(e) if e["metrics"]["answer.answer"].is_number() => Ok(e.clone()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let metrics = &n2["metrics"];
    assert_eq!(metrics["answer.answer"], 42.0, "{metrics}");
    assert_eq!(metrics["answer.ratio"], 0.5, "{metrics}");
    // In base units and in full: seconds, bytes (MB in 1024s), no rounding.
    assert_eq!(metrics["answer.time"], 0.25, "{metrics}");
    assert_eq!(metrics["answer.size"], 3_145_728.0, "{metrics}");
    assert_eq!(metrics["answer.tiny"], 0.000103, "{metrics}");
    let probe = &n2["probes"]["answer"];
    assert_eq!(probe["health"], "warning", "{probe}");
    let time = &probe["perfdata"]["time"];
    assert_eq!(
        (&time["unit"], &time["warn"], &time["crit"], &time["min"]),
        (
            &Value::from("s"),
            &Value::from("0.5"),
            &Value::from("1"),
            &Value::from(0.0)
        ),
        "{probe}"
    );
    assert_eq!(probe["perfdata"]["ratio"]["unit"], "%", "{probe}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_with_a_live_nodes_name_exits_1_saying_the_name_is_taken() {
    let mut cluster = Cluster::new();
    let first = cluster.start("n1", Vec::new()).await;
    let seed = cluster.nodes[first].gossip;
    let twin = cluster.add("n1-twin", "n1", vec![seed]);
    let status = match cluster.nodes[twin].start(Ports::pick()).await {
        Started::Exited(status) => status,
        Started::Ready => cluster.nodes[twin].wait_exit(DEADLINE).await,
    };
    let stderr = cluster.nodes[twin].stderr_text();
    assert_eq!(status.code(), Some(1), "the twin exited with {status}");
    assert!(stderr.contains("name n1 is taken"), "{stderr}");

    let api = cluster.nodes[first].api;
    all_alive(api, &["n1".to_string()])
        .await
        .expect("the first n1 is unharmed");
    assert!(cluster.nodes[first].exited().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_whose_seed_is_a_closed_port_runs_alone_and_logs_that_the_seed_did_not_answer() {
    let mut cluster = Cluster::new();
    let lonely = cluster.start("lonely", vec![closed_port()]).await;
    let node = &mut cluster.nodes[lonely];
    wait_for(
        "the log says the seed did not answer",
        DEADLINE,
        async || {
            let stderr = node.stderr_text();
            match stderr.lines().find(|l| l.contains("seed did not answer")) {
                Some(_) => Ok(()),
                None => Err(format!("{} bytes of log", stderr.len())),
            }
        },
    )
    .await;
    all_alive(node.api, &["lonely".to_string()])
        .await
        .expect("it lists itself alive");
    assert!(node.exited().is_none(), "it is still running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_sent_sigint_leaves_and_exits_0() {
    let mut cluster = Cluster::new();
    cluster.start_many(2).await;
    let leaver = cluster.index("n2");
    cluster.nodes[leaver].signal(Signal::SIGINT);
    let status = cluster.nodes[leaver].wait_exit(PROCESS_DEADLINE).await;
    assert_eq!(status.code(), Some(0), "n2 exited with {status}");
    cluster
        .wait_state(&cluster.others("n2"), "n2", "left")
        .await;
    let stderr = cluster.nodes[leaver].stderr_text();
    assert!(stderr.contains("SIGINT"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_sees_another_nodes_load_memory_and_uptime() {
    let mut cluster = Cluster::new();
    cluster.start_many(2).await;
    let api = cluster.nodes[cluster.index("n1")].api;
    let metrics = wait_for("n1 has n2's metrics", DEADLINE, async || {
        let members = members(api).await?;
        let m = entry(&members, "n2").map(|e| e["metrics"].clone());
        match m {
            Some(m)
                if ["load1", "mem_used_pct", "uptime_s"]
                    .iter()
                    .all(|k| m[k].is_number()) =>
            {
                Ok(m)
            }
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let mem = metrics["mem_used_pct"].as_f64().unwrap_or(-1.0);
    assert!((0.0..=100.0).contains(&mem), "{metrics}");
    assert!(
        metrics["uptime_s"].as_f64().is_some_and(|u| u > 0.0),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_first_node_started_again_without_seeds_is_found_by_the_others() {
    let mut cluster = Cluster::new();
    cluster.start_many(3).await;
    let before = max_incarnation(&cluster.others(""), "n1").await;
    let first = cluster.index("n1");
    cluster.nodes[first].signal(Signal::SIGKILL);
    cluster.nodes[first].wait_exit(PROCESS_DEADLINE).await;
    cluster
        .wait_state(&cluster.others("n1"), "n1", "down")
        .await;
    cluster.restart(first).await;
    wait_back(&cluster, "n1", before).await;
    let names = cluster.names();
    for node in &cluster.nodes {
        wait_for(
            &format!("{} sees all three alive again", node.name),
            DEADLINE,
            async || all_alive(node.api, &names).await,
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_left_and_is_started_again_is_alive_everywhere() {
    let mut cluster = Cluster::new();
    cluster.start_many(3).await;
    let before = max_incarnation(&cluster.others(""), "n3").await;
    let leaver = cluster.index("n3");
    cluster.nodes[leaver].signal(Signal::SIGTERM);
    let status = cluster.nodes[leaver].wait_exit(PROCESS_DEADLINE).await;
    assert_eq!(status.code(), Some(0), "n3 exited with {status}");
    cluster
        .wait_state(&cluster.others("n3"), "n3", "left")
        .await;
    cluster.restart(leaver).await;
    wait_back(&cluster, "n3", before).await;
}

/// A service that logs its start and its SIGTERM to `file`, and keeps a setsid grandchild
/// whose pid goes to `file.escapee`.
/// A service that logs its start and its stop; the stop once, although a stop signals the
/// process group and then every process of the service again (escapees included), so the
/// shell may get SIGTERM twice.
fn logging_service(name: &str, file: &Path) -> String {
    let f = file.display();
    format!(
        "[[children]]\nname = \"{name}\"\nshutdown = \"3s\"\n\
         command = [\"/bin/sh\", \"-c\", \"trap 'trap : TERM; echo stop {name} >> {f}; exit 0' TERM; \
         setsid sh -c 'echo $$ >> {f}.escapee; exec sleep 1000' & \
         echo start {name} >> {f}; while :; do sleep 0.05; done\"]\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_lists_restarts_stops_and_starts_services_and_a_killed_one_comes_back() {
    let mut cluster = Cluster::new();
    write_tree(
        &cluster,
        "web",
        "name = \"web\"\nstrategy = \"one_for_one\"\n\
         [[children]]\nname = \"app\"\ncommand = [\"/bin/sleep\", \"1000\"]\n",
    );
    let i = cluster.start("svc1", Vec::new()).await;
    let api = cluster.nodes[i].api;
    let api_s = api.to_string();
    let tok = cluster.nodes[i].token_file();
    let first = running_pid(api, "app", None).await;

    let json = client(&["services", "--json", "--api", &api_s], &[]).await;
    assert!(json.status.success(), "{json:?}");
    let parsed: Value = serde_json::from_slice(&json.stdout).expect("services --json is JSON");
    let app = &parsed[0];
    for key in [
        "node",
        "name",
        "tree",
        "state",
        "pid",
        "restarts",
        "last_exit",
        "health",
    ] {
        assert!(app.get(key).is_some(), "no {key} in {app}");
    }
    assert_eq!(app["node"], "svc1");
    assert_eq!(app["tree"], "web");
    let table = client(&["services", "--api", &api_s], &[]).await;
    let stdout = text(&table.stdout);
    assert!(
        stdout.starts_with("NAME") && stdout.contains("running"),
        "{stdout}"
    );

    // A crash is restarted by the tree and counted.
    kill(Pid::from_raw(first as i32), Signal::SIGKILL).expect("kill");
    let second = running_pid(api, "app", Some(first)).await;
    let list = services(api).await.expect("services");
    assert_eq!(list[0]["restarts"], 1);
    assert_eq!(list[0]["last_exit"], "signal 9 (SIGKILL)");
    let recorded = events(api).await.expect("events");
    assert!(
        recorded.iter().any(|e| e["kind"] == "service_restarted"),
        "{recorded:?}"
    );

    let restart = client(
        &["restart", "app", "--api", &api_s, "--token-file", &tok],
        &[],
    )
    .await;
    assert!(restart.status.success(), "{restart:?}");
    let third = running_pid(api, "app", Some(second)).await;
    assert!(!process_alive(second));

    let stop = client(&["stop", "app", "--api", &api_s, "--token-file", &tok], &[]).await;
    assert!(stop.status.success(), "{stop:?}");
    assert!(text(&stop.stdout).contains("app: stopped"), "{stop:?}");
    assert!(!process_alive(third));
    let start = client(
        &["start", "app", "--api", &api_s, "--token-file", &tok],
        &[],
    )
    .await;
    assert!(start.status.success(), "{start:?}");
    running_pid(api, "app", Some(third)).await;

    let unknown = client(
        &["restart", "nosuch", "--api", &api_s, "--token-file", &tok],
        &[],
    )
    .await;
    assert_eq!(unknown.status.code(), Some(1), "{unknown:?}");
    assert!(
        text(&unknown.stderr).contains("no service \"nosuch\""),
        "{unknown:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_services_in_reverse_order_and_leaves_no_process_behind() {
    let mut cluster = Cluster::new();
    let log = cluster.dir.path().join("order.log");
    let mut tree = "name = \"ordered\"\nstrategy = \"one_for_one\"\n".to_string();
    for name in ["first", "second", "third"] {
        tree.push_str(&logging_service(name, &log));
    }
    write_tree(&cluster, "ordered", &tree);
    let i = cluster.start("svc2", Vec::new()).await;
    let api = cluster.nodes[i].api;
    let mut pids = Vec::new();
    for name in ["first", "second", "third"] {
        pids.push(running_pid(api, name, None).await);
    }
    let escapees_file = PathBuf::from(format!("{}.escapee", log.display()));
    let escapees: Vec<u64> = wait_for("three escapees", PROCESS_DEADLINE, async || {
        let text = std::fs::read_to_string(&escapees_file).unwrap_or_default();
        let pids: Vec<u64> = text.lines().filter_map(|l| l.parse().ok()).collect();
        if pids.len() == 3 {
            Ok(pids)
        } else {
            Err(format!("{pids:?}"))
        }
    })
    .await;
    cluster.nodes[i].signal(Signal::SIGTERM);
    let status = cluster.nodes[i].wait_exit(DEADLINE).await;
    assert!(status.success(), "{status}");
    let order = std::fs::read_to_string(&log).expect("order log");
    let stops: Vec<&str> = order.lines().filter(|l| l.starts_with("stop")).collect();
    assert_eq!(
        stops,
        ["stop third", "stop second", "stop first"],
        "{order}"
    );
    for pid in pids.iter().chain(&escapees) {
        assert!(!process_alive(*pid), "pid {pid} outlived the daemon");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_tree_keeps_the_daemon_from_starting_and_nothing_runs() {
    let mut cluster = Cluster::new();
    let marker = cluster.dir.path().join("ran");
    write_tree(
        &cluster,
        "good",
        &format!(
            "name = \"good\"\n[[children]]\nname = \"g\"\n\
             command = [\"/bin/sh\", \"-c\", \"touch {}; exec sleep 1000\"]\n",
            marker.display()
        ),
    );
    write_tree(
        &cluster,
        "bad",
        "name = \"bad\"\nstrategy = \"one_for_some\"\n[[children]]\nname = \"b\"\ncommand = []\n",
    );
    let i = cluster.add("svc3", "svc3", Vec::new());
    let status = match cluster.nodes[i].start(Ports::pick()).await {
        Started::Exited(status) => status,
        Started::Ready => panic!("the daemon started with a malformed tree"),
    };
    assert_eq!(status.code(), Some(1));
    let stderr = cluster.nodes[i].stderr_text();
    assert!(
        stderr.contains("bad.toml") && stderr.contains("strategy") && stderr.contains("command"),
        "{stderr}"
    );
    assert!(
        !marker.exists(),
        "a service started from a config that was refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_and_the_reload_command_apply_new_trees_and_refuse_invalid_ones() {
    let mut cluster = Cluster::new();
    let one = |name: &str| {
        format!(
            "name = \"{name}\"\n[[children]]\nname = \"{name}-svc\"\ncommand = [\"/bin/sleep\", \"1000\"]\n"
        )
    };
    write_tree(&cluster, "a", &one("a"));
    let i = cluster.start("svc4", Vec::new()).await;
    let api = cluster.nodes[i].api;
    let a = running_pid(api, "a-svc", None).await;

    write_tree(&cluster, "b", &one("b"));
    cluster.nodes[i].signal(Signal::SIGHUP);
    let b = running_pid(api, "b-svc", None).await;
    assert_eq!(running_pid(api, "a-svc", None).await, a, "a was restarted");

    write_tree(&cluster, "c", "name = \"c\"\nintensity = -1\n");
    let api_s = api.to_string();
    let tok = cluster.nodes[i].token_file();
    let refused = client(&["reload", "--api", &api_s, "--token-file", &tok], &[]).await;
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    let stderr = text(&refused.stderr);
    assert!(
        stderr.contains("c.toml") && stderr.contains("intensity"),
        "{stderr}"
    );
    assert_eq!(running_pid(api, "a-svc", None).await, a);
    assert_eq!(running_pid(api, "b-svc", None).await, b);

    std::fs::remove_file(cluster.dir.path().join("supervisors/c.toml")).expect("rm");
    std::fs::remove_file(cluster.dir.path().join("supervisors/a.toml")).expect("rm");
    let reload = client(&["reload", "--api", &api_s, "--token-file", &tok], &[]).await;
    assert!(reload.status.success(), "{reload:?}");
    assert!(text(&reload.stdout).contains("stopped: a"), "{reload:?}");
    wait_for("a-svc is gone", PROCESS_DEADLINE, async || {
        let list = services(api).await?;
        if list.iter().any(|s| s["name"] == "a-svc") || process_alive(a) {
            Err(format!("{list:?}"))
        } else {
            Ok(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orphaned_grandchild_is_re_parented_to_the_daemon_and_reaped_when_it_exits() {
    let mut cluster = Cluster::new();
    let pidfile = cluster.dir.path().join("orphan.pid");
    // The subshell starts a setsid grandchild and exits at once: the grandchild is orphaned,
    // lives 0.5 s, and its zombie must not stay behind.
    write_tree(
        &cluster,
        "orphans",
        &format!(
            "name = \"orphans\"\n[[children]]\nname = \"parent\"\n\
             command = [\"/bin/sh\", \"-c\", \"(setsid sh -c 'echo $$ > {}; sleep 0.5' &); exec sleep 1000\"]\n",
            pidfile.display()
        ),
    );
    let i = cluster.start("svc5", Vec::new()).await;
    let daemon = cluster.nodes[i].pid().as_raw() as u64;
    let orphan: u64 = wait_for("the orphan's pid", PROCESS_DEADLINE, async || {
        std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| "no pid yet".to_string())
    })
    .await;
    let parent_of = |pid: u64| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                let rest = s[s.rfind(')')? + 1..].to_string();
                rest.split_whitespace().nth(1)?.parse::<u64>().ok()
            })
    };
    // While it lives it is the daemon's child (the daemon is a subreaper), not init's.
    if process_alive(orphan) {
        assert_eq!(
            parent_of(orphan),
            Some(daemon),
            "not re-parented to the daemon"
        );
    }
    wait_for("the orphan is reaped", PROCESS_DEADLINE, async || {
        if std::path::Path::new(&format!("/proc/{orphan}")).exists() {
            Err(format!("still in /proc (parent {:?})", parent_of(orphan)))
        } else {
            Ok(())
        }
    })
    .await;
}

/// Waits until every listed node's alert log shows an incident starting with `prefix` as sent
/// (from then on no node can send it again) and returns that entry as the first one sees it.
async fn sent_everywhere(apis: &[SocketAddr], prefix: &str) -> Value {
    let mut entry = Value::Null;
    for api in apis {
        entry = wait_for(
            &format!("{prefix} is sent as seen from {api}"),
            DEADLINE,
            async || {
                let log = match get_json(*api, "/api/v1/alerts", HTTP).await {
                    Ok(Value::Array(log)) => log,
                    other => return Err(format!("{other:?}")),
                };
                log.into_iter()
                    .find(|e| {
                        e["state"] == "sent"
                            && e["id"].as_str().is_some_and(|id| id.starts_with(prefix))
                    })
                    .ok_or_else(|| "not sent yet".to_string())
            },
        )
        .await;
    }
    entry
}

/// Gives every node added from now on an operator key and an exec sink that appends each
/// alert to a file of the test's folder; returns that file.
fn exec_sink_with_operator(cluster: &mut Cluster) -> PathBuf {
    let file = cluster.dir.path().join("alerts.jsonl");
    let (_, operator) = cluster.operator("op");
    cluster.extra = format!(
        "{operator}[[alerts.sinks]]\ntype = \"exec\"\ncommand = [\"/bin/sh\", \"-c\", \"cat >> {}\"]\n",
        file.display()
    );
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_send_exactly_one_alert_per_incident_through_the_leader() {
    let mut cluster = Cluster::new();
    let file = exec_sink_with_operator(&mut cluster);
    cluster.start_many(5).await;

    // A follower dies: one alert, from the leader n1, with the contract's shape.
    cluster.kill9("n4");
    sent_everywhere(&cluster.apis_except(&["n4"]), "node_down:n4:").await;
    let alerts = sunk_ids(&file, "node_down:n4:");
    assert_eq!(alerts.len(), 1, "{:#?}", sunk(&file));
    let a = &alerts[0];
    assert_eq!(a["sent_by"], "n1");
    assert_eq!(a["kind"], "node_down");
    assert_eq!(a["status"], "firing");
    assert_eq!(a["node"], "n4");
    for key in ["id", "service", "at", "since", "observers", "summary"] {
        assert!(a.get(key).is_some(), "no {key} in {a}");
    }
    assert!(
        a["summary"]
            .as_str()
            .unwrap_or("")
            .contains("n4 stopped talking at"),
        "{a}"
    );

    // The leader dies: one alert for it, sent by the next leader n2.
    cluster.kill9("n1");
    sent_everywhere(&cluster.apis_except(&["n1", "n4"]), "node_down:n1:").await;
    let alerts = sunk_ids(&file, "node_down:n1:");
    assert_eq!(alerts.len(), 1, "{:#?}", sunk(&file));
    assert_eq!(alerts[0]["sent_by"], "n2");

    // n1 comes back: one node_up.
    let n1 = cluster.index("n1");
    cluster.restart(n1).await;
    sent_everywhere(&cluster.apis_except(&["n4"]), "node_up:n1:").await;
    let ups = sunk_ids(&file, "node_up:n1:");
    assert_eq!(ups.len(), 1, "{:#?}", sunk(&file));
    assert_eq!(ups[0]["status"], "resolved");

    // A silenced node's death pages no one: the test alert requested after it is down goes
    // out, the silenced incident does not.
    let api = cluster.nodes[cluster.index("n2")].api.to_string();
    let tok = cluster.nodes[cluster.index("n2")].token_file();
    let silenced = client(
        &[
            "silence",
            "n3",
            "--for",
            "1h",
            "--reason",
            "planned reboot",
            "--api",
            &api,
            "--token-file",
            &tok,
        ],
        &[],
    )
    .await;
    assert!(silenced.status.success(), "{silenced:?}");
    let listed = client(&["silences", "--json", "--api", &api], &[]).await;
    assert!(
        text(&listed.stdout).contains("planned reboot"),
        "{listed:?}"
    );
    for live in cluster.apis_except(&["n3", "n4"]) {
        wait_for(
            "everyone knows the silence",
            DEADLINE,
            async || match get_json(live, "/api/v1/silences", HTTP).await {
                Ok(Value::Array(s)) if s.iter().any(|x| x["target"] == "n3") => Ok(()),
                other => Err(format!("{other:?}")),
            },
        )
        .await;
    }
    cluster.kill9("n3");
    for live in cluster.apis_except(&["n3", "n4"]) {
        wait_for("n3 is down everywhere", DEADLINE, async || {
            let members = members(live).await?;
            match entry(&members, "n3") {
                Some(m) if m["state"] == "down" => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
    }
    let test = client(
        &["alerts", "test", "--api", &api, "--token-file", &tok],
        &[],
    )
    .await;
    assert!(test.status.success(), "{test:?}");
    assert_eq!(sunk_ids(&file, "test:n2:").len(), 1, "{:#?}", sunk(&file));
    assert!(
        sunk_ids(&file, "node_down:n3:").is_empty(),
        "{:#?}",
        sunk(&file)
    );

    let log = client(&["alerts", "--api", &api], &[]).await;
    let out = text(&log.stdout);
    assert!(
        out.starts_with("INCIDENT") && out.contains("node_down:n4:"),
        "{out}"
    );
    let events = events(cluster.nodes[cluster.index("n2")].api)
        .await
        .expect("events");
    assert!(
        events.iter().any(|e| e["kind"] == "leader_changed"),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| e["kind"] == "alert_sent"),
        "{events:?}"
    );
}

/// Sinks on one node of three, not the leader: that node sends every alert, once; when it is
/// the one that dies, its outage waits (held open by the leader, which cannot deliver) and
/// is sent once it is back, followed by its return.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_sinks_on_one_node_of_three_every_alert_is_delivered_once_also_that_nodes_own_death() {
    let mut cluster = Cluster::new();
    let file = cluster.dir.path().join("alerts.jsonl");
    let n1 = cluster.start("n1", Vec::new()).await;
    let seed = vec![cluster.nodes[n1].gossip];
    cluster.start("n2", seed.clone()).await;
    cluster.extra = format!(
        "[[alerts.sinks]]\ntype = \"exec\"\ncommand = [\"/bin/sh\", \"-c\", \"cat >> {}\"]\n",
        file.display()
    );
    cluster.start("n3", seed).await;
    let names = cluster.names();
    for api in cluster.apis_except(&[]) {
        wait_for("all three alive", DEADLINE, async || {
            all_alive(api, &names).await
        })
        .await;
    }
    let api1 = cluster.nodes[n1].api;
    wait_for(
        "n1 knows n3 sends the alerts",
        DEADLINE,
        async || match get_json(api1, "/api/v1/overview", HTTP).await {
            Ok(o) if o["leader"] == "n1" && o["sender"] == "n3" => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .await;

    // A node without sinks dies: n3 (not the leader) sends it, once; then its return.
    cluster.kill9("n2");
    sent_everywhere(&cluster.apis_except(&["n2"]), "node_down:n2:").await;
    let n2 = cluster.index("n2");
    cluster.restart(n2).await;
    sent_everywhere(&cluster.apis_except(&[]), "node_up:n2:").await;

    // The one with sinks dies: nobody can deliver, nothing is marked sent, and the leader
    // holds the incident open.
    cluster.kill9("n3");
    for api in cluster.apis_except(&["n3"]) {
        wait_for("n3's outage waits, unsent", DEADLINE, async || {
            let o = get_json(api, "/api/v1/overview", HTTP)
                .await
                .map_err(|e| e.to_string())?;
            let waiting = o["alerts"].as_array().is_some_and(|a| {
                a.iter().any(|e| {
                    e["state"] == "waiting"
                        && e["by"] == "n1"
                        && e["id"]
                            .as_str()
                            .is_some_and(|id| id.starts_with("node_down:n3:"))
                })
            });
            let open = o["incidents"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|i| i["kind"] == "node_down" && i["node"] == "n3" && i["alerted"] == false)
            });
            if waiting && open && o["sender"].is_null() {
                Ok(())
            } else {
                Err(format!("{o}"))
            }
        })
        .await;
    }
    let status = client(&["status", "--api", &api1.to_string()], &[]).await;
    assert_eq!(status.status.code(), Some(3), "{status:?}");
    assert!(
        text(&status.stdout).contains("no live node can send alerts"),
        "{status:?}"
    );
    assert!(
        sunk_ids(&file, "node_down:n3:").is_empty(),
        "{:#?}",
        sunk(&file)
    );

    // n3 is back: its outage goes out, then its return, each once.
    let n3 = cluster.index("n3");
    cluster.restart(n3).await;
    sent_everywhere(&cluster.apis_except(&[]), "node_down:n3:").await;
    sent_everywhere(&cluster.apis_except(&[]), "node_up:n3:").await;
    let all = sunk(&file);
    let mut ids: Vec<&str> = all.iter().filter_map(|a| a["id"].as_str()).collect();
    ids.sort();
    let kinds: Vec<String> = ids
        .iter()
        .map(|id| id.rsplit_once(':').map_or(*id, |(k, _)| k).to_string())
        .collect();
    assert_eq!(
        kinds,
        ["node_down:n2", "node_down:n3", "node_up:n2", "node_up:n3"],
        "{all:#?}"
    );
    assert!(all.iter().all(|a| a["sent_by"] == "n3"), "{all:#?}");
    let down = sunk_ids(&file, "node_down:n3:");
    assert!(
        down[0]["summary"]
            .as_str()
            .is_some_and(|s| s.contains("n3 stopped talking at")),
        "{down:#?}"
    );
    // The leader's waiting entry went once the incident was sent.
    wait_for("n1 keeps no waiting entry", DEADLINE, async || {
        let log = get_json(api1, "/api/v1/alerts", HTTP)
            .await
            .map_err(|e| e.to_string())?;
        match log.as_array() {
            Some(a) if a.iter().all(|e| e["state"] == "sent") => Ok(()),
            _ => Err(format!("{log}")),
        }
    })
    .await;
}

/// A leader killed in the middle of an alert: before its sink delivered it, the next leader
/// sends it (none lost); after its sink accepted it but before `sent` was gossiped, the next
/// leader sends it again — the one duplicate the alert protocol documents (`alert::core`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_killed_mid_alert_loses_nothing_and_duplicates_only_after_delivery() {
    let mut cluster = Cluster::new();
    let file = cluster.dir.path().join("alerts.jsonl");
    let held = cluster.dir.path().join("held.jsonl");
    // n1's deliveries never arrive (it hangs before writing); n2's delivery of n5's death
    // arrives and then hangs, so n2 never hears back from its sink. `exec sleep`: a sink
    // orphaned by the kill can never write later.
    let script = format!(
        "json=$(cat)\n\
         case \"$json\" in *'\"sent_by\":\"n1\"'*) printf '%s\\n' \"$json\" >> {held}; exec sleep 60;; esac\n\
         printf '%s\\n' \"$json\" >> {file}\n\
         case \"$json\" in *'\"sent_by\":\"n2\"'*'\"node\":\"n5\"'*|*'\"node\":\"n5\"'*'\"sent_by\":\"n2\"'*) exec sleep 60;; esac\n",
        held = held.display(),
        file = file.display()
    );
    let quote = |s: &str| toml::Value::String(s.to_string()).to_string();
    cluster.extra = format!(
        "[[alerts.sinks]]\ntype = \"exec\"\ncommand = [\"/bin/sh\", \"-c\", {}]\n",
        quote(&script)
    );
    cluster.start_many(6).await;

    // Before delivery: n1 is sending n6's death when it is killed.
    cluster.kill9("n6");
    wait_for(
        "n1 is delivering n6's death",
        DEADLINE,
        async || match sunk_ids(&held, "node_down:n6:").len() {
            0 => Err("not yet".to_string()),
            _ => Ok(()),
        },
    )
    .await;
    cluster.kill9("n1");
    let live = cluster.apis_except(&["n1", "n6"]);
    sent_everywhere(&live, "node_down:n6:").await;
    sent_everywhere(&live, "node_down:n1:").await;
    let n6 = sunk_ids(&file, "node_down:n6:");
    assert_eq!(n6.len(), 1, "{:#?}", sunk(&file));
    assert_eq!(n6[0]["sent_by"], "n2", "the next leader sent it");
    assert_eq!(
        sunk_ids(&file, "node_down:n1:").len(),
        1,
        "{:#?}",
        sunk(&file)
    );

    // After delivery: n2's sink took n5's death, then n2 is killed before it hears back.
    cluster.kill9("n5");
    wait_for(
        "n2's sink delivered n5's death",
        DEADLINE,
        async || match sunk_ids(&file, "node_down:n5:").len() {
            0 => Err("not yet".to_string()),
            _ => Ok(()),
        },
    )
    .await;
    cluster.kill9("n2");
    let live = cluster.apis_except(&["n1", "n2", "n5", "n6"]);
    sent_everywhere(&live, "node_down:n2:").await;
    sent_everywhere(&live, "node_down:n5:").await;
    let n5: Vec<Value> = sunk_ids(&file, "node_down:n5:");
    let by: Vec<&str> = n5
        .iter()
        .map(|a| a["sent_by"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        by,
        ["n2", "n3"],
        "the documented duplicate, and no third: {:#?}",
        sunk(&file)
    );
    assert_eq!(
        sunk_ids(&file, "node_down:n2:").len(),
        1,
        "{:#?}",
        sunk(&file)
    );
    // Nothing of what n1 held ever arrived.
    assert!(
        sunk(&file).iter().all(|a| a["sent_by"] != "n1"),
        "{:#?}",
        sunk(&file)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tree_that_gives_up_is_alerted_once_per_node_and_its_recovery_once() {
    let mut cluster = Cluster::new();
    let file = cluster.dir.path().join("alerts.jsonl");
    let flag = cluster.dir.path().join("broken");
    std::fs::write(&flag, "").expect("flag");
    cluster.extra = format!(
        "[[alerts.sinks]]\ntype = \"exec\"\ncommand = [\"/bin/sh\", \"-c\", \"cat >> {}\"]\n",
        file.display()
    );
    // Every node runs this tree: the service fails at once while the flag file exists.
    write_tree(
        &cluster,
        "fragile",
        &format!(
            "name = \"fragile\"\nintensity = 1\nperiod = \"60s\"\n[[children]]\nname = \"crashy\"\n\
             command = [\"/bin/sh\", \"-c\", \"if test -e {}; then exit 1; fi; exec sleep 1000\"]\n",
            flag.display()
        ),
    );
    cluster.start_many(3).await;
    let apis: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.api).collect();
    for node in ["n1", "n2", "n3"] {
        let entry = sent_everywhere(&apis, &format!("service_failed:{node}:crashy:")).await;
        assert_eq!(entry["by"], "n1", "{entry}");
    }
    for node in ["n1", "n2", "n3"] {
        let alerts = sunk_ids(&file, &format!("service_failed:{node}:crashy:"));
        assert_eq!(alerts.len(), 1, "{:#?}", sunk(&file));
        assert_eq!(alerts[0]["service"], "crashy");
        assert_eq!(alerts[0]["status"], "firing");
    }
    std::fs::remove_file(&flag).expect("rm flag");
    for node in &cluster.nodes {
        let (api, tok) = (node.api.to_string(), node.token_file());
        let started = client(
            &["start", "crashy", "--api", &api, "--token-file", &tok],
            &[],
        )
        .await;
        assert!(started.status.success(), "{started:?}");
    }
    for node in ["n1", "n2", "n3"] {
        sent_everywhere(&apis, &format!("service_up:{node}:crashy:")).await;
        let ups = sunk_ids(&file, &format!("service_up:{node}:crashy:"));
        assert_eq!(ups.len(), 1, "{:#?}", sunk(&file));
        assert_eq!(ups[0]["status"], "resolved");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_critical_host_probe_is_alerted_once_shown_in_members_and_status_and_its_end_once() {
    let mut cluster = Cluster::new();
    let file = cluster.dir.path().join("alerts.jsonl");
    let flag = cluster.dir.path().join("full");
    cluster.extra = format!(
        "[[alerts.sinks]]\ntype = \"exec\"\ncommand = [\"/bin/sh\", \"-c\", \"cat >> {}\"]\n",
        file.display()
    );
    // Every node runs this host probe: critical while the flag file exists.
    let probes = cluster.dir.path().join("probes");
    std::fs::create_dir(&probes).expect("mkdir");
    std::fs::write(
        probes.join("disk.toml"),
        format!(
            "command = [\"sh\", \"-c\", \"if test -e {}; then echo 'DISK CRITICAL | free_pct=3%;20:;10:'; \
             exit 2; fi; echo 'DISK OK | free_pct=50%;20:;10:'\"]\ninterval = \"1s\"\n",
            flag.display()
        ),
    )
    .expect("probe");
    cluster.start_many(2).await;
    let apis: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.api).collect();
    std::fs::write(&flag, "").expect("flag");
    for node in ["n1", "n2"] {
        let entry = sent_everywhere(&apis, &format!("probe_critical:{node}:disk:")).await;
        assert_eq!(entry["by"], "n1", "{entry}");
    }
    let members = members(apis[1]).await.expect("members");
    let n1 = entry(&members, "n1").expect("n1");
    assert_eq!(n1["probes"]["disk"]["health"], "critical", "{n1}");
    let status = client(&["status", "--json", "--api", &apis[0].to_string()], &[]).await;
    assert_eq!(status.status.code(), Some(3), "{status:?}");
    let status: Value = serde_json::from_slice(&status.stdout).expect("json");
    let open: Vec<&str> = (status["incidents"].as_array().into_iter().flatten())
        .filter_map(|i| i["kind"].as_str())
        .collect();
    assert_eq!(open, ["probe_critical", "probe_critical"], "{status}");
    std::fs::remove_file(&flag).expect("rm flag");
    for node in ["n1", "n2"] {
        sent_everywhere(&apis, &format!("probe_ok:{node}:disk:")).await;
        let problems = sunk_ids(&file, &format!("probe_critical:{node}:disk:"));
        assert_eq!(problems.len(), 1, "{:#?}", sunk(&file));
        assert_eq!(problems[0]["service"], "disk");
        assert!(
            problems[0]["summary"]
                .as_str()
                .is_some_and(|s| s.contains("free_pct=3%")),
            "{:#?}",
            problems[0]
        );
        let ends = sunk_ids(&file, &format!("probe_ok:{node}:disk:"));
        assert_eq!(ends.len(), 1, "{:#?}", sunk(&file));
        assert_eq!(ends[0]["status"], "resolved");
    }
}

// ----- security (SECURITY.md): sealed gossip, the replay window, the API token -------------

/// `GET /api/v1/stats` of the daemon at `api`.
async fn stats(api: SocketAddr) -> Result<Value, String> {
    get_json(api, "/api/v1/stats", HTTP)
        .await
        .map_err(|e| format!("stats of {api}: {e}"))
}

fn counter(stats: &Value, name: &str) -> u64 {
    stats[name]
        .as_u64()
        .unwrap_or_else(|| panic!("no {name} in {stats}"))
}

/// Each node's view as `name=state@incarnation`, sorted: what "changes nothing" compares.
async fn views(cluster: &Cluster) -> Vec<Vec<String>> {
    let mut all = Vec::new();
    for node in &cluster.nodes {
        let members = members(node.api).await.expect("members");
        let mut view: Vec<String> = members
            .iter()
            .map(|m| format!("{}={}@{}", m["name"], m["state"], m["incarnation"]))
            .collect();
        view.sort();
        all.push(view);
    }
    all
}

/// A key holder played by the test: it seals datagrams like a node called `name` would.
fn test_gate(key: &str, name: &str) -> nbwatch::secure::Gate {
    let key = nbwatch::secure::Key::parse(key).expect("key");
    nbwatch::secure::Gate::keyed(
        nbwatch::secure::DEFAULT_CLUSTER,
        name,
        nbwatch::secure::Keyring::single(key),
        None,
    )
}

fn ping_from(name: &str, seq: u32) -> Vec<u8> {
    use nbwatch::wire::{Beat, Envelope, Message};
    nbwatch::wire::encode(&Envelope {
        from: name.into(),
        incarnation: nbwatch::types::Incarnation(1),
        beat: Beat(1),
        msg: Message::Ping { seq },
    })
    .expect("encode")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_the_wrong_key_is_refused_and_changes_nothing() {
    let mut cluster = Cluster::new();
    cluster.key = Some(nbwatch::secure::Key::generate().encode());
    cluster.start_many(2).await;
    let n1 = cluster.nodes[0].gossip;
    let before = views(&cluster).await;
    let dropped = counter(
        &stats(cluster.nodes[0].api).await.expect("stats"),
        "dropped_auth",
    );

    // Same cluster name, its own key: it asks n1 to join and gossips at it.
    cluster.key = Some(nbwatch::secure::Key::generate().encode());
    let intruder = cluster.start("intruder", vec![n1]).await;
    refused_and_unchanged(&cluster, cluster.nodes[0].api, dropped, &before, intruder).await;
    let log = cluster.nodes[intruder].stderr_text();
    assert!(log.contains("without our cluster key"), "{log}");
}

/// Waits until the node whose API is `api` has dropped three more frames that do not open
/// than `dropped` (the outsider's), then checks that the other nodes' views are still
/// `before` and that the outsider knows only itself.
async fn refused_and_unchanged(
    cluster: &Cluster,
    api: SocketAddr,
    dropped: u64,
    before: &[Vec<String>],
    outsider: usize,
) {
    wait_for("the outsider's frames are dropped", DEADLINE, async || {
        let seen = counter(&stats(api).await?, "dropped_auth");
        if seen >= dropped + 3 {
            Ok(())
        } else {
            Err(format!("dropped_auth {seen}"))
        }
    })
    .await;
    let mut after = views(cluster).await;
    let outsider_view = after.remove(outsider);
    assert_eq!(after, before, "the cluster's views changed");
    assert_eq!(
        outsider_view.len(),
        1,
        "the outsider learned of {outsider_view:?}"
    );
}

/// The quick start's attack: a local user runs a daemon of their own on built-in security
/// defaults, seeded at a node that also runs on them. The node made its own key at its first
/// start, so the stranger's frames do not open; a host given that key joins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_on_loopback_cannot_join_a_node_on_defaults_and_a_host_given_its_key_can() {
    let mut cluster = Cluster::new();
    let n1 = cluster.add("n1", "n1", Vec::new());
    cluster.nodes[n1].own_key = true;
    cluster.restart(n1).await;
    let (seed, api) = (cluster.nodes[n1].gossip, cluster.nodes[n1].api);
    let before = views(&cluster).await;
    let dropped = counter(&stats(api).await.expect("stats"), "dropped_auth");

    let stranger = cluster.add("stranger", "stranger", vec![seed]);
    cluster.nodes[stranger].own_key = true;
    cluster.restart(stranger).await;
    refused_and_unchanged(&cluster, api, dropped, &before, stranger).await;

    // Joining means being given the key: a copy of n1's own key file.
    let copy = cluster.dir.path().join("given.key");
    let key = std::fs::read(cluster.nodes[n1].data_dir.join("cluster.key")).expect("n1's key");
    nbwatch::secure::keyring::write_private(&copy, &key).expect("write");
    let friend = cluster.add("friend", "friend", vec![seed]);
    cluster.nodes[friend].key_file = Some(copy);
    cluster.restart(friend).await;
    let names = ["n1".to_string(), "friend".to_string()];
    for i in [n1, friend] {
        let api = cluster.nodes[i].api;
        wait_for("n1 and friend see each other", DEADLINE, async || {
            let members = members(api).await?;
            let alive = |n: &str| entry(&members, n).is_some_and(|m| m["state"] == "alive");
            match names.iter().all(|n| alive(n)) && entry(&members, "stranger").is_none() {
                true => Ok(()),
                false => Err(format!("{members:?}")),
            }
        })
        .await;
    }
}

/// One node sealed with a key the test made, and the test itself as a key holder called
/// `ghost` with a UDP socket of its own.
async fn a_node_and_a_key_holder() -> (Cluster, nbwatch::secure::Gate, tokio::net::UdpSocket) {
    let mut cluster = Cluster::new();
    let key = nbwatch::secure::Key::generate().encode();
    cluster.key = Some(key.clone());
    cluster.start("n1", Vec::new()).await;
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    (cluster, test_gate(&key, "ghost"), socket)
}

/// The next datagram `socket` receives, opened by `ghost` and decoded.
async fn answer_to(
    ghost: &nbwatch::secure::Gate,
    socket: &tokio::net::UdpSocket,
) -> nbwatch::wire::Message {
    let mut buf = vec![0u8; 2048];
    let (n, from) = tokio::time::timeout(DEADLINE, socket.recv_from(&mut buf))
        .await
        .expect("n1 answers")
        .expect("recv");
    let answer = ghost
        .open_datagram(from, &buf[..n])
        .expect("the answer opens");
    nbwatch::wire::decode(&answer).expect("decodes").msg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_datagram_is_ignored() {
    let (cluster, ghost, socket) = a_node_and_a_key_holder().await;
    let (gossip, api) = (cluster.nodes[0].gossip, cluster.nodes[0].api);

    // A key holder pings n1 and reads its sealed answer.
    let datagram = ghost.seal_datagram(nbwatch::secure::To::Node("n1"), &ping_from("ghost", 7));
    socket.send_to(&datagram, gossip).await.expect("send");
    assert_eq!(
        answer_to(&ghost, &socket).await,
        nbwatch::wire::Message::PingAck { seq: 7 }
    );
    let received = counter(&stats(api).await.expect("stats"), "datagrams_received");

    // The same bytes again: dropped by the window, never reach the protocol.
    socket.send_to(&datagram, gossip).await.expect("send");
    wait_for("n1 counts one replay", DEADLINE, async || {
        let s = stats(api).await?;
        match counter(&s, "dropped_replay") {
            1 => Ok(()),
            n => Err(format!("dropped_replay {n}")),
        }
    })
    .await;
    let s = stats(api).await.expect("stats");
    assert_eq!(counter(&s, "datagrams_received"), received, "{s}");
    assert_eq!(counter(&s, "dropped_auth"), 0, "{s}");
}

/// A frame captured on its way to one node is worth nothing at another: every datagram and
/// every request but a join names its receiver in what the seal authenticates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_datagram_or_history_request_sealed_for_another_node_is_refused() {
    use nbwatch::secure::To;
    use nbwatch::wire::{Frame, PageRequest};
    let (cluster, ghost, socket) = a_node_and_a_key_holder().await;
    let (gossip, api) = (cluster.nodes[0].gossip, cluster.nodes[0].api);

    // A ping sealed for n2 (as if captured on its way there) and sent to n1: dropped
    // before decoding, counted, never answered.
    let for_n2 = ghost.seal_datagram(To::Node("n2"), &ping_from("ghost", 1));
    socket.send_to(&for_n2, gossip).await.expect("send");
    wait_for("n1 drops the ping sealed for n2", DEADLINE, async || {
        let s = stats(api).await?;
        match counter(&s, "dropped_auth") {
            1 => Ok(()),
            n => Err(format!("dropped_auth {n}: {s}")),
        }
    })
    .await;
    // The same ping sealed for n1 is answered, and that answer is the first thing back.
    let for_n1 = ghost.seal_datagram(To::Node("n1"), &ping_from("ghost", 2));
    socket.send_to(&for_n1, gossip).await.expect("send");
    assert_eq!(
        answer_to(&ghost, &socket).await,
        nbwatch::wire::Message::PingAck { seq: 2 },
        "only the ping sealed for n1 was answered"
    );

    // A history request sealed for n2 gets no page from n1; one for n1 does. A request for
    // anyone (a first contact) is only ever a join.
    let request = Frame::HistoryRequest(PageRequest {
        since: nbwatch::types::Time(0),
        samples_after: None,
        events_after: None,
    });
    let body = nbwatch::wire::encode_frame_body(&request).expect("encode");
    for to in [To::Node("n2"), To::Anyone] {
        let (sealed, _) = ghost.seal_request(to, &body);
        let mut stream = tokio::net::TcpStream::connect(gossip)
            .await
            .expect("connect");
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream
            .write_all(&nbwatch::wire::length_prefixed(&sealed))
            .await
            .expect("send the request");
        let mut answer = Vec::new();
        let read = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut answer))
            .await
            .expect("n1 closes the connection");
        assert!(
            read.is_err() || answer.is_empty(),
            "{to:?}: n1 answered {} bytes",
            answer.len()
        );
    }
    let n1: nbwatch::types::NodeName = "n1".into();
    let page = nbwatch::transport::ask(&ghost, gossip, Some(&n1), &request).await;
    assert!(matches!(page, Ok(Frame::HistoryPage(_))), "{page:?}");
}

/// An `Ack` from `name` carrying its own state: `entries` as versions 1, 2, ...
fn state_from(name: &str, addr: SocketAddr, entries: &[(String, String)]) -> Vec<u8> {
    use nbwatch::types::{Incarnation, Time, Version};
    use nbwatch::wire::{Beat, Envelope, KvEntry, Message, NodeDelta};
    let beat = Beat::at(Time::wall_now());
    let entries: Vec<KvEntry> = entries
        .iter()
        .zip(1..)
        .map(|((key, value), v)| KvEntry {
            key: key.clone(),
            version: Version(v),
            value: Some(value.clone()),
        })
        .collect();
    let delta = NodeDelta {
        node: name.into(),
        incarnation: Incarnation(1),
        addr,
        beat,
        from: Version(0),
        to: Version(entries.len() as u64),
        entries,
    };
    nbwatch::wire::encode(&Envelope {
        from: name.into(),
        incarnation: Incarnation(1),
        beat,
        msg: Message::Ack {
            deltas: vec![delta],
        },
    })
    .expect("encode")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn far_future_times_are_refused_from_the_cli_the_api_and_gossip_and_break_no_reader() {
    let mut cluster = Cluster::new();
    let key = nbwatch::secure::Key::generate().encode();
    cluster.key = Some(key.clone());
    cluster.start("n1", Vec::new()).await;
    let (gossip, api) = (cluster.nodes[0].gossip, cluster.nodes[0].api);
    let (api_s, tok) = (api.to_string(), cluster.nodes[0].token_file());

    // From the CLI and the API: refused, saying what and the limit.
    let out = client(
        &[
            "silence",
            "n1",
            "--for",
            "9000y",
            "--api",
            &api_s,
            "--token-file",
            &tok,
        ],
        &[],
    )
    .await;
    assert!(!out.status.success(), "{out:?}");
    assert!(
        text(&out.stderr).contains("\"9000y\" is longer than 100y"),
        "{out:?}"
    );
    let token = std::fs::read_to_string(&tok).expect("token");
    let body = serde_json::json!({"value": "3", "ttl": "8000y"});
    let refused =
        nbwatch::cli::client::post_json(api, "/api/v1/kv/k", &body, Some(token.trim()), HTTP)
            .await
            .expect_err("a TTL of 8000y is refused");
    assert_eq!(
        refused.api_message().as_deref(),
        Some("ttl: \"8000y\" is longer than 100y, the longest duration nbwatch accepts"),
        "{refused}"
    );
    let body = serde_json::json!({"target": "n1", "for": "9000y"});
    let refused =
        nbwatch::cli::client::post_json(api, "/api/v1/silences", &body, Some(token.trim()), HTTP)
            .await
            .expect_err("a silence of 9000y is refused");
    assert!(
        refused.to_string().contains("longer than 100y"),
        "{refused}"
    );

    // From gossip: a key holder announces far-future times in every kind of timed value.
    let far = u64::MAX / 2;
    let entries: Vec<(String, String)> = vec![
        (
            "silence.n1".into(),
            format!(r#"{{"until":{far},"reason":"forever"}}"#),
        ),
        ("app.k".into(), format!(r#"{{"v":"3","t":1,"x":{far}}}"#)),
        ("app.t".into(), format!(r#"{{"v":"4","t":{far}}}"#)),
        (
            "alert.node_down:n1:1".into(),
            format!(r#"{{"st":"sent","at":{far}}}"#),
        ),
        (
            "svc.db".into(),
            format!(r#"{{"tree":"t","state":"running","since":{far}}}"#),
        ),
        (format!("alerttest.{far}"), "1".into()),
        ("app.fine".into(), r#"{"v":"5","t":1}"#.into()),
    ];
    let ghost = test_gate(&key, "ghost");
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let from = socket.local_addr().expect("address");
    let datagram = ghost.seal_datagram(
        nbwatch::secure::To::Node("n1"),
        &state_from("ghost", from, &entries),
    );
    socket.send_to(&datagram, gossip).await.expect("send");
    wait_for("n1 has ghost's state", DEADLINE, async || {
        match get_json(api, "/api/v1/kv/fine", HTTP).await {
            Ok(v) if v[0]["node"] == "ghost" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let log = cluster.nodes[0].stderr_text();
    for key in [
        "silence.n1",
        "app.k",
        "app.t",
        "alert.node_down:n1:1",
        "svc.db",
    ] {
        assert!(
            log.lines()
                .any(|l| l.contains("refused a gossiped value") && l.contains(key)),
            "{key} not refused: {log}"
        );
    }

    // Every reader still answers, and none shows a refused value.
    for path in [
        "/api/v1/overview",
        "/api/v1/silences",
        "/api/v1/members",
        "/api/v1/alerts",
        "/api/v1/services?all=true",
        "/api/v1/kv",
    ] {
        let answer = get_json(api, path, HTTP).await;
        assert!(answer.is_ok(), "{path} does not answer: {answer:?}");
        let shown = format!("{answer:?}");
        assert!(
            !shown.contains("forever") && !shown.contains("out of range"),
            "{path}: {shown}"
        );
    }
    let page = client(&["status", "--api", &api_s], &[]).await;
    assert!(page.status.success(), "{page:?}");
    let silences = client(&["silences", "--json", "--api", &api_s], &[]).await;
    assert!(silences.status.success(), "{silences:?}");
    assert!(!text(&silences.stdout).contains("forever"), "{silences:?}");
    let got = client(&["get", "k", "--api", &api_s], &[]).await;
    assert_eq!(got.status.code(), Some(1), "{got:?}");
    assert!(
        text(&got.stderr).contains("no host publishes \"k\""),
        "{got:?}"
    );
    let dashboard = client(&["status", "--json", "--api", &api_s], &[]).await;
    assert!(dashboard.status.success(), "{dashboard:?}");
}

/// Kinds of hostile datagram, each a few thousand times over.
fn hostile(
    i: u64,
    rng: &mut u64,
    n1_key_id: u32,
    insider: &nbwatch::secure::Gate,
    outsider: &nbwatch::secure::Gate,
) -> Vec<u8> {
    let mut next = || {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        *rng
    };
    let len = (next() % 1600) as usize;
    let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
    match i % 5 {
        // Random bytes.
        0 => bytes,
        // A sealed header with n1's real key id, then garbage (a forged tag).
        1 => {
            let mut head = b"NBE\x01".to_vec();
            head.extend_from_slice(&n1_key_id.to_be_bytes());
            head.extend_from_slice(&bytes);
            head
        }
        // A well-formed plaintext message that would say something if it were believed.
        2 => ping_from("n2", i as u32),
        // Sealed by a node of another key.
        3 => outsider.seal_datagram(nbwatch::secure::To::Node("n1"), &ping_from("n2", i as u32)),
        // Sealed by a key holder but malformed inside: decoding after decryption must hold.
        _ => {
            if i.is_multiple_of(2) {
                bytes.splice(0..0, b"NBW\x01".iter().copied());
            }
            bytes.truncate(nbwatch::wire::MAX_DATAGRAM + 8);
            insider.seal_datagram(nbwatch::secure::To::Node("n1"), &bytes)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_hostile_datagrams_leave_the_daemon_running_and_its_state_unchanged() {
    const COUNT: u64 = 100_000;
    const BATCH: u64 = 100;
    let mut cluster = Cluster::new();
    let key = nbwatch::secure::Key::generate().encode();
    cluster.key = Some(key.clone());
    cluster.start_many(2).await;
    let (gossip, api) = (cluster.nodes[0].gossip, cluster.nodes[0].api);
    let before = views(&cluster).await;
    let key_id = nbwatch::secure::Key::parse(&key).expect("key").id().0;
    let insider = test_gate(&key, "fuzzer");
    let outsider = test_gate(&nbwatch::secure::Key::generate().encode(), "n2");
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let handled = async || -> Result<u64, String> {
        let s = stats(api).await?;
        Ok([
            "dropped_auth",
            "dropped_malformed",
            "dropped_foreign",
            "dropped_oversized",
        ]
        .iter()
        .map(|c| counter(&s, c))
        .sum())
    };
    let start = handled().await.expect("stats");
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    for batch in 0..COUNT / BATCH {
        for i in batch * BATCH..(batch + 1) * BATCH {
            let d = hostile(i, &mut rng, key_id, &insider, &outsider);
            // A full socket buffer may refuse a send; the kernel dropping it is fine too.
            let _ = socket.send_to(&d, gossip).await;
        }
        // Pace by the daemon, not by the clock: a batch is sent once it handled most of the last.
        let sent = (batch + 1) * BATCH;
        wait_for("n1 keeps up with the flood", DEADLINE, async || {
            let n = handled().await? - start;
            if n + BATCH + sent / 10 >= sent {
                Ok(())
            } else {
                Err(format!("{n} of {sent}"))
            }
        })
        .await;
        assert!(
            cluster.nodes[0].exited().is_none(),
            "n1 died after {sent} datagrams"
        );
    }
    let s = stats(api).await.expect("stats");
    assert!(
        counter(&s, "dropped_auth") >= COUNT * 6 / 10 * 9 / 10,
        "{s}"
    );
    assert!(
        counter(&s, "dropped_malformed") > 0,
        "nothing reached the decoder: {s}"
    );
    // Still gossiping: n2 hears n1 after the flood.
    let heard = members(cluster.nodes[1].api).await.expect("members");
    let heard = entry(&heard, "n1").expect("n1")["last_heard"].clone();
    wait_for("n2 hears n1 again", DEADLINE, async || {
        let now = members(cluster.nodes[1].api).await?;
        let e = entry(&now, "n1").ok_or("no n1")?;
        if e["last_heard"] != heard && e["state"] == "alive" {
            Ok(())
        } else {
            Err(format!("{e}"))
        }
    })
    .await;
    assert_eq!(views(&cluster).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotation_across_three_running_nodes_loses_no_membership() {
    let mut cluster = Cluster::new();
    let old = nbwatch::secure::Key::generate();
    let new = nbwatch::secure::Key::generate();
    cluster.key = Some(old.encode());
    cluster.start_many(3).await;
    let names = cluster.names();
    let before = views(&cluster).await;

    // Watches every node's view through the whole rotation.
    let apis: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.api).collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = tokio::spawn({
        let (stop, names) = (stop.clone(), names.clone());
        async move {
            let mut polls = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for api in &apis {
                    all_alive(*api, &names).await?;
                }
                polls += 1;
                tokio::time::sleep(POLL).await;
            }
            Ok::<_, String>(polls)
        }
    });
    let keys = async |cluster: &Cluster, args: &[&str]| {
        for node in &cluster.nodes {
            let (api, tok) = (node.api.to_string(), node.token_file());
            let mut full = vec!["keys"];
            full.extend_from_slice(args);
            full.extend_from_slice(&["--api", &api, "--token-file", &tok]);
            let out = client(&full, &[]).await;
            assert!(out.status.success(), "{} {args:?}: {out:?}", node.name);
        }
    };
    let (old_id, new_id) = (old.id().to_string(), new.id().to_string());
    let opened_after = async |cluster: &Cluster| {
        // Frames sealed since the last step open everywhere.
        for node in &cluster.nodes {
            let base = counter(&stats(node.api).await.expect("stats"), "opened");
            wait_for(
                &format!("{} opens new gossip", node.name),
                DEADLINE,
                async || {
                    let now = counter(&stats(node.api).await?, "opened");
                    if now > base + 5 {
                        Ok(())
                    } else {
                        Err(format!("opened {now}"))
                    }
                },
            )
            .await;
        }
    };
    keys(&cluster, &["install", &new.encode()]).await;
    opened_after(&cluster).await;
    keys(&cluster, &["use", &new_id]).await;
    opened_after(&cluster).await;
    keys(&cluster, &["remove", &old_id]).await;
    opened_after(&cluster).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let polls = watcher
        .await
        .expect("watcher")
        .expect("every node saw all alive throughout");
    assert!(polls > 0);
    assert_eq!(views(&cluster).await, before);
    for node in &cluster.nodes {
        let list = client(&["keys", "list", "--api", &node.api.to_string()], &[]).await;
        assert_eq!(
            text(&list.stdout).trim(),
            format!("{new_id}  primary"),
            "{list:?}"
        );
        // Saved: a restart comes back with the new key only.
        let ring = nbwatch::secure::Keyring::load(node.key_file.as_ref().expect("key file"))
            .expect("the key file reads back");
        assert_eq!(ring.ids(), vec![new.id()]);
    }
    // The old key no longer opens anything: a frame sealed with it is dropped.
    let api = cluster.nodes[0].api;
    let dropped = counter(&stats(api).await.expect("stats"), "dropped_auth");
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let stale = test_gate(&old.encode(), "n2")
        .seal_datagram(nbwatch::secure::To::Node("n1"), &ping_from("n2", 1));
    socket
        .send_to(&stale, cluster.nodes[0].gossip)
        .await
        .expect("send");
    wait_for(
        "n1 drops a frame sealed with the removed key",
        DEADLINE,
        async || {
            let now = counter(&stats(api).await?, "dropped_auth");
            if now > dropped {
                Ok(())
            } else {
                Err(format!("dropped_auth {now}"))
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_refuses_mutations_without_the_token_and_accepts_them_with_it() {
    use nbwatch::cli::client::{ClientError, post_json};
    use std::os::unix::fs::PermissionsExt;
    let mut cluster = Cluster::new();
    let i = cluster.start("n1", Vec::new()).await;
    let api = cluster.nodes[i].api;
    let file = cluster.nodes[i].token_file();
    let mode = std::fs::metadata(&file)
        .expect("token file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let token = nbwatch::secure::token::read(Path::new(&file)).expect("token");
    let body = serde_json::json!({});

    for (what, bearer) in [("no token", None), ("a wrong token", Some("0123"))] {
        match post_json(api, "/api/v1/reload", &body, bearer, HTTP).await {
            Err(ClientError::Status { code: 401, body }) => {
                assert!(body.contains("token"), "{what}: {body}")
            }
            other => panic!("{what}: {other:?}"),
        }
    }
    // Every non-GET route, including ones that do not exist: nothing is probed without it.
    for path in [
        "/api/v1/silences",
        "/api/v1/keys/install",
        "/api/v1/alerts/test",
        "/api/v1/x",
    ] {
        let answer = post_json(api, path, &body, None, HTTP).await;
        assert!(
            matches!(answer, Err(ClientError::Status { code: 401, .. })),
            "{path}: {answer:?}"
        );
    }
    let reloaded = post_json(api, "/api/v1/reload", &body, Some(&token), HTTP).await;
    assert!(reloaded.is_ok(), "{reloaded:?}");
    assert!(members(api).await.is_ok(), "reading needs no token");

    // The CLI: with the node's config it finds the token; with only --api it cannot.
    let config = cluster.nodes[i].config.to_string_lossy().to_string();
    let ok = client(&["reload", "--config", &config], &[]).await;
    assert!(ok.status.success(), "{ok:?}");
    let env_ok = client(
        &["reload", "--api", &api.to_string()],
        &[("NBWATCH_TOKEN", &token)],
    )
    .await;
    assert!(env_ok.status.success(), "{env_ok:?}");
    let refused = client(
        &[
            "reload",
            "--api",
            &api.to_string(),
            "--token-file",
            "/nonexistent",
        ],
        &[],
    )
    .await;
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert!(text(&refused.stderr).contains("no token"), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_gossip_runs_only_when_asked_for_and_an_open_api_off_loopback_refuses_to_start() {
    use std::os::unix::fs::PermissionsExt;
    let mut cluster = Cluster::new();
    let i = cluster.add("n1", "n1", Vec::new());
    // No key file and no gossip.insecure: the node makes its own key and runs sealed.
    cluster.nodes[i].own_key = true;
    cluster.restart(i).await;
    let s = stats(cluster.nodes[i].api).await.expect("stats");
    assert_eq!(s["encrypted"], true, "{s}");
    let made = cluster.nodes[i].data_dir.join("cluster.key");
    let mode = std::fs::metadata(&made)
        .expect("the node's key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(nbwatch::secure::Keyring::load(&made).is_ok());
    assert!(!cluster.nodes[i].stderr_text().contains("NOT ENCRYPTED"));
    cluster.nodes[i].signal(Signal::SIGTERM);
    cluster.nodes[i].wait_exit(PROCESS_DEADLINE).await;

    // The API off loopback without api.insecure: refused, saying what to do.
    let ports = Ports {
        gossip: "127.0.0.1:0".parse().expect("addr"),
        api: "0.0.0.0:0".parse().expect("addr"),
        held: None,
    };
    let Started::Exited(status) = cluster.nodes[i].start(ports).await else {
        panic!("an API on 0.0.0.0 started without api.insecure");
    };
    assert_eq!(status.code(), Some(1));
    assert!(cluster.nodes[i].stderr_text().contains("api.insecure"));

    // Plaintext on purpose (gossip.insecure = true) runs, and says so in its log and in
    // `members`.
    cluster.nodes[i].own_key = false;
    cluster.restart(i).await;
    let api = cluster.nodes[i].api.to_string();
    assert!(
        cluster.nodes[i]
            .stderr_text()
            .contains("GOSSIP IS NOT ENCRYPTED")
    );
    let out = client(&["members", "--api", &api], &[]).await;
    assert!(text(&out.stderr).contains("NOT encrypted"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keygen_writes_a_private_key_file_that_a_node_runs_with() {
    use std::os::unix::fs::PermissionsExt;
    let mut cluster = Cluster::new();
    let file = cluster.dir.path().join("cluster.key");
    let path = file.to_string_lossy().to_string();
    let out = client(&["keygen", "--out", &path], &[]).await;
    assert!(out.status.success(), "{out:?}");
    let mode = std::fs::metadata(&file)
        .expect("key file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let again = client(&["keygen", "--out", &path], &[]).await;
    assert_eq!(again.status.code(), Some(1), "overwrote a key: {again:?}");
    let printed = client(&["keygen"], &[]).await;
    assert!(
        nbwatch::secure::Key::parse(&text(&printed.stdout)).is_ok(),
        "{printed:?}"
    );

    cluster.key = Some(
        std::fs::read_to_string(&file)
            .expect("read")
            .trim()
            .to_string(),
    );
    let i = cluster.start("n1", Vec::new()).await;
    let s = stats(cluster.nodes[i].api).await.expect("stats");
    assert_eq!(s["encrypted"], true, "{s}");
    // A key file that is not a key: the daemon names the file and the line.
    cluster.nodes[i].signal(Signal::SIGTERM);
    cluster.nodes[i].wait_exit(PROCESS_DEADLINE).await;
    let key_file = cluster.nodes[i].key_file.clone().expect("key file");
    std::fs::write(&key_file, "# ok\nnot a key\n").expect("write");
    cluster.nodes[i].gossip = "127.0.0.1:0".parse().expect("addr");
    let Started::Exited(status) = cluster.nodes[i].start(Ports::pick()).await else {
        panic!("started with a broken key file");
    };
    assert_eq!(status.code(), Some(1));
    let log = cluster.nodes[i].stderr_text();
    assert!(log.contains(&format!("{}:2", key_file.display())), "{log}");
    // check-config says the same without starting anything.
    let config = cluster.nodes[i].config.to_string_lossy().to_string();
    let checked = client(&["check-config", "--config", &config], &[]).await;
    assert_eq!(checked.status.code(), Some(1), "{checked:?}");
    let said = text(&checked.stderr);
    assert!(
        said.contains(&format!("{}:2", key_file.display())),
        "{said}"
    );
}

/// A size-limited tmpfs mounted on a node's data dir (needs root); lazily unmounted on drop,
/// also when the test fails.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(dir: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(dir).expect("mount point");
        let out = Command::new("mount")
            // A tmpfs root is 1777 unless told: a data dir others can write is refused.
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0750"),
                "nbwatch-test",
            ])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mounting a tmpfs (this test needs root): {}",
            text(&out.stderr)
        );
        SmallDisk(dir.to_path_buf())
    }

    /// Fills what is left with a file; returns its path.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.0.join("filler");
        let mut file = File::create(&path).expect("filler");
        let chunk = vec![0u8; 64 * 1024];
        // Bounded: the disk is a few MiB.
        for _ in 0..4096 {
            if file.write_all(&chunk).is_err() {
                break;
            }
        }
        for _ in 0..1024 {
            if file.write_all(&chunk[..512]).is_err() {
                break;
            }
        }
        let _ = file.sync_all();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn rfc3339_ms(v: &Value) -> Option<u128> {
    let t = humantime::parse_rfc3339(v.as_str()?).ok()?;
    Some(t.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_millis())
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_millis()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_logged_once_the_node_keeps_gossiping_and_supervising_and_writing_resumes() {
    let mut cluster = Cluster::new();
    write_tree(
        &cluster,
        "chatty",
        "name = \"chatty\"\n[[children]]\nname = \"chatty\"\n\
         command = [\"/bin/sh\", \"-c\", \"while :; do printf '%0500d\\n' 0; sleep 0.05; done\"]\n",
    );
    let a = cluster.add("a", "a", Vec::new());
    let disk = SmallDisk::mount(&cluster.nodes[a].data_dir, "8m");
    cluster.restart(a).await;
    let b = cluster.start("b", vec![cluster.nodes[a].gossip]).await;
    let (api_a, api_b) = (cluster.nodes[a].api, cluster.nodes[b].api);
    let b_samples = async |since: &str| -> Result<Vec<Value>, String> {
        let path = format!("/api/v1/history/b?metric=load1&since={since}");
        match get_json(api_a, &path, HTTP).await {
            Ok(Value::Array(list)) if !list.is_empty() => Ok(list),
            other => Err(format!("{other:?}")),
        }
    };
    wait_for("a records b's samples", DEADLINE, async || {
        b_samples("1h").await
    })
    .await;
    let pid = running_pid(api_a, "chatty", None).await;

    let filler = disk.fill();
    let full_at = now_ms();
    let line = "cannot write the history database";
    wait_for("a logs that it cannot write", DEADLINE, async || {
        let log = cluster.nodes[a].stderr_text();
        if log.contains(line) {
            Ok(())
        } else {
            Err("not yet".to_string())
        }
    })
    .await;
    let failing_at = now_ms();

    // Gossip goes on both ways, and the tree still restarts a crashed service.
    wait_for("b hears a after the disk filled", DEADLINE, async || {
        let list = members(api_b).await?;
        match entry(&list, "a") {
            Some(e) if e["state"] == "alive" && rfc3339_ms(&e["last_heard"]) > Some(failing_at) => {
                Ok(())
            }
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).expect("kill the service");
    running_pid(api_a, "chatty", Some(pid)).await;
    assert!(process_alive(cluster.nodes[a].pid().as_raw() as u64));

    // Keep the disk full until b has announced samples well after the failure began.
    wait_for(
        "b announces samples while a's disk is full",
        DEADLINE,
        async || {
            let list = match get_json(api_b, "/api/v1/history/b?metric=load1&since=1m", HTTP).await
            {
                Ok(Value::Array(list)) => list,
                other => return Err(format!("{other:?}")),
            };
            let later = list
                .iter()
                .filter_map(|s| rfc3339_ms(&s["at"]))
                .any(|at| at > failing_at + 2000);
            if later {
                Ok(())
            } else {
                Err(format!("{} samples", list.len()))
            }
        },
    )
    .await;
    std::fs::remove_file(&filler).expect("free the disk");
    let freed_at = now_ms();
    wait_for("a logs that it writes again", DEADLINE, async || {
        let log = cluster.nodes[a].stderr_text();
        if log.contains("writing the history database again") {
            Ok(())
        } else {
            Err("not yet".to_string())
        }
    })
    .await;
    // The samples of b that arrived while the disk was full were kept and are written now.
    let samples = wait_for(
        "a holds b's samples from the full period",
        DEADLINE,
        async || {
            let list = b_samples("10m").await?;
            let during = list
                .iter()
                .filter_map(|s| rfc3339_ms(&s["at"]))
                .filter(|at| (full_at + 1000..freed_at).contains(at))
                .count();
            if during > 0 {
                Ok(list)
            } else {
                Err(format!("{} samples, none between", list.len()))
            }
        },
    )
    .await;
    let log = cluster.nodes[a].stderr_text();
    assert_eq!(
        log.matches(line).count(),
        1,
        "one line when writing starts failing:\n{log}"
    );
    assert!(
        log.contains("cannot write the service log"),
        "the service log's failure is said too:\n{log}"
    );
    assert!(samples.len() > 1);

    // A clean stop; the file is intact.
    cluster.nodes[a].signal(Signal::SIGTERM);
    cluster.nodes[a].wait_exit(PROCESS_DEADLINE).await;
    let conn = rusqlite::Connection::open(cluster.nodes[a].data_dir.join("history.db"))
        .expect("open the history");
    nbwatch::store::schema::integrity_check(&conn).expect("integrity_check is ok");
}

// ---- The control plane across hosts ----

/// The nodes whose `service` runs, as `api`'s node sees it (stale entries left out).
async fn runners(api: SocketAddr, service: &str) -> Result<Vec<String>, String> {
    Ok(all_services(api)
        .await?
        .iter()
        .filter(|s| s["name"] == service && s["state"] == "running" && s["stale"] == false)
        .filter_map(|s| s["node"].as_str().map(str::to_string))
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_on_another_node_is_listed_and_restarted_from_here_and_bad_targets_fail_clearly()
{
    let mut cluster = Cluster::new();
    write_tree(
        &cluster,
        "web",
        "name = \"web\"\n[[children]]\nname = \"app\"\ncommand = [\"/bin/sleep\", \"1000\"]\n",
    );
    cluster.extra = cluster.operator("op").1;
    cluster.start_many(2).await;
    let (api1, api2) = (cluster.nodes[0].api, cluster.nodes[1].api);
    let api1_s = api1.to_string();
    let tok1 = cluster.nodes[0].token_file();
    let before = running_pid(api2, "app", None).await;
    wait_for("n1 lists n2's app", DEADLINE, async || {
        let list = all_services(api1).await?;
        match list
            .iter()
            .find(|s| s["node"] == "n2" && s["name"] == "app")
        {
            Some(s) if s["pid"] == before && s["stale"] == false => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    let out = client(
        &["restart", "n2:app", "--api", &api1_s, "--token-file", &tok1],
        &[],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    assert!(text(&out.stderr).contains("waiting"), "{out:?}");
    let after = running_pid(api2, "app", Some(before)).await;
    assert!(!process_alive(before));
    assert!(text(&out.stdout).starts_with("n2:app: running"), "{out:?}");
    // Executed once: a second look finds the same pid.
    assert_eq!(running_pid(api2, "app", None).await, after);
    let restarts = services(api2).await.expect("services")[0]["restarts"].clone();
    assert_eq!(restarts, 0, "an operator restart is not a crash");

    let table = client(&["services", "--all", "--api", &api1_s], &[]).await;
    let stdout = text(&table.stdout);
    assert!(
        stdout.starts_with("NODE") && stdout.contains("n2"),
        "{stdout}"
    );

    for (target, says) in [
        ("n2:nosuch", "no service \"nosuch\" on node n2"),
        ("n9:app", "no node \"n9\" in the cluster"),
        ("n2:", "is not SERVICE or NODE:SERVICE"),
    ] {
        let out = client(
            &["restart", target, "--api", &api1_s, "--token-file", &tok1],
            &[],
        )
        .await;
        assert_eq!(out.status.code(), Some(1), "{target}: {out:?}");
        assert!(text(&out.stderr).contains(says), "{target}: {out:?}");
    }

    cluster.kill9("n2");
    kill(Pid::from_raw(after as i32), Signal::SIGKILL).expect("the host's services die too");
    cluster
        .wait_state(&cluster.others("n2"), "n2", "down")
        .await;
    let out = client(
        &["stop", "n2:app", "--api", &api1_s, "--token-file", &tok1],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(text(&out.stderr).contains("node n2 is down"), "{out:?}");
    let list = all_services(api1).await.expect("all services");
    let app = list
        .iter()
        .find(|s| s["node"] == "n2")
        .expect("n2's last known app");
    assert_eq!(app["stale"], true, "{app}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_singleton_tree_runs_once_fails_over_when_its_host_dies_and_moves_back_when_it_returns() {
    let mut cluster = Cluster::new();
    write_tree(
        &cluster,
        "tv",
        "name = \"tv\"\nplacement = { failover = [\"n2\", \"n3\", \"n1\"] }\n\
         [[children]]\nname = \"recorder\"\ncommand = [\"/bin/sleep\", \"1000\"]\n",
    );
    cluster.start_many(3).await;
    let api1 = cluster.nodes[0].api;
    let api3 = cluster.nodes[2].api;
    let once = async |api: SocketAddr, on: &str| {
        let list = runners(api, "recorder").await?;
        if list == [on] {
            Ok(())
        } else {
            Err(format!("running on {list:?}"))
        }
    };
    wait_for("the recorder runs on n2 only", DEADLINE, async || {
        once(api1, "n2").await
    })
    .await;
    let pid = running_pid(cluster.nodes[1].api, "recorder", None).await;
    assert_eq!(
        services(api1).await.expect("n1's services")[0]["state"],
        "stopped",
        "n1 declares the tree but does not run it"
    );

    // n2's host dies: n3 takes over (n1, the leader, decides).
    cluster.kill9("n2");
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).expect("the host's services die too");
    wait_for("the recorder runs on n3", DEADLINE, async || {
        once(api1, "n3").await
    })
    .await;
    once(api3, "n3").await.expect("n3 agrees");

    // n2 comes back: the tree moves back to it, and n3 stops its copy.
    let n2 = cluster.index("n2");
    cluster.restart(n2).await;
    wait_for("the recorder moves back to n2", DEADLINE, async || {
        once(api1, "n2").await
    })
    .await;
    wait_for("n3 stopped its copy", DEADLINE, async || {
        match services(api3).await?.first() {
            Some(s) if s["state"] == "stopped" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_requiring_one_on_another_node_starts_with_it_stops_when_it_dies_and_comes_back()
{
    let mut cluster = Cluster::new();
    let db = own_trees(&mut cluster, "n1", Vec::new(), "n1-trees");
    std::fs::write(
        cluster.dir.path().join("n1-trees/db.toml"),
        "name = \"db\"\n[[children]]\nname = \"pg\"\ncommand = [\"/bin/sleep\", \"1000\"]\n",
    )
    .expect("tree");
    cluster.restart(db).await;
    // The dependant's node, with pg stopped first so that it has to wait.
    let n1_api = cluster.nodes[db].api.to_string();
    let tok1 = cluster.nodes[db].token_file();
    let stop = client(
        &["stop", "pg", "--api", &n1_api, "--token-file", &tok1],
        &[],
    )
    .await;
    assert!(stop.status.success(), "{stop:?}");
    let seed = vec![cluster.nodes[db].gossip];
    let web = own_trees(&mut cluster, "n2", seed, "n2-trees");
    std::fs::write(
        cluster.dir.path().join("n2-trees/web.toml"),
        "name = \"web\"\n[[children]]\nname = \"app\"\nrequires = [\"n1:pg\"]\n\
         command = [\"/bin/sleep\", \"1000\"]\n",
    )
    .expect("tree");
    cluster.restart(web).await;
    let api2 = cluster.nodes[web].api;
    wait_for("n2 sees n1's pg stopped", DEADLINE, async || {
        let list = all_services(api2).await?;
        match list.iter().find(|s| s["node"] == "n1" && s["name"] == "pg") {
            Some(s) if s["state"] == "stopped" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let app = &services(api2).await.expect("services")[0];
    assert_eq!(app["state"], "stopped", "app waits for n1:pg: {app}");

    let start = client(
        &["start", "pg", "--api", &n1_api, "--token-file", &tok1],
        &[],
    )
    .await;
    assert!(start.status.success(), "{start:?}");
    let first = running_pid(api2, "app", None).await;
    let stop = client(
        &["stop", "pg", "--api", &n1_api, "--token-file", &tok1],
        &[],
    )
    .await;
    assert!(stop.status.success(), "{stop:?}");
    wait_for(
        "app stops when pg goes",
        DEADLINE,
        async || match services(api2).await?.first() {
            Some(s) if s["state"] == "stopped" => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .await;
    assert!(!process_alive(first));
    let start = client(
        &["start", "pg", "--api", &n1_api, "--token-file", &tok1],
        &[],
    )
    .await;
    assert!(start.status.success(), "{start:?}");
    running_pid(api2, "app", Some(first)).await;
    let log = cluster.nodes[web].stderr_text();
    assert!(
        log.contains("n1:pg: stopped"),
        "the log says what it waits for:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_data_reaches_a_subscriber_on_another_host_and_expires_everywhere() {
    let mut cluster = Cluster::new();
    cluster.start_many(2).await;
    let (api1, api2) = (
        cluster.nodes[0].api.to_string(),
        cluster.nodes[1].api.to_string(),
    );
    let tok1 = cluster.nodes[0].token_file();
    let mut sub = tokio::process::Command::new(BIN)
        .args(["subscribe", "mythtv/", "--api", &api2])
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn subscribe");
    let mut lines = tokio::io::BufReader::new(sub.stdout.take().expect("stdout"));
    let out = client(
        &[
            "publish",
            "mythtv/pending",
            "3",
            "--ttl",
            "4s",
            "--api",
            &api1,
            "--token-file",
            &tok1,
        ],
        &[],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let mut seen = Vec::new();
    let mut read_until = async |seen: &mut Vec<String>, want: &str| {
        use tokio::io::AsyncBufReadExt;
        let end = Instant::now() + DEADLINE;
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout_at(end, lines.read_line(&mut line))
                .await
                .unwrap_or_else(|_| panic!("no line with {want:?} in {seen:?}"))
                .expect("read");
            assert!(n > 0, "subscribe exited; saw {seen:?}");
            seen.push(line.clone());
            if line.contains(want) {
                return;
            }
        }
    };
    read_until(&mut seen, "n1 mythtv/pending = 3").await;
    let got = client(&["get", "mythtv/pending", "--json", "--api", &api2], &[]).await;
    assert!(got.status.success(), "{got:?}");
    let parsed: Value = serde_json::from_slice(&got.stdout).expect("JSON");
    assert_eq!(parsed[0]["node"], "n1");
    assert_eq!(parsed[0]["value"], "3");
    assert!(parsed[0]["expires"].is_string());
    // The TTL passes: gone for the subscriber and for get.
    read_until(&mut seen, "- n1 mythtv/pending (gone)").await;
    let got = client(&["get", "mythtv/pending", "--api", &api2], &[]).await;
    assert_eq!(got.status.code(), Some(1), "{got:?}");
    assert!(
        text(&got.stderr).contains("no host publishes \"mythtv/pending\""),
        "{got:?}"
    );
    // Limits are clear errors.
    let big = "x".repeat(2000);
    let out = client(
        &["publish", "k", &big, "--api", &api1, "--token-file", &tok1],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        text(&out.stderr).contains("the value is 2000 bytes long; the limit is 768"),
        "{out:?}"
    );
    let out = client(
        &["publish", "a b", "1", "--api", &api1, "--token-file", &tok1],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(text(&out.stderr).contains("has ' ' at byte 1"), "{out:?}");
    let _ = sub.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_singleton_tree_that_gives_up_on_its_host_moves_to_the_next_candidate() {
    let mut cluster = Cluster::new();
    let tree = |command: &str| {
        format!(
            "name = \"tv\"\nintensity = 1\nperiod = \"60s\"\nplacement = {{ failover = [\"n2\", \"n3\"] }}\n\
             [[children]]\nname = \"recorder\"\ncommand = {command}\n"
        )
    };
    let n1 = own_trees(&mut cluster, "n1", Vec::new(), "n1-trees");
    cluster.restart(n1).await;
    let seed = vec![cluster.nodes[n1].gossip];
    for (name, command) in [
        ("n2", "[\"/bin/sh\", \"-c\", \"exit 3\"]"),
        ("n3", "[\"/bin/sleep\", \"1000\"]"),
    ] {
        let i = own_trees(&mut cluster, name, seed.clone(), &format!("{name}-trees"));
        std::fs::write(
            cluster.dir.path().join(format!("{name}-trees/tv.toml")),
            tree(command),
        )
        .expect("tree");
        cluster.restart(i).await;
    }
    let api1 = cluster.nodes[n1].api;
    wait_for(
        "the recorder runs on n3 after failing on n2",
        DEADLINE,
        async || {
            let list = all_services(api1).await?;
            let on = |node: &str| {
                list.iter()
                    .find(|s| s["node"] == node && s["name"] == "recorder")
                    .map(|s| s["state"].as_str().unwrap_or("").to_string())
            };
            match (on("n2").as_deref(), on("n3").as_deref()) {
                (Some("failed"), Some("running")) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    let log = cluster.nodes[cluster.index("n3")].stderr_text();
    assert!(log.contains("the leader placed the tree here"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_holding_a_state_file_from_a_newer_nbwatch_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("mkdir");
    let sent = data.join("alerts-sent.json");
    std::fs::write(&sent, r#"{"format":99,"seen":[],"own":{}}"#).expect("write");
    let config = dir.path().join("nbwatch.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\nname = \"x\"\ndata_dir = {}\n[gossip]\nlisten = \"127.0.0.1:0\"\n\
             [api]\nlisten = \"127.0.0.1:0\"\n",
            toml::Value::String(data.to_string_lossy().into_owned())
        ),
    )
    .expect("write");
    let out = client(&["run", "--config", &config.to_string_lossy()], &[]).await;
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        stderr.contains("alerts-sent.json") && stderr.contains("format 99"),
        "{stderr}"
    );
    // Refused, not rewritten: the newer build's file is as it was.
    assert_eq!(
        std::fs::read_to_string(&sent).expect("still there"),
        r#"{"format":99,"seen":[],"own":{}}"#
    );
}

/// Commands and silences travel in gossip, so any key holder can write one; a host obeys only
/// those an operator it trusts sealed (SECURITY.md, "Command another host").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_obeys_a_command_or_silence_from_another_host_only_under_a_trusted_operators_seal() {
    let mut cluster = Cluster::new();
    write_tree(
        &cluster,
        "web",
        "name = \"web\"\n[[children]]\nname = \"app\"\ncommand = [\"/bin/sleep\", \"1000\"]\n",
    );
    // n1 and n2 trust operator A; n3 is a key holder with an operator key of its own, B,
    // that nobody else trusts; n4 has no operator key at all.
    let (a_public, a_section) = cluster.operator("a");
    let (_, b_section) = cluster.operator("b");
    let n1 = cluster.add("n1", "n1", Vec::new());
    cluster.nodes[n1].extra = a_section.clone();
    cluster.restart(n1).await;
    let seed = vec![cluster.nodes[n1].gossip];
    let n2 = cluster.add("n2", "n2", seed.clone());
    cluster.nodes[n2].extra = a_section;
    let n3 = cluster.add("n3", "n3", seed.clone());
    cluster.nodes[n3].extra = b_section;
    let n4 = cluster.add("n4", "n4", seed.clone());
    cluster.nodes[n4].extra = format!("[control]\noperators = [\"{a_public}\"]\n");
    for i in [n2, n3, n4] {
        cluster.restart(i).await;
    }
    let names = cluster.names();
    for node in &cluster.nodes {
        wait_for("all four alive", DEADLINE, async || {
            all_alive(node.api, &names).await
        })
        .await;
    }
    let api2 = cluster.nodes[n2].api;
    let before = running_pid(api2, "app", None).await;
    wait_for("n3 and n4 list n2's app", DEADLINE, async || {
        for i in [n3, n4] {
            let list = all_services(cluster.nodes[i].api).await?;
            if !list.iter().any(|s| s["node"] == "n2" && s["name"] == "app") {
                return Err(format!("{list:?}"));
            }
        }
        Ok(())
    })
    .await;
    let cli = |i: usize, args: &[&str]| {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        all.extend([
            "--api".to_string(),
            cluster.nodes[i].api.to_string(),
            "--token-file".to_string(),
            cluster.nodes[i].token_file(),
        ]);
        all
    };

    // A host without an operator key cannot issue one: it says how to get one.
    let args = cli(n4, &["stop", "n2:app"]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = client(&refs, &[]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        text(&out.stderr).contains("control.operator_key_file"),
        "{out:?}"
    );

    // A key holder's own operator key: gossiped, sealed, and refused by n2, which answers why.
    let args = cli(n3, &["stop", "n2:app"]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = client(&refs, &[]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(text(&out.stderr).contains("does not trust"), "{out:?}");
    assert_eq!(
        running_pid(api2, "app", None).await,
        before,
        "n2's app was stopped"
    );
    assert!(process_alive(before));

    // Its silence of n2 is obeyed by nobody who does not trust B.
    let args = cli(n3, &["silence", "n2", "--for", "1h", "--reason", "hush"]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = client(&refs, &[]).await;
    assert!(out.status.success(), "{out:?}");
    wait_for(
        "n3 obeys its own operator's silence",
        DEADLINE,
        async || {
            let listed = get_json(cluster.nodes[n3].api, "/api/v1/silences", HTTP)
                .await
                .map_err(|e| e.to_string())?;
            match listed.as_array().is_some_and(|a| a.len() == 1) {
                true => Ok(()),
                false => Err(format!("{listed}")),
            }
        },
    )
    .await;
    // A key n3 writes after its silence: once a node has it, it has the silence too (a
    // node's state travels in the order of its versions).
    let args = cli(n3, &["publish", "after-silence", "1"]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    assert!(client(&refs, &[]).await.status.success());
    for i in [n1, n2, n4] {
        let api = cluster.nodes[i].api;
        wait_for("the others hear n3's silence", DEADLINE, async || {
            let got = get_json(api, "/api/v1/kv/after-silence", HTTP)
                .await
                .map_err(|e| e.to_string())?;
            match got.to_string().contains("n3") {
                true => Ok(()),
                false => Err(format!("{got}")),
            }
        })
        .await;
    }
    for i in [n1, n2, n4] {
        let listed = get_json(cluster.nodes[i].api, "/api/v1/silences", HTTP)
            .await
            .expect("silences");
        assert_eq!(listed, serde_json::json!([]), "node {i} obeys B's silence");
    }

    // Operator A, trusted by n2, from n1: obeyed once.
    let args = cli(n1, &["restart", "n2:app"]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = client(&refs, &[]).await;
    assert!(out.status.success(), "{out:?}");
    let after = running_pid(api2, "app", Some(before)).await;
    assert_eq!(running_pid(api2, "app", None).await, after);
    let ledger = cluster.nodes[n2].data_dir.join("directives.json");
    assert!(ledger.exists(), "n2 records the commands it ran");
}

/// What another host (or a local user of the API) could write into a value or a reason: clear
/// the screen, retitle the window, overwrite the line, fake a line, reverse the rest.
const TERMINAL_CONTROLS: &str = "\x1b[2J\x1b]0;owned\x07ok\rFAKE\nnbwatch: fake line\u{202e}end";

/// True if `out` holds any character a terminal would act on (a newline ends a line and is
/// let through; the rest of C0, DEL, C1 and the bidi controls are not).
fn acts_on_a_terminal(out: &str) -> bool {
    out.chars()
        .any(|c| c != '\n' && nbwatch::text::needs_escape(c))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_in_values_and_reasons_reach_a_terminal_as_escapes_and_json_unchanged() {
    let mut cluster = Cluster::new();
    // A silence is sealed by an operator, so the node holds (and trusts) one.
    let (_, operator) = cluster.operator("a");
    let n1 = cluster.add("n1", "n1", Vec::new());
    cluster.nodes[n1].extra = operator;
    cluster.restart(n1).await;
    let api = cluster.nodes[0].api.to_string();
    let tok = cluster.nodes[0].token_file();
    let shown = "\\x1b[2J\\x1b]0;owned\\x07ok\\rFAKE\\nnbwatch: fake line\\u{202e}end";

    let mut sub = tokio::process::Command::new(BIN)
        .args(["subscribe", "t/", "--api", &api])
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn subscribe");
    let mut lines = tokio::io::BufReader::new(sub.stdout.take().expect("stdout"));
    let publish = ["publish", "t/v", TERMINAL_CONTROLS, "--api", &api];
    let out = client(&[&publish[..], &["--token-file", &tok]].concat(), &[]).await;
    assert!(out.status.success(), "{out:?}");
    assert!(!acts_on_a_terminal(&text(&out.stdout)), "{out:?}");

    let got = client(&["get", "t/v", "--api", &api], &[]).await;
    let stdout = text(&got.stdout);
    assert!(got.status.success(), "{got:?}");
    assert!(
        !acts_on_a_terminal(&stdout),
        "get printed raw controls: {stdout:?}"
    );
    assert_eq!(
        stdout.lines().count(),
        2,
        "a header and one row: {stdout:?}"
    );
    assert!(stdout.contains(shown), "{stdout:?}");
    let got = client(&["get", "t/v", "--json", "--api", &api], &[]).await;
    let parsed: Value = serde_json::from_slice(&got.stdout).expect("get --json is JSON");
    assert_eq!(
        parsed[0]["value"], TERMINAL_CONTROLS,
        "JSON keeps the exact string"
    );

    let line = {
        use tokio::io::AsyncBufReadExt;
        let mut line = String::new();
        tokio::time::timeout(DEADLINE, lines.read_line(&mut line))
            .await
            .expect("subscribe prints the value")
            .expect("read");
        line
    };
    assert!(
        !acts_on_a_terminal(&line) && line.ends_with(&format!("t/v = {shown}\n")),
        "subscribe printed {line:?}"
    );
    let _ = sub.kill().await;

    let silence = [
        "silence",
        "n1",
        "--for",
        "1m",
        "--reason",
        TERMINAL_CONTROLS,
    ];
    let out = client(
        &[&silence[..], &["--api", &api, "--token-file", &tok]].concat(),
        &[],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let listed = client(&["silences", "--api", &api], &[]).await;
    let stdout = text(&listed.stdout);
    assert!(
        !acts_on_a_terminal(&stdout),
        "silences printed raw controls: {stdout:?}"
    );
    assert!(stdout.contains(shown), "{stdout:?}");
    let listed = client(&["silences", "--json", "--api", &api], &[]).await;
    let parsed: Value = serde_json::from_slice(&listed.stdout).expect("silences --json is JSON");
    assert_eq!(parsed[0]["reason"], TERMINAL_CONTROLS, "{parsed:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tree_and_service_names_with_control_characters_are_refused_by_check_config_and_run() {
    let mut cluster = Cluster::new();
    let marker = cluster.dir.path().join("ran");
    write_tree(
        &cluster,
        "evil",
        &format!(
            "name = \"tv\\u001b[2J\"\n[[children]]\nname = \"db\\rx\\nnbwatch: ok\"\n\
             command = [\"/bin/sh\", \"-c\", \"touch {}; exec sleep 1000\"]\n",
            marker.display()
        ),
    );
    let i = cluster.add("n1", "n1", Vec::new());
    cluster.nodes[i].write_config();
    let config = cluster.nodes[i].config.to_string_lossy().into_owned();
    let out = client(&["check-config", "--config", &config], &[]).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    for key in [": name:", ": children[0].name:"] {
        assert!(
            stderr
                .lines()
                .any(|l| l.contains("evil.toml") && l.contains(key)),
            "no line naming evil.toml and {key}:\n{stderr}"
        );
    }
    assert!(!acts_on_a_terminal(&stderr), "{stderr:?}");

    let status = match cluster.nodes[i].start(Ports::pick()).await {
        Started::Exited(status) => status,
        Started::Ready => panic!("the daemon started with a control character in a name"),
    };
    assert_eq!(status.code(), Some(1));
    let stderr = cluster.nodes[i].stderr_text();
    assert!(
        stderr.contains("evil.toml") && stderr.contains("children[0].name"),
        "{stderr}"
    );
    assert!(!acts_on_a_terminal(&stderr), "{stderr:?}");
    assert!(!marker.exists(), "a service started from a refused tree");
}

/// Sends `request` as it is on a new connection to `api` and reads the answer until the
/// server closes (every request here says `Connection: close`).
async fn raw_http(api: SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(api).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut answer = Vec::new();
    tokio::time::timeout(HTTP, stream.read_to_end(&mut answer))
        .await
        .unwrap_or_else(|_| panic!("no answer to {request:?}"))
        .expect("read");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_only_requests_addressed_to_it_so_a_rebound_name_reads_nothing() {
    let mut cluster = Cluster::new();
    cluster.extra = "allowed_hosts = [\"nbwatch.test\"]\n".to_string(); // inside [api]
    let i = cluster.start("n1", Vec::new()).await;
    let api = cluster.nodes[i].api;
    let token =
        nbwatch::secure::token::read(Path::new(&cluster.nodes[i].token_file())).expect("token");
    let get = |host: &str| {
        format!("GET /api/v1/members HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
    };

    for host in [
        "evil.example",
        "evil.example:80",
        &format!("evil.example:{}", api.port()),
    ] {
        let answer = raw_http(api, &get(host)).await;
        assert!(answer.starts_with("HTTP/1.1 421"), "{host}: {answer}");
        assert!(
            answer.contains("api.allowed_hosts") && !answer.contains("\"n1\""),
            "{host}: {answer}"
        );
    }
    // Refused before the token is looked at: a rebinding page learns nothing, even with it.
    let post = format!(
        "POST /api/v1/reload HTTP/1.1\r\nHost: evil.example\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    );
    assert!(raw_http(api, &post).await.starts_with("HTTP/1.1 421"));
    // The dashboard too.
    let page = "GET / HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n";
    assert!(raw_http(api, page).await.starts_with("HTTP/1.1 421"));

    for host in [
        api.to_string(),
        "127.0.0.1".to_string(),
        format!("localhost:{}", api.port()),
        "nbwatch.test".to_string(),
        "NBWatch.Test.:8443".to_string(),
    ] {
        let answer = raw_http(api, &get(&host)).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{host}: {answer}");
        assert!(answer.contains("\"n1\""), "{host}: {answer}");
    }
    // No Host at all (an HTTP/1.0 tool): no browser sends that, so it is answered.
    let old = raw_http(api, "GET /api/v1/members HTTP/1.0\r\n\r\n").await;
    assert!(
        old.starts_with("HTTP/1.0 200") || old.starts_with("HTTP/1.1 200"),
        "{old}"
    );
    // The CLI's own client, as every command uses it.
    let out = client(&["members", "--api", &api.to_string()], &[]).await;
    assert!(out.status.success(), "{out:?}");
}

/// The `closed=N` counts of the rate-limited "closed a join connection" lines in `log`.
fn closed_join_counts(log: &str) -> Vec<u64> {
    log.lines()
        .filter(|l| l.contains("closed a join connection"))
        .map(|l| {
            let at = l.find("closed=").expect("a closed= field") + "closed=".len();
            let digits: String = l[at..].chars().take_while(char::is_ascii_digit).collect();
            digits.parse().expect("a count")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_connections_to_the_gossip_port_costs_one_log_line_per_ten_seconds() {
    const FLOOD: u64 = 2_000;
    let mut cluster = Cluster::new();
    let i = cluster.start("n1", Vec::new()).await;
    let gossip = cluster.nodes[i].gossip;
    let started = Instant::now();
    // Connect and hang up at once, 100 at a time: nothing is ever sent.
    for _ in 0..FLOOD / 100 {
        let batch: Vec<_> = (0..100)
            .map(|_| tokio::spawn(tokio::net::TcpStream::connect(gossip)))
            .collect();
        for connect in batch {
            drop(connect.await.expect("task").expect("connect"));
        }
    }
    // Keep knocking until a line reports the whole flood (the next one, ten seconds on).
    let node = &cluster.nodes[i];
    let counts = wait_for(
        "a line counts every closed connection",
        DEADLINE,
        async || {
            drop(tokio::net::TcpStream::connect(gossip).await);
            let counts = closed_join_counts(&node.stderr_text());
            match counts.iter().sum::<u64>() > FLOOD {
                true => Ok(counts),
                false => Err(format!("{counts:?}")),
            }
        },
    )
    .await;
    let periods = started.elapsed().as_secs() / 10 + 1;
    assert!(
        counts.len() as u64 <= periods,
        "{} lines in {periods} periods of 10 s: {counts:?}",
        counts.len()
    );
    let api = node.api;
    assert!(cluster.nodes[i].exited().is_none() && members(api).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_connections_to_the_api_are_closed_after_five_seconds_and_others_are_answered_meanwhile()
 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut cluster = Cluster::new();
    let i = cluster.start("n1", Vec::new()).await;
    let api = cluster.nodes[i].api;
    let opened = Instant::now();
    let mut slow = Vec::new();
    for _ in 0..40 {
        let mut stream = tokio::net::TcpStream::connect(api).await.expect("connect");
        stream.write_all(b"GET /api/v1/mem").await.expect("send");
        slow.push(stream);
    }
    let out = client(&["members", "--api", &api.to_string()], &[]).await;
    assert!(out.status.success(), "{out:?}");
    assert!(text(&out.stdout).contains("n1"), "{out:?}");
    for stream in &mut slow {
        let mut sink = Vec::new();
        // The end (EOF or a reset) is what counts, not what came before it.
        let _end = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut sink))
            .await
            .expect("the daemon closes a connection that never finished its request");
    }
    let closed = opened.elapsed();
    assert!(
        closed >= Duration::from_millis(4_900) && closed < DEADLINE,
        "closed after {closed:?}"
    );

    // A whole head with the token, then a body that never arrives: 408 after 5 s, not a
    // slot held for as long as the client likes.
    let token = std::fs::read_to_string(cluster.nodes[i].token_file()).expect("token");
    let head = format!(
        "POST /api/v1/kv/slow HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"value\":",
        token.trim()
    );
    let sent = Instant::now();
    let mut trickle = Vec::new();
    for _ in 0..3 {
        let mut stream = tokio::net::TcpStream::connect(api).await.expect("connect");
        stream.write_all(head.as_bytes()).await.expect("send");
        trickle.push(stream);
    }
    for stream in &mut trickle {
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut answer))
            .await
            .expect("the daemon answers a body that never arrives");
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    }
    let waited = sent.elapsed();
    assert!(
        waited >= Duration::from_millis(4_900) && waited < DEADLINE,
        "answered after {waited:?}"
    );
    // A body announced larger than the limit is refused at once, unread.
    let big = head.replace("Content-Length: 100", "Content-Length: 50000000");
    let mut stream = tokio::net::TcpStream::connect(api).await.expect("connect");
    stream.write_all(big.as_bytes()).await.expect("send");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut answer))
        .await
        .expect("the daemon answers a body too large");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let value = client(&["get", "slow", "--api", &api.to_string()], &[]).await;
    assert!(
        !text(&value.stdout).contains("slow"),
        "nothing was written: {value:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_and_run_refuse_the_same_configs_with_the_same_words() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let base = format!(
        "[node]\nname = \"n1\"\ndata_dir = {}\n",
        toml::Value::String(data.to_string_lossy().into_owned())
    );
    let loopback = "[gossip]\nlisten = \"127.0.0.1:0\"\n[api]\nlisten = \"127.0.0.1:0\"\n";
    let cases = [
        (
            "[gossip]\nlisten = \"127.0.0.1:0\"\n[api]\nlisten = \"0.0.0.0:0\"\n",
            "api.listen",
        ),
        (
            "[gossip]\nlisten = \"127.0.0.1:0\"\n[api]\nlisten = \"[::ffff:10.1.2.3]:0\"\n",
            "api.listen",
        ),
        (
            &format!("{loopback}[metrics]\ninterval = \"1ms\"\n"),
            "metrics.interval",
        ),
        (
            "[gossip]\nlisten = \"127.0.0.1:0\"\ninterval = \"1ns\"\n[api]\nlisten = \"127.0.0.1:0\"\n",
            "gossip.interval",
        ),
        (
            &format!("{loopback}[store]\nraw_retention = \"0s\"\n"),
            "store.raw_retention",
        ),
        (
            &format!("{loopback}[supervision]\nlog_keep = 4000000000\n"),
            "supervision.log_keep",
        ),
    ];
    for (i, (text, key)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("c{i}.toml"));
        std::fs::write(&file, format!("{base}{text}")).expect("write");
        let file = file.to_string_lossy().to_string();
        let checked = client(&["check-config", "--config", &file], &[]).await;
        let ran = client(&["run", "--config", &file], &[]).await;
        assert_eq!(checked.status.code(), Some(1), "{text}: {checked:?}");
        assert_eq!(ran.status.code(), Some(1), "{text}: {ran:?}");
        let said = format!("{file}: {key}: ");
        let line = |out: &std::process::Output| {
            text_of_line(&out.stderr, &said).unwrap_or_else(|| panic!("{said}…: {out:?}"))
        };
        assert_eq!(line(&checked), line(&ran), "{text}");
    }
    // An IPv4-mapped loopback address is loopback to both.
    let file = dir.path().join("mapped.toml");
    std::fs::write(
        &file,
        format!(
            "{base}[gossip]\nlisten = \"[::ffff:127.0.0.1]:0\"\n[api]\nlisten = \"[::ffff:127.0.0.1]:0\"\n"
        ),
    )
    .expect("write");
    let file = file.to_string_lossy().to_string();
    let checked = client(&["check-config", "--config", &file], &[]).await;
    assert!(checked.status.success(), "{checked:?}");
}

/// The first line of `bytes` that starts with `prefix`.
fn text_of_line(bytes: &[u8], prefix: &str) -> Option<String> {
    text(bytes)
        .lines()
        .find(|l| l.starts_with(prefix))
        .map(str::to_string)
}

/// A state file a crash or a disk cut short, or filled with garbage: the daemon refuses to
/// start naming it, or says it set it aside and runs; it never panics and never goes on in
/// silence. Each file of a data dir a daemon left, in turn, both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_file_cut_short_or_garbled_is_refused_or_set_aside_by_name_never_in_silence() {
    let mut cluster = Cluster::new();
    let i = cluster.add("n1", "n1", Vec::new());
    cluster.nodes[i].own_key = true;
    let (_, operator) = cluster.operator("a");
    cluster.nodes[i].extra = format!(
        "{operator}[[alerts.sinks]]\ntype = \"exec\"\ncommand = [\"/bin/sh\", \"-c\", \"cat > /dev/null\"]\n"
    );
    cluster.restart(i).await;
    // What makes the rest of the state files: a sealed silence (the directive sequence) and a
    // test alert (the alerts sent).
    let (api, token) = (
        cluster.nodes[i].api.to_string(),
        cluster.nodes[i].token_file(),
    );
    for args in [
        &["silence", "n1", "--for", "1m"][..],
        &["alerts", "test"][..],
    ] {
        let out = client(
            &[args, &["--api", &api, "--token-file", &token]].concat(),
            &[],
        )
        .await;
        assert!(out.status.success(), "{args:?}: {out:?}");
    }
    let data = cluster.nodes[i].data_dir.clone();
    wait_for(
        "the test alert is recorded as sent",
        DEADLINE,
        async || match data.join("alerts-sent.json").exists() {
            true => Ok(()),
            false => Err("no alerts-sent.json yet".to_string()),
        },
    )
    .await;
    cluster.nodes[i].signal(Signal::SIGTERM);
    cluster.nodes[i].wait_exit(PROCESS_DEADLINE).await;
    let mut files: Vec<String> = std::fs::read_dir(&data)
        .expect("read the data dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut outcomes = Vec::new();
    for file in &files {
        let path = data.join(file);
        let original = std::fs::read(&path).expect("read");
        let damages: [(&str, Vec<u8>); 2] = [
            ("cut short", original[..original.len() / 2].to_vec()),
            ("garbled", b"\x00\xff{not what nbwatch wrote\n".repeat(3)),
        ];
        for (damage, bytes) in damages {
            std::fs::write(&path, &bytes).expect("damage");
            let node = &mut cluster.nodes[i];
            let ports = Ports {
                gossip: node.gossip,
                api: node.api,
                held: None,
            };
            let before = node.stderr_text().len();
            let started = node.start(ports).await;
            if matches!(started, Started::Ready) {
                node.signal(Signal::SIGTERM);
                node.wait_exit(PROCESS_DEADLINE).await;
            }
            let said = node.stderr_text().get(before..).unwrap_or("").to_string();
            assert!(!said.contains("panicked"), "{file} {damage}: {said}");
            let outcome = match started {
                Started::Ready => "runs",
                Started::Exited(status) => {
                    assert_eq!(status.code(), Some(1), "{file} {damage}: {said}");
                    "refused"
                }
            };
            assert!(
                said.contains(file.as_str()),
                "{file} {damage}: the daemon {outcome} without naming the file:\n{said}"
            );
            // Secrets are not remade behind the operator's back (others hold the key, scripts
            // the token); the rest is set aside or rebuilt, and said.
            let secret = ["api.token", "cluster.key"].contains(&file.as_str());
            assert_eq!(
                outcome == "refused",
                secret,
                "{file} {damage}: {outcome}\n{said}"
            );
            outcomes.push(format!("{file} {damage}: {outcome}"));
            // Back to the good file (and nothing a recovery set aside) for the next case.
            for e in std::fs::read_dir(&data)
                .expect("read")
                .filter_map(|e| e.ok())
            {
                let name = e.file_name().to_string_lossy().into_owned();
                if !files.contains(&name) && e.file_type().is_ok_and(|t| t.is_file()) {
                    std::fs::remove_file(e.path()).expect("rm");
                }
            }
            std::fs::write(&path, &original).expect("restore");
        }
    }
    println!("{}", outcomes.join("\n"));
    for made in [
        "api.token",
        "cluster.key",
        "history.db",
        "incarnation",
        "alerts-sent.json",
        "directive.seq",
    ] {
        assert!(
            files.iter().any(|f| f == made),
            "{made} was not damaged: {files:?}"
        );
    }
}

/// kill -9 while the history is being written, again and again: every sample the API had
/// already shown is still there after the restart, and the file passes SQLite's integrity
/// check at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_killed_while_writing_its_history_loses_nothing_it_showed() {
    let mut cluster = Cluster::new();
    let i = cluster.start("n1", Vec::new()).await;
    let samples = async |api: SocketAddr| -> Result<Vec<String>, String> {
        match get_json(api, "/api/v1/history/n1?metric=load1&since=1h", HTTP).await {
            Ok(Value::Array(list)) => Ok(list.iter().map(|s| s["at"].to_string()).collect()),
            other => Err(format!("{other:?}")),
        }
    };
    let mut shown: Vec<String> = Vec::new();
    for round in 1..=4 {
        let api = cluster.nodes[i].api;
        let want = shown.len() + 2;
        let now = wait_for(
            &format!("round {round}: new samples"),
            DEADLINE,
            async || {
                let now = samples(api).await?;
                match now.len() >= want {
                    true => Ok(now),
                    false => Err(format!("{} of {want}", now.len())),
                }
            },
        )
        .await;
        for at in &shown {
            assert!(
                now.contains(at),
                "round {round}: the sample at {at} is gone"
            );
        }
        shown = now;
        cluster.kill9("n1");
        cluster.restart(i).await;
    }
    let api = cluster.nodes[i].api;
    let after = samples(api).await.expect("history");
    for at in &shown {
        assert!(
            after.contains(at),
            "the sample at {at} is gone after the last kill"
        );
    }
    cluster.nodes[i].signal(Signal::SIGTERM);
    cluster.nodes[i].wait_exit(PROCESS_DEADLINE).await;
    let conn = rusqlite::Connection::open(cluster.nodes[i].data_dir.join("history.db"))
        .expect("open the history");
    nbwatch::store::schema::integrity_check(&conn).expect("integrity_check is ok");
}

/// kill -9 right after a reload began: the restarted daemon runs the new trees, and none of
/// the old life's processes is left beside their new copies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_killed_during_a_reload_comes_back_with_the_new_trees_and_no_second_copy() {
    let mut cluster = Cluster::new();
    // Durations no other test (nor an earlier run of this one) uses, so the processes can be
    // counted by their command line; short, so what the run leaves behind ends soon.
    let (app_arg, worker_arg) = (
        format!("60.{}1", std::process::id()),
        format!("60.{}2", std::process::id()),
    );
    let app = format!("[[children]]\nname = \"app\"\ncommand = [\"/bin/sleep\", \"{app_arg}\"]\n");
    write_tree(&cluster, "web", &format!("name = \"web\"\n{app}"));
    let i = cluster.start("n1", Vec::new()).await;
    let old = running_pid(cluster.nodes[i].api, "app", None).await;
    write_tree(
        &cluster,
        "web",
        &format!(
            "name = \"web\"\n{app}[[children]]\nname = \"worker\"\n\
             command = [\"/bin/sleep\", \"{worker_arg}\"]\n"
        ),
    );
    cluster.nodes[i].signal(Signal::SIGHUP);
    cluster.kill9("n1");
    cluster.restart(i).await;
    let api = cluster.nodes[i].api;
    let app_pid = running_pid(api, "app", Some(old)).await;
    let worker = running_pid(api, "worker", None).await;
    wait_for(
        "the old life's app is gone",
        PROCESS_DEADLINE,
        async || match process_alive(old) {
            false => Ok(()),
            true => Err(format!("{old} still runs beside {app_pid}")),
        },
    )
    .await;
    assert!(process_alive(app_pid) && process_alive(worker));
    // One process per service, whatever the reload had started before the kill.
    let count = |arg: &str| {
        let want = format!("/bin/sleep\0{arg}\0");
        std::fs::read_dir("/proc")
            .expect("/proc")
            .filter_map(|e| e.ok())
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
            .filter(|c| c == want.as_bytes())
            .count()
    };
    wait_for(
        "one copy of each service",
        PROCESS_DEADLINE,
        async || match (count(&app_arg), count(&worker_arg)) {
            (1, 1) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .await;
}

/// kill -9 in the middle of a back-fill: the restarted node fetches the window again and ends
/// with every row exactly once (rows keep their keys, so a page fetched twice adds nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_during_a_back_fill_ends_with_every_row_once() {
    const ROWS: i64 = 200_000;
    let mut cluster = Cluster::new();
    let b = cluster.start("b", Vec::new()).await;
    cluster.nodes[b].signal(Signal::SIGTERM);
    cluster.nodes[b].wait_exit(PROCESS_DEADLINE).await;
    // b's record of a host long gone: many pages of samples in the back-fill window.
    let start = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
        - 3_600_000;
    {
        let mut conn = rusqlite::Connection::open(cluster.nodes[b].data_dir.join("history.db"))
            .expect("open b's history");
        let tx = conn.transaction().expect("begin");
        tx.execute(
            "INSERT INTO series (node, metric) VALUES ('ghost', 'load1')",
            [],
        )
        .expect("series");
        let series = tx.last_insert_rowid();
        {
            let mut insert = tx
                .prepare("INSERT INTO samples (series, at, value) VALUES (?1, ?2, ?3)")
                .expect("prepare");
            for k in 0..ROWS {
                insert
                    .execute(rusqlite::params![series, start + k * 10, (k % 7) as f64])
                    .expect("insert");
            }
        }
        tx.commit().expect("commit");
    }
    cluster.restart(b).await;
    let a = cluster.start("a", vec![cluster.nodes[b].gossip]).await;
    let db = cluster.nodes[a].data_dir.join("history.db");
    let count = || -> i64 {
        rusqlite::Connection::open(&db)
            .and_then(|c| {
                c.query_row(
                    "SELECT count(*) FROM samples JOIN series ON series.id = samples.series \
                     WHERE series.node = 'ghost'",
                    [],
                    |r| r.get(0),
                )
            })
            .unwrap_or(0)
    };
    let partial = wait_for(
        "a has part of the back-fill",
        DEADLINE,
        async || match count() {
            0 => Err("nothing yet".to_string()),
            n if n < ROWS => Ok(n),
            n => Err(format!("all {n} already: too late to interrupt")),
        },
    )
    .await;
    cluster.kill9("a");
    cluster.restart(a).await;
    wait_for("a has every row", DEADLINE, async || match count() {
        ROWS => Ok(()),
        n => Err(format!("{n} of {ROWS} (after {partial} before the kill)")),
    })
    .await;
    let conn = rusqlite::Connection::open(&db).expect("open a's history");
    nbwatch::store::schema::integrity_check(&conn).expect("integrity_check is ok");
}

/// README's promise that the history is readable with `sqlite3`: by the data dir's group,
/// while the daemon writes it (WAL), and by nobody else. Needs root (to be another user) and
/// the `sqlite3` program; says so and passes without them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_dirs_group_reads_the_live_history_with_sqlite3_and_others_cannot() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    if !nix::unistd::geteuid().is_root()
        || Command::new("sqlite3").arg("-version").output().is_err()
    {
        println!("skipped: needs root and the sqlite3 program");
        return;
    }
    let mut cluster = Cluster::new();
    let i = cluster.add("n1", "n1", Vec::new());
    cluster.nodes[i].own_key = true;
    let data = cluster.nodes[i].data_dir.clone();
    // The test's own folder is 0700; let others through it (not read it), as /var/lib is.
    std::fs::set_permissions(cluster.dir.path(), std::fs::Permissions::from_mode(0o711))
        .expect("chmod the test folder");
    // The data dir made as the packaging makes it: the daemon's user's, a group of readers
    // (here nogroup, the primary group of nobody), setgid so the files it creates get it.
    std::fs::create_dir(&data).expect("mkdir");
    let nogroup = nix::unistd::Gid::from_raw(65534);
    nix::unistd::chown(&data, None, Some(nogroup)).expect("chgrp");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o2750)).expect("chmod");
    cluster.restart(i).await;
    let api = cluster.nodes[i].api;
    wait_for("the node records its own samples", DEADLINE, async || {
        let s = get_json(api, "/api/v1/history/n1?metric=load1&since=1h", HTTP)
            .await
            .map_err(|e| e.to_string())?;
        match s.as_array().is_some_and(|a| !a.is_empty()) {
            true => Ok(()),
            false => Err(format!("{s}")),
        }
    })
    .await;
    let db = data.join("history.db");
    let read_as = |uid: u32, gid: u32| {
        Command::new("sqlite3")
            .arg(&db)
            .arg("select count(*) > 0 from samples")
            .uid(uid)
            .gid(gid)
            .output()
            .expect("run sqlite3")
    };
    let member = read_as(65534, 65534);
    assert!(member.status.success(), "a member of the group: {member:?}");
    assert_eq!(text(&member.stdout).trim(), "1", "{member:?}");
    // Someone outside the group cannot even open it.
    let outsider = read_as(65534, 65533);
    assert!(
        !outsider.status.success() || text(&outsider.stdout).trim() != "1",
        "a user outside the group read the history: {outsider:?}"
    );
    // The daemon's secrets stay its own.
    for secret in ["api.token", "cluster.key"] {
        let mode = std::fs::metadata(data.join(secret))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{secret} has mode {mode:o}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_or_key_file_others_could_have_prepared_stops_the_start() {
    use std::os::unix::fs::PermissionsExt;
    let chmod = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod")
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let key = dir.path().join("cluster.key");
    let quote = |p: &Path| toml::Value::String(p.to_string_lossy().into_owned()).to_string();
    let config = dir.path().join("n1.toml");
    let write_config = |key_file: bool| {
        let key_line = if key_file {
            format!("key_file = {}\n", quote(&key))
        } else {
            String::new()
        };
        std::fs::write(
            &config,
            format!(
                "[node]\nname = \"n1\"\ndata_dir = {}\n[gossip]\nlisten = \"127.0.0.1:0\"\n\
                 {key_line}[api]\nlisten = \"127.0.0.1:0\"\n",
                quote(&data)
            ),
        )
        .expect("write the config");
    };
    let path = config.to_string_lossy().to_string();

    // A data dir made in advance, writable by everyone, with a token planted in it.
    write_config(false);
    std::fs::create_dir(&data).expect("mkdir");
    chmod(&data, 0o777);
    std::fs::write(data.join("api.token"), "planted\n").expect("plant");
    let ran = client(&["run", "--config", &path], &[]).await;
    assert_eq!(ran.status.code(), Some(1), "{ran:?}");
    let said = format!("{} has mode 0777", data.display());
    assert!(text(&ran.stderr).contains(&said), "{ran:?}");
    chmod(&data, 0o750);
    chmod(&data.join("api.token"), 0o666);
    let ran = client(&["run", "--config", &path], &[]).await;
    assert_eq!(ran.status.code(), Some(1), "{ran:?}");
    let said = format!("{} has mode 0666", data.join("api.token").display());
    assert!(text(&ran.stderr).contains(&said), "{ran:?}");

    // A key file others can read: refused by check-config and run alike, naming it and its mode.
    std::fs::remove_file(data.join("api.token")).expect("rm");
    write_config(true);
    std::fs::write(
        &key,
        format!("{}\n", nbwatch::secure::Key::generate().encode()),
    )
    .expect("key");
    chmod(&key, 0o644);
    let said = format!("{} has mode 0644", key.display());
    let checked = client(&["check-config", "--config", &path], &[]).await;
    assert_eq!(checked.status.code(), Some(1), "{checked:?}");
    assert!(text(&checked.stderr).contains(&said), "{checked:?}");
    let ran = client(&["run", "--config", &path], &[]).await;
    assert_eq!(ran.status.code(), Some(1), "{ran:?}");
    assert!(text(&ran.stderr).contains(&said), "{ran:?}");
    chmod(&key, 0o600);
    let checked = client(&["check-config", "--config", &path], &[]).await;
    assert!(checked.status.success(), "{checked:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn pick_and_owner_answer_from_every_hosts_view_and_refuse_bad_input_clearly() {
    let mut cluster = Cluster::new();
    cluster.start_many(3).await;
    let apis: Vec<String> = cluster.nodes.iter().map(|n| n.api.to_string()).collect();
    // Every host has announced its load (metrics every second) before anyone picks.
    for api in &apis {
        let api: SocketAddr = api.parse().expect("an address");
        wait_for("every member's load is known", DEADLINE, async || {
            let m = members(api).await?;
            let known = m.len() == 3 && m.iter().all(|m| m["metrics"]["load1"].is_number());
            known.then_some(()).ok_or_else(|| format!("{m:?}"))
        })
        .await;
    }
    let run = async |args: &[&str]| {
        let out = client(args, &[]).await;
        let json: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (out, json)
    };
    let (out, picked) = run(&["pick", "--count", "2", "--json", "--api", &apis[0]]).await;
    assert!(out.status.success(), "{out:?}");
    let names: Vec<&str> = picked
        .as_array()
        .expect("an array")
        .iter()
        .map(|p| {
            assert!(p["score"].is_number() && p["addr"].is_string(), "{p}");
            p["node"].as_str().expect("a name")
        })
        .collect();
    assert_eq!(names.len(), 2);
    assert_ne!(names[0], names[1]);
    let (out, picked) = run(&[
        "pick",
        "--count",
        "3",
        "--exclude",
        "n1,n3",
        "--by",
        "mem_used_pct",
        "--json",
        "--api",
        &apis[1],
    ])
    .await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(picked.as_array().map(Vec::len), Some(1), "{picked}");
    assert_eq!(picked[0]["node"], "n2");
    let (out, _) = run(&["pick", "--by", "no_such_metric", "--api", &apis[0]]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        text(&out.stderr).contains("no live host reports no_such_metric"),
        "{out:?}"
    );
    let (out, _) = run(&["pick", "--count", "0", "--api", &apis[0]]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        text(&out.stderr).contains("count: \"0\" is not a number from 1 to 1000"),
        "{out:?}"
    );
    // Owners: the same on every host, for keys with slashes and spaces too.
    let keys = ["user:42", "tv/recordings/2026", "a key with spaces"];
    let owners_on = async |api: &str| {
        let mut all = Vec::new();
        for key in keys {
            let (out, o) = run(&["owner", key, "--replicas", "2", "--json", "--api", api]).await;
            assert!(out.status.success(), "{out:?}");
            assert_eq!(o["key"], key, "{o}");
            assert_eq!(o["owners"].as_array().map(Vec::len), Some(2), "{o}");
            assert_eq!(o["owners"][0]["weight"], 1.0, "{o}");
            all.push(o["owners"].clone());
        }
        all
    };
    let seen = owners_on(&apis[0]).await;
    for api in &apis[1..] {
        assert_eq!(owners_on(api).await, seen);
    }
    // n3 dies: once the others see it down, they agree again, and keys n3 did not own first
    // keep their first owner.
    cluster.kill9("n3");
    for api in &apis[..2] {
        let api: SocketAddr = api.parse().expect("an address");
        wait_for("n3 is down", DEADLINE, async || {
            let m = members(api).await?;
            let down = entry(&m, "n3").is_some_and(|e| e["state"] == "down");
            down.then_some(()).ok_or_else(|| format!("{m:?}"))
        })
        .await;
    }
    let after = owners_on(&apis[0]).await;
    assert_eq!(owners_on(&apis[1]).await, after);
    for (before, now) in seen.iter().zip(&after) {
        assert!(
            now.as_array()
                .expect("owners")
                .iter()
                .all(|o| o["node"] != "n3")
        );
        if before[0]["node"] != "n3" {
            assert_eq!(before[0]["node"], now[0]["node"]);
        }
    }
    let addr: SocketAddr = apis[0].parse().expect("an address");
    let err = get_json(addr, "/api/v1/owner/k?replicas=2&extra=1", HTTP)
        .await
        .expect_err("an unknown parameter is refused");
    let message = err.api_message().unwrap_or_default();
    assert!(message.contains("unknown parameter \"extra\""), "{err}");
}

/// An application's reports that it could not reach a healthy host are counted and raise no
/// suspicion; the reachability matrix has every host hearing every other; bad reports are
/// refused clearly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_against_a_healthy_host_are_counted_and_suspect_nobody_and_everyone_hears_everyone()
{
    let mut cluster = Cluster::new();
    cluster.start_many(3).await;
    let n1 = cluster.index("n1");
    let api = cluster.nodes[n1].api;
    let (api_arg, tok) = (api.to_string(), cluster.nodes[n1].token_file());
    let token = std::fs::read_to_string(&tok).expect("the API token");
    let token = token.trim();
    let body = serde_json::json!({ "reason": "connection refused" });
    for _ in 0..99 {
        let answer = nbwatch::cli::client::post_json(
            api,
            "/api/v1/reachability/n2",
            &body,
            Some(token),
            HTTP,
        )
        .await
        .expect("a report is taken");
        assert_eq!(answer["node"], "n2");
    }
    let out = client(
        &[
            "unreachable",
            "n2",
            "--reason",
            "timed out",
            "--api",
            &api_arg,
            "--token-file",
            &tok,
        ],
        &[],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    assert!(text(&out.stdout).contains("100 reports"), "{out:?}");
    let m = members(api).await.expect("members");
    assert_eq!(
        entry(&m, "n2").map(|e| e["reports"].clone()),
        Some(Value::from(100))
    );
    assert_eq!(
        entry(&m, "n3").map(|e| e["reports"].clone()),
        Some(Value::from(0))
    );
    // Nobody suspects n2: every view has it alive, and no suspicion was ever recorded.
    for node in &cluster.nodes {
        let m = members(node.api).await.expect("members");
        assert_eq!(
            entry(&m, "n2").map(|e| e["state"].clone()),
            Some("alive".into())
        );
        let ev = events(node.api).await.expect("events");
        assert!(
            !ev.iter()
                .any(|e| e["kind"] == "node_suspect" && e["node"] == "n2"),
            "{ev:?}"
        );
    }
    // Bad reports: an unknown host, this host, a reason that is not a string.
    for (path, body, code) in [
        ("/api/v1/reachability/nobody", serde_json::json!({}), 404),
        ("/api/v1/reachability/n1", serde_json::json!({}), 400),
        (
            "/api/v1/reachability/n2",
            serde_json::json!({"reason": 5}),
            400,
        ),
    ] {
        match nbwatch::cli::client::post_json(api, path, &body, Some(token), HTTP).await {
            Err(nbwatch::cli::client::ClientError::Status { code: c, body }) => {
                assert_eq!(c, code, "{path}: {body}");
                assert!(body.contains("error"), "{body}");
            }
            other => panic!("{path}: {other:?}"),
        }
    }
    // Every host says whom it has not heard; none is missing.
    let out = client(&["reachability", "--json", "--api", &api_arg], &[]).await;
    assert!(out.status.success(), "{out:?}");
    let matrix: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let rows = matrix["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 3, "{matrix}");
    for row in rows {
        assert_eq!(row["known"], true, "{row}");
        assert_eq!(row["hears"].as_array().map(Vec::len), Some(2), "{row}");
    }
    let out = client(&["reachability", "--api", &api_arg], &[]).await;
    let grid = text(&out.stdout);
    assert!(grid.starts_with("FROM\\TO"), "{grid}");
    assert!(!grid.contains("NO"), "{grid}");
}

/// `nbwatch cluster-config show --json` on the node at `api`.
async fn cluster_config(api: SocketAddr) -> Result<Value, String> {
    get_json(api, "/api/v1/cluster-config", HTTP)
        .await
        .map_err(|e| e.to_string())
}

/// Waits until every node at `apis` applies version `version` (`None`: none at all).
async fn applied_everywhere(apis: &[SocketAddr], version: Option<&str>) {
    for api in apis {
        wait_for("the cluster settings are applied", DEADLINE, async || {
            let c = cluster_config(*api).await?;
            match c["version"].as_str() == version {
                true => Ok(()),
                false => Err(format!("{c}")),
            }
        })
        .await;
    }
}

/// Settings pushed from one host: a bad document or one with a command line is refused
/// before it spreads; a good one reaches every host, gives the nodes that had no sink one
/// (by a command each declares) without a restart, and a host restarted alone applies it
/// before it has heard anyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_settings_pushed_from_one_host_reach_every_host_and_survive_a_restart() {
    let mut cluster = Cluster::new();
    let file = cluster.dir.path().join("alerts.jsonl");
    // Every host declares a command an alert may run by name; none has a sink of its own.
    cluster.extra = format!(
        "[alerts.commands]\nsink = [\"/bin/sh\", \"-c\", \"cat >> {}\"]\n",
        file.display()
    );
    cluster.start_many(3).await;
    let apis = cluster.apis_except(&[]);
    let (api1, api3) = (cluster.nodes[0].api, cluster.nodes[2].api);
    let push = async |doc: &str| {
        let path = cluster.dir.path().join("settings.toml");
        std::fs::write(&path, doc).expect("write the document");
        let (api, tok) = (api3.to_string(), cluster.nodes[2].token_file());
        let p = path.to_str().expect("a path");
        let args = [
            "cluster-config",
            "push",
            p,
            "--api",
            &api,
            "--token-file",
            &tok,
        ];
        let out = client(&args, &[]).await;
        (out, path)
    };
    let show = client(&["cluster-config", "show", "--api", &api1.to_string()], &[]).await;
    assert!(show.status.success(), "{show:?}");
    assert!(
        text(&show.stdout).contains("no cluster settings were pushed"),
        "{show:?}"
    );

    // Every problem, against the file; nothing spreads.
    let (out, path) = push("[alerts]\nrepeat = \"soon\"\nflap_treshold = 2\n[gossip]\n").await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = text(&out.stderr);
    for key in ["alerts.repeat", "alerts.flap_treshold", "gossip"] {
        assert!(
            err.contains(&format!("{}: {key}: ", path.display())),
            "{key}: {err}"
        );
    }
    // A command line needs an operator's signature, and no host here has an operator key.
    let (out, _) = push("[[alerts.sinks]]\ntype = \"exec\"\ncommand = [\"/bin/true\"]\n").await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        text(&out.stderr).contains("gives a command line"),
        "{out:?}"
    );
    applied_everywhere(&apis, None).await;

    let (out, _) = push("[alerts]\nflap_threshold = 5\n[[alerts.sinks]]\ntype = \"exec\"\ncommand_name = \"sink\"\n").await;
    assert!(out.status.success(), "{out:?}");
    assert!(text(&out.stdout).contains("by n3 (unsigned)"), "{out:?}");
    let version = cluster_config(api3).await.expect("shown")["version"]
        .as_str()
        .expect("a version")
        .to_string();
    applied_everywhere(&apis, Some(&version)).await;
    wait_for("every host applies it, n1 sends", DEADLINE, async || {
        let c = cluster_config(api1).await?;
        let o = get_json(api1, "/api/v1/overview", HTTP)
            .await
            .map_err(|e| e.to_string())?;
        match c["applied_by"].as_array().map(Vec::len) == Some(3) && o["sender"] == "n1" {
            true => Ok(()),
            false => Err(format!("{c} {o}")),
        }
    })
    .await;
    let shown = client(&["cluster-config", "show", "--api", &api1.to_string()], &[]).await;
    let shown = text(&shown.stdout);
    assert!(shown.contains(&format!("version    {version}")), "{shown}");
    assert!(
        shown.contains("author     n3") && shown.contains("applied by 3 of 3"),
        "{shown}"
    );
    assert!(shown.contains("command_name = \"sink\""), "{shown}");

    // The sink the document gave the hosts delivers, once.
    cluster.kill9("n2");
    sent_everywhere(&cluster.apis_except(&["n2"]), "node_down:n2:").await;
    let sent = sunk_ids(&file, "node_down:n2:");
    assert_eq!(sent.len(), 1, "{:#?}", sunk(&file));
    assert_eq!(sent[0]["sent_by"], "n1");

    // n1 alone, its peers dead: it applies the saved document before it hears anyone.
    cluster.kill9("n3");
    cluster.kill9("n1");
    assert!(
        cluster.nodes[0]
            .data_dir
            .join("cluster-settings.json")
            .is_file()
    );
    let n1 = cluster.index("n1");
    cluster.restart(n1).await;
    let c = cluster_config(api1).await.expect("shown");
    assert_eq!(c["version"], version.as_str(), "{c}");
    wait_for(
        "n1 announces the sink the document gives it",
        DEADLINE,
        async || {
            let o = get_json(api1, "/api/v1/overview", HTTP)
                .await
                .map_err(|e| e.to_string())?;
            match o["sender"] == "n1" {
                true => Ok(()),
                false => Err(format!("{o}")),
            }
        },
    )
    .await;

    // Its saved copy cut short (a damaged disk): it starts without it, keeps the damaged file
    // aside, and has the document again from n3 as soon as they meet.
    cluster.kill9("n1");
    let saved = cluster.nodes[0].data_dir.join("cluster-settings.json");
    let whole = std::fs::read(&saved).expect("saved");
    std::fs::write(&saved, &whole[..whole.len() / 2]).expect("cut short");
    cluster.restart(n1).await;
    let n3 = cluster.index("n3");
    cluster.restart(n3).await;
    assert!(
        cluster.nodes[0]
            .data_dir
            .join("cluster-settings.json.corrupt")
            .is_file()
    );
    applied_everywhere(&[api1], Some(&version)).await;
    assert!(
        cluster.nodes[0]
            .stderr_text()
            .contains("cannot read the saved cluster settings")
    );
}

/// A document that gives an exec sink a command line, signed with an operator key: applied
/// where that key is trusted, refused (and said in the log) where it is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_document_with_a_command_line_is_applied_only_where_its_signer_is_trusted() {
    let mut cluster = Cluster::new();
    let (_, a_section) = cluster.operator("a");
    let n1 = cluster.add("n1", "n1", Vec::new());
    cluster.nodes[n1].extra = a_section.clone();
    cluster.restart(n1).await;
    let seed = vec![cluster.nodes[n1].gossip];
    let n2 = cluster.add("n2", "n2", seed.clone());
    cluster.nodes[n2].extra = a_section;
    let n3 = cluster.add("n3", "n3", seed);
    for i in [n2, n3] {
        cluster.restart(i).await;
    }
    let names = cluster.names();
    for node in &cluster.nodes {
        wait_for("all three alive", DEADLINE, async || {
            all_alive(node.api, &names).await
        })
        .await;
    }
    let path = cluster.dir.path().join("settings.toml");
    std::fs::write(
        &path,
        "[[alerts.sinks]]\ntype = \"exec\"\ncommand = [\"/bin/true\"]\n",
    )
    .expect("write");
    let (api, tok) = (
        cluster.nodes[n1].api.to_string(),
        cluster.nodes[n1].token_file(),
    );
    let out = client(
        &[
            "cluster-config",
            "push",
            path.to_str().expect("path"),
            "--api",
            &api,
            "--token-file",
            &tok,
        ],
        &[],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    assert!(text(&out.stdout).contains("signed by operator"), "{out:?}");
    let version = cluster_config(cluster.nodes[n1].api).await.expect("shown")["version"]
        .as_str()
        .expect("a version")
        .to_string();
    applied_everywhere(&[cluster.nodes[n2].api], Some(&version)).await;
    wait_for("n3 refuses it and says why", DEADLINE, async || {
        let log = cluster.nodes[n3].stderr_text();
        match log.contains("refused cluster settings") && log.contains("does not trust") {
            true => Ok(()),
            false => Err("not yet in n3's log".to_string()),
        }
    })
    .await;
    let c = cluster_config(cluster.nodes[n3].api).await.expect("shown");
    assert!(c["version"].is_null(), "{c}");
    let api1 = cluster.nodes[n1].api;
    wait_for("n1 sees n2 apply it and n3 not", DEADLINE, async || {
        let c = cluster_config(api1).await?;
        let done = c["applied_by"] == serde_json::json!(["n1", "n2"])
            && c["behind"] == serde_json::json!(["n3"]);
        match done {
            true => Ok(()),
            false => Err(format!("{c}")),
        }
    })
    .await;
}

/// `GET /api/v1/zones` of the node at `api`.
async fn zones_of(api: SocketAddr) -> Result<Vec<Value>, String> {
    let v = get_json(api, "/api/v1/zones", Duration::from_secs(5))
        .await
        .map_err(|e| e.to_string())?;
    v.as_array()
        .cloned()
        .ok_or_else(|| format!("not an array: {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_in_two_zones_know_their_zone_in_full_the_other_by_summary_and_a_dead_zone_is_one_event()
 {
    let mut cluster = Cluster::new();
    let file = exec_sink_with_operator(&mut cluster);
    // a1 founds zone "attic"; b1 joins through it and founds "barn"; a2 and b2 join through a1.
    for (name, zone) in [
        ("a1", "attic"),
        ("b1", "barn"),
        ("a2", "attic"),
        ("b2", "barn"),
    ] {
        let seeds = if name == "a1" {
            vec![]
        } else {
            vec![cluster.nodes[0].gossip]
        };
        let i = cluster.add(name, name, seeds);
        cluster.nodes[i].zone = Some(zone.to_string());
        cluster.restart(i).await;
    }
    let api = |c: &Cluster, n: &str| c.nodes[c.index(n)].api;
    for (name, zone, other) in [("a1", "attic", "barn"), ("b2", "barn", "attic")] {
        let at = api(&cluster, name);
        let zones = wait_for(
            &format!("{name} reads both zones with two up"),
            Duration::from_secs(30),
            async || {
                let zones = zones_of(at).await?;
                let full = zones.len() == 2
                    && zones
                        .iter()
                        .all(|z| z["members_up"] == 2 && z["members_total"] == 2);
                if full {
                    Ok(zones)
                } else {
                    Err(format!("{zones:?}"))
                }
            },
        )
        .await;
        let this = zones.iter().find(|z| z["this"] == true).expect("this zone");
        assert_eq!(this["name"], zone);
        let other = zones
            .iter()
            .find(|z| z["name"] == other)
            .expect("the other zone");
        assert_eq!(other["reachable"], true);
        assert_eq!(
            other["representatives"].as_array().map(Vec::len),
            Some(2),
            "{other}"
        );
        // Its own zone in full, nobody of the other.
        let members = members(at).await.expect("members");
        let names: Vec<&str> = members.iter().filter_map(|m| m["name"].as_str()).collect();
        assert_eq!(names.len(), 2, "{name} lists {names:?}");
        assert!(
            names.iter().all(|n| n.starts_with(&name[..1])),
            "{name} lists {names:?}"
        );
    }
    // The CLI: `zones`, the other zone's line under `members`, `members --zone`.
    let a1 = api(&cluster, "a1").to_string();
    let out = client(&["zones", "--api", &a1], &[]).await;
    let table = text(&out.stdout);
    assert!(
        out.status.success() && table.contains("attic *") && table.contains("barn"),
        "{table}"
    );
    let out = client(&["members", "--api", &a1], &[]).await;
    let table = text(&out.stdout);
    assert!(
        table.contains("zone barn") && table.contains("2/2 up"),
        "{table}"
    );
    let out = client(&["members", "--zone", "barn", "--api", &a1], &[]).await;
    let table = text(&out.stdout);
    assert!(
        table.contains("b1") && table.contains("b2") && !table.contains("a2"),
        "{table}"
    );
    let out = client(&["members", "--zone", "cellar", "--api", &a1], &[]).await;
    assert!(!out.status.success() && text(&out.stderr).contains("no zone \"cellar\""));

    // The other zone's summaries are kept in the history, as node `zone:barn`.
    let a1_api = api(&cluster, "a1");
    wait_for(
        "a1's history holds barn's summary",
        DEADLINE,
        async || match get_json(a1_api, "/api/v1/history/zone:barn?metric=up&since=1h", HTTP).await
        {
            Ok(Value::Array(rows)) if rows.iter().any(|r| r["value"] == 2.0) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .await;

    // The whole barn dies: attic sees one zone event, and no host of attic downs barn's hosts.
    cluster.kill9("b1");
    cluster.kill9("b2");
    for name in ["a1", "a2"] {
        let at = api(&cluster, name);
        wait_for(
            &format!("{name} reads barn unreachable"),
            Duration::from_secs(30),
            async || {
                let zones = zones_of(at).await?;
                let barn = zones
                    .iter()
                    .find(|z| z["name"] == "barn")
                    .ok_or("no barn")?;
                if barn["reachable"] == false && barn["since"].is_string() {
                    Ok(())
                } else {
                    Err(barn.to_string())
                }
            },
        )
        .await;
        let events = events(at).await.expect("events");
        let kinds: Vec<(&str, &str)> = events
            .iter()
            .map(|e| {
                (
                    e["kind"].as_str().unwrap_or(""),
                    e["node"].as_str().unwrap_or(""),
                )
            })
            .collect();
        assert!(
            kinds.contains(&("zone_unreachable", "zone:barn")),
            "{name}: {kinds:?}"
        );
        assert!(
            !kinds
                .iter()
                .any(|(k, n)| *k == "node_down" && n.starts_with('b')),
            "{name}: {kinds:?}"
        );
    }
    // One alert for the dead zone, sent by attic (the reachable zone first by name), none
    // for its hosts.
    let attic = [api(&cluster, "a1"), api(&cluster, "a2")];
    sent_everywhere(&attic, "zone_down:barn:").await;
    let alerts = sunk_ids(&file, "zone_down:barn:");
    assert_eq!(alerts.len(), 1, "{:#?}", sunk(&file));
    assert_eq!(alerts[0]["node"], "zone:barn");
    assert_eq!(alerts[0]["status"], "firing");
    assert!(
        alerts[0]["sent_by"]
            .as_str()
            .is_some_and(|s| s.starts_with('a'))
    );
    assert!(
        sunk_ids(&file, "node_down:b").is_empty(),
        "{:#?}",
        sunk(&file)
    );
    // The barn comes back: its end is sent once, as the same alert resolved.
    for name in ["b1", "b2"] {
        let i = cluster.index(name);
        cluster.restart(i).await;
    }
    sent_everywhere(&attic, "zone_up:barn:").await;
    let ups = sunk_ids(&file, "zone_up:barn:");
    assert_eq!(ups.len(), 1, "{:#?}", sunk(&file));
    assert_eq!(ups[0]["status"], "resolved");
    assert_eq!(ups[0]["resolves"], alerts[0]["id"], "{:#?}", ups[0]);
}
