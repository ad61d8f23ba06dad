//! What a user of the whole system needs, in one import:
//! `use mabeam::prelude::*;`. supervision-core's prelude, the umbrella's
//! types, the registry and telemetry's services.

pub use process_registry::{ProcessRegistry, ServiceRegistry};
pub use supervision_core::prelude::*;
pub use supervision_core::{AgentId, AgentLoad, AgentStatus, Clock, Health, MetaValue};
pub use telemetry::{PerformanceMonitor, PrometheusExporter, Span, TelemetryService};

pub use crate::{Agents, FoundationApp, MabeamApp, MabeamError, System, SystemBuilder, Tree};
