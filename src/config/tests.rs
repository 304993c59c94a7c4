use super::*;
use std::io::Write;
use std::path::Path;

/// Loads `toml` from a temporary file with `env` and a fixed host name.
fn load_text(
    toml: &str,
    env: &[(&str, &str)],
) -> (tempfile::NamedTempFile, Result<Config, ConfigErrors>) {
    let mut file = tempfile::Builder::new()
        .suffix(".toml")
        .tempfile()
        .expect("temp file");
    file.write_all(toml.as_bytes()).expect("write temp file");
    let result = load_inner(Some(file.path()), &owned(env), Some("testhost".into()));
    (file, result)
}

fn owned(env: &[(&str, &str)]) -> Vec<(String, String)> {
    env.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn problems(result: Result<Config, ConfigErrors>) -> Vec<Problem> {
    match result {
        Ok(config) => panic!("expected problems, got {config:#?}"),
        Err(errors) => errors.0,
    }
}

fn only_problem(result: Result<Config, ConfigErrors>) -> Problem {
    let mut all = problems(result);
    assert_eq!(all.len(), 1, "expected one problem, got {all:#?}");
    all.remove(0)
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

#[test]
fn defaults_apply_with_no_file_and_no_environment() {
    let config = load_inner(None, &[], Some("testhost".into())).expect("defaults load");
    assert_eq!(config, Config::builtin(NodeName::new("testhost")));
    assert_eq!(config.node.data_dir, Path::new("/var/lib/nbwatch"));
    assert_eq!(config.node.priority, 0);
    assert_eq!(
        config.gossip.listen,
        addr("127.0.0.1:7710"),
        "plaintext stays home"
    );
    assert_eq!(config.gossip.advertise, None);
    assert!(config.gossip.seeds.is_empty());
    assert_eq!(config.gossip.interval, Duration::from_secs(1));
    assert!(!config.gossip.insecure);
    assert_eq!(config.metrics.interval, Duration::from_secs(5));
    assert!(config.metrics.announces());
    assert_eq!(config.api.listen, addr("127.0.0.1:7711"));
    assert_eq!(config.supervision.trees, Path::new("supervisors"));
    assert_eq!(config.metrics.probes, Path::new("probes"));
    assert_eq!(config.store.raw_retention, Duration::from_secs(7 * 86400));
    assert_eq!(
        config.store.rollup_retention,
        Duration::from_secs(365 * 86400)
    );
    assert_eq!(config.store.backfill, Duration::from_secs(86400));
    assert_eq!(config.alerts.flap_threshold, 4);
    assert_eq!(config.alerts.flap_window, Duration::from_secs(600));
    assert_eq!(config.alerts.repeat, Duration::ZERO);
    assert!(config.alerts.sinks.is_empty());
}

#[test]
fn the_default_name_is_the_host_name() {
    let config = load_with_env(None, &[]).expect("defaults load on this host");
    assert!(!config.node.name.as_str().is_empty());
}

#[test]
fn a_full_file_parses_into_the_right_types() {
    let (file, result) = load_text(
        r#"
[node]
name = "mythbox"
data_dir = "/srv/nbwatch"
priority = -2
weight = 2.5

[gossip]
listen = "0.0.0.0:7720"
advertise = "192.168.1.10:7720"
seeds = ["192.168.1.11:7710", "localhost:7712"]
interval = "500ms"
key_file = "cluster.key"
insecure = true

[metrics]
interval = "0s"

[api]
listen = "127.0.0.1:9000"

[supervision]
trees = "/etc/nbwatch/trees"

[store]
raw_retention = "2d"
rollup_retention = "30d"
backfill = "1h"

[alerts]
flap_threshold = 6
flap_window = "5m"
repeat = "1h"

[[alerts.sinks]]
type = "exec"
command = ["/usr/local/bin/notify", "--urgent"]

[[alerts.sinks]]
type = "webhook"
url = "http://example.org/hook"
format = "alertmanager"

[[alerts.sinks]]
type = "webhook"
url = "http://example.org/plain"

[[alerts.sinks]]
type = "email"
smtp = "mail.example.org:25"
from = "nbwatch@example.org"
to = ["me@example.org", "you@example.org"]
"#,
        &[],
    );
    let config = result.expect("full file loads");
    let folder = file.path().parent().expect("temp file has a folder");
    assert_eq!(config.file.as_deref(), Some(file.path()));
    assert_eq!(config.node.name, NodeName::new("mythbox"));
    assert_eq!(config.node.data_dir, Path::new("/srv/nbwatch"));
    assert_eq!(config.node.priority, -2);
    assert_eq!(config.node.weight, 2.5);
    assert_eq!(config.gossip.listen, addr("0.0.0.0:7720"));
    assert_eq!(config.gossip.advertise, Some(addr("192.168.1.10:7720")));
    assert_eq!(config.gossip.seeds[0], addr("192.168.1.11:7710"));
    assert!(config.gossip.seeds[1].ip().is_loopback());
    assert_eq!(config.gossip.seeds[1].port(), 7712);
    assert_eq!(config.gossip.interval, Duration::from_millis(500));
    assert_eq!(config.gossip.key_file, Some(folder.join("cluster.key")));
    assert!(config.gossip.insecure);
    assert_eq!(config.metrics.interval, Duration::ZERO);
    assert!(!config.metrics.announces());
    assert_eq!(config.api.listen, addr("127.0.0.1:9000"));
    assert_eq!(config.supervision.trees, Path::new("/etc/nbwatch/trees"));
    assert_eq!(config.store.raw_retention, Duration::from_secs(2 * 86400));
    assert_eq!(
        config.store.rollup_retention,
        Duration::from_secs(30 * 86400)
    );
    assert_eq!(config.store.backfill, Duration::from_secs(3600));
    assert_eq!(config.alerts.flap_threshold, 6);
    assert_eq!(config.alerts.flap_window, Duration::from_secs(300));
    assert_eq!(config.alerts.repeat, Duration::from_secs(3600));
    assert_eq!(
        config.alerts.sinks,
        vec![
            SinkSpec::Exec {
                command: vec!["/usr/local/bin/notify".into(), "--urgent".into()]
            },
            SinkSpec::Webhook {
                url: "http://example.org/hook".into(),
                format: WebhookFormat::Alertmanager,
                token_file: None,
                recipient: None,
                ca_file: None,
            },
            SinkSpec::Webhook {
                url: "http://example.org/plain".into(),
                format: WebhookFormat::Json,
                token_file: None,
                recipient: None,
                ca_file: None,
            },
            SinkSpec::Email {
                host: "mail.example.org".into(),
                port: 25,
                tls: SmtpTls::Plain,
                from: "nbwatch@example.org".into(),
                to: vec!["me@example.org".into(), "you@example.org".into()],
                auth: None,
            },
        ]
    );
}

#[test]
fn an_environment_override_wins_over_the_file() {
    let (_file, result) = load_text(
        "[node]\nname = \"fromfile\"\npriority = 3\n[gossip]\nlisten = \"0.0.0.0:7710\"\n\
         seeds = [\"10.0.0.1:7710\"]\ninsecure = false\n",
        &[
            ("NBWATCH_NODE__NAME", "fromenv"),
            ("NBWATCH_NODE__PRIORITY", "7"),
            ("NBWATCH_GOSSIP__LISTEN", "127.0.0.1:0"),
            ("NBWATCH_GOSSIP__SEEDS", "10.0.0.2:7710, 10.0.0.3:7711"),
            ("NBWATCH_GOSSIP__INSECURE", "true"),
            ("NBWATCH_METRICS__INTERVAL", "10s"),
        ],
    );
    let config = result.expect("file plus environment loads");
    assert_eq!(config.node.name, NodeName::new("fromenv"));
    assert_eq!(config.node.priority, 7);
    assert_eq!(config.gossip.listen, addr("127.0.0.1:0"));
    assert_eq!(
        config.gossip.seeds,
        vec![addr("10.0.0.2:7710"), addr("10.0.0.3:7711")]
    );
    assert!(config.gossip.insecure);
    assert_eq!(config.metrics.interval, Duration::from_secs(10));
}

#[test]
fn the_environment_alone_configures_a_node_without_a_file() {
    let env = owned(&[
        ("NBWATCH_NODE__NAME", "x"),
        ("NBWATCH_NODE__DATA_DIR", "rel/data"),
        ("NBWATCH_SUPERVISION__TREES", "rel/trees"),
        ("NBWATCH_GOSSIP__SEEDS", ""),
    ]);
    let config = load_inner(None, &env, None).expect("environment loads");
    assert_eq!(config.node.name, NodeName::new("x"));
    assert_eq!(config.node.data_dir, Path::new("rel/data"));
    assert_eq!(config.supervision.trees, Path::new("rel/trees"));
    assert!(config.gossip.seeds.is_empty());
}

#[test]
fn other_nbwatch_variables_are_not_config_overrides() {
    let env = owned(&[
        ("NBWATCH_API", "127.0.0.1:9999"),
        ("NBWATCH_ALERT_KIND", "node_down"),
        ("PATH", "/usr/bin"),
    ]);
    let config = load_inner(None, &env, Some("h".into())).expect("unrelated variables ignored");
    assert_eq!(config.api.listen, DEFAULT_API_LISTEN);
}

#[test]
fn a_bad_environment_value_is_reported_as_the_environment() {
    let (_file, result) = load_text(
        "[gossip]\ninterval = \"1s\"\n",
        &[
            ("NBWATCH_GOSSIP__INTERVAL", "fast"),
            ("NBWATCH_GOSIP__LISTEN", "x"),
        ],
    );
    let all = problems(result);
    assert_eq!(all.len(), 2, "{all:#?}");
    let interval = all
        .iter()
        .find(|p| p.key == "gossip.interval")
        .expect("interval problem");
    assert_eq!(interval.file, ENVIRONMENT);
    assert_eq!(interval.kind, ProblemKind::BadDuration);
    assert!(
        interval.message.contains("NBWATCH_GOSSIP__INTERVAL"),
        "{interval}"
    );
    let section = all
        .iter()
        .find(|p| p.key == "gosip")
        .expect("unknown section problem");
    assert_eq!(section.file, ENVIRONMENT);
    assert!(
        section.message.contains("did you mean \"gossip\""),
        "{section}"
    );
}

#[test]
fn several_problems_in_one_file_are_all_reported_with_file_and_key() {
    let (file, result) = load_text(
        r#"
[node]
name = ""
priority = "high"

[gossip]
listen = "nowhere"
interval = "fast"
seeds = ["10.0.0.1:7710", "bad seed"]

[store]
backfil = "24h"

[alerts]
flap_threshold = -1

[[alerts.sinks]]
type = "pager"

[[alerts.sinks]]
type = "exec"
command = []
"#,
        &[],
    );
    let all = problems(result);
    let path = file.path().display().to_string();
    let keys: Vec<&str> = all.iter().map(|p| p.key.as_str()).collect();
    for expected in [
        "node.name",
        "node.priority",
        "gossip.listen",
        "gossip.interval",
        "gossip.seeds[1]",
        "store.backfil",
        "alerts.flap_threshold",
        "alerts.sinks[0].type",
        "alerts.sinks[1].command",
    ] {
        assert!(
            keys.contains(&expected),
            "no problem at {expected}: {all:#?}"
        );
    }
    assert_eq!(all.len(), 9, "{all:#?}");
    assert!(all.iter().all(|p| p.file == path), "{all:#?}");
    let kind_at = |key: &str| all.iter().find(|p| p.key == key).map(|p| p.kind);
    assert_eq!(kind_at("node.name"), Some(ProblemKind::MissingName));
    assert_eq!(kind_at("node.priority"), Some(ProblemKind::WrongType));
    assert_eq!(
        kind_at("alerts.sinks[0].type"),
        Some(ProblemKind::UnknownSinkType)
    );
    assert_eq!(
        kind_at("alerts.sinks[1].command"),
        Some(ProblemKind::EmptyCommand)
    );
    let shown = ConfigErrors(all.clone()).to_string();
    assert_eq!(shown.lines().count(), all.len());
    assert!(
        shown.contains(&format!("{path}: gossip.interval: bad duration \"fast\"")),
        "{shown}"
    );
}

#[test]
fn the_lean_profile_sets_its_own_interval_unless_one_is_given() {
    let (_f, result) = load_text("[gossip]\nprofile = \"lean\"\n", &[]);
    let config = result.expect("lean loads");
    assert_eq!(config.gossip.profile, Profile::Lean);
    assert_eq!(config.gossip.interval, Duration::from_secs(2));
    let (_f, result) = load_text("[gossip]\nprofile = \"lean\"\ninterval = \"3s\"\n", &[]);
    assert_eq!(
        result.expect("loads").gossip.interval,
        Duration::from_secs(3)
    );
    let (_f, result) = load_text("", &[("NBWATCH_GOSSIP__PROFILE", "default")]);
    let config = result.expect("default loads");
    assert_eq!(config.gossip.profile, Profile::Default);
    assert_eq!(config.gossip.interval, Duration::from_secs(1));
}

#[test]
fn an_unknown_profile_names_the_known_ones() {
    let (_f, result) = load_text("[gossip]\nprofile = \"thin\"\n", &[]);
    let problem = only_problem(result);
    assert_eq!(problem.key, "gossip.profile");
    assert_eq!(problem.kind, ProblemKind::BadValue);
    assert!(
        problem
            .message
            .contains("\"thin\" is not a gossip profile (\"default\" or \"lean\")"),
        "{problem:?}"
    );
}

#[test]
fn a_bad_duration_quotes_the_value_and_the_expected_form() {
    let (file, result) = load_text("[alerts]\nflap_window = \"10 mins please\"\n", &[]);
    let problem = only_problem(result);
    assert_eq!(problem.file, file.path().display().to_string());
    assert_eq!(problem.key, "alerts.flap_window");
    assert_eq!(problem.kind, ProblemKind::BadDuration);
    assert!(problem.message.contains("\"10 mins please\""), "{problem}");
    assert!(problem.message.contains("\"5s\""), "{problem}");
}

#[test]
fn a_duration_given_as_a_number_is_a_wrong_type() {
    let (_file, result) = load_text("[metrics]\ninterval = 5\n", &[]);
    let problem = only_problem(result);
    assert_eq!(problem.key, "metrics.interval");
    assert_eq!(problem.kind, ProblemKind::WrongType);
    assert!(problem.message.contains("an integer (5)"), "{problem}");
}

#[test]
fn a_bad_socket_address_is_reported() {
    let (_file, result) = load_text("[api]\nlisten = \"127.0.0.1\"\n", &[]);
    let problem = only_problem(result);
    assert_eq!(problem.key, "api.listen");
    assert_eq!(problem.kind, ProblemKind::BadAddress);
    assert!(problem.message.contains("\"127.0.0.1\""), "{problem}");
    assert!(problem.message.contains("IP:PORT"), "{problem}");
}

#[test]
fn an_unknown_key_is_reported_with_file_and_key_and_a_suggestion() {
    let (file, result) = load_text(
        "[gossip]\nlisten = \"127.0.0.1:0\"\nintervall = \"1s\"\n",
        &[],
    );
    let problem = only_problem(result);
    assert_eq!(problem.file, file.path().display().to_string());
    assert_eq!(problem.key, "gossip.intervall");
    assert_eq!(problem.kind, ProblemKind::UnknownKey);
    assert!(
        problem.message.contains("did you mean \"interval\""),
        "{problem}"
    );
}

#[test]
fn a_key_in_the_wrong_section_points_to_its_section() {
    let (_file, result) = load_text("[gossip]\npriority = 1\n", &[]);
    let problem = only_problem(result);
    assert_eq!(problem.key, "gossip.priority");
    assert!(
        problem.message.contains("did you mean \"node.priority\""),
        "{problem}"
    );
}

#[test]
fn an_unknown_section_is_reported_with_a_suggestion() {
    let (_file, result) = load_text("[suprevision]\ntrees = \"x\"\n", &[]);
    let problem = only_problem(result);
    assert_eq!(problem.key, "suprevision");
    assert_eq!(problem.kind, ProblemKind::UnknownSection);
    assert!(
        problem.message.contains("did you mean \"supervision\""),
        "{problem}"
    );
}

#[test]
fn a_missing_name_is_reported_when_the_host_name_is_unknown() {
    let problem = only_problem(load_inner(None, &[], None));
    assert_eq!(problem.file, DEFAULTS);
    assert_eq!(problem.key, "node.name");
    assert_eq!(problem.kind, ProblemKind::MissingName);
    assert!(problem.message.starts_with("missing name"), "{problem}");
}

#[test]
fn an_empty_name_is_a_missing_name() {
    let (_file, result) = load_text("[node]\nname = \"  \"\n", &[]);
    let problem = only_problem(result);
    assert_eq!(problem.key, "node.name");
    assert_eq!(problem.kind, ProblemKind::MissingName);
}

#[test]
fn a_node_name_with_control_or_bidi_characters_is_refused_and_shown_escaped() {
    for (toml_name, shown) in [
        ("\"a\\u001b[2Jb\"", "a\\x1b[2Jb"),
        ("\"a\\u202eb\"", "a\\u{202e}b"),
        ("\"a:b\"", "a:b"),
        ("\"a b\"", "a b"),
    ] {
        let (_file, result) = load_text(&format!("[node]\nname = {toml_name}\n"), &[]);
        let problem = only_problem(result);
        assert_eq!(
            (problem.key.as_str(), problem.kind),
            ("node.name", ProblemKind::BadValue)
        );
        assert!(
            problem.message.contains(&format!("bad name \"{shown}\"")),
            "{problem}"
        );
        assert!(
            !problem.message.chars().any(crate::text::needs_escape),
            "{problem:?}"
        );
    }
}

#[test]
fn a_syntax_error_names_the_line_and_column() {
    let (file, result) = load_text("[node]\nname = \"a\"\npriority = = 3\n", &[]);
    let problem = only_problem(result);
    assert_eq!(problem.file, file.path().display().to_string());
    assert_eq!(problem.kind, ProblemKind::Syntax);
    assert!(problem.message.contains("line 3"), "{problem}");
    assert!(problem.message.contains("column"), "{problem}");
}

#[test]
fn an_unreadable_file_is_one_problem() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("absent.toml");
    let problem = only_problem(load_inner(Some(&missing), &[], Some("h".into())));
    assert_eq!(problem.kind, ProblemKind::Unreadable);
    assert_eq!(problem.file, missing.display().to_string());
}

#[test]
fn a_sink_reports_unknown_and_missing_keys() {
    let (_file, result) = load_text(
        "[[alerts.sinks]]\ntype = \"webhook\"\nurl = \"ftp://x\"\nformat = \"xml\"\n\
         [[alerts.sinks]]\ntype = \"email\"\nsmtp = \"m:25\"\nform = \"a@b\"\nto = []\n\
         [[alerts.sinks]]\ncomand = [\"x\"]\ntype = \"exec\"\n",
        &[],
    );
    let all = problems(result);
    let keys: Vec<&str> = all.iter().map(|p| p.key.as_str()).collect();
    for expected in [
        "alerts.sinks[0].url",
        "alerts.sinks[1].form",
        "alerts.sinks[1].from",
        "alerts.sinks[1].to",
        "alerts.sinks[2].comand",
        "alerts.sinks[2].command",
    ] {
        assert!(
            keys.contains(&expected),
            "no problem at {expected}: {all:#?}"
        );
    }
    let typo = all
        .iter()
        .find(|p| p.key == "alerts.sinks[2].comand")
        .expect("typo");
    assert!(typo.message.contains("did you mean \"command\""), "{typo}");
}

/// The email sink of `extra` (TOML lines after type, from and to).
fn email_sink(extra: &str) -> Result<SinkSpec, Vec<Problem>> {
    let (_file, result) = load_text(
        &format!(
            "[[alerts.sinks]]\ntype = \"email\"\nfrom = \"nbwatch <nb@example.org>\"\n\
             to = [\"me@example.org\"]\n{extra}"
        ),
        &[],
    );
    match result {
        Ok(mut config) => Ok(config.alerts.sinks.remove(0)),
        Err(errors) => Err(errors.0),
    }
}

#[test]
fn an_email_sink_secures_its_connection_by_port_unless_told() {
    for (smtp, tls) in [
        ("smtp = \"mail.example.org:587\"", SmtpTls::StartTls),
        ("smtp = \"mail.example.org:465\"", SmtpTls::Implicit),
        ("smtp = \"mail.example.org:25\"", SmtpTls::Plain),
        ("smtp = \"127.0.0.1:2525\"", SmtpTls::Plain),
        (
            "smtp = \"mail.example.org:2525\"\ntls = \"starttls\"",
            SmtpTls::StartTls,
        ),
        (
            "smtp = \"mail.example.org:25\"\ntls = \"tls\"",
            SmtpTls::Implicit,
        ),
        (
            "smtp = \"mail.example.org:587\"\ntls = \"none\"",
            SmtpTls::Plain,
        ),
    ] {
        match email_sink(smtp) {
            Ok(SinkSpec::Email { tls: got, .. }) => assert_eq!(got, tls, "{smtp}"),
            other => panic!("{smtp}: {other:?}"),
        }
    }
    assert_eq!(
        email_sink("smtp = \"[::1]:25\"").expect("v6 loads"),
        SinkSpec::Email {
            host: "::1".into(),
            port: 25,
            tls: SmtpTls::Plain,
            from: "nbwatch <nb@example.org>".into(),
            to: vec!["me@example.org".into()],
            auth: None,
        }
    );
}

#[test]
fn an_email_sink_logs_in_with_a_password_from_a_file_never_in_clear_text_off_this_host() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("smtp.password");
    std::fs::write(&file, "s3cret\nignored second line\n").expect("write");
    let login = format!(
        "username = \"me@example.org\"\npassword_file = \"{}\"",
        file.display()
    );
    let auth = SmtpAuth {
        username: "me@example.org".into(),
        password_file: file.clone(),
    };
    for smtp in [
        "smtp = \"mail.example.org:587\"",
        "smtp = \"mail.example.org:465\"",
        "smtp = \"127.0.0.1:25\"",
        "smtp = \"localhost:25\"",
    ] {
        match email_sink(&format!("{smtp}\n{login}")) {
            Ok(SinkSpec::Email { auth: got, .. }) => {
                assert_eq!(got.as_ref(), Some(&auth), "{smtp}")
            }
            other => panic!("{smtp}: {other:?}"),
        }
    }
    assert_eq!(auth.password().as_deref(), Ok("s3cret"));

    let found = email_sink(&format!("smtp = \"mail.example.org:25\"\n{login}"))
        .expect_err("a login in clear text to another host");
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].key, "alerts.sinks[0].tls");
    assert!(
        found[0].message.contains("never sent in clear text"),
        "{}",
        found[0]
    );

    let found = email_sink("smtp = \"m:587\"\nusername = \"me\"").expect_err("no file");
    assert_eq!(found[0].key, "alerts.sinks[0].password_file", "{found:#?}");
    assert_eq!(found[0].kind, ProblemKind::MissingKey);

    let found = email_sink(&format!(
        "smtp = \"m:587\"\npassword_file = \"{}\"",
        file.display()
    ))
    .expect_err("no user");
    assert_eq!(found[0].key, "alerts.sinks[0].username", "{found:#?}");

    let missing = dir.path().join("nope");
    let found = email_sink(&format!(
        "smtp = \"m:587\"\nusername = \"me\"\npassword_file = \"{}\"",
        missing.display()
    ))
    .expect_err("missing file");
    assert_eq!(found[0].key, "alerts.sinks[0].password_file", "{found:#?}");
    assert!(
        found[0]
            .message
            .contains("cannot read the SMTP password file")
            && found[0].message.contains("nope"),
        "{}",
        found[0]
    );

    std::fs::write(&file, "\n").expect("write");
    let found = email_sink(&format!("smtp = \"m:587\"\n{login}")).expect_err("empty file");
    assert!(found[0].message.contains("is empty"), "{}", found[0]);
}

#[test]
fn a_relative_smtp_password_file_is_beside_the_config_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("smtp.password"), "pw\n").expect("write");
    let path = dir.path().join("nbwatch.toml");
    std::fs::write(
        &path,
        "[[alerts.sinks]]\ntype = \"email\"\nsmtp = \"m:587\"\nfrom = \"a@b.org\"\n\
         to = [\"c@d.org\"]\nusername = \"u\"\npassword_file = \"smtp.password\"\n",
    )
    .expect("write");
    let config = load_inner(Some(&path), &[], Some("testhost".into())).expect("loads");
    let SinkSpec::Email {
        auth: Some(auth), ..
    } = &config.alerts.sinks[0]
    else {
        panic!("{:?}", config.alerts.sinks);
    };
    assert_eq!(auth.password_file, dir.path().join("smtp.password"));
}

#[test]
fn an_email_sink_names_a_bad_tls_server_or_address() {
    let found = email_sink("smtp = \"m:25\"\ntls = \"startls\"").expect_err("bad tls");
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].key, "alerts.sinks[0].tls");
    assert_eq!(found[0].kind, ProblemKind::BadValue);
    assert!(
        found[0].message.contains("did you mean \"starttls\""),
        "{}",
        found[0]
    );

    let found = email_sink("smtp = \"m:25\"\ntls = true").expect_err("not a string");
    assert_eq!(found[0].key, "alerts.sinks[0].tls");
    assert_eq!(found[0].kind, ProblemKind::WrongType);

    for smtp in [
        "mail.example.org",
        "mail.example.org:0",
        ":25",
        "::1:25",
        "m:smtp",
    ] {
        let found = email_sink(&format!("smtp = \"{smtp}\"")).expect_err(smtp);
        assert_eq!(found.len(), 1, "{smtp}: {found:#?}");
        assert_eq!(found[0].key, "alerts.sinks[0].smtp", "{smtp}");
        assert_eq!(found[0].kind, ProblemKind::BadAddress, "{smtp}");
    }

    let (_file, result) = load_text(
        "[[alerts.sinks]]\ntype = \"email\"\nsmtp = \"m:25\"\ntls = \"ssl\"\n\
         from = \"nobody\"\nto = [\"me@example.org\", \"you at example.org\"]\n",
        &[],
    );
    let keys: Vec<String> = problems(result).into_iter().map(|p| p.key).collect();
    assert_eq!(
        keys,
        [
            "alerts.sinks[0].tls",
            "alerts.sinks[0].from",
            "alerts.sinks[0].to[1]"
        ]
    );
}

#[test]
fn trees_are_relative_to_the_config_file_folder() {
    let (file, result) = load_text("[node]\nname = \"a\"\n", &[]);
    let folder = file.path().parent().expect("folder");
    let config = result.expect("loads");
    assert_eq!(config.supervision.trees, folder.join("supervisors"));

    let (file, result) = load_text("[supervision]\ntrees = \"mine\"\n", &[]);
    let folder = file.path().parent().expect("folder");
    assert_eq!(
        result.expect("loads").supervision.trees,
        folder.join("mine")
    );

    let (_file, result) = load_text("", &[("NBWATCH_SUPERVISION__TREES", "from-env")]);
    assert_eq!(
        result.expect("loads").supervision.trees,
        Path::new("from-env")
    );
}

#[test]
fn host_probes_are_relative_to_the_config_file_folder() {
    let (file, result) = load_text("[node]\nname = \"a\"\n", &[]);
    let folder = file.path().parent().expect("folder");
    assert_eq!(result.expect("loads").metrics.probes, folder.join("probes"));

    let (file, result) = load_text("[metrics]\nprobes = \"checks\"\n", &[]);
    let folder = file.path().parent().expect("folder");
    assert_eq!(result.expect("loads").metrics.probes, folder.join("checks"));

    let (_file, result) = load_text("[metrics]\nprobes = \"/etc/nbwatch/probes\"\n", &[]);
    assert_eq!(
        result.expect("loads").metrics.probes,
        Path::new("/etc/nbwatch/probes")
    );

    let (_file, result) = load_text("", &[("NBWATCH_METRICS__PROBES", "from-env")]);
    assert_eq!(result.expect("loads").metrics.probes, Path::new("from-env"));
}

#[test]
fn a_bad_or_misspelt_probes_key_is_a_problem() {
    let (_file, result) = load_text("[metrics]\nprobes = 3\n", &[]);
    let problems = result.expect_err("a number is not a folder").0;
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].key, "metrics.probes");

    let (_file, result) = load_text("[metrics]\nprobe = \"x\"\n", &[]);
    let problems = result.expect_err("unknown key").0;
    assert_eq!(problems[0].kind, ProblemKind::UnknownKey);
    assert!(
        problems[0].message.contains("did you mean \"probes\""),
        "{}",
        problems[0]
    );
}

#[test]
fn advertise_is_derived_from_the_bound_address() {
    let mut gossip = GossipConfig::default();
    assert_eq!(
        gossip.advertise_addr(addr("127.0.0.1:4000")),
        addr("127.0.0.1:4000")
    );
    let derived = gossip.advertise_addr(addr("0.0.0.0:4000"));
    assert_eq!(derived.port(), 4000);
    assert!(derived.is_ipv4() && !derived.ip().is_unspecified());
    gossip.advertise = Some(addr("10.1.2.3:0"));
    assert_eq!(
        gossip.advertise_addr(addr("0.0.0.0:4000")),
        addr("10.1.2.3:4000")
    );
    gossip.advertise = Some(addr("10.1.2.3:7710"));
    assert_eq!(
        gossip.advertise_addr(addr("0.0.0.0:4000")),
        addr("10.1.2.3:7710")
    );
}

#[test]
fn defaults_for_test_listen_on_loopback_port_zero() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = Config::defaults_for_test("n1", dir.path());
    assert_eq!(config.node.name, NodeName::new("n1"));
    assert_eq!(config.node.data_dir, dir.path());
    assert_eq!(config.gossip.listen, addr("127.0.0.1:0"));
    assert_eq!(config.api.listen, addr("127.0.0.1:0"));
    assert!(config.gossip.seeds.is_empty());
    assert!(config.supervision.trees.starts_with(dir.path()));
    assert!(config.metrics.probes.starts_with(dir.path()));
}

#[test]
fn the_sample_config_loads_cleanly() {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/nbwatch.toml");
    let config = match load_inner(Some(&sample), &[], Some("sample-host".into())) {
        Ok(config) => config,
        Err(errors) => panic!("the sample has problems:\n{errors}"),
    };
    assert_eq!(config.node.name, NodeName::new("sample-host"));
    assert_eq!(config.node.data_dir, Path::new("./nbwatch-data"));
    assert_eq!(config.gossip.listen, addr("127.0.0.1:7710"));
    assert_eq!(config.api.listen, addr("127.0.0.1:7711"));
    assert!(config.gossip.seeds.is_empty());
    assert!(config.alerts.sinks.is_empty());
    // The sample runs the quick-start tree and the shipped host probes.
    let etc = sample.parent().expect("etc");
    assert_eq!(
        config.supervision.trees,
        etc.join("../supervisors/quickstart")
    );
    assert_eq!(config.metrics.probes, etc.join("../probes"));
}

#[test]
fn service_log_rotation_is_configurable_and_checked() {
    let (_file, result) = load_text("", &[]);
    let config = result.expect("loads");
    assert_eq!(config.supervision.log_max_bytes, 10 * 1024 * 1024);
    assert_eq!(config.supervision.log_keep, 3);
    let (_file, result) = load_text("[supervision]\nlog_max_bytes = 4096\nlog_keep = 0\n", &[]);
    let config = result.expect("loads");
    assert_eq!(config.supervision.log_max_bytes, 4096);
    assert_eq!(config.supervision.log_keep, 0);
    let (_file, result) = load_text("[supervision]\nlog_keep = -1\n", &[]);
    let errors = result.expect_err("negative");
    assert!(
        errors
            .problems()
            .iter()
            .any(|p| p.key == "supervision.log_keep"),
        "{errors:?}"
    );
}

#[test]
fn a_webhook_url_that_is_not_http_or_https_is_refused() {
    let (_file, result) = load_text(
        "[[alerts.sinks]]\ntype = \"webhook\"\nurl = \"ftp://example.org/hook\"\n",
        &[],
    );
    let errors = result.expect_err("ftp");
    let p = &errors.problems()[0];
    assert_eq!(p.key, "alerts.sinks[0].url");
    assert!(p.message.contains("expected http(s)://"), "{}", p.message);
}

#[test]
fn api_allowed_hosts_are_bare_lower_case_names_and_a_bad_one_is_named_by_index() {
    let (_file, result) = load_text(
        "[api]\nallowed_hosts = [\"NBWatch.Home.Arpa.\", \"mythbox\"]\n",
        &[],
    );
    let config = result.expect("config");
    assert_eq!(config.api.allowed_hosts, ["nbwatch.home.arpa", "mythbox"]);
    let (_file, result) = load_text("[node]\nname = \"x\"\n", &[]);
    assert!(result.expect("config").api.allowed_hosts.is_empty());
    let (_file, result) = load_text(
        "[api]\nallowed_hosts = [\"ok\", \"evil.example:80\", \"http://x\"]\n",
        &[],
    );
    let keys: Vec<String> = problems(result).into_iter().map(|p| p.key).collect();
    assert_eq!(keys, ["api.allowed_hosts[1]", "api.allowed_hosts[2]"]);
    let (_file, result) = load_text("", &[("NBWATCH_API__ALLOWED_HOSTS", "a.lan, b.lan")]);
    assert_eq!(
        result.expect("config").api.allowed_hosts,
        ["a.lan", "b.lan"]
    );
}

#[test]
fn every_duration_and_count_key_has_a_floor_and_a_ceiling_named_with_file_and_key() {
    // (section, key, a value refused, a value accepted at the bound)
    let table: [(&str, &str, &str, &str); 17] = [
        ("gossip", "interval", "\"1ns\"", "\"10ms\""),
        ("gossip", "interval", "\"2m\"", "\"1m\""),
        ("gossip", "interval", "\"0s\"", "\"1s\""),
        ("metrics", "interval", "\"1ms\"", "\"1s\""),
        ("metrics", "interval", "\"2d\"", "\"0s\""),
        ("store", "raw_retention", "\"0s\"", "\"1h\""),
        ("store", "rollup_retention", "\"59m\"", "\"100y\""),
        ("store", "rollup_retention", "\"9000y\"", "\"365d\""),
        ("store", "backfill", "\"1s\"", "\"0s\""),
        ("store", "backfill", "\"400d\"", "\"366d\""),
        ("alerts", "flap_window", "\"1s\"", "\"10s\""),
        ("alerts", "repeat", "\"1s\"", "\"0s\""),
        ("alerts", "repeat", "\"31d\"", "\"1m\""),
        ("alerts", "flap_threshold", "1", "0"),
        ("alerts", "flap_threshold", "1001", "2"),
        ("supervision", "log_keep", "1000000", "100"),
        ("supervision", "log_max_bytes", "100", "4096"),
    ];
    for (section, key, refused, accepted) in table {
        let (file, result) = load_text(&format!("[{section}]\n{key} = {refused}\n"), &[]);
        let p = only_problem(result);
        let full = format!("{section}.{key}");
        assert_eq!(
            (p.key.as_str(), p.kind),
            (full.as_str(), ProblemKind::BadValue)
        );
        let shown = p.to_string();
        let path = file.path().display().to_string();
        assert!(
            shown.starts_with(&format!("{path}: {full}: ")) && shown.contains("out of range")
                || shown.contains("longer than 100y"),
            "{shown}"
        );
        let (_, result) = load_text(&format!("[{section}]\n{key} = {accepted}\n"), &[]);
        assert!(result.is_ok(), "{full} = {accepted}: {result:?}");
    }
    // From the environment the variable is named instead.
    let (_, result) = load_text("", &[("NBWATCH_METRICS__INTERVAL", "1ms")]);
    let p = only_problem(result);
    assert_eq!(p.file, ENVIRONMENT);
    assert!(
        p.message.contains("from 1s to 1day") && p.message.contains("NBWATCH_METRICS__INTERVAL"),
        "{p}"
    );
    // Every bound in the table is one a user can write and is ordered.
    for b in bounds::DURATIONS {
        assert!(
            b.min <= b.max && b.max <= crate::types::duration::MAX,
            "{b:?}"
        );
    }
}

#[test]
fn an_exposed_api_is_a_problem_of_the_config_itself_and_gossip_on_any_address_is_sealed() {
    for (text, key) in [
        ("[api]\nlisten = \"0.0.0.0:7711\"\n", "api.listen"),
        ("[api]\nlisten = \"[::]:7711\"\n", "api.listen"),
        ("[api]\nlisten = \"[::ffff:10.0.0.1]:7711\"\n", "api.listen"),
    ] {
        let (_, result) = load_text(text, &[]);
        let p = only_problem(result);
        assert_eq!(
            (p.key.as_str(), p.kind),
            (key, ProblemKind::BadValue),
            "{text}"
        );
        assert!(p.message.contains("insecure = true"), "{p}");
    }
    // Loopback in every spelling, or asked for: accepted.
    for text in [
        "[api]\nlisten = \"[::ffff:127.0.0.1]:7711\"\n[gossip]\nlisten = \"[::ffff:127.0.0.1]:7710\"\n",
        "[api]\nlisten = \"[::1]:7711\"\n[gossip]\nlisten = \"127.0.0.2:7710\"\n",
        "[api]\nlisten = \"0.0.0.0:7711\"\ninsecure = true\n",
        "[gossip]\nlisten = \"0.0.0.0:7710\"\ninsecure = true\n",
        "[gossip]\nlisten = \"0.0.0.0:7710\"\nkey_file = \"k\"\n",
        // No key file: the node seals with the key it makes in its data dir.
        "[gossip]\nlisten = \"0.0.0.0:7710\"\n",
    ] {
        let (_, result) = load_text(text, &[]);
        assert!(result.is_ok(), "{text}: {result:?}");
    }
    let mapped: std::net::IpAddr = "::ffff:127.0.0.1".parse().expect("ip");
    assert!(exposure::is_loopback(mapped));
}

#[test]
fn a_weight_must_be_a_positive_number() {
    for (text, says) in [
        ("weight = 0", "out of range"),
        ("weight = -1.5", "out of range"),
        ("weight = \"heavy\"", "a positive number"),
    ] {
        let (_file, result) = load_text(&format!("[node]\nname = \"a\"\n{text}\n"), &[]);
        let all = problems(result);
        let p = all.iter().find(|p| p.key == "node.weight").expect(text);
        assert!(p.message.contains(says), "{text}: {}", p.message);
    }
    let (_file, result) = load_text("[node]\nname = \"a\"\nweight = 3\n", &[]);
    assert_eq!(result.expect("an integer weight").node.weight, 3.0);
}

#[test]
fn discovery_is_off_by_default_and_needs_sealed_gossip_and_an_address_of_its_mode() {
    let (_, result) = load_text("", &[]);
    assert_eq!(result.expect("defaults").gossip.discover, None);
    let (_, result) = load_text("[gossip]\ndiscover = \"multicast\"\n", &[]);
    let d = result.expect("valid").gossip.discover.expect("on");
    assert_eq!(
        (d.mode, d.address),
        (DiscoverMode::Multicast, DEFAULT_MULTICAST)
    );
    let (_, result) = load_text(
        "[gossip]\ndiscover = \"broadcast\"\ndiscover_address = \"10.0.0.255:7799\"\n",
        &[],
    );
    let d = result.expect("valid").gossip.discover.expect("on");
    assert_eq!(
        (d.mode, d.address),
        (DiscoverMode::Broadcast, addr("10.0.0.255:7799"))
    );
    for (text, key, kind, says) in [
        (
            "[gossip]\ndiscover = \"mdns\"\n",
            "gossip.discover",
            ProblemKind::BadValue,
            "\"multicast\"",
        ),
        (
            "[gossip]\ndiscover = \"multicast\"\ninsecure = true\n",
            "gossip.discover",
            ProblemKind::BadValue,
            "sealed",
        ),
        (
            "[gossip]\ndiscover = \"multicast\"\ndiscover_address = \"10.0.0.255:7712\"\n",
            "gossip.discover_address",
            ProblemKind::BadAddress,
            "multicast group",
        ),
    ] {
        let (_, result) = load_text(text, &[]);
        let p = only_problem(result);
        assert_eq!((p.key.as_str(), p.kind), (key, kind), "{text}");
        assert!(p.message.contains(says), "{p}");
    }
}

#[test]
fn a_webhook_url_and_token_can_be_kept_in_files_and_a_missing_or_bad_one_is_named_not_shown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = dir.path().join("hook.url");
    let token = dir.path().join("hook.token");
    std::fs::write(&url, "http://127.0.0.1:9/secret-path\n").expect("write");
    std::fs::write(&token, "t0ken\n").expect("write");
    let text = format!(
        "[[alerts.sinks]]\ntype = \"webhook\"\nurl_file = \"{}\"\ntoken_file = \"{}\"\n",
        url.display(),
        token.display()
    );
    let (_, result) = load_text(&text, &[]);
    assert_eq!(
        result.expect("valid").alerts.sinks,
        [SinkSpec::Webhook {
            url: WebhookUrl::File(url.clone()),
            format: WebhookFormat::Json,
            token_file: Some(token.clone()),
            recipient: None,
            ca_file: None,
        }]
    );
    std::fs::write(&url, "ftp://hooks.example/T000/secret\n").expect("write");
    let missing = dir.path().join("none.token");
    let text = format!(
        "[[alerts.sinks]]\ntype = \"webhook\"\nurl_file = \"{}\"\ntoken_file = \"{}\"\n\
         [[alerts.sinks]]\ntype = \"webhook\"\nurl = \"http://a/\"\nurl_file = \"x\"\n\
         [[alerts.sinks]]\ntype = \"webhook\"\n",
        url.display(),
        missing.display()
    );
    let (_, result) = load_text(&text, &[]);
    let all = problems(result);
    let keys: Vec<&str> = all.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "alerts.sinks[0].url_file",
            "alerts.sinks[0].token_file",
            "alerts.sinks[1].url_file",
            "alerts.sinks[2].url"
        ],
        "{all:#?}"
    );
    let text = all
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(!text.contains("secret"), "a secret URL was shown: {text}");
    assert!(text.contains("the URL in"), "{text}");
    assert!(text.contains("none.token"), "{text}");
}

#[test]
fn a_host_declares_the_commands_an_exec_sink_may_run_by_name() {
    let (_f, result) = load_text(
        r#"
        [alerts]
        commands = { page = ["/usr/local/bin/page", "--urgent"] }
        [[alerts.sinks]]
        type = "exec"
        command_name = "page"
        "#,
        &[],
    );
    let config = result.expect("valid");
    assert_eq!(
        config.alerts.sinks,
        [SinkSpec::Named {
            name: "page".into()
        }]
    );
    assert_eq!(
        config.alerts.commands["page"],
        ["/usr/local/bin/page", "--urgent"]
    );
    let (sinks, left_out) = config.alerts.resolved();
    assert!(left_out.is_empty());
    assert_eq!(
        sinks,
        [SinkSpec::Exec {
            command: vec!["/usr/local/bin/page".into(), "--urgent".into()]
        }]
    );

    // A name it does not declare, and an empty command line: both said.
    let (_f, result) = load_text(
        r#"
        [alerts]
        commands = { pager = [] }
        [[alerts.sinks]]
        type = "exec"
        command_name = "page"
        "#,
        &[],
    );
    let all = problems(result);
    let keys: Vec<&str> = all.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        ["alerts.commands.pager", "alerts.sinks[0].command_name"],
        "{all:#?}"
    );
    assert!(
        all[1].message.contains("not declared in [alerts.commands]"),
        "{all:#?}"
    );
}

#[test]
fn remediation_actions_are_read_with_their_defaults_and_every_mistake_named() {
    use super::{ActionKind, ActionOn, ActionSpec};
    let (_f, result) = load_text(
        r#"
        [alerts]
        commands = { plug = ["/usr/local/bin/plug", "cycle"] }
        [[alerts.actions]]
        on = "node_down"
        subject = "nas"
        type = "wol"
        [[alerts.actions]]
        on = "node_down"
        after = "2m"
        type = "exec"
        command_name = "plug"
        [[alerts.actions]]
        on = "node_down"
        subject = "tv"
        after = "10s"
        type = "wol"
        address = "10.0.0.255:7"
        "#,
        &[],
    );
    let config = result.expect("valid");
    assert_eq!(
        config.alerts.actions,
        [
            ActionSpec {
                on: ActionOn::NodeDown,
                subject: Some("nas".into()),
                after: Duration::ZERO,
                kind: ActionKind::Wol {
                    address: "255.255.255.255:9".parse().unwrap()
                },
            },
            ActionSpec {
                on: ActionOn::NodeDown,
                subject: None,
                after: Duration::from_secs(120),
                kind: ActionKind::Named {
                    name: "plug".into()
                },
            },
            ActionSpec {
                on: ActionOn::NodeDown,
                subject: Some("tv".into()),
                after: Duration::from_secs(10),
                kind: ActionKind::Wol {
                    address: "10.0.0.255:7".parse().unwrap()
                },
            },
        ]
    );

    let (_f, result) = load_text(
        r#"
        [[alerts.actions]]
        on = "node_up"
        type = "wol"
        after = "soon"
        [[alerts.actions]]
        type = "reboot"
        on = "node_down"
        [[alerts.actions]]
        on = "node_down"
        type = "exec"
        command_name = "nothing"
        [[alerts.actions]]
        on = "node_down"
        type = "wol"
        command = ["x"]
        address = "nowhere"
        [[alerts.actions]]
        type = "exec"
        [[alerts.actions]]
        on = "service_failed"
        type = "wol"
        [[alerts.actions]]
        on = "node_down"
        subject = "nas:pg"
        type = "exec"
        command = ["x"]
        "#,
        &[],
    );
    let all = problems(result);
    let keys: Vec<&str> = all.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "alerts.actions[0].on",
            "alerts.actions[0].after",
            "alerts.actions[1].type",
            "alerts.actions[2].command_name",
            "alerts.actions[3].command",
            "alerts.actions[3].address",
            "alerts.actions[4].on",
            "alerts.actions[4].command",
            "alerts.actions[5].on",
            "alerts.actions[6].subject",
        ],
        "{all:#?}"
    );
    assert!(
        all[0].message.contains("node_down or service_failed"),
        "{all:#?}"
    );
    assert!(
        all[2].message.contains("unknown action type \"reboot\""),
        "{all:#?}"
    );
    assert!(
        all[3].message.contains("not declared in [alerts.commands]"),
        "{all:#?}"
    );
}

#[test]
fn an_alertmanager_sink_takes_one_or_more_http_base_urls() {
    let text = "[[alerts.sinks]]\ntype = \"alertmanager\"\n\
                urls = [\"http://127.0.0.1:9093\", \"http://am2:9093/am/\"]\n";
    let (_, result) = load_text(text, &[]);
    assert_eq!(
        result.expect("valid").alerts.sinks,
        [SinkSpec::Alertmanager {
            urls: vec!["http://127.0.0.1:9093".into(), "http://am2:9093/am/".into()]
        }]
    );
    let text = "[[alerts.sinks]]\ntype = \"alertmanager\"\nurls = []\n\
                [[alerts.sinks]]\ntype = \"alertmanager\"\nurls = [\"http://a\", \"am:9093\"]\n\
                [[alerts.sinks]]\ntype = \"alertmanager\"\nurl = \"http://a\"\n";
    let (_, result) = load_text(text, &[]);
    let all = problems(result);
    let said: Vec<(&str, bool)> = (all.iter())
        .map(|p| (p.key.as_str(), p.to_string().contains("Alertmanager")))
        .collect();
    assert_eq!(
        said,
        [
            ("alerts.sinks[0].urls", true),
            ("alerts.sinks[1].urls[1]", true),
            ("alerts.sinks[2].url", false),
            ("alerts.sinks[2].urls", false),
        ],
        "{all:#?}"
    );
}

#[test]
fn phone_webhooks_need_their_token_and_recipient_and_a_ca_file_must_hold_certificates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = dir.path().join("bot.token");
    std::fs::write(&token, "123:abc\n").expect("write");
    let text = format!(
        "[[alerts.sinks]]\ntype = \"webhook\"\nformat = \"telegram\"\ntoken_file = \"{}\"\n\
         chat_id = -1001\n\
         [[alerts.sinks]]\ntype = \"webhook\"\nformat = \"ntfy\"\nurl = \"https://ntfy.sh/house\"\n",
        token.display()
    );
    let (_, result) = load_text(&text, &[]);
    assert_eq!(
        result.expect("valid").alerts.sinks,
        [
            SinkSpec::Webhook {
                url: WebhookUrl::Given("https://api.telegram.org".into()),
                format: WebhookFormat::Telegram,
                token_file: Some(token.clone()),
                recipient: Some("-1001".into()),
                ca_file: None,
            },
            SinkSpec::Webhook {
                url: WebhookUrl::Given("https://ntfy.sh/house".into()),
                format: WebhookFormat::Ntfy,
                token_file: None,
                recipient: None,
                ca_file: None,
            },
        ]
    );
    let not_pem = dir.path().join("ca.pem");
    std::fs::write(&not_pem, "not a certificate\n").expect("write");
    let text = format!(
        "[[alerts.sinks]]\ntype = \"webhook\"\nformat = \"pushover\"\n\
         [[alerts.sinks]]\ntype = \"webhook\"\nformat = \"slack\"\nurl = \"https://h/x\"\nchat_id = 5\n\
         [[alerts.sinks]]\ntype = \"webhook\"\nurl = \"https://h/x\"\nca_file = \"{}\"\n\
         [[alerts.sinks]]\ntype = \"webhook\"\nformat = \"pager\"\nurl = \"https://h/x\"\n",
        not_pem.display()
    );
    let (_, result) = load_text(&text, &[]);
    let all = problems(result);
    let keys: Vec<&str> = all.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "alerts.sinks[0].token_file",
            "alerts.sinks[0].user",
            "alerts.sinks[1].chat_id",
            "alerts.sinks[2].ca_file",
            "alerts.sinks[3].format",
        ],
        "{all:#?}"
    );
    assert!(
        all[2].message.contains("not used by a slack webhook"),
        "{all:#?}"
    );
    assert!(all[3].message.contains("no certificate"), "{all:#?}");
}

#[test]
fn an_api_with_tls_may_listen_off_loopback_and_its_files_must_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args([
            "-nodes", "-keyout", "key.pem", "-out", "cert.pem", "-days", "1",
        ])
        .args(["-subj", "/CN=nas"])
        .current_dir(dir.path())
        .output()
        .expect("openssl");
    assert!(out.status.success(), "{out:?}");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let text = format!(
        "[api]\nlisten = \"0.0.0.0:7711\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n\
         [metrics]\nlisten = \"0.0.0.0:9711\"\n",
        cert.display(),
        key.display()
    );
    let (_, result) = load_text(&text, &[]);
    let config = result.expect("valid");
    assert_eq!(
        config.api.tls,
        Some(ApiTls {
            cert: cert.clone(),
            key: key.clone()
        })
    );
    assert_eq!(config.metrics.listen, Some(addr("0.0.0.0:9711")));
    // One without the other, a key file that is a certificate, no TLS off loopback.
    let text = format!(
        "[api]\nlisten = \"0.0.0.0:7711\"\ntls_cert = \"{}\"\n",
        cert.display()
    );
    let keys: Vec<String> = problems(load_text(&text, &[]).1)
        .into_iter()
        .map(|p| p.key)
        .collect();
    assert_eq!(keys, ["api.tls_key", "api.listen"]);
    let text = format!(
        "[api]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
        cert.display(),
        cert.display()
    );
    let p = only_problem(load_text(&text, &[]).1);
    assert_eq!(p.key, "api.tls_key");
    assert!(p.message.contains("no private key"), "{p:?}");
}

#[test]
fn remote_write_takes_an_http_or_https_url() {
    let (_, result) = load_text(
        "[store]\nremote_write = \"http://prometheus:9090/api/v1/write\"\n",
        &[],
    );
    assert_eq!(
        result.expect("valid").store.remote_write.as_deref(),
        Some("http://prometheus:9090/api/v1/write")
    );
    for bad in ["prometheus:9090", "https:///x"] {
        let text = format!("[store]\nremote_write = \"{bad}\"\n");
        let p = only_problem(load_text(&text, &[]).1);
        assert_eq!(p.key, "store.remote_write");
        assert!(p.message.contains("remote-write URL"), "{p:?}");
    }
}
