//! Reaching any agent of the cluster by id, from any node: the
//! [`ClusterDirectory`] the node hands its services (coordination,
//! economics, the load balancer) and its HTTP API, and the hand-over of
//! a node's agents when it stops on SIGTERM.
//!
//! # Where a call goes
//!
//! A call for an agent this node holds takes the local path (the agent
//! layer, unchanged cost). Otherwise the agent's claim is read from the
//! shared store (supervision-core's `Ownership`) and the call goes to
//! its owner over the node connection (`RemoteDelivery`), keeping its
//! deadline:
//!
//! - no claim: `NotFound`;
//! - claimed by this node, or by a live member that answers `NotFound`,
//!   while the store keeps the agent (an adoption under way): the call
//!   waits, within its deadline, for the agent to appear there
//!   (`Restarting` at once if the caller will not wait); without a
//!   record (a deleted agent's claim), `NotFound`;
//! - claimed by a live member (`joining`, `up` or `leaving`, the claim's
//!   generation): the owner answers; an owner handing its agents over
//!   answers `Restarting`, and the call is routed again (within its
//!   deadline) to the next owner;
//! - claimed by a member that is down (or replaced by a newer
//!   generation), not yet taken over: **`NodeDown` at once**, not a wait
//!   for the takeover. A survivor adopts the agent within about a second
//!   of the detection; the caller's retry policy (not a hidden wait that
//!   eats its deadline) decides whether to try again.
//!
//! The owner a claim named is remembered (an [`Owners`] cache, bounded):
//! the next call to the agent goes straight to that member while it is
//! live under the same generation, without reading the store. A cached
//! owner that answers `NotFound` or `Restarting` (nothing taken) is
//! forgotten and the claim read again before anything else happens, so a
//! stale entry costs one round trip, never a wrong answer: an agent moves
//! only once its old owner stopped it (hand-over gate, leases). One that
//! cannot be reached is forgotten too, and the caller gets that answer.
//!
//! A node without a shared store (membership tests) has no claims to
//! read: it asks the other live members in turn, the one the id hashes
//! to first.
//!
//! A [`tell`](AgentDirectory::tell) to an agent owned elsewhere resolves
//! once the owner took it into the agent's mailbox (the owner answers the
//! tell frame only then): an acknowledged tell is not silently lost.
//! `cast` (synchronous, unacknowledged by contract) sends a remote one in
//! the background.
//!
//! `agents()`, `info()` and `agent()` answer for this node's agents only:
//! the contract makes them synchronous and non-blocking, and a listing of
//! other nodes is a network round trip (`GET /api/agents` does it). So a
//! vote or auction by *kind* selects this node's agents; one by *ids*
//! reaches every agent of the cluster.

use std::sync::{Arc, OnceLock};

use axum::body::Bytes;
use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use futures::future::BoxFuture;
use mabeam_foundation_services::{ConnectionManager, FencedAgentStore, cluster::ClusterMembership};
use mabeam_supervision_core::{
    AgentDirectory, AgentId, AgentInfo, AgentStatusChanges, DirectoryError, Envelope, ErrorCode,
    ProcessHandle,
    cluster::{Claim, MemberState, Membership, Ownership, RemoteDelivery, rendezvous_owner},
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{ApiError, http::ApiState};

/// The protocol of a node-level request to adopt agents another member
/// handed over (body: `{"ids": [...]}`, already claimed for the
/// receiver; answer: `{"restored", "started", "failed"}`).
pub(crate) const ADOPT: &str = "mabeam.node.adopt";

/// How often a call for an agent being adopted here looks for it.
const HERE_POLL: std::time::Duration = std::time::Duration::from_millis(5);

/// How long a call waits before it routes again to an owner that is
/// bringing the agent in.
const ADOPTION_RETRY: std::time::Duration = std::time::Duration::from_millis(10);

/// What a node reaches other nodes with, set once its membership runs.
#[derive(Debug)]
pub(crate) struct Reach {
    /// Who is in the cluster.
    pub(crate) membership: Arc<ClusterMembership>,
    /// The node connections.
    pub(crate) delivery: ConnectionManager,
    /// The shared store's claims, on a shared store.
    pub(crate) ownership: Option<FencedAgentStore>,
    /// Closed by the hand-over: other nodes' calls to this node's agents
    /// are refused from then on.
    pub(crate) gate: Arc<Gate>,
    /// The owners the claims last named.
    pub(crate) owners: Owners,
}

/// The most entries [`Owners`] keeps; past it, it starts afresh.
const OWNERS_CAPACITY: usize = 65_536;

/// The owner (member and generation) each agent's claim last named, as
/// read by this node: a hint, checked against the membership at each use
/// and forgotten at the first sign it is stale.
#[derive(Debug, Default)]
pub(crate) struct Owners {
    by_agent: parking_lot::Mutex<std::collections::HashMap<AgentId, (Arc<str>, u64)>>,
}

impl Owners {
    fn get(&self, agent: &AgentId) -> Option<(Arc<str>, u64)> {
        self.by_agent.lock().get(agent).cloned()
    }

    fn remember(&self, agent: &AgentId, node: Arc<str>, generation: u64) {
        let mut by_agent = self.by_agent.lock();
        // Bounded without bookkeeping per entry: a full cache is dropped
        // and refills from the calls that follow.
        if by_agent.len() >= OWNERS_CAPACITY && !by_agent.contains_key(agent) {
            by_agent.clear();
        }
        by_agent.insert(agent.clone(), (node, generation));
    }

    fn forget(&self, agent: &AgentId) {
        self.by_agent.lock().remove(agent);
    }
}

/// Whether other nodes' calls may reach this node's agents: closed once
/// it hands them over, so no tell is taken (and acknowledged) by an
/// agent that is stopping for good. A call holds the read side while it
/// is taken, so closing waits for those being taken.
#[derive(Debug, Default)]
pub(crate) struct Gate {
    closed: parking_lot::RwLock<bool>,
}

/// The directory other nodes' calls reach (the node's `Served`), behind
/// the hand-over's [`Gate`]: once closed, a call to an agent is refused
/// `Restarting` (retry: its claim moves to a survivor); node-level
/// requests (the empty id) still pass.
pub(crate) struct Gated {
    inner: Arc<dyn AgentDirectory>,
    gate: Arc<Gate>,
}

impl std::fmt::Debug for Gated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gated")
            .field("gate", &self.gate)
            .finish_non_exhaustive()
    }
}

impl Gated {
    /// `inner` behind `gate`.
    pub(crate) fn new(inner: Arc<dyn AgentDirectory>, gate: Arc<Gate>) -> Self {
        Gated { inner, gate }
    }
}

impl AgentDirectory for Gated {
    fn agent(&self, id: &AgentId) -> Option<ProcessHandle> {
        self.inner.agent(id)
    }

    fn info(&self, id: &AgentId) -> Option<AgentInfo> {
        self.inner.info(id)
    }

    fn agents(&self) -> Vec<AgentInfo> {
        self.inner.agents()
    }

    fn ask(
        &self,
        id: &AgentId,
        envelope: Envelope,
    ) -> BoxFuture<'static, Result<Value, DirectoryError>> {
        if !id.as_str().is_empty() && *self.gate.closed.read() {
            let id = id.clone();
            return Box::pin(async move { Err(DirectoryError::Restarting(id)) });
        }
        self.inner.ask(id, envelope)
    }

    fn cast(&self, id: &AgentId, envelope: Envelope) -> Result<(), DirectoryError> {
        // Held while the tell is taken: the hand-over closes after it.
        let closed = self.gate.closed.read();
        if !id.as_str().is_empty() && *closed {
            return Err(DirectoryError::Restarting(id.clone()));
        }
        self.inner.cast(id, envelope)
    }

    fn subscribe(&self) -> AgentStatusChanges {
        self.inner.subscribe()
    }
}

/// Where a call for an agent not held here goes.
enum Route {
    /// To this member; `cached` when the owner came from [`Owners`]
    /// rather than the store.
    To { node: Arc<str>, cached: bool },
    /// This node owns it: it is being brought in here.
    Here,
}

/// Whether `node` under `generation` is a member not seen down.
fn is_live(membership: &ClusterMembership, node: &str, generation: u64) -> bool {
    membership
        .members()
        .into_iter()
        .any(|m| &*m.node == node && m.generation == generation && m.state != MemberState::Down)
}

/// Who owns `agent` by its claim in the shared store: `None` for this
/// node, the claim of a member not seen down; `NotFound` without a claim,
/// `NodeDown` for a member down (or replaced by a newer generation) that
/// no survivor took the agent from yet, `Rejected` when the store cannot
/// be read.
pub(crate) async fn claimed_owner(
    membership: &ClusterMembership,
    store: &FencedAgentStore,
    agent: &AgentId,
) -> Result<Option<Claim>, DirectoryError> {
    let claim = store
        .store()
        .owner(agent)
        .await
        .map_err(|error| DirectoryError::Rejected {
            agent: agent.clone(),
            reason: error.to_string(),
        })?
        .ok_or_else(|| DirectoryError::NotFound(agent.clone()))?;
    if claim.node == membership.local().node {
        return Ok(None);
    }
    if !is_live(membership, &claim.node, claim.generation) {
        return Err(DirectoryError::NodeDown {
            agent: agent.clone(),
            reason: format!(
                "its owner (generation {}) is down; a survivor takes its agents over: retry",
                claim.generation
            ),
            node: claim.node,
        });
    }
    Ok(Some(claim))
}

/// The directory that spans the cluster (see the [module docs](self)):
/// this node's agents first, then the owner read from the claims.
#[derive(Clone)]
pub(crate) struct ClusterDirectory {
    local: mabeam::Agents,
    reach: Arc<OnceLock<Reach>>,
}

impl std::fmt::Debug for ClusterDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterDirectory")
            .field("clustered", &self.reach.get().is_some())
            .finish_non_exhaustive()
    }
}

impl ClusterDirectory {
    /// Over `local`; reaches other nodes once `reach` is set.
    pub(crate) fn new(local: mabeam::Agents, reach: Arc<OnceLock<Reach>>) -> Self {
        ClusterDirectory { local, reach }
    }

    /// Where the agent's claim says it lives (see the module docs): the
    /// owner remembered in [`Owners`] while it is a live member under the
    /// same generation, unless `fresh`; otherwise the claim read from the
    /// store.
    async fn route(
        reach: &Reach,
        store: &FencedAgentStore,
        agent: &AgentId,
        fresh: bool,
    ) -> Result<Route, DirectoryError> {
        if !fresh && let Some((node, generation)) = reach.owners.get(agent) {
            if is_live(&reach.membership, &node, generation) {
                return Ok(Route::To { node, cached: true });
            }
            reach.owners.forget(agent);
        }
        match claimed_owner(&reach.membership, store, agent).await? {
            None => Ok(Route::Here),
            Some(claim) => {
                reach
                    .owners
                    .remember(agent, claim.node.clone(), claim.generation);
                Ok(Route::To {
                    node: claim.node,
                    cached: false,
                })
            }
        }
    }

    /// The other live members, the one the id hashes to first: where an
    /// agent may be on a cluster without claims.
    fn members_in_turn(reach: &Reach, agent: &AgentId) -> Vec<Arc<str>> {
        let me = reach.membership.local().node;
        let live = reach.membership.live();
        let owner = rendezvous_owner(agent, live.iter().map(|m| &*m.node)).map(Arc::<str>::from);
        let mut nodes: Vec<Arc<str>> = live
            .into_iter()
            .map(|m| m.node)
            .filter(|n| *n != me)
            .collect();
        nodes.sort_by_key(|n| Some(n) != owner.as_ref());
        nodes
    }

    /// Waits for `agent` to appear in this node's registry (an adoption
    /// under way), within `envelope`'s deadline; `Restarting` at once for
    /// a caller that will not wait.
    async fn wait_here(
        store: &FencedAgentStore,
        local: &mabeam::Agents,
        agent: &AgentId,
        envelope: &Envelope,
    ) -> Result<(), DirectoryError> {
        let deadline = envelope.deadline;
        let mut changes = local.subscribe();
        // Registered between the miss and the subscription?
        if local.info(agent).is_some() {
            return Ok(());
        }
        // A claim left by an agent deleted here: not found.
        if !Self::stored(store, agent).await? {
            return Err(DirectoryError::NotFound(agent.clone()));
        }
        if envelope.fail_if_restarting {
            return Err(DirectoryError::Restarting(agent.clone()));
        }
        // An adoption restores agents without announcing each (quietly,
        // as a recovery does): the table is also looked at every few ms.
        let mut look = tokio::time::interval(HERE_POLL);
        let appeared = async {
            loop {
                tokio::select! {
                    change = changes.recv() => match change {
                        Ok(change) if change.id == *agent => return true,
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return false,
                    },
                    _ = look.tick() => {}
                }
                if local.info(agent).is_some() {
                    return true;
                }
            }
        };
        match tokio::time::timeout_at(deadline, appeared).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(DirectoryError::NotFound(agent.clone())),
            Err(_) => Err(DirectoryError::Timeout(agent.clone())),
        }
    }

    /// Whether the store keeps `agent` (a claim outlives a deleted
    /// agent's record).
    async fn stored(store: &FencedAgentStore, agent: &AgentId) -> Result<bool, DirectoryError> {
        use mabeam_supervision_core::AgentStore;
        store
            .get(agent)
            .await
            .map(|record| record.is_some())
            .map_err(|error| DirectoryError::Rejected {
                agent: agent.clone(),
                reason: error.to_string(),
            })
    }

    /// The owner the claim names answered `NotFound`: if the store keeps
    /// the agent, that owner is bringing it in (an adoption under way),
    /// so after a short pause the call is routed again (within the
    /// deadline; `Restarting` at once for a caller that will not wait);
    /// otherwise the agent is gone.
    async fn being_adopted(
        store: &FencedAgentStore,
        agent: &AgentId,
        envelope: &Envelope,
    ) -> Result<(), DirectoryError> {
        if !Self::stored(store, agent).await? {
            return Err(DirectoryError::NotFound(agent.clone()));
        }
        if envelope.fail_if_restarting {
            return Err(DirectoryError::Restarting(agent.clone()));
        }
        Self::pause(agent, envelope).await
    }

    /// A short pause before the call is routed again; `Timeout` at the
    /// deadline.
    async fn pause(agent: &AgentId, envelope: &Envelope) -> Result<(), DirectoryError> {
        let next = tokio::time::Instant::now() + ADOPTION_RETRY;
        if next >= envelope.deadline {
            tokio::time::sleep_until(envelope.deadline).await;
            return Err(DirectoryError::Timeout(agent.clone()));
        }
        tokio::time::sleep_until(next).await;
        Ok(())
    }

    /// After a call to an owner taken from [`Owners`]: forgets that owner
    /// when the answer says it may be one no more, and tells whether the
    /// call may go again. It may after `NotFound` or `Restarting` (nothing
    /// was taken); not after `NodeDown`, since an unreachable owner may
    /// have taken it: that answer is the caller's.
    fn forget_if_stale<T>(
        reach: &Reach,
        agent: &AgentId,
        answer: &Result<T, DirectoryError>,
    ) -> bool {
        let (stale, again) = match answer {
            Err(DirectoryError::NotFound(_) | DirectoryError::Restarting(_)) => (true, true),
            Err(DirectoryError::NodeDown { .. }) => (true, false),
            _ => (false, false),
        };
        if stale {
            reach.owners.forget(agent);
        }
        again
    }

    /// An ask for an agent this node does not hold.
    async fn ask_elsewhere(
        local: mabeam::Agents,
        reach: &Reach,
        agent: AgentId,
        envelope: Envelope,
    ) -> Result<Value, DirectoryError> {
        Self::elsewhere(
            local,
            reach,
            agent,
            envelope,
            |delivery, node, agent, envelope| delivery.ask(node, agent, envelope),
            |local, agent, envelope| local.ask(agent, envelope),
        )
        .await
    }

    /// A tell for an agent this node does not hold: `Ok` once the owner
    /// took it.
    async fn tell_elsewhere(
        local: mabeam::Agents,
        reach: &Reach,
        agent: AgentId,
        envelope: Envelope,
    ) -> Result<(), DirectoryError> {
        Self::elsewhere(
            local,
            reach,
            agent,
            envelope,
            |delivery, node, agent, envelope| delivery.tell(node, agent, envelope),
            |local, agent, envelope| Box::pin(std::future::ready(local.cast(agent, envelope))),
        )
        .await
    }

    /// A call for an agent this node does not hold (see the module docs):
    /// `remote` carries it to a member, `here` to this node's agent once
    /// it is brought in here.
    async fn elsewhere<T>(
        local: mabeam::Agents,
        reach: &Reach,
        agent: AgentId,
        envelope: Envelope,
        remote: impl Fn(
            &ConnectionManager,
            &str,
            &AgentId,
            Envelope,
        ) -> BoxFuture<'static, Result<T, DirectoryError>>,
        here: impl FnOnce(
            &mabeam::Agents,
            &AgentId,
            Envelope,
        ) -> BoxFuture<'static, Result<T, DirectoryError>>,
    ) -> Result<T, DirectoryError> {
        let Some(store) = &reach.ownership else {
            for node in Self::members_in_turn(reach, &agent) {
                match remote(&reach.delivery, &node, &agent, envelope.clone()).await {
                    Err(DirectoryError::NotFound(_) | DirectoryError::NodeDown { .. }) => continue,
                    other => return other,
                }
            }
            return Err(DirectoryError::NotFound(agent));
        };
        let mut fresh = false;
        loop {
            match Self::route(reach, store, &agent, fresh).await? {
                Route::To { node, cached } => {
                    let answer = remote(&reach.delivery, &node, &agent, envelope.clone()).await;
                    if cached && Self::forget_if_stale(reach, &agent, &answer) {
                        fresh = true;
                        continue;
                    }
                    match answer {
                        Err(DirectoryError::NotFound(_)) => {
                            Self::being_adopted(store, &agent, &envelope).await?;
                        }
                        // The owner is handing it over: to the next owner.
                        Err(DirectoryError::Restarting(_)) if !envelope.fail_if_restarting => {
                            Self::pause(&agent, &envelope).await?;
                        }
                        answer => return answer,
                    }
                }
                Route::Here => {
                    Self::wait_here(store, &local, &agent, &envelope).await?;
                    return here(&local, &agent, envelope).await;
                }
            }
        }
    }
}

impl AgentDirectory for ClusterDirectory {
    fn agent(&self, id: &AgentId) -> Option<ProcessHandle> {
        self.local.agent(id)
    }

    fn info(&self, id: &AgentId) -> Option<AgentInfo> {
        self.local.info(id)
    }

    fn agents(&self) -> Vec<AgentInfo> {
        self.local.agents()
    }

    fn ask(
        &self,
        id: &AgentId,
        envelope: Envelope,
    ) -> BoxFuture<'static, Result<Value, DirectoryError>> {
        let local = self.local.clone();
        let reach = self.reach.clone();
        let id = id.clone();
        Box::pin(async move {
            // Outside a cluster, the local path alone (no copy kept).
            let Some(reach) = reach.get() else {
                return local.ask(&id, envelope).await;
            };
            match local.ask(&id, envelope.clone()).await {
                Err(DirectoryError::NotFound(_)) => {
                    Self::ask_elsewhere(local, reach, id, envelope).await
                }
                answer => answer,
            }
        })
    }

    fn cast(&self, id: &AgentId, envelope: Envelope) -> Result<(), DirectoryError> {
        if self.reach.get().is_none() {
            return self.local.cast(id, envelope);
        }
        match self.local.cast(id, envelope.clone()) {
            Err(DirectoryError::NotFound(_)) => {
                // Unacknowledged by contract: sent in the background.
                let tell = self.tell(id, envelope);
                tokio::spawn(async move {
                    let _ = tell.await;
                });
                Ok(())
            }
            taken => taken,
        }
    }

    fn tell(
        &self,
        id: &AgentId,
        envelope: Envelope,
    ) -> BoxFuture<'static, Result<(), DirectoryError>> {
        let local = self.local.clone();
        let reach = self.reach.clone();
        let id = id.clone();
        Box::pin(async move {
            let Some(reach) = reach.get() else {
                return local.cast(&id, envelope);
            };
            match local.cast(&id, envelope.clone()) {
                Err(DirectoryError::NotFound(_)) => {
                    Self::tell_elsewhere(local, reach, id, envelope).await
                }
                taken => taken,
            }
        })
    }

    fn subscribe(&self) -> AgentStatusChanges {
        self.local.subscribe()
    }
}

/// The HTTP error for a call's failure: `NodeDown`, `Restarting` and
/// `Timeout` each with their own code.
pub(crate) fn api_error(agent: &str, error: DirectoryError) -> ApiError {
    match error {
        DirectoryError::NotFound(_) => ApiError::AgentNotFound(agent.to_owned()),
        DirectoryError::NodeDown { node, reason, .. } => ApiError::AgentNodeDown {
            agent: agent.to_owned(),
            node: node.to_string(),
            reason,
        },
        DirectoryError::Restarting(_) => ApiError::AgentRestarting(agent.to_owned()),
        DirectoryError::Timeout(_) => ApiError::AgentTimeout(agent.to_owned()),
        other => ApiError::AgentFailed {
            agent: agent.to_owned(),
            reason: other.to_string(),
        },
    }
}

/// The directory the API reaches agents through: the cluster's.
fn directory(state: &ApiState) -> Result<Arc<dyn AgentDirectory>, ApiError> {
    state
        .system
        .directory()
        .cloned()
        .ok_or(ApiError::Unavailable("agent_registry"))
}

/// A tell's body (`POST /api/agents/{id}/tell`), and a broadcast's with
/// `ids` (`POST /api/broadcast`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Tell {
    #[serde(default)]
    ids: Option<Vec<String>>,
    protocol: String,
    #[serde(default)]
    body: Value,
    #[serde(default = "default_tell_ms")]
    timeout_ms: u64,
}

fn default_tell_ms() -> u64 {
    1000
}

fn tell_envelope(request: &Tell) -> Result<Envelope, ApiError> {
    if request.timeout_ms == 0 || request.timeout_ms > crate::http::MAX_WAIT_MS {
        return Err(ApiError::InvalidBody(format!(
            "timeout_ms must be in 1..={} ms, not {}",
            crate::http::MAX_WAIT_MS,
            request.timeout_ms
        )));
    }
    Ok(Envelope::new(
        request.protocol.clone(),
        request.body.clone(),
        std::time::Duration::from_millis(request.timeout_ms),
    ))
}

/// `POST /api/agents/{id}/tell`: 202 once the agent's owner (this node
/// or another) took the message into the agent's mailbox.
pub(crate) async fn tell(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let request: Tell = crate::http::body(&bytes)?;
    if request.ids.is_some() {
        return Err(ApiError::InvalidBody(
            "ids belong to POST /api/broadcast".to_owned(),
        ));
    }
    let envelope = tell_envelope(&request)?;
    directory(&state)?
        .tell(&AgentId::new(id.as_str()), envelope)
        .await
        .map_err(|e| api_error(&id, e))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"id": id, "accepted": true})),
    )
        .into_response())
}

/// `POST /api/broadcast` (`{"ids": [...], "protocol", "body",
/// "timeout_ms"}`): a tell to each agent, wherever it lives, all at
/// once; 200 with the ids whose owners took it and, for the others, the
/// error each got (`{id, code, error, message}`).
pub(crate) async fn broadcast(
    State(state): State<ApiState>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let request: Tell = crate::http::body(&bytes)?;
    let Some(ids) = request.ids.clone().filter(|ids| !ids.is_empty()) else {
        return Err(ApiError::InvalidBody(
            "ids must name at least one agent".to_owned(),
        ));
    };
    let envelope = tell_envelope(&request)?;
    let directory = directory(&state)?;
    let tells = ids.iter().map(|id| {
        let told = directory.tell(&AgentId::new(id.as_str()), envelope.clone());
        async move { (id, told.await) }
    });
    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    for (id, told) in futures::future::join_all(tells).await {
        match told {
            Ok(()) => accepted.push(json!(id)),
            Err(error) => {
                let error = api_error(id, error);
                refused.push(json!({
                    "id": id,
                    "code": error.code(),
                    "error": error.name(),
                    "message": error.to_string(),
                }));
            }
        }
    }
    Ok(Json(json!({"accepted": accepted, "refused": refused})).into_response())
}

/// A node-level [`ADOPT`] request: brings the agents handed over (already
/// claimed for this member) into the registry from their checkpoints.
pub(crate) async fn adopt_request(state: &ApiState, envelope: Envelope) -> Value {
    let ids: Vec<AgentId> = envelope.body["ids"]
        .as_array()
        .map(|ids| {
            ids.iter()
                .filter_map(Value::as_str)
                .map(AgentId::new)
                .collect()
        })
        .unwrap_or_default();
    let Some(registry) = state.system.agents().and_then(|agents| agents.registry()) else {
        return json!({"error": "no agent registry"});
    };
    let adopted = registry.adopt(ids).await;
    json!({
        "restored": adopted.restored,
        "started": adopted.started,
        "failed": adopted.failed,
    })
}

/// How long a hand-over's adoption request may take.
const ADOPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Hands this node's agents over before it stops (SIGTERM): announces
/// `leaving` (no more placements here), stops every agent with its final
/// checkpoint (the store still says it runs), then for each survivor (the
/// other `up` members; each agent goes to its rendezvous owner among
/// them) moves the claims to it in one compare-and-set and asks it over
/// the node connection to adopt them from their checkpoints. No survivor
/// waits for a failure detector: the agents answer again as soon as they
/// are adopted. Without a shared store or survivors, nothing is handed
/// over (the agents stop with the node, as before).
pub(crate) async fn hand_over(reach: &Reach, agents: &mabeam::Agents) {
    let Some(store) = &reach.ownership else {
        return;
    };
    let me = reach.membership.local();
    let survivors: Vec<_> = reach
        .membership
        .live()
        .into_iter()
        .filter(|m| m.node != me.node)
        .collect();
    if survivors.is_empty() {
        return;
    }
    let started = std::time::Instant::now();
    let _ = reach.membership.set_state(MemberState::Leaving).await;
    // No tell is taken from now on (those taken are handled before the
    // agents' stops, queued behind them in their mailboxes).
    *reach.gate.closed.write() = true;
    agents.stop_all().await;
    let (node, generation) = store.member();
    let claims = match store.store().claims_of(&node, generation).await {
        Ok(claims) => claims,
        Err(error) => {
            tracing::error!(%error, "hand-over: this node's claims cannot be read");
            return;
        }
    };
    let names: Vec<&str> = survivors.iter().map(|m| &*m.node).collect();
    let handed = survivors.iter().map(|survivor| {
        let theirs: Vec<_> = claims
            .iter()
            .filter(|c| rendezvous_owner(&c.agent, names.iter().copied()) == Some(&*survivor.node))
            .cloned()
            .collect();
        async move {
            if theirs.is_empty() {
                return 0;
            }
            let won = match store
                .store()
                .take_over(&theirs, &survivor.node, survivor.generation)
                .await
            {
                Ok(won) => won,
                Err(error) => {
                    tracing::error!(to = %survivor.node, %error, "hand-over: claims not moved");
                    return 0;
                }
            };
            let ids: Vec<&str> = won.iter().map(|c| c.agent.as_str()).collect();
            let envelope = Envelope::new(ADOPT, json!({ "ids": ids }), ADOPT_TIMEOUT);
            match reach
                .delivery
                .ask(&survivor.node, &AgentId::new(""), envelope)
                .await
            {
                Ok(answer) => tracing::info!(to = %survivor.node, %answer, "hand-over: agents adopted"),
                // Claimed by the survivor: it (or its next generation's
                // recovery) starts them.
                Err(error) => {
                    tracing::error!(to = %survivor.node, %error, "hand-over: adoption not confirmed")
                }
            }
            won.len()
        }
    });
    let moved: usize = futures::future::join_all(handed).await.into_iter().sum();
    tracing::info!(
        moved,
        claims = claims.len(),
        took_ms = started.elapsed().as_millis() as u64,
        "hand-over: agents handed to the survivors"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The owners cache answers what it was told, forgets on request,
    /// and never holds more than its capacity.
    #[test]
    fn owners_are_remembered_forgotten_and_bounded() {
        let owners = Owners::default();
        let x = AgentId::new("x");
        owners.remember(&x, "b@local".into(), 3);
        assert_eq!(owners.get(&x), Some((Arc::from("b@local"), 3)));
        owners.remember(&x, "c@local".into(), 1);
        assert_eq!(owners.get(&x), Some((Arc::from("c@local"), 1)));
        owners.forget(&x);
        assert_eq!(owners.get(&x), None);
        for i in 0..=OWNERS_CAPACITY {
            owners.remember(&AgentId::new(format!("a{i}")), "b@local".into(), 1);
        }
        assert!(owners.by_agent.lock().len() <= OWNERS_CAPACITY);
        let last = AgentId::new(format!("a{OWNERS_CAPACITY}"));
        assert!(owners.get(&last).is_some(), "the newest entry is kept");
    }

    /// `NodeDown`, `Restarting` and `Timeout` reach the HTTP caller each
    /// with its own status and code.
    #[test]
    fn typed_call_errors_keep_their_codes_over_http() {
        let agent = AgentId::new("x");
        let cases = [
            (
                DirectoryError::NodeDown {
                    agent: agent.clone(),
                    node: "c@h".into(),
                    reason: "gone".into(),
                },
                503,
                9141,
                "agent_node_down",
            ),
            (
                DirectoryError::Restarting(agent.clone()),
                503,
                9142,
                "agent_restarting",
            ),
            (
                DirectoryError::Timeout(agent.clone()),
                504,
                9143,
                "agent_timeout",
            ),
            (
                DirectoryError::NotFound(agent.clone()),
                404,
                9107,
                "agent_not_found",
            ),
        ];
        for (error, status, code, name) in cases {
            let error = api_error("x", error);
            assert_eq!(error.status().as_u16(), status, "{error}");
            assert_eq!(error.code(), code, "{error}");
            assert_eq!(error.name(), name, "{error}");
        }
    }
}
