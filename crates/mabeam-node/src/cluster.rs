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
use foundation_services::cluster::ClusterMembership;
use futures::future::BoxFuture;
use serde_json::json;
use supervision_core::{
    GaugeReading, GaugeSource, Telemetry,
    cluster::{Member, Membership},
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
