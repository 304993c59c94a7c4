//! Folders of TOML files that ship beside the config (supervision trees, host probes): how they
//! are listed, read and parsed, with problems named by file.

use super::walk::Table;
use super::{Problem, ProblemKind};
use config::{Value, ValueKind};
use std::path::{Path, PathBuf};

impl Problem {
    /// A problem of `file` (at `key`, empty for the whole file).
    pub fn at(file: &Path, key: &str, kind: ProblemKind, message: String) -> Problem {
        Problem {
            file: file.display().to_string(),
            key: key.to_string(),
            kind,
            message,
        }
    }
}

/// The `*.toml` files of `dir`, sorted by name, with their text. A missing folder has none; a
/// folder that cannot be read is `Err`; a file that cannot be read is a problem in `problems`
/// and left out. `what` names the folder in messages ("trees", "host probes").
pub fn toml_files(
    dir: &Path,
    what: &str,
    problems: &mut Vec<Problem>,
) -> Result<Vec<(PathBuf, String)>, Problem> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            let msg = format!("cannot read the {what} folder: {e}");
            return Err(Problem::at(dir, "", ProblemKind::Unreadable, msg));
        }
    };
    files.sort();
    let mut out = Vec::new();
    for file in files {
        match std::fs::read_to_string(&file) {
            Ok(text) => out.push((file, text)),
            Err(e) => {
                let msg = format!("cannot read: {e}");
                problems.push(Problem::at(&file, "", ProblemKind::Unreadable, msg));
            }
        }
    }
    Ok(out)
}

/// `text` as a table for the [`Walker`](super::walk::Walker); a syntax error is a problem of
/// the whole file.
pub fn toml_table(file: &Path, text: &str, problems: &mut Vec<Problem>) -> Option<Table> {
    match text.parse() {
        Ok(t) => Some(table(t)),
        Err(e) => {
            let e: toml::de::Error = e;
            let msg = format!("TOML syntax error: {}", e.message());
            problems.push(Problem::at(file, "", ProblemKind::Syntax, msg));
            None
        }
    }
}

fn table(t: toml::Table) -> Table {
    t.into_iter().map(|(k, v)| (k, value(v))).collect()
}

/// The `config` crate's value of a TOML value, as its file source would make it, except for a
/// date: no key of these files takes one, so it stays a value no read accepts instead of
/// becoming a string.
fn value(v: toml::Value) -> Value {
    let kind = match v {
        toml::Value::String(s) => ValueKind::String(s),
        toml::Value::Integer(n) => ValueKind::I64(n),
        toml::Value::Float(x) => ValueKind::Float(x),
        toml::Value::Boolean(b) => ValueKind::Boolean(b),
        toml::Value::Datetime(_) => ValueKind::Nil,
        toml::Value::Array(items) => ValueKind::Array(items.into_iter().map(value).collect()),
        toml::Value::Table(t) => ValueKind::Table(table(t)),
    };
    Value::new(None, kind)
}
