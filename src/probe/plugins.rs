//! Host probes: Nagios plugins this host runs on a schedule, whose results every other host
//! sees. One file per probe in the `metrics.probes` folder, parsed once into typed specs with
//! every problem named by file and key, like supervision trees:
//!
//! ```toml
//! name = "disk_root"                      # default: the file name without .toml
//! command = ["check_disk.sh", "/", "20", "10"]
//! interval = "60s"
//! timeout = "10s"
//! ```
//!
//! A probe's result is announced through gossip as `probe.<name>` = `"<health>
//! <label>=<value><unit>;<warn>;<crit>;<min>;<max> ..."`: the health and the perfdata in base
//! units (see [`crate::keys::probe`]), nothing else. The message stays local because it
//! often carries a changing number ("42.3% free") that would cost a gossip round per change
//! and tells other hosts nothing the perfdata does not. The value is cut, item by item, to
//! fit one gossip entry.

use crate::config::walk::{Table, Walker};
use crate::config::{Problem, ProblemKind, toml_files, toml_table};
use crate::keys::PROBE_PREFIX;
use crate::supervision::health::Outcome;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[cfg(test)]
mod tests;

pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostProbeSpec {
    /// The definition file.
    pub file: PathBuf,
    /// Letters, digits, `_` and `-`; unique on the node.
    pub name: String,
    /// Never empty; the program is resolved (see [`load_host_probes`]).
    pub command: Vec<String>,
    /// More than zero.
    pub interval: Duration,
    /// More than zero.
    pub timeout: Duration,
}

impl HostProbeSpec {
    /// The gossip key this probe's results are announced under.
    pub fn key(&self) -> String {
        format!("{PROBE_PREFIX}{}", self.name)
    }
}

const KEYS: &[&str] = &["name", "command", "interval", "timeout"];

/// Loads every `*.toml` file of `dir` (sorted by name); a missing folder means no probes.
///
/// The program (first element of `command`) is resolved against `dir` when it is a relative
/// path (`./check_x`, `lib/check_x`), or a bare name of a file that exists in `dir`
/// (`check_disk.sh`); another bare name (`sh`) is looked up on `PATH` when the probe runs. A
/// program given as a path must exist.
pub fn load_host_probes(dir: &Path) -> Result<Vec<HostProbeSpec>, Vec<Problem>> {
    let mut problems = Vec::new();
    let files = toml_files(dir, "host probes", &mut problems).map_err(|p| vec![p])?;
    let mut specs: Vec<HostProbeSpec> = Vec::new();
    for (file, text) in files {
        let Some(spec) = parse_host_probe(&file, &text, dir, &mut problems) else {
            continue;
        };
        if let Some(first) = specs.iter().find(|s| s.name == spec.name) {
            let msg = format!(
                "host probe \"{}\" is already defined in {}; names are unique on a node",
                spec.name,
                first.file.display()
            );
            problems.push(Problem::at(&file, "name", ProblemKind::BadValue, msg));
            continue;
        }
        specs.push(spec);
    }
    if problems.is_empty() {
        Ok(specs)
    } else {
        Err(problems)
    }
}

/// Parses one definition file of the folder `dir`; problems go to `problems`.
pub fn parse_host_probe(
    file: &Path,
    text: &str,
    dir: &Path,
    problems: &mut Vec<Problem>,
) -> Option<HostProbeSpec> {
    let table = toml_table(file, text, problems)?;
    let mut w = Walker::for_file(file);
    w.unknown_keys_listed(&table, "", KEYS);
    let name = match table.get("name") {
        None => file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        Some(v) => w.string(v, "name").unwrap_or_else(|| "-".to_string()),
    };
    let usable = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if name.is_empty() || name.len() > 64 || !name.chars().all(usable) {
        let msg = format!(
            "\"{name}\" is not a usable name: 1 to 64 letters, digits, '_' or '-' (it names the \
             gossip key probe.<name>; without a name key, the file name is used)"
        );
        w.report("name", ProblemKind::BadValue, msg);
    }
    let command = command(&mut w, &table, dir);
    let mut duration = |key: &str, default: Duration| {
        const FORM: &str = "a number and a unit, like \"10s\" or \"5m\"";
        w.field(&table, "", key, |w, v, k| {
            let d = w.duration_as(v, k, "a duration string, like \"60s\"", FORM)?;
            w.more_than_zero(v, k, d)
        })
        .unwrap_or(default)
    };
    let interval = duration("interval", DEFAULT_INTERVAL);
    let timeout = duration("timeout", DEFAULT_TIMEOUT);
    if !w.hand_over(problems) {
        return None;
    }
    Some(HostProbeSpec {
        file: file.to_path_buf(),
        name,
        command: command?,
        interval,
        timeout,
    })
}

/// The command with its program resolved against `dir` (see [`load_host_probes`]).
fn command(w: &mut Walker, table: &Table, dir: &Path) -> Option<Vec<String>> {
    const EXPECTED: &str = "an array of strings, like [\"check_disk.sh\", \"/\", \"20\", \"10\"]";
    let missing = format!("missing: expected {EXPECTED}");
    let every = format!("expected {EXPECTED}");
    let mut words = w.required(table, "", "command", &missing, |w, v, k| {
        w.command(v, k, EXPECTED, &every)
    })?;
    let program = Path::new(&words[0]);
    let resolved = if program.is_absolute() {
        program.to_path_buf()
    } else if program.components().count() > 1 || dir.join(program).is_file() {
        dir.join(program)
    } else {
        // A bare name not in the folder: found on PATH when the probe runs.
        return Some(words);
    };
    if !resolved.is_file() {
        let msg = format!("no such program: {}", resolved.display());
        w.report("command", ProblemKind::BadValue, msg);
        return None;
    }
    words[0] = resolved.display().to_string();
    Some(words)
}

/// The gossip value announcing `outcome` under `key` (see [`crate::keys::probe`]), its health
/// held `since` then.
pub fn announcement(key: &str, outcome: &Outcome, since: Option<crate::types::Time>) -> String {
    let items: Vec<_> = outcome.perfdata.iter().map(|p| p.in_base_units()).collect();
    crate::keys::probe::encode(key, outcome.health.as_str(), since, &items)
}
