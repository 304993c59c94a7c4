//! A cluster of real member processes on loopback, and what each member
//! currently believes about the others.
//!
//! chitchat and foca peers report through JSON lines on stdout (read by one
//! thread per process); nbwatch nodes are polled over their HTTP API (see
//! `nbwatch.rs`). Both feed the same `View`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use peerbench::now_ms;

use crate::nbwatch;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum System {
    Nbwatch,
    Chitchat,
    Foca,
    /// HashiCorp's memberlist (Go), `peer-memberlist` (see `memberlist/`).
    Memberlist,
}

impl System {
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        Ok(match s {
            "nbwatch" => Self::Nbwatch,
            "chitchat" => Self::Chitchat,
            "foca" => Self::Foca,
            "memberlist" => Self::Memberlist,
            other => anyhow::bail!("unknown system {other}"),
        })
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Nbwatch => "nbwatch",
            Self::Chitchat => "chitchat",
            Self::Foca => "foca",
            Self::Memberlist => "memberlist",
        }
    }
}

/// What one member believes, plus its last reported send counters.
#[derive(Default, Debug)]
pub struct View {
    /// name -> alive (false once reported down or left)
    pub alive: HashMap<String, bool>,
    /// name -> unix ms of the first "down" since it was last seen up
    pub down_at: HashMap<String, u64>,
    pub bytes_sent: u64,
    pub datagrams_sent: u64,
    pub stats_t_ms: u64,
    /// Set on the first stats report (the socket is bound and serving).
    pub ready: bool,
    /// chitchat / foca: every "down" line the member printed, as (unix ms, node). nbwatch
    /// views are polled, so a down there is read from the daemon's history instead.
    pub down_lines: Vec<(u64, String)>,
}

impl View {
    pub fn mark(&mut self, node: &str, up: bool, t_ms: u64) {
        self.alive.insert(node.to_string(), up);
        if up {
            self.down_at.remove(node);
        } else {
            self.down_at.entry(node.to_string()).or_insert(t_ms);
        }
    }
}

pub struct Member {
    pub name: String,
    pub gossip: SocketAddr,
    pub api: Option<SocketAddr>,
    pub child: Child,
    pub view: Arc<Mutex<View>>,
    stop: Arc<AtomicBool>,
}

impl Member {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, then reap. Returns the unix ms just before the signal.
    pub fn kill9(&mut self) -> u64 {
        let t = now_ms();
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stop.store(true, Ordering::Relaxed);
        t
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Launcher {
    pub system: System,
    pub bin_dir: PathBuf,
    pub nbwatch_bin: PathBuf,
    pub run_dir: PathBuf,
    pub metrics_interval: u64,
    pub cluster_size: usize,
    /// nbwatch: the cluster key file every node's gossip is sealed with.
    pub key_file: Option<PathBuf>,
    /// nbwatch: `gossip.profile`.
    pub profile: String,
    /// How often nbwatch pollers ask for /members.
    pub poll_every: Duration,
    /// While set, nbwatch pollers send nothing (`overload` keeps its own requests out of the
    /// load window).
    pub paused: Arc<AtomicBool>,
    /// nbwatch: node `n<i>` is in zone `z<i % zones>` (0: no zones).
    pub zones: usize,
    /// `--loss`: each member in a network namespace of its own (see `netns.rs`).
    pub netns: Option<std::sync::Arc<crate::netns::Netns>>,
}

/// A free loopback port for both UDP and TCP, below the kernel's ephemeral range and never
/// the same twice in a run. A port bound to 0 comes from the ephemeral range, where the
/// daemons' own outgoing connections (joins, API polls) take ports too: one handed out that
/// way could be taken again before its node binds it (it happened at N = 128).
pub fn free_port() -> anyhow::Result<u16> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    const BASE: u32 = 10_000;
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    let span = low.saturating_sub(BASE).max(1_000);
    let start = std::process::id().wrapping_mul(7_919);
    for _ in 0..1_000 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let Ok(port) = u16::try_from(BASE + start.wrapping_add(n) % span) else {
            continue;
        };
        if UdpSocket::bind(("127.0.0.1", port)).is_ok()
            && TcpListener::bind(("127.0.0.1", port)).is_ok()
        {
            return Ok(port);
        }
    }
    anyhow::bail!("no free port")
}

impl Launcher {
    /// A command that runs `program` where a member at `addr` lives: in its namespace, if it
    /// has one (`ip netns exec` execs the program: the child's pid is the program's).
    fn command(&self, program: &std::path::Path, addr: SocketAddr) -> Command {
        match crate::netns::Netns::ns_of(addr) {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &ns]).arg(program);
                c
            }
            None => Command::new(program),
        }
    }

    pub fn spawn(
        &self,
        name: &str,
        gossip: SocketAddr,
        api: Option<SocketAddr>,
        seeds: &[SocketAddr],
    ) -> anyhow::Result<Member> {
        let view = Arc::new(Mutex::new(View::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let err_log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.run_dir.join(format!("{name}.stderr")))?;
        match self.system {
            System::Nbwatch => {
                let api = api.ok_or_else(|| anyhow::anyhow!("nbwatch needs an api address"))?;
                let config = nbwatch::write_config(self, name, gossip, seeds, api)?;
                let out_log = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.run_dir.join(format!("{name}.stdout")))?;
                let child = self
                    .command(&self.nbwatch_bin, gossip)
                    .arg("run")
                    .arg("--config")
                    .arg(&config)
                    .stdin(Stdio::null())
                    .stdout(out_log)
                    .stderr(err_log)
                    .spawn()?;
                nbwatch::spawn_poller(
                    name.to_string(),
                    api,
                    view.clone(),
                    stop.clone(),
                    self.paused.clone(),
                    self.poll_every,
                );
                Ok(Member {
                    name: name.to_string(),
                    gossip,
                    api: Some(api),
                    child,
                    view,
                    stop,
                })
            }
            System::Chitchat | System::Foca | System::Memberlist => {
                let bin = self.bin_dir.join(match self.system {
                    System::Chitchat => "peer-chitchat",
                    System::Memberlist => "peer-memberlist",
                    _ => "peer-foca",
                });
                let mut cmd = self.command(&bin, gossip);
                cmd.arg("--name")
                    .arg(name)
                    .arg("--listen")
                    .arg(gossip.to_string())
                    .arg("--metrics-interval")
                    .arg(self.metrics_interval.to_string())
                    .arg("--cluster-size")
                    .arg(self.cluster_size.to_string());
                for s in seeds {
                    cmd.arg("--seed").arg(s.to_string());
                }
                let mut child = cmd
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(err_log)
                    .spawn()?;
                let stdout = child
                    .stdout
                    .take()
                    .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
                let v = view.clone();
                std::thread::spawn(move || read_lines(stdout, v));
                Ok(Member {
                    name: name.to_string(),
                    gossip,
                    api: None,
                    child,
                    view,
                    stop,
                })
            }
        }
    }
}

fn read_lines(stdout: std::process::ChildStdout, view: Arc<Mutex<View>>) {
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { return };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let t = v["t_ms"].as_u64().unwrap_or_else(now_ms);
        let Ok(mut view) = view.lock() else { return };
        if v.get("ready").is_some() {
            view.ready = true;
        } else if let Some(stats) = v.get("stats") {
            view.bytes_sent = stats["bytes_sent"].as_u64().unwrap_or(0);
            view.datagrams_sent = stats["datagrams_sent"].as_u64().unwrap_or(0);
            view.stats_t_ms = t;
            view.ready = true;
        } else if let (Some(ev), Some(node)) = (v["event"].as_str(), v["node"].as_str()) {
            if ev == "down" {
                view.down_lines.push((t, node.to_string()));
            }
            view.mark(node, ev == "up", t);
        }
    }
}

/// Poll `cond` every 20 ms until it holds or `deadline` passes.
pub fn wait_until(deadline: Duration, cond: impl FnMut() -> bool) -> bool {
    wait_until_every(deadline, Duration::from_millis(20), cond)
}

/// Poll `cond` every `every` until it holds or `deadline` passes.
pub fn wait_until_every(
    deadline: Duration,
    every: Duration,
    mut cond: impl FnMut() -> bool,
) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() >= deadline {
            return false;
        }
        std::thread::sleep(every);
    }
}

/// Every member sees every other member alive.
pub fn converged(members: &[Member]) -> bool {
    members.iter().all(|m| {
        let Ok(view) = m.view.lock() else {
            return false;
        };
        members
            .iter()
            .filter(|o| o.name != m.name)
            .all(|o| view.alive.get(&o.name).copied().unwrap_or(false))
    })
}

pub struct Cluster {
    pub launcher: Launcher,
    pub members: Vec<Member>,
}

impl Cluster {
    /// Start `n` members: the first is the seed of the others. Waits for the
    /// seed to serve before starting the rest, then for full convergence.
    pub fn start(launcher: Launcher, n: usize, deadline: Duration) -> anyhow::Result<Self> {
        let cluster = Self::launch(launcher, n)?;
        let started = Instant::now();
        if !wait_until(deadline, || converged(&cluster.members)) {
            anyhow::bail!(
                "cluster of {n} did not converge within {:?}; {}",
                deadline,
                cluster.describe_gaps()
            );
        }
        eprintln!(
            "# {} n={n}: converged {:.1} s after the last start",
            cluster.launcher.system.label(),
            started.elapsed().as_secs_f64()
        );
        Ok(cluster)
    }

    /// Start `n` members (the seed first, and serving, then the rest) without waiting for
    /// them to find each other.
    pub fn launch(launcher: Launcher, n: usize) -> anyhow::Result<Self> {
        if let Some(netns) = &launcher.netns {
            netns.prepare(n)?;
        }
        let mut cluster = Cluster {
            launcher,
            members: Vec::new(),
        };
        let seed = cluster.spawn_fresh("n0", &[])?;
        let seed_addr = seed.gossip;
        let seed_view = seed.view.clone();
        cluster.members.push(seed);
        if !wait_until(Duration::from_secs(20), || {
            seed_view.lock().map(|v| v.ready).unwrap_or(false)
        }) {
            anyhow::bail!("seed did not come up within 20 s");
        }
        for i in 1..n {
            let m = cluster.spawn_fresh(&format!("n{i}"), &[seed_addr])?;
            cluster.members.push(m);
        }
        Ok(cluster)
    }

    /// How many (member, other member) pairs are not seen alive.
    pub fn gap_count(&self) -> usize {
        self.members
            .iter()
            .map(|m| {
                let Ok(view) = m.view.lock() else {
                    return self.members.len() - 1;
                };
                self.members
                    .iter()
                    .filter(|o| {
                        o.name != m.name && !view.alive.get(&o.name).copied().unwrap_or(false)
                    })
                    .count()
            })
            .sum()
    }

    pub fn spawn_fresh(&self, name: &str, seeds: &[SocketAddr]) -> anyhow::Result<Member> {
        let nbwatch = self.launcher.system == System::Nbwatch;
        let (gossip, api): (SocketAddr, Option<SocketAddr>) = match &self.launcher.netns {
            // A namespace of its own: the same ports for every member.
            Some(netns) => {
                let slot = netns.make()?;
                (slot.gossip, nbwatch.then_some(slot.api))
            }
            None => (
                ([127, 0, 0, 1], free_port()?).into(),
                match nbwatch {
                    true => Some(([127, 0, 0, 1], free_port()?).into()),
                    false => None,
                },
            ),
        };
        self.launcher.spawn(name, gossip, api, seeds)
    }

    /// Which member misses whom (for error messages).
    pub fn describe_gaps(&self) -> String {
        let mut out = Vec::new();
        for m in &self.members {
            let Ok(view) = m.view.lock() else { continue };
            let missing: Vec<&str> = self
                .members
                .iter()
                .filter(|o| o.name != m.name && !view.alive.get(&o.name).copied().unwrap_or(false))
                .map(|o| o.name.as_str())
                .collect();
            if !missing.is_empty() {
                out.push(format!("{} misses {}", m.name, missing.join(",")));
            }
        }
        out.join("; ")
    }
}
