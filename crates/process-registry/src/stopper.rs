//! [`Stopper`]: how [`ProcessRegistry::cleanup`](crate::ProcessRegistry::cleanup)
//! stops a registered process, so a supervised one is stopped through its
//! supervisor.

use std::{fmt, future::Future, sync::Arc};

use futures::future::BoxFuture;
use supervision_core::{DynamicSupervisor, ProcessHandle};

type StopFn = dyn Fn(ProcessHandle) -> BoxFuture<'static, ()> + Send + Sync;

/// How to stop a registered process when its namespace is cleaned up.
///
/// The registry knows no supervisors. A process stopped behind its
/// supervisor's back is restarted (a permanent child always is), so the
/// party that registers a supervised process hands the registry a
/// `Stopper` that asks the supervisor instead: [`Stopper::supervised_by`]
/// for a [`DynamicSupervisor`]'s child, [`Stopper::new`] for anything else.
///
/// A process registered without one is stopped with
/// [`ProcessHandle::stop`]. If a stopper returns while the process is
/// still running (its supervisor no longer knew it, say), cleanup stops it
/// with [`ProcessHandle::stop`] as well.
///
/// A stopper belongs to the process, not to one of its names: the last
/// one given while the process holds any name or membership applies.
///
/// # Example
///
/// ```
/// use kameo::Actor;
/// use process_registry::{ProcessRegistry, Stopper};
/// use supervision_core::{
///     ChildSpec, DynamicSupervisor, DynamicSupervisorFlags, Namespace, Telemetry,
/// };
///
/// #[derive(Actor)]
/// struct Worker;
///
/// # #[tokio::main] async fn main() {
/// let sup = DynamicSupervisor::start(DynamicSupervisorFlags::default()).await.unwrap();
/// let child = sup
///     .start_child(ChildSpec::actor::<Worker>("worker", || Worker))
///     .await
///     .unwrap();
///
/// let registry = ProcessRegistry::new(Telemetry::disabled());
/// let ns = Namespace::unique_test();
/// registry
///     .register_with_stopper(&ns, "worker", child.clone(), serde_json::Value::Null, Stopper::supervised_by(&sup))
///     .unwrap();
///
/// registry.cleanup(&ns).await;
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

    /// A stopper for a child of `supervisor`: it calls
    /// [`DynamicSupervisor::terminate_child`], which returns once the child
    /// has stopped and is no longer the supervisor's (so it is not
    /// restarted).
    ///
    /// The stopper holds the supervisor's handle while the process is
    /// registered.
    pub fn supervised_by(supervisor: &DynamicSupervisor) -> Self {
        let supervisor = supervisor.clone();
        Stopper::new(move |child| {
            let supervisor = supervisor.clone();
            async move {
                // A child the supervisor no longer knows is stopped by the
                // registry's fallback instead.
                let _ = supervisor.terminate_child(&child).await;
            }
        })
    }

    /// Runs the stopper on `handle`.
    pub(crate) fn stop(&self, handle: ProcessHandle) -> BoxFuture<'static, ()> {
        (self.stop)(handle)
    }
}

impl fmt::Debug for Stopper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stopper").finish_non_exhaustive()
    }
}
