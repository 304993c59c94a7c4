//! The dashboard every node serves at `/`: one page, its script and its style sheet, compiled
//! into the binary (nothing is fetched from elsewhere, so it works on a LAN without internet
//! and shows the same version as the daemon), and `GET /api/v1/overview`, the one answer the
//! page polls for its tables.
//!
//! The page only reads: it polls the overview and `/api/v1/events` every two seconds and the
//! history of each host for its charts (`/api/v1/history/{node}?step=..`) every few seconds.
//! Every node holds the whole cluster's state and history, so any survivor shows the whole
//! story, including the charts of a host that is down.

use super::json;
use super::routes::{Answer, Ctx, ask_services_quick, views};
use crate::supervision::manager::ManagerMsg;
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;

const INDEX: &str = include_str!("dashboard/index.html");
const SCRIPT: &str = include_str!("dashboard/dashboard.js");
const STYLE: &str = include_str!("dashboard/dashboard.css");

pub(super) fn router() -> Router<Ctx> {
    Router::new()
        .route("/", get(index))
        .route("/dashboard.js", get(script))
        .route("/dashboard.css", get(style))
        .route("/api/v1/overview", get(overview))
}

/// The assets change only with the binary; `no-cache` makes a browser revalidate after an
/// upgrade instead of running an old script against a new API.
fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

async fn index() -> impl IntoResponse {
    asset("text/html; charset=utf-8", INDEX)
}

async fn script() -> impl IntoResponse {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

async fn style() -> impl IntoResponse {
    asset("text/css; charset=utf-8", STYLE)
}

/// `GET /api/v1/overview`: what the dashboard's tables show, from one view of the cluster:
/// `{"node", "version", "now", "leader", "sender" (who sends the alerts: the best-ranked live
/// member with sinks; null: none can), "members" (as /api/v1/members), "services" (every
/// node's, with `node_state`), "alerts" (as /api/v1/alerts), "incidents" (open now: members
/// down, services failed), "silences", "reachability" (as /api/v1/reachability)}`; `nbwatch status` prints it. A node whose
/// supervisor is restarting still answers, with its own services missing.
async fn overview(State(ctx): State<Ctx>) -> Answer {
    let views = views(&ctx).await?;
    let leader = ctx.leader();
    let now = ctx.clock.now();
    let local = match ask_services_quick(&ctx, ManagerMsg::List).await {
        Ok(list) => list,
        Err(e) => {
            tracing::debug!(error = %e, "overview without this node's services");
            Vec::new()
        }
    };
    Ok(axum::Json(json!({
        "node": ctx.name.as_str(),
        "version": env!("CARGO_PKG_VERSION"),
        "now": now.to_rfc3339(),
        "leader": leader.as_ref().map(|l| l.as_str().to_string()),
        "sender": crate::election::sender(&views).map(|s| s.to_string()),
        "members": json::members(&views, leader.as_ref(), now),
        "services": json::cluster_services(&views, &ctx.name, &local),
        "alerts": json::alerts(&views),
        "incidents": json::open_incidents(&views, now),
        "silences": json::silences(&views, &ctx.authority.trust, now),
        "reachability": super::reach::reachability(&views, ctx.pace),
    })))
}
