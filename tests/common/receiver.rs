//! A small HTTP server on port 0 that records each request (path, content type,
//! authorization, JSON body) and answers as told: a stand-in for a webhook receiver.

use serde_json::Value;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub fn shared<T>(value: T) -> Arc<Mutex<T>> {
    Arc::new(Mutex::new(value))
}

pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(Clone, Copy, Debug)]
pub enum Answer {
    Status(u16),
    /// Read the request, then never answer (nor close).
    Never,
}

#[derive(Debug)]
pub struct Request {
    pub path: String,
    pub content_type: String,
    pub authorization: Option<String>,
    pub body: Value,
}

pub struct Receiver {
    pub url: String,
    pub requests: Arc<Mutex<Vec<Request>>>,
}

impl Receiver {
    pub fn count(&self) -> usize {
        lock(&self.requests).len()
    }
}

/// An HTTP server answering its n-th request with `answers[n]` (the last one repeats).
pub async fn receiver(answers: &[Answer]) -> Receiver {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let requests = shared(Vec::new());
    let answers = answers.to_vec();
    let seen = requests.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (answers, seen) = (answers.clone(), seen.clone());
            tokio::spawn(async move { serve_http(stream, &answers, &seen).await });
        }
    });
    Receiver {
        url: format!("http://{addr}/hook"),
        requests,
    }
}

pub async fn serve_http(mut stream: TcpStream, answers: &[Answer], seen: &Mutex<Vec<Request>>) {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&data[..head_end]).to_string();
    let header = |name: &str| {
        head.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
    };
    let length: usize = header("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    while data.len() < head_end + length {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    }
    let request = Request {
        path: head.split_whitespace().nth(1).unwrap_or("").to_string(),
        content_type: header("content-type").unwrap_or_default(),
        authorization: header("authorization"),
        body: serde_json::from_slice(&data[head_end..head_end + length]).unwrap_or(Value::Null),
    };
    let answer = {
        let mut seen = lock(seen);
        seen.push(request);
        answers[(seen.len() - 1).min(answers.len() - 1)]
    };
    match answer {
        Answer::Status(code) => {
            let reply = format!("HTTP/1.1 {code} Whatever\r\nContent-Length: 0\r\n\r\n");
            let _ = stream.write_all(reply.as_bytes()).await;
        }
        Answer::Never => {
            std::future::pending::<()>().await;
        }
    }
}
