//! Reachability over HTTP: `POST /api/v1/reachability/{node}` (an application on this host
//! could not reach that node: evidence that starts probing it at once, never a verdict) and
//! `GET /api/v1/reachability` (who hears whom directly, from every host's `unheard`).

use super::ApiError;
use super::routes::{Answer, Ctx, views};
use crate::actors::gossip::GossipMsg;
use crate::election::is_live;
use crate::gossip::MemberView;
use crate::gossip::core::Input;
use crate::keys::UNHEARD_KEY;
use crate::types::NodeName;
use axum::extract::{Path, State};
use serde_json::{Value, json};

/// The longest reason kept (it goes to the log).
pub const MAX_REASON: usize = 200;

/// `POST /api/v1/reachability/{node}` with an optional `{"reason": "..."}`:
/// `{"node", "state", "reports"}`, the reports counted so far including this one.
pub(super) async fn report(
    State(ctx): State<Ctx>,
    Path(node): Path<String>,
    body: axum::body::Bytes,
) -> Answer {
    let reason = if body.is_empty() {
        String::new()
    } else {
        let v: Value = serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("the body is not JSON: {e}")))?;
        match v.get("reason") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(r)) if r.len() <= MAX_REASON => r.clone(),
            Some(Value::String(_)) => {
                return Err(ApiError::BadRequest(format!(
                    "\"reason\" is longer than {MAX_REASON} bytes"
                )));
            }
            Some(_) => return Err(ApiError::BadRequest("\"reason\" is not a string".into())),
        }
    };
    let peer = NodeName::from(node.as_str());
    if peer == ctx.name {
        return Err(ApiError::BadRequest(format!(
            "{node} is this node: report a host you could not reach"
        )));
    }
    let views = views(&ctx).await?;
    let Some(m) = views.iter().find(|m| m.name == peer) else {
        return Err(ApiError::Unknown(format!("no member called {node:?}")));
    };
    let gossip = ctx.gossip.get().ok_or(ApiError::Unavailable)?;
    gossip
        .cast(GossipMsg::Core(Input::Report { peer: peer.clone() }))
        .map_err(|_| ApiError::Unavailable)?;
    tracing::info!(peer = %peer, reason = %crate::text::visible(&reason), "an application could not reach a peer: probing it");
    Ok(axum::Json(json!({
        "node": node,
        "state": m.status.as_str(),
        "reports": m.reports + 1,
    })))
}

/// `GET /api/v1/reachability`.
pub(super) async fn matrix(State(ctx): State<Ctx>) -> Answer {
    Ok(axum::Json(reachability(&views(&ctx).await?, ctx.pace)))
}

/// `{"window_s", "nodes": [live members], "rows": [{"node", "known", "hears": [...],
/// "unheard": [...], "more"}]}`: one row per live member, from its `unheard`; `known` is
/// false for a member that does not say (a build before it), whose row is empty. `window_s`
/// is the window at this cluster's size with this node's gossip interval and fanout (`pace`).
pub fn reachability(
    views: &[MemberView],
    (interval, fanout): (std::time::Duration, usize),
) -> Value {
    let live: Vec<&MemberView> = views.iter().filter(|m| is_live(m)).collect();
    let names: Vec<&str> = live.iter().map(|m| m.name.as_str()).collect();
    let rows: Vec<Value> = live
        .iter()
        .map(|m| match m.kv.get(UNHEARD_KEY) {
            None => json!({ "node": m.name.as_str(), "known": false, "hears": [], "unheard": [], "more": 0 }),
            Some(value) => {
                let (unheard, more) = crate::keys::reach::decode(value);
                let hears: Vec<&str> = names
                    .iter()
                    .copied()
                    .filter(|n| *n != m.name.as_str() && !unheard.iter().any(|u| u == n))
                    .collect();
                json!({ "node": m.name.as_str(), "known": true, "hears": hears, "unheard": unheard, "more": more })
            }
        })
        .collect();
    json!({
        "window_s": crate::gossip::core::reach::window(
            names.len().saturating_sub(1),
            interval,
            fanout,
        )
        .as_secs(),
        "nodes": names,
        "rows": rows,
    })
}
