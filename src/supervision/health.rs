//! Health probes: is a service answering, and what does it say about itself?
//!
//! Every probe ends as an [`Outcome`] in the Nagios plugin vocabulary (ok, warning, critical,
//! unknown, a one-line message, perfdata), whatever its type, so one [`Tracker`] decides for
//! all of them when a service is restarted, and host probes reuse exec checks unchanged.
//!
//! * [`parse_nagios`] reads a plugin's exit code and output. It is pure and never fails:
//!   plugins are written by anyone, so a malformed perfdata item is skipped, not an error.
//! * [`check`] runs one probe, bounded by its timeout. A probe that cannot say anything about
//!   the service (a plugin that cannot be started, an `https://` url) is `unknown`, which never
//!   restarts anything; a service that does not answer in time is `critical`.
//! * [`Tracker`] counts consecutive criticals; the `failures`-th asks for a restart.
//!
//! The http probe is a few lines of HTTP/1.1 over a `TcpStream` rather than a client crate: it
//! needs one GET and a status line, and plain `http://` on a LAN or loopback is what services
//! behind a neighbourhood watch expose.

mod exec;
mod net;

#[cfg(test)]
mod tests;

use super::spec::ProbeTarget;
use serde::Serialize;
use std::time::Duration;

/// How a probe found the service, as the contract spells it in `services --json`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Ok,
    Warning,
    Critical,
    /// Nothing is known: the probe itself failed, or has not run yet.
    #[default]
    Unknown,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Ok => "ok",
            Health::Warning => "warning",
            Health::Critical => "critical",
            Health::Unknown => "unknown",
        }
    }

    /// The Nagios exit code's meaning; any other code, or none (killed by a signal), is
    /// `Unknown`.
    pub fn from_exit_code(code: Option<i32>) -> Health {
        match code {
            Some(0) => Health::Ok,
            Some(1) => Health::Warning,
            Some(2) => Health::Critical,
            _ => Health::Unknown,
        }
    }
}

/// One perfdata item, `label=value[unit][;warn;crit;min;max]`, as the plugin wrote it (the
/// gossip codec's item, in the plugin's units until [`Perf::in_base_units`]).
pub type Perf = crate::keys::probe::Item;

/// What one run of a probe found.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub health: Health,
    /// One line, without the perfdata.
    pub message: String,
    pub perfdata: Vec<Perf>,
}

impl Outcome {
    pub fn new(health: Health, message: impl Into<String>) -> Outcome {
        Outcome {
            health,
            message: message.into(),
            perfdata: Vec::new(),
        }
    }
}

/// Reads a plugin's result by the Nagios conventions: the exit code gives the health (see
/// [`Health::from_exit_code`]); the first line up to a `|` is the message; perfdata follows
/// that `|`, and also follows the first `|` of the long output (later lines), up to the end.
/// Items are `label=value[unit][;warn;crit;min;max]`, the label single-quoted when it holds
/// spaces (`''` is a quote inside it). Malformed items are skipped.
pub fn parse_nagios(code: Option<i32>, output: &str) -> Outcome {
    let (first, long) = output.split_once('\n').unwrap_or((output, ""));
    let (message, first_perf) = first.split_once('|').unwrap_or((first, ""));
    let mut perfdata = parse_perfdata(first_perf);
    if let Some((_, long_perf)) = long.split_once('|') {
        perfdata.extend(parse_perfdata(long_perf));
    }
    Outcome {
        health: Health::from_exit_code(code),
        message: message.trim().to_string(),
        perfdata,
    }
}

/// The perfdata items of `text`, separated by whitespace (or `|`, which starts another
/// perfdata part of the long output).
fn parse_perfdata(text: &str) -> Vec<Perf> {
    let is_separator = |c: char| c.is_whitespace() || c == '|';
    let mut out = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches(is_separator);
        if rest.is_empty() {
            return out;
        }
        let (label, after_label) = if let Some(quoted) = rest.strip_prefix('\'') {
            match quoted_label(quoted) {
                Some(found) => found,
                // An unterminated quote: nothing after it can be read reliably.
                None => return out,
            }
        } else {
            let end = rest.find(['=']).unwrap_or(rest.len());
            let label = &rest[..end];
            if label.contains(is_separator) {
                // Not an item (no '=' before the next separator): skip one word.
                let word = rest.find(is_separator).unwrap_or(rest.len());
                rest = &rest[word..];
                continue;
            }
            (label.to_string(), &rest[end..])
        };
        let end = after_label.find(is_separator).unwrap_or(after_label.len());
        let (item, next) = after_label.split_at(end);
        rest = next;
        let Some(data) = item.strip_prefix('=') else {
            continue;
        };
        if label.is_empty() {
            continue;
        }
        let mut fields = data.split(';');
        let value_and_unit = fields.next().unwrap_or("");
        let number_end = value_and_unit
            .find(|c: char| !(c.is_ascii_digit() || matches!(c, '-' | '+' | '.')))
            .unwrap_or(value_and_unit.len());
        let (number, unit) = value_and_unit.split_at(number_end);
        // A digit in the unit means a malformed number ("1e3", "1,5").
        if let Ok(value) = number.parse::<f64>()
            && value.is_finite()
            && !unit.contains(|c: char| c.is_ascii_digit())
        {
            let text = |f: Option<&str>| f.filter(|s| !s.is_empty()).map(str::to_string);
            let num = |f: Option<&str>| {
                f.and_then(|s| s.parse::<f64>().ok())
                    .filter(|v| v.is_finite())
            };
            let (warn, crit) = (text(fields.next()), text(fields.next()));
            let (min, max) = (num(fields.next()), num(fields.next()));
            out.push(Perf {
                label,
                value,
                unit: unit.to_string(),
                warn,
                crit,
                min,
                max,
            });
        }
    }
}

/// The label of a quoted item (after its opening quote) and what follows the closing quote;
/// `None` if the quote is never closed.
fn quoted_label(text: &str) -> Option<(String, &str)> {
    let mut label = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        if c != '\'' {
            label.push(c);
            continue;
        }
        if text[i + 1..].starts_with('\'') {
            label.push('\'');
            chars.next();
            continue;
        }
        return Some((label, &text[i + 1..]));
    }
    None
}

/// Runs one probe. Never takes (much) longer than `timeout`; never fails, a failure to probe
/// being an outcome too.
pub async fn check(target: &ProbeTarget, timeout: Duration) -> Outcome {
    match target {
        ProbeTarget::Tcp(addr) => net::tcp(addr, timeout).await,
        ProbeTarget::Http(url) => net::http(url, timeout).await,
        ProbeTarget::Exec(command) => exec::run(command, timeout).await,
    }
}

/// "timed out after 2s".
fn timed_out(timeout: Duration) -> String {
    format!("timed out after {}", humantime::format_duration(timeout))
}

/// What the supervisor should make of the latest outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The probe says ok.
    Healthy,
    /// Not ok, but not (yet) a reason to restart.
    Degraded,
    /// `failures` criticals in a row: restart the service through its tree's strategy.
    Restart,
}

/// Counts consecutive criticals of one probe. Pure: the caller feeds it outcomes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tracker {
    failures: u32,
    criticals: u32,
}

impl Tracker {
    /// `failures` of 0 is taken as 1 (every critical restarts).
    pub fn new(failures: u32) -> Tracker {
        Tracker {
            failures: failures.max(1),
            criticals: 0,
        }
    }

    /// Criticals seen in a row so far (since the last restart or non-critical outcome).
    pub fn criticals(&self) -> u32 {
        self.criticals
    }

    /// `Restart` exactly on the `failures`-th critical in a row, after which counting starts
    /// over (the restarted service gets `failures` chances again). Any other health resets the
    /// count: warnings and unknowns are reported, never acted on.
    pub fn observe(&mut self, outcome: &Outcome) -> Verdict {
        match outcome.health {
            Health::Critical => {
                self.criticals += 1;
                if self.criticals >= self.failures {
                    self.criticals = 0;
                    Verdict::Restart
                } else {
                    Verdict::Degraded
                }
            }
            Health::Ok => {
                self.criticals = 0;
                Verdict::Healthy
            }
            Health::Warning | Health::Unknown => {
                self.criticals = 0;
                Verdict::Degraded
            }
        }
    }
}
