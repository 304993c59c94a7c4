//! `[[alerts.sinks]]`: a tagged union by `type`, read by hand so that a bad sink reports every
//! mistake in it and the other sinks are still checked.
//!
//! The same sinks are read from a node's own config and from the cluster settings document
//! ([`super::cluster`]), which differ in where a sink's files are: a node's own files are read
//! now, relative to its config's folder; a cluster document's files are read on whichever
//! host sends, so they must be absolute and are not looked for on the host that checks.

use super::sections::beside_file;
use super::walk::{Table, Walker};
use super::{
    ProblemKind, SinkSpec, SmtpAuth, SmtpTls, WebhookFormat, WebhookUrl, read_secret, schema,
};
use config::Value;
use std::path::{Path, PathBuf};

/// Where the sinks being read are declared.
#[derive(Clone, Copy, Debug)]
pub(super) enum Origin<'a> {
    /// A node's own config, in the folder given (if any): its files are read now.
    Local(Option<&'a Path>),
    /// The cluster settings document: its files are read by the host that sends.
    Cluster,
}

pub(super) fn sinks(
    w: &mut Walker,
    v: &Value,
    key: &str,
    origin: Origin<'_>,
) -> Option<Vec<SinkSpec>> {
    w.array_of(
        v,
        key,
        "an array of tables ([[alerts.sinks]])",
        |w, item, k| sink(w, item, k, origin),
    )
}

/// A secret file's path at `key`: from a node's own config beside it and readable now, from
/// the cluster document absolute (it is read on the host that sends).
fn secret_file(
    w: &mut Walker,
    v: &Value,
    key: &str,
    origin: Origin<'_>,
    what: &'static str,
) -> Option<PathBuf> {
    let name = w.non_empty(v, key)?;
    match origin {
        Origin::Local(base) => {
            let file = beside_file(name.into(), v, base);
            match read_secret(&file, what) {
                Ok(_) => Some(file),
                Err(why) => {
                    w.problem(v, key, ProblemKind::BadValue, why.to_string());
                    None
                }
            }
        }
        Origin::Cluster => {
            let file = PathBuf::from(name);
            if file.is_relative() {
                let message = format!(
                    "\"{}\" is relative: a file named in the cluster settings is read on the \
                     host that sends, so give its absolute path",
                    file.display()
                );
                w.problem(v, key, ProblemKind::BadValue, message);
                return None;
            }
            Some(file)
        }
    }
}

fn sink(w: &mut Walker, v: &Value, key: &str, origin: Origin<'_>) -> Option<SinkSpec> {
    let table = w.table(v, key, "a table")?;
    let types: Vec<&str> = schema::SINKS.iter().map(|(t, _)| *t).collect();
    let Some(type_value) = table.get("type") else {
        let message = format!("missing key \"type\" ({})", types.join(", "));
        w.problem(v, &format!("{key}.type"), ProblemKind::MissingKey, message);
        return None;
    };
    let type_key = format!("{key}.type");
    let kind = w.string(type_value, &type_key)?;
    let Some((_, known)) = schema::SINKS.iter().find(|(t, _)| *t == kind) else {
        let hint = schema::hint(&kind, &types, false);
        let message = format!("unknown sink type \"{kind}\"{hint}");
        w.problem(type_value, &type_key, ProblemKind::UnknownSinkType, message);
        return None;
    };
    w.unknown_keys(table, key, known, &format!("for a {kind} sink"));

    let mut field = |name: &str| {
        let found = table.get(name);
        if found.is_none() {
            let message = format!("missing key \"{name}\" for a {kind} sink");
            w.problem(
                v,
                &format!("{key}.{name}"),
                ProblemKind::MissingKey,
                message,
            );
        }
        found
    };
    match kind.as_str() {
        "exec" => {
            let command_key = format!("{key}.command");
            let command = match (table.get("command"), table.get("command_name")) {
                (Some(_), Some(n)) => {
                    let message = "give \"command\" or \"command_name\", not both".to_string();
                    w.problem(
                        n,
                        &format!("{key}.command_name"),
                        ProblemKind::BadValue,
                        message,
                    );
                    return None;
                }
                (None, Some(n)) => {
                    let name = w.non_empty(n, &format!("{key}.command_name"))?;
                    return Some(SinkSpec::Named { name });
                }
                (Some(c), None) => c,
                (None, None) => {
                    let message = "missing key \"command\" (or \"command_name\", a command \
                                   declared in [alerts.commands]) for an exec sink"
                        .to_string();
                    w.problem(v, &command_key, ProblemKind::MissingKey, message);
                    return None;
                }
            };
            let command = w.strings(command, &command_key)?;
            if command
                .first()
                .is_none_or(|program| program.trim().is_empty())
            {
                let message = "empty command: give the program and its arguments".to_string();
                w.problem(v, &command_key, ProblemKind::EmptyCommand, message);
                return None;
            }
            Some(SinkSpec::Exec { command })
        }
        "webhook" => {
            // Every mistake is reported, then the sink is refused if there was one.
            let format = match table.get("format") {
                Some(f) => webhook_format(w, f, &format!("{key}.format")),
                None => Some(WebhookFormat::default()),
            };
            let no_url = table.get("url").is_none() && table.get("url_file").is_none();
            let url = match format.and_then(WebhookFormat::default_url) {
                Some(public) if no_url => Some(WebhookUrl::Given(public.to_string())),
                _ => webhook_url(w, v, table, key, origin),
            };
            let token_key = format!("{key}.token_file");
            let token_file = match table.get("token_file") {
                None => {
                    if let Some(f) = format.filter(|f| f.needs_token()) {
                        let message = format!(
                            "missing key \"token_file\" for a {} webhook (a file whose first \
                             line is its token)",
                            format_name(f)
                        );
                        w.problem(v, &token_key, ProblemKind::MissingKey, message);
                        None
                    } else {
                        Some(None)
                    }
                }
                Some(t) => secret_file(w, t, &token_key, origin, "webhook token").map(Some),
            };
            let recipient = format.and_then(|f| recipient(w, v, table, key, f));
            let ca_file = match table.get("ca_file") {
                None => Some(None),
                Some(c) => ca_file(w, c, &format!("{key}.ca_file"), origin).map(Some),
            };
            Some(SinkSpec::Webhook {
                url: url?,
                format: format?,
                token_file: token_file?,
                recipient: recipient?,
                ca_file: ca_file?,
            })
        }
        "alertmanager" => {
            let urls_key = format!("{key}.urls");
            let given = field("urls")?;
            let urls = w.strings(given, &urls_key)?;
            if urls.is_empty() {
                let message = "no Alertmanager: give at least one base URL, such as \
                               \"http://127.0.0.1:9093\""
                    .to_string();
                w.problem(given, &urls_key, ProblemKind::BadValue, message);
                return None;
            }
            let mut good = true;
            for (i, url) in urls.iter().enumerate() {
                if !url.starts_with("http://") || url.len() <= "http://".len() {
                    let message = format!(
                        "bad Alertmanager URL \"{url}\"; expected its base URL, \
                         http://host[:port][/prefix] (nbwatch posts to <url>/api/v2/alerts)"
                    );
                    w.problem(
                        given,
                        &format!("{urls_key}[{i}]"),
                        ProblemKind::BadValue,
                        message,
                    );
                    good = false;
                }
            }
            good.then_some(SinkSpec::Alertmanager { urls })
        }
        _ => {
            let (smtp, from, to) = (field("smtp"), field("from"), field("to"));
            let smtp_key = format!("{key}.smtp");
            let server = smtp.and_then(|s| {
                let text = w.non_empty(s, &smtp_key)?;
                let parsed = host_port(&text);
                if parsed.is_none() {
                    let message = format!("bad SMTP server \"{text}\"; expected \"host:port\"");
                    w.problem(s, &smtp_key, ProblemKind::BadAddress, message);
                }
                parsed
            });
            let tls = match (table.get("tls"), &server) {
                (Some(t), _) => smtp_tls(w, t, &format!("{key}.tls")),
                (None, Some((_, port))) => Some(SmtpTls::for_port(*port)),
                (None, None) => None,
            };
            let from_key = format!("{key}.from");
            let from = from
                .and_then(|f| Some((f, w.non_empty(f, &from_key)?)))
                .and_then(|(f, text)| mailbox(w, f, &from_key, text));
            let to_key = format!("{key}.to");
            let to = to.and_then(|t| w.strings(t, &to_key));
            let to_value = table.get("to");
            if let (Some(to), Some(to_value)) = (&to, to_value) {
                if to.is_empty() {
                    let message = "no recipients".to_string();
                    w.problem(to_value, &to_key, ProblemKind::BadValue, message);
                    return None;
                }
                let checked: Vec<Option<String>> = to
                    .iter()
                    .enumerate()
                    .map(|(i, t)| mailbox(w, to_value, &format!("{to_key}[{i}]"), t.clone()))
                    .collect();
                if checked.iter().any(Option::is_none) {
                    return None;
                }
            }
            let auth = smtp_auth(w, v, table, key, (server.as_ref(), tls), origin);
            let (host, port) = server?;
            Some(SinkSpec::Email {
                host,
                port,
                tls: tls?,
                from: from?,
                to: to?,
                auth: auth?,
            })
        }
    }
}

/// A webhook's `url`, or its `url_file` (a URL that is itself a secret): exactly one; either
/// way an http:// URL (the one in the file is checked now and at each delivery).
fn webhook_url(
    w: &mut Walker,
    v: &Value,
    table: &Table,
    key: &str,
    origin: Origin<'_>,
) -> Option<WebhookUrl> {
    let (url_key, file_key) = (format!("{key}.url"), format!("{key}.url_file"));
    let (given, value) = match (table.get("url"), table.get("url_file")) {
        (Some(_), Some(f)) => {
            let message = "give \"url\" or \"url_file\", not both".to_string();
            w.problem(f, &file_key, ProblemKind::BadValue, message);
            return None;
        }
        (None, None) => {
            let message =
                "missing key \"url\" (or \"url_file\", a file holding it) for a webhook sink"
                    .to_string();
            w.problem(v, &url_key, ProblemKind::MissingKey, message);
            return None;
        }
        (Some(u), None) => {
            let url = w.non_empty(u, &url_key)?;
            (WebhookUrl::Given(url), u)
        }
        (None, Some(f)) => {
            let file = match origin {
                Origin::Local(base) => beside_file(w.non_empty(f, &file_key)?.into(), f, base),
                // Read where it is sent from: only its place can be checked here.
                Origin::Cluster => {
                    return secret_file(w, f, &file_key, origin, "webhook URL")
                        .map(WebhookUrl::File);
                }
            };
            (WebhookUrl::File(file), f)
        }
    };
    let where_key = match given {
        WebhookUrl::Given(_) => &url_key,
        WebhookUrl::File(_) => &file_key,
    };
    let url = match given.read() {
        Ok(url) => url,
        Err(why) => {
            w.problem(value, where_key, ProblemKind::BadValue, why.to_string());
            return None;
        }
    };
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        let shown = match &given {
            WebhookUrl::Given(u) => format!("\"{u}\""),
            WebhookUrl::File(_) => given.label(),
        };
        let message = format!("bad url {shown}; expected http(s)://host[:port]/path");
        w.problem(value, where_key, ProblemKind::BadValue, message);
        return None;
    }
    Some(given)
}

fn format_name(format: WebhookFormat) -> &'static str {
    (WebhookFormat::ALL.iter())
        .find(|(_, f)| *f == format)
        .map_or("json", |(name, _)| name)
}

/// The recipient key of `format` (`chat_id` for Telegram, `user` for Pushover): required
/// there, refused elsewhere. `Some(None)`: the format has none.
fn recipient(
    w: &mut Walker,
    v: &Value,
    table: &Table,
    key: &str,
    format: WebhookFormat,
) -> Option<Option<String>> {
    let wanted = format.recipient_key();
    let mut good = true;
    for other in ["chat_id", "user"] {
        if Some(other) != wanted
            && let Some(given) = table.get(other)
        {
            let message = format!(
                "\"{other}\" is not used by a {} webhook",
                format_name(format)
            );
            w.problem(
                given,
                &format!("{key}.{other}"),
                ProblemKind::BadValue,
                message,
            );
            good = false;
        }
    }
    let Some(name) = wanted else {
        return good.then_some(None);
    };
    let full = format!("{key}.{name}");
    let Some(given) = table.get(name) else {
        let message = format!(
            "missing key \"{name}\" for a {} webhook (who gets the messages)",
            format_name(format)
        );
        w.problem(v, &full, ProblemKind::MissingKey, message);
        return None;
    };
    // A Telegram chat id is a number (negative for groups); written either way.
    let text = match &given.kind {
        config::ValueKind::I64(n) => Some(n.to_string()),
        config::ValueKind::U64(n) => Some(n.to_string()),
        _ => w.non_empty(given, &full),
    }?;
    good.then_some(Some(text))
}

/// A `ca_file`: PEM with at least one certificate; from a node's own config beside it and
/// read now, from the cluster document absolute (read on the host that sends).
fn ca_file(w: &mut Walker, v: &Value, key: &str, origin: Origin<'_>) -> Option<PathBuf> {
    let name = w.non_empty(v, key)?;
    let file = match origin {
        Origin::Local(base) => beside_file(name.into(), v, base),
        Origin::Cluster => {
            let file = PathBuf::from(name);
            if file.is_relative() {
                let message = format!(
                    "\"{}\" is relative: a file named in the cluster settings is read on the \
                     host that sends, so give its absolute path",
                    file.display()
                );
                w.problem(v, key, ProblemKind::BadValue, message);
                return None;
            }
            return Some(file);
        }
    };
    match super::pem::certificates(&file) {
        Ok(_) => Some(file),
        Err(why) => {
            w.problem(v, key, ProblemKind::BadValue, why);
            None
        }
    }
}

/// `username` and `password_file` of an email sink: both or neither; the file readable and
/// not empty; never sent in clear text except to a relay on this host. `Some(None)`: no login.
fn smtp_auth(
    w: &mut Walker,
    v: &Value,
    table: &Table,
    key: &str,
    (server, tls): (Option<&(String, u16)>, Option<SmtpTls>),
    origin: Origin<'_>,
) -> Option<Option<SmtpAuth>> {
    let (user_key, file_key) = (format!("{key}.username"), format!("{key}.password_file"));
    let username = match table.get("username") {
        Some(u) => Some(w.non_empty(u, &user_key)?),
        None => None,
    };
    let password_file = match table.get("password_file") {
        Some(f) => Some((f, w.non_empty(f, &file_key)?)),
        None => None,
    };
    let (username, (file_value, file)) = match (username, password_file) {
        (None, None) => return Some(None),
        (Some(u), Some(f)) => (u, f),
        (Some(_), None) => {
            let message = "\"username\" needs \"password_file\" (a file whose first line is the \
                           password)"
                .to_string();
            w.problem(v, &file_key, ProblemKind::MissingKey, message);
            return None;
        }
        (None, Some((f, _))) => {
            let message = "\"password_file\" needs \"username\"".to_string();
            w.problem(f, &user_key, ProblemKind::MissingKey, message);
            return None;
        }
    };
    let password_file = match origin {
        Origin::Local(base) => {
            let auth = SmtpAuth {
                username: username.clone(),
                password_file: beside_file(file.into(), file_value, base),
            };
            if let Err(why) = auth.password() {
                let message = why.to_string();
                w.problem(file_value, &file_key, ProblemKind::BadValue, message);
                return None;
            }
            auth.password_file
        }
        Origin::Cluster => secret_file(w, file_value, &file_key, origin, "SMTP password")?,
    };
    let auth = SmtpAuth {
        username,
        password_file,
    };
    if let (Some(SmtpTls::Plain), Some((host, _))) = (tls, server)
        && !is_loopback(host)
    {
        let message = format!(
            "a login is never sent in clear text: with tls = \"none\" the SMTP server must be \
             on this host (127.0.0.1, ::1 or localhost), not \"{host}\"; use tls = \"starttls\" \
             or \"tls\""
        );
        w.problem(v, &format!("{key}.tls"), ProblemKind::BadValue, message);
        return None;
    }
    Some(Some(auth))
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `host:port` or `[v6]:port`, the port not zero.
fn host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = s.trim().rsplit_once(':')?;
    let host = match host.strip_prefix('[') {
        Some(inner) => inner.strip_suffix(']')?,
        None if host.contains(':') => return None,
        None => host,
    };
    let port: u16 = port.parse().ok()?;
    (!host.is_empty() && port != 0).then(|| (host.to_string(), port))
}

fn smtp_tls(w: &mut Walker, v: &Value, key: &str) -> Option<SmtpTls> {
    let options = [
        ("starttls", SmtpTls::StartTls),
        ("tls", SmtpTls::Implicit),
        ("none", SmtpTls::Plain),
    ];
    w.choice(v, key, &options, |other, choices| {
        let hint = schema::hint(other, choices, false);
        format!(
            "unknown SMTP security \"{other}\"{hint} (starttls, tls or none; by default \
             starttls for port 587, tls for 465, none otherwise)"
        )
    })
}

/// An address the mailer will accept, `a@b` or `Name <a@b>`, as written.
fn mailbox(w: &mut Walker, v: &Value, key: &str, text: String) -> Option<String> {
    match text.parse::<lettre::message::Mailbox>() {
        Ok(_) => Some(text),
        Err(e) => {
            let message = format!("bad email address \"{text}\": {e}");
            w.problem(v, key, ProblemKind::BadValue, message);
            None
        }
    }
}

fn webhook_format(w: &mut Walker, v: &Value, key: &str) -> Option<WebhookFormat> {
    w.choice(v, key, &WebhookFormat::ALL, |other, choices| {
        let hint = schema::hint(other, choices, false);
        format!("unknown webhook format \"{other}\"{hint}")
    })
}
