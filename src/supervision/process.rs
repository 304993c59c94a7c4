//! One service, one process group. A service is started as the leader of a new process group,
//! so stopping it signals the whole group: its helpers and forks go with it. Stopping follows
//! the service's `shutdown`: SIGTERM to the group, a grace period, then SIGKILL; or SIGKILL at
//! once (`brutal_kill`). Dropping a running service kills its group too, because an actor that
//! is killed does not get to run its `post_stop` (see PITFALLS: ractor).
//!
//! A grandchild that calls `setsid` escapes its group; catching those is the subreaper's job,
//! which comes with the supervisor actors.

use super::policy::Exit;
use super::spec::{ServiceSpec, Shutdown};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::fs::OpenOptions;
use std::path::Path;
use std::process::{ExitStatus, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("cannot open the log file {path}")]
    Log {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start {command:?}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot wait for the service")]
    Wait(#[source] std::io::Error),
}

/// A running service: the leader of its own process group.
#[derive(Debug)]
pub struct ServiceProcess {
    child: tokio::process::Child,
    pgid: Option<Pid>,
}

/// Whether an exit is normal for the restart policy: status 0 is; anything else (a non-zero
/// status, a signal) is not.
pub fn exit_kind(status: ExitStatus) -> Exit {
    if status.success() {
        Exit::Normal
    } else {
        Exit::Abnormal
    }
}

impl ServiceProcess {
    /// Starts `spec` with its stdout and stderr appended to `<log_dir>/<name>.log`.
    pub fn spawn(spec: &ServiceSpec, log_dir: &Path) -> Result<ServiceProcess, ProcessError> {
        let path = log_dir.join(format!("{}.log", spec.name));
        let log_error = |source| ProcessError::Log {
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(log_dir).map_err(log_error)?;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(log_error)?;
        let log2 = log.try_clone().map_err(log_error)?;
        let mut command = tokio::process::Command::new(&spec.command[0]);
        command
            .args(&spec.command[1..])
            .envs(&spec.env)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .process_group(0);
        if let Some(cwd) = &spec.cwd {
            command.current_dir(cwd);
        }
        let child = command.spawn().map_err(|source| ProcessError::Spawn {
            command: spec.command.join(" "),
            source,
        })?;
        let pgid = child.id().map(|id| Pid::from_raw(id as i32));
        Ok(ServiceProcess { child, pgid })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Waits until the service exits by itself.
    pub async fn wait(&mut self) -> Result<ExitStatus, ProcessError> {
        let status = self.child.wait().await.map_err(ProcessError::Wait)?;
        Ok(status)
    }

    /// Stops the service by its shutdown rule and returns how it ended. Whatever else is left
    /// in its process group is killed.
    pub async fn stop(&mut self, shutdown: &Shutdown) -> Result<ExitStatus, ProcessError> {
        let status = match shutdown {
            Shutdown::BrutalKill => {
                self.signal(Signal::SIGKILL);
                self.child.wait().await.map_err(ProcessError::Wait)?
            }
            Shutdown::Timeout(grace) => {
                self.signal(Signal::SIGTERM);
                match tokio::time::timeout(*grace, self.child.wait()).await {
                    Ok(status) => status.map_err(ProcessError::Wait)?,
                    Err(_) => {
                        self.signal(Signal::SIGKILL);
                        self.child.wait().await.map_err(ProcessError::Wait)?
                    }
                }
            }
        };
        // The leader is gone; its group may still hold children that ignored the signal.
        self.signal(Signal::SIGKILL);
        self.pgid = None;
        Ok(status)
    }

    fn signal(&self, signal: Signal) {
        if let Some(pgid) = self.pgid {
            // ESRCH (nothing left in the group) is the normal end of a stop.
            let _ = killpg(pgid, signal);
        }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.signal(Signal::SIGKILL);
    }
}

#[cfg(test)]
mod tests;
