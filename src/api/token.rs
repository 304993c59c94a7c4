//! The API's bearer token: what stands between a local user (or a browser page) and the
//! power to stop services, reload, silence alerts or change the keyring.
//!
//! The daemon creates the token at first start in `data_dir/api.token`, mode 0600, so only
//! the daemon's user (and root) can read it; the CLI reads the same file (found through
//! `--config`), or `--token-file`, or the `NBWATCH_TOKEN` variable. Reading the cluster's
//! state needs no token: GET requests are open on loopback.
//!
//! The check is one layer around the whole router that guards every method except GET and
//! HEAD, rather than a check in each handler: an endpoint added later is covered without
//! anyone remembering to.

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

use crate::secure::token::TOKEN_FILE;

/// Compares in time independent of where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn refuse(why: &str) -> Response {
    let body = serde_json::json!({
        "error": format!(
            "{why}: changing anything needs `Authorization: Bearer <token>`, the token in \
             {TOKEN_FILE} of the node's data_dir (the CLI reads it through --config, \
             --token-file or NBWATCH_TOKEN)"
        )
    });
    let mut response = (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer realm=\"nbwatch\""),
    );
    response
}

/// The layer: GET and HEAD pass; anything else needs the bearer token.
pub(super) async fn require(
    State(token): State<Arc<String>>,
    request: Request,
    next: Next,
) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD) {
        return next.run(request).await;
    }
    let Some(value) = request.headers().get(header::AUTHORIZATION) else {
        return refuse("no token");
    };
    let given = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(given) if same(given.as_bytes(), token.as_bytes()) => next.run(request).await,
        Some(_) => refuse("wrong token"),
        None => refuse("the Authorization header is not `Bearer <token>`"),
    }
}
