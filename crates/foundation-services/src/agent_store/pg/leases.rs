//! Node leases on PostgreSQL: the table `node_leases`, one row per node
//! incarnation (node, generation), as Orleans keeps its membership table.
//!
//! A member holds a [`NodeLease`] and renews it every fraction of its
//! length on a connection of its own (a pool busy with agents' reads
//! cannot delay it). Every expiry is the server's `now()` plus the lease:
//! no node's clock is compared with another's. A survivor that sees a
//! member down [marks it dead](PostgresAgentStore::mark_dead) (its
//! renewals are refused from then on, so its expiry stops moving) and
//! takes over its claims only once [that expiry has
//! passed](PostgresAgentStore::lease_expired) by the server's clock. The
//! member stops its agents before then, by its own clock, counted from
//! when it sent its last renewal that succeeded (which is before the
//! server's `now()` of that renewal).

use std::{sync::Arc, time::Duration};

use mabeam_supervision_core::cluster::OwnershipError;
use tokio_postgres::Client;

use super::PostgresAgentStore;
use crate::postgres;

/// Creates or renews the row, unless it is marked dead.
const RENEW: &str = "INSERT INTO node_leases AS l (node, generation, expires_at) \
     VALUES ($1, $2, now() + $3::bigint * interval '1 millisecond') \
     ON CONFLICT (node, generation) DO UPDATE SET expires_at = excluded.expires_at \
     WHERE NOT l.dead RETURNING 1";

fn unavailable(error: &tokio_postgres::Error) -> OwnershipError {
    OwnershipError::Unavailable(postgres::detail(error))
}

fn as_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// What a renewal found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// The lease runs for its length again from the server's `now()`.
    Renewed,
    /// The row is marked dead: another member declared this one down and
    /// will take its agents over; this incarnation must stop them.
    Dead,
}

/// One member's lease, renewed on a connection of its own (opened again
/// after a failure); every expiry is the server's `now()` plus the
/// lease, so no node's clock is compared with another's.
#[derive(Debug)]
pub struct NodeLease {
    store: PostgresAgentStore,
    node: Arc<str>,
    generation: u64,
    length: Duration,
    client: Option<Client>,
}

impl NodeLease {
    /// The member holding it.
    pub fn member(&self) -> (Arc<str>, u64) {
        (self.node.clone(), self.generation)
    }

    /// The lease's length.
    pub fn length(&self) -> Duration {
        self.length
    }

    /// Renews the lease (creates its row the first time): it runs for its
    /// length from the server's `now()`, unless the row is marked dead.
    /// A server that cannot be reached is
    /// [`Unavailable`](OwnershipError::Unavailable); the caller bounds
    /// how long it waits.
    pub async fn renew(&mut self) -> Result<Renewal, OwnershipError> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            let driver = self
                .store
                .inner
                .config
                .driver_config()
                .map_err(OwnershipError::Unavailable)?;
            let client = postgres::connect(&driver)
                .await
                .map_err(|e| unavailable(&e))?;
            self.client = Some(client);
        }
        let Some(client) = self.client.as_ref() else {
            return Err(OwnershipError::Unavailable("no connection".into()));
        };
        let result = client
            .query_opt(
                RENEW,
                &[
                    &&*self.node as &(dyn tokio_postgres::types::ToSql + Sync),
                    &as_i64(self.generation),
                    &millis(self.length),
                ],
            )
            .await;
        match result {
            Ok(Some(_)) => Ok(Renewal::Renewed),
            Ok(None) => Ok(Renewal::Dead),
            Err(error) => {
                // Opened again at the next renewal.
                self.client = None;
                Err(unavailable(&error))
            }
        }
    }
}

impl PostgresAgentStore {
    /// The lease of member (`node`, `generation`), `length` long; not
    /// taken until its first [`renew`](NodeLease::renew).
    pub fn lease(&self, node: impl Into<Arc<str>>, generation: u64, length: Duration) -> NodeLease {
        NodeLease {
            store: self.clone(),
            node: node.into(),
            generation,
            length,
            client: None,
        }
    }

    /// Marks member (`node`, `generation`)'s lease dead, so that it is
    /// renewed no more, and answers how long it still runs by the
    /// server's clock (zero once expired); `None` if the member never
    /// held a lease.
    pub async fn mark_dead(
        &self,
        node: &str,
        generation: u64,
    ) -> Result<Option<Duration>, OwnershipError> {
        let client = self.owners_client().await?;
        let row = client
            .query_opt(
                "UPDATE node_leases SET dead = true WHERE node = $1 AND generation = $2 \
                 RETURNING greatest(0, ceil(extract(epoch FROM expires_at - now()) * 1000))::bigint",
                &[&node as &(dyn tokio_postgres::types::ToSql + Sync), &as_i64(generation)],
            )
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(row.map(|row| Duration::from_millis(row.get::<_, i64>(0).max(0) as u64)))
    }

    /// Records that (`suspecter`, `suspecter_generation`) sees member
    /// (`node`, `generation`) down (again: the time is renewed), and
    /// answers the votes against it and the voters: how many members
    /// whose leases run suspected it within `window` (by the server's
    /// clock), and how many members' leases run (it included, while its
    /// own runs). It may be declared dead once votes are more than half
    /// the voters.
    pub async fn suspect(
        &self,
        node: &str,
        generation: u64,
        suspecter: &str,
        suspecter_generation: u64,
        window: Duration,
    ) -> Result<(usize, usize), OwnershipError> {
        let client = self.owners_client().await?;
        client
            .execute(
                "INSERT INTO node_suspicions (node, generation, suspecter, suspecter_generation) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (node, generation, suspecter, \
                 suspecter_generation) DO UPDATE SET at = now()",
                &[
                    &node as &(dyn tokio_postgres::types::ToSql + Sync),
                    &as_i64(generation),
                    &suspecter,
                    &as_i64(suspecter_generation),
                ],
            )
            .await
            .map_err(|e| unavailable(&e))?;
        let row = client
            .query_one(
                "SELECT (SELECT count(*) FROM node_suspicions s JOIN node_leases l \
                 ON l.node = s.suspecter AND l.generation = s.suspecter_generation \
                 WHERE s.node = $1 AND s.generation = $2 AND NOT l.dead \
                 AND l.expires_at > now() \
                 AND s.at > now() - $3::bigint * interval '1 millisecond'), \
                 (SELECT count(*) FROM node_leases WHERE NOT dead AND expires_at > now())",
                &[
                    &node as &(dyn tokio_postgres::types::ToSql + Sync),
                    &as_i64(generation),
                    &millis(window),
                ],
            )
            .await
            .map_err(|e| unavailable(&e))?;
        let votes: i64 = row.get(0);
        let voters: i64 = row.get(1);
        Ok((votes.max(0) as usize, voters.max(0) as usize))
    }

    /// Ends member (`node`, `generation`)'s lease now (a node that
    /// stopped, its agents stopped first): marked dead and expired, so
    /// survivors take its claims over without waiting it out.
    pub async fn release_lease(&self, node: &str, generation: u64) -> Result<(), OwnershipError> {
        let client = self.owners_client().await?;
        client
            .execute(
                "UPDATE node_leases SET dead = true, expires_at = least(expires_at, now()) \
                 WHERE node = $1 AND generation = $2",
                &[
                    &node as &(dyn tokio_postgres::types::ToSql + Sync),
                    &as_i64(generation),
                ],
            )
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(())
    }

    /// Whether member (`node`, `generation`)'s lease has expired by the
    /// server's clock (`true` if it never held one).
    pub async fn lease_expired(&self, node: &str, generation: u64) -> Result<bool, OwnershipError> {
        let client = self.owners_client().await?;
        let row = client
            .query_opt(
                "SELECT expires_at <= now() FROM node_leases WHERE node = $1 AND generation = $2",
                &[
                    &node as &(dyn tokio_postgres::types::ToSql + Sync),
                    &as_i64(generation),
                ],
            )
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(row.is_none_or(|row| row.get::<_, bool>(0)))
    }

    /// The members whose leases run now (not dead, not expired by the
    /// server's clock): the voters of a decision to declare one dead.
    pub async fn leased_members(&self) -> Result<Vec<(Arc<str>, u64)>, OwnershipError> {
        self.members_of(
            "SELECT node, generation FROM node_leases \
             WHERE NOT dead AND expires_at > now() ORDER BY node, generation",
        )
        .await
    }

    /// The members that still hold claims though their leases have
    /// expired by the server's clock (members dead before any survivor
    /// saw them go): whose claims are free to take over.
    pub async fn expired_holders(&self) -> Result<Vec<(Arc<str>, u64)>, OwnershipError> {
        self.members_of(
            "SELECT DISTINCT o.node, o.generation FROM agent_owners o \
             JOIN node_leases l ON l.node = o.node AND l.generation = o.generation \
             WHERE l.expires_at <= now() ORDER BY o.node, o.generation",
        )
        .await
    }

    /// The (node, generation) rows `query` selects.
    async fn members_of(&self, query: &str) -> Result<Vec<(Arc<str>, u64)>, OwnershipError> {
        let client = self.owners_client().await?;
        let rows = client
            .query(query, &[])
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(rows
            .iter()
            .map(|row| {
                let node: String = row.get(0);
                (node.into(), row.get::<_, i64>(1) as u64)
            })
            .collect())
    }
}
