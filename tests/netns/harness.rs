//! The multi-host harness: each host is a network namespace with its own `nbwatch run`, joined
//! to the others by a veth pair on a bridge that lives in a namespace of its own, so no traffic
//! leaves the namespaces a test makes. Faults are nftables rules inside the hosts (loss with
//! `numgen random`, cuts by address), signals to the daemons (kill -9, SIGSTOP/SIGCONT,
//! SIGTERM and a start again), a CPU cgroup quota with a busy loop and API pollers beside it,
//! and wall clocks set off by libfaketime. Needs root, `ip` (iproute2), `nft` (nftables) and
//! Debian's libfaketime.
//!
//! Every host runs one supervised service (`sleep`) tagged with the run's name in its
//! environment, so that a service process left without its daemon is found (see
//! [`Net::orphans`]).
//!
//! Namespaces are named `nbw<pid>...`: they are removed when the [`Net`] is dropped (also when
//! the test fails), and a later run removes those, and the tagged processes, left behind by a
//! run that was interrupted. Only one [`Net`] exists at a time in a test binary (a global lock):
//! scenarios with many hosts share two cores and must not skew each other's timings.

use crate::common::sunk;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const BIN: &str = env!("CARGO_BIN_EXE_nbwatch");
/// How long a condition may take: detection is a few seconds (gossip every second, a 4 s
/// suspicion timeout at most, a 1 s alert settle), a heal under 30 s; the rest is margin for a
/// loaded machine with two cores.
pub const DEADLINE: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(500);
const PREFIX: &str = "nbw";
/// The environment variable that tags the test services with the run's name.
const TAG: &str = "NBWATCH_NETNS_RUN";

static SERIAL: Mutex<()> = Mutex::new(());
/// Debian's libfaketime (package `libfaketime`).
const FAKETIME_LIB: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// Where CPU cgroups are made: the v2 hierarchy if it has the `cpu` controller, else v1's.
fn cpu_cgroup_root() -> PathBuf {
    let v2 = Path::new("/sys/fs/cgroup");
    let controllers = std::fs::read_to_string(v2.join("cgroup.controllers")).unwrap_or_default();
    if controllers.split_whitespace().any(|c| c == "cpu") {
        let _ = std::fs::write(v2.join("cgroup.subtree_control"), "+cpu");
        return v2.to_path_buf();
    }
    v2.join("cpu")
}

pub fn run(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{args:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{args:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn must(args: &[&str]) -> String {
    run(args).unwrap_or_else(|e| panic!("{e}"))
}

pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Milliseconds of an RFC 3339 UTC time as nbwatch writes it ("2026-11-22T15:30:09.120Z").
pub fn rfc3339_ms(s: &str) -> Option<u64> {
    let t = humantime::parse_rfc3339_weak(s).ok()?;
    Some(t.duration_since(UNIX_EPOCH).ok()?.as_millis() as u64)
}

/// The milliseconds of field `key` of a JSON object, if it is an RFC 3339 time.
pub fn ms(v: &Value, key: &str) -> Option<u64> {
    v[key].as_str().and_then(rfc3339_ms)
}

/// The value of `var` in the environment of process `pid`.
fn environ(pid: u32, var: &str) -> Option<String> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{var}=");
    env.split(|b| *b == 0).find_map(|v| {
        v.strip_prefix(prefix.as_bytes())
            .map(|s| String::from_utf8_lossy(s).into_owned())
    })
}

/// The parent of `pid`, unless it is gone or a zombie.
fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    if fields.next()? == "Z" {
        return None;
    }
    fields.next()?.parse().ok()
}

/// Live processes whose `TAG` starts with `prefix`, with their tag.
fn tagged(prefix: &str) -> Vec<(u32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, environ(pid, TAG)?)))
        .filter(|(pid, tag)| tag.starts_with(prefix) && parent(*pid).is_some())
        .collect()
}

/// The pid in a name `nbw<pid>...`.
fn pid_in(name: &str) -> Option<u32> {
    let digits: String = name
        .strip_prefix(PREFIX)?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Removes namespaces and service processes of earlier runs whose test process is gone.
fn sweep_stale() {
    let gone = |name: &str| {
        pid_in(name).is_some_and(|pid| {
            pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
        })
    };
    if let Ok(list) = run(&["ip", "netns", "list"]) {
        for line in list.lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            if gone(name) {
                let _ = run(&["ip", "netns", "del", name]);
            }
        }
    }
    if let Ok(groups) = std::fs::read_dir(cpu_cgroup_root()) {
        for g in groups.flatten() {
            if gone(&g.file_name().to_string_lossy()) {
                let _ = std::fs::remove_dir(g.path());
            }
        }
    }
    for (pid, tag) in tagged(PREFIX) {
        if gone(&tag) {
            let _ = run(&["kill", "-KILL", &pid.to_string()]);
        }
    }
}

pub struct Host {
    pub name: String,
    pub ns: String,
    pub ip: String,
    pub config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    /// Extra environment of the daemon (a skewed clock: see [`Net::skew_clock`]).
    env: Vec<(String, String)>,
}

impl Host {
    /// The daemon's pid while it runs (`ip netns exec` execs it: the child is the daemon).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

pub struct Net {
    pub dir: tempfile::TempDir,
    base: String,
    bridge: String,
    pub hosts: Vec<Host>,
    extra: String,
    /// Namespaces besides the hosts' and the bridge's (a router, a second bridge).
    more_ns: Vec<String>,
    /// The file every host's exec sink appends its alerts to.
    pub sink: PathBuf,
    /// Held until the namespaces are gone (declared last: dropped after `Drop::drop`).
    _serial: MutexGuard<'static, ()>,
}

/// A side of a partition: host indexes.
pub type Side = Vec<usize>;

impl Net {
    /// `n` hosts `n0..` at 10.77.0.1.. on one bridge; `extra` is appended to every config.
    /// Nothing runs yet: see [`Net::start`].
    pub fn new(tag: &str, n: usize, extra: &str) -> Net {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        sweep_stale();
        let dir = tempfile::tempdir().expect("tempdir");
        let base = format!("{PREFIX}{}{tag}", std::process::id());
        let bridge = format!("{base}br");
        let sink = dir.path().join("alerts.jsonl");
        let trees = dir.path().join("trees");
        std::fs::create_dir_all(&trees).expect("trees folder");
        std::fs::write(
            trees.join("watch.toml"),
            format!(
                "name = \"watch\"\nstrategy = \"one_for_one\"\nintensity = 3\nperiod = \"60s\"\n\
                 [[children]]\nname = \"sleeper\"\ncommand = [\"sleep\", \"86400\"]\n\
                 shutdown = \"2s\"\nenv = {{ {TAG} = \"{base}\" }}\n"
            ),
        )
        .expect("tree file");
        let mut net = Net {
            dir,
            base,
            bridge: bridge.clone(),
            hosts: Vec::new(),
            extra: extra.to_string(),
            more_ns: Vec::new(),
            sink,
            _serial: serial,
        };
        must(&["ip", "netns", "add", &bridge]);
        must(&["ip", "-n", &bridge, "link", "add", "br0", "type", "bridge"]);
        must(&["ip", "-n", &bridge, "link", "set", "br0", "up"]);
        for _ in 0..n {
            net.add_host();
        }
        net
    }

    /// Adds host `n<len>` (not started) and returns its index.
    pub fn add_host(&mut self) -> usize {
        let bridge = self.bridge.clone();
        let ip = format!("10.77.0.{}", self.hosts.len() + 1);
        self.add_host_on(&bridge, &ip)
    }

    /// Adds host `n<len>` (not started) on a second bridge, 10.78.0.0/24, that the first
    /// reaches only through a router namespace (IPv4 forwarding on, no multicast routing).
    pub fn add_routed_host(&mut self) -> usize {
        let (router, second) = (format!("{}rt", self.base), format!("{}b2", self.base));
        if !self.more_ns.contains(&router) {
            let first = self.bridge.clone();
            must(&["ip", "netns", "add", &second]);
            self.more_ns.push(second.clone());
            must(&["ip", "-n", &second, "link", "add", "br0", "type", "bridge"]);
            must(&["ip", "-n", &second, "link", "set", "br0", "up"]);
            must(&["ip", "netns", "add", &router]);
            self.more_ns.push(router.clone());
            for (leg, peer, bridge, ip) in [
                ("r0", "rp0", &first, "10.77.0.254/24"),
                ("r1", "rp1", &second, "10.78.0.254/24"),
            ] {
                must(&[
                    "ip", "-n", &router, "link", "add", leg, "type", "veth", "peer", "name", peer,
                    "netns", bridge,
                ]);
                must(&["ip", "-n", bridge, "link", "set", peer, "master", "br0"]);
                must(&["ip", "-n", bridge, "link", "set", peer, "up"]);
                must(&["ip", "-n", &router, "addr", "add", ip, "dev", leg]);
                must(&["ip", "-n", &router, "link", "set", leg, "up"]);
            }
            must(&[
                "ip",
                "netns",
                "exec",
                &router,
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
            ]);
            for h in &self.hosts {
                must(&[
                    "ip",
                    "-n",
                    &h.ns,
                    "route",
                    "add",
                    "10.78.0.0/24",
                    "via",
                    "10.77.0.254",
                ]);
            }
        }
        let ip = format!("10.78.0.{}", self.hosts.len() + 1);
        let i = self.add_host_on(&second, &ip);
        must(&[
            "ip",
            "-n",
            &self.hosts[i].ns,
            "route",
            "add",
            "default",
            "via",
            "10.78.0.254",
        ]);
        i
    }

    /// Rewrites host `i`'s `gossip.seeds` (before it starts) and adds `more` to its
    /// `[gossip]` section (keys added by an earlier call stay).
    pub fn set_gossip(&self, i: usize, seeds: &[&str], more: &str) {
        let config = &self.hosts[i].config;
        let text = std::fs::read_to_string(config).expect("config");
        let line = text
            .lines()
            .find(|l| l.starts_with("seeds = "))
            .expect("a seeds line")
            .to_string();
        let quoted: Vec<String> = seeds.iter().map(|s| format!("\"{s}\"")).collect();
        let new = format!("seeds = [{}]\n{more}", quoted.join(", "));
        std::fs::write(config, text.replacen(&line, new.trim_end(), 1)).expect("config");
    }

    /// Gives host `i` a cluster key of its own (another cluster's), before it starts.
    pub fn own_key(&self, i: usize) {
        let key_file = self.dir.path().join(format!("n{i}.key"));
        let key = nbwatch::secure::Key::generate().encode();
        nbwatch::secure::keyring::write_private(&key_file, key.as_bytes()).expect("write the key");
        let config = &self.hosts[i].config;
        let text = std::fs::read_to_string(config).expect("config");
        let shared = self.dir.path().join("cluster.key").display().to_string();
        let text = text.replacen(&shared, &key_file.display().to_string(), 1);
        std::fs::write(config, text).expect("config");
    }

    fn add_host_on(&mut self, bridge: &str, ip: &str) -> usize {
        let i = self.hosts.len();
        let ns = format!("{}h{i}", self.base);
        let (ip, bridge) = (ip.to_string(), bridge.to_string());
        must(&["ip", "netns", "add", &ns]);
        let (a, b) = (format!("va{i}"), format!("vb{i}"));
        must(&[
            "ip", "-n", &ns, "link", "add", &a, "type", "veth", "peer", "name", &b, "netns",
            &bridge,
        ]);
        must(&["ip", "-n", &ns, "link", "set", &a, "name", "eth0"]);
        must(&[
            "ip",
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{ip}/24"),
            "dev",
            "eth0",
        ]);
        must(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
        must(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        must(&["ip", "-n", &bridge, "link", "set", &b, "master", "br0"]);
        must(&["ip", "-n", &bridge, "link", "set", &b, "up"]);
        // n0 and n1 seed each other, everyone else both: any host can restart and find the
        // cluster, n0 included.
        let seeds: Vec<String> = [0, 1]
            .iter()
            .filter(|s| **s != i)
            .map(|s| format!("\"10.77.0.{}:7710\"", s + 1))
            .collect();
        let config = self.dir.path().join(format!("n{i}.toml"));
        let data = self.dir.path().join(format!("n{i}"));
        // The hosts talk over a (virtual) network: their gossip is sealed with one key, so
        // these scenarios exercise the encrypted path end to end.
        let key_file = self.dir.path().join("cluster.key");
        if !key_file.exists() {
            let key = nbwatch::secure::Key::generate().encode();
            nbwatch::secure::keyring::write_private(&key_file, key.as_bytes())
                .expect("write the cluster key");
        }
        std::fs::write(
            &config,
            format!(
                "[node]\nname = \"n{i}\"\ndata_dir = \"{}\"\n\
                 [gossip]\nlisten = \"{ip}:7710\"\nseeds = [{}]\nkey_file = \"{}\"\n\
                 [metrics]\ninterval = \"1s\"\n[api]\nlisten = \"127.0.0.1:7711\"\n\
                 [supervision]\ntrees = \"{}\"\n\
                 [[alerts.sinks]]\ntype = \"exec\"\ncommand = [\"/bin/sh\", \"-c\", \"cat >> {}\"]\n{}",
                data.display(),
                seeds.join(", "),
                key_file.display(),
                self.dir.path().join("trees").display(),
                self.sink.display(),
                self.extra,
            ),
        )
        .expect("config");
        self.hosts.push(Host {
            name: format!("n{i}"),
            ns,
            ip,
            config,
            log: self.dir.path().join(format!("n{i}.log")),
            child: None,
            env: Vec::new(),
        });
        i
    }

    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    pub fn names(&self) -> Vec<String> {
        self.hosts.iter().map(|h| h.name.clone()).collect()
    }

    pub fn start(&mut self, i: usize) {
        self.start_with(i, Path::new(BIN));
    }

    /// Starts host `i` with another build of nbwatch (a previous release, for an upgrade).
    pub fn start_with(&mut self, i: usize, bin: &Path) {
        let h = &mut self.hosts[i];
        assert!(h.child.is_none(), "{} runs already", h.name);
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&h.log)
            .expect("log");
        let child = Command::new("ip")
            .args(["netns", "exec", &h.ns])
            .arg(bin)
            .args(["run", "--config"])
            .arg(&h.config)
            .env("RUST_LOG", "info")
            .envs(h.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn nbwatch in its namespace");
        h.child = Some(child);
    }

    /// Starts every host and waits until each sees all of them alive.
    pub fn start_all(&mut self) {
        for i in 0..self.len() {
            self.start(i);
        }
        let all: Vec<usize> = (0..self.len()).collect();
        self.wait_all_alive(&all);
    }

    fn signal(&self, i: usize, signal: &str) {
        let pid = self.hosts[i].pid().expect("the daemon runs");
        must(&["kill", &format!("-{signal}"), &pid.to_string()]);
    }

    /// kill -9 the daemon of host `i` (its services are left to its next start).
    pub fn kill9(&mut self, i: usize) {
        self.signal(i, "KILL");
        if let Some(mut c) = self.hosts[i].child.take() {
            let _ = c.wait();
        }
    }

    /// SIGSTOP: the daemon hangs, its sockets stay open.
    pub fn hang(&self, i: usize) {
        self.signal(i, "STOP");
    }

    pub fn resume(&self, i: usize) {
        self.signal(i, "CONT");
    }

    /// SIGTERM and wait for the exit (a graceful leave: the daemon stops its services).
    pub fn stop(&mut self, i: usize) {
        self.signal(i, "TERM");
        let mut child = self.hosts[i].child.take().expect("the daemon runs");
        let end = Instant::now() + DEADLINE;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    assert!(status.success(), "n{i} exited with {status} after SIGTERM");
                    return;
                }
                Ok(None) if Instant::now() < end => std::thread::sleep(Duration::from_millis(50)),
                other => panic!(
                    "n{i} did not exit after SIGTERM: {other:?}\n{}",
                    self.logs()
                ),
            }
        }
    }

    /// A client command run inside host `i`'s namespace (its API is on its own loopback).
    pub fn client(&self, i: usize, args: &[&str]) -> Result<String, String> {
        // Bounded: a hung daemon's API accepts connections and never answers.
        let mut all = vec![
            "ip",
            "netns",
            "exec",
            &self.hosts[i].ns,
            "timeout",
            "10",
            BIN,
        ];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--api", "127.0.0.1:7711"]);
        run(&all)
    }

    fn json_list(&self, i: usize, args: &[&str]) -> Option<Vec<Value>> {
        self.client(i, args)
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
            .and_then(|v: Value| v.as_array().cloned())
    }

    pub fn members(&self, i: usize) -> Vec<Value> {
        self.json_list(i, &["members", "--json"])
            .unwrap_or_default()
    }

    pub fn state_of(&self, i: usize, name: &str) -> Option<String> {
        self.members(i)
            .into_iter()
            .find(|m| m["name"] == name)
            .and_then(|m| m["state"].as_str().map(str::to_string))
    }

    /// The leader as host `i` sees it.
    pub fn leader(&self, i: usize) -> Option<usize> {
        let m = self.members(i);
        let name = m.iter().find(|m| m["is_leader"] == true)?["name"].as_str()?;
        self.hosts.iter().position(|h| h.name == name)
    }

    /// Host `i`'s recorded events (its history), oldest first; `None` if it did not answer.
    pub fn events(&self, i: usize) -> Option<Vec<Value>> {
        self.json_list(i, &["events", "--json", "--since", "1h"])
    }

    /// Waits until every host of `hosts` sees exactly those hosts, all alive... and no other
    /// host alive (a member not in `hosts` may be anything but alive).
    pub fn wait_all_alive(&self, hosts: &[usize]) {
        let names: Vec<&str> = hosts.iter().map(|j| self.hosts[*j].name.as_str()).collect();
        for &i in hosts {
            self.wait_until(&format!("n{i} sees {names:?} alive"), || {
                let m = self.members(i);
                names
                    .iter()
                    .all(|n| m.iter().any(|e| e["name"] == *n && e["state"] == "alive"))
            });
        }
    }

    /// Replaces host `i`'s fault rules by these (nftables statements of an input and an
    /// output chain).
    fn rules(&self, i: usize, input: &[String], output: &[String]) {
        let _ = run(&[
            "ip",
            "netns",
            "exec",
            &self.hosts[i].ns,
            "nft",
            "delete",
            "table",
            "inet",
            "nbwfault",
        ]);
        let rules = format!(
            "table inet nbwfault {{\n chain in {{ type filter hook input priority 0;\n{}\n }}\n \
             chain out {{ type filter hook output priority 0;\n{}\n }}\n}}\n",
            input.join("\n"),
            output.join("\n"),
        );
        let file = self.dir.path().join(format!("fault-{i}.nft"));
        std::fs::write(&file, rules).expect("rules");
        must(&[
            "ip",
            "netns",
            "exec",
            &self.hosts[i].ns,
            "nft",
            "-f",
            &file.to_string_lossy(),
        ]);
    }

    fn ips(&self, hosts: &[usize]) -> String {
        let ips: Vec<&str> = hosts.iter().map(|j| self.hosts[*j].ip.as_str()).collect();
        format!("{{ {} }}", ips.join(", "))
    }

    /// Drops all traffic between the two sides, inside every host of both.
    pub fn partition(&self, a: &[usize], b: &[usize]) {
        for (mine, theirs) in [(a, b), (b, a)] {
            let set = self.ips(theirs);
            for &i in mine {
                self.rules(
                    i,
                    &[format!("ip saddr {set} drop")],
                    &[format!("ip daddr {set} drop")],
                );
            }
        }
    }

    /// Drops what `from` sends to `to` (only that direction), at the senders.
    pub fn one_way(&self, from: &[usize], to: &[usize]) {
        let set = self.ips(to);
        for &i in from {
            self.rules(i, &[], &[format!("ip daddr {set} drop")]);
        }
    }

    /// Cuts host `i` from every other host.
    pub fn isolate(&self, i: usize) {
        self.rules(
            i,
            &["iifname \"eth0\" drop".to_string()],
            &["oifname \"eth0\" drop".to_string()],
        );
    }

    /// Every host drops `percent` % of what it sends, at random: that loss on every link.
    pub fn loss(&self, percent: u32) {
        for i in 0..self.len() {
            self.rules(
                i,
                &[],
                &[format!(
                    "oifname \"eth0\" numgen random mod 100 < {percent} drop"
                )],
            );
        }
    }

    /// Removes every fault rule.
    pub fn heal(&self) {
        for h in &self.hosts {
            let _ = run(&[
                "ip", "netns", "exec", &h.ns, "nft", "delete", "table", "inet", "nbwfault",
            ]);
        }
    }

    /// This run's service processes, with their parents.
    pub fn services(&self) -> Vec<(u32, u32)> {
        tagged(&self.base)
            .into_iter()
            .filter(|(_, tag)| *tag == self.base)
            .filter_map(|(pid, _)| Some((pid, parent(pid)?)))
            .collect()
    }

    /// Service processes whose parent is not a running daemon of this net.
    pub fn orphans(&self) -> Vec<(u32, u32)> {
        let daemons: BTreeSet<u32> = self.hosts.iter().filter_map(Host::pid).collect();
        self.services()
            .into_iter()
            .filter(|(_, ppid)| !daemons.contains(ppid))
            .collect()
    }

    /// Waits until no service process is an orphan and every running daemon has its one
    /// service.
    pub fn wait_no_orphans(&self) {
        let running = self.hosts.iter().filter(|h| h.child.is_some()).count();
        self.wait_until("no service process is orphaned", || {
            self.orphans().is_empty() && self.services().len() == running
        });
    }

    /// Host `i`'s whole log.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.hosts[i].log).unwrap_or_default()
    }

    /// The last lines of every host's log.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for h in &self.hosts {
            let text = std::fs::read_to_string(&h.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(30)..];
            out.push_str(&format!("---- {} ----\n{}\n", h.name, tail.join("\n")));
        }
        out
    }

    pub fn wait_until(&self, what: &str, mut cond: impl FnMut() -> bool) {
        let end = Instant::now() + DEADLINE;
        while !cond() {
            assert!(
                Instant::now() < end,
                "timed out waiting until {what}\n{}",
                self.logs()
            );
            std::thread::sleep(POLL);
        }
    }

    /// From its next start, host `i`'s daemon reads a wall clock `offset` off (libfaketime's
    /// `FAKETIME`, e.g. "+1h" or "-5m"), its monotonic clock untouched. Needs Debian's
    /// `libfaketime`.
    pub fn skew_clock(&mut self, i: usize, offset: &str) {
        let lib = Path::new(FAKETIME_LIB);
        assert!(
            lib.exists(),
            "{FAKETIME_LIB} is missing: install Debian's libfaketime"
        );
        self.hosts[i].env = vec![
            ("LD_PRELOAD".into(), FAKETIME_LIB.into()),
            ("FAKETIME".into(), offset.into()),
            ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
            ("FAKETIME_DONT_RESET".into(), "1".into()),
        ];
    }

    /// Limits host `i`'s daemon (and the services it starts from now on) to `percent` % of
    /// one core in every `period`, with a CPU cgroup's CFS quota (cgroup v2's `cpu.max`, or
    /// v1's `cpu.cfs_quota_us`); `None` lifts the limit. The usual period is 100 ms (systemd's
    /// `CPUQuota=`, docker's `--cpus`); a longer one freezes the daemon for longer stretches.
    pub fn throttle(&self, i: usize, percent: Option<u32>, period: Duration) {
        let period_us = period.as_micros() as u64;
        let pid = self.hosts[i].pid().expect("the daemon runs");
        let group = cpu_cgroup_root().join(format!("{}h{i}", self.base));
        std::fs::create_dir_all(&group).expect("create a CPU cgroup");
        let v2 = group.join("cpu.max").exists();
        let quota = |p: u32| period_us * u64::from(p) / 100;
        let quota = match (percent, v2) {
            (Some(p), true) => format!("{} {period_us}", quota(p)),
            (Some(p), false) => quota(p).to_string(),
            (None, true) => format!("max {period_us}"),
            (None, false) => "-1".into(),
        };
        if !v2 {
            // The quota first: a period shorter than the quota in place is refused.
            let _ = std::fs::write(group.join("cpu.cfs_quota_us"), "-1");
            std::fs::write(group.join("cpu.cfs_period_us"), period_us.to_string())
                .expect("cgroup period");
        }
        let file = group.join(if v2 { "cpu.max" } else { "cpu.cfs_quota_us" });
        std::fs::write(&file, quota).expect("cgroup quota");
        std::fs::write(group.join("cgroup.procs"), pid.to_string()).expect("move into cgroup");
    }

    /// Starts a busy loop in host `i`'s CPU cgroup (see [`Net::throttle`]), competing with its
    /// daemon for the quota as another program on a starved host would; it ends by itself
    /// after `span`.
    pub fn hog(&self, i: usize, span: Duration) -> Child {
        let group = cpu_cgroup_root().join(format!("{}h{i}", self.base));
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "echo $$ > {}/cgroup.procs && exec timeout {} sh -c 'while :; do :; done'",
                group.display(),
                span.as_secs().max(1)
            ))
            .stdin(Stdio::null())
            .spawn()
            .expect("start a busy loop")
    }

    /// Starts `clients` loops that ask host `i`'s API for its members, one request after
    /// the other, as a dashboard or a script polling it hard would; they end after `span`.
    /// Returns the file each loop counts its answered requests in (one line each).
    pub fn poll_api(&self, i: usize, clients: usize, span: Duration) -> Vec<(Child, PathBuf)> {
        (0..clients)
            .map(|c| {
                let count = self.dir.path().join(format!("poll-{i}-{c}"));
                let child = Command::new("ip")
                    .args(["netns", "exec", &self.hosts[i].ns, "timeout"])
                    .arg(span.as_secs().max(1).to_string())
                    .args(["sh", "-c"])
                    .arg(format!(
                        "while :; do {BIN} members --json --api 127.0.0.1:7711 >/dev/null \
                         2>&1 && echo >> {}; done",
                        count.display()
                    ))
                    .stdin(Stdio::null())
                    .spawn()
                    .expect("start an API poller");
                (child, count)
            })
            .collect()
    }

    /// How long host `i`'s daemon was held back by its CPU quota so far (`throttled_usec` or
    /// `throttled_time` of the cgroup's `cpu.stat`).
    pub fn throttled(&self, i: usize) -> Duration {
        let group = cpu_cgroup_root().join(format!("{}h{i}", self.base));
        let stat = std::fs::read_to_string(group.join("cpu.stat")).unwrap_or_default();
        stat.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(' ')?;
                let v: u64 = v.trim().parse().ok()?;
                match k {
                    "throttled_usec" => Some(Duration::from_micros(v)),
                    "throttled_time" => Some(Duration::from_nanos(v)),
                    _ => None,
                }
            })
            .unwrap_or_default()
    }

    /// Starts capturing UDP datagrams to port 9 (Wake-on-LAN) on the bridge, into a pcap
    /// file; returns once the capture listens. Stopped when the returned child is killed.
    pub fn capture_wol(&self) -> (Child, PathBuf) {
        let file = self.dir.path().join("wol.pcap");
        let err = self.dir.path().join("tcpdump.err");
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.bridge,
                "tcpdump",
                "-i",
                "br0",
                "-U",
                "-n",
                "-w",
            ])
            .arg(&file)
            .args(["udp", "port", "9"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err).expect("tcpdump's log"))
            .spawn()
            .expect("start tcpdump (Debian's tcpdump package)");
        self.wait_until("tcpdump listens on the bridge", || {
            std::fs::read_to_string(&err).is_ok_and(|t| t.contains("listening on"))
        });
        (child, file)
    }

    /// Host `i`'s MAC address, as its interface has it.
    pub fn mac(&self, i: usize) -> String {
        let text = must(&["ip", "-n", &self.hosts[i].ns, "-o", "link", "show", "eth0"]);
        let mac = text
            .split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .unwrap_or_else(|| panic!("no MAC address in {text}"));
        mac.to_string()
    }

    /// The alerts sent so far, by incident id.
    pub fn alerts(&self) -> BTreeMap<String, Vec<Value>> {
        let mut by_id: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for a in sunk(&self.sink) {
            let id = a["id"].as_str().unwrap_or_default().to_string();
            by_id.entry(id).or_default().push(a);
        }
        by_id
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for h in &mut self.hosts {
            if let Some(c) = h.child.as_mut() {
                let _ = c.kill(); // SIGKILL also ends a stopped process
                let _ = c.wait();
            }
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        for (pid, _) in self.services() {
            let _ = run(&["kill", "-KILL", &pid.to_string()]);
        }
        for (i, h) in self.hosts.iter().enumerate() {
            let _ = run(&["ip", "netns", "del", &h.ns]);
            let _ = std::fs::remove_dir(cpu_cgroup_root().join(format!("{}h{i}", self.base)));
        }
        let _ = run(&["ip", "netns", "del", &self.bridge]);
        for ns in &self.more_ns {
            let _ = run(&["ip", "netns", "del", ns]);
        }
    }
}

/// The packets of a pcap file (the classic format tcpdump writes), each as its bytes.
pub fn pcap_packets(file: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(file).unwrap_or_default();
    if bytes.len() < 24 {
        return Vec::new();
    }
    let little = bytes[..4] == [0xd4, 0xc3, 0xb2, 0xa1];
    let u32_at = |at: usize| {
        let b = [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
        if little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let len = u32_at(at + 8) as usize;
        let start = at + 16;
        if start + len > bytes.len() {
            break;
        }
        out.push(bytes[start..start + len].to_vec());
        at = start + len;
    }
    out
}

/// How many of `packets` carry the Wake-on-LAN magic packet for `mac` (`aa:bb:...`).
pub fn magic_packets_for(packets: &[Vec<u8>], mac: &str) -> usize {
    let mac: Vec<u8> = mac
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).expect("a MAC address"))
        .collect();
    let mut magic = vec![0xffu8; 6];
    for _ in 0..16 {
        magic.extend_from_slice(&mac);
    }
    packets
        .iter()
        .filter(|p| p.windows(magic.len()).any(|w| w == magic.as_slice()))
        .count()
}
