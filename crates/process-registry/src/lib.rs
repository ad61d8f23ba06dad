//! Find processes by name: a namespaced [`ProcessRegistry`] (unique names
//! with metadata, groups, change subscriptions) and a [`ServiceRegistry`] over
//! it (lookups with stable errors, health checks, waiting for a service,
//! fallbacks). Health checks are supervision-core's
//! [`HealthCheck`](mabeam_supervision_core::HealthCheck) and
//! [`Health`](mabeam_supervision_core::Health), the same types an application
//! checks its services with.
//!
//! [`ProcessRegistry`] implements supervision-core's
//! [`Registry`](mabeam_supervision_core::Registry) contract; other crates use it
//! as an `Arc<dyn Registry>` and never name this crate. It is a value:
//! there is no process-wide registry, so tests run side by side, each in
//! its own [`Namespace::Test`](mabeam_supervision_core::Namespace::Test).
//!
//! It is not a supervisor: it stops processes only in
//! [`ProcessRegistry::cleanup`], and then through the [`Stopper`] given at
//! registration (so a supervised process is stopped through its
//! supervisor and not restarted behind the caller's back). It is not a
//! distributed registry either: names are local to one node.
//!
//! # Concepts
//!
//! - **Names** are unique per namespace: a second process registering a
//!   held name gets [`RegistryError::AlreadyRegistered`] with the holder.
//! - **Groups** hold any number of processes, each as often as it joined
//!   (Erlang's `pg`).
//! - **Liveness**: a holder is live while
//!   [`ProcessHandle::is_alive`](mabeam_supervision_core::ProcessHandle::is_alive),
//!   which turns false as soon as a stop has been requested. Lookups, lists
//!   and counts skip holders that are not live, and a name whose holder is
//!   not live is free: registering it succeeds at once, without waiting
//!   for the registry's cleanup task (see [`ProcessRegistry`]).
//! - **Subscribers** receive the changes of a namespace (or of one name or
//!   group of it, [`Topic`](mabeam_supervision_core::Topic)), in the order the
//!   registry applied them, through a bounded buffer: one that falls behind
//!   is told it lagged, never left with a silent gap.
//! - **Ownership**: a registration owns nothing. The registry holds its
//!   processes weakly, so a registered actor stops when its other
//!   references drop, and a [`Stopper`] holds its supervisor weakly.
//!
//! # Key design decisions
//!
//! Lookups are the hot path and never wait on a writer of another shard:
//! each namespace keeps its names in a sharded concurrent map (`dashmap`),
//! readers take a shard's read lock only, and the production namespace is
//! reached without any map lookup. Writers of one name are serialised by
//! that name's shard lock, which is also what keeps a subscriber's events in
//! order.
//!
//! A lookup among 100,000 names is bound by one cache miss, the name's
//! bucket (two-thirds of its time, profiled): so a name's key and entry
//! fill exactly one 64-byte bucket (metadata is one word, `null` costs no
//! allocation). Read paths without a shared lock word were measured and
//! set aside: epoch-based maps (`papaya`, `scc`'s `HashIndex`) keep each
//! entry behind a pointer, a miss more per lookup, and were no faster (or
//! slower); a per-thread read lock (crossbeam's `ShardedLock`) gained
//! 10-20% on an idle machine but lost 10% while other work ran (one more
//! cache line per lookup). Besides the bucket, a lookup's shared writes are
//! the shard's read lock and the returned handle's count; without the
//! latter a lookup on a bare map took about 40% less time, but returning
//! an owned [`ProcessHandle`](mabeam_supervision_core::ProcessHandle) needs it.
//!
//! Cleanup of a stopped process costs one tokio task per *process*, not
//! per name: the task awaits the process's exit (without holding it) and
//! then removes every name and group membership the process had, from a
//! per-process index.
//!
//! [`RegistryError::AlreadyRegistered`]: mabeam_supervision_core::RegistryError::AlreadyRegistered
//!
//! # Example
//!
//! ```
//! use mabeam_process_registry::ProcessRegistry;
//! use mabeam_supervision_core::{Namespace, ProcessHandle, Telemetry};
//!
//! #[derive(kameo::Actor)]
//! struct Cache;
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = ProcessRegistry::new(Telemetry::disabled());
//! let ns = Namespace::Production;
//! let cache = ProcessHandle::spawn::<Cache>(Cache).await?;
//! registry.register(&ns, "cache", cache.clone(), serde_json::json!({"tier": 1}))?;
//! registry.join(&ns, "caches", cache.clone())?;
//! assert_eq!(registry.lookup(&ns, "cache").map(|h| h.id()), Some(cache.id()));
//! assert_eq!(registry.members(&ns, "caches").len(), 1);
//! cache.stop().await; // a stopped process holds no name
//! assert!(registry.lookup(&ns, "cache").is_none());
//! # Ok(()) }
//! ```
//!
//! # Examples
//!
//! The package's `examples/` folder: `names_and_groups` (names and groups
//! with a listener, a name awaited with [`ProcessRegistry::wait_for`]), run
//! with `cargo run -p mabeam-process-registry --example names_and_groups`.

mod error;
mod fallback;
mod process_registry;
mod records;
mod service;
mod subscribers;
mod table;

pub use error::ServiceError;
pub use fallback::{Answer, FallbackSource, LastValueCache};
pub use mabeam_supervision_core::Stopper;
pub use process_registry::{CleanupReport, DEFAULT_CLEANUP_SHUTDOWN, ProcessRegistry};
pub use service::{ServiceInfo, ServiceOptions, ServiceRegistry};
