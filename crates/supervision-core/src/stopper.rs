//! [`Stopper`]: how to stop a process for good, through whoever supervises
//! it, so that it is not restarted behind the caller's back.

use std::{fmt, future::Future, sync::Arc};

use futures::future::BoxFuture;

use crate::{DynamicSupervisor, ProcessHandle, Supervisor, WeakProcessHandle};

type StopFn = dyn Fn(ProcessHandle) -> BoxFuture<'static, ()> + Send + Sync;

/// How to stop one process for good: OTP's `terminate_child` asked of the
/// process's supervisor, or any other way its owner chooses.
///
/// A process stopped behind its supervisor's back is restarted (a
/// permanent child always is). So a party that must stop processes it does
/// not own (a registry cleaning up a namespace) is handed a `Stopper` with
/// each process: [`Stopper::supervised_by`] for a [`DynamicSupervisor`]'s
/// child, [`Stopper::child_of`] for a static [`Supervisor`]'s, and
/// [`Stopper::new`] for anything else. A child spec
/// [`registered_as`](crate::ChildSpec::registered_as) a name registers
/// each incarnation with the stopper of the supervisor that started it.
///
/// A stopper holds its supervisor weakly: it never keeps a tree alive.
/// When the supervisor is gone, or no longer knows the process, the
/// stopper does nothing; the caller then stops the process by its handle
/// if it still runs.
///
/// # Example
///
/// ```
/// use kameo::Actor;
/// use mabeam_supervision_core::{ChildSpec, DynamicSupervisor, DynamicSupervisorFlags, Stopper};
///
/// #[derive(Actor)]
/// struct Worker;
///
/// # #[tokio::main] async fn main() {
/// let sup = DynamicSupervisor::start(DynamicSupervisorFlags::default()).await.unwrap();
/// let child = sup.start_child(ChildSpec::actor::<Worker>("w", || Worker)).await.unwrap();
///
/// Stopper::supervised_by(&sup).stop(child.clone()).await;
/// assert!(!child.is_alive());
/// assert_eq!(sup.count_children().await.unwrap().active, 0); // not restarted
/// # sup.stop().await;
/// # }
/// ```
#[derive(Clone)]
pub struct Stopper {
    stop: Arc<StopFn>,
}

impl Stopper {
    /// A stopper running `stop` with the process's handle.
    pub fn new<F, Fut>(stop: F) -> Self
    where
        F: Fn(ProcessHandle) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Stopper {
            stop: Arc::new(move |handle| Box::pin(stop(handle))),
        }
    }

    /// A stopper for a child of the dynamic `supervisor`: it calls
    /// [`DynamicSupervisor::terminate_child`], which returns once the child
    /// has stopped and is no longer the supervisor's (so it is not
    /// restarted). Holds the supervisor weakly.
    pub fn supervised_by(supervisor: &DynamicSupervisor) -> Self {
        Stopper::dynamic_child(supervisor.handle().downgrade())
    }

    /// A stopper for the child `id` of the static `supervisor`: it calls
    /// [`Supervisor::terminate_child`] if that child's running incarnation
    /// is the process to stop (not a later one), so the child is kept
    /// not running instead of being restarted. Holds the supervisor weakly.
    pub fn child_of(supervisor: &Supervisor, id: impl Into<Arc<str>>) -> Self {
        Stopper::static_child(supervisor.handle().downgrade(), id.into())
    }

    /// [`supervised_by`](Self::supervised_by) from the supervisor's weak
    /// handle.
    pub(crate) fn dynamic_child(supervisor: WeakProcessHandle) -> Self {
        Stopper::new(move |child| {
            let supervisor = supervisor.upgrade();
            async move {
                let Some(handle) = supervisor else { return };
                if let Some(supervisor) = DynamicSupervisor::from_handle(&handle) {
                    // A child the supervisor no longer knows is left to the
                    // caller.
                    let _ = supervisor.terminate_child(&child).await;
                }
            }
        })
    }

    /// [`child_of`](Self::child_of) from the supervisor's weak handle.
    pub(crate) fn static_child(supervisor: WeakProcessHandle, id: Arc<str>) -> Self {
        Stopper::new(move |child| {
            let supervisor = supervisor.upgrade();
            let id = id.clone();
            async move {
                let Some(supervisor) = supervisor.as_ref().and_then(Supervisor::from_handle) else {
                    return;
                };
                let Ok(children) = supervisor.which_children().await else {
                    return;
                };
                let current = children
                    .iter()
                    .any(|info| info.id == id && info.state.handle() == Some(&child));
                if current {
                    let _ = supervisor.terminate_child(&id).await;
                }
            }
        })
    }

    /// Stops `handle` this way; the future resolves when the stopper is
    /// done (for a supervised process: once it has stopped).
    pub fn stop(&self, handle: ProcessHandle) -> BoxFuture<'static, ()> {
        (self.stop)(handle)
    }
}

impl fmt::Debug for Stopper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stopper").finish_non_exhaustive()
    }
}
