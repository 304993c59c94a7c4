//! The node's HTTP API on loopback: what the CLI, scripts, the dashboard (`/`) and Prometheus
//! (`/metrics`) read.
//!
//! `ApiActor` owns the axum server task, so the NodeActor supervises the API like any other
//! child: if the server dies the actor fails and is restarted on the same listening socket.
//! Handlers do not share state with the protocol: they ask the gossip actor (an RPC with a
//! timeout) and shape the answer as the contract says ([`json`]).

mod control;
mod dashboard;
mod history;
pub mod json;
mod keys;
mod metrics;
mod routes;
pub mod token;

use crate::actors::election::Snapshots;
use crate::actors::gossip::GossipMsg;
use crate::actors::store::StoreMsg;
use crate::events::EventLog;
use crate::secure::Gate;
use crate::supervision::manager::ManagerMsg;
use crate::task::{AbortOnDrop, Handle};
use crate::types::Clock;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::net::TcpListener;

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

pub struct ApiArgs {
    pub name: crate::types::NodeName,
    pub listener: TcpListener,
    pub gossip: Handle<GossipMsg>,
    pub services: Handle<ManagerMsg>,
    pub store: Handle<StoreMsg>,
    pub gate: std::sync::Arc<Gate>,
    pub view: Snapshots,
    pub events: EventLog,
    pub clock: Clock,
    /// Where the history database is (read by the events and history routes).
    pub data_dir: std::path::PathBuf,
    /// What every request that changes something must bear ([`token`]).
    pub token: std::sync::Arc<String>,
}

pub struct ApiState {
    server: Option<AbortOnDrop<()>>,
}

pub struct ApiActor;

/// What the server's task ended with, reported to the actor so it fails and is restarted.
pub enum ApiMsg {
    ServerExited(String),
}

impl Actor for ApiActor {
    type Msg = ApiMsg;
    type State = ApiState;
    type Arguments = ApiArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<ApiMsg>,
        args: ApiArgs,
    ) -> Result<ApiState, ActorProcessingErr> {
        let addr = args.listener.local_addr()?;
        let app = routes::router(routes::Ctx {
            name: args.name,
            gossip: args.gossip,
            services: args.services,
            store: args.store,
            gate: args.gate,
            view: args.view,
            events: args.events,
            clock: args.clock,
            data_dir: args.data_dir,
        })
        .layer(axum::middleware::from_fn_with_state(
            args.token,
            token::require,
        ));
        let server = tokio::spawn(async move {
            let why = match axum::serve(args.listener, app).await {
                Ok(()) => "the server stopped".to_string(),
                Err(e) => e.to_string(),
            };
            let _ = myself.cast(ApiMsg::ServerExited(why));
        });
        tracing::info!(%addr, "API listening");
        Ok(ApiState {
            server: Some(AbortOnDrop(server)),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<ApiMsg>,
        msg: ApiMsg,
        _state: &mut ApiState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ApiMsg::ServerExited(why) => Err(format!("API server exited: {why}").into()),
        }
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<ApiMsg>,
        state: &mut ApiState,
    ) -> Result<(), ActorProcessingErr> {
        state.server.take();
        Ok(())
    }
}
