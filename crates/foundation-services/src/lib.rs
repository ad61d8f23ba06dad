//! Foundation services: ConfigServer, EventStore, RateLimiter, TaskSupervisor,
//! HealthMonitor, ServiceMonitor and ConnectionManager.
//!
//! Each service runs supervised, as a [`Service`](supervision_core::Service)
//! of an application, and depends on `supervision-core` only; other crates
//! reach them through supervision-core's contracts
//! ([`EventSink`](supervision_core::EventSink),
//! [`EventReader`](supervision_core::EventReader)), never by naming this
//! crate.
//!
//! - [`EventStore`]: a durable, append-only event log on embedded SQLite
//!   (see [`event_store`]).
//! - [`ConfigServer`]: configuration with a schema, persisted atomically,
//!   with change notifications and a degraded mode (see [`config_server`]).

pub mod config_server;
pub mod event_store;

pub use config_server::{
    ConfigChange, ConfigError, ConfigHealth, ConfigSchema, ConfigServer, ConfigServerConfig,
    ConfigServerService, ConfigSubscription, UpdateOutcome, ValueRule,
};

pub use event_store::{
    Appended, Appending, AppendingBatch, EventStore, EventStoreConfig, EventStoreError,
    EventStoreService, EventStoreStats, ExpectedVersion,
};
