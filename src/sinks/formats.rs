//! What a webhook sends in each `format`: the URL it posts to, the headers and the body, from
//! the alert JSON, the sink's URL, its token and its recipient. Pure: tested without a
//! network. Phones get a title, the summary and a priority from the kind of alert.

use super::alertmanager;
use crate::config::WebhookFormat;
use serde_json::{Value, json};

/// One POST.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// Where it goes (may hold the token, as Telegram's does: never shown).
    pub url: String,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// How urgent an alert is for a phone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Urgency {
    /// A problem: a host down, a service or a probe failed, a subject flapping.
    High,
    /// A warning, a step of remediation.
    Normal,
    /// An end, a test.
    Low,
}

fn urgency(alert: &Value) -> Urgency {
    match (alert["status"].as_str(), alert["kind"].as_str()) {
        (_, Some("test")) => Urgency::Low,
        (Some("resolved"), _) => Urgency::Low,
        (_, Some("probe_warning" | "action")) => Urgency::Normal,
        _ => Urgency::High,
    }
}

/// "node_down: mythbox" or "service_up: mythbox:db (resolved)".
fn title(alert: &Value) -> String {
    let text = |k: &str| alert[k].as_str().unwrap_or("");
    let subject = match alert["service"].as_str() {
        Some(service) => format!("{}:{service}", text("node")),
        None => text("node").to_string(),
    };
    let resolved = if text("status") == "resolved" {
        " (resolved)"
    } else {
        ""
    };
    format!("{}: {subject}{resolved}", text("kind"))
}

fn summary(alert: &Value) -> String {
    alert["summary"].as_str().unwrap_or("").to_string()
}

/// The summary cut to `max` characters (Discord takes 2000, Telegram 4096).
fn cut(text: String, max: usize) -> String {
    match text.char_indices().nth(max.saturating_sub(1)) {
        Some((end, _)) if text.chars().count() > max => format!("{}…", &text[..end]),
        _ => text,
    }
}

fn json_body(v: &Value) -> Vec<u8> {
    v.to_string().into_bytes()
}

fn bearer(token: Option<&str>) -> Vec<(&'static str, String)> {
    token
        .map(|t| ("Authorization", format!("Bearer {t}")))
        .into_iter()
        .collect()
}

/// The request for `alert` to `url` in `format`.
pub fn request(
    format: WebhookFormat,
    url: &str,
    token: Option<&str>,
    recipient: Option<&str>,
    alert: &Value,
) -> Request {
    let json = |url: String, headers, body: Value| Request {
        url,
        content_type: "application/json",
        headers,
        body: json_body(&body),
    };
    let base = url.trim_end_matches('/');
    let urgency = urgency(alert);
    match format {
        WebhookFormat::Json => json(url.to_string(), bearer(token), alert.clone()),
        WebhookFormat::Alertmanager => json(
            url.to_string(),
            bearer(token),
            alertmanager::webhook_v4(alert),
        ),
        // ntfy: the body is the message; title, priority and tags are headers.
        WebhookFormat::Ntfy => {
            let (priority, tag) = match urgency {
                Urgency::High => ("high", "rotating_light"),
                Urgency::Normal => ("default", "warning"),
                Urgency::Low => ("low", "white_check_mark"),
            };
            let mut headers = bearer(token);
            headers.push(("Title", title(alert)));
            headers.push(("Priority", priority.to_string()));
            headers.push(("Tags", tag.to_string()));
            Request {
                url: url.to_string(),
                content_type: "text/plain; charset=utf-8",
                headers,
                body: summary(alert).into_bytes(),
            }
        }
        WebhookFormat::Gotify => {
            let priority = match urgency {
                Urgency::High => 8,
                Urgency::Normal => 5,
                Urgency::Low => 2,
            };
            let headers = (token.map(|t| ("X-Gotify-Key", t.to_string())).into_iter()).collect();
            let endpoint = if base.ends_with("/message") {
                base.to_string()
            } else {
                format!("{base}/message")
            };
            let body = json!({"title": title(alert), "message": summary(alert),
                              "priority": priority});
            json(endpoint, headers, body)
        }
        // Slack and Mattermost incoming webhooks both read `text` (mrkdwn: *bold*).
        WebhookFormat::Slack => {
            let body = json!({"text": format!("*{}*\n{}", title(alert), summary(alert))});
            json(url.to_string(), bearer(token), body)
        }
        WebhookFormat::Discord => {
            let content = cut(format!("**{}**\n{}", title(alert), summary(alert)), 2000);
            let body = json!({"username": "nbwatch", "content": content});
            json(url.to_string(), bearer(token), body)
        }
        WebhookFormat::Telegram => {
            let endpoint = format!("{base}/bot{}/sendMessage", token.unwrap_or(""));
            let text = cut(format!("{}\n{}", title(alert), summary(alert)), 4096);
            let body = json!({"chat_id": recipient.unwrap_or(""), "text": text,
                              "disable_notification": urgency == Urgency::Low});
            json(endpoint, Vec::new(), body)
        }
        WebhookFormat::Pushover => {
            let priority = match urgency {
                Urgency::High => 1,
                Urgency::Normal => 0,
                Urgency::Low => -1,
            };
            let body = json!({"token": token.unwrap_or(""), "user": recipient.unwrap_or(""),
                              "title": title(alert), "message": summary(alert),
                              "priority": priority});
            json(url.to_string(), Vec::new(), body)
        }
    }
}

/// How errors name the URL of a request in `format`: never the token of a Telegram URL.
pub fn shown(format: WebhookFormat, shown_url: &str) -> String {
    match format {
        WebhookFormat::Telegram => {
            format!("{}/bot<token>/sendMessage", shown_url.trim_end_matches('/'))
        }
        _ => shown_url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn down() -> Value {
        json!({"id": "node_down:mythbox:3", "kind": "node_down", "status": "firing",
            "node": "mythbox", "service": null, "sent_by": "frontroom",
            "at": "2026-11-22T15:30:09.120Z", "since": "2026-11-22T15:30:02.004Z",
            "observers": ["frontroom"], "summary": "mythbox stopped talking at 15:30:02"})
    }

    fn up() -> Value {
        let mut up = down();
        up["id"] = "service_up:mythbox:db:5".into();
        up["kind"] = "service_up".into();
        up["status"] = "resolved".into();
        up["service"] = "db".into();
        up["summary"] = "db on mythbox is running again".into();
        up
    }

    fn body(r: &Request) -> Value {
        serde_json::from_slice(&r.body).expect("json")
    }

    #[test]
    fn ntfy_gets_the_summary_with_title_priority_and_tags_as_headers() {
        let r = request(
            WebhookFormat::Ntfy,
            "https://ntfy.sh/house",
            Some("tk"),
            None,
            &down(),
        );
        assert_eq!(r.url, "https://ntfy.sh/house");
        assert_eq!(r.body, b"mythbox stopped talking at 15:30:02");
        assert!(r.content_type.starts_with("text/plain"));
        let header = |k| {
            r.headers
                .iter()
                .find(|(h, _)| *h == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(header("Title"), Some("node_down: mythbox"));
        assert_eq!(header("Priority"), Some("high"));
        assert_eq!(header("Authorization"), Some("Bearer tk"));
        let r = request(
            WebhookFormat::Ntfy,
            "https://ntfy.sh/house",
            None,
            None,
            &up(),
        );
        let header = |k| {
            r.headers
                .iter()
                .find(|(h, _)| *h == k)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(
            header("Title").as_deref(),
            Some("service_up: mythbox:db (resolved)")
        );
        assert_eq!(header("Priority").as_deref(), Some("low"));
        assert_eq!(header("Authorization"), None);
    }

    #[test]
    fn gotify_slack_discord_telegram_and_pushover_get_their_own_shapes() {
        let g = request(
            WebhookFormat::Gotify,
            "https://g.example/",
            Some("app"),
            None,
            &down(),
        );
        assert_eq!(g.url, "https://g.example/message");
        assert_eq!(g.headers, [("X-Gotify-Key", "app".to_string())]);
        assert_eq!(body(&g)["priority"], 8);
        assert_eq!(body(&g)["title"], "node_down: mythbox");

        let s = request(
            WebhookFormat::Slack,
            "https://hooks.slack.com/x",
            None,
            None,
            &down(),
        );
        assert_eq!(
            body(&s)["text"],
            "*node_down: mythbox*\nmythbox stopped talking at 15:30:02"
        );

        let mut long = down();
        long["summary"] = "x".repeat(3000).into();
        let d = request(
            WebhookFormat::Discord,
            "https://discord.com/api/webhooks/1/t",
            None,
            None,
            &long,
        );
        let content = body(&d)["content"].as_str().map(|c| c.chars().count());
        assert_eq!(content, Some(2000));

        let t = request(
            WebhookFormat::Telegram,
            "https://api.telegram.org",
            Some("123:abc"),
            Some("-100"),
            &down(),
        );
        assert_eq!(t.url, "https://api.telegram.org/bot123:abc/sendMessage");
        assert_eq!(body(&t)["chat_id"], "-100");
        assert!(t.headers.is_empty());
        assert_eq!(
            shown(WebhookFormat::Telegram, "https://api.telegram.org"),
            "https://api.telegram.org/bot<token>/sendMessage"
        );

        let p = request(
            WebhookFormat::Pushover,
            "https://api.pushover.net/1/messages.json",
            Some("app"),
            Some("usr"),
            &up(),
        );
        assert_eq!(
            (
                body(&p)["token"].clone(),
                body(&p)["user"].clone(),
                body(&p)["priority"].clone()
            ),
            (json!("app"), json!("usr"), json!(-1))
        );
    }

    #[test]
    fn json_and_alertmanager_keep_the_bearer_token() {
        let j = request(WebhookFormat::Json, "http://h/x", Some("t"), None, &down());
        assert_eq!(body(&j), down());
        assert_eq!(j.headers, [("Authorization", "Bearer t".to_string())]);
        let a = request(
            WebhookFormat::Alertmanager,
            "http://h/x",
            None,
            None,
            &down(),
        );
        assert_eq!(body(&a)["version"], "4");
    }
}
