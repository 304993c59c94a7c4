//! One service, one process group. A service is started as the leader of a new process group,
//! so stopping it signals the whole group: its helpers and forks go with it. Stopping follows
//! the service's `shutdown`: SIGTERM, a grace period, then SIGKILL; or SIGKILL at once
//! (`brutal_kill`). Dropping a running service kills it too, because an actor that is killed
//! does not get to run its `post_stop` (see PITFALLS: ractor).
//!
//! A process that calls `setsid` leaves the group. To find those, every service process gets
//! an instance tag in its environment (`NBWATCH_INSTANCE`), which children inherit; stopping a
//! service, or cleaning up after it exited, signals every process that carries its tag as well
//! as its group. (The daemon is also a child subreaper, so such escapees are re-parented to it
//! and reaped: see [`super::reaper`].)
//!
//! stdout and stderr go through a pipe to a pump thread that appends them to
//! `<log_dir>/<name>.log`, rotated by size ([`super::logfile`]).

use super::logfile::{LogSettings, RotatingLog};
use super::policy::Exit;
use super::reaper::{self, Tracked};
use super::spec::{ServiceSpec, Shutdown, usable_name};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

/// The variable that tags every process of one run of one service.
pub const INSTANCE_VAR: &str = "NBWATCH_INSTANCE";
/// The variable that names the service to its processes.
pub const SERVICE_VAR: &str = "NBWATCH_SERVICE";

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
    /// A name that cannot be a log file's name; the config refuses these, so this is a
    /// second line in case one arrives another way.
    #[error("the service name {0:?} cannot name a log file")]
    Name(String),
    #[error("unknown {what} {name:?}")]
    Identity { what: &'static str, name: String },
    #[error("cannot wait for the service")]
    Wait(#[source] std::io::Error),
}

/// A running service: the leader of its own process group.
#[derive(Debug)]
pub struct ServiceProcess {
    tracked: Tracked,
    pgid: Option<Pid>,
    instance: String,
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

/// How an exit reads in `last_exit`: "exit 0", "exit 3", "signal 9 (SIGKILL)".
pub fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        return format!("exit {code}");
    }
    match status.signal() {
        Some(n) => match Signal::try_from(n) {
            Ok(s) => format!("signal {n} ({})", s.as_str()),
            Err(_) => format!("signal {n}"),
        },
        None => "unknown".to_string(),
    }
}

/// The uid, gid and home of a `user` (and an optional `group` overriding its primary group).
fn identity(
    user: Option<&str>,
    group: Option<&str>,
) -> Result<(Option<nix::unistd::User>, Option<u32>), ProcessError> {
    let unknown = |what, name: &str| ProcessError::Identity {
        what,
        name: name.to_string(),
    };
    let user = match user {
        Some(name) => Some(
            nix::unistd::User::from_name(name)
                .ok()
                .flatten()
                .ok_or_else(|| unknown("user", name))?,
        ),
        None => None,
    };
    let gid = match group {
        Some(name) => Some(
            nix::unistd::Group::from_name(name)
                .ok()
                .flatten()
                .ok_or_else(|| unknown("group", name))?
                .gid
                .as_raw(),
        ),
        None => user.as_ref().map(|u| u.gid.as_raw()),
    };
    Ok((user, gid))
}

/// `<dir>/<name>.log`, for a name the config accepts ([`usable_name`]): one plain file name
/// in `dir`, never a path elsewhere or a name with control characters.
pub(crate) fn log_path(dir: &Path, name: &str) -> Result<PathBuf, ProcessError> {
    if !usable_name(name) {
        return Err(ProcessError::Name(name.to_string()));
    }
    Ok(dir.join(format!("{name}.log")))
}

impl ServiceProcess {
    /// Starts `spec` with its stdout and stderr appended to its rotated log, tagged with
    /// `instance` (unique per start).
    pub fn spawn(
        spec: &ServiceSpec,
        logs: &LogSettings,
        instance: &str,
    ) -> Result<ServiceProcess, ProcessError> {
        let path = log_path(&logs.dir, &spec.name)?;
        let log_error = |source| ProcessError::Log {
            path: path.display().to_string(),
            source,
        };
        let log = RotatingLog::open(&path, logs.max_bytes, logs.keep).map_err(log_error)?;
        let (reader, writer) = std::io::pipe().map_err(log_error)?;
        let writer2 = writer.try_clone().map_err(log_error)?;
        let (user, gid) = identity(spec.user.as_deref(), spec.group.as_deref())?;
        let mut command = tokio::process::Command::new(&spec.command[0]);
        command.args(&spec.command[1..]);
        if let Some(u) = &user {
            command
                .uid(u.uid.as_raw())
                .env("USER", &u.name)
                .env("LOGNAME", &u.name)
                .env("HOME", &u.dir);
        }
        if let Some(gid) = gid {
            command.gid(gid);
        }
        command
            .envs(&spec.env)
            .env(SERVICE_VAR, &spec.name)
            .env(INSTANCE_VAR, instance)
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(writer2)
            .process_group(0);
        if let Some(cwd) = &spec.cwd {
            command.current_dir(cwd);
        }
        let tracked = reaper::spawn(&mut command).map_err(|source| ProcessError::Spawn {
            command: spec.command.join(" "),
            source,
        })?;
        // The write ends now belong to the child alone: the pump sees EOF when it is gone.
        drop(command);
        pump(reader, log, &spec.name);
        let pgid = tracked.pid().map(|id| Pid::from_raw(id as i32));
        Ok(ServiceProcess {
            tracked,
            pgid,
            instance: instance.to_string(),
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.tracked.pid()
    }

    /// Waits until the service exits by itself.
    pub async fn wait(&mut self) -> Result<ExitStatus, ProcessError> {
        self.tracked.child.wait().await.map_err(ProcessError::Wait)
    }

    /// Stops the service by its shutdown rule and returns how it ended. Whatever else is left
    /// of it (its group, tagged processes that left the group) is killed.
    pub async fn stop(&mut self, shutdown: &Shutdown) -> Result<ExitStatus, ProcessError> {
        let status = match shutdown {
            Shutdown::BrutalKill => {
                self.signal_all(Signal::SIGKILL).await;
                self.wait().await?
            }
            Shutdown::Timeout(grace) => {
                self.signal_all(Signal::SIGTERM).await;
                match tokio::time::timeout(*grace, self.tracked.child.wait()).await {
                    Ok(status) => status.map_err(ProcessError::Wait)?,
                    Err(_) => {
                        self.signal_all(Signal::SIGKILL).await;
                        self.wait().await?
                    }
                }
            }
        };
        self.cleanup().await;
        Ok(status)
    }

    /// After the leader is gone: kills what is left of its group and its tagged processes.
    pub async fn cleanup(&mut self) {
        self.signal_all(Signal::SIGKILL).await;
        self.pgid = None;
    }

    async fn signal_all(&self, signal: Signal) {
        if let Some(pgid) = self.pgid {
            // ESRCH (nothing left in the group) is the normal end of a stop.
            let _ = killpg(pgid, signal);
        }
        let instance = self.instance.clone();
        let _ = tokio::task::spawn_blocking(move || signal_tagged(&instance, signal)).await;
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            let _ = killpg(pgid, Signal::SIGKILL);
            signal_tagged(&self.instance, Signal::SIGKILL);
        }
    }
}

/// The pids of every process whose environment carries `NBWATCH_INSTANCE=<instance>`.
pub fn tagged(instance: &str) -> Vec<Pid> {
    let needle = format!("{INSTANCE_VAR}={instance}");
    with_env(|var| var == needle.as_bytes())
}

/// The pids of every process with an environment entry (`NAME=value`) that `matches`.
pub fn with_env(matches: impl Fn(&[u8]) -> bool) -> Vec<Pid> {
    let mut pids = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(env) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if env.split(|b| *b == 0).any(&matches) {
            pids.push(Pid::from_raw(pid));
        }
    }
    pids
}

fn signal_tagged(instance: &str, signal: Signal) {
    for pid in tagged(instance) {
        let _ = kill(pid, signal);
    }
}

/// Copies the service's output into its log on a small thread of its own until every writer
/// (the service and whatever inherited its output) is gone.
fn pump(mut reader: std::io::PipeReader, mut log: RotatingLog, name: &str) {
    let name = name.to_string();
    let spawned = std::thread::Builder::new()
        .name(format!("log-{name}"))
        .stack_size(64 * 1024)
        .spawn(move || {
            let mut buf = [0u8; 8192];
            // Bytes lost since the log stopped taking writes (a full disk): one line when it
            // starts failing, one when it takes writes again.
            let mut lost: Option<u64> = None;
            loop {
                match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => match (log.write(&buf[..n]), lost) {
                        (Ok(()), None) => {}
                        (Ok(()), Some(bytes)) => {
                            tracing::info!(service = %name, lost_bytes = bytes, "writing the service log again");
                            lost = None;
                        }
                        (Err(e), None) => {
                            tracing::warn!(service = %name, error = %e, "cannot write the service log; its output is dropped until it can");
                            lost = Some(n as u64);
                        }
                        (Err(_), Some(bytes)) => lost = Some(bytes + n as u64),
                    },
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start a log pump; the service's output is lost");
    }
}

#[cfg(test)]
mod tests;
