//! The ConfigServer: configuration management with a schema, persistent
//! backing, change notifications, and a degraded mode while its process is
//! down.
//!
//! # Design
//!
//! - **A tree and a schema.** The configuration is one JSON tree
//!   (`serde_json::Value`), read and written by dotted paths
//!   (`rate_limiter.default_rate`). A [`ConfigSchema`] names the known
//!   paths, which of them may be updated at run time, and each one's
//!   [`ValueRule`] (type, range, choices). An update of any other path is
//!   [`ConfigError::Forbidden`]; a value breaking its rule is
//!   [`ConfigError::InvalidValue`], naming the path and the rule.
//! - **Reads skip the mailbox** (the seed's ETS table): the tree sits in a
//!   shared cache behind a read lock, and a read is a lookup in it. Reads
//!   therefore answer while the process is down.
//! - **Layers.** The tree is the built-in defaults, then a TOML file's
//!   values merged over them, then the values changed at run time,
//!   replayed in the order they were set: persisted values win over the
//!   file's defaults, and [`reset`](ConfigServer::reset) drops them.
//! - **Persistence.** The values changed at run time are written to
//!   `config.json` atomically: a temporary file, fsync, rename over the
//!   old one, fsync of the directory. A crash at any point leaves the old
//!   file or the new one, never a torn or empty one. An update is
//!   persisted before the cache changes and before it is acknowledged.
//! - **Notifications and events.** Subscribers receive every change
//!   (path, old, new) in the order applied; one that is gone is dropped.
//!   Every change is also recorded through supervision-core's
//!   [`EventSink`](mabeam_supervision_core::EventSink) (stream `config`, kind
//!   `config_changed`, with the previous value); changes the sink could
//!   not take are kept and recorded first at the next change.
//! - **Degraded mode.** While the process is down (crashed, restarting),
//!   reads answer from the cache, updates are refused with
//!   [`ConfigError::Unavailable`] (an update is acknowledged only once
//!   persisted: none waits in memory, where a crash would lose it), and
//!   [`ConfigServer::health`] is
//!   [`ConfigHealth::Degraded`]. [`ConfigServer::get_fallback_config`]
//!   answers a service's configuration (`services.<name>`) from the cache,
//!   for a service registry's fallback when a service is not running.
//!
//! # Example
//!
//! ```
//! use mabeam_foundation_services::{ConfigSchema, ConfigServerConfig, ConfigServerService, ValueRule};
//! use mabeam_supervision_core::ApplicationSpec;
//!
//! # #[tokio::main] async fn main() {
//! let dir = tempfile::tempdir().unwrap();
//! let schema = ConfigSchema::new().updatable("limits.rate", ValueRule::integer(1, 1_000));
//! let service = ConfigServerService::new(
//!     ConfigServerConfig::new(dir.path())
//!         .with_schema(schema)
//!         .with_defaults(serde_json::json!({"limits": {"rate": 10}})),
//! )
//! .unwrap();
//! let config = service.server();
//! let app = ApplicationSpec::new("foundation").service(service).start().await.unwrap();
//!
//! let mut changes = config.subscribe("limits");
//! config.update("limits.rate", serde_json::json!(50)).await.unwrap();
//! assert_eq!(config.get("limits.rate").unwrap(), 50);
//! assert_eq!(changes.next().await.unwrap().old, Some(serde_json::json!(10)));
//! assert!(config.update("limits.rate", serde_json::json!(0)).await.is_err());
//! app.stop().await.unwrap();
//! # }
//! ```

mod change;
mod error;
mod persist;
mod process;
mod schema;
mod server;
mod tree;

pub use change::{ConfigChange, ConfigSubscription};
pub use error::ConfigError;
pub use persist::CONFIG_FILE;
pub use process::{
    CONFIG_CHANGED, CONFIG_EVENT_STREAM, CONFIG_SERVER_SERVICE, ConfigProcess, ConfigServerService,
};
pub use schema::{ConfigSchema, PathRule, ValueRule};
pub use server::{ConfigHealth, ConfigServer, ConfigServerConfig, UpdateOutcome};
