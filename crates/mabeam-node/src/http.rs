//! The node's HTTP API (axum): `GET /health`, `GET /metrics`,
//! `GET /api/tree`, `GET /api/agents`, `GET /api/events`, and the mutating
//! `POST /api/services/{name}/restart`, which needs the bearer token.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use mabeam::System;
use serde::Deserialize;
use serde_json::json;
use supervision_core::{AgentDirectory, ErrorCode};
use telemetry::PrometheusExporter;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// The trees.
    pub system: System,
    /// The node's exporter (its recorder belongs to the node).
    pub exporter: PrometheusExporter,
    /// The bearer token of mutating endpoints.
    pub token: Arc<str>,
    /// The agent directory, once agent-supervisor is wired.
    pub agents: Option<Arc<dyn AgentDirectory>>,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("system", &self.system)
            .field("agents", &self.agents.is_some())
            .finish_non_exhaustive()
    }
}

/// The router of the node's API.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/api/tree", get(tree))
        .route("/api/agents", get(agents))
        .route("/api/events", get(events))
        .route("/api/services/{name}/restart", post(restart_service))
        .with_state(state)
}

/// 200 with the health report when every service is healthy, 503 otherwise.
async fn health(State(state): State<ApiState>) -> Response {
    let health = state.system.health().await;
    let code = if health.healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(health)).into_response()
}

/// Prometheus text, format 0.0.4.
async fn metrics(State(state): State<ApiState>) -> Response {
    let text = state.exporter.render().await;
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// The live supervision tree.
async fn tree(State(state): State<ApiState>) -> Response {
    Json(state.system.tree().await).into_response()
}

/// `?page=N&per_page=M` (page from 0, at most 1,000 per page).
#[derive(Debug, Deserialize)]
struct Page {
    #[serde(default)]
    page: usize,
    #[serde(default = "default_per_page")]
    per_page: usize,
}

fn default_per_page() -> usize {
    100
}

/// The agents, paged, with their status; 503 while no agent directory is
/// wired (agent-supervisor not in this build).
async fn agents(State(state): State<ApiState>, Query(page): Query<Page>) -> Response {
    let Some(directory) = &state.agents else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "no agent directory: agent-supervisor is not wired into this build"})),
        )
            .into_response();
    };
    let per_page = page.per_page.clamp(1, 1000);
    let mut all = directory.agents();
    all.sort_by(|a, b| a.id.cmp(&b.id));
    let total = all.len();
    let items: Vec<_> = all
        .into_iter()
        .skip(page.page.saturating_mul(per_page))
        .take(per_page)
        .map(|a| {
            json!({
                "id": a.id.as_str(),
                "kind": &*a.kind,
                "status": a.status,
                "passivated": a.passivated,
                "restarts": a.restarts,
            })
        })
        .collect();
    Json(json!({"total": total, "page": page.page, "per_page": per_page, "agents": items}))
        .into_response()
}

/// The event log; 503 until the EventStore (foundation-services) is wired.
async fn events() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"error": "no event store: foundation-services is not wired into this build"})),
    )
        .into_response()
}

/// Restarts a service of either tree; needs `Authorization: Bearer TOKEN`.
async fn restart_service(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    if !authorized(&headers, &state.token) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(json!({"error": "a bearer token is required"})),
        )
            .into_response();
    }
    match state.system.restart_service(&name).await {
        Ok(()) => Json(json!({"restarted": name})).into_response(),
        Err(error) => {
            let code = if matches!(error, mabeam::MabeamError::UnknownService(_)) {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::CONFLICT
            };
            (
                code,
                Json(json!({"error": error.to_string(), "code": error.code()})),
            )
                .into_response()
        }
    }
}

/// Whether the request carries the token (compared in constant time).
fn authorized(headers: &HeaderMap, token: &str) -> bool {
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let (a, b) = (given.trim().as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
