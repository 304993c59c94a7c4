//! The node's HTTP API on loopback: what the CLI, scripts, the dashboard (`/`) and Prometheus
//! (`/metrics`) read.
//!
//! [`router`] makes the routes from the handles the node gives it ([`NodeParts`]); the
//! node's HTTP actor serves them, and is restarted like any other child. Handlers do not share state with the protocol: they ask the gossip actor (an RPC with a
//! timeout) and shape the answer as the contract says ([`json`]).

mod body;
mod control;
mod dashboard;
mod decide;
pub mod graph;
mod history;
pub mod host;
pub mod json;
mod keys;
mod metrics;
mod reach;
mod routes;
mod settings;
pub mod targets;
pub mod token;

use crate::node::NodeParts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Why a request could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the gossip actor is restarting; try again")]
    Unavailable,
    #[error("the gossip actor did not answer within {0:?}")]
    Timeout(std::time::Duration),
    #[error("no such endpoint: {method} {path}")]
    NotFound { method: String, path: String },
    #[error("the supervisor is restarting; try again")]
    NoSupervisor,
    #[error("no service \"{0}\" on this node")]
    NoService(String),
    #[error("{0}")]
    Failed(String),
    /// This node may not do that (it lacks an operator key, say).
    #[error("{0}")]
    Forbidden(String),
    /// A query parameter is wrong (a bad duration, say).
    #[error("{0}")]
    BadRequest(String),
    /// Nothing is recorded of what was asked for.
    #[error("{0}")]
    Unknown(String),
    #[error("{0}")]
    Store(String),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::NotFound { .. } | ApiError::NoService(_) => StatusCode::NOT_FOUND,
            ApiError::NoSupervisor => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Failed(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unknown(_) => StatusCode::NOT_FOUND,
            ApiError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.to_string() });
        (self.status(), axum::Json(body)).into_response()
    }
}

/// The API's router for a node: every route, behind the token check, behind the `Host` check
/// (the outermost layer, so a request for another host learns nothing, not even 401). For the
/// read-only listener (`parts.read_only`), the GETs of [`routes::read_only`], without a token.
pub fn router(parts: NodeParts) -> axum::Router {
    let hosts = std::sync::Arc::new(host::Hosts::new(parts.api_addr, &parts.allowed_hosts));
    let read_only = parts.read_only;
    let ctx = routes::Ctx {
        name: parts.name,
        gossip: parts.gossip,
        services: parts.services,
        control: parts.control,
        settings: parts.settings,
        store: parts.store,
        gate: parts.gate,
        view: parts.view,
        events: parts.events,
        clock: parts.clock,
        patience: parts.patience,
        data_dir: parts.data_dir,
        pace: parts.pace,
        authority: parts.authority,
    };
    if read_only {
        // GETs only, no token; the Host check stays (a page elsewhere must not read it
        // through a rebound name).
        return routes::read_only(ctx)
            .layer(axum::middleware::from_fn_with_state(hosts, host::require));
    }
    routes::router(ctx)
        .layer(axum::middleware::from_fn(body::read_whole))
        .layer(axum::middleware::from_fn_with_state(
            parts.token,
            token::require,
        ))
        .layer(axum::middleware::from_fn_with_state(hosts, host::require))
}
