//! The dynamic supervisor's actor: the children it keeps, and what it does
//! when one exits (restart, retry, give up).

use std::{collections::HashMap, sync::Arc};

use kameo::{
    actor::{Actor, ActorId, ActorRef, WeakActorRef},
    error::ActorStopReason,
    message::BoxMessage,
};
use tokio::{task::AbortHandle, time::Instant};

use super::{
    DynamicSupervisorFlags,
    messages::{Adopt, Reschedule, StartRestart},
    places::Places,
};
use crate::{
    ChildSpec, ExitReason, ProcessHandle, backoff::BackoffState, intensity::RestartLog,
    report::Reporter, watch::watch,
};

/// What the handles and the actor share: reporting, and the places that
/// `max_children` bounds.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) reporter: Reporter,
    pub(super) places: Places,
}

/// A running child and what the supervisor keeps of it.
pub(super) struct Child {
    /// Start order: its reverse is stop order.
    pub(super) seq: u64,
    pub(super) handle: ProcessHandle,
    pub(super) spec: ChildSpec,
    watcher: AbortHandle,
    backoff: BackoffState,
}

/// A child waiting to be restarted: after a backoff delay, or to retry a
/// start that failed.
pub(super) struct Pending {
    pub(super) spec: ChildSpec,
    pub(super) backoff: BackoffState,
}

/// The supervisor actor. Its exit reason, when it gives up, is the
/// `ExitReason` returned as its error.
pub(crate) struct DynamicSupervisorActor {
    pub(super) shared: Arc<Shared>,
    restarts: RestartLog,
    next_seq: u64,
    pub(super) children: HashMap<ActorId, Child>,
    /// Children waiting for their restart, by ticket.
    pub(super) restarting: HashMap<u64, Pending>,
}

impl Actor for DynamicSupervisorActor {
    type Args = Self;
    type Error = ExitReason;

    fn name() -> &'static str {
        "DynamicSupervisor"
    }

    async fn on_start(state: Self, _: ActorRef<Self>) -> Result<Self, ExitReason> {
        Ok(state)
    }

    async fn on_undelivered(
        &mut self,
        _: ActorStopReason,
        undelivered: Vec<BoxMessage<Self>>,
    ) -> Result<(), ExitReason> {
        // Children handed over as the supervisor stopped: stop them too.
        for message in undelivered {
            if let Ok(adopt) = message.as_any().downcast::<Adopt>() {
                adopt.spec.shutdown.stop(&adopt.handle).await;
            }
        }
        Ok(())
    }

    async fn on_stop(
        &mut self,
        _: WeakActorRef<Self>,
        _: ActorStopReason,
    ) -> Result<(), ExitReason> {
        self.shutdown_all().await;
        Ok(())
    }
}

impl DynamicSupervisorActor {
    /// A supervisor with no children, and the half it shares with its
    /// handles.
    pub(super) fn new(flags: DynamicSupervisorFlags) -> (Self, Arc<Shared>) {
        let shared = Arc::new(Shared {
            reporter: Reporter::new(flags.name, flags.telemetry),
            places: Places::new(flags.max_children),
        });
        let actor = DynamicSupervisorActor {
            shared: shared.clone(),
            restarts: RestartLog::new(flags.intensity),
            next_seq: 0,
            children: HashMap::new(),
            restarting: HashMap::new(),
        };
        (actor, shared)
    }

    fn seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// Keeps a started child and watches it.
    pub(super) fn adopt(
        &mut self,
        handle: ProcessHandle,
        spec: ChildSpec,
        backoff: BackoffState,
        actor_ref: &ActorRef<Self>,
    ) {
        let seq = self.seq();
        let watcher = watch(&handle, actor_ref);
        self.children.insert(
            handle.id(),
            Child {
                seq,
                handle,
                spec,
                watcher,
                backoff,
            },
        );
    }

    /// Parks a child until the message for `ticket` comes back.
    fn park(&mut self, spec: ChildSpec, backoff: BackoffState) -> u64 {
        let ticket = self.seq();
        self.restarting.insert(ticket, Pending { spec, backoff });
        ticket
    }

    /// Handles the exit of a child by itself: restart it if its restart type
    /// says so, else give its place back.
    pub(super) async fn child_exited(
        &mut self,
        child: Child,
        exit: ExitReason,
        actor_ref: &ActorRef<Self>,
    ) -> Result<(), ExitReason> {
        let restart = child.spec.restart.restarts_after(&exit);
        self.shared
            .reporter
            .exited(&child.spec, &child.handle, &exit, restart);
        if restart {
            self.schedule_restart(child.spec, child.backoff, actor_ref)
                .await
        } else {
            self.shared.places.release();
            Ok(())
        }
    }

    /// Decides a restart: counts it (past the intensity: stops everything
    /// and returns the supervisor's exit reason), then starts the child at
    /// once or, with a backoff, after its delay (the child shows as
    /// restarting meanwhile; the timer comes back through the mailbox).
    pub(super) async fn schedule_restart(
        &mut self,
        spec: ChildSpec,
        mut backoff: BackoffState,
        actor_ref: &ActorRef<Self>,
    ) -> Result<(), ExitReason> {
        let now = Instant::now();
        if !self.restarts.record(now) {
            return Err(self.give_up().await);
        }
        let delay = spec.backoff.map(|policy| backoff.next_delay(&policy, now));
        match delay {
            Some((delay, attempt)) if !delay.is_zero() => {
                self.shared.reporter.backoff(&spec, delay, attempt);
                let ticket = self.park(spec, backoff);
                let supervisor = actor_ref.downgrade();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    if let Some(supervisor) = supervisor.upgrade() {
                        let _ = supervisor.tell(StartRestart(ticket)).await;
                    }
                });
            }
            _ => self.start_restart(spec, backoff, actor_ref).await,
        }
        Ok(())
    }

    /// Starts a child being restarted. A failed start goes back through the
    /// mailbox to be decided again (so admin calls keep answering), counting
    /// toward the intensity each time.
    pub(super) async fn start_restart(
        &mut self,
        spec: ChildSpec,
        mut backoff: BackoffState,
        actor_ref: &ActorRef<Self>,
    ) {
        let stopper =
            || crate::Stopper::dynamic_child(ProcessHandle::new(actor_ref.clone()).downgrade());
        match self.shared.reporter.start(&spec, stopper).await {
            Ok(handle) => {
                self.shared
                    .reporter
                    .restarted(&spec, &handle, self.restarts.count());
                backoff.started(Instant::now());
                self.adopt(handle, spec, backoff, actor_ref);
            }
            Err(_start_error) => {
                let ticket = self.park(spec, backoff);
                // Unbounded mailbox: this never waits.
                let _ = actor_ref.tell(Reschedule(ticket)).await;
            }
        }
    }

    /// Stops every child and returns the exit reason of a supervisor that
    /// exceeded its restart intensity.
    async fn give_up(&mut self) -> ExitReason {
        self.shutdown_all().await;
        let reason = self.restarts.exceeded();
        self.shared.reporter.gave_up(&reason, self.restarts.count());
        reason
    }

    /// Stops one child by its shutdown and gives its place back.
    pub(super) async fn terminate(&self, child: Child) {
        child.watcher.abort();
        let exit = child.spec.shutdown.stop(&child.handle).await;
        self.shared
            .reporter
            .terminated(&child.spec, &child.handle, &exit);
        self.shared.places.release();
    }

    /// Stops every child in reverse start order, each by its shutdown.
    async fn shutdown_all(&mut self) {
        for _ in self.restarting.drain() {
            self.shared.places.release();
        }
        let mut children: Vec<Child> = self.children.drain().map(|(_, child)| child).collect();
        children.sort_unstable_by_key(|child| std::cmp::Reverse(child.seq));
        for child in children {
            self.terminate(child).await;
        }
    }
}
