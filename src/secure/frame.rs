//! The sealed frame: what crosses the gossip port when the cluster has a key.
//!
//! ```text
//! "NBE" 0x02 | key id (4, big-endian) | nonce (24) | ciphertext of [sender (8) | session (8) |
//! seq (8) | payload] | tag (16)
//! ```
//!
//! The payload is the plaintext wire format (`wire::encode`, a frame body), unchanged. The
//! associated data binds the magic, the key id, what the frame is (a datagram, a TCP request,
//! a TCP answer), the cluster name, whom it is for (the receiver's node name, or nobody in
//! particular for a first contact and an answer) and, for an answer, the nonce of the request
//! it answers: a frame cannot be moved to another cluster, to another kind of exchange, to
//! another receiver, or be passed off as the answer to another request. The nonce is random
//! (XChaCha20's 24 bytes make collisions negligible), so no nonce state needs to survive a
//! restart.
//!
//! Version 1 (`"NBE" 0x01`, the frame of 0.2.0) has the same layout and no receiver in its
//! associated data; it is still sealed towards, and opened from, a peer of that release
//! (a peer that speaks the previous wire version), and is dropped from the next release on.
//!
//! `sender`, `session` and `seq` feed the receiver's replay window ([`super::replay`]); they are
//! inside the ciphertext, so an outsider sees neither who sends nor how much.
//!
//! Version 3 (`"NBE" 0x03`, datagrams to a peer that speaks wire version 4 or later) is the
//! compact frame: 48 bytes of overhead instead of 72, because most datagrams are small and a
//! cluster sends many. The sender, session and sequence number *are* the nonce, with 6 random
//! bytes:
//!
//! ```text
//! "NBE" 0x03 | key id (4) | nonce: sender (8) | session (6) | seq (4) | random (6) |
//! ciphertext of payload | tag (16)
//! ```
//!
//! Uniqueness of the nonce no longer rests on 24 random bytes alone: (sender, session, seq)
//! never repeats while a sender runs, and if a whole machine is restored from a snapshot and
//! sends the same (session, seq) again, the 48 random bits still differ (a repeat is a
//! 1-in-2^48 event per frame sent twice). The nonce is not secret, so an outsider now sees a
//! hash of the sender's name and how many datagrams it sent (its address said who anyway).
//! A session past 2^48 ms or a sequence number past 2^32 cannot be written in it: such a
//! frame is sealed in version 2 instead.

use super::keyring::{Key, KeyId, Keyring};
use chacha20poly1305::XNonce;
use chacha20poly1305::aead::{AeadInOut, Generate};

/// `N`, `B`, `E` (encrypted) and the version of this format.
pub const MAGIC: [u8; 4] = *b"NBE\x02";
/// The previous version's magic: no receiver in the associated data.
pub const MAGIC_V1: [u8; 4] = *b"NBE\x01";
/// The compact frame's magic: the origin is the nonce.
pub const MAGIC_V3: [u8; 4] = *b"NBE\x03";
/// What the compact frame adds to a payload.
pub const COMPACT_OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// Random bytes in a compact frame's nonce.
const COMPACT_RANDOM: usize = 6;
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
    /// A discovery beacon or its answer (`crate::discover`), sealed for anyone of the
    /// cluster: it cannot be passed off as gossip, nor gossip as a beacon.
    Beacon = 3,
}

/// Whom a frame is for, as its sender names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum To<'a> {
    /// The node of this name: no other node opens it.
    Node(&'a str),
    /// The node of this name, in the compact frame (version 3) when the origin fits it.
    Compact(&'a str),
    /// Any node of the cluster: a first contact with a seed known only by its address (the
    /// join request) and an answer (bound to its request instead).
    Anyone,
    /// A version 1 frame, for a peer of the previous release.
    Previous,
}

/// Whom an opened frame was for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum For {
    /// This node, by name.
    Me,
    /// Any node ([`To::Anyone`]).
    Anyone,
    /// A version 1 frame: it names nobody.
    Previous,
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
    pub to: For,
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
    #[error(
        "failed authentication (wrong key, wrong cluster name, sealed for another node, or \
         altered)"
    )]
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

/// The associated data. `to` is `None` for a version 1 frame (no receiver), `Some("")` for
/// one sealed to anyone, `Some(name)` for one sealed to that node.
fn aad(
    magic: [u8; 4],
    key: KeyId,
    kind: Kind,
    cluster: &str,
    to: Option<&str>,
    bind: &[u8],
) -> Vec<u8> {
    let field = |aad: &mut Vec<u8>, text: &str| {
        aad.extend_from_slice(&(text.len().min(u16::MAX as usize) as u16).to_be_bytes());
        aad.extend_from_slice(text.as_bytes());
    };
    let mut aad = Vec::with_capacity(4 + 4 + 1 + 4 + cluster.len() + 64 + bind.len());
    aad.extend_from_slice(&magic);
    aad.extend_from_slice(&key.0.to_be_bytes());
    aad.push(kind as u8);
    field(&mut aad, cluster);
    if let Some(to) = to {
        field(&mut aad, to);
    }
    aad.extend_from_slice(bind);
    aad
}

/// A fresh random nonce.
pub fn random_nonce() -> [u8; NONCE_LEN] {
    <[u8; NONCE_LEN]>::generate()
}

/// The compact frame's nonce for `origin` (with `random`'s first bytes), if the origin fits.
fn compact_nonce(origin: Origin, random: &[u8; NONCE_LEN]) -> Option<[u8; NONCE_LEN]> {
    if origin.session >= 1 << 48 || origin.seq > u64::from(u32::MAX) {
        return None;
    }
    let mut nonce = [0u8; NONCE_LEN];
    nonce[..8].copy_from_slice(&origin.sender.to_be_bytes());
    nonce[8..14].copy_from_slice(&origin.session.to_be_bytes()[2..]);
    nonce[14..18].copy_from_slice(&(origin.seq as u32).to_be_bytes());
    nonce[18..].copy_from_slice(&random[..COMPACT_RANDOM]);
    Some(nonce)
}

/// The origin a compact frame's nonce carries.
fn compact_origin(nonce: &[u8; NONCE_LEN]) -> Origin {
    let mut sender = [0u8; 8];
    sender.copy_from_slice(&nonce[..8]);
    let mut session = [0u8; 8];
    session[2..].copy_from_slice(&nonce[8..14]);
    let mut seq = [0u8; 4];
    seq.copy_from_slice(&nonce[14..18]);
    Origin {
        sender: u64::from_be_bytes(sender),
        session: u64::from_be_bytes(session),
        seq: u64::from(u32::from_be_bytes(seq)),
    }
}

/// Seals `payload` with `key` for `to`. `bind` is empty except for an answer (the request's
/// nonce).
#[allow(clippy::too_many_arguments)]
pub fn seal(
    key: &Key,
    cluster: &str,
    kind: Kind,
    to: To<'_>,
    bind: &[u8],
    origin: Origin,
    nonce: [u8; NONCE_LEN],
    payload: &[u8],
) -> Vec<u8> {
    let compact = match to {
        To::Compact(name) => compact_nonce(origin, &nonce).map(|n| (name, n)),
        _ => None,
    };
    if let Some((name, nonce)) = compact {
        return encrypt(
            key,
            cluster,
            kind,
            (MAGIC_V3, Some(name)),
            bind,
            nonce,
            &[payload],
        );
    }
    let (magic, to) = match to {
        // A compact frame whose origin does not fit its nonce goes in version 2.
        To::Node(name) | To::Compact(name) => (MAGIC, Some(name)),
        To::Anyone => (MAGIC, Some("")),
        To::Previous => (MAGIC_V1, None),
    };
    let mut origin_bytes = [0u8; ORIGIN_LEN];
    origin_bytes[..8].copy_from_slice(&origin.sender.to_be_bytes());
    origin_bytes[8..16].copy_from_slice(&origin.session.to_be_bytes());
    origin_bytes[16..].copy_from_slice(&origin.seq.to_be_bytes());
    encrypt(
        key,
        cluster,
        kind,
        (magic, to),
        bind,
        nonce,
        &[&origin_bytes, payload],
    )
}

/// A frame of `magic` for `to` (see [`aad`]): magic, key id and nonce, then `plain` (its
/// pieces in order) encrypted, then the tag.
fn encrypt(
    key: &Key,
    cluster: &str,
    kind: Kind,
    (magic, to): ([u8; 4], Option<&str>),
    bind: &[u8],
    nonce: [u8; NONCE_LEN],
    plain: &[&[u8]],
) -> Vec<u8> {
    let len: usize = plain.iter().map(|p| p.len()).sum();
    let mut out = Vec::with_capacity(HEADER_LEN + len + TAG_LEN);
    out.extend_from_slice(&magic);
    out.extend_from_slice(&key.id().0.to_be_bytes());
    out.extend_from_slice(&nonce);
    for piece in plain {
        out.extend_from_slice(piece);
    }
    let aad = aad(magic, key.id(), kind, cluster, to, bind);
    let tag = key
        .cipher
        .encrypt_inout_detached(&XNonce::from(nonce), &aad, (&mut out[HEADER_LEN..]).into())
        // Only a message over ~256 GiB can fail, and frames are capped far below that.
        .unwrap_or_default();
    out.extend_from_slice(&tag);
    out
}

/// Opens a sealed frame with whichever key of `ring` its key id names, as node `me`: a
/// version 2 frame opens if it was sealed to `me` or to anyone ([`Opened::to`] says which; the
/// caller decides what it accepts from anyone). Nothing of the frame is interpreted before
/// the tag is checked, except the magic and the key id (to pick a key).
pub fn open(
    ring: &Keyring,
    cluster: &str,
    kind: Kind,
    me: &str,
    bind: &[u8],
    bytes: &[u8],
) -> Result<Opened, OpenError> {
    if bytes.len() < COMPACT_OVERHEAD {
        return Err(OpenError::TooShort(bytes.len()));
    }
    let magic = [bytes[0], bytes[1], bytes[2], bytes[3]];
    let candidates: &[(Option<&str>, For)] = match magic {
        MAGIC => &[(Some(me), For::Me), (Some(""), For::Anyone)],
        MAGIC_V1 => &[(None, For::Previous)],
        // A compact frame is only ever sealed to a node by name.
        MAGIC_V3 => &[(Some(me), For::Me)],
        _ => return Err(OpenError::NotSealed),
    };
    let compact = magic == MAGIC_V3;
    if !compact && bytes.len() < OVERHEAD {
        return Err(OpenError::TooShort(bytes.len()));
    }
    let id = KeyId(u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]));
    let key = ring.find(id).ok_or(OpenError::UnknownKey(id))?;
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&bytes[8..HEADER_LEN]);
    let (body, tag) = bytes[HEADER_LEN..].split_at(bytes.len() - HEADER_LEN - TAG_LEN);
    let tag = chacha20poly1305::Tag::try_from(tag).map_err(|_| OpenError::Forged)?;
    let mut opened = None;
    for &(to, says) in candidates {
        let mut plain = body.to_vec();
        let aad = aad(magic, id, kind, cluster, to, bind);
        if key
            .cipher
            .decrypt_inout_detached(&XNonce::from(nonce), &aad, (&mut plain[..]).into(), &tag)
            .is_ok()
        {
            opened = Some((plain, says));
            break;
        }
    }
    let (mut plain, to) = opened.ok_or(OpenError::Forged)?;
    if compact {
        return Ok(Opened {
            key: id,
            origin: compact_origin(&nonce),
            nonce,
            payload: plain,
            to,
        });
    }
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
        to,
    })
}
