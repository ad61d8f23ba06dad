//! The Agents panel's endpoints: a page of agents (filtered and sorted on
//! the server, so the browser holds one page however many agents run),
//! one agent's details, and the actions on agents.

use std::{collections::HashMap, sync::Arc};

use axum::{
    Json,
    body::Bytes,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use futures::StreamExt;
use mabeam_agent_supervisor::AgentDetails;
use mabeam_supervision_core::{AgentStatus, EventQuery};
use serde::Deserialize;
use serde_json::{Value, json};

use super::index::Row;
use crate::{
    ApiError,
    http::{self, ApiState},
    kinds::KindError,
};

/// The most agents one batch starts.
pub(super) const MAX_BATCH: u64 = 200_000;
/// How many of an agent's events its details show.
const RECENT_EVENTS: u64 = 20;
/// How many agents a batch starts at once.
const BATCH_CONCURRENCY: usize = 256;

fn row(a: &AgentDetails) -> Value {
    row_json(&Row::from(a))
}

fn row_json(a: &Row) -> Value {
    json!({
        "id": a.id.as_str(),
        "kind": &*a.kind,
        "status": a.status,
        "passivated": a.passivated,
        "restarts": a.restarts,
        "last_exit": a.last_exit.as_deref(),
    })
}

fn status_name(status: AgentStatus) -> String {
    serde_json::to_value(status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// `GET /api/observer/agents?offset=&limit=&kind=&status=&prefix=&sort=&desc=`:
/// `sort` is `id` (default), `kind`, `status` or `restarts`; `desc=1`
/// reverses it.
pub(super) async fn page(
    State(state): State<ApiState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let offset = http::number(&query, "offset", 0)?;
    let limit = http::page_limit(&query)?;
    let status = match query.get("status").filter(|s| !s.is_empty()) {
        None => None,
        Some(name) => Some(
            serde_json::from_value::<AgentStatus>(Value::String(name.clone()))
                .map_err(|_| ApiError::InvalidQuery(format!("unknown status {name:?}")))?,
        ),
    };
    let sort = query.get("sort").map_or("id", String::as_str);
    if !matches!(sort, "id" | "kind" | "status" | "restarts") {
        return Err(ApiError::InvalidQuery(format!(
            "sort must be id, kind, status or restarts, not {sort:?}"
        )));
    }
    let desc = matches!(query.get("desc").map(String::as_str), Some("1" | "true"));
    let kind = query.get("kind").filter(|k| !k.is_empty());
    let prefix = query.get("prefix").map_or("", String::as_str);
    http::agent_registry(&state)?;
    // The index is in id order; filters keep that order.
    let rows = state.observer.inner.index.rows();
    let mut agents: Vec<&Row> = rows
        .iter()
        .filter(|a| {
            kind.is_none_or(|k| &*a.kind == k.as_str())
                && status.is_none_or(|s| a.status == s)
                && a.id.as_str().starts_with(prefix)
        })
        .collect();
    match sort {
        "kind" => agents.sort_by(|a, b| a.kind.cmp(&b.kind)),
        "status" => agents.sort_by_cached_key(|a| status_name(a.status)),
        "restarts" => agents.sort_by_key(|a| a.restarts),
        _ => {}
    }
    if desc {
        agents.reverse();
    }
    let total = agents.len() as u64;
    let start = usize::try_from(offset).unwrap_or(usize::MAX);
    let page: Vec<Value> = agents
        .iter()
        .skip(start)
        .take(limit as usize)
        .map(|a| row_json(a))
        .collect();
    Ok(Json(json!({
        "total": total,
        "offset": offset,
        "limit": limit,
        "agents": page,
        "kinds": state.kinds.names(),
    }))
    .into_response())
}

/// `GET /api/observer/agents/{id}`: its details and its recent events,
/// newest first.
pub(super) async fn detail(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let registry = http::agent_registry(&state)?;
    let details = registry
        .details(&id)
        .ok_or_else(|| ApiError::AgentNotFound(id.clone()))?;
    let events = match state.system.event_store() {
        Some(store) => store
            .query(
                EventQuery::new()
                    .stream(format!("agent:{id}"))
                    .descending()
                    .limit(RECENT_EVENTS),
            )
            .await
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let mut out = row(&details);
    out["started_at_ms"] = json!(details.started_at.and_then(|t| {
        t.duration_since(std::time::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_millis() as u64)
    }));
    out["process"] = json!(details.process.as_ref().map(|p| p.id().to_string()));
    out["events"] = json!(events);
    Ok(Json(out).into_response())
}

/// `POST /api/agents/{id}/stop`: stops the agent and keeps it registered
/// (it ends `stopped`; `DELETE /api/agents/{id}` also forgets it).
pub(super) async fn stop(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    http::agent_registry(&state)?
        .stop_agent(&id)
        .await
        .map_err(|e| http::agent_error(&id, e))?;
    state.observer.inner.index.touch();
    Ok(Json(json!({"id": id, "stopped": true})).into_response())
}

/// `POST /api/observer/agents/batch`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch {
    kind: String,
    count: u64,
    /// Ids are `PREFIX-N` for N in 0..count (`KIND` by default).
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    args: Value,
}

/// Registers and starts `count` agents of one kind (201 with how many);
/// each one that fails to start is deregistered, and the first failure
/// is answered.
pub(super) async fn batch(
    State(state): State<ApiState>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let request: Batch =
        serde_json::from_slice(&bytes).map_err(|e| ApiError::InvalidBody(e.to_string()))?;
    if request.count == 0 || request.count > MAX_BATCH {
        return Err(ApiError::InvalidBody(format!(
            "count must be in 1..={MAX_BATCH}, not {}",
            request.count
        )));
    }
    let config = state
        .kinds
        .config(&request.kind, &request.args)
        .map_err(|e| match e {
            KindError::Unknown(kind) => ApiError::UnknownKind {
                kind,
                known: state.kinds.names().join(", "),
            },
            KindError::InvalidArgs(reason) => ApiError::InvalidAgent(reason),
        })?;
    let registry = http::agent_registry(&state)?;
    let config = Arc::new(config);
    let prefix = request.prefix.unwrap_or_else(|| request.kind.clone());
    let results: Vec<Result<(), ApiError>> = futures::stream::iter(0..request.count)
        .map(|i| {
            let (registry, config) = (registry.clone(), config.clone());
            let id = format!("{prefix}-{i}");
            async move {
                registry
                    .register_agent(id.as_str(), config)
                    .map_err(|e| http::agent_error(&id, e))?;
                if let Err(error) = registry.start_agent(&id).await {
                    let _ = registry.deregister_agent(&id).await;
                    return Err(http::agent_error(&id, error));
                }
                Ok(())
            }
        })
        .buffer_unordered(BATCH_CONCURRENCY)
        .collect()
        .await;
    let started = results.iter().filter(|r| r.is_ok()).count();
    if let Some(Err(error)) = results.into_iter().find(Result::is_err) {
        return Err(error);
    }
    Ok((
        StatusCode::CREATED,
        Json(json!({"kind": request.kind, "started": started})),
    )
        .into_response())
}
