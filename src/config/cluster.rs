//! The cluster settings document: one TOML document of cluster-wide settings that any host
//! pushes (`nbwatch cluster-config push`) and gossip spreads to every host
//! (`control::settings`). It holds the `[alerts]` table: flap rules, reminders and sinks.
//!
//! It is read with the node config's own readers, so a bad document is refused with every
//! problem in it, on the host that pushes it, before it spreads. Three things differ from a
//! node's own `[alerts]`, because the document is written once and applied everywhere:
//!
//! * a file it names (`password_file`, `token_file`, `url_file`) is read on the host that
//!   sends, so it must be absolute and is not looked for where the document is checked;
//!   secrets never travel, only their paths;
//! * `[alerts.commands]` is not in it: what a host lets an alert run is that host's own
//!   choice, and an exec sink names one of those commands by `command_name`;
//! * an exec sink that gives a command line (`command`) would let anyone who can push
//!   settings run a program on every host; such a document is applied only when an operator
//!   key the host trusts signed it (`control::settings` checks this, since the signature is
//!   not part of the text).
//!
//! Which wins: a key the document sets replaces the node's own; a key it leaves out keeps the
//! node's own ([`AlertsConfig::with_cluster`]). Rules decide what an incident is, and the host
//! that sends changes with the view, so they are best the same everywhere.

use super::sinks::{Origin, sinks};
use super::walk::{Table, Walker};
use super::{AlertsConfig, ConfigErrors, ProblemKind, SinkSpec, schema, toml_table};
use std::path::Path;
use std::time::Duration;

/// How problems of the document name it.
pub const LABEL: &str = "cluster settings";
/// The longest document, in bytes: it travels in every host's gossiped state.
pub const MAX_LEN: usize = 16 * 1024;

/// What the document sets; what it leaves out stays each node's own.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterSettings {
    pub alerts: AlertsPatch,
}

/// The `[alerts]` keys the document sets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AlertsPatch {
    pub flap_threshold: Option<u32>,
    pub flap_window: Option<Duration>,
    pub repeat: Option<Duration>,
    pub sinks: Option<Vec<SinkSpec>>,
}

impl ClusterSettings {
    /// Reads a document, or every problem in it.
    pub fn parse(text: &str) -> Result<ClusterSettings, ConfigErrors> {
        let label = Path::new(LABEL);
        if text.len() > MAX_LEN {
            let message = format!(
                "the document is {} bytes, more than the limit of {MAX_LEN}",
                text.len()
            );
            return Err(ConfigErrors(vec![super::Problem::at(
                label,
                "",
                ProblemKind::BadValue,
                message,
            )]));
        }
        let mut problems = Vec::new();
        let Some(root) = toml_table(label, text, &mut problems) else {
            return Err(ConfigErrors(problems));
        };
        let mut w = Walker::new(Some(LABEL.to_string()));
        let alerts = read(&mut w, &root);
        match w.problems.is_empty() {
            true => Ok(ClusterSettings { alerts }),
            false => Err(ConfigErrors(w.problems)),
        }
    }

    /// The exec sinks that give a command line instead of naming a host's command, by their
    /// place in `alerts.sinks` (0-based): what only an operator's signature allows.
    pub fn command_lines(&self) -> Vec<usize> {
        let sinks = self.alerts.sinks.as_deref().unwrap_or_default();
        (sinks.iter().enumerate())
            .filter(|(_, s)| matches!(s, SinkSpec::Exec { .. }))
            .map(|(i, _)| i)
            .collect()
    }
}

fn read(w: &mut Walker, root: &Table) -> AlertsPatch {
    let known: Vec<&str> = schema::CLUSTER_SECTIONS.iter().map(|(s, _)| *s).collect();
    let mut names: Vec<&String> = root.keys().collect();
    names.sort();
    for name in names {
        if known.contains(&name.as_str()) {
            continue;
        }
        let message = if schema::section_names().contains(&name.as_str()) {
            format!("[{name}] is each host's own setting: only [alerts] is cluster-wide")
        } else {
            format!(
                "unknown section [{name}]{}",
                schema::hint(name, &known, false)
            )
        };
        w.problem(&root[name], name, ProblemKind::UnknownSection, message);
    }
    let mut patch = AlertsPatch::default();
    let Some(v) = root.get("alerts") else {
        return patch;
    };
    let Some(table) = w.table(v, "alerts", "a table ([alerts])") else {
        return patch;
    };
    let (_, keys) = schema::CLUSTER_SECTIONS[0];
    w.unknown_keys_by(table, "alerts", keys, |name| match name {
        "commands" => "[alerts.commands] is each host's own: declare the commands in each \
                       host's config and name them here by command_name"
            .to_string(),
        _ => format!(
            "unknown key \"{name}\" in [alerts]{}",
            schema::hint(name, keys, false)
        ),
    });
    patch.flap_threshold = w.field(table, "alerts", "flap_threshold", Walker::bounded_u32);
    patch.flap_window = w.field(table, "alerts", "flap_window", Walker::bounded_duration);
    patch.repeat = w.field(table, "alerts", "repeat", Walker::bounded_duration);
    patch.sinks = w.field(table, "alerts", "sinks", |w, v, k| {
        sinks(w, v, k, Origin::Cluster)
    });
    patch
}

impl AlertsConfig {
    /// This node's alert settings with the cluster's over them: each key the document sets
    /// replaces the node's own; `commands` and `actions` stay the node's.
    pub fn with_cluster(&self, cluster: Option<&AlertsPatch>) -> AlertsConfig {
        let Some(c) = cluster else {
            return self.clone();
        };
        AlertsConfig {
            flap_threshold: c.flap_threshold.unwrap_or(self.flap_threshold),
            flap_window: c.flap_window.unwrap_or(self.flap_window),
            repeat: c.repeat.unwrap_or(self.repeat),
            sinks: c.sinks.clone().unwrap_or_else(|| self.sinks.clone()),
            commands: self.commands.clone(),
            actions: self.actions.clone(),
            probe_warning: self.probe_warning,
        }
    }

    /// The sinks, each exec sink by name turned into the command this node declares under
    /// that name; a name it does not declare is left out, with why (by the sink's number,
    /// 1-based).
    pub fn resolved(&self) -> (Vec<SinkSpec>, Vec<(usize, String)>) {
        let mut out = Vec::with_capacity(self.sinks.len());
        let mut left_out = Vec::new();
        for (i, sink) in self.sinks.iter().enumerate() {
            match sink {
                SinkSpec::Named { name } => match self.commands.get(name) {
                    Some(command) => out.push(SinkSpec::Exec {
                        command: command.clone(),
                    }),
                    None => left_out.push((
                        i + 1,
                        format!(
                            "its command_name \"{name}\" is not declared in this host's \
                             [alerts.commands]"
                        ),
                    )),
                },
                other => out.push(other.clone()),
            }
        }
        (out, left_out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{WebhookFormat, WebhookUrl};

    #[test]
    fn a_document_sets_the_alert_rules_and_sinks_and_names_files_it_does_not_read() {
        let text = r#"
            [alerts]
            flap_threshold = 6
            repeat = "1h"
            [[alerts.sinks]]
            type = "webhook"
            url_file = "/etc/nbwatch/slack.url"
            [[alerts.sinks]]
            type = "exec"
            command_name = "page"
        "#;
        let settings = ClusterSettings::parse(text).expect("a good document");
        assert_eq!(settings.alerts.flap_threshold, Some(6));
        assert_eq!(settings.alerts.flap_window, None);
        assert_eq!(settings.alerts.repeat, Some(Duration::from_secs(3600)));
        assert_eq!(
            settings.alerts.sinks,
            Some(vec![
                SinkSpec::Webhook {
                    url: WebhookUrl::File("/etc/nbwatch/slack.url".into()),
                    format: WebhookFormat::Json,
                    token_file: None,
                    recipient: None,
                    ca_file: None,
                },
                SinkSpec::Named {
                    name: "page".into()
                },
            ])
        );
        assert!(settings.command_lines().is_empty());
        assert_eq!(ClusterSettings::parse(""), Ok(ClusterSettings::default()));
    }

    #[test]
    fn a_bad_document_is_refused_with_every_problem() {
        let text = r#"
            [gossip]
            interval = "1s"
            [alert]
            x = 1
            [alerts]
            flap_treshold = 3
            repeat = "often"
            commands = { page = ["/bin/true"] }
            [[alerts.sinks]]
            type = "webhook"
            url_file = "slack.url"
            [[alerts.sinks]]
            type = "email"
            smtp = "mail:587"
            from = "not an address"
            to = ["ops@example.org"]
            [[alerts.sinks]]
            type = "exec"
        "#;
        let errors = ClusterSettings::parse(text).expect_err("refused");
        let keys: Vec<&str> = errors.problems().iter().map(|p| p.key.as_str()).collect();
        for key in [
            "gossip",
            "alert",
            "alerts.flap_treshold",
            "alerts.repeat",
            "alerts.commands",
            "alerts.sinks[0].url_file",
            "alerts.sinks[1].from",
            "alerts.sinks[2].command",
        ] {
            assert!(keys.contains(&key), "{key} missing from {errors}");
        }
        let text = errors.to_string();
        assert!(
            text.contains("cluster settings: gossip: [gossip] is each host's own"),
            "{text}"
        );
        assert!(text.contains("did you mean \"alerts\""), "{text}");
        assert!(text.contains("did you mean \"flap_threshold\""), "{text}");
        assert!(text.contains("give its absolute path"), "{text}");
        assert!(
            text.contains("declare the commands in each host's config"),
            "{text}"
        );

        let syntax = ClusterSettings::parse("[alerts\n").expect_err("not TOML");
        assert!(syntax.to_string().contains("TOML syntax error"), "{syntax}");
        let long = format!("# {}\n", "x".repeat(MAX_LEN));
        assert!(ClusterSettings::parse(&long).is_err());
    }

    #[test]
    fn a_command_line_is_marked_for_a_signature() {
        let text = r#"
            [[alerts.sinks]]
            type = "exec"
            command = ["/usr/local/bin/page", "--urgent"]
        "#;
        let settings = ClusterSettings::parse(text).expect("parsed");
        assert_eq!(settings.command_lines(), [0]);
        let both = r#"
            [[alerts.sinks]]
            type = "exec"
            command = ["/bin/true"]
            command_name = "page"
        "#;
        assert!(ClusterSettings::parse(both).is_err());
    }

    #[test]
    fn the_document_wins_for_the_keys_it_sets_and_names_resolve_on_each_host() {
        let local = AlertsConfig {
            flap_threshold: 9,
            repeat: Duration::from_secs(60),
            sinks: vec![SinkSpec::Exec {
                command: vec!["/bin/local".into()],
            }],
            commands: [("page".to_string(), vec!["/bin/page".to_string()])].into(),
            ..AlertsConfig::default()
        };
        let patch = AlertsPatch {
            flap_threshold: Some(3),
            sinks: Some(vec![
                SinkSpec::Named {
                    name: "page".into(),
                },
                SinkSpec::Named { name: "sms".into() },
            ]),
            ..AlertsPatch::default()
        };
        assert_eq!(local.with_cluster(None), local);
        let merged = local.with_cluster(Some(&patch));
        assert_eq!(merged.flap_threshold, 3);
        assert_eq!(merged.repeat, Duration::from_secs(60));
        assert_eq!(merged.flap_window, local.flap_window);
        let (sinks, left_out) = merged.resolved();
        assert_eq!(
            sinks,
            [SinkSpec::Exec {
                command: vec!["/bin/page".into()]
            }]
        );
        assert_eq!(left_out.len(), 1);
        assert_eq!(left_out[0].0, 2);
        assert!(left_out[0].1.contains("\"sms\""), "{left_out:?}");
    }
}
