//! Where an alert goes: `exec` (the alert JSON and a newline on stdin, and
//! `NBWATCH_ALERT_ID`, `_KIND`, `_NODE`, `_SUMMARY` in the environment), `webhook` (a POST
//! of the alert JSON, or of Alertmanager's webhook v4 shape with `format = "alertmanager"`) and
//! `email` (through an SMTP server with STARTTLS, TLS or, to a local relay, neither).
//! Each delivery is retried with backoff, each attempt bounded by a timeout, and every sink runs
//! on its own, so a failing or slow sink never holds up the others. A permanent refusal (an
//! SMTP 5xx answer, such as a wrong login or an unknown recipient; a webhook's 4xx other than
//! 408 and 429) is not retried: the same request would be refused again.

use crate::config::{SinkSpec, SmtpAuth, SmtpTls, WebhookFormat};
use crate::events::SinkResult;
use crate::supervision::reaper;
use serde_json::{Value, json};
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
        SinkSpec::Exec { .. } => "exec",
        SinkSpec::Webhook { .. } => "webhook",
        SinkSpec::Email { .. } => "email",
    };
    format!("{kind}#{}", index + 1)
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
                    result: result.map_or_else(|e| e, |()| "ok".to_string()),
                },
            ));
        }
    }
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

/// Why one attempt failed.
#[derive(Debug)]
enum Failed {
    /// Worth another attempt (a timeout, a refused connection, a 5xx web answer, ...).
    Retry(String),
    /// Refused for good: another attempt would be refused the same way.
    Permanent(String),
}

impl From<String> for Failed {
    fn from(why: String) -> Failed {
        Failed::Retry(why)
    }
}

/// One sink, with retries.
pub async fn deliver(spec: &SinkSpec, alert: &Value, how: &Delivery) -> Result<(), String> {
    let mut last = String::new();
    for attempt in 0..=how.waits.len() {
        let result = tokio::time::timeout(how.timeout, attempt_once(spec, alert, how.timeout))
            .await
            .unwrap_or_else(|_| {
                Err(Failed::Retry(format!(
                    "timed out after {}",
                    humantime::format_duration(how.timeout)
                )))
            });
        match result {
            Ok(()) => return Ok(()),
            Err(Failed::Permanent(e)) => {
                let e = format!("{e} (refused for good: not retried)");
                tracing::warn!(sink = ?spec, attempt = attempt + 1, error = %e, "alert delivery failed");
                return Err(e);
            }
            Err(Failed::Retry(e)) => {
                tracing::warn!(sink = ?spec, attempt = attempt + 1, error = %e, "alert delivery failed");
                last = e;
            }
        }
        if let Some(wait) = how.waits.get(attempt) {
            tokio::time::sleep(*wait).await;
        }
    }
    Err(last)
}

async fn attempt_once(spec: &SinkSpec, alert: &Value, timeout: Duration) -> Result<(), Failed> {
    match spec {
        SinkSpec::Exec { command } => Ok(exec(command, alert).await?),
        SinkSpec::Webhook { url, format } => {
            let body = match format {
                WebhookFormat::Alertmanager => alertmanager(alert),
                _ => alert.clone(),
            };
            post(url, &body).await
        }
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

async fn exec(command: &[String], alert: &Value) -> Result<(), String> {
    let text = |k: &str| {
        alert
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
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
    let mut tracked =
        reaper::spawn(&mut cmd).map_err(|e| format!("cannot run {}: {e}", command[0]))?;
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
        .map_err(|e| format!("cannot wait for {}: {e}", command[0]))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} {}{}",
            command[0],
            crate::supervision::process::describe_exit(status),
            if stderr.is_empty() {
                String::new()
            } else {
                format!(": {stderr}")
            }
        ))
    }
}

/// Alertmanager's webhook payload (version 4) for one alert.
pub fn alertmanager(alert: &Value) -> Value {
    let text = |k: &str| {
        alert
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let mut labels = json!({
        "alertname": text("kind"),
        "node": text("node"),
        "incident": text("id"),
        "severity": if text("kind") == "test" { "info" } else { "critical" },
    });
    if let Some(service) = alert.get("service").and_then(Value::as_str) {
        labels["service"] = Value::from(service);
    }
    let status = text("status");
    let ends_at = if status == "resolved" {
        text("at")
    } else {
        "0001-01-01T00:00:00Z".to_string()
    };
    let annotations = json!({ "summary": text("summary"), "sent_by": text("sent_by") });
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{incident=\"{}\"}}", text("id")),
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "nbwatch",
        "groupLabels": { "incident": text("id") },
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": "",
        "alerts": [{
            "status": status,
            "labels": labels,
            "annotations": annotations,
            "startsAt": text("since"),
            "endsAt": ends_at,
            "generatorURL": "",
            "fingerprint": fingerprint(&text("id")),
        }],
    })
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
    async fn send(&self, from: &str, to: &[String], alert: &Value) -> Result<(), Failed> {
        use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
        type Transport = AsyncSmtpTransport<Tokio1Executor>;

        let server = format!("smtp {}:{}", self.host, self.port);
        let fail = |e: &dyn std::fmt::Display| format!("{server}: {e}");
        let message = email(from, to, alert).map_err(Failed::Permanent)?;
        let builder = match self.tls {
            SmtpTls::StartTls => Transport::starttls_relay(self.host).map_err(|e| fail(&e))?,
            SmtpTls::Implicit => Transport::relay(self.host).map_err(|e| fail(&e))?,
            SmtpTls::Plain => Transport::builder_dangerous(self.host),
        };
        let mut builder = builder.port(self.port).timeout(Some(self.timeout));
        if let Some(auth) = self.auth {
            let password = auth.password().map_err(|e| fail(&e))?;
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
        builder.build().send(message).await.map(drop).map_err(|e| {
            if e.is_permanent() {
                Failed::Permanent(fail(&e))
            } else {
                Failed::Retry(fail(&e))
            }
        })
    }
}

/// The mail for `alert`: subject `[nbwatch] <summary>`; the body is the summary, the alert's
/// fields one per line, and the alert JSON.
fn email(from: &str, to: &[String], alert: &Value) -> Result<lettre::Message, String> {
    use lettre::message::{Mailbox, header::ContentType};
    let mailbox = |s: &str| {
        s.parse::<Mailbox>()
            .map_err(|e| format!("bad email address \"{s}\": {e}"))
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
    builder
        .body(email_body(alert))
        .map_err(|e| format!("cannot build the mail: {e}"))
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

/// `http://host[:port]/path` → (host, port, path).
fn split_url(url: &str) -> Result<(String, u16, String), String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        format!("{url}: only http:// webhooks are supported (use a local relay for https)")
    })?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
            h.trim_start_matches('[').trim_end_matches(']').to_string(),
            p.parse().map_err(|_| format!("{url}: bad port {p:?}"))?,
        ),
        _ => (authority.to_string(), 80),
    };
    if host.is_empty() {
        return Err(format!("{url}: no host"));
    }
    Ok((host, port, path))
}

/// POSTs `body` as JSON; a 2xx answer is success, a 4xx other than 408 and 429 is permanent.
async fn post(url: &str, body: &Value) -> Result<(), Failed> {
    let (host, port, path) = split_url(url)?;
    let mut stream = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let body = body.to_string();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\nUser-Agent: nbwatch\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 8192 {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let status_line = line.lines().next().unwrap_or("").to_string();
    let code: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("{url}: not an HTTP answer: {status_line:?}"))?;
    match code {
        200..300 => Ok(()),
        400..500 if code != 408 && code != 429 => {
            Err(Failed::Permanent(format!("{url}: {status_line}")))
        }
        _ => Err(Failed::Retry(format!("{url}: {status_line}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_host_port_and_path() {
        assert_eq!(
            split_url("http://127.0.0.1:9093/api/hook").expect("ok"),
            ("127.0.0.1".into(), 9093, "/api/hook".into())
        );
        assert_eq!(
            split_url("http://example.org").expect("ok"),
            ("example.org".into(), 80, "/".into())
        );
        assert!(split_url("https://x/").is_err());
        assert!(split_url("http://:80/").is_err());
    }

    #[test]
    fn the_alertmanager_shape_carries_labels_and_times() {
        let alert = json!({"id": "node_down:a:3", "kind": "node_down", "status": "firing",
            "node": "a", "service": null, "sent_by": "b", "at": "2026-11-22T15:30:09.120Z",
            "since": "2026-11-22T15:30:02.004Z", "observers": ["b"], "summary": "a stopped"});
        let am = alertmanager(&alert);
        assert_eq!(am["version"], "4");
        assert_eq!(am["status"], "firing");
        let a = &am["alerts"][0];
        assert_eq!(a["labels"]["alertname"], "node_down");
        assert_eq!(a["labels"]["node"], "a");
        assert_eq!(a["startsAt"], "2026-11-22T15:30:02.004Z");
        assert_eq!(a["endsAt"], "0001-01-01T00:00:00Z");
        assert_eq!(a["annotations"]["summary"], "a stopped");
        assert_eq!(a["fingerprint"].as_str().map(str::len), Some(16));
    }
}
