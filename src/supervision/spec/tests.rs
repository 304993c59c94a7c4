use super::*;

fn parse(text: &str) -> (Option<TreeSpec>, Vec<Problem>) {
    let mut problems = Vec::new();
    let tree = parse_tree(Path::new("supervisors/tv.toml"), text, &mut problems);
    (tree, problems)
}

const CONTRACT_TREE: &str = r#"
name = "tv"
strategy = "rest_for_one"
intensity = 3
period = "60s"

[[children]]
name = "mythbackend"
command = ["/usr/bin/mythbackend", "--logpath", "/var/log/mythtv"]
restart = "permanent"
shutdown = "10s"
[[children.probes]]
type = "tcp"
target = "127.0.0.1:6544"
interval = "10s"
timeout = "2s"
failures = 3

[[children]]
name = "web"
strategy = "one_for_all"
[[children.children]]
name = "nginx"
command = ["/usr/sbin/nginx", "-g", "daemon off;"]
"#;

#[test]
fn the_contract_tree_parses_into_typed_specs() {
    let (tree, problems) = parse(CONTRACT_TREE);
    assert!(problems.is_empty(), "{problems:?}");
    let root = tree.expect("tree").root;
    assert_eq!(root.name, "tv");
    assert_eq!(root.strategy, Strategy::RestForOne);
    assert_eq!((root.intensity, root.period), (3, Duration::from_secs(60)));
    let ChildSpec::Service(backend) = &root.children[0] else {
        panic!("{:?}", root.children[0])
    };
    assert_eq!(backend.shutdown, Shutdown::Timeout(Duration::from_secs(10)));
    assert_eq!(
        backend.probes[0].target,
        ProbeTarget::Tcp("127.0.0.1:6544".into())
    );
    let ChildSpec::Supervisor(web) = &root.children[1] else {
        panic!("{:?}", root.children[1])
    };
    assert_eq!(web.strategy, Strategy::OneForAll);
    assert!(matches!(&web.children[0], ChildSpec::Service(s) if s.name == "nginx"));
}

#[test]
fn defaults_are_one_for_one_permanent_and_a_five_second_shutdown() {
    let (tree, problems) =
        parse("name = \"t\"\n[[children]]\nname = \"a\"\ncommand = [\"sleep\", \"1\"]\n");
    assert!(problems.is_empty(), "{problems:?}");
    let root = tree.expect("tree").root;
    assert_eq!(root.strategy, Strategy::OneForOne);
    let ChildSpec::Service(a) = &root.children[0] else {
        panic!()
    };
    assert_eq!(a.restart, RestartType::Permanent);
    assert_eq!(a.shutdown, Shutdown::Timeout(DEFAULT_SHUTDOWN));
}

#[test]
fn every_problem_of_a_bad_tree_is_named_with_its_file_and_key() {
    let (tree, problems) = parse(
        r#"
name = "tv"
strategy = "one_for_some"
period = "soon"
colour = "blue"
[[children]]
name = "a"
command = []
restart = "sometimes"
shutdown = "later"
[[children.probes]]
type = "smoke"
"#,
    );
    assert!(tree.is_none());
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    for key in [
        "strategy",
        "period",
        "colour",
        "children[0].command",
        "children[0].restart",
        "children[0].shutdown",
        "children[0].probes[0].type",
    ] {
        assert!(keys.contains(&key), "no problem for {key}: {problems:#?}");
    }
    assert!(problems.iter().all(|p| p.file == "supervisors/tv.toml"));
    let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    assert!(
        text.iter()
            .any(|t| t.contains("one_for_some") && t.contains("rest_for_one")),
        "{text:?}"
    );
}

#[test]
fn an_http_probe_needs_an_http_url() {
    let tree = |url: &str| {
        format!(
            "name = \"t\"\n[[children]]\nname = \"web\"\ncommand = [\"httpd\"]\n\
             [[children.probes]]\ntype = \"http\"\nurl = \"{url}\"\n"
        )
    };
    let (spec, problems) = parse(&tree("http://127.0.0.1:8080/health"));
    assert!(problems.is_empty(), "{problems:?}");
    let root = spec.expect("tree").root;
    let ChildSpec::Service(web) = &root.children[0] else {
        panic!("{:?}", root.children[0])
    };
    assert_eq!(
        web.probes[0].target,
        ProbeTarget::Http("http://127.0.0.1:8080/health".into())
    );
    for url in ["https://example.org/", "example.org:80", "http://h:port/"] {
        let (spec, problems) = parse(&tree(url));
        assert!(spec.is_none(), "{url}");
        assert_eq!(problems.len(), 1, "{url}: {problems:?}");
        assert_eq!(problems[0].key, "children[0].probes[0].url", "{url}");
    }
}

#[test]
fn a_toml_syntax_error_is_reported_for_the_whole_file() {
    let (tree, problems) = parse("name = \"tv\"\n[[children]\n");
    assert!(tree.is_none());
    assert_eq!(problems[0].kind, ProblemKind::Syntax);
}

#[test]
fn a_child_with_both_a_command_and_children_is_refused() {
    let (tree, problems) = parse(
        "name = \"t\"\n[[children]]\nname = \"x\"\ncommand = [\"a\"]\nstrategy = \"one_for_all\"\n",
    );
    assert!(tree.is_none());
    assert_eq!(problems[0].key, "children[0]");
}

#[test]
fn service_names_are_unique_across_the_trees_of_a_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tree = |name: &str| {
        format!("name = \"{name}\"\n[[children]]\nname = \"db\"\ncommand = [\"sleep\", \"9\"]\n")
    };
    std::fs::write(dir.path().join("a.toml"), tree("a")).unwrap();
    std::fs::write(dir.path().join("b.toml"), tree("b")).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a tree").unwrap();
    let problems = load_trees(dir.path()).expect_err("duplicate service");
    assert_eq!(problems.len(), 1);
    assert!(problems[0].file.ends_with("b.toml"), "{:?}", problems[0]);
    assert!(problems[0].message.contains("\"db\"") && problems[0].message.contains("a.toml"));
}

#[test]
fn a_missing_trees_folder_means_no_trees() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert_eq!(load_trees(&dir.path().join("none")), Ok(Vec::new()));
}

#[test]
fn a_readiness_probe_parses_with_its_deadline_and_rejects_failures() {
    let text = r#"
name = "t"
[[children]]
name = "db"
command = ["/usr/sbin/mariadbd"]
[children.ready]
type = "tcp"
target = "127.0.0.1:3306"
interval = "500ms"
deadline = "2m"
"#;
    let (tree, problems) = parse(text);
    assert!(problems.is_empty(), "{problems:?}");
    let tree = tree.expect("tree");
    let ChildSpec::Service(db) = &tree.root.children[0] else {
        panic!("a service");
    };
    let ready = db.ready.as_ref().expect("ready");
    assert_eq!(ready.deadline, Duration::from_secs(120));
    assert_eq!(ready.probe.interval, Duration::from_millis(500));
    assert_eq!(
        ready.probe.target,
        ProbeTarget::Tcp("127.0.0.1:3306".into())
    );

    let (_, problems) = parse(&text.replace("deadline = \"2m\"", "failures = 3"));
    assert!(
        problems
            .iter()
            .any(|p| p.key == "children[0].ready.failures" && p.file.ends_with("tv.toml")),
        "{problems:?}"
    );
    let (_, problems) = parse(&text.replace("[children.ready]", "ready = 1\n[children.x]"));
    assert!(
        problems.iter().any(|p| p.key == "children[0].ready"),
        "{problems:?}"
    );
}

#[test]
fn the_shipped_trees_parse_cleanly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("supervisors");
    for file in [root.join("mythtv.toml"), root.join("quickstart/hello.toml")] {
        let text = std::fs::read_to_string(&file).expect("shipped tree");
        let mut problems = Vec::new();
        let tree = parse_tree(&file, &text, &mut problems);
        assert!(problems.is_empty(), "{}: {problems:?}", file.display());
        assert!(tree.is_some());
    }
}

#[test]
fn placement_and_requirements_parse_and_their_problems_are_named() {
    let (tree, problems) = parse(
        r#"
name = "tv"
placement = { failover = ["nas", "desktop"] }
takeover = false
[[children]]
name = "app"
command = ["/bin/true"]
requires = ["nas:postgres", "desktop:redis"]
on_dependency_loss = "restart"
"#,
    );
    assert!(problems.is_empty(), "{problems:#?}");
    let tree = tree.expect("tree");
    assert_eq!(
        tree.placement,
        Some(Placement {
            failover: vec!["nas".into(), "desktop".into()],
            takeover: false
        })
    );
    let ChildSpec::Service(app) = &tree.root.children[0] else {
        panic!("a service");
    };
    assert_eq!(app.requires.len(), 2);
    assert_eq!(app.requires[0].to_string(), "nas:postgres");
    assert_eq!(app.on_dependency_loss, OnDependencyLoss::Restart);
    let (tree, _) = parse("name = \"tv\"\nplacement = \"any\"\n");
    assert_eq!(
        tree.expect("tree").placement,
        Some(Placement {
            failover: vec![],
            takeover: true
        })
    );

    let (tree, problems) = parse(
        r#"
name = "tv"
placement = "everywhere"
takeover = "yes"
[[children]]
name = "app"
command = ["/bin/true"]
requires = ["postgres", "nas:"]
on_dependency_loss = "panic"
[[children]]
name = "inner"
strategy = "one_for_one"
placement = "any"
"#,
    );
    assert!(tree.is_none());
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    for key in [
        "placement",
        "takeover",
        "children[0].requires[0]",
        "children[0].requires[1]",
        "children[0].on_dependency_loss",
        "children[1].placement",
    ] {
        assert!(keys.contains(&key), "no problem for {key}: {problems:#?}");
    }
    let (_, problems) = parse("name = \"tv\"\nplacement = { failover = [] }\n");
    assert_eq!(problems[0].key, "placement.failover", "{problems:#?}");
}

#[test]
fn names_with_control_characters_or_path_separators_are_refused_at_their_key() {
    for bad in [
        "x\u{1b}[2J",
        "a\nb",
        "a\rb",
        "nul\u{0}",
        "del\u{7f}",
        "rtl\u{202e}gol",
        "..\\x",
        "a/b",
    ] {
        let quoted = toml::Value::String(bad.to_string()).to_string();
        let text =
            format!("name = {quoted}\n[[children]]\nname = {quoted}\ncommand = [\"/bin/true\"]\n");
        let (tree, problems) = parse(&text);
        assert!(tree.is_none(), "{bad:?} was accepted");
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["name", "children[0].name"], "{bad:?}: {problems:#?}");
        for p in &problems {
            assert_eq!(p.file, "supervisors/tv.toml", "{p:?}");
            let shown = p.to_string();
            assert!(
                !shown.chars().any(crate::text::needs_escape),
                "the problem itself carries the raw name: {shown:?}"
            );
        }
    }
    assert!(usable_name("mythbackend") && usable_name("web-1.2_x") && usable_name("häus"));
}

/// Each problem as the operator reads it.
fn shown(text: &str) -> Vec<String> {
    let (tree, problems) = parse(text);
    assert!(tree.is_none(), "{text}");
    problems
        .iter()
        .map(|p| format!("{:?} {p}", p.kind))
        .collect()
}

#[test]
fn problems_keep_their_wording_key_and_order() {
    let f = "supervisors/tv.toml";
    let text = "name = \"t\"\nintensity = \"x\"\nzeta = 1\nalpha = 2\n\
                backoff = { initial = \"x\", max = 1, foo = 1 }\n\
                [[children]]\nname = \"a b\"\ncommand = [\"x\", 1]\nshutdown = 1\n\
                env = { Z = 1, A = \"x\", B = 2 }\nprobes = [1]\nready = 1\n\
                requires = [1, \"n:s\"]\nrestart = \"sometimes\"\n\
                [[children]]\nname = \"b\"\ncommand = \"x\"\n[[children.probes]]\ntype = 1\n\
                [[children.probes]]\ntype = \"tcp\"\nfailures = -1\n";
    let expected = [
        "UnknownKey alpha: unknown key; expected one of name, strategy, intensity, period, \
         backoff, children, placement, takeover",
        "UnknownKey zeta: unknown key; expected one of name, strategy, intensity, period, \
         backoff, children, placement, takeover",
        "WrongType intensity: expected a whole number ≥ 0",
        "UnknownKey backoff.foo: unknown key; expected one of initial, max, reset_after",
        "BadDuration backoff.initial: bad duration \"x\" (expected number at 0); expected a \
         number and a unit, like \"500ms\", \"5s\" or \"2m\"",
        "WrongType backoff.max: expected a string",
        "BadValue children[0].name: \"a b\" is not a usable name (no spaces, ':', '/', '\\' or \
         control characters)",
        "WrongType children[0].command: every element must be a string",
        "BadValue children[0].restart: unknown restart \"sometimes\"; expected permanent, \
         transient, temporary",
        "WrongType children[0].shutdown: expected a string",
        "WrongType children[0].env.B: expected a string",
        "WrongType children[0].env.Z: expected a string",
        "WrongType children[0].probes[0]: expected a table",
        "WrongType children[0].ready: expected a table: a probe (type, target/url/command, \
         interval, timeout) and a deadline",
        "BadValue children[0].requires[0]: expected an array of \"node:service\" strings, like \
         [\"nas:postgres\"]",
        "WrongType children[1].command: expected an array of strings, like [\"/usr/bin/app\", \
         \"--flag\"]",
        "WrongType children[1].probes[0].type: expected a string",
        "MissingKey children[1].probes[0].type: missing: tcp, http or exec",
        "MissingKey children[1].probes[1].target: missing",
    ];
    let expected: Vec<String> = expected
        .iter()
        .map(|e| {
            let (kind, rest) = e.split_once(' ').expect("kind");
            format!("{kind} {f}: {rest}")
        })
        .collect();
    assert_eq!(shown(text), expected);
}

#[test]
fn a_date_is_no_string_in_a_tree() {
    let text = "name = 1979-05-27\nperiod = 1979-05-27T07:32:00Z\n";
    assert_eq!(
        shown(text),
        [
            "WrongType supervisors/tv.toml: name: expected a string",
            "WrongType supervisors/tv.toml: period: expected a string",
        ]
    );
}
