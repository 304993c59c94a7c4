//! The zone keys. `zone` names the zone a node belongs to (absent: the default zone, as
//! before zones). `zones.<Z>` is what a zone's publisher (its best-ranked representative,
//! see `gossip::core::zones`) tells its own zone about zone `Z`: Z's summary, whether the
//! upper layer reaches it, and since when not. Every host reads every zone from these keys.
//! `zones.*` (see [`CutOff`]) says at once that the publisher's zone reaches no other: one
//! key instead of one per zone, so a zone cut off from a hundred others learns it as soon as
//! from one.

use super::ValueError;
use crate::wire::ZoneSummary;
use serde::{Deserialize, Serialize};

/// The zone a node is in; written once at start.
pub const ZONE_KEY: &str = "zone";
/// `zones.<Z>`: what this zone knows of zone `Z` (see [`Published`]).
pub const ZONES_PREFIX: &str = "zones.";
/// `zones.*`: this zone reaches no other zone (see [`CutOff`]). Not a zone name, so a host of
/// an older release, which reads `zones.<Z>` only as a [`Published`], ignores it.
pub const CUT_OFF_KEY: &str = "zones.*";
/// The name `node.zone` defaults to, as shown; on the wire the default zone is the empty name.
pub const DEFAULT_ZONE: &str = "default";
/// Down members a summary names (the others are counted).
pub const SUMMARY_DOWN: usize = 8;

/// One zone as its publisher sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Published {
    pub summary: ZoneSummary,
    /// False once two witnesses of the upper layer could not reach the zone.
    pub reachable: bool,
    /// When the zone was last heard (ms since the Unix epoch); set while it is unreachable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
    /// When the publisher wrote this (ms, its clock): of two publications the later wins.
    pub at: u64,
}

impl Published {
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
    pub fn parse(value: &str) -> Result<Published, ValueError> {
        let p: Published =
            serde_json::from_str(value).map_err(|e| ValueError::Malformed(e.to_string()))?;
        if let Some(ms) = p.since {
            super::time("a zone's last heard time", ms)?;
        }
        Ok(p)
    }
}

/// What a publisher writes under [`CUT_OFF_KEY`] when the upper layer reaches none of the
/// other zones: every zone but `zone` is unreachable since `since`, unless its own
/// publication is later than `at` (a zone reached again is published reachable, and that
/// publication wins).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CutOff {
    /// The publisher's zone, the one that is cut off.
    pub zone: String,
    /// When the last of the other zones was last heard (ms since the Unix epoch).
    pub since: u64,
    /// When the publisher wrote it (ms, its clock).
    pub at: u64,
}

impl CutOff {
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
    pub fn parse(value: &str) -> Result<CutOff, ValueError> {
        let c: CutOff =
            serde_json::from_str(value).map_err(|e| ValueError::Malformed(e.to_string()))?;
        super::time("a cut-off zone's last heard time", c.since)?;
        Ok(c)
    }

    /// Whether this mark makes a zone whose own publication was written at `published_at`
    /// unreachable: any zone but the cut-off one, published before the mark.
    pub fn covers(&self, zone: &str, published_at: u64) -> bool {
        zone != self.zone && !supersedes(published_at, self.at)
    }
}

/// The latest publication of each zone among those offered (of the live members of a zone):
/// what every host of the zone reads, whoever published it.
#[derive(Debug, Default)]
pub struct Latest {
    zones: std::collections::BTreeMap<String, (crate::types::NodeName, Published)>,
    /// The latest cut-off mark, and who wrote it.
    cut_off: Option<(crate::types::NodeName, CutOff)>,
}

impl Latest {
    /// A key of `by`'s state; anything but a readable `zones.<Z>` or `zones.*` is ignored.
    pub fn offer(&mut self, by: &crate::types::NodeName, key: &str, value: &str) {
        if key == CUT_OFF_KEY {
            if let Ok(c) = CutOff::parse(value)
                && (self.cut_off.as_ref()).is_none_or(|(_, old)| supersedes(c.at, old.at))
            {
                self.cut_off = Some((by.clone(), c));
            }
            return;
        }
        let Some(zone) = key.strip_prefix(ZONES_PREFIX) else {
            return;
        };
        let Ok(p) = Published::parse(value) else {
            return;
        };
        if (self.zones.get(zone)).is_some_and(|(_, old)| !supersedes(p.at, old.at)) {
            return;
        }
        self.zones.insert(zone.to_string(), (by.clone(), p));
    }

    /// By zone name: who published it, and what (a zone the latest cut-off mark covers:
    /// unreachable since the mark says, as its writer).
    pub fn into_map(
        self,
    ) -> std::collections::BTreeMap<String, (crate::types::NodeName, Published)> {
        let mut zones = self.zones;
        if let Some((by, c)) = self.cut_off {
            for (zone, (who, p)) in zones.iter_mut() {
                if c.covers(zone, p.at) {
                    *who = by.clone();
                    p.reachable = false;
                    p.since = Some(c.since);
                    p.at = c.at;
                }
            }
        }
        zones
    }
}

/// Whether a publication written at `at` wins over one written at `old` (ms, their
/// publishers' clocks): the later one; of two written at once, the one read first stays.
pub fn supersedes(at: u64, old: u64) -> bool {
    at > old
}

/// The latest of `items` by their writing time `at` ([`supersedes`]; of two written at once,
/// the first).
pub fn latest<'a, T>(items: impl Iterator<Item = &'a T>, at: impl Fn(&T) -> u64) -> Option<&'a T> {
    items.reduce(|latest, x| match supersedes(at(x), at(latest)) {
        true => x,
        false => latest,
    })
}

/// The zone of a node whose state has `value` under [`ZONE_KEY`] (absent: the default zone,
/// as every node before zones).
pub fn of(value: Option<&str>) -> &str {
    match value {
        Some(z) if !z.is_empty() => z,
        _ => DEFAULT_ZONE,
    }
}

/// Why a zone name is refused: it must be at most 32 letters, digits, `-` or `_`.
pub fn check_name(zone: &str) -> Result<(), String> {
    if zone.is_empty() {
        return Err("a zone name must not be empty".into());
    }
    if zone.len() > 32 {
        return Err(format!("{zone:?} is longer than 32 characters"));
    }
    if let Some(c) = zone
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(format!(
            "{zone:?} has {c:?}: a zone name is letters, digits, '-' and '_'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::NodeName;

    #[test]
    fn a_publication_round_trips_and_a_bad_one_is_refused_with_why() {
        let p = Published {
            summary: ZoneSummary {
                zone: "attic".into(),
                version: 7,
                reps: vec![(NodeName::from("a1"), "127.0.0.1:7946".parse().unwrap())],
                total: 2,
                up: 1,
                suspect: 0,
                down: 1,
                down_names: vec![(NodeName::from("a2"), crate::wire::Beat(5))],
                leader: Some(NodeName::from("a1")),
                incidents: 1,
                metrics: vec![("load1".into(), 0.5, 0.5, 0.5, 1)],
            },
            reachable: false,
            since: Some(1_700_000_000_000),
            at: 1_700_000_001_000,
        };
        assert_eq!(Published::parse(&p.encode()), Ok(p));
        assert!(matches!(
            Published::parse("{"),
            Err(ValueError::Malformed(_))
        ));
    }

    #[test]
    fn zone_names_are_short_words() {
        assert_eq!(of(None), DEFAULT_ZONE);
        assert_eq!(of(Some("attic")), "attic");
        assert!(check_name("site-2_b").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("a b").unwrap_err().contains("' '"));
        assert!(check_name(&"x".repeat(33)).is_err());
    }

    fn published(zone: &str, reachable: bool, at: u64) -> String {
        Published {
            summary: ZoneSummary {
                zone: zone.into(),
                version: 7,
                reps: vec![],
                total: 2,
                up: 2,
                suspect: 0,
                down: 0,
                down_names: vec![],
                leader: None,
                incidents: 0,
                metrics: vec![],
            },
            reachable,
            since: None,
            at,
        }
        .encode()
    }

    #[test]
    fn a_cut_off_mark_makes_every_other_zone_published_before_it_unreachable() {
        let (p, q) = (NodeName::from("p"), NodeName::from("q"));
        let mark = CutOff {
            zone: "attic".into(),
            since: 1_700_000_000_000,
            at: 1_700_000_005_000,
        };
        assert_eq!(CutOff::parse(&mark.encode()), Ok(mark.clone()));
        assert!(CutOff::parse("{}").is_err());
        assert!(
            crate::keys::check(
                CUT_OFF_KEY,
                "{\"zone\":\"a\",\"since\":18446744073709551615,\"at\":1}"
            )
            .is_err()
        );
        let mut latest = Latest::default();
        latest.offer(
            &p,
            "zones.attic",
            &published("attic", true, 1_700_000_001_000),
        );
        latest.offer(
            &p,
            "zones.cellar",
            &published("cellar", true, 1_700_000_001_000),
        );
        // Reached again after the mark: its own later publication wins.
        latest.offer(
            &q,
            "zones.garden",
            &published("garden", true, 1_700_000_009_000),
        );
        latest.offer(&q, CUT_OFF_KEY, &mark.encode());
        let zones = latest.into_map();
        let read = |z: &str| (zones[z].1.reachable, zones[z].1.since, zones[z].0.as_str());
        assert_eq!(read("attic"), (true, None, "p"), "the cut-off zone itself");
        assert_eq!(read("cellar"), (false, Some(mark.since), "q"));
        assert_eq!(read("garden"), (true, None, "q"));
    }
}
