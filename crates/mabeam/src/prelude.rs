//! What a user of the whole system needs, in one import:
//! `use mabeam::prelude::*;`. supervision-core's prelude, the umbrella's
//! types, the registry and telemetry's services, and what writing an
//! agent of one's own takes (`Agent`, `AgentConfig`, `AgentContext`,
//! `StartError`; with the `agents` feature) and reading the event log (`Event`, `EventQuery`).

#[cfg(feature = "agents")]
pub use mabeam_agent_supervisor::{Agent, AgentConfig, AgentContext, AgentRef, EnvelopeError};
pub use mabeam_process_registry::{ProcessRegistry, ServiceRegistry};
pub use mabeam_supervision_core::prelude::*;
pub use mabeam_supervision_core::{
    AgentDirectory, AgentId, AgentLoad, AgentStatus, Clock, Envelope, Event, EventQuery, Health,
    MetaValue,
};
pub use mabeam_telemetry::{PerformanceMonitor, PrometheusExporter, Span, TelemetryService};

#[cfg(feature = "agents")]
pub use crate::Agents;
pub use crate::{FoundationApp, MabeamApp, MabeamError, System, SystemBuilder, Tree};
