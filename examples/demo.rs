//! The first minute of a newcomer: `cargo run --release --example demo`.
//!
//! Starts the MythTV house on loopback — three nodes, `desktop`, `nas` and `recorder`, each a
//! real process (this program run again as `demo node CONFIG`) supervising a sample
//! `mythbackend` — waits until they see each other, kills `recorder` with SIGKILL, and prints
//! the single alert the cluster's leader sent and the recorded "stopped talking at" event. Then
//! it leaves the survivors running with the dashboard address until Ctrl-C.
//!
//! The nodes read their standard input and stop (leaving the cluster) when it closes, so they
//! go away with this program however it ends.

use anyhow::Context;
use nbwatch::cli::client::get_json;
use nbwatch::cli::table::render_members;
use nbwatch::types::Time;
use serde_json::Value;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::time::Instant;

const NAMES: [&str; 3] = ["desktop", "nas", "recorder"];
/// The node that dies: the recorder, as in the README's story.
const VICTIM: &str = "recorder";
const HTTP: Duration = Duration::from_secs(2);
const DEADLINE: Duration = Duration::from_secs(30);

/// The sample service: a stand-in for mythbackend that prints a line every few seconds.
const TREE: &str = r#"
name = "tv"
strategy = "one_for_one"
intensity = 5
period = "1m"
[[children]]
name = "mythbackend"
command = ["/bin/sh", "-c", "while :; do echo recording; sleep 5; done"]
"#;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let runtime = tokio::runtime::Runtime::new()?;
    match args.get(1).map(String::as_str) {
        Some("node") => {
            let config = args.get(2).context("usage: demo node CONFIG")?;
            runtime.block_on(node(Path::new(config)))
        }
        _ => runtime.block_on(demo()),
    }
}

/// One node, as `nbwatch run` would run it; stops when standard input closes.
async fn node(config: &Path) -> anyhow::Result<()> {
    let config = nbwatch::config::load(Some(config)).map_err(|errors| {
        let lines: Vec<String> = errors.problems().iter().map(|p| p.to_string()).collect();
        anyhow::anyhow!("{}", lines.join("\n"))
    })?;
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = nbwatch::supervision::reaper::become_subreaper() {
        tracing::warn!(error = %e, "cannot become a child subreaper");
    }
    let _reaper = tokio::spawn(nbwatch::supervision::reaper::run());
    let sockets = nbwatch::node::bind(&config).await?;
    // A blocking read on its own thread: tokio's stdin needs a feature the daemon does not.
    let stdin_closed = async {
        let _ = tokio::task::spawn_blocking(|| {
            use std::io::Read;
            let mut buf = [0u8; 64];
            while matches!(std::io::stdin().read(&mut buf), Ok(n) if n > 0) {}
        })
        .await;
    };
    nbwatch::daemon::run(config, sockets, stdin_closed).await?;
    Ok(())
}

/// A port free for UDP and TCP (gossip), and one for TCP (the API).
fn free_ports() -> anyhow::Result<(SocketAddr, SocketAddr)> {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0")?;
        let gossip = udp.local_addr()?;
        if TcpListener::bind(gossip).is_err() {
            continue;
        }
        let api = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        return Ok((gossip, api));
    }
    anyhow::bail!("no port free for both UDP and TCP in 50 tries")
}

struct Node {
    name: &'static str,
    api: SocketAddr,
    child: Child,
}

/// The running nodes; dropping it closes their stdin (they leave the cluster and stop their
/// services) and kills any that has not exited within a few seconds.
struct House(Vec<Node>);

impl Drop for House {
    fn drop(&mut self) {
        for node in &mut self.0 {
            node.child.stdin.take();
        }
        let end = std::time::Instant::now() + Duration::from_secs(5);
        for node in &mut self.0 {
            while matches!(node.child.try_wait(), Ok(None)) && std::time::Instant::now() < end {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = node.child.kill();
            let _ = node.child.wait();
        }
    }
}

fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn start(
    dir: &Path,
    name: &'static str,
    seed: Option<SocketAddr>,
) -> anyhow::Result<(Node, SocketAddr)> {
    let (gossip, api) = free_ports()?;
    let trees = dir.join("trees");
    // One cluster key for the three hosts, as `nbwatch keygen --out` would make it: a node
    // that is given no key makes its own, and nodes with different keys never meet.
    let key = dir.join("cluster.key");
    if !key.exists() {
        let encoded = nbwatch::secure::Key::generate().encode();
        nbwatch::secure::keyring::write_private(&key, format!("{encoded}\n").as_bytes())?;
    }
    let alerts = dir.join("alerts.jsonl");
    let seeds = seed.map_or("[]".to_string(), |s| format!("[{}]", quote(&s.to_string())));
    // Every node has the same exec sink; only the leader calls it, once per incident.
    let sink = format!("cat >> {}", shell_quote(&alerts.to_string_lossy()));
    let config = format!(
        "[node]\nname = {}\ndata_dir = {}\n\
         [gossip]\nlisten = {}\nseeds = {seeds}\nkey_file = {}\n\
         [metrics]\ninterval = \"1s\"\n\
         [api]\nlisten = {}\n\
         [supervision]\ntrees = {}\n\
         [[alerts.sinks]]\ntype = \"exec\"\ncommand = [\"/bin/sh\", \"-c\", {}]\n",
        quote(name),
        quote(&dir.join(name).to_string_lossy()),
        quote(&gossip.to_string()),
        quote(&key.to_string_lossy()),
        quote(&api.to_string()),
        quote(&trees.to_string_lossy()),
        quote(&sink),
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, config)?;
    let log = std::fs::File::create(dir.join(format!("{name}.log")))?;
    let child = Command::new(std::env::current_exe()?)
        .arg("node")
        .arg(&path)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    Ok((Node { name, api, child }, gossip))
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Polls `check` every 200 ms until it gives a value or `DEADLINE` passes.
async fn wait_for<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> anyhow::Result<T> {
    let end = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if Instant::now() >= end {
            anyhow::bail!("gave up after {DEADLINE:?} waiting until {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn members(api: SocketAddr) -> Vec<Value> {
    match get_json(api, "/api/v1/members", HTTP).await {
        Ok(Value::Array(m)) => m,
        _ => Vec::new(),
    }
}

fn sunk(file: &Path) -> Vec<Value> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

async fn demo() -> anyhow::Result<()> {
    let dir = tempfile::Builder::new().prefix("nbwatch-demo").tempdir()?;
    std::fs::create_dir_all(dir.path().join("trees"))?;
    std::fs::write(dir.path().join("trees/tv.toml"), TREE)?;
    println!(
        "Starting the MythTV house on loopback: {} (files in {})",
        NAMES.join(", "),
        dir.path().display()
    );
    let mut house = House(Vec::new());
    let mut seed = None;
    for name in NAMES {
        let (node, gossip) = start(dir.path(), name, seed)?;
        seed.get_or_insert(gossip);
        house.0.push(node);
    }
    let first = house.0[0].api;
    wait_for("every node sees the other two alive", async || {
        for node in &house.0 {
            let m = members(node.api).await;
            let alive = m.iter().filter(|m| m["state"] == "alive").count();
            if alive != NAMES.len() {
                return None;
            }
        }
        Some(())
    })
    .await?;
    // Wait for mythbackend to run everywhere, so the story starts from a healthy house.
    wait_for("mythbackend runs on every node", async || {
        for node in &house.0 {
            let services = get_json(node.api, "/api/v1/services", HTTP).await.ok()?;
            let running = services.as_array()?.iter().any(|s| s["state"] == "running");
            if !running {
                return None;
            }
        }
        Some(())
    })
    .await?;
    println!("\nThe cluster as {} sees it:\n", house.0[0].name);
    print!(
        "{}",
        render_members(&members(first).await, Time::wall_now())
    );

    let victim = house
        .0
        .iter_mut()
        .find(|n| n.name == VICTIM)
        .context("no victim")?;
    // Its services' process groups go too, as in a power cut (a SIGKILLed daemon cannot
    // stop them; on a real host they die with it).
    let groups: Vec<i32> = match get_json(victim.api, "/api/v1/services", HTTP).await {
        Ok(Value::Array(list)) => list
            .iter()
            .filter_map(|s| s["pid"].as_i64().and_then(|p| i32::try_from(p).ok()))
            .collect(),
        _ => Vec::new(),
    };
    println!(
        "\nkill -9 {VICTIM} (pid {}) and its services, as a power cut would ...",
        victim.child.id()
    );
    victim.child.kill()?;
    victim.child.wait()?;
    for pgid in groups {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pgid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }

    let alerts_file = dir.path().join("alerts.jsonl");
    let alert = wait_for("the leader sends the node_down alert", async || {
        sunk(&alerts_file)
            .into_iter()
            .find(|a| a["kind"] == "node_down" && a["node"] == VICTIM)
    })
    .await?;
    // Every survivor's alert log says sent: nobody else is about to send it again.
    let id = alert["id"].as_str().unwrap_or_default().to_string();
    for node in house.0.iter().filter(|n| n.name != VICTIM) {
        wait_for(&format!("{} knows {id} is sent", node.name), async || {
            let log = get_json(node.api, "/api/v1/alerts", HTTP).await.ok()?;
            log.as_array()?
                .iter()
                .any(|e| e["id"] == id.as_str() && e["state"] == "sent")
                .then_some(())
        })
        .await?;
    }
    let count = sunk(&alerts_file)
        .iter()
        .filter(|a| a["kind"] == "node_down")
        .count();
    println!(
        "\n{count} alert sent (by {}, the leader), as its exec sink received it:\n{}",
        alert["sent_by"].as_str().unwrap_or("?"),
        serde_json::to_string_pretty(&alert)?
    );

    let path = format!("/api/v1/events?node={VICTIM}");
    let event = wait_for("the node_down event is recorded", async || {
        let events = get_json(first, &path, HTTP).await.ok()?;
        events
            .as_array()?
            .iter()
            .find(|e| e["kind"] == "node_down")
            .cloned()
    })
    .await?;
    println!(
        "\nRecorded in {}'s history: {VICTIM} stopped talking at {} (confirmed by {})",
        house.0[0].name,
        event["last_heard"].as_str().unwrap_or("?"),
        event["witnesses"]
            .as_array()
            .map(|w| w
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", "))
            .unwrap_or_default(),
    );

    println!("\nDashboard: http://{first}/   (metrics: http://{first}/metrics)");
    println!("Try: cargo run -- status --api {first}");
    println!("Press Ctrl-C to stop the demo.");
    tokio::signal::ctrl_c().await?;
    println!("stopping");
    drop(house);
    Ok(())
}
