//! The agent store on embedded SQLite: supervision-core's
//! [`AgentStore`] contract (the durable table of agent registrations and
//! checkpoints) in its own file, `agents.db`, in the node's data directory.
//!
//! # What is durable when
//!
//! A write is acknowledged only once its transaction is committed on disk
//! (WAL, `synchronous=FULL`): after the acknowledgement, a `kill -9` or a
//! power cut loses nothing. One writer thread commits the writes queued
//! together in one transaction (group commit: 64 concurrent writers share
//! one fsync); readers use their own connections and never wait for it. A
//! write not yet acknowledged when the process dies may or may not be
//! there; an agent's state since its last acknowledged checkpoint is lost.
//!
//! # Faults
//!
//! - A full disk (or the [`SqliteAgentStoreConfig::max_size_bytes`] cap)
//!   refuses writes with [`AgentStoreError::StorageFull`]; reads and
//!   removals keep working.
//! - A row that cannot be decoded is [`AgentStoreError::Corrupt`] for that
//!   agent alone; a row written by a newer build
//!   [`AgentStoreError::NewerVersion`]; the other rows load.
//! - A file that is not an agent store (another SQLite file, or not
//!   SQLite) is refused and never written; a second store on the same
//!   directory is refused ([`AgentStoreError::Locked`]).
//!
//! The file is created with mode 0600; its schema is versioned
//! (`user_version`, each migration recorded in `schema_migrations`).

mod pg;
mod read;
mod record;
mod schema;
mod writer;

use std::{
    fs::File,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
};

use futures::future::{BoxFuture, FutureExt};
use mabeam_supervision_core::{
    AgentId, AgentRecord, AgentStore, AgentStoreError, AgentWrite, LoadedAgent,
};
use parking_lot::Mutex;
pub use pg::{FencedAgentStore, NodeLease, PostgresAgentStore, Renewal};
use rusqlite::{OptionalExtension, params};
pub use schema::{APPLICATION_ID, SCHEMA_VERSION};
use tokio::sync::oneshot;

use self::{
    read::Readers,
    record::{COLUMNS, decode},
    writer::{Request, Writer},
};

/// The agent store's file name in its data directory.
pub const DATABASE_FILE: &str = "agents.db";

/// Where and how a [`SqliteAgentStore`] keeps its table.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SqliteAgentStoreConfig {
    /// The data directory (`agents.db` and `agents.lock` go in it).
    pub data_dir: PathBuf,
    /// The most writes committed in one transaction (default 1024).
    pub max_group: usize,
    /// A cap on the file's size (none by default): past it, writes are
    /// refused with `StorageFull`, as on a full disk.
    pub max_size_bytes: Option<u64>,
}

impl SqliteAgentStoreConfig {
    /// The defaults for a data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        SqliteAgentStoreConfig {
            data_dir: data_dir.into(),
            max_group: 1024,
            max_size_bytes: None,
        }
    }

    /// Sets the most writes committed in one transaction.
    pub fn with_max_group(mut self, max_group: usize) -> Self {
        self.max_group = max_group;
        self
    }

    /// Caps the file's size.
    pub fn with_max_size_bytes(mut self, bytes: u64) -> Self {
        self.max_size_bytes = Some(bytes);
        self
    }

    /// The path of `agents.db`.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join(DATABASE_FILE)
    }
}

/// supervision-core's [`AgentStore`] on SQLite (see the [module
/// docs](self)). Clones share one open store; the last one dropped (or
/// [`close`](Self::close)) finishes the queued writes and releases the file.
#[derive(Debug, Clone)]
pub struct SqliteAgentStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    requests: crossbeam_channel::Sender<Request>,
    readers: Readers,
    writer: Mutex<Option<JoinHandle<()>>>,
    lock: Mutex<Option<File>>,
    closed: AtomicBool,
}

impl SqliteAgentStore {
    /// Opens (creating, migrating) the store in `config.data_dir`.
    pub async fn open(config: SqliteAgentStoreConfig) -> Result<SqliteAgentStore, AgentStoreError> {
        tokio::task::spawn_blocking(move || Self::open_blocking(config))
            .await
            .map_err(|e| AgentStoreError::Storage(format!("open task failed: {e}")))?
    }

    /// [`open`](Self::open), blocking the calling thread.
    pub fn open_blocking(
        config: SqliteAgentStoreConfig,
    ) -> Result<SqliteAgentStore, AgentStoreError> {
        if config.max_group == 0 {
            return Err(AgentStoreError::Invalid(
                "max_group must be at least 1".into(),
            ));
        }
        let (conn, lock) = schema::open_writer(&config)?;
        let path = config.database_path();
        let (requests, queue) = crossbeam_channel::unbounded();
        let writer = Writer {
            conn,
            path: path.clone(),
            requests: queue,
            max_group: config.max_group,
        };
        let thread = std::thread::Builder::new()
            .name("agent-store-writer".into())
            .spawn(move || writer.run())
            .map_err(schema::storage)?;
        Ok(SqliteAgentStore {
            inner: Arc::new(Inner {
                readers: Readers::new(path.clone()),
                path,
                requests,
                writer: Mutex::new(Some(thread)),
                lock: Mutex::new(Some(lock)),
                closed: AtomicBool::new(false),
            }),
        })
    }

    /// The path of its file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Commits the writes queued before, stops the writer and releases the
    /// file; later calls are refused as `Unavailable`.
    pub async fn stop(&self) {
        let inner = self.inner.clone();
        let _ = tokio::task::spawn_blocking(move || inner.close()).await;
    }

    /// The old name of [`stop`](Self::stop) (stopping is `stop` everywhere).
    #[deprecated(since = "0.1.0", note = "renamed to `stop`")]
    pub async fn close(&self) {
        self.stop().await;
    }

    /// Runs `read` on a reader connection, off the async threads.
    fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Inner) -> Result<T, AgentStoreError> + Send + 'static,
    ) -> BoxFuture<'static, Result<T, AgentStoreError>> {
        let inner = self.inner.clone();
        async move {
            if inner.closed.load(Ordering::Acquire) {
                return Err(AgentStoreError::Unavailable("the store is closed".into()));
            }
            tokio::task::spawn_blocking(move || read(&inner))
                .await
                .map_err(|e| AgentStoreError::Storage(format!("read task failed: {e}")))?
        }
        .boxed()
    }
}

impl Inner {
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let _ = self.requests.send(Request::Shutdown);
        if let Some(thread) = self.writer.lock().take() {
            let _ = thread.join();
        }
        self.readers.clear();
        self.lock.lock().take();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.close();
    }
}

/// How a writer answers one write.
type Reply = oneshot::Sender<Result<(), AgentStoreError>>;

/// Queues a write that passed its checks (`checked`) with `send` (false:
/// the writer has stopped) unless the store is closed, and awaits the
/// writer's answer: both backends queue and answer writes alike, and bad
/// input never reaches a queue.
fn queue_write(
    checked: Result<(), AgentStoreError>,
    closed: &AtomicBool,
    send: impl FnOnce(Reply) -> bool,
) -> BoxFuture<'static, Result<(), AgentStoreError>> {
    let queued = if let Err(e) = checked {
        Err(e)
    } else if closed.load(Ordering::Acquire) {
        Err(AgentStoreError::Unavailable("the store is closed".into()))
    } else {
        let (reply, answer) = oneshot::channel();
        if send(reply) {
            Ok(answer)
        } else {
            Err(AgentStoreError::Unavailable(
                "the writer has stopped".into(),
            ))
        }
    };
    async move {
        queued?.await.unwrap_or_else(|_| {
            Err(AgentStoreError::Unavailable(
                "the writer stopped before committing".into(),
            ))
        })
    }
    .boxed()
}

impl AgentStore for SqliteAgentStore {
    fn write(&self, write: AgentWrite) -> BoxFuture<'static, Result<(), AgentStoreError>> {
        // Validated here too, so bad input never reaches the queue.
        let checked = write.validate();
        queue_write(checked, &self.inner.closed, |reply| {
            self.inner
                .requests
                .send(Request::Write(write, reply))
                .is_ok()
        })
    }

    fn get(
        &self,
        id: &AgentId,
    ) -> BoxFuture<'static, Result<Option<AgentRecord>, AgentStoreError>> {
        let id = id.clone();
        self.read(move |inner| {
            let loaded = inner.readers.with(|conn| {
                conn.prepare_cached(&format!("SELECT {COLUMNS} FROM agents WHERE id = ?1"))?
                    .query_row(params![id.as_str()], |row| Ok(decode(row)))
                    .optional()
            })?;
            loaded.map(|loaded| loaded.record).transpose()
        })
    }

    fn load_page(
        &self,
        after: Option<&AgentId>,
        limit: usize,
    ) -> BoxFuture<'static, Result<Vec<LoadedAgent>, AgentStoreError>> {
        let after = after.map(|id| id.as_str().to_owned()).unwrap_or_default();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |inner| {
            inner.readers.with(|conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM agents WHERE id > ?1 ORDER BY id LIMIT ?2"
                ))?;
                let rows = stmt.query_map(params![after, limit], |row| Ok(decode(row)))?;
                rows.collect()
            })
        })
    }

    fn count(&self) -> BoxFuture<'static, Result<u64, AgentStoreError>> {
        self.read(|inner| {
            inner.readers.with(|conn| {
                conn.query_row("SELECT count(*) FROM agents", [], |r| r.get::<_, i64>(0))
                    .map(|n| n as u64)
            })
        })
    }
}
