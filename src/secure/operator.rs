//! Operator keys: who may act on a host that is not their own.
//!
//! The cluster key makes a host a member; it does not make it an operator. A directive that
//! acts on another host — a service command (`cmd.<id>`) or a silence (`silence.<target>`) —
//! carries a [`Seal`]: an Ed25519 signature (ring) by an operator key, over the cluster's
//! name, the issuing node, the gossip key, the directive's content and the issuer's sequence
//! number. Every host verifies it against the public keys it trusts (`control.operators`);
//! a host that holds the private key (`control.operator_key_file`) signs what its API
//! issues. A key holder without an operator key can gossip a directive but not one that any
//! host obeys; and since the signature covers the key and the content, a seal cannot be
//! moved to another directive.
//!
//! Freshness does not rest on clocks compared across hosts: the sequence number is the
//! issuer's own, strictly increasing (see [`Sequence`]), and [`crate::control::directive`]
//! compares it only with the same issuer's other numbers.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chacha20poly1305::aead::Generate;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("cannot read the operator key file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the operator key file {path} can be read by other users (mode {mode:o}): chmod 600 it"
    )]
    Readable { path: PathBuf, mode: u32 },
    #[error(
        "{path}: not an operator key (expected 32 bytes in base64 from `nbwatch keygen --operator`)"
    )]
    Bad { path: PathBuf },
    #[error("{0:?} is not an operator public key (32 bytes in base64)")]
    BadPublic(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// An operator's public key: what hosts list in `control.operators`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OperatorId([u8; 32]);

impl OperatorId {
    pub fn parse(text: &str) -> Result<OperatorId, OperatorError> {
        let bad = || OperatorError::BadPublic(text.to_string());
        let bytes = BASE64.decode(text.trim()).map_err(|_| bad())?;
        Ok(OperatorId(bytes.try_into().map_err(|_| bad())?))
    }

    pub fn encode(&self) -> String {
        BASE64.encode(self.0)
    }
}

impl fmt::Display for OperatorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}

impl fmt::Debug for OperatorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OperatorId({})", self.encode())
    }
}

/// An operator's private key (the 32-byte Ed25519 seed).
pub struct OperatorKey {
    pair: Ed25519KeyPair,
    seed: [u8; 32],
}

impl fmt::Debug for OperatorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OperatorKey({})", self.id())
    }
}

impl OperatorKey {
    pub fn generate() -> OperatorKey {
        OperatorKey::from_seed(<[u8; 32]>::generate())
    }

    fn from_seed(seed: [u8; 32]) -> OperatorKey {
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed).expect("any 32 bytes are a seed");
        OperatorKey { pair, seed }
    }

    /// Reads a key file from `nbwatch keygen --operator`; one that other users can read is
    /// refused.
    pub fn load(path: &Path) -> Result<OperatorKey, OperatorError> {
        use std::os::unix::fs::PermissionsExt;
        let read = |source| OperatorError::Read {
            path: path.to_path_buf(),
            source,
        };
        let mode = std::fs::metadata(path).map_err(read)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(OperatorError::Readable {
                path: path.to_path_buf(),
                mode,
            });
        }
        let text = std::fs::read_to_string(path).map_err(read)?;
        let line = text
            .lines()
            .map(|l| l.split('#').next().unwrap_or("").trim())
            .find(|l| !l.is_empty())
            .unwrap_or("");
        let bad = || OperatorError::Bad {
            path: path.to_path_buf(),
        };
        let bytes = BASE64.decode(line).map_err(|_| bad())?;
        Ok(OperatorKey::from_seed(bytes.try_into().map_err(|_| bad())?))
    }

    /// Writes the key at mode 0600, never over an existing file.
    pub fn write_new(&self, path: &Path) -> Result<(), OperatorError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let write = |source| OperatorError::Write {
            path: path.to_path_buf(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(write)?;
        let text = format!(
            "# nbwatch operator key (private); public key {}\n{}\n",
            self.id(),
            BASE64.encode(self.seed)
        );
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(write)
    }

    pub fn id(&self) -> OperatorId {
        let public: [u8; 32] = self
            .pair
            .public_key()
            .as_ref()
            .try_into()
            .expect("an Ed25519 public key is 32 bytes");
        OperatorId(public)
    }

    /// Seals a directive (see [`message`] for what is signed).
    pub fn seal(&self, directive: &Directive<'_>, seq: u64) -> Seal {
        let sig = self.pair.sign(&message(directive, seq));
        Seal {
            op: self.id().encode(),
            seq,
            sig: BASE64.encode(sig.as_ref()),
        }
    }
}

/// What a seal is about: everything a host acts on.
#[derive(Clone, Copy, Debug)]
pub struct Directive<'a> {
    pub cluster: &'a str,
    /// The node whose state carries it.
    pub issuer: &'a str,
    /// Its gossip key (`cmd.<id>`, `silence.<target>`).
    pub key: &'a str,
    /// Its content, as the directive's codec lays it out.
    pub content: &'a str,
}

/// The signed bytes: a label, then each field length-prefixed, so no two directives share
/// their bytes.
fn message(d: &Directive<'_>, seq: u64) -> Vec<u8> {
    let mut out = b"nbwatch directive 1".to_vec();
    for field in [d.cluster, d.issuer, d.key, d.content] {
        out.extend_from_slice(&(field.len() as u64).to_be_bytes());
        out.extend_from_slice(field.as_bytes());
    }
    out.extend_from_slice(&seq.to_be_bytes());
    out
}

/// The signature a directive carries in its JSON value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seal {
    /// The operator's public key, base64.
    pub op: String,
    /// The issuer's sequence number.
    pub seq: u64,
    /// The Ed25519 signature, base64.
    pub sig: String,
}

impl Seal {
    /// The operator whose valid signature this is, if it verifies.
    pub fn verify(&self, directive: &Directive<'_>) -> Option<OperatorId> {
        let op = OperatorId::parse(&self.op).ok()?;
        let sig = BASE64.decode(&self.sig).ok()?;
        UnparsedPublicKey::new(&ED25519, op.0)
            .verify(&message(directive, self.seq), &sig)
            .ok()?;
        Some(op)
    }
}

/// The issuer's sequence numbers: strictly increasing for as long as its data dir lives, and
/// at least the wall clock's milliseconds, so they keep increasing even after the data dir
/// is lost (unless the clock was set back as well). The last one is saved before it is used.
#[derive(Debug)]
pub struct Sequence {
    file: PathBuf,
    last: u64,
}

impl Sequence {
    /// The file this issuer's last number is kept in.
    pub const FILE: &'static str = crate::statefile::DIRECTIVE_SEQ;

    /// Reads the last number. A file that is not one whole number and its newline (cut short
    /// by a crash, or damaged) is said in the log and numbering goes on from the clock.
    pub fn open(data_dir: &Path) -> Sequence {
        let file = data_dir.join(Sequence::FILE);
        let last = match std::fs::read(&file) {
            Err(_) => 0,
            Ok(bytes) => match std::str::from_utf8(&bytes)
                .ok()
                .and_then(|t| t.strip_suffix('\n'))
                .and_then(|t| t.parse::<u64>().ok())
            {
                Some(last) => last,
                None => {
                    tracing::warn!(
                        file = %file.display(),
                        "directive.seq is cut short or damaged: directives are numbered from \
                         the clock's milliseconds from now on"
                    );
                    0
                }
            },
        };
        Sequence { file, last }
    }

    /// The next number, saved first; `now_ms` is the wall clock.
    pub fn next(&mut self, now_ms: u64) -> Result<u64, OperatorError> {
        let next = (self.last + 1).max(now_ms);
        let tmp = self.file.with_extension("tmp");
        super::keyring::write_private(&tmp, format!("{next}\n").as_bytes())
            .and_then(|()| std::fs::rename(&tmp, &self.file))
            .map_err(|source| OperatorError::Write {
                path: self.file.clone(),
                source,
            })?;
        self.last = next;
        Ok(next)
    }
}
