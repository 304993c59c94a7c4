//! What an operator sees, end to end: real `nbwatch run` processes on loopback, the dashboard
//! loaded in a real headless Chromium (Debian's `chromium`), `/metrics` read by a real parser
//! of the Prometheus text format, and `nbwatch status` run as a user would.
//!
//! The browser is driven without a driver protocol: `chromium --headless --dump-dom` loads the
//! page, runs its script for a few seconds of virtual time and prints the resulting DOM, which
//! the test reads through the `data-*` attributes the page puts on rows and charts. Each check
//! is repeated until it holds or a deadline passes. The screenshot of the last state is kept
//! at `target/test-artifacts/dashboard.png` (next to the build's `tmp` folder).

mod common;
use common::wait_for;
use nbwatch::cli::client::get_json;
use serde_json::Value;
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_nbwatch");
/// For a cluster to form, a node to be declared down, a page to show it.
const DEADLINE: Duration = Duration::from_secs(30);
const HTTP: Duration = Duration::from_secs(2);
/// The browser, unless `CHROMIUM` names another.
const CHROMIUM: &str = "/usr/bin/chromium";

/// One `nbwatch run` process with its own config, data dir and log.
struct Node {
    name: String,
    gossip: SocketAddr,
    api: SocketAddr,
    log: PathBuf,
    child: Child,
}

/// Nodes of one test in one tempdir; dropping it kills them, and a failing test prints the
/// tail of each log.
struct Cluster {
    dir: tempfile::TempDir,
    nodes: Vec<Node>,
    /// `node.zone` of the nodes started from now on (unset: the default zone).
    zone: Option<String>,
}

/// A port free for UDP and TCP (gossip) and one for TCP (API), released right before the
/// spawn. Losing one to another process in between makes the daemon exit; the start retries.
fn free_ports() -> (SocketAddr, SocketAddr) {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind UDP port 0");
        let gossip = udp.local_addr().expect("UDP address");
        if TcpListener::bind(gossip).is_err() {
            continue;
        }
        let api = TcpListener::bind("127.0.0.1:0").expect("bind TCP port 0");
        return (gossip, api.local_addr().expect("TCP address"));
    }
    panic!("found no port free for both UDP and TCP in 50 tries");
}

impl Cluster {
    fn new() -> Cluster {
        Cluster {
            dir: tempfile::tempdir().expect("tempdir"),
            nodes: Vec::new(),
            zone: None,
        }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// Starts `name` (joining through `seed`) with `extra` appended to its config, and waits
    /// until its API lists it.
    async fn start(&mut self, name: &str, seed: Option<SocketAddr>, extra: &str) -> usize {
        let quote = |s: &str| toml::Value::String(s.to_string()).to_string();
        let log = self.path(&format!("{name}.log"));
        for attempt in 1..=3 {
            let (gossip, api) = free_ports();
            let seeds = seed.map_or(String::new(), |s| {
                format!("seeds = [{}]\n", quote(&s.to_string()))
            });
            let config = self.path(&format!("{name}.toml"));
            let zone =
                (self.zone.as_deref()).map_or(String::new(), |z| format!("zone = {}\n", quote(z)));
            let text = format!(
                "[node]\nname = {}\ndata_dir = {}\n{zone}[gossip]\nlisten = {}\ninsecure = true\n{seeds}\
                 [metrics]\ninterval = \"1s\"\n[api]\nlisten = {}\n{extra}",
                quote(name),
                quote(&self.path(name).to_string_lossy()),
                quote(&gossip.to_string()),
                quote(&api.to_string()),
            );
            std::fs::write(&config, text).expect("write the config");
            let out = std::fs::File::options()
                .create(true)
                .append(true)
                .open(&log)
                .expect("open the log");
            let mut command = Command::new(BIN);
            command
                .args(["run", "--config"])
                .arg(&config)
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(out.try_clone().expect("clone the log"))
                .stderr(out);
            for (key, _) in std::env::vars_os() {
                if key.to_string_lossy().starts_with("NBWATCH_") {
                    command.env_remove(key);
                }
            }
            let child = command.spawn().expect("spawn nbwatch run");
            self.nodes.push(Node {
                name: name.to_string(),
                gossip,
                api,
                log: log.clone(),
                child,
            });
            let i = self.nodes.len() - 1;
            let answered = wait_for(
                &format!("{name} answers on {api} or exits"),
                DEADLINE,
                async || {
                    if let Some(status) = self.nodes[i].child.try_wait().expect("try_wait") {
                        return Ok(Err(status));
                    }
                    match get_json(api, "/api/v1/members", HTTP).await {
                        Ok(Value::Array(m)) if m.iter().any(|m| m["name"] == name) => Ok(Ok(())),
                        other => Err(format!("{other:?}")),
                    }
                },
            )
            .await;
            match answered {
                Ok(()) => return i,
                Err(status) if attempt < 3 => {
                    eprintln!("{name} exited at start ({status}); trying new ports");
                    self.nodes.pop();
                }
                Err(status) => panic!("{name} exited at start: {status}"),
            }
        }
        unreachable!("the loop returns or panics")
    }

    /// `names`: the first starts the cluster, the others join it; waits until the first
    /// sees every one alive.
    async fn start_all(&mut self, names: &[(&str, &str)]) {
        let mut seed = None;
        for (name, extra) in names {
            let i = self.start(name, seed, extra).await;
            seed.get_or_insert(self.nodes[i].gossip);
        }
        let api = self.nodes[0].api;
        let want: Vec<&str> = names.iter().map(|(n, _)| *n).collect();
        wait_for(&format!("{want:?} are alive"), DEADLINE, async || {
            let states = member_states(api).await?;
            let all = want
                .iter()
                .all(|n| states.get(*n).map(String::as_str) == Some("alive"));
            if all {
                Ok(())
            } else {
                Err(format!("{states:?}"))
            }
        })
        .await;
    }

    fn kill9(&mut self, name: &str) {
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.name == name)
            .expect("node");
        node.child.kill().expect("kill");
        node.child.wait().expect("reap");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.child.kill();
            let _ = node.child.wait();
        }
        if std::thread::panicking() {
            for node in &self.nodes {
                let text = std::fs::read_to_string(&node.log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = &lines[lines.len().saturating_sub(30)..];
                eprintln!("---- {} ----\n{}", node.log.display(), tail.join("\n"));
            }
        }
    }
}

/// Each member's state as the daemon at `api` reports it.
async fn member_states(api: SocketAddr) -> Result<HashMap<String, String>, String> {
    match get_json(api, "/api/v1/members", HTTP).await {
        Ok(Value::Array(members)) => Ok(members
            .iter()
            .map(|m| {
                let s = |k: &str| m[k].as_str().unwrap_or("?").to_string();
                (s("name"), s("state"))
            })
            .collect()),
        other => Err(format!("{other:?}")),
    }
}

// ---- the browser ----

fn chromium() -> PathBuf {
    let path = std::env::var_os("CHROMIUM").map_or_else(|| PathBuf::from(CHROMIUM), PathBuf::from);
    assert!(
        path.exists(),
        "no browser at {}: install Debian's chromium (apt-get install chromium) or set CHROMIUM",
        path.display()
    );
    path
}

/// Runs headless Chromium on `url` with `args`, its profile in `profile`; returns stdout.
/// The page's script runs for `VIRTUAL_MS` of virtual time (network waits do not count), so
/// its first poll and its charts' first fetches are done when the DOM is printed.
async fn browse(profile: &Path, url: &str, args: &[&str]) -> Result<String, String> {
    const VIRTUAL_MS: &str = "--virtual-time-budget=3000";
    let mut command = tokio::process::Command::new(chromium());
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
        ])
        .args([
            "--disable-extensions",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(VIRTUAL_MS)
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let run = tokio::time::timeout(Duration::from_secs(30), command.output());
    let out = run
        .await
        .map_err(|_| "chromium did not finish within 30 s".to_string())?
        .map_err(|e| format!("cannot run chromium: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!("chromium failed ({}): {err}", out.status));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The attributes of every element of `dom` that has attribute `marker`, in page order.
/// The DOM is Chromium's serialization: attributes as `name="value"`, with `&quot;` and `&amp;`
/// escaped in values, and `<`, `>` too in recent versions (older ones leave them as they are,
/// so a tag ends at the first `>` outside a quoted value).
fn elements(dom: &str, marker: &str) -> Vec<HashMap<String, String>> {
    let mut out = Vec::new();
    let mut rest = dom;
    while let Some(at) = rest.find('<') {
        let (attrs, len) = start_tag(&rest[at..]);
        if attrs.contains_key(marker) {
            out.push(attrs);
        }
        rest = &rest[at + len..];
    }
    out
}

/// The attributes of the start tag `tag` begins with, and its length in bytes; no attributes
/// and a length of 1 if it does not begin with one (an end tag, a comment, a stray `<`).
fn start_tag(tag: &str) -> (HashMap<String, String>, usize) {
    let mut attrs = HashMap::new();
    let bytes = tag.as_bytes();
    if bytes.len() < 2 || bytes[0] != b'<' || !bytes[1].is_ascii_alphabetic() {
        return (attrs, 1);
    }
    let stop = |b: u8| b.is_ascii_whitespace() || b == b'>' || b == b'/' || b == b'=';
    let mut i = 1;
    while i < bytes.len() && !stop(bytes[i]) {
        i += 1;
    }
    loop {
        while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b'/') {
            i += 1;
        }
        if i >= bytes.len() || bytes[i] == b'>' {
            return (attrs, (i + 1).min(bytes.len()));
        }
        let name_start = i;
        while i < bytes.len() && !stop(bytes[i]) {
            i += 1;
        }
        let name = tag[name_start..i].to_string();
        if i == name_start {
            // A stray `=`: skip it.
            i += 1;
            continue;
        }
        let mut value = String::new();
        if bytes.get(i) == Some(&b'=') {
            i += 1;
            if bytes.get(i) == Some(&b'"') {
                let end = tag[i + 1..].find('"').map_or(bytes.len(), |e| i + 1 + e);
                value = unescape(&tag[i + 1..end]);
                i = (end + 1).min(bytes.len());
            } else {
                let start = i;
                while i < bytes.len() && !bytes[i].is_ascii_whitespace() && bytes[i] != b'>' {
                    i += 1;
                }
                value = unescape(&tag[start..i]);
            }
        }
        attrs.insert(name, value);
    }
}

/// An attribute value or text as the page meant it.
fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

/// Text as Chromium serializes it (`&`, `<`, `>` and no-break spaces escaped; quotes not).
fn escape_text(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\u{a0}', "&nbsp;")
}

/// An alert sink that accepts every alert (only a node with a sink sends alerts).
const SINK: &str =
    "[[alerts.sinks]]\ntype = \"exec\"\ncommand = [\"/bin/sh\", \"-c\", \"cat > /dev/null\"]\n";

/// What the page shows: each member row's state, and each chart's number of points.
struct Page {
    members: HashMap<String, String>,
    charts: HashMap<String, usize>,
    status: String,
    /// (kind, node) of each event row, newest first.
    events: Vec<(String, String)>,
    /// (id, state) of each alert row.
    alerts: Vec<(String, String)>,
    /// The rows of the reachability grid, by host.
    reach: Vec<String>,
    /// Each zone row: its state (reachable or unreachable).
    zones: HashMap<String, String>,
    /// Each vertex of the dependency graph: (failed by itself, taken down by another).
    vertices: HashMap<String, (bool, bool)>,
    /// The `requires` arrows drawn, as `from>to`.
    requires: Vec<String>,
    /// Each service row (`node:service`): shown stale (its host is down).
    stale: HashMap<String, bool>,
    /// Each chart's runs of joined points (more than one: a gap, an outage).
    segments: HashMap<String, usize>,
}

async fn load(profile: &Path, url: &str) -> Result<Page, String> {
    let dom = browse(profile, url, &["--dump-dom"]).await?;
    Ok(Page::read(&dom))
}

impl Page {
    fn read(dom: &str) -> Page {
        let attr = |e: &HashMap<String, String>, k: &str| e.get(k).cloned().unwrap_or_default();
        Page {
            members: elements(dom, "data-member")
                .iter()
                .map(|e| (attr(e, "data-member"), attr(e, "data-state")))
                .collect(),
            charts: elements(dom, "data-chart")
                .iter()
                .map(|e| {
                    let points = attr(e, "data-points").parse().unwrap_or(0);
                    (attr(e, "data-chart"), points)
                })
                .collect(),
            status: elements(dom, "data-status")
                .first()
                .map(|e| attr(e, "data-status"))
                .unwrap_or_default(),
            events: elements(dom, "data-event")
                .iter()
                .map(|e| (attr(e, "data-event"), attr(e, "data-node")))
                .collect(),
            alerts: elements(dom, "data-alert")
                .iter()
                .map(|e| (attr(e, "data-alert"), attr(e, "data-state")))
                .collect(),
            zones: elements(dom, "data-zone")
                .iter()
                .map(|e| (attr(e, "data-zone"), attr(e, "data-state")))
                .collect(),
            reach: elements(dom, "data-reach")
                .iter()
                .map(|e| attr(e, "data-reach"))
                .collect(),
            vertices: elements(dom, "data-vertex")
                .iter()
                .map(|e| {
                    let flag = |k: &str| attr(e, k) == "true";
                    (
                        attr(e, "data-vertex"),
                        (flag("data-failed"), flag("data-down")),
                    )
                })
                .collect(),
            requires: elements(dom, "data-requires")
                .iter()
                .map(|e| attr(e, "data-requires"))
                .collect(),
            stale: elements(dom, "data-service")
                .iter()
                .map(|e| (attr(e, "data-service"), attr(e, "data-stale") == "true"))
                .collect(),
            segments: elements(dom, "data-chart")
                .iter()
                .map(|e| {
                    let n = attr(e, "data-segments").parse().unwrap_or(0);
                    (attr(e, "data-chart"), n)
                })
                .collect(),
        }
    }
}

/// Where the screenshot is kept: `<target>/test-artifacts/`.
fn artifacts() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = tmp.parent().unwrap_or(tmp).join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("create the artifacts folder");
    dir
}

/// The width and height of a PNG file, from its IHDR chunk.
fn png_size(bytes: &[u8]) -> Option<(u32, u32)> {
    if bytes.len() < 24 || &bytes[..8] != b"\x89PNG\r\n\x1a\n" || &bytes[12..16] != b"IHDR" {
        return None;
    }
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    Some((be(&bytes[16..20]), be(&bytes[20..24])))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_every_member_with_charts_and_a_killed_node_turning_down() {
    let mut cluster = Cluster::new();
    // n1 has the one sink: it sends the alerts.
    let sink =
        "[[alerts.sinks]]\ntype = \"exec\"\ncommand = [\"/bin/sh\", \"-c\", \"cat > /dev/null\"]\n";
    // n3 runs pg, which n2's web requires: the graph draws the arrow, and n3's death takes
    // both down.
    let trees = |name: &str, tree: &str| {
        let dir = cluster.path(&format!("{name}-trees"));
        std::fs::create_dir_all(&dir).expect("trees folder");
        std::fs::write(dir.join("t.toml"), tree).expect("tree");
        format!(
            "[supervision]\ntrees = {}\n",
            toml::Value::String(dir.display().to_string())
        )
    };
    let n2 = trees(
        "n2",
        "name = \"site\"\n[[children]]\nname = \"web\"\nrequires = [\"n3:pg\"]\n\
         command = [\"sleep\", \"90\"]\n",
    );
    let n3 = trees(
        "n3",
        "name = \"db\"\n[[children]]\nname = \"pg\"\ncommand = [\"sleep\", \"90\"]\n",
    );
    cluster
        .start_all(&[("n1", sink), ("n2", &n2), ("n3", &n3)])
        .await;
    let profile = cluster.path("chromium");
    // The last ten minutes, in 5 s buckets, where a fresh cluster's lines are. (The default
    // window, an hour in 30 s buckets, shows a second point only once the samples span a
    // bucket boundary, which need not happen within the deadline.)
    let url = format!("http://{}/#10m", cluster.nodes[0].api);
    // An outage in n3's past, as n1 recorded it: samples from 8 to 5 minutes ago, then none
    // until the cluster started. Its chart must break there instead of joining the two.
    record_past_run(&cluster.path("n1").join("history.db"), "n3", "load1");

    let names = ["n1", "n2", "n3"];
    wait_for(
        "the page shows three live members and a chart with data for each",
        DEADLINE,
        async || {
            let page = load(&profile, &url).await?;
            let alive = names
                .iter()
                .all(|n| page.members.get(*n).map(String::as_str) == Some("alive"));
            let charted = names.iter().all(|n| {
                page.charts
                    .get(&format!("{n}:load1"))
                    .is_some_and(|p| *p >= 2)
                    && page
                        .charts
                        .get(&format!("{n}:mem_used_pct"))
                        .is_some_and(|p| *p >= 2)
            });
            let reach = page.reach == names;
            let graph = page.vertices.get("n2:web") == Some(&(false, false))
                && page.vertices.contains_key("n3:pg")
                && page.requires == ["n2:web>n3:pg"];
            if alive && charted && reach && graph && page.status == "ok" && page.members.len() == 3
            {
                Ok(())
            } else {
                Err(format!(
                    "members {:?}, charts {:?}, reachability rows {:?}, graph {:?} {:?}, status {}",
                    page.members,
                    page.charts,
                    page.reach,
                    page.vertices,
                    page.requires,
                    page.status
                ))
            }
        },
    )
    .await;

    cluster.kill9("n3");
    let page = wait_for(
        "the page shows n3 down, its node_down event and its alert sent",
        DEADLINE,
        async || {
            let page = load(&profile, &url).await?;
            let down = page.members.get("n3").map(String::as_str) == Some("down");
            let event = page
                .events
                .iter()
                .any(|(k, n)| k == "node_down" && n == "n3");
            let alert = page
                .alerts
                .iter()
                .any(|(id, state)| id.starts_with("node_down:n3:") && state == "sent");
            let graph = page.vertices.get("n3") == Some(&(true, false))
                && page.vertices.get("n3:pg") == Some(&(false, true))
                && page.vertices.get("n2:web") == Some(&(false, true));
            // A dead host's services are not shown as running: they are stale.
            let stale =
                page.stale.get("n3:pg") == Some(&true) && page.stale.get("n2:web") == Some(&false);
            if down && event && alert && graph && stale {
                Ok(page)
            } else {
                Err(format!(
                    "members {:?}, events {:?}, alerts {:?}, graph {:?}, stale {:?}",
                    page.members, page.events, page.alerts, page.vertices, page.stale
                ))
            }
        },
    )
    .await;
    // A live host's line is one line: no false gap between samples held back as unchanged.
    for n in ["n1", "n2"] {
        let chart = format!("{n}:load1");
        assert_eq!(page.segments.get(&chart), Some(&1), "{:?}", page.segments);
    }
    // The outage in n3's past breaks its line in two.
    assert_eq!(
        page.segments.get("n3:load1"),
        Some(&2),
        "{:?}",
        page.segments
    );
    // The survivors are still up, and the dead host's past is still charted.
    assert_eq!(page.members.get("n1").map(String::as_str), Some("alive"));
    assert_eq!(page.members.get("n2").map(String::as_str), Some("alive"));
    assert!(
        page.charts.get("n3:load1").is_some_and(|p| *p >= 2),
        "the history of n3 is gone from the page: {:?}",
        page.charts
    );

    // The screenshot shows the same ten minutes.
    let shot = artifacts().join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let arg = format!("--screenshot={}", shot.display());
    browse(&profile, &url, &[&arg, "--window-size=1280,900"])
        .await
        .unwrap_or_else(|e| panic!("screenshot: {e}"));
    let bytes = std::fs::read(&shot).unwrap_or_else(|e| panic!("{}: {e}", shot.display()));
    assert_eq!(png_size(&bytes), Some((1280, 900)), "{}", shot.display());
    assert!(
        bytes.len() > 20_000,
        "a blank screenshot? {} bytes",
        bytes.len()
    );
    eprintln!("dashboard screenshot: {}", shot.display());
}

/// Writes into a running daemon's history (`db`) samples of `node`'s `metric` every 10 s from
/// 8 to 5 minutes ago: a run of the past followed by an outage.
fn record_past_run(db: &Path, node: &str, metric: &str) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let mut conn = rusqlite::Connection::open(db).expect("open the history");
    conn.busy_timeout(Duration::from_secs(10))
        .expect("busy timeout");
    let tx = conn.transaction().expect("begin");
    tx.execute(
        "INSERT OR IGNORE INTO series (node, metric) VALUES (?1, ?2)",
        [node, metric],
    )
    .expect("series");
    let series: i64 = tx
        .query_row(
            "SELECT id FROM series WHERE node = ?1 AND metric = ?2",
            [node, metric],
            |r| r.get(0),
        )
        .expect("series id");
    for k in 0..=18 {
        let at = now - 8 * 60_000 + k * 10_000;
        tx.execute(
            "INSERT OR IGNORE INTO samples (series, at, value) VALUES (?1, ?2, ?3)",
            rusqlite::params![series, at, 0.5],
        )
        .expect("sample");
    }
    tx.commit().expect("commit");
}

/// A tree whose `broken` service exits at once: one restart is allowed, the second exit makes
/// the tree give up (a `service_failed` incident); `steady` keeps running until then.
const FAILING_TREE: &str = r#"
name = "demo"
strategy = "one_for_one"
intensity = 1
period = "1m"
[[children]]
name = "steady"
command = ["sleep", "600"]
[[children]]
name = "broken"
command = ["sh", "-c", "exit 7"]
"#;

/// `GET /metrics` of `api`, parsed by `prometheus-parse`.
async fn scrape(api: SocketAddr) -> Result<prometheus_parse::Scrape, String> {
    let body = raw_get(api, "/metrics").await?;
    let lines = body.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines).map_err(|e| format!("unparsable metrics: {e}\n{body}"))
}

/// What Debian's `promtool check metrics` (package `prometheus`) says of `text` on stdin:
/// empty when it has nothing to say and exits 0.
async fn promtool_check_metrics(text: &str) -> String {
    use tokio::io::AsyncWriteExt;
    let promtool = std::env::var("PROMTOOL").unwrap_or_else(|_| "/usr/bin/promtool".into());
    let mut child = tokio::process::Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {promtool}: {e}: install Debian's prometheus or set PROMTOOL")
        });
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(text.as_bytes())
        .await
        .expect("write to promtool");
    drop(stdin);
    let out = child.wait_with_output().await.expect("promtool output");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        said
    } else {
        format!("{}: {said}", out.status)
    }
}

/// A plain-text GET (the client library reads JSON only).
async fn raw_get(api: SocketAddr, path: &str) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(api)
        .await
        .map_err(|e| format!("{api}: {e}"))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut response = String::new();
    tokio::time::timeout(HTTP, stream.read_to_string(&mut response))
        .await
        .map_err(|_| format!("{path} did not answer"))?
        .map_err(|e| e.to_string())?;
    let (head, body) = response.split_once("\r\n\r\n").ok_or("no header end")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("{path}: {head}"));
    }
    if !head
        .to_ascii_lowercase()
        .contains("content-type: text/plain; version=0.0.4")
    {
        return Err(format!("{path}: not the Prometheus text format: {head}"));
    }
    Ok(body.to_string())
}

/// The value of the sample `name` whose labels include `labels`.
fn sample(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .find(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .and_then(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => Some(v),
            _ => None,
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_as_prometheus_text_and_status_names_what_is_wrong() {
    let mut cluster = Cluster::new();
    let trees = cluster.path("trees");
    std::fs::create_dir_all(&trees).expect("trees folder");
    std::fs::write(trees.join("demo.toml"), FAILING_TREE).expect("write the tree");
    // Every node runs a host probe (the `probes` folder next to the configs) whose perfdata
    // comes in units /metrics scales to base units.
    let probes = cluster.path("probes");
    std::fs::create_dir_all(&probes).expect("probes folder");
    std::fs::write(
        probes.join("web.toml"),
        "command = [\"sh\", \"-c\", \"echo 'WEB OK | time=250ms;1;2 size=3MB up=99.5% n=7'\"]\n\
         interval = \"1s\"\n",
    )
    .expect("write the probe");
    // n1 supervises the tree and has the one sink: it sends the alerts.
    let supervised = format!(
        "[supervision]\ntrees = {}\n{SINK}",
        toml::Value::String(trees.to_string_lossy().into_owned())
    );
    cluster
        .start_all(&[("n1", &supervised), ("n2", ""), ("n3", "")])
        .await;
    let api = cluster.nodes[0].api;

    // The tree gives up on `broken`; the leader (n1) alerts it.
    wait_for("n1's metrics show broken failed", DEADLINE, async || {
        let s = scrape(api).await?;
        let failed = [("service", "broken"), ("state", "failed")];
        match sample(&s, "nbwatch_service_state", &failed) {
            Some(1.0) => Ok(s),
            other => Err(format!("broken failed = {other:?}")),
        }
    })
    .await;
    // Every member's host figures and probe perfdata, in base units, and the daemon's own.
    let scrape1 = wait_for("n1's metrics show every host", DEADLINE, async || {
        let s = scrape(api).await?;
        for node in ["n1", "n2", "n3"] {
            let node = [("node", node)];
            let probe = |label| [("node", node[0].1), ("probe", "web"), ("label", label)];
            let figures = [
                sample(&s, "nbwatch_node_load1", &node),
                sample(&s, "nbwatch_node_memory_used_ratio", &node),
                sample(&s, "nbwatch_node_boot_time_seconds", &node),
                sample(&s, "nbwatch_probe_seconds", &probe("time")),
                sample(&s, "nbwatch_probe_bytes", &probe("size")),
                sample(&s, "nbwatch_probe_ratio", &probe("up")),
            ];
            if figures.iter().any(Option::is_none) {
                return Err(format!("{node:?}: {figures:?}"));
            }
            let ratio = figures[1].unwrap_or(-1.0);
            assert!((0.0..=1.0).contains(&ratio), "memory ratio {ratio}");
            assert_eq!(figures[3], Some(0.25), "250ms in seconds");
            assert_eq!(figures[4], Some(3.0 * 1024.0 * 1024.0), "3MB in bytes");
            assert_eq!(figures[5], Some(0.995), "99.5% as a ratio");
        }
        Ok(s)
    })
    .await;
    let rss = sample(&scrape1, "process_resident_memory_bytes", &[]);
    assert!(rss.is_some_and(|b| b > 1e6), "resident memory {rss:?}");
    // CPU time comes in clock ticks: a young, quiet daemon may not have used one yet.
    let cpu = sample(&scrape1, "process_cpu_seconds_total", &[]);
    assert!(cpu.is_some_and(|s| s >= 0.0), "cpu seconds {cpu:?}");
    let started = sample(&scrape1, "process_start_time_seconds", &[]).unwrap_or(0.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    assert!(
        started > now - 600.0 && started <= now + 1.0,
        "started {started}, now {now}"
    );
    // The real promtool finds nothing to say about the whole text.
    let body = raw_get(api, "/metrics")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let lint = promtool_check_metrics(&body).await;
    assert!(lint.is_empty(), "promtool check metrics:\n{lint}");
    let restarts = sample(
        &scrape1,
        "nbwatch_service_restarts_total",
        &[("service", "broken")],
    );
    assert!(restarts.is_some_and(|r| r >= 1.0), "restarts {restarts:?}");
    assert_eq!(
        sample(&scrape1, "nbwatch_members", &[("state", "alive")]),
        Some(3.0)
    );
    assert_eq!(sample(&scrape1, "nbwatch_is_leader", &[]), Some(1.0));
    let sent = sample(&scrape1, "nbwatch_gossip_sent_bytes_total", &[]);
    assert!(sent.is_some_and(|b| b > 0.0), "gossip bytes sent {sent:?}");
    let db = sample(
        &scrape1,
        "nbwatch_store_size_bytes",
        &[("file", "history.db")],
    );
    assert!(db.is_some_and(|b| b > 0.0), "history.db size {db:?}");
    let types: HashMap<&str, &str> = [
        ("nbwatch_gossip_sent_bytes_total", "counter"),
        ("nbwatch_members", "gauge"),
        ("nbwatch_service_restarts_total", "counter"),
    ]
    .into();
    for (name, kind) in types {
        let doc = scrape1.docs.get(name);
        assert!(doc.is_some_and(|d| !d.is_empty()), "no HELP for {name}");
        let sampled = scrape1.samples.iter().find(|s| s.metric == name);
        let typed = sampled.map(|s| match s.value {
            prometheus_parse::Value::Counter(_) => "counter",
            prometheus_parse::Value::Gauge(_) => "gauge",
            _ => "other",
        });
        assert_eq!(typed, Some(kind), "{name}");
    }

    // A node dies: n1 counts it down, and `status` names it, the failing service and both
    // incidents, and exits 3.
    cluster.kill9("n3");
    let scrape2 = wait_for("n1's metrics show n3 down", DEADLINE, async || {
        let s = scrape(api).await?;
        match sample(&s, "nbwatch_member_up", &[("node", "n3")]) {
            Some(0.0) => Ok(s),
            other => Err(format!("n3 up = {other:?}")),
        }
    })
    .await;
    assert_eq!(
        sample(&scrape2, "nbwatch_members", &[("state", "down")]),
        Some(1.0)
    );
    let output = wait_for(
        "status shows both incidents alerted",
        DEADLINE,
        async || {
            let out = tokio::process::Command::new(BIN)
                .args(["status", "--api", &api.to_string()])
                .env("NO_COLOR", "1")
                .output()
                .await
                .map_err(|e| e.to_string())?;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let alerted = |id: &str| {
                text.lines()
                    .any(|l| l.starts_with(id) && l.contains(" yes "))
            };
            if alerted("node_down:n3:") && alerted("service_failed:n1:broken:") {
                Ok((out.status.code(), text))
            } else {
                Err(text)
            }
        },
    )
    .await;
    let (code, text) = output;
    assert_eq!(
        code,
        Some(3),
        "status exits 3 when something needs a person:\n{text}"
    );
    assert!(text.starts_with("node n1 (nbwatch "), "{text}");
    assert!(text.contains("members 2 of 3 up"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("n3 ") && l.contains(" down ")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("n1 ") && l.contains(" broken ") && l.contains(" failed ")),
        "{text}"
    );
    assert!(!text.contains('\x1b'), "NO_COLOR: {text:?}");
    // The tree gave up as a whole: `steady` failed with `broken`, one incident each.
    let scrape3 = scrape(api).await.unwrap_or_else(|e| panic!("{e}"));
    let failed_alerts = sample(
        &scrape3,
        "nbwatch_alerts",
        &[("kind", "service_failed"), ("state", "sent")],
    );
    assert_eq!(failed_alerts, Some(2.0));
    let down_alerts = sample(
        &scrape3,
        "nbwatch_alerts",
        &[("kind", "node_down"), ("state", "sent")],
    );
    assert_eq!(down_alerts, Some(1.0));
}

/// A node name may hold anything but `:`, spaces and control characters (the config refuses
/// those), so also the characters HTML and URLs give a meaning to.
const MARKUP_NAME: &str = r#"a&"<b>'c?#%"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elements_of_the_rendered_dashboard_are_read_with_their_attributes_unescaped() {
    let mut cluster = Cluster::new();
    cluster.start_all(&[("n1", ""), (MARKUP_NAME, "")]).await;
    let profile = cluster.path("chromium");
    let url = format!("http://{}/", cluster.nodes[0].api);
    let odd = MARKUP_NAME;
    wait_for(
        "n1's page shows the member named with markup characters, its card and its charts",
        DEADLINE,
        async || {
            let dom = browse(&profile, &url, &["--dump-dom"]).await?;
            let page = Page::read(&dom);
            let members: HashMap<&str, &str> = page
                .members
                .iter()
                .map(|(n, s)| (n.as_str(), s.as_str()))
                .collect();
            let both_alive = members == HashMap::from([("n1", "alive"), (odd, "alive")]);
            // Its chart is found by its name and filled from `/api/v1/history/<name>`.
            let charted = ["load1", "mem_used_pct"].iter().all(|m| {
                page.charts
                    .get(&format!("{odd}:{m}"))
                    .is_some_and(|p| *p >= 2)
            });
            let mut cards: Vec<String> = elements(&dom, "data-host")
                .into_iter()
                .filter_map(|e| e.get("data-host").cloned())
                .collect();
            cards.sort();
            let carded = cards == [odd, "n1"];
            // In its row the name is text, not markup.
            let as_text = dom.contains(&format!("<td>{}</td>", escape_text(odd)));
            if both_alive && charted && carded && as_text {
                Ok(())
            } else {
                Err(format!(
                    "members {:?}, charts {:?}, cards {cards:?}, name as text {as_text}",
                    page.members, page.charts
                ))
            }
        },
    )
    .await;
}

#[test]
fn completions_are_printed_for_each_shell_and_a_closed_pipe_is_not_a_crash() {
    for (shell, marker) in [
        ("bash", "_nbwatch()"),
        ("zsh", "#compdef nbwatch"),
        ("fish", "complete -c nbwatch"),
    ] {
        let out = Command::new(BIN)
            .args(["completions", shell])
            .output()
            .expect("run nbwatch completions");
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{shell}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(script.contains(marker), "{shell}: no {marker:?}");
        assert!(
            script.contains("status"),
            "{shell}: the status command is not completed"
        );
    }
    // `| true`: the reader is gone before the script is written. Here the read end is closed
    // before the spawn, so the write fails with EPIPE every time (Rust ignores SIGPIPE).
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let out = Command::new(BIN)
        .args(["completions", "bash"])
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("run nbwatch completions into a closed pipe");
    let err = String::from_utf8_lossy(&out.stderr);
    // Not a crash: exit 0, as a command whose reader stopped reading should (not 101 for a
    // panic, not a signal), and nothing on stderr.
    assert_eq!(
        out.status.code(),
        Some(0),
        "completions into a closed pipe: {}: {err}",
        out.status
    );
    assert!(err.is_empty(), "completions into a closed pipe said: {err}");
    let help = Command::new(BIN).arg("--help").output().expect("--help");
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("Examples:") && help.contains("Exit codes:"),
        "{help}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_zones_and_a_dead_zone_unreachable() {
    let mut cluster = Cluster::new();
    cluster.zone = Some("attic".into());
    cluster.start("a1", None, "").await;
    let seed = Some(cluster.nodes[0].gossip);
    cluster.zone = Some("barn".into());
    cluster.start("b1", seed, "").await;
    let profile = cluster.path("chromium");
    let url = format!("http://{}/", cluster.nodes[0].api);
    let zones = |page: &Page| {
        let mut z: Vec<(String, String)> = page.zones.clone().into_iter().collect();
        z.sort();
        z
    };
    let want = |barn: &str| {
        vec![
            ("attic".to_string(), "reachable".to_string()),
            ("barn".to_string(), barn.to_string()),
        ]
    };
    wait_for(
        "a1's page lists both zones reachable",
        DEADLINE,
        async || {
            let page = load(&profile, &url).await?;
            if zones(&page) == want("reachable") {
                Ok(())
            } else {
                Err(format!("{:?}", page.zones))
            }
        },
    )
    .await;
    let b1 = cluster
        .nodes
        .iter_mut()
        .find(|n| n.name == "b1")
        .expect("b1");
    b1.child.kill().expect("kill b1");
    b1.child.wait().expect("reap b1");
    wait_for("a1's page shows barn unreachable", DEADLINE, async || {
        let page = load(&profile, &url).await?;
        if zones(&page) == want("unreachable") {
            Ok(())
        } else {
            Err(format!("{:?}", page.zones))
        }
    })
    .await;
}
