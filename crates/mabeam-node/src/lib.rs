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
//! - [`data_dir`]: the data directory (the token, the event store's
//!   `events.db`, the config server's `config.json`), and the bearer token
//!   of mutating endpoints, generated into it on first start (mode 0600).
//! - [`http`]: the API: `GET /health` (200 or 503), `GET /metrics`
//!   (Prometheus text), `GET /api/tree`, `GET /api/agents` (paged),
//!   `GET /api/events?after=N` (from the event store); behind the bearer
//!   token: `POST /api/agents`, `DELETE /api/agents/{id}`,
//!   `POST /api/agents/{id}/ask`, `POST /api/events`,
//!   `POST /api/coordination/vote`, `POST /api/economics/auction`,
//!   `POST /api/services/{name}/restart`. Failures are [`ApiError`]s.
//! - [`kinds`]: the built-in agent kinds (`counter`, `worker`).
//! - [`Node`]: start and stop; [`run`] until a signal.
//! - [`client`]: the small loopback HTTP client `mabeam tree` uses.
//! - [`cli`]: `mabeam status`, `agents`, `events`, `services`: the
//!   commands that speak to a running node (over hyper's client).
//!
//! Errors are [`NodeError`], codes 9000-9999; a bad config file or flag
//! exits with code 2.

mod api_error;
pub mod cli;
pub mod client;
mod config;
pub mod data_dir;
mod error;
pub mod http;
pub mod kinds;
mod node;

pub use api_error::ApiError;
pub use config::{
    DEFAULT_CLUSTER_LISTEN, DEFAULT_CLUSTER_NODE, DEFAULT_DATA_DIR, DEFAULT_HTTP, LogLevel,
    NodeConfig,
};
pub use error::NodeError;
pub use node::{API_BURST, API_RATE, Node, run};
