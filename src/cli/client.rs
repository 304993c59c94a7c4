//! The CLI's HTTP client: fetch JSON from the daemon on loopback, and send it the changes people
//! ask for.
//!
//! A [`Client`] is the daemon's address and API token, made once per command from the global
//! options (see `cli/connect.rs`); the free functions are the same requests for a caller that
//! has only an address (tests, examples).
//!
//! It is a small HTTP/1.1 implementation over a `TcpStream` (in `client/http.rs`) instead of a full HTTP
//! client crate: it only ever talks to our own daemon, one request per connection
//! (`Connection: close`), and that needs a few dozen lines, not a TLS-capable dependency tree.

mod http;

pub use http::BadResponse;

use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;

/// The largest response body (and, separately, header section of 64 KiB) we accept.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// How long a request waits for the daemon unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a request to the daemon failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "the nbwatch daemon is not running at {addr} (connection refused); start it with \
         `nbwatch run`, or point at it with `--api ADDR` or the NBWATCH_API variable"
    )]
    NotRunning { addr: SocketAddr },
    #[error("the daemon at {addr} did not answer within {}", humantime::format_duration(*.timeout))]
    Timeout { addr: SocketAddr, timeout: Duration },
    #[error("cannot talk to the daemon at {addr}")]
    Io {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the daemon at {addr} sent a malformed HTTP response: {reason}")]
    Malformed {
        addr: SocketAddr,
        reason: BadResponse,
    },
    #[error("the response from {addr} is larger than {limit} bytes")]
    TooLarge { addr: SocketAddr, limit: usize },
    #[error("the daemon answered HTTP {code}: {body}")]
    Status { code: u16, body: String },
    #[error("the daemon at {addr} sent invalid JSON")]
    Json {
        addr: SocketAddr,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "invalid request path {0:?}: it must start with '/' and contain no spaces or control characters"
    )]
    InvalidPath(String),
    #[error("the API token contains control characters")]
    InvalidToken,
}

impl ClientError {
    /// The daemon's own message when it refused a request with the API's `{"error": ...}` body.
    pub fn api_message(&self) -> Option<String> {
        let ClientError::Status { body, .. } = self else {
            return None;
        };
        let v = serde_json::from_str::<Value>(body).ok()?;
        v.get("error").and_then(Value::as_str).map(str::to_string)
    }
}

/// The daemon one command talks to: its address, the API token sent with changes (if any), and
/// how long a request may wait.
#[derive(Clone)]
pub struct Client {
    addr: SocketAddr,
    token: Option<String>,
    timeout: Duration,
    /// TLS, for an API with `api.tls_cert`.
    tls: Option<tokio_rustls::TlsConnector>,
}

impl std::fmt::Debug for Client {
    // The token is a secret: never in a debug print.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("addr", &self.addr)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("timeout", &self.timeout)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Client {
    /// A client of the daemon at `addr`, without a token, waiting [`DEFAULT_TIMEOUT`].
    pub fn new(addr: SocketAddr) -> Client {
        Client {
            addr,
            token: None,
            timeout: DEFAULT_TIMEOUT,
            tls: None,
        }
    }

    /// Speaks TLS to the API, trusting what `tls` trusts.
    pub fn with_tls(mut self, tls: tokio_rustls::TlsConnector) -> Client {
        self.tls = Some(tls);
        self
    }

    /// The API token sent with changes (when the daemon requires one).
    pub fn with_token(mut self, token: impl Into<String>) -> Client {
        self.token = Some(token.into());
        self
    }

    /// How long each request may wait for the answer.
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// `GET path`, parsed as JSON.
    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.request("GET", path, None, None).await
    }

    /// `POST path` with a JSON body and the token, parsed as JSON.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        let body = body.to_string();
        self.request("POST", path, Some(&body), self.token.as_deref())
            .await
    }

    /// `DELETE path` with the token, parsed as JSON.
    pub async fn delete(&self, path: &str) -> Result<Value, ClientError> {
        self.request("DELETE", path, None, self.token.as_deref())
            .await
    }

    async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        bearer: Option<&str>,
    ) -> Result<Value, ClientError> {
        let wire = Wire {
            addr: self.addr,
            timeout: self.timeout,
            tls: self.tls.as_ref(),
        };
        request_json(&wire, method, path, body, bearer).await
    }
}

/// `GET path` and parse the body as JSON (an empty body is `null`).
pub async fn get_json(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<Value, ClientError> {
    let wire = Wire {
        addr,
        timeout,
        tls: None,
    };
    request_json(&wire, "GET", path, None, None).await
}

/// `POST path` with a JSON body and optionally `Authorization: Bearer ...`; parse the answer as
/// JSON (an empty body, as in `204 No Content`, is `null`).
pub async fn post_json(
    addr: SocketAddr,
    path: &str,
    body: &Value,
    bearer: Option<&str>,
    timeout: Duration,
) -> Result<Value, ClientError> {
    let body = body.to_string();
    let wire = Wire {
        addr,
        timeout,
        tls: None,
    };
    request_json(&wire, "POST", path, Some(&body), bearer).await
}

/// `DELETE path`, optionally with `Authorization: Bearer ...`; parse the answer as JSON.
pub async fn delete_json(
    addr: SocketAddr,
    path: &str,
    bearer: Option<&str>,
    timeout: Duration,
) -> Result<Value, ClientError> {
    let wire = Wire {
        addr,
        timeout,
        tls: None,
    };
    request_json(&wire, "DELETE", path, None, bearer).await
}

/// Where and how a request goes.
struct Wire<'a> {
    addr: SocketAddr,
    timeout: Duration,
    tls: Option<&'a tokio_rustls::TlsConnector>,
}

async fn request_json(
    wire: &Wire<'_>,
    method: &str,
    path: &str,
    body: Option<&str>,
    bearer: Option<&str>,
) -> Result<Value, ClientError> {
    let (addr, timeout) = (wire.addr, wire.timeout);
    if !path.starts_with('/') || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ClientError::InvalidPath(path.to_string()));
    }
    if bearer.is_some_and(|b| b.chars().any(|c| c.is_control())) {
        // A token with CR/LF would inject headers; no valid token contains one.
        return Err(ClientError::InvalidToken);
    }
    let request = http::encode_request(addr, method, path, body, bearer);
    let exchange = http::exchange(addr, request.as_bytes(), wire.tls);
    let response = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| ClientError::Timeout { addr, timeout })??;
    if !(200..300).contains(&response.code) {
        return Err(ClientError::Status {
            code: response.code,
            body: status_body(&response.body),
        });
    }
    if response.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&response.body).map_err(|source| ClientError::Json { addr, source })
}

/// The body of an error answer as text for a person: trimmed, and cut at 4 KiB so an error page
/// does not flood the terminal.
fn status_body(body: &[u8]) -> String {
    const LIMIT: usize = 4096;
    let text = String::from_utf8_lossy(&body[..body.len().min(LIMIT)]);
    let mut text = text.trim().to_string();
    if body.len() > LIMIT {
        text.push_str(" [...]");
    }
    text
}

#[cfg(test)]
mod tests;
