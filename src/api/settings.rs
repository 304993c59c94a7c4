//! The cluster settings over HTTP: `GET /api/v1/cluster-config` (the document this node
//! applies, and which live hosts apply it too) and `POST /api/v1/cluster-config` with
//! `{"content": "<TOML>"}` (push a new one from this node; a bad one is refused with every
//! problem, as `{"error", "problems": [{"key", "message"}]}`, before it spreads).

use super::ApiError;
use super::routes::{Ctx, views};
use crate::actors::control::ControlMsg;
use crate::control::settings::{Applied, PushError, Refused};
use crate::election::is_live;
use crate::gossip::MemberView;
use crate::keys::settings::Published;
use crate::types::Time;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ractor::rpc::CallResult;
use serde_json::{Value, json};
use std::time::Duration;

/// How long a push may take (it saves the document, and may sign it).
const PUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// `GET /api/v1/cluster-config`.
pub(super) async fn show(State(ctx): State<Ctx>) -> Result<axum::Json<Value>, ApiError> {
    let applied = ctx.settings.borrow().clone();
    let views = views(&ctx).await?;
    Ok(axum::Json(describe(applied.as_deref(), &views)))
}

/// `{"version", "author", "time", "signed_by", "content", "applied_by", "behind"}`: the
/// document (each field null when none was ever pushed); the live hosts whose state shows the
/// same version, and those that show another or none (older builds among them).
pub fn describe(applied: Option<&Applied>, views: &[MemberView]) -> Value {
    let Some(a) = applied else {
        return json!({
            "version": null, "author": null, "time": null, "signed_by": null,
            "content": null, "applied_by": [], "behind": [],
        });
    };
    let version = &a.doc.version;
    let (mut applied_by, mut behind) = (Vec::new(), Vec::new());
    for m in views.iter().filter(|m| is_live(m)) {
        match Published::version_in(&m.kv).as_ref() == Some(version) {
            true => applied_by.push(m.name.as_str()),
            false => behind.push(m.name.as_str()),
        }
    }
    json!({
        "version": format!("{}.{}", version.ms, version.n),
        "author": version.by.as_str(),
        "time": Time(a.doc.at).to_rfc3339(),
        "signed_by": a.signed_by.map(|op| op.encode()),
        "content": a.doc.text,
        "applied_by": applied_by,
        "behind": behind,
    })
}

/// `POST /api/v1/cluster-config`.
pub(super) async fn push(State(ctx): State<Ctx>, body: axum::body::Bytes) -> Response {
    let content = match serde_json::from_slice::<Value>(&body) {
        Ok(v) => match v.get("content") {
            Some(Value::String(text)) => text.clone(),
            _ => {
                let why = "the body must be {\"content\": \"<the TOML document>\"}".to_string();
                return ApiError::BadRequest(why).into_response();
            }
        },
        Err(e) => {
            return ApiError::BadRequest(format!("the body is not JSON: {e}")).into_response();
        }
    };
    let Some(control) = ctx.control.get() else {
        return ApiError::Unavailable.into_response();
    };
    let result = control
        .call(
            |reply| ControlMsg::PushSettings {
                text: content,
                reply,
            },
            Some(PUSH_TIMEOUT),
        )
        .await;
    let pushed = match result {
        Ok(CallResult::Success(pushed)) => pushed,
        Ok(CallResult::Timeout) => return ApiError::Timeout(PUSH_TIMEOUT).into_response(),
        _ => return ApiError::Unavailable.into_response(),
    };
    match pushed {
        Ok(applied) => {
            let views = views(&ctx).await.unwrap_or_default();
            axum::Json(describe(Some(&applied), &views)).into_response()
        }
        Err(PushError::Refused(Refused::Problems(errors))) => {
            let problems: Vec<Value> = (errors.problems().iter())
                .map(|p| json!({ "key": p.key, "message": p.message }))
                .collect();
            let body = json!({
                "error": format!("the cluster settings are refused:\n{errors}"),
                "problems": problems,
            });
            (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
        }
        Err(PushError::Refused(why)) => {
            ApiError::Forbidden(format!("the cluster settings are refused: {why}")).into_response()
        }
        Err(e) => ApiError::Store(e.to_string()).into_response(),
    }
}
