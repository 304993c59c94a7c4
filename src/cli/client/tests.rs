use super::*;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

const TIMEOUT: Duration = Duration::from_secs(5);

/// A one-shot server on 127.0.0.1:0: reads one request (head and Content-Length body), answers
/// with `pieces` written one after another, then closes unless `linger`. Returns the request.
async fn serve_once(pieces: Vec<Vec<u8>>, linger: bool) -> (SocketAddr, JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.expect("accept");
        sock.set_nodelay(true).expect("nodelay");
        let mut req = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let text = String::from_utf8_lossy(&req).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let len = text
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .map_or(0, |v| v.trim().parse::<usize>().expect("length"));
                if req.len() >= end + 4 + len {
                    break;
                }
            }
            let n = sock.read(&mut buf).await.expect("read");
            if n == 0 {
                break;
            }
            req.extend_from_slice(&buf[..n]);
        }
        for piece in pieces {
            sock.write_all(&piece).await.expect("write");
            sock.flush().await.expect("flush");
            tokio::task::yield_now().await;
        }
        if linger {
            // Keep the connection open until the client hangs up.
            let _ = sock.read(&mut buf).await;
        }
        String::from_utf8_lossy(&req).to_string()
    });
    (addr, task)
}

fn one(s: &str) -> Vec<Vec<u8>> {
    vec![s.as_bytes().to_vec()]
}

#[tokio::test]
async fn a_content_length_response_is_parsed_as_json() {
    let body = r#"[{"name":"mythbox"}]"#;
    let resp = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let (addr, server) = serve_once(one(&resp), false).await;
    let v = get_json(addr, "/api/v1/members", TIMEOUT)
        .await
        .expect("get");
    assert_eq!(v, json!([{"name": "mythbox"}]));
    let req = server.await.expect("server");
    assert!(req.starts_with("GET /api/v1/members HTTP/1.1\r\n"), "{req}");
    assert!(req.contains("\r\nConnection: close\r\n"), "{req}");
    assert!(req.contains(&format!("\r\nHost: {addr}\r\n")), "{req}");
}

#[tokio::test]
async fn a_response_is_complete_at_content_length_even_if_the_server_keeps_the_connection() {
    let (addr, _server) = serve_once(
        one("HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n{\"a\":1}"),
        true,
    )
    .await;
    let v = get_json(addr, "/x", TIMEOUT).await.expect("get");
    assert_eq!(v, json!({"a": 1}));
}

#[tokio::test]
async fn a_chunked_response_split_across_writes_is_reassembled() {
    let pieces: Vec<Vec<u8>> = [
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n",
        "Content-Type: application/json\r\n\r\n",
        "5\r\n[{\"na\r\n",
        "c;ext=1\r\nme\":\"stud",
        "y\"}\r\n",
        "1\r\n]\r\n0\r\n",
        "X-Trailer: yes\r\n\r\n",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    let (addr, _server) = serve_once(pieces, false).await;
    let v = get_json(addr, "/api/v1/members", TIMEOUT)
        .await
        .expect("get");
    assert_eq!(v, json!([{"name": "study"}]));
}

#[tokio::test]
async fn a_chunked_response_missing_the_final_crlf_is_accepted_at_close() {
    let resp = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n42\r\n0\r\n";
    let (addr, _server) = serve_once(one(resp), false).await;
    assert_eq!(get_json(addr, "/", TIMEOUT).await.expect("get"), json!(42));
}

#[tokio::test]
async fn a_response_without_length_runs_until_close() {
    let (addr, _server) = serve_once(one("HTTP/1.0 200 OK\r\n\r\n{\"ok\":true}"), false).await;
    assert_eq!(
        get_json(addr, "/", TIMEOUT).await.expect("get"),
        json!({"ok": true})
    );
}

#[tokio::test]
async fn a_server_error_becomes_a_status_error_with_the_body() {
    let body = r#"{"error":"store unavailable"}"#;
    let resp = format!(
        "HTTP/1.1 500 Internal Server Error\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (addr, _server) = serve_once(one(&resp), false).await;
    match get_json(addr, "/api/v1/events", TIMEOUT).await {
        Err(ClientError::Status { code, body: got }) => {
            assert_eq!(code, 500);
            assert_eq!(got, body);
        }
        other => panic!("expected a status error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_refused_port_says_the_daemon_is_not_running_and_how_to_point_at_it() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let err = get_json(addr, "/api/v1/members", TIMEOUT)
        .await
        .expect_err("refused");
    assert!(matches!(err, ClientError::NotRunning { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&addr.to_string()), "{msg}");
    assert!(msg.contains("not running"), "{msg}");
    assert!(
        msg.contains("--api ADDR") && msg.contains("NBWATCH_API"),
        "{msg}"
    );
}

#[tokio::test]
async fn post_sends_the_body_and_bearer_and_accepts_no_content() {
    let (addr, server) = serve_once(one("HTTP/1.1 204 No Content\r\n\r\n"), false).await;
    let body = json!({"action": "restart"});
    let v = post_json(addr, "/api/v1/services/web", &body, Some("s3cret"), TIMEOUT)
        .await
        .expect("post");
    assert_eq!(v, Value::Null);
    let req = server.await.expect("server");
    assert!(
        req.starts_with("POST /api/v1/services/web HTTP/1.1\r\n"),
        "{req}"
    );
    assert!(
        req.contains("\r\nAuthorization: Bearer s3cret\r\n"),
        "{req}"
    );
    assert!(
        req.contains("\r\nContent-Type: application/json\r\n"),
        "{req}"
    );
    assert!(req.ends_with("\r\n\r\n{\"action\":\"restart\"}"), "{req}");
}

#[tokio::test]
async fn a_silent_server_times_out() {
    let (addr, _server) = serve_once(vec![], true).await;
    let err = get_json(addr, "/", Duration::from_millis(200))
        .await
        .expect_err("timeout");
    assert!(matches!(err, ClientError::Timeout { .. }), "{err:?}");
    assert!(err.to_string().contains("200ms"), "{err}");
}

#[tokio::test]
async fn a_truncated_body_is_malformed() {
    let (addr, _server) = serve_once(
        one("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}"),
        false,
    )
    .await;
    let err = get_json(addr, "/", TIMEOUT).await.expect_err("truncated");
    assert!(matches!(err, ClientError::Malformed { .. }), "{err:?}");
}

#[tokio::test]
async fn garbage_instead_of_http_is_malformed() {
    let (addr, _server) = serve_once(one("SSH-2.0-OpenSSH_9.6\r\n\r\n"), false).await;
    let err = get_json(addr, "/", TIMEOUT).await.expect_err("garbage");
    assert!(matches!(err, ClientError::Malformed { .. }), "{err:?}");
}

#[tokio::test]
async fn a_bad_chunk_size_is_malformed() {
    let resp = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n";
    let (addr, _server) = serve_once(one(resp), false).await;
    let err = get_json(addr, "/", TIMEOUT).await.expect_err("bad chunk");
    assert!(matches!(err, ClientError::Malformed { .. }), "{err:?}");
}

#[tokio::test]
async fn an_oversized_content_length_is_refused_before_reading() {
    let resp = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
        MAX_RESPONSE_BYTES + 1
    );
    let (addr, _server) = serve_once(one(&resp), true).await;
    let err = get_json(addr, "/", TIMEOUT).await.expect_err("too large");
    assert!(matches!(err, ClientError::TooLarge { .. }), "{err:?}");
}

#[tokio::test]
async fn invalid_json_is_reported() {
    let (addr, _server) = serve_once(
        one("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n{x}"),
        false,
    )
    .await;
    let err = get_json(addr, "/", TIMEOUT).await.expect_err("json");
    assert!(matches!(err, ClientError::Json { .. }), "{err:?}");
}

#[tokio::test]
async fn paths_and_tokens_that_would_inject_headers_are_refused() {
    let addr: SocketAddr = "127.0.0.1:9".parse().expect("addr");
    let err = get_json(addr, "/a b", TIMEOUT).await.expect_err("path");
    assert!(matches!(err, ClientError::InvalidPath(_)), "{err:?}");
    let err = get_json(addr, "api", TIMEOUT).await.expect_err("path");
    assert!(matches!(err, ClientError::InvalidPath(_)), "{err:?}");
    let err = post_json(addr, "/", &Value::Null, Some("a\r\nX: y"), TIMEOUT)
        .await
        .expect_err("token");
    assert!(matches!(err, ClientError::InvalidToken), "{err:?}");
}

#[tokio::test]
async fn a_client_sends_its_token_with_changes_and_not_with_reads() {
    let (addr, server) = serve_once(one("HTTP/1.1 204 No Content\r\n\r\n"), false).await;
    let client = Client::new(addr).with_token("s3cret");
    client
        .post("/api/v1/reload", &json!({}))
        .await
        .expect("post");
    let req = server.await.expect("server");
    assert!(
        req.contains("\r\nAuthorization: Bearer s3cret\r\n"),
        "{req}"
    );
    let (addr, server) = serve_once(one("HTTP/1.1 200 OK\r\n\r\n[]"), false).await;
    let client = Client::new(addr).with_token("s3cret");
    assert_eq!(client.get("/api/v1/members").await.expect("get"), json!([]));
    let req = server.await.expect("server");
    assert!(!req.contains("Authorization"), "{req}");
}

#[test]
fn the_apis_own_message_is_taken_from_an_error_body() {
    let refused = ClientError::Status {
        code: 404,
        body: r#"{"error":"no service web"}"#.to_string(),
    };
    assert_eq!(refused.api_message().as_deref(), Some("no service web"));
    let page = ClientError::Status {
        code: 502,
        body: "<html>bad gateway</html>".to_string(),
    };
    assert_eq!(page.api_message(), None);
}
