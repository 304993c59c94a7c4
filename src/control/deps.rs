//! Services that need services on other nodes: `requires = ["nas:postgres"]`.
//!
//! A requirement is met while the node is live in this node's view and announces the service
//! (`svc.<name>` in its gossiped state) as running with health `ok`. A service with
//! requirements is not started until all are met; when one is lost the service is stopped
//! until all are met again (`on_dependency_loss = "stop"`, the default) or restarted at once
//! and again when it is back (`"restart"`). Only changes act: an operator's `stop` or `start`
//! between two changes is left alone.

use crate::gossip::{MemberView, Status};
use crate::keys::{Command, ServiceState, from_gossip, gossip_key};
use crate::supervision::spec::{OnDependencyLoss, Requirement};

/// Why a requirement is not met (for the log).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unmet {
    #[error("{req}: no node \"{}\" in the cluster", req.node)]
    NoNode { req: Requirement },
    #[error("{req}: node {} is {}", req.node, status.as_str())]
    NotLive { req: Requirement, status: Status },
    #[error("{req}: {} announces no such service", req.node)]
    NoService { req: Requirement },
    #[error("{req}: {}", state.as_str())]
    NotRunning {
        req: Requirement,
        state: ServiceState,
    },
    #[error("{req}: health {health}")]
    Unhealthy { req: Requirement, health: String },
}

/// The requirements of a service that are not met, never empty; shown joined by "; ".
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(Unmet::to_string).collect::<Vec<_>>().join("; "))]
pub struct Waiting(pub Vec<Unmet>);

/// `Ok` if `req` is met in `views`, else why not.
pub fn met(req: &Requirement, views: &[MemberView]) -> Result<(), Unmet> {
    let Some(node) = views.iter().find(|v| v.name.as_str() == req.node) else {
        return Err(Unmet::NoNode { req: req.clone() });
    };
    if !crate::election::is_live(node) {
        let status = node.status;
        return Err(Unmet::NotLive {
            req: req.clone(),
            status,
        });
    }
    let Some(status) = node
        .kv
        .get(&gossip_key(&req.service))
        .and_then(|v| from_gossip(&req.service, v))
    else {
        return Err(Unmet::NoService { req: req.clone() });
    };
    if status.state != ServiceState::Running {
        let state = status.state;
        return Err(Unmet::NotRunning {
            req: req.clone(),
            state,
        });
    }
    if status.health != "ok" {
        let health = status.health;
        return Err(Unmet::Unhealthy {
            req: req.clone(),
            health,
        });
    }
    Ok(())
}

/// `Ok` if every requirement is met, else those that are not.
pub fn all_met(reqs: &[Requirement], views: &[MemberView]) -> Result<(), Waiting> {
    let unmet: Vec<Unmet> = reqs.iter().filter_map(|r| met(r, views).err()).collect();
    if unmet.is_empty() {
        Ok(())
    } else {
        Err(Waiting(unmet))
    }
}

/// The command for a service whose requirements were met `before` (`None`: never looked at
/// yet; it starts held) and are met `now`, by its policy; `None` when nothing is to be done.
pub fn transition(before: Option<bool>, now: bool, policy: OnDependencyLoss) -> Option<Command> {
    match (before, now, policy) {
        (Some(b), n, _) if b == n => None,
        (_, true, OnDependencyLoss::Stop) | (None, true, OnDependencyLoss::Restart) => {
            Some(Command::Start)
        }
        (Some(false), true, OnDependencyLoss::Restart) => Some(Command::Restart),
        (None, false, _) => None,
        (Some(true), false, OnDependencyLoss::Stop) => Some(Command::Stop),
        (Some(true), false, OnDependencyLoss::Restart) => Some(Command::Restart),
        (Some(_), _, _) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gossip::Status;
    use crate::keys::{ServiceStatus, gossip_value};
    use crate::types::Time;

    fn node(name: &str, status: Status, svc: Option<(ServiceState, &str)>) -> MemberView {
        let kv = svc
            .map(|(state, health)| {
                let s = ServiceStatus {
                    name: "pg".into(),
                    tree: "db".into(),
                    state,
                    pid: Some(1),
                    restarts: 0,
                    last_exit: None,
                    health: health.into(),
                    since: Time(0),
                    shape: Default::default(),
                };
                (gossip_key("pg"), gossip_value(&s))
            })
            .into_iter();
        crate::control::test_view(name, status, kv)
    }

    #[test]
    fn only_changes_act_and_the_policy_says_how() {
        use OnDependencyLoss::{Restart, Stop};
        let cases = [
            (None, false, Stop, None),
            (None, true, Stop, Some(Command::Start)),
            (Some(true), false, Stop, Some(Command::Stop)),
            (Some(false), true, Stop, Some(Command::Start)),
            (Some(true), true, Stop, None),
            (Some(false), false, Stop, None),
            (None, false, Restart, None),
            (None, true, Restart, Some(Command::Start)),
            (Some(true), false, Restart, Some(Command::Restart)),
            (Some(false), true, Restart, Some(Command::Restart)),
            (Some(true), true, Restart, None),
        ];
        for (before, now, policy, want) in cases {
            assert_eq!(
                transition(before, now, policy),
                want,
                "{before:?} {now} {policy:?}"
            );
        }
    }

    #[test]
    fn a_requirement_is_met_only_by_a_live_node_running_the_service_healthy() {
        let req = Requirement {
            node: "nas".into(),
            service: "pg".into(),
        };
        let ok = [node(
            "nas",
            Status::Alive,
            Some((ServiceState::Running, "ok")),
        )];
        assert_eq!(met(&req, &ok), Ok(()));
        let suspect = [node(
            "nas",
            Status::Suspect,
            Some((ServiceState::Running, "ok")),
        )];
        assert_eq!(met(&req, &suspect), Ok(()));
        for (views, why) in [
            (vec![], "nas:pg: no node \"nas\" in the cluster"),
            (
                vec![node(
                    "nas",
                    Status::Down,
                    Some((ServiceState::Running, "ok")),
                )],
                "nas:pg: node nas is down",
            ),
            (
                vec![node("nas", Status::Alive, None)],
                "nas:pg: nas announces no such service",
            ),
            (
                vec![node(
                    "nas",
                    Status::Alive,
                    Some((ServiceState::Stopped, "unknown")),
                )],
                "nas:pg: stopped",
            ),
            (
                vec![node(
                    "nas",
                    Status::Alive,
                    Some((ServiceState::Running, "critical")),
                )],
                "nas:pg: health critical",
            ),
        ] {
            assert_eq!(
                met(&req, &views).map_err(|e| e.to_string()),
                Err(why.to_string())
            );
        }
        let two = [
            req.clone(),
            Requirement {
                node: "x".into(),
                service: "y".into(),
            },
        ];
        assert_eq!(
            all_met(&two, &ok).map_err(|e| e.to_string()),
            Err("x:y: no node \"x\" in the cluster".to_string())
        );
    }
}
