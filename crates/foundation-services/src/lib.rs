//! Foundation services: ConfigServer, EventStore, RateLimiter, TaskSupervisor,
//! HealthMonitor, ServiceMonitor and ConnectionManager.
//!
//! Each service runs supervised, as a [`Service`](mabeam_supervision_core::Service)
//! of an application, and depends on `supervision-core` only; other crates
//! reach them through supervision-core's contracts
//! ([`EventSink`](mabeam_supervision_core::EventSink),
//! [`EventReader`](mabeam_supervision_core::EventReader)), never by naming this
//! crate.
//!
//! - [`SqliteAgentStore`]: the durable table of agent registrations and
//!   checkpoints (supervision-core's `AgentStore`) on embedded SQLite (see
//!   [`agent_store`]); [`PostgresAgentStore`], the same on PostgreSQL.
//! - [`EventStore`]: a durable, append-only event log on embedded SQLite
//!   (the default, no setup) or on PostgreSQL for nodes that share one
//!   store ([`EventStoreConfig::postgres`]); the same handle, the same
//!   semantics, one contract test suite for both (see [`event_store`]).
//! - [`ConfigServer`]: configuration with a schema, persisted atomically,
//!   with change notifications and a degraded mode (see [`config_server`]).
//! - [`RateLimiter`]: token buckets keyed by (entity, operation), one
//!   [`Rule`] per operation, checked in the caller's thread.
//! - [`TaskSupervisor`]: ad-hoc tasks, fire-and-forget or awaited, not
//!   linked to their caller, every crash counted and reported, a bounded
//!   shutdown.
//! - [`HealthMonitor`]: the health of every service of the application
//!   trees (and named checks), overall and per service, with an event on
//!   every change.
//! - [`ServiceMonitor`]: periodic pings, and restarts through the
//!   application after missed pings, with a backoff, never while a
//!   supervisor is restarting.
//! - [`ConnectionManager`]: the node's connections to the other nodes of
//!   its cluster (cookie handshake, ticks, up and down notices).
//!
//! # PostgreSQL
//!
//! The PostgreSQL backends ([`postgres`]) run on tokio-postgres with a
//! deadpool-postgres pool, chosen over sqlx because it pipelines the
//! statements of one connection (a group commit costs one round trip),
//! hands out a connection's notifications as a stream (LISTEN/NOTIFY
//! wakes subscriptions) and needs no database at build time. Their tables
//! live in a schema of the user's choice, created and migrated by the
//! versioned SQL files in `migrations/postgres/`.
//!
//! # Example
//!
//! The EventStore acknowledges an append once it is on disk:
//!
//! ```
//! use mabeam_foundation_services::{EventStore, EventStoreConfig};
//! use mabeam_supervision_core::{Event, EventQuery};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let store = EventStore::open(EventStoreConfig::new(dir.path())).await?;
//! store.append(Event::new("order-1", "order_placed", serde_json::json!({"total": 30}))).await?;
//! let history = store.query(EventQuery::new().stream("order-1")).await?;
//! assert_eq!(history.len(), 1);
//! store.stop().await;
//! # Ok(()) }
//! ```
//!
//! # Examples
//!
//! The package's `examples/` folder: `event_sourced_counter` (a counter
//! rebuilt from its events, appended with optimistic concurrency, following
//! a setting through a config subscription), run with `cargo run -p
//! foundation-services --example event_sourced_counter`.

pub mod agent_store;
pub mod cluster;
pub mod config_server;
pub mod connection_manager;
pub mod event_store;
pub mod health_monitor;
mod ping;
pub mod postgres;
pub mod rate_limiter;
mod rounds;
pub mod service_monitor;
pub mod task_supervisor;

pub use agent_store::{
    FencedAgentStore, NodeLease, PostgresAgentStore, Renewal, SqliteAgentStore,
    SqliteAgentStoreConfig,
};
pub use config_server::{
    ConfigChange, ConfigError, ConfigHealth, ConfigSchema, ConfigServer, ConfigServerConfig,
    ConfigServerService, ConfigSubscription, UpdateOutcome, ValueRule,
};
pub use postgres::PostgresConfig;

pub use connection_manager::{
    ConnectionError, ConnectionManager, ConnectionManagerBuilder, Direction, NodeEvent, NodeInfo,
};
pub use event_store::{
    Appended, Appending, AppendingBatch, Durability, EventStore, EventStoreConfig, EventStoreError,
    EventStoreService, EventStoreStats, ExpectedVersion, Retention,
};
pub use health_monitor::{
    HealthMonitor, HealthMonitorBuilder, HealthMonitorError, HealthState, ServiceDetail,
    SystemHealth,
};
pub use rate_limiter::{
    Allowed, BucketStatus, RateLimitError, RateLimiter, RateLimiterBuilder, Rule,
};
pub use service_monitor::{
    Decision, RestartRecord, ServiceMonitor, ServiceMonitorBuilder, ServiceMonitorError,
    SkipReason, WatchedService,
};
pub use task_supervisor::{
    ShutdownReport, TaskCounts, TaskError, TaskHandle, TaskId, TaskSupervisor,
    TaskSupervisorBuilder,
};
