//! The daemon is a child subreaper: a process that leaves its service's group (`setsid`, a
//! double fork) is re-parented to the daemon instead of to init when its parent dies, so it
//! cannot outlive the daemon unnoticed. When such an orphan exits it becomes the daemon's
//! zombie, and this module reaps it.
//!
//! Reaping must not steal an exit status that tokio is waiting for (a blanket `waitpid(-1)`
//! would, and `Child::wait` then fails with ECHILD). So every process the daemon starts goes
//! through [`spawn`], which records its pid in a registry *while holding the registry lock*;
//! the reaper takes the same lock, lists the daemon's children from `/proc`, and reaps by pid
//! only the zombies that are not in the registry. A pid leaves the registry when its owner has
//! waited for it ([`Tracked`] drops).

use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;
use std::collections::HashSet;
use std::io;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

fn registry() -> MutexGuard<'static, HashSet<u32>> {
    static REGISTRY: OnceLock<Mutex<HashSet<u32>>> = OnceLock::new();
    REGISTRY
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// A child started through [`spawn`]; dropping it (after waiting) releases its pid.
#[derive(Debug)]
pub struct Tracked {
    pub child: tokio::process::Child,
    pid: Option<u32>,
}

impl Tracked {
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Some(pid) = self.pid {
            registry().remove(&pid);
        }
    }
}

/// Starts `command`, with its pid registered before the reaper can see it.
pub fn spawn(command: &mut tokio::process::Command) -> io::Result<Tracked> {
    // systemd's notification socket is the daemon's: a child that wrote to it would speak
    // for the daemon.
    for var in crate::notify::VARIABLES {
        command.env_remove(var);
    }
    let mut owned = registry();
    let child = command.spawn()?;
    let pid = child.id();
    if let Some(pid) = pid {
        owned.insert(pid);
    }
    Ok(Tracked { child, pid })
}

/// Makes this process a child subreaper (Linux `PR_SET_CHILD_SUBREAPER`).
pub fn become_subreaper() -> io::Result<()> {
    nix::sys::prctl::set_child_subreaper(true).map_err(io::Error::from)
}

/// This process's children, from `/proc/self/task/*/children`.
pub fn children() -> Vec<u32> {
    let mut pids = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return pids;
    };
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            pids.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    pids
}

/// The state letter of `/proc/<pid>/stat` ('Z' for a zombie).
fn state_of(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain anything: the state follows the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.trim_start().chars().next()
}

/// Reaps every zombie child that no one in the daemon is waiting for; returns their pids.
pub fn reap_orphans() -> Vec<u32> {
    let owned = registry();
    let mut reaped = Vec::new();
    for pid in children() {
        if owned.contains(&pid) || state_of(pid) != Some('Z') {
            continue;
        }
        let flags = Some(WaitPidFlag::WNOHANG);
        if waitpid(Pid::from_raw(pid as i32), flags).is_ok() {
            reaped.push(pid);
        }
    }
    reaped
}

/// How often orphans are looked for when no SIGCHLD says so (a missed signal costs at most this).
const SWEEP: Duration = Duration::from_secs(5);

/// Reaps orphans on every SIGCHLD and every few seconds, until the task is aborted.
pub async fn run() {
    let mut sigchld = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGCHLD; sweeping for orphans");
            None
        }
    };
    loop {
        match sigchld.as_mut() {
            Some(s) => {
                let _ = tokio::time::timeout(SWEEP, s.recv()).await;
            }
            None => tokio::time::sleep(SWEEP).await,
        }
        let reaped = tokio::task::spawn_blocking(reap_orphans)
            .await
            .unwrap_or_default();
        for pid in reaped {
            tracing::debug!(pid, "reaped an orphaned process");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_registered_child_keeps_its_status() {
        let mut cmd = tokio::process::Command::new("sh");
        cmd.args(["-c", "exit 7"]);
        let mut tracked = spawn(&mut cmd).expect("spawn sh");
        // Let it become a zombie, then sweep: the reaper must leave it to its owner.
        let pid = tracked.pid().expect("pid");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while state_of(pid) != Some('Z') && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(!reap_orphans().contains(&pid));
        let status = tracked.child.wait().await.expect("status still ours");
        assert_eq!(status.code(), Some(7));
    }
}
