use super::*;
use crate::supervision::logfile::LogSettings;
use crate::supervision::policy::RestartType;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn sh(name: &str, script: &str) -> ServiceSpec {
    ServiceSpec {
        name: name.to_string(),
        command: vec!["/bin/sh".into(), "-c".into(), script.into()],
        restart: RestartType::Permanent,
        shutdown: Shutdown::Timeout(Duration::from_secs(2)),
        env: BTreeMap::new(),
        cwd: None,
        user: None,
        group: None,
        probes: Vec::new(),
        ready: None,
        requires: Vec::new(),
        on_dependency_loss: crate::supervision::spec::OnDependencyLoss::Stop,
    }
}

static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

fn start(spec: &ServiceSpec, dir: &std::path::Path) -> Result<ServiceProcess, ProcessError> {
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let instance = format!("test-{}-{}-{n}", std::process::id(), spec.name);
    ServiceProcess::spawn(spec, &LogSettings::new(dir.to_path_buf()), &instance)
}

/// True while any process is left in process group `pgid`.
fn group_alive(pgid: u32) -> bool {
    killpg(Pid::from_raw(pgid as i32), None).is_ok()
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_stopped_service_takes_its_whole_process_group_with_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut p = start(&sh("forks", "sleep 30 & sleep 30 & wait"), dir.path()).expect("spawn");
    let pgid = p.pid().expect("pid");
    let status = p
        .stop(&Shutdown::Timeout(Duration::from_secs(2)))
        .await
        .expect("stop");
    assert_eq!(exit_kind(status), Exit::Abnormal);
    wait_until("the group is empty", || !group_alive(pgid)).await;
}

#[tokio::test]
async fn a_service_that_ignores_sigterm_is_killed_after_its_grace_period() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = "trap '' TERM; echo ready; while true; do sleep 0.05; done";
    let mut p = start(&sh("stubborn", script), dir.path()).expect("spawn");
    let log = dir.path().join("stubborn.log");
    wait_until("the trap is set", || {
        std::fs::read_to_string(&log).is_ok_and(|s| s.contains("ready"))
    })
    .await;
    let pgid = p.pid().expect("pid");
    let started = Instant::now();
    p.stop(&Shutdown::Timeout(Duration::from_millis(300)))
        .await
        .expect("stop");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300),
        "killed before the grace period: {took:?}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
    wait_until("the group is empty", || !group_alive(pgid)).await;
}

#[tokio::test]
async fn brutal_kill_does_not_wait() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut p = start(&sh("b", "trap '' TERM; sleep 30"), dir.path()).expect("spawn");
    let started = Instant::now();
    p.stop(&Shutdown::BrutalKill).await.expect("stop");
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn exit_status_zero_is_normal_and_anything_else_abnormal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ok = start(&sh("ok", "exit 0"), dir.path()).expect("spawn");
    assert_eq!(exit_kind(ok.wait().await.expect("wait")), Exit::Normal);
    let mut bad = start(&sh("bad", "exit 3"), dir.path()).expect("spawn");
    assert_eq!(exit_kind(bad.wait().await.expect("wait")), Exit::Abnormal);
}

#[tokio::test]
async fn output_env_and_cwd_reach_the_service() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut spec = sh("env", "echo \"$GREETING from $(pwd)\"; echo oops >&2");
    spec.env.insert("GREETING".into(), "hello".into());
    spec.cwd = Some(dir.path().to_path_buf());
    let mut p = start(&spec, &dir.path().join("logs")).expect("spawn");
    p.wait().await.expect("wait");
    let path = dir.path().join("logs/env.log");
    let cwd = dir.path().canonicalize().expect("canonical");
    let want = format!("hello from {}", cwd.display());
    wait_until("both lines are logged", || {
        std::fs::read_to_string(&path).is_ok_and(|log| log.contains(&want) && log.contains("oops"))
    })
    .await;
}

#[tokio::test]
async fn a_command_that_does_not_exist_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut spec = sh("x", "");
    spec.command = vec!["/no/such/binary".into()];
    let err = start(&spec, dir.path()).expect_err("no binary");
    assert!(err.to_string().contains("/no/such/binary"), "{err}");
}

#[tokio::test]
async fn dropping_a_running_service_kills_its_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = start(&sh("dropped", "sleep 30 & sleep 30"), dir.path()).expect("spawn");
    let pgid = p.pid().expect("pid");
    drop(p);
    wait_until("the group is empty", || !group_alive(pgid)).await;
}

/// True while `pid` exists and is not a zombie.
fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rfind(')')
                .map(|i| s[i + 1..].trim_start().starts_with('Z'))
        })
        .is_some_and(|zombie| !zombie)
}

#[tokio::test]
async fn a_grandchild_that_left_the_group_with_setsid_is_stopped_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pidfile = dir.path().join("escapee.pid");
    let script = format!(
        "setsid sh -c 'echo $$ > {}; exec sleep 30' & wait; sleep 30",
        pidfile.display()
    );
    let mut p = start(&sh("escaper", &script), dir.path()).expect("spawn");
    wait_until("the escapee wrote its pid", || {
        std::fs::read_to_string(&pidfile).is_ok_and(|s| s.trim().parse::<i32>().is_ok())
    })
    .await;
    let escapee: i32 = std::fs::read_to_string(&pidfile)
        .expect("pidfile")
        .trim()
        .parse()
        .expect("pid");
    assert!(running(escapee));
    // It is in a session (and group) of its own: killing the service's group misses it.
    let pgid = nix::unistd::getpgid(Some(Pid::from_raw(escapee))).expect("pgid");
    assert_ne!(Some(pgid.as_raw() as u32), p.pid());
    p.stop(&Shutdown::Timeout(Duration::from_secs(2)))
        .await
        .expect("stop");
    wait_until("the escapee is gone", || !running(escapee)).await;
}

#[tokio::test]
async fn the_service_sees_its_name_and_instance_in_its_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut p = start(&sh("tagged", "echo \"[$NBWATCH_SERVICE]\""), dir.path()).expect("spawn");
    p.wait().await.expect("wait");
    let path = dir.path().join("tagged.log");
    wait_until("the name is logged", || {
        std::fs::read_to_string(&path).is_ok_and(|log| log.contains("[tagged]"))
    })
    .await;
}

#[tokio::test]
async fn user_and_group_are_applied_and_unknown_ones_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut spec = sh("asnobody", "echo \"uid=$(id -u) gid=$(id -g)\"");
    spec.user = Some("nobody".into());
    let nobody = nix::unistd::User::from_name("nobody")
        .expect("passwd")
        .expect("nobody exists");
    let mut p = start(&spec, dir.path()).expect("spawn");
    p.wait().await.expect("wait");
    let want = format!("uid={} gid={}", nobody.uid, nobody.gid);
    let path = dir.path().join("asnobody.log");
    wait_until("the ids are logged", || {
        std::fs::read_to_string(&path).is_ok_and(|log| log.contains(&want))
    })
    .await;
    spec.user = Some("no-such-user-here".into());
    let err = start(&spec, dir.path()).expect_err("unknown user");
    assert!(err.to_string().contains("no-such-user-here"), "{err}");
}

#[test]
fn a_name_that_is_not_one_plain_file_name_never_becomes_a_log_path() {
    let dir = Path::new("/var/lib/nbwatch/logs");
    assert_eq!(
        log_path(dir, "mythbackend").expect("a plain name"),
        dir.join("mythbackend.log")
    );
    for bad in [
        "../../etc/cron.d/x",
        "a/b",
        "x\u{1b}[2J",
        "a\nb",
        "",
        "nul\0",
    ] {
        assert!(
            matches!(log_path(dir, bad), Err(ProcessError::Name(_))),
            "{bad:?}"
        );
    }
}

#[tokio::test]
async fn a_service_whose_name_is_a_path_is_not_started_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let logs = dir.path().join("logs");
    let spec = sh("../escaped", "echo hi");
    assert!(matches!(start(&spec, &logs), Err(ProcessError::Name(_))));
    assert!(!dir.path().join("escaped.log").exists());
    assert!(!logs.exists());
}
