//! One node's versioned key/value state, as its owner writes it and as others replicate it.
//!
//! Scuttlebutt (van Renesse et al., 2008): every write bumps the owner's version, so "what is
//! newer than version v" is a range query, and replication only ever moves forward. A delete is
//! a tombstone: a write like any other, so it replicates too.

use crate::types::NodeName;
use crate::types::{Incarnation, Version};
use crate::wire::{Beat, KvEntry, NodeDelta};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub version: Version,
    /// `None`: deleted (a tombstone).
    pub value: Option<String>,
}

#[derive(Clone, Debug)]
pub struct NodeState {
    pub incarnation: Incarnation,
    pub addr: SocketAddr,
    pub beat: Beat,
    /// Every entry with a version up to this one has been applied.
    pub version: Version,
    kv: BTreeMap<String, Entry>,
    /// The live entries as a member view shows them, made on the first ask after a change
    /// and shared by every view until the next one: a view of a hundred members is published
    /// several times a second, and most members have not changed since the last.
    shown: OnceLock<Arc<BTreeMap<String, String>>>,
}

/// What applying a delta changed.
#[derive(Debug, Default)]
pub struct Applied {
    pub changed: Vec<(String, Option<String>)>,
}

impl NodeState {
    pub fn new(incarnation: Incarnation, addr: SocketAddr) -> NodeState {
        NodeState {
            incarnation,
            addr,
            beat: Beat(0),
            version: Version(0),
            kv: BTreeMap::new(),
            shown: OnceLock::new(),
        }
    }

    /// The live entries, shared (see `shown`).
    pub fn shown(&self) -> Arc<BTreeMap<String, String>> {
        (self.shown.get_or_init(|| {
            Arc::new(
                self.live()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        }))
        .clone()
    }

    pub fn value(&self, key: &str) -> Option<&str> {
        self.kv.get(key).and_then(|e| e.value.as_deref())
    }

    /// Live (not deleted) entries.
    pub fn live(&self) -> impl Iterator<Item = (&str, &str)> {
        self.kv
            .iter()
            .filter_map(|(k, e)| e.value.as_deref().map(|v| (k.as_str(), v)))
    }

    /// Live entries whose key starts with `prefix`, in key order (a range of the map, not a
    /// scan of every key).
    pub fn live_under<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> {
        (self.kv.range::<str, _>((
            std::ops::Bound::Included(prefix),
            std::ops::Bound::Unbounded,
        )))
        .take_while(move |(k, _)| k.starts_with(prefix))
        .filter_map(|(k, e)| e.value.as_deref().map(|v| (k.as_str(), v)))
    }

    /// The owner's write: bumps the version. Returns false when nothing changed.
    pub fn write(&mut self, key: &str, value: Option<String>) -> bool {
        if let Some(e) = self.kv.get(key)
            && e.value == value
        {
            return false;
        }
        if value.is_none() && !self.kv.contains_key(key) {
            return false;
        }
        self.version = Version(self.version.0 + 1);
        self.shown.take();
        self.kv.insert(
            key.to_string(),
            Entry {
                version: self.version,
                value,
            },
        );
        true
    }

    /// Entries newer than `from`, oldest first.
    pub fn newer_than(&self, from: Version) -> Vec<KvEntry> {
        let mut entries: Vec<KvEntry> = self
            .kv
            .iter()
            .filter(|(_, e)| e.version > from)
            .map(|(k, e)| KvEntry {
                key: k.clone(),
                version: e.version,
                value: e.value.clone(),
            })
            .collect();
        entries.sort_by_key(|e| e.version);
        entries
    }

    /// A delta of everything newer than `from`, cut to at most `budget` encoded bytes of entries
    /// (at least the header is always there, so a heartbeat or address still travels).
    pub fn delta(&self, node: &NodeName, from: Version, budget: usize) -> NodeDelta {
        let mut delta = NodeDelta {
            node: node.clone(),
            incarnation: self.incarnation,
            addr: self.addr,
            beat: self.beat,
            from,
            to: from,
            entries: Vec::new(),
        };
        let mut used = 0;
        for entry in self.newer_than(from) {
            let size = crate::wire::encoded_len(&entry) + 1;
            if used + size > budget {
                return delta;
            }
            used += size;
            delta.to = entry.version;
            delta.entries.push(entry);
        }
        delta.to = self.version.max(from);
        delta
    }

    /// Applies a delta of the same incarnation. Entries at or below our version are skipped; a
    /// delta that starts beyond our version would leave a gap and is refused whole.
    pub fn apply(&mut self, delta: &NodeDelta) -> Applied {
        let mut applied = Applied::default();
        if delta.beat > self.beat {
            self.beat = delta.beat;
        }
        self.addr = delta.addr;
        if delta.from > self.version {
            return applied;
        }
        for entry in &delta.entries {
            if entry.version <= self.version {
                continue;
            }
            let previous = self.kv.insert(
                entry.key.clone(),
                Entry {
                    version: entry.version,
                    value: entry.value.clone(),
                },
            );
            if previous.map(|p| p.value) != Some(entry.value.clone()) {
                self.shown.take();
                applied
                    .changed
                    .push((entry.key.clone(), entry.value.clone()));
            }
        }
        self.version = self.version.max(delta.to);
        applied
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        "127.0.0.1:7710".parse().unwrap()
    }

    #[test]
    fn every_write_bumps_the_version_and_unchanged_writes_do_not() {
        let mut s = NodeState::new(Incarnation(1), addr());
        assert!(s.write("a", Some("1".into())));
        assert!(!s.write("a", Some("1".into())));
        assert!(s.write("a", Some("2".into())));
        assert!(s.write("a", None));
        assert!(!s.write("missing", None));
        assert_eq!(s.version, Version(3));
        assert_eq!(s.value("a"), None);
    }

    #[test]
    fn a_delta_replicates_writes_and_deletes_in_order() {
        let name = NodeName::from("a");
        let mut owner = NodeState::new(Incarnation(1), addr());
        owner.write("x", Some("1".into()));
        owner.write("y", Some("2".into()));
        owner.write("x", None);
        let mut replica = NodeState::new(Incarnation(1), addr());
        let applied = replica.apply(&owner.delta(&name, Version(0), 1000));
        assert_eq!(replica.version, owner.version);
        assert_eq!(replica.value("x"), None);
        assert_eq!(replica.value("y"), Some("2"));
        assert_eq!(applied.changed.len(), 2);
    }

    #[test]
    fn a_cut_delta_advances_only_to_what_it_carries() {
        let name = NodeName::from("a");
        let mut owner = NodeState::new(Incarnation(1), addr());
        for i in 0..50 {
            owner.write(&format!("key{i}"), Some("x".repeat(20)));
        }
        let mut replica = NodeState::new(Incarnation(1), addr());
        let d = owner.delta(&name, Version(0), 200);
        assert!(d.entries.len() < 50 && !d.entries.is_empty());
        replica.apply(&d);
        assert_eq!(replica.version, d.to);
        while replica.version < owner.version {
            replica.apply(&owner.delta(&name, replica.version, 200));
        }
        assert_eq!(replica.live().count(), 50);
    }

    #[test]
    fn the_shown_entries_are_shared_until_a_change() {
        let name = NodeName::from("a");
        let mut owner = NodeState::new(Incarnation(1), addr());
        owner.write("x", Some("1".into()));
        let first = owner.shown();
        assert!(Arc::ptr_eq(&first, &owner.shown()), "unchanged: shared");
        assert!(!owner.write("x", Some("1".into())));
        assert!(
            Arc::ptr_eq(&first, &owner.shown()),
            "a write that changes nothing"
        );
        owner.write("y", Some("2".into()));
        owner.write("x", None);
        let second = owner.shown();
        assert_eq!(
            second.iter().collect::<Vec<_>>(),
            [(&"y".to_string(), &"2".to_string())]
        );
        let mut replica = NodeState::new(Incarnation(1), addr());
        let before = replica.shown();
        replica.apply(&owner.delta(&name, Version(0), 1000));
        assert!(before.is_empty(), "an earlier view keeps what it showed");
        assert_eq!(replica.shown(), second);
    }

    #[test]
    fn a_delta_with_a_gap_is_refused() {
        let name = NodeName::from("a");
        let mut owner = NodeState::new(Incarnation(1), addr());
        owner.write("x", Some("1".into()));
        owner.write("y", Some("2".into()));
        let mut replica = NodeState::new(Incarnation(1), addr());
        replica.apply(&owner.delta(&name, Version(1), 1000));
        assert_eq!(replica.version, Version(0));
        assert_eq!(replica.value("y"), None);
    }
}
