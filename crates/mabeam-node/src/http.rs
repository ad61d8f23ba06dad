//! The node's HTTP API (axum).
//!
//! Open to probes and scrapers: `GET /health` (the health monitor's last
//! round, no check run per request), `GET /metrics`.
//!
//! Reads, behind the bearer token unless `http.public_reads = true`:
//! `GET /api/tree`, `GET /api/agents?offset=&limit=&status=&kind=`,
//! `GET /api/events?after=&limit=`.
//!
//! Mutations, each behind the bearer token (401 without it, and nothing
//! changes) and the rate limiter's `api.mutation` rule (429), both checked
//! before the body is read:
//! `POST /api/agents` (start an agent of a built-in kind),
//! `DELETE /api/agents/{id}` (stop and forget it, on the member that owns
//! it),
//! `POST /api/agents/{id}/ask` (send it a protocol envelope),
//! `POST /api/agents/{id}/kill` (kill its incarnation: it is restarted by
//! its policy, state from its checkpoint), `POST /api/agents/{id}/passivate`
//! (stop its process now, state and address kept),
//! `POST /api/events` (append an event; answered once it is on disk; the
//! streams the node writes itself are refused, see [`RESERVED_STREAMS`]),
//! `POST /api/coordination/vote`, `POST /api/economics/auction` (among
//! agents), `POST /api/services/{name}/restart`.
//!
//! Every failure is typed JSON with a stable code ([`ApiError`]), also
//! those axum makes before a handler runs (no route, a method not taken,
//! a path parameter that is not UTF-8, a body over its limit).
//!
//! **Who may ask what** is decided in one place, [`authorize`] (run by the
//! [`guard`] layer on every route): a new route is guarded by the same
//! rule by being in [`router`].
//!
//! [`serve`] runs the router on hyper with the [`Limits`]: a bound on
//! reading a request's headers (hyper's `header_read_timeout`), on
//! answering it (tower-http's `TimeoutLayer`, 408), and on connections
//! served at once (the next waits to be accepted).

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, Query, Request, State},
    http::{HeaderMap, Method, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{delete, get, post},
};
use mabeam::{MabeamError, System};
use mabeam_agent_supervisor::AgentError;
use mabeam_coordination::{Proposal, Rule as VoteRule};
use mabeam_economics::{PriceRule, SealedSpec};
use mabeam_foundation_services::EventStoreError;
use mabeam_supervision_core::{AgentSelection, AgentStatus, Envelope, Event, cluster::Membership};
use mabeam_telemetry::PrometheusExporter;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::{Value, json};

use crate::{
    ApiError,
    kinds::{AgentKinds, KindError, WORKER},
    observer::Observer,
};

/// The rate limiter's operation every mutating request is checked against.
pub const API_MUTATION: &str = "api.mutation";

/// At most this many items per page.
pub const MAX_PAGE: u64 = 1000;
/// Items per page by default.
pub const DEFAULT_PAGE: u64 = 100;
/// The longest a vote, an auction or an ask may wait for agents.
pub const MAX_WAIT_MS: u64 = 60_000;

/// The streams the node writes itself: `POST /api/events` refuses each,
/// and every stream under it (`agent:ID`, `config`, `coordination.decisions`,
/// `economics.auctions`, ...), so no client forges the node's record.
pub const RESERVED_STREAMS: [&str; 5] = ["agent", "agents", "config", "coordination", "economics"];

/// Whether the node writes `stream` itself (see [`RESERVED_STREAMS`]).
pub fn is_reserved_stream(stream: &str) -> bool {
    RESERVED_STREAMS.iter().any(|reserved| {
        stream
            .strip_prefix(reserved)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', ':', '/']))
    })
}

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// The trees.
    pub system: System,
    /// The node's exporter (its recorder belongs to the node).
    pub exporter: PrometheusExporter,
    /// The bearer token of mutating endpoints (and of reads, unless
    /// `public_reads`).
    pub token: Arc<str>,
    /// Whether `GET /api/*` is served without the token.
    pub public_reads: bool,
    /// The agent kinds `POST /api/agents` can start.
    pub kinds: AgentKinds,
    /// The next number of a generated agent id (`KIND-N`).
    pub next_id: Arc<AtomicU64>,
    /// The observer page's state (its sampler and streams).
    pub observer: Observer,
    /// The node's cluster membership, when it runs one.
    pub cluster: Option<Arc<mabeam_foundation_services::cluster::ClusterMembership>>,
    /// The node's fenced view of the shared store (PostgreSQL), where it
    /// claims each agent before it starts it; `None` on SQLite.
    pub ownership: Option<mabeam_foundation_services::FencedAgentStore>,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("system", &self.system)
            .field("kinds", &self.kinds)
            .finish_non_exhaustive()
    }
}

/// The router of the node's API: every route (`routes`), each behind [`guard`].
pub fn router(state: ApiState) -> Router {
    routes()
        .route_layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// Every route of the API, not yet guarded. A new route (or a router
/// merged in) goes here, so that [`router`] puts it behind [`guard`] like
/// the rest: a route layer guards only the routes added before it.
fn routes() -> Router<ApiState> {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/api/tree", get(tree))
        .route("/api/cluster", get(crate::cluster::api))
        .route("/api/agents", get(list_agents).post(start_agent))
        .route("/api/agents/{id}", delete(stop_agent))
        .route("/api/agents/{id}/ask", post(ask_agent))
        .route("/api/agents/{id}/tell", post(crate::cluster_reach::tell))
        .route("/api/broadcast", post(crate::cluster_reach::broadcast))
        .route("/api/agents/{id}/kill", post(kill_agent))
        .route("/api/agents/{id}/passivate", post(passivate_agent))
        .route("/api/events", get(read_events).post(append_event))
        .route("/api/coordination/vote", post(vote))
        .route("/api/economics/auction", post(auction))
        .route("/api/services/{name}/restart", post(restart_service))
        .merge(crate::config_api::routes())
        // The observer page, its endpoints and its event stream. The
        // stream (`/api/observer/stream`) is long-lived: keep it outside
        // any request timeout layer (merge it after such a layer).
        .merge(Observer::routes())
        // axum's own refusals (no route, a method not taken, a path
        // parameter it cannot read, a body over its limit) answer typed.
        .fallback(crate::rejection::no_route)
        .layer(axum::middleware::map_response(crate::rejection::typed))
}

/// The one rule of who may ask what:
///
/// | request | needs |
/// |---------|-------|
/// | `GET`/`HEAD` outside `/api/` (`/health`, `/metrics`, pages) | nothing |
/// | `GET`/`HEAD` under `/api/` | the token, unless `public_reads` |
/// | any other method | the token, then the `api.mutation` rate limit |
///
/// It reads only the method, the path and the headers, so it runs before
/// any body is read.
pub fn authorize(
    state: &ApiState,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    if method == Method::GET || method == Method::HEAD {
        if !path.starts_with("/api/")
            || state.public_reads
            || authorized(headers, &state.token)
            || cookie_authorized(headers, &state.token)
        {
            return Ok(());
        }
        return Err(ApiError::Unauthorized);
    }
    if !authorized(headers, &state.token) {
        return Err(ApiError::Unauthorized);
    }
    // A system without the rate limiter (a subset) does not limit.
    let Some(limiter) = state.system.rate_limiter() else {
        return Ok(());
    };
    limiter
        .check("api", API_MUTATION)
        .map(|_| ())
        .map_err(|e| ApiError::RateLimited(e.to_string()))
}

/// The layer that applies [`authorize`] to every route of the router,
/// before its handler (and so before its body) runs.
pub async fn guard(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    match authorize(
        &state,
        request.method(),
        request.uri().path(),
        request.headers(),
    ) {
        Ok(()) => next.run(request).await,
        Err(error) => error.into_response(),
    }
}

/// The bounds [`serve`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; the next waits to be accepted.
    pub max_connections: usize,
    /// How long a client has to send a request's headers.
    pub header_timeout: Duration,
    /// How long a request may take to be answered (408 after).
    pub request_timeout: Duration,
}

/// How long in-flight requests get to finish once [`serve`] is told to
/// stop, before their connections are dropped.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// Serves `app` on `listener` within `limits` until `stop` resolves; then
/// stops accepting, lets requests in flight finish (up to
/// [`STOP_GRACE`]), and returns.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: Limits,
    stop: impl Future<Output = ()>,
) {
    use hyper_util::{
        rt::{TokioIo, TokioTimer},
        server::graceful::GracefulShutdown,
        service::TowerToHyperService,
    };

    let app = app.layer(tower_http::timeout::TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        limits.request_timeout,
    ));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(stop);
    loop {
        // A permit first: past the cap, connections wait in the listen
        // queue instead of being read.
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut stop => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => {
                    // Out of file descriptors, say: try again shortly.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let connection = graceful.watch(
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone())),
        );
        while connections.try_join_next().is_some() {}
        connections.spawn(async move {
            let _ = connection.await;
            drop(permit);
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(STOP_GRACE, graceful.shutdown()).await;
    connections.shutdown().await;
}

/// The health as of the health monitor's last round: 200 when the system
/// is healthy, 503 otherwise. No check runs per request, so a burst of
/// probes costs the services nothing.
async fn health(State(state): State<ApiState>) -> Response {
    let health = state.system.last_health().await;
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

/// A non-negative integer query parameter, `default` when absent.
pub(crate) fn number(
    query: &HashMap<String, String>,
    key: &str,
    default: u64,
) -> Result<u64, ApiError> {
    match query.get(key) {
        None => Ok(default),
        Some(text) => text.parse().map_err(|_| {
            ApiError::InvalidQuery(format!(
                "{key} must be a non-negative integer, not {text:?}"
            ))
        }),
    }
}

/// `limit`, 1 to [`MAX_PAGE`].
pub(crate) fn page_limit(query: &HashMap<String, String>) -> Result<u64, ApiError> {
    let limit = number(query, "limit", DEFAULT_PAGE)?;
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::InvalidQuery(format!(
            "limit must be in 1..={MAX_PAGE}, not {limit}"
        )));
    }
    Ok(limit)
}

/// The agents in id order, paged (`offset`, `limit`), optionally of one
/// `kind` and one `status`; 503 while no agent registry runs. In a
/// cluster the list holds every member's agents, each record naming its
/// `node` (`unreachable` names the members that did not answer);
/// `scope=local` lists this node's alone.
async fn list_agents(
    State(state): State<ApiState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let offset = number(&query, "offset", 0)?;
    let limit = page_limit(&query)?;
    let status = match query.get("status") {
        None => None,
        Some(name) => Some(
            serde_json::from_value::<AgentStatus>(Value::String(name.clone()))
                .map_err(|_| ApiError::InvalidQuery(format!("unknown status {name:?}")))?,
        ),
    };
    let local_only = match query.get("scope").map(String::as_str) {
        None | Some("cluster") => false,
        Some("local") => true,
        Some(other) => {
            return Err(ApiError::InvalidQuery(format!(
                "scope must be local or cluster, not {other:?}"
            )));
        }
    };
    let kind = query.get("kind").map(String::as_str);
    let mut agents = local_agents(&state, kind)?;
    let mut unreachable = Vec::new();
    if !local_only {
        let (remote, missed) = crate::cluster::agents_elsewhere(&state, kind).await;
        agents.extend(remote);
        unreachable = missed;
        agents.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    }
    if let Some(status) = status {
        let status = serde_json::to_value(status).unwrap_or(Value::Null);
        agents.retain(|a| a["status"] == status);
    }
    let total = agents.len() as u64;
    let page: Vec<Value> = agents
        .into_iter()
        .skip(usize::try_from(offset).unwrap_or(usize::MAX))
        .take(limit as usize)
        .collect();
    let next = offset.saturating_add(page.len() as u64);
    Ok(Json(json!({
        "total": total,
        "offset": offset,
        "limit": limit,
        "next_offset": (next < total).then_some(next),
        "agents": page,
        "unreachable": unreachable,
    }))
    .into_response())
}

/// This node's agents (of `kind`, if given) as the API's records, in id
/// order, each naming this node (`null` outside a cluster).
pub(crate) fn local_agents(state: &ApiState, kind: Option<&str>) -> Result<Vec<Value>, ApiError> {
    let registry = agent_registry(state)?;
    let agents = match kind {
        Some(kind) => registry.list_by_kind(kind),
        None => registry.list(),
    };
    let node = state.cluster.as_ref().map(|m| m.local().node);
    Ok(agents
        .into_iter()
        .map(|a| {
            json!({
                "id": a.id.as_str(),
                "kind": &*a.kind,
                "status": a.status,
                "passivated": a.passivated,
                "restarts": a.restarts,
                "last_exit": a.last_exit.map(|e| e.to_string()),
                "node": node.as_deref(),
            })
        })
        .collect())
}

/// The body as `T`, or a typed error naming what is wrong.
pub(crate) fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::InvalidBody(e.to_string()))
}

pub(crate) fn agent_error(id: &str, error: AgentError) -> ApiError {
    match error {
        AgentError::AlreadyRegistered(id) => ApiError::AgentExists(id.to_string()),
        AgentError::NotFound(id) => ApiError::AgentNotFound(id.to_string()),
        AgentError::InvalidConfig { field, reason } => {
            ApiError::InvalidAgent(format!("{field}: {reason}"))
        }
        AgentError::Store(error @ mabeam_supervision_core::AgentStoreError::StorageFull(_)) => {
            ApiError::StoreRefused(error.to_string())
        }
        other => ApiError::AgentFailed {
            agent: id.to_owned(),
            reason: other.to_string(),
        },
    }
}

/// `POST /api/agents`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StartAgent {
    pub(crate) kind: String,
    #[serde(default)]
    pub(crate) id: Option<String>,
    #[serde(default)]
    pub(crate) args: Value,
    /// The member to start it on (this node when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) node: Option<String>,
}

/// Registers and starts an agent of a built-in kind (201 with its id), on
/// the member `node` names, or in a cluster on the member its id hashes
/// to (`cluster::placement`); a refused or failed start leaves nothing
/// registered.
async fn start_agent(State(state): State<ApiState>, bytes: Bytes) -> Result<Response, ApiError> {
    let mut request: StartAgent = body(&bytes)?;
    if let Some(node) = crate::cluster::placement(&state, &mut request) {
        return crate::cluster::start_elsewhere(&state, &node, request).await;
    }
    let started = start_here(&state, request).await?;
    Ok((StatusCode::CREATED, Json(started)).into_response())
}

/// A new id for an agent of `kind` (`KIND-N`, or `KIND-NODE-N` in a
/// cluster of more than one member).
pub(crate) fn generate_id(state: &ApiState, kind: &str) -> String {
    format!(
        "{}-{}",
        generated_prefix(state, kind),
        state.next_id.fetch_add(1, Ordering::Relaxed)
    )
}

/// A generated id's prefix: the kind, and in a cluster of more than one
/// member this node's name too (each node counts on its own).
fn generated_prefix(state: &ApiState, kind: &str) -> String {
    match &state.cluster {
        Some(membership) if membership.members().len() > 1 => {
            format!("{kind}-{}", membership.local().node)
        }
        _ => kind.to_owned(),
    }
}

/// Starts an agent on this node: its record (`id`, `kind`, `status`,
/// `node`).
pub(crate) async fn start_here(state: &ApiState, request: StartAgent) -> Result<Value, ApiError> {
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
    let registry = agent_registry(state)?;
    // Durable: registered in the node's agent store, answered once there.
    let config = Arc::new(config.durable(request.args.clone()));
    let id = match request.id {
        Some(id) => {
            if registry.status(&id).is_some() {
                return Err(ApiError::AgentExists(id));
            }
            claim(state, &id).await?;
            if let Err(e) = registry.register_durable_agent(id.as_str(), config).await {
                release(state, &id).await;
                return Err(agent_error(&id, e));
            }
            id
        }
        None => loop {
            let id = generate_id(state, &request.kind);
            if registry.status(&id).is_some() {
                continue;
            }
            match claim(state, &id).await {
                Ok(()) => {}
                Err(ApiError::AgentExists(_)) => continue,
                Err(e) => return Err(e),
            }
            match registry
                .register_durable_agent(id.as_str(), config.clone())
                .await
            {
                Ok(()) => break id,
                Err(AgentError::AlreadyRegistered(_)) => continue,
                Err(e) => {
                    release(state, &id).await;
                    return Err(agent_error(&id, e));
                }
            }
        },
    };
    if let Err(error) = registry.start_agent(&id).await {
        let _ = registry.deregister_agent(&id).await;
        return Err(agent_error(&id, error));
    }
    let status = registry.status(&id);
    let node = state.cluster.as_ref().map(|m| m.local().node);
    Ok(json!({"id": id, "kind": request.kind, "status": status, "node": node.as_deref()}))
}

/// Claims `id` for this node in the shared store before it starts here:
/// an id another member owns is [`ApiError::AgentExists`]. Nothing to
/// claim on a node without a shared store.
async fn claim(state: &ApiState, id: &str) -> Result<(), ApiError> {
    use mabeam_supervision_core::cluster::OwnershipError;
    let Some(store) = &state.ownership else {
        return Ok(());
    };
    match store
        .claim(&mabeam_supervision_core::AgentId::new(id))
        .await
    {
        Ok(_) => Ok(()),
        Err(OwnershipError::Conflict { .. } | OwnershipError::Stale { .. }) => {
            Err(ApiError::AgentExists(id.to_owned()))
        }
        Err(OwnershipError::NotOwner { .. } | OwnershipError::Unavailable(_)) => {
            Err(ApiError::Unavailable("agent_store"))
        }
    }
}

/// Gives up the claim of an agent whose start here failed.
async fn release(state: &ApiState, id: &str) {
    use mabeam_supervision_core::cluster::Ownership;
    if let Some(store) = &state.ownership {
        let (node, generation) = store.member();
        let _ = store
            .store()
            .release(
                &mabeam_supervision_core::AgentId::new(id),
                &node,
                generation,
            )
            .await;
    }
}

/// The event store, or 503 when the system has none (a subset).
pub(crate) fn event_store(
    state: &ApiState,
) -> Result<&mabeam_foundation_services::EventStore, ApiError> {
    state
        .system
        .event_store()
        .ok_or(ApiError::Unavailable("event_store"))
}

/// The running agent registry, or 503 while `agent_registry` restarts.
pub(crate) fn agent_registry(
    state: &ApiState,
) -> Result<mabeam_agent_supervisor::AgentRegistry, ApiError> {
    state
        .system
        .agents()
        .and_then(|agents| agents.registry())
        .ok_or(ApiError::Unavailable("agent_registry"))
}

/// Stops agent `id` and forgets it, on the member its claim names when
/// another member of the cluster owns it.
async fn stop_agent(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let registry = agent_registry(&state)?;
    if registry.status(&id).is_none() && state.ownership.is_some() {
        return crate::cluster::stop_elsewhere(&state, &id).await;
    }
    Ok(Json(stop_here(&state, &id).await?).into_response())
}

/// Stops agent `id` of this node and forgets it: its record goes, and
/// with it its claim in a shared store (the store's removal releases it),
/// so that any member may start the id again.
pub(crate) async fn stop_here(state: &ApiState, id: &str) -> Result<Value, ApiError> {
    let registry = agent_registry(state)?;
    registry
        .deregister_agent(id)
        .await
        .map_err(|e| agent_error(id, e))?;
    Ok(json!({"id": id, "stopped": true}))
}

/// Kills agent `id`'s current incarnation and answers once it has exited
/// (its policy decides the restart, as after a crash); 409 when it has no
/// process (passivated, stopped).
async fn kill_agent(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let registry = agent_registry(&state)?;
    let status = registry
        .status(&id)
        .ok_or_else(|| ApiError::AgentNotFound(id.clone()))?;
    let handle = registry
        .lookup(&id)
        .filter(|handle| handle.is_alive())
        .ok_or_else(|| ApiError::AgentFailed {
            agent: id.clone(),
            reason: format!("no running process (status {status:?})"),
        })?;
    handle.kill();
    let exit = handle.exited().await;
    Ok(Json(json!({"id": id, "killed": true, "exit": exit.to_string()})).into_response())
}

/// Passivates agent `id` now: its process stops after the messages
/// already queued; its state and address are kept.
async fn passivate_agent(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let registry = agent_registry(&state)?;
    registry
        .passivate(&id)
        .await
        .map_err(|e| agent_error(&id, e))?;
    Ok(Json(json!({"id": id, "passivated": true})).into_response())
}

/// `POST /api/agents/{id}/ask`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Ask {
    protocol: String,
    #[serde(default)]
    body: Value,
    #[serde(default = "default_wait_ms")]
    timeout_ms: u64,
    /// `wait` (default): an agent between incarnations is waited for,
    /// within the timeout; `fail`: answered `agent_restarting` at once.
    #[serde(default)]
    on_restart: OnRestartChoice,
}

/// What an ask does while its agent is between incarnations.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum OnRestartChoice {
    #[default]
    Wait,
    Fail,
}

fn default_wait_ms() -> u64 {
    1000
}

fn wait(ms: u64, what: &str) -> Result<Duration, ApiError> {
    if ms == 0 || ms > MAX_WAIT_MS {
        return Err(ApiError::InvalidBody(format!(
            "{what} must be in 1..={MAX_WAIT_MS} ms, not {ms}"
        )));
    }
    Ok(Duration::from_millis(ms))
}

/// Sends agent `id` a protocol envelope and answers its reply.
async fn ask_agent(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let request: Ask = body(&bytes)?;
    let timeout = wait(request.timeout_ms, "timeout_ms")?;
    let mut envelope = Envelope::new(request.protocol, request.body, timeout);
    envelope.fail_if_restarting = request.on_restart == OnRestartChoice::Fail;
    // The cluster's directory: this node's agents, else the owner's.
    let directory = state
        .system
        .directory()
        .ok_or(ApiError::Unavailable("agent_registry"))?;
    let agent = id.as_str().into();
    match directory.ask(&agent, envelope).await {
        Ok(reply) => Ok(Json(json!({"id": id, "reply": reply})).into_response()),
        Err(error) => Err(crate::cluster_reach::api_error(&id, error)),
    }
}

/// The events after position `after` (0: from the first), oldest first,
/// at most `limit`, with the position to ask from next. With `wait_ms`,
/// a request that finds none waits up to that long for the next one to be
/// stored (a long poll on the store's subscription).
async fn read_events(
    State(state): State<ApiState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let after = number(&query, "after", 0)?;
    let limit = page_limit(&query)?;
    let wait_ms = number(&query, "wait_ms", 0)?;
    if wait_ms > MAX_WAIT_MS {
        return Err(ApiError::InvalidQuery(format!(
            "wait_ms must be at most {MAX_WAIT_MS}, not {wait_ms}"
        )));
    }
    let store = event_store(&state)?;
    let from = after.saturating_add(1);
    let mut events = store
        .read_from(from, limit)
        .await
        .map_err(|_| ApiError::Unavailable("event_store"))?;
    if events.is_empty() && wait_ms > 0 {
        let mut next = store.subscribe(from);
        if let Ok(Some(Ok(_))) =
            tokio::time::timeout(Duration::from_millis(wait_ms), next.next()).await
        {
            events = store
                .read_from(from, limit)
                .await
                .map_err(|_| ApiError::Unavailable("event_store"))?;
        }
    }
    let next = events.last().map_or(after, |e| e.id);
    Ok(Json(json!({"after": after, "next": next, "events": events})).into_response())
}

/// `POST /api/events`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Append {
    stream: String,
    kind: String,
    #[serde(default)]
    data: Value,
}

/// Appends an event; answers 201 with its id once it is on disk.
async fn append_event(State(state): State<ApiState>, bytes: Bytes) -> Result<Response, ApiError> {
    let request: Append = body(&bytes)?;
    if is_reserved_stream(&request.stream) {
        return Err(ApiError::ReservedStream(request.stream));
    }
    let event = Event::new(request.stream, request.kind, request.data);
    match event_store(&state)?.append(event).await {
        Ok(appended) => Ok((
            StatusCode::CREATED,
            Json(json!({"id": appended.id, "stream_version": appended.stream_version})),
        )
            .into_response()),
        Err(error @ (EventStoreError::InvalidEvent { .. } | EventStoreError::TooLarge { .. })) => {
            Err(ApiError::Refused(error.to_string()))
        }
        Err(_) => Err(ApiError::Unavailable("event_store")),
    }
}

/// Whom a vote or an auction asks: these agents, or every agent of a kind.
fn selection(agents: Option<Vec<String>>, kind: Option<String>) -> AgentSelection {
    match agents {
        Some(ids) => AgentSelection::Ids(ids.into_iter().map(Into::into).collect()),
        None => AgentSelection::Kind(kind.unwrap_or_else(|| WORKER.to_owned())),
    }
}

/// `POST /api/coordination/vote`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Vote {
    topic: String,
    #[serde(default)]
    value: Option<f64>,
    #[serde(default)]
    agents: Option<Vec<String>>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    rule: Option<String>,
    #[serde(default)]
    share: Option<f64>,
    #[serde(default = "default_wait_ms")]
    timeout_ms: u64,
}

/// Runs a yes/no vote among agents (by default every `worker`) and
/// answers the decision with every ballot.
async fn vote(State(state): State<ApiState>, bytes: Bytes) -> Result<Response, ApiError> {
    let request: Vote = body(&bytes)?;
    let rule = match request.rule.as_deref().unwrap_or("majority") {
        "majority" => VoteRule::Majority,
        "unanimous" => VoteRule::Unanimous,
        "supermajority" => VoteRule::Supermajority(request.share.unwrap_or(2.0 / 3.0)),
        other => {
            return Err(ApiError::InvalidBody(format!(
                "rule must be majority, supermajority or unanimous, not {other:?}"
            )));
        }
    };
    let timeout = wait(request.timeout_ms, "timeout_ms")?;
    let mut proposal = Proposal::new(
        request.topic,
        selection(request.agents, request.kind),
        rule,
        timeout,
    );
    if let Some(value) = request.value {
        proposal = proposal.with_body(json!({ "value": value }));
    }
    let decision = state
        .system
        .coordinator()
        .ok_or(ApiError::Unavailable("coordination"))?
        .vote(proposal)
        .await
        .map_err(|e| ApiError::Refused(e.to_string()))?;
    Ok(Json(json!(decision)).into_response())
}

/// `POST /api/economics/auction`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Auction {
    item: String,
    #[serde(default)]
    rule: Option<String>,
    #[serde(default)]
    reserve: f64,
    #[serde(default)]
    agents: Option<Vec<String>>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default = "default_wait_ms")]
    bidding_ms: u64,
}

/// Runs a sealed-bid auction (Vickrey by default) among agents and
/// answers its outcome with every bid.
async fn auction(State(state): State<ApiState>, bytes: Bytes) -> Result<Response, ApiError> {
    let request: Auction = body(&bytes)?;
    let rule = match request.rule.as_deref().unwrap_or("vickrey") {
        "vickrey" | "second_price" => PriceRule::SecondPrice,
        "first_price" => PriceRule::FirstPrice,
        other => {
            return Err(ApiError::InvalidBody(format!(
                "rule must be vickrey or first_price, not {other:?}"
            )));
        }
    };
    let spec = SealedSpec {
        item: request.item,
        rule,
        reserve: request.reserve,
        invitees: selection(request.agents, request.kind),
        bidding: wait(request.bidding_ms, "bidding_ms")?,
    };
    let outcome = state
        .system
        .auctioneer()
        .ok_or(ApiError::Unavailable("economics"))?
        .sealed(spec)
        .await
        .map_err(|e| ApiError::Refused(e.to_string()))?;
    Ok(Json(json!(outcome)).into_response())
}

/// Restarts a service of either tree.
async fn restart_service(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    match state.system.restart_service(&name).await {
        Ok(()) => Ok(Json(json!({"restarted": name})).into_response()),
        Err(MabeamError::UnknownService(_)) => Err(ApiError::UnknownService(name)),
        Err(error) => Err(ApiError::ServiceRefused(error.to_string())),
    }
}

/// Whether the request carries the token (compared in constant time).
/// Reads only: the observer page's `EventSource` cannot send an
/// `Authorization` header, so the page keeps the token the user typed in a
/// same-site cookie, `mabeam_token`. Mutations never accept it (a cookie
/// rides along with requests a user did not mean).
fn cookie_authorized(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().strip_prefix("mabeam_token="))
        .any(|given| same_secret(given.as_bytes(), token.as_bytes()))
}

/// Compares in time independent of where they differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorized(headers: &HeaderMap, token: &str) -> bool {
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    same_secret(given.trim().as_bytes(), token.as_bytes())
}
