//! The node in its cluster: the membership it runs beside the connection
//! manager (foundation-services' `ClusterMembership`, gossip on UDP at the
//! cluster listen address's port), the check that more than one node
//! needs a shared store, `GET /api/cluster` and the members' gauge.
//!
//! Any node reaches the whole cluster's agents: an ask for an agent it
//! does not hold goes to its owner (`cluster_reach`), `GET /api/agents` lists every
//! member's agents (each record names its `node`) and `POST /api/agents`
//! may name the member to start on. The node-level requests ride the
//! agent-call frames of the node connections, addressed to the empty
//! agent id: no agent can have it (ids are non-empty), so the address is
//! the node's own (`Served`).
//!
//! Flags and config: `--node NAME` (`cluster.node`), `--listen ADDR`
//! (`cluster.listen`: the node connections on TCP and the gossip on UDP,
//! same address), `--join ADDR` (`cluster.seeds`: another node's listen
//! address, repeatable), `cluster.advertise` (where the others reach
//! `listen` when not there: a proxy, a NAT).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Json,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use futures::future::BoxFuture;
use mabeam_foundation_services::{ConnectionManager, FencedAgentStore, cluster::ClusterMembership};
use mabeam_supervision_core::{
    AgentDirectory, AgentId, AgentInfo, AgentStatusChanges, DirectoryError, Envelope, ErrorCode,
    GaugeReading, GaugeSource, ProcessHandle, Telemetry,
    cluster::{Member, MemberState, Membership, RemoteDelivery, rendezvous_owner},
    events,
};
use serde_json::json;

use crate::{
    ApiError, NodeConfig, NodeError,
    http::{ApiState, StartAgent},
};

/// The protocol of a node-level request for the node's agents (body:
/// `{"kind": KIND or null}`; answer: the `GET /api/agents` records).
const LIST: &str = "mabeam.node.list";
/// The protocol of a node-level request to start an agent (body: the
/// `POST /api/agents` body; answer: `{"ok": record}` or `{"error":
/// {status, code, error, message}}`, the refusal as this node's API
/// gives it).
const START: &str = "mabeam.node.start";
/// The protocol of a node-level request to stop and forget one of the
/// node's agents (body: `{"id": ID}`; answer as [`START`]'s).
const STOP: &str = "mabeam.node.stop";
/// How long a node-level request may take.
const NODE_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The tag a member announces its HTTP address under.
pub const HTTP_TAG: &str = "http";

/// Refuses a node that joins others (`--join`, `cluster.seeds`) without a
/// store every node shares: agents' ownership and checkpoints must live in
/// one place for at most one incarnation of an agent to run in the
/// cluster. `shared_store` is whether the node's store is one (PostgreSQL);
/// `cluster.test_only_without_shared_store` lifts the check for tests of
/// membership alone.
pub fn check_shared_store(config: &NodeConfig, shared_store: bool) -> Result<(), NodeError> {
    if config.cluster_seeds.is_empty() || shared_store || config.cluster_without_shared_store {
        return Ok(());
    }
    Err(NodeError::ClusterNeedsSharedStore {
        seeds: config.cluster_seeds.len(),
    })
}

/// A concrete listen address: port 0 becomes a port free for both TCP (the
/// node connections) and UDP (the gossip), since both use it.
pub fn resolve_listen(addr: SocketAddr) -> Result<SocketAddr, NodeError> {
    if addr.port() != 0 {
        return Ok(addr);
    }
    let bind = |error| NodeError::Bind { addr, error };
    // A few tries: the TCP port's UDP twin may be taken.
    let mut last = None;
    for _ in 0..16 {
        let tcp = std::net::TcpListener::bind(addr).map_err(bind)?;
        let port = tcp.local_addr().map_err(bind)?;
        match std::net::UdpSocket::bind(port) {
            Ok(_) => return Ok(port),
            Err(error) => last = Some(error),
        }
    }
    Err(bind(last.unwrap_or_else(|| {
        std::io::Error::other("no port free for both TCP and UDP")
    })))
}

/// Starts the membership: gossip on `listen` (UDP), seeds the others'
/// listen addresses, this node's connection address and HTTP address
/// announced.
pub async fn start_membership(
    config: &NodeConfig,
    cookie: &str,
    listen: SocketAddr,
    http: SocketAddr,
    generation: Option<u64>,
    telemetry: Telemetry,
) -> Result<ClusterMembership, NodeError> {
    // Behind a proxy, the others reach both at the advertised address.
    let reachable = config.cluster_advertise.unwrap_or(listen);
    let mut builder = ClusterMembership::builder(&config.cluster_node, cookie)
        .gossip(listen)
        .advertise(reachable)
        .seeds(config.cluster_seeds.iter().copied())
        .node_addr(reachable)
        .tag(HTTP_TAG, http.to_string())
        .telemetry(telemetry);
    if let Some(generation) = generation {
        builder = builder.generation(generation);
    }
    let membership = builder
        .build()
        .map_err(|e| NodeError::Cluster(e.to_string()))?;
    membership
        .start()
        .await
        .map_err(|e| NodeError::Cluster(e.to_string()))?;
    Ok(membership)
}

/// Keeps a node connection to every member that is up (the seeds give
/// only the connections to them): dials each member announced up with a
/// node address, at once and on each later up. The connection manager
/// keeps one connection per pair, so both sides dialling is harmless.
pub(crate) fn connect_members(
    membership: Arc<ClusterMembership>,
    connections: ConnectionManager,
) -> tokio::task::JoinHandle<()> {
    let mut events = membership.subscribe();
    tokio::spawn(async move {
        let me = membership.local().node;
        let dial = |member: &Member| {
            if member.node == me
                || member.state != MemberState::Up
                || connections.is_connected(&member.node)
            {
                return;
            }
            if let Some(addr) = member.addr {
                let connections = connections.clone();
                // A failed dial is retried at the member's next change;
                // its own dial to us may win meanwhile.
                tokio::spawn(async move {
                    let _ = connections.connect(addr).await;
                });
            }
        };
        for member in membership.members() {
            dial(&member);
        }
        loop {
            match events.recv().await {
                Ok(event) => dial(&event.member),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    for member in membership.members() {
                        dial(&member);
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    })
}

/// Fails over the agents of members seen down: on each member (not this
/// node) going `down`, its claims are read from the shared store, each
/// agent whose rendezvous owner over the live members is this node is
/// claimed replacing the dead member's claim (one compare-and-set for
/// all, so a claim someone else changed meanwhile is not taken), and the
/// agents won are brought into this node's registry from their last
/// checkpoints. Every survivor runs the same, over the same live members,
/// so each of the dead member's agents has one claimant. The claims are
/// taken only once the dead member's lease has ended
/// (`cluster_lease::await_lease_end`).
pub(crate) fn fail_over(
    membership: Arc<ClusterMembership>,
    store: FencedAgentStore,
    system: mabeam::System,
    timings: crate::cluster_lease::LeaseTimings,
) -> tokio::task::JoinHandle<()> {
    let mut events = membership.subscribe();
    tokio::spawn(async move {
        // Dropped with this task when the node stops, which aborts every
        // takeover still waiting out a lease: none claims agents for a
        // node that is gone.
        let mut takeovers = tokio::task::JoinSet::new();
        loop {
            let received = tokio::select! {
                received = events.recv() => received,
                Some(_) = takeovers.join_next(), if !takeovers.is_empty() => continue,
            };
            let event = match received {
                Ok(event) => event,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "failover: membership events missed");
                    continue;
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            let dead = event.member;
            let me = membership.local();
            if dead.state != MemberState::Down
                || event.previous == Some(MemberState::Down)
                || dead.node == me.node
            {
                continue;
            }
            // Each dead member on its own task: waiting out one's lease
            // delays no other.
            let (membership, store, system) = (membership.clone(), store.clone(), system.clone());
            takeovers.spawn(async move {
                if crate::cluster_lease::await_lease_end(store.store(), &membership, &dead, timings)
                    .await
                {
                    take_over(&membership, &store, &system, &dead).await;
                }
            });
        }
    })
}

/// Takes over this node's share of `dead`'s agents (see [`fail_over`]).
pub(crate) async fn take_over(
    membership: &ClusterMembership,
    store: &FencedAgentStore,
    system: &mabeam::System,
    dead: &Member,
) {
    let started = std::time::Instant::now();
    let (node, _) = store.member();
    let claims = match store.store().claims_of(&dead.node, dead.generation).await {
        Ok(claims) => claims,
        Err(error) => {
            tracing::error!(dead = %dead.node, %error, "failover: the dead member's claims cannot be read");
            return;
        }
    };
    let live = membership.live();
    let names: Vec<&str> = live
        .iter()
        .filter(|m| m.node != dead.node)
        .map(|m| &*m.node)
        .collect();
    let mine: Vec<_> = claims
        .into_iter()
        .filter(|claim| rendezvous_owner(&claim.agent, names.iter().copied()) == Some(&*node))
        .collect();
    if mine.is_empty() {
        return;
    }
    let won = match store.take_over(&mine).await {
        Ok(won) => won,
        Err(error) => {
            tracing::error!(dead = %dead.node, %error, "failover: claims not taken");
            return;
        }
    };
    let Some(registry) = system.agents().and_then(|agents| agents.registry()) else {
        tracing::error!("failover: no agent registry to start the agents in");
        return;
    };
    let ids = won.into_iter().map(|claim| claim.agent).collect();
    let adopted = registry.adopt(ids).await;
    tracing::info!(
        dead = %dead.node,
        generation = dead.generation,
        restored = adopted.restored,
        started = adopted.started,
        failed = adopted.failed,
        took_ms = started.elapsed().as_millis() as u64,
        "failover: agents taken over"
    );
}

/// Whether `node` names this node (or no cluster runs).
pub(crate) fn is_local(state: &ApiState, node: &str) -> bool {
    state
        .cluster
        .as_ref()
        .is_none_or(|membership| &*membership.local().node == node)
}

/// Where `POST /api/agents` starts `request`: `None` for this node, or
/// the other member to start it on. A `node` in the request decides;
/// without one, in a cluster of more than one live member, the owner is
/// the member the id hashes to (rendezvous hashing over the live members,
/// so every node picks the same one and asks find it first), and a
/// generated id is made here. Ownership is not yet claimed in a shared
/// store: two nodes seeing different live sets may place one id apart.
pub(crate) fn placement(state: &ApiState, request: &mut StartAgent) -> Option<String> {
    if let Some(node) = request.node.take() {
        return (!is_local(state, &node)).then_some(node);
    }
    let membership = state.cluster.as_ref()?;
    let live = membership.live();
    if live.len() < 2 {
        return None;
    }
    let id = request
        .id
        .get_or_insert_with(|| crate::http::generate_id(state, &request.kind))
        .clone();
    let owner = rendezvous_owner(&AgentId::new(id), live.iter().map(|m| &*m.node))?;
    (!is_local(state, owner)).then(|| owner.to_owned())
}

/// The connection manager and the live member `node`, or why not.
fn reach<'a>(
    state: &'a ApiState,
    node: &str,
) -> Result<&'a mabeam_foundation_services::ConnectionManager, ApiError> {
    let unreachable = |reason: &str| ApiError::NodeUnreachable {
        node: node.to_owned(),
        reason: reason.to_owned(),
    };
    let membership = state
        .cluster
        .as_ref()
        .ok_or_else(|| unreachable("this node runs no cluster"))?;
    if !membership.live().iter().any(|m| &*m.node == node) {
        return Err(unreachable("not a live member of the cluster"));
    }
    state
        .system
        .connections()
        .ok_or_else(|| unreachable("this node has no node connections"))
}

/// `POST /api/agents` naming another member: the start runs there; its
/// answer (201 and the record, or the member's refusal with its status
/// and code) is this one's.
pub(crate) async fn start_elsewhere(
    state: &ApiState,
    node: &str,
    request: StartAgent,
) -> Result<Response, ApiError> {
    let connections = reach(state, node)?;
    let body = serde_json::to_value(&request).map_err(|e| ApiError::InvalidBody(e.to_string()))?;
    let envelope = Envelope::new(START, body, NODE_REQUEST_TIMEOUT);
    node_request(connections, node, envelope, StatusCode::CREATED).await
}

/// Stops agent `id` on the member its claim in the shared store names
/// (`DELETE /api/agents/{id}` through another member): not found without
/// a claim, `agent_node_down` while the owner is down and not yet taken
/// over.
pub(crate) async fn stop_elsewhere(state: &ApiState, id: &str) -> Result<Response, ApiError> {
    let (Some(store), Some(membership)) = (&state.ownership, &state.cluster) else {
        return Err(ApiError::AgentNotFound(id.to_owned()));
    };
    let claim = crate::cluster_reach::claimed_owner(membership, store, &AgentId::new(id))
        .await
        .map_err(|error| match error {
            DirectoryError::Rejected { .. } => ApiError::Unavailable("agent_store"),
            error => crate::cluster_reach::api_error(id, error),
        })?
        // A claim of this node without an agent here: one stopped meanwhile.
        .ok_or_else(|| ApiError::AgentNotFound(id.to_owned()))?;
    let connections = reach(state, &claim.node)?;
    let envelope = Envelope::new(STOP, json!({ "id": id }), NODE_REQUEST_TIMEOUT);
    node_request(connections, &claim.node, envelope, StatusCode::OK).await
}

/// Sends a node-level request to `node` and answers as that node's API
/// did: `{"ok": record}` with `ok`, a refusal with its own status.
async fn node_request(
    connections: &ConnectionManager,
    node: &str,
    envelope: Envelope,
    ok: StatusCode,
) -> Result<Response, ApiError> {
    let answer = connections
        .ask(node, &AgentId::new(""), envelope)
        .await
        .map_err(|e| ApiError::NodeUnreachable {
            node: node.to_owned(),
            reason: e.to_string(),
        })?;
    if let Some(record) = answer.get("ok") {
        return Ok((ok, Json(record.clone())).into_response());
    }
    let status = answer["error"]["status"]
        .as_u64()
        .and_then(|s| u16::try_from(s).ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::BAD_GATEWAY);
    let mut error = answer["error"].clone();
    if let Some(error) = error.as_object_mut() {
        error.remove("status");
    }
    Ok((status, Json(error)).into_response())
}

/// The other live members' agents as `GET /api/agents` records, asked of
/// all at once, and the members that did not answer.
pub(crate) async fn agents_elsewhere(
    state: &ApiState,
    kind: Option<&str>,
) -> (Vec<serde_json::Value>, Vec<String>) {
    let (Some(membership), Some(connections)) = (&state.cluster, state.system.connections()) else {
        return (Vec::new(), Vec::new());
    };
    let me = membership.local().node;
    let asks = membership
        .live()
        .into_iter()
        .filter(|m| m.node != me)
        .map(|member| {
            let envelope = Envelope::new(LIST, json!({ "kind": kind }), NODE_REQUEST_TIMEOUT);
            let ask = connections.ask(&member.node, &AgentId::new(""), envelope);
            async move { (member.node, ask.await) }
        });
    let mut agents = Vec::new();
    let mut missed = Vec::new();
    for (node, answer) in futures::future::join_all(asks).await {
        match answer {
            Ok(serde_json::Value::Array(records)) => agents.extend(records),
            _ => missed.push(node.to_string()),
        }
    }
    (agents, missed)
}

/// What other nodes' calls reach: this node's agents, and at the empty
/// agent id the node itself ([`LIST`], [`START`], [`STOP`]).
pub(crate) struct Served {
    pub(crate) api: ApiState,
    /// The node's agent layer (a node always runs one).
    pub(crate) agents: mabeam::Agents,
}

impl std::fmt::Debug for Served {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Served").finish_non_exhaustive()
    }
}

impl Served {
    async fn node_request(
        state: ApiState,
        envelope: Envelope,
    ) -> Result<serde_json::Value, DirectoryError> {
        let refusal = |error: ApiError| {
            json!({"error": {
                "status": error.status().as_u16(),
                "code": error.code(),
                "error": error.name(),
                "message": error.to_string(),
            }})
        };
        match &*envelope.protocol {
            LIST => {
                let kind = envelope.body["kind"].as_str();
                Ok(crate::http::local_agents(&state, kind)
                    .map(serde_json::Value::from)
                    .unwrap_or_else(|_| json!([])))
            }
            START => {
                let request = match serde_json::from_value::<StartAgent>(envelope.body) {
                    Ok(request) => request,
                    Err(e) => return Ok(refusal(ApiError::InvalidBody(e.to_string()))),
                };
                // Started here: a `node` naming yet another member is not
                // followed (one hop).
                let request = StartAgent {
                    node: None,
                    ..request
                };
                Ok(match crate::http::start_here(&state, request).await {
                    Ok(record) => json!({ "ok": record }),
                    Err(error) => refusal(error),
                })
            }
            STOP => {
                let Some(id) = envelope.body["id"].as_str() else {
                    return Ok(refusal(ApiError::InvalidBody("an id is needed".to_owned())));
                };
                Ok(match crate::http::stop_here(&state, id).await {
                    Ok(record) => json!({ "ok": record }),
                    Err(error) => refusal(error),
                })
            }
            crate::cluster_reach::ADOPT => {
                Ok(crate::cluster_reach::adopt_request(&state, envelope).await)
            }
            _ => Err(DirectoryError::Unsupported {
                agent: AgentId::new(""),
                protocol: envelope.protocol,
            }),
        }
    }
}

impl AgentDirectory for Served {
    fn agent(&self, id: &AgentId) -> Option<ProcessHandle> {
        self.agents.agent(id)
    }

    fn info(&self, id: &AgentId) -> Option<AgentInfo> {
        self.agents.info(id)
    }

    fn agents(&self) -> Vec<AgentInfo> {
        self.agents.agents()
    }

    fn ask(
        &self,
        id: &AgentId,
        envelope: Envelope,
    ) -> BoxFuture<'static, Result<serde_json::Value, DirectoryError>> {
        if id.as_str().is_empty() {
            return Box::pin(Self::node_request(self.api.clone(), envelope));
        }
        self.agents.ask(id, envelope)
    }

    fn cast(&self, id: &AgentId, envelope: Envelope) -> Result<(), DirectoryError> {
        self.agents.cast(id, envelope)
    }

    fn subscribe(&self) -> AgentStatusChanges {
        self.agents.subscribe()
    }
}

/// `GET /api/cluster`: this node, and every member it knows with its
/// generation, state, node address and HTTP address.
pub(crate) async fn api(State(state): State<ApiState>) -> Response {
    let Some(membership) = &state.cluster else {
        return Json(json!({"node": null, "members": []})).into_response();
    };
    let local = membership.local();
    Json(json!({
        "node": local.node,
        "generation": local.generation,
        "state": local.state,
        "members": membership.members().iter().map(member_json).collect::<Vec<_>>(),
    }))
    .into_response()
}

fn member_json(member: &Member) -> serde_json::Value {
    json!({
        "node": member.node,
        "generation": member.generation,
        "state": member.state,
        "addr": member.addr.map(|a| a.to_string()),
        "http": member.tag(HTTP_TAG),
    })
}

/// `mabeam_cluster_member{member, state}` on scrape: 1 for each member in
/// its state (a member's former state reads 0).
#[derive(Debug)]
pub(crate) struct MemberGauges(pub(crate) Arc<ClusterMembership>);

impl GaugeSource for MemberGauges {
    fn read(&self) -> BoxFuture<'_, Vec<GaugeReading>> {
        let readings = self
            .0
            .members()
            .iter()
            .map(|m| {
                GaugeReading::new(
                    &events::GAUGE_CLUSTER_MEMBER,
                    [m.node.to_string(), m.state.to_string()],
                    1.0,
                )
            })
            .collect();
        Box::pin(async move { readings })
    }
}
