//! The routes of API v1. Each handler asks the gossip actor and shapes the answer.

use super::{ApiError, json};
use crate::gossip::actor::GossipMsg;
use crate::node::directory::Directory;
use crate::types::Clock;
use axum::Router;
use axum::extract::State;
use axum::http::{Method, Uri};
use axum::routing::get;
use ractor::RpcReplyPort;
use ractor::rpc::CallResult;
use serde_json::Value;
use std::time::Duration;

/// How long a handler waits for the gossip actor.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub(super) struct Ctx {
    pub directory: Directory,
    pub clock: Clock,
}

pub(super) fn router(ctx: Ctx) -> Router {
    Router::new()
        .route("/api/v1/members", get(members))
        .route("/api/v1/stats", get(stats))
        .route("/api/v1/events", get(events))
        .fallback(not_found)
        .with_state(ctx)
}

type Answer = Result<axum::Json<Value>, ApiError>;

async fn ask<T: Send + 'static>(
    ctx: &Ctx,
    msg: impl FnOnce(RpcReplyPort<T>) -> GossipMsg,
) -> Result<T, ApiError> {
    let gossip = ctx.directory.gossip().ok_or(ApiError::Unavailable)?;
    match gossip.call(msg, Some(CALL_TIMEOUT)).await {
        Ok(CallResult::Success(v)) => Ok(v),
        Ok(CallResult::Timeout) => Err(ApiError::Timeout(CALL_TIMEOUT)),
        Ok(CallResult::SenderError) | Err(_) => Err(ApiError::Unavailable),
    }
}

async fn members(State(ctx): State<Ctx>) -> Answer {
    let views = ask(&ctx, GossipMsg::Members).await?;
    Ok(axum::Json(json::members(&views, ctx.clock.now())))
}

async fn stats(State(ctx): State<Ctx>) -> Answer {
    let snapshot = ask(&ctx, GossipMsg::Stats).await?;
    Ok(axum::Json(json::stats(&snapshot)))
}

async fn events(State(ctx): State<Ctx>) -> Answer {
    let recorded = ask(&ctx, GossipMsg::Events).await?;
    Ok(axum::Json(json::events(&recorded)))
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::NotFound {
        method: method.to_string(),
        path: uri.path().to_string(),
    }
}
