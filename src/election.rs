//! Who leads: the live member (alive or suspect, this node included) with the lowest
//! `(priority, name)` in this node's view — no voting round, as Akka's leader. Views disagree
//! for moments after a change; the alert log (see [`crate::alert`]) is what makes one alert per
//! incident safe despite that.
//!
//! Who sends alerts: the best-ranked live member that can deliver them ([`sender`]) — the
//! leader when it has sinks, else the next in the same order that does. A node without sinks
//! (or without their secret files) never sends, so an alert is never marked sent by a node
//! that could not deliver it.
//!
//! [`Election`] is the sans-IO core: fed views, it says when the leader changed. [`leader`]
//! is the one place the leader is computed; the election actor publishes each new view with
//! its leader as a [`ViewSnapshot`], and everything else (alerts, control, API, dashboard,
//! metrics) reads the leader from there.

use crate::events::LeaderChanged;
use crate::gossip::{MemberView, Status};
use crate::keys::alert::sinks_ready;
use crate::keys::{PRIORITY_KEY, SINKS_KEY};
use crate::types::NodeName;

/// A member's announced priority (`node.priority`); missing or unreadable counts as 0.
pub fn priority(view: &MemberView) -> i64 {
    view.kv
        .get(PRIORITY_KEY)
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or(0)
}

/// The order of leadership: lower leads.
pub fn rank(view: &MemberView) -> (i64, NodeName) {
    (priority(view), view.name.clone())
}

/// True for members that count as live for leadership.
pub fn is_live(view: &MemberView) -> bool {
    matches!(view.status, Status::Alive | Status::Suspect)
}

/// The live member with the lowest `(priority, name)`.
pub fn leader(views: &[MemberView]) -> Option<NodeName> {
    views
        .iter()
        .filter(|m| is_live(m))
        .min_by_key(|m| rank(m))
        .map(|m| m.name.clone())
}

/// How many sinks a member announces it can deliver through.
pub fn sinks(view: &MemberView) -> usize {
    sinks_ready(view.kv.get(SINKS_KEY).map(String::as_str))
}

/// The live members that can deliver alerts, best-ranked first.
pub fn senders(views: &[MemberView]) -> Vec<&MemberView> {
    let mut live: Vec<&MemberView> = views
        .iter()
        .filter(|m| is_live(m) && sinks(m) > 0)
        .collect();
    live.sort_by_key(|m| rank(m));
    live
}

/// The member that sends this view's alerts: the best-ranked live one with sinks.
pub fn sender(views: &[MemberView]) -> Option<NodeName> {
    senders(views).first().map(|m| m.name.clone())
}

/// One view of the cluster as this node has it, with its leader: what the election actor
/// publishes whenever the view changes.
#[derive(Clone, Debug, Default)]
pub struct ViewSnapshot {
    pub members: Vec<MemberView>,
    pub leader: Option<NodeName>,
    /// Who sends the alerts ([`sender`]).
    pub sender: Option<NodeName>,
    /// This node's place in the order of leadership among the live members (0 leads), if it
    /// is live in this view.
    pub position: Option<usize>,
}

impl ViewSnapshot {
    pub fn new(members: Vec<MemberView>) -> ViewSnapshot {
        let leader = leader(&members);
        let sender = sender(&members);
        let mut live: Vec<_> = members.iter().filter(|m| is_live(m)).collect();
        live.sort_by_key(|m| rank(m));
        let position = live.iter().position(|m| m.is_self);
        ViewSnapshot {
            members,
            leader,
            sender,
            position,
        }
    }

    /// True when `name` leads this view.
    pub fn is_leader(&self, name: &NodeName) -> bool {
        self.leader.as_ref() == Some(name)
    }

    /// This node's own entry.
    pub fn me(&self) -> Option<&MemberView> {
        self.members.iter().find(|m| m.is_self)
    }
}

/// Tracks the leader of this node's view across updates.
#[derive(Clone, Debug, Default)]
pub struct Election {
    leader: Option<NodeName>,
}

impl Election {
    pub fn leader(&self) -> Option<&NodeName> {
        self.leader.as_ref()
    }

    /// The leader of `view`, and the change if it is a new one.
    pub fn update(&mut self, view: &ViewSnapshot) -> Option<LeaderChanged> {
        let now = view.leader.clone();
        if now == self.leader {
            return None;
        }
        let change = LeaderChanged {
            from: self.leader.take(),
            to: now.clone(),
        };
        self.leader = now;
        Some(change)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Incarnation, Time};
    use std::collections::BTreeMap;

    fn view(name: &str, status: Status, priority: Option<&str>) -> MemberView {
        let mut kv = BTreeMap::new();
        if let Some(p) = priority {
            kv.insert(PRIORITY_KEY.to_string(), p.to_string());
        }
        MemberView {
            name: NodeName::from(name),
            addr: "127.0.0.1:7710".parse().expect("addr"),
            status,
            incarnation: Incarnation(1),
            last_heard: Time(0),
            is_self: false,
            clock_offset: None,
            reports: 0,
            kv: kv.into(),
        }
    }

    #[test]
    fn the_leader_is_the_live_member_with_the_lowest_priority_then_name() {
        let views = [
            view("a", Status::Down, Some("-5")),
            view("b", Status::Alive, None),
            view("c", Status::Suspect, Some("-1")),
            view("d", Status::Left, Some("-9")),
        ];
        assert_eq!(leader(&views), Some(NodeName::from("c")));
        let views = [
            view("b", Status::Alive, None),
            view("a", Status::Alive, Some("x")),
        ];
        assert_eq!(leader(&views), Some(NodeName::from("a")));
        assert_eq!(leader(&[view("a", Status::Down, None)]), None);
    }

    #[test]
    fn alerts_are_sent_by_the_best_ranked_live_member_with_sinks() {
        let with_sinks = |mut v: MemberView, n: &str| {
            std::sync::Arc::make_mut(&mut v.kv).insert(SINKS_KEY.to_string(), n.to_string());
            v
        };
        let views = [
            view("a", Status::Alive, None),
            with_sinks(view("b", Status::Down, Some("-5")), "2"),
            with_sinks(view("c", Status::Alive, None), "1"),
            with_sinks(view("d", Status::Suspect, Some("1")), "1"),
            with_sinks(view("e", Status::Alive, Some("-1")), "0"),
        ];
        let snapshot = ViewSnapshot::new(views.to_vec());
        assert_eq!(snapshot.leader, Some(NodeName::from("e")));
        assert_eq!(snapshot.sender, Some(NodeName::from("c")));
        let order: Vec<&str> = senders(&views).iter().map(|m| m.name.as_str()).collect();
        assert_eq!(order, ["c", "d"]);
        assert_eq!(sender(&views[..1]), None, "nobody has sinks");
    }

    #[test]
    fn a_change_is_reported_once() {
        let mut e = Election::default();
        let views = vec![
            view("a", Status::Alive, None),
            view("b", Status::Alive, None),
        ];
        assert_eq!(
            e.update(&ViewSnapshot::new(views.clone())),
            Some(LeaderChanged {
                from: None,
                to: Some(NodeName::from("a"))
            })
        );
        assert_eq!(e.update(&ViewSnapshot::new(views.clone())), None);
        let views = vec![
            view("a", Status::Down, None),
            view("b", Status::Alive, None),
        ];
        assert_eq!(
            e.update(&ViewSnapshot::new(views.clone())),
            Some(LeaderChanged {
                from: Some(NodeName::from("a")),
                to: Some(NodeName::from("b"))
            })
        );
    }
}
