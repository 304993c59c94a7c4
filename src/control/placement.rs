//! Singleton trees: `placement = { failover = ["nas", "desktop"] }` or `placement = "any"`.
//!
//! Every node whose trees folder declares a placed tree announces it as `tree.<name>` in its
//! gossiped state: the placement it declares and whether the tree runs there (`idle`,
//! `running`, or `failed`: it gave up there and stays out until an operator starts it
//! again). The leader writes `place.<name>`: the node that should run it, or `-` for nobody
//! yet. Its choice ([`assign`]) is the first live, not-failed declarer in the failover order
//! (for `"any"`: by name); with `takeover = false` a node already running it keeps it while it
//! can. A node runs the tree only when the current leader names it ([`decide`]).
//!
//! **At most one instance in a connected component.** A handover is two steps: while another
//! live node still runs the tree, the leader writes `-`, so the old holder stops before the
//! new one is named; and a named node starts only when no other live node reports running it
//! and no live node's `place.` names someone else (an old leader's entry, still visible, makes
//! it wait), and only after that has held for [`HANDOVER`] (so a report still travelling
//! arrives first). A holder that is *down* in the leader's view (two witnesses) is not waited
//! for: that is how the tree fails over.
//!
//! **Across a partition** each side has its own leader and each side may run the tree: a
//! side cannot tell a dead holder from an unreachable one, and an instance that nobody can
//! reach is of no use to that side. When the sides meet again the one leader names one node
//! and the others stop; the simulator checks that no component that has been connected for
//! a few seconds ever runs two instances.

use crate::gossip::MemberView;
use crate::keys::control::Declaration;
use crate::keys::{PLACE_PREFIX, Run, TREE_PREFIX, with_prefix};
use crate::supervision::spec::Placement;
use crate::types::Time;
use std::collections::HashMap;
use std::time::Duration;

/// The leader's "nobody yet".
pub const NOBODY: &str = "-";
/// How long a node named to run a tree waits, with the way clear, before it starts it.
pub const HANDOVER: Duration = Duration::from_secs(1);

pub fn declaration(tree: &str, placement: &Placement, run: Run) -> (String, String) {
    let d = Declaration {
        failover: placement.failover.clone(),
        takeover: placement.takeover,
        run,
    };
    (
        format!("{TREE_PREFIX}{tree}"),
        serde_json::to_string(&d).expect("names and a bool serialize"),
    )
}

/// The live nodes that declare `tree`, by name.
fn declared<'a>(views: &'a [MemberView], tree: &str) -> Vec<(&'a str, Declaration)> {
    let key = format!("{TREE_PREFIX}{tree}");
    let mut out: Vec<(&str, Declaration)> = views
        .iter()
        .filter(|v| crate::election::is_live(v))
        .filter_map(|v| {
            let d = serde_json::from_str(v.kv.get(&key)?).ok()?;
            Some((v.name.as_str(), d))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(b.0));
    out
}

/// Every placed tree some live node declares.
pub fn trees(views: &[MemberView]) -> Vec<String> {
    let mut out: Vec<String> = views
        .iter()
        .filter(|v| crate::election::is_live(v))
        .flat_map(|v| with_prefix(&v.kv, TREE_PREFIX).map(|(tree, _)| tree.to_string()))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The leader's `place.<tree>` value: who should run `tree` now, or [`NOBODY`].
pub fn assign(views: &[MemberView], tree: &str) -> String {
    let declared = declared(views, tree);
    // The declarations should agree; if they do not, the first declarer's (by name) counts.
    let Some((_, reference)) = declared.first() else {
        return NOBODY.to_string();
    };
    let eligible = |name: &str| {
        declared
            .iter()
            .any(|(n, d)| *n == name && d.run != Run::Failed)
    };
    let order: Vec<&str> = if reference.failover.is_empty() {
        declared
            .iter()
            .map(|(n, _)| *n)
            .filter(|n| eligible(n))
            .collect()
    } else {
        reference
            .failover
            .iter()
            .map(String::as_str)
            .filter(|n| eligible(n))
            .collect()
    };
    let runners: Vec<&str> = declared
        .iter()
        .filter(|(_, d)| d.run == Run::Running)
        .map(|(n, _)| *n)
        .collect();
    let target = if reference.takeover {
        order.first().copied()
    } else {
        order
            .iter()
            .copied()
            .find(|n| runners.contains(n))
            .or(order.first().copied())
    };
    match target {
        Some(t) if runners.iter().all(|r| *r == t) => t.to_string(),
        _ => NOBODY.to_string(),
    }
}

/// What a node does about one placed tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Start,
    Stop,
    /// Keep doing what it does (no word from a leader, or the way is not clear yet).
    Nothing,
}

/// What node `me` (running the tree or not) should do about `tree`, given the leader.
pub fn decide(
    views: &[MemberView],
    me: &str,
    tree: &str,
    leader: Option<&str>,
    running_here: bool,
) -> Decision {
    let key = format!("{PLACE_PREFIX}{tree}");
    let Some(place) = leader
        .and_then(|l| views.iter().find(|v| v.name.as_str() == l))
        .and_then(|l| l.kv.get(&key))
    else {
        return Decision::Nothing;
    };
    if place != me {
        return if running_here {
            Decision::Stop
        } else {
            Decision::Nothing
        };
    }
    if running_here {
        return Decision::Nothing;
    }
    let others_run = declared(views, tree)
        .iter()
        .any(|(n, d)| *n != me && d.run == Run::Running);
    let others_named = views
        .iter()
        .filter(|v| crate::election::is_live(v))
        .filter_map(|v| v.kv.get(&key))
        .any(|p| p != me && p != NOBODY);
    if others_run || others_named {
        Decision::Nothing
    } else {
        Decision::Start
    }
}

/// A node's placement state: when each tree's start was first wanted (for [`HANDOVER`]).
#[derive(Debug, Default)]
pub struct Placer {
    wanted_since: HashMap<String, Time>,
}

impl Placer {
    /// [`decide`], with a start held back until it has been decided for [`HANDOVER`].
    pub fn step(
        &mut self,
        now: Time,
        views: &[MemberView],
        me: &str,
        tree: &str,
        leader: Option<&str>,
        running_here: bool,
    ) -> Decision {
        match decide(views, me, tree, leader, running_here) {
            Decision::Start => {
                let since = *self.wanted_since.entry(tree.to_string()).or_insert(now);
                if now.since(since) >= HANDOVER {
                    self.wanted_since.remove(tree);
                    Decision::Start
                } else {
                    Decision::Nothing
                }
            }
            other => {
                self.wanted_since.remove(tree);
                other
            }
        }
    }
}

/// The `place.` entries the leader should hold: one per declared tree.
pub fn leader_entries(views: &[MemberView]) -> Vec<(String, String)> {
    trees(views)
        .into_iter()
        .map(|t| (format!("{PLACE_PREFIX}{t}"), assign(views, &t)))
        .collect()
}

/// This node's `place.` keys (to delete when it is not the leader).
pub fn own_places(me: &MemberView) -> Vec<String> {
    with_prefix(&me.kv, PLACE_PREFIX)
        .map(|(tree, _)| format!("{PLACE_PREFIX}{tree}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gossip::Status;

    fn node(name: &str, status: Status, kv: Vec<(String, String)>) -> MemberView {
        crate::control::test_view(name, status, kv)
    }

    fn failover(nodes: &[&str], takeover: bool) -> Placement {
        Placement {
            failover: nodes.iter().map(|s| s.to_string()).collect(),
            takeover,
        }
    }

    fn declares(p: &Placement, run: Run) -> Vec<(String, String)> {
        vec![declaration("tv", p, run)]
    }

    /// [`declares`] as a member view holds its keys.
    fn shown(
        p: &Placement,
        run: Run,
    ) -> std::sync::Arc<std::collections::BTreeMap<String, String>> {
        std::sync::Arc::new(declares(p, run).into_iter().collect())
    }

    #[test]
    fn the_leader_names_the_first_live_candidate_and_hands_over_in_two_steps() {
        let p = failover(&["a", "b", "c"], true);
        let mut views = vec![
            node("a", Status::Alive, declares(&p, Run::Idle)),
            node("b", Status::Alive, declares(&p, Run::Idle)),
            node("c", Status::Alive, declares(&p, Run::Idle)),
            node("d", Status::Alive, vec![]),
        ];
        assert_eq!(assign(&views, "tv"), "a");
        assert_eq!(trees(&views), ["tv"]);
        // a down: b, at once (nobody else runs it).
        views[0].status = Status::Down;
        views[1].kv = shown(&p, Run::Idle);
        assert_eq!(assign(&views, "tv"), "b");
        // b runs it, a comes back: takeover, but b must stop first.
        views[1].kv = shown(&p, Run::Running);
        views[0].status = Status::Alive;
        assert_eq!(assign(&views, "tv"), NOBODY);
        views[1].kv = shown(&p, Run::Idle);
        assert_eq!(assign(&views, "tv"), "a");
        // Without takeover b keeps it.
        let q = failover(&["a", "b", "c"], false);
        for v in &mut views[..3] {
            v.kv = shown(&q, Run::Idle);
        }
        views[1].kv = shown(&q, Run::Running);
        assert_eq!(assign(&views, "tv"), "b");
        // Failed on a: it is skipped.
        for v in &mut views[..3] {
            v.kv = shown(&p, Run::Idle);
        }
        views[0].kv = shown(&p, Run::Failed);
        assert_eq!(assign(&views, "tv"), "b");
        // "any": by name among the declarers.
        let any = Placement {
            failover: vec![],
            takeover: true,
        };
        let views = vec![
            node("x", Status::Alive, vec![]),
            node("c", Status::Alive, declares(&any, Run::Idle)),
            node("b", Status::Alive, declares(&any, Run::Idle)),
        ];
        assert_eq!(assign(&views, "tv"), "b");
        assert_eq!(assign(&views, "other"), NOBODY);
    }

    #[test]
    fn a_named_node_starts_only_when_the_way_is_clear_and_after_the_handover_delay() {
        let p = failover(&["a", "b"], true);
        let place = |who: &str| (format!("{PLACE_PREFIX}tv"), who.to_string());
        let mut views = vec![
            node("a", Status::Alive, declares(&p, Run::Idle)),
            node("b", Status::Alive, declares(&p, Run::Running)),
            node("l", Status::Alive, vec![place("a")]),
        ];
        // b still runs it: a waits, b stops.
        assert_eq!(
            decide(&views, "a", "tv", Some("l"), false),
            Decision::Nothing
        );
        assert_eq!(decide(&views, "b", "tv", Some("l"), true), Decision::Stop);
        views[1].kv = shown(&p, Run::Idle);
        assert_eq!(decide(&views, "a", "tv", Some("l"), false), Decision::Start);
        // An old leader's entry naming b is still visible: wait.
        std::sync::Arc::make_mut(&mut views[1].kv).insert(place("b").0, "b".into());
        assert_eq!(
            decide(&views, "a", "tv", Some("l"), false),
            Decision::Nothing
        );
        std::sync::Arc::make_mut(&mut views[1].kv).remove(&place("b").0);
        // No leader or no entry yet: nothing changes.
        assert_eq!(decide(&views, "a", "tv", None, false), Decision::Nothing);
        assert_eq!(
            decide(&views, "b", "tv", Some("a"), true),
            Decision::Nothing
        );
        let mut placer = Placer::default();
        let t0 = Time(10_000);
        assert_eq!(
            placer.step(t0, &views, "a", "tv", Some("l"), false),
            Decision::Nothing
        );
        let t1 = t0 + HANDOVER;
        assert_eq!(
            placer.step(t1, &views, "a", "tv", Some("l"), false),
            Decision::Start
        );
    }

    /// A key holder that is not the leader this host elected cannot hand a singleton over:
    /// its `place.` entry neither stops the holder nor starts the node it names.
    #[test]
    fn a_handover_is_obeyed_only_from_the_leader_this_host_elected() {
        let p = failover(&["a", "b"], true);
        let place = |who: &str| (format!("{PLACE_PREFIX}tv"), who.to_string());
        let views = vec![
            node("a", Status::Alive, declares(&p, Run::Running)),
            node("b", Status::Alive, declares(&p, Run::Idle)),
            node("l", Status::Alive, vec![place("a")]),
            node("x", Status::Alive, vec![place("b")]),
        ];
        assert_eq!(
            decide(&views, "a", "tv", Some("l"), true),
            Decision::Nothing
        );
        assert_eq!(
            decide(&views, "b", "tv", Some("l"), false),
            Decision::Nothing
        );
        // Only once the host's own election makes x the leader is x's word the placement.
        assert_eq!(decide(&views, "a", "tv", Some("x"), true), Decision::Stop);
    }
}
