use super::*;
use crate::supervision::spec::HttpUrl;
use proptest::prelude::*;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn perf(label: &str, value: f64, unit: &str) -> Perf {
    Perf {
        label: label.to_string(),
        value,
        unit: unit.to_string(),
        ..Perf::default()
    }
}

/// `perf` with its thresholds and bounds.
fn perf_t(
    p: Perf,
    warn: Option<&str>,
    crit: Option<&str>,
    min: Option<f64>,
    max: Option<f64>,
) -> Perf {
    Perf {
        warn: warn.map(str::to_string),
        crit: crit.map(str::to_string),
        min,
        max,
        ..p
    }
}

#[test]
fn exit_codes_follow_the_nagios_convention() {
    let table = [
        (Some(0), Health::Ok),
        (Some(1), Health::Warning),
        (Some(2), Health::Critical),
        (Some(3), Health::Unknown),
        (Some(4), Health::Unknown),
        (Some(127), Health::Unknown),
        (Some(-1), Health::Unknown),
        (None, Health::Unknown),
    ];
    for (code, health) in table {
        assert_eq!(parse_nagios(code, "").health, health, "{code:?}");
    }
}

#[test]
fn health_names_are_the_contract_names() {
    for (h, name) in [
        (Health::Ok, "ok"),
        (Health::Warning, "warning"),
        (Health::Critical, "critical"),
        (Health::Unknown, "unknown"),
    ] {
        assert_eq!(h.as_str(), name);
        assert_eq!(serde_json::to_value(h).expect("json"), name);
    }
}

#[test]
fn plugin_output_becomes_a_message_and_perfdata() {
    let table: &[(&str, &str, Vec<Perf>)] = &[
        ("", "", vec![]),
        ("DISK OK", "DISK OK", vec![]),
        ("  spaced out  \n", "spaced out", vec![]),
        (
            "DISK OK - 42% free | free=42%;20;10;0;100",
            "DISK OK - 42% free",
            vec![perf_t(
                perf("free", 42.0, "%"),
                Some("20"),
                Some("10"),
                Some(0.0),
                Some(100.0),
            )],
        ),
        (
            "OK|a=1 b=2.5s;;;0 c=-3 d=10MB",
            "OK",
            vec![
                perf("a", 1.0, ""),
                perf_t(perf("b", 2.5, "s"), None, None, Some(0.0), None),
                perf("c", -3.0, ""),
                perf("d", 10.0, "MB"),
            ],
        ),
        (
            "OK | 'free space'=7GB 'it''s'=1c",
            "OK",
            vec![perf("free space", 7.0, "GB"), perf("it's", 1.0, "c")],
        ),
        (
            // Long output: perfdata continues after the first '|' of the later lines.
            "OK | a=1\nlong text\nmore text | b=2\nc=3\n",
            "OK",
            vec![perf("a", 1.0, ""), perf("b", 2.0, ""), perf("c", 3.0, "")],
        ),
        ("OK\nlong text only\n", "OK", vec![]),
        (
            // Junk is skipped item by item.
            "WARN | junk =1 x= y=U z=1.2.3 ok=4 'open=5 never=6",
            "WARN",
            vec![perf("ok", 4.0, "")],
        ),
        (
            "CRIT | a=1;2;3 || b=2",
            "CRIT",
            vec![
                perf_t(perf("a", 1.0, ""), Some("2"), Some("3"), None, None),
                perf("b", 2.0, ""),
            ],
        ),
        ("x | ''=1 'a'=2", "x", vec![perf("a", 2.0, "")]),
        ("x | a=inf b=NaN c=1e3", "x", vec![]),
    ];
    for (output, message, perfdata) in table {
        let outcome = parse_nagios(Some(0), output);
        assert_eq!(&outcome.message, message, "{output:?}");
        assert_eq!(&outcome.perfdata, perfdata, "{output:?}");
    }
}

proptest! {
    #[test]
    fn any_output_parses_without_panicking(output in ".{0,200}", code in any::<Option<i32>>()) {
        let outcome = parse_nagios(code, &output);
        prop_assert!(!outcome.message.contains('\n'));
        prop_assert!(!outcome.message.contains('|'));
        for p in &outcome.perfdata {
            prop_assert!(!p.label.is_empty());
            prop_assert!(p.value.is_finite());
        }
    }

    #[test]
    fn perfdata_like_output_parses_without_panicking(
        output in "[a-z' =;|%.0-9\n-]{0,120}",
    ) {
        let outcome = parse_nagios(Some(0), &output);
        for p in &outcome.perfdata {
            prop_assert!(!p.label.is_empty());
            prop_assert!(p.value.is_finite());
        }
    }

    #[test]
    fn well_formed_items_are_all_found(values in proptest::collection::vec(-1e6f64..1e6, 0..8)) {
        let items: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(i, v)| format!("'m {i}'={v}ms;1;2;0;9"))
            .collect();
        let outcome = parse_nagios(Some(0), &format!("OK | {}", items.join(" ")));
        prop_assert_eq!(outcome.perfdata.len(), values.len());
        for (i, (p, v)) in outcome.perfdata.iter().zip(&values).enumerate() {
            prop_assert_eq!(&p.label, &format!("m {i}"));
            prop_assert_eq!(p.value, *v);
            prop_assert_eq!(&p.unit, "ms");
        }
    }
}

#[test]
fn the_failures_th_consecutive_critical_restarts() {
    use Health::*;
    use Verdict::*;
    let table: &[(u32, &[Health], &[Verdict])] = &[
        (1, &[Critical, Critical], &[Restart, Restart]),
        (0, &[Critical], &[Restart]),
        (
            3,
            &[Critical, Critical, Critical, Critical],
            &[Degraded, Degraded, Restart, Degraded],
        ),
        (
            3,
            &[Critical, Critical, Ok, Critical, Critical, Critical],
            &[Degraded, Degraded, Healthy, Degraded, Degraded, Restart],
        ),
        (
            2,
            &[Critical, Warning, Critical, Unknown, Critical, Critical],
            &[Degraded, Degraded, Degraded, Degraded, Degraded, Restart],
        ),
        (
            2,
            &[Ok, Warning, Unknown, Ok],
            &[Healthy, Degraded, Degraded, Healthy],
        ),
    ];
    for (failures, healths, verdicts) in table {
        let mut tracker = Tracker::new(*failures);
        let seen: Vec<Verdict> = healths
            .iter()
            .map(|h| tracker.observe(&Outcome::new(*h, "")))
            .collect();
        assert_eq!(&seen, verdicts, "failures = {failures}, {healths:?}");
    }
}

#[test]
fn the_count_starts_over_after_a_restart() {
    let mut tracker = Tracker::new(2);
    let critical = Outcome::new(Health::Critical, "down");
    tracker.observe(&critical);
    assert_eq!(tracker.criticals(), 1);
    assert_eq!(tracker.observe(&critical), Verdict::Restart);
    assert_eq!(tracker.criticals(), 0);
}

#[test]
fn http_urls_are_split_for_a_get() {
    let url = |connect: &str, host: &str, path: &str| {
        Some(HttpUrl {
            connect: connect.to_string(),
            host: host.to_string(),
            path: path.to_string(),
        })
    };
    let table = [
        ("http://h", url("h:80", "h", "/")),
        ("http://h:8080", url("h:8080", "h:8080", "/")),
        (
            "http://127.0.0.1:6544/Status/GetStatus",
            url("127.0.0.1:6544", "127.0.0.1:6544", "/Status/GetStatus"),
        ),
        ("http://h?x=1#frag", url("h:80", "h", "/?x=1")),
        ("http://[::1]:81/a", url("[::1]:81", "[::1]:81", "/a")),
        ("http://[::1]/a", url("[::1]:80", "[::1]", "/a")),
        ("https://h/", None),
        ("h:80", None),
        ("http://", None),
        ("http://h:port/", None),
        ("http://h:99999/", None),
        ("http://user@h/", None),
        ("http://h/a b", None),
    ];
    for (text, expected) in table {
        assert_eq!(HttpUrl::parse(text), expected, "{text}");
    }
}

async fn closed_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    addr.to_string()
}

#[tokio::test]
async fn tcp_is_ok_when_something_listens_and_critical_when_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let ok = check(&ProbeTarget::Tcp(addr.clone()), Duration::from_secs(2)).await;
    assert_eq!(ok.health, Health::Ok, "{ok:?}");
    assert_eq!(ok.perfdata[0].label, "time");

    let refused = check(
        &ProbeTarget::Tcp(closed_port().await),
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(refused.health, Health::Critical, "{refused:?}");
    assert!(refused.message.contains("cannot connect"), "{refused:?}");
}

/// Answers every connection with `answer` after reading the request head; returns the url.
async fn http_server(answer: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 512];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                assert!(head.starts_with(b"GET /health HTTP/1.1\r\n"));
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}/health")
}

#[tokio::test]
async fn http_is_ok_on_2xx_and_3xx_and_critical_otherwise() {
    let table = [
        ("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", Health::Ok),
        ("HTTP/1.1 204 No Content\r\n\r\n", Health::Ok),
        ("HTTP/1.1 302 Found\r\nLocation: /x\r\n\r\n", Health::Ok),
        (
            "HTTP/1.0 500 Internal Server Error\r\n\r\n",
            Health::Critical,
        ),
        ("HTTP/1.1 404 Not Found\r\n\r\n", Health::Critical),
        ("SSH-2.0-OpenSSH\r\n", Health::Critical),
    ];
    for (answer, health) in table {
        let url = http_server(answer).await;
        let outcome = check(&ProbeTarget::Http(url), Duration::from_secs(2)).await;
        assert_eq!(outcome.health, health, "{answer:?}: {outcome:?}");
        let status_line = answer.split("\r\n").next().unwrap_or_default();
        assert_eq!(outcome.message, status_line);
    }
}

#[tokio::test]
async fn http_is_critical_when_refused_or_silent_and_unknown_for_https() {
    let url = format!("http://{}/", closed_port().await);
    let refused = check(&ProbeTarget::Http(url), Duration::from_secs(2)).await;
    assert_eq!(refused.health, Health::Critical, "{refused:?}");

    // Accepts, never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/", listener.local_addr().expect("addr"));
    let start = Instant::now();
    let silent = check(&ProbeTarget::Http(url), Duration::from_millis(200)).await;
    assert_eq!(silent.health, Health::Critical, "{silent:?}");
    assert!(
        silent.message.contains("timed out after 200ms"),
        "{silent:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(2));

    let https = ProbeTarget::Http("https://example.org/".to_string());
    let outcome = check(&https, Duration::from_secs(2)).await;
    assert_eq!(outcome.health, Health::Unknown, "{outcome:?}");
}

fn sh(script: &str) -> ProbeTarget {
    ProbeTarget::Exec(vec!["sh".into(), "-c".into(), script.into()])
}

#[tokio::test]
async fn exec_reports_each_exit_code_with_its_message_and_perfdata() {
    let table = [
        (0, Health::Ok),
        (1, Health::Warning),
        (2, Health::Critical),
        (3, Health::Unknown),
        (42, Health::Unknown),
    ];
    for (code, health) in table {
        let script = format!("echo 'STATUS {code} | count={code};1;2'; echo more; exit {code}");
        let outcome = check(&sh(&script), Duration::from_secs(5)).await;
        assert_eq!(outcome.health, health, "{outcome:?}");
        assert_eq!(outcome.message, format!("STATUS {code}"));
        let count = perf_t(
            perf("count", f64::from(code), ""),
            Some("1"),
            Some("2"),
            None,
            None,
        );
        assert_eq!(outcome.perfdata, [count]);
    }
}

#[tokio::test]
async fn exec_of_a_missing_program_is_unknown() {
    let target = ProbeTarget::Exec(vec!["/nonexistent/nbwatch-probe".into()]);
    let outcome = check(&target, Duration::from_secs(2)).await;
    assert_eq!(outcome.health, Health::Unknown, "{outcome:?}");
    assert!(outcome.message.contains("cannot run"), "{outcome:?}");
}

#[tokio::test]
async fn exec_keeps_a_bounded_part_of_a_flood() {
    // 1 MiB of output: read to the end (the plugin must not block), keep the first 64 KiB.
    let script = "echo 'FLOOD | n=1'; head -c 1048576 /dev/zero | tr '\\0' x; exit 0";
    let outcome = check(&sh(script), Duration::from_secs(10)).await;
    assert_eq!(outcome.health, Health::Ok, "{}", outcome.message);
    assert_eq!(outcome.message, "FLOOD");
}

fn alive(pid: u32) -> bool {
    // Gone, or a zombie waiting for whoever inherited it: either way, not running.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].trim_start().chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

#[tokio::test]
async fn exec_past_its_timeout_is_killed_with_everything_it_started() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pids = dir.path().join("pids");
    // The plugin and a helper it starts in the background both sleep for 10 s.
    let script = format!(
        "sleep 10 & echo $! > {p}; echo $$ >> {p}; sleep 10",
        p = pids.display()
    );
    let start = Instant::now();
    let outcome = check(&sh(&script), Duration::from_millis(300)).await;
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(outcome.health, Health::Critical, "{outcome:?}");
    assert!(
        outcome.message.contains("timed out after 300ms"),
        "{outcome:?}"
    );

    let written = std::fs::read_to_string(&pids).expect("the plugin wrote its pids");
    let pids: Vec<u32> = written
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    assert_eq!(pids.len(), 2, "{written:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|p| alive(*p)) {
        assert!(Instant::now() < deadline, "still running: {pids:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
