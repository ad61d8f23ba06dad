//! [`TaskError`]: why a task could not be spawned, or did not finish.

use std::sync::Arc;

use mabeam_supervision_core::ErrorCode;
use thiserror::Error;

/// The errors of the [`TaskSupervisor`](crate::TaskSupervisor) (codes
/// 3301-3399).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TaskError {
    /// The supervisor already runs `max_children` tasks; nothing was
    /// spawned. Code 3301.
    #[error("max children reached ({0})")]
    MaxChildren(usize),
    /// The supervisor is shutting down (or shut down) and takes no new
    /// task; nothing was spawned. Code 3302.
    #[error("task supervisor is shut down")]
    ShutDown,
    /// The task panicked; the panic message. Code 3303.
    #[error("task panicked: {0}")]
    Panicked(Arc<str>),
    /// The task was aborted by a shutdown that ran out of time, before it
    /// finished. Code 3304.
    #[error("task aborted")]
    Aborted,
    /// A fire-and-forget task returned an error; its message. Code 3305.
    #[error("task failed: {0}")]
    Failed(Arc<str>),
    /// Spawning was asked outside a tokio runtime; nothing was spawned.
    /// Code 3306.
    #[error("no tokio runtime to spawn the task on")]
    NoRuntime,
    /// The tokio runtime of the caller has shut down: it would drop the
    /// task unrun; nothing was spawned. Code 3307.
    #[error("the tokio runtime has shut down")]
    RuntimeShutDown,
}

impl ErrorCode for TaskError {
    fn code(&self) -> u32 {
        match self {
            TaskError::MaxChildren(_) => 3301,
            TaskError::ShutDown => 3302,
            TaskError::Panicked(_) => 3303,
            TaskError::Aborted => 3304,
            TaskError::Failed(_) => 3305,
            TaskError::NoRuntime => 3306,
            TaskError::RuntimeShutDown => 3307,
        }
    }
}
