//! The control plane across hosts: what supervisors on different nodes do together through
//! the gossiped state (DESIGN §7). Every decision is a pure function of a node's view (the
//! members and their gossiped keys) in the submodules; [`actor::ControlActor`] reads the view
//! every election tick and carries the decisions out through the node's supervisor.
//!
//! * [`appdata`] — application data any program publishes (`app.<KEY>`), with TTLs.
//! * [`remote`] — service commands addressed to another node (`cmd.<id>` / `res.<id>`).
//! * [`deps`] — services that require services on other nodes.
//! * [`placement`] — singleton trees that the leader places on one node and fails over.
//! * [`pick`] — which hosts to send the next jobs to (`nbwatch pick`).
//! * [`owner`] — which hosts own a key, by rendezvous hashing (`nbwatch owner`).
//! * [`settings`] — the cluster settings document every host applies (`nbwatch cluster-config`).

pub mod appdata;
pub mod deps;
pub mod owner;
pub mod pick;
pub mod placement;
pub mod remote;
pub mod settings;

/// A member as a view shows it, for the tests of the control plane's decisions.
#[cfg(test)]
pub(crate) fn test_view(
    name: &str,
    status: crate::gossip::Status,
    kv: impl IntoIterator<Item = (String, String)>,
) -> crate::gossip::MemberView {
    crate::gossip::MemberView {
        name: crate::types::NodeName::from(name),
        addr: "127.0.0.1:1".parse().expect("an address"),
        status,
        incarnation: crate::types::Incarnation(1),
        last_heard: crate::types::Time(0),
        is_self: false,
        clock_offset: None,
        reports: 0,
        kv: std::sync::Arc::new(kv.into_iter().collect()),
    }
}
