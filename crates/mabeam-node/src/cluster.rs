//! The node in its cluster: the membership it runs beside the connection
//! manager (foundation-services' `ClusterMembership`, gossip on UDP at the
//! cluster listen address's port), the check that more than one node
//! needs a shared store, `GET /api/cluster` and the members' gauge.
//!
//! Flags and config: `--node NAME` (`cluster.node`), `--listen ADDR`
//! (`cluster.listen`: the node connections on TCP and the gossip on UDP,
//! same address), `--join ADDR` (`cluster.seeds`: another node's listen
//! address, repeatable).

use std::{net::SocketAddr, sync::Arc};

use axum::{
    Json,
    extract::State,
    response::{IntoResponse, Response},
};
use foundation_services::{ConnectionManager, cluster::ClusterMembership};
use futures::future::BoxFuture;
use serde_json::json;
use supervision_core::{
    AgentId, DirectoryError, Envelope, GaugeReading, GaugeSource, Telemetry,
    cluster::{Member, MemberState, Membership, RemoteDelivery},
    events,
};

use crate::{NodeConfig, NodeError, http::ApiState};

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
    let mut builder = ClusterMembership::builder(&config.cluster_node, cookie)
        .gossip(listen)
        .seeds(config.cluster_seeds.iter().copied())
        .node_addr(listen)
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

/// An ask for an agent this node does not hold: each other live member
/// is asked in turn over the node connections (the first that holds the
/// agent answers; `NotFound` from all is `NotFound`). Until agents' owners
/// are recorded in a shared store, this is how any node reaches every
/// agent: a miss costs one call per member.
pub(crate) async fn ask_elsewhere(
    state: &ApiState,
    agent: &AgentId,
    envelope: Envelope,
) -> Result<serde_json::Value, DirectoryError> {
    let (Some(membership), Some(connections)) = (&state.cluster, state.system.connections()) else {
        return Err(DirectoryError::NotFound(agent.clone()));
    };
    let me = membership.local();
    for member in membership.live() {
        if member.node == me.node {
            continue;
        }
        match connections.ask(&member.node, agent, envelope.clone()).await {
            Err(DirectoryError::NotFound(_)) | Err(DirectoryError::NodeDown { .. }) => continue,
            other => return other,
        }
    }
    Err(DirectoryError::NotFound(agent.clone()))
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
