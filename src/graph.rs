//! The cluster as a dependency graph, built from the gossiped view alone.
//!
//! **Vertices** are hosts (`nas`), supervisors (`nas/tv`, `nas/tv/web`: the tree's root, then
//! each nested supervisor) and services (`nas:postgres`, the `NODE:SERVICE` of commands).
//! **Edges** say what a failure takes with it:
//!
//! * `contains`: a host holds the roots of its trees — a host down takes its trees down;
//! * `supervises`: a supervisor holds its children — a supervisor gone takes them along;
//! * `requires`: `from` needs `to` (`requires = ["nas:postgres"]` in `from`'s tree) — a
//!   failure travels against the edge, from `to` to `from`.
//!
//! A vertex **fails by itself** when it is a host the cluster declared down, a service whose
//! tree gave up (`failed`) or whose health is `critical`, or a required service nobody
//! announces (`missing`). Everything a failed vertex takes down, transitively, is its
//! **impact**; each impacted vertex comes with the path the failure took, shortest first (a
//! breadth-first walk), so "why is desk:web down" has an answer.
//!
//! What a host announced before it went down stays in the view (its services still say
//! `running`); the graph shows them as taken down by the host, not as running.

use crate::gossip::{MemberView, Status};
use crate::keys::{ServiceState, announced};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

pub mod availability;
pub mod steady;

/// What a vertex stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Host,
    Supervisor,
    Service,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Host => "host",
            Kind::Supervisor => "supervisor",
            Kind::Service => "service",
        }
    }
}

/// How two vertices are tied (see the module doc for the direction a failure travels).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum EdgeKind {
    Contains,
    Supervises,
    Requires,
}

impl EdgeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EdgeKind::Contains => "contains",
            EdgeKind::Supervises => "supervises",
            EdgeKind::Requires => "requires",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Vertex {
    /// `host`, `host/tree[/sub...]` or `host:service`.
    pub id: String,
    pub kind: Kind,
    pub node: String,
    /// The service's name, or the supervisor's path below the host (`tv/web`).
    pub name: Option<String>,
    /// A host's status, a service's state (`missing` for a required service nobody
    /// announces), `running` for a supervisor.
    pub state: String,
    /// A service's health.
    pub health: Option<String>,
    /// It failed by itself (see the module doc).
    pub failed: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Edge {
    pub from: String,
    pub to: String,
    pub kind: EdgeKind,
}

/// One vertex a failure takes down, and the way it went: the failed vertex first, this one
/// last.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Impacted {
    pub id: String,
    pub path: Vec<String>,
}

#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub vertices: Vec<Vertex>,
    pub edges: Vec<Edge>,
    index: BTreeMap<String, usize>,
}

/// The id of service `service` on `node`.
pub fn service_id(node: &str, service: &str) -> String {
    format!("{node}:{service}")
}

/// The id of the supervisor at `path` (root first) on `node`.
pub fn supervisor_id(node: &str, path: &[&str]) -> String {
    format!("{node}/{}", path.join("/"))
}

impl Graph {
    /// The graph of everything `views` shows. Members that left are not part of it.
    pub fn from_views(views: &[MemberView]) -> Graph {
        let mut g = Graph::default();
        let mut requires: Vec<(String, String)> = Vec::new();
        for m in views.iter().filter(|m| m.status != Status::Left) {
            let node = m.name.as_str();
            g.add(Vertex {
                id: node.to_string(),
                kind: Kind::Host,
                node: node.to_string(),
                name: None,
                state: m.status.as_str().to_string(),
                health: None,
                failed: m.status == Status::Down,
            });
            for s in announced(&m.kv) {
                let path = s.path();
                let mut parent = node.to_string();
                for depth in 1..=path.len() {
                    let id = supervisor_id(node, &path[..depth]);
                    if !g.index.contains_key(&id) {
                        g.add(Vertex {
                            id: id.clone(),
                            kind: Kind::Supervisor,
                            node: node.to_string(),
                            name: Some(path[..depth].join("/")),
                            state: "running".into(),
                            health: None,
                            failed: false,
                        });
                        let kind = if depth == 1 {
                            EdgeKind::Contains
                        } else {
                            EdgeKind::Supervises
                        };
                        g.edge(&parent, &id, kind);
                    }
                    parent = id;
                }
                let id = service_id(node, &s.name);
                g.add(Vertex {
                    id: id.clone(),
                    kind: Kind::Service,
                    node: node.to_string(),
                    name: Some(s.name.clone()),
                    state: s.state.as_str().to_string(),
                    health: Some(s.health.clone()),
                    failed: s.state == ServiceState::Failed || s.health == "critical",
                });
                g.edge(&parent, &id, EdgeKind::Supervises);
                for r in &s.shape.requires {
                    requires.push((id.clone(), r.clone()));
                }
            }
        }
        for (from, to) in requires {
            if !g.index.contains_key(&to) {
                let (node, service) = to.split_once(':').unwrap_or((to.as_str(), ""));
                g.add(Vertex {
                    id: to.clone(),
                    kind: Kind::Service,
                    node: node.to_string(),
                    name: Some(service.to_string()),
                    state: "missing".into(),
                    health: None,
                    failed: true,
                });
            }
            g.edge(&from, &to, EdgeKind::Requires);
        }
        g.edges.sort();
        g.edges.dedup();
        g
    }

    fn add(&mut self, v: Vertex) {
        self.index.insert(v.id.clone(), self.vertices.len());
        self.vertices.push(v);
    }

    fn edge(&mut self, from: &str, to: &str, kind: EdgeKind) {
        self.edges.push(Edge {
            from: from.to_string(),
            to: to.to_string(),
            kind,
        });
    }

    pub fn vertex(&self, id: &str) -> Option<&Vertex> {
        self.index.get(id).map(|&i| &self.vertices[i])
    }

    /// For each vertex, the vertices its failure reaches directly (see the module doc).
    fn carried_to(&self) -> BTreeMap<&str, Vec<&str>> {
        let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for e in &self.edges {
            let (a, b) = match e.kind {
                EdgeKind::Contains | EdgeKind::Supervises => (&e.from, &e.to),
                EdgeKind::Requires => (&e.to, &e.from),
            };
            next.entry(a.as_str()).or_default().push(b.as_str());
        }
        next
    }

    /// What stops working if `id` fails, each with the shortest path the failure takes;
    /// `None` if there is no such vertex.
    pub fn impact(&self, id: &str) -> Option<Vec<Impacted>> {
        self.vertex(id)?;
        let next = self.carried_to();
        Some(walk(&next, id))
    }

    /// For every vertex taken down by another's failure, the failed vertices that take it
    /// down (by id).
    pub fn taken_down(&self) -> BTreeMap<String, BTreeSet<String>> {
        let next = self.carried_to();
        let mut by: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for v in self.vertices.iter().filter(|v| v.failed) {
            for hit in walk(&next, &v.id) {
                by.entry(hit.id).or_default().insert(v.id.clone());
            }
        }
        by
    }

    /// The services on hosts other than `node` that `node` going down takes with it.
    pub fn services_elsewhere(&self, node: &str) -> Vec<String> {
        (self.impact(node).into_iter().flatten())
            .filter(|hit| {
                self.vertex(&hit.id)
                    .is_some_and(|v| v.kind == Kind::Service && v.node != node)
            })
            .map(|hit| hit.id)
            .collect()
    }
}

/// Breadth-first from `start` along `next`: every vertex reached (not `start`) with its path.
fn walk(next: &BTreeMap<&str, Vec<&str>>, start: &str) -> Vec<Impacted> {
    let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = VecDeque::from([start]);
    let mut order = Vec::new();
    while let Some(at) = queue.pop_front() {
        for &to in next.get(at).into_iter().flatten() {
            if to != start && !came_from.contains_key(to) {
                came_from.insert(to, at);
                order.push(to);
                queue.push_back(to);
            }
        }
    }
    order
        .into_iter()
        .map(|id| {
            let mut path = vec![id.to_string()];
            let mut at = id;
            while let Some(&prev) = came_from.get(at) {
                path.push(prev.to_string());
                at = prev;
            }
            path.reverse();
            Impacted {
                id: id.to_string(),
                path,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
