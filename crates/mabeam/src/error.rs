//! [`MabeamError`]: the umbrella's errors, codes 8000-8999.

use std::sync::Arc;

use mabeam_supervision_core::{ApplicationError, ErrorCode};
use mabeam_telemetry::TelemetryServiceError;
use thiserror::Error;

/// Why building, starting or operating a [`System`](crate::System) failed.
#[derive(Debug, Clone, Error)]
#[non_exhaustive]
pub enum MabeamError {
    /// No service of either tree has this name.
    #[error("unknown service {0:?}")]
    UnknownService(Arc<str>),
    /// A service of one's own takes a name already used in either tree.
    #[error("service {0:?} is defined twice")]
    DuplicateService(Arc<str>),
    /// An application refused (its definition, a start, a stop, an admin call).
    #[error("{tree} application: {error}")]
    Application {
        /// `foundation` or `mabeam`.
        tree: &'static str,
        /// What the application said.
        error: ApplicationError,
    },
    /// The telemetry wiring was refused (a disabled handle, a handler id taken).
    #[error(transparent)]
    Telemetry(#[from] TelemetryServiceError),
    /// A service that keeps files (the event store, the config server) was
    /// kept, and no data directory was given.
    #[error(
        "service {0:?} keeps its files in a data directory: give one (SystemBuilder::data_dir)"
    )]
    NoDataDir(Arc<str>),
    /// The connection manager was asked for, and the system has no
    /// cluster (node name and cookie).
    #[error(
        "service {0:?} needs a cluster: give a node name and a cookie (SystemBuilder::cluster)"
    )]
    NoCluster(Arc<str>),
    /// A MABEAM service that records to the event store (the agent layer,
    /// core, coordination) was kept without a data directory: the event
    /// store it needs keeps its files there.
    #[error(
        "service {0:?} records to the event_store, which keeps its files in a data directory: give one (SystemBuilder::data_dir)"
    )]
    NeedsEventStore(Arc<str>),
    /// A service was asked for ([`SystemBuilder::only`](crate::SystemBuilder::only))
    /// whose cargo feature of `mabeam` is off: it is not compiled in.
    #[error("service {service:?} is not compiled in: turn on mabeam's {feature:?} feature")]
    NotCompiled {
        /// The service asked for.
        service: Arc<str>,
        /// The feature of `mabeam` that brings it.
        feature: &'static str,
    },
    /// A service could not be built from its settings (the config server's
    /// persisted file unreadable, a limit out of range, ...).
    #[error("service {service:?} could not be built: {message}")]
    Service {
        /// The service.
        service: &'static str,
        /// What its crate said.
        message: String,
    },
}

impl ErrorCode for MabeamError {
    fn code(&self) -> u32 {
        match self {
            MabeamError::UnknownService(_) => 8001,
            MabeamError::DuplicateService(_) => 8002,
            MabeamError::Application { .. } => 8003,
            MabeamError::Telemetry(_) => 8004,
            MabeamError::NoDataDir(_) => 8005,
            MabeamError::Service { .. } => 8006,
            MabeamError::NoCluster(_) => 8007,
            MabeamError::NeedsEventStore(_) => 8008,
            MabeamError::NotCompiled { .. } => 8009,
        }
    }
}
