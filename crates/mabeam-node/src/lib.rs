//! The mabeam node: what the binary `mabeam` runs. It reads flags and a
//! config file, prepares a data directory, starts the umbrella's two trees
//! with a Prometheus exporter it owns, serves the HTTP API (axum) on
//! loopback, and stops everything in reverse start order on Ctrl-C or
//! SIGTERM.
//!
//! This crate is not a library for other crates: it is the binary's
//! behaviour, kept here so tests can reach it. Every service it shows
//! lives in a library crate (`mabeam`, `telemetry`, ...).
//! **Architecture Invariant:** only this crate reads config files and
//! command-line flags.
//!
//! - [`NodeConfig`]: embedded defaults (HTTP on `127.0.0.1:4000`, data in
//!   `./mabeam-data`), a TOML file, flags; its values are also the config
//!   server's defaults.
//! - [`data_dir`]: the data directory (mode 0700, locked by the node that
//!   uses it: the token, the event store's `events.db`, the config
//!   server's `config.json`), and the bearer token of the API, generated
//!   into it on first start (mode 0600).
//! - [`http`]: the API: open to probes, `GET /health` (200 or 503, as of
//!   the health monitor's last round) and `GET /metrics` (Prometheus
//!   text); behind the bearer token unless `http.public_reads`:
//!   `GET /api/tree`, `GET /api/agents` (paged), `GET /api/events?after=N`
//!   (from the event store); behind the bearer token always:
//!   `POST /api/agents`, `DELETE /api/agents/{id}`,
//!   `POST /api/agents/{id}/ask`, `POST /api/agents/{id}/kill`,
//!   `POST /api/agents/{id}/passivate`, `POST /api/events`,
//!   `POST /api/coordination/vote`, `POST /api/economics/auction`,
//!   `POST /api/services/{name}/restart`. Failures are [`ApiError`]s.
//! - [`config_api`]: the ConfigServer over HTTP, `GET /api/config` and
//!   `GET`/`PUT /api/config/{*path}` (reads and updates as the other
//!   `/api/*` routes are guarded; an update answered once persisted).
//! - [`observer`]: `GET /`, a live page of the node (system, both trees,
//!   agents, metrics, events, health, cluster) updated over Server-Sent
//!   Events, its assets embedded in the binary.
//! - [`kinds`]: the built-in agent kinds (`counter`, `worker`).
//! - [`Node`]: start and stop; [`run`] until a signal.
//! - [`client`]: the small loopback HTTP client `mabeam tree` uses.
//! - [`cli`]: `mabeam status`, `agents`, `events`, `services`: the
//!   commands that speak to a running node (over hyper's client).
//! - [`logging`]: log lines for people (time, level, message, fields) or
//!   JSON for machines; `RUST_LOG` honoured.
//!
//! Errors are [`NodeError`], codes 9000-9999; the binary prints each with
//! its code and what to do, and exits 2 for bad configuration or usage, 1
//! otherwise (never by a panic).

mod api_error;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod cluster_lease;
mod cluster_reach;
mod config;
pub mod config_api;
pub mod data_dir;
mod error;
pub mod http;
pub mod kinds;
pub mod logging;
mod node;
pub mod observer;
mod rejection;

pub use api_error::ApiError;
pub use config::{
    DEFAULT_CLUSTER_LISTEN, DEFAULT_CLUSTER_NODE, DEFAULT_DATA_DIR, DEFAULT_HTTP, LogFormat,
    LogLevel, MIN_SECRET_BITS, NodeConfig,
};
pub use error::NodeError;
pub use node::{API_BURST, API_RATE, Node, run};
