//! The exec probe: a Nagios plugin run as its own process group, so a plugin that overstays
//! its timeout is killed together with whatever it started.

use super::{Health, Outcome, parse_nagios, timed_out};
use crate::supervision::reaper;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

/// How much of a plugin's stdout is kept; the rest is read and dropped, so a chatty plugin
/// does not block on a full pipe.
pub(super) const MAX_OUTPUT: usize = 64 * 1024;

/// Runs `command` (never empty: specs guarantee it) with stdin and stderr closed and reads its
/// result. Past `timeout` the group is killed and the probe is `critical`: a plugin that hangs
/// is most often talking to a service that hangs. The plugin is always waited for.
pub(super) async fn run(command: &[String], timeout: Duration) -> Outcome {
    let Some((program, args)) = command.split_first() else {
        return Outcome::new(Health::Unknown, "the probe command is empty");
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        // If the probe's task is aborted mid-check, do not leave the plugin running.
        .kill_on_drop(true);
    let mut tracked = match reaper::spawn(&mut cmd) {
        Ok(tracked) => tracked,
        Err(e) => return Outcome::new(Health::Unknown, format!("cannot run {program}: {e}")),
    };
    let stdout = tracked.child.stdout.take();
    let finished = tokio::time::timeout(timeout, async {
        let output = match stdout {
            Some(out) => read_bounded(out).await,
            None => Vec::new(),
        };
        (output, tracked.child.wait().await)
    })
    .await;
    match finished {
        Ok((output, Ok(status))) => parse_nagios(status.code(), &String::from_utf8_lossy(&output)),
        Ok((_, Err(e))) => Outcome::new(Health::Unknown, format!("cannot wait for {program}: {e}")),
        Err(_) => {
            if let Some(pid) = tracked.pid() {
                // The group's id is the plugin's pid (process_group(0)); it cannot be reused
                // before we have waited for the plugin, just below.
                let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
            let _ = tracked.child.wait().await;
            Outcome::new(
                Health::Critical,
                format!("{program}: {}", timed_out(timeout)),
            )
        }
    }
}

/// Everything `out` writes until it closes, keeping the first [`MAX_OUTPUT`] bytes.
async fn read_bounded(mut out: impl AsyncRead + Unpin) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match out.read(&mut buf).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = MAX_OUTPUT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}
