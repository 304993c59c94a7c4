use super::*;
use crate::keys::MAX_ENTRY_LEN;
use crate::keys::probe::MAX_LABEL;
use crate::keys::sample::metrics_from_kv;
use crate::supervision::health::{self, Health, Perf, parse_nagios};
use crate::supervision::spec::ProbeTarget;
use crate::types::Time;
use serde_json::Value;
use std::io::{Read, Write};

fn parse(text: &str, dir: &Path) -> (Option<HostProbeSpec>, Vec<Problem>) {
    let mut problems = Vec::new();
    let spec = parse_host_probe(&dir.join("disk.toml"), text, dir, &mut problems);
    (spec, problems)
}

fn keys(problems: &[Problem]) -> Vec<&str> {
    problems.iter().map(|p| p.key.as_str()).collect()
}

/// The shipped `probes/` folder.
fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("probes")
}

#[test]
fn a_definition_parses_into_a_typed_spec_with_its_program_resolved() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("check_x.sh"), "#!/bin/sh\n").expect("write");
    let text = r#"
        name = "root_disk"
        command = ["check_x.sh", "/", "20"]
        interval = "30s"
        timeout = "3s"
    "#;
    let (spec, problems) = parse(text, dir.path());
    assert!(problems.is_empty(), "{problems:?}");
    let spec = spec.expect("spec");
    assert_eq!(spec.name, "root_disk");
    assert_eq!(spec.key(), "probe.root_disk");
    let program = dir.path().join("check_x.sh").display().to_string();
    assert_eq!(spec.command, [program.as_str(), "/", "20"]);
    assert_eq!(spec.interval, Duration::from_secs(30));
    assert_eq!(spec.timeout, Duration::from_secs(3));
    assert_eq!(spec.file, dir.path().join("disk.toml"));
}

#[test]
fn defaults_are_the_file_name_a_minute_and_ten_seconds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (spec, problems) = parse("command = [\"sh\", \"-c\", \"exit 0\"]\n", dir.path());
    assert!(problems.is_empty(), "{problems:?}");
    let spec = spec.expect("spec");
    assert_eq!(spec.name, "disk");
    // A bare name that is not in the folder stays for PATH.
    assert_eq!(spec.command[0], "sh");
    assert_eq!(spec.interval, DEFAULT_INTERVAL);
    assert_eq!(spec.timeout, DEFAULT_TIMEOUT);
}

#[test]
fn every_problem_is_named_by_file_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let table: &[(&str, &[&str])] = &[
        ("name = \"a b\"\ncommand = [\"sh\"]\n", &["name"]),
        ("name = 3\ncommand = [\"sh\"]\n", &["name"]),
        ("", &["command"]),
        ("command = []\n", &["command"]),
        ("command = \"sh -c true\"\n", &["command"]),
        ("command = [\"sh\", 1]\n", &["command"]),
        ("command = [\"./missing.sh\"]\n", &["command"]),
        ("command = [\"/nonexistent/check\"]\n", &["command"]),
        ("command = [\"sh\"]\ninterval = \"0s\"\n", &["interval"]),
        ("command = [\"sh\"]\ntimeout = \"soon\"\n", &["timeout"]),
        ("command = [\"sh\"]\ntimeout = 5\n", &["timeout"]),
        (
            "command = [\"sh\"]\nintervall = \"5s\"\nname = \"\"\n",
            &["intervall", "name"],
        ),
        ("command = [", &[""]),
    ];
    for (text, expected) in table {
        let (spec, problems) = parse(text, dir.path());
        assert!(spec.is_none(), "{text:?}");
        let mut found = keys(&problems);
        found.sort();
        assert_eq!(&found, expected, "{text:?}: {problems:?}");
        let file = dir.path().join("disk.toml").display().to_string();
        assert!(problems.iter().all(|p| p.file == file), "{problems:?}");
    }
}

#[test]
fn a_folder_loads_every_toml_file_and_names_must_be_unique() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert_eq!(load_host_probes(&dir.path().join("none")), Ok(Vec::new()));
    let write = |file: &str, text: &str| std::fs::write(dir.path().join(file), text);
    write("b.toml", "command = [\"sh\"]\n").expect("write");
    write("a.toml", "name = \"x\"\ncommand = [\"sh\"]\n").expect("write");
    write("notes.toml.example", "not toml at all [").expect("write");
    let names: Vec<String> = load_host_probes(dir.path())
        .expect("loads")
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["x", "b"]);

    write("c.toml", "name = \"b\"\ncommand = [\"sh\"]\n").expect("write");
    let problems = load_host_probes(dir.path()).expect_err("duplicate");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].file.ends_with("c.toml"), "{problems:?}");
    assert_eq!(problems[0].key, "name");
}

#[test]
fn the_shipped_definitions_load() {
    let specs = load_host_probes(&shipped()).expect("the shipped probes/ folder loads");
    let disk = specs
        .iter()
        .find(|s| s.name == "disk_root")
        .expect("disk_root");
    assert!(disk.command[0].ends_with("check_disk.sh"), "{disk:?}");
    assert!(Path::new(&disk.command[0]).is_absolute(), "{disk:?}");
}

fn outcome(health: Health, perfdata: &[(&str, f64)]) -> Outcome {
    Outcome {
        health,
        message: "a message that is not announced".to_string(),
        perfdata: perfdata
            .iter()
            .map(|(label, value)| Perf {
                label: label.to_string(),
                value: *value,
                unit: "%".to_string(),
                ..Perf::default()
            })
            .collect(),
    }
}

#[test]
fn an_announcement_is_the_health_and_the_perfdata() {
    let key = "probe.disk_root";
    let table = [
        (outcome(Health::Ok, &[]), "ok"),
        (
            outcome(
                Health::Warning,
                &[("free_pct", 12.34567), ("free_mb", 2048.0)],
            ),
            "warning free_pct=12.34567% free_mb=2048%",
        ),
        (
            outcome(Health::Critical, &[("free space", -1.5), ("a=b", 0.0)]),
            "critical free_space=-1.5% a_b=0%",
        ),
        (outcome(Health::Unknown, &[("x", f64::NAN)]), "unknown x=0%"),
    ];
    for (outcome, expected) in table {
        assert_eq!(announcement(key, &outcome, None), expected);
    }
}

#[test]
fn an_announcement_fits_one_gossip_entry() {
    let key = "probe.many";
    let label = "l".repeat(200);
    let perfdata: Vec<(&str, f64)> = (0..100).map(|_| (label.as_str(), 123_456.789)).collect();
    let value = announcement(key, &outcome(Health::Ok, &perfdata), None);
    assert!(key.len() + value.len() <= MAX_ENTRY_LEN, "{}", value.len());
    let items: Vec<&str> = value.split(' ').skip(1).collect();
    assert!(items.len() > 5, "{value}");
    assert!(
        items
            .iter()
            .all(|i| i.len() == MAX_LABEL + "=123456.789%".len())
    );
}

#[test]
fn probe_perfdata_become_member_metrics_next_to_the_sys_metrics() {
    // From plugin output to the members `metrics` object, as a peer would see it.
    let disk = parse_nagios(
        Some(1),
        "DISK WARNING - 12.5% free | free_pct=12.5%;20:;10:;0;100 'free mb'=2048MB",
    );
    let procs = parse_nagios(Some(2), "PROCS CRITICAL | procs=0;;1:;0");
    let kv = [
        ("sys".to_string(), "0.5 1.25 2 12.3 41 0 87.6".to_string()),
        ("sys.boot".to_string(), "1000".to_string()),
        (
            "probe.disk_root".to_string(),
            announcement("probe.disk_root", &disk, None),
        ),
        (
            "probe.sshd".to_string(),
            announcement("probe.sshd", &procs, Some(Time::from_millis(1_000))),
        ),
        ("probe.junk".to_string(), "ok =1 x=y z 2=3".to_string()),
        ("probe.".to_string(), "ok a=1".to_string()),
        ("app.thing".to_string(), "ok a=1".to_string()),
    ];
    // In base units, thresholds and bounds kept: 2048 MB are 2048 × 1024² bytes.
    assert_eq!(
        kv[2].1,
        "warning free_pct=12.5%;20:;10:;0;100 free_mb=2147483648B"
    );
    assert_eq!(kv[3].1, "critical@1000 procs=0;;1:;0");
    let json = metrics_from_kv(
        kv.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        Time::from_millis(4_600_500),
    );
    let expected = serde_json::json!({
        "load1": 0.5, "load5": 1.25, "load15": 2.0, "cpu_pct": 12.3,
        "mem_used_pct": 41.0, "swap_used_pct": 0.0, "disk_used_pct": 87.6,
        "uptime_s": 3_600,
        "disk_root.free_pct": 12.5, "disk_root.free_mb": 2_147_483_648.0,
        "sshd.procs": 0.0,
        "junk.2": 3.0,
    });
    assert_eq!(Value::Object(json), expected);
}

/// Runs a shipped script like a host probe would.
async fn run_script(args: &[&str], env_fetch: Option<&str>) -> Outcome {
    let mut command: Vec<String> = Vec::new();
    if let Some(method) = env_fetch {
        command.extend(["env".to_string(), format!("MYTH_FETCH={method}")]);
    }
    command.push(shipped().join(args[0]).display().to_string());
    command.extend(args[1..].iter().map(|a| a.to_string()));
    health::check(&ProbeTarget::Exec(command), Duration::from_secs(20)).await
}

#[tokio::test]
async fn check_disk_measures_the_root_file_system() {
    let outcome = run_script(&["check_disk.sh", "/"], None).await;
    assert_ne!(outcome.health, Health::Unknown, "{outcome:?}");
    assert!(outcome.message.starts_with("DISK "), "{outcome:?}");
    let labels: Vec<&str> = outcome.perfdata.iter().map(|p| p.label.as_str()).collect();
    assert_eq!(labels, ["free_pct", "free"], "{outcome:?}");
    let free = outcome.perfdata[0].value;
    assert!((0.0..=100.0).contains(&free), "{outcome:?}");
    assert_eq!(outcome.perfdata[0].unit, "%");

    // Thresholds above 100 % free: always critical.
    let critical = run_script(&["check_disk.sh", "/", "101", "101"], None).await;
    assert_eq!(critical.health, Health::Critical, "{critical:?}");
    let missing = run_script(&["check_disk.sh", "/nonexistent/nbwatch"], None).await;
    assert_eq!(missing.health, Health::Unknown, "{missing:?}");
    let bad = run_script(&["check_disk.sh", "/", "lots"], None).await;
    assert_eq!(bad.health, Health::Unknown, "{bad:?}");
}

#[tokio::test]
async fn check_process_counts_running_processes_by_name() {
    // This test binary is running; its name as the kernel keeps it (at most 15 bytes).
    let comm = std::fs::read_to_string("/proc/self/comm").expect("comm");
    let running = run_script(&["check_process.sh", comm.trim()], None).await;
    assert_eq!(running.health, Health::Ok, "{running:?}");
    assert!(running.perfdata[0].value >= 1.0, "{running:?}");
    assert_eq!(running.perfdata[0].label, "procs");

    let absent = run_script(&["check_process.sh", "nbwatch-nothing"], None).await;
    assert_eq!(absent.health, Health::Critical, "{absent:?}");
    assert_eq!(absent.perfdata[0].value, 0.0, "{absent:?}");

    let too_few = run_script(&["check_process.sh", comm.trim(), "1000"], None).await;
    assert_eq!(too_few.health, Health::Critical, "{too_few:?}");
}

const FAKE_STATUS: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Status date="2026-01-01" time="12:00:00" version="v34.0" protoVer="91">
 <Encoders count="3">
  <Encoder id="1" local="1" connected="1" state="7" hostname="mythbox"/>
  <Encoder id="2" local="1" connected="1" state="0" hostname="mythbox"/>
  <Encoder id="3" local="1" connected="1" state="1" hostname="mythbox"/>
 </Encoders>
 <Scheduled count="12"><Program title="News"/></Scheduled>
</Status>
"#;

/// A fake MythTV backend on a port of its own: `body` for /Status/GetStatus, 404 otherwise.
fn fake_backend(body: &'static str) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut head = Vec::new();
            let mut buf = [0u8; 512];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let answer = if head.starts_with(b"GET /Status/GetStatus HTTP/1.") {
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_string()
            };
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    port
}

#[tokio::test]
async fn check_mythbackend_reads_the_status_page_with_each_fetcher() {
    let port = fake_backend(FAKE_STATUS).to_string();
    for fetch in ["curl", "wget", "bash"] {
        let available = std::process::Command::new("sh")
            .args(["-c", &format!("command -v {fetch}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !available {
            eprintln!("{fetch} is not installed; skipping it");
            continue;
        }
        let ok = run_script(&["check_mythbackend.sh", "127.0.0.1", &port], Some(fetch)).await;
        assert_eq!(ok.health, Health::Ok, "{fetch}: {ok:?}");
        assert!(ok.message.contains("v34.0"), "{fetch}: {ok:?}");
        let perf: Vec<(&str, f64)> = ok
            .perfdata
            .iter()
            .map(|p| (p.label.as_str(), p.value))
            .collect();
        assert_eq!(
            perf,
            [
                ("encoders", 3.0),
                ("encoders_busy", 2.0),
                ("scheduled", 12.0)
            ],
            "{fetch}"
        );
    }
}

#[tokio::test]
async fn check_mythbackend_is_critical_without_a_backend_or_a_status_document() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port().to_string()
    };
    let down = run_script(&["check_mythbackend.sh", "127.0.0.1", &closed], None).await;
    assert_eq!(down.health, Health::Critical, "{down:?}");
    assert!(down.perfdata.is_empty(), "{down:?}");

    let port = fake_backend("<html>not a backend</html>").to_string();
    let other = run_script(&["check_mythbackend.sh", "127.0.0.1", &port], None).await;
    assert_eq!(other.health, Health::Critical, "{other:?}");
}

#[test]
fn problems_keep_their_wording_and_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("disk.toml").display().to_string();
    let table: &[(&str, &[&str])] = &[
        (
            "name = 1\nzeta = 1\nalpha = 1\ninterval = \"0s\"\ntimeout = 1\n",
            &[
                "UnknownKey alpha: unknown key; expected one of name, command, interval, timeout",
                "UnknownKey zeta: unknown key; expected one of name, command, interval, timeout",
                "WrongType name: expected a string",
                "MissingKey command: missing: expected an array of strings, like \
                 [\"check_disk.sh\", \"/\", \"20\", \"10\"]",
                "BadValue interval: must be more than zero",
                "WrongType timeout: expected a duration string, like \"60s\"",
            ],
        ),
        (
            "command = [\"sh\", 1]\ninterval = \"x\"\ntimeout = 1979-05-27\n",
            &[
                "WrongType command: expected an array of strings, like [\"check_disk.sh\", \
                 \"/\", \"20\", \"10\"]",
                "BadDuration interval: bad duration \"x\" (expected number at 0); expected a \
                 number and a unit, like \"10s\" or \"5m\"",
                "WrongType timeout: expected a duration string, like \"60s\"",
            ],
        ),
        (
            "command = [\" \"]\n",
            &["EmptyCommand command: the command is empty"],
        ),
    ];
    for (text, expected) in table {
        let (spec, problems) = parse(text, dir.path());
        assert!(spec.is_none(), "{text:?}");
        let shown: Vec<String> = problems
            .iter()
            .map(|p| format!("{:?} {p}", p.kind))
            .collect();
        let expected: Vec<String> = expected
            .iter()
            .map(|e| {
                let (kind, rest) = e.split_once(' ').expect("kind");
                format!("{kind} {file}: {rest}")
            })
            .collect();
        assert_eq!(shown, expected, "{text:?}");
    }
}
