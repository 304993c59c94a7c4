//! The sinks against real local servers on port 0: a small HTTP receiver and a small plain SMTP
//! server written here, and sink scripts run by `/bin/sh`. Waits poll a condition with a
//! deadline; the retry waits and attempt timeouts are shortened through [`Delivery`].

mod common;
use common::receiver::{Answer, TestCa, lock, receiver, receiver_tls, shared};
use nbwatch::config::{SinkSpec, SmtpAuth, SmtpTls, WebhookFormat, WebhookUrl};
use nbwatch::sinks::{Delivery, deliver, deliver_all};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// The contract's example alert.
fn alert() -> Value {
    json!({"id": "node_down:mythbox:3", "kind": "node_down", "status": "firing",
        "node": "mythbox", "service": null, "sent_by": "frontroom",
        "at": "2026-11-22T15:30:09.120Z", "since": "2026-11-22T15:30:02.004Z",
        "observers": ["frontroom", "study"],
        "summary": "mythbox stopped talking at 15:30:02 (confirmed by frontroom, study)"})
}

/// Quick retries, so that a test of retries takes milliseconds.
fn quick(timeout_ms: u64, waits_ms: &[u64]) -> Delivery {
    Delivery {
        timeout: Duration::from_millis(timeout_ms),
        waits: waits_ms.iter().map(|&w| Duration::from_millis(w)).collect(),
    }
}

/// Polls `condition` until it holds; panics after 10 s.
async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn webhook(url: &str, format: WebhookFormat) -> SinkSpec {
    SinkSpec::Webhook {
        url: url.into(),
        format,
        token_file: None,
        recipient: None,
        ca_file: None,
    }
}

#[tokio::test]
async fn a_webhook_receives_the_contract_json() {
    let hook = receiver(&[Answer::Status(200)]).await;
    let spec = webhook(&hook.url, WebhookFormat::Json);
    deliver(&spec, &alert(), &quick(5000, &[]))
        .await
        .expect("delivered");
    let requests = lock(&hook.requests);
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].path, "/hook");
    assert_eq!(requests[0].content_type, "application/json");
    assert_eq!(requests[0].body, alert());
}

#[tokio::test]
async fn a_webhook_url_and_token_kept_in_files_are_read_at_each_delivery_and_never_shown() {
    let hook = receiver(&[Answer::Status(200), Answer::Status(503)]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (url_file, token_file) = (dir.path().join("url"), dir.path().join("token"));
    std::fs::write(&url_file, format!("{}\n", hook.url)).expect("write");
    std::fs::write(&token_file, "s3cret\n").expect("write");
    let spec = SinkSpec::Webhook {
        url: WebhookUrl::File(url_file.clone()),
        format: WebhookFormat::Json,
        token_file: Some(token_file.clone()),
        recipient: None,
        ca_file: None,
    };
    assert_eq!(nbwatch::sinks::unready(&spec), None);
    deliver(&spec, &alert(), &quick(5000, &[]))
        .await
        .expect("delivered");
    {
        let requests = lock(&hook.requests);
        assert_eq!(requests[0].authorization.as_deref(), Some("Bearer s3cret"));
        assert_eq!(requests[0].body, alert());
    }
    // A refusal names the file, not the URL.
    let err = deliver(&spec, &alert(), &quick(5000, &[]))
        .await
        .expect_err("503");
    let text = err.to_string();
    assert!(
        text.contains("the URL in") && !text.contains(&hook.url),
        "{text}"
    );
    // A token file gone: the sink cannot deliver, and says which file.
    std::fs::remove_file(&token_file).expect("remove");
    let why = nbwatch::sinks::unready(&spec).expect("unready");
    assert!(why.contains("token"), "{why}");
    let err = deliver(&spec, &alert(), &quick(5000, &[]))
        .await
        .expect_err("no token");
    assert!(
        err.to_string().contains(&token_file.display().to_string()),
        "{err}"
    );
    assert_eq!(hook.count(), 2);
}

#[tokio::test]
async fn an_https_webhook_trusts_its_ca_file_and_refuses_a_certificate_it_cannot_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new(dir.path());
    let hook = receiver_tls(&[Answer::Status(200)], ca.acceptor()).await;
    assert!(hook.url.starts_with("https://127.0.0.1:"), "{}", hook.url);
    let trusting = SinkSpec::Webhook {
        url: hook.url.as_str().into(),
        format: WebhookFormat::Json,
        token_file: None,
        recipient: None,
        ca_file: Some(ca.ca.clone()),
    };
    deliver(&trusting, &alert(), &quick(5000, &[]))
        .await
        .expect("delivered over TLS");
    assert_eq!(lock(&hook.requests)[0].body, alert());
    // The system's roots alone do not know the test CA: refused, nothing sent.
    let err = deliver(
        &webhook(&hook.url, WebhookFormat::Json),
        &alert(),
        &quick(5000, &[]),
    )
    .await
    .expect_err("an unknown issuer");
    assert!(err.to_string().contains("certificate"), "{err}");
    assert_eq!(hook.count(), 1);
}

/// A webhook of `format` to `url` with the token `token` in a file of `dir`, trusting `ca`.
fn phone(
    dir: &std::path::Path,
    format: WebhookFormat,
    url: &str,
    recipient: Option<&str>,
    ca: &TestCa,
) -> SinkSpec {
    let token_file = dir.join("token");
    std::fs::write(&token_file, "t0k3n\n").expect("token");
    SinkSpec::Webhook {
        url: url.into(),
        format,
        token_file: Some(token_file),
        recipient: recipient.map(str::to_string),
        ca_file: Some(ca.ca.clone()),
    }
}

#[tokio::test]
async fn phone_formats_reach_an_https_receiver_in_the_shape_each_service_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new(dir.path());
    let hook = receiver_tls(&[Answer::Status(200)], ca.acceptor()).await;
    let base = hook.url.trim_end_matches("/hook").to_string();
    let how = quick(5000, &[]);
    for (format, url, recipient) in [
        (WebhookFormat::Ntfy, hook.url.clone(), None),
        (WebhookFormat::Gotify, hook.url.clone(), None),
        (WebhookFormat::Slack, hook.url.clone(), None),
        (WebhookFormat::Discord, hook.url.clone(), None),
        (WebhookFormat::Telegram, base.clone(), Some("-1001")),
        (WebhookFormat::Pushover, hook.url.clone(), Some("u5er")),
    ] {
        let spec = phone(dir.path(), format, &url, recipient, &ca);
        deliver(&spec, &alert(), &how)
            .await
            .unwrap_or_else(|e| panic!("{format:?}: {e}"));
    }
    let requests: Vec<_> = std::mem::take(&mut *lock(&hook.requests));
    let title = "node_down: mythbox";
    let summary = alert()["summary"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_default();
    // ntfy: the message is the body; title, priority and tags are headers.
    let ntfy = &requests[0];
    assert_eq!(ntfy.path, "/hook");
    assert_eq!(String::from_utf8_lossy(&ntfy.raw), summary);
    assert_eq!(ntfy.header("title"), Some(title));
    assert_eq!(ntfy.header("priority"), Some("high"));
    assert_eq!(ntfy.authorization.as_deref(), Some("Bearer t0k3n"));
    // Gotify: /message with the application token.
    let gotify = &requests[1];
    assert_eq!(gotify.path, "/hook/message");
    assert_eq!(gotify.header("x-gotify-key"), Some("t0k3n"));
    assert_eq!(
        (
            gotify.body["title"].as_str(),
            gotify.body["priority"].as_i64()
        ),
        (Some(title), Some(8))
    );
    // Slack and Mattermost: text.
    assert_eq!(requests[2].body["text"], format!("*{title}*\n{summary}"));
    // Discord: content.
    assert_eq!(
        requests[3].body["content"],
        format!("**{title}**\n{summary}")
    );
    // Telegram: the bot's token in the path, the chat as recipient.
    let telegram = &requests[4];
    assert_eq!(telegram.path, "/bott0k3n/sendMessage");
    assert_eq!(telegram.body["chat_id"], "-1001");
    assert_eq!(telegram.authorization, None);
    // Pushover: application token and user key in the body.
    let pushover = &requests[5];
    assert_eq!(
        (
            pushover.body["token"].as_str(),
            pushover.body["user"].as_str()
        ),
        (Some("t0k3n"), Some("u5er"))
    );
    assert_eq!(pushover.body["message"], summary.as_str());

    // A Telegram error never shows the bot's token.
    let closed = format!("http://{}", common::daemons::closed_port());
    let spec = phone(dir.path(), WebhookFormat::Telegram, &closed, Some("1"), &ca);
    let err = deliver(&spec, &alert(), &how).await.expect_err("refused");
    assert!(
        !err.to_string().contains("t0k3n") && err.to_string().contains("bot<token>"),
        "{err}"
    );
}

#[tokio::test]
async fn an_alertmanager_webhook_receives_the_v4_shape() {
    let hook = receiver(&[Answer::Status(200)]).await;
    let spec = webhook(&hook.url, WebhookFormat::Alertmanager);
    deliver(&spec, &alert(), &quick(5000, &[]))
        .await
        .expect("delivered");
    let requests = lock(&hook.requests);
    let body = &requests[0].body;
    assert_eq!(body["version"], "4");
    assert_eq!(body["status"], "firing");
    assert_eq!(body["receiver"], "nbwatch");
    let first = &body["alerts"][0];
    assert_eq!(first["status"], "firing");
    assert_eq!(first["labels"]["alertname"], "node_down");
    assert_eq!(first["labels"]["node"], "mythbox");
    assert_eq!(first["startsAt"], "2026-11-22T15:30:02.004Z");
    assert_eq!(first["annotations"]["summary"], alert()["summary"]);
}

#[tokio::test]
async fn a_webhook_failing_twice_is_delivered_on_the_third_attempt() {
    let hook = receiver(&[
        Answer::Status(500),
        Answer::Status(500),
        Answer::Status(200),
    ])
    .await;
    let spec = webhook(&hook.url, WebhookFormat::Json);
    deliver(&spec, &alert(), &quick(5000, &[20, 20]))
        .await
        .expect("delivered on the third attempt");
    assert_eq!(hook.count(), 3);
}

#[tokio::test]
async fn a_webhook_failing_three_times_reports_the_last_answer() {
    let hook = receiver(&[Answer::Status(500)]).await;
    let spec = webhook(&hook.url, WebhookFormat::Json);
    let error = deliver(&spec, &alert(), &quick(5000, &[20, 20]))
        .await
        .expect_err("never delivered")
        .to_string();
    assert_eq!(hook.count(), 3, "three attempts at most");
    assert!(
        error.contains(&hook.url) && error.contains("500"),
        "{error}"
    );
}

#[tokio::test]
async fn a_webhook_refusing_the_request_for_good_is_not_retried_but_one_asking_to_slow_down_is() {
    let hook = receiver(&[Answer::Status(404)]).await;
    let spec = webhook(&hook.url, WebhookFormat::Json);
    let error = deliver(&spec, &alert(), &quick(5000, &[20, 20]))
        .await
        .expect_err("404")
        .to_string();
    assert_eq!(hook.count(), 1, "a 4xx is not retried");
    assert!(
        error.contains("404") && error.contains("not retried"),
        "{error}"
    );
    let hook = receiver(&[Answer::Status(429), Answer::Status(200)]).await;
    let spec = webhook(&hook.url, WebhookFormat::Json);
    deliver(&spec, &alert(), &quick(5000, &[20, 20]))
        .await
        .expect("delivered after a 429");
    assert_eq!(hook.count(), 2);
}

#[tokio::test]
async fn a_webhook_that_never_answers_times_out() {
    let hook = receiver(&[Answer::Never]).await;
    let spec = webhook(&hook.url, WebhookFormat::Json);
    let started = Instant::now();
    let error = deliver(&spec, &alert(), &quick(200, &[10]))
        .await
        .expect_err("no answer")
        .to_string();
    assert_eq!(error, "timed out after 200ms");
    assert_eq!(hook.count(), 2, "each attempt reached the receiver");
    assert!(started.elapsed() >= Duration::from_millis(400));
}

#[tokio::test]
async fn a_closed_port_gives_an_error_naming_the_url() {
    // A port bound but not listening refuses connections, and, held, cannot be handed to a
    // test running beside this one (a dropped listener's port could be, which then answers).
    let held = tokio::net::TcpSocket::new_v4().expect("socket");
    held.bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    let url = format!("http://{}/hook", held.local_addr().expect("addr"));
    let spec = webhook(&url, WebhookFormat::Json);
    let error = deliver(&spec, &alert(), &quick(2000, &[]))
        .await
        .expect_err("nobody listens")
        .to_string();
    assert!(error.starts_with(&format!("{url}: ")), "{error}");
    assert!(error.to_lowercase().contains("refused"), "{error}");
    drop(held);
}

// ---------------------------------------------------------------------------------------------
// An SMTP server

#[derive(Clone, Debug, Default)]
struct Mail {
    helo: String,
    /// Who logged in (AUTH PLAIN), if anyone.
    user: Option<String>,
    from: String,
    to: Vec<String>,
    /// The message as sent after DATA, dot-unstuffed, lines joined with "\n".
    data: String,
}

struct SmtpServer {
    addr: SocketAddr,
    mails: Arc<Mutex<Vec<Mail>>>,
    /// Connections accepted.
    sessions: Arc<Mutex<usize>>,
}

/// What the test SMTP server asks of a client.
#[derive(Clone, Debug, Default)]
struct Rules {
    /// Refuse every recipient.
    refuse_rcpt: bool,
    /// Offer AUTH PLAIN and demand this user and password before MAIL.
    login: Option<(String, String)>,
}

/// A plain SMTP server keeping every message, by `rules`.
async fn smtp_server(refuse_rcpt: bool) -> SmtpServer {
    smtp_server_with(Rules {
        refuse_rcpt,
        login: None,
    })
    .await
}

async fn smtp_server_with(rules: Rules) -> SmtpServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (mails, sessions) = (shared(Vec::new()), shared(0));
    let (kept, counted) = (mails.clone(), sessions.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            *lock(&counted) += 1;
            let (kept, rules) = (kept.clone(), rules.clone());
            tokio::spawn(async move {
                let _ = serve_smtp(stream, &rules, &kept).await;
            });
        }
    });
    SmtpServer {
        addr,
        mails,
        sessions,
    }
}

/// The user of an `AUTH PLAIN <base64 of "\0user\0password">` argument, if it is `login`.
fn plain_login(argument: &str, login: &(String, String)) -> Option<String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(argument.trim())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let mut parts = text.split('\0').skip(1);
    let (user, password) = (parts.next()?, parts.next()?);
    (user == login.0 && password == login.1).then(|| user.to_string())
}

async fn serve_smtp(
    stream: TcpStream,
    rules: &Rules,
    kept: &Mutex<Vec<Mail>>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    let mut mail = Mail::default();
    write.write_all(b"220 test.invalid ESMTP\r\n").await?;
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end();
        let verb = command
            .split([' ', ':'])
            .next()
            .unwrap_or("")
            .to_uppercase();
        // "MAIL FROM:<a@b> BODY=8BITMIME" -> "a@b"
        let argument = |prefix: &str| {
            let rest = command.get(prefix.len()..).unwrap_or("").trim();
            let first = rest.split_whitespace().next().unwrap_or("");
            first
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        };
        let reply: &[u8] = match verb.as_str() {
            "EHLO" | "HELO" => {
                mail.helo = argument("EHLO");
                if rules.login.is_some() {
                    b"250-test.invalid\r\n250 AUTH PLAIN\r\n"
                } else {
                    b"250 test.invalid\r\n"
                }
            }
            "AUTH" => match (
                &rules.login,
                command.get(5..).and_then(|a| a.split_once(' ')),
            ) {
                (Some(login), Some((mechanism, argument)))
                    if mechanism.eq_ignore_ascii_case("PLAIN") =>
                {
                    mail.user = plain_login(argument, login);
                    if mail.user.is_some() {
                        b"235 2.7.0 authenticated\r\n"
                    } else {
                        b"535 5.7.8 authentication credentials invalid\r\n"
                    }
                }
                _ => b"504 5.5.4 unrecognized authentication type\r\n",
            },
            "MAIL" if rules.login.is_some() && mail.user.is_none() => {
                b"530 5.7.0 authentication required\r\n"
            }
            "MAIL" => {
                mail.from = argument("MAIL FROM:");
                b"250 2.1.0 ok\r\n"
            }
            "RCPT" if rules.refuse_rcpt => b"550 5.1.1 no such user here\r\n",
            "RCPT" => {
                mail.to.push(argument("RCPT TO:"));
                b"250 2.1.5 ok\r\n"
            }
            "DATA" => {
                write.write_all(b"354 go ahead\r\n").await?;
                let mut data = Vec::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await? == 0 {
                        return Ok(());
                    }
                    let text = line.trim_end_matches(['\r', '\n']);
                    if text == "." {
                        break;
                    }
                    data.push(text.strip_prefix('.').unwrap_or(text).to_string());
                }
                mail.data = data.join("\n");
                lock(kept).push(std::mem::take(&mut mail));
                b"250 2.0.0 queued\r\n"
            }
            "RSET" | "NOOP" => b"250 2.0.0 ok\r\n",
            "QUIT" => {
                write.write_all(b"221 2.0.0 bye\r\n").await?;
                return Ok(());
            }
            _ => b"502 5.5.2 not implemented\r\n",
        };
        write.write_all(reply).await?;
    }
}

/// Headers (unfolded) and body (decoded if quoted-printable) of a message.
fn parse_mail(data: &str) -> (Vec<(String, String)>, String) {
    let (head, body) = data.split_once("\n\n").unwrap_or((data, ""));
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = headers.last_mut() {
                value.push_str(line);
            }
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.to_lowercase(), value.trim().to_string()));
        }
    }
    let quoted_printable = headers.iter().any(|(n, v)| {
        n == "content-transfer-encoding" && v.eq_ignore_ascii_case("quoted-printable")
    });
    let body = if quoted_printable {
        let joined = body.replace("=\n", "");
        let mut out = Vec::new();
        let bytes = joined.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'='
                && let Some(hex) = joined.get(i + 1..i + 3)
                && let Ok(b) = u8::from_str_radix(hex, 16)
            {
                out.push(b);
                i += 3;
                continue;
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).to_string()
    } else {
        body.to_string()
    };
    (headers, body)
}

fn email(server: SocketAddr) -> SinkSpec {
    email_with(server, SmtpTls::Plain, None)
}

/// An email sink to `server` with this security and login, from and to the usual mailboxes.
fn email_with(server: SocketAddr, tls: SmtpTls, auth: Option<SmtpAuth>) -> SinkSpec {
    SinkSpec::Email {
        host: server.ip().to_string(),
        port: server.port(),
        tls,
        from: "nbwatch <nbwatch@example.org>".to_string(),
        to: vec!["me@example.org".to_string(), "you@example.org".to_string()],
        auth,
    }
}

/// `email(server)` logging in as `user` with the password in a file of `dir`.
fn email_with_login(
    server: SocketAddr,
    dir: &tempfile::TempDir,
    user: &str,
    password: &str,
) -> SinkSpec {
    let password_file = dir.path().join("smtp.password");
    std::fs::write(&password_file, format!("{password}\n")).expect("password file");
    let auth = SmtpAuth {
        username: user.to_string(),
        password_file,
    };
    email_with(server, SmtpTls::Plain, Some(auth))
}

#[tokio::test]
async fn an_email_sink_logs_in_when_the_server_asks() {
    let login = ("alerts@example.org".to_string(), "s3cret pass".to_string());
    let server = smtp_server_with(Rules {
        refuse_rcpt: false,
        login: Some(login.clone()),
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = email_with_login(server.addr, &dir, &login.0, &login.1);
    deliver(&spec, &alert(), &quick(5000, &[]))
        .await
        .expect("delivered after logging in");
    let mails = lock(&server.mails).clone();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].user.as_deref(), Some(login.0.as_str()));
    // Without a login the same server refuses the mail.
    let error = deliver(&email(server.addr), &alert(), &quick(5000, &[]))
        .await
        .expect_err("no login")
        .to_string();
    assert!(error.contains("530"), "{error}");
}

#[tokio::test]
async fn a_wrong_smtp_password_is_refused_once_and_not_retried() {
    let login = ("alerts@example.org".to_string(), "right".to_string());
    let server = smtp_server_with(Rules {
        refuse_rcpt: false,
        login: Some(login.clone()),
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = email_with_login(server.addr, &dir, &login.0, "wrong");
    let error = deliver(&spec, &alert(), &quick(5000, &[20, 20]))
        .await
        .expect_err("wrong password")
        .to_string();
    assert!(
        error.starts_with(&format!("smtp {}: ", server.addr))
            && error.contains("535")
            && error.contains("not retried"),
        "{error}"
    );
    assert_eq!(
        *lock(&server.sessions),
        1,
        "a permanent refusal is not retried"
    );
    assert!(lock(&server.mails).is_empty());
    // A missing password file is named, and may be fixed: it is retried.
    std::fs::remove_file(dir.path().join("smtp.password")).expect("rm");
    let error = deliver(&spec, &alert(), &quick(5000, &[20]))
        .await
        .expect_err("no password file")
        .to_string();
    assert!(
        error.contains("smtp.password") && !error.contains("not retried"),
        "{error}"
    );
}

#[tokio::test]
async fn an_email_arrives_with_its_sender_recipients_subject_and_body() {
    let server = smtp_server(false).await;
    deliver(&email(server.addr), &alert(), &quick(5000, &[]))
        .await
        .expect("mailed");
    let mails = lock(&server.mails).clone();
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert_eq!(mail.helo, "frontroom", "greets as the sending node");
    assert_eq!(mail.from, "nbwatch@example.org");
    assert_eq!(mail.to, ["me@example.org", "you@example.org"]);

    let (headers, body) = parse_mail(&mail.data);
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {name} header in {headers:#?}"))
    };
    assert_eq!(header("from"), "nbwatch <nbwatch@example.org>");
    let to = header("to");
    assert!(
        to.contains("me@example.org") && to.contains("you@example.org"),
        "{to}"
    );
    let summary = alert()["summary"].as_str().expect("summary").to_string();
    assert_eq!(header("subject"), format!("[nbwatch] {summary}"));
    assert!(header("content-type").starts_with("text/plain"));
    assert!(header("message-id").ends_with("@example.org>"));

    assert!(body.starts_with(&summary), "{body}");
    assert!(body.contains("\nid: node_down:mythbox:3\n"), "{body}");
    assert!(body.contains("\nobservers: frontroom, study\n"), "{body}");
    assert!(body.contains("\nservice: -\n"), "{body}");
    let json_start = body.find("\n{").expect("the JSON follows the fields");
    let json: Value = serde_json::from_str(&body[json_start..]).expect("the JSON parses");
    assert_eq!(json, alert());
}

#[tokio::test]
async fn an_smtp_server_refusing_the_recipient_gives_an_error() {
    let server = smtp_server(true).await;
    let error = deliver(&email(server.addr), &alert(), &quick(5000, &[10]))
        .await
        .expect_err("refused")
        .to_string();
    assert!(
        error.starts_with(&format!("smtp {}: ", server.addr)),
        "{error}"
    );
    assert!(error.contains("no such user here"), "{error}");
    assert!(lock(&server.mails).is_empty());
    assert_eq!(*lock(&server.sessions), 1, "a 5xx refusal is not retried");
}

#[tokio::test]
async fn starttls_and_tls_never_fall_back_to_plain_text() {
    let server = smtp_server(false).await;
    for (tls, expected) in [(SmtpTls::StartTls, "STARTTLS"), (SmtpTls::Implicit, "")] {
        let spec = email_with(server.addr, tls, None);
        let error = deliver(&spec, &alert(), &quick(2000, &[]))
            .await
            .expect_err("the test server speaks no TLS")
            .to_string();
        assert!(
            error.starts_with(&format!("smtp {}: ", server.addr)) && error.contains(expected),
            "{tls:?}: {error}"
        );
    }
    assert!(lock(&server.mails).is_empty(), "nothing sent in clear");
}

// ---------------------------------------------------------------------------------------------
// All sinks at once

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_failing_sink_does_not_hold_up_the_good_ones() {
    let slow = receiver(&[Answer::Never]).await;
    let fast = receiver(&[Answer::Status(200)]).await;
    let mail = smtp_server(false).await;
    let sinks = vec![
        webhook(&slow.url, WebhookFormat::Json),
        webhook(&fast.url, WebhookFormat::Alertmanager),
        email(mail.addr),
    ];
    // The slow sink takes three timeouts and two waits: at least 1.5 s.
    let how = quick(300, &[300, 300]);
    let all = tokio::spawn(async move { deliver_all(&sinks, &alert(), &how).await });

    wait_until("the good sinks' deliveries", || {
        fast.count() == 1 && lock(&mail.mails).len() == 1
    })
    .await;
    assert!(
        !all.is_finished(),
        "the good sinks were served before the slow one gave up"
    );
    assert!(slow.count() < 3, "the slow sink is still being retried");

    let results = all.await.expect("deliver_all");
    let found: Vec<(&str, &str)> = results
        .iter()
        .map(|r| (r.sink.as_str(), r.result.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            ("webhook#1", "timed out after 300ms"),
            ("webhook#2", "ok"),
            ("email#3", "ok"),
        ]
    );
    assert_eq!(slow.count(), 3);
}

// ---------------------------------------------------------------------------------------------
// exec

/// A sink script in a temporary folder, run by `/bin/sh` (not executed directly: a file just
/// written may still be open in a child forked meanwhile by another test, and exec would fail
/// with "text file busy").
fn script(dir: &tempfile::TempDir, text: &str) -> Vec<String> {
    let path = dir.path().join("sink.sh");
    std::fs::write(&path, text).expect("write the script");
    vec![
        "/bin/sh".to_string(),
        path.display().to_string(),
        dir.path().display().to_string(),
    ]
}

#[tokio::test]
async fn an_exec_sink_gets_the_json_line_and_the_environment() {
    let dir = tempfile::tempdir().expect("temp dir");
    let command = script(
        &dir,
        "cat > \"$1/stdin\"\nenv | grep '^NBWATCH_ALERT_' | sort > \"$1/env\"\n",
    );
    deliver(&SinkSpec::Exec { command }, &alert(), &quick(5000, &[]))
        .await
        .expect("the script succeeds");

    let stdin = std::fs::read_to_string(dir.path().join("stdin")).expect("stdin kept");
    assert_eq!(stdin, format!("{}\n", alert()), "one JSON line");
    let env = std::fs::read_to_string(dir.path().join("env")).expect("env kept");
    let summary = alert()["summary"].as_str().expect("summary").to_string();
    assert_eq!(
        env.lines().collect::<Vec<_>>(),
        [
            "NBWATCH_ALERT_ID=node_down:mythbox:3".to_string(),
            "NBWATCH_ALERT_KIND=node_down".to_string(),
            "NBWATCH_ALERT_NODE=mythbox".to_string(),
            format!("NBWATCH_ALERT_SUMMARY={summary}"),
        ]
    );
}

#[tokio::test]
async fn a_failing_exec_sink_reports_its_exit_status_and_first_stderr_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let command = script(
        &dir,
        "cat > /dev/null\necho 'pager unreachable' >&2\necho 'more detail' >&2\nexit 3\n",
    );
    let error = deliver(&SinkSpec::Exec { command }, &alert(), &quick(5000, &[]))
        .await
        .expect_err("the script fails")
        .to_string();
    assert_eq!(error, "/bin/sh exit 3: pager unreachable");
}
