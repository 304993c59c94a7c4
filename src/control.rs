//! The control plane across hosts: what supervisors on different nodes do together through
//! the gossiped state (DESIGN §7). Every decision is a pure function of a node's view (the
//! members and their gossiped keys) in the submodules; [`actor::ControlActor`] reads the view
//! every election tick and carries the decisions out through the node's supervisor.
//!
//! * [`appdata`] — application data any program publishes (`app.<KEY>`), with TTLs.
//! * [`remote`] — service commands addressed to another node (`cmd.<id>` / `res.<id>`).
//! * [`deps`] — services that require services on other nodes.
//! * [`placement`] — singleton trees that the leader places on one node and fails over.

pub mod actor;
pub mod appdata;
pub mod deps;
pub mod placement;
pub mod remote;
