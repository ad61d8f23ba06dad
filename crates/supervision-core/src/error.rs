//! Errors of this crate, and the [`ErrorCode`] contract every crate's errors
//! implement.

use std::{ops::RangeInclusive, sync::Arc, time::Duration};

use thiserror::Error;

use crate::{ExitReason, ProcessHandle};

/// A stable numeric code and a message for an error, so that logs, HTTP
/// answers and other languages can match on errors without parsing text.
///
/// Each crate's error enums implement it with codes inside the range
/// [`error_code_range`] reserves for that crate. A code, once given, keeps
/// its meaning.
///
/// # Example
///
/// ```
/// use mabeam_supervision_core::{ErrorCode, SupervisorError, error_code_range};
///
/// let err = SupervisorError::NotFound;
/// assert!(error_code_range("supervision-core").unwrap().contains(&err.code()));
/// assert_eq!(err.message(), "child not found");
/// ```
pub trait ErrorCode: std::error::Error {
    /// The stable code of this error.
    fn code(&self) -> u32;

    /// The human-readable message (the `Display` text by default).
    fn message(&self) -> String {
        self.to_string()
    }
}

/// The error-code ranges reserved per crate, one range each: every code a
/// crate's errors return lies in its range, so a code alone names the
/// crate that raised it.
pub const ERROR_CODE_RANGES: &[(&str, RangeInclusive<u32>)] = &[
    ("supervision-core", 1000..=1999),
    ("process-registry", 2000..=2999),
    ("foundation-services", 3000..=3999),
    ("telemetry", 4000..=4999),
    ("agent-supervisor", 5000..=5999),
    ("coordination", 6000..=6999),
    ("economics", 7000..=7999),
    ("mabeam", 8000..=8999),
    ("mabeam-node", 9000..=9999),
];

/// The error-code range reserved for `crate_name`.
pub fn error_code_range(crate_name: &str) -> Option<RangeInclusive<u32>> {
    ERROR_CODE_RANGES
        .iter()
        .find(|(name, _)| *name == crate_name)
        .map(|(_, range)| range.clone())
}

/// Why a child could not be started.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum StartError {
    /// The start returned an error (for an actor: its `on_start` did).
    #[error("start failed: {0}")]
    Failed(Arc<str>),
    /// The start panicked.
    #[error("start panicked: {0}")]
    Panicked(Arc<str>),
    /// The start did not complete within the child's start timeout.
    #[error("start timed out after {0:?}")]
    Timeout(Duration),
    /// The child started, but the name it is
    /// [`registered_as`](crate::ChildSpec::registered_as) is held by
    /// another live process (OTP's `{already_started, Pid}`); the new
    /// incarnation was stopped again.
    #[error("name {name:?} already registered")]
    AlreadyRegistered {
        /// The name.
        name: Arc<str>,
        /// Its holder.
        holder: crate::ProcessHandle,
    },
    /// The start chose not to run a process, as OTP's `ignore`: not a
    /// failure. A static supervisor keeps the spec, not running; a dynamic
    /// supervisor keeps nothing and tells the caller with this error.
    #[error("start ignored")]
    Ignored,
}

impl StartError {
    /// A `Failed` error from anything displayable.
    pub fn failed(message: impl std::fmt::Display) -> Self {
        StartError::Failed(message.to_string().into())
    }

    /// The start error matching a process that exited while starting.
    pub fn from_exit(reason: ExitReason) -> Self {
        match reason {
            ExitReason::Panic(message) => StartError::Panicked(message),
            other => StartError::failed(other),
        }
    }
}

impl ErrorCode for StartError {
    fn code(&self) -> u32 {
        match self {
            StartError::Failed(_) => 1001,
            StartError::Panicked(_) => 1002,
            StartError::Timeout(_) => 1003,
            StartError::AlreadyRegistered { .. } => 1004,
            StartError::Ignored => 1005,
        }
    }
}

/// An invalid supervisor flag or child spec, named with its value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum FlagsError {
    /// `max_seconds` must be longer than zero.
    #[error("invalid max_seconds {0:?}: the restart window must be longer than zero")]
    InvalidPeriod(Duration),
    /// `max_children` must allow at least one child.
    #[error("invalid max_children {0}: must be at least 1")]
    InvalidMaxChildren(usize),
    /// Two children share an id.
    #[error("duplicate child id {0:?}")]
    DuplicateChildId(Arc<str>),
    /// A shutdown timeout of zero (use `Shutdown::BrutalKill` instead).
    #[error("invalid shutdown timeout of zero for child {0:?}: use brutal kill")]
    ZeroShutdownTimeout(Arc<str>),
    /// Invalid restart backoff settings.
    #[error("invalid backoff: {0}")]
    InvalidBackoff(&'static str),
    /// A start timeout of zero can never be met.
    #[error("invalid start timeout of zero for child {0:?}")]
    ZeroStartTimeout(Arc<str>),
    /// A significant child must be transient or temporary.
    #[error("invalid child {0:?}: a significant child cannot be permanent")]
    SignificantPermanent(Arc<str>),
    /// A significant child needs a supervisor with an auto shutdown.
    #[error("invalid child {0:?}: significant under a supervisor whose auto_shutdown is never")]
    SignificantWithoutAutoShutdown(Arc<str>),
}

impl ErrorCode for FlagsError {
    fn code(&self) -> u32 {
        match self {
            FlagsError::InvalidPeriod(_) => 1101,
            FlagsError::InvalidMaxChildren(_) => 1102,
            FlagsError::DuplicateChildId(_) => 1103,
            FlagsError::ZeroShutdownTimeout(_) => 1104,
            FlagsError::ZeroStartTimeout(_) => 1105,
            FlagsError::InvalidBackoff(_) => 1106,
            FlagsError::SignificantPermanent(_) => 1107,
            FlagsError::SignificantWithoutAutoShutdown(_) => 1108,
        }
    }
}

/// The errors of the supervisors' admin calls.
///
/// Every call fails with [`SupervisorGone`](SupervisorError::SupervisorGone)
/// if the supervisor has stopped.
#[derive(Debug, Clone, Error)]
#[non_exhaustive]
pub enum SupervisorError {
    /// The child could not be started; nothing was kept.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The supervisor already has `max_children` children.
    #[error("max children reached ({0})")]
    MaxChildren(usize),
    /// No such child (it was never a child of this supervisor, or it has
    /// already been terminated).
    #[error("child not found")]
    NotFound,
    /// The child is running (a static supervisor's delete_child or
    /// restart_child needs it stopped).
    #[error("child is running")]
    Running,
    /// The child is being restarted.
    #[error("child is restarting")]
    Restarting,
    /// A child with this id is already running, here is its handle.
    #[error("child already started")]
    AlreadyStarted(ProcessHandle),
    /// A child with this id is present but not running.
    #[error("child already present")]
    AlreadyPresent,
    /// The supervisor has stopped (or is stopping).
    #[error("supervisor gone")]
    SupervisorGone,
    /// An invalid flag or child spec.
    #[error(transparent)]
    InvalidFlags(#[from] FlagsError),
    /// A static supervisor could not start: this child of its list failed
    /// to start. The children started before it were stopped again.
    #[error("child {id:?} failed to start: {error}")]
    ChildStart {
        /// The id of the child that failed.
        id: Arc<str>,
        /// Why it failed.
        error: StartError,
    },
}

impl ErrorCode for SupervisorError {
    fn code(&self) -> u32 {
        match self {
            SupervisorError::Start(err) => err.code(),
            SupervisorError::MaxChildren(_) => 1201,
            SupervisorError::NotFound => 1202,
            SupervisorError::Running => 1203,
            SupervisorError::Restarting => 1204,
            SupervisorError::AlreadyStarted(_) => 1205,
            SupervisorError::AlreadyPresent => 1206,
            SupervisorError::SupervisorGone => 1207,
            SupervisorError::InvalidFlags(err) => err.code(),
            SupervisorError::ChildStart { .. } => 1208,
        }
    }
}

/// Maps a kameo send error of an admin call to a [`SupervisorError`]: the
/// handler's own error, or the supervisor being gone.
pub(crate) fn from_send_error<M>(
    err: kameo::error::SendError<M, SupervisorError>,
) -> SupervisorError {
    match err {
        kameo::error::SendError::HandlerError(err) => err,
        _ => SupervisorError::SupervisorGone,
    }
}
