//! The node's config: one optional TOML file plus `NBWATCH_<SECTION>__<KEY>` overrides, turned
//! into typed structs once, at load, so no other module ever sees a raw value.
//!
//! Why an explicit walk and not `#[serde(deny_unknown_fields)]`: serde stops at the first
//! error, and `check-config` must list every problem, each with its file and key, in one run.
//! So the `config` crate merges the layers (it remembers which layer each value came from) and
//! `sections` visits the merged tree once, building the typed config and collecting problems.
//!
//! Rules a user can rely on (the sample `etc/nbwatch.toml` repeats them):
//! - Only variables shaped `NBWATCH_<SECTION>__<KEY>` override the file (the double underscore
//!   separates section and key; keys are case-insensitive there). Others such as `NBWATCH_API`,
//!   which client commands read, are ignored here. A list (`NBWATCH_GOSSIP__SEEDS`) is
//!   comma-separated; an empty `advertise` or `key_file` means "not set".
//! - Relative `supervision.trees`, `metrics.probes` and `gossip.key_file` from the file (or the
//!   defaults `supervisors` and `probes` when a file was given) are relative to the file's
//!   folder, since they ship next to it;
//!   from the environment, or with no file, they are relative to the current directory.
//!   `node.data_dir` is state, not part of the config, so it stays relative to the current
//!   directory.

pub mod actions;
pub mod bounds;
pub mod cluster;
pub mod exposure;
mod files;
mod host;
mod pem;
mod schema;
mod sections;
mod sinks;
pub(crate) mod walk;

#[cfg(test)]
mod tests;

use crate::types::NodeName;
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use files::{toml_files, toml_table};
pub use host::first_non_loopback_ipv4;

/// `gossip.listen` when not set and gossip is sealed (`gossip.key_file`) or plaintext on
/// purpose (`gossip.insecure`): every interface.
pub const DEFAULT_GOSSIP_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 7710));
/// `gossip.listen` when not set otherwise: loopback, since plaintext gossip must not reach
/// the network unless asked for (DESIGN §9). A node on built-in defaults still runs.
pub const DEFAULT_PLAINTEXT_GOSSIP_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 7710));
/// `api.listen` when not set, and where client commands look last.
pub const DEFAULT_API_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 7711));
/// `node.data_dir` when not set.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/nbwatch";
/// `supervision.trees` when not set (see the module doc for what it is relative to).
pub const DEFAULT_TREES: &str = "supervisors";
/// `metrics.probes` when not set (relative like `supervision.trees`).
pub const DEFAULT_PROBES: &str = "probes";
/// The label of problems that come from `NBWATCH_` variables.
pub const ENVIRONMENT: &str = "environment";
/// The label of problems that come from a built-in default (e.g. no host name).
pub const DEFAULTS: &str = "defaults";

/// The whole node config, every default applied and every path resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The file it was loaded from, if any.
    pub file: Option<PathBuf>,
    pub node: NodeConfig,
    pub gossip: GossipConfig,
    pub metrics: MetricsConfig,
    pub api: ApiConfig,
    pub control: ControlConfig,
    pub supervision: SupervisionConfig,
    pub store: StoreConfig,
    pub alerts: AlertsConfig,
}

#[derive(Clone, Debug, PartialEq)]
pub struct NodeConfig {
    /// Unique in the cluster; defaults to the host name.
    pub name: NodeName,
    pub data_dir: PathBuf,
    /// Lower leads first.
    pub priority: i64,
    /// This host's share of the keys `nbwatch owner` places, relative to the others' (1).
    pub weight: f64,
    /// The zone (site, rack) this host is in (`node.zone`, see `gossip::core::zones`).
    pub zone: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct GossipConfig {
    /// UDP and TCP.
    pub listen: SocketAddr,
    /// As set by the user; see [`GossipConfig::advertise_addr`] for the address actually used.
    pub advertise: Option<SocketAddr>,
    /// Names are resolved at load; empty means a new cluster.
    pub seeds: Vec<SocketAddr>,
    /// `gossip.profile`: the protocol's settings by one word.
    pub profile: Profile,
    /// Unset, the profile's interval.
    pub interval: Duration,
    /// The cluster key. Unset, gossip is still sealed, with the key the node keeps in its
    /// data dir (see [`Config::gossip_key`]).
    pub key_file: Option<PathBuf>,
    /// Plaintext gossip, on purpose (only without `key_file`).
    pub insecure: bool,
    /// The cluster's name, part of every sealed frame's associated data: two clusters that
    /// share a key by mistake still cannot talk.
    pub cluster: String,
    /// Finding the cluster on the LAN segment without seeds (`gossip.discover`); `None`: off.
    pub discover: Option<Discover>,
}

/// `gossip.profile`: the gossip protocol's settings named by one word (the gossip core's
/// `Settings::profile` says what each one sets).
///
/// * `default`: two rounds an interval (every half second), each with the member the
///   clock's schedule names.
/// * `lean`: for links where bytes cost more than seconds of detection. One round an
///   interval, every two seconds: about a quarter of the liveness bytes, a slower median
///   and a longer tail of detection, and a slower cold start (BENCHMARKS.md, "Scheduled
///   rounds, fewer wakes").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Profile {
    #[default]
    Default,
    Lean,
}

impl Profile {
    pub const ALL: [Profile; 2] = [Profile::Default, Profile::Lean];

    /// The word `gossip.profile` names it by.
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Default => "default",
            Profile::Lean => "lean",
        }
    }

    pub fn parse(word: &str) -> Option<Profile> {
        Profile::ALL.into_iter().find(|p| p.as_str() == word)
    }

    /// The gossip interval where `gossip.interval` is not set.
    pub fn interval(self) -> Duration {
        match self {
            Profile::Default => Duration::from_secs(1),
            Profile::Lean => Duration::from_secs(2),
        }
    }
}

/// `gossip.discover` and `gossip.discover_address`: how a node without live members looks for
/// its cluster (see `crate::discover`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Discover {
    pub mode: DiscoverMode,
    /// Where beacons go, and the port every node listens on for them.
    pub address: SocketAddr,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiscoverMode {
    Multicast,
    Broadcast,
}

/// The default beacon address of each mode: an organisation-local multicast group, or the
/// limited broadcast address; port 7712 either way.
pub const DEFAULT_MULTICAST: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(239, 255, 77, 10)),
    7712,
);
pub const DEFAULT_BROADCAST: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::BROADCAST), 7712);

#[derive(Clone, Debug, PartialEq)]
pub struct MetricsConfig {
    /// How often this host announces its metrics; zero turns announcements off, host probes
    /// included.
    pub interval: Duration,
    /// Folder of host probe definitions, already resolved (see the module doc).
    pub probes: PathBuf,
    /// A second, read-only listener (`/metrics`, Prometheus service discovery, the
    /// dashboard), which may bind the LAN: it takes no token and changes nothing.
    pub listen: Option<SocketAddr>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    /// Allows a non-loopback `listen` without TLS: the bearer token then crosses the network
    /// in clear.
    pub insecure: bool,
    /// The API over TLS: the certificate chain (PEM, the server's first) and its key. With
    /// both, a non-loopback `listen` needs no `insecure`.
    pub tls: Option<ApiTls>,
    /// Host names, besides the listen address, `localhost` and the loopback addresses, that a
    /// request's `Host` may name (lower case; see `api::host`): the names a reverse proxy or
    /// an ssh tunnel reaches the API by.
    pub allowed_hosts: Vec<String>,
}

/// `api.tls_cert` and `api.tls_key`, both given, both readable PEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiTls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Who may act on this host from another one (SECURITY.md, "Command another host").
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ControlConfig {
    /// The operator public keys whose signed directives (service commands, silences) this
    /// host obeys. Empty: none from another host.
    pub operators: Vec<crate::secure::operator::OperatorId>,
    /// The operator private key this host signs the directives its API issues with.
    pub operator_key_file: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SupervisionConfig {
    /// Folder of tree files, already resolved (see the module doc).
    pub trees: PathBuf,
    /// A service's log (`<data_dir>/logs/<name>.log`) is rotated when it would pass this size.
    pub log_max_bytes: u32,
    /// How many rotated logs (`.1` ... `.N`) are kept.
    pub log_keep: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct StoreConfig {
    pub raw_retention: Duration,
    pub rollup_retention: Duration,
    pub backfill: Duration,
    /// A Prometheus remote-write receiver this host exports its own samples and events to
    /// (`export`); an http:// or https:// URL.
    pub remote_write: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AlertsConfig {
    /// This many state changes within `flap_window` = flapping.
    pub flap_threshold: u32,
    pub flap_window: Duration,
    /// Reminders while an incident is open; zero = never.
    pub repeat: Duration,
    pub sinks: Vec<SinkSpec>,
    /// The commands this node lets an `exec` sink run by name (`[alerts.commands]`): the
    /// only commands the cluster settings can make it run without an operator's signature.
    pub commands: BTreeMap<String, Vec<String>>,
    /// Remediation run once per incident and step (`[[alerts.actions]]`, see `actions`).
    pub actions: Vec<ActionSpec>,
    /// A host probe's `warning` opens an incident too (`probe_warning`), not only `critical`.
    pub probe_warning: bool,
}

/// One step of remediation: on an incident of kind `on` (of `subject`, or any), once it has
/// been open for `after`, the node that sends alerts runs `kind` — once for the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActionSpec {
    pub on: ActionOn,
    /// A node, or `NODE:SERVICE` for `service_failed`; `None`: any.
    pub subject: Option<String>,
    pub after: Duration,
    pub kind: ActionKind,
}

/// The incidents an action runs on: those that stay open until their subject is back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActionOn {
    NodeDown,
    ServiceFailed,
}

impl ActionOn {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionOn::NodeDown => "node_down",
            ActionOn::ServiceFailed => "service_failed",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ActionKind {
    /// A Wake-on-LAN magic packet for the down host's MAC address, sent to `address`.
    Wol { address: std::net::SocketAddr },
    /// Runs `command` with the alert on stdin.
    Exec { command: Vec<String> },
    /// Runs the command declared under `name` in `[alerts.commands]`.
    Named { name: String },
}

impl ActionKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            ActionKind::Wol { .. } => "wol",
            ActionKind::Exec { .. } | ActionKind::Named { .. } => "exec",
        }
    }
}

/// Where alerts go, `[[alerts.sinks]]` by `type`. Only described here; the alert module sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SinkSpec {
    /// Runs `command` (never empty) with the alert JSON on stdin.
    Exec { command: Vec<String> },
    /// An `exec` sink by `command_name`: runs the command this node declares under `name` in
    /// `[alerts.commands]` ([`AlertsConfig::resolved`] turns it into an `Exec`).
    Named { name: String },
    /// POSTs the alert to `url` (http or https) in `format`, with the token of `token_file`
    /// where the format puts one (`Authorization: Bearer <token>` for most).
    Webhook {
        url: WebhookUrl,
        format: WebhookFormat,
        token_file: Option<PathBuf>,
        /// Who gets it where the format names a recipient: Telegram's `chat_id`, Pushover's
        /// `user` key.
        recipient: Option<String>,
        /// More roots to trust for https, besides the system's.
        ca_file: Option<PathBuf>,
    },
    /// Posts the alert to every Alertmanager in `urls` (never empty; each an `http://` base
    /// URL) at `/api/v2/alerts`, as Prometheus does, and posts open alerts again while they
    /// stay open; accepted when at least one of them accepts it.
    Alertmanager { urls: Vec<String> },
    /// Mails the alert through the SMTP server at `host`:`port`; `from` and every `to` are
    /// valid mailboxes and `to` is never empty.
    Email {
        host: String,
        port: u16,
        tls: SmtpTls,
        from: String,
        to: Vec<String>,
        /// SMTP AUTH, when the server wants a login (`username`, `password_file`).
        auth: Option<SmtpAuth>,
    },
}

/// Where a webhook's URL is: in the config, or (a URL that is itself a secret, as Slack,
/// Discord and Telegram URLs are) the first line of a file, read at each delivery and never
/// written to a log or the alert log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WebhookUrl {
    Given(String),
    File(PathBuf),
}

impl WebhookUrl {
    /// The URL itself.
    pub fn read(&self) -> Result<String, PasswordError> {
        match self {
            WebhookUrl::Given(url) => Ok(url.clone()),
            WebhookUrl::File(path) => read_secret(path, "webhook URL"),
        }
    }

    /// How logs and results name it: the URL, or the file it is kept in.
    pub fn label(&self) -> String {
        match self {
            WebhookUrl::Given(url) => url.clone(),
            WebhookUrl::File(path) => format!("the URL in {}", path.display()),
        }
    }
}

impl From<&str> for WebhookUrl {
    fn from(url: &str) -> WebhookUrl {
        WebhookUrl::Given(url.to_string())
    }
}

/// An email sink's login: `username`, and the file whose first line is the password (read
/// at each delivery, so a changed password needs no restart; never in the config itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmtpAuth {
    pub username: String,
    pub password_file: std::path::PathBuf,
}

impl SmtpAuth {
    /// The password: the file's first line. The error names the file.
    pub fn password(&self) -> Result<String, PasswordError> {
        read_secret(&self.password_file, "SMTP password")
    }
}

/// The first line of `path`, a secret (`what`: "SMTP password", "webhook URL", ...), read
/// at each use so that a changed secret needs no restart. The error names the file, never
/// its content.
pub fn read_secret(path: &Path, what: &'static str) -> Result<String, PasswordError> {
    let text = std::fs::read_to_string(path).map_err(|source| PasswordError::Unreadable {
        what,
        path: path.to_path_buf(),
        source,
    })?;
    let secret = text.lines().next().unwrap_or("").trim_end_matches('\r');
    if secret.is_empty() {
        return Err(PasswordError::Empty {
            what,
            path: path.to_path_buf(),
        });
    }
    Ok(secret.to_string())
}

/// Why a secret file (an SMTP password, a webhook's URL or token) cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("cannot read the {what} file {path}: {source}")]
    Unreadable {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the {what} file {path} is empty")]
    Empty { what: &'static str, path: PathBuf },
}

/// Equal when the same thing went wrong with the same file (an I/O error compares by kind,
/// as `std::io::Error` has no equality).
impl PartialEq for PasswordError {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (
                PasswordError::Unreadable { path, source, .. },
                PasswordError::Unreadable {
                    path: p, source: s, ..
                },
            ) => path == p && source.kind() == s.kind(),
            (PasswordError::Empty { path, .. }, PasswordError::Empty { path: p, .. }) => path == p,
            _ => false,
        }
    }
}

/// How an email sink talks to its SMTP server, the sink's `tls` key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpTls {
    /// `"starttls"`: plain connect, then STARTTLS before anything is sent; refused if the
    /// server does not offer it. The default for port 587 (submission).
    StartTls,
    /// `"tls"`: TLS from the first byte. The default for port 465 (submissions).
    Implicit,
    /// `"none"`: no TLS, for a relay on this host or this network. The default for 25 and
    /// every other port.
    Plain,
}

impl SmtpTls {
    /// What a server on `port` most likely expects when the config does not say.
    pub fn for_port(port: u16) -> SmtpTls {
        match port {
            587 => SmtpTls::StartTls,
            465 => SmtpTls::Implicit,
            _ => SmtpTls::Plain,
        }
    }
}

/// The body of a webhook POST: the contract's JSON, or what a receiver expects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WebhookFormat {
    /// The contract's alert JSON.
    #[default]
    Json,
    /// Alertmanager's webhook payload.
    Alertmanager,
    /// A message to an ntfy topic (the URL is the topic's).
    Ntfy,
    /// A Gotify message (the URL is the server's; the token is the application's).
    Gotify,
    /// A Slack or Mattermost incoming webhook.
    Slack,
    /// A Discord webhook.
    Discord,
    /// A Telegram bot's message (the token is the bot's; `chat_id` the recipient).
    Telegram,
    /// A Pushover message (the token is the application's; `user` the recipient).
    Pushover,
}

impl WebhookFormat {
    /// Every format by its name in the config.
    pub const ALL: [(&'static str, WebhookFormat); 8] = [
        ("json", WebhookFormat::Json),
        ("alertmanager", WebhookFormat::Alertmanager),
        ("ntfy", WebhookFormat::Ntfy),
        ("gotify", WebhookFormat::Gotify),
        ("slack", WebhookFormat::Slack),
        ("discord", WebhookFormat::Discord),
        ("telegram", WebhookFormat::Telegram),
        ("pushover", WebhookFormat::Pushover),
    ];

    /// The URL a format posts to when the sink gives none (the public service's).
    pub fn default_url(self) -> Option<&'static str> {
        match self {
            WebhookFormat::Telegram => Some("https://api.telegram.org"),
            WebhookFormat::Pushover => Some("https://api.pushover.net/1/messages.json"),
            _ => None,
        }
    }

    /// The key naming the recipient, for the formats that need one.
    pub fn recipient_key(self) -> Option<&'static str> {
        match self {
            WebhookFormat::Telegram => Some("chat_id"),
            WebhookFormat::Pushover => Some("user"),
            _ => None,
        }
    }

    /// Whether the format cannot work without a `token_file`.
    pub fn needs_token(self) -> bool {
        matches!(
            self,
            WebhookFormat::Gotify | WebhookFormat::Telegram | WebhookFormat::Pushover
        )
    }
}

impl Config {
    /// The built-in defaults, with `name` because the default name is the host's.
    pub fn builtin(name: NodeName) -> Config {
        Config {
            file: None,
            node: NodeConfig {
                name,
                data_dir: PathBuf::from(DEFAULT_DATA_DIR),
                priority: 0,
                weight: 1.0,
                zone: crate::keys::zone::DEFAULT_ZONE.to_string(),
            },
            gossip: GossipConfig::default(),
            metrics: MetricsConfig::default(),
            api: ApiConfig::default(),
            control: ControlConfig::default(),
            supervision: SupervisionConfig::default(),
            store: StoreConfig::default(),
            alerts: AlertsConfig::default(),
        }
    }

    /// A node for tests: gossip and API on `127.0.0.1:0`, state and trees under `data_dir`,
    /// no seeds. Fields are public; adjust the rest with struct update syntax.
    pub fn defaults_for_test(name: &str, data_dir: &Path) -> Config {
        let loopback_any_port = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
        let mut config = Config::builtin(NodeName::new(name));
        config.node.data_dir = data_dir.to_path_buf();
        config.gossip.listen = loopback_any_port;
        config.api.listen = loopback_any_port;
        config.supervision.trees = data_dir.join(DEFAULT_TREES);
        config.metrics.probes = data_dir.join(DEFAULT_PROBES);
        // Plaintext on purpose: the nodes of a test share no key file. The sealed default
        // (a key each node makes for itself) has tests of its own.
        config.gossip.insecure = true;
        config
    }
}

impl Config {
    /// What this config would expose to the network ([`exposure::exposure`]): the config's
    /// validation and the node's start both refuse on it.
    pub fn exposure(&self) -> Vec<exposure::Exposure> {
        exposure::exposure(&self.api)
    }
}

impl Default for GossipConfig {
    fn default() -> Self {
        GossipConfig {
            listen: DEFAULT_PLAINTEXT_GOSSIP_LISTEN,
            advertise: None,
            seeds: Vec::new(),
            profile: Profile::Default,
            interval: Profile::Default.interval(),
            key_file: None,
            insecure: false,
            cluster: crate::secure::DEFAULT_CLUSTER.to_string(),
            discover: None,
        }
    }
}

/// The name of the cluster key a node makes in its data dir when no `gossip.key_file` is set.
pub const GENERATED_KEY_FILE: &str = "cluster.key";

/// Where a node's cluster key comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GossipKey {
    /// `gossip.key_file`, made by the operator.
    File(PathBuf),
    /// No `gossip.key_file` and not `insecure`: the key the node made at its first start in
    /// `<data_dir>/cluster.key` (made now if there is none). A stranger, even a local user
    /// on loopback, cannot join without it.
    Generated(PathBuf),
    /// `gossip.insecure = true` and no key file: plaintext, on purpose.
    Plaintext,
}

impl Config {
    /// Where this node's cluster key is: gossip is sealed unless plaintext was asked for.
    pub fn gossip_key(&self) -> GossipKey {
        match (&self.gossip.key_file, self.gossip.insecure) {
            (Some(file), _) => GossipKey::File(file.clone()),
            (None, true) => GossipKey::Plaintext,
            (None, false) => GossipKey::Generated(self.node.data_dir.join(GENERATED_KEY_FILE)),
        }
    }
}

impl GossipConfig {
    /// The address other nodes should use to reach this one, given the address the gossip
    /// socket is actually bound to (so `listen` port 0 works). An explicit `advertise` wins
    /// (its port 0 also means "the bound port"). Otherwise the bound address, except that an
    /// unspecified IP (`0.0.0.0`, `::`) becomes the host's first non-loopback IPv4 (the source
    /// address of its default route), else `127.0.0.1`.
    pub fn advertise_addr(&self, bound: SocketAddr) -> SocketAddr {
        match self.advertise {
            Some(addr) if addr.port() == 0 => SocketAddr::new(addr.ip(), bound.port()),
            Some(addr) => addr,
            None if bound.ip().is_unspecified() => {
                let ip = first_non_loopback_ipv4().unwrap_or(Ipv4Addr::LOCALHOST);
                SocketAddr::new(IpAddr::V4(ip), bound.port())
            }
            None => bound,
        }
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            interval: Duration::from_secs(5),
            probes: PathBuf::from(DEFAULT_PROBES),
            listen: None,
        }
    }
}

impl MetricsConfig {
    /// False when `metrics.interval` is zero: this host announces no metrics.
    pub fn announces(&self) -> bool {
        !self.interval.is_zero()
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: DEFAULT_API_LISTEN,
            insecure: false,
            tls: None,
            allowed_hosts: Vec::new(),
        }
    }
}

impl Default for SupervisionConfig {
    fn default() -> Self {
        SupervisionConfig {
            trees: PathBuf::from(DEFAULT_TREES),
            log_max_bytes: 10 * 1024 * 1024,
            log_keep: 3,
        }
    }
}

const DAY: Duration = Duration::from_secs(24 * 3600);

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            raw_retention: DAY * 7,
            rollup_retention: DAY * 365,
            backfill: DAY,
            remote_write: None,
        }
    }
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            flap_threshold: 4,
            flap_window: Duration::from_secs(600),
            repeat: Duration::ZERO,
            sinks: Vec::new(),
            commands: BTreeMap::new(),
            actions: Vec::new(),
            probe_warning: false,
        }
    }
}

/// What kind of mistake a [`Problem`] is, for callers and tests that match on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    /// The file cannot be read or is not UTF-8.
    Unreadable,
    /// The file is not valid TOML.
    Syntax,
    UnknownSection,
    UnknownKey,
    WrongType,
    BadDuration,
    BadAddress,
    MissingName,
    /// A required key of a sink is absent.
    MissingKey,
    UnknownSinkType,
    EmptyCommand,
    /// A value of the right type that is still not allowed (empty, out of range, ...).
    BadValue,
}

/// One thing wrong with the config, located by file and dotted key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The config path, [`ENVIRONMENT`] for `NBWATCH_` variables or [`DEFAULTS`].
    pub file: String,
    /// Dotted, e.g. `gossip.interval` or `alerts.sinks[0].command`; empty for the whole file.
    pub key: String,
    pub kind: ProblemKind,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: {}: {}", self.file, self.key, self.message)
        }
    }
}

/// Every problem found in one load, never empty; displayed one per line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<Problem>);

impl ConfigErrors {
    pub fn problems(&self) -> &[Problem] {
        &self.0
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

/// Loads `path` (if given) with the process environment's `NBWATCH_<SECTION>__<KEY>` overrides.
pub fn load(path: Option<&Path>) -> Result<Config, ConfigErrors> {
    // Lossy: a non-UTF-8 value then fails validation with a readable message instead of being
    // skipped silently.
    let env: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.to_string_lossy().into_owned())))
        .collect();
    load_with_env(path, &env)
}

/// [`load`] with an explicit environment, so tests need not mutate the process's. `env` may
/// hold unrelated variables; only `NBWATCH_<SECTION>__<KEY>` ones are read.
pub fn load_with_env(
    path: Option<&Path>,
    env: &[(String, String)],
) -> Result<Config, ConfigErrors> {
    load_inner(path, env, host::host_name())
}

/// Parses the bytes of a config file as if read from `path` (only to name it in problems and
/// to resolve relative paths), with `env` as the environment: the fuzz target's way in.
pub fn parse_bytes(
    path: &Path,
    bytes: &[u8],
    env: &[(String, String)],
) -> Result<Config, ConfigErrors> {
    let text = sections::decode_text(path, bytes)?;
    let merged = sections::merge(Some(path), Some(&text), env)?;
    sections::build(&merged, Some(path), Some("fuzz".into()))
}

/// [`load_with_env`] with the host name injected (`None`: it cannot be determined).
fn load_inner(
    path: Option<&Path>,
    env: &[(String, String)],
    host_name: Option<String>,
) -> Result<Config, ConfigErrors> {
    let text = match path {
        Some(path) => Some(sections::read_file(path)?),
        None => None,
    };
    let merged = sections::merge(path, text.as_deref(), env)?;
    sections::build(&merged, path, host_name)
}
