//! Supervision trees as data: one TOML file per tree, parsed once into typed specs. Every
//! problem of every file is reported with the file and the dotted key, like the node config.

use super::policy::{Backoff, RestartType, Strategy};
use crate::config::{Problem, ProblemKind, toml_files, toml_table};
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
    let before = problems.len();
    let mut w = Walker { file, problems };
    let root = w.supervisor(&table, "");
    let placement = w.placement(&table);
    if w.problems.len() > before {
        return None;
    }
    root.map(|root| TreeSpec {
        file: file.to_path_buf(),
        root,
        placement,
    })
}

fn problem(file: &Path, key: &str, kind: ProblemKind, message: String) -> Problem {
    Problem::at(file, key, kind, message)
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

struct Walker<'a> {
    file: &'a Path,
    problems: &'a mut Vec<Problem>,
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

impl Walker<'_> {
    fn report(&mut self, key: &str, kind: ProblemKind, message: impl Into<String>) {
        self.problems
            .push(problem(self.file, key, kind, message.into()));
    }

    fn unknown_keys(&mut self, t: &toml::Table, prefix: &str, allowed: &[&str]) {
        for k in t.keys() {
            if !allowed.contains(&k.as_str()) {
                let msg = format!("unknown key; expected one of {}", allowed.join(", "));
                self.report(&join(prefix, k), ProblemKind::UnknownKey, msg);
            }
        }
    }

    fn string(&mut self, t: &toml::Table, prefix: &str, key: &str) -> Option<String> {
        match t.get(key)? {
            toml::Value::String(s) => Some(s.clone()),
            _ => {
                self.report(
                    &join(prefix, key),
                    ProblemKind::WrongType,
                    "expected a string",
                );
                None
            }
        }
    }

    /// One of a fixed set of names, the first being the default when the key is absent. An
    /// unknown name is a problem that lists the choices; the default stands in for it.
    fn choice<T: Copy>(
        &mut self,
        t: &toml::Table,
        prefix: &str,
        key: &str,
        options: &[(&str, T)],
    ) -> T {
        let default = options[0].1;
        let Some(name) = self.string(t, prefix, key) else {
            return default;
        };
        if let Some((_, value)) = options.iter().find(|(n, _)| *n == name) {
            return *value;
        }
        let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
        let msg = format!("unknown {key} \"{name}\"; expected {}", names.join(", "));
        self.report(&join(prefix, key), ProblemKind::BadValue, msg);
        default
    }

    fn duration(&mut self, t: &toml::Table, prefix: &str, key: &str) -> Option<Duration> {
        let s = self.string(t, prefix, key)?;
        match humantime::parse_duration(s.trim()) {
            Ok(d) => Some(d),
            Err(e) => {
                let msg = format!(
                    "bad duration \"{s}\" ({e}); expected a number and a unit, like \"500ms\", \"5s\" or \"2m\""
                );
                self.report(&join(prefix, key), ProblemKind::BadDuration, msg);
                None
            }
        }
    }

    fn count(&mut self, t: &toml::Table, prefix: &str, key: &str) -> Option<u32> {
        match t.get(key)? {
            toml::Value::Integer(i) if (0..=i64::from(u32::MAX)).contains(i) => Some(*i as u32),
            _ => {
                self.report(
                    &join(prefix, key),
                    ProblemKind::WrongType,
                    "expected a whole number ≥ 0",
                );
                None
            }
        }
    }

    fn command(&mut self, t: &toml::Table, prefix: &str, key: &str) -> Option<Vec<String>> {
        let full = join(prefix, key);
        let Some(v) = t.get(key) else {
            self.report(
                &full,
                ProblemKind::MissingKey,
                "missing: a command as an array of strings",
            );
            return None;
        };
        let Some(items) = v.as_array() else {
            self.report(
                &full,
                ProblemKind::WrongType,
                "expected an array of strings, like [\"/usr/bin/app\", \"--flag\"]",
            );
            return None;
        };
        let words: Option<Vec<String>> = items
            .iter()
            .map(|i| i.as_str().map(str::to_owned))
            .collect();
        match words {
            None => {
                self.report(
                    &full,
                    ProblemKind::WrongType,
                    "every element must be a string",
                );
                None
            }
            Some(w) if w.is_empty() || w[0].trim().is_empty() => {
                self.report(&full, ProblemKind::EmptyCommand, "the command is empty");
                None
            }
            Some(w) => Some(w),
        }
    }

    fn tables<'t>(
        &mut self,
        t: &'t toml::Table,
        prefix: &str,
        key: &str,
    ) -> Vec<(String, &'t toml::Table)> {
        let full = join(prefix, key);
        match t.get(key) {
            None => Vec::new(),
            Some(toml::Value::Array(items)) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match item.as_table() {
                        Some(table) => out.push((format!("{full}[{i}]"), table)),
                        None => self.report(
                            &format!("{full}[{i}]"),
                            ProblemKind::WrongType,
                            "expected a table",
                        ),
                    }
                }
                out
            }
            Some(_) => {
                self.report(
                    &full,
                    ProblemKind::WrongType,
                    "expected an array of tables ([[...]])",
                );
                Vec::new()
            }
        }
    }

    fn name(&mut self, t: &toml::Table, prefix: &str) -> Option<String> {
        let name = self.string(t, prefix, "name");
        match name {
            None if !t.contains_key("name") => {
                self.report(
                    &join(prefix, "name"),
                    ProblemKind::MissingName,
                    "missing: every supervisor and service needs a name",
                );
                None
            }
            Some(n) if n.is_empty() || n.contains([':', ' ', '/']) => {
                self.report(
                    &join(prefix, "name"),
                    ProblemKind::BadValue,
                    format!("\"{n}\" is not a usable name (no spaces, ':' or '/')"),
                );
                None
            }
            other => other,
        }
    }

    /// `placement` and `takeover` of a tree's root table.
    fn placement(&mut self, t: &toml::Table) -> Option<Placement> {
        let takeover = match t.get("takeover") {
            None => true,
            Some(toml::Value::Boolean(b)) => *b,
            Some(_) => {
                self.report("takeover", ProblemKind::WrongType, "expected true or false");
                true
            }
        };
        let failover = match t.get("placement")? {
            toml::Value::String(s) if s == "any" => Vec::new(),
            toml::Value::Table(p) => {
                self.unknown_keys(p, "placement", &["failover"]);
                let nodes: Option<Vec<String>> = p.get("failover").and_then(|f| {
                    f.as_array()?
                        .iter()
                        .map(|n| n.as_str().map(str::to_string))
                        .collect()
                });
                match nodes {
                    Some(n) if !n.is_empty() && n.iter().all(|x| !x.trim().is_empty()) => n,
                    _ => {
                        self.report(
                            "placement.failover",
                            ProblemKind::BadValue,
                            "expected a non-empty array of node names, like [\"nas\", \"desktop\"]",
                        );
                        return None;
                    }
                }
            }
            _ => {
                self.report(
                    "placement",
                    ProblemKind::BadValue,
                    "expected \"any\" or a table { failover = [\"node\", ...] }",
                );
                return None;
            }
        };
        Some(Placement { failover, takeover })
    }

    fn requirements(&mut self, t: &toml::Table, prefix: &str) -> Vec<Requirement> {
        let Some(v) = t.get("requires") else {
            return Vec::new();
        };
        let full = join(prefix, "requires");
        let bad = "expected an array of \"node:service\" strings, like [\"nas:postgres\"]";
        let Some(items) = v.as_array() else {
            self.report(&full, ProblemKind::WrongType, bad);
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match item.as_str().and_then(|s| s.split_once(':')) {
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
                _ => self.report(&format!("{full}[{i}]"), ProblemKind::BadValue, bad),
            }
        }
        out
    }

    fn supervisor(&mut self, t: &toml::Table, prefix: &str) -> Option<SupervisorSpec> {
        self.unknown_keys(t, prefix, SUPERVISOR_KEYS);
        if !prefix.is_empty() {
            for key in ["placement", "takeover"] {
                if t.contains_key(key) {
                    self.report(
                        &join(prefix, key),
                        ProblemKind::BadValue,
                        "only a tree's root places the tree; a nested supervisor cannot",
                    );
                }
            }
        }
        let name = self.name(t, prefix);
        let strategy = self.choice(
            t,
            prefix,
            "strategy",
            &[
                ("one_for_one", Strategy::OneForOne),
                ("one_for_all", Strategy::OneForAll),
                ("rest_for_one", Strategy::RestForOne),
            ],
        );
        let intensity = self
            .count(t, prefix, "intensity")
            .unwrap_or(DEFAULT_INTENSITY);
        let period = self.duration(t, prefix, "period").unwrap_or(DEFAULT_PERIOD);
        let backoff = match t.get("backoff") {
            None => None,
            Some(toml::Value::Table(b)) => {
                let p = join(prefix, "backoff");
                self.unknown_keys(b, &p, BACKOFF_KEYS);
                Some(Backoff {
                    initial: self
                        .duration(b, &p, "initial")
                        .unwrap_or(Duration::from_secs(1)),
                    max: self
                        .duration(b, &p, "max")
                        .unwrap_or(Duration::from_secs(30)),
                    reset_after: self
                        .duration(b, &p, "reset_after")
                        .unwrap_or(Duration::from_secs(60)),
                })
            }
            Some(_) => {
                self.report(
                    &join(prefix, "backoff"),
                    ProblemKind::WrongType,
                    "expected a table { initial, max, reset_after }",
                );
                None
            }
        };
        let mut children = Vec::new();
        for (p, child) in self.tables(t, prefix, "children") {
            let nested = child.contains_key("children") || child.contains_key("strategy");
            if nested && child.contains_key("command") {
                self.report(&p, ProblemKind::BadValue, "a child is either a service (command) or a supervisor (strategy, children), not both");
                continue;
            }
            if nested {
                children.extend(self.supervisor(child, &p).map(ChildSpec::Supervisor));
            } else {
                children.extend(self.service(child, &p).map(ChildSpec::Service));
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

    fn service(&mut self, t: &toml::Table, prefix: &str) -> Option<ServiceSpec> {
        self.unknown_keys(t, prefix, SERVICE_KEYS);
        let name = self.name(t, prefix);
        let command = self.command(t, prefix, "command");
        let restart = self.choice(
            t,
            prefix,
            "restart",
            &[
                ("permanent", RestartType::Permanent),
                ("transient", RestartType::Transient),
                ("temporary", RestartType::Temporary),
            ],
        );
        let shutdown = match t.get("shutdown") {
            Some(toml::Value::String(s)) if s == "brutal_kill" => Shutdown::BrutalKill,
            Some(_) => Shutdown::Timeout(
                self.duration(t, prefix, "shutdown")
                    .unwrap_or(DEFAULT_SHUTDOWN),
            ),
            None => Shutdown::Timeout(DEFAULT_SHUTDOWN),
        };
        let mut env = BTreeMap::new();
        match t.get("env") {
            None => {}
            Some(toml::Value::Table(vars)) => {
                for (k, v) in vars {
                    match v.as_str() {
                        Some(s) => {
                            env.insert(k.clone(), s.to_string());
                        }
                        None => self.report(
                            &join(&join(prefix, "env"), k),
                            ProblemKind::WrongType,
                            "expected a string",
                        ),
                    }
                }
            }
            Some(_) => self.report(
                &join(prefix, "env"),
                ProblemKind::WrongType,
                "expected a table of strings",
            ),
        }
        let cwd = self.string(t, prefix, "cwd").map(PathBuf::from);
        let user = self.string(t, prefix, "user");
        let group = self.string(t, prefix, "group");
        let mut probes = Vec::new();
        for (p, probe) in self.tables(t, prefix, "probes") {
            probes.extend(self.probe(probe, &p, PROBE_KEYS));
        }
        let ready = match t.get("ready") {
            None => None,
            Some(toml::Value::Table(r)) => {
                let p = join(prefix, "ready");
                let probe = self.probe(r, &p, READY_KEYS);
                let deadline = self
                    .duration(r, &p, "deadline")
                    .unwrap_or(DEFAULT_READY_DEADLINE);
                probe.map(|probe| ReadySpec { probe, deadline })
            }
            Some(_) => {
                self.report(
                    &join(prefix, "ready"),
                    ProblemKind::WrongType,
                    "expected a table: a probe (type, target/url/command, interval, timeout) and a deadline",
                );
                None
            }
        };
        let requires = self.requirements(t, prefix);
        let on_dependency_loss = self.choice(
            t,
            prefix,
            "on_dependency_loss",
            &[
                ("stop", OnDependencyLoss::Stop),
                ("restart", OnDependencyLoss::Restart),
            ],
        );
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

    fn probe(&mut self, t: &toml::Table, prefix: &str, keys: &[&str]) -> Option<ProbeSpec> {
        self.unknown_keys(t, prefix, keys);
        let target = match self.string(t, prefix, "type").as_deref() {
            Some("tcp") => ProbeTarget::Tcp(self.required(t, prefix, "target")?),
            Some("http") => {
                let url = self.required(t, prefix, "url")?;
                if !is_probeable_url(&url) {
                    let msg = format!(
                        "cannot probe \"{url}\": expected an http://host[:port][/path] url (https is not supported)"
                    );
                    self.report(&join(prefix, "url"), ProblemKind::BadValue, msg);
                    return None;
                }
                ProbeTarget::Http(url)
            }
            Some("exec") => ProbeTarget::Exec(self.command(t, prefix, "command")?),
            Some(other) => {
                let msg = format!("unknown probe type \"{other}\"; expected tcp, http or exec");
                self.report(&join(prefix, "type"), ProblemKind::BadValue, msg);
                return None;
            }
            None => {
                self.report(
                    &join(prefix, "type"),
                    ProblemKind::MissingKey,
                    "missing: tcp, http or exec",
                );
                return None;
            }
        };
        Some(ProbeSpec {
            target,
            interval: self
                .duration(t, prefix, "interval")
                .unwrap_or(Duration::from_secs(10)),
            timeout: self
                .duration(t, prefix, "timeout")
                .unwrap_or(Duration::from_secs(2)),
            failures: self.count(t, prefix, "failures").unwrap_or(3).max(1),
        })
    }

    fn required(&mut self, t: &toml::Table, prefix: &str, key: &str) -> Option<String> {
        let v = self.string(t, prefix, key);
        if v.is_none() && !t.contains_key(key) {
            self.report(&join(prefix, key), ProblemKind::MissingKey, "missing");
        }
        v
    }
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
                        problems.push(problem(file, "children", ProblemKind::BadValue, msg));
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

/// Whether `url` can be probed: `http://host[:port][/path]`. The tree parser uses this (the http probe reads it the same way), so a
/// url the probe would only ever find `unknown` is a config problem instead.
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
