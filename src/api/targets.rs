//! `GET /api/v1/targets`: Prometheus' HTTP service discovery (`http_sd_configs`), so one URL
//! gives Prometheus every member to scrape. Each member that has a read-only listener
//! announces where it is reached (`scrape`); each is one target group with the meta labels
//! `__meta_nbwatch_node` and `__meta_nbwatch_state` (`alive`, `suspect`, `down`), for
//! relabelling. A down member stays listed, so its scrape fails and `up` says so; a member
//! that left is not listed.

use super::routes::{Answer, Ctx, views};
use crate::gossip::{MemberView, Status};
use crate::keys::SCRAPE_KEY;
use axum::extract::State;
use serde_json::{Value, json};

pub(super) async fn targets(State(ctx): State<Ctx>) -> Answer {
    Ok(axum::Json(groups(&views(&ctx).await?)))
}

/// The target groups of `views`, by member name.
pub fn groups(views: &[MemberView]) -> Value {
    let mut members: Vec<&MemberView> = (views.iter())
        .filter(|m| m.status != Status::Left && m.kv.contains_key(SCRAPE_KEY))
        .collect();
    members.sort_by(|a, b| a.name.cmp(&b.name));
    Value::Array(
        members
            .into_iter()
            .map(|m| {
                json!({
                    "targets": [m.kv.get(SCRAPE_KEY)],
                    "labels": {
                        "__meta_nbwatch_node": m.name.as_str(),
                        "__meta_nbwatch_state": m.status.as_str(),
                    },
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::test_view;

    #[test]
    fn every_member_with_a_listener_is_a_target_but_those_that_left() {
        let scrape = |addr: &str| [(SCRAPE_KEY.to_string(), addr.to_string())];
        let views = vec![
            test_view("b", Status::Down, scrape("10.0.0.2:9711")),
            test_view("a", Status::Alive, scrape("10.0.0.1:9711")),
            test_view("c", Status::Left, scrape("10.0.0.3:9711")),
            test_view("d", Status::Alive, []),
        ];
        assert_eq!(
            groups(&views),
            json!([
                {"targets": ["10.0.0.1:9711"],
                 "labels": {"__meta_nbwatch_node": "a", "__meta_nbwatch_state": "alive"}},
                {"targets": ["10.0.0.2:9711"],
                 "labels": {"__meta_nbwatch_node": "b", "__meta_nbwatch_state": "down"}},
            ])
        );
    }
}
