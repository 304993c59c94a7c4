//! What keeps the cluster's gossip to the cluster (DESIGN §9): every datagram and every TCP
//! exchange on the gossip port is sealed with XChaCha20-Poly1305 under a shared cluster key,
//! with the key id and the cluster name as associated data ([`frame`]); a keyring lets the key
//! be rotated while the cluster runs ([`keyring`]); a replay window per sender refuses a
//! captured frame sent again ([`replay`]).
//!
//! The [`Gate`] is the one place this happens, between the sockets and the protocol: the
//! socket tasks hand it raw bytes and pass on only what it opened, so a frame that fails
//! authentication is dropped (and counted, and logged at a limited rate) before any decoding.
//! The gossip core and the wire format do not know about it. Without a key the gate lets
//! plaintext through: the node runs, loudly, and only where the config allows it.

pub mod directive;
pub mod frame;
pub mod keyring;
pub mod operator;
pub mod replay;
pub mod token;

#[cfg(test)]
mod tests;

pub use frame::{Kind, OVERHEAD, OpenError, To};
pub use keyring::{Key, KeyError, KeyId, Keyring};

use frame::{For, Origin};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

/// The cluster name when `gossip.cluster` is not set.
pub const DEFAULT_CLUSTER: &str = "nbwatch";
/// At most one warning about dropped frames per this period.
pub const DROP_LOG_EVERY: Duration = crate::lograte::EVERY;

/// The binding of an answer to its request: the request's nonce (empty without a key), and
/// the frame version the request came in, which its answer is sealed in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Binding {
    nonce: Vec<u8>,
    previous: bool,
    /// The request was sealed to any node (a first contact), not to this one by name.
    pub to_anyone: bool,
}

/// Counters of the gate, shown in `/api/v1/stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct GateStats {
    /// True when gossip is sealed.
    pub encrypted: bool,
    /// Frames (datagrams and TCP) that failed authentication: dropped before decoding.
    pub dropped_auth: u64,
    /// Authentic frames refused by the replay window.
    pub dropped_replay: u64,
    /// Frames opened and passed on.
    pub opened: u64,
    /// Bytes put on the wire (sealed datagrams, overhead included).
    pub wire_bytes_sent: u64,
    /// Bytes received on the wire (datagrams, before opening).
    pub wire_bytes_received: u64,
}

struct Keyed {
    ring: Keyring,
    /// Where changes to the ring are saved (`gossip.key_file`).
    file: Option<PathBuf>,
}

#[derive(Default)]
struct Counters {
    dropped_auth: AtomicU64,
    dropped_replay: AtomicU64,
    opened: AtomicU64,
    wire_bytes_sent: AtomicU64,
    wire_bytes_received: AtomicU64,
}

/// Seals what a node sends and opens what it receives on the gossip port. Shared by the gossip
/// actor's socket tasks and the history back-fill (one per node, kept across actor restarts so
/// the sequence numbers only grow).
pub struct Gate {
    cluster: String,
    /// This node's name: what a frame sealed for it names.
    me: String,
    sender: u64,
    session: u64,
    seq_datagram: AtomicU64,
    seq_request: AtomicU64,
    keys: Option<RwLock<Keyed>>,
    replay: Mutex<replay::Replay>,
    counters: Counters,
    /// Rate-limited warnings about what was dropped.
    drops: crate::lograte::Limit,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Gate {
    /// A gate that lets plaintext through (no key configured).
    pub fn plaintext() -> Gate {
        Gate::new(DEFAULT_CLUSTER, "", None, None)
    }

    /// A gate sealing with `ring` for node `me` of `cluster`; ring changes are saved to `file`.
    pub fn keyed(cluster: &str, me: &str, ring: Keyring, file: Option<PathBuf>) -> Gate {
        Gate::new(cluster, me, Some(ring), file)
    }

    fn new(cluster: &str, me: &str, ring: Option<Keyring>, file: Option<PathBuf>) -> Gate {
        let session = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_millis() as u64);
        Gate {
            cluster: cluster.to_string(),
            me: me.to_string(),
            sender: frame::sender_id(me),
            session,
            seq_datagram: AtomicU64::new(0),
            seq_request: AtomicU64::new(0),
            keys: ring.map(|ring| RwLock::new(Keyed { ring, file })),
            replay: Mutex::default(),
            counters: Counters::default(),
            drops: crate::lograte::Limit::new(DROP_LOG_EVERY),
        }
    }

    pub fn is_encrypted(&self) -> bool {
        self.keys.is_some()
    }

    fn ring(&self) -> Option<std::sync::RwLockReadGuard<'_, Keyed>> {
        self.keys
            .as_ref()
            .map(|k| k.read().unwrap_or_else(|e| e.into_inner()))
    }

    fn origin(&self, kind: Kind) -> Origin {
        let counter = match kind {
            Kind::Datagram => &self.seq_datagram,
            _ => &self.seq_request,
        };
        Origin {
            sender: self.sender,
            session: self.session,
            seq: counter.fetch_add(1, Ordering::Relaxed) + 1,
        }
    }

    fn seal(&self, kind: Kind, to: To<'_>, bind: &[u8], payload: &[u8]) -> (Vec<u8>, Binding) {
        let Some(keyed) = self.ring() else {
            return (payload.to_vec(), Binding::default());
        };
        let origin = match kind {
            // An answer is bound to its request; it needs no place in a window.
            Kind::Answer => Origin {
                sender: self.sender,
                session: self.session,
                seq: 0,
            },
            _ => self.origin(kind),
        };
        let nonce = frame::random_nonce();
        let sealed = frame::seal(
            keyed.ring.primary(),
            &self.cluster,
            kind,
            to,
            bind,
            origin,
            nonce,
            payload,
        );
        let binding = Binding {
            nonce: nonce.to_vec(),
            previous: to == To::Previous,
            to_anyone: to == To::Anyone,
        };
        (sealed, binding)
    }

    /// Opens a frame; `None` if it must be dropped (counted and logged here). A datagram
    /// must be sealed for this node by name (or be a frame of the previous version).
    fn open(
        &self,
        kind: Kind,
        bind: &[u8],
        from: SocketAddr,
        bytes: &[u8],
    ) -> Option<(Vec<u8>, Binding)> {
        let Some(keyed) = self.ring() else {
            return Some((bytes.to_vec(), Binding::default()));
        };
        let opened = frame::open(&keyed.ring, &self.cluster, kind, &self.me, bind, bytes);
        drop(keyed);
        let opened = match opened {
            Ok(opened) if kind == Kind::Datagram && opened.to == For::Anyone => {
                self.counters.dropped_auth.fetch_add(1, Ordering::Relaxed);
                self.log_drop(from, kind, "a datagram not sealed for this node");
                return None;
            }
            Ok(opened) => opened,
            Err(why) => {
                self.counters.dropped_auth.fetch_add(1, Ordering::Relaxed);
                self.log_drop(from, kind, &why.to_string());
                return None;
            }
        };
        if kind != Kind::Answer && !lock(&self.replay).accept(kind, opened.origin) {
            self.counters.dropped_replay.fetch_add(1, Ordering::Relaxed);
            self.log_drop(from, kind, "a replay (already seen, or too old)");
            return None;
        }
        self.counters.opened.fetch_add(1, Ordering::Relaxed);
        let binding = Binding {
            nonce: opened.nonce.to_vec(),
            previous: opened.to == For::Previous,
            to_anyone: opened.to == For::Anyone,
        };
        Some((opened.payload, binding))
    }

    fn log_drop(&self, from: SocketAddr, kind: Kind, why: &str) {
        let Some(dropped) = self.drops.note() else {
            return;
        };
        tracing::warn!(
            %from, ?kind, reason = why, dropped,
            "dropped gossip that is not from this cluster (counted in /api/v1/stats; \
             at most one such warning every {}s)",
            DROP_LOG_EVERY.as_secs()
        );
    }

    /// Seals a datagram (the bytes `wire::encode` made) for `to`.
    pub fn seal_datagram(&self, to: To<'_>, payload: &[u8]) -> Vec<u8> {
        let sealed = self.seal(Kind::Datagram, to, &[], payload).0;
        self.counters
            .wire_bytes_sent
            .fetch_add(sealed.len() as u64, Ordering::Relaxed);
        sealed
    }

    /// Opens a received datagram; `None`: drop it.
    pub fn open_datagram(&self, from: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
        self.counters
            .wire_bytes_received
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        self.open(Kind::Datagram, &[], from, bytes).map(|(p, _)| p)
    }

    /// Seals a discovery beacon (or its answer) for anyone who has the cluster's key.
    pub fn seal_beacon(&self, payload: &[u8]) -> Vec<u8> {
        self.seal(Kind::Beacon, To::Anyone, &[], payload).0
    }

    /// Opens a discovery beacon; `None`: not from this cluster (another key or cluster name),
    /// or a replay.
    pub fn open_beacon(&self, from: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
        self.open(Kind::Beacon, &[], from, bytes).map(|(p, _)| p)
    }

    /// Seals a TCP request body for `to`; the binding opens its answer.
    pub fn seal_request(&self, to: To<'_>, payload: &[u8]) -> (Vec<u8>, Binding) {
        self.seal(Kind::Request, to, &[], payload)
    }

    /// Opens a TCP request body; the binding seals the answer and says whether the request
    /// was sealed for this node or for anyone (a first contact).
    pub fn open_request(&self, from: SocketAddr, bytes: &[u8]) -> Option<(Vec<u8>, Binding)> {
        self.open(Kind::Request, &[], from, bytes)
    }

    /// Seals the answer to the request whose binding is `bind`, in the request's version.
    pub fn seal_answer(&self, bind: &Binding, payload: &[u8]) -> Vec<u8> {
        let to = match bind.previous {
            true => To::Previous,
            false => To::Anyone,
        };
        self.seal(Kind::Answer, to, &bind.nonce, payload).0
    }

    /// Opens the answer to our request (`bind` from [`Gate::seal_request`]).
    pub fn open_answer(&self, from: SocketAddr, bind: &Binding, bytes: &[u8]) -> Option<Vec<u8>> {
        self.open(Kind::Answer, &bind.nonce, from, bytes)
            .map(|(p, _)| p)
    }

    pub fn stats(&self) -> GateStats {
        let c = &self.counters;
        GateStats {
            encrypted: self.is_encrypted(),
            dropped_auth: c.dropped_auth.load(Ordering::Relaxed),
            dropped_replay: c.dropped_replay.load(Ordering::Relaxed),
            opened: c.opened.load(Ordering::Relaxed),
            wire_bytes_sent: c.wire_bytes_sent.load(Ordering::Relaxed),
            wire_bytes_received: c.wire_bytes_received.load(Ordering::Relaxed),
        }
    }

    // ----- the keyring, for `nbwatch keys` ------------------------------------------------

    /// The installed keys, primary first; empty without a key.
    pub fn key_ids(&self) -> Vec<KeyId> {
        self.ring().map(|k| k.ring.ids()).unwrap_or_default()
    }

    /// Applies `change` to a copy of the ring, saves it to the key file, then puts it in use:
    /// a change that cannot be saved is not made, so a restart never goes back on it.
    fn change_ring(
        &self,
        change: impl FnOnce(&mut Keyring) -> Result<(), KeyError>,
    ) -> Result<(), KeyError> {
        let Some(keys) = &self.keys else {
            return Err(KeyError::Invalid(
                "this node runs plaintext gossip (gossip.insecure = true): there is no keyring \
                 (unset gossip.insecure and restart to turn encryption on)"
                    .into(),
            ));
        };
        let mut keyed = keys.write().unwrap_or_else(|e| e.into_inner());
        let mut ring = keyed.ring.clone();
        change(&mut ring)?;
        if let Some(file) = &keyed.file {
            ring.save(file)?;
        }
        keyed.ring = ring;
        Ok(())
    }

    /// Adds a key that opens (it seals once made primary with [`Gate::use_key`]).
    pub fn install(&self, key: Key) -> Result<KeyId, KeyError> {
        let id = key.id();
        self.change_ring(|ring| ring.install(key).map(|_| ()))?;
        tracing::info!(key = %id, "installed a gossip key");
        Ok(id)
    }

    /// Seals with `id` from now on.
    pub fn use_key(&self, id: KeyId) -> Result<(), KeyError> {
        self.change_ring(|ring| ring.use_key(id))?;
        tracing::info!(key = %id, "gossip is now sealed with this key");
        Ok(())
    }

    /// Forgets a key that is not the primary.
    pub fn remove(&self, id: KeyId) -> Result<(), KeyError> {
        self.change_ring(|ring| ring.remove(id))?;
        tracing::info!(key = %id, "removed a gossip key");
        Ok(())
    }
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("cluster", &self.cluster)
            .field("keys", &self.key_ids())
            .finish()
    }
}
