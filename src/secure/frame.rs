//! The sealed frame: what crosses the gossip port when the cluster has a key.
//!
//! ```text
//! "NBE" 0x01 | key id (4, big-endian) | nonce (24) | ciphertext of [sender (8) | session (8) |
//! seq (8) | payload] | tag (16)
//! ```
//!
//! The payload is the plaintext wire format (`wire::encode`, a frame body), unchanged. The
//! associated data binds the magic, the key id, what the frame is (a datagram, a TCP request,
//! a TCP answer), the cluster name and, for an answer, the nonce of the request it answers: a
//! frame cannot be moved to another cluster, to another kind of exchange, or be passed off as
//! the answer to another request. The nonce is random (XChaCha20's 24 bytes make collisions
//! negligible), so no nonce state needs to survive a restart.
//!
//! `sender`, `session` and `seq` feed the receiver's replay window ([`super::replay`]); they are
//! inside the ciphertext, so an outsider sees neither who sends nor how much.

use super::keyring::{Key, KeyId, Keyring};
use chacha20poly1305::XNonce;
use chacha20poly1305::aead::{AeadInOut, Generate};

/// `N`, `B`, `E` (encrypted) and the version of this format.
pub const MAGIC: [u8; 4] = *b"NBE\x01";
pub const NONCE_LEN: usize = 24;
pub const TAG_LEN: usize = 16;
/// Magic, key id and nonce.
pub const HEADER_LEN: usize = 4 + 4 + NONCE_LEN;
/// Sender, session and sequence number.
pub const ORIGIN_LEN: usize = 24;
/// What sealing adds to a payload: 72 bytes, so a largest plaintext datagram (1400 bytes)
/// sealed is 1472 bytes, exactly what an IPv4 packet of a 1500-byte MTU carries.
pub const OVERHEAD: usize = HEADER_LEN + ORIGIN_LEN + TAG_LEN;

/// What a sealed frame is, part of the associated data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Datagram = 0,
    Request = 1,
    Answer = 2,
}

/// Who sealed a frame and where it is in that sender's sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Origin {
    /// A hash of the sender's node name ([`sender_id`]).
    pub sender: u64,
    /// The sender's session: its start time in milliseconds, so a restarted sender is newer.
    pub session: u64,
    /// Counts up from 1 within a session and kind.
    pub seq: u64,
}

/// An opened frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opened {
    pub key: KeyId,
    pub origin: Origin,
    pub nonce: [u8; NONCE_LEN],
    pub payload: Vec<u8>,
}

/// Why a frame did not open. All of them mean "not from a key holder of this cluster": the
/// caller drops the frame and counts it, it never parses further.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("{0} bytes is too short for a sealed frame")]
    TooShort(usize),
    #[error("not a sealed nbwatch frame (bad magic)")]
    NotSealed,
    #[error("sealed with key {0}, which is not in the keyring")]
    UnknownKey(KeyId),
    #[error("failed authentication (wrong key, wrong cluster name, or altered)")]
    Forged,
}

/// A stable 64-bit id of a node name (FNV-1a): the replay window's key.
pub fn sender_id(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn aad(key: KeyId, kind: Kind, cluster: &str, bind: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(4 + 4 + 1 + 2 + cluster.len() + bind.len());
    aad.extend_from_slice(&MAGIC);
    aad.extend_from_slice(&key.0.to_be_bytes());
    aad.push(kind as u8);
    aad.extend_from_slice(&(cluster.len().min(u16::MAX as usize) as u16).to_be_bytes());
    aad.extend_from_slice(cluster.as_bytes());
    aad.extend_from_slice(bind);
    aad
}

/// A fresh random nonce.
pub fn random_nonce() -> [u8; NONCE_LEN] {
    <[u8; NONCE_LEN]>::generate()
}

/// Seals `payload` with `key`. `bind` is empty except for an answer (the request's nonce).
pub fn seal(
    key: &Key,
    cluster: &str,
    kind: Kind,
    bind: &[u8],
    origin: Origin,
    nonce: [u8; NONCE_LEN],
    payload: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(OVERHEAD + payload.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&key.id().0.to_be_bytes());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&origin.sender.to_be_bytes());
    out.extend_from_slice(&origin.session.to_be_bytes());
    out.extend_from_slice(&origin.seq.to_be_bytes());
    out.extend_from_slice(payload);
    let aad = aad(key.id(), kind, cluster, bind);
    let tag = key
        .cipher
        .encrypt_inout_detached(&XNonce::from(nonce), &aad, (&mut out[HEADER_LEN..]).into())
        // Only a message over ~256 GiB can fail, and frames are capped far below that.
        .unwrap_or_default();
    out.extend_from_slice(&tag);
    out
}

/// Opens a sealed frame with whichever key of `ring` its key id names. Nothing of the frame
/// is interpreted before the tag is checked, except the magic and the key id (to pick a key).
pub fn open(
    ring: &Keyring,
    cluster: &str,
    kind: Kind,
    bind: &[u8],
    bytes: &[u8],
) -> Result<Opened, OpenError> {
    if bytes.len() < OVERHEAD {
        return Err(OpenError::TooShort(bytes.len()));
    }
    if bytes[..4] != MAGIC {
        return Err(OpenError::NotSealed);
    }
    let id = KeyId(u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]));
    let key = ring.find(id).ok_or(OpenError::UnknownKey(id))?;
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&bytes[8..HEADER_LEN]);
    let (body, tag) = bytes[HEADER_LEN..].split_at(bytes.len() - HEADER_LEN - TAG_LEN);
    let mut plain = body.to_vec();
    let aad = aad(id, kind, cluster, bind);
    let tag = chacha20poly1305::Tag::try_from(tag).map_err(|_| OpenError::Forged)?;
    key.cipher
        .decrypt_inout_detached(&XNonce::from(nonce), &aad, (&mut plain[..]).into(), &tag)
        .map_err(|_| OpenError::Forged)?;
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&plain[i * 8..i * 8 + 8]);
        u64::from_be_bytes(w)
    };
    let origin = Origin {
        sender: word(0),
        session: word(1),
        seq: word(2),
    };
    plain.drain(..ORIGIN_LEN);
    Ok(Opened {
        key: id,
        origin,
        nonce,
        payload: plain,
    })
}
