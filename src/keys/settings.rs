//! The cluster settings document in a node's gossiped state: its header at `settings` and its
//! text in parts at `settings.1`, `settings.2`, ... (an entry must fit a datagram, a document
//! need not). Every host publishes the document it applies, so the newest one reaches a new
//! host from anyone, even after its author is gone.
//!
//! The header is JSON: `{"ms", "n", "by", "at", "parts", "len", "sum", "seal"}` — the
//! [`Version`] (`ms`, `n`, `by`), the author's wall clock when it was pushed (`at`, for people),
//! how many parts, the text's length and a checksum of it (so parts of two versions are never
//! mixed while an update is still arriving), and the operator's seal if one signed it.

use super::ValueError;
use crate::secure::operator::Seal;
use crate::types::NodeName;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The header's key.
pub const KEY: &str = "settings";
/// A part's key: `settings.<i>`, from 1.
pub const PART_PREFIX: &str = "settings.";
/// The most bytes of text in one part.
pub const PART_LEN: usize = 900;
/// The most parts a header may announce (a bound for what a reader collects).
pub const MAX_PARTS: u32 = 64;

/// A document's version: a hybrid logical clock (milliseconds of the author's wall clock,
/// pushed forward past every version the author had seen, and a counter for pushes within
/// one millisecond) and the author's name. Compared in that order, so the newest wins on
/// every host alike, and a host whose clock lags still makes a newer version than any it has
/// seen.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Version {
    pub ms: u64,
    pub n: u32,
    pub by: NodeName,
}

impl Version {
    /// The version `me` gives a document pushed at `now_ms`, after `seen` (the newest it knows).
    pub fn next(seen: Option<&Version>, now_ms: u64, me: &NodeName) -> Version {
        let (ms, n) = match seen {
            Some(v) if v.ms >= now_ms && v.n == u32::MAX => (v.ms.saturating_add(1), 0),
            Some(v) if v.ms >= now_ms => (v.ms, v.n + 1),
            _ => (now_ms, 0),
        };
        Version {
            ms,
            n,
            by: me.clone(),
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}@{}", self.ms, self.n, self.by)
    }
}

/// A document as published: what the header and the parts carry together.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    pub version: Version,
    /// The author's wall clock when it was pushed (Unix ms).
    pub at: u64,
    pub text: String,
    pub seal: Option<Seal>,
}

#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Header {
    ms: u64,
    n: u32,
    by: String,
    at: u64,
    parts: u32,
    len: usize,
    sum: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seal: Option<Seal>,
}

/// Why a member's published document cannot be read (yet).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unreadable {
    #[error(transparent)]
    Header(#[from] ValueError),
    /// A part has not arrived, or is of another version: it is on its way.
    #[error("part {0} has not arrived")]
    Missing(u32),
}

/// A checksum of the text: the first 16 bytes of its SHA-256, in hex.
fn sum(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    digest.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `text` cut into parts of at most [`PART_LEN`] bytes, on character boundaries.
fn parts(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut end = rest.len().min(PART_LEN);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let (part, tail) = rest.split_at(end);
        out.push(part);
        rest = tail;
    }
    out
}

impl Published {
    /// What the seal covers besides the gossip key: the version and the text, so a seal
    /// cannot be moved to another version or another text.
    pub fn sealed_content(version: &Version, text: &str) -> String {
        format!("{}.{}\n{text}", version.ms, version.n)
    }

    /// The entries that publish it: the header, then the parts; and the keys of parts an
    /// earlier, longer document left that are to be deleted (`had`: how many parts the
    /// state holds now).
    pub fn entries(&self, had: u32) -> (Vec<(String, String)>, Vec<String>) {
        let parts = parts(&self.text);
        let header = Header {
            ms: self.version.ms,
            n: self.version.n,
            by: self.version.by.to_string(),
            at: self.at,
            parts: parts.len() as u32,
            len: self.text.len(),
            sum: sum(&self.text),
            seal: self.seal.clone(),
        };
        let header = serde_json::to_string(&header).expect("a header serialises");
        // The parts go first, so a host never holds the new header without a way to them.
        let mut out: Vec<(String, String)> = (parts.iter().enumerate())
            .map(|(i, p)| (format!("{PART_PREFIX}{}", i + 1), p.to_string()))
            .collect();
        out.push((KEY.to_string(), header));
        let stale = (parts.len() as u32 + 1..=had)
            .map(|i| format!("{PART_PREFIX}{i}"))
            .collect();
        (out, stale)
    }

    /// The version a member's state announces, without reading the parts; `None` when it
    /// publishes none or its header is unreadable.
    pub fn version_in(kv: &BTreeMap<String, String>) -> Option<Version> {
        header(kv.get(KEY)?).ok().map(|(v, _)| v)
    }

    /// How many parts a state holds (to know which to delete).
    pub fn parts_in(kv: &BTreeMap<String, String>) -> u32 {
        kv.get(KEY)
            .and_then(|h| header(h).ok())
            .map_or(0, |(_, h)| h.parts)
    }

    /// The document a member's state publishes: `None` if none, `Err` if it cannot be read
    /// whole (yet).
    pub fn read(kv: &BTreeMap<String, String>) -> Option<Result<Published, Unreadable>> {
        let value = kv.get(KEY)?;
        Some(read(kv, value))
    }
}

/// The header's check where it arrives (see [`super::check`]).
pub fn check(value: &str) -> Result<(), ValueError> {
    header(value).map(drop)
}

fn header(value: &str) -> Result<(Version, Header), ValueError> {
    let h: Header =
        serde_json::from_str(value).map_err(|e| ValueError::Malformed(e.to_string()))?;
    if h.parts > MAX_PARTS || h.by.is_empty() {
        return Err(ValueError::Malformed("too many parts, or no author".into()));
    }
    super::time("at", h.at)?;
    let version = Version {
        ms: h.ms,
        n: h.n,
        by: NodeName::from(h.by.as_str()),
    };
    Ok((version, h))
}

fn read(kv: &BTreeMap<String, String>, value: &str) -> Result<Published, Unreadable> {
    let (version, h) = header(value)?;
    let mut text = String::with_capacity(h.len);
    for i in 1..=h.parts {
        let part = kv
            .get(&format!("{PART_PREFIX}{i}"))
            .ok_or(Unreadable::Missing(i))?;
        text.push_str(part);
    }
    if text.len() != h.len || sum(&text) != h.sum {
        // Parts of another version: the right ones are still on their way.
        return Err(Unreadable::Missing(1));
    }
    Ok(Published {
        version,
        at: h.at,
        text,
        seal: h.seal,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(ms: u64, n: u32, by: &str) -> Version {
        Version {
            ms,
            n,
            by: NodeName::from(by),
        }
    }

    #[test]
    fn a_version_is_newer_than_every_one_its_author_saw_whatever_its_clock_says() {
        let me = NodeName::from("b");
        // A clock ahead: its own milliseconds.
        assert_eq!(
            Version::next(Some(&v(1_000, 4, "a")), 2_000, &me),
            v(2_000, 0, "b")
        );
        // A clock behind (or a document from a clock ahead): the newest seen, counted on.
        let after = Version::next(Some(&v(5_000, 4, "a")), 2_000, &me);
        assert_eq!(after, v(5_000, 5, "b"));
        assert!(after > v(5_000, 4, "a"));
        assert_eq!(Version::next(None, 7, &me), v(7, 0, "b"));
        assert_eq!(
            Version::next(Some(&v(9, u32::MAX, "a")), 1, &me),
            v(10, 0, "b")
        );
        // Same milliseconds and count: the name decides, the same way on every host.
        assert!(v(5, 1, "b") > v(5, 1, "a"));
    }

    #[test]
    fn a_document_travels_in_parts_and_reads_back_whole_only_when_every_part_is_there() {
        let text = format!("# é\n{}", "[alerts]\nrepeat = \"1h\"\n".repeat(80));
        let doc = Published {
            version: v(1_700_000_000_000, 2, "n1"),
            at: 1_700_000_000_000,
            text,
            seal: None,
        };
        let (entries, stale) = doc.entries(9);
        let n = entries.len() - 1;
        assert!(n > 1);
        assert_eq!(stale.len(), 9 - n);
        for (k, value) in &entries {
            assert!(k.len() + value.len() <= crate::keys::MAX_ENTRY_LEN, "{k}");
        }
        let mut kv: BTreeMap<String, String> = entries.into_iter().collect();
        assert_eq!(Published::read(&kv), Some(Ok(doc.clone())));
        assert_eq!(Published::version_in(&kv), Some(doc.version.clone()));
        assert_eq!(Published::parts_in(&kv), n as u32);
        // A part of another version: not read until the right one arrives.
        kv.insert(format!("{PART_PREFIX}2"), "x".into());
        assert!(matches!(
            Published::read(&kv),
            Some(Err(Unreadable::Missing(_)))
        ));
        kv.remove(&format!("{PART_PREFIX}2"));
        assert_eq!(Published::read(&kv), Some(Err(Unreadable::Missing(2))));
        assert_eq!(Published::read(&BTreeMap::new()), None);
        kv.insert(KEY.into(), "{".into());
        assert!(matches!(
            Published::read(&kv),
            Some(Err(Unreadable::Header(_)))
        ));
        assert_eq!(Published::version_in(&kv), None);
    }
}
