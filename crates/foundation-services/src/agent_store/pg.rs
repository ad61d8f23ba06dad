//! The agent store on PostgreSQL: supervision-core's [`AgentStore`]
//! contract in a table `agents` of the configured schema, for nodes that
//! share one store.
//!
//! # What is durable when
//!
//! A write is acknowledged once its transaction has committed with
//! `synchronous_commit=on` (its WAL flushed). One writer task per store
//! commits the writes queued together in one transaction (group commit),
//! in the order they were queued; each write first locks its agent's row
//! (`SELECT ... FOR UPDATE`), so fencing by generation holds between
//! nodes too. Reads use a pool of their own connections.
//!
//! # Faults
//!
//! A server that cannot be reached when the store opens is
//! [`AgentStoreError::Unavailable`] naming its URL without the password;
//! a schema migrated by a newer build is
//! [`AgentStoreError::NewerSchema`]. A connection lost before a commit's
//! answer fails the writes of its group with
//! [`AgentStoreError::Storage`] (they may or may not be stored, as the
//! contract says of `Storage`); the next group connects again.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use deadpool_postgres::{Object, Pool};
use futures::future::{BoxFuture, FutureExt};
use mabeam_supervision_core::{
    AgentId, AgentRecord, AgentStore, AgentStoreError, AgentWrite, LoadedAgent,
    agent_store::{AGENT_RECORD_VERSION, check_generation},
};
use parking_lot::Mutex;
use tokio::{sync::mpsc, task::JoinHandle};
use tokio_postgres::Row;

use super::{
    Reply, queue_write,
    read::status_text,
    record::{COLUMNS, Columns, decode},
};

mod leases;
mod owners;
use crate::postgres::{self, MigrateError, Migrations, PostgresConfig};
pub use leases::{NodeLease, Renewal};
pub use owners::FencedAgentStore;

/// The agent store's migrations, in order.
const MIGRATIONS: Migrations = Migrations {
    component: "agent_store",
    steps: &[
        include_str!("../../migrations/postgres/agent_store_0001_initial.sql"),
        include_str!("../../migrations/postgres/agent_store_0002_owners.sql"),
        include_str!("../../migrations/postgres/agent_store_0003_leases.sql"),
    ],
};

/// The most writes committed in one transaction.
const MAX_GROUP: usize = 1024;

/// The member a fenced write comes from (node, generation) and the epoch
/// of the claim it was granted, when known: the write is applied only if
/// that member owns the agent under that same epoch (a claim lost and
/// granted again has a higher one: a write from the older grant is
/// refused), or no one ever claimed it.
pub(super) type Fence = Option<(Arc<str>, u64, Option<u64>)>;

/// What the writer task is asked to do.
enum Request {
    /// Apply a write, fenced or not.
    Write(AgentWrite, Fence, Reply),
    /// Answer what was queued before, then stop.
    Close,
}

/// supervision-core's [`AgentStore`] on PostgreSQL: a write is
/// acknowledged once committed with `synchronous_commit=on`; one writer
/// task commits the writes queued together in one transaction, each
/// locking its agent's row first, so fencing by generation holds between
/// nodes. Clones share one open store.
#[derive(Debug, Clone)]
pub struct PostgresAgentStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: PostgresConfig,
    pool: Pool,
    requests: mpsc::UnboundedSender<Request>,
    writer: Mutex<Option<JoinHandle<()>>>,
    closed: AtomicBool,
}

fn unavailable(config: &PostgresConfig, error: &tokio_postgres::Error) -> AgentStoreError {
    AgentStoreError::Unavailable(format!(
        "PostgreSQL at {}: {}",
        config.redacted_url(),
        postgres::detail(error)
    ))
}

fn classify(config: &PostgresConfig, error: &tokio_postgres::Error) -> AgentStoreError {
    if postgres::is_unavailable(error) {
        unavailable(config, error)
    } else {
        AgentStoreError::Storage(postgres::detail(error))
    }
}

fn pool_error(config: &PostgresConfig, error: deadpool_postgres::PoolError) -> AgentStoreError {
    match error {
        deadpool_postgres::PoolError::Backend(e) => classify(config, &e),
        other => AgentStoreError::Unavailable(format!(
            "PostgreSQL at {}: {other}",
            config.redacted_url()
        )),
    }
}

impl PostgresAgentStore {
    /// Connects, creates or migrates the schema, and starts the writer.
    /// A server that does not answer is
    /// [`AgentStoreError::Unavailable`] naming its URL (without the
    /// password).
    pub async fn open(config: PostgresConfig) -> Result<PostgresAgentStore, AgentStoreError> {
        config.validate().map_err(AgentStoreError::Invalid)?;
        let driver = config.driver_config().map_err(AgentStoreError::Invalid)?;
        let pool = config.pool().map_err(AgentStoreError::Invalid)?;
        let mut client = postgres::connect(&driver).await.map_err(|e| {
            AgentStoreError::Unavailable(format!(
                "cannot reach PostgreSQL at {}: {}",
                config.redacted_url(),
                postgres::detail(&e)
            ))
        })?;
        postgres::migrate(&mut client, &config.schema, &MIGRATIONS)
            .await
            .map_err(|e| match e {
                MigrateError::Newer { found, supported } => {
                    AgentStoreError::NewerSchema { found, supported }
                }
                MigrateError::Driver(e) => classify(&config, &e),
            })?;
        drop(client);
        let (requests, queue) = mpsc::unbounded_channel();
        let writer = Writer {
            config: config.clone(),
            pool: pool.clone(),
            requests: queue,
        };
        let writer = tokio::spawn(writer.run());
        Ok(PostgresAgentStore {
            inner: Arc::new(Inner {
                config,
                pool,
                requests,
                writer: Mutex::new(Some(writer)),
                closed: AtomicBool::new(false),
            }),
        })
    }

    /// Commits the writes queued before, stops the writer and closes the
    /// connections; later calls are refused as `Unavailable`.
    pub async fn stop(&self) {
        self.inner.closed.store(true, Ordering::Release);
        let writer = self.inner.writer.lock().take();
        if let Some(writer) = writer {
            let _ = self.inner.requests.send(Request::Close);
            let _ = writer.await;
        }
        self.inner.pool.close();
    }

    /// Renamed to [`stop`](Self::stop), the one verb for stopping.
    #[deprecated(note = "renamed to `stop`")]
    pub async fn close(&self) {
        self.stop().await;
    }

    async fn reader(inner: &Inner) -> Result<Object, AgentStoreError> {
        if inner.closed.load(Ordering::Acquire) {
            return Err(AgentStoreError::Unavailable("the store is closed".into()));
        }
        inner
            .pool
            .get()
            .await
            .map_err(|e| pool_error(&inner.config, e))
    }

    fn query(
        &self,
        sql: String,
        params: Vec<Box<dyn tokio_postgres::types::ToSql + Sync + Send>>,
    ) -> BoxFuture<'static, Result<Vec<Row>, AgentStoreError>> {
        let inner = self.inner.clone();
        async move {
            let client = Self::reader(&inner).await?;
            let statement = client
                .prepare_cached(&sql)
                .await
                .map_err(|e| classify(&inner.config, &e))?;
            let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
                .iter()
                .map(|p| &**p as &(dyn tokio_postgres::types::ToSql + Sync))
                .collect();
            client
                .query(&statement, &params)
                .await
                .map_err(|e| classify(&inner.config, &e))
        }
        .boxed()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(writer) = self.writer.lock().take() {
            writer.abort();
        }
        self.pool.close();
    }
}

/// Checks what PostgreSQL text cannot hold (a NUL byte), before the write
/// reaches the queue: bad input changes nothing.
fn check_text(write: &AgentWrite) -> Result<(), AgentStoreError> {
    let nul = |what: &str, text: &str| {
        if text.contains('\0') {
            Err(AgentStoreError::Invalid(format!("{what} holds a NUL byte")))
        } else {
            Ok(())
        }
    };
    nul("agent id", write.id().as_str())?;
    if let AgentWrite::Register { registration, .. } = write {
        nul("kind", &registration.kind)?;
    }
    Ok(())
}

impl PostgresAgentStore {
    /// Queues `write` for the writer, `fence` checked in its transaction.
    pub(super) fn write_fenced(
        &self,
        write: AgentWrite,
        fence: Fence,
    ) -> BoxFuture<'static, Result<(), AgentStoreError>> {
        let checked = write.validate().and_then(|()| check_text(&write));
        queue_write(checked, &self.inner.closed, |reply| {
            self.inner
                .requests
                .send(Request::Write(write, fence, reply))
                .is_ok()
        })
    }
}

impl AgentStore for PostgresAgentStore {
    fn write(&self, write: AgentWrite) -> BoxFuture<'static, Result<(), AgentStoreError>> {
        self.write_fenced(write, None)
    }

    fn get(
        &self,
        id: &AgentId,
    ) -> BoxFuture<'static, Result<Option<AgentRecord>, AgentStoreError>> {
        let rows = self.query(
            format!("SELECT {COLUMNS} FROM agents WHERE id = $1"),
            vec![Box::new(id.as_str().to_owned())],
        );
        async move {
            let rows = rows.await?;
            rows.first().map(|row| decode(row).record).transpose()
        }
        .boxed()
    }

    /// One query for all of them.
    fn get_many(
        &self,
        ids: &[AgentId],
    ) -> BoxFuture<'static, Result<Vec<LoadedAgent>, AgentStoreError>> {
        let ids: Vec<String> = ids.iter().map(|id| id.as_str().to_owned()).collect();
        let rows = self.query(
            format!("SELECT {COLUMNS} FROM agents WHERE id = ANY($1)"),
            vec![Box::new(ids)],
        );
        async move { Ok(rows.await?.iter().map(decode).collect()) }.boxed()
    }

    fn load_page(
        &self,
        after: Option<&AgentId>,
        limit: usize,
    ) -> BoxFuture<'static, Result<Vec<LoadedAgent>, AgentStoreError>> {
        let after = after.map(|id| id.as_str().to_owned()).unwrap_or_default();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.query(
            format!("SELECT {COLUMNS} FROM agents WHERE id > $1 ORDER BY id LIMIT $2"),
            vec![Box::new(after), Box::new(limit)],
        );
        async move { Ok(rows.await?.iter().map(decode).collect()) }.boxed()
    }

    fn count(&self) -> BoxFuture<'static, Result<u64, AgentStoreError>> {
        let rows = self.query("SELECT count(*) FROM agents".into(), Vec::new());
        async move {
            let rows = rows.await?;
            let count: i64 = rows
                .first()
                .map(|row| row.get(0))
                .ok_or_else(|| AgentStoreError::Storage("no count".into()))?;
            Ok(count as u64)
        }
        .boxed()
    }
}

impl Columns for Row {
    fn id(&self) -> Result<String, String> {
        self.try_get(0).map_err(|e| e.to_string())
    }

    fn record_version(&self) -> Result<i64, String> {
        self.try_get::<_, i32>(1)
            .map(i64::from)
            .map_err(|e| e.to_string())
    }

    fn int(&self, index: usize) -> Result<i64, String> {
        self.try_get(index).map_err(|e| e.to_string())
    }

    fn with_text<T>(&self, index: usize, read: impl FnOnce(&str) -> T) -> Result<T, String> {
        self.try_get::<_, &str>(index)
            .map(read)
            .map_err(|e| e.to_string())
    }

    fn passivated(&self) -> Result<bool, String> {
        self.try_get(9).map_err(|e| format!("passivated: {e}"))
    }

    fn opt_int(&self, index: usize) -> Result<Option<i64>, String> {
        self.try_get(index).map_err(|e| e.to_string())
    }

    fn opt_bytes(&self, index: usize) -> Result<Option<Vec<u8>>, String> {
        self.try_get(index).map_err(|e| e.to_string())
    }
}

/// The writer task: the queued writes, a group per transaction.
struct Writer {
    config: PostgresConfig,
    pool: Pool,
    requests: mpsc::UnboundedReceiver<Request>,
}

impl Writer {
    async fn run(mut self) {
        while let Some(first) = self.requests.recv().await {
            let Request::Write(write, fence, reply) = first else {
                return;
            };
            let mut group = vec![(write, fence, reply)];
            let mut stop = false;
            while group.len() < MAX_GROUP {
                match self.requests.try_recv() {
                    Ok(Request::Write(write, fence, reply)) => group.push((write, fence, reply)),
                    Ok(Request::Close) => {
                        stop = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            {
                self.commit_group(group).await;
            }
            if stop {
                return;
            }
        }
    }

    async fn commit_group(&mut self, group: Vec<(AgentWrite, Fence, Reply)>) {
        let result = async {
            let client = self
                .pool
                .get()
                .await
                .map_err(|e| pool_error(&self.config, e))?;
            let fail = |e: tokio_postgres::Error| classify(&self.config, &e);
            client.batch_execute("BEGIN").await.map_err(fail)?;
            let mut outcomes = Vec::with_capacity(group.len());
            for (write, fence, _) in &group {
                match apply(&client, write, fence).await {
                    Ok(outcome) => outcomes.push(outcome),
                    Err(e) => {
                        let _ = client.batch_execute("ROLLBACK").await;
                        return Err(fail(e));
                    }
                }
            }
            if let Err(e) = client.batch_execute("COMMIT").await {
                return Err(match classify(&self.config, &e) {
                    // The commit's answer was lost: it may have happened.
                    AgentStoreError::Unavailable(why) => {
                        AgentStoreError::Storage(format!("commit not confirmed: {why}"))
                    }
                    other => other,
                });
            }
            Ok(outcomes)
        }
        .await;
        match result {
            Ok(outcomes) => {
                for ((_, _, reply), outcome) in group.into_iter().zip(outcomes) {
                    let _ = reply.send(outcome);
                }
            }
            Err(error) => {
                for (_, _, reply) in group {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }
}

/// Applies one write inside the open transaction: the rules of
/// [`AgentWrite::apply`], in SQL. The outer error is the server's (the
/// transaction is lost); the inner one refuses this write alone, having
/// changed nothing. A fenced write first locks its agent's ownership row
/// (shared: claims wait for the commit) and is refused unless its member
/// owns the agent or no one ever claimed it.
async fn apply(
    client: &Object,
    write: &AgentWrite,
    fence: &Fence,
) -> Result<Result<(), AgentStoreError>, tokio_postgres::Error> {
    let id = write.id();
    if let Some((node, generation, granted)) = fence {
        let owner = client
            .prepare_cached(
                "SELECT node, generation, epoch FROM agent_owners WHERE agent = $1 FOR SHARE",
            )
            .await?;
        if let Some(row) = client.query_opt(&owner, &[&id.as_str()]).await? {
            let owner_node: Option<String> = row.try_get(0)?;
            let owner_generation: Option<i64> = row.try_get(1)?;
            let epoch: i64 = row.try_get(2)?;
            // The epoch too: the same member may have lost the agent and
            // won it back since this write's grant (ABA).
            let ours = owner_node.as_deref() == Some(&**node)
                && owner_generation == Some(*generation as i64)
                && granted.is_none_or(|granted| granted as i64 == epoch);
            if !ours {
                let owner = match (owner_node, owner_generation) {
                    (Some(node), Some(generation)) => format!("{node}/{generation}"),
                    _ => "nobody".to_owned(),
                };
                return Ok(Err(AgentStoreError::Fenced {
                    id: id.clone(),
                    owner,
                }));
            }
        }
    }
    let generation = write.generation() as i64;
    let lock = client
        .prepare_cached("SELECT generation, version FROM agents WHERE id = $1 FOR UPDATE")
        .await?;
    let stored = client.query_opt(&lock, &[&id.as_str()]).await?;
    if let Some(row) = stored {
        let stored_generation: i64 = row.try_get(0)?;
        let version: i32 = row.try_get(1)?;
        if let Err(e) = check_generation(id, stored_generation as u64, write.generation()) {
            return Ok(Err(e));
        }
        let replaces = matches!(
            write,
            AgentWrite::Register { .. } | AgentWrite::Remove { .. }
        );
        if !replaces && version > AGENT_RECORD_VERSION as i32 {
            return Ok(Err(AgentStoreError::NewerVersion {
                id: id.clone(),
                found: u32::try_from(version).unwrap_or(u32::MAX),
                supported: AGENT_RECORD_VERSION,
            }));
        }
    } else if !matches!(write, AgentWrite::Register { .. }) {
        return Ok(Err(AgentStoreError::NotFound(id.clone())));
    }
    match write {
        AgentWrite::Register { registration, .. } => {
            let r = registration;
            let statement = client
                .prepare_cached(
                    "INSERT INTO agents (id, version, generation, kind, config, args, \
                     restart, status, restart_count, passivated) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                     ON CONFLICT (id) DO UPDATE SET version = excluded.version, \
                     generation = excluded.generation, kind = excluded.kind, \
                     config = excluded.config, args = excluded.args, \
                     restart = excluded.restart, status = excluded.status, \
                     restart_count = excluded.restart_count, \
                     passivated = excluded.passivated \
                     WHERE agents.generation <= excluded.generation",
                )
                .await?;
            client
                .execute(
                    &statement,
                    &[
                        &r.id.as_str(),
                        &(AGENT_RECORD_VERSION as i32),
                        &generation,
                        &r.kind,
                        &r.config.to_string(),
                        &r.args.to_string(),
                        &r.restart.to_string(),
                        &status_text(r.status),
                        &i64::from(r.restart_count),
                        &r.passivated,
                    ],
                )
                .await?;
        }
        AgentWrite::Update { update, .. } => {
            let statement = client
                .prepare_cached(
                    "UPDATE agents SET config = coalesce($2, config), \
                     status = coalesce($3, status), \
                     restart_count = coalesce($4, restart_count), \
                     passivated = coalesce($5, passivated), generation = $6 \
                     WHERE id = $1",
                )
                .await?;
            client
                .execute(
                    &statement,
                    &[
                        &id.as_str(),
                        &update.config.as_ref().map(|c| c.to_string()),
                        &update.status.map(status_text),
                        &update.restart_count.map(i64::from),
                        &update.passivated,
                        &generation,
                    ],
                )
                .await?;
        }
        AgentWrite::Checkpoint { checkpoint, .. } => {
            let statement = client
                .prepare_cached(
                    "UPDATE agents SET checkpoint_format = $2, checkpoint = $3, \
                     generation = $4 WHERE id = $1",
                )
                .await?;
            client
                .execute(
                    &statement,
                    &[
                        &id.as_str(),
                        &i64::from(checkpoint.format),
                        &checkpoint.data,
                        &generation,
                    ],
                )
                .await?;
        }
        AgentWrite::Remove { .. } => {
            let statement = client
                .prepare_cached("DELETE FROM agents WHERE id = $1")
                .await?;
            client.execute(&statement, &[&id.as_str()]).await?;
            // Gone: no one owns it (its epoch is kept, so a later claim of
            // the id still fences above every earlier one).
            let release = client
                .prepare_cached(
                    "UPDATE agent_owners SET node = NULL, generation = NULL WHERE agent = $1",
                )
                .await?;
            client.execute(&release, &[&id.as_str()]).await?;
        }
    }
    Ok(Ok(()))
}
