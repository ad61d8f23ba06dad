//! [`ApiError`]: what the HTTP API answers when a request fails, as typed
//! JSON with a stable code (`{"code": 9104, "error": "agent_exists",
//! "message": "..."}`), codes 9100-9199: 9101-9118 the endpoints'
//! refusals, 9150 on for those made before an endpoint runs.

use axum::{
    Json,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use mabeam_supervision_core::ErrorCode;
use serde_json::json;
use thiserror::Error;

/// Why a request to the API failed. Nothing changed when a request is
/// refused (401, 400, 403, 404, 409, 429, 503).
#[derive(Debug, Clone, Error)]
#[non_exhaustive]
pub enum ApiError {
    /// A mutating endpoint, or a read of `/api/*` while reads are not
    /// public, without the bearer token (or with a wrong one).
    #[error("a bearer token is required")]
    Unauthorized,
    /// The body is not the JSON the endpoint takes.
    #[error("invalid body: {0}")]
    InvalidBody(String),
    /// A query parameter is not valid.
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    /// No agent kind has this name.
    #[error("unknown agent kind {kind:?}; known: {known}")]
    UnknownKind {
        /// The kind asked for.
        kind: String,
        /// The kinds the node knows.
        known: String,
    },
    /// The agent's id or args were refused.
    #[error("invalid agent: {0}")]
    InvalidAgent(String),
    /// An agent of this id exists.
    #[error("agent {0:?} exists")]
    AgentExists(String),
    /// No agent of this id.
    #[error("agent {0:?} not found")]
    AgentNotFound(String),
    /// The agent could not be started, stopped or asked (its reason).
    #[error("agent {agent:?}: {reason}")]
    AgentFailed {
        /// The agent.
        agent: String,
        /// What went wrong.
        reason: String,
    },
    /// The agent store refused the change (a full disk): nothing was
    /// changed; retry later.
    #[error("agent store refused: {0}")]
    StoreRefused(String),
    /// A service the endpoint needs is not running.
    #[error("{0} is not running")]
    Unavailable(&'static str),
    /// The rate limiter refused the request.
    #[error("too many requests: {0}")]
    RateLimited(String),
    /// The service refused the request as invalid (a vote, an auction, an
    /// event).
    #[error("{0}")]
    Refused(String),
    /// No service of either tree has this name.
    #[error("unknown service {0:?}")]
    UnknownService(String),
    /// The application refused the admin call (a dependency down, ...).
    #[error("{0}")]
    ServiceRefused(String),
    /// `POST /api/events` to a stream the node writes itself (agents,
    /// config, coordination, economics): only the node appends there.
    #[error("stream {0:?} is written by the node itself; append to a stream of your own")]
    ReservedStream(String),
    /// No configuration value at this path (`GET /api/config/{path}`).
    #[error("config path {0:?} not found")]
    ConfigNotFound(String),
    /// The path may not be changed at run time (fixed, or unknown to the
    /// node's schema: only `services.NAME`, an object, is).
    #[error("config path {0:?} may not be updated")]
    ConfigForbidden(String),
    /// A malformed config path, or a value against its path's rule.
    #[error("{0}")]
    InvalidConfig(String),
    /// The ConfigServer could not persist the update (or could not tell
    /// whether it did: read the path back).
    #[error("{0}")]
    ConfigNotPersisted(String),
    /// The member a request names is not one this node reaches (unknown,
    /// not up, or its connection failed): which, and why.
    #[error("node {node:?} is not reachable: {reason}")]
    NodeUnreachable {
        /// The member named.
        node: String,
        /// Why it is not reached.
        reason: String,
    },
    /// The agent's owner is down (its agents not yet taken over by a
    /// survivor): retry.
    #[error("agent {agent:?} is on node {node:?}, which is down: {reason}")]
    AgentNodeDown {
        /// The agent.
        agent: String,
        /// Its owner.
        node: String,
        /// Why it is not reached.
        reason: String,
    },
    /// The agent is between incarnations and the caller asked not to
    /// wait (`on_restart: "fail"`): retry.
    #[error("agent {0:?} is restarting")]
    AgentRestarting(String),
    /// The agent did not answer within the call's timeout.
    #[error("agent {0:?} did not answer in time")]
    AgentTimeout(String),
    /// The request could not be read before any endpoint saw it (a path
    /// parameter that is not UTF-8 once decoded, ...): what was wrong.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// No route has this path.
    #[error("no route {0:?}")]
    NoRoute(String),
    /// The route does not take this method (the `Allow` header lists
    /// those it takes).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The body is larger than the server reads.
    #[error("request too large: {0}")]
    TooLarge(String),
}

impl ErrorCode for ApiError {
    fn code(&self) -> u32 {
        match self {
            ApiError::Unauthorized => 9101,
            ApiError::InvalidBody(_) => 9102,
            ApiError::InvalidQuery(_) => 9103,
            ApiError::UnknownKind { .. } => 9104,
            ApiError::InvalidAgent(_) => 9105,
            ApiError::AgentExists(_) => 9106,
            ApiError::AgentNotFound(_) => 9107,
            ApiError::AgentFailed { .. } => 9108,
            ApiError::Unavailable(_) => 9109,
            ApiError::RateLimited(_) => 9110,
            ApiError::Refused(_) => 9111,
            ApiError::UnknownService(_) => 9112,
            ApiError::ServiceRefused(_) => 9113,
            ApiError::ReservedStream(_) => 9114,
            ApiError::ConfigNotFound(_) => 9115,
            ApiError::ConfigForbidden(_) => 9116,
            ApiError::InvalidConfig(_) => 9117,
            ApiError::ConfigNotPersisted(_) => 9118,
            ApiError::StoreRefused(_) => 9119,
            // 9140 on: the cluster's (apart from the endpoints' 9114 on,
            // which other changes extend).
            ApiError::NodeUnreachable { .. } => 9140,
            ApiError::AgentNodeDown { .. } => 9141,
            ApiError::AgentRestarting(_) => 9142,
            ApiError::AgentTimeout(_) => 9143,
            // 9150 on: refusals made before an endpoint runs (numbered
            // apart from the endpoints' own, which grow from 9114).
            ApiError::InvalidRequest(_) => 9150,
            ApiError::NoRoute(_) => 9151,
            ApiError::MethodNotAllowed => 9152,
            ApiError::TooLarge(_) => 9153,
        }
    }
}

impl ApiError {
    /// Its short name in responses (`unauthorized`, `agent_exists`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "unauthorized",
            ApiError::InvalidBody(_) => "invalid_body",
            ApiError::InvalidQuery(_) => "invalid_query",
            ApiError::UnknownKind { .. } => "unknown_kind",
            ApiError::InvalidAgent(_) => "invalid_agent",
            ApiError::AgentExists(_) => "agent_exists",
            ApiError::AgentNotFound(_) => "agent_not_found",
            ApiError::AgentFailed { .. } => "agent_failed",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::RateLimited(_) => "rate_limited",
            ApiError::Refused(_) => "refused",
            ApiError::UnknownService(_) => "unknown_service",
            ApiError::ServiceRefused(_) => "service_refused",
            ApiError::ReservedStream(_) => "reserved_stream",
            ApiError::ConfigNotFound(_) => "config_not_found",
            ApiError::ConfigForbidden(_) => "config_forbidden",
            ApiError::InvalidConfig(_) => "invalid_config",
            ApiError::ConfigNotPersisted(_) => "config_not_persisted",
            ApiError::StoreRefused(_) => "store_refused",
            ApiError::NodeUnreachable { .. } => "node_unreachable",
            ApiError::AgentNodeDown { .. } => "agent_node_down",
            ApiError::AgentRestarting(_) => "agent_restarting",
            ApiError::AgentTimeout(_) => "agent_timeout",
            ApiError::InvalidRequest(_) => "invalid_request",
            ApiError::NoRoute(_) => "no_route",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::TooLarge(_) => "too_large",
        }
    }

    /// The HTTP status it answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::InvalidBody(_)
            | ApiError::InvalidQuery(_)
            | ApiError::UnknownKind { .. }
            | ApiError::InvalidAgent(_)
            | ApiError::Refused(_)
            | ApiError::InvalidConfig(_)
            | ApiError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::ConfigNotFound(_) => StatusCode::NOT_FOUND,
            ApiError::ConfigForbidden(_) => StatusCode::FORBIDDEN,
            ApiError::ConfigNotPersisted(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::NoRoute(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::AgentExists(_) => StatusCode::CONFLICT,
            ApiError::AgentNotFound(_) | ApiError::UnknownService(_) => StatusCode::NOT_FOUND,
            ApiError::ServiceRefused(_) => StatusCode::CONFLICT,
            ApiError::AgentFailed { .. } => StatusCode::CONFLICT,
            ApiError::Unavailable(_)
            | ApiError::NodeUnreachable { .. }
            | ApiError::AgentNodeDown { .. }
            | ApiError::AgentRestarting(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::AgentTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::StoreRefused(_) => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::ReservedStream(_) => StatusCode::FORBIDDEN,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({
            "code": self.code(),
            "error": self.name(),
            "message": self.to_string(),
        }));
        if matches!(self, ApiError::Unauthorized) {
            (self.status(), [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response()
        } else {
            (self.status(), body).into_response()
        }
    }
}
