//! `HttpActor`: owns the task of an HTTP server, so the NodeActor supervises the API like any
//! other child: if the server dies the actor fails and is restarted on the same listening
//! socket. What the server answers (the routes) is given to it ready-made: the shell knows
//! nothing of the API above it. How connections are served, with a head timeout and a cap on
//! connections, is [`serve`].

pub mod serve;

use crate::task::AbortOnDrop;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::net::TcpListener;

pub struct HttpArgs {
    pub listener: TcpListener,
    /// TLS in front of HTTP (the API with `api.tls_cert`).
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub router: axum::Router,
}

pub struct HttpState {
    server: Option<AbortOnDrop<()>>,
}

pub struct HttpActor;

/// What the server's task ended with, reported to the actor so it fails and is restarted.
pub enum HttpMsg {
    ServerExited(String),
}

impl Actor for HttpActor {
    type Msg = HttpMsg;
    type State = HttpState;
    type Arguments = HttpArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<HttpMsg>,
        args: HttpArgs,
    ) -> Result<HttpState, ActorProcessingErr> {
        let addr = args.listener.local_addr()?;
        let server = tokio::spawn(async move {
            serve::serve(args.listener, args.tls, args.router, serve::LIMITS).await;
            let _ = myself.cast(HttpMsg::ServerExited("the server stopped".to_string()));
        });
        tracing::info!(%addr, "listening");
        Ok(HttpState {
            server: Some(AbortOnDrop(server)),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<HttpMsg>,
        msg: HttpMsg,
        _state: &mut HttpState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            HttpMsg::ServerExited(why) => Err(format!("API server exited: {why}").into()),
        }
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<HttpMsg>,
        state: &mut HttpState,
    ) -> Result<(), ActorProcessingErr> {
        state.server.take();
        Ok(())
    }
}
