//! Real hosts on one machine: each host is a network namespace with its own `nbwatch run`,
//! joined to the others by a veth pair on a bridge that lives in a namespace of its own, so no
//! traffic leaves the namespaces this test makes. Faults are nftables rules inside the hosts.
//! Needs root, `ip` (iproute2) and `nft` (nftables).
//!
//! Namespaces are named `nbw<pid>...`: they are removed when the test ends (also when it
//! fails), and a later run removes those left behind by a run that was interrupted.

mod common;
use common::{sunk, sunk_ids};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_nbwatch");
const DEADLINE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(250);
const PREFIX: &str = "nbw";

fn run(args: &[&str]) -> Result<String, String> {
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

/// Removes namespaces of earlier runs whose process is gone.
fn sweep_stale() {
    let Ok(list) = run(&["ip", "netns", "list"]) else {
        return;
    };
    for line in list.lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let pid: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = run(&["ip", "netns", "del", name]);
        }
    }
}

struct Host {
    name: String,
    ns: String,
    ip: String,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

struct Net {
    dir: tempfile::TempDir,
    bridge: String,
    hosts: Vec<Host>,
}

impl Net {
    /// `n` hosts `n0..`, 10.77.0.1.. on one bridge; `extra` is appended to every config.
    fn new(tag: &str, n: usize, extra: &str) -> Net {
        sweep_stale();
        let dir = tempfile::tempdir().expect("tempdir");
        let base = format!("{PREFIX}{}{tag}", std::process::id());
        let bridge = format!("{base}br");
        let mut net = Net {
            dir,
            bridge: bridge.clone(),
            hosts: Vec::new(),
        };
        must(&["ip", "netns", "add", &bridge]);
        must(&["ip", "-n", &bridge, "link", "add", "br0", "type", "bridge"]);
        must(&["ip", "-n", &bridge, "link", "set", "br0", "up"]);
        for i in 0..n {
            let ns = format!("{base}h{i}");
            let ip = format!("10.77.0.{}", i + 1);
            must(&["ip", "netns", "add", &ns]);
            net.hosts.push(Host {
                name: format!("n{i}"),
                ns: ns.clone(),
                ip: ip.clone(),
                config: net.dir.path().join(format!("n{i}.toml")),
                log: net.dir.path().join(format!("n{i}.log")),
                child: None,
            });
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
            let seeds = if i == 0 {
                String::new()
            } else {
                "seeds = [\"10.77.0.1:7710\"]\n".to_string()
            };
            let data = net.dir.path().join(format!("n{i}"));
            // The hosts talk over a (virtual) network: their gossip is sealed with one key,
            // so these tests exercise the encrypted path end to end.
            let key_file = net.dir.path().join("cluster.key");
            if i == 0 {
                let key = nbwatch::secure::Key::generate().encode();
                nbwatch::secure::keyring::write_private(&key_file, key.as_bytes())
                    .expect("write the cluster key");
            }
            std::fs::write(
                &net.hosts[i].config,
                format!(
                    "[node]\nname = \"n{i}\"\ndata_dir = \"{}\"\n[gossip]\nlisten = \"{ip}:7710\"\n{seeds}\
                     key_file = \"{}\"\n[metrics]\ninterval = \"1s\"\n[api]\nlisten = \"127.0.0.1:7711\"\n\
                     [supervision]\ntrees = \"{}\"\n{extra}",
                    data.display(),
                    key_file.display(),
                    net.dir.path().join("no-trees").display(),
                ),
            )
            .expect("config");
        }
        net
    }

    fn start(&mut self, i: usize) {
        let h = &mut self.hosts[i];
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&h.log)
            .expect("log");
        let child = Command::new("ip")
            .args(["netns", "exec", &h.ns, BIN, "run", "--config"])
            .arg(&h.config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn nbwatch in its namespace");
        h.child = Some(child);
    }

    /// A client command run inside host `i`'s namespace (its API is on its own loopback).
    fn client(&self, i: usize, args: &[&str]) -> Result<String, String> {
        let mut all = vec!["ip", "netns", "exec", &self.hosts[i].ns, BIN];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--api", "127.0.0.1:7711"]);
        run(&all)
    }

    fn members(&self, i: usize) -> Vec<Value> {
        self.client(i, &["members", "--json"])
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
            .and_then(|v: Value| v.as_array().cloned())
            .unwrap_or_default()
    }

    fn state_of(&self, i: usize, name: &str) -> Option<String> {
        self.members(i)
            .into_iter()
            .find(|m| m["name"] == name)
            .and_then(|m| m["state"].as_str().map(str::to_string))
    }

    /// Drops all traffic between the two sides, inside every host of both.
    fn partition(&self, a: &[usize], b: &[usize]) {
        for (mine, theirs) in [(a, b), (b, a)] {
            let ips: Vec<&str> = theirs.iter().map(|j| self.hosts[*j].ip.as_str()).collect();
            let set = ips.join(", ");
            for &i in mine {
                let rules = format!(
                    "table inet nbwfault {{\n chain in {{ type filter hook input priority 0; ip saddr {{ {set} }} drop; }}\n \
                     chain out {{ type filter hook output priority 0; ip daddr {{ {set} }} drop; }}\n}}\n"
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
        }
    }

    fn heal(&self) {
        for h in &self.hosts {
            let _ = run(&[
                "ip", "netns", "exec", &h.ns, "nft", "delete", "table", "inet", "nbwfault",
            ]);
        }
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for h in &self.hosts {
            let text = std::fs::read_to_string(&h.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(30)..];
            out.push_str(&format!("---- {} ----\n{}\n", h.name, tail.join("\n")));
        }
        out
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for h in &mut self.hosts {
            if let Some(c) = h.child.as_mut() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        for h in &self.hosts {
            let _ = run(&["ip", "netns", "del", &h.ns]);
        }
        let _ = run(&["ip", "netns", "del", &self.bridge]);
    }
}

fn wait_until(net: &Net, what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !cond() {
        assert!(
            Instant::now() < end,
            "timed out waiting until {what}\n{}",
            net.logs()
        );
        std::thread::sleep(POLL);
    }
}

/// True when host `i`'s alert log shows an incident starting with `prefix` as sent.
fn sent_in_view(net: &Net, i: usize, prefix: &str) -> bool {
    net.client(i, &["alerts", "--json"])
        .ok()
        .and_then(|s| serde_json::from_str::<Value>(&s).ok())
        .and_then(|v| v.as_array().cloned())
        .is_some_and(|log| {
            log.iter().any(|e| {
                e["state"] == "sent" && e["id"].as_str().is_some_and(|id| id.starts_with(prefix))
            })
        })
}

#[test]
fn a_two_three_split_sends_one_alert_per_side_and_nothing_again_after_the_heal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("alerts.jsonl");
    let extra = format!(
        "[[alerts.sinks]]\ntype = \"exec\"\ncommand = [\"/bin/sh\", \"-c\", \"cat >> {}\"]\n",
        file.display()
    );
    let mut net = Net::new("a", 5, &extra);
    for i in 0..5 {
        net.start(i);
    }
    let names: Vec<String> = (0..5).map(|i| format!("n{i}")).collect();
    for i in 0..5 {
        wait_until(&net, &format!("n{i} sees everyone alive"), || {
            names
                .iter()
                .all(|n| net.state_of(i, n).as_deref() == Some("alive"))
        });
    }
    net.partition(&[0, 1], &[2, 3, 4]);
    // Side {n0, n1} (leader n0) alerts for n2, n3, n4; side {n2, n3, n4} (leader n2) for n0, n1.
    for (lost, seen_by, leader) in [
        ("n2", 0, "n0"),
        ("n3", 0, "n0"),
        ("n4", 0, "n0"),
        ("n0", 2, "n2"),
        ("n1", 2, "n2"),
    ] {
        let prefix = format!("node_down:{lost}:");
        let side: Vec<usize> = if seen_by == 0 {
            vec![0, 1]
        } else {
            vec![2, 3, 4]
        };
        for &i in &side {
            wait_until(&net, &format!("{prefix} is sent as seen by n{i}"), || {
                sent_in_view(&net, i, &prefix)
            });
        }
        let alerts = sunk_ids(&file, &prefix);
        assert_eq!(alerts.len(), 1, "{prefix}: {:#?}", sunk(&file));
        assert_eq!(alerts[0]["sent_by"], leader, "{prefix}: {:#?}", sunk(&file));
    }
    net.heal();
    for i in 0..5 {
        wait_until(
            &net,
            &format!("n{i} sees everyone alive after the heal"),
            || {
                names
                    .iter()
                    .all(|n| net.state_of(i, n).as_deref() == Some("alive"))
            },
        );
    }
    // Every node was down on the other side: one node_up each, once the logs have merged.
    for n in &names {
        let prefix = format!("node_up:{n}:");
        for i in 0..5 {
            wait_until(&net, &format!("{prefix} is sent as seen by n{i}"), || {
                sent_in_view(&net, i, &prefix)
            });
        }
        assert_eq!(
            sunk_ids(&file, &prefix).len(),
            1,
            "{prefix}: {:#?}",
            sunk(&file)
        );
    }
    for n in &names {
        let prefix = format!("node_down:{n}:");
        assert_eq!(
            sunk_ids(&file, &prefix).len(),
            1,
            "{prefix} sent again after the heal: {:#?}",
            sunk(&file)
        );
    }
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Milliseconds of an RFC 3339 UTC time as nbwatch writes it ("2026-11-22T15:30:09.120Z").
fn rfc3339_ms(s: &str) -> Option<u64> {
    let t = humantime::parse_rfc3339_weak(s).ok()?;
    Some(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as u64)
}

#[test]
fn after_a_partition_heals_each_side_back_fills_what_the_other_recorded_meanwhile() {
    let mut net = Net::new("b", 4, "");
    for i in 0..4 {
        net.start(i);
    }
    let names: Vec<String> = (0..4).map(|i| format!("n{i}")).collect();
    for i in 0..4 {
        wait_until(&net, &format!("n{i} sees everyone alive"), || {
            names
                .iter()
                .all(|n| net.state_of(i, n).as_deref() == Some("alive"))
        });
    }
    let cut = wall_ms();
    net.partition(&[0, 1], &[2, 3]);
    wait_until(&net, "n0 sees n3 down", || {
        net.state_of(0, "n3").as_deref() == Some("down")
    });
    // Until n3's own side has recorded a few of its samples that n0 cannot hear.
    let samples_in = |i: usize, from: u64| -> usize {
        let Ok(out) = net.client(
            i,
            &[
                "history", "n3", "--metric", "load1", "--since", "10m", "--json",
            ],
        ) else {
            return 0;
        };
        let Ok(Value::Array(samples)) = serde_json::from_str::<Value>(&out) else {
            return 0;
        };
        samples
            .iter()
            .filter_map(|s| s["at"].as_str().and_then(rfc3339_ms))
            .filter(|at| *at > from)
            .count()
    };
    wait_until(
        &net,
        "n2 recorded n3's samples during the partition",
        || samples_in(2, cut + 2_500) >= 3,
    );
    let healed = wall_ms();
    net.heal();
    // From the cut (plus detection) to the heal n0 heard nothing from n3; its history must
    // still hold n3's samples of that time, fetched from n3 when it came back.
    let (from, to) = (cut + 2_500, healed - 500);
    wait_until(
        &net,
        "n0's history has n3's samples from the partition",
        || {
            let Ok(out) = net.client(
                0,
                &[
                    "history", "n3", "--metric", "load1", "--since", "10m", "--json",
                ],
            ) else {
                return false;
            };
            let Ok(Value::Array(samples)) = serde_json::from_str::<Value>(&out) else {
                return false;
            };
            samples
                .iter()
                .filter_map(|s| s["at"].as_str().and_then(rfc3339_ms))
                .any(|at| (from..to).contains(&at))
        },
    );
}
