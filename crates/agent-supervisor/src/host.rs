//! The task that hosts one incarnation of an agent, and its mailbox: it
//! runs the user's [`Agent`] one message at a time (its predecessor's
//! leftover tells first), enforces the memory budget, and reports its own
//! exit to the registry (so no watcher task per agent is needed; a kill
//! aborts the whole task, and the host's drop reports it).
//!
//! Not a kameo actor: a kameo actor weighs about 7 KB (a 2 KB task
//! holding its run loop, a 3.9 KB mailbox block of 32 signals allocated
//! when the mailbox is made, 0.5 KB of channel and 0.5 KB of shared
//! state). An incarnation here is a small task and an [`Inbox`]: a queue
//! behind a lock that allocates on its first message, its capacity kept
//! as a count. Its [`ProcessHandle`] comes from
//! `ProcessHandle::spawn_process`, with the contract of every handle: one
//! stop request (queued behind the messages already in the mailbox), one
//! exit, a kill that aborts the whole task, `on_stop` included.

use std::{
    any::Any,
    collections::VecDeque,
    num::NonZeroUsize,
    panic::AssertUnwindSafe,
    pin::Pin,
    sync::{Arc, Weak},
    task::{Context, Poll, Waker},
};

use futures::FutureExt;
use kameo::actor::ActorId;
use mabeam_supervision_core::{
    Envelope, ExitNotice, ExitReason, Process, ProcessHandle, StartError, StartFuture,
};
use parking_lot::Mutex;
use tokio::sync::{Notify, oneshot};

use crate::{
    Agent, AgentContext, EnvelopeError,
    durable::DurableHost,
    shared::Shared,
    slot::{Kept, Mail, Slot},
};

/// What every incarnation gets besides the agent's own arguments.
#[derive(Clone)]
pub(crate) struct HostArgs {
    pub(crate) slot: Arc<Slot>,
    pub(crate) shared: Weak<Shared>,
    pub(crate) notice: ExitNotice,
    /// The start decision it comes from (see `Shared::install`).
    pub(crate) epoch: u32,
}

/// Where an ask's answer goes: the answer, or the message back if the
/// incarnation stopped before handling it (the caller retries it on the
/// next incarnation).
type ReplyTo<R, M> = oneshot::Sender<Result<R, M>>;

/// A message for an incarnation of `A`: a tell when it has no reply.
pub(crate) enum Msg<A: Agent> {
    /// The agent's own message.
    Call(A::Message, Option<ReplyTo<A::Reply, A::Message>>),
    /// A protocol envelope.
    Envelope(
        Envelope,
        Option<ReplyTo<Result<serde_json::Value, EnvelopeError>, Envelope>>,
    ),
}

/// Messages told to an incarnation that it did not handle: its
/// predecessor's leftovers, handled before its own mailbox.
type Leftovers<A> = VecDeque<Msg<A>>;

/// One incarnation's mailbox: what its handles and its agent's refs send
/// to. Bounded: a full mailbox makes senders wait (or `try_tell` fail).
pub(crate) struct Inbox<A: Agent> {
    queue: Mutex<Queue<A>>,
    capacity: usize,
    /// Wakes senders waiting for room, and them all when it closes.
    room: Notify,
}

struct Queue<A: Agent> {
    /// Allocated on the first message.
    messages: VecDeque<Msg<A>>,
    /// The incarnation's loop, waiting for a message.
    receiver: Option<Waker>,
    /// Senders waiting for room.
    waiting: u32,
    /// A stop is queued behind the messages: nothing more is accepted.
    stop: bool,
    /// The loop ended: nothing more is accepted or handled.
    closed: bool,
}

/// Why a message was not queued.
enum Refused<M> {
    /// The incarnation is stopping or gone: retry on the next one.
    Closed(M),
    /// The mailbox is full.
    Full(M),
}

/// What the loop gets next.
enum Next<A: Agent> {
    Msg(Msg<A>),
    Stop,
}

impl<A: Agent> Inbox<A> {
    fn new(capacity: usize) -> Self {
        Inbox {
            queue: Mutex::new(Queue {
                messages: VecDeque::new(),
                receiver: None,
                waiting: 0,
                stop: false,
                closed: false,
            }),
            capacity: capacity.max(1),
            room: Notify::new(),
        }
    }

    /// Queues `msg` if there is room now; `wait` counts the caller among
    /// the senders waiting for room if there is none.
    fn push(&self, msg: Msg<A>, wait: bool) -> Result<(), Refused<Msg<A>>> {
        let receiver = {
            let mut queue = self.queue.lock();
            if queue.stop || queue.closed {
                return Err(Refused::Closed(msg));
            }
            if queue.messages.len() >= self.capacity {
                if wait {
                    queue.waiting += 1;
                }
                return Err(Refused::Full(msg));
            }
            if queue.messages.capacity() == 0 {
                // The first message: room for one, not the four a
                // `VecDeque` makes by default. Most agents never hold more
                // than one message at a time, and the rest of that block
                // would be fresh memory faulted in by every agent's first
                // call.
                queue.messages.reserve_exact(1);
            }
            queue.messages.push_back(msg);
            queue.receiver.take()
        };
        if let Some(receiver) = receiver {
            receiver.wake();
        }
        Ok(())
    }

    /// Queues `msg` if there is room now.
    fn try_send(&self, msg: Msg<A>) -> Result<(), Refused<Msg<A>>> {
        self.push(msg, false)
    }

    /// Queues `msg`, waiting for room; gives it back if the incarnation
    /// stops first.
    async fn send(&self, mut msg: Msg<A>) -> Result<(), Msg<A>> {
        loop {
            // Listening before looking: room made after the look wakes us.
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            match self.push(msg, true) {
                Ok(()) => return Ok(()),
                Err(Refused::Closed(back)) => return Err(back),
                Err(Refused::Full(back)) => msg = back,
            }
            let counted = Waiting(self);
            room.await;
            drop(counted);
        }
    }

    /// Sends `message` and waits for its answer.
    pub(crate) async fn ask(&self, message: A::Message) -> Result<A::Reply, Bounce<A::Message>> {
        let (reply, answer) = oneshot::channel();
        if let Err(Msg::Call(message, _)) = self.send(Msg::Call(message, Some(reply))).await {
            return Err(Bounce::Retry(message));
        }
        match answer.await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(message)) => Err(Bounce::Retry(message)),
            Err(_) => Err(Bounce::Stopped),
        }
    }

    /// Queues `message` without waiting for its handling.
    pub(crate) async fn tell(&self, message: A::Message) -> Result<(), Bounce<A::Message>> {
        match self.send(Msg::Call(message, None)).await {
            Ok(()) => Ok(()),
            Err(Msg::Call(message, _)) => Err(Bounce::Retry(message)),
            Err(Msg::Envelope(..)) => Err(Bounce::Stopped),
        }
    }

    /// Queues `message` if there is room now.
    pub(crate) fn try_tell(&self, message: A::Message) -> Result<(), Bounce<A::Message>> {
        self.try_send(Msg::Call(message, None))
            .map_err(|refused| match refused {
                Refused::Closed(Msg::Call(message, _)) => Bounce::Retry(message),
                Refused::Full(Msg::Call(message, _)) => Bounce::Full(message),
                Refused::Closed(Msg::Envelope(..)) | Refused::Full(Msg::Envelope(..)) => {
                    Bounce::Stopped
                }
            })
    }

    /// The next message, or the stop once every message queued before it
    /// was handled.
    fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Next<A>> {
        let mut queue = self.queue.lock();
        if let Some(msg) = queue.messages.pop_front() {
            let waiting = queue.waiting > 0;
            drop(queue);
            if waiting {
                self.room.notify_one();
            }
            return Poll::Ready(Next::Msg(msg));
        }
        if queue.stop {
            return Poll::Ready(Next::Stop);
        }
        match &mut queue.receiver {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            receiver => *receiver = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    fn next(&self) -> NextFuture<'_, A> {
        NextFuture(self)
    }

    /// Closes the mailbox for good and returns what it still held.
    fn close(&self) -> VecDeque<Msg<A>> {
        let left = {
            let mut queue = self.queue.lock();
            queue.closed = true;
            queue.receiver = None;
            std::mem::take(&mut queue.messages)
        };
        self.room.notify_waiters();
        left
    }
}

/// Counts a sender among those waiting for room while it waits.
struct Waiting<'a, A: Agent>(&'a Inbox<A>);

impl<A: Agent> Drop for Waiting<'_, A> {
    fn drop(&mut self) {
        let mut queue = self.0.queue.lock();
        queue.waiting = queue.waiting.saturating_sub(1);
    }
}

struct NextFuture<'a, A: Agent>(&'a Inbox<A>);

impl<A: Agent> std::future::Future for NextFuture<'_, A> {
    type Output = Next<A>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Next<A>> {
        self.0.poll_next(cx)
    }
}

impl<A: Agent> Process for Inbox<A> {
    fn is_accepting(&self) -> bool {
        let queue = self.queue.lock();
        !queue.stop && !queue.closed
    }

    fn request_stop(&self) {
        let receiver = {
            let mut queue = self.queue.lock();
            if queue.stop || queue.closed {
                return;
            }
            queue.stop = true;
            queue.receiver.take()
        };
        if let Some(receiver) = receiver {
            receiver.wake();
        }
        // Senders waiting for room retry on the next incarnation.
        self.room.notify_waiters();
    }

    /// The messages waiting, and the stop queued behind them, if any.
    fn mailbox_len(&self) -> Option<usize> {
        let queue = self.queue.lock();
        Some(queue.messages.len() + usize::from(queue.stop && !queue.closed))
    }

    fn type_name(&self) -> &'static str {
        "AgentHost"
    }

    /// Ends it as a stop would, without a stop request: its exit is its
    /// own (`Normal`).
    fn handles_gone(&self) {
        let receiver = {
            let mut queue = self.queue.lock();
            queue.stop = true;
            queue.receiver.take()
        };
        if let Some(receiver) = receiver {
            receiver.wake();
        }
        self.room.notify_waiters();
    }
}

/// Closes an incarnation's mailbox when its task ends or is aborted (a
/// kill): the messages still queued are dropped with it (their askers
/// learn the incarnation stopped).
struct CloseOnDrop<A: Agent>(Arc<Inbox<A>>);

impl<A: Agent> Drop for CloseOnDrop<A> {
    fn drop(&mut self) {
        drop(self.0.close());
    }
}

/// One incarnation of agent `A`: a pointer to its state (the task holds
/// it across every message: a pointer keeps the task small).
pub(crate) struct AgentHost<A: Agent>(Box<Hosted<A>>);

impl<A: Agent> std::ops::Deref for AgentHost<A> {
    type Target = Hosted<A>;

    fn deref(&self) -> &Hosted<A> {
        &self.0
    }
}

impl<A: Agent> std::ops::DerefMut for AgentHost<A> {
    fn deref_mut(&mut self) -> &mut Hosted<A> {
        &mut self.0
    }
}

/// What an incarnation holds.
pub(crate) struct Hosted<A: Agent> {
    agent: Option<A>,
    /// This incarnation's actor id.
    id: ActorId,
    /// Its exit is reported (by its stop); if not when it is dropped, its
    /// task was aborted (a kill) and the drop reports it.
    reported: bool,
    /// It got to a stop signal in its mailbox (rather than ending by
    /// itself first): recorded in its handle as it stops.
    reached_stop: bool,
    /// Tells queued behind the previous incarnation's exit (or left in
    /// this one's mailbox when it stopped), in order; handled before the
    /// mailbox. Boxed: most incarnations never hold any.
    leftovers: Option<Box<Leftovers<A>>>,
    slot: Arc<Slot>,
    shared: Weak<Shared>,
    /// Tells the agent supervisor of this incarnation's exit (it keeps no
    /// watcher task per agent).
    notice: ExitNotice,
    budget: Option<NonZeroUsize>,
    /// Whether to record activity (the agent passivates when idle).
    tracks_idle: bool,
    /// Whether telemetry is on (each message is then reported).
    reports: bool,
    /// An exit the host decided itself (memory limit, or the agent's
    /// own); boxed, as it is rare.
    exit: Option<Box<ExitReason>>,
    /// A durable agent's checkpoint writer (boxed: most agents have none).
    durable: Option<Box<DurableHost>>,
}

/// Spawns an incarnation of `A` and returns its handle once it has started
/// and is installed in its slot.
pub(crate) fn spawn<A: Agent>(args: A::Args, host: HostArgs, capacity: usize) -> StartFuture {
    Box::pin(async move {
        let inbox = Arc::new(Inbox::<A>::new(capacity));
        let (report, started) = oneshot::channel();
        // The incarnation's one handle, made before it runs: the slot (the
        // host installs it) and the supervisor (it is returned) share it,
        // however soon the incarnation stops. It keeps the task: a kill
        // aborts all of it, `on_stop` included (a stop's timeout bounds a
        // hung `on_stop` too).
        let handle = ProcessHandle::spawn_process(ActorId::generate(), inbox.clone(), |handle| {
            run::<A>(inbox, args, host, handle.clone(), report)
        });
        // Abandoned midway (the caller's start dropped): killed, so that
        // nothing runs that its supervisor never adopted.
        let guard = KillOnDrop(Some(&handle));
        let started = match started.await {
            Ok(started) => started,
            // Its task ended before it reported its start: it was killed.
            Err(_) => {
                handle.exited().await;
                Err(StartError::failed("stopped before its start completed"))
            }
        };
        guard.disarm();
        started.map(|()| handle)
    })
}

/// An incarnation's task: its start, its messages, its stop. Returns the
/// exit its handles report.
async fn run<A: Agent>(
    inbox: Arc<Inbox<A>>,
    args: A::Args,
    host: HostArgs,
    handle: ProcessHandle,
    report: oneshot::Sender<Result<(), StartError>>,
) -> ExitReason {
    let inbox = CloseOnDrop(inbox);
    // Boxed: the start runs once, its future need not weigh in the task.
    let start = AssertUnwindSafe(Box::pin(AgentHost::<A>::start(args, host, handle)))
        .catch_unwind()
        .await;
    let host = match start {
        Ok(Ok(host)) => host,
        Ok(Err(exit)) => {
            let _ = report.send(Err(StartError::from_exit(exit.clone())));
            return exit;
        }
        Err(panic) => {
            let message = panic_message(panic.as_ref());
            let _ = report.send(Err(StartError::Panicked(message.clone())));
            return ExitReason::Panic(message);
        }
    };
    let _ = report.send(Ok(()));
    host.run(&inbox.0).await
}

/// The message of a panic's payload.
fn panic_message(panic: &(dyn Any + Send)) -> Arc<str> {
    panic
        .downcast_ref::<&str>()
        .map(|s| Arc::<str>::from(*s))
        .or_else(|| panic.downcast_ref::<String>().map(|s| s.as_str().into()))
        .unwrap_or_else(|| "panic".into())
}

/// A panic's payload as an exit: an `ExitReason` as it is.
fn panic_exit(panic: &(dyn Any + Send)) -> ExitReason {
    match panic.downcast_ref::<ExitReason>() {
        Some(reason) => reason.clone(),
        None => ExitReason::Panic(panic_message(panic)),
    }
}

/// Kills an incarnation whose start was abandoned.
struct KillOnDrop<'a>(Option<&'a ProcessHandle>);

impl KillOnDrop<'_> {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            handle.kill();
        }
    }
}

impl<A: Agent> AgentHost<A> {
    async fn start(
        args: A::Args,
        host: HostArgs,
        handle: ProcessHandle,
    ) -> Result<Self, ExitReason> {
        let mut kept = host.slot.take_kept::<A>();
        let stored = match &mut kept {
            Some(Kept::Loaded(_, stored)) => stored.take(),
            _ => None,
        };
        let agent = match kept {
            Some(Kept::Live(agent)) => agent,
            Some(Kept::Checkpoint(checkpoint) | Kept::Loaded(checkpoint, _)) => {
                A::on_start(args, Some(checkpoint))
                    .await
                    .map_err(ExitReason::error)?
            }
            None => A::on_start(args, None).await.map_err(ExitReason::error)?,
        };
        let shared = host
            .shared
            .upgrade()
            .ok_or_else(|| ExitReason::Shutdown(Some("agent registry gone".into())))?;
        let id = handle.id();
        let (budget, tracks_idle, mail) = shared.install(&host.slot, handle, host.epoch)?;
        let mut durable = shared.durable_host(&host.slot);
        if let Some(durable) = durable.as_deref_mut() {
            durable.stored = stored;
        }
        let leftovers = mail.and_then(|mail| match mail.messages.downcast::<Leftovers<A>>() {
            Ok(leftovers) => Some(leftovers),
            Err(_) => {
                // Told to an agent of another type (its config replaced).
                shared
                    .reporter
                    .dropped(&host.slot.id, mail.len, "agent type changed");
                None
            }
        });
        Ok(AgentHost(Box::new(Hosted {
            agent: Some(agent),
            id,
            reported: false,
            reached_stop: false,
            leftovers,
            slot: host.slot,
            shared: host.shared,
            notice: host.notice,
            budget: budget.and_then(NonZeroUsize::new),
            tracks_idle,
            reports: shared.reporter.telemetry.is_enabled(),
            exit: None,
            durable,
        })))
    }

    /// Handles messages (its predecessor's leftovers first) until it
    /// gets to a stop, stops by itself, or panics; then stops. Returns
    /// the exit its handles report.
    async fn run(mut self, inbox: &Inbox<A>) -> ExitReason {
        let panicked = loop {
            let next = match self.0.leftovers.as_mut().and_then(|left| left.pop_front()) {
                Some(msg) => {
                    if self
                        .0
                        .leftovers
                        .as_ref()
                        .is_some_and(|left| left.is_empty())
                    {
                        self.0.leftovers = None;
                    }
                    Next::Msg(msg)
                }
                None => inbox.next().await,
            };
            match next {
                Next::Stop => {
                    self.0.reached_stop = true;
                    break None;
                }
                Next::Msg(msg) => match AssertUnwindSafe(self.handle(msg)).catch_unwind().await {
                    Ok(true) => {}
                    Ok(false) => break None,
                    // The message that crashed it is not handled again.
                    Err(panic) => break Some(panic_exit(panic.as_ref())),
                },
            }
        };
        // What is left in its mailbox: the tells for the next incarnation
        // (after the leftovers not yet handled, in order), the asks back
        // to their callers, who retry on the next incarnation.
        for msg in inbox.close() {
            match msg {
                Msg::Call(message, Some(reply)) => {
                    let _ = reply.send(Err(message));
                }
                Msg::Envelope(envelope, Some(reply)) => {
                    let _ = reply.send(Err(envelope));
                }
                tell => self
                    .0
                    .leftovers
                    .get_or_insert_with(Default::default)
                    .push_back(tell),
            }
        }
        let id = self.id;
        // Boxed: it runs once, and its futures (`on_stop`, a checkpoint's
        // write) would otherwise weigh in every live agent's task.
        Box::pin(self.stop(id, panicked)).await
    }

    /// Handles one message; false if the incarnation stops after it.
    async fn handle(&mut self, msg: Msg<A>) -> bool {
        let began = self.began();
        match msg {
            Msg::Call(message, reply) => {
                let host = &mut *self.0;
                let mut agent_ctx = AgentContext::new(&host.slot.id);
                let agent = host.agent.as_mut().expect("a running host holds its agent");
                let answer = agent.handle(message, &mut agent_ctx).await;
                host.exit = agent_ctx.exit.map(Box::new);
                let go_on = self.after_message(began, true);
                self.checkpoint_after_message().await;
                if let Some(reply) = reply {
                    let _ = reply.send(Ok(answer));
                }
                go_on
            }
            Msg::Envelope(envelope, reply) => {
                let answer = if envelope.is_expired() {
                    // Nobody waits for it any more.
                    Err(EnvelopeError::Rejected("deadline passed".into()))
                } else {
                    let host = &mut *self.0;
                    let mut agent_ctx = AgentContext::new(&host.slot.id);
                    let agent = host.agent.as_mut().expect("a running host holds its agent");
                    let answer = agent.handle_envelope(envelope, &mut agent_ctx).await;
                    host.exit = agent_ctx.exit.map(Box::new);
                    answer
                };
                let go_on = self.after_message(began, answer.is_ok());
                self.checkpoint_after_message().await;
                if let Some(reply) = reply {
                    let _ = reply.send(Ok(answer));
                }
                go_on
            }
        }
    }

    /// Runs `on_stop` (or keeps the state, passivating), writes the last
    /// checkpoint, reports the exit; returns the exit its handles report.
    /// `panicked`: the panic that ended it.
    async fn stop(&mut self, id: ActorId, panicked: Option<ExitReason>) -> ExitReason {
        let flags = self.slot.stop_flags(id, self.reached_stop);
        let requested = flags.stopping || flags.passivating || flags.asked;
        // As OTP's: `shutdown` only when the stop request ended it.
        let stop_handled = self.reached_stop && flags.asked;
        let exit = match (self.exit.take(), &panicked) {
            (_, Some(panic)) => panic.clone(),
            (Some(exit), None) => *exit,
            (None, None) if requested => ExitReason::Shutdown(None),
            (None, None) => ExitReason::Normal,
        };
        let mut agent = self.agent.take();
        let passivating = flags.passivating && !flags.stopping && exit.is_clean();
        if let Some(durable) = self.0.durable.as_deref_mut()
            && passivating
            && durable.policy.on_passivation
        {
            let checkpoint = agent.as_ref().and_then(checkpoint_of);
            durable.write::<A>(checkpoint.as_ref()).await;
        }
        let kept: Option<Box<dyn Any + Send>> = if passivating {
            agent.map(|agent| Box::new(Kept::<A>::Live(agent)) as Box<dyn Any + Send>)
        } else {
            if let Some(agent) = agent.as_mut() {
                // A panicking on_stop must not keep the registry from
                // learning of the exit.
                let _ = AssertUnwindSafe(agent.on_stop(&exit)).catch_unwind().await;
            }
            let checkpoint = agent.as_ref().and_then(checkpoint_of);
            if let Some(durable) = self.0.durable.as_deref_mut()
                && durable.policy.on_stop
            {
                durable.write::<A>(checkpoint.as_ref()).await;
            }
            checkpoint.map(|checkpoint| {
                Box::new(Kept::<A>::Checkpoint(checkpoint)) as Box<dyn Any + Send>
            })
        };
        let mail = self.take_mail();
        self.reported = true;
        if let Some(shared) = self.shared.upgrade() {
            let down = self.notice.is_closing();
            shared.exited(&self.slot, id, exit.clone(), kept, mail, flags.asked, down);
        }
        // Last: nothing follows that a restart could collide with.
        self.notice.ended(id, exit.clone());
        match (exit, panicked) {
            (_, Some(panic)) => panic,
            // Reported as is through every handle's `exited()`.
            (exit @ ExitReason::MemoryLimit { .. }, None) => exit,
            (_, None) if stop_handled => ExitReason::Shutdown(None),
            (_, None) => ExitReason::Normal,
        }
    }

    /// A durable agent's checkpoint after a message, if its policy takes
    /// one: written before the message's answer is sent.
    async fn checkpoint_after_message(&mut self) {
        let host = &mut *self.0;
        if let Some(durable) = host.durable.as_deref_mut()
            && durable.due_after_message()
        {
            let checkpoint = host.agent.as_ref().and_then(checkpoint_of);
            // Boxed: a write's future would weigh in every agent's task.
            Box::pin(durable.write::<A>(checkpoint.as_ref())).await;
        }
    }

    fn agent(&mut self) -> &mut A {
        self.agent
            .as_mut()
            .expect("a running host holds its agent until on_stop")
    }

    /// When a message's handling began, if telemetry wants to know.
    fn began(&self) -> Option<std::time::Instant> {
        self.reports.then(std::time::Instant::now)
    }

    /// After each message: report it, record activity, check the memory
    /// budget.
    /// Returns false if the incarnation stops after it.
    fn after_message(&mut self, began: Option<std::time::Instant>, ok: bool) -> bool {
        if (self.tracks_idle || began.is_some())
            && let Some(shared) = self.shared.upgrade()
        {
            if self.tracks_idle {
                self.slot.touch(shared.now_ms());
            }
            if let Some(began) = began {
                let duration_us = began.elapsed().as_secs_f64() * 1e6;
                shared.reporter.handled(&self.slot.id, duration_us, ok);
            }
        }
        if self.exit.is_some() {
            return false;
        }
        if let Some(budget) = self.budget {
            let used = self.agent().state_size();
            if used > budget.get() {
                self.exit = Some(Box::new(ExitReason::MemoryLimit {
                    used: used as u64,
                    budget: budget.get() as u64,
                }));
                return false;
            }
        }
        true
    }
}

/// An incarnation dropped without having reported its exit was killed:
/// its task aborted, its `on_stop` not run or cut short (a stop's timeout,
/// its supervisor killed). It reports the kill here, with the checkpoint
/// of its state if it still holds it (killed in a handler, not in
/// `on_stop`); the tells in its mailbox are gone with its task.
impl<A: Agent> Hosted<A> {
    /// The tells it did not handle, for the next incarnation.
    fn take_mail(&mut self) -> Option<Mail> {
        let leftovers = self.leftovers.take()?;
        let len = leftovers.len();
        Some(Mail {
            messages: leftovers,
            len,
        })
    }
}

impl<A: Agent> Drop for Hosted<A> {
    fn drop(&mut self) {
        if self.reported {
            return;
        }
        self.reported = true;
        let id = self.id;
        let flags = self.slot.stop_flags(id, false);
        let checkpoint = self.agent.take().as_ref().and_then(checkpoint_of);
        if let (Some(durable), Some(checkpoint)) = (self.durable.as_deref(), checkpoint.as_ref()) {
            durable.write_detached::<A>(checkpoint);
        }
        let kept = checkpoint
            .map(|checkpoint| Box::new(Kept::<A>::Checkpoint(checkpoint)) as Box<dyn Any + Send>);
        let mail = self.take_mail();
        if let Some(shared) = self.shared.upgrade() {
            let down = self.notice.is_closing();
            shared.exited(
                &self.slot,
                id,
                ExitReason::Killed,
                kept,
                mail,
                flags.asked,
                down,
            );
        }
        self.notice.ended(id, ExitReason::Killed);
    }
}

/// The agent's checkpoint; a panicking `checkpoint` gives none.
fn checkpoint_of<A: Agent>(agent: &A) -> Option<A::Checkpoint> {
    std::panic::catch_unwind(AssertUnwindSafe(|| agent.checkpoint()))
        .ok()
        .flatten()
}

/// Why a message did not reach an incarnation.
pub(crate) enum Bounce<M> {
    /// The incarnation is stopping (or restarting): retry on the next one.
    Retry(M),
    /// It stopped before answering.
    Stopped,
    /// Its mailbox is full.
    Full(M),
    /// It is not an incarnation of the expected agent type.
    WrongType,
}

/// The mailbox of the incarnation behind `handle`, if it hosts an `A`.
pub(crate) fn inbox_of<A: Agent>(handle: &ProcessHandle) -> Option<&Arc<Inbox<A>>> {
    handle.process::<Inbox<A>>()
}

/// Sends `envelope` to the incarnation behind `handle` and waits for its
/// answer.
pub(crate) async fn ask_envelope<A: Agent>(
    handle: ProcessHandle,
    envelope: Envelope,
) -> Result<Result<serde_json::Value, EnvelopeError>, Bounce<Envelope>> {
    let inbox = inbox_of::<A>(&handle).ok_or(Bounce::WrongType)?;
    let (reply, answer) = oneshot::channel();
    if let Err(Msg::Envelope(envelope, _)) = inbox.send(Msg::Envelope(envelope, Some(reply))).await
    {
        return Err(Bounce::Retry(envelope));
    }
    match answer.await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(envelope)) => Err(Bounce::Retry(envelope)),
        Err(_) => Err(Bounce::Stopped),
    }
}

/// Queues `envelope` for the incarnation behind `handle` without waiting.
pub(crate) fn try_cast_envelope<A: Agent>(
    handle: &ProcessHandle,
    envelope: Envelope,
) -> Result<(), Bounce<Envelope>> {
    let inbox = inbox_of::<A>(handle).ok_or(Bounce::WrongType)?;
    inbox
        .try_send(Msg::Envelope(envelope, None))
        .map_err(|refused| match refused {
            Refused::Closed(Msg::Envelope(envelope, _)) => Bounce::Retry(envelope),
            Refused::Full(Msg::Envelope(envelope, _)) => Bounce::Full(envelope),
            Refused::Closed(Msg::Call(..)) | Refused::Full(Msg::Call(..)) => Bounce::Stopped,
        })
}

#[cfg(test)]
pub(crate) mod tests {
    use mabeam_supervision_core::{Process, StartError};

    use super::{Inbox, Msg};
    use crate::{Agent, AgentContext};

    /// An agent for the crate's unit tests: echoes what it is sent.
    pub(crate) struct Echo;

    impl Agent for Echo {
        type Args = ();
        type Message = u8;
        type Reply = u8;
        type Checkpoint = ();

        async fn on_start(_: (), _: Option<()>) -> Result<Self, StartError> {
            Ok(Echo)
        }

        async fn handle(&mut self, message: u8, _: &mut AgentContext<'_>) -> u8 {
            message
        }
    }

    // The first message makes room for one (not a `VecDeque`'s default
    // four: fresh memory each agent's first call would fault in); the
    // mailbox still grows, to its capacity, past it.
    #[test]
    fn the_first_message_makes_room_for_one() {
        let inbox = Inbox::<Echo>::new(8);
        assert_eq!(inbox.queue.lock().messages.capacity(), 0);
        assert!(inbox.try_send(Msg::Call(1, None)).is_ok());
        assert_eq!(inbox.queue.lock().messages.capacity(), 1);
        for n in 2..=8 {
            assert!(inbox.try_send(Msg::Call(n, None)).is_ok(), "message {n}");
        }
        assert!(matches!(
            inbox.try_send(Msg::Call(9, None)),
            Err(super::Refused::Full(_))
        ));
        assert_eq!(inbox.mailbox_len(), Some(8));
    }
}
