//! Supervision trees as data: one TOML file per tree, parsed once into typed specs. Every
//! problem of every file is reported with the file and the dotted key, like the node config:
//! the file is read by the config's own walker ([`crate::config::walk`]).

use super::policy::{Backoff, RestartType, Strategy};
use crate::config::walk::{Table, Walker, as_array, as_str, join};
use crate::config::{Problem, ProblemKind, toml_files, toml_table};
use config::ValueKind;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_INTENSITY: u32 = 3;
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(60);
pub const DEFAULT_SHUTDOWN: Duration = Duration::from_secs(5);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeSpec {
    pub file: PathBuf,
    pub root: SupervisorSpec,
    /// `None`: the tree runs on this node. `Some`: it is a cluster singleton that runs where
    /// the leader places it (see [`crate::control::placement`]).
    pub placement: Option<Placement>,
}

/// Where a singleton tree may run.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Placement {
    /// Candidate nodes in order of preference; empty: any node that declares the tree.
    pub failover: Vec<String>,
    /// Move back to a more preferred node when it is available again.
    pub takeover: bool,
}

/// A service on another node that a service needs (`requires = ["nas:postgres"]`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Requirement {
    pub node: String,
    pub service: String,
}

impl std::fmt::Display for Requirement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.node, self.service)
    }
}

/// What a service does when one of its requirements goes away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnDependencyLoss {
    /// Stopped until every requirement is back, then started.
    Stop,
    /// Restarted when a requirement goes away, and again when it is back.
    Restart,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SupervisorSpec {
    pub name: String,
    pub strategy: Strategy,
    pub intensity: u32,
    pub period: Duration,
    pub backoff: Option<Backoff>,
    pub children: Vec<ChildSpec>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChildSpec {
    Service(ServiceSpec),
    Supervisor(SupervisorSpec),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shutdown {
    /// SIGTERM to the process group, then SIGKILL after this long.
    Timeout(Duration),
    BrutalKill,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSpec {
    pub name: String,
    pub command: Vec<String>,
    pub restart: RestartType,
    pub shutdown: Shutdown,
    pub env: BTreeMap<String, String>,
    pub cwd: Option<PathBuf>,
    pub user: Option<String>,
    pub group: Option<String>,
    pub probes: Vec<ProbeSpec>,
    /// Holds the next sibling back until this probe first succeeds.
    pub ready: Option<ReadySpec>,
    /// Services on other nodes that must be running and healthy before this one starts.
    pub requires: Vec<Requirement>,
    pub on_dependency_loss: OnDependencyLoss,
}

/// A readiness probe: checked every `probe.interval` after the start until it says ok; a
/// service not ready within `deadline` counts as a failed start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadySpec {
    pub probe: ProbeSpec,
    pub deadline: Duration,
}

pub const DEFAULT_READY_DEADLINE: Duration = Duration::from_secs(60);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeTarget {
    Tcp(String),
    Http(String),
    Exec(Vec<String>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeSpec {
    pub target: ProbeTarget,
    pub interval: Duration,
    pub timeout: Duration,
    pub failures: u32,
}

/// Loads every `*.toml` file of `dir` (sorted by name). A missing folder means no trees.
/// Service names must be unique across all trees of the node.
pub fn load_trees(dir: &Path) -> Result<Vec<TreeSpec>, Vec<Problem>> {
    let mut problems = Vec::new();
    let files = toml_files(dir, "trees", &mut problems).map_err(|p| vec![p])?;
    let mut trees = Vec::new();
    for (file, text) in files {
        if let Some(tree) = parse_tree(&file, &text, &mut problems) {
            trees.push(tree);
        }
    }
    check_unique_services(&trees, &mut problems);
    if problems.is_empty() {
        Ok(trees)
    } else {
        Err(problems)
    }
}

/// Parses one tree file; problems go to `problems`.
pub fn parse_tree(file: &Path, text: &str, problems: &mut Vec<Problem>) -> Option<TreeSpec> {
    let table = toml_table(file, text, problems)?;
    let mut w = Walker::for_file(file);
    let root = supervisor(&mut w, &table, "");
    let placement = placement(&mut w, &table);
    if !w.hand_over(problems) {
        return None;
    }
    root.map(|root| TreeSpec {
        file: file.to_path_buf(),
        root,
        placement,
    })
}

const SUPERVISOR_KEYS: &[&str] = &[
    "name",
    "strategy",
    "intensity",
    "period",
    "backoff",
    "children",
    "placement",
    "takeover",
];
const SERVICE_KEYS: &[&str] = &[
    "name",
    "command",
    "restart",
    "shutdown",
    "env",
    "cwd",
    "user",
    "group",
    "probes",
    "ready",
    "requires",
    "on_dependency_loss",
];
const PROBE_KEYS: &[&str] = &[
    "type", "target", "url", "command", "interval", "timeout", "failures",
];
const READY_KEYS: &[&str] = &[
    "type", "target", "url", "command", "interval", "timeout", "deadline",
];
const BACKOFF_KEYS: &[&str] = &["initial", "max", "reset_after"];

/// The choices of `strategy`, `restart` and `on_dependency_loss`; the first is the default.
const STRATEGIES: &[(&str, Strategy)] = &[
    ("one_for_one", Strategy::OneForOne),
    ("one_for_all", Strategy::OneForAll),
    ("rest_for_one", Strategy::RestForOne),
];
const RESTART_TYPES: &[(&str, RestartType)] = &[
    ("permanent", RestartType::Permanent),
    ("transient", RestartType::Transient),
    ("temporary", RestartType::Temporary),
];
const ON_DEPENDENCY_LOSS: &[(&str, OnDependencyLoss)] = &[
    ("stop", OnDependencyLoss::Stop),
    ("restart", OnDependencyLoss::Restart),
];

/// One of a fixed set of names, the first being the default when the key is absent. An
/// unknown name is a problem that lists the choices; the default stands in for it.
fn choice<T: Copy>(w: &mut Walker, t: &Table, prefix: &str, key: &str, options: &[(&str, T)]) -> T {
    let unknown = |name: &str, names: &[&str]| {
        format!("unknown {key} \"{name}\"; expected {}", names.join(", "))
    };
    w.field(t, prefix, key, |w, v, k| w.choice(v, k, options, unknown))
        .unwrap_or(options[0].1)
}

fn duration(w: &mut Walker, t: &Table, prefix: &str, key: &str) -> Option<Duration> {
    const FORM: &str = "a number and a unit, like \"500ms\", \"5s\" or \"2m\"";
    w.field(t, prefix, key, |w, v, k| {
        w.duration_as(v, k, "a string", FORM)
    })
}

/// A whole number from 0 to `u32::MAX`.
fn count(w: &mut Walker, t: &Table, prefix: &str, key: &str) -> Option<u32> {
    w.field(t, prefix, key, |w, v, k| match &v.kind {
        ValueKind::I64(i) if (0..=i64::from(u32::MAX)).contains(i) => Some(*i as u32),
        _ => {
            w.wrong_type(v, k, "a whole number ≥ 0");
            None
        }
    })
}

fn command(w: &mut Walker, t: &Table, prefix: &str) -> Option<Vec<String>> {
    let missing = "missing: a command as an array of strings";
    w.required(t, prefix, "command", missing, |w, v, k| {
        let expected = "an array of strings, like [\"/usr/bin/app\", \"--flag\"]";
        w.command(v, k, expected, "every element must be a string")
    })
}

/// The tables of the array at `key`, each with its key path (`children[1]`).
fn tables<'t>(w: &mut Walker, t: &'t Table, prefix: &str, key: &str) -> Vec<(String, &'t Table)> {
    let full = join(prefix, key);
    let Some(v) = t.get(key) else {
        return Vec::new();
    };
    let Some(items) = as_array(v) else {
        w.wrong_type(v, &full, "an array of tables ([[...]])");
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let key = format!("{full}[{i}]");
        if let Some(table) = w.table(item, &key, "a table") {
            out.push((key, table));
        }
    }
    out
}

/// A service's name becomes the name of its log file (`<name>.log`) and both names are shown on
/// every host's terminal: no path separator, no ':' (it splits `NODE:SERVICE`), no spaces and
/// nothing a terminal acts on ([`crate::text::needs_escape`]: ESC, CR, LF, NUL, bidi
/// overrides, ...).
pub fn usable_name(name: &str) -> bool {
    !name.is_empty()
        && !name.contains([':', ' ', '/', '\\'])
        && !name.chars().any(crate::text::needs_escape)
}

fn name(w: &mut Walker, t: &Table, prefix: &str) -> Option<String> {
    let key = join(prefix, "name");
    let name = w.field(t, prefix, "name", Walker::string);
    match name {
        None if !t.contains_key("name") => {
            let message = "missing: every supervisor and service needs a name";
            w.report(&key, ProblemKind::MissingName, message);
            None
        }
        Some(n) if !usable_name(&n) => {
            let message = format!(
                "{n:?} is not a usable name (no spaces, ':', '/', '\\' or control characters)"
            );
            w.report(&key, ProblemKind::BadValue, message);
            None
        }
        other => other,
    }
}

/// `placement` and `takeover` of a tree's root table.
fn placement(w: &mut Walker, t: &Table) -> Option<Placement> {
    let takeover = w.field(t, "", "takeover", Walker::bool).unwrap_or(true);
    let v = t.get("placement")?;
    let failover = match &v.kind {
        ValueKind::String(s) if s == "any" => Vec::new(),
        ValueKind::Table(p) => {
            w.unknown_keys_listed(p, "placement", &["failover"]);
            let nodes: Option<Vec<String>> = p.get("failover").and_then(|f| {
                as_array(f)?
                    .iter()
                    .map(|n| as_str(n).map(str::to_string))
                    .collect()
            });
            match nodes {
                Some(n) if !n.is_empty() && n.iter().all(|x| !x.trim().is_empty()) => n,
                _ => {
                    w.report(
                        "placement.failover",
                        ProblemKind::BadValue,
                        "expected a non-empty array of node names, like [\"nas\", \"desktop\"]",
                    );
                    return None;
                }
            }
        }
        _ => {
            w.report(
                "placement",
                ProblemKind::BadValue,
                "expected \"any\" or a table { failover = [\"node\", ...] }",
            );
            return None;
        }
    };
    Some(Placement { failover, takeover })
}

fn requirements(w: &mut Walker, t: &Table, prefix: &str) -> Vec<Requirement> {
    let Some(v) = t.get("requires") else {
        return Vec::new();
    };
    let full = join(prefix, "requires");
    let bad = "expected an array of \"node:service\" strings, like [\"nas:postgres\"]";
    let Some(items) = as_array(v) else {
        w.report(&full, ProblemKind::WrongType, bad);
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match as_str(item).and_then(|s| s.split_once(':')) {
            Some((node, service))
                if !node.trim().is_empty()
                    && !service.trim().is_empty()
                    && !service.contains(':') =>
            {
                out.push(Requirement {
                    node: node.trim().to_string(),
                    service: service.trim().to_string(),
                });
            }
            _ => w.report(&format!("{full}[{i}]"), ProblemKind::BadValue, bad),
        }
    }
    out
}

fn supervisor(w: &mut Walker, t: &Table, prefix: &str) -> Option<SupervisorSpec> {
    w.unknown_keys_listed(t, prefix, SUPERVISOR_KEYS);
    if !prefix.is_empty() {
        for key in ["placement", "takeover"] {
            if t.contains_key(key) {
                w.report(
                    &join(prefix, key),
                    ProblemKind::BadValue,
                    "only a tree's root places the tree; a nested supervisor cannot",
                );
            }
        }
    }
    let name = name(w, t, prefix);
    let strategy = choice(w, t, prefix, "strategy", STRATEGIES);
    let intensity = count(w, t, prefix, "intensity").unwrap_or(DEFAULT_INTENSITY);
    let period = duration(w, t, prefix, "period").unwrap_or(DEFAULT_PERIOD);
    let backoff = w.field(t, prefix, "backoff", |w, v, p| {
        let b = w.table(v, p, "a table { initial, max, reset_after }")?;
        w.unknown_keys_listed(b, p, BACKOFF_KEYS);
        let mut read = |key, default| duration(w, b, p, key).unwrap_or(default);
        Some(Backoff {
            initial: read("initial", Duration::from_secs(1)),
            max: read("max", Duration::from_secs(30)),
            reset_after: read("reset_after", Duration::from_secs(60)),
        })
    });
    let mut children = Vec::new();
    for (p, child) in tables(w, t, prefix, "children") {
        let nested = child.contains_key("children") || child.contains_key("strategy");
        if nested && child.contains_key("command") {
            w.report(&p, ProblemKind::BadValue, "a child is either a service (command) or a supervisor (strategy, children), not both");
            continue;
        }
        if nested {
            children.extend(supervisor(w, child, &p).map(ChildSpec::Supervisor));
        } else {
            children.extend(service(w, child, &p).map(ChildSpec::Service));
        }
    }
    Some(SupervisorSpec {
        name: name?,
        strategy,
        intensity,
        period,
        backoff,
        children,
    })
}

fn service(w: &mut Walker, t: &Table, prefix: &str) -> Option<ServiceSpec> {
    w.unknown_keys_listed(t, prefix, SERVICE_KEYS);
    let name = name(w, t, prefix);
    let command = command(w, t, prefix);
    let restart = choice(w, t, prefix, "restart", RESTART_TYPES);
    let shutdown = match t.get("shutdown") {
        Some(v) if as_str(v) == Some("brutal_kill") => Shutdown::BrutalKill,
        _ => Shutdown::Timeout(duration(w, t, prefix, "shutdown").unwrap_or(DEFAULT_SHUTDOWN)),
    };
    let env = w
        .field(t, prefix, "env", |w, v, p| {
            let vars = w.table(v, p, "a table of strings")?;
            let mut names: Vec<&String> = vars.keys().collect();
            names.sort();
            let mut env = BTreeMap::new();
            for k in names {
                if let Some(s) = w.string(&vars[k], &join(p, k)) {
                    env.insert(k.clone(), s);
                }
            }
            Some(env)
        })
        .unwrap_or_default();
    let cwd = w.field(t, prefix, "cwd", Walker::string).map(PathBuf::from);
    let user = w.field(t, prefix, "user", Walker::string);
    let group = w.field(t, prefix, "group", Walker::string);
    let mut probes = Vec::new();
    for (p, table) in tables(w, t, prefix, "probes") {
        probes.extend(probe(w, table, &p, PROBE_KEYS));
    }
    let ready = w.field(t, prefix, "ready", |w, v, p| {
        let r = w.table(
            v,
            p,
            "a table: a probe (type, target/url/command, interval, timeout) and a deadline",
        )?;
        let probe = probe(w, r, p, READY_KEYS);
        let deadline = duration(w, r, p, "deadline").unwrap_or(DEFAULT_READY_DEADLINE);
        probe.map(|probe| ReadySpec { probe, deadline })
    });
    let requires = requirements(w, t, prefix);
    let on_dependency_loss = choice(w, t, prefix, "on_dependency_loss", ON_DEPENDENCY_LOSS);
    Some(ServiceSpec {
        name: name?,
        command: command?,
        restart,
        shutdown,
        env,
        cwd,
        user,
        group,
        probes,
        ready,
        requires,
        on_dependency_loss,
    })
}

fn probe(w: &mut Walker, t: &Table, prefix: &str, keys: &[&str]) -> Option<ProbeSpec> {
    w.unknown_keys_listed(t, prefix, keys);
    let text = |w: &mut Walker, key| w.required(t, prefix, key, "missing", Walker::string);
    let target = match w.field(t, prefix, "type", Walker::string).as_deref() {
        Some("tcp") => ProbeTarget::Tcp(text(w, "target")?),
        Some("http") => {
            let url = text(w, "url")?;
            if !is_probeable_url(&url) {
                let message = format!(
                    "cannot probe \"{url}\": expected an http://host[:port][/path] url (https is not supported)"
                );
                w.report(&join(prefix, "url"), ProblemKind::BadValue, message);
                return None;
            }
            ProbeTarget::Http(url)
        }
        Some("exec") => ProbeTarget::Exec(command(w, t, prefix)?),
        Some(other) => {
            let message = format!("unknown probe type \"{other}\"; expected tcp, http or exec");
            w.report(&join(prefix, "type"), ProblemKind::BadValue, message);
            return None;
        }
        None => {
            let message = "missing: tcp, http or exec";
            w.report(&join(prefix, "type"), ProblemKind::MissingKey, message);
            return None;
        }
    };
    Some(ProbeSpec {
        target,
        interval: duration(w, t, prefix, "interval").unwrap_or(Duration::from_secs(10)),
        timeout: duration(w, t, prefix, "timeout").unwrap_or(Duration::from_secs(2)),
        failures: count(w, t, prefix, "failures").unwrap_or(3).max(1),
    })
}

fn check_unique_services(trees: &[TreeSpec], problems: &mut Vec<Problem>) {
    let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
    fn walk(
        s: &SupervisorSpec,
        file: &Path,
        seen: &mut BTreeMap<String, PathBuf>,
        problems: &mut Vec<Problem>,
    ) {
        for child in &s.children {
            match child {
                ChildSpec::Supervisor(sub) => walk(sub, file, seen, problems),
                ChildSpec::Service(svc) => {
                    if let Some(first) = seen.get(&svc.name) {
                        let msg = format!(
                            "service \"{}\" is already defined in {}; service names are unique on a node",
                            svc.name,
                            first.display()
                        );
                        problems.push(Problem::at(file, "children", ProblemKind::BadValue, msg));
                    } else {
                        seen.insert(svc.name.clone(), file.to_path_buf());
                    }
                }
            }
        }
    }
    for t in trees {
        walk(&t.root, &t.file, &mut seen, problems);
    }
}

/// Whether `url` can be probed: `http://host[:port][/path]`. The tree parser uses this (the
/// http probe reads urls the same way), so a url the probe would only ever find `unknown` is
/// a config problem instead.
pub fn is_probeable_url(url: &str) -> bool {
    HttpUrl::parse(url).is_some()
}

/// The parts of an `http://` url a GET needs.
#[derive(Debug, PartialEq, Eq)]
pub struct HttpUrl {
    /// What to connect to: "host:port" (an IPv6 host keeps its brackets).
    pub connect: String,
    /// The `Host` header: the authority as written.
    pub host: String,
    /// Path and query, starting with '/'.
    pub path: String,
}

impl HttpUrl {
    pub fn parse(url: &str) -> Option<HttpUrl> {
        let rest = url.strip_prefix("http://")?;
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(i) => rest.split_at(i),
            None => (rest, "/"),
        };
        // A fragment is never sent.
        let path = path.split('#').next().unwrap_or("");
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        if authority.is_empty()
            || authority.contains('@')
            || path.contains(|c: char| c.is_whitespace() || c.is_control())
        {
            return None;
        }
        let has_port = match authority.rfind(':') {
            Some(i) => !authority[i..].contains(']'),
            None => false,
        };
        let connect = if has_port {
            let (_, port) = authority.rsplit_once(':')?;
            port.parse::<u16>().ok()?;
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        Some(HttpUrl {
            connect,
            host: authority.to_string(),
            path,
        })
    }
}

#[cfg(test)]
mod tests;
