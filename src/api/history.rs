//! `GET /api/v1/events` and `GET /api/v1/history/{node}`: read from the history database on a
//! read-only connection of their own, on tokio's blocking pool.
//!
//! Each query first has the StoreActor write what it buffers, so an event is listed as soon as
//! the node knows it, not a tick later. Events fall back to the gossip actor's in-memory ring
//! of recent events (filtered the same way) while the database cannot be written or read: the
//! events of this run are still shown when the data dir is unusable.

use super::ApiError;
use super::json;
use super::routes::{Answer, Ctx};
use crate::actors::store::StoreMsg;
use crate::store::StoreError;
use crate::store::query::{self, EventFilter};
use crate::store::schema;
use crate::types::Time;
use axum::extract::{Path, Query, State};
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;

/// The default window of `history` when no `since` is given.
pub const DEFAULT_HISTORY_SINCE: Duration = Duration::from_secs(3600);

type Params = Query<HashMap<String, String>>;

/// Refuses parameters other than `allowed`, so a typo is not silently ignored.
pub(super) fn check_params(
    params: &HashMap<String, String>,
    allowed: &[&str],
) -> Result<(), ApiError> {
    let mut unknown: Vec<&str> = params
        .keys()
        .map(String::as_str)
        .filter(|k| !allowed.contains(k))
        .collect();
    unknown.sort_unstable();
    match unknown.first() {
        None => Ok(()),
        Some(k) => Err(ApiError::BadRequest(format!(
            "unknown parameter \"{k}\"; this endpoint takes {}",
            allowed.join(", ")
        ))),
    }
}

/// `since=DUR` (humantime, "2h") as the time that long before `now`.
pub fn parse_since(text: &str, now: Time) -> Result<Time, ApiError> {
    let d = crate::types::duration::parse(text)
        .map_err(|e| ApiError::BadRequest(format!("since: {e}")))?;
    Ok(Time::from_millis(
        now.as_millis().saturating_sub(d.as_millis() as u64),
    ))
}

pub(super) fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::UnknownNode(_) | StoreError::UnknownMetric { .. } => {
            ApiError::Unknown(e.to_string())
        }
        other => ApiError::Store(other.to_string()),
    }
}

/// How long a query waits for the store to write its buffer.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(3);

/// Has the store write its buffer; true when everything it knew is on disk.
pub(super) async fn flush(ctx: &Ctx) -> bool {
    let Some(store) = ctx.store.get() else {
        return false;
    };
    matches!(
        store.call(StoreMsg::Flush, Some(FLUSH_TIMEOUT)).await,
        Ok(ractor::rpc::CallResult::Success(Ok(())))
    )
}

pub(super) async fn read<T: Send + 'static>(
    ctx: &Ctx,
    f: impl FnOnce(&rusqlite::Connection) -> Result<T, StoreError> + Send + 'static,
) -> Result<Option<T>, StoreError> {
    let dir = ctx.data_dir.clone();
    tokio::task::spawn_blocking(move || match schema::open_reader(&dir)? {
        None => Ok(None),
        Some(conn) => f(&conn).map(Some),
    })
    .await
    .map_err(|e| StoreError::Unavailable(e.to_string()))?
}

/// `GET /api/v1/events?since=DUR&node=NAME&after=ID`.
pub(super) async fn events(State(ctx): State<Ctx>, Query(params): Params) -> Answer {
    check_params(&params, &["since", "node", "after"])?;
    let now = ctx.clock.now();
    let since = params
        .get("since")
        .map(|s| parse_since(s, now))
        .transpose()?;
    let after = params
        .get("after")
        .map(|a| {
            a.trim().parse::<i64>().map_err(|_| {
                ApiError::BadRequest(format!("after: \"{a}\" is not an event id (an integer)"))
            })
        })
        .transpose()?;
    let node = params.get("node").cloned();
    let filter = EventFilter {
        since,
        node: node.clone(),
        after,
    };
    if flush(&ctx).await {
        match read(&ctx, move |conn| query::events(conn, &filter)).await {
            Ok(Some(list)) => return Ok(axum::Json(Value::Array(list))),
            Ok(None) => {}
            Err(e @ StoreError::UnknownNode(_)) => return Err(store_error(e)),
            Err(e) => tracing::debug!(error = %e, "events from memory: cannot read the history"),
        }
    }
    // No database (yet): the recent events this run saw.
    let recorded = ctx.events.recent();
    let Value::Array(all) = json::events(&recorded, &ctx.name) else {
        return Ok(axum::Json(Value::Array(Vec::new())));
    };
    let since = since.map(|t| t.to_rfc3339());
    let list = all
        .into_iter()
        .filter(|e| node.as_deref().is_none_or(|n| e["node"] == n))
        .filter(|e| {
            since
                .as_deref()
                .is_none_or(|s| e["at"].as_str().is_some_and(|at| at >= s))
        })
        .collect();
    Ok(axum::Json(Value::Array(list)))
}

/// The smallest `step` a history query takes: finer than the samples is pointless.
const MIN_STEP: Duration = Duration::from_secs(1);

/// `GET /api/v1/history/{node}?metric=NAME&since=DUR&step=DUR`; with `step` the samples are
/// averaged into buckets of that width (what the dashboard's charts ask for).
pub(super) async fn history(
    State(ctx): State<Ctx>,
    Path(node): Path<String>,
    Query(params): Params,
) -> Answer {
    check_params(&params, &["since", "metric", "step"])?;
    let now = ctx.clock.now();
    let since = match params.get("since") {
        Some(s) => parse_since(s, now)?,
        None => Time::from_millis(
            now.as_millis()
                .saturating_sub(DEFAULT_HISTORY_SINCE.as_millis() as u64),
        ),
    };
    let step = params
        .get("step")
        .map(|text| match crate::types::duration::parse(text) {
            Ok(step) if step >= MIN_STEP => Ok(step),
            Ok(_) => Err(ApiError::BadRequest(format!(
                "step: \"{text}\" is shorter than {}",
                humantime::format_duration(MIN_STEP)
            ))),
            Err(e) => Err(ApiError::BadRequest(format!("step: {e}"))),
        })
        .transpose()?;
    let metric = params.get("metric").cloned();
    let name = node.clone();
    flush(&ctx).await;
    match read(&ctx, move |conn| match step {
        None => query::history(conn, &name, metric.as_deref(), since, now),
        Some(step) => query::history_binned(conn, &name, metric.as_deref(), since, now, step),
    })
    .await
    {
        Ok(Some(list)) => Ok(axum::Json(Value::Array(list))),
        Ok(None) => Err(ApiError::Unknown(StoreError::UnknownNode(node).to_string())),
        Err(e) => Err(store_error(e)),
    }
}
