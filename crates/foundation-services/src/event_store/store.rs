//! [`EventStore`]: the cloneable handle callers use. It reaches whichever
//! incarnation of the store is running, so a handle taken before a
//! restart works after it.

use std::{fmt, sync::Arc};

use futures::future::BoxFuture;
use mabeam_supervision_core::{
    Event, EventQuery, EventReadError, EventReader, EventSeq, EventSink, EventSinkError,
    EventSubscription, StoredEvent,
};
use parking_lot::RwLock;
use tokio::sync::oneshot;

use super::{
    Appending, AppendingBatch, EventStoreConfig, EventStoreError, ExpectedVersion,
    append::{self, Prepared},
    core::StoreCore,
    pg::{self, PgCore},
    read, subscribe,
    writer::{AppendRequest, Durability, Request},
};

/// One open incarnation, on either backend.
#[derive(Clone)]
pub(crate) enum Core {
    /// The embedded SQLite store.
    Sqlite(Arc<StoreCore>),
    /// The store on PostgreSQL.
    Postgres(Arc<PgCore>),
}

impl Core {
    /// Opens the backend `config` names.
    pub(crate) async fn open(config: EventStoreConfig) -> Result<Core, EventStoreError> {
        match config.postgres.clone() {
            Some(postgres) => Ok(Core::Postgres(PgCore::open(config, postgres).await?)),
            None => tokio::task::spawn_blocking(move || StoreCore::open(config))
                .await
                .map_err(|e| EventStoreError::storage(format!("open task failed: {e}")))?
                .map(Core::Sqlite),
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        match self {
            Core::Sqlite(core) => core.is_open(),
            Core::Postgres(core) => core.is_open(),
        }
    }

    pub(crate) fn is_closing(&self) -> bool {
        match self {
            Core::Sqlite(core) => core.is_closing(),
            Core::Postgres(core) => core.is_closing(),
        }
    }

    pub(crate) fn send(&self, request: Request) -> Result<(), EventStoreError> {
        match self {
            Core::Sqlite(core) => core.send(request),
            Core::Postgres(core) => core.send(request),
        }
    }

    /// Completes when the writer has ended.
    pub(crate) async fn writer_ended(&self) {
        match self {
            Core::Sqlite(core) => core.writer_ended().await,
            Core::Postgres(core) => core.writer_ended().await,
        }
    }

    /// Finishes the queued requests and closes the store.
    pub(crate) async fn close(self) {
        match self {
            Core::Sqlite(core) => {
                let _ = tokio::task::spawn_blocking(move || core.close()).await;
            }
            Core::Postgres(core) => core.close().await,
        }
    }

    pub(crate) fn same(&self, other: &Core) -> bool {
        match (self, other) {
            (Core::Sqlite(a), Core::Sqlite(b)) => Arc::ptr_eq(a, b),
            (Core::Postgres(a), Core::Postgres(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    fn counters(&self) -> &super::writer::Counters {
        match self {
            Core::Sqlite(core) => &core.counters,
            Core::Postgres(core) => &core.counters,
        }
    }
}

impl fmt::Debug for Core {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Core::Sqlite(core) => core.fmt(f),
            Core::Postgres(core) => core.fmt(f),
        }
    }
}

/// What a store holds and has done, from [`EventStore::stats`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventStoreStats {
    /// Events stored.
    pub events: u64,
    /// Streams ever written (pruning keeps a stream's version).
    pub streams: u64,
    /// The oldest stored event's id.
    pub first_id: Option<EventSeq>,
    /// The last id ever given (kept after pruning: ids are never reused).
    pub last_id: Option<EventSeq>,
    /// The horizon: the first position still stored (or the next to be
    /// given); reads from below it fail as
    /// [`Compacted`](EventStoreError::Compacted).
    pub first_available: EventSeq,
    /// The database file's size, in bytes (without its WAL); on
    /// PostgreSQL, the events table's with its indexes.
    pub file_bytes: u64,
    /// Events appended since this incarnation opened.
    pub appended: u64,
    /// Commits (groups) since this incarnation opened.
    pub commits: u64,
    /// The most events one commit held.
    pub largest_group: u64,
}

/// The slot every handle shares: the running incarnation, if any.
pub(crate) struct Slot {
    pub(crate) config: EventStoreConfig,
    pub(crate) current: RwLock<Option<Core>>,
}

/// A durable, append-only event log on SQLite or PostgreSQL: a cheap,
/// cloneable handle.
///
/// Open one directly with [`EventStore::open`], or run it supervised with
/// [`EventStoreService`](super::EventStoreService), whose handle follows
/// the store across restarts. It implements supervision-core's
/// [`EventSink`] and [`EventReader`] contracts. See the
/// [module docs](super) for the design and an example.
#[derive(Clone)]
pub struct EventStore {
    pub(crate) slot: Arc<Slot>,
}

impl EventStore {
    /// A handle with no store running yet (a service fills it).
    pub(crate) fn detached(config: EventStoreConfig) -> Self {
        EventStore {
            slot: Arc::new(Slot {
                config,
                current: RwLock::new(None),
            }),
        }
    }

    /// Opens the store in `config.data_dir` (or on the PostgreSQL server
    /// `config.postgres` names), unsupervised: it runs until
    /// [`close`](Self::close) (or until the last handle is dropped).
    ///
    /// Fails with [`EventStoreError::Locked`] when another store holds the
    /// directory, [`ForeignFile`](EventStoreError::ForeignFile) or
    /// [`Corrupted`](EventStoreError::Corrupted) for a file that is not a
    /// sound store, [`NewerSchema`](EventStoreError::NewerSchema) for one
    /// written by a newer build, and
    /// [`Unreachable`](EventStoreError::Unreachable) for a PostgreSQL
    /// server that does not answer (unless it is configured to wait).
    pub async fn open(config: EventStoreConfig) -> Result<EventStore, EventStoreError> {
        let store = EventStore::detached(config);
        let core = store.open_core().await?;
        *store.slot.current.write() = Some(core);
        Ok(store)
    }

    /// Opens a new incarnation of this handle's store (not yet installed).
    pub(crate) async fn open_core(&self) -> Result<Core, EventStoreError> {
        Core::open(self.slot.config.clone()).await
    }

    /// Closes the running store: the appends queued before are committed
    /// and acknowledged, later ones are refused as
    /// [`Unavailable`](EventStoreError::Unavailable), subscriptions end,
    /// and the directory's lock is released. Does nothing if none runs.
    pub async fn stop(&self) {
        let core = self.slot.current.write().take();
        if let Some(core) = core {
            core.close().await;
        }
    }

    /// The old name of [`stop`](Self::stop) (stopping is `stop` everywhere).
    #[deprecated(since = "0.1.0", note = "renamed to `stop`")]
    pub async fn close(&self) {
        self.stop().await;
    }

    /// The store's configuration.
    pub fn config(&self) -> &EventStoreConfig {
        &self.slot.config
    }

    /// Whether a store is running behind this handle.
    pub fn is_running(&self) -> bool {
        self.core().is_ok()
    }

    pub(crate) fn core(&self) -> Result<Core, EventStoreError> {
        match &*self.slot.current.read() {
            Some(core) if core.is_open() => Ok(core.clone()),
            _ => Err(EventStoreError::unavailable(
                "the event store is not running",
            )),
        }
    }

    fn prepare(&self, events: Vec<Event>) -> Result<(Core, Vec<Prepared>), EventStoreError> {
        let core = self.core()?;
        let config = &self.slot.config;
        let timestamp_ms = config.clock.unix_millis();
        let prepared = events
            .into_iter()
            .enumerate()
            .map(|(index, event)| {
                append::prepare(
                    index,
                    event,
                    &config.node,
                    config.max_event_bytes,
                    timestamp_ms,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((core, prepared))
    }

    fn queue(
        &self,
        events: Vec<Event>,
        expected: ExpectedVersion,
    ) -> Result<oneshot::Receiver<Result<Vec<append::Appended>, EventStoreError>>, EventStoreError>
    {
        let (core, events) = self.prepare(events)?;
        if expected != ExpectedVersion::Any
            && let Some(other) = events
                .iter()
                .position(|p| p.event.stream != events[0].event.stream)
        {
            return Err(EventStoreError::InvalidEvent {
                index: other,
                reason: "a batch with an expected version must stay in one stream".into(),
            });
        }
        // A key names one event: twice in one batch is bad input.
        if events.len() > 1 {
            let mut keys = std::collections::HashSet::new();
            for (index, prepared) in events.iter().enumerate() {
                if let Some(key) = &prepared.event.idempotency_key
                    && !keys.insert(key.as_str())
                {
                    return Err(EventStoreError::InvalidEvent {
                        index,
                        reason: format!("idempotency key {key:?} repeats in the batch"),
                    });
                }
            }
        }
        let (reply, answer) = oneshot::channel();
        core.send(Request::Append(AppendRequest {
            events,
            expected,
            reply,
        }))?;
        Ok(answer)
    }

    /// Appends `event`; the future completes once it is on disk.
    ///
    /// The append is checked and queued before this returns, so a caller
    /// may queue several and await only the last: the store commits in
    /// queue order, so when one is acknowledged, every append queued
    /// before it by the same caller is durable too.
    pub fn append(&self, event: Event) -> Appending {
        self.append_expecting(event, ExpectedVersion::Any)
    }

    /// Appends `event` if its stream is at the `expected` version, or fails
    /// with [`EventStoreError::VersionConflict`] and writes nothing. A
    /// retry (its idempotency key stored, with the same stream and kind)
    /// answers the stored event, whatever the version; see the
    /// [batch rules](super#batches-and-retries).
    pub fn append_expecting(&self, event: Event, expected: ExpectedVersion) -> Appending {
        match self.queue(vec![event], expected) {
            Ok(answer) => Appending::queued(answer),
            Err(error) => Appending::refused(error),
        }
    }

    /// Appends `events` all or nothing: one invalid event refuses the
    /// batch and nothing is written; otherwise all commit together, in
    /// order. An empty batch answers an empty list. A batch is one unit
    /// for idempotency too: see the [batch rules](super#batches-and-retries).
    pub fn append_batch(&self, events: Vec<Event>) -> AppendingBatch {
        self.append_batch_expecting(events, ExpectedVersion::Any)
    }

    /// [`append_batch`](Self::append_batch) into one stream that must be at
    /// the `expected` version.
    pub fn append_batch_expecting(
        &self,
        events: Vec<Event>,
        expected: ExpectedVersion,
    ) -> AppendingBatch {
        if events.is_empty() {
            let (reply, answer) = oneshot::channel();
            let _ = reply.send(Ok(Vec::new()));
            return AppendingBatch::queued(answer);
        }
        match self.queue(events, expected) {
            Ok(answer) => AppendingBatch::queued(answer),
            Err(error) => AppendingBatch::refused(error),
        }
    }

    /// The event of id `id`, or [`EventStoreError::NotFound`].
    pub async fn get(&self, id: EventSeq) -> Result<StoredEvent, EventStoreError> {
        match self.core()? {
            Core::Sqlite(core) => {
                core.read(move |core| {
                    core.readers
                        .with(|conn| read::get(conn, core.readers.path(), id))
                })
                .await
            }
            Core::Postgres(core) => core.reads().get(id).await,
        }
    }

    /// The events matching `query`.
    pub async fn query(&self, query: EventQuery) -> Result<Vec<StoredEvent>, EventStoreError> {
        match self.core()? {
            Core::Sqlite(core) => {
                core.read(move |core| {
                    core.readers
                        .with(|conn| read::query(conn, core.readers.path(), &query))
                })
                .await
            }
            Core::Postgres(core) => core.reads().query(&query).await,
        }
    }

    /// At most `limit` events from position `from` on, oldest first.
    pub async fn read_from(
        &self,
        from: EventSeq,
        limit: u64,
    ) -> Result<Vec<StoredEvent>, EventStoreError> {
        match self.core()? {
            Core::Sqlite(core) => {
                core.read(move |core| {
                    core.readers
                        .with(|conn| read::read_from(conn, core.readers.path(), from, limit))
                })
                .await
            }
            Core::Postgres(core) => core.reads().read_from(from, limit).await,
        }
    }

    /// The causation chain of event `id`: its root cause first, each event
    /// caused by the one before, and the event itself last. The chain
    /// starts later when a parent was pruned.
    pub async fn causation_chain(&self, id: EventSeq) -> Result<Vec<StoredEvent>, EventStoreError> {
        match self.core()? {
            Core::Sqlite(core) => {
                core.read(move |core| {
                    core.readers
                        .with(|conn| read::causation_chain(conn, core.readers.path(), id))
                })
                .await
            }
            Core::Postgres(core) => core.reads().causation_chain(id).await,
        }
    }

    /// The stored events from `from` on, then live ones; see
    /// [`EventSubscription`].
    pub fn subscribe(&self, from: EventSeq) -> EventSubscription {
        match self.core() {
            Ok(Core::Sqlite(core)) => subscribe::subscribe(core, from),
            Ok(Core::Postgres(core)) => pg::subscribe(core, from),
            Err(error) => EventSubscription::failed(error.into()),
        }
    }

    /// Deletes the oldest events recorded before `before_ms` (ms since
    /// the epoch: the longest prefix of the log older than it) and
    /// answers how many. Ids and stream versions are never reused
    /// afterwards; reads from a pruned position fail as
    /// [`Compacted`](EventStoreError::Compacted).
    pub async fn prune_before(&self, before_ms: u64) -> Result<u64, EventStoreError> {
        let (reply, answer) = oneshot::channel();
        self.core()?.send(Request::Prune { before_ms, reply })?;
        Self::answer(answer, "the store stopped before pruning").await
    }

    /// Applies the [`Retention`](super::Retention) now (the writer also
    /// does every `retention.every`, and on open) and answers how many
    /// events it pruned.
    pub async fn enforce_retention(&self) -> Result<u64, EventStoreError> {
        let (reply, answer) = oneshot::channel();
        self.core()?.send(Request::Retain { reply })?;
        Self::answer(answer, "the store stopped before pruning").await
    }

    /// The durability settings the writer's connection runs with, as
    /// SQLite reports them: `journal_mode` `wal` and `synchronous`
    /// `full`, so every acknowledged append is synced to disk before its
    /// future completes and a power loss loses nothing acknowledged. On
    /// PostgreSQL: `journal_mode` `postgres (fsync on)` and `synchronous`
    /// `full` when `synchronous_commit` is on (as the store sets it).
    pub async fn durability(&self) -> Result<Durability, EventStoreError> {
        let (reply, answer) = oneshot::channel();
        self.core()?.send(Request::Durability { reply })?;
        Self::answer(answer, "the store stopped before answering").await
    }

    async fn answer<T>(
        answer: oneshot::Receiver<Result<T, EventStoreError>>,
        stopped: &str,
    ) -> Result<T, EventStoreError> {
        answer
            .await
            .unwrap_or_else(|_| Err(EventStoreError::unavailable(stopped)))
    }

    /// What the store holds and has done.
    pub async fn stats(&self) -> Result<EventStoreStats, EventStoreError> {
        let core = self.core()?;
        let (counts, file_bytes) = match &core {
            Core::Sqlite(core) => {
                let counts = core
                    .read(|core| {
                        core.readers
                            .with(|conn| read::counts(conn, core.readers.path()))
                    })
                    .await?;
                let file_bytes = std::fs::metadata(core.readers.path()).map_or(0, |m| m.len());
                (counts, file_bytes)
            }
            Core::Postgres(core) => pg::counts(&core.reads()).await?,
        };
        let counters = core.counters();
        let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        Ok(EventStoreStats {
            events: counts.events,
            streams: counts.streams,
            first_id: counts.first_id,
            last_id: counts.last_id,
            first_available: counts.first_available,
            file_bytes,
            appended: load(&counters.appended),
            commits: load(&counters.commits),
            largest_group: load(&counters.largest_group),
        })
    }

    /// Checks the running store: its writer runs, its last commit did not
    /// fail, and a reader answers.
    pub async fn health(&self) -> Result<(), String> {
        let core = self.core().map_err(|e| e.to_string())?;
        match &core {
            Core::Sqlite(core) => core
                .read(|core| {
                    core.readers.with(|conn| {
                        conn.query_row("SELECT 1", [], |_| Ok(()))
                            .map_err(EventStoreError::storage)
                    })
                })
                .await
                .map_err(|e| e.to_string())?,
            Core::Postgres(core) => core.reads().ping().await.map_err(|e| e.to_string())?,
        }
        match core.counters().last_error.lock().clone() {
            Some(error) => Err(format!("last write failed: {error}")),
            None => Ok(()),
        }
    }
}

impl fmt::Debug for EventStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStore")
            .field("data_dir", &self.slot.config.data_dir)
            .field("postgres", &self.slot.config.postgres)
            .field("running", &self.is_running())
            .finish()
    }
}

impl EventSink for EventStore {
    fn record(&self, event: Event) -> BoxFuture<'_, Result<EventSeq, EventSinkError>> {
        let appending = self.append(event);
        Box::pin(async move { Ok(appending.await?.id) })
    }
}

impl EventReader for EventStore {
    fn get(&self, id: EventSeq) -> BoxFuture<'_, Result<StoredEvent, EventReadError>> {
        Box::pin(async move { Ok(EventStore::get(self, id).await?) })
    }

    fn query(&self, query: EventQuery) -> BoxFuture<'_, Result<Vec<StoredEvent>, EventReadError>> {
        Box::pin(async move { Ok(EventStore::query(self, query).await?) })
    }

    fn read_from(
        &self,
        from: EventSeq,
        limit: u64,
    ) -> BoxFuture<'_, Result<Vec<StoredEvent>, EventReadError>> {
        Box::pin(async move { Ok(EventStore::read_from(self, from, limit).await?) })
    }

    fn subscribe(&self, from: EventSeq) -> EventSubscription {
        EventStore::subscribe(self, from)
    }
}
