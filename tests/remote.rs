//! Reading a node from another machine without opening its control API: the read-only
//! listener (`metrics.listen`: `/metrics`, Prometheus service discovery, the dashboard) that
//! takes no token and changes nothing, found and scraped by a real Prometheus (Debian's
//! `prometheus`, which `.ci/run` installs; `PROMETHEUS=/path` picks another); and the API over
//! TLS (`api.tls_cert`, `api.tls_key`) with a test CA, used by the CLI.

mod common;
use common::daemons::{Cluster, DEADLINE, HTTP, Ports, client, text};
use common::receiver::TestCa;
use common::wait_for;
use nbwatch::cli::client::{get_json, post_json};
use serde_json::Value;
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};

/// A loopback port free now (released at once: the daemon binds it).
fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_only_listener_serves_metrics_discovery_and_the_dashboard_and_changes_nothing() {
    let mut cluster = Cluster::new();
    let listeners = [free_port(), free_port()];
    let first = cluster.add("n1", "n1", Vec::new());
    // The harness's config has a [metrics] table already: the key goes by the environment.
    cluster.nodes[first].env = vec![("NBWATCH_METRICS__LISTEN".into(), listeners[0].to_string())];
    cluster.restart(first).await;
    let seed = vec![cluster.nodes[first].gossip];
    let second = cluster.add("n2", "n2", seed);
    cluster.nodes[second].env = vec![("NBWATCH_METRICS__LISTEN".into(), listeners[1].to_string())];
    cluster.restart(second).await;
    let names = cluster.names();
    let reader = listeners[1];

    // Service discovery lists both members where their listeners are.
    let targets = wait_for("n2's discovery lists both members", DEADLINE, async || {
        let t = get_json(reader, "/api/v1/targets", HTTP)
            .await
            .map_err(|e| e.to_string())?;
        match t.as_array().map(Vec::len) {
            Some(2) => Ok(t),
            _ => Err(format!("{t}")),
        }
    })
    .await;
    for (i, name) in names.iter().enumerate() {
        let group = &targets[i];
        assert_eq!(group["targets"][0], listeners[i].to_string(), "{targets}");
        assert_eq!(group["labels"]["__meta_nbwatch_node"], name.as_str());
        assert_eq!(group["labels"]["__meta_nbwatch_state"], "alive");
    }
    // The dashboard and its data, and the metrics.
    let members = get_json(reader, "/api/v1/members", HTTP)
        .await
        .expect("members");
    assert_eq!(members.as_array().map(Vec::len), Some(2), "{members}");
    assert!(get_json(reader, "/api/v1/overview", HTTP).await.is_ok());
    // Nothing that changes anything, with or without the token.
    let token = std::fs::read_to_string(cluster.nodes[second].token_file()).expect("token");
    for path in ["/api/v1/reload", "/api/v1/alerts/test", "/api/v1/kv/x"] {
        let e = post_json(
            reader,
            path,
            &serde_json::json!({"value": "1"}),
            Some(token.trim()),
            HTTP,
        )
        .await
        .expect_err("refused");
        assert!(e.to_string().contains("404"), "{path}: {e}");
    }
    let kv = get_json(cluster.nodes[second].api, "/api/v1/kv/x", HTTP).await;
    assert!(kv.is_err(), "nothing was published: {kv:?}");

    // A real Prometheus finds both through the listener and scrapes them.
    let dir = cluster.dir.path();
    let web = free_port();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: nbwatch\n    \
             http_sd_configs:\n      - url: http://{reader}/api/v1/targets\n        \
             refresh_interval: 1s\n    relabel_configs:\n      - source_labels: \
             [__meta_nbwatch_node]\n        target_label: nbwatch_node\n"
        ),
    )
    .expect("prometheus config");
    let binary = std::env::var("PROMETHEUS").unwrap_or_else(|_| "/usr/bin/prometheus".into());
    let log = std::fs::File::create(dir.join("prometheus.log")).expect("log");
    let _prometheus = Killed(
        Command::new(&binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={web}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {binary}: {e}: install Debian's prometheus")),
    );
    let query = "/api/v1/query?query=sum%20by%20(nbwatch_node)%20(up)";
    let up = wait_for(
        "Prometheus scrapes both members",
        DEADLINE * 2,
        async || {
            let answer = get_json(web, query, HTTP)
                .await
                .map_err(|e| e.to_string())?;
            let result = answer["data"]["result"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let up: Vec<(String, String)> = (result.iter())
                .map(|r| {
                    let node = r["metric"]["nbwatch_node"]
                        .as_str()
                        .unwrap_or("")
                        .to_string();
                    (node, r["value"][1].as_str().unwrap_or("").to_string())
                })
                .collect();
            if up.len() == 2 && up.iter().all(|(_, v)| v == "1") {
                Ok(up)
            } else {
                Err(format!("{answer}"))
            }
        },
    )
    .await;
    let mut nodes: Vec<&str> = up.iter().map(|(n, _)| n.as_str()).collect();
    nodes.sort_unstable();
    assert_eq!(nodes, ["n1", "n2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_over_tls_answers_the_cli_and_refuses_plain_http() {
    let mut cluster = Cluster::new();
    let ca = TestCa::new(cluster.dir.path());
    // The chain the server presents ends with its CA, so the CLI with --config trusts it.
    let chain = cluster.dir.path().join("chain.pem");
    let pem = |p| std::fs::read_to_string(p).expect("pem");
    std::fs::write(&chain, pem(&ca.cert) + &pem(&ca.ca)).expect("chain");
    let i = cluster.add("n1", "n1", Vec::new());
    cluster.nodes[i].extra = format!(
        "tls_cert = \"{}\"\ntls_key = \"{}\"\n",
        chain.display(),
        ca.key.display()
    );
    // The harness ends its config in [api]: the keys above land there.
    let mut ports = Ports::pick();
    let node = &mut cluster.nodes[i];
    node.gossip = ports.gossip;
    node.api = ports.api;
    node.write_config();
    node.spawn(&mut ports);
    let config = node.config.to_string_lossy().into_owned();
    let api = node.api;

    let members = wait_for("the CLI reads members over TLS", DEADLINE, async || {
        let out = client(&["members", "--json", "--config", &config], &[]).await;
        if out.status.success() {
            Ok(text(&out.stdout))
        } else {
            Err(text(&out.stderr))
        }
    })
    .await;
    let members: Value = serde_json::from_str(&members).expect("json");
    assert_eq!(members[0]["name"], "n1", "{members}");
    // A change, with the token, over TLS.
    let token = cluster.nodes[i].token_file();
    let args = [
        "publish",
        "k",
        "v",
        "--config",
        &config,
        "--token-file",
        &token,
    ];
    let published = client(&args, &[]).await;
    assert!(published.status.success(), "{published:?}");
    // --api https:// with the CA in NBWATCH_CA_FILE.
    let https = format!("https://{api}");
    let ca_file = ca.ca.to_string_lossy().into_owned();
    let out = client(
        &["members", "--api", &https],
        &[("NBWATCH_CA_FILE", &ca_file)],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    // Without the CA the certificate is refused; plain http gets no answer.
    let out = client(&["members", "--api", &https], &[]).await;
    assert!(!out.status.success(), "{out:?}");
    assert!(text(&out.stderr).contains("certificate"), "{out:?}");
    assert!(get_json(api, "/api/v1/members", HTTP).await.is_err());
}

/// A Prometheus receiving remote writes, on `web`, keeping its data in `dir/tsdb`.
fn prometheus_receiver(dir: &std::path::Path, web: SocketAddr) -> Killed {
    let config = dir.join("receiver.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 1m\n").expect("config");
    let binary = std::env::var("PROMETHEUS").unwrap_or_else(|_| "/usr/bin/prometheus".into());
    let log = std::fs::File::options()
        .create(true)
        .append(true)
        .open(dir.join("receiver.log"))
        .expect("log");
    Killed(
        Command::new(&binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={web}"))
            .arg("--web.enable-remote-write-receiver")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {binary}: {e}: install Debian's prometheus")),
    )
}

/// The value of a PromQL query at `at` (Unix seconds) that gives one number.
async fn promql_number(web: SocketAddr, query: &str, at: f64) -> Result<f64, String> {
    let escaped: String = query
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let path = format!("/api/v1/query?query={escaped}&time={at:.3}");
    let answer = get_json(web, &path, HTTP)
        .await
        .map_err(|e| e.to_string())?;
    answer["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("{answer}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_samples_reach_a_real_prometheus_by_remote_write_and_survive_its_restart() {
    let mut cluster = Cluster::new();
    let web = free_port();
    let dir = cluster.dir.path().to_path_buf();
    let mut receiver = Some(prometheus_receiver(&dir, web));
    cluster.extra = format!("[store]\nremote_write = \"http://{web}/api/v1/write\"\n");
    cluster.start_many(1).await;
    let db = cluster.nodes[0].data_dir.join("history.db");
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs_f64()
    };
    // Every series of n1's samples, counted over `range` seconds up to `at`.
    let count = async |range: u64, at: f64| -> Result<f64, String> {
        let mut total = 0.0;
        for name in [
            "load1",
            "load5",
            "load15",
            "cpu_busy_ratio",
            "memory_used_ratio",
        ]
        .into_iter()
        .chain(["swap_used_ratio", "filesystem_used_ratio"])
        {
            let query = format!("count_over_time(nbwatch_node_{name}{{node=\"n1\"}}[{range}s])");
            total += promql_number(web, &query, at).await?;
        }
        Ok(total)
    };
    wait_for(
        "Prometheus has n1's first samples",
        DEADLINE,
        async || match count(3600, now()).await? {
            n if n >= 14.0 => Ok(()),
            n => Err(format!("{n} samples")),
        },
    )
    .await;

    // The receiver goes away for a while and comes back on the same data.
    drop(receiver.take());
    let outage = now();
    // Long enough for two samples even of a quiet host (a sample within the dead-band is
    // held back at most six intervals).
    tokio::time::sleep(std::time::Duration::from_secs(12)).await;
    receiver = Some(prometheus_receiver(&dir, web));
    let cut = now();
    // What n1 recorded of itself up to the cut, outage included, is what Prometheus has.
    let recorded = || -> f64 {
        let conn = rusqlite::Connection::open(&db).expect("open the history");
        conn.query_row(
            "SELECT COUNT(*) FROM samples JOIN series ON series.id = samples.series
             WHERE series.node = 'n1' AND samples.at <= ?1 AND series.metric IN
             ('load1', 'load5', 'load15', 'cpu_pct', 'mem_used_pct', 'swap_used_pct',
              'disk_used_pct')",
            [(cut * 1000.0) as i64],
            |r| r.get::<_, i64>(0),
        )
        .expect("count") as f64
    };
    let (sent, stored) = wait_for(
        "Prometheus caught up with the outage",
        DEADLINE * 2,
        async || {
            let stored = count(3600, cut).await.unwrap_or(0.0);
            let sent = recorded();
            if stored == sent {
                Ok((sent, stored))
            } else {
                Err(format!("{stored} of {sent}"))
            }
        },
    )
    .await;
    assert_eq!(sent, stored);
    eprintln!("samples recorded and in Prometheus: {sent}");
    let in_outage = count((cut - outage).ceil() as u64, cut)
        .await
        .expect("outage samples");
    assert!(
        in_outage >= 7.0,
        "samples taken while the receiver was down: {in_outage}"
    );
    drop(receiver);
}
