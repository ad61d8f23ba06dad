//! The EventStore on PostgreSQL: one incarnation of an open store (its
//! writer task, its reader pool, its listener), keeping the contract the
//! [module docs](super) state, so that the same [`EventStore`] handle and
//! the same tests run on either backend.
//!
//! # Gap-free positions: the serialised `$all` row
//!
//! A `bigserial` id is given when a transaction inserts, but transactions
//! commit in another order: a reader could see id 8 before id 7 commits,
//! move past 7 and never see it. Of the two known answers, Marten's
//! high-water mark (a daemon that advances a "safe" position once gaps
//! are old enough, skipping gaps left by rolled-back transactions) and
//! Commanded's serialised `$all` row (every append transaction locks one
//! row and gives ids from it, so ids are given in commit order), we took
//! the second: each append group locks `meta.last_id` (`UPDATE ...
//! RETURNING`, or `SELECT ... FOR UPDATE` on the checked path), gives
//! the next ids, and writes the row back before it commits. A transaction waiting for the row is granted it only once the
//! one before has committed (and is visible), so what any reader sees is
//! always a prefix of the log: no gap, no reordering, no daemon, no
//! timeout that could skip a slow commit. Its price, one writer at a time
//! across the cluster, is the price our one-writer group commit already
//! pays per node; a group of up to `max_group` events shares each lock.
//! And since ids are contiguous, a stream's version and the horizon are
//! plain arithmetic.
//!
//! # Group commit, one statement
//!
//! One writer task per store gathers the queued appends into one
//! transaction, as the SQLite writer does, and commits it with one WAL
//! flush. A group of at most 256 events is one statement, sent without
//! `BEGIN` or `COMMIT` (a statement outside a transaction is its own
//! transaction: one round trip, one commit), when every expected version
//! of the group holds and every idempotency key is new (the common case):
//! a `WITH` whose parts move the `$all` row by the group's size (`UPDATE
//! ... RETURNING`, which locks it), add the group's events to the
//! streams' versions (an upsert reading the newest committed rows, after
//! the `$all` lock), check every expected version against the versions
//! before the group (a division by zero fails the statement otherwise),
//! insert the rows with the ids and versions these gave, and notify when
//! someone listens (below). A stored key fails the insert on its unique
//! index. When the guard or a key fails the statement, nothing is
//! written and the group is committed again the checked way, in two
//! round trips (as a larger group is: its round trip is shared by
//! hundreds of events, and the server does less per event when ids and
//! versions come computed): the first pipelines `BEGIN`, the lock, the
//! versions of the group's streams and the stored holders of its
//! idempotency keys; the writer then checks every request in memory
//! (expected versions, keys, retries: each request all or nothing); the
//! second pipelines the rows, the streams' versions, the `$all` row, the
//! wake-up and `COMMIT`.
//!
//! # Subscriptions
//!
//! A subscriber reads the table by position, a page at a time; when it
//! has read everything it waits for a wake-up. Wake-ups come from the
//! local writer after each commit and from `LISTEN` on one dedicated
//! connection per store (other nodes' commits `NOTIFY` it). A
//! notification carries nothing the reader needs: a missed one loses
//! nothing. `NOTIFY` is not free (every notifying transaction of the
//! server takes one queue lock at commit), so a commit notifies only
//! when some store has subscribers: while it has, its listener holds an
//! advisory lock (shared, for its session), and a writer that can take
//! that lock exclusively for its transaction skips the notification. A
//! listener that registers waits for such a transaction to commit, then
//! wakes its subscribers, whose next read sees it. When the listener's
//! connection drops (PostgreSQL restarted) it reconnects with the
//! configured [`Backoff`](mabeam_supervision_core::Backoff), registers
//! again and wakes every subscriber; a subscriber whose read fails the
//! same way retries with the backoff from the last position it
//! delivered.
//!
//! # Faults
//!
//! An acknowledged append is committed (with `synchronous_commit=on`).
//! When the connection fails before the commit's answer, the append is
//! refused with [`Unavailable`](super::EventStoreError::Unavailable): it
//! may or may not be stored, so a caller that must know retries with an
//! idempotency key, which stores it once.

mod read;
mod subscribe;
mod writer;

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use deadpool_postgres::Pool;
use parking_lot::Mutex;
use tokio::{
    sync::{Notify, mpsc, watch},
    task::JoinHandle,
};

use super::{EventStoreConfig, EventStoreError, writer::Counters, writer::Request};
use crate::postgres::{self, Migrations, PostgresConfig};

pub(crate) use read::{Reads, counts};
pub(crate) use subscribe::subscribe;

/// The EventStore's migrations, in order.
pub(crate) const MIGRATIONS: Migrations = Migrations {
    component: "event_store",
    steps: &[include_str!(
        "../../migrations/postgres/event_store_0001_initial.sql"
    )],
};

/// One open store on PostgreSQL.
pub(crate) struct PgCore {
    pub(crate) pg: PostgresConfig,
    pub(crate) pool: Pool,
    pub(crate) counters: Arc<Counters>,
    /// Bumped whenever new events may be stored: subscribers wait on it
    /// (its receivers are the subscribers the listener counts).
    pub(crate) wake: Arc<watch::Sender<u64>>,
    /// Told of each new subscriber: the listener registers.
    pub(crate) subscribed: Arc<Notify>,
    /// Whether the schema is in place and the writer connected once.
    pub(crate) ready: Arc<AtomicBool>,
    requests: mpsc::UnboundedSender<Request>,
    writer: Mutex<Option<JoinHandle<()>>>,
    writer_running: watch::Receiver<bool>,
    listener: Mutex<Option<JoinHandle<()>>>,
    closing: AtomicBool,
}

impl std::fmt::Debug for PgCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgCore")
            .field("url", &self.pg.redacted_url())
            .field("schema", &self.pg.schema)
            .finish_non_exhaustive()
    }
}

/// Maps a driver error: unavailable (the server or the connection) or a
/// storage failure, naming the server without its password.
pub(crate) fn classify(pg: &PostgresConfig, error: &tokio_postgres::Error) -> EventStoreError {
    let detail = postgres::detail(error);
    if postgres::is_unavailable(error) {
        EventStoreError::Unavailable(
            format!("PostgreSQL at {}: {detail}", pg.redacted_url()).into(),
        )
    } else {
        EventStoreError::Storage(detail)
    }
}

/// Maps a pool error (the server down, or the pool exhausted).
pub(crate) fn pool_error(
    pg: &PostgresConfig,
    error: deadpool_postgres::PoolError,
) -> EventStoreError {
    match error {
        deadpool_postgres::PoolError::Backend(e) => classify(pg, &e),
        other => EventStoreError::Unavailable(
            format!("PostgreSQL at {}: {other}", pg.redacted_url()).into(),
        ),
    }
}

impl PgCore {
    /// Opens the store: connects and migrates now, or (with
    /// `wait_for_server`) in the writer task, retrying until the server
    /// answers.
    pub(crate) async fn open(
        config: EventStoreConfig,
        pg: PostgresConfig,
    ) -> Result<Arc<PgCore>, EventStoreError> {
        config.validate()?;
        pg.validate().map_err(EventStoreError::InvalidConfig)?;
        let pool = pg.pool().map_err(EventStoreError::InvalidConfig)?;
        let driver = pg.driver_config().map_err(EventStoreError::InvalidConfig)?;
        let first = if pg.wait_for_server {
            None
        } else {
            Some(writer::setup(&driver, &pg).await?)
        };
        let (requests, queue) = mpsc::unbounded_channel();
        let (wake, _) = watch::channel(0u64);
        let wake = Arc::new(wake);
        let ready = Arc::new(AtomicBool::new(first.is_some()));
        let counters = Arc::new(Counters::default());
        let (running_tx, writer_running) = watch::channel(true);
        let writer = writer::PgWriter::new(
            &config,
            pg.clone(),
            driver.clone(),
            first,
            queue,
            counters.clone(),
            wake.clone(),
            ready.clone(),
        );
        let writer = tokio::spawn(async move {
            let _running = running_tx;
            writer.run().await;
        });
        let subscribed = Arc::new(Notify::new());
        let listener = tokio::spawn(subscribe::listen(
            driver,
            pg.clone(),
            wake.clone(),
            subscribed.clone(),
            ready.clone(),
        ));
        Ok(Arc::new(PgCore {
            pg,
            pool,
            counters,
            wake,
            subscribed,
            ready,
            requests,
            writer: Mutex::new(Some(writer)),
            writer_running,
            listener: Mutex::new(Some(listener)),
            closing: AtomicBool::new(false),
        }))
    }

    /// Whether the store accepts requests.
    pub(crate) fn is_open(&self) -> bool {
        !self.closing.load(Ordering::Acquire) && *self.writer_running.borrow()
    }

    /// Whether [`close`](Self::close) was called.
    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// The error while the store waits for its server.
    pub(crate) fn waiting(&self) -> EventStoreError {
        EventStoreError::Unavailable(
            format!("waiting for PostgreSQL at {}", self.pg.redacted_url()).into(),
        )
    }

    /// Queues a request for the writer.
    pub(crate) fn send(&self, request: Request) -> Result<(), EventStoreError> {
        if !self.is_open() {
            return Err(EventStoreError::unavailable("the store is closed"));
        }
        if !self.ready.load(Ordering::Acquire) {
            return Err(self.waiting());
        }
        self.requests
            .send(request)
            .map_err(|_| EventStoreError::unavailable("the writer has stopped"))
    }

    /// Completes when the writer task has ended.
    pub(crate) async fn writer_ended(&self) {
        let mut running = self.writer_running.clone();
        let _ = running.wait_for(|running| !running).await;
    }

    /// A reader connection from the pool.
    pub(crate) async fn reader(&self) -> Result<deadpool_postgres::Object, EventStoreError> {
        if self.is_closing() {
            return Err(EventStoreError::unavailable("the store is closed"));
        }
        if !self.ready.load(Ordering::Acquire) {
            return Err(self.waiting());
        }
        self.pool.get().await.map_err(|e| pool_error(&self.pg, e))
    }

    /// The reads, on a pooled connection.
    pub(crate) fn reads(self: &Arc<Self>) -> Reads {
        Reads { core: self.clone() }
    }

    /// Finishes the queued requests, stops the writer and the listener,
    /// wakes the subscribers (which end) and closes the pool.
    pub(crate) async fn close(&self) {
        self.closing.store(true, Ordering::Release);
        let _ = self.requests.send(Request::Shutdown);
        let writer = self.writer.lock().take();
        if let Some(writer) = writer {
            let _ = writer.await;
        }
        let listener = self.listener.lock().take();
        if let Some(listener) = listener {
            listener.abort();
            let _ = listener.await;
        }
        self.wake.send_modify(|n| *n += 1);
        self.pool.close();
    }
}

impl Drop for PgCore {
    fn drop(&mut self) {
        self.closing.store(true, Ordering::Release);
        let _ = self.requests.send(Request::Shutdown);
        if let Some(listener) = self.listener.lock().take() {
            listener.abort();
        }
        self.pool.close();
    }
}
