//! nbwatch with a real Alertmanager (Debian's `prometheus-alertmanager` and `amtool`, which
//! `.ci/run` installs; `ALERTMANAGER=/path` and `AMTOOL=/path` pick others): real daemons post
//! to its `/api/v2/alerts` through an `alertmanager` sink, `amtool alert query` sees the alert,
//! and Alertmanager's own notifications (to a webhook receiver on port 0) show the same alert
//! firing and then resolved.

mod common;
use common::daemons::{Cluster, DEADLINE};
use common::receiver::{Answer, Receiver, lock, receiver};
use common::wait_for;
use serde_json::Value;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};

fn program(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_string())
}

/// An Alertmanager process on a free loopback port, alone (no cluster peers), notifying
/// `hook` of every group at once and of its resolution; killed on drop.
struct Alertmanager {
    child: Child,
    url: String,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn alertmanager(dir: &Path, hook: &str) -> Alertmanager {
    let config = dir.join("alertmanager.yml");
    std::fs::write(
        &config,
        format!(
            "route:\n  receiver: hook\n  group_by: ['incident']\n  group_wait: 1s\n  \
             group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: hook\n    \
             webhook_configs:\n      - url: {hook}\n        send_resolved: true\n"
        ),
    )
    .expect("write the Alertmanager config");
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let binary = program("ALERTMANAGER", "/usr/bin/prometheus-alertmanager");
    let log = std::fs::File::create(dir.join("alertmanager.log")).expect("log");
    let child = Command::new(&binary)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.path={}", dir.join("am-data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {binary}: {e}: install Debian's prometheus-alertmanager or set \
                 ALERTMANAGER"
            )
        });
    let am = Alertmanager {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    wait_for("Alertmanager answers amtool", DEADLINE, async || {
        amtool(&["config", "show"], &am.url).await.map(drop)
    })
    .await;
    am
}

/// What `amtool <args> --alertmanager.url=<url>` prints, if it succeeds.
async fn amtool(args: &[&str], url: &str) -> Result<String, String> {
    let binary = program("AMTOOL", "/usr/bin/amtool");
    let out = tokio::process::Command::new(&binary)
        .args(args)
        .arg(format!("--alertmanager.url={url}"))
        .output()
        .await
        .map_err(|e| format!("cannot run {binary}: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!(
            "{}: {text}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The alerts `amtool alert query` shows about `node`.
async fn query(url: &str, node: &str) -> Result<Vec<Value>, String> {
    let matcher = format!("node={node}");
    let text = amtool(&["alert", "query", &matcher, "-o", "json"], url).await?;
    serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))
}

/// The alerts of every notification `hook` received with status `status`.
fn notified(hook: &Receiver, status: &str) -> Vec<Value> {
    lock(&hook.requests)
        .iter()
        .filter(|r| r.body["status"] == status)
        .flat_map(|r| r.body["alerts"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["status"] == status)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_alertmanager_gets_a_down_host_and_then_the_same_alert_resolved() {
    let mut cluster = Cluster::new();
    let hook = receiver(&[Answer::Status(200)]).await;
    let am = alertmanager(cluster.dir.path(), &hook.url).await;
    cluster.extra = format!(
        "[[alerts.sinks]]\ntype = \"alertmanager\"\nurls = [\"{}\"]\n",
        am.url
    );
    cluster.start_many(3).await;
    cluster.kill9("n3");

    // amtool sees the alert, labelled as the sink promises, linking to the sender's dashboard.
    let shown = wait_for("amtool shows n3 down", DEADLINE, async || {
        match query(&am.url, "n3").await?.as_slice() {
            [one] => Ok(one.clone()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let labels = &shown["labels"];
    assert_eq!(labels["alertname"], "node_down", "{shown}");
    assert_eq!(labels["severity"], "critical", "{shown}");
    assert!(
        labels["incident"]
            .as_str()
            .is_some_and(|i| i.starts_with("node_down:n3:")),
        "{shown}"
    );
    assert!(
        shown["annotations"]["summary"]
            .as_str()
            .is_some_and(|s| s.starts_with("n3 stopped talking at")),
        "{shown}"
    );
    let sender = &cluster.nodes[0];
    assert_eq!(
        shown["generatorURL"],
        format!("http://{}/", sender.api),
        "the sender's dashboard: {shown}"
    );
    // Firing, it ends by itself only a few resends ahead.
    assert_ne!(shown["endsAt"], Value::Null, "{shown}");

    // Alertmanager notified its receiver once.
    let firing = wait_for(
        "Alertmanager notifies n3 down",
        DEADLINE,
        async || match notified(&hook, "firing").as_slice() {
            [one] => Ok(one.clone()),
            other => Err(format!("{other:?}")),
        },
    )
    .await;
    assert_eq!(firing["labels"], *labels);

    // n3 comes back: the same alert ends.
    let n3 = cluster.index("n3");
    cluster.restart(n3).await;
    let resolved = wait_for(
        "Alertmanager notifies n3's alert resolved",
        DEADLINE,
        async || match notified(&hook, "resolved").as_slice() {
            [one] => Ok(one.clone()),
            other => Err(format!("{other:?}")),
        },
    )
    .await;
    assert_eq!(resolved["labels"], firing["labels"], "the same alert");
    assert_eq!(resolved["fingerprint"], firing["fingerprint"]);
    assert_eq!(resolved["startsAt"], firing["startsAt"]);
    wait_for(
        "amtool shows nothing about n3",
        DEADLINE,
        async || match query(&am.url, "n3").await?.as_slice() {
            [] => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .await;
    assert_eq!(
        notified(&hook, "firing").len(),
        1,
        "one incident, one notification"
    );
}
