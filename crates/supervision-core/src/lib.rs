//! OTP-style supervision on kameo, and the small contracts the service crates
//! meet through.
//!
//! Use it to keep kameo actors running the way Erlang/OTP keeps processes
//! running: a supervisor starts its children in order, restarts a child
//! that crashes (alone, with all its siblings, or with those started
//! after it), gives up and escalates when children crash too often, and
//! stops them in reverse order, each within its shutdown time. Every
//! service crate of mabeam depends on this one and on nothing else of ours.
//!
//! **Supervisors.** [`Supervisor`] (a static list of children, with OTP's
//! one_for_one, one_for_all and rest_for_one strategies) and
//! [`DynamicSupervisor`] (children started on demand) are each a kameo
//! actor of their own. A supervisor spawns its children, watches each
//! exit (one watcher task per supervisor awaits
//! [`ProcessHandle::exited`]; no kameo links, no `on_link_died`),
//! classifies it as an [`ExitReason`], and applies the child's
//! [`RestartType`] and its own restart [`Intensity`] itself. kameo's own
//! `supervise` builder is not used: its restart limits are per child and
//! reset after a quiet window, children that stop for good are never
//! removed, and its shutdown has no order and no timeout.
//!
//! **Applications.** An [`Application`] is a named tree of [`Service`]s
//! under one static supervisor, started in the order their dependencies
//! give and stopped in reverse, with a status per service, admin calls
//! (restart a service once what it depends on runs) and health checks.
//! [`ApplicationSpec`] defines one, and composes subsets.
//!
//! **Contracts.** [`ProcessHandle`] (a type-erased `pid`), [`Namespace`],
//! [`Registry`], [`Telemetry`], [`AgentId`] / [`AgentStatus`] /
//! [`AgentDirectory`], [`AgentStore`] (the durable agent table, in
//! [`agent_store`]), [`Event`] / [`EventSink`] / [`EventReader`] and [`ErrorCode`]. A service
//! crate that needs another asks for its contract here; the umbrella crate
//! injects the implementation (the `log`/`tracing` facade pattern).
//!
//! It is not a registry, a telemetry backend or an event store: those are
//! the service crates' work.
//!
//! # Example
//!
//! A pool of two workers under a one_for_one supervisor; one stops, the
//! supervisor starts it again, and the pool stops in reverse order:
//!
//! ```
//! use kameo::prelude::*;
//! use mabeam_supervision_core::{events, prelude::*};
//!
//! #[derive(Actor)]
//! struct Worker;
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Telemetry says when a child was restarted: no sleeping, no polling.
//! let telemetry = Telemetry::new();
//! let (restarts, mut restarted) = tokio::sync::mpsc::unbounded_channel();
//! telemetry.attach("restarts", events::CHILD_RESTARTED, move |_| {
//!     let _ = restarts.send(());
//! })?;
//!
//! let pool = Supervisor::start(
//!     SupervisorFlags::new(Strategy::OneForOne).with_telemetry(telemetry),
//!     [
//!         ChildSpec::actor::<Worker>("worker-1", || Worker),
//!         ChildSpec::actor::<Worker>("worker-2", || Worker),
//!     ],
//! )
//! .await?;
//! let first = pool.which_children().await?[0].state.handle().cloned().unwrap();
//! first.kill(); // a crash: the supervisor starts worker-1 again
//! restarted.recv().await;
//! let again = pool.which_children().await?[0].state.handle().cloned().unwrap();
//! assert_ne!(again.id(), first.id());
//! pool.stop().await; // worker-2, then worker-1
//! # Ok(()) }
//! ```
//!
//! # Examples
//!
//! The package's `examples/` folder: `worker_pool` (a supervised pool, a
//! crash, a restart seen through telemetry), run with `cargo run -p
//! supervision-core --example worker_pool`.
//!
//! # Feature flags
//!
//! - `testkit`: the `testkit` module: telemetry probes that
//!   await an event, test children that crash, stop or hang on command, and
//!   paused-clock helpers, so no test needs to sleep.
//!
//! # Children must be cooperative
//!
//! Killing a child (brutal kill, a shutdown timeout that ran out, or a start
//! timeout) aborts its whole task at its next `.await`: its handler, its
//! `on_start` or its `on_stop`, as OTP's `kill` runs no `terminate`; a
//! supervisor is killed with its subtree. A child spinning in synchronous
//! code cannot be killed, and on a small machine two such children freeze
//! the runtime. Run CPU-bound work with `tokio::task::spawn_blocking`.

mod agent;
pub mod agent_store;
mod application;
mod backoff;
mod child;
mod clock;
pub mod cluster;
mod deadlines;
mod dynamic;
mod error;
mod event;
mod event_log;
pub mod events;
mod exit;
mod fanout;
mod handle;
mod health;
mod info;
mod intensity;
mod load;
mod namespace;
pub mod prelude;
mod registry;
mod report;
mod stopper;
mod supervisor;
mod supervisor_ref;
mod task_process;
mod telemetry;
#[cfg(feature = "testkit")]
pub mod testkit;
mod timer;
mod watch;

pub use agent::{
    AgentDirectory, AgentId, AgentInfo, AgentStatus, AgentStatusChange, AgentStatusChanges,
    DirectoryError, Envelope,
};
pub use agent_store::{
    AgentRecord, AgentRegistration, AgentStore, AgentStoreError, AgentUpdate, AgentWrite,
    Checkpoint, LoadedAgent, MemoryAgentStore,
};
pub use application::{
    Application, ApplicationError, ApplicationSpec, ApplicationStatus, HealthReport, Service,
    ServiceDef, ServiceHealth, ServiceReport, ServiceStart, ServiceStatus, StatusReport, Subset,
    WeakApplication,
};
pub use backoff::Backoff;
pub use child::{ChildKind, ChildSpec, ChildTemplate, RestartType, Shutdown, StartFuture};
pub use clock::{Clock, ManualWall, TimeSource};
pub use deadlines::{Deadline, Deadlines};
pub use dynamic::{DynamicSupervisor, DynamicSupervisorFlags, ExitNotice, TemplateSupervisor};
pub use error::{
    ERROR_CODE_RANGES, ErrorCode, FlagsError, StartError, SupervisorError, error_code_range,
};
pub use event::{Event, EventSeq, EventSink, EventSinkError};
pub use event_log::{
    EventOrder, EventQuery, EventReadError, EventReader, EventSubscription, StoredEvent,
};
pub use exit::ExitReason;
pub use fanout::{AgentReply, AgentSelection, SelectionError, ask_all};
pub use handle::{ProcessHandle, WeakProcessHandle};
pub use health::{CheckHealth, Health, HealthCheck};
pub use info::{ChildCounts, ChildInfo, ChildState};
pub use intensity::Intensity;
pub use load::{AgentLoad, LoadReport};
pub use namespace::Namespace;
pub use registry::{
    EVENT_BUFFER, Metadata, RecvError, Registry, RegistryError, RegistryEvent, RegistryEventSender,
    RegistryEvents, Snapshot, Subscription, Topic, TryRecvError,
};
pub use stopper::Stopper;
pub use supervisor::{AutoShutdown, Strategy, Supervisor, SupervisorFlags};
pub use task_process::Process;
pub use telemetry::{
    GaugeReading, GaugeSource, MetaValue, OwnedEvent, OwnedMetaValue, Telemetry, TelemetryError,
    TelemetryEvent,
};

/// Re-exports of kameo's types that appear in this crate's API.
pub mod kameo_types {
    pub use kameo::actor::{ActorId, ActorRef};
}
