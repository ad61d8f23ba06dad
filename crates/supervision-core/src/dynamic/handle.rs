//! [`DynamicSupervisor`]: the handle users hold, and its calls.

use std::{fmt, sync::Arc};

use tokio::sync::OnceCell;

use super::{
    DynamicSupervisorFlags, ExitNotice, TemplateSupervisor,
    actor::{DynamicSupervisorActor, Shared},
    children::Claim,
    messages::{Adopt, CollectEnded, GetShared, TerminateChild},
    notice::{ENDED_BATCH, NoticeInner},
};
use crate::{
    ChildCounts, ChildInfo, ChildSpec, ChildTemplate, ExitReason, FlagsError, ProcessHandle,
    StartError, SupervisorError, error::from_send_error, supervisor_ref::SupervisorRef,
};

/// A handle to a running dynamic supervisor: cheap to clone; the supervisor
/// runs while any handle to it exists (dropping the last one stops it and
/// its children).
///
/// It starts, stops and answers as a [`Supervisor`](crate::Supervisor)
/// does: `start` is async and fails with a [`SupervisorError`], the flags
/// are built the same way, [`from_handle`](Self::from_handle) gets the API
/// back from a child's handle, and every call fails with
/// [`SupervisorError::SupervisorGone`] once the supervisor has stopped.
///
/// # Example
///
/// ```
/// use kameo::prelude::*;
/// use mabeam_supervision_core::{ChildSpec, DynamicSupervisor, DynamicSupervisorFlags};
///
/// #[derive(Actor)]
/// struct Worker;
///
/// # #[tokio::main] async fn main() {
/// let sup = DynamicSupervisor::start(DynamicSupervisorFlags::new()).await.unwrap();
/// let child = sup.start_child(ChildSpec::actor::<Worker>("worker", || Worker)).await.unwrap();
/// assert_eq!(sup.count_children().await.unwrap().active, 1);
///
/// sup.terminate_child(&child).await.unwrap();
/// assert!(!child.is_alive());
/// sup.stop().await;
/// # }
/// ```
#[derive(Clone)]
pub struct DynamicSupervisor {
    inner: SupervisorRef<DynamicSupervisorActor>,
    /// What the handle shares with the actor; fetched from the actor on
    /// first use by a handle made with `from_handle`.
    shared: OnceCell<Arc<Shared>>,
}

impl DynamicSupervisor {
    /// Starts a dynamic supervisor with no children. Invalid flags are a
    /// [`SupervisorError::InvalidFlags`].
    pub async fn start(flags: DynamicSupervisorFlags) -> Result<Self, SupervisorError> {
        flags.validate()?;
        let (actor, shared) = DynamicSupervisorActor::new(flags);
        Ok(DynamicSupervisor {
            inner: SupervisorRef::spawn(actor),
            shared: OnceCell::new_with(Some(shared)),
        })
    }

    /// Starts a dynamic supervisor that starts children from `template`, see
    /// [`TemplateSupervisor`].
    pub async fn with_template<A>(
        flags: DynamicSupervisorFlags,
        template: ChildTemplate<A>,
    ) -> Result<TemplateSupervisor<A>, SupervisorError>
    where
        A: Clone + Send + Sync + 'static,
    {
        Ok(TemplateSupervisor {
            supervisor: DynamicSupervisor::start(flags).await?,
            template,
        })
    }

    /// A child spec that starts a dynamic supervisor with `flags`, to nest
    /// one under another supervisor; its [`validate`](ChildSpec::validate)
    /// checks the flags too. Get its API back from the child's handle with
    /// [`from_handle`](Self::from_handle).
    pub fn child_spec(id: impl Into<Arc<str>>, flags: DynamicSupervisorFlags) -> ChildSpec {
        let checked = flags.clone();
        ChildSpec::new(id, move || {
            let flags = flags.clone();
            async move {
                DynamicSupervisor::start(flags)
                    .await
                    .map(|sup| sup.inner.handle)
                    .map_err(StartError::failed)
            }
        })
        .supervisor()
        .with_check(move || checked.validate())
    }

    /// The supervisor behind a process handle, if it is a dynamic
    /// supervisor.
    pub fn from_handle(handle: &ProcessHandle) -> Option<Self> {
        Some(DynamicSupervisor {
            inner: SupervisorRef::from_handle(handle)?,
            shared: OnceCell::new(),
        })
    }

    async fn shared(&self) -> Result<&Arc<Shared>, SupervisorError> {
        self.shared
            .get_or_try_init(|| async {
                self.inner
                    .actor
                    .ask(GetShared)
                    .await
                    .map_err(|_| SupervisorError::SupervisorGone)
            })
            .await
    }

    /// Starts a child from `spec` and returns its handle once its start has
    /// completed. A start error is returned and nothing is kept; a start
    /// that answers [`StartError::Ignored`] (OTP's `ignore`) is returned as
    /// that error, and nothing is kept either.
    ///
    /// Once the supervisor gives up or stops, this answers
    /// [`SupervisorError::SupervisorGone`] and leaves nothing running: a
    /// child whose start completed as the supervisor closed is stopped
    /// before the answer.
    pub async fn start_child(&self, spec: ChildSpec) -> Result<ProcessHandle, SupervisorError> {
        self.start_one(spec, false).await
    }

    /// [`start_child`](Self::start_child), for a child that tells the
    /// supervisor of its own exit through the supervisor's
    /// [`exit_notice`](Self::exit_notice) (every incarnation of it, if it
    /// is restarted): the supervisor then does not watch it.
    /// A child that fails to report stays counted as running until it is
    /// terminated or the supervisor stops. For children by the hundred
    /// thousand (agents) that report from their `on_stop`: such a start
    /// does not wake the supervisor (unless it reports to telemetry); the
    /// child is queued, and the supervisor takes it before it answers
    /// anything, so `count_children`, `which_children`, `terminate_child`
    /// and its stop all see it.
    pub async fn start_reporting_child(
        &self,
        spec: ChildSpec,
    ) -> Result<ProcessHandle, SupervisorError> {
        self.start_one(spec, true).await
    }

    /// How children started with
    /// [`start_reporting_child`](Self::start_reporting_child) report their
    /// exit. Fails with [`SupervisorError::SupervisorGone`] once the
    /// supervisor has stopped.
    pub async fn exit_notice(&self) -> Result<ExitNotice, SupervisorError> {
        Ok(ExitNotice {
            inner: Arc::new(NoticeInner {
                supervisor: self.inner.actor.downgrade(),
                shared: self.shared().await?.clone(),
                process: self.inner.handle.downgrade(),
            }),
        })
    }

    async fn start_one(
        &self,
        spec: ChildSpec,
        reports: bool,
    ) -> Result<ProcessHandle, SupervisorError> {
        spec.validate()?;
        if spec.significant {
            // No auto shutdown here, as OTP's DynamicSupervisor has none.
            return Err(FlagsError::SignificantWithoutAutoShutdown(spec.id.clone()).into());
        }
        let shared = self.shared().await?;
        if shared.is_closing() || !self.inner.handle.is_alive() {
            return Err(SupervisorError::SupervisorGone);
        }
        // Given back if the start fails, or if this future is dropped midway
        // (a started child whose handle is dropped stops by itself).
        let place = match shared.places.reserve() {
            Err(SupervisorError::MaxChildren(_)) if !shared.ended.lock().is_empty() => {
                // Children that ended hold their places until the
                // supervisor collects them: have it do so, then retry.
                let _ = self.inner.actor.ask(CollectEnded).await;
                shared.places.reserve()?
            }
            reserved => reserved?,
        };
        let handle = shared
            .reporter
            .start(&spec, || crate::Stopper::supervised_by(self))
            .await?;
        let shutdown = spec.shutdown;
        // A reporting child is queued for the supervisor, not told: it
        // collects the queue before it handles any message (so every
        // answer it gives counts the child), and is woken once per batch.
        // Told at once, as `ExitNotice::ended` reports, when the
        // supervisor reports to telemetry (its events come as they
        // happen), and when the child has already stopped (its watch
        // starts now, not at the supervisor's next message).
        if reports && handle.is_alive() && !shared.reporter.telemetry.is_enabled() {
            return match shared.hand_over(Adopt::new(handle.clone(), spec, reports)) {
                Ok(queued) => {
                    place.keep();
                    if queued % ENDED_BATCH == 0 {
                        let _ = self.inner.actor.tell(CollectEnded).try_send();
                    }
                    Ok(handle)
                }
                // Closing: it stops (or has stopped) its children, and so
                // do we, so that nothing runs once we answer.
                Err(mut adopt) => {
                    drop(adopt.take());
                    shutdown.stop(&handle).await;
                    Err(SupervisorError::SupervisorGone)
                }
            };
        }
        // If the supervisor cannot take the child (it stopped meanwhile),
        // the undelivered hand-over stops it.
        let handed_over = self
            .inner
            .actor
            .tell(Adopt::new(handle.clone(), spec, reports))
            .await;
        match handed_over {
            // The supervisor keeps the child and its place.
            Ok(()) if !shared.is_closing() => place.keep(),
            // The supervisor closed meanwhile: it stops the child (or has),
            // and so do we, so that nothing runs once we answer.
            _ => {
                shutdown.stop(&handle).await;
                return Err(SupervisorError::SupervisorGone);
            }
        }
        Ok(handle)
    }

    /// Stops `child` by its spec's [`Shutdown`](crate::Shutdown) and returns
    /// once it has stopped; it is not restarted. A child that is not (or no
    /// longer) this supervisor's is left alone:
    /// [`SupervisorError::NotFound`]. A child another call is terminating
    /// is waited for, then answered `NotFound` (as if the calls had come one
    /// after the other).
    ///
    /// A running child is stopped from the caller's task, without a
    /// message to the supervisor; one waiting for its restart is the
    /// supervisor's to take out of the wait (its last handle names it).
    pub async fn terminate_child(&self, child: &ProcessHandle) -> Result<(), SupervisorError> {
        if let Ok(shared) = self.shared().await {
            match shared.claim(child.id()) {
                Claim::Stop(shutdown) => {
                    shared.terminate_claimed(child, shutdown).await;
                    return Ok(());
                }
                Claim::Taken => {
                    // Bounded by the other call's shutdown (or its kill).
                    child.exited().await;
                    return Err(SupervisorError::NotFound);
                }
                Claim::Absent => {}
            }
        }
        self.inner
            .actor
            .ask(TerminateChild(child.id()))
            .await
            .map_err(from_send_error)
    }

    /// Every child in start order, with its state.
    pub async fn which_children(&self) -> Result<Vec<ChildInfo>, SupervisorError> {
        self.inner.which_children().await
    }

    /// The child counts.
    pub async fn count_children(&self) -> Result<ChildCounts, SupervisorError> {
        self.inner.count_children().await
    }

    /// Stops every child at once, each by its shutdown, then the
    /// supervisor; returns once all have stopped (as long as the slowest
    /// child takes), with the supervisor's exit reason.
    pub async fn stop(&self) -> ExitReason {
        self.inner.stop().await
    }

    /// Waits until the supervisor has stopped (after its children) and
    /// returns why; `Shutdown(Some("reached max restart intensity: ..."))`
    /// when it gave up on its restart intensity.
    pub async fn exited(&self) -> ExitReason {
        self.inner.exited().await
    }

    /// The supervisor's own process handle.
    pub fn handle(&self) -> &ProcessHandle {
        &self.inner.handle
    }
}

impl fmt::Debug for DynamicSupervisor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.debug("DynamicSupervisor", f)
    }
}
