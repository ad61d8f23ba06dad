//! The dynamic supervisor's actor: the children it keeps, and what it does
//! when one exits (restart, retry, give up).

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use kameo::{
    actor::{Actor, ActorId, ActorRef, WeakActorRef},
    error::ActorStopReason,
    mailbox::{MailboxReceiver, Signal},
    message::BoxMessage,
};
use parking_lot::Mutex;
use tokio::time::Instant;

use super::{
    DynamicSupervisorFlags,
    children::{Child, Order, Table},
    messages::{Adopt, Reschedule, StartRestart},
    places::Places,
};
use crate::{
    ChildSpec, Clock, Deadlines, ExitReason, ProcessHandle, RestartType, Shutdown, StartError,
    backoff::BackoffState,
    child::StartFn,
    intensity::RestartLog,
    report::Reporter,
    timer::RestartTimer,
    watch::{ChildDown, Watchers},
};

/// What the handles and the actor share: reporting, the places that
/// `max_children` bounds, whether the supervisor is closing, and the
/// children (see the `children` module).
pub(super) struct Shared {
    pub(super) reporter: Reporter,
    pub(super) places: Places,
    /// The running children. The actor adds and removes them; a
    /// `terminate_child` marks and stops one from its own task. Never
    /// held across an `.await`.
    pub(super) children: Mutex<Table>,
    /// The shutdown timeouts of the children being stopped, on one timer
    /// (on tokio's clock, as `tokio::time::timeout` would be): a timer
    /// armed and cancelled per stop cost a registration in tokio's wheel
    /// and often a wake of the thread that drives it.
    pub(super) deadlines: Deadlines,
    /// Set once the supervisor gives up or stops: `start_child` refuses
    /// from then on, and stops a child it handed over too late.
    closing: AtomicBool,
    /// Exits reported with [`ExitNotice::ended`](super::ExitNotice::ended),
    /// not yet collected: the supervisor takes them before it handles each
    /// message (see [`DynamicSupervisorActor::collect_ended`]).
    pub(super) ended: Mutex<Vec<(ActorId, ExitReason)>>,
    /// Children started with `start_reporting_child`, handed over but not
    /// yet collected: queued rather than told, so that a start does not
    /// wake the supervisor (a message and a wake per agent cost about a
    /// tenth of an agent's start). The supervisor takes them before it
    /// handles each message, before the exits, and when it closes; its
    /// lock orders each hand-over against the close (see `hand_over`).
    adopted: Mutex<Vec<Adopt>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("places", &self.places)
            .field("closing", &self.is_closing())
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Whether the supervisor is giving up or stopping.
    pub(super) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    /// Marks the supervisor closing. Taken under the hand-over queue's
    /// lock: once this returns, no child is queued any more, so the
    /// queue collected after it holds every child handed over.
    fn close(&self) {
        let _queue = self.adopted.lock();
        self.closing.store(true, Ordering::SeqCst);
    }

    /// Queues a started child for the supervisor to keep, and returns how
    /// many wait; gives it back if the supervisor is closing (the caller
    /// then stops it). Checked under the queue's lock, as `close` sets it.
    /// (Given back boxed: the rare path carries the weight.)
    pub(super) fn hand_over(&self, adopt: Adopt) -> Result<usize, Box<Adopt>> {
        let mut queue = self.adopted.lock();
        if self.is_closing() {
            return Err(Box::new(adopt));
        }
        queue.push(adopt);
        Ok(queue.len())
    }
}

/// A child waiting to be restarted: after a backoff delay, or to retry a
/// start that failed.
pub(super) struct Pending {
    /// Kept from the incarnation that exited.
    pub(super) order: Order,
    /// The last incarnation's id, so `terminate_child` with its last
    /// handle finds it.
    pub(super) last: ActorId,
    pub(super) spec: ChildSpec,
    pub(super) backoff: Option<Box<BackoffState>>,
    /// The backoff timer, if it waits one (cancelled with the child).
    pub(super) timer: Option<RestartTimer>,
}

/// The supervisor actor. Its exit reason, when it gives up, is the
/// `ExitReason` returned as its error.
pub(crate) struct DynamicSupervisorActor {
    pub(super) shared: Arc<Shared>,
    restarts: RestartLog,
    next_seq: u64,
    /// Children waiting for their restart, by ticket.
    pub(super) restarting: HashMap<u64, Pending>,
    /// The start a temporary child's spec keeps (one for all).
    no_start: Arc<StartFn>,
    /// The one task watching every child that does not report its own
    /// exit; started with the first such child, stopped (dropped) once the
    /// supervisor has stopped its children.
    watchers: Option<Watchers>,
    /// The buffer the queue of ended children is swapped into (kept, so
    /// collecting allocates nothing once it has grown).
    collected: Vec<(ActorId, ExitReason)>,
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
        self.shared.close();
        // Children handed over as the supervisor stopped: stop them too.
        for message in undelivered {
            if let Ok(mut adopt) = message.as_any().downcast::<Adopt>()
                && let Some((handle, spec)) = adopt.take()
            {
                spec.shutdown.stop(&handle).await;
            }
        }
        Ok(())
    }

    async fn on_stop(
        &mut self,
        _: WeakActorRef<Self>,
        _: ActorStopReason,
    ) -> Result<(), ExitReason> {
        self.shared.close();
        self.collect_adopted(None);
        self.collect_ended(None);
        self.shutdown_all().await;
        Ok(())
    }

    /// Every message is handled after the exits queued before it are
    /// collected, so the supervisor answers as if it had been told of each
    /// at once.
    async fn next(
        &mut self,
        me: WeakActorRef<Self>,
        mailbox: &mut MailboxReceiver<Self>,
    ) -> Result<Option<Signal<Self>>, ExitReason> {
        let signal = mailbox.recv().await;
        let me = me.upgrade();
        // Hand-overs first: an exit reported before its child was
        // collected then finds it.
        self.collect_adopted(me.as_ref());
        self.collect_ended(me.as_ref());
        Ok(signal)
    }
}

/// A supervisor killed (its task aborted, its `on_stop` not run) takes its
/// children with it: each is killed, a supervisor child with its own
/// subtree. After a graceful stop no child runs and this does nothing.
impl Drop for DynamicSupervisorActor {
    fn drop(&mut self) {
        for child in self.shared.children.lock().values() {
            child.handle.kill();
        }
        // Those handed over but not yet collected too.
        self.shared.close();
        for mut adopt in std::mem::take(&mut *self.shared.adopted.lock()) {
            if let Some((handle, _)) = adopt.take() {
                handle.kill();
            }
        }
    }
}

impl DynamicSupervisorActor {
    /// A supervisor with no children, and the half it shares with its
    /// handles.
    pub(super) fn new(flags: DynamicSupervisorFlags) -> (Self, Arc<Shared>) {
        let shared = Arc::new(Shared {
            reporter: Reporter::new(flags.name, flags.telemetry),
            places: Places::new(flags.max_children),
            closing: AtomicBool::new(false),
            ended: Mutex::new(Vec::new()),
            adopted: Mutex::new(Vec::new()),
            children: Mutex::new(Table::default()),
            deadlines: Deadlines::new(Clock::tokio()),
        });
        let actor = DynamicSupervisorActor {
            shared: shared.clone(),
            restarts: RestartLog::new(flags.intensity),
            next_seq: 0,
            restarting: HashMap::new(),
            no_start: ChildSpec::no_start(),
            watchers: None,
            collected: Vec::new(),
        };
        (actor, shared)
    }

    fn seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// Keeps a child a caller started, and watches it unless it
    /// `reports` its own exit.
    pub(super) fn adopt_new(
        &mut self,
        handle: ProcessHandle,
        spec: ChildSpec,
        reports: bool,
        actor_ref: Option<&ActorRef<Self>>,
    ) {
        let order = Order::new(self.seq(), reports);
        // A temporary child is never restarted: its start factory, and the
        // arguments it captured, are dropped now, as OTP drops them.
        let spec = if spec.restart == RestartType::Temporary {
            spec.without_start(&self.no_start)
        } else {
            spec
        };
        let backoff = spec
            .backoff
            .is_some()
            .then(|| Box::new(BackoffState::new(Instant::now())));
        self.adopt(order, handle, spec, backoff, actor_ref);
    }

    /// Keeps a started child and watches it, unless it `reports` its own
    /// exit. A reporting child that is already stopping (its report may
    /// have come before it was handed over, and been ignored) is watched
    /// all the same; a second notice of one exit is ignored.
    fn adopt(
        &mut self,
        order: Order,
        handle: ProcessHandle,
        spec: ChildSpec,
        backoff: Option<Box<BackoffState>>,
        actor_ref: Option<&ActorRef<Self>>,
    ) {
        // In the table before it is watched: the watcher tells of an
        // exit only while its child is in the table (see `watch_filter`).
        let watch = (!order.reports() || !handle.is_alive())
            .then(|| handle.clone())
            .zip(actor_ref);
        self.shared.children.lock().insert(
            handle.id(),
            Box::new(Child {
                order,
                handle,
                spec,
                backoff,
            }),
        );
        if let Some((handle, actor_ref)) = watch {
            let shared = &self.shared;
            self.watchers
                .get_or_insert_with(|| Watchers::start(actor_ref, watch_filter(shared)))
                .watch(&handle);
        }
    }

    /// Keeps the children queued by `start_reporting_child` (see
    /// [`Shared::hand_over`]), in the order they were handed over.
    /// `me` is `None` once the supervisor stops: a child already gone is
    /// then not watched (the stop that follows finds it stopped).
    pub(super) fn collect_adopted(&mut self, me: Option<&ActorRef<Self>>) {
        let adopted = std::mem::take(&mut *self.shared.adopted.lock());
        for mut adopt in adopted {
            let reports = adopt.reports();
            if let Some((handle, spec)) = adopt.take() {
                self.adopt_new(handle, spec, reports, me);
            }
        }
    }

    /// Takes the exits queued by [`ExitNotice::ended`](super::ExitNotice::ended):
    /// each child is let go, its place given back. One whose restart type
    /// restarts it after all is handed to the restart path (through the
    /// mailbox, as a watched child's exit comes; `me` is `None` once the
    /// supervisor stops, and then it is not restarted).
    pub(super) fn collect_ended(&mut self, me: Option<&ActorRef<Self>>) {
        std::mem::swap(&mut self.collected, &mut *self.shared.ended.lock());
        let mut collected = std::mem::take(&mut self.collected);
        for (id, exit) in collected.drain(..) {
            match self.shared.take_exited(id, &exit) {
                Exited::Ended(child) => self.child_ended(&child, &exit),
                Exited::Restarts => {
                    if let Some(me) = me {
                        let _ = me.tell(ChildDown { id, exit }).try_send();
                    }
                }
                // Stopped by the supervisor or a `terminate_child`.
                Exited::Unknown => {}
            }
        }
        self.collected = collected;
    }

    /// A child that exited by itself and is not restarted: reported, its
    /// place given back.
    pub(super) fn child_ended(&self, child: &Child, exit: &ExitReason) {
        self.shared
            .reporter
            .exited(&child.spec, &child.handle, exit, false);
        self.shared.places.release();
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
            let pending = Pending {
                order: child.order,
                last: child.handle.id(),
                spec: child.spec,
                backoff: child.backoff,
                timer: None,
            };
            self.schedule_restart(pending, actor_ref).await
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
        mut pending: Pending,
        actor_ref: &ActorRef<Self>,
    ) -> Result<(), ExitReason> {
        let now = Instant::now();
        if !self.restarts.record(now) {
            drop(pending);
            self.shared.places.release();
            return Err(self.give_up().await);
        }
        let policy = pending.spec.backoff;
        let delay = policy.map(|policy| {
            pending
                .backoff
                .get_or_insert_with(|| Box::new(BackoffState::new(now)))
                .next_delay(&policy, now)
        });
        match delay {
            Some((delay, attempt)) if !delay.is_zero() => {
                self.shared.reporter.backoff(&pending.spec, delay, attempt);
                let ticket = self.seq();
                pending.timer = Some(RestartTimer::start(actor_ref, delay, StartRestart(ticket)));
                self.restarting.insert(ticket, pending);
            }
            _ => self.start_restart(pending, actor_ref).await,
        }
        Ok(())
    }

    /// Starts a child being restarted. A failed start goes back through the
    /// mailbox to be decided again (so admin calls keep answering), counting
    /// toward the intensity each time. A start that answers
    /// [`StartError::Ignored`] ends the child: its place is given back.
    pub(super) async fn start_restart(&mut self, mut pending: Pending, actor_ref: &ActorRef<Self>) {
        pending.timer = None;
        let stopper =
            || crate::Stopper::dynamic_child(ProcessHandle::new(actor_ref.clone()).downgrade());
        match self.shared.reporter.start(&pending.spec, stopper).await {
            Ok(handle) => {
                self.shared.reporter.restarted(
                    &pending.spec,
                    Some(pending.last),
                    &handle,
                    self.restarts.count(),
                );
                if let Some(backoff) = pending.backoff.as_mut() {
                    backoff.started(Instant::now());
                }
                let Pending {
                    order,
                    spec,
                    backoff,
                    ..
                } = pending;
                self.adopt(order, handle, spec, backoff, Some(actor_ref));
            }
            Err(StartError::Ignored) => self.shared.places.release(),
            Err(_start_error) => {
                let ticket = self.seq();
                self.restarting.insert(ticket, pending);
                // Unbounded mailbox: this never waits.
                let _ = actor_ref.tell(Reschedule(ticket)).await;
            }
        }
    }

    /// Stops every child and returns the exit reason of a supervisor that
    /// exceeded its restart intensity. From now on `start_child` refuses.
    async fn give_up(&mut self) -> ExitReason {
        self.shared.close();
        self.collect_adopted(None);
        self.shutdown_all().await;
        let reason = self.restarts.exceeded();
        self.shared.reporter.gave_up(&reason, self.restarts.count());
        reason
    }

    /// Stops one child by its shutdown and gives its place back.
    pub(super) async fn terminate(&self, child: Child) {
        let exit = child
            .spec
            .shutdown
            .stop_on(&child.handle, &self.shared.deadlines)
            .await;
        self.shared
            .reporter
            .terminated(&child.spec, &child.handle, &exit);
        self.shared.places.release();
    }

    /// Takes a child waiting for its restart out of the wait: its timer is
    /// cancelled and its place given back.
    pub(super) async fn cancel_restart(&self, pending: Pending) {
        if let Some(timer) = pending.timer {
            timer.cancel().await;
        }
        self.shared.places.release();
    }

    /// The ticket of the child waiting for its restart whose last
    /// incarnation was `id`.
    pub(super) fn restarting_ticket(&self, id: ActorId) -> Option<u64> {
        self.restarting
            .iter()
            .find(|(_, pending)| pending.last == id)
            .map(|(ticket, _)| *ticket)
    }

    /// Stops every child at once, each by its shutdown, as OTP's
    /// DynamicSupervisor does: the whole shutdown takes as long as the
    /// slowest child, not the sum. A child a `terminate_child` is stopping
    /// is waited for, not stopped twice. Children stay in the table until
    /// they have stopped, so a supervisor killed meanwhile kills them (see
    /// `Drop`). Every pending restart is cancelled.
    async fn shutdown_all(&mut self) {
        let pending: Vec<Pending> = self.restarting.drain().map(|(_, p)| p).collect();
        for pending in pending {
            self.cancel_restart(pending).await;
        }
        let deadlines = &self.shared.deadlines;
        // The handles, not the records: the table's lock is not held
        // across the stops.
        let running: Vec<(ProcessHandle, Option<Shutdown>)> = self
            .shared
            .children
            .lock()
            .values()
            .map(|child| {
                let stop = (!child.order.is_terminating()).then_some(child.spec.shutdown);
                (child.handle.clone(), stop)
            })
            .collect();
        let stops = running.iter().map(|(handle, stop)| async move {
            match stop {
                Some(shutdown) => drop(shutdown.stop_on(handle, deadlines).await),
                None => drop(handle.exited().await),
            }
        });
        futures::future::join_all(stops).await;
        drop(running);
        let stopped: Vec<Box<Child>> = self
            .shared
            .children
            .lock()
            .drain()
            .map(|(_, child)| child)
            .collect();
        for child in stopped {
            // Recorded already: this does not wait.
            let exit = child.handle.exited().await;
            self.shared
                .reporter
                .terminated(&child.spec, &child.handle, &exit);
            self.shared.places.release();
        }
        // Nothing left to watch: the watcher task ends.
        self.watchers = None;
    }
}

/// What the table said of a child that exited by itself.
pub(super) enum Exited {
    /// Taken out: it is not restarted.
    Ended(Box<Child>),
    /// Left in: its restart type restarts it (the restart takes it out).
    Restarts,
    /// Not in the table, or a `terminate_child` is stopping it (whose
    /// exit it is).
    Unknown,
}

impl Shared {
    /// Takes the child `id`, which exited with `exit` by itself, out of the
    /// table unless it is restarted or someone is terminating it.
    pub(super) fn take_exited(&self, id: ActorId, exit: &ExitReason) -> Exited {
        let mut children = self.children.lock();
        match children.get(&id) {
            Some(child) if child.order.is_terminating() => Exited::Unknown,
            Some(child) if child.spec.restart.restarts_after(exit) => Exited::Restarts,
            Some(_) => children.remove(&id).map_or(Exited::Unknown, Exited::Ended),
            None => Exited::Unknown,
        }
    }

    /// Takes the child `id` out of the table unless someone is
    /// terminating it.
    pub(super) fn take_running(&self, id: ActorId) -> Option<Box<Child>> {
        let mut children = self.children.lock();
        match children.get(&id) {
            Some(child) if !child.order.is_terminating() => children.remove(&id),
            _ => None,
        }
    }
}

/// Whether the watcher tells the supervisor of a child's exit: only while
/// the child is in the table and no `terminate_child` is stopping it. A
/// child stopped by a caller then costs the supervisor no wake at all.
fn watch_filter(shared: &Arc<Shared>) -> impl Fn(ActorId) -> bool + Send + 'static {
    let shared = Arc::downgrade(shared);
    move |id| {
        shared.upgrade().is_some_and(|shared| {
            shared
                .children
                .lock()
                .get(&id)
                .is_some_and(|child| !child.order.is_terminating())
        })
    }
}
