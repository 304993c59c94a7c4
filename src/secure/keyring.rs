//! Cluster keys and the keyring file.
//!
//! A key is 32 random bytes, written as base64 (`nbwatch keygen`). The keyring file
//! (`gossip.key_file`) holds one key per line; `#` starts a comment. The first key is the
//! *primary*: the one this node seals with. Every key in the ring opens. That is what makes a
//! rotation without downtime possible: install the new key everywhere (all nodes open both),
//! make it primary everywhere, then remove the old one.
//!
//! A key's id is not stored: it is derived from the key (four bytes of a Poly1305 tag the key
//! computes over a fixed label), so two files holding the same key agree on its id and the id
//! says nothing about the key.

use crate::statefile;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chacha20poly1305::aead::{Aead, Generate, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Bytes in a cluster key.
pub const KEY_LEN: usize = 32;
/// Most keys a ring holds: a rotation needs two; a few more leave room for mistakes.
pub const MAX_KEYS: usize = 8;

/// What identifies a key on the wire (4 bytes before the nonce).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub u32);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

impl std::str::FromStr for KeyId {
    type Err = KeyParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let not_an_id = || KeyParseError::NotAnId(s.to_string());
        if s.len() != 8 {
            return Err(not_an_id());
        }
        u32::from_str_radix(s, 16)
            .map(KeyId)
            .map_err(|_| not_an_id())
    }
}

/// Why a text is not a key (base64, [`KEY_LEN`] bytes) or not a key id.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyParseError {
    #[error("not base64 ({0})")]
    NotBase64(base64::DecodeError),
    #[error("a key is {KEY_LEN} bytes, this one is {0} bytes")]
    WrongLength(usize),
    #[error("{0:?} is not a key id (8 hex digits, as `nbwatch keys list` shows)")]
    NotAnId(String),
}

/// A cluster key with its cipher ready. `Debug` shows only the id.
#[derive(Clone)]
pub struct Key {
    bytes: [u8; KEY_LEN],
    id: KeyId,
    pub(crate) cipher: XChaCha20Poly1305,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", self.id)
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

/// The label a key's id is computed over.
const ID_LABEL: &[u8] = b"nbwatch key id v1";

impl Key {
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Key {
        let cipher = XChaCha20Poly1305::new(&bytes.into());
        // A tag over an empty message with a fixed nonce is a PRF of the key: a stable id that
        // does not reveal the key. Encrypting an empty message cannot fail.
        let tag = cipher
            .encrypt(
                &XNonce::default(),
                Payload {
                    msg: &[],
                    aad: ID_LABEL,
                },
            )
            .unwrap_or_default();
        let mut id = [0u8; 4];
        for (d, s) in id.iter_mut().zip(&tag) {
            *d = *s;
        }
        Key {
            bytes,
            id: KeyId(u32::from_be_bytes(id)),
            cipher,
        }
    }

    /// A new random key from the operating system's generator.
    pub fn generate() -> Key {
        Key::from_bytes(<[u8; KEY_LEN]>::generate())
    }

    /// Parses the base64 form (`nbwatch keygen` prints it).
    pub fn parse(text: &str) -> Result<Key, KeyParseError> {
        let bytes = BASE64
            .decode(text.trim())
            .map_err(KeyParseError::NotBase64)?;
        let bytes: [u8; KEY_LEN] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| KeyParseError::WrongLength(b.len()))?;
        Ok(Key::from_bytes(bytes))
    }

    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The base64 form.
    pub fn encode(&self) -> String {
        BASE64.encode(self.bytes)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the key file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the key file {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: not a cluster key: {why}")]
    Bad {
        path: PathBuf,
        line: usize,
        why: KeyParseError,
    },
    #[error("the key file {0} holds no key (generate one with `nbwatch keygen`)")]
    Empty(PathBuf),
    #[error("the key file {path} holds more than {MAX_KEYS} keys")]
    TooMany { path: PathBuf },
    #[error("no key {0} in the keyring")]
    Unknown(KeyId),
    #[error("key {0} is the primary key: make another key primary (`nbwatch keys use`) first")]
    Primary(KeyId),
    #[error("the keyring already holds {MAX_KEYS} keys: remove one first")]
    Full,
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Format(#[from] crate::statefile::StateFileError),
    #[error(transparent)]
    Access(#[from] crate::statefile::access::AccessError),
}

/// The keys a node opens with; the first is the one it seals with.
#[derive(Clone, Debug, PartialEq)]
pub struct Keyring {
    keys: Vec<Key>,
}

impl Keyring {
    /// A ring of one key.
    pub fn single(key: Key) -> Keyring {
        Keyring { keys: vec![key] }
    }

    /// Parses a keyring file's text; `path` only names the file in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Keyring, KeyError> {
        // The format line is a comment to every reader; a newer one is refused, not guessed at.
        let (format, _) = statefile::text_format("keyring", text).map_err(|e| {
            statefile::StateFileError::Corrupt {
                path: path.to_path_buf(),
                why: e.to_string(),
            }
        })?;
        statefile::refuse_newer(path, format, statefile::KEYRING_FORMAT)?;
        let mut keys: Vec<Key> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let key = Key::parse(line).map_err(|why| KeyError::Bad {
                path: path.to_path_buf(),
                line: i + 1,
                why,
            })?;
            if keys.iter().any(|k| k.id() == key.id()) {
                continue;
            }
            keys.push(key);
        }
        if keys.is_empty() {
            return Err(KeyError::Empty(path.to_path_buf()));
        }
        if keys.len() > MAX_KEYS {
            return Err(KeyError::TooMany {
                path: path.to_path_buf(),
            });
        }
        Ok(Keyring { keys })
    }

    /// Reads the keyring file at `path`. A file that is not the daemon's user's own, or that
    /// anyone else could read or write, is refused (`statefile::access`): a key others may
    /// have read is no secret, and one others may have written is not the cluster's.
    pub fn load(path: &Path) -> Result<Keyring, KeyError> {
        crate::statefile::access::check_secret(path)?;
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Keyring::parse(path, &text)
    }

    /// Makes a new key file of one fresh key at `path` (mode 0600) unless there is a file
    /// already; says whether it made one. Never writes over an existing file, so two starts
    /// racing cannot leave two keys.
    pub fn create_if_missing(path: &Path) -> Result<bool, KeyError> {
        use std::os::unix::fs::OpenOptionsExt;
        let write = |source| KeyError::Write {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(write)?;
        }
        let mut file = match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(write(e)),
        };
        let text = Keyring::single(Key::generate()).text();
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(write)?;
        Ok(true)
    }

    /// The key file's text: the format line (from format 2 on), a comment, the keys.
    fn text(&self) -> String {
        let mut text = match statefile::KEYRING_FORMAT {
            1 => String::new(),
            n => statefile::header("keyring", n),
        };
        text.push_str("# nbwatch cluster keys; the first one is primary.\n");
        for key in &self.keys {
            text.push_str(&key.encode());
            text.push('\n');
        }
        text
    }

    /// Writes the ring to `path` (primary first) at mode 0600, atomically (temp + rename).
    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        let text = self.text();
        let tmp = path.with_extension("tmp");
        write_private(&tmp, text.as_bytes())
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|source| KeyError::Write {
                path: path.to_path_buf(),
                source,
            })
    }

    pub fn primary(&self) -> &Key {
        &self.keys[0]
    }

    pub fn find(&self, id: KeyId) -> Option<&Key> {
        self.keys.iter().find(|k| k.id() == id)
    }

    /// Ids, primary first.
    pub fn ids(&self) -> Vec<KeyId> {
        self.keys.iter().map(Key::id).collect()
    }

    /// Adds a key (as a secondary: it opens, it does not seal). Adding a key already there
    /// changes nothing.
    pub fn install(&mut self, key: Key) -> Result<KeyId, KeyError> {
        let id = key.id();
        if self.find(id).is_some() {
            return Ok(id);
        }
        if self.keys.len() >= MAX_KEYS {
            return Err(KeyError::Full);
        }
        self.keys.push(key);
        Ok(id)
    }

    /// Makes an installed key the primary.
    pub fn use_key(&mut self, id: KeyId) -> Result<(), KeyError> {
        let i = self
            .keys
            .iter()
            .position(|k| k.id() == id)
            .ok_or(KeyError::Unknown(id))?;
        let key = self.keys.remove(i);
        self.keys.insert(0, key);
        Ok(())
    }

    /// Removes a key that is not the primary.
    pub fn remove(&mut self, id: KeyId) -> Result<(), KeyError> {
        if self.primary().id() == id {
            return Err(KeyError::Primary(id));
        }
        let before = self.keys.len();
        self.keys.retain(|k| k.id() != id);
        if self.keys.len() == before {
            return Err(KeyError::Unknown(id));
        }
        Ok(())
    }
}

/// Creates (or truncates) `path` with mode 0600 and writes `bytes`, for keys and tokens.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // The mode above applies only to a new file: make an existing one private too.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(bytes)?;
    file.sync_all()
}
