//! The gossip wire format: a 4-byte magic and version, then one MessagePack-encoded
//! [`Envelope`]. Every datagram is at most [`MAX_DATAGRAM`] bytes so it crosses any LAN without
//! IP fragmentation; bulk state for a joiner goes over TCP as length-prefixed frames instead.
//!
//! Decoding never trusts the input: wrong magic, a version outside the window, truncation,
//! trailing bytes or an oversized datagram are typed errors, which the caller counts and drops.
//!
//! ## Versions
//!
//! A build writes [`VERSION`] and reads every version from [`OLDEST`] on, so a cluster can be
//! upgraded one host at a time:
//!
//! * a field appended to a struct needs no new version: readers skip fields they do not know
//!   ([`lenient`]), and the new field carries `#[serde(default)]` for older writers;
//! * anything else (a new message, a removed or retyped field) is a new version. Each host
//!   speaks to a peer the version it last heard from that peer (see `transport::Dialects`),
//!   its own by default, so an old host is only ever sent what it reads.
//!
//! Versions 1 to 4 have the same shapes: version 2 is the first that reads leniently and
//! speaks the previous version, so [`restamp`] is all it takes to speak an older one.
//! Version 3 marks a host whose sealed frames name their receiver (`secure::frame`, version
//! 2): a peer that speaks version 3 (0.3) is sealed to by name, a peer that speaks version 2
//! (0.2.0) in the frame it reads. Version 4 marks a host that opens the compact frame
//! (`secure::frame`, version 3: 24 bytes less per datagram), which its datagrams are sealed
//! in. Version 5 adds [`Message::Zones`], the upper layer of zones; the other shapes are those
//! of version 4. Version 1 (before 0.2.0) is outside the window. The golden frames of every version in
//! the window (`tests/fixtures/wire/`) must decode.

use crate::types::{Incarnation, NodeName, Time, Version};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

pub mod lenient;

/// The version this build writes.
pub const VERSION: u8 = 5;
/// The first version with zones ([`Message::Zones`]); an older host drops that message as
/// malformed, so zones need every representative at this version.
pub const ZONED: u8 = 5;
/// The version of 0.3: sealed frames name their receiver, not yet in the compact frame.
pub const NAMED: u8 = 3;
/// The oldest version this build still reads and speaks.
pub const OLDEST: u8 = 2;
/// `N`, `B`, `W` and the protocol version.
pub const MAGIC: [u8; 4] = [b'N', b'B', b'W', VERSION];
/// Largest datagram we send or accept.
pub const MAX_DATAGRAM: usize = 1400;
/// Largest TCP frame (a joiner's full state of a few thousand nodes fits easily).
pub const MAX_FRAME: usize = 64 * 1024 * 1024;

/// A heartbeat: the sender's clock in deciseconds since 2025-01-01 UTC. It only ever grows within
/// an incarnation, and because it is a time, a relayed heartbeat says *when* its origin was last
/// alive — which is what `last_heard` reports.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Beat(pub u64);

const BEAT_EPOCH_MS: u64 = 1_735_689_600_000;

impl Beat {
    pub fn at(t: crate::types::Time) -> Beat {
        Beat(t.as_millis().saturating_sub(BEAT_EPOCH_MS) / 100)
    }
    pub fn time(self) -> crate::types::Time {
        crate::types::Time(BEAT_EPOCH_MS + self.0 * 100)
    }
}

/// Every datagram: who sends it, in which life, how alive it is right now, and the message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub from: NodeName,
    pub incarnation: Incarnation,
    pub beat: Beat,
    pub msg: Message,
}

impl Envelope {
    /// `msg` from `from` in its life `incarnation`, with the beat of `now`.
    pub fn at(
        from: NodeName,
        incarnation: Incarnation,
        now: crate::types::Time,
        msg: Message,
    ) -> Envelope {
        Envelope {
            from,
            incarnation,
            beat: Beat::at(now),
            msg,
        }
    }
}

/// How much older a beat is than the beat of the envelope that carries it, in deciseconds.
/// Digests carry ages rather than beats: an age fits in one byte where a beat takes five.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BeatAge(pub i64);

impl BeatAge {
    pub fn between(reference: Beat, beat: Beat) -> BeatAge {
        BeatAge(
            (reference.0 as i128 - beat.0 as i128).clamp(i64::MIN as i128, i64::MAX as i128) as i64,
        )
    }
    /// The beat this age denotes relative to `reference` (never below zero).
    pub fn beat(self, reference: Beat) -> Beat {
        Beat((reference.0 as i128 - self.0 as i128).clamp(0, u64::MAX as i128) as u64)
    }
}

/// One line of a digest: what the sender knows of `node` (its beat as an age, see [`BeatAge`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestEntry(pub NodeName, pub Incarnation, pub BeatAge, pub Version);

/// "I know `node` up to this incarnation and version: send me what is newer."
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Want(pub NodeName, pub Incarnation, pub Version);

/// A fresher heartbeat of `node` than the peer's digest showed (as an age, see [`BeatAge`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BeatNews(pub NodeName, pub Incarnation, pub BeatAge);

/// One key of a node's state. `value: None` is a tombstone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvEntry {
    pub key: String,
    pub version: Version,
    pub value: Option<String>,
}

/// The part of a node's state newer than `from`, in version order. `to` is the version the
/// receiver may record once it has applied this delta (less than the node's newest version when
/// the delta was cut to fit a datagram).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeDelta {
    pub node: NodeName,
    pub incarnation: Incarnation,
    pub addr: SocketAddr,
    pub beat: Beat,
    pub from: Version,
    pub to: Version,
    pub entries: Vec<KvEntry>,
}

/// One line of a zone digest: a zone, the version of its summary the sender holds (0: none),
/// and how old the freshest sign of life of the zone the sender knows is (see [`BeatAge`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneDigest(pub String, pub u32, pub BeatAge);

/// What a zone's representatives tell the other zones about it (see `gossip::core::zones`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ZoneSummary {
    pub zone: String,
    /// Seconds since the beat epoch when it was made (at least one more than the previous):
    /// the newer version wins.
    pub version: u32,
    /// Its representatives and where they listen.
    pub reps: Vec<(NodeName, SocketAddr)>,
    pub total: u32,
    pub up: u32,
    pub suspect: u32,
    pub down: u32,
    /// Down members (the first few by name) with the beat they were last heard at.
    pub down_names: Vec<(NodeName, Beat)>,
    pub leader: Option<NodeName>,
    /// Open incidents: members down and services failed.
    pub incidents: u32,
    /// Per metric of the host sample: name, min, mean, max, and how many members had it.
    pub metrics: Vec<(String, f32, f32, f32, u32)>,
}

/// Variants go on the wire under one-letter names (MessagePack spells out variant names).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Message {
    /// Start of a push-pull exchange. `complete`: the digest lists every node the sender knows,
    /// so nodes missing from it are news to the sender. `news`: sent early because the sender
    /// just learned something; the receiver answers only if it wants or has something.
    #[serde(rename = "s")]
    Syn {
        digest: Vec<DigestEntry>,
        complete: bool,
        news: bool,
    },
    /// Answer to a `Syn`: what the responder wants, what it has that is newer, fresher beats.
    #[serde(rename = "a")]
    SynAck {
        wants: Vec<Want>,
        deltas: Vec<NodeDelta>,
        beats: Vec<BeatNews>,
    },
    /// Last leg of the exchange: the deltas the responder wanted.
    #[serde(rename = "k")]
    Ack { deltas: Vec<NodeDelta> },
    /// Direct probe.
    #[serde(rename = "p")]
    Ping { seq: u32 },
    /// Please probe `target` for me (SWIM ping-req).
    #[serde(rename = "r")]
    PingReq {
        seq: u32,
        target: NodeName,
        target_addr: SocketAddr,
    },
    /// Answer to a `Ping`.
    #[serde(rename = "q")]
    PingAck { seq: u32 },
    /// `target` answered the probe I made for you (answer to a `PingReq`).
    #[serde(rename = "i")]
    IndirectAck {
        seq: u32,
        target: NodeName,
        incarnation: Incarnation,
        beat: Beat,
    },
    /// The upper layer of zones, between representatives (version [`ZONED`]): the sender's
    /// zone, its zone digest, summaries the receiver lacks, the zones the sender suspects;
    /// `reply`: the receiver answers with what the sender lacks.
    #[serde(rename = "z")]
    Zones {
        zone: String,
        digest: Vec<ZoneDigest>,
        summaries: Vec<ZoneSummary>,
        suspects: Vec<String>,
        reply: bool,
        /// The digest lists every zone the sender knows, so the zones it leaves out are news
        /// to it (an older writer never says so: its receiver then sends summaries only where
        /// the versions differ). Written only when true, so a message without it is, byte for
        /// byte, what wire version 5 wrote.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        complete: bool,
    },
}

impl Message {
    /// What kind of message this is, in a word (for counts by kind).
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Syn { news: true, .. } => "news",
            Message::Syn { .. } => "syn",
            Message::SynAck { .. } => "synack",
            Message::Ack { .. } => "ack",
            Message::Ping { .. } => "ping",
            Message::PingReq { .. } => "ping-req",
            Message::PingAck { .. } => "ping-ack",
            Message::IndirectAck { .. } => "indirect-ack",
            Message::Zones { .. } => "zones",
        }
    }
}

/// Bulk messages over TCP.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Frame {
    #[serde(rename = "J")]
    JoinRequest {
        name: NodeName,
        incarnation: Incarnation,
        addr: SocketAddr,
    },
    #[serde(rename = "A")]
    JoinAccepted { members: Vec<NodeDelta> },
    #[serde(rename = "R")]
    JoinRejected { reason: String },
    /// Back-fill: "send me a page of your history since `since`, after these cursors".
    #[serde(rename = "H")]
    HistoryRequest(PageRequest),
    #[serde(rename = "P")]
    HistoryPage(Page),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("datagram of {0} bytes is larger than {MAX_DATAGRAM}")]
    Oversized(usize),
    #[error("not an nbwatch datagram (bad magic)")]
    Foreign,
    #[error("unsupported protocol version {0} (this build reads {OLDEST} to {VERSION})")]
    Version(u8),
    #[error("malformed body: {0}")]
    Malformed(String),
    #[error("{0} trailing bytes after the message")]
    Trailing(usize),
}

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("message of {0} bytes does not fit in a datagram")]
    TooLarge(usize),
    #[error("cannot encode: {0}")]
    Serialize(#[from] rmp_serde::encode::Error),
}

/// Encodes an envelope as a datagram, refusing to produce one larger than [`MAX_DATAGRAM`].
pub fn encode(env: &Envelope) -> Result<Vec<u8>, EncodeError> {
    let mut buf = Vec::with_capacity(256);
    buf.extend_from_slice(&MAGIC);
    rmp_serde::encode::write(&mut buf, env)?;
    if buf.len() > MAX_DATAGRAM {
        return Err(EncodeError::TooLarge(buf.len()));
    }
    Ok(buf)
}

/// Size in bytes of a value once encoded (used to fill datagrams up to the limit).
pub fn encoded_len<T: Serialize>(value: &T) -> usize {
    rmp_serde::to_vec(value)
        .map(|v| v.len())
        .unwrap_or(usize::MAX)
}

/// Encoded size of a digest entry, computed rather than encoded (digests are built often).
pub fn digest_entry_len(e: &DigestEntry) -> usize {
    1 + str_len(e.0.as_str()) + uint_len(e.1.0) + int_len(e.2.0) + uint_len(e.3.0)
}

fn int_len(v: i64) -> usize {
    match v {
        0.. => uint_len(v as u64),
        -32..=-1 => 1,
        -128..=-33 => 2,
        -32768..=-129 => 3,
        -2_147_483_648..=-32769 => 5,
        _ => 9,
    }
}

fn str_len(s: &str) -> usize {
    let n = s.len();
    n + match n {
        0..=31 => 1,
        32..=255 => 2,
        256..=65535 => 3,
        _ => 5,
    }
}

fn uint_len(v: u64) -> usize {
    match v {
        0..=127 => 1,
        128..=255 => 2,
        256..=65535 => 3,
        65536..=0xFFFF_FFFF => 5,
        _ => 9,
    }
}

/// The version a datagram or frame body says it is written in (`None`: not ours).
pub fn version_of(bytes: &[u8]) -> Option<u8> {
    (bytes.len() >= MAGIC.len() && bytes[..3] == MAGIC[..3]).then(|| bytes[3])
}

/// True for the versions this build reads and speaks.
pub fn speaks(version: u8) -> bool {
    (OLDEST..=VERSION).contains(&version)
}

/// What this build encoded (a datagram or a frame body), as `version` writes it. Every
/// version in the window has the shapes of [`VERSION`], so only the version byte changes;
/// a version with other shapes must be re-encoded here instead.
pub fn restamp(mut bytes: Vec<u8>, version: u8) -> Vec<u8> {
    debug_assert!(speaks(version), "version {version} is outside the window");
    if version_of(&bytes).is_some() {
        bytes[3] = version;
    }
    bytes
}

/// Decodes one datagram.
pub fn decode(bytes: &[u8]) -> Result<Envelope, DecodeError> {
    if bytes.len() > MAX_DATAGRAM {
        return Err(DecodeError::Oversized(bytes.len()));
    }
    decode_versioned(bytes)
}

/// Checks the magic and the version, then decodes the body.
fn decode_versioned<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    let version = version_of(bytes).ok_or(DecodeError::Foreign)?;
    if !speaks(version) {
        return Err(DecodeError::Version(version));
    }
    decode_body(&bytes[MAGIC.len()..])
}

fn decode_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, DecodeError> {
    let mut cursor = std::io::Cursor::new(body);
    let value = {
        let mut de = rmp_serde::Deserializer::new(&mut cursor);
        T::deserialize(lenient::Lenient(&mut de))
            .map_err(|e| DecodeError::Malformed(e.to_string()))?
    };
    let rest = body.len() - cursor.position() as usize;
    if rest != 0 {
        return Err(DecodeError::Trailing(rest));
    }
    Ok(value)
}

/// Encodes the body of a TCP frame: magic, then the MessagePack frame.
pub fn encode_frame_body(frame: &Frame) -> Result<Vec<u8>, EncodeError> {
    let mut body = Vec::with_capacity(1024);
    body.extend_from_slice(&MAGIC);
    rmp_serde::encode::write(&mut body, frame)?;
    if body.len() > MAX_FRAME {
        return Err(EncodeError::TooLarge(body.len()));
    }
    Ok(body)
}

/// Encodes a TCP frame: 4-byte big-endian length, magic, body.
pub fn encode_frame(frame: &Frame) -> Result<Vec<u8>, EncodeError> {
    Ok(length_prefixed(&encode_frame_body(frame)?))
}

/// `body` behind its 4-byte big-endian length (the TCP framing of plain and sealed bodies).
pub fn length_prefixed(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Decodes the body of a TCP frame (after its length prefix).
pub fn decode_frame(body: &[u8]) -> Result<Frame, DecodeError> {
    if body.len() > MAX_FRAME {
        return Err(DecodeError::Oversized(body.len()));
    }
    decode_versioned(body)
}

#[cfg(test)]
mod golden;
#[cfg(test)]
mod tests;

// The back-fill page format (`HistoryRequest` / `HistoryPage`): rows of a node's history as
// they cross between nodes. The store writes and reads them; see `store::backfill`.

/// One metric sample of one node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub node: String,
    pub metric: String,
    pub at: Time,
    pub value: f64,
}

/// One event, with the contract's JSON object kept whole (`json`) so a query gives back
/// exactly what the API showed when it happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRow {
    pub at: Time,
    pub node: String,
    pub kind: String,
    /// The idempotency key (see the module doc).
    pub ident: String,
    pub incarnation: Option<u64>,
    pub last_heard: Option<Time>,
    pub detail: String,
    pub json: String,
}

/// "Rows since `since`, after these cursors" (`None`: from the start).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PageRequest {
    pub since: Time,
    pub samples_after: Option<(i64, i64)>,
    pub events_after: Option<i64>,
}

/// One page; a `None` cursor means that kind of row is done.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Page {
    pub samples: Vec<Sample>,
    pub events: Vec<EventRow>,
    pub samples_next: Option<(i64, i64)>,
    pub events_next: Option<i64>,
    /// Why the server could not answer (then the rest is empty).
    pub error: Option<String>,
}

/// Why a length-prefixed frame could not be read from a TCP stream.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameReadError {
    #[error("cannot read the frame length: {0}")]
    Length(String),
    #[error("frame of {len} bytes is larger than {cap}")]
    TooLarge { len: usize, cap: usize },
    #[error("cannot read a frame of {len} bytes: {why}")]
    Body { len: usize, why: String },
}

/// Why a request over the gossip TCP port (a join, a history page) got no usable answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExchangeError {
    #[error("cannot encode: {0}")]
    Encode(String),
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("cannot send: {0}")]
    Send(String),
    #[error("{0}")]
    Read(FrameReadError),
    #[error("{0} (a peer without our cluster key closes without answering)")]
    ReadSealed(FrameReadError),
    #[error("the answer failed authentication (does the peer have the cluster key?)")]
    Unauthenticated,
    #[error("malformed answer: {0}")]
    Malformed(String),
    #[error("malformed request: {0}")]
    MalformedRequest(String),
    #[error("not a join request")]
    NotAJoinRequest,
    #[error("a request other than a join, sealed for any node instead of this one")]
    NotForThisNode,
    #[error("no request within {0}")]
    NoRequest(String),
    #[error("no answer within {0}")]
    NoAnswer(String),
    /// The local side that should answer is gone or did not answer.
    #[error("{0}")]
    Unanswered(String),
    #[error("cannot encode the answer: {0}")]
    EncodeAnswer(String),
    #[error("the peer does not read its answer")]
    AnswerNotRead,
    #[error("cannot send the answer: {0}")]
    SendAnswer(String),
    /// The simulator's stand-in for a seed that never answers.
    #[error("connection timed out")]
    TimedOut,
}
