//! The daemon as a whole: a node ([`crate::node`]) serving the HTTP API ([`crate::api`]).
//! This is where the two are put together, above both, so that the node's wiring never
//! reaches up into the API. `nbwatch run`, the tests and the examples start nodes here.

use crate::config::Config;
pub use crate::node::{NodeError, NodeHandle, Sockets, bind};
use std::future::Future;
use std::sync::Arc;

/// Starts a node serving the API and returns at once; joining goes on in the background.
pub async fn start(config: Config, sockets: Sockets) -> Result<NodeHandle, NodeError> {
    crate::node::start(config, sockets, Arc::new(crate::api::router)).await
}

/// Runs a node serving the API until `shutdown` completes (then it leaves the cluster
/// gracefully) or until it stops on its own.
pub async fn run(
    config: Config,
    sockets: Sockets,
    shutdown: impl Future<Output = ()>,
) -> Result<(), NodeError> {
    crate::node::run(config, sockets, Arc::new(crate::api::router), shutdown).await
}
