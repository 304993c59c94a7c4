//! What a killed daemon left running. SIGTERM stops every service, but after a `kill -9` (or
//! the OOM killer) nobody does: the services are re-parented to init and run on, and the
//! restarted daemon would start a second copy of each next to them.
//!
//! So every service process carries the daemon's *run id* (`<pid>.<start in unix ms>`) at the
//! front of its instance tag (`NBWATCH_INSTANCE`, see [`super::process`]), the run id is kept
//! in `<data_dir>/services.run`, and a daemon that starts on that data dir first kills every
//! process tagged with the previous run's id. The id holds the start time, so a pid used
//! again by another daemon never matches; and a previous run whose daemon is still running
//! (a second daemon started by mistake on the same data dir) is left alone.

use super::process::INSTANCE_VAR;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const FILE: &str = crate::statefile::SERVICES_RUN;

/// This process's run id: `<pid>.<unix ms when first asked>`.
pub fn run_id() -> &'static str {
    static RUN: OnceLock<String> = OnceLock::new();
    RUN.get_or_init(|| {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        format!("{}.{ms}", std::process::id())
    })
}

fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE)
}

/// Kills what the previous run on `data_dir` left running, then records this run there.
/// Returns the pids killed.
pub fn sweep(data_dir: &Path) -> Vec<i32> {
    let mut killed = Vec::new();
    if let Ok(previous) = std::fs::read(path(data_dir)) {
        let previous = String::from_utf8_lossy(&previous);
        let previous = previous.trim();
        if !is_run_id(previous) {
            tracing::warn!(
                file = %path(data_dir).display(), found = %crate::text::visible(previous),
                "services.run does not hold a run id (cut short or damaged): service processes \
                 a killed daemon left running, if any, are not looked for"
            );
        } else if previous != run_id() && !running(previous) {
            killed = kill_tagged(previous);
            if !killed.is_empty() {
                tracing::warn!(
                    run = previous,
                    pids = ?killed,
                    "killed the service processes a previous daemon left running (it did not stop them: kill -9?)"
                );
            }
        }
    }
    if let Err(e) = record(data_dir) {
        tracing::warn!(file = %path(data_dir).display(), error = %e,
            "cannot record this run: services left by a kill -9 of this daemon will not be found by the next");
    }
    killed
}

fn record(data_dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(data_dir)?;
    let tmp = data_dir.join(format!("{FILE}.tmp"));
    std::fs::write(&tmp, run_id())?;
    std::fs::rename(tmp, path(data_dir))
}

/// True for what [`run_id`] makes: a pid, a dot and the milliseconds of a time after 2001 —
/// so a file cut short is not taken for the id of another run.
fn is_run_id(run: &str) -> bool {
    let Some((pid, ms)) = run.split_once('.') else {
        return false;
    };
    pid.parse::<u32>().is_ok()
        && (13..=14).contains(&ms.len())
        && ms.bytes().all(|b| b.is_ascii_digit())
}

/// Whether the daemon of `run` still runs: its pid is alive and is this program.
fn running(run: &str) -> bool {
    let Some(pid) = run.split('.').next().and_then(|p| p.parse::<u32>().ok()) else {
        return false;
    };
    if pid == std::process::id() {
        return true;
    }
    match (
        std::fs::read_link(format!("/proc/{pid}/exe")),
        std::fs::read_link("/proc/self/exe"),
    ) {
        (Ok(theirs), Ok(mine)) => theirs == mine,
        _ => false,
    }
}

/// SIGKILLs every process whose instance tag starts with `<run>-`.
fn kill_tagged(run: &str) -> Vec<i32> {
    use nix::sys::signal::{Signal, kill};
    let needle = format!("{INSTANCE_VAR}={run}-");
    super::process::with_env(|var| var.starts_with(needle.as_bytes()))
        .into_iter()
        .filter(|pid| kill(*pid, Signal::SIGKILL).is_ok())
        .map(|pid| pid.as_raw())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Child, Command};
    use std::time::{Duration, Instant};

    fn tagged_sleep(run: &str) -> Child {
        Command::new("sleep")
            .arg("30")
            .env(INSTANCE_VAR, format!("{run}-svc-0"))
            .spawn()
            .expect("sleep")
    }

    fn exits_within(child: &mut Child, within: Duration) -> bool {
        let end = Instant::now() + within;
        while Instant::now() < end {
            if let Ok(Some(_)) = child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    #[test]
    fn the_services_of_a_dead_previous_run_are_killed_and_this_run_is_recorded() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A pid above any pid_max: that daemon is gone.
        let dead = "2000000000.1700000000000";
        std::fs::write(dir.path().join(FILE), dead).expect("run file");
        let mut left = tagged_sleep(dead);
        let mut other = tagged_sleep("2000000000.1700000000001");
        let killed = sweep(dir.path());
        assert_eq!(killed, vec![left.id() as i32]);
        assert!(exits_within(&mut left, Duration::from_secs(5)));
        assert!(
            !exits_within(&mut other, Duration::from_millis(300)),
            "another run's process was killed"
        );
        let _ = other.kill();
        let _ = other.wait();
        assert_eq!(
            std::fs::read_to_string(dir.path().join(FILE)).expect("run file"),
            run_id()
        );
    }

    #[test]
    fn the_services_of_a_previous_run_that_still_runs_are_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        // This test process is the "daemon" of that run: it is alive and is this program.
        let alive = format!("{}.1700000000000", std::process::id());
        std::fs::write(dir.path().join(FILE), &alive).expect("run file");
        let mut child = tagged_sleep(&alive);
        assert!(sweep(dir.path()).is_empty());
        assert!(!exits_within(&mut child, Duration::from_millis(300)));
        let _ = child.kill();
        let _ = child.wait();
    }

    #[test]
    fn only_a_whole_run_id_is_taken_for_one() {
        assert!(is_run_id(run_id()));
        let id = run_id();
        assert!(!is_run_id(&id[..id.len() / 2]), "cut short");
        assert!(!is_run_id(&id[..id.len() - 1]), "one digit short");
        for bad in [
            "",
            "12.",
            ".1764744283123",
            "x.1764744283123",
            "1.17647442831a3",
        ] {
            assert!(!is_run_id(bad), "{bad:?}");
        }
    }
}
