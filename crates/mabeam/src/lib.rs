//! The umbrella: the seed's two application trees, Foundation and MABEAM,
//! wired from the service crates; a builder for subsets and one's own
//! services; a [`prelude`].
//!
//! This crate is thin on purpose: it holds no service of its own. It
//! builds one [`Wiring`] (one namespace, one [`ProcessRegistry`](process_registry::ProcessRegistry)
//! injected as `Arc<dyn Registry>`, one `Telemetry`, one `Clock`) and
//! hands it to each service at construction, as the seed's
//! PROCESS_HIERARCHY.md describes:
//!
//! - [`FoundationApp`] (one_for_one): `process_registry`,
//!   `service_registry`, `telemetry_service`;
//! - [`MabeamApp`] (one_for_one): `performance_monitor`.
//!
//! The seed's other services are **absent**, not stood in for: the config
//! server, event store, connection manager, rate limiter, task supervisor,
//! health and service monitors (foundation-services), the agent registry
//! and supervisor (agent-supervisor), core and the coordination subtree
//! (coordination, economics). [`FOUNDATION_SEED`] and [`MABEAM_SEED`] list
//! every seed service with its crate and whether it is wired; each joins
//! its tree in the seed's order when its crate lands, and the live tree
//! report ([`System::tree`]) lists the absent ones.
//!
//! [`System`] runs both: Foundation starts first and stops last. Each
//! service's process registers itself under its name in the system's
//! namespace while it runs, so stopping the system leaves the namespace
//! empty (the seed's supervision tree test). [`SystemBuilder::only`]
//! keeps a subset (plus what it depends on, said back by
//! [`System::added`]); [`SystemBuilder::service`] adds one's own.
//!
//! It is not the node: flags, config files, HTTP and signals are
//! mabeam-node's. Errors are [`MabeamError`], codes 8000-8999.

mod error;
mod foundation;
mod holder;
mod mabeam_app;
pub mod prelude;
pub mod seed;
mod system;
mod tree;
mod wiring;

pub use error::MabeamError;
pub use foundation::FoundationApp;
pub use mabeam_app::MabeamApp;
pub use seed::{FOUNDATION_SEED, MABEAM_SEED, SeedService};
pub use system::{ServiceHealthLine, System, SystemBuilder, SystemHealth, Tree};
pub use tree::{LIST_LIMIT, ProcessKind, ProcessNode, TreeReport};
pub use wiring::{HEALTH_TIMEOUT, Wiring};
