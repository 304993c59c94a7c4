//! Where an alert goes: `exec` (the alert JSON and a newline on stdin, and
//! `NBWATCH_ALERT_ID`, `_KIND`, `_NODE`, `_SUMMARY` in the environment), `webhook` (a POST
//! of the alert JSON, or of Alertmanager's webhook v4 shape with `format = "alertmanager"`) and
//! `email` (through an SMTP server with STARTTLS, TLS or, to a local relay, neither).
//! Each delivery is retried with backoff, each attempt bounded by a timeout, and every sink runs
//! on its own, so a failing or slow sink never holds up the others. A permanent refusal (an
//! SMTP 5xx answer, such as a wrong login or an unknown recipient; a webhook's 4xx other than
//! 408 and 429) is not retried: the same request would be refused again.

pub mod actions;
pub mod alertmanager;
pub mod formats;

use crate::config::{PasswordError, SinkSpec, SmtpAuth, SmtpTls, read_secret};
use crate::events::SinkResult;
use crate::supervision::process::describe_exit;
use crate::supervision::reaper;
use serde_json::Value;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One attempt may take this long.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts per sink, with these waits between them.
pub const RETRY_WAITS: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(3)];

/// How hard a delivery tries: each attempt bounded by `timeout`, and one more attempt after
/// each of `waits`. The daemon uses the default; tests shorten it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub timeout: Duration,
    pub waits: Vec<Duration>,
}

impl Default for Delivery {
    fn default() -> Delivery {
        Delivery {
            timeout: ATTEMPT_TIMEOUT,
            waits: RETRY_WAITS.to_vec(),
        }
    }
}

/// The name of a sink in results: `exec`, `webhook`, `email`, with its index when there are
/// several of a kind (`exec#2`).
fn label(spec: &SinkSpec, index: usize) -> String {
    let kind = match spec {
        SinkSpec::Exec { .. } | SinkSpec::Named { .. } => "exec",
        SinkSpec::Webhook { .. } => "webhook",
        SinkSpec::Email { .. } => "email",
        SinkSpec::Alertmanager { .. } => "alertmanager",
    };
    format!("{kind}#{}", index + 1)
}

/// Why `spec` cannot deliver now, if it cannot: its secret file cannot be read, or its
/// program is not there. A node announces how many of its sinks are ready, and only a node
/// with one sends (see `crate::election::sender`).
pub fn unready(spec: &SinkSpec) -> Option<String> {
    match spec {
        SinkSpec::Email {
            auth: Some(auth), ..
        } => auth.password().err().map(|e| e.to_string()),
        SinkSpec::Webhook {
            url, token_file, ..
        } => {
            let token = token_file
                .as_ref()
                .and_then(|f| read_secret(f, "webhook token").err());
            url.read().err().or(token).map(|e| e.to_string())
        }
        SinkSpec::Exec { command } => {
            let program = command.first()?;
            let found = if program.contains('/') {
                std::path::Path::new(program).is_file()
            } else {
                std::env::var_os("PATH").is_some_and(|path| {
                    std::env::split_paths(&path).any(|dir| dir.join(program).is_file())
                })
            };
            (!found).then(|| format!("{program}: no such program"))
        }
        SinkSpec::Named { name } => Some(format!(
            "command \"{name}\" is not declared in this host's [alerts.commands]"
        )),
        _ => None,
    }
}

/// Delivers `alert` to every sink at once; returns each sink's final result, in the order of
/// `sinks`.
pub async fn deliver_all(sinks: &[SinkSpec], alert: &Value, how: &Delivery) -> Vec<SinkResult> {
    let mut tasks = tokio::task::JoinSet::new();
    for (i, spec) in sinks.iter().enumerate() {
        let (spec, alert, how) = (spec.clone(), alert.clone(), how.clone());
        tasks.spawn(async move { (i, label(&spec, i), deliver(&spec, &alert, &how).await) });
    }
    let mut results = Vec::new();
    while let Some(done) = tasks.join_next().await {
        if let Ok((i, sink, result)) = done {
            results.push((
                i,
                SinkResult {
                    sink,
                    result: result.map_or_else(|e| e.to_string(), |()| SinkResult::OK.to_string()),
                },
            ));
        }
    }
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

/// Why a delivery failed; the text goes to the alert log and the daemon's log.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("timed out after {}", humantime::format_duration(*.0))]
    TimedOut(Duration),
    /// A refusal that another attempt would meet again (see [`SinkError::is_permanent`]).
    #[error("{0} (refused for good: not retried)")]
    RefusedForGood(Box<SinkError>),
    #[error("cannot run {program}: {source}")]
    Run {
        program: String,
        source: std::io::Error,
    },
    #[error("cannot wait for {program}: {source}")]
    Wait {
        program: String,
        source: std::io::Error,
    },
    #[error("{program} {}{}", describe_exit(*status), first_line(stderr))]
    Exited {
        program: String,
        status: std::process::ExitStatus,
        /// The first line the command wrote to stderr, if any.
        stderr: String,
    },
    /// An exec sink by a name this host does not declare in `[alerts.commands]`.
    #[error("command \"{0}\" is not declared in this host's [alerts.commands]")]
    Undeclared(String),
    #[error("{url}: not an http:// or https:// URL")]
    NotHttp { url: String },
    #[error("{url}: {source}")]
    Tls {
        url: String,
        source: crate::tls::TlsError,
    },
    #[error("{url}: bad port {port:?}")]
    BadPort { url: String, port: String },
    #[error("{url}: no host")]
    NoHost { url: String },
    #[error("{url}: {source}")]
    Io { url: String, source: std::io::Error },
    #[error("{url}: not an HTTP answer: {line:?}")]
    NotAnAnswer { url: String, line: String },
    /// A webhook's answer other than 2xx.
    #[error("{url}: {line}")]
    Answer {
        url: String,
        code: u16,
        line: String,
    },
    #[error("bad email address \"{address}\": {source}")]
    Address {
        address: String,
        source: lettre::address::AddressError,
    },
    #[error("cannot build the mail: {0}")]
    Mail(lettre::error::Error),
    /// `server` is `smtp host:port`.
    #[error("{server}: {source}")]
    Smtp {
        server: String,
        source: lettre::transport::smtp::Error,
    },
    #[error("{server}: {source}")]
    Password {
        server: String,
        source: PasswordError,
    },
    /// Every Alertmanager of an `alertmanager` sink refused the alert or could not be reached.
    #[error("every Alertmanager failed: {0}")]
    EveryAlertmanager(String),
    /// A webhook's URL or token file cannot be read.
    #[error("{0}")]
    Secret(PasswordError),
}

impl SinkError {
    /// Refused for good: an SMTP 5xx answer (such as a wrong login or an unknown recipient), a
    /// webhook's 4xx other than 408 and 429, or a mail that cannot be written.
    pub fn is_permanent(&self) -> bool {
        match self {
            SinkError::Answer { code, .. } => {
                (400..500).contains(code) && ![408, 429].contains(code)
            }
            SinkError::Address { .. }
            | SinkError::Mail(_)
            | SinkError::RefusedForGood(_)
            | SinkError::Undeclared(_) => true,
            SinkError::Smtp { source, .. } => source.is_permanent(),
            _ => false,
        }
    }
}

/// `": <line>"`, or nothing for no line.
fn first_line(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!(": {stderr}")
    }
}

/// One sink, with retries.
pub async fn deliver(spec: &SinkSpec, alert: &Value, how: &Delivery) -> Result<(), SinkError> {
    let mut attempt = 0;
    loop {
        let result = tokio::time::timeout(how.timeout, attempt_once(spec, alert, how.timeout))
            .await
            .unwrap_or(Err(SinkError::TimedOut(how.timeout)));
        let error = match result {
            Ok(()) => return Ok(()),
            Err(e) if e.is_permanent() => SinkError::RefusedForGood(Box::new(e)),
            Err(e) => e,
        };
        tracing::warn!(sink = ?spec, attempt = attempt + 1, error = %error, "alert delivery failed");
        match how.waits.get(attempt) {
            Some(wait) if !error.is_permanent() => tokio::time::sleep(*wait).await,
            _ => return Err(error),
        }
        attempt += 1;
    }
}

async fn attempt_once(spec: &SinkSpec, alert: &Value, timeout: Duration) -> Result<(), SinkError> {
    match spec {
        SinkSpec::Exec { command } => exec(command, alert).await,
        SinkSpec::Named { name } => Err(SinkError::Undeclared(name.clone())),
        SinkSpec::Webhook {
            url,
            format,
            token_file,
            recipient,
            ca_file,
        } => {
            let token = match token_file {
                Some(file) => Some(read_secret(file, "webhook token").map_err(SinkError::Secret)?),
                None => None,
            };
            let given = url.read().map_err(SinkError::Secret)?;
            let request = formats::request(
                *format,
                &given,
                token.as_deref(),
                recipient.as_deref(),
                alert,
            );
            let shown = formats::shown(*format, &url.label());
            post(&request, &shown, ca_file.as_deref()).await
        }
        SinkSpec::Alertmanager { urls } => post_to_alertmanagers(urls, alert).await,
        SinkSpec::Email {
            host,
            port,
            tls,
            from,
            to,
            auth,
        } => {
            let server = Smtp {
                host,
                port: *port,
                tls: *tls,
                auth: auth.as_ref(),
                timeout,
            };
            server.send(from, to, alert).await
        }
    }
}

/// The string field `k` of an alert (empty when it has none).
fn field(alert: &Value, k: &str) -> String {
    alert
        .get(k)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

async fn exec(command: &[String], alert: &Value) -> Result<(), SinkError> {
    let text = |k: &str| field(alert, k);
    let mut cmd = tokio::process::Command::new(&command[0]);
    cmd.args(&command[1..])
        .env("NBWATCH_ALERT_ID", text("id"))
        .env("NBWATCH_ALERT_KIND", text("kind"))
        .env("NBWATCH_ALERT_NODE", text("node"))
        .env("NBWATCH_ALERT_SUMMARY", text("summary"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let program = || command[0].clone();
    let mut tracked = reaper::spawn(&mut cmd).map_err(|source| SinkError::Run {
        program: program(),
        source,
    })?;
    if let Some(mut stdin) = tracked.child.stdin.take() {
        let mut line = alert.to_string();
        line.push('\n');
        // A sink that does not read its stdin is its own business.
        let _ = stdin.write_all(line.as_bytes()).await;
    }
    let mut stderr = String::new();
    if let Some(mut err) = tracked.child.stderr.take() {
        let mut buf = Vec::new();
        let _ = (&mut err).take(4096).read_to_end(&mut buf).await;
        stderr = String::from_utf8_lossy(&buf)
            .lines()
            .next()
            .unwrap_or("")
            .to_string();
    }
    let status = tracked
        .child
        .wait()
        .await
        .map_err(|source| SinkError::Wait {
            program: program(),
            source,
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(SinkError::Exited {
            program: program(),
            status,
            stderr,
        })
    }
}

/// Posts `alert` to every Alertmanager at once: accepted when one of them accepts it (they
/// share what they receive among themselves when clustered).
pub async fn post_to_alertmanagers(urls: &[String], alert: &Value) -> Result<(), SinkError> {
    let body = alertmanager::postable(alert).to_string().into_bytes();
    let mut tasks = tokio::task::JoinSet::new();
    for url in urls {
        let request = formats::Request {
            url: alertmanager::alerts_url(url),
            content_type: "application/json",
            headers: Vec::new(),
            body: body.clone(),
        };
        let shown = url.clone();
        tasks.spawn(async move { post(&request, &shown, None).await });
    }
    let mut refusals = Vec::new();
    let mut accepted = false;
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(())) => accepted = true,
            Ok(Err(e)) => refusals.push(e),
            Err(e) => refusals.push(SinkError::Io {
                url: "alertmanager".into(),
                source: std::io::Error::other(e.to_string()),
            }),
        }
    }
    match (accepted, refusals.len()) {
        (true, _) => Ok(()),
        (false, 1) => Err(refusals.remove(0)),
        (false, _) => Err(SinkError::EveryAlertmanager(
            refusals
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        )),
    }
}

/// One SMTP server as an email sink sees it.
struct Smtp<'a> {
    host: &'a str,
    port: u16,
    tls: SmtpTls,
    auth: Option<&'a SmtpAuth>,
    timeout: Duration,
}

impl Smtp<'_> {
    /// Sends one message to `to`; a connection per message (alerts are rare).
    async fn send(&self, from: &str, to: &[String], alert: &Value) -> Result<(), SinkError> {
        use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
        type Transport = AsyncSmtpTransport<Tokio1Executor>;

        let server = || format!("smtp {}:{}", self.host, self.port);
        let fail = |source| SinkError::Smtp {
            server: server(),
            source,
        };
        let message = email(from, to, alert)?;
        let builder = match self.tls {
            SmtpTls::StartTls => Transport::starttls_relay(self.host).map_err(fail)?,
            SmtpTls::Implicit => Transport::relay(self.host).map_err(fail)?,
            SmtpTls::Plain => Transport::builder_dangerous(self.host),
        };
        let mut builder = builder.port(self.port).timeout(Some(self.timeout));
        if let Some(auth) = self.auth {
            let password = auth.password().map_err(|source| SinkError::Password {
                server: server(),
                source,
            })?;
            builder =
                builder.credentials(lettre::transport::smtp::authentication::Credentials::new(
                    auth.username.clone(),
                    password,
                ));
        }
        // Greet as the sending node rather than "localhost", which some servers refuse.
        if let Some(me) = alert.get("sent_by").and_then(Value::as_str)
            && !me.is_empty()
        {
            builder = builder.hello_name(lettre::transport::smtp::extension::ClientId::Domain(
                me.to_string(),
            ));
        }
        builder.build().send(message).await.map(drop).map_err(fail)
    }
}

/// The mail for `alert`: subject `[nbwatch] <summary>`; the body is the summary, the alert's
/// fields one per line, and the alert JSON.
fn email(from: &str, to: &[String], alert: &Value) -> Result<lettre::Message, SinkError> {
    use lettre::message::{Mailbox, header::ContentType};
    let mailbox = |s: &str| {
        s.parse::<Mailbox>().map_err(|source| SinkError::Address {
            address: s.to_string(),
            source,
        })
    };
    let summary = alert.get("summary").and_then(Value::as_str).unwrap_or("");
    let from = mailbox(from)?;
    // Unique per attempt, in the sender's domain (lettre's own would say "@localhost").
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let id = alert.get("id").and_then(Value::as_str).unwrap_or("");
    let message_id = format!("<{nanos}.{}@{}>", fingerprint(id), from.email.domain());
    let mut builder = lettre::Message::builder()
        .from(from)
        .subject(format!("[nbwatch] {summary}"))
        .header(ContentType::TEXT_PLAIN)
        .message_id(Some(message_id));
    for t in to {
        builder = builder.to(mailbox(t)?);
    }
    builder.body(email_body(alert)).map_err(SinkError::Mail)
}

/// The contract's fields in the contract's order; any others follow, sorted.
const FIELDS: [&str; 9] = [
    "id",
    "kind",
    "status",
    "node",
    "service",
    "sent_by",
    "at",
    "since",
    "observers",
];

fn email_body(alert: &Value) -> String {
    let summary = alert.get("summary").and_then(Value::as_str).unwrap_or("");
    let mut body = format!("{summary}\n\n");
    let mut keys: Vec<&str> = FIELDS.to_vec();
    if let Some(object) = alert.as_object() {
        let mut others: Vec<&str> = object
            .keys()
            .map(String::as_str)
            .filter(|k| *k != "summary" && !FIELDS.contains(k))
            .collect();
        others.sort_unstable();
        keys.extend(others);
    }
    for key in keys {
        let Some(value) = alert.get(key) else {
            continue;
        };
        let text = match value {
            Value::Null => "-".to_string(),
            Value::String(s) => s.clone(),
            Value::Array(items) => items
                .iter()
                .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string))
                .collect::<Vec<_>>()
                .join(", "),
            other => other.to_string(),
        };
        body.push_str(&format!("{key}: {text}\n"));
    }
    let json = serde_json::to_string_pretty(alert).unwrap_or_else(|_| alert.to_string());
    body.push_str(&format!("\n{json}\n"));
    body
}

/// A stable 16-hex-digit fingerprint of an incident id (FNV-1a).
fn fingerprint(id: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Where a URL points: `http(s)://host[:port]/path`.
#[derive(Debug, PartialEq, Eq)]
struct Place {
    https: bool,
    host: String,
    port: u16,
    path: String,
}

/// The parts of `url`; errors name it as `shown` (a secret URL is never written out).
fn split_url(url: &str, shown: &str) -> Result<Place, SinkError> {
    let owned = || shown.to_string();
    let (https, rest) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
        (Some(rest), _) => (true, rest),
        (None, Some(rest)) => (false, rest),
        (None, None) => return Err(SinkError::NotHttp { url: owned() }),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
            h.trim_start_matches('[').trim_end_matches(']').to_string(),
            p.parse().map_err(|_| SinkError::BadPort {
                url: owned(),
                port: p.to_string(),
            })?,
        ),
        _ => (
            authority
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            if https { 443 } else { 80 },
        ),
    };
    if host.is_empty() {
        return Err(SinkError::NoHost { url: owned() });
    }
    Ok(Place {
        https,
        host,
        port,
        path,
    })
}

/// POSTs `request`, over TLS for an https URL (trusting the system's roots and those of
/// `ca_file`); a 2xx answer is success, a 4xx other than 408 and 429 is permanent. Errors name
/// the URL as `shown`.
pub async fn post(
    request: &formats::Request,
    shown: &str,
    ca_file: Option<&std::path::Path>,
) -> Result<(), SinkError> {
    let url = shown;
    let place = split_url(&request.url, shown)?;
    let io = |source| SinkError::Io {
        url: url.to_string(),
        source,
    };
    // Header values never carry a line break (a token file's, say).
    let clean = |v: &str| v.replace(['\r', '\n'], "");
    let headers: String = (request.headers.iter())
        .map(|(k, v)| format!("{k}: {}\r\n", clean(v)))
        .collect();
    let mut bytes = format!(
        "POST {} HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: {}\r\n{headers}Content-Length: {}\r\n\
         Connection: close\r\nUser-Agent: nbwatch\r\n\r\n",
        place.path,
        place.host,
        place.port,
        request.content_type,
        request.body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(&request.body);
    let tcp = tokio::net::TcpStream::connect((place.host.as_str(), place.port))
        .await
        .map_err(io)?;
    let status_line = if place.https {
        let connector = crate::tls::client(ca_file).map_err(|source| SinkError::Tls {
            url: url.to_string(),
            source,
        })?;
        let name = rustls::pki_types::ServerName::try_from(place.host.clone())
            .map_err(|_| SinkError::NoHost { url: url.into() })?;
        let stream = connector.connect(name, tcp).await.map_err(io)?;
        exchange(stream, &bytes).await.map_err(io)?
    } else {
        exchange(tcp, &bytes).await.map_err(io)?
    };
    let code: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| SinkError::NotAnAnswer {
            url: url.to_string(),
            line: status_line.clone(),
        })?;
    match code {
        200..300 => Ok(()),
        _ => Err(SinkError::Answer {
            url: url.to_string(),
            code,
            line: status_line,
        }),
    }
}

/// Writes `request` and reads the answer's status line.
async fn exchange<S>(mut stream: S, request: &[u8]) -> std::io::Result<String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    stream.write_all(request).await?;
    stream.flush().await?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 8192 {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    Ok(line.lines().next().unwrap_or("").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_scheme_host_port_and_path() {
        let place = |https, host: &str, port, path: &str| Place {
            https,
            host: host.into(),
            port,
            path: path.into(),
        };
        let split = |u| split_url(u, "shown").expect("a good URL");
        assert_eq!(
            split("http://127.0.0.1:9093/api/hook"),
            place(false, "127.0.0.1", 9093, "/api/hook")
        );
        assert_eq!(
            split("http://example.org"),
            place(false, "example.org", 80, "/")
        );
        assert_eq!(
            split("https://ntfy.sh/house"),
            place(true, "ntfy.sh", 443, "/house")
        );
        assert_eq!(
            split("https://[::1]:8443/x"),
            place(true, "::1", 8443, "/x")
        );
        assert!(split_url("ftp://x/", "shown").is_err());
        assert!(split_url("http://:80/", "shown").is_err());
        // A secret URL is named as shown, never itself.
        let e = split_url("https://h:x/secret", "the URL in f").expect_err("bad port");
        assert!(!e.to_string().contains("secret"), "{e}");
    }
}
