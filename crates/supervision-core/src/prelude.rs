//! The types most users need, in one import, as kameo's prelude:
//! `use mabeam_supervision_core::prelude::*;`.
//!
//! Supervisors and their settings, child specs, handles and exit reasons,
//! the errors they answer with, and the contracts the service crates meet
//! through. Less common types (the testkit, event names, kameo re-exports)
//! are imported from their own paths.

pub use crate::{
    Application, ApplicationSpec, AutoShutdown, Backoff, ChildCounts, ChildInfo, ChildKind,
    ChildSpec, ChildState, ChildTemplate, DynamicSupervisor, DynamicSupervisorFlags, ErrorCode,
    ExitReason, FlagsError, Health, HealthCheck, Intensity, Namespace, ProcessHandle, Registry,
    RestartType, Service, ServiceDef, Shutdown, StartError, Strategy, Supervisor, SupervisorError,
    SupervisorFlags, Telemetry, TemplateSupervisor,
};
