//! The node's sockets: what goes out and the loops that read what comes in, so no actor ever
//! waits on the network.
//!
//! * the [`Outbox`] sends every datagram: the gossip core's, and the probes the watchers send
//!   straight from their own actor (their answers come back through the gossip core, which
//!   routes them to the watcher of the peer that answered);
//! * the UDP reader forwards every datagram, even oversized ones (the buffer is larger than
//!   [`MAX_DATAGRAM`] so they are seen and counted by the core, not silently truncated);
//! * the TCP server answers join requests by asking the actor (`AnswerJoin`), one connection
//!   per request, with a read timeout and a size cap so a slow or hostile client costs nothing;
//!   it also serves pages of this node's history to a peer that back-fills (`store::backfill`);
//! * the join client opens a connection to a seed and feeds the answer (or why there was none)
//!   back as `JoinAnswer`.
//!
//! Every byte in and out goes through the node's [`Gate`]: a datagram or a request that does
//! not open is dropped here, before any decoding, and never reaches the actor. Each TCP
//! connection carries one sealed request and one sealed answer bound to it.

pub mod discover;

use crate::lograte;
use crate::secure::{Binding, Gate, OVERHEAD, To};
use crate::types::{Clock, Incarnation, NodeName};
use crate::wire::{self, Envelope, ExchangeError, Frame, FrameReadError, Message};
use crate::wire::{MAX_DATAGRAM, MAX_FRAME};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// Receive buffer: larger than any valid datagram, so oversized ones are visible.
pub(crate) const RECV_BUFFER: usize = 2048;
/// How long a joiner may take to send its request.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long we wait for a seed's answer, connection included.
pub(crate) const JOIN_TIMEOUT: Duration = Duration::from_secs(3);
/// The largest join request we read (a name, an incarnation and an address).
pub(crate) const MAX_REQUEST: usize = 64 * 1024;

const _: () = assert!(RECV_BUFFER > MAX_DATAGRAM + OVERHEAD);

/// Where the transport hands what it received: the gossip actor implements it. The transport
/// knows nothing of actors, so it sits below them.
pub trait Inbox: Clone + Send + Sync + 'static {
    /// A datagram that opened; false once the receiver is gone (the reader then stops).
    fn datagram(&self, from: SocketAddr, bytes: Vec<u8>) -> bool;
    /// A joiner's request; the frame to answer with.
    fn answer_join(
        &self,
        name: NodeName,
        incarnation: Incarnation,
        addr: SocketAddr,
    ) -> impl Future<Output = Result<Frame, ExchangeError>> + Send;
}

/// The wire version to speak to each peer address (see [`wire`]'s versions): the one it last
/// spoke to us, or the one its gossiped state announces (`wire`), whichever came last. An
/// address with neither is spoken to in [`wire::OLDEST`], which every build in the window
/// reads — a build from before versioned wires announces nothing and reads only that.
#[derive(Clone, Default)]
pub struct Dialects(Arc<Mutex<HashMap<SocketAddr, u8>>>);

/// More addresses than any cluster has: past it, the table starts over (a flood of spoofed
/// sources costs memory only up to here).
const MAX_DIALECTS: usize = 16_384;

impl Dialects {
    /// `peer` speaks `version`: it just sent it, or its state announces it (a newer version
    /// than ours is spoken to in ours, which it reads).
    pub fn note(&self, peer: SocketAddr, version: u8) {
        let version = version.clamp(wire::OLDEST, wire::VERSION);
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.get(&peer) == Some(&version) {
            return;
        }
        if map.len() >= MAX_DIALECTS {
            map.clear();
        }
        if version != wire::VERSION {
            tracing::info!(%peer, version, "a peer speaks an older wire version");
        }
        map.insert(peer, version);
    }

    /// The version to speak to `to`.
    pub fn toward(&self, to: SocketAddr) -> u8 {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&to).copied().unwrap_or(wire::OLDEST)
    }
}

/// Sends this node's datagrams, sealed by its gate: the gossip core's (encoded by the core)
/// and the watchers' probes (encoded here, as from this node in its current life). Made once
/// per node, so it outlives a restart of the gossip actor or of a watcher.
#[derive(Clone)]
pub struct Outbox {
    socket: Arc<UdpSocket>,
    gate: Arc<Gate>,
    me: NodeName,
    clock: Clock,
    /// This node's current incarnation, set by the gossip actor.
    incarnation: Arc<AtomicU64>,
    probes: Arc<ProbeCounters>,
    dialects: Dialects,
}

#[derive(Default)]
struct ProbeCounters {
    bytes: AtomicU64,
    datagrams: AtomicU64,
}

/// What the watchers' probes cost so far (payload bytes before sealing, as the core counts).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeCount {
    pub bytes: u64,
    pub datagrams: u64,
}

impl Outbox {
    pub fn new(
        socket: Arc<UdpSocket>,
        gate: Arc<Gate>,
        me: NodeName,
        clock: Clock,
        dialects: Dialects,
    ) -> Outbox {
        Outbox {
            socket,
            gate,
            me,
            clock,
            incarnation: Arc::default(),
            probes: Arc::default(),
            dialects,
        }
    }

    /// The life the watchers' probes are sent from.
    pub fn set_incarnation(&self, incarnation: Incarnation) {
        self.incarnation.store(incarnation.0, Ordering::Relaxed);
    }

    /// Seals a datagram the gossip core encoded for node `name` at `to` and sends it, in the
    /// version that node speaks: in the compact frame (wire 4 and later), sealed for it by
    /// name in the frame 0.3 reads (wire 3), or in the frame of 0.2 (wire 2).
    pub async fn send(&self, to: SocketAddr, name: &NodeName, bytes: Vec<u8>) {
        use crate::secure::To;
        let version = self.dialects.toward(to);
        let (bytes, seal_to) = match version {
            wire::VERSION => (bytes, To::Compact(name.as_str())),
            wire::NAMED => (wire::restamp(bytes, version), To::Node(name.as_str())),
            _ => (wire::restamp(bytes, version), To::Previous),
        };
        let sealed = self.gate.seal_datagram(seal_to, &bytes);
        if let Err(e) = self.socket.send_to(&sealed, to).await {
            tracing::debug!(%to, error = %e, "sending a datagram failed");
        }
    }

    /// Sends a watcher's probe message to node `name` at `to`.
    pub async fn probe(&self, to: SocketAddr, name: &NodeName, msg: Message) {
        let incarnation = Incarnation(self.incarnation.load(Ordering::Relaxed));
        let env = Envelope::at(self.me.clone(), incarnation, self.clock.now(), msg);
        match wire::encode(&env) {
            Ok(bytes) => {
                self.probes
                    .bytes
                    .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                self.probes.datagrams.fetch_add(1, Ordering::Relaxed);
                self.send(to, name, bytes).await;
            }
            Err(e) => tracing::error!(%to, error = %e, "could not encode a probe"),
        }
    }

    pub fn probe_count(&self) -> ProbeCount {
        ProbeCount {
            bytes: self.probes.bytes.load(Ordering::Relaxed),
            datagrams: self.probes.datagrams.load(Ordering::Relaxed),
        }
    }
}

/// Forwards datagrams to `inbox` until it is gone, noting the version each sender speaks.
pub async fn read_datagrams(
    socket: Arc<UdpSocket>,
    inbox: impl Inbox,
    gate: Arc<Gate>,
    dialects: Dialects,
) {
    let mut buf = vec![0u8; RECV_BUFFER];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((n, from)) => {
                let Some(bytes) = gate.open_datagram(from, &buf[..n]) else {
                    continue;
                };
                if let Some(version) = wire::version_of(&bytes)
                    && wire::speaks(version)
                {
                    dialects.note(from, version);
                }
                if !inbox.datagram(from, bytes) {
                    return;
                }
            }
            Err(e) => {
                // E.g. ICMP errors reported on the socket: not fatal to receiving.
                tracing::warn!(error = %e, "receiving a datagram failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Accepts join requests (answered by `inbox`) and history page requests (answered from the
/// store in `data_dir`) until the task is dropped.
///
/// Anyone who can reach the port can open connections that end without an exchange, as fast
/// as he likes: those are logged at most once every [`lograte::EVERY`], with the count since
/// the last line, as the gate's dropped frames are.
pub async fn serve_joins(
    listener: TcpListener,
    inbox: impl Inbox,
    data_dir: std::path::PathBuf,
    gate: Arc<Gate>,
) {
    let closed = Arc::new(lograte::Limit::new(lograte::EVERY));
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let inbox = inbox.clone();
                let data_dir = data_dir.clone();
                let gate = gate.clone();
                let closed = closed.clone();
                tokio::spawn(async move {
                    if let Err(why) = answer_one(stream, peer, &inbox, data_dir, &gate).await
                        && let Some(count) = closed.note()
                    {
                        tracing::info!(
                            %peer, reason = %why, closed = count,
                            "closed a join connection (at most one such line every {}s; \
                             `closed` counts those since the last)",
                            lograte::EVERY.as_secs()
                        );
                    }
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: wait a little instead of spinning.
                tracing::warn!(error = %e, "accepting a join connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn answer_one(
    mut stream: TcpStream,
    peer: SocketAddr,
    inbox: &impl Inbox,
    data_dir: std::path::PathBuf,
    gate: &Gate,
) -> Result<(), ExchangeError> {
    let sealed = tokio::time::timeout(REQUEST_TIMEOUT, read_frame(&mut stream, MAX_REQUEST))
        .await
        .map_err(|_| {
            ExchangeError::NoRequest(humantime::format_duration(REQUEST_TIMEOUT).to_string())
        })?
        .map_err(ExchangeError::Read)?;
    // Not from a key holder: the gate counted and logged it; close without a word.
    let Some((body, binding)) = gate.open_request(peer, &sealed) else {
        return Ok(());
    };
    let frame =
        wire::decode_frame(&body).map_err(|e| ExchangeError::MalformedRequest(e.to_string()))?;
    // The answer is written in the version the request was.
    let version = wire::version_of(&body).unwrap_or(wire::VERSION);
    // Only a join may be a first contact (sealed for any node): anything else must name this
    // node, so a request captured on its way to another node is not answered here.
    if binding.to_anyone && !matches!(frame, Frame::JoinRequest { .. }) {
        return Err(ExchangeError::NotForThisNode);
    }
    if let Frame::HistoryRequest(request) = frame {
        let answer = crate::store::backfill::serve(data_dir, request).await;
        return send(&mut stream, gate, &binding, &answer, version).await;
    }
    let Frame::JoinRequest {
        name,
        incarnation,
        addr,
    } = frame
    else {
        return Err(ExchangeError::NotAJoinRequest);
    };
    let answer = tokio::time::timeout(REQUEST_TIMEOUT, inbox.answer_join(name, incarnation, addr))
        .await
        .map_err(|_| ExchangeError::Unanswered("the gossip actor did not answer".to_string()))??;
    send(&mut stream, gate, &binding, &answer, version).await
}

async fn send(
    stream: &mut TcpStream,
    gate: &Gate,
    binding: &Binding,
    answer: &Frame,
    version: u8,
) -> Result<(), ExchangeError> {
    let body =
        wire::encode_frame_body(answer).map_err(|e| ExchangeError::EncodeAnswer(e.to_string()))?;
    let body = wire::restamp(body, version);
    let bytes = wire::length_prefixed(&gate.seal_answer(binding, &body));
    tokio::time::timeout(REQUEST_TIMEOUT, stream.write_all(&bytes))
        .await
        .map_err(|_| ExchangeError::AnswerNotRead)?
        .map_err(|e| ExchangeError::SendAnswer(e.to_string()))?;
    let _ = stream.shutdown().await;
    Ok(())
}

/// Asks `seed` to let us join: its answer, or why there is none. The seed is known only by
/// its address, so the request is sealed for any node of the cluster (a first contact).
pub async fn join(
    seed: SocketAddr,
    request: Frame,
    gate: Arc<Gate>,
) -> Result<Frame, ExchangeError> {
    match tokio::time::timeout(JOIN_TIMEOUT, ask(&gate, seed, None, &request)).await {
        Ok(answer) => answer,
        Err(_) => Err(ExchangeError::NoAnswer(
            humantime::format_duration(JOIN_TIMEOUT).to_string(),
        )),
    }
}

/// Sends one request to `seed` (the node `name`, or any node when `None`: a first contact)
/// and reads its answer, both sealed by `gate`.
///
/// A peer that closes without a word may be an older release that does not read this
/// build's version: the request is asked once more in the oldest version this build speaks,
/// in the sealed frame that version reads.
pub async fn ask(
    gate: &Gate,
    seed: SocketAddr,
    name: Option<&NodeName>,
    request: &Frame,
) -> Result<Frame, ExchangeError> {
    let to = match name {
        Some(name) => To::Node(name.as_str()),
        None => To::Anyone,
    };
    match ask_in(gate, seed, to, request, wire::VERSION).await {
        Err(
            first @ (ExchangeError::Read(FrameReadError::Length(_))
            | ExchangeError::ReadSealed(FrameReadError::Length(_))),
        ) if wire::OLDEST < wire::VERSION => {
            match ask_in(gate, seed, To::Previous, request, wire::OLDEST).await {
                Ok(answer) => {
                    tracing::info!(peer = %seed, version = wire::OLDEST, "a peer answered in an older wire version");
                    Ok(answer)
                }
                Err(_) => Err(first),
            }
        }
        other => other,
    }
}

async fn ask_in(
    gate: &Gate,
    seed: SocketAddr,
    to: To<'_>,
    request: &Frame,
    version: u8,
) -> Result<Frame, ExchangeError> {
    let body =
        wire::encode_frame_body(request).map_err(|e| ExchangeError::Encode(e.to_string()))?;
    let body = wire::restamp(body, version);
    let (sealed, binding) = gate.seal_request(to, &body);
    let bytes = wire::length_prefixed(&sealed);
    let mut stream = TcpStream::connect(seed)
        .await
        .map_err(|e| ExchangeError::Connect(e.to_string()))?;
    stream
        .write_all(&bytes)
        .await
        .map_err(|e| ExchangeError::Send(e.to_string()))?;
    let sealed = read_frame(&mut stream, MAX_FRAME + OVERHEAD)
        .await
        .map_err(|why| match gate.is_encrypted() {
            // A node refuses a request it cannot open by closing without a word.
            true => ExchangeError::ReadSealed(why),
            false => ExchangeError::Read(why),
        })?;
    let body = gate
        .open_answer(seed, &binding, &sealed)
        .ok_or(ExchangeError::Unauthenticated)?;
    wire::decode_frame(&body).map_err(|e| ExchangeError::Malformed(e.to_string()))
}

/// One length-prefixed frame body, refusing a length over `cap` before reading it.
async fn read_frame(stream: &mut TcpStream, cap: usize) -> Result<Vec<u8>, FrameReadError> {
    let mut len = [0u8; 4];
    stream
        .read_exact(&mut len)
        .await
        .map_err(|e| FrameReadError::Length(e.to_string()))?;
    let len = u32::from_be_bytes(len) as usize;
    if len > cap {
        return Err(FrameReadError::TooLarge { len, cap });
    }
    let mut body = vec![0u8; len];
    stream
        .read_exact(&mut body)
        .await
        .map_err(|e| FrameReadError::Body {
            len,
            why: e.to_string(),
        })?;
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Message;

    /// The gossip actor's side as the tests need it: counts datagrams, refuses every joiner.
    #[derive(Clone, Default)]
    struct Count(Arc<AtomicU64>);

    impl Inbox for Count {
        fn datagram(&self, _: SocketAddr, _: Vec<u8>) -> bool {
            self.0.fetch_add(1, Ordering::Relaxed);
            true
        }
        async fn answer_join(
            &self,
            _: NodeName,
            _: Incarnation,
            _: SocketAddr,
        ) -> Result<Frame, ExchangeError> {
            Ok(Frame::JoinRejected {
                reason: "full".into(),
            })
        }
    }

    fn ping() -> Vec<u8> {
        let env = Envelope::at(
            NodeName::from("a"),
            Incarnation(1),
            crate::types::Time(1_800_000_000_000),
            Message::Ping { seq: 1 },
        );
        wire::encode(&env).unwrap()
    }

    async fn outbox(dialects: Dialects) -> Outbox {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        Outbox::new(
            Arc::new(socket),
            Arc::new(Gate::plaintext()),
            NodeName::from("a"),
            Clock::new(),
            dialects,
        )
    }

    async fn received_version(peer: &UdpSocket) -> u8 {
        let mut buf = [0u8; RECV_BUFFER];
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), peer.recv_from(&mut buf))
            .await
            .expect("a datagram within 5 s")
            .unwrap();
        wire::version_of(&buf[..n]).expect("an nbwatch datagram")
    }

    #[tokio::test]
    async fn a_peer_is_spoken_to_in_the_version_it_last_spoke() {
        let dialects = Dialects::default();
        let outbox = outbox(dialects.clone()).await;
        let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to = peer.local_addr().unwrap();

        outbox.send(to, &NodeName::from("b"), ping()).await;
        assert_eq!(
            received_version(&peer).await,
            wire::OLDEST,
            "neither heard nor announced: the version every build reads"
        );

        dialects.note(to, wire::VERSION);
        outbox.send(to, &NodeName::from("b"), ping()).await;
        assert_eq!(received_version(&peer).await, wire::VERSION, "announced");

        dialects.note(to, wire::NAMED);
        outbox.send(to, &NodeName::from("b"), ping()).await;
        assert_eq!(received_version(&peer).await, wire::NAMED, "a 0.3 peer");

        dialects.note(to, wire::OLDEST);
        outbox.send(to, &NodeName::from("b"), ping()).await;
        assert_eq!(received_version(&peer).await, wire::OLDEST);
        outbox
            .probe(to, &NodeName::from("b"), Message::PingAck { seq: 2 })
            .await;
        assert_eq!(received_version(&peer).await, wire::OLDEST, "probes too");

        // Upgraded: it speaks the new version, and is spoken to in it again.
        dialects.note(to, wire::VERSION);
        outbox.send(to, &NodeName::from("b"), ping()).await;
        assert_eq!(received_version(&peer).await, wire::VERSION);
    }

    #[tokio::test]
    async fn the_reader_notes_the_version_of_each_sender() {
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let at = socket.local_addr().unwrap();
        let dialects = Dialects::default();
        let seen = Count::default();
        let reader = tokio::spawn(read_datagrams(
            socket,
            seen.clone(),
            Arc::new(Gate::plaintext()),
            dialects.clone(),
        ));
        let old = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        old.send_to(&wire::restamp(ping(), wire::OLDEST), at)
            .await
            .unwrap();
        let from = old.local_addr().unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while seen.0.load(Ordering::Relaxed) == 0 {
            assert!(tokio::time::Instant::now() < deadline, "nothing read");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(dialects.toward(from), wire::OLDEST);
        reader.abort();
    }

    /// A peer of the previous release: it refuses (closes on) a request in a version it does
    /// not read, and answers one it reads, in that version.
    async fn previous_release(listener: TcpListener) {
        loop {
            let Ok((mut stream, from)) = listener.accept().await else {
                return;
            };
            let gate = Gate::plaintext();
            let Ok(sealed) = read_frame(&mut stream, MAX_REQUEST).await else {
                continue;
            };
            let Some((body, binding)) = gate.open_request(from, &sealed) else {
                continue;
            };
            if wire::version_of(&body) != Some(wire::OLDEST) {
                continue; // drops the stream: closed without a word
            }
            let answer = Frame::JoinRejected {
                reason: "old".into(),
            };
            let _ = send(&mut stream, &gate, &binding, &answer, wire::OLDEST).await;
        }
    }

    #[tokio::test]
    async fn a_request_an_older_peer_refuses_is_asked_again_in_the_older_version() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let at = listener.local_addr().unwrap();
        let server = tokio::spawn(previous_release(listener));
        let request = Frame::JoinRequest {
            name: NodeName::from("new"),
            incarnation: Incarnation(1),
            addr: "127.0.0.1:1".parse().unwrap(),
        };
        let answer = ask(&Gate::plaintext(), at, None, &request).await;
        assert_eq!(
            answer,
            Ok(Frame::JoinRejected {
                reason: "old".into()
            })
        );
        server.abort();
    }

    #[tokio::test]
    async fn a_request_in_an_older_version_is_answered_in_it() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let at = listener.local_addr().unwrap();
        let dir = std::env::temp_dir().join(format!("nbwatch-transport-{}", std::process::id()));
        let server = tokio::spawn(serve_joins(
            listener,
            Count::default(),
            dir,
            Arc::new(Gate::plaintext()),
        ));
        let request = Frame::JoinRequest {
            name: NodeName::from("old"),
            incarnation: Incarnation(1),
            addr: "127.0.0.1:1".parse().unwrap(),
        };
        for version in [wire::OLDEST, wire::VERSION] {
            let gate = Gate::plaintext();
            let body = wire::restamp(wire::encode_frame_body(&request).unwrap(), version);
            let (sealed, _) = gate.seal_request(To::Anyone, &body);
            let mut stream = TcpStream::connect(at).await.unwrap();
            stream
                .write_all(&wire::length_prefixed(&sealed))
                .await
                .unwrap();
            let answer = read_frame(&mut stream, MAX_FRAME).await.unwrap();
            assert_eq!(wire::version_of(&answer), Some(version));
        }
        server.abort();
    }
}
