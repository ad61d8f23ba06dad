//! The ConfigServer over HTTP: `GET /api/config` (the whole tree),
//! `GET /api/config/{*path}` (one value) and `PUT /api/config/{*path}`
//! (set one value; the body is the new value as JSON).
//!
//! A path in the URL is the ConfigServer's dotted path with `/` or `.`
//! between keys (`/api/config/services/billing` is `services.billing`).
//! Reads answer from the server's cache, as every reader does; an update
//! is answered 200 only once `config.json` holds it (the ConfigServer's
//! acknowledgement), and a refused one changes nothing: a path the schema
//! does not let change is 403 ([`ApiError::ConfigForbidden`]), a malformed
//! path or a value against its rule 400 ([`ApiError::InvalidConfig`]), the
//! config process down 503 (retry once it is back).
//!
//! Both sit behind [`crate::http::guard`] like every route: the read needs
//! the token unless `http.public_reads`, the update always, and the
//! `api.mutation` rate limit.

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, State},
    response::{IntoResponse, Response},
    routing::get,
};
use mabeam_foundation_services::{ConfigError, ConfigServer};
use serde_json::{Value, json};

use crate::{ApiError, http::ApiState};

/// The routes of this module, to be merged into the node's router (where
/// the guard covers them).
pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/config", get(read_all))
        .route("/api/config/{*path}", get(read).put(update))
}

/// The ConfigServer's dotted path for a URL's path: `/` and `.` both
/// separate keys. Empty keys stay empty, so the server refuses them.
pub fn dotted(url_path: &str) -> String {
    url_path.replace('/', ".")
}

/// The running node's ConfigServer (a node always has one: it has a data
/// directory).
fn server(state: &ApiState) -> Result<&ConfigServer, ApiError> {
    state
        .system
        .config()
        .ok_or(ApiError::Unavailable("config_server"))
}

/// A ConfigServer refusal as the API's.
pub(crate) fn config_error(error: ConfigError) -> ApiError {
    match error {
        ConfigError::NotFound { path } => ApiError::ConfigNotFound(path),
        ConfigError::Forbidden { path } => ApiError::ConfigForbidden(path),
        error @ (ConfigError::InvalidPath { .. } | ConfigError::InvalidValue { .. }) => {
            ApiError::InvalidConfig(error.to_string())
        }
        ConfigError::Unavailable(_) => ApiError::Unavailable("config_server"),
        other => ApiError::ConfigNotPersisted(other.to_string()),
    }
}

/// `GET /api/config`: the whole tree.
async fn read_all(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let tree = server(&state)?.snapshot();
    Ok(Json(json!({"path": "", "value": &*tree})).into_response())
}

/// `GET /api/config/{*path}`: the value at the path.
async fn read(
    State(state): State<ApiState>,
    Path(path): Path<String>,
) -> Result<Response, ApiError> {
    let path = dotted(&path);
    let value = server(&state)?.get(&path).map_err(config_error)?;
    Ok(Json(json!({"path": path, "value": value})).into_response())
}

/// `PUT /api/config/{*path}`: sets the path to the body's JSON value;
/// 200 once persisted.
async fn update(
    State(state): State<ApiState>,
    Path(path): Path<String>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let path = dotted(&path);
    let value: Value =
        serde_json::from_slice(&bytes).map_err(|e| ApiError::InvalidBody(e.to_string()))?;
    server(&state)?
        .update(&path, value.clone())
        .await
        .map_err(config_error)?;
    Ok(Json(json!({"path": path, "value": value, "applied": true})).into_response())
}
