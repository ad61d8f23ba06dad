//! The umbrella: the seed's two application trees, Foundation and MABEAM,
//! wired from the service crates; a builder for subsets and one's own
//! services; a [`prelude`].
//!
//! This crate is thin on purpose: it holds no service of its own. It
//! builds one [`Wiring`] (one namespace, one [`ProcessRegistry`](mabeam_process_registry::ProcessRegistry)
//! injected as `Arc<dyn Registry>`, one EventStore injected as
//! `EventSink`/`EventReader`, one agent registry injected as
//! `AgentDirectory`, one `Telemetry`, one `Clock`) and hands it to each
//! service at construction, as the seed's process hierarchy describes it:
//!
//! - [`FoundationApp`] (one_for_one): `process_registry`,
//!   `service_registry`, `telemetry_service`, `config_server`,
//!   `event_store`, `connection_manager`, `rate_limiter`,
//!   `task_supervisor`, `health_monitor`, `service_monitor`;
//! - [`MabeamApp`] (one_for_one): `core`, `agent_supervisor`,
//!   `agent_registry`, `coordination_supervisor` (`coordination`,
//!   `economics`, `load_balancer`), `performance_monitor`.
//!
//! Every seed service is wired: [`FOUNDATION_SEED`] and [`MABEAM_SEED`]
//! list each with its crate. The event store and the config server keep
//! their files in the data directory ([`SystemBuilder::data_dir`]); the
//! connection manager needs a cluster ([`SystemBuilder::cluster`]: node
//! name, cookie, address, seeds), and a system without one leaves it out,
//! which the live tree report ([`System::tree`]) says with the reason;
//! agents run on the agent runtime ([`SystemBuilder::agent_runtime`]) when
//! one is given.
//!
//! [`System`] runs both: Foundation starts first and stops last. Each
//! service's process registers itself under its name in the system's
//! namespace while it runs (and each running agent as `agent:<id>`), so
//! stopping the system leaves the namespace empty (the seed's supervision
//! tree test). [`SystemBuilder::only`] keeps a subset (plus what it
//! depends on, across the trees, said back by [`System::added`]);
//! [`SystemBuilder::service`] adds one's own.
//!
//! It is not the node: flags, config files, HTTP and signals are
//! mabeam-node's. Errors are [`MabeamError`], codes 8000-8999.
//!
//! # Example
//!
//! A subset: the agent layer (and what it needs), started and stopped:
//!
//! ```
//! use mabeam::{System, seed};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?; // the event store's files
//! let system = System::builder()
//!     .namespace(mabeam::supervision_core::Namespace::unique_test())
//!     .data_dir(dir.path())
//!     .only([seed::AGENT_REGISTRY])
//!     .build()?;
//! assert_eq!(system.added(), ["event_store".into(), "agent_supervisor".into()]);
//! system.start().await?;
//! assert!(system.health().await.healthy);
//! system.stop().await?;
//! # Ok(()) }
//! ```
//!
//! # Feature flags
//!
//! One feature per service group, all on by default. A program that
//! embeds a subset turns the rest off and does not compile them
//! (`mabeam = { version = "0.1", default-features = false, features =
//! ["agents"] }`); a service whose feature is off is absent from its tree,
//! listed by [`System::tree`] with the feature that brings it, and
//! [`SystemBuilder::only`] naming it is [`MabeamError::NotCompiled`].
//! Without any feature the system has the process registry, the service
//! registry, telemetry and the performance monitor.
//!
//! - `foundation`: the Foundation services of `foundation-services` (the
//!   event store and the config server on SQLite, the connection manager,
//!   the rate limiter, the task supervisor, the health and service
//!   monitors). Without it, agents and coordination record no events.
//! - `agents`: the agent layer of `agent-supervisor` (`agent_supervisor`,
//!   `agent_registry`).
//! - `coordination` (with `agents`): `core` and `coordination`.
//! - `economics` (with `agents`): `economics` and `load_balancer`.
//!
//! # Examples
//!
//! The package's `examples/` folder: `embedded_subset` (a custom subset, a
//! service and an agent kind of one's own, one dependency; needs the
//! `foundation` and `agents` features), run with `cargo run -p mabeam
//! --example embedded_subset`.

#[cfg(feature = "agents")]
mod agents;
mod error;
mod foundation;
mod holder;
mod mabeam_app;
pub mod prelude;
pub mod seed;
mod system;
mod tree;
mod wiring;

/// The crates the umbrella wires, re-exported at the versions it was built
/// with: a program that composes its own subset depends on `mabeam` alone
/// and names them as `mabeam::supervision_core`, `mabeam::agent_supervisor`, ...
#[cfg(feature = "agents")]
pub use mabeam_agent_supervisor as agent_supervisor;
#[cfg(feature = "coordination")]
pub use mabeam_coordination as coordination;
#[cfg(feature = "economics")]
pub use mabeam_economics as economics;
#[cfg(feature = "foundation")]
pub use mabeam_foundation_services as foundation_services;
pub use mabeam_process_registry as process_registry;
pub use mabeam_supervision_core as supervision_core;
pub use mabeam_telemetry as telemetry;

#[cfg(feature = "agents")]
pub use agents::{AGENTS_SHUTDOWN, Agents};
pub use error::MabeamError;
pub use foundation::FoundationApp;
pub use mabeam_app::MabeamApp;
pub use seed::{FOUNDATION_SEED, MABEAM_SEED, SeedService};
#[cfg(feature = "agents")]
pub use system::DirectoryLayer;
pub use system::{RecoveryHealth, ServiceHealthLine, System, SystemBuilder, SystemHealth, Tree};
pub use tree::{LIST_LIMIT, ProcessKind, ProcessNode, TreeReport};
#[cfg(feature = "agents")]
pub use wiring::Directory;
pub use wiring::{HEALTH_TIMEOUT, Wiring};
