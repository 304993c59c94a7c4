//! The dependency graph over HTTP (see [`crate::graph`]): `GET /api/v1/graph`,
//! `GET /api/v1/impact/{vertex}` and `GET /api/v1/availability`.

use super::ApiError;
use super::history::{check_params, flush, parse_since, read, store_error};
use super::routes::{Answer, Ctx, views};
use crate::graph::availability::{Model, Report, measure};
use crate::graph::steady::{self, Component, Simulation};
use crate::graph::{Graph, Impacted};
use crate::store::query;
use crate::types::Time;
use axum::extract::{Path, Query, State};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// The default window of `availability`.
pub const DEFAULT_SINCE: Duration = Duration::from_secs(30 * 86_400);
/// The most steps one `availability?simulate=` runs.
pub const MAX_STEPS: u64 = 10_000_000;
/// The most work one simulation may do, in steps times vertices: a few seconds of one core,
/// whatever the size of the cluster.
pub const MAX_WORK: u64 = 200_000_000;

/// `GET /api/v1/graph`.
pub(super) async fn graph(State(ctx): State<Ctx>) -> Answer {
    Ok(axum::Json(graph_json(&Graph::from_views(
        &views(&ctx).await?,
    ))))
}

/// `{"vertices": [{"id", "kind", "node", "name", "state", "health", "failed",
/// "down_by": [ids]}], "edges": [{"from", "to", "kind"}]}`.
pub fn graph_json(g: &Graph) -> Value {
    let down = g.taken_down();
    let vertices: Vec<Value> = (g.vertices.iter())
        .map(|v| {
            json!({
                "id": v.id, "kind": v.kind.as_str(), "node": v.node, "name": v.name,
                "state": v.state, "health": v.health, "failed": v.failed,
                "down_by": down.get(&v.id).map(|by| by.iter().collect::<Vec<_>>()).unwrap_or_default(),
            })
        })
        .collect();
    let edges: Vec<Value> = (g.edges.iter())
        .map(|e| json!({"from": e.from, "to": e.to, "kind": e.kind.as_str()}))
        .collect();
    json!({"vertices": vertices, "edges": edges})
}

/// `GET /api/v1/impact/{vertex}`: `{"vertex", "kind", "impacted": [{"id", "kind", "node",
/// "path"}]}`; 404 for a vertex the graph does not have.
pub(super) async fn impact(State(ctx): State<Ctx>, Path(vertex): Path<String>) -> Answer {
    let g = Graph::from_views(&views(&ctx).await?);
    match g.impact(&vertex) {
        Some(hits) => Ok(axum::Json(impact_json(&g, &vertex, &hits))),
        None => Err(ApiError::Unknown(format!(
            "no vertex {vertex:?} in the graph (a host, or NODE:SERVICE)"
        ))),
    }
}

pub fn impact_json(g: &Graph, vertex: &str, hits: &[Impacted]) -> Value {
    let kind = |id: &str| g.vertex(id).map(|v| v.kind.as_str());
    let impacted: Vec<Value> = (hits.iter())
        .map(|h| {
            json!({
                "id": h.id, "kind": kind(&h.id),
                "node": g.vertex(&h.id).map(|v| v.node.as_str()), "path": h.path,
            })
        })
        .collect();
    json!({"vertex": vertex, "kind": kind(vertex), "impacted": impacted})
}

/// `GET /api/v1/availability?since=DUR&simulate=STEPS&seed=N`.
pub(super) async fn availability(
    State(ctx): State<Ctx>,
    Query(params): Query<HashMap<String, String>>,
) -> Answer {
    check_params(&params, &["since", "simulate", "seed"])?;
    let now = ctx.clock.now();
    let since = match params.get("since") {
        Some(s) => parse_since(s, now)?,
        None => Time::from_millis(
            now.as_millis()
                .saturating_sub(DEFAULT_SINCE.as_millis() as u64),
        ),
    };
    let number = |name: &str| {
        (params.get(name))
            .map(|v| {
                v.trim().parse::<u64>().map_err(|_| {
                    ApiError::BadRequest(format!("{name}: \"{v}\" is not a whole number"))
                })
            })
            .transpose()
    };
    let steps = number("simulate")?;
    if steps.is_some_and(|s| s == 0 || s > MAX_STEPS) {
        return Err(ApiError::BadRequest(format!(
            "simulate: between 1 and {MAX_STEPS} steps"
        )));
    }
    let seed = number("seed")?.unwrap_or(now.as_millis());
    let g = Graph::from_views(&views(&ctx).await?);
    let size = g.vertices.len().max(1) as u64;
    if steps.is_some_and(|steps| steps.saturating_mul(size) > MAX_WORK) {
        return Err(ApiError::BadRequest(format!(
            "simulate: at most {} steps for a graph of {size} vertices",
            MAX_WORK / size
        )));
    }
    flush(&ctx).await;
    let records = match read(&ctx, move |conn| query::failure_records(conn, since)).await {
        Ok(records) => records.unwrap_or_default(),
        Err(e) => return Err(store_error(e)),
    };
    let answer = tokio::task::spawn_blocking(move || {
        let report = measure(&records, since, now);
        availability_json(&g, &report, steps.map(|s| (s, seed)))
    })
    .await
    .map_err(|e| ApiError::Failed(e.to_string()))?;
    Ok(axum::Json(answer))
}

/// Each component's model (hosts by name, services by `NODE:SERVICE`).
pub fn components(report: &Report) -> BTreeMap<String, Component> {
    let secs = |d: Option<Duration>| d.map(|d| d.as_secs_f64());
    let comp = |m: &Model| Component {
        mtbf: secs(m.mtbf()),
        mttr: secs(m.mttr()),
    };
    let hosts = (report.hosts.iter()).map(|(n, m)| (n.clone(), comp(m)));
    let services =
        (report.services.iter()).map(|((n, s), m)| (crate::graph::service_id(n, s), comp(m)));
    hosts.chain(services).collect()
}

fn model_json(m: &Model) -> serde_json::Map<String, Value> {
    let secs = |d: Option<Duration>| d.map(|d| d.as_secs_f64());
    let v = json!({
        "failures": m.failures, "observed_s": m.observed.as_secs_f64(),
        "down_s": m.down.as_secs_f64(), "mtbf_s": secs(m.mtbf()), "mttr_s": secs(m.mttr()),
        "availability": m.availability(), "failed_now": m.failed_now,
    });
    match v {
        Value::Object(map) => map,
        _ => unreachable!("a JSON object"),
    }
}

/// `{"since", "until", "hosts": [{"node", "failures", "observed_s", "down_s", "mtbf_s",
/// "mttr_s", "availability", "failed_now"}], "services": [{"id", "node", "service", ...the
/// same..., "steady", "weakest"}], "redundancy": {"vertex", "gain"} | null}` and, when
/// simulated, `"simulation": {"steps", "step_s", "seed", "services": [{"id",
/// "availability", "error"}]}`.
pub fn availability_json(g: &Graph, report: &Report, simulate: Option<(u64, u64)>) -> Value {
    let models = components(report);
    let steady = steady::exact(g, &models);
    let hosts: Vec<Value> = (report.hosts.iter())
        .map(|(node, m)| {
            let mut v = model_json(m);
            v.insert("node".into(), json!(node));
            Value::Object(v)
        })
        .collect();
    let mut ids: Vec<(String, String)> = report.services.keys().cloned().collect();
    for v in g
        .vertices
        .iter()
        .filter(|v| v.kind == crate::graph::Kind::Service)
    {
        let key = (v.node.clone(), v.name.clone().unwrap_or_default());
        if !ids.contains(&key) {
            ids.push(key);
        }
    }
    ids.sort();
    let services: Vec<Value> = (ids.iter())
        .map(|(node, service)| {
            let id = crate::graph::service_id(node, service);
            let mut v = model_json(
                &report
                    .services
                    .get(&(node.clone(), service.clone()))
                    .cloned()
                    .unwrap_or_default(),
            );
            let weakest = steady::closure(g, &id)
                .into_iter()
                .map(|c| (models.get(&c).map_or(1.0, Component::availability), c))
                .filter(|(a, _)| *a < 1.0)
                .min_by(|a, b| a.0.total_cmp(&b.0));
            v.insert("id".into(), json!(id));
            v.insert("node".into(), json!(node));
            v.insert("service".into(), json!(service));
            v.insert("steady".into(), json!(steady.get(&id)));
            v.insert("weakest".into(), json!(weakest.map(|(_, c)| c)));
            Value::Object(v)
        })
        .collect();
    let redundancy = steady::best_redundancy(g, &models)
        .map(|(vertex, gain)| json!({"vertex": vertex, "gain": gain}));
    let mut out = json!({
        "since": report.from.to_rfc3339(), "until": report.to.to_rfc3339(),
        "hosts": hosts, "services": services, "redundancy": redundancy,
    });
    if let Some((steps, seed)) = simulate {
        out["simulation"] = simulation_json(&steady::simulate(g, &models, steps, seed));
    }
    out
}

fn simulation_json(sim: &Simulation) -> Value {
    let services: Vec<Value> = (sim.services.iter())
        .map(|(id, (a, err))| json!({"id": id, "availability": a, "error": err}))
        .collect();
    json!({"steps": sim.steps, "step_s": sim.step, "seed": sim.seed, "services": services})
}
