//! The EventStore: a durable, append-only event log on embedded SQLite
//! (or on PostgreSQL: [`EventStoreConfig::postgres`]), with queries,
//! replay and live subscriptions.
//!
//! The design below is the SQLite backend's; the PostgreSQL backend
//! keeps the same contract (next section) with one writer task, a write
//! lease (one writer at a time per schema) for gap-free positions, and
//! subscriptions woken by LISTEN/NOTIFY: its own docs are in
//! `event_store/pg.rs`, and the contract test suite
//! (`tests/event_store_contract.rs`) runs on both.
//!
//! # Design
//!
//! - **One file, one writer.** The store is one SQLite database
//!   (`events.db`, through rusqlite's bundled SQLite: nothing to install)
//!   in a data directory the caller names, in WAL mode with
//!   `synchronous=FULL`. Every write goes through one writer thread, fed
//!   by a crossbeam-channel queue; reads run concurrently on reader
//!   connections of their own, each on a consistent snapshot.
//! - **Durable on acknowledgement, with group commit.** An append's future
//!   completes only once its transaction is committed and synced to disk.
//!   The writer commits every append waiting in its queue in one
//!   transaction (up to [`EventStoreConfig::max_group`] events), so many
//!   concurrent appenders share one disk sync.
//! - **Pipelining for throughput.** An append is queued when
//!   [`EventStore::append`] returns, before its future is awaited, and the
//!   writer commits in queue order. A producer that needs more than one
//!   commit per round trip queues many appends and awaits only the last
//!   (or every n-th): when it is acknowledged, all before it are durable.
//!   This is the design step Kafka producers (`acks` with in-flight
//!   batches) and Postgres' asynchronous commit take; ours keeps every
//!   acknowledgement durable, only the waiting is moved.
//! - **Ids** are SQLite `AUTOINCREMENT` row ids: strictly increasing, and
//!   never reused, even after [`prune_before`](EventStore::prune_before).
//!   Stream versions are kept in a table of their own, so they are never
//!   reused either.
//! - **Safety of the file.** The data directory is locked (`flock` on
//!   `events.lock`), so two stores never write the same file; a file that
//!   is not an event store (not SQLite, or another `application_id`) is
//!   refused and never written; a damaged one is refused as
//!   [`EventStoreError::Corrupted`]; a schema version is stored, older
//!   files are migrated on open, newer ones refused.
//!
//! # The contract (every backend keeps it)
//!
//! These rules are the store's semantics, not SQLite's: another backend
//! (PostgreSQL) keeps them as they are written here.
//!
//! ## Durability
//!
//! An append is acknowledged only once its commit is durable: here WAL
//! with `synchronous=FULL`, so each commit syncs the WAL before it
//! returns ([`EventStore::durability`] reports the settings the writer's
//! connection runs with). A crash of the process or a power loss loses
//! nothing acknowledged; it may lose appends not yet acknowledged, whole
//! (a batch is never seen in part).
//!
//! ## Batches and retries
//!
//! A batch is one unit: written whole or not at all, and retried whole.
//! - A batch whose first event's idempotency key is stored is a **retry**
//!   when the stored batch that began with that key is the same batch:
//!   as many events, with the same stream, kind and key at each position.
//!   A retry writes nothing and answers the stored events
//!   ([`Appended::duplicate`]), whatever its expected version.
//! - Any other batch is checked in full: its expected version, and every
//!   key, which must be new ([`EventStoreError::KeyTaken`] otherwise;
//!   a key twice in one batch is [`EventStoreError::InvalidEvent`]).
//!   Nothing of a refused batch is written.
//!
//! ## Retention and the horizon
//!
//! The store prunes its oldest events itself by its [`Retention`] (age
//! and count; defaults a node runs on for months), always a prefix of the
//! log: the **horizon** ([`EventStoreStats::first_available`]) is the
//! first position still stored, and every id below it was pruned.
//! Reading or subscribing from a position below the horizon fails with
//! [`EventStoreError::Compacted`] (`EventReadError::Compacted` through
//! the `EventReader` contract), as etcd answers `ErrCompacted`, instead
//! of starting silently at the first remaining event. Ids and stream
//! versions are never reused after a prune; the idempotency keys of
//! pruned events are forgotten with them. Each prune emits
//! `event_store.pruned` on the configured telemetry
//! (`mabeam_event_store_pruned_events_total{reason}`).
//!
//! # Supervised
//!
//! [`EventStoreService`] runs the store as a service of an application.
//! Its [`EventStore`] handle (and the `EventSink` / `EventReader` made
//! from it) reach whichever incarnation runs, across restarts.
//!
//! # Example
//!
//! ```
//! use mabeam_foundation_services::{EventStore, EventStoreConfig, ExpectedVersion};
//! use mabeam_supervision_core::{Event, EventQuery};
//!
//! # #[tokio::main] async fn main() -> Result<(), mabeam_foundation_services::EventStoreError> {
//! let dir = tempfile::tempdir().unwrap();
//! let store = EventStore::open(EventStoreConfig::new(dir.path())).await?;
//! let placed = store
//!     .append(Event::new("order-1", "order_placed", serde_json::json!({"total": 30})))
//!     .await?;
//! store
//!     .append_expecting(
//!         Event::new("order-1", "order_paid", serde_json::json!({})).caused_by(placed.id),
//!         ExpectedVersion::Exact(1),
//!     )
//!     .await?;
//! let history = store.query(EventQuery::new().stream("order-1")).await?;
//! assert_eq!(history.len(), 2);
//! assert_eq!(history[1].stream_version, 2);
//! store.stop().await;
//! # Ok(()) }
//! ```

mod append;
mod config;
mod core;
mod error;
mod group;
mod pg;
mod read;
mod schema;
mod service;
mod store;
mod subscribe;
mod writer;

pub use append::{Appended, Appending, AppendingBatch, ExpectedVersion};
pub use config::{
    DATABASE_FILE, DEFAULT_CACHE_KIB, EventStoreConfig, LOCK_FILE, MIN_CACHE_KIB, Retention,
};
pub use error::EventStoreError;
pub use schema::{APPLICATION_ID, SCHEMA_VERSION};
pub use service::{EVENT_STORE_SERVICE, EventStoreProcess, EventStoreService};
pub use store::{EventStore, EventStoreStats};
pub use writer::Durability;
