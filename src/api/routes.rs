//! The routes of API v1. Each handler asks the actor that knows (gossip for the cluster, the
//! supervision manager for services) and shapes the answer.

use super::{ApiError, json};
use crate::actors::election::Snapshots;
use crate::actors::gossip::GossipMsg;
use crate::actors::store::StoreMsg;
use crate::alert::incident::Silence;
use crate::events::EventLog;
use crate::keys::{Command, TEST_PREFIX};
use crate::secure::Gate;
use crate::supervision::manager::ManagerMsg;
use crate::task::Handle;
use crate::types::{Clock, NodeName};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{Method, Uri};
use axum::routing::{get, post};
use ractor::rpc::CallResult;
use ractor::{ActorRef, RpcReplyPort};
use serde_json::{Value, json};
use std::time::Duration;

/// How long a handler waits for the gossip actor.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a service command may take (a stop waits for the service's shutdown grace).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Clone)]
pub(super) struct Ctx {
    pub name: NodeName,
    pub gossip: Handle<GossipMsg>,
    pub services: Handle<ManagerMsg>,
    /// The control actor: cluster settings are pushed through it.
    pub control: Handle<crate::actors::control::ControlMsg>,
    /// The cluster settings this node applies.
    pub settings: crate::actors::settings::AppliedSettings,
    pub store: Handle<StoreMsg>,
    pub gate: std::sync::Arc<Gate>,
    /// The election actor's latest view: the one source of the leader.
    pub view: Snapshots,
    pub events: EventLog,
    pub clock: Clock,
    /// This node's local health (see `watch::health`).
    pub patience: crate::watch::Patience,
    pub data_dir: std::path::PathBuf,
    /// The gossip interval and fanout (see `NodeParts::pace`).
    pub pace: (std::time::Duration, usize),
    /// Whose directives this node obeys; seals what it issues to other hosts.
    pub authority: std::sync::Arc<crate::secure::directive::Authority>,
}

impl Ctx {
    /// The leader, as the election actor last published it.
    pub fn leader(&self) -> Option<NodeName> {
        self.view.borrow().leader.clone()
    }
}

pub(super) fn router(ctx: Ctx) -> Router {
    Router::new()
        .route("/api/v1/members", get(members))
        .route("/api/v1/zones", get(zones))
        .route("/api/v1/stats", get(stats))
        .route("/api/v1/events", get(super::history::events))
        .route("/api/v1/history/{node}", get(super::history::history))
        .route("/api/v1/services", get(services))
        .route("/api/v1/services/{name}/{action}", post(service_command))
        .route(
            "/api/v1/nodes/{node}/services/{name}/{action}",
            post(super::control::remote_command),
        )
        .route("/api/v1/kv", get(super::control::kv_list))
        .route(
            "/api/v1/kv/{*key}",
            get(super::control::kv_get)
                .post(super::control::kv_put)
                .delete(super::control::kv_delete),
        )
        .route("/api/v1/pick", get(super::decide::pick_hosts))
        .route("/api/v1/owner/{*key}", get(super::decide::owner_of))
        .route("/api/v1/reachability", get(super::reach::matrix))
        .route("/api/v1/graph", get(super::graph::graph))
        .route("/api/v1/impact/{*vertex}", get(super::graph::impact))
        .route("/api/v1/availability", get(super::graph::availability))
        .route("/api/v1/reachability/{node}", post(super::reach::report))
        .route("/api/v1/reload", post(reload))
        .route(
            "/api/v1/cluster-config",
            get(super::settings::show).post(super::settings::push),
        )
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/targets", get(super::targets::targets))
        .route("/api/v1/alerts/test", post(alert_test))
        .route("/api/v1/silences", get(silences).post(silence))
        .merge(super::dashboard::router())
        .merge(super::metrics::router())
        .route("/api/v1/keys", get(super::keys::list))
        .route("/api/v1/keys/install", post(super::keys::install))
        .route("/api/v1/keys/use", post(super::keys::use_key))
        .route("/api/v1/keys/remove", post(super::keys::remove))
        .fallback(not_found)
        .with_state(ctx)
}

/// The routes of the read-only listener (`metrics.listen`): what Prometheus and a dashboard
/// on another machine read, GETs only, with no token; anything else is 404.
pub(super) fn read_only(ctx: Ctx) -> Router {
    Router::new()
        .route("/api/v1/members", get(members))
        .route("/api/v1/zones", get(zones))
        .route("/api/v1/services", get(services))
        .route("/api/v1/events", get(super::history::events))
        .route("/api/v1/history/{node}", get(super::history::history))
        .route("/api/v1/graph", get(super::graph::graph))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/targets", get(super::targets::targets))
        .merge(super::dashboard::router())
        .merge(super::metrics::router())
        .fallback(not_found)
        .with_state(ctx)
}

pub(super) type Answer = Result<axum::Json<Value>, ApiError>;

async fn call<M: ractor::Message, T: Send + 'static>(
    actor: Option<ActorRef<M>>,
    unavailable: ApiError,
    timeout: Duration,
    msg: impl FnOnce(RpcReplyPort<T>) -> M,
) -> Result<T, ApiError> {
    let actor = actor.ok_or(unavailable)?;
    match actor.call(msg, Some(timeout)).await {
        Ok(CallResult::Success(v)) => Ok(v),
        Ok(CallResult::Timeout) => Err(ApiError::Timeout(timeout)),
        Ok(CallResult::SenderError) | Err(_) => Err(ApiError::Unavailable),
    }
}

/// Every member as the gossip actor knows it now. While this node is late (its local health,
/// see `watch::health`), the view the election actor published last instead: its state at
/// most a few hundred milliseconds older, its `last_heard` as of then. Readers of the API then
/// take nothing from the gossip actor, which answers probes and gossip first.
pub(super) async fn views(ctx: &Ctx) -> Result<Vec<crate::gossip::MemberView>, ApiError> {
    if ctx.patience.is_late() {
        let published = ctx.view.borrow().members.clone();
        if !published.is_empty() {
            return Ok(published);
        }
    }
    ask(ctx, GossipMsg::Members).await
}

pub(super) async fn ask<T: Send + 'static>(
    ctx: &Ctx,
    msg: impl FnOnce(RpcReplyPort<T>) -> GossipMsg,
) -> Result<T, ApiError> {
    call(ctx.gossip.get(), ApiError::Unavailable, CALL_TIMEOUT, msg).await
}

async fn ask_services<T: Send + 'static>(
    ctx: &Ctx,
    timeout: Duration,
    msg: impl FnOnce(RpcReplyPort<T>) -> ManagerMsg,
) -> Result<T, ApiError> {
    call(ctx.services.get(), ApiError::NoSupervisor, timeout, msg).await
}

/// Asks the supervision manager with the short timeout of a read.
pub(super) async fn ask_services_quick<T: Send + 'static>(
    ctx: &Ctx,
    msg: impl FnOnce(RpcReplyPort<T>) -> ManagerMsg,
) -> Result<T, ApiError> {
    ask_services(ctx, CALL_TIMEOUT, msg).await
}

async fn members(State(ctx): State<Ctx>) -> Answer {
    let views = views(&ctx).await?;
    Ok(axum::Json(json::members(
        &views,
        ctx.leader().as_ref(),
        ctx.clock.now(),
    )))
}

/// `GET /api/v1/zones`: every zone as this node's zone publishes it, this one marked.
async fn zones(State(ctx): State<Ctx>) -> Answer {
    let (zone, views) = ask(&ctx, GossipMsg::Zones).await?;
    Ok(axum::Json(json::zones(&zone, &views)))
}

async fn stats(State(ctx): State<Ctx>) -> Answer {
    let snapshot = ask(&ctx, GossipMsg::Stats).await?;
    Ok(axum::Json(json::stats(&snapshot)))
}

/// `GET /api/v1/services[?all=true]`: this node's services, or every node's.
async fn services(
    State(ctx): State<Ctx>,
    axum::extract::Query(params): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Answer {
    match params.get("all").map(String::as_str) {
        None | Some("false") => {}
        Some("true" | "1" | "") => return super::control::all_services(&ctx).await,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "all: \"{other}\" is not true or false"
            )));
        }
    }
    let list = ask_services(&ctx, CALL_TIMEOUT, ManagerMsg::List).await?;
    Ok(axum::Json(json::services(&list, &ctx.name)))
}

/// `POST /api/v1/services/{name}/{start|stop|restart}`: answers when the command is done.
async fn service_command(
    State(ctx): State<Ctx>,
    Path((name, action)): Path<(String, String)>,
    method: Method,
    uri: Uri,
) -> Answer {
    if !["start", "stop", "restart"].contains(&action.as_str()) {
        return Err(not_found(method, uri).await);
    }
    local_command(&ctx, name, &action).await
}

/// A command for a service of this node; answers when it is done.
pub(super) async fn local_command(ctx: &Ctx, name: String, action: &str) -> Answer {
    let command = match action {
        "start" => Command::Start,
        "stop" => Command::Stop,
        "restart" => Command::Restart,
        _ => {
            return Err(ApiError::BadRequest(format!(
                "unknown action \"{action}\"; expected start, stop or restart"
            )));
        }
    };
    let ctx = ctx.clone();
    let list = ask_services(&ctx, CALL_TIMEOUT, ManagerMsg::List).await?;
    if !list.iter().any(|s| s.name == name) {
        return Err(ApiError::NoService(name));
    }
    let service = name.clone();
    ask_services(&ctx, COMMAND_TIMEOUT, |reply| ManagerMsg::Command {
        service,
        command,
        reply,
    })
    .await?
    .map_err(|e| ApiError::Failed(e.to_string()))?;
    let list = ask_services(&ctx, CALL_TIMEOUT, ManagerMsg::List).await?;
    let status = list
        .iter()
        .find(|s| s.name == name)
        .map(|s| json::service(s, &ctx.name));
    Ok(axum::Json(
        json!({ "service": name, "action": command.as_str(), "ok": true, "status": status }),
    ))
}

/// `POST /api/v1/reload`: re-reads the trees and applies the difference.
async fn reload(State(ctx): State<Ctx>) -> Answer {
    let summary = ask_services(&ctx, COMMAND_TIMEOUT, ManagerMsg::Reload)
        .await?
        .map_err(|e| ApiError::Failed(e.to_string()))?;
    Ok(axum::Json(json!({
        "started": summary.started,
        "stopped": summary.stopped,
        "changed": summary.changed,
        "unchanged": summary.unchanged,
    })))
}

/// `GET /api/v1/alerts`: the cluster's alert log as this node sees it.
async fn alerts(State(ctx): State<Ctx>) -> Answer {
    let views = views(&ctx).await?;
    Ok(axum::Json(json::alerts(&views)))
}

pub(super) async fn put(ctx: &Ctx, key: String, value: Option<String>) -> Result<(), ApiError> {
    ask(ctx, |reply| GossipMsg::Set { key, value, reply })
        .await?
        .map_err(|e| ApiError::Failed(e.to_string()))
}

/// `POST /api/v1/alerts/test`: asks the leader (through gossip) to send a test alert.
async fn alert_test(State(ctx): State<Ctx>) -> Answer {
    let at = ctx.clock.now().0;
    put(&ctx, format!("{TEST_PREFIX}{at}"), Some("1".into())).await?;
    Ok(axum::Json(
        json!({ "id": format!("test:{}:{at}", ctx.name) }),
    ))
}

/// `GET /api/v1/silences`: the silences in force.
async fn silences(State(ctx): State<Ctx>) -> Answer {
    let views = views(&ctx).await?;
    Ok(axum::Json(json::silences(
        &views,
        &ctx.authority.trust,
        ctx.clock.now(),
    )))
}

/// `POST /api/v1/silences` with `{"target": "node[:service]", "for": "2h", "reason": "..."}`.
async fn silence(State(ctx): State<Ctx>, axum::Json(body): axum::Json<Value>) -> Answer {
    let target = body.get("target").and_then(Value::as_str).unwrap_or("");
    if target.is_empty() || target.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ApiError::Failed(format!(
            "target {target:?} is not NODE or NODE:SERVICE"
        )));
    }
    let duration = body.get("for").and_then(Value::as_str).unwrap_or("");
    let duration = crate::types::duration::parse(duration)
        .map_err(|e| ApiError::Failed(format!("\"for\": {e}")))?;
    let reason = body.get("reason").and_then(Value::as_str).unwrap_or("");
    let now = ctx.clock.now();
    let mut silence = Silence {
        target: target.to_string(),
        by: ctx.name.clone(),
        until: now + duration,
        reason: reason.to_string(),
        seal: None,
    };
    // Every host, this one included, obeys only a silence an operator sealed.
    let key = silence.key();
    let seal = ctx
        .authority
        .seal(&key, &silence.content(), now.as_millis());
    silence.seal = Some(seal.map_err(|e| ApiError::Forbidden(e.to_string()))?);
    put(&ctx, key, Some(silence.value())).await?;
    Ok(axum::Json(json!({
        "target": target, "until": silence.until.to_rfc3339(), "reason": reason,
    })))
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::NotFound {
        method: method.to_string(),
        path: uri.path().to_string(),
    }
}
