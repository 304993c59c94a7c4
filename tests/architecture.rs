//! The crate's layers, kept by a test rather than by memory (an architecture fitness test, in
//! the spirit of ArchUnit): every module of `src/` is placed in a layer of [`LAYERS`], every
//! `crate::` and `super::` path in its code (in `use` lines, inline paths and macro calls) must
//! point to the same layer or one below, and the top-level modules must not import each other
//! in a cycle. Test code (`tests.rs` files and `#[cfg(test)]` items) is left out: a test may
//! reach across layers to build its fixtures.
//!
//! A module is placed by the longest entry of [`LAYERS`] that is its path or an ancestor of
//! it; a module with no such entry fails the test, so a new top-level module must be placed
//! on purpose. `docs/architecture.md` explains the layers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// From the bottom: an import may go to its own layer or a lower one, never up.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "base",
        &[
            "types",
            "wire",
            "secure",
            "keys",
            "events",
            "task",
            "text",
            "lograte",
            "config",
            "statefile",
        ],
    ),
    (
        "cores",
        &[
            "gossip",
            "watch",
            "election",
            "alert",
            "control",
            "graph",
            "discover",
            "zone",
            "supervision",
            "supervision::policy",
            "supervision::spec",
            "supervision::status",
            "store::record",
        ],
    ),
    (
        "adapters",
        &[
            "store",
            "transport",
            "sinks",
            "probe",
            "notify",
            "tls",
            "export",
            "sim",
            "supervision::process",
            "supervision::reaper",
            "supervision::leftovers",
            "supervision::logfile",
            "supervision::health",
        ],
    ),
    (
        "shells",
        &[
            "actors",
            "supervision::supervisor",
            "supervision::service",
            "supervision::manager",
        ],
    ),
    ("wiring", &["node"]),
    ("api", &["api"]),
    ("application", &["cli", "client", "daemon"]),
];

/// One import from one module to another.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Import {
    from: String,
    to: String,
    /// The path as written, for the message.
    path: String,
}

/// What the check found wrong, one line each.
fn check(files: &BTreeMap<String, String>, layers: &[(&str, &[&str])]) -> Vec<String> {
    let modules: BTreeSet<String> = files.keys().cloned().collect();
    let mut problems = Vec::new();
    let place = |module: &str| -> Option<(usize, &str)> {
        let mut best: Option<(usize, &str, usize)> = None;
        for (i, (name, entries)) in layers.iter().enumerate() {
            for e in entries.iter() {
                let fits = module == *e || module.starts_with(&format!("{e}::"));
                if fits && best.is_none_or(|(_, _, len)| e.len() > len) {
                    best = Some((i, name, e.len()));
                }
            }
        }
        best.map(|(i, name, _)| (i, name))
    };
    for module in &modules {
        if place(module).is_none() {
            problems.push(format!("module {module} is in no layer: add it to LAYERS"));
        }
    }
    let mut imports = Vec::new();
    for (module, text) in files {
        for path in paths(&strip_tests(&strip_comments(text))) {
            if let Some(to) = resolve(module, &path, &modules)
                && &to != module
            {
                imports.push(Import {
                    from: module.clone(),
                    to,
                    path,
                });
            }
        }
    }
    imports.sort();
    imports.dedup();
    for i in &imports {
        if let (Some((from, from_name)), Some((to, to_name))) = (place(&i.from), place(&i.to))
            && to > from
        {
            problems.push(format!(
                "upward: {} ({from_name}) uses {} ({to_name}) through `{}`",
                i.from, i.to, i.path
            ));
        }
    }
    let top = |m: &str| m.split("::").next().unwrap_or(m).to_string();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for i in &imports {
        let (a, b) = (top(&i.from), top(&i.to));
        if a != b {
            graph.entry(a).or_default().insert(b);
        }
    }
    if let Some(cycle) = find_cycle(&graph) {
        problems.push(format!(
            "cycle of top-level modules: {}",
            cycle.join(" -> ")
        ));
    }
    problems
}

/// `src/a/b.rs` is `a::b`; `lib.rs` and `main.rs` are the root and are left out.
fn module_of(rel: &Path) -> Option<String> {
    let s = rel.to_str()?.strip_suffix(".rs")?;
    if s == "lib" || s == "main" {
        return None;
    }
    Some(s.replace('/', "::"))
}

fn strip_comments(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            // A `//` inside a string ("http://...") is rare in paths; good enough for imports.
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Removes every item that follows a `#[cfg(test)]` (up to its closing brace or semicolon).
fn strip_tests(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        let mut depth = 0usize;
        let mut end = after.len();
        for (j, c) in after.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = j + 1;
                        break;
                    }
                }
                ';' if depth == 0 => {
                    end = j + 1;
                    break;
                }
                _ => {}
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// Every `crate::...` and `super::...` path, with `use` groups expanded.
fn paths(text: &str) -> Vec<String> {
    let bytes: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let starts = ["crate::", "super::"]
            .iter()
            .find(|p| text_at(&bytes, i, p))
            .copied();
        let boundary = i == 0 || !(bytes[i - 1].is_alphanumeric() || bytes[i - 1] == '_');
        match starts {
            Some(p) if boundary => {
                let head = p.trim_end_matches("::").to_string();
                let (trees, end) = tree(&bytes, i + p.len());
                for t in trees {
                    out.push(if t.is_empty() {
                        head.clone()
                    } else {
                        format!("{head}::{t}")
                    });
                }
                i = end.max(i + 1);
            }
            _ => i += 1,
        }
    }
    out
}

fn text_at(chars: &[char], i: usize, s: &str) -> bool {
    s.chars()
        .enumerate()
        .all(|(k, c)| chars.get(i + k) == Some(&c))
}

/// Reads a path tail (`a::b::{c, d::e}`) from `i`: the expanded tails and where it ended.
fn tree(chars: &[char], mut i: usize) -> (Vec<String>, usize) {
    let mut prefix: Vec<String> = Vec::new();
    loop {
        while chars.get(i).is_some_and(|c| c.is_whitespace()) {
            i += 1;
        }
        if chars.get(i) == Some(&'{') {
            let mut all = Vec::new();
            i += 1;
            loop {
                while chars.get(i).is_some_and(|c| c.is_whitespace() || *c == ',') {
                    i += 1;
                }
                match chars.get(i) {
                    None => break,
                    Some('}') => {
                        i += 1;
                        break;
                    }
                    _ => {
                        let (subs, end) = tree(chars, i);
                        for s in subs {
                            let mut p = prefix.clone();
                            if !s.is_empty() {
                                p.push(s);
                            }
                            all.push(p.join("::"));
                        }
                        // Skip `as name` and anything else up to the next `,` or `}`.
                        i = end;
                        while chars.get(i).is_some_and(|c| *c != ',' && *c != '}') {
                            i += 1;
                        }
                    }
                }
            }
            return (all, i);
        }
        let start = i;
        while chars
            .get(i)
            .is_some_and(|c| c.is_alphanumeric() || *c == '_' || *c == '*')
        {
            i += 1;
        }
        let ident: String = chars[start..i].iter().collect();
        if ident.is_empty() {
            return (vec![prefix.join("::")], i);
        }
        prefix.push(ident);
        if text_at(chars, i, "::") {
            i += 2;
        } else {
            return (vec![prefix.join("::")], i);
        }
    }
}

/// The module a path in `module` points into: the longest known module it names.
fn resolve(module: &str, path: &str, modules: &BTreeSet<String>) -> Option<String> {
    let mut segs: Vec<&str> = path.split("::").collect();
    let mut base: Vec<&str> = Vec::new();
    if segs.first() == Some(&"crate") {
        segs.remove(0);
    } else {
        base = module.split("::").collect();
        while segs.first() == Some(&"super") {
            segs.remove(0);
            base.pop();
        }
    }
    let full: Vec<&str> = base.into_iter().chain(segs).collect();
    (1..=full.len())
        .rev()
        .map(|n| full[..n].join("::"))
        .find(|m| modules.contains(m))
}

fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for m in graph.get(n).into_iter().flatten() {
            match state.get(m.as_str()) {
                Some(1) => {
                    let at = stack.iter().position(|s| s == m).unwrap_or(0);
                    let mut cycle = stack[at..].to_vec();
                    cycle.push(m.clone());
                    return Some(cycle);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(m, graph, state, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in graph.keys() {
        if !state.contains_key(n.as_str())
            && let Some(c) = visit(n, graph, &mut state, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

fn read_src() -> BTreeMap<String, String> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("read src/")
            .map(|e| e.expect("a directory entry").path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, root, out);
            } else if p.extension().is_some_and(|e| e == "rs")
                && p.file_name().is_some_and(|n| n != "tests.rs")
                && let Some(m) = module_of(p.strip_prefix(root).expect("under src/"))
            {
                out.insert(m, std::fs::read_to_string(&p).expect("read a source file"));
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = BTreeMap::new();
    walk(&root, &root, &mut out);
    out
}

#[test]
fn every_import_goes_down_and_the_top_level_modules_have_no_cycle() {
    let files = read_src();
    assert!(files.len() > 50, "src/ was not read: {} files", files.len());
    let problems = check(&files, LAYERS);
    assert!(
        problems.is_empty(),
        "the layers are broken ({}):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

fn fixture(files: &[(&str, &str)]) -> BTreeMap<String, String> {
    files
        .iter()
        .map(|(m, t)| (m.to_string(), t.to_string()))
        .collect()
}

const FIXTURE_LAYERS: &[(&str, &[&str])] = &[("low", &["a", "b"]), ("high", &["c"])];

#[test]
fn an_inline_upward_path_fails() {
    let files = fixture(&[
        ("a", "pub fn f() { let x = crate::c::render(1); }"),
        ("c", ""),
    ]);
    let problems = check(&files, FIXTURE_LAYERS);
    assert_eq!(
        problems,
        ["upward: a (low) uses c (high) through `crate::c::render`"]
    );
}

#[test]
fn an_upward_path_through_super_and_a_use_group_fails() {
    let files = fixture(&[
        ("c", ""),
        ("c::x", ""),
        ("a", ""),
        ("a::inner", "use super::super::{c::x::Thing, b};"),
        ("b", ""),
    ]);
    let problems = check(&files, FIXTURE_LAYERS);
    assert_eq!(
        problems,
        ["upward: a::inner (low) uses c::x (high) through `super::super::c::x::Thing`"]
    );
}

#[test]
fn a_cycle_of_top_level_modules_fails_even_within_one_layer() {
    let files = fixture(&[
        ("a", "use crate::b::B;"),
        ("b", "fn g() { crate::a::log!(\"x\"); }"),
    ]);
    let problems = check(&files, FIXTURE_LAYERS);
    assert_eq!(problems, ["cycle of top-level modules: a -> b -> a"]);
}

#[test]
fn a_module_in_no_layer_fails_and_test_code_is_left_out() {
    let files = fixture(&[
        ("a", "#[cfg(test)]\nmod tests { use crate::c::Helper; }"),
        ("c", ""),
        ("d", ""),
    ]);
    let problems = check(&files, FIXTURE_LAYERS);
    assert_eq!(problems, ["module d is in no layer: add it to LAYERS"]);
}
