//! Supervision trees with real processes (sh and sleep): the manager actor of a node, started
//! on a folder of tree files, observed through its service table and events.

use nbwatch::events::{ServiceEvent, ServiceEventKind};
use nbwatch::keys::{Command, ServiceState, ServiceStatus};
use nbwatch::supervision::logfile::LogSettings;
use nbwatch::supervision::manager::{ManagerActor, ManagerArgs, ManagerMsg, ReloadSummary};
use nbwatch::supervision::service::ServiceCtx;
use nbwatch::supervision::spec::load_trees;
use nbwatch::supervision::status::{Board, Publish};
use nbwatch::types::{Clock, Time};
use ractor::rpc::CallResult;
use ractor::{Actor, ActorRef};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<ServiceEvent>>,
}

impl Publish for Recorder {
    fn status(&self, _status: &ServiceStatus) {}
    fn removed(&self, _name: &str) {}
    fn event(&self, _at: Time, event: ServiceEvent) {
        self.events.lock().expect("lock").push(event);
    }
}

struct Harness {
    dir: tempfile::TempDir,
    manager: ActorRef<ManagerMsg>,
    recorder: Arc<Recorder>,
}

const DEADLINE: Duration = Duration::from_secs(15);

fn trees_dir(dir: &Path) -> PathBuf {
    dir.join("trees")
}

fn write_tree(dir: &Path, name: &str, text: &str) {
    std::fs::create_dir_all(trees_dir(dir)).expect("trees dir");
    std::fs::write(trees_dir(dir).join(format!("{name}.toml")), text).expect("tree file");
}

/// A service child that sleeps (and so runs until killed).
fn sleeper(name: &str, extra: &str) -> String {
    format!("[[children]]\nname = \"{name}\"\ncommand = [\"/bin/sleep\", \"1000\"]\n{extra}\n")
}

impl Harness {
    async fn start(trees: &[(&str, String)]) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, text) in trees {
            write_tree(dir.path(), name, text);
        }
        Harness::start_in(dir).await
    }

    async fn start_in(dir: tempfile::TempDir) -> Harness {
        let recorder = Arc::new(Recorder::default());
        let ctx = ServiceCtx {
            board: Board::new(Clock::new(), recorder.clone()),
            logs: Arc::new(LogSettings::new(dir.path().join("logs"))),
            starts: Arc::default(),
        };
        let trees = load_trees(&trees_dir(dir.path())).expect("valid trees");
        let args = ManagerArgs {
            dir: trees_dir(dir.path()),
            trees,
            ctx,
        };
        let (manager, _) = Actor::spawn(None, ManagerActor, args)
            .await
            .expect("manager starts");
        Harness {
            dir,
            manager,
            recorder,
        }
    }

    async fn list(&self) -> Vec<ServiceStatus> {
        match self
            .manager
            .call(ManagerMsg::List, Some(Duration::from_secs(5)))
            .await
        {
            Ok(CallResult::Success(v)) => v,
            _ => panic!("the manager did not answer"),
        }
    }

    async fn status(&self, name: &str) -> ServiceStatus {
        self.list()
            .await
            .into_iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no service {name}"))
    }

    /// Waits until every named service runs, and returns their pids in that order.
    async fn running(&self, names: &[&str]) -> Vec<u32> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let list = self.list().await;
            let pids: Vec<Option<u32>> = names
                .iter()
                .map(|n| {
                    list.iter()
                        .find(|s| s.name == *n && s.state == ServiceState::Running)
                        .and_then(|s| s.pid)
                })
                .collect();
            if pids.iter().all(Option::is_some) {
                return pids.into_iter().flatten().collect();
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {names:?} to run: {list:#?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_until(&self, what: &str, cond: impl Fn(&[ServiceStatus]) -> bool) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let list = self.list().await;
            if cond(&list) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting until {what}: {list:#?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn command(&self, service: &str, command: Command) -> Result<(), String> {
        let service = service.to_string();
        match self
            .manager
            .call(
                |reply| ManagerMsg::Command {
                    service,
                    command,
                    reply,
                },
                Some(DEADLINE),
            )
            .await
        {
            Ok(CallResult::Success(r)) => r.map_err(|e| e.to_string()),
            _ => panic!("the manager did not answer"),
        }
    }

    async fn reload(&self) -> Result<ReloadSummary, String> {
        match self.manager.call(ManagerMsg::Reload, Some(DEADLINE)).await {
            Ok(CallResult::Success(r)) => r.map_err(|e| e.to_string()),
            _ => panic!("the manager did not answer"),
        }
    }

    fn events(&self) -> Vec<ServiceEvent> {
        self.recorder.events.lock().expect("lock").clone()
    }

    async fn stop(self) {
        let _ = self
            .manager
            .call(ManagerMsg::StopAll, Some(Duration::from_secs(30)))
            .await;
        self.manager.stop(None);
    }
}

fn kill9(pid: u32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill");
}

/// True while `pid` exists and is not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rfind(')')
                .map(|i| !s[i + 1..].trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

async fn wait_gone(pid: u32) {
    let deadline = Instant::now() + DEADLINE;
    while alive(pid) {
        assert!(Instant::now() < deadline, "pid {pid} is still alive");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn three(strategy: &str) -> String {
    format!(
        "name = \"t\"\nstrategy = \"{strategy}\"\nintensity = 10\nperiod = \"60s\"\n{}{}{}",
        sleeper("a", ""),
        sleeper("b", ""),
        sleeper("c", "")
    )
}

/// Kills `b` of a three-child tree with `strategy`; returns which of a, b, c got a new pid.
async fn restarted_after_killing_b(strategy: &str) -> [bool; 3] {
    let h = Harness::start(&[("t", three(strategy))]).await;
    let before = h.running(&["a", "b", "c"]).await;
    kill9(before[1]);
    h.wait_until("b is back", |l| {
        l.iter()
            .any(|s| s.name == "b" && s.state == ServiceState::Running && s.pid != Some(before[1]))
    })
    .await;
    let after = h.running(&["a", "b", "c"]).await;
    h.stop().await;
    for pid in before.iter().chain(&after) {
        wait_gone(*pid).await;
    }
    [0, 1, 2].map(|i| before[i] != after[i])
}

#[tokio::test]
async fn one_for_one_restarts_only_the_child_that_died() {
    assert_eq!(
        restarted_after_killing_b("one_for_one").await,
        [false, true, false]
    );
}

#[tokio::test]
async fn one_for_all_restarts_every_child() {
    assert_eq!(
        restarted_after_killing_b("one_for_all").await,
        [true, true, true]
    );
}

#[tokio::test]
async fn rest_for_one_restarts_the_child_and_those_started_after_it() {
    assert_eq!(
        restarted_after_killing_b("rest_for_one").await,
        [false, true, true]
    );
}

#[tokio::test]
async fn restart_types_decide_what_comes_back_after_a_normal_and_an_abnormal_exit() {
    // Each service runs once with its pid in a file, then exits with the given status.
    let dir = tempfile::tempdir().expect("tempdir");
    let once = |name: &str, restart: &str, status: u8| {
        let file = dir.path().join(format!("{name}.runs"));
        format!(
            "[[children]]\nname = \"{name}\"\nrestart = \"{restart}\"\n\
             command = [\"/bin/sh\", \"-c\", \"echo $$ >> {}; sleep 0.2; exit {status}\"]\n",
            file.display()
        )
    };
    let mut tree = "name = \"types\"\nintensity = 100\nperiod = \"60s\"\n".to_string();
    for (name, restart, status) in [
        ("perm_ok", "permanent", 0),
        ("trans_ok", "transient", 0),
        ("trans_bad", "transient", 3),
        ("temp_bad", "temporary", 3),
    ] {
        tree.push_str(&once(name, restart, status));
    }
    write_tree(dir.path(), "types", &tree);
    let path = dir.path().to_path_buf();
    let runs = |name: &str| {
        std::fs::read_to_string(path.join(format!("{name}.runs")))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    };
    let h = Harness::start_in(dir).await;
    let deadline = Instant::now() + DEADLINE;
    while runs("perm_ok") < 3 || runs("trans_bad") < 3 {
        assert!(
            Instant::now() < deadline,
            "permanent/transient not restarted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        runs("trans_ok"),
        1,
        "a transient child that exited 0 came back"
    );
    assert_eq!(runs("temp_bad"), 1, "a temporary child came back");
    let trans_ok = h.status("trans_ok").await;
    assert_eq!(trans_ok.state, ServiceState::Stopped);
    assert_eq!(trans_ok.last_exit.as_deref(), Some("exit 0"));
    let temp = h.status("temp_bad").await;
    assert_eq!(temp.last_exit.as_deref(), Some("exit 3"));
    h.stop().await;
}

#[tokio::test]
async fn past_its_intensity_a_nested_supervisor_escalates_and_the_root_finally_fails() {
    // `crashy` exits at once. `inner` allows 1 restart, so it gives up at the second crash;
    // the root restarts `inner` once (its own intensity is 1) and then gives up too.
    let tree = "name = \"root\"\nstrategy = \"one_for_one\"\nintensity = 1\nperiod = \"60s\"\n\
        [[children]]\nname = \"steady\"\ncommand = [\"/bin/sleep\", \"1000\"]\n\
        [[children]]\nname = \"inner\"\nstrategy = \"one_for_one\"\nintensity = 1\nperiod = \"60s\"\n\
        [[children.children]]\nname = \"crashy\"\ncommand = [\"/bin/sh\", \"-c\", \"exit 1\"]\n";
    let h = Harness::start(&[("root", tree.to_string())]).await;
    h.wait_until("the whole tree failed", |l| {
        l.iter().all(|s| s.state == ServiceState::Failed)
    })
    .await;
    let events = h.events();
    let starts_of = |name: &str| {
        events
            .iter()
            .filter(|e| {
                e.service == name
                    && matches!(
                        e.kind,
                        ServiceEventKind::Started { .. } | ServiceEventKind::Restarted { .. }
                    )
            })
            .count()
    };
    // inner's first life: 1 start + 1 restart; its second life (the root's one restart): the
    // same again. Then the root gives up.
    assert_eq!(starts_of("crashy"), 4, "{events:#?}");
    let failed: Vec<&str> = events
        .iter()
        .filter(|e| matches!(e.kind, ServiceEventKind::Failed { .. }))
        .map(|e| e.service.as_str())
        .collect();
    assert!(
        failed.contains(&"crashy") && failed.contains(&"steady"),
        "{failed:?}"
    );
    let steady = h.status("steady").await;
    assert_eq!(steady.pid, None);
    // An operator's start brings the failed tree back.
    h.command("steady", Command::Start)
        .await
        .expect("the tree starts again");
    h.running(&["steady"]).await;
    h.stop().await;
}

#[tokio::test]
async fn a_service_that_cannot_start_counts_as_a_crash_and_ends_in_failed() {
    let tree = "name = \"broken\"\nintensity = 2\nperiod = \"60s\"\n\
        [[children]]\nname = \"ghost\"\ncommand = [\"/no/such/binary\"]\n";
    let h = Harness::start(&[("broken", tree.to_string())]).await;
    h.wait_until("it failed", |l| {
        l.iter().all(|s| s.state == ServiceState::Failed)
    })
    .await;
    let ghost = h.status("ghost").await;
    let why = ghost.last_exit.unwrap_or_default();
    assert!(why.contains("/no/such/binary"), "{why}");
    h.stop().await;
}

#[tokio::test]
async fn stop_holds_a_service_until_start_and_restart_gives_it_a_new_pid() {
    let h = Harness::start(&[("t", three("one_for_all"))]).await;
    let before = h.running(&["a", "b", "c"]).await;
    h.command("b", Command::Stop).await.expect("stop");
    assert_eq!(h.status("b").await.state, ServiceState::Stopped);
    wait_gone(before[1]).await;
    // A crash of a sibling restarts everyone (one_for_all) except the held service.
    kill9(before[0]);
    h.wait_until("c was restarted", |l| {
        l.iter()
            .any(|s| s.name == "c" && s.state == ServiceState::Running && s.pid != Some(before[2]))
    })
    .await;
    h.running(&["a", "c"]).await;
    assert_eq!(h.status("b").await.state, ServiceState::Stopped);
    h.command("b", Command::Start).await.expect("start");
    let b = h.running(&["b"]).await[0];
    h.command("b", Command::Restart).await.expect("restart");
    let b2 = h.running(&["b"]).await[0];
    assert_ne!(b, b2);
    wait_gone(b).await;
    let err = h
        .command("nope", Command::Restart)
        .await
        .expect_err("unknown service");
    assert!(err.contains("nope"), "{err}");
    h.stop().await;
}

#[tokio::test]
async fn a_setsid_grandchild_is_gone_after_its_service_restarts_and_after_stop() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pidfile = dir.path().join("escapee.pid");
    let tree = format!(
        "name = \"esc\"\n[[children]]\nname = \"escaper\"\nshutdown = \"1s\"\n\
         command = [\"/bin/sh\", \"-c\", \"setsid sh -c 'echo $$ > {}; exec sleep 1000' & exec sleep 1000\"]\n",
        pidfile.display()
    );
    write_tree(dir.path(), "esc", &tree);
    let read_pid = |p: &Path| {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
    };
    let pidfile2 = pidfile.clone();
    let h = Harness::start_in(dir).await;
    let wait_escapee = async |other: Option<u32>| {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(p) = read_pid(&pidfile2).filter(|p| Some(*p) != other && alive(*p)) {
                return p;
            }
            assert!(Instant::now() < deadline, "no escapee");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let service = h.running(&["escaper"]).await[0];
    let first = wait_escapee(None).await;
    kill9(service);
    wait_gone(first).await;
    let second = wait_escapee(Some(first)).await;
    h.stop().await;
    wait_gone(second).await;
}

#[tokio::test]
async fn reload_applies_only_the_difference() {
    let keep = format!("name = \"keep\"\n{}", sleeper("k", ""));
    let change = format!(
        "name = \"change\"\n{}{}",
        sleeper("same", ""),
        sleeper("edited", "")
    );
    let gone = format!("name = \"gone\"\n{}", sleeper("g", ""));
    let h = Harness::start(&[("keep", keep.clone()), ("change", change), ("gone", gone)]).await;
    let before = h.running(&["k", "same", "edited", "g"]).await;
    let dir = h.dir.path().to_path_buf();
    // An invalid folder is refused whole and changes nothing.
    write_tree(&dir, "bad", "name = \"bad\"\nstrategy = \"one_for_none\"\n");
    let err = h.reload().await.expect_err("invalid trees");
    assert!(
        err.contains("bad.toml") && err.contains("strategy"),
        "{err}"
    );
    assert_eq!(h.running(&["k", "same", "edited", "g"]).await, before);
    std::fs::remove_file(trees_dir(&dir).join("bad.toml")).expect("rm");
    // Now: `keep` untouched, one child of `change` edited, `gone` removed, `new` added.
    write_tree(
        &dir,
        "change",
        &format!(
            "name = \"change\"\n{}{}",
            sleeper("same", ""),
            sleeper("edited", "env = { EDITED = \"1\" }")
        ),
    );
    std::fs::remove_file(trees_dir(&dir).join("gone.toml")).expect("rm");
    write_tree(
        &dir,
        "new",
        &format!("name = \"new\"\n{}", sleeper("n", "")),
    );
    let summary = h.reload().await.expect("reload");
    assert_eq!(summary.unchanged, vec!["keep".to_string()]);
    assert_eq!(summary.changed, vec!["change".to_string()]);
    assert_eq!(summary.stopped, vec!["gone".to_string()]);
    assert_eq!(summary.started, vec!["new".to_string()]);
    let after = h.running(&["k", "same", "edited", "n"]).await;
    assert_eq!(
        after[0], before[0],
        "an untouched tree's service was restarted"
    );
    assert_eq!(after[1], before[1], "an unchanged child was restarted");
    assert_ne!(after[2], before[2], "the edited child kept its old process");
    wait_gone(before[2]).await;
    wait_gone(before[3]).await;
    assert!(h.list().await.iter().all(|s| s.name != "g"));
    h.stop().await;
    for pid in after {
        wait_gone(pid).await;
    }
}

#[tokio::test]
async fn a_failing_health_probe_restarts_its_service_and_health_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let flag = dir.path().join("healthy");
    std::fs::write(&flag, "").expect("flag");
    let tree = format!(
        "name = \"probed\"\n[[children]]\nname = \"watched\"\ncommand = [\"/bin/sleep\", \"1000\"]\n\
         [[children.probes]]\ntype = \"exec\"\ninterval = \"100ms\"\ntimeout = \"1s\"\nfailures = 2\n\
         command = [\"/bin/sh\", \"-c\", \"test -e {} && echo OK || {{ echo 'CRITICAL - flag gone'; exit 2; }}\"]\n",
        flag.display()
    );
    write_tree(dir.path(), "probed", &tree);
    let h = Harness::start_in(dir).await;
    let first = h.running(&["watched"]).await[0];
    h.wait_until("the probe says ok", |l| l.iter().any(|s| s.health == "ok"))
        .await;
    std::fs::remove_file(&flag).expect("rm flag");
    h.wait_until("it was restarted", |l| {
        l.iter()
            .any(|s| s.restarts >= 1 && s.pid.is_some() && s.pid != Some(first))
    })
    .await;
    wait_gone(first).await;
    let s = h.status("watched").await;
    let why = s.last_exit.unwrap_or_default();
    assert!(
        why.contains("health probe failed 2 times") && why.contains("flag gone"),
        "{why}"
    );
    h.stop().await;
}

#[tokio::test]
async fn a_readiness_probe_holds_back_the_next_sibling_and_a_service_never_ready_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ready = dir.path().join("ready");
    let seen = dir.path().join("seen");
    let tree = format!(
        "name = \"ordered\"\n\
         [[children]]\nname = \"slow\"\n\
         command = [\"/bin/sh\", \"-c\", \"sleep 0.5; touch {r}; exec sleep 1000\"]\n\
         [children.ready]\ntype = \"exec\"\ninterval = \"50ms\"\ntimeout = \"1s\"\ndeadline = \"10s\"\n\
         command = [\"/bin/sh\", \"-c\", \"test -e {r}\"]\n\
         [[children]]\nname = \"after\"\n\
         command = [\"/bin/sh\", \"-c\", \"if test -e {r}; then echo ready > {s}; else echo early > {s}; fi; exec sleep 1000\"]\n",
        r = ready.display(),
        s = seen.display()
    );
    write_tree(dir.path(), "ordered", &tree);
    let never = "name = \"never\"\nintensity = 1\n\
         [[children]]\nname = \"unready\"\ncommand = [\"/bin/sleep\", \"1000\"]\n\
         [children.ready]\ntype = \"tcp\"\ntarget = \"127.0.0.1:1\"\ninterval = \"50ms\"\ntimeout = \"100ms\"\ndeadline = \"300ms\"\n";
    write_tree(dir.path(), "never", never);
    let h = Harness::start_in(dir).await;
    h.running(&["slow", "after"]).await;
    let wait_seen = Instant::now() + DEADLINE;
    while std::fs::read_to_string(&seen)
        .unwrap_or_default()
        .is_empty()
    {
        assert!(Instant::now() < wait_seen, "after never wrote");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        std::fs::read_to_string(&seen).expect("seen").trim(),
        "ready"
    );
    h.wait_until("the never-ready tree failed", |l| {
        l.iter()
            .any(|s| s.name == "unready" && s.state == ServiceState::Failed)
    })
    .await;
    let why = h.status("unready").await.last_exit.unwrap_or_default();
    assert!(why.contains("not ready within 300ms"), "{why}");
    h.stop().await;
}
