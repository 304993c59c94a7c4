//! `[[alerts.sinks]]`: a tagged union by `type`, read by hand so that a bad sink reports every
//! mistake in it and the other sinks are still checked.

use super::walk::Walker;
use super::{ProblemKind, SinkSpec, WebhookFormat, schema};
use config::{Value, ValueKind};

pub(super) fn sinks(w: &mut Walker, v: &Value, key: &str) -> Option<Vec<SinkSpec>> {
    let ValueKind::Array(items) = &v.kind else {
        w.wrong_type(v, key, "an array of tables ([[alerts.sinks]])");
        return None;
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        if let Some(sink) = sink(w, item, &format!("{key}[{i}]")) {
            out.push(sink);
        }
    }
    Some(out)
}

fn sink(w: &mut Walker, v: &Value, key: &str) -> Option<SinkSpec> {
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
            let command = field("command");
            let command_key = format!("{key}.command");
            let command = w.strings(command?, &command_key)?;
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
            let url = field("url");
            let url_key = format!("{key}.url");
            let url = url.and_then(|u| w.non_empty(u, &url_key));
            if let (Some(u), Some(url_value)) = (&url, table.get("url"))
                && !(u.starts_with("http://") || u.starts_with("https://"))
            {
                let message = format!("bad url \"{u}\"; expected http://... or https://...");
                w.problem(url_value, &url_key, ProblemKind::BadValue, message);
                return None;
            }
            let format = match table.get("format") {
                Some(f) => webhook_format(w, f, &format!("{key}.format"))?,
                None => WebhookFormat::default(),
            };
            Some(SinkSpec::Webhook { url: url?, format })
        }
        _ => {
            let (smtp, from, to) = (field("smtp"), field("from"), field("to"));
            let smtp = smtp.and_then(|s| w.non_empty(s, &format!("{key}.smtp")));
            let from = from.and_then(|f| w.non_empty(f, &format!("{key}.from")));
            let to_key = format!("{key}.to");
            let to = to.and_then(|t| w.strings(t, &to_key));
            if let (Some(to), Some(to_value)) = (&to, table.get("to"))
                && to.is_empty()
            {
                let message = "no recipients".to_string();
                w.problem(to_value, &to_key, ProblemKind::BadValue, message);
                return None;
            }
            Some(SinkSpec::Email {
                smtp: smtp?,
                from: from?,
                to: to?,
            })
        }
    }
}

fn webhook_format(w: &mut Walker, v: &Value, key: &str) -> Option<WebhookFormat> {
    match w.string(v, key)?.as_str() {
        "json" => Some(WebhookFormat::Json),
        "alertmanager" => Some(WebhookFormat::Alertmanager),
        other => {
            let hint = schema::hint(other, &["json", "alertmanager"], false);
            let message = format!("unknown webhook format \"{other}\"{hint}");
            w.problem(v, key, ProblemKind::BadValue, message);
            None
        }
    }
}
