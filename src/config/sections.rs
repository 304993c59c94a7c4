//! From file text and environment to a typed [`Config`]: read and syntax-check the file, merge
//! the layers with the `config` crate, then walk the merged tree section by section.

use super::walk::{Table, Walker};
use super::{
    AlertsConfig, ApiConfig, ApiTls, Config, ConfigErrors, ControlConfig, Discover, DiscoverMode,
    GossipConfig, MetricsConfig, NodeConfig, Problem, ProblemKind, Profile, SinkSpec, StoreConfig,
    SupervisionConfig, schema, sinks,
};
use crate::types::NodeName;
use config::{Environment, File, FileFormat, Value, ValueKind};
use std::path::{Path, PathBuf};

/// The one problem that makes the file at `path` unusable.
fn whole_file(path: &Path, kind: ProblemKind, message: String) -> ConfigErrors {
    ConfigErrors(vec![Problem {
        file: path.display().to_string(),
        key: String::new(),
        kind,
        message,
    }])
}

/// The file's text, or the one problem that makes it unusable (unreadable, not UTF-8, not
/// TOML). Syntax is checked here with `toml` because its errors carry a position.
pub(super) fn read_file(path: &Path) -> Result<String, ConfigErrors> {
    let bytes = std::fs::read(path).map_err(|e| {
        whole_file(
            path,
            ProblemKind::Unreadable,
            format!("cannot read the file: {e}"),
        )
    })?;
    decode_text(path, &bytes)
}

/// The text of a config file's bytes (`path` names it in problems), syntax-checked.
pub(super) fn decode_text(path: &Path, bytes: &[u8]) -> Result<String, ConfigErrors> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let text = String::from_utf8(bytes.to_vec()).map_err(|e| {
        whole_file(
            path,
            ProblemKind::Unreadable,
            format!("the file is not UTF-8 ({e})"),
        )
    })?;
    if let Err(e) = toml::from_str::<toml::Table>(&text) {
        let at = e.span().map_or(String::new(), |span| {
            let (line, column) = line_column(&text, span.start);
            format!(" at line {line}, column {column}")
        });
        let message = format!("TOML syntax error{at}: {}", e.message().trim());
        return Err(whole_file(path, ProblemKind::Syntax, message));
    }
    Ok(text)
}

/// 1-based line and column (in chars) of byte `offset`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The file layer under the `NBWATCH_<SECTION>__<KEY>` layer, as one tree whose values
/// remember their layer.
pub(super) fn merge(
    path: Option<&Path>,
    text: Option<&str>,
    env: &[(String, String)],
) -> Result<Value, ConfigErrors> {
    let overrides: config::Map<String, String> = env
        .iter()
        .filter(|(k, _)| {
            k.strip_prefix("NBWATCH_")
                .is_some_and(|rest| rest.contains("__"))
        })
        .cloned()
        .collect();
    let mut builder = config::Config::builder();
    if let Some(text) = text {
        builder = builder.add_source(File::from_str(text, FileFormat::Toml));
    }
    let environment = Environment::with_prefix("NBWATCH")
        .prefix_separator("_")
        .separator("__")
        .source(Some(overrides));
    match builder.add_source(environment).build() {
        Ok(merged) => Ok(merged.cache),
        Err(e) => Err(ConfigErrors(vec![Problem {
            file: path.map_or(super::ENVIRONMENT.to_string(), |p| p.display().to_string()),
            key: String::new(),
            kind: ProblemKind::Syntax,
            message: e.to_string(),
        }])),
    }
}

/// Walks the merged tree into a [`Config`], or every problem found on the way.
pub(super) fn build(
    merged: &Value,
    path: Option<&Path>,
    host_name: Option<String>,
) -> Result<Config, ConfigErrors> {
    let mut w = Walker::new(path.map(|p| p.display().to_string()));
    let empty = Table::new();
    let root = match &merged.kind {
        ValueKind::Table(t) => t,
        _ => &empty,
    };
    unknown_sections(&mut w, root);
    // Relative paths from the file are relative to its folder (module doc).
    let base = path.and_then(Path::parent).map(Path::to_path_buf);
    let sections = Sections { root };

    let name = node_name(&mut w, sections.value("node", "name"), host_name);
    let node = node(&mut w, &sections);
    let gossip = gossip(&mut w, &sections, base.as_deref());
    let metrics = metrics(&mut w, &sections, base.as_deref());
    let api = api(&mut w, &sections, base.as_deref());
    let control = control(&mut w, &sections, base.as_deref());
    let supervision = supervision(&mut w, &sections, base.as_deref());
    let store = store(&mut w, &sections);
    let alerts = alerts(&mut w, &sections, base.as_deref());
    // After the sections: whether a listen address may be used depends on other keys.
    for e in super::exposure::exposure(&api) {
        let (section, key) = e.key().split_once('.').unwrap_or(("", e.key()));
        match sections.value(section, key) {
            Some(v) => w.problem(v, e.key(), ProblemKind::BadValue, e.to_string()),
            None => w.report(e.key(), ProblemKind::BadValue, e.to_string()),
        }
    }

    match name {
        Some(name) if w.problems.is_empty() => Ok(Config {
            file: path.map(Path::to_path_buf),
            node: NodeConfig { name, ..node },
            gossip,
            metrics,
            api,
            control,
            supervision,
            store,
            alerts,
        }),
        _ => Err(ConfigErrors(w.problems)),
    }
}

fn unknown_sections(w: &mut Walker, root: &Table) {
    let known = schema::section_names();
    let mut names: Vec<&String> = root
        .keys()
        .filter(|k| !known.contains(&k.as_str()))
        .collect();
    names.sort();
    for name in names {
        let value = &root[name];
        let (kind, message) = match &value.kind {
            ValueKind::Table(_) => {
                let hint = schema::hint(name, &known, false);
                (
                    ProblemKind::UnknownSection,
                    format!("unknown section [{name}]{hint}"),
                )
            }
            // A key above every section: most likely one that belongs in a section.
            _ => {
                let hint = schema::hint(name, &[], true);
                let message = format!("unknown key \"{name}\" outside any section{hint}");
                (ProblemKind::UnknownKey, message)
            }
        };
        w.problem(value, name, kind, message);
    }
    for (section, keys) in schema::SECTIONS {
        if let Some(v) = root.get(*section) {
            let what = format!("a table ([{section}])");
            if let Some(table) = w.table(v, section, &what) {
                w.unknown_keys(table, section, keys, &format!("in [{section}]"));
            }
        }
    }
}

/// The known sections of the merged tree; a section of the wrong type reads as absent (its
/// problem was recorded by [`unknown_sections`]).
struct Sections<'v> {
    root: &'v Table,
}

impl<'v> Sections<'v> {
    fn value(&self, section: &str, key: &str) -> Option<&'v Value> {
        match &self.root.get(section)?.kind {
            ValueKind::Table(t) => t.get(key),
            _ => None,
        }
    }
}

/// Reads `section.key` with `read`, keeping `default` when absent or bad.
fn read<T>(
    w: &mut Walker,
    s: &Sections<'_>,
    section: &str,
    key: &str,
    default: T,
    read: impl FnOnce(&mut Walker, &Value, &str) -> Option<T>,
) -> T {
    match s.value(section, key) {
        Some(v) => read(w, v, &format!("{section}.{key}")).unwrap_or(default),
        None => default,
    }
}

fn node_name(w: &mut Walker, v: Option<&Value>, host_name: Option<String>) -> Option<NodeName> {
    const KEY: &str = "node.name";
    let Some(v) = v else {
        if host_name.is_none() {
            let message = "missing name: node.name is not set and the host name cannot be \
                           determined";
            w.default_problem(KEY, ProblemKind::MissingName, message.to_string());
        }
        return host_name.map(NodeName);
    };
    let name = w.string(v, KEY)?;
    if name.trim().is_empty() {
        let message = "missing name: node.name is empty".to_string();
        w.problem(v, KEY, ProblemKind::MissingName, message);
        return None;
    }
    // Control characters and bidirectional overrides too: a node name reaches every
    // operator's terminal through every host's tables.
    let refused = |c: char| c.is_whitespace() || c.is_control() || crate::text::needs_escape(c);
    if name.contains(':') || name.chars().any(refused) {
        let message = format!(
            "bad name \"{}\": no ':', spaces or control characters (commands take NODE:SERVICE)",
            crate::text::visible(&name)
        );
        w.problem(v, KEY, ProblemKind::BadValue, message);
        return None;
    }
    Some(NodeName(name))
}

/// `[node]` except the name, which [`node_name`] reads.
fn node(w: &mut Walker, s: &Sections<'_>) -> NodeConfig {
    let d = Config::builtin(NodeName::new("")).node;
    NodeConfig {
        name: d.name,
        data_dir: read(w, s, "node", "data_dir", d.data_dir, Walker::path),
        priority: read(w, s, "node", "priority", d.priority, Walker::int),
        weight: read(w, s, "node", "weight", d.weight, Walker::weight),
        zone: read(w, s, "node", "zone", d.zone, |w, v, key| {
            let zone = w.string(v, key)?;
            match crate::keys::zone::check_name(&zone) {
                Ok(()) => Some(zone),
                Err(message) => {
                    w.problem(v, key, ProblemKind::BadValue, message);
                    None
                }
            }
        }),
    }
}

fn gossip(w: &mut Walker, s: &Sections<'_>, base: Option<&Path>) -> GossipConfig {
    let d = GossipConfig::default();
    let profile = read(w, s, "gossip", "profile", d.profile, |w, v, key| {
        let word = w.string(v, key)?;
        let profile = Profile::parse(&word);
        if profile.is_none() {
            let names = Profile::ALL
                .map(|p| format!("\"{}\"", p.as_str()))
                .join(" or ");
            let message = format!("{word:?} is not a gossip profile ({names})");
            w.problem(v, key, ProblemKind::BadValue, message);
        }
        profile
    });
    let interval = read(
        w,
        s,
        "gossip",
        "interval",
        profile.interval(),
        Walker::bounded_duration,
    );
    let key_file = read(w, s, "gossip", "key_file", None, |w, v, key| {
        let path = optional(w, v, key, Walker::path)?;
        Some(path.map(|p| beside_file(p, v, base)))
    });
    let insecure = read(w, s, "gossip", "insecure", d.insecure, Walker::bool);
    // Unset, listen on every interface only when gossip is sealed or plaintext on purpose.
    let default_listen = if key_file.is_some() || insecure {
        super::DEFAULT_GOSSIP_LISTEN
    } else {
        d.listen
    };
    let cluster = read(w, s, "gossip", "cluster", d.cluster, |w, v, key| {
        let name = w.string(v, key)?;
        if name.is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
            let message = format!("{name:?} is not a cluster name (1 to 255 printable bytes)");
            w.problem(v, key, ProblemKind::BadValue, message);
            return None;
        }
        Some(name)
    });
    let mode = read(w, s, "gossip", "discover", None, |w, v, key| {
        let word = w.string(v, key)?;
        let mode = match word.as_str() {
            "off" => None,
            "multicast" => Some(DiscoverMode::Multicast),
            "broadcast" => Some(DiscoverMode::Broadcast),
            _ => {
                let message = format!("{word:?} is not \"off\", \"multicast\" or \"broadcast\"");
                w.problem(v, key, ProblemKind::BadValue, message);
                return None;
            }
        };
        if mode.is_some() && insecure {
            let message = "discovery needs sealed gossip: with gossip.insecure = true any host \
                           on the segment could answer the beacons; set a key_file instead"
                .to_string();
            w.problem(v, key, ProblemKind::BadValue, message);
            return None;
        }
        Some(mode)
    });
    let address = read(w, s, "gossip", "discover_address", None, |w, v, key| {
        let addr = optional(w, v, key, Walker::socket_addr)?;
        let fits = match (addr, mode) {
            (Some(a), Some(DiscoverMode::Multicast)) => match a.ip() {
                std::net::IpAddr::V4(ip) => ip.is_multicast(),
                std::net::IpAddr::V6(_) => false,
            },
            (Some(a), _) => a.is_ipv4() && a.port() != 0,
            (None, _) => true,
        };
        if !fits {
            let message = "an IPv4 multicast group and port with discover = \"multicast\", an \
                           IPv4 broadcast address and port with \"broadcast\""
                .to_string();
            w.problem(v, key, ProblemKind::BadAddress, message);
            return None;
        }
        Some(addr)
    });
    let discover = mode.map(|mode| Discover {
        mode,
        address: address.unwrap_or(match mode {
            DiscoverMode::Multicast => super::DEFAULT_MULTICAST,
            DiscoverMode::Broadcast => super::DEFAULT_BROADCAST,
        }),
    });
    GossipConfig {
        discover,
        listen: read(
            w,
            s,
            "gossip",
            "listen",
            default_listen,
            Walker::socket_addr,
        ),
        advertise: read(w, s, "gossip", "advertise", None, |w, v, key| {
            optional(w, v, key, Walker::socket_addr)
        }),
        seeds: read(w, s, "gossip", "seeds", d.seeds, Walker::socket_addrs),
        profile,
        interval,
        key_file,
        insecure,
        cluster,
    }
}

/// An optional key: an empty string means "not set" (handy to unset from the environment).
fn optional<T>(
    w: &mut Walker,
    v: &Value,
    key: &str,
    read: impl FnOnce(&mut Walker, &Value, &str) -> Option<T>,
) -> Option<Option<T>> {
    match &v.kind {
        ValueKind::String(s) if s.trim().is_empty() => Some(None),
        _ => read(w, v, key).map(Some),
    }
}

/// A relative path from the file layer, made relative to the file's folder.
pub(super) fn beside_file(path: PathBuf, v: &Value, base: Option<&Path>) -> PathBuf {
    match base {
        Some(base) if path.is_relative() && !Walker::from_env(v) => base.join(path),
        _ => path,
    }
}

fn metrics(w: &mut Walker, s: &Sections<'_>, base: Option<&Path>) -> MetricsConfig {
    let d = MetricsConfig::default();
    MetricsConfig {
        interval: read(
            w,
            s,
            "metrics",
            "interval",
            d.interval,
            Walker::bounded_duration,
        ),
        probes: folder(w, s, ("metrics", "probes"), &d.probes, base),
        listen: read(w, s, "metrics", "listen", None, |w, v, key| {
            optional(w, v, key, Walker::socket_addr)
        }),
    }
}

fn api(w: &mut Walker, s: &Sections<'_>, base: Option<&Path>) -> ApiConfig {
    let d = ApiConfig::default();
    ApiConfig {
        listen: read(w, s, "api", "listen", d.listen, Walker::socket_addr),
        insecure: read(w, s, "api", "insecure", d.insecure, Walker::bool),
        tls: api_tls(w, s, base),
        allowed_hosts: read(w, s, "api", "allowed_hosts", d.allowed_hosts, host_names),
    }
}

/// `api.tls_cert` and `api.tls_key`: both or neither, each a PEM file that reads (a relative
/// path is beside the config file).
fn api_tls(w: &mut Walker, s: &Sections<'_>, base: Option<&Path>) -> Option<ApiTls> {
    let file = |w: &mut Walker, name: &str, check: fn(&Path) -> Result<(), String>| {
        read(w, s, "api", name, None, |w, v, key| {
            let Some(path) = optional(w, v, key, Walker::path)?.map(|p| beside_file(p, v, base))
            else {
                return Some(None);
            };
            match check(&path) {
                Ok(()) => Some(Some(path)),
                Err(why) => {
                    w.problem(v, key, ProblemKind::BadValue, why);
                    None
                }
            }
        })
    };
    let cert = file(w, "tls_cert", |p| super::pem::certificates(p).map(drop));
    let key = file(w, "tls_key", super::pem::private_key);
    match (cert, key) {
        (Some(cert), Some(key)) => Some(ApiTls { cert, key }),
        // A key given but unusable is a problem of its own already.
        _ if s.value("api", "tls_cert").is_some() == s.value("api", "tls_key").is_some() => None,
        _ => {
            let message = "give both api.tls_cert and api.tls_key, or neither".to_string();
            w.report("api.tls_key", ProblemKind::MissingKey, message);
            None
        }
    }
}

fn control(w: &mut Walker, s: &Sections<'_>, base: Option<&Path>) -> ControlConfig {
    let operators = read(w, s, "control", "operators", Vec::new(), |w, v, key| {
        let mut ids = Vec::new();
        for (i, text) in w.strings(v, key)?.iter().enumerate() {
            match crate::secure::operator::OperatorId::parse(text) {
                Ok(id) => ids.push(id),
                Err(e) => w.problem(
                    v,
                    &format!("{key}[{i}]"),
                    ProblemKind::BadValue,
                    e.to_string(),
                ),
            }
        }
        Some(ids)
    });
    let operator_key_file = read(w, s, "control", "operator_key_file", None, |w, v, key| {
        let path = optional(w, v, key, Walker::path)?;
        Some(path.map(|p| beside_file(p, v, base)))
    });
    ControlConfig {
        operators,
        operator_key_file,
    }
}

/// A list of host names (`api.allowed_hosts`), lower-cased; an element that is not a bare
/// host name (letters, digits, '-', '_' and '.'; no port, no scheme) is reported at its index.
fn host_names(w: &mut Walker, v: &Value, key: &str) -> Option<Vec<String>> {
    let names = w.strings(v, key)?;
    let mut out = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let bare = name.trim_end_matches('.').to_ascii_lowercase();
        let ok = !bare.is_empty()
            && bare
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if ok {
            out.push(bare);
        } else {
            let message = format!(
                "{name:?} is not a host name; expected a bare name like \"nbwatch.home.arpa\" \
                 (no port, no scheme)"
            );
            w.problem(v, &format!("{key}[{i}]"), ProblemKind::BadValue, message);
        }
    }
    Some(out)
}

fn supervision(w: &mut Walker, s: &Sections<'_>, base: Option<&Path>) -> SupervisionConfig {
    let d = SupervisionConfig::default();
    SupervisionConfig {
        trees: folder(w, s, ("supervision", "trees"), &d.trees, base),
        log_max_bytes: read(
            w,
            s,
            "supervision",
            "log_max_bytes",
            d.log_max_bytes,
            Walker::bounded_u32,
        ),
        log_keep: read(
            w,
            s,
            "supervision",
            "log_keep",
            d.log_keep,
            Walker::bounded_u32,
        ),
    }
}

/// A folder that ships next to the config file (trees, probes): a relative path from the
/// file, and the default when there is a file, are relative to the file's folder.
fn folder(
    w: &mut Walker,
    s: &Sections<'_>,
    (section, key): (&str, &str),
    default: &Path,
    base: Option<&Path>,
) -> PathBuf {
    let set = match s.value(section, key) {
        Some(v) => w
            .path(v, &format!("{section}.{key}"))
            .map(|p| beside_file(p, v, base)),
        None => None,
    };
    set.unwrap_or_else(|| base.map_or(default.to_path_buf(), |b| b.join(default)))
}

fn store(w: &mut Walker, s: &Sections<'_>) -> StoreConfig {
    let d = StoreConfig::default();
    StoreConfig {
        raw_retention: read(
            w,
            s,
            "store",
            "raw_retention",
            d.raw_retention,
            Walker::bounded_duration,
        ),
        rollup_retention: read(
            w,
            s,
            "store",
            "rollup_retention",
            d.rollup_retention,
            Walker::bounded_duration,
        ),
        backfill: read(
            w,
            s,
            "store",
            "backfill",
            d.backfill,
            Walker::bounded_duration,
        ),
        remote_write: read(w, s, "store", "remote_write", None, |w, v, key| {
            let Some(url) = optional(w, v, key, Walker::string)? else {
                return Some(None);
            };
            let host = (url
                .strip_prefix("http://")
                .or_else(|| url.strip_prefix("https://")))
            .map(|rest| rest.split('/').next().unwrap_or(""));
            if host.is_none_or(str::is_empty) {
                let message = format!(
                    "bad remote-write URL \"{url}\"; expected http(s)://host:port/path, such \
                     as http://prometheus:9090/api/v1/write"
                );
                w.problem(v, key, ProblemKind::BadValue, message);
                return None;
            }
            Some(Some(url))
        }),
    }
}

fn alerts(w: &mut Walker, s: &Sections<'_>, base: Option<&Path>) -> AlertsConfig {
    let d = AlertsConfig::default();
    let mut alerts = AlertsConfig {
        flap_threshold: read(
            w,
            s,
            "alerts",
            "flap_threshold",
            d.flap_threshold,
            Walker::bounded_u32,
        ),
        flap_window: read(
            w,
            s,
            "alerts",
            "flap_window",
            d.flap_window,
            Walker::bounded_duration,
        ),
        repeat: read(w, s, "alerts", "repeat", d.repeat, Walker::bounded_duration),
        sinks: read(w, s, "alerts", "sinks", d.sinks, |w, v, k| {
            sinks::sinks(w, v, k, sinks::Origin::Local(base))
        }),
        commands: read(w, s, "alerts", "commands", d.commands, commands),
        actions: d.actions,
        probe_warning: read(
            w,
            s,
            "alerts",
            "probe_warning",
            d.probe_warning,
            Walker::bool,
        ),
    };
    // After the commands: an exec action by name must name one of them.
    alerts.actions = read(w, s, "alerts", "actions", Vec::new(), |w, v, k| {
        super::actions::actions(w, v, k, &alerts.commands)
    });
    // A node's own exec sink by name must name one of its own commands.
    if let Some(v) = s.value("alerts", "sinks") {
        for (i, sink) in alerts.sinks.iter().enumerate() {
            if let SinkSpec::Named { name } = sink
                && !alerts.commands.contains_key(name)
            {
                let message = format!(
                    "command \"{name}\" is not declared in [alerts.commands]{}",
                    schema::hint(name, &names(&alerts.commands), false)
                );
                let key = format!("alerts.sinks[{i}].command_name");
                w.problem(v, &key, ProblemKind::BadValue, message);
            }
        }
    }
    alerts
}

fn names(commands: &std::collections::BTreeMap<String, Vec<String>>) -> Vec<&str> {
    commands.keys().map(String::as_str).collect()
}

/// `[alerts.commands]`: a name for each command line (never empty) an exec sink may run by
/// `command_name`.
fn commands(
    w: &mut Walker,
    v: &Value,
    key: &str,
) -> Option<std::collections::BTreeMap<String, Vec<String>>> {
    let table = w.table(v, key, "a table of command lines ([alerts.commands])")?;
    let mut out = std::collections::BTreeMap::new();
    for (name, line) in table {
        let line_key = format!("{key}.{name}");
        let Some(command) = w.strings(line, &line_key) else {
            continue;
        };
        if command.first().is_none_or(|p| p.trim().is_empty()) {
            let message = "empty command: give the program and its arguments".to_string();
            w.problem(line, &line_key, ProblemKind::EmptyCommand, message);
            continue;
        }
        out.insert(name.clone(), command);
    }
    Some(out)
}
