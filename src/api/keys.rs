//! `/api/v1/keys`: the gossip keyring of this node, for `nbwatch keys list|install|use|remove`.
//! Changes are saved to `gossip.key_file` before they take effect (see `secure::Gate`). Like
//! every POST they need the API token; the list shows key ids, never keys.

use super::ApiError;
use super::routes::{Answer, Ctx};
use crate::secure::{Key, KeyId};
use axum::extract::State;
use serde_json::{Value, json};

fn ids(ctx: &Ctx) -> Value {
    let gate = &ctx.gate;
    let ids = gate.key_ids();
    json!({
        "encrypted": gate.is_encrypted(),
        "keys": ids.iter().enumerate().map(|(i, id)| json!({
            "id": id.to_string(),
            "primary": i == 0,
        })).collect::<Vec<_>>(),
    })
}

/// `GET /api/v1/keys`: the installed key ids, primary first.
pub(super) async fn list(State(ctx): State<Ctx>) -> Answer {
    Ok(axum::Json(ids(&ctx)))
}

fn field<'a>(body: &'a Value, name: &str) -> Result<&'a str, ApiError> {
    body.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::BadRequest(format!("the body needs a \"{name}\" string")))
}

fn key_id(body: &Value) -> Result<KeyId, ApiError> {
    field(body, "id")?
        .parse::<KeyId>()
        .map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// `POST /api/v1/keys/install` with `{"key": "<base64>"}`: the key opens from now on.
pub(super) async fn install(State(ctx): State<Ctx>, axum::Json(body): axum::Json<Value>) -> Answer {
    let key = Key::parse(field(&body, "key")?)
        .map_err(|why| ApiError::BadRequest(format!("\"key\" is not a cluster key: {why}")))?;
    ctx.gate
        .install(key)
        .map_err(|e| ApiError::Failed(e.to_string()))?;
    Ok(axum::Json(ids(&ctx)))
}

/// `POST /api/v1/keys/use` with `{"id": "<key id>"}`: seal with that key from now on.
pub(super) async fn use_key(State(ctx): State<Ctx>, axum::Json(body): axum::Json<Value>) -> Answer {
    let id = key_id(&body)?;
    ctx.gate
        .use_key(id)
        .map_err(|e| ApiError::Failed(e.to_string()))?;
    Ok(axum::Json(ids(&ctx)))
}

/// `POST /api/v1/keys/remove` with `{"id": "<key id>"}`: the key no longer opens.
pub(super) async fn remove(State(ctx): State<Ctx>, axum::Json(body): axum::Json<Value>) -> Answer {
    let id = key_id(&body)?;
    ctx.gate
        .remove(id)
        .map_err(|e| ApiError::Failed(e.to_string()))?;
    Ok(axum::Json(ids(&ctx)))
}
