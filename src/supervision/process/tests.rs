use super::*;
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
    }
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
    let mut p = ServiceProcess::spawn(&sh("forks", "sleep 30 & sleep 30 & wait"), dir.path())
        .expect("spawn");
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
    let mut p = ServiceProcess::spawn(&sh("stubborn", script), dir.path()).expect("spawn");
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
    let mut p =
        ServiceProcess::spawn(&sh("b", "trap '' TERM; sleep 30"), dir.path()).expect("spawn");
    let started = Instant::now();
    p.stop(&Shutdown::BrutalKill).await.expect("stop");
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn exit_status_zero_is_normal_and_anything_else_abnormal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ok = ServiceProcess::spawn(&sh("ok", "exit 0"), dir.path()).expect("spawn");
    assert_eq!(exit_kind(ok.wait().await.expect("wait")), Exit::Normal);
    let mut bad = ServiceProcess::spawn(&sh("bad", "exit 3"), dir.path()).expect("spawn");
    assert_eq!(exit_kind(bad.wait().await.expect("wait")), Exit::Abnormal);
}

#[tokio::test]
async fn output_env_and_cwd_reach_the_service() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut spec = sh("env", "echo \"$GREETING from $(pwd)\"; echo oops >&2");
    spec.env.insert("GREETING".into(), "hello".into());
    spec.cwd = Some(dir.path().to_path_buf());
    let mut p = ServiceProcess::spawn(&spec, &dir.path().join("logs")).expect("spawn");
    p.wait().await.expect("wait");
    let log = std::fs::read_to_string(dir.path().join("logs/env.log")).expect("log");
    let cwd = dir.path().canonicalize().expect("canonical");
    assert!(
        log.contains(&format!("hello from {}", cwd.display())),
        "{log}"
    );
    assert!(log.contains("oops"), "{log}");
}

#[tokio::test]
async fn a_command_that_does_not_exist_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut spec = sh("x", "");
    spec.command = vec!["/no/such/binary".into()];
    let err = ServiceProcess::spawn(&spec, dir.path()).expect_err("no binary");
    assert!(err.to_string().contains("/no/such/binary"), "{err}");
}

#[tokio::test]
async fn dropping_a_running_service_kills_its_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p =
        ServiceProcess::spawn(&sh("dropped", "sleep 30 & sleep 30"), dir.path()).expect("spawn");
    let pgid = p.pid().expect("pid");
    drop(p);
    wait_until("the group is empty", || !group_alive(pgid)).await;
}
