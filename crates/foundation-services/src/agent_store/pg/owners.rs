//! Fenced ownership on PostgreSQL: supervision-core's [`Ownership`] in the
//! table `agent_owners` beside `agents`, and [`FencedAgentStore`], one
//! member's view of the shared agent table whose writes are refused once
//! that member no longer owns the agent.
//!
//! A claim is one statement (`INSERT ... ON CONFLICT DO UPDATE ... WHERE`
//! the compare-and-set's condition): PostgreSQL locks the agent's row for
//! it, so two members racing for one agent cannot both win, and each
//! change of owner raises the epoch. A fenced write locks the same row
//! (`FOR SHARE`) in its own transaction before it writes, so a claim
//! waits for it, and a write after a takeover sees the new owner and is
//! refused ([`AgentStoreError::Fenced`]).

use std::{collections::HashMap, fmt, sync::Arc};

use futures::future::{BoxFuture, FutureExt};
use mabeam_supervision_core::{
    AgentId, AgentRecord, AgentStore, AgentStoreError, AgentWrite, LoadedAgent,
    cluster::{Claim, Ownership, OwnershipError},
};
use tokio_postgres::Row;

use super::PostgresAgentStore;
use crate::postgres;

/// The claim statement: granted when no one owns the agent, when the same
/// node's older generation does, or when the current claim is exactly the
/// one the caller replaces ($4, $5, $6).
const CLAIM: &str = "INSERT INTO agent_owners AS o (agent, node, generation, epoch) \
     VALUES ($1, $2, $3, 1) \
     ON CONFLICT (agent) DO UPDATE SET node = excluded.node, \
     generation = excluded.generation, epoch = o.epoch + 1 \
     WHERE o.node IS NULL \
     OR (o.node = excluded.node AND o.generation < excluded.generation) \
     OR (o.node = $4 AND o.generation = $5 AND o.epoch = $6) \
     RETURNING node, generation, epoch";

/// The same for many agents at once, none replaced: what a node runs
/// before it recovers a page of agents. An older generation of the same
/// node that the others declared dead (its lease marked) is not taken
/// from: they take its agents over, and a node that restarts on the far
/// side of a partition must not pull them there.
const CLAIM_MANY: &str = "INSERT INTO agent_owners AS o (agent, node, generation, epoch) \
     SELECT a, $2, $3, 1 FROM unnest($1::text[]) AS a \
     ON CONFLICT (agent) DO UPDATE SET node = excluded.node, \
     generation = excluded.generation, epoch = o.epoch + 1 \
     WHERE o.node IS NULL \
     OR (o.node = excluded.node AND o.generation < excluded.generation \
     AND NOT EXISTS (SELECT 1 FROM node_leases l \
     WHERE l.node = o.node AND l.generation = o.generation AND l.dead))";

/// Which of the agents (node, generation) owns now.
const HELD: &str = "SELECT agent, epoch FROM agent_owners \
     WHERE agent = ANY($1::text[]) AND node = $2 AND generation = $3";

fn unavailable(error: &tokio_postgres::Error) -> OwnershipError {
    OwnershipError::Unavailable(postgres::detail(error))
}

fn as_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The claim in `row` (node, generation, epoch), `None` if released.
fn claim_of(agent: &AgentId, row: &Row) -> Result<Option<Claim>, OwnershipError> {
    let corrupt = |e: tokio_postgres::Error| OwnershipError::Unavailable(e.to_string());
    let node: Option<String> = row.try_get(0).map_err(corrupt)?;
    let generation: Option<i64> = row.try_get(1).map_err(corrupt)?;
    let epoch: i64 = row.try_get(2).map_err(corrupt)?;
    Ok(match (node, generation) {
        (Some(node), Some(generation)) => Some(Claim {
            agent: agent.clone(),
            node: node.into(),
            generation: generation as u64,
            epoch: epoch as u64,
        }),
        _ => None,
    })
}

impl PostgresAgentStore {
    pub(super) async fn owners_client(&self) -> Result<deadpool_postgres::Object, OwnershipError> {
        Self::reader(&self.inner)
            .await
            .map_err(|e| OwnershipError::Unavailable(e.to_string()))
    }

    async fn claim_async(
        self,
        agent: AgentId,
        node: Arc<str>,
        generation: u64,
        replacing: Option<Claim>,
    ) -> Result<Claim, OwnershipError> {
        if agent.as_str().contains('\0') || node.contains('\0') {
            return Err(OwnershipError::Unavailable(
                "an agent id or node name holds a NUL byte".into(),
            ));
        }
        let client = self.owners_client().await?;
        let claim = client
            .prepare_cached(CLAIM)
            .await
            .map_err(|e| unavailable(&e))?;
        let current = client
            .prepare_cached("SELECT node, generation, epoch FROM agent_owners WHERE agent = $1")
            .await
            .map_err(|e| unavailable(&e))?;
        // A claim replacing another agent's claim replaces nothing.
        let replacing = replacing.filter(|r| r.agent == agent);
        let (r_node, r_generation, r_epoch) = match &replacing {
            Some(r) => (
                Some(r.node.to_string()),
                Some(as_i64(r.generation)),
                Some(as_i64(r.epoch)),
            ),
            None => (None, None, None),
        };
        // The compare-and-set, then, if it was not granted, why: the
        // current claim read after it. A release in between (no owner
        // now) is tried again.
        for _ in 0..3 {
            let granted = client
                .query_opt(
                    &claim,
                    &[
                        &agent.as_str(),
                        &&*node,
                        &as_i64(generation),
                        &r_node,
                        &r_generation,
                        &r_epoch,
                    ],
                )
                .await
                .map_err(|e| unavailable(&e))?;
            if let Some(row) = granted {
                return claim_of(&agent, &row)?
                    .ok_or_else(|| OwnershipError::Unavailable("a claim without owner".into()));
            }
            let row = client
                .query_opt(&current, &[&agent.as_str()])
                .await
                .map_err(|e| unavailable(&e))?;
            let Some(owner) = row.map(|row| claim_of(&agent, &row)).transpose()?.flatten() else {
                continue;
            };
            if owner.node == node && owner.generation == generation {
                return Ok(owner);
            }
            if owner.node == node && generation < owner.generation {
                return Err(OwnershipError::Stale { node, generation });
            }
            return Err(OwnershipError::Conflict { owner });
        }
        Err(OwnershipError::Unavailable(format!(
            "agent {agent}: its claim kept changing"
        )))
    }

    /// Every claim (node, `generation`) holds: what survivors take over
    /// when that member is seen down.
    pub async fn claims_of(
        &self,
        node: &str,
        generation: u64,
    ) -> Result<Vec<Claim>, OwnershipError> {
        let client = self.owners_client().await?;
        let rows = client
            .query(
                "SELECT agent, node, generation, epoch FROM agent_owners \
                 WHERE node = $1 AND generation = $2 ORDER BY agent",
                &[&node, &as_i64(generation)],
            )
            .await
            .map_err(|e| unavailable(&e))?;
        let mut claims = Vec::with_capacity(rows.len());
        for row in rows {
            let agent: String = row.try_get(0).map_err(|e| unavailable(&e))?;
            let generation: i64 = row.try_get(2).map_err(|e| unavailable(&e))?;
            let epoch: i64 = row.try_get(3).map_err(|e| unavailable(&e))?;
            claims.push(Claim {
                agent: AgentId::new(agent),
                node: node.into(),
                generation: generation as u64,
                epoch: epoch as u64,
            });
        }
        Ok(claims)
    }

    /// Claims every agent of `replacing` for (`node`, `generation`) in one
    /// statement, each only if its current claim is still the one given
    /// (a failover: the member that held them is down). Answers the claims
    /// granted; the others were taken meanwhile by someone else.
    pub async fn take_over(
        &self,
        replacing: &[Claim],
        node: &str,
        generation: u64,
    ) -> Result<Vec<Claim>, OwnershipError> {
        if replacing.is_empty() {
            return Ok(Vec::new());
        }
        let agents: Vec<&str> = replacing.iter().map(|c| c.agent.as_str()).collect();
        let nodes: Vec<&str> = replacing.iter().map(|c| &*c.node).collect();
        let generations: Vec<i64> = replacing.iter().map(|c| as_i64(c.generation)).collect();
        let epochs: Vec<i64> = replacing.iter().map(|c| as_i64(c.epoch)).collect();
        let client = self.owners_client().await?;
        let rows = client
            .query(
                "UPDATE agent_owners AS o SET node = $5, generation = $6, epoch = o.epoch + 1 \
                 FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]) \
                 AS r(agent, node, generation, epoch) \
                 WHERE o.agent = r.agent AND o.node = r.node \
                 AND o.generation = r.generation AND o.epoch = r.epoch \
                 RETURNING o.agent, o.epoch",
                &[
                    &agents,
                    &nodes,
                    &generations,
                    &epochs,
                    &node,
                    &as_i64(generation),
                ],
            )
            .await
            .map_err(|e| unavailable(&e))?;
        let mut claims = Vec::with_capacity(rows.len());
        for row in rows {
            let agent: String = row.try_get(0).map_err(|e| unavailable(&e))?;
            let epoch: i64 = row.try_get(1).map_err(|e| unavailable(&e))?;
            claims.push(Claim {
                agent: AgentId::new(agent),
                node: node.into(),
                generation,
                epoch: epoch as u64,
            });
        }
        Ok(claims)
    }

    /// Claims each of `agents` for (`node`, `generation`) unless another
    /// member owns it (none replaced); answers those it owns now, each
    /// with its claim's epoch.
    async fn claim_many(
        &self,
        agents: &[AgentId],
        node: &str,
        generation: u64,
    ) -> Result<HashMap<AgentId, u64>, AgentStoreError> {
        let ids: Vec<&str> = agents.iter().map(AgentId::as_str).collect();
        let client = Self::reader(&self.inner).await?;
        let fail = |e: tokio_postgres::Error| AgentStoreError::Storage(postgres::detail(&e));
        let claim = client.prepare_cached(CLAIM_MANY).await.map_err(fail)?;
        client
            .execute(&claim, &[&ids, &node, &as_i64(generation)])
            .await
            .map_err(fail)?;
        let held = client.prepare_cached(HELD).await.map_err(fail)?;
        let rows = client
            .query(&held, &[&ids, &node, &as_i64(generation)])
            .await
            .map_err(fail)?;
        rows.iter()
            .map(|row| {
                let agent = row.try_get::<_, String>(0).map_err(fail)?;
                let epoch = row.try_get::<_, i64>(1).map_err(fail)?;
                Ok((AgentId::new(agent), epoch as u64))
            })
            .collect()
    }

    /// Queues `write` fenced by `claim`: applied only while `claim` is
    /// still the agent's current one (its member and its epoch), or no
    /// one ever claimed the agent; else refused as
    /// [`AgentStoreError::Fenced`]. A member that lost an agent and won
    /// it back holds a newer claim: a write made under the older one is
    /// refused.
    pub fn write_claimed(
        &self,
        write: AgentWrite,
        claim: &Claim,
    ) -> BoxFuture<'static, Result<(), AgentStoreError>> {
        let fence = Some((claim.node.clone(), claim.generation, Some(claim.epoch)));
        self.write_fenced(write, fence)
    }

    /// This store as the member `node` sees it, its generation read by
    /// `generation` at each call (the node's incarnation is known only
    /// once its connections started). See [`FencedAgentStore`].
    pub fn fenced(
        &self,
        node: impl Into<Arc<str>>,
        generation: impl Fn() -> u64 + Send + Sync + 'static,
    ) -> FencedAgentStore {
        FencedAgentStore {
            store: self.clone(),
            node: node.into(),
            generation: Arc::new(generation),
            grants: Arc::default(),
        }
    }
}

impl Ownership for PostgresAgentStore {
    fn claim(
        &self,
        agent: &AgentId,
        node: &str,
        generation: u64,
        replacing: Option<&Claim>,
    ) -> BoxFuture<'static, Result<Claim, OwnershipError>> {
        self.clone()
            .claim_async(agent.clone(), node.into(), generation, replacing.cloned())
            .boxed()
    }

    fn owner(&self, agent: &AgentId) -> BoxFuture<'static, Result<Option<Claim>, OwnershipError>> {
        let (store, agent) = (self.clone(), agent.clone());
        async move {
            let client = store.owners_client().await?;
            let row = client
                .query_opt(
                    "SELECT node, generation, epoch FROM agent_owners WHERE agent = $1",
                    &[&agent.as_str()],
                )
                .await
                .map_err(|e| unavailable(&e))?;
            Ok(row.map(|row| claim_of(&agent, &row)).transpose()?.flatten())
        }
        .boxed()
    }

    fn release(
        &self,
        agent: &AgentId,
        node: &str,
        generation: u64,
    ) -> BoxFuture<'static, Result<(), OwnershipError>> {
        let (store, agent, node) = (self.clone(), agent.clone(), Arc::<str>::from(node));
        async move {
            let client = store.owners_client().await?;
            let released = client
                .execute(
                    "UPDATE agent_owners SET node = NULL, generation = NULL \
                     WHERE agent = $1 AND node = $2 AND generation = $3",
                    &[&agent.as_str(), &&*node, &as_i64(generation)],
                )
                .await
                .map_err(|e| unavailable(&e))?;
            if released == 0 {
                return Err(OwnershipError::NotOwner { agent, node });
            }
            Ok(())
        }
        .boxed()
    }
}

/// One member's view of a shared [`PostgresAgentStore`]: what a node of a
/// cluster gives its agent layer.
///
/// - Every write is fenced: applied only if this member (node and
///   current generation) owns the agent under the epoch this view was
///   granted it with (when this view claimed it), or no one ever claimed
///   it;
///   otherwise refused with [`AgentStoreError::Fenced`], checked in the
///   write's own transaction.
/// - [`load_page`](AgentStore::load_page) (the recovery) claims each
///   agent of the page first and answers only those this member owns
///   then: an agent another member owns is not run here, and a node
///   restarted under a newer generation takes its own agents back.
/// - `get` and `count` read the whole table.
#[derive(Clone)]
pub struct FencedAgentStore {
    store: PostgresAgentStore,
    node: Arc<str>,
    generation: Arc<dyn Fn() -> u64 + Send + Sync>,
    /// The epoch of the claim this view was last granted on each agent
    /// (by its claim, take-over or recovery): its writes carry it.
    grants: Arc<parking_lot::Mutex<HashMap<AgentId, u64>>>,
}

impl fmt::Debug for FencedAgentStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FencedAgentStore")
            .field("node", &self.node)
            .field("generation", &(self.generation)())
            .finish_non_exhaustive()
    }
}

impl FencedAgentStore {
    /// The shared store under this view.
    pub fn store(&self) -> &PostgresAgentStore {
        &self.store
    }

    /// The member whose writes this view fences.
    pub fn member(&self) -> (Arc<str>, u64) {
        (self.node.clone(), (self.generation)())
    }

    /// Claims `agent` for this member (none replaced; see
    /// [`Ownership::claim`]) and fences its later writes by the epoch
    /// granted.
    pub async fn claim(&self, agent: &AgentId) -> Result<Claim, OwnershipError> {
        let claim = self
            .store
            .claim(agent, &self.node, (self.generation)(), None)
            .await?;
        self.grants.lock().insert(agent.clone(), claim.epoch);
        Ok(claim)
    }

    /// [`PostgresAgentStore::take_over`] for this member; the later
    /// writes of the agents won are fenced by the epochs granted.
    pub async fn take_over(&self, replacing: &[Claim]) -> Result<Vec<Claim>, OwnershipError> {
        let won = self
            .store
            .take_over(replacing, &self.node, (self.generation)())
            .await?;
        let mut grants = self.grants.lock();
        for claim in &won {
            grants.insert(claim.agent.clone(), claim.epoch);
        }
        Ok(won)
    }

    /// The epoch this view was last granted on `agent`, if it claimed it.
    pub fn granted(&self, agent: &AgentId) -> Option<u64> {
        self.grants.lock().get(agent).copied()
    }
}

impl AgentStore for FencedAgentStore {
    fn write(&self, write: AgentWrite) -> BoxFuture<'static, Result<(), AgentStoreError>> {
        let granted = self.granted(write.id());
        let fence = Some((self.node.clone(), (self.generation)(), granted));
        self.store.write_fenced(write, fence)
    }

    fn get(
        &self,
        id: &AgentId,
    ) -> BoxFuture<'static, Result<Option<AgentRecord>, AgentStoreError>> {
        self.store.get(id)
    }

    /// Pages of the agents this member owns once it claimed them: the
    /// table is read a page at a time from `after`, each page claimed,
    /// until `limit` are owned or the table ends (a short page).
    fn load_page(
        &self,
        after: Option<&AgentId>,
        limit: usize,
    ) -> BoxFuture<'static, Result<Vec<LoadedAgent>, AgentStoreError>> {
        let view = self.clone();
        let mut after = after.cloned();
        async move {
            let generation = (view.generation)();
            let mut owned = Vec::new();
            loop {
                let page = view.store.load_page(after.as_ref(), limit).await?;
                let end = page.len() < limit;
                after = page.last().map(|row| row.id.clone());
                let ids: Vec<AgentId> = page.iter().map(|row| row.id.clone()).collect();
                let held = if ids.is_empty() {
                    HashMap::new()
                } else {
                    view.store.claim_many(&ids, &view.node, generation).await?
                };
                view.grants
                    .lock()
                    .extend(held.iter().map(|(id, epoch)| (id.clone(), *epoch)));
                owned.extend(page.into_iter().filter(|row| held.contains_key(&row.id)));
                if owned.len() >= limit || end {
                    // Claimed beyond the page: the next call starts after
                    // the last one answered and finds them held already.
                    owned.truncate(limit);
                    return Ok(owned);
                }
            }
        }
        .boxed()
    }

    fn count(&self) -> BoxFuture<'static, Result<u64, AgentStoreError>> {
        self.store.count()
    }

    fn get_many(
        &self,
        ids: &[AgentId],
    ) -> BoxFuture<'static, Result<Vec<LoadedAgent>, AgentStoreError>> {
        self.store.get_many(ids)
    }
}
