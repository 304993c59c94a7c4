//! nbwatch under systemd, as far as it can be checked without systemd as PID 1: the unit file
//! passes `systemd-analyze verify`, and a real `nbwatch run` speaks the notification protocol
//! to a socket this test binds as `NOTIFY_SOCKET`, with `WATCHDOG_USEC` set: READY, then
//! RELOADING (with MONOTONIC_USEC) and READY around each reload (SIGHUP and `nbwatch reload`,
//! which the unit's ExecReload runs), watchdog pings, and STOPPING at SIGTERM. Its services do
//! not inherit the socket, and its log lines carry no actor spans.

mod common;
use common::daemons::{BIN, Cluster, Node, Ports, Started};
use common::wait_for;
use nix::sys::signal::Signal;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const UNIT: &str = include_str!("../etc/systemd/nbwatch.service");
const DEADLINE: Duration = Duration::from_secs(15);

#[test]
fn systemd_analyze_verify_finds_nothing_wrong_with_the_unit() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The unit names the installed binary; here it is the one just built.
    assert!(UNIT.contains("/usr/bin/nbwatch "), "{UNIT}");
    let unit = dir.path().join("nbwatch.service");
    std::fs::write(&unit, UNIT.replace("/usr/bin/nbwatch ", &format!("{BIN} "))).expect("unit");
    let tool = std::env::var("SYSTEMD_ANALYZE").unwrap_or_else(|_| "systemd-analyze".into());
    let out = std::process::Command::new(&tool)
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool}: {e}: install systemd"));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.is_empty(),
        "{}: {said}",
        out.status
    );
    for line in [
        "Type=notify",
        "NotifyAccess=main",
        "WatchdogSec=",
        "KillMode=mixed",
        "ExecStartPre=/usr/bin/nbwatch check-config",
        "ExecReload=/usr/bin/nbwatch reload",
    ] {
        assert!(
            UNIT.lines().any(|l| l.starts_with(line)),
            "no {line} in the unit"
        );
    }
}

/// Every datagram the socket receives, with when it arrived; read on a thread of its own.
struct NotifySocket {
    path: String,
    seen: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl NotifySocket {
    fn bind(dir: &Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let kept = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = socket.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                kept.lock().expect("lock").push((Instant::now(), text));
            }
        });
        NotifySocket {
            path: path.to_string_lossy().into_owned(),
            seen,
        }
    }

    /// The messages but watchdog pings, in order.
    fn states(&self) -> Vec<String> {
        let seen = self.seen.lock().expect("lock");
        (seen.iter())
            .filter(|(_, m)| m != "WATCHDOG=1")
            .map(|(_, m)| m.clone())
            .collect()
    }

    fn pings_since(&self, since: Instant) -> usize {
        let seen = self.seen.lock().expect("lock");
        (seen.iter())
            .filter(|(at, m)| *at >= since && m == "WATCHDOG=1")
            .count()
    }

    /// Waits until the non-ping messages number `n`, and returns them.
    async fn wait_states(&self, n: usize) -> Vec<String> {
        wait_for(&format!("{n} notifications"), DEADLINE, async || {
            let states = self.states();
            if states.len() >= n {
                Ok(states)
            } else {
                Err(format!("{states:?}"))
            }
        })
        .await
    }
}

fn monotonic_usec() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("clock");
    t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1_000
}

/// `RELOADING=1` whose MONOTONIC_USEC lies between `before` and now.
fn is_reloading_between(message: &str, before: u64) -> bool {
    let mut lines = message.lines();
    let usec = (lines.nth(1))
        .and_then(|l| l.strip_prefix("MONOTONIC_USEC="))
        .and_then(|u| u.parse::<u64>().ok());
    message.starts_with("RELOADING=1\n")
        && usec.is_some_and(|u| u >= before && u <= monotonic_usec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_says_ready_reloading_ready_stopping_and_pings_the_watchdog() {
    let mut cluster = Cluster::new();
    let socket = NotifySocket::bind(cluster.dir.path());
    let trees = cluster.dir.path().join("trees");
    std::fs::create_dir(&trees).expect("trees");
    let inherited = cluster.dir.path().join("inherited");
    std::fs::write(
        trees.join("env.toml"),
        format!(
            "name = \"env\"\n[[children]]\nname = \"env\"\ncommand = [\"sh\", \"-c\", \
             \"env > {}; exec sleep 1000\"]\n",
            inherited.display()
        ),
    )
    .expect("tree");
    cluster.extra = format!("[supervision]\ntrees = \"{}\"\n", trees.display());
    let i = cluster.add("n1", "n1", Vec::new());
    cluster.nodes[i].env = vec![
        ("NOTIFY_SOCKET".into(), socket.path.clone()),
        // A ping every 250 ms.
        ("WATCHDOG_USEC".into(), "500000".into()),
    ];
    let started = cluster.nodes[i].start(Ports::pick()).await;
    assert!(matches!(started, Started::Ready), "n1 did not start");
    let node: &mut Node = &mut cluster.nodes[i];

    let states = socket.wait_states(1).await;
    assert!(states[0].starts_with("READY=1\n"), "{states:?}");
    let env = wait_for("the service wrote its environment", DEADLINE, async || {
        std::fs::read_to_string(&inherited).map_err(|e| e.to_string())
    })
    .await;
    assert!(
        !env.contains("NOTIFY_SOCKET") && !env.contains("WATCHDOG_"),
        "{env}"
    );
    let pinged = Instant::now();
    wait_for("watchdog pings", DEADLINE, async || {
        match socket.pings_since(pinged) {
            n if n >= 3 => Ok(()),
            n => Err(format!("{n} pings")),
        }
    })
    .await;

    // SIGHUP reloads: RELOADING with the monotonic time, then READY.
    let before = monotonic_usec();
    node.signal(Signal::SIGHUP);
    let states = socket.wait_states(3).await;
    assert!(is_reloading_between(&states[1], before), "{states:?}");
    assert!(states[2].starts_with("READY=1\n"), "{states:?}");

    // What ExecReload runs: `nbwatch reload`, refused for a broken tree (and it says so), and
    // the daemon ready again with the running trees.
    std::fs::write(
        trees.join("broken.toml"),
        "name = \"broken\"\nstrategy = 7\n",
    )
    .expect("tree");
    let config = node.config.to_string_lossy().into_owned();
    let refused = tokio::process::Command::new(BIN)
        .args(["reload", "--config", &config])
        .output()
        .await
        .expect("nbwatch reload");
    assert!(!refused.status.success(), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("broken.toml"),
        "{refused:?}"
    );
    let states = socket.wait_states(5).await;
    assert!(states[3].starts_with("RELOADING=1\n"), "{states:?}");
    assert!(
        states[4].starts_with("READY=1\n") && states[4].contains("refused"),
        "{states:?}"
    );

    // SIGTERM: STOPPING, and a clean exit.
    node.signal(Signal::SIGTERM);
    let status = node.wait_exit(DEADLINE).await;
    assert!(status.success(), "{status}");
    let states = socket.states();
    assert_eq!(states.len(), 6, "{states:?}");
    assert!(states[5].starts_with("STOPPING=1\n"), "{states:?}");
    let log = node.stderr_text();
    assert!(!log.contains("Actor{"), "actor spans in the log:\n{log}");
}
