//! A small HTTP server on port 0 that records each request (path, content type,
//! authorization, JSON body) and answers as told: a stand-in for a webhook receiver.

use serde_json::Value;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

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
    /// The body as JSON (`Null` when it is not JSON).
    pub body: Value,
    /// Every header, names in lower case.
    pub headers: Vec<(String, String)>,
    pub raw: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        (self.headers.iter())
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
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
    serve(answers, None).await
}

/// The same over TLS, presenting the certificate of `tls` (an https URL).
pub async fn receiver_tls(answers: &[Answer], tls: tokio_rustls::TlsAcceptor) -> Receiver {
    serve(answers, Some(tls)).await
}

async fn serve(answers: &[Answer], tls: Option<tokio_rustls::TlsAcceptor>) -> Receiver {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let requests = shared(Vec::new());
    let answers = answers.to_vec();
    let seen = requests.clone();
    let scheme = if tls.is_some() { "https" } else { "http" };
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (answers, seen, tls) = (answers.clone(), seen.clone(), tls.clone());
            tokio::spawn(async move {
                match tls {
                    // A client that refuses the certificate ends the handshake: nothing to serve.
                    Some(tls) => {
                        if let Ok(stream) = tls.accept(stream).await {
                            serve_http(stream, &answers, &seen).await;
                        }
                    }
                    None => serve_http(stream, &answers, &seen).await,
                }
            });
        }
    });
    Receiver {
        url: format!("{scheme}://{addr}/hook"),
        requests,
    }
}

pub async fn serve_http<S>(mut stream: S, answers: &[Answer], seen: &Mutex<Vec<Request>>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
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
    let raw = data[head_end..head_end + length].to_vec();
    let request = Request {
        path: head.split_whitespace().nth(1).unwrap_or("").to_string(),
        content_type: header("content-type").unwrap_or_default(),
        authorization: header("authorization"),
        body: serde_json::from_slice(&raw).unwrap_or(Value::Null),
        headers: (head.lines().skip(1))
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect(),
        raw,
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

/// A certificate authority made for one test with Debian's `openssl`, and a server
/// certificate it signed for 127.0.0.1 and localhost: `ca.pem`, `server.pem`, `server.key`
/// in `dir`.
pub struct TestCa {
    pub ca: std::path::PathBuf,
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

impl TestCa {
    pub fn new(dir: &std::path::Path) -> TestCa {
        let run = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .unwrap_or_else(|e| panic!("cannot run openssl: {e}"));
            assert!(out.status.success(), "openssl {args:?}: {out:?}");
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let mut ca = vec!["req", "-x509"];
        ca.extend(ec);
        ca.extend([
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=test ca",
        ]);
        run(&ca);
        let mut csr = vec!["req"];
        csr.extend(ec);
        csr.extend([
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ]);
        run(&csr);
        std::fs::write(
            dir.join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
             extendedKeyUsage=serverAuth\n",
        )
        .expect("extensions");
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ]);
        TestCa {
            ca: dir.join("ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
        }
    }

    /// A TLS server presenting the server certificate.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        nbwatch::tls::server(&self.cert, &self.key).expect("a server from the test certificate")
    }
}
