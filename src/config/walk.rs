//! Typed reads of single values that record a [`Problem`] instead of stopping, so one load
//! reports everything. Each read returns `None` after recording; the caller keeps the default
//! and carries on.
//!
//! One walker serves the node config (the layers the `config` crate merged) and the files that
//! ship beside it, supervision trees and host probes, which [`super::toml_table`] turns into
//! the same [`Value`]s. Those files keep their own wording where it differs (see
//! [`Walker::for_file`]); the reads, the key paths and the recording are shared.

use super::schema;
use super::{DEFAULTS, ENVIRONMENT, Problem, ProblemKind};
use crate::types::duration::DurationError;
use config::{Map, Value, ValueKind};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The origin the `config` crate gives values from `config::Environment`.
const ENV_ORIGIN: &str = "the environment";

pub(crate) type Table = Map<String, Value>;

pub(crate) struct Walker {
    /// How to name the file layer in problems (its path as given), if there is one.
    file: Option<String>,
    /// Whether a wrong type says what was found ("expected a string, found an integer (1)").
    found: bool,
    pub(super) problems: Vec<Problem>,
}

impl Walker {
    pub(super) fn new(file: Option<String>) -> Walker {
        Walker {
            file,
            found: true,
            problems: Vec::new(),
        }
    }

    /// A walker of one file that ships beside the config (a tree, a host probe). Its wrong
    /// types say only what was expected, as these files always have.
    pub(crate) fn for_file(file: &Path) -> Walker {
        Walker {
            file: Some(file.display().to_string()),
            found: false,
            problems: Vec::new(),
        }
    }

    /// Moves the problems found to `problems`; true if there were none.
    pub(crate) fn hand_over(mut self, problems: &mut Vec<Problem>) -> bool {
        let clean = self.problems.is_empty();
        problems.append(&mut self.problems);
        clean
    }

    /// True when `v` (or, for a table made by the merge, its first leaf) came from an
    /// `NBWATCH_` variable.
    pub(super) fn from_env(v: &Value) -> bool {
        if let Some(origin) = v.origin() {
            return origin == ENV_ORIGIN;
        }
        match &v.kind {
            ValueKind::Table(t) => t.values().next().is_some_and(Walker::from_env),
            ValueKind::Array(a) => a.first().is_some_and(Walker::from_env),
            _ => false,
        }
    }

    fn label(&self, v: &Value) -> String {
        if Walker::from_env(v) {
            return ENVIRONMENT.to_string();
        }
        self.file.clone().unwrap_or_else(|| ENVIRONMENT.to_string())
    }

    /// Records a problem about `v` at `key`; for a value from the environment the message
    /// names the variable, since the key alone does not say which one to fix.
    pub(crate) fn problem(&mut self, v: &Value, key: &str, kind: ProblemKind, message: String) {
        let file = self.label(v);
        let message = if file == ENVIRONMENT {
            format!("{message} (from {})", env_var(key, v))
        } else {
            message
        };
        self.problems.push(Problem {
            file,
            key: key.to_string(),
            kind,
            message,
        });
    }

    /// Records a problem of a file at `key` that no one value caused (a missing key, two keys
    /// that do not go together).
    pub(crate) fn report(&mut self, key: &str, kind: ProblemKind, message: impl Into<String>) {
        self.problems.push(Problem {
            file: self.file.clone().unwrap_or_else(|| ENVIRONMENT.to_string()),
            key: key.to_string(),
            kind,
            message: message.into(),
        });
    }

    /// Records a problem that no value caused (a default that cannot be worked out).
    pub(super) fn default_problem(&mut self, key: &str, kind: ProblemKind, message: String) {
        self.problems.push(Problem {
            file: DEFAULTS.to_string(),
            key: key.to_string(),
            kind,
            message,
        });
    }

    /// Reads `key` of `table` (at `prefix`) with `read`; `None` when absent or bad.
    pub(crate) fn field<T>(
        &mut self,
        table: &Table,
        prefix: &str,
        key: &str,
        read: impl FnOnce(&mut Walker, &Value, &str) -> Option<T>,
    ) -> Option<T> {
        let v = table.get(key)?;
        read(self, v, &join(prefix, key))
    }

    /// Like [`Walker::field`], and an absent key is a [`ProblemKind::MissingKey`] saying
    /// `missing`.
    pub(crate) fn required<T>(
        &mut self,
        table: &Table,
        prefix: &str,
        key: &str,
        missing: &str,
        read: impl FnOnce(&mut Walker, &Value, &str) -> Option<T>,
    ) -> Option<T> {
        if !table.contains_key(key) {
            self.report(&join(prefix, key), ProblemKind::MissingKey, missing);
        }
        self.field(table, prefix, key, read)
    }

    /// The table at `key`, or a wrong-type problem.
    pub(crate) fn table<'v>(&mut self, v: &'v Value, key: &str, what: &str) -> Option<&'v Table> {
        match &v.kind {
            ValueKind::Table(t) => Some(t),
            _ => {
                self.wrong_type(v, key, what);
                None
            }
        }
    }

    /// Reports each key of `table` that is not in `known`, with a hint.
    pub(super) fn unknown_keys(&mut self, table: &Table, prefix: &str, known: &[&str], what: &str) {
        self.unknown_keys_by(table, prefix, known, |name| {
            let hint = schema::hint(name, known, true);
            format!("unknown key \"{name}\" {what}{hint}")
        });
    }

    /// Reports each key of `table` that is not in `known`, listing the known ones (the
    /// wording of tree and probe files).
    pub(crate) fn unknown_keys_listed(&mut self, table: &Table, prefix: &str, known: &[&str]) {
        let message = format!("unknown key; expected one of {}", known.join(", "));
        self.unknown_keys_by(table, prefix, known, |_| message.clone());
    }

    /// Reports each key of `table` that is not in `known`, by name, in `message(name)`.
    pub(super) fn unknown_keys_by(
        &mut self,
        table: &Table,
        prefix: &str,
        known: &[&str],
        message: impl Fn(&str) -> String,
    ) {
        let mut names: Vec<&String> = table
            .keys()
            .filter(|k| !known.contains(&k.as_str()))
            .collect();
        names.sort();
        for name in names {
            let key = join(prefix, name);
            self.problem(&table[name], &key, ProblemKind::UnknownKey, message(name));
        }
    }

    pub(crate) fn wrong_type(&mut self, v: &Value, key: &str, expected: &str) {
        let message = if self.found {
            format!("expected {expected}, found {}", describe(v))
        } else {
            format!("expected {expected}")
        };
        self.problem(v, key, ProblemKind::WrongType, message);
    }

    pub(crate) fn string(&mut self, v: &Value, key: &str) -> Option<String> {
        match &v.kind {
            ValueKind::String(s) => Some(s.clone()),
            _ => {
                self.wrong_type(v, key, "a string");
                None
            }
        }
    }

    /// A string that must not be empty (after trimming).
    pub(super) fn non_empty(&mut self, v: &Value, key: &str) -> Option<String> {
        let s = self.string(v, key)?;
        if s.trim().is_empty() {
            self.problem(
                v,
                key,
                ProblemKind::BadValue,
                "must not be empty".to_string(),
            );
            return None;
        }
        Some(s)
    }

    /// One of `options`, by name; another name is a problem worded by
    /// `unknown(name, every option's name)`.
    pub(crate) fn choice<T: Copy>(
        &mut self,
        v: &Value,
        key: &str,
        options: &[(&str, T)],
        unknown: impl FnOnce(&str, &[&str]) -> String,
    ) -> Option<T> {
        let name = self.string(v, key)?;
        if let Some((_, value)) = options.iter().find(|(n, _)| *n == name) {
            return Some(*value);
        }
        let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
        let message = unknown(&name, &names);
        self.problem(v, key, ProblemKind::BadValue, message);
        None
    }

    pub(super) fn int(&mut self, v: &Value, key: &str) -> Option<i64> {
        let n = match &v.kind {
            ValueKind::I64(n) => Some(*n),
            ValueKind::I128(n) => i64::try_from(*n).ok(),
            ValueKind::U64(n) => i64::try_from(*n).ok(),
            ValueKind::U128(n) => i64::try_from(*n).ok(),
            ValueKind::String(s) if Walker::from_env(v) => s.trim().parse().ok(),
            _ => None,
        };
        if n.is_none() {
            self.wrong_type(v, key, "an integer");
        }
        n
    }

    /// A positive number up to a million (an integer or a float).
    pub(super) fn weight(&mut self, v: &Value, key: &str) -> Option<f64> {
        let n = match &v.kind {
            ValueKind::Float(f) => Some(*f),
            ValueKind::I64(n) => Some(*n as f64),
            ValueKind::U64(n) => Some(*n as f64),
            ValueKind::String(s) if Walker::from_env(v) => s.trim().parse().ok(),
            _ => None,
        };
        let Some(n) = n else {
            self.wrong_type(v, key, "a positive number");
            return None;
        };
        if !(n > 0.0 && n <= 1e6) {
            let message = format!("{n} is out of range (more than 0, at most 1000000)");
            self.problem(v, key, ProblemKind::BadValue, message);
            return None;
        }
        Some(n)
    }

    pub(super) fn u32(&mut self, v: &Value, key: &str) -> Option<u32> {
        let n = self.int(v, key)?;
        match u32::try_from(n) {
            Ok(n) => Some(n),
            Err(_) => {
                let message = format!("{n} is out of range (0 to {})", u32::MAX);
                self.problem(v, key, ProblemKind::BadValue, message);
                None
            }
        }
    }

    pub(crate) fn bool(&mut self, v: &Value, key: &str) -> Option<bool> {
        let b = match &v.kind {
            ValueKind::Boolean(b) => Some(*b),
            ValueKind::String(s) if Walker::from_env(v) => s.trim().to_lowercase().parse().ok(),
            _ => None,
        };
        if b.is_none() {
            self.wrong_type(v, key, "true or false");
        }
        b
    }

    pub(super) fn duration(&mut self, v: &Value, key: &str) -> Option<Duration> {
        const FORM: &str = "a number and a unit, like \"500ms\", \"5s\", \"2m\" or \"7d\"";
        self.duration_as(v, key, &format!("a duration string ({FORM})"), FORM)
    }

    /// A duration string; `expected` says what else was expected, `form` how a good one looks.
    pub(crate) fn duration_as(
        &mut self,
        v: &Value,
        key: &str,
        expected: &str,
        form: &str,
    ) -> Option<Duration> {
        let ValueKind::String(s) = &v.kind else {
            self.wrong_type(v, key, expected);
            return None;
        };
        match crate::types::duration::parse(s) {
            Ok(d) => Some(d),
            Err(DurationError::Unparsable { reason, .. }) => {
                let message = format!("bad duration \"{s}\" ({reason}); expected {form}");
                self.problem(v, key, ProblemKind::BadDuration, message);
                None
            }
            Err(e @ DurationError::TooLong { .. }) => {
                self.problem(v, key, ProblemKind::BadValue, e.to_string());
                None
            }
        }
    }

    /// `d`, read from `v`, unless it is zero.
    pub(crate) fn more_than_zero(&mut self, v: &Value, key: &str, d: Duration) -> Option<Duration> {
        if d.is_zero() {
            let message = "must be more than zero".to_string();
            self.problem(v, key, ProblemKind::BadValue, message);
            return None;
        }
        Some(d)
    }

    /// A command: an array of strings, the first (the program) not blank. Not an array is a
    /// wrong type, `expected`; an element not a string is a wrong type, `every`.
    pub(crate) fn command(
        &mut self,
        v: &Value,
        key: &str,
        expected: &str,
        every: &str,
    ) -> Option<Vec<String>> {
        let Some(items) = as_array(v) else {
            self.wrong_type(v, key, expected);
            return None;
        };
        let words: Option<Vec<String>> =
            items.iter().map(|i| as_str(i).map(str::to_owned)).collect();
        let Some(words) = words else {
            self.problem(v, key, ProblemKind::WrongType, every.to_string());
            return None;
        };
        if words
            .first()
            .is_none_or(|program| program.trim().is_empty())
        {
            let message = "the command is empty".to_string();
            self.problem(v, key, ProblemKind::EmptyCommand, message);
            return None;
        }
        Some(words)
    }

    /// An `IP:PORT`, or a `HOST:PORT` resolved now (first address, IPv4 preferred).
    pub(super) fn socket_addr(&mut self, v: &Value, key: &str) -> Option<SocketAddr> {
        let s = self.string(v, key)?;
        self.parse_addr(v, key, &s)
    }

    pub(super) fn parse_addr(&mut self, v: &Value, key: &str, s: &str) -> Option<SocketAddr> {
        let s = s.trim();
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Some(addr);
        }
        let has_port = s.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && !port.is_empty() && port.parse::<u16>().is_ok()
        });
        let message = if !has_port {
            format!("bad socket address \"{s}\"; expected \"IP:PORT\" or \"HOST:PORT\"")
        } else {
            match s.to_socket_addrs() {
                Ok(addrs) => {
                    let addrs: Vec<SocketAddr> = addrs.collect();
                    if let Some(addr) = addrs.iter().find(|a| a.is_ipv4()).or(addrs.first()) {
                        return Some(*addr);
                    }
                    format!("bad socket address \"{s}\": the name resolves to no address")
                }
                Err(e) => format!("bad socket address \"{s}\": cannot resolve it ({e})"),
            }
        };
        self.problem(v, key, ProblemKind::BadAddress, message);
        None
    }

    /// A non-empty path; relative ones are returned as written.
    pub(super) fn path(&mut self, v: &Value, key: &str) -> Option<PathBuf> {
        self.non_empty(v, key).map(PathBuf::from)
    }

    /// An array of tables (`[[name]]`, `expected` names it), each read by `each` with its
    /// indexed key (`key[i]`); the items that do not read are left out, their problems said.
    pub(super) fn array_of<T>(
        &mut self,
        v: &Value,
        key: &str,
        expected: &str,
        mut each: impl FnMut(&mut Walker, &Value, &str) -> Option<T>,
    ) -> Option<Vec<T>> {
        let ValueKind::Array(items) = &v.kind else {
            self.wrong_type(v, key, expected);
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            if let Some(read) = each(self, item, &format!("{key}[{i}]")) {
                out.push(read);
            }
        }
        Some(out)
    }

    /// An array of strings; from the environment a comma-separated string. Bad elements are
    /// reported as `key[i]` and left out.
    pub(super) fn strings(&mut self, v: &Value, key: &str) -> Option<Vec<String>> {
        match &v.kind {
            ValueKind::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    if let Some(s) = self.string(item, &format!("{key}[{i}]")) {
                        out.push(s);
                    }
                }
                Some(out)
            }
            ValueKind::String(s) if Walker::from_env(v) => Some(
                s.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect(),
            ),
            _ => {
                self.wrong_type(v, key, "an array of strings");
                None
            }
        }
    }

    /// Like [`Walker::strings`], each element an address.
    pub(super) fn socket_addrs(&mut self, v: &Value, key: &str) -> Option<Vec<SocketAddr>> {
        let items = self.strings(v, key)?;
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            if let Some(addr) = self.parse_addr(v, &format!("{key}[{i}]"), item) {
                out.push(addr);
            }
        }
        Some(out)
    }
}

/// `prefix.key`, or `key` at the top of a file.
pub(crate) fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// The string `v` holds, if it is one.
pub(crate) fn as_str(v: &Value) -> Option<&str> {
    match &v.kind {
        ValueKind::String(s) => Some(s),
        _ => None,
    }
}

/// The items of `v`, if it is an array.
pub(crate) fn as_array(v: &Value) -> Option<&[Value]> {
    match &v.kind {
        ValueKind::Array(items) => Some(items),
        _ => None,
    }
}

/// The variable that set `v` at `key`: `NBWATCH_GOSSIP__SEEDS` for `gossip.seeds[2]`, and for
/// a table (an unknown section) the variable of its first leaf.
fn env_var(key: &str, v: &Value) -> String {
    let mut path = key.split('[').next().unwrap_or(key).to_string();
    let mut v = v;
    while let ValueKind::Table(t) = &v.kind {
        let Some((k, child)) = t.iter().next() else {
            break;
        };
        path = format!("{path}.{k}");
        v = child;
    }
    format!("NBWATCH_{}", path.to_uppercase().replace('.', "__"))
}

/// "an integer (42)", for wrong-type messages.
fn describe(v: &Value) -> String {
    match &v.kind {
        ValueKind::Nil => "nothing".to_string(),
        ValueKind::Boolean(b) => format!("a boolean ({b})"),
        ValueKind::I64(n) => format!("an integer ({n})"),
        ValueKind::I128(n) => format!("an integer ({n})"),
        ValueKind::U64(n) => format!("an integer ({n})"),
        ValueKind::U128(n) => format!("an integer ({n})"),
        ValueKind::Float(x) => format!("a float ({x})"),
        ValueKind::String(s) => format!("a string (\"{s}\")"),
        ValueKind::Table(_) => "a table".to_string(),
        ValueKind::Array(_) => "an array".to_string(),
    }
}
