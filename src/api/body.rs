//! A request body must arrive whole, and soon. The connection layer
//! (`actors::http::serve`) bounds the time to a complete request head; this layer bounds the
//! body: it is read here, within [`BODY_TIMEOUT`] and at most [`MAX_BODY`] bytes, before any
//! handler runs. A client that sends a head and then trickles its body (or never sends the
//! length it announced) gets `408 Request Timeout` and its connection back, instead of
//! holding one of the API's connection slots for as long as it likes; a body over the limit
//! gets `413`. Handlers still read the body as before, from the bytes read here.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::time::Duration;

/// How long a request's body may take to arrive, once its head has: the same 5 s as the
/// head (`actors::http::serve::LIMITS`).
pub const BODY_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest body read: axum's own default limit, which the JSON handlers had before.
pub const MAX_BODY: usize = 2 * 1024 * 1024;

fn refuse(status: StatusCode, why: String) -> Response {
    let mut response = (status, axum::Json(serde_json::json!({ "error": why }))).into_response();
    // The rest of a body we stopped reading is not worth waiting for.
    response.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    response
}

pub(super) async fn read_whole(request: Request, next: Next) -> Response {
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_BODY as u64) {
        return refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than {MAX_BODY} bytes"),
        );
    }
    let (parts, body) = request.into_parts();
    match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, MAX_BODY)).await {
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Ok(Err(e)) => refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body could not be read whole (at most {MAX_BODY} bytes): {e}"),
        ),
        Err(_) => refuse(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {}s",
                BODY_TIMEOUT.as_secs()
            ),
        ),
    }
}
