//! The kameo actor that hosts one incarnation of an agent: it runs the
//! user's [`Agent`] one message at a time (its predecessor's leftover tells
//! first), enforces the memory budget, and reports its own exit to the
//! registry from `on_stop` (so no watcher task per agent is needed: kameo
//! runs `on_stop` after a panic too; a kill aborts the whole task, and the
//! host's drop reports it).

use std::{
    any::Any,
    collections::VecDeque,
    marker::PhantomData,
    num::NonZeroUsize,
    panic::AssertUnwindSafe,
    sync::{Arc, Weak},
};

use futures::FutureExt;
use kameo::{
    actor::{Actor, ActorId, ActorRef, Spawn, WeakActorRef},
    error::{ActorStopReason, HookError, Infallible, PanicError},
    mailbox::{self, MailboxReceiver, Signal},
    message::{BoxMessage, Context, Message},
    reply::{Reply, ReplyError},
};
use mabeam_supervision_core::{
    Envelope, ExitNotice, ExitReason, ProcessHandle, StartError, StartFuture,
};

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

/// One incarnation of agent `A`: a pointer to its state. kameo's task
/// holds the actor in three places of its run loop, and tokio sizes a task
/// in steps of 128 bytes: a host as small as a bare actor keeps each agent's
/// task a step (256 bytes) smaller than a host held inline.
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

/// Messages told to an incarnation that it did not handle: its
/// predecessor's leftovers, handled before its own mailbox.
type Leftovers<A> = VecDeque<BoxMessage<AgentHost<A>>>;

/// What an incarnation holds.
pub(crate) struct Hosted<A: Agent> {
    agent: Option<A>,
    /// This incarnation's actor id.
    id: ActorId,
    /// Its exit is reported (by `on_stop`); if not when it is dropped, its
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
        let prepared = AgentHost::<A>::prepare_with_mailbox(mailbox::bounded(capacity));
        let actor_ref = prepared.actor_ref().clone();
        // The incarnation's one handle, made before it runs: the slot (the
        // host installs it) and the supervisor (it is returned) share it,
        // however soon the incarnation stops, so it need not be findable
        // by id. It keeps the task: a kill aborts all of it, `on_stop`
        // included (a stop's timeout bounds a hung `on_stop` too).
        // It sees its own stop signal (`next`): a stop queues no mark.
        let handle =
            ProcessHandle::spawn_sole_seeing_stop(prepared, |handle| (args, host, handle.clone()));
        // Abandoned midway (the caller's start dropped): killed, so that
        // nothing runs that its supervisor never adopted.
        let guard = KillOnDrop(Some(&handle));
        let started = tokio::select! {
            biased;
            started = actor_ref.wait_for_startup_result() => started.map_err(|err| match err {
                HookError::Error(reason) => StartError::from_exit(reason),
                HookError::Panicked(panic) => panic_start_error(&panic),
            }),
            // Its mailbox closed before it reported its start: it was
            // killed (its task aborted, which drops the mailbox) or stopped
            // first. Watched through the mailbox (a waiter on its channel),
            // not through the handle's exit, which on every start boxed a
            // future that took the task over and gave it back.
            () = actor_ref.wait_for_shutdown() => {
                // Once its task is gone, it has reported its exit itself,
                // if it got as far as its install.
                handle.exited().await;
                actor_ref
                    .with_startup_result(|result| {
                        result.map_err(|err| match err {
                            HookError::Error(reason) => StartError::from_exit(reason.clone()),
                            HookError::Panicked(panic) => panic_start_error(&panic),
                        })
                    })
                    .unwrap_or_else(|| Err(StartError::failed("stopped before its start completed")))
            }
        };
        guard.disarm();
        started.map(|()| handle)
    })
}

fn panic_start_error(panic: &PanicError) -> StartError {
    StartError::Panicked(
        panic
            .with_str(|s| s.into())
            .unwrap_or_else(|| panic.to_string().into()),
    )
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

impl<A: Agent> Actor for AgentHost<A> {
    type Args = (A::Args, HostArgs, ProcessHandle);
    type Error = ExitReason;

    fn name() -> &'static str {
        "AgentHost"
    }

    async fn on_start(
        (args, host, handle): Self::Args,
        _: ActorRef<Self>,
    ) -> Result<Self, ExitReason> {
        // Boxed: kameo keeps the start's future inside every actor's task
        // for its whole life; boxed, it weighs a pointer there.
        Box::pin(Self::start(args, host, handle)).await
    }

    async fn on_stop(
        &mut self,
        me: WeakActorRef<Self>,
        reason: ActorStopReason,
    ) -> Result<(), ExitReason> {
        // Boxed, as the start; `me` is not kept across the await (it
        // would weigh in every agent's task).
        let id = me.id();
        drop(me);
        Box::pin(self.stop(id, reason)).await
    }

    /// Tells left in the mailbox when it stopped (kameo bounces the asks
    /// to their callers, who retry on the next incarnation): kept after
    /// the leftovers not yet handled, for the next incarnation, in order.
    async fn on_undelivered(
        &mut self,
        _: ActorStopReason,
        undelivered: Vec<BoxMessage<Self>>,
    ) -> Result<(), ExitReason> {
        self.0
            .leftovers
            .get_or_insert_with(Default::default)
            .extend(undelivered);
        Ok(())
    }

    /// Its predecessor's leftovers first, then the mailbox; notes the
    /// stop signal as it comes (see `stop`).
    async fn next(
        &mut self,
        me: WeakActorRef<Self>,
        mailbox: &mut MailboxReceiver<Self>,
    ) -> Result<Option<Signal<Self>>, ExitReason> {
        if let Some(leftovers) = self.0.leftovers.as_mut()
            && let Some(message) = leftovers.pop_front()
        {
            if leftovers.is_empty() {
                self.0.leftovers = None;
            }
            if let Some(actor_ref) = me.upgrade() {
                return Ok(Some(Signal::Message {
                    message,
                    actor_ref,
                    reply: None,
                    sent_within_actor: false,
                    message_name: "redelivered",
                }));
            }
        }
        let signal = mailbox.recv().await;
        if matches!(signal, Some(Signal::Stop)) {
            self.0.reached_stop = true;
        }
        Ok(signal)
    }
}

impl<A: Agent> AgentHost<A> {
    async fn start(
        args: A::Args,
        host: HostArgs,
        handle: ProcessHandle,
    ) -> Result<Self, ExitReason> {
        let agent = match host.slot.take_kept::<A>() {
            Some(Kept::Live(agent)) => agent,
            Some(Kept::Checkpoint(checkpoint)) => A::on_start(args, Some(checkpoint))
                .await
                .map_err(ExitReason::error)?,
            None => A::on_start(args, None).await.map_err(ExitReason::error)?,
        };
        let shared = host
            .shared
            .upgrade()
            .ok_or_else(|| ExitReason::Shutdown(Some("agent registry gone".into())))?;
        let id = handle.id();
        let (budget, tracks_idle, mail) = shared.install(&host.slot, handle, host.epoch)?;
        let durable = shared.durable_host(&host.slot);
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

    async fn stop(&mut self, id: ActorId, reason: ActorStopReason) -> Result<(), ExitReason> {
        let flags = self.slot.stop_flags(id, self.reached_stop);
        let exit = self.exit.take().map_or_else(
            || classify(&reason, flags.stopping || flags.passivating || flags.asked),
            |exit| *exit,
        );
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
        match exit {
            // Reported as is through every handle's `exited()`.
            ExitReason::MemoryLimit { .. } => Err(exit),
            _ => Ok(()),
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
            durable.write::<A>(checkpoint.as_ref()).await;
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
    fn after_message(
        &mut self,
        ctx: &mut Context<Self, impl Reply>,
        began: Option<std::time::Instant>,
        ok: bool,
    ) {
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
            ctx.stop();
            return;
        }
        if let Some(budget) = self.budget {
            let used = self.agent().state_size();
            if used > budget.get() {
                self.exit = Some(Box::new(ExitReason::MemoryLimit {
                    used: used as u64,
                    budget: budget.get() as u64,
                }));
                ctx.stop();
            }
        }
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

/// A kameo stop reason as an [`ExitReason`]; `requested` when someone
/// asked the incarnation to stop.
fn classify(reason: &ActorStopReason, requested: bool) -> ExitReason {
    match reason {
        ActorStopReason::Normal | ActorStopReason::SupervisorRestart => {
            if requested {
                ExitReason::Shutdown(None)
            } else {
                ExitReason::Normal
            }
        }
        ActorStopReason::Killed => ExitReason::Killed,
        ActorStopReason::Panicked(err) => from_panic(err),
        ActorStopReason::LinkDied { id, reason } => {
            ExitReason::error(format_args!("linked actor {id} died: {reason}"))
        }
        #[allow(unreachable_patterns)]
        other => ExitReason::error(other),
    }
}

fn from_panic(err: &PanicError) -> ExitReason {
    if let Some(reason) = err.downcast::<ExitReason>() {
        return reason;
    }
    let message: Arc<str> = err
        .with_str(|s| Arc::<str>::from(s))
        .unwrap_or_else(|| err.to_string().into());
    if err.is_panic() {
        ExitReason::Panic(message)
    } else {
        ExitReason::Error(message)
    }
}

/// A reply of any type, as kameo's [`Reply`] (which it implements only for
/// known types).
pub(crate) struct Answer<R>(pub(crate) R);

impl<R: Send + 'static> Reply for Answer<R> {
    type Ok = Self;
    type Error = Infallible;
    type Value = Self;

    fn to_result(self) -> Result<Self, Infallible> {
        Ok(self)
    }

    fn into_any_err(self) -> Option<Box<dyn ReplyError>> {
        None
    }

    fn into_value(self) -> Self {
        self
    }
}

/// A typed message for agent `A`.
pub(crate) struct Call<A: Agent>(pub(crate) A::Message, PhantomData<fn() -> A>);

impl<A: Agent> Call<A> {
    pub(crate) fn new(message: A::Message) -> Self {
        Call(message, PhantomData)
    }
}

impl<A: Agent> Message<Call<A>> for AgentHost<A> {
    type Reply = Answer<A::Reply>;

    async fn handle(
        &mut self,
        Call(message, _): Call<A>,
        ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let began = self.began();
        let host = &mut *self.0;
        let mut agent_ctx = AgentContext::new(&host.slot.id);
        let agent = host.agent.as_mut().expect("a running host holds its agent");
        let reply = agent.handle(message, &mut agent_ctx).await;
        host.exit = agent_ctx.exit.map(Box::new);
        self.after_message(ctx, began, true);
        self.checkpoint_after_message().await;
        Answer(reply)
    }
}

/// A protocol envelope for the agent.
pub(crate) struct EnvelopeCall(pub(crate) Envelope);

impl<A: Agent> Message<EnvelopeCall> for AgentHost<A> {
    type Reply = Answer<Result<serde_json::Value, EnvelopeError>>;

    async fn handle(
        &mut self,
        EnvelopeCall(envelope): EnvelopeCall,
        ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let began = self.began();
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
        self.after_message(ctx, began, answer.is_ok());
        self.checkpoint_after_message().await;
        Answer(answer)
    }
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

pub(crate) fn bounce<M>(err: kameo::error::SendError<M, Infallible>) -> Bounce<M> {
    use kameo::error::SendError;
    match err {
        SendError::ActorNotRunning(m) | SendError::ActorRestarting(m) => Bounce::Retry(m),
        SendError::MailboxFull(m) => Bounce::Full(m),
        SendError::ActorStopped | SendError::HandlerError(_) | SendError::Timeout(_) => {
            Bounce::Stopped
        }
    }
}

/// Sends `envelope` to the incarnation behind `handle` and waits for its
/// answer.
pub(crate) async fn ask_envelope<A: Agent>(
    handle: ProcessHandle,
    envelope: Envelope,
) -> Result<Result<serde_json::Value, EnvelopeError>, Bounce<Envelope>> {
    let actor: ActorRef<AgentHost<A>> = handle.downcast().ok_or(Bounce::WrongType)?;
    match actor.ask(EnvelopeCall(envelope)).send().await {
        Ok(Answer(answer)) => Ok(answer),
        Err(err) => Err(match bounce(err) {
            Bounce::Retry(EnvelopeCall(e)) => Bounce::Retry(e),
            Bounce::Full(EnvelopeCall(e)) => Bounce::Full(e),
            Bounce::Stopped => Bounce::Stopped,
            Bounce::WrongType => Bounce::WrongType,
        }),
    }
}

/// Queues `envelope` for the incarnation behind `handle` without waiting.
pub(crate) fn try_cast_envelope<A: Agent>(
    handle: &ProcessHandle,
    envelope: Envelope,
) -> Result<(), Bounce<Envelope>> {
    let actor: ActorRef<AgentHost<A>> = handle.downcast().ok_or(Bounce::WrongType)?;
    actor
        .tell(EnvelopeCall(envelope))
        .try_send()
        .map_err(|err| match bounce(err) {
            Bounce::Retry(EnvelopeCall(e)) => Bounce::Retry(e),
            Bounce::Full(EnvelopeCall(e)) => Bounce::Full(e),
            Bounce::Stopped => Bounce::Stopped,
            Bounce::WrongType => Bounce::WrongType,
        })
}
