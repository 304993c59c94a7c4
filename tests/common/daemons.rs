//! A cluster of real `nbwatch run` processes on loopback for the end-to-end tests: one
//! config file and data dir per node in a tempdir, observed through the HTTP API and the CLI
//! like a user would.
//!
//! Every process is killed when its [`Cluster`] is dropped, also when a test panics; a failing
//! test prints the tail of every process's log. Ports are picked by binding port 0 and released
//! right before the spawn; a process that then loses the port to someone else is started again
//! on new ones.

use super::wait_for;
use nbwatch::cli::client::get_json;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use std::fs::File;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_nbwatch");
/// For a cluster to form, a node to be declared down or to come back.
pub const DEADLINE: Duration = Duration::from_secs(25);
/// For a process to start answering or to exit.
pub const PROCESS_DEADLINE: Duration = Duration::from_secs(10);
pub const HTTP: Duration = Duration::from_secs(2);
pub const POLL: Duration = Duration::from_millis(100);
/// Lines of each log printed when a test fails.
pub const TAIL_LINES: usize = 40;

/// `GET /api/v1/members` of the daemon at `api`.
pub async fn members(api: SocketAddr) -> Result<Vec<Value>, String> {
    match get_json(api, "/api/v1/members", HTTP).await {
        Ok(Value::Array(members)) => Ok(members),
        Ok(other) => Err(format!("members of {api} is not an array: {other}")),
        Err(e) => Err(format!("members of {api}: {e}")),
    }
}

/// `GET /api/v1/events` of the daemon at `api`.
pub async fn events(api: SocketAddr) -> Result<Vec<Value>, String> {
    match get_json(api, "/api/v1/events", HTTP).await {
        Ok(Value::Array(events)) => Ok(events),
        Ok(other) => Err(format!("events of {api} is not an array: {other}")),
        Err(e) => Err(format!("events of {api}: {e}")),
    }
}

pub fn entry<'a>(members: &'a [Value], name: &str) -> Option<&'a Value> {
    members.iter().find(|m| m["name"] == name)
}

/// A gossip port free for UDP and TCP alike, and an API port, held until [`Ports::release`].
pub struct Ports {
    pub gossip: SocketAddr,
    pub api: SocketAddr,
    pub held: Option<(UdpSocket, TcpListener, TcpListener)>,
}

impl Ports {
    pub fn pick() -> Ports {
        for _ in 0..50 {
            let udp = UdpSocket::bind("127.0.0.1:0").expect("bind UDP port 0");
            let gossip = udp.local_addr().expect("UDP address");
            let Ok(tcp) = TcpListener::bind(gossip) else {
                continue; // that port is taken for TCP: try another
            };
            let api = TcpListener::bind("127.0.0.1:0").expect("bind TCP port 0");
            return Ports {
                gossip,
                api: api.local_addr().expect("TCP address"),
                held: Some((udp, tcp, api)),
            };
        }
        panic!("found no port free for both UDP and TCP in 50 tries");
    }

    pub fn release(&mut self) {
        self.held = None;
    }
}

/// A port that nothing listens on (a TCP connect is refused).
pub fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind TCP port 0");
    listener.local_addr().expect("address")
}

/// One node: its config file, data dir and logs, and its process while it runs.
pub struct Node {
    pub name: String,
    pub config: PathBuf,
    pub data_dir: PathBuf,
    pub seeds: Vec<SocketAddr>,
    pub gossip: SocketAddr,
    pub api: SocketAddr,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    pub child: Option<Child>,
    /// Appended to the generated config (extra sections).
    pub extra: String,
    /// The gossip keyring file, if gossip is sealed with a key the test made.
    pub key_file: Option<PathBuf>,
    /// Without `key_file`: true runs on the key the daemon makes in its data dir (the
    /// default); false runs plaintext on purpose (`gossip.insecure = true`), as most tests
    /// here do.
    pub own_key: bool,
    /// Variables set in its environment (e.g. systemd's `NOTIFY_SOCKET`).
    pub env: Vec<(String, String)>,
    /// Its `node.zone`, if not the default zone.
    pub zone: Option<String>,
}

/// How a start ended.
pub enum Started {
    /// The API answers and lists the node itself at its gossip address.
    Ready,
    /// The process exited first (for a reason other than losing a port).
    Exited(ExitStatus),
}

impl Node {
    pub fn write_config(&self) {
        let quote = |s: &str| toml::Value::String(s.to_string()).to_string();
        let seeds = if self.seeds.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = self.seeds.iter().map(|s| quote(&s.to_string())).collect();
            format!("seeds = [{}]\n", list.join(", "))
        };
        let key_file = match &self.key_file {
            Some(k) => format!("key_file = {}\n", quote(&k.to_string_lossy())),
            None if self.own_key => String::new(),
            None => "insecure = true\n".to_string(),
        };
        let zone =
            (self.zone.as_deref()).map_or(String::new(), |z| format!("zone = {}\n", quote(z)));
        let text = format!(
            "[node]\nname = {}\ndata_dir = {}\n{zone}[gossip]\nlisten = {}\n{seeds}{key_file}\
             [metrics]\ninterval = \"1s\"\n[api]\nlisten = {}\n{}",
            quote(&self.name),
            quote(&self.data_dir.to_string_lossy()),
            quote(&self.gossip.to_string()),
            quote(&self.api.to_string()),
            self.extra,
        );
        std::fs::write(&self.config, text).expect("write the config");
    }

    /// The node's API token file (created by the daemon at its first start).
    pub fn token_file(&self) -> String {
        self.data_dir
            .join("api.token")
            .to_string_lossy()
            .to_string()
    }

    pub fn pid(&self) -> Pid {
        let child = self.child.as_ref().expect("the node is running");
        Pid::from_raw(i32::try_from(child.id()).expect("pid fits i32"))
    }

    pub fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).unwrap_or_else(|e| panic!("{signal} to {}: {e}", self.name));
    }

    /// The exit status, if the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        child.try_wait().expect("try_wait")
    }

    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Spawns `nbwatch run` on the ports in the config, logs appended to the node's files.
    pub fn spawn(&mut self, ports: &mut Ports) {
        let append = |path: &Path| {
            File::options()
                .create(true)
                .append(true)
                .open(path)
                .expect("open a log file")
        };
        let mut command = Command::new(BIN);
        command
            .arg("run")
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(append(&self.stdout))
            .stderr(append(&self.stderr));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("NBWATCH_") {
                command.env_remove(key);
            }
        }
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        ports.release();
        self.child = Some(command.spawn().expect("spawn nbwatch run"));
    }

    /// Starts the process and waits until it answers or exits. A process that could not bind
    /// its ports (someone took them after we released them) is started again on new ones.
    pub async fn start(&mut self, mut ports: Ports) -> Started {
        for attempt in 1.. {
            self.gossip = ports.gossip;
            self.api = ports.api;
            self.write_config();
            let err_len = std::fs::metadata(&self.stderr).map_or(0, |m| m.len() as usize);
            self.spawn(&mut ports);
            let (name, gossip, api) = (self.name.clone(), self.gossip, self.api);
            let outcome = wait_for(
                &format!("{name} answers on {api} or exits"),
                PROCESS_DEADLINE,
                async || {
                    if let Some(status) = self.exited() {
                        return Ok(Err(status));
                    }
                    let members = members(api).await?;
                    match entry(&members, &name) {
                        Some(me) if me["addr"] == gossip.to_string() => Ok(Ok(())),
                        _ => Err(format!("no {name} at {gossip} in {members:?}")),
                    }
                },
            )
            .await;
            match outcome {
                Ok(()) => return Started::Ready,
                Err(status) => {
                    let this_life = self.stderr_text().get(err_len..).unwrap_or("").to_string();
                    if this_life.contains("cannot bind") && attempt < 5 {
                        eprintln!("{name} lost a port ({status}); trying new ones");
                        ports = Ports::pick();
                        continue;
                    }
                    return Started::Exited(status);
                }
            }
        }
        unreachable!("the loop returns")
    }

    /// Waits until the process exits.
    pub async fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        let name = self.name.clone();
        wait_for(&format!("{name} exits"), deadline, async || {
            self.exited().ok_or_else(|| "still running".to_string())
        })
        .await
    }
}

/// Every node of one test in one tempdir; dropping it kills every process still running and,
/// when the test is failing, prints the tail of each log.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<Node>,
    /// Config sections every node added from now on gets.
    pub extra: String,
    /// The keyring file every node added from now on copies (each node has its own file,
    /// as on separate hosts).
    pub key: Option<String>,
}

impl Cluster {
    pub fn new() -> Cluster {
        Cluster {
            dir: tempfile::tempdir().expect("tempdir"),
            nodes: Vec::new(),
            extra: String::new(),
            key: None,
        }
    }

    /// Adds a node (not started); `label` names its files, so two nodes may share a name.
    pub fn add(&mut self, label: &str, name: &str, seeds: Vec<SocketAddr>) -> usize {
        let dir = self.dir.path();
        let unbound: SocketAddr = "127.0.0.1:0".parse().expect("address");
        let key_file = self.key.as_ref().map(|key| {
            let file = dir.join(format!("{label}.key"));
            nbwatch::secure::keyring::write_private(&file, format!("{key}\n").as_bytes())
                .expect("write the key file");
            file
        });
        self.nodes.push(Node {
            name: name.to_string(),
            config: dir.join(format!("{label}.toml")),
            data_dir: dir.join(label),
            seeds,
            gossip: unbound,
            api: unbound,
            stdout: dir.join(format!("{label}.stdout")),
            stderr: dir.join(format!("{label}.stderr")),
            child: None,
            extra: self.extra.clone(),
            key_file,
            own_key: false,
            env: Vec::new(),
            zone: None,
        });
        self.nodes.len() - 1
    }

    /// Makes an operator key in the test's folder and returns the `[control]` section that
    /// trusts it and signs with it (the daemons obey only sealed directives from others).
    pub fn operator(&self, label: &str) -> (String, String) {
        let file = self.dir.path().join(format!("{label}.operator"));
        let key = nbwatch::secure::operator::OperatorKey::generate();
        key.write_new(&file).expect("write the operator key");
        let quote = |s: &str| toml::Value::String(s.to_string()).to_string();
        let public = key.id().encode();
        let section = format!(
            "[control]\noperators = [{}]\noperator_key_file = {}\n",
            quote(&public),
            quote(&file.to_string_lossy())
        );
        (public, section)
    }

    /// Adds and starts a node, and waits until it answers.
    pub async fn start(&mut self, name: &str, seeds: Vec<SocketAddr>) -> usize {
        let i = self.add(name, name, seeds);
        self.restart(i).await;
        i
    }

    /// SIGKILLs the node called `name`.
    pub fn kill9(&mut self, name: &str) {
        let i = self.index(name);
        let child = self.nodes[i].child.as_mut().expect("running");
        child.kill().expect("kill");
        child.wait().expect("reap");
    }

    /// Starts node `i` again with its config and data dir, and waits until it answers.
    pub async fn restart(&mut self, i: usize) {
        let ports = if self.nodes[i].gossip.port() == 0 {
            Ports::pick()
        } else {
            // The same config: the ports of the last life, free again now that it is dead.
            Ports {
                gossip: self.nodes[i].gossip,
                api: self.nodes[i].api,
                held: None,
            }
        };
        if let Started::Exited(status) = self.nodes[i].start(ports).await {
            panic!("{} exited at start: {status}", self.nodes[i].name);
        }
    }

    /// `n` nodes named `n1`..: the first starts the cluster, the rest join through it; waits
    /// until every node sees all of them alive.
    pub async fn start_many(&mut self, n: usize) {
        let first = self.start("n1", Vec::new()).await;
        let seed = vec![self.nodes[first].gossip];
        for k in 2..=n {
            self.start(&format!("n{k}"), seed.clone()).await;
        }
        let names = self.names();
        for node in &self.nodes {
            wait_for(
                &format!("{} sees {names:?} alive", node.name),
                DEADLINE,
                async || all_alive(node.api, &names).await,
            )
            .await;
        }
    }

    pub fn names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }

    /// The API addresses of every node but those named in `skip`.
    pub fn apis_except(&self, skip: &[&str]) -> Vec<SocketAddr> {
        self.nodes
            .iter()
            .filter(|n| !skip.contains(&n.name.as_str()))
            .map(|n| n.api)
            .collect()
    }

    pub fn index(&self, name: &str) -> usize {
        self.nodes
            .iter()
            .position(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    /// The API addresses of every node except `name`.
    pub fn others(&self, name: &str) -> Vec<(String, SocketAddr)> {
        self.nodes
            .iter()
            .filter(|n| n.name != name)
            .map(|n| (n.name.clone(), n.api))
            .collect()
    }

    /// Waits until every node in `observers` reports `target` in `state`; returns each one's
    /// entry for it.
    pub async fn wait_state(
        &self,
        observers: &[(String, SocketAddr)],
        target: &str,
        state: &str,
    ) -> Vec<Value> {
        let mut entries = Vec::new();
        for (observer, api) in observers {
            let e = wait_for(
                &format!("{observer} reports {target} {state}"),
                DEADLINE,
                async || {
                    let members = members(*api).await?;
                    match entry(&members, target) {
                        Some(e) if e["state"] == state => Ok(e.clone()),
                        other => Err(format!("{other:?}")),
                    }
                },
            )
            .await;
            entries.push(e);
        }
        entries
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(child) = node.child.as_mut() {
                let _ = child.kill(); // SIGKILL; also ends a SIGSTOPped process
                let _ = child.wait();
            }
        }
        if std::thread::panicking() {
            for node in &self.nodes {
                for path in [&node.stderr, &node.stdout] {
                    let text = std::fs::read_to_string(path).unwrap_or_default();
                    let lines: Vec<&str> = text.lines().collect();
                    let tail = &lines[lines.len().saturating_sub(TAIL_LINES)..];
                    eprintln!(
                        "---- last {} lines of {} ----\n{}",
                        tail.len(),
                        path.display(),
                        tail.join("\n")
                    );
                }
            }
        }
    }
}

/// Ok when the daemon at `api` lists exactly `names`, all alive.
pub async fn all_alive(api: SocketAddr, names: &[String]) -> Result<(), String> {
    let members = members(api).await?;
    let ok = members.len() == names.len()
        && names
            .iter()
            .all(|n| entry(&members, n).is_some_and(|m| m["state"] == "alive"));
    if ok {
        Ok(())
    } else {
        let seen: Vec<String> = members
            .iter()
            .map(|m| format!("{}={}", m["name"], m["state"]))
            .collect();
        Err(seen.join(" "))
    }
}

pub fn incarnation(entry: &Value) -> u64 {
    entry["incarnation"]
        .as_u64()
        .unwrap_or_else(|| panic!("no incarnation in {entry}"))
}

/// The highest incarnation of `target` that any of `observers` reports.
pub async fn max_incarnation(observers: &[(String, SocketAddr)], target: &str) -> u64 {
    let mut max = 0;
    for (observer, api) in observers {
        let members = members(*api)
            .await
            .unwrap_or_else(|e| panic!("{observer}: {e}"));
        let e = entry(&members, target).unwrap_or_else(|| panic!("{observer} lacks {target}"));
        max = max.max(incarnation(e));
    }
    max
}

/// Waits until every node reports `target` alive with an incarnation above `before`.
pub async fn wait_back(cluster: &Cluster, target: &str, before: u64) {
    let everyone = cluster.others("");
    for (observer, api) in &everyone {
        wait_for(
            &format!("{observer} reports {target} alive above incarnation {before}"),
            DEADLINE,
            async || {
                let members = members(*api).await?;
                match entry(&members, target) {
                    Some(e) if e["state"] == "alive" && incarnation(e) > before => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            },
        )
        .await;
    }
}

/// Runs a client command (never a daemon) with no `NBWATCH_` variables but those in `env`.
pub async fn client(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = tokio::process::Command::new(BIN);
    command.args(args).stdin(Stdio::null()).kill_on_drop(true);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("NBWATCH_") {
            command.env_remove(key);
        }
    }
    command.envs(env.iter().copied());
    tokio::time::timeout(PROCESS_DEADLINE, command.output())
        .await
        .unwrap_or_else(|_| panic!("nbwatch {args:?} did not finish"))
        .unwrap_or_else(|e| panic!("nbwatch {args:?}: {e}"))
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Writes a tree file into the cluster's default trees folder (`supervisors/` beside the
/// configs).
pub fn write_tree(cluster: &Cluster, name: &str, text: &str) {
    let dir = cluster.dir.path().join("supervisors");
    std::fs::create_dir_all(&dir).expect("trees folder");
    std::fs::write(dir.join(format!("{name}.toml")), text).expect("tree file");
}

pub async fn services(api: SocketAddr) -> Result<Vec<Value>, String> {
    match get_json(api, "/api/v1/services", HTTP).await {
        Ok(Value::Array(list)) => Ok(list),
        Ok(other) => Err(format!("not an array: {other}")),
        Err(e) => Err(e.to_string()),
    }
}

/// Waits until `name` runs with a pid other than `not`, and returns the pid.
pub async fn running_pid(api: SocketAddr, name: &str, not: Option<u64>) -> u64 {
    wait_for(&format!("{name} runs"), PROCESS_DEADLINE, async || {
        let list = services(api).await?;
        match list.iter().find(|s| s["name"] == name) {
            Some(s) if s["state"] == "running" && s["pid"].as_u64() != not => {
                s["pid"].as_u64().ok_or_else(|| format!("{s}"))
            }
            other => Err(format!("{other:?}")),
        }
    })
    .await
}

pub fn process_alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rfind(')')
                .map(|i| !s[i + 1..].trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

pub async fn all_services(api: SocketAddr) -> Result<Vec<Value>, String> {
    match get_json(api, "/api/v1/services?all=true", HTTP).await {
        Ok(Value::Array(list)) => Ok(list),
        other => Err(format!("{other:?}")),
    }
}

/// A node whose own trees folder is `folder` (beside the configs).
pub fn own_trees(cluster: &mut Cluster, name: &str, seeds: Vec<SocketAddr>, folder: &str) -> usize {
    let dir = cluster.dir.path().join(folder);
    std::fs::create_dir_all(&dir).expect("trees folder");
    let i = cluster.add(name, name, seeds);
    let quote = toml::Value::String(dir.display().to_string());
    cluster.nodes[i].extra = format!("[supervision]\ntrees = {quote}\n");
    i
}
