//! Why a process stopped: [`ExitReason`], OTP's exit reasons in Rust.

use std::{fmt, sync::Arc};

use kameo::error::{ActorStopReason, PanicError};

/// Why a process stopped, as a supervisor classifies it.
///
/// The variants follow OTP: `normal` and `shutdown` are the clean exits that a
/// [`Transient`](crate::RestartType::Transient) child is not restarted for;
/// everything else is abnormal.
///
/// | kameo stop reason                    | `ExitReason`                       |
/// |--------------------------------------|------------------------------------|
/// | `Normal`, the stop request ended it  | `Shutdown(None)`                   |
/// | `Normal`, the actor stopped itself (even while a stop request waited in its mailbox) | `Normal` |
/// | `Killed`, or its task aborted by [`ProcessHandle::kill`](crate::ProcessHandle::kill) | `Killed` |
/// | an error returned by `on_stop`       | `Error(message)`, or the `ExitReason` itself when the actor's error type is `ExitReason` (a clean one stays clean) |
/// | `Panicked`, a real panic             | `Panic(message)`                   |
/// | `Panicked`, an error returned        | `Error(message)`, or the `ExitReason` itself when the actor's error type is `ExitReason` |
/// | `LinkDied`                           | `Error("linked actor ... died")`   |
///
/// # Example
///
/// ```
/// use mabeam_supervision_core::ExitReason;
///
/// assert!(ExitReason::Normal.is_clean());
/// assert!(ExitReason::Shutdown(Some("maintenance".into())).is_clean());
/// assert!(!ExitReason::Panic("index out of bounds".into()).is_clean());
/// assert_eq!(ExitReason::Killed.to_string(), "killed");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExitReason {
    /// The process finished its work and stopped by itself.
    Normal,
    /// The process was asked to stop (by its supervisor or a caller) and did,
    /// with an optional detail.
    Shutdown(Option<Arc<str>>),
    /// The process was killed without a chance to finish (brutal kill, or a
    /// shutdown timeout that ran out).
    Killed,
    /// The process panicked; the panic message.
    Panic(Arc<str>),
    /// The process failed with an error; its message.
    Error(Arc<str>),
    /// The process went over its memory budget and was stopped (Erlang's
    /// `max_heap_size` with `kill: true`): abnormal, like a crash.
    MemoryLimit {
        /// The size it reported, in bytes.
        used: u64,
        /// Its budget, in bytes.
        budget: u64,
    },
}

impl ExitReason {
    /// Whether this is a clean exit (`Normal` or `Shutdown`), the exits a
    /// transient child is not restarted for.
    pub fn is_clean(&self) -> bool {
        matches!(self, ExitReason::Normal | ExitReason::Shutdown(_))
    }

    /// An `Error` reason from anything displayable.
    pub fn error(message: impl fmt::Display) -> Self {
        ExitReason::Error(message.to_string().into())
    }

    /// Classifies a kameo stop reason. `stop_handled` says whether the
    /// process got to a stop request (see
    /// [`ProcessHandle::stop_handled`](crate::ProcessHandle::stop_handled)),
    /// which turns a normal stop into `Shutdown`.
    pub(crate) fn from_kameo(reason: &ActorStopReason, stop_handled: bool) -> Self {
        match reason {
            ActorStopReason::Normal | ActorStopReason::SupervisorRestart => {
                if stop_handled {
                    ExitReason::Shutdown(None)
                } else {
                    ExitReason::Normal
                }
            }
            ActorStopReason::Killed => ExitReason::Killed,
            ActorStopReason::Panicked(err) => Self::from_panic_error(err),
            ActorStopReason::LinkDied { id, reason } => {
                ExitReason::error(format_args!("linked actor {id} died: {reason}"))
            }
            #[allow(unreachable_patterns)]
            other => ExitReason::error(other),
        }
    }

    /// Classifies a kameo `PanicError`: a real panic keeps its message, a
    /// returned error its display, and an `ExitReason` returned as the actor's
    /// error is taken as it is.
    pub(crate) fn from_panic_error(err: &PanicError) -> Self {
        if let Some(reason) = err.downcast::<ExitReason>() {
            return reason;
        }
        let message: Arc<str> = err
            .with_str(|s| Arc::from(s))
            .unwrap_or_else(|| err.to_string().into());
        if err.is_panic() {
            ExitReason::Panic(message)
        } else {
            ExitReason::Error(message)
        }
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitReason::Normal => f.write_str("normal"),
            ExitReason::Shutdown(None) => f.write_str("shutdown"),
            ExitReason::Shutdown(Some(detail)) => write!(f, "shutdown: {detail}"),
            ExitReason::Killed => f.write_str("killed"),
            ExitReason::Panic(message) => write!(f, "panic: {message}"),
            ExitReason::Error(message) => write!(f, "error: {message}"),
            ExitReason::MemoryLimit { used, budget } => {
                write!(f, "memory_limit: {used} bytes over a budget of {budget}")
            }
        }
    }
}

impl std::error::Error for ExitReason {}
