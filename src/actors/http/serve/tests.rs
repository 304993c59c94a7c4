//! Real sockets on loopback: slow clients against the server with short limits.

use super::*;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How long any step may take before the test fails (a loaded machine included).
const DEADLINE: Duration = Duration::from_secs(15);

/// A server with `limits` answering `GET /ok` with "ok", on a port of its own.
async fn server(limits: Limits) -> (SocketAddr, crate::task::AbortOnDrop<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let router = axum::Router::new().route("/ok", axum::routing::get(async || "ok"));
    let task = tokio::spawn(serve(listener, None, router, limits));
    (addr, crate::task::AbortOnDrop(task))
}

/// Connections that sent half a request line and nothing more.
async fn slow(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(b"GET /ok HTT").await.expect("send");
        out.push(stream);
    }
    out
}

/// A whole request; the answer's status line.
async fn request(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let head = format!("GET /ok HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.expect("send");
    let mut answer = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut answer))
        .await
        .expect("an answer within the deadline")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer).into_owned();
    answer.lines().next().unwrap_or_default().to_string()
}

/// Waits until the server has closed `stream` (whatever it wrote before), within the deadline.
async fn closed_by_server(stream: &mut TcpStream) {
    let mut sink = Vec::new();
    let read = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut sink)).await;
    assert!(
        read.is_ok(),
        "the connection is still open after {DEADLINE:?}"
    );
}

/// True while `stream` is open and the server has sent nothing on it.
fn still_open(stream: &TcpStream) -> bool {
    let mut buf = [0u8; 1];
    matches!(stream.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_connections_are_closed_after_the_head_timeout_and_others_are_answered_meanwhile() {
    let timeout = Duration::from_secs(2);
    let (addr, _server) = server(Limits {
        header_read_timeout: timeout,
        max_connections: 32,
    })
    .await;
    let opened = Instant::now();
    let mut slow = slow(addr, 20).await;

    assert_eq!(request(addr).await, "HTTP/1.1 200 OK");
    // On a machine so loaded that the answer took longer than the timeout, the slow ones may
    // be gone already; the point then rests on the answer alone.
    let answered = opened.elapsed();
    if answered < timeout {
        assert!(slow.iter().all(still_open), "closed before their time");
    }

    for stream in &mut slow {
        closed_by_server(stream).await;
    }
    let closed = opened.elapsed();
    assert!(
        closed >= timeout - Duration::from_millis(100),
        "closed after {closed:?}, before the {timeout:?} timeout"
    );
    assert_eq!(request(addr).await, "HTTP/1.1 200 OK");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_past_the_cap_waits_until_a_slot_frees_and_is_then_answered() {
    let timeout = Duration::from_secs(1);
    let (addr, _server) = server(Limits {
        header_read_timeout: timeout,
        max_connections: 4,
    })
    .await;
    let opened = Instant::now();
    let mut slow = slow(addr, 4).await;

    // The fifth is served only once the server has given up on one of the four.
    assert_eq!(request(addr).await, "HTTP/1.1 200 OK");
    let answered = opened.elapsed();
    assert!(
        answered >= timeout - Duration::from_millis(100),
        "the fifth connection was answered after {answered:?}, while four held every slot"
    );
    for stream in &mut slow {
        closed_by_server(stream).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_alive_connection_that_goes_quiet_is_closed_after_the_head_timeout() {
    let timeout = Duration::from_secs(1);
    let (addr, _server) = server(Limits {
        header_read_timeout: timeout,
        max_connections: 4,
    })
    .await;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let head = format!("GET /ok HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    stream.write_all(head.as_bytes()).await.expect("send");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(DEADLINE, stream.read(&mut buf))
        .await
        .expect("an answer")
        .expect("read");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let quiet = Instant::now();
    closed_by_server(&mut stream).await;
    assert!(quiet.elapsed() >= timeout - Duration::from_millis(100));
}
