//! The wire side of the client: one HTTP/1.1 request per connection, the whole response read
//! into memory (capped), `Content-Length`, chunked and read-to-close bodies understood.

use super::{ClientError, MAX_RESPONSE_BYTES};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The largest header section we accept.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// What is wrong with a response that is not HTTP as we speak it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadResponse {
    #[error("header section too long")]
    HeadTooLong,
    #[error("connection closed before the headers ended")]
    ClosedInHead,
    #[error("headers are not UTF-8")]
    HeadNotUtf8,
    #[error("bad status line {0:?}")]
    StatusLine(String),
    #[error("bad header line {0:?}")]
    HeaderLine(String),
    #[error("bad Content-Length {0:?}")]
    ContentLength(String),
    #[error("connection closed after {got} of {len} body bytes")]
    ClosedInBody { got: usize, len: usize },
    #[error("connection closed inside a chunked body")]
    ClosedInChunks,
    #[error("chunk size or trailer line too long")]
    LineTooLong,
    #[error("bad chunk size")]
    ChunkSizeNotText,
    #[error("bad chunk size {0:?}")]
    ChunkSize(String),
    #[error("chunk of {0} bytes is too large")]
    ChunkTooLarge(usize),
    #[error("chunk size overflows")]
    ChunkOverflow,
    #[error("chunk not followed by CRLF")]
    NoCrlfAfterChunk,
}

pub(super) fn encode_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    bearer: Option<&str>,
) -> String {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: nbwatch/{}\r\n\
         Accept: application/json\r\nConnection: close\r\n",
        env!("CARGO_PKG_VERSION")
    );
    if let Some(token) = bearer {
        req.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if let Some(body) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
    } else {
        req.push_str("\r\n");
    }
    req
}

pub(super) struct Response {
    pub(super) code: u16,
    pub(super) body: Vec<u8>,
}

/// A connection, plain or TLS.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// One request and its answer, over TLS when `tls` is given (the certificate must name the
/// address's IP).
pub(super) async fn exchange(
    addr: SocketAddr,
    request: &[u8],
    tls: Option<&tokio_rustls::TlsConnector>,
) -> Result<Response, ClientError> {
    let io = |source| ClientError::Io { addr, source };
    let tcp = TcpStream::connect(addr).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::ConnectionRefused {
            ClientError::NotRunning { addr }
        } else {
            io(e)
        }
    })?;
    let mut stream: Box<dyn Io> = match tls {
        Some(tls) => {
            let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
            Box::new(tls.connect(name, tcp).await.map_err(io)?)
        }
        None => Box::new(tcp),
    };
    stream.write_all(request).await.map_err(io)?;
    stream.flush().await.map_err(io)?;
    let mut reader = Reader {
        stream,
        buf: Vec::new(),
        eof: false,
        addr,
    };
    loop {
        let head = reader.read_head().await?;
        // Skip interim answers (100 Continue and friends); the real one follows.
        if (100..200).contains(&head.code) && head.code != 101 {
            continue;
        }
        let body = reader.read_body(&head).await?;
        return Ok(Response {
            code: head.code,
            body,
        });
    }
}

struct Head {
    code: u16,
    content_length: Option<usize>,
    chunked: bool,
}

struct Reader {
    stream: Box<dyn Io>,
    /// Bytes received and not yet consumed.
    buf: Vec<u8>,
    eof: bool,
    addr: SocketAddr,
}

impl Reader {
    fn malformed(&self, reason: BadResponse) -> ClientError {
        ClientError::Malformed {
            addr: self.addr,
            reason,
        }
    }

    /// Reads more bytes into `buf`; false at end of stream.
    async fn fill(&mut self) -> Result<bool, ClientError> {
        if self.eof {
            return Ok(false);
        }
        let mut chunk = [0u8; 16 * 1024];
        let n = self
            .stream
            .read(&mut chunk)
            .await
            .map_err(|source| ClientError::Io {
                addr: self.addr,
                source,
            })?;
        if n == 0 {
            self.eof = true;
            return Ok(false);
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(true)
    }

    async fn read_head(&mut self) -> Result<Head, ClientError> {
        let end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i;
            }
            if self.buf.len() > MAX_HEAD_BYTES {
                return Err(self.malformed(BadResponse::HeadTooLong));
            }
            if !self.fill().await? {
                return Err(self.malformed(BadResponse::ClosedInHead));
            }
        };
        let head_bytes: Vec<u8> = self.buf.drain(..end + 4).collect();
        let text = std::str::from_utf8(&head_bytes[..end])
            .map_err(|_| self.malformed(BadResponse::HeadNotUtf8))?;
        parse_head(text).map_err(|reason| self.malformed(reason))
    }

    async fn read_body(&mut self, head: &Head) -> Result<Vec<u8>, ClientError> {
        let addr = self.addr;
        let too_large = move || ClientError::TooLarge {
            addr,
            limit: MAX_RESPONSE_BYTES,
        };
        if head.code == 204 || head.code == 304 {
            return Ok(Vec::new());
        }
        if head.chunked {
            let mut decoder = Chunked::default();
            loop {
                match decoder.advance(&self.buf).map_err(|r| self.malformed(r))? {
                    true => return Ok(decoder.body),
                    false if decoder.body.len() > MAX_RESPONSE_BYTES => return Err(too_large()),
                    false => {}
                }
                // Drop what the decoder consumed so the buffer stays small.
                self.buf.drain(..decoder.pos);
                decoder.pos = 0;
                if !self.fill().await? {
                    // A missing final CRLF after the last chunk is harmless.
                    return if decoder.state == ChunkState::Trailers {
                        Ok(decoder.body)
                    } else {
                        Err(self.malformed(BadResponse::ClosedInChunks))
                    };
                }
            }
        }
        if let Some(len) = head.content_length {
            if len > MAX_RESPONSE_BYTES {
                return Err(too_large());
            }
            while self.buf.len() < len {
                if !self.fill().await? {
                    return Err(self.malformed(BadResponse::ClosedInBody {
                        got: self.buf.len(),
                        len,
                    }));
                }
            }
            self.buf.truncate(len);
            return Ok(std::mem::take(&mut self.buf));
        }
        // No length given: the body runs until the server closes the connection.
        while self.fill().await? {
            if self.buf.len() > MAX_RESPONSE_BYTES {
                return Err(too_large());
            }
        }
        Ok(std::mem::take(&mut self.buf))
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn parse_head(text: &str) -> Result<Head, BadResponse> {
    let mut lines = text.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let mut parts = status.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(BadResponse::StatusLine(status.to_string()));
    }
    let code = parts
        .next()
        .and_then(|c| c.parse::<u16>().ok())
        .filter(|c| (100..1000).contains(c))
        .ok_or_else(|| BadResponse::StatusLine(status.to_string()))?;
    let mut head = Head {
        code,
        content_length: None,
        chunked: false,
    };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(BadResponse::HeaderLine(line.to_string()));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let len = value
                .parse::<usize>()
                .map_err(|_| BadResponse::ContentLength(value.to_string()))?;
            head.content_length = Some(len);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            head.chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        }
    }
    Ok(head)
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    Trailers,
}

/// Incremental decoder of a chunked body: `advance` consumes whole chunks from `buf[pos..]` and
/// leaves a partial one for the next call, so each byte is examined a bounded number of times.
#[derive(Default)]
struct Chunked {
    pos: usize,
    state: ChunkState,
    body: Vec<u8>,
}

impl Chunked {
    /// Returns true when the body is complete.
    fn advance(&mut self, buf: &[u8]) -> Result<bool, BadResponse> {
        loop {
            let rest = &buf[self.pos..];
            let Some(eol) = find(rest, b"\r\n") else {
                if rest.len() > 4096 {
                    return Err(BadResponse::LineTooLong);
                }
                return Ok(false);
            };
            let line = &rest[..eol];
            match self.state {
                ChunkState::Trailers => {
                    self.pos += eol + 2;
                    if line.is_empty() {
                        return Ok(true);
                    }
                }
                ChunkState::Size => {
                    let text =
                        std::str::from_utf8(line).map_err(|_| BadResponse::ChunkSizeNotText)?;
                    let hex = text.split(';').next().unwrap_or_default().trim();
                    let size = usize::from_str_radix(hex, 16)
                        .map_err(|_| BadResponse::ChunkSize(text.to_string()))?;
                    if size == 0 {
                        self.pos += eol + 2;
                        self.state = ChunkState::Trailers;
                        continue;
                    }
                    if size > MAX_RESPONSE_BYTES {
                        return Err(BadResponse::ChunkTooLarge(size));
                    }
                    let start = eol + 2;
                    let Some(end) = start.checked_add(size) else {
                        return Err(BadResponse::ChunkOverflow);
                    };
                    if rest.len() < end + 2 {
                        return Ok(false);
                    }
                    if &rest[end..end + 2] != b"\r\n" {
                        return Err(BadResponse::NoCrlfAfterChunk);
                    }
                    self.body.extend_from_slice(&rest[start..end]);
                    self.pos += end + 2;
                    if self.body.len() > MAX_RESPONSE_BYTES {
                        return Ok(false);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chunked_decoder_accepts_a_body_arriving_one_byte_at_a_time() {
        let wire = b"4;x=y\r\nWiki\r\n6\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nT: 1\r\n\r\n";
        let mut decoder = Chunked::default();
        let mut buf = Vec::new();
        let mut done_at = None;
        for (i, byte) in wire.iter().enumerate() {
            buf.push(*byte);
            if decoder.advance(&buf).expect("valid") {
                done_at = Some(i);
                break;
            }
        }
        assert_eq!(done_at, Some(wire.len() - 1));
        assert_eq!(decoder.body, b"Wikipedia in \r\n\r\nchunks.");
    }

    #[test]
    fn status_lines_and_headers_are_parsed_case_insensitively() {
        let head = parse_head("HTTP/1.1 201 Created\r\ncontent-LENGTH: 12\r\nX: y").expect("head");
        assert_eq!(
            (head.code, head.content_length, head.chunked),
            (201, Some(12), false)
        );
        let head = parse_head("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked").expect("head");
        assert!(head.chunked);
        assert!(parse_head("HTTP/1.1 abc OK").is_err());
        assert!(parse_head("HTTP/1.1 200 OK\r\nContent-Length: -1").is_err());
        assert!(parse_head("HTTP/1.1 200 OK\r\nno colon").is_err());
    }
}
