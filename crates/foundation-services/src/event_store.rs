//! The EventStore: a durable, append-only event log on embedded SQLite,
//! with queries, replay and live subscriptions.
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
//! # Supervised
//!
//! [`EventStoreService`] runs the store as a service of an application.
//! Its [`EventStore`] handle (and the `EventSink` / `EventReader` made
//! from it) reach whichever incarnation runs, across restarts.
//!
//! # Example
//!
//! ```
//! use foundation_services::{EventStore, EventStoreConfig, ExpectedVersion};
//! use supervision_core::{Event, EventQuery};
//!
//! # #[tokio::main] async fn main() -> Result<(), foundation_services::EventStoreError> {
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
//! store.close().await;
//! # Ok(()) }
//! ```

mod append;
mod config;
mod core;
mod error;
mod read;
mod schema;
mod service;
mod store;
mod subscribe;
mod writer;

pub use append::{Appended, Appending, AppendingBatch, ExpectedVersion};
pub use config::{DATABASE_FILE, EventStoreConfig, LOCK_FILE};
pub use error::EventStoreError;
pub use schema::{APPLICATION_ID, SCHEMA_VERSION};
pub use service::{EVENT_STORE_SERVICE, EventStoreProcess, EventStoreService};
pub use store::{EventStore, EventStoreStats};
