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
    id_hash::ById,
    messages::{Adopt, Reschedule, StartRestart},
    places::Places,
};
use crate::{
    ChildSpec, Clock, Deadlines, ExitReason, ProcessHandle, RestartType, StartError,
    backoff::BackoffState,
    child::StartFn,
    intensity::RestartLog,
    report::Reporter,
    timer::RestartTimer,
    watch::{ChildDown, Watchers},
};

/// What the handles and the actor share: reporting, the places that
/// `max_children` bounds, and whether the supervisor is closing.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) reporter: Reporter,
    pub(super) places: Places,
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

/// A child's start order (the order `which_children` lists) and whether
/// it reports its own exit (and so does each restart of it), in one word:
/// a child's record then fits in 192 bytes, an allocator size class below
/// the next (224).
#[derive(Debug, Clone, Copy)]
pub(super) struct Order(u64);

impl Order {
    const REPORTS: u64 = 1 << 63;

    fn new(seq: u64, reports: bool) -> Self {
        Order(if reports { seq | Self::REPORTS } else { seq })
    }

    /// The start order.
    pub(super) fn seq(self) -> u64 {
        self.0 & !Self::REPORTS
    }

    /// Whether the child reports its own exit.
    fn reports(self) -> bool {
        self.0 & Self::REPORTS != 0
    }
}

/// A running child and what the supervisor keeps of it.
pub(super) struct Child {
    pub(super) order: Order,
    pub(super) handle: ProcessHandle,
    /// A temporary child's spec has no start factory left (see
    /// [`ChildSpec::without_start`]): it is never restarted.
    pub(super) spec: ChildSpec,
    /// Only for a child with a backoff policy (boxed: most have none).
    backoff: Option<Box<BackoffState>>,
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
    /// Boxed: the map's buckets stay small (a child's entry weighs about
    /// 190 bytes, and a map of a million children has twice as many
    /// buckets as children after it grows).
    pub(super) children: HashMap<ActorId, Box<Child>, ById>,
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
    /// The shutdown timeouts of the children it stops, on one timer (on
    /// tokio's clock, as `tokio::time::timeout` would be): a timer armed
    /// and cancelled per stop cost a registration in tokio's wheel and
    /// often a wake of the thread that drives it.
    deadlines: Deadlines,
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
        for child in self.children.values() {
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
        });
        let actor = DynamicSupervisorActor {
            shared: shared.clone(),
            restarts: RestartLog::new(flags.intensity),
            next_seq: 0,
            children: HashMap::default(),
            restarting: HashMap::new(),
            no_start: ChildSpec::no_start(),
            watchers: None,
            collected: Vec::new(),
            deadlines: Deadlines::new(Clock::tokio()),
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
        if (!order.reports() || !handle.is_alive())
            && let Some(actor_ref) = actor_ref
        {
            self.watchers
                .get_or_insert_with(|| Watchers::start(actor_ref))
                .watch(&handle);
        }
        self.children.insert(
            handle.id(),
            Box::new(Child {
                order,
                handle,
                spec,
                backoff,
            }),
        );
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
            match self.children.remove(&id) {
                Some(child) if !child.spec.restart.restarts_after(&exit) => {
                    self.child_ended(&child, &exit);
                }
                Some(child) => {
                    self.children.insert(id, child);
                    if let Some(me) = me {
                        let _ = me.tell(ChildDown { id, exit }).try_send();
                    }
                }
                None => {} // stopped by the supervisor itself meanwhile
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
            .stop_on(&child.handle, &self.deadlines)
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
    /// slowest child, not the sum. Children stay in the map until they have
    /// stopped, so a supervisor killed meanwhile kills them (see `Drop`).
    /// Every pending restart is cancelled.
    async fn shutdown_all(&mut self) {
        let pending: Vec<Pending> = self.restarting.drain().map(|(_, p)| p).collect();
        for pending in pending {
            self.cancel_restart(pending).await;
        }
        let (reporter, deadlines) = (&self.shared.reporter, &self.deadlines);
        let stops = self.children.values().map(|child| async move {
            let exit = child.spec.shutdown.stop_on(&child.handle, deadlines).await;
            reporter.terminated(&child.spec, &child.handle, &exit);
        });
        futures::future::join_all(stops).await;
        for _ in self.children.drain() {
            self.shared.places.release();
        }
        // Nothing left to watch: the watcher task ends.
        self.watchers = None;
    }
}
