//! The tcp and http probes. Both report the time to answer as perfdata `time` (seconds).

use super::{Health, Outcome, Perf, timed_out};
use crate::supervision::spec::HttpUrl;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The longest status line (and headers before it) read from an http answer.
const MAX_HEAD: usize = 8 * 1024;

/// Ok if a TCP connection to `addr` ("host:port") opens within `timeout`.
pub(super) async fn tcp(addr: &str, timeout: Duration) -> Outcome {
    let start = Instant::now();
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(_stream)) => timed(
            Outcome::new(Health::Ok, format!("connected to {addr}")),
            start,
        ),
        Ok(Err(e)) => Outcome::new(Health::Critical, format!("cannot connect to {addr}: {e}")),
        Err(_) => Outcome::new(Health::Critical, format!("{addr}: {}", timed_out(timeout))),
    }
}

/// Ok if a GET of `url` answers 2xx or 3xx (redirects are not followed) within `timeout`;
/// otherwise critical with the status line. Only `http://` urls can be probed; any other is
/// `unknown`, since it says nothing about the service.
pub(super) async fn http(url: &str, timeout: Duration) -> Outcome {
    let Some(target) = HttpUrl::parse(url) else {
        return Outcome::new(
            Health::Unknown,
            format!("cannot probe {url:?}: only http://host[:port][/path] urls are supported"),
        );
    };
    let start = Instant::now();
    match tokio::time::timeout(timeout, status_line(&target)).await {
        Ok(Ok(line)) => {
            let health = match status_code(&line) {
                Some(200..=399) => Health::Ok,
                _ => Health::Critical,
            };
            timed(Outcome::new(health, line), start)
        }
        Ok(Err(message)) => Outcome::new(Health::Critical, format!("{url}: {message}")),
        Err(_) => Outcome::new(Health::Critical, format!("{url}: {}", timed_out(timeout))),
    }
}

fn timed(mut outcome: Outcome, start: Instant) -> Outcome {
    // In full: a check on loopback takes a tenth of a millisecond, not zero.
    let seconds = start.elapsed().as_micros() as f64 / 1e6;
    outcome.perfdata.push(Perf {
        label: "time".to_string(),
        value: seconds,
        unit: "s".to_string(),
        ..Perf::default()
    });
    outcome
}

/// Why a GET got no status line.
#[derive(Debug, thiserror::Error)]
enum GetError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot send the request: {0}")]
    Send(std::io::Error),
    #[error("the answer has no status line")]
    NoStatusLine,
    #[error("closed without answering")]
    Closed,
    #[error("cannot read the answer: {0}")]
    Read(std::io::Error),
}

/// Sends the GET and returns the answer's status line.
async fn status_line(url: &HttpUrl) -> Result<String, GetError> {
    let mut stream =
        TcpStream::connect(&url.connect)
            .await
            .map_err(|source| GetError::Connect {
                addr: url.connect.clone(),
                source,
            })?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: nbwatch-probe\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        url.path, url.host
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(GetError::Send)?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        if let Some(end) = head.iter().position(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(&head[..end]);
            return Ok(line.trim().to_string());
        }
        if head.len() >= MAX_HEAD {
            return Err(GetError::NoStatusLine);
        }
        match stream.read(&mut buf).await {
            Ok(0) if head.is_empty() => return Err(GetError::Closed),
            Ok(0) => return Ok(String::from_utf8_lossy(&head).trim().to_string()),
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) => return Err(GetError::Read(e)),
        }
    }
}

/// The status code of "HTTP/1.1 200 OK", if the line is a status line.
fn status_code(line: &str) -> Option<u16> {
    let mut words = line.split_whitespace();
    if !words.next()?.starts_with("HTTP/") {
        return None;
    }
    let code = words.next()?;
    if code.len() != 3 {
        return None;
    }
    code.parse().ok()
}
