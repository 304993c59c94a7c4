//! The control-plane routes: every node's services, commands to another node's services, and
//! application data (see [`crate::control`]).

use super::routes::{Answer, Ctx, put, views};
use super::{ApiError, json};
use crate::control::{appdata, remote};
use crate::election::is_live;
use crate::keys::control::RemoteCommand;
use crate::keys::{APP_PREFIX, announced};
use axum::extract::{Path, Query, State};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;

type Params = Query<HashMap<String, String>>;

/// How long a remote command is waited for unless `timeout=` says otherwise.
pub const REMOTE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the answer to a remote command is looked for.
const POLL: Duration = Duration::from_millis(100);

/// `GET /api/v1/services?all=true`: every node's services, from gossip (this node's from its
/// supervisor); a node that is not live has its last known services marked `"stale": true`.
pub(super) async fn all_services(ctx: &Ctx) -> Answer {
    let views = views(ctx).await?;
    let mut out = Vec::new();
    for view in &views {
        let stale = !is_live(view);
        for s in announced(&view.kv) {
            let mut v = json::service(&s, &view.name);
            v["stale"] = Value::Bool(stale);
            out.push(v);
        }
    }
    Ok(axum::Json(Value::Array(out)))
}

/// `POST /api/v1/nodes/{node}/services/{name}/{action}[?timeout=DUR]`: a command for a
/// service of any node; answers once the target node has answered (or says why not).
pub(super) async fn remote_command(
    State(ctx): State<Ctx>,
    Path((node, service, action)): Path<(String, String, String)>,
    Query(params): Params,
) -> Answer {
    if remote::parse_action(&action).is_none() {
        return Err(ApiError::BadRequest(format!(
            "unknown action \"{action}\"; expected start, stop or restart"
        )));
    }
    let timeout = match params.get("timeout") {
        None => REMOTE_TIMEOUT,
        Some(t) => crate::types::duration::parse(t)
            .map_err(|e| ApiError::BadRequest(format!("timeout: {e}")))?,
    };
    if node == ctx.name.as_str() {
        return super::routes::local_command(&ctx, service, &action).await;
    }
    let views = views(&ctx).await?;
    let Some(target) = views.iter().find(|v| v.name.as_str() == node) else {
        return Err(ApiError::Unknown(format!(
            "no node \"{node}\" in the cluster"
        )));
    };
    if !is_live(target) {
        return Err(ApiError::Failed(format!(
            "node {node} is {} (last heard {})",
            target.status.as_str(),
            target.last_heard.to_rfc3339()
        )));
    }
    if !announced(&target.kv).iter().any(|s| s.name == service) {
        return Err(ApiError::Unknown(format!(
            "no service \"{service}\" on node {node}"
        )));
    }
    let id = remote::new_id(ctx.name.as_str());
    let now = ctx.clock.now().as_millis();
    let mut cmd = RemoteCommand {
        to: node.clone(),
        service: service.clone(),
        action: action.clone(),
        at: now,
        seal: None,
    };
    // The target runs it only if an operator it trusts sealed it.
    let key = format!("{}{id}", crate::keys::COMMAND_PREFIX);
    let seal = ctx.authority.seal(&key, &cmd.content(), now);
    cmd.seal = Some(seal.map_err(|e| ApiError::Forbidden(e.to_string()))?);
    let (key, value) = remote::encode(&id, &cmd);
    put(&ctx, key.clone(), Some(value)).await?;
    let answer = wait_answer(&ctx, &node, &id, timeout).await;
    // The command is done with, answered or not.
    let _ = put(&ctx, key, None).await;
    match answer? {
        Some(a) if a.ok => Ok(axum::Json(json!({
            "node": node, "service": service, "action": action, "ok": true,
            "message": a.message,
            "status": services_of(&ctx, &node, &service).await,
        }))),
        Some(a) => Err(ApiError::Failed(format!("{node}: {}", a.message))),
        None => Err(ApiError::Failed(format!(
            "node {node} did not answer within {}",
            humantime::format_duration(timeout)
        ))),
    }
}

async fn wait_answer(
    ctx: &Ctx,
    node: &str,
    id: &str,
    timeout: Duration,
) -> Result<Option<crate::keys::control::Answer>, ApiError> {
    let end = tokio::time::Instant::now() + timeout;
    loop {
        let views = views(ctx).await?;
        if let Some(target) = views.iter().find(|v| v.name.as_str() == node) {
            if let Some(a) = remote::answer_of(target, id) {
                return Ok(Some(a));
            }
            if !is_live(target) {
                return Err(ApiError::Failed(format!(
                    "node {node} went {} before it answered",
                    target.status.as_str()
                )));
            }
        }
        if tokio::time::Instant::now() >= end {
            return Ok(None);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The status `node` announces for `service` now, as JSON (or null).
async fn services_of(ctx: &Ctx, node: &str, service: &str) -> Value {
    let Ok(views) = views(ctx).await else {
        return Value::Null;
    };
    views
        .iter()
        .find(|v| v.name.as_str() == node)
        .and_then(|v| {
            announced(&v.kv)
                .into_iter()
                .find(|s| s.name == service)
                .map(|s| json::service(&s, &v.name))
        })
        .unwrap_or(Value::Null)
}

fn app_entry(e: &appdata::Entry) -> Value {
    json!({
        "node": e.node,
        "key": e.key,
        "value": e.value,
        "at": e.at.to_rfc3339(),
        "expires": e.expires.map(|t| t.to_rfc3339()),
    })
}

/// `GET /api/v1/kv?prefix=P`: every host's live values whose key starts with P.
pub(super) async fn kv_list(State(ctx): State<Ctx>, Query(params): Params) -> Answer {
    if let Some(k) = params.keys().find(|k| *k != "prefix") {
        return Err(ApiError::BadRequest(format!(
            "unknown parameter \"{k}\"; this endpoint takes prefix"
        )));
    }
    let prefix = params.get("prefix").map_or("", String::as_str);
    let views = views(&ctx).await?;
    let list = appdata::entries(&views, prefix, ctx.clock.now());
    Ok(axum::Json(Value::Array(
        list.iter().map(app_entry).collect(),
    )))
}

/// `GET /api/v1/kv/{key}`: every host's live value of KEY (404 if none has one).
pub(super) async fn kv_get(State(ctx): State<Ctx>, Path(key): Path<String>) -> Answer {
    appdata::check_key(&key).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let views = views(&ctx).await?;
    let list: Vec<Value> = appdata::entries(&views, &key, ctx.clock.now())
        .iter()
        .filter(|e| e.key == key)
        .map(app_entry)
        .collect();
    if list.is_empty() {
        return Err(ApiError::Unknown(format!("no host publishes \"{key}\"")));
    }
    Ok(axum::Json(Value::Array(list)))
}

/// `POST /api/v1/kv/{key}` with `{"value": "...", "ttl": "30s"}` (ttl optional): publishes
/// the value from this node.
pub(super) async fn kv_put(
    State(ctx): State<Ctx>,
    Path(key): Path<String>,
    axum::Json(body): axum::Json<Value>,
) -> Answer {
    let Some(value) = body.get("value").and_then(Value::as_str) else {
        return Err(ApiError::BadRequest(
            "the body must be {\"value\": \"...\"} (and optionally \"ttl\": \"30s\")".into(),
        ));
    };
    let ttl = match body.get("ttl") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) => Some(
            crate::types::duration::parse(t)
                .map_err(|e| ApiError::BadRequest(format!("ttl: {e}")))?,
        ),
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "ttl: {other} is not a duration like \"30s\""
            )));
        }
    };
    let now = ctx.clock.now();
    let (gossip_key, stored) =
        appdata::encode(&key, value, ttl, now).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    put(&ctx, gossip_key, Some(stored)).await?;
    Ok(axum::Json(json!({
        "node": ctx.name.as_str(), "key": key, "value": value, "at": now.to_rfc3339(),
        "expires": ttl.map(|t| (now + t).to_rfc3339()),
    })))
}

/// `DELETE /api/v1/kv/{key}`: withdraws this node's value of KEY.
pub(super) async fn kv_delete(State(ctx): State<Ctx>, Path(key): Path<String>) -> Answer {
    appdata::check_key(&key).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    put(&ctx, format!("{APP_PREFIX}{key}"), None).await?;
    Ok(axum::Json(
        json!({ "node": ctx.name.as_str(), "key": key, "deleted": true }),
    ))
}
