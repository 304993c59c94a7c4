//! Local decisions over HTTP: `GET /api/v1/pick` (where to send the next jobs) and
//! `GET /api/v1/owner/{key}` (who owns a key), both from this node's view with no round trip
//! to any other host (see `control::pick` and `control::owner`).

use super::ApiError;
use super::routes::{Answer, Ctx, views};
use crate::control::{owner, pick};
use axum::extract::{Path, Query, State};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use serde_json::{Value, json};
use std::collections::HashMap;

type Params = Query<HashMap<String, String>>;

/// The most hosts one `pick` or `owner` names.
pub const MAX_COUNT: usize = 1_000;

/// Refuses parameters other than `known`, naming the first one.
fn only(params: &HashMap<String, String>, known: &[&str]) -> Result<(), ApiError> {
    match params.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(ApiError::BadRequest(format!(
            "unknown parameter \"{k}\"; this endpoint takes {}",
            known.join(", ")
        ))),
        None => Ok(()),
    }
}

/// A count parameter: 1 to [`MAX_COUNT`], `default` when absent.
fn count(params: &HashMap<String, String>, name: &str, default: usize) -> Result<usize, ApiError> {
    let Some(raw) = params.get(name) else {
        return Ok(default);
    };
    match raw.parse::<usize>() {
        Ok(n) if (1..=MAX_COUNT).contains(&n) => Ok(n),
        _ => Err(ApiError::BadRequest(format!(
            "{name}: \"{raw}\" is not a number from 1 to {MAX_COUNT}"
        ))),
    }
}

/// `GET /api/v1/pick?count=K&by=METRIC&exclude=A,B`: `[{"node", "addr", "score"}]`.
pub(super) async fn pick_hosts(State(ctx): State<Ctx>, Query(params): Params) -> Answer {
    only(&params, &["count", "by", "exclude"])?;
    let count = count(&params, "count", 1)?;
    let by = params.get("by").map_or(pick::LOAD_PER_CORE, String::as_str);
    let exclude: Vec<String> = params
        .get("exclude")
        .map(|e| {
            e.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    let views = views(&ctx).await?;
    let candidates = pick::candidates(&views, by, &exclude, ctx.clock.now());
    // A fresh random seed per request: hosts picking at the same moment draw differently.
    let seed = std::hash::BuildHasher::hash_one(&std::hash::RandomState::new(), ctx.clock.now());
    let chosen = pick::pick(candidates, count, &mut SmallRng::seed_from_u64(seed));
    Ok(axum::Json(Value::Array(
        chosen
            .iter()
            .map(|c| json!({"node": c.node, "addr": c.addr.to_string(), "score": c.score}))
            .collect(),
    )))
}

/// `GET /api/v1/owner/{key}?replicas=R`: `{"key", "owners": [{"node", "addr", "weight"}]}`.
pub(super) async fn owner_of(
    State(ctx): State<Ctx>,
    Path(key): Path<String>,
    Query(params): Params,
) -> Answer {
    only(&params, &["replicas"])?;
    let replicas = count(&params, "replicas", 1)?;
    if key.is_empty() {
        return Err(ApiError::BadRequest("the key must not be empty".into()));
    }
    let views = views(&ctx).await?;
    let owners: Vec<Value> = owner::owners(&views, &key, replicas)
        .iter()
        .map(|o| json!({"node": o.node, "addr": o.addr.to_string(), "weight": o.weight}))
        .collect();
    Ok(axum::Json(json!({"key": key, "owners": owners})))
}
