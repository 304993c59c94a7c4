//! How the API's connections are accepted and served: HTTP/1.1 with a deadline for the
//! request head and a cap on connections, so slow clients cannot hold the API.
//!
//! `axum::serve` reads a request head for as long as the client takes to send it and accepts
//! every connection: 200 connections that each sent half a request line held the API for as
//! long as they liked. Here each connection must send a complete request head within
//! [`Limits::header_read_timeout`] of being accepted (and of the previous answer, on a kept-alive
//! connection), else hyper closes it; and at most [`Limits::max_connections`] are served at
//! once. Past the cap the server stops accepting: new connections wait in the kernel's accept
//! queue and are served, in order, as slots free — a client waits rather than being refused,
//! and while the slots are held by clients that send nothing, a slot frees within the header
//! timeout. A body's deadline is the API's own (`api::body`: 5 s, read before any handler);
//! an answer has none (a remote command waits for its answer as long as the caller asked).

use crate::lograte;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// What one client may cost the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// From the accept (or the end of the last answer) to the end of the request head.
    pub header_read_timeout: Duration,
    /// Connections served at once; more wait to be accepted.
    pub max_connections: usize,
}

/// The daemon's limits: the head timeout is the gossip port's request timeout
/// ([`crate::transport::REQUEST_TIMEOUT`], 5 s); 64 connections are many times what the CLI,
/// a dashboard and a Prometheus scraper use together.
pub const LIMITS: Limits = Limits {
    header_read_timeout: Duration::from_secs(5),
    max_connections: 64,
};

/// Serves `router` on `listener` (behind `tls`, if given) until the task is dropped. A TLS
/// handshake must end within the head timeout too.
pub async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    router: axum::Router,
    limits: Limits,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let failed_accepts = lograte::Limit::new(lograte::EVERY);
    loop {
        // Never closed, so this waits for a slot and never fails.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: wait a little instead of spinning.
                if let Some(count) = failed_accepts.note() {
                    tracing::warn!(error = %e, failed = count, "accepting an API connection failed");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let service = TowerToHyperService::new(router.clone());
        let tls = tls.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout);
            let served = match tls {
                Some(tls) => {
                    let handshake =
                        tokio::time::timeout(limits.header_read_timeout, tls.accept(stream)).await;
                    match handshake {
                        Ok(Ok(stream)) => {
                            http.serve_connection(TokioIo::new(stream), service).await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "a TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    }
                }
                None => http.serve_connection(TokioIo::new(stream), service).await,
            };
            if let Err(e) = served {
                tracing::debug!(error = %e, "an API connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests;
