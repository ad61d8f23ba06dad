//! The static supervisor's actor: its children in list order, and what it
//! does when one exits (restart by strategy, retry, give up).

use std::{collections::HashMap, mem, ops::Range, time::Duration};

use kameo::{
    actor::{Actor, ActorId, ActorRef, WeakActorRef},
    error::ActorStopReason,
    message::{Context, Message},
};
use tokio::time::Instant;

use super::{AutoShutdown, Strategy, SupervisorFlags};
use crate::{
    ChildSpec, Clock, ExitReason, ProcessHandle, RestartType, StartError,
    backoff::BackoffState,
    intensity::RestartLog,
    report::Reporter,
    timer::RestartTimer,
    watch::{ChildDown, watch},
};

/// One child: its spec and whether it runs.
pub(super) struct Child {
    pub(super) spec: ChildSpec,
    pub(super) slot: Slot,
    pub(super) backoff: BackoffState,
    /// The actor id of its latest incarnation (the old one, in a restart);
    /// none for a child that never ran (its start answered `ignore`).
    pub(super) last: Option<ActorId>,
}

impl Child {
    /// A child that was just started as `handle`, at `now`.
    pub(super) fn running(spec: ChildSpec, handle: ProcessHandle, now: Instant) -> Self {
        Child {
            spec,
            last: Some(handle.id()),
            slot: Slot::Running(handle),
            backoff: BackoffState::new(now),
        }
    }

    /// A child whose start answered `ignore` at `now`: kept, not running.
    pub(super) fn not_running(spec: ChildSpec, now: Instant) -> Self {
        Child {
            spec,
            last: None,
            slot: Slot::NotRunning,
            backoff: BackoffState::new(now),
        }
    }

    /// Marks the child running again as `handle`, from `now`.
    pub(super) fn restarted(&mut self, handle: ProcessHandle, now: Instant) {
        self.last = Some(handle.id());
        self.slot = Slot::Running(handle);
        self.backoff.started(now);
    }
}

/// Whether a child runs.
pub(super) enum Slot {
    Running(ProcessHandle),
    /// Its restart failed; the retry with this ticket will start it.
    Restarting(u64),
    /// Exited and not restarted, or its start answered `ignore`.
    NotRunning,
    /// Stopped by `terminate_child` and not started since.
    Terminated,
}

impl Slot {
    /// The running child's handle, leaving the slot not running.
    pub(super) fn take_running(&mut self) -> Option<ProcessHandle> {
        match mem::replace(self, Slot::NotRunning) {
            Slot::Running(handle) => Some(handle),
            other => {
                *self = other;
                None
            }
        }
    }
}

/// The supervisor actor. Its exit reason, when it gives up, is the
/// `ExitReason` returned as its error.
pub(crate) struct SupervisorActor {
    pub(super) reporter: Reporter,
    strategy: Strategy,
    auto_shutdown: AutoShutdown,
    restarts: RestartLog,
    /// What the restart window and the backoff waits read.
    pub(super) clock: Clock,
    /// In list order: start order; the reverse is stop order.
    pub(super) children: Vec<Child>,
    next_ticket: u64,
    /// The backoff timers of groups waiting to restart, by ticket.
    pub(super) timers: HashMap<u64, RestartTimer>,
}

impl Actor for SupervisorActor {
    type Args = Self;
    type Error = ExitReason;

    fn name() -> &'static str {
        "Supervisor"
    }

    async fn on_start(state: Self, _: ActorRef<Self>) -> Result<Self, ExitReason> {
        Ok(state)
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

/// A supervisor killed (its task aborted, its `on_stop` not run) takes its
/// children with it: each running child is killed, a supervisor child with
/// its own subtree. After a graceful stop no child runs and this does
/// nothing.
impl Drop for SupervisorActor {
    fn drop(&mut self) {
        for child in &self.children {
            if let Slot::Running(handle) = &child.slot {
                handle.kill();
            }
        }
    }
}

impl SupervisorActor {
    pub(super) fn new(flags: SupervisorFlags) -> Self {
        SupervisorActor {
            reporter: Reporter::new(flags.name, flags.telemetry),
            strategy: flags.strategy,
            auto_shutdown: flags.auto_shutdown,
            restarts: RestartLog::new(flags.intensity),
            clock: flags.clock,
            children: Vec::new(),
            next_ticket: 0,
            timers: HashMap::new(),
        }
    }

    /// The position of the child with this id.
    pub(super) fn position(&self, id: &str) -> Option<usize> {
        self.children.iter().position(|child| &*child.spec.id == id)
    }

    /// Finds the running child with this actor id and marks it not running.
    fn take_running(&mut self, id: ActorId) -> Option<(usize, ProcessHandle)> {
        let index = self
            .children
            .iter()
            .position(|child| matches!(&child.slot, Slot::Running(handle) if handle.id() == id))?;
        let handle = self.children[index].slot.take_running()?;
        Some((index, handle))
    }

    /// The supervisor's own check of a spec added at run time: a
    /// significant child needs an auto shutdown.
    pub(super) fn check_significant(&self, spec: &ChildSpec) -> Result<(), crate::FlagsError> {
        super::check_significant(self.auto_shutdown, spec)
    }

    /// Starts a child from its spec and watches it; does not record it.
    pub(super) async fn start(
        reporter: &Reporter,
        spec: &ChildSpec,
        actor_ref: &ActorRef<Self>,
    ) -> Result<ProcessHandle, crate::StartError> {
        let handle = reporter
            .start(spec, || {
                let supervisor = ProcessHandle::new(actor_ref.clone()).downgrade();
                crate::Stopper::static_child(supervisor, spec.id.clone())
            })
            .await?;
        // Not aborted when we stop the child ourselves: the few static
        // children make the stale notice cheap, and it is ignored (the slot
        // no longer holds that actor).
        drop(watch(&handle, actor_ref));
        Ok(handle)
    }

    /// Stops a running child on purpose (it was marked not running first,
    /// so its exit notice is ignored).
    pub(super) async fn stop_child(reporter: &Reporter, spec: &ChildSpec, handle: ProcessHandle) {
        let exit = spec.shutdown.stop(&handle).await;
        reporter.terminated(spec, &handle, &exit);
    }

    /// The child at `index` exited with `exit` (it is already marked not
    /// running): applies its restart type and the strategy, or, for a
    /// significant child that is not restarted, the auto shutdown.
    async fn child_exited(
        &mut self,
        index: usize,
        handle: ProcessHandle,
        exit: ExitReason,
        actor_ref: &ActorRef<Self>,
    ) -> Result<(), ExitReason> {
        let spec = &self.children[index].spec;
        // A stop of the supervisor has been requested: nothing restarts.
        let restart = spec.restart.restarts_after(&exit) && actor_ref.is_alive();
        self.reporter.exited(spec, &handle, &exit, restart);
        let significant = spec.significant && !restart && actor_ref.is_alive();
        let id = spec.id.clone();
        if spec.restart == RestartType::Temporary {
            self.children.remove(index);
        }
        if significant {
            return self.significant_exited(&id).await;
        }
        if !restart {
            return Ok(());
        }
        // The notice comes from `exited()`, so the child is gone, whole
        // subtree included (a supervisor stops its children in on_stop),
        // before anything starts again.
        drop(handle);
        self.restart(index, actor_ref).await
    }

    /// The significant child `id` exited by itself and is not restarted:
    /// with `AnySignificant`, or `AllSignificant` once no significant child
    /// runs, the supervisor stops every child and exits with `shutdown`,
    /// as OTP 24's auto_shutdown.
    async fn significant_exited(&mut self, id: &str) -> Result<(), ExitReason> {
        let shut_down = match self.auto_shutdown {
            AutoShutdown::Never => false,
            AutoShutdown::AnySignificant => true,
            AutoShutdown::AllSignificant => !self.children.iter().any(|child| {
                child.spec.significant && !matches!(child.slot, Slot::NotRunning | Slot::Terminated)
            }),
        };
        if !shut_down {
            return Ok(());
        }
        self.shutdown_all().await;
        Err(ExitReason::Shutdown(Some(
            format!("auto_shutdown: significant child {id:?} terminated").into(),
        )))
    }

    /// Restarts the child at `index` with its group, counting the restart:
    /// stops the group's running members in reverse order, drops its
    /// temporary members, and starts the others in order. Past the
    /// intensity: stops everything and returns the supervisor's exit reason.
    async fn restart(
        &mut self,
        index: usize,
        actor_ref: &ActorRef<Self>,
    ) -> Result<(), ExitReason> {
        self.count_restart().await?;
        let Range { start, mut end } = match self.strategy {
            Strategy::OneForOne => index..index + 1,
            Strategy::OneForAll => 0..self.children.len(),
            Strategy::RestForOne => index..self.children.len(),
        };
        for child in self.children[start..end].iter_mut().rev() {
            if let Some(handle) = child.slot.take_running() {
                Self::stop_child(&self.reporter, &child.spec, handle).await;
            }
        }
        let mut i = start;
        while i < end {
            if self.children[i].spec.restart == RestartType::Temporary {
                self.children.remove(i);
                end -= 1;
            } else {
                i += 1;
            }
        }
        self.start_members_after_backoff((start..end).collect(), actor_ref)
            .await;
        Ok(())
    }

    /// Retries the group whose members still wait on `ticket` (a member
    /// terminated meanwhile has left it), counting the restart.
    async fn retry(&mut self, ticket: u64, actor_ref: &ActorRef<Self>) -> Result<(), ExitReason> {
        let members = self.waiting_on(ticket);
        if members.is_empty() {
            return Ok(());
        }
        self.count_restart().await?;
        self.start_members_after_backoff(members, actor_ref).await;
        Ok(())
    }

    /// Starts `members` now, or, if any has a backoff, once the longest
    /// among them is over: they wait as restarting, and the timer comes back
    /// through the mailbox as [`StartGroup`].
    async fn start_members_after_backoff(
        &mut self,
        members: Vec<usize>,
        actor_ref: &ActorRef<Self>,
    ) {
        let now = self.clock.now();
        let mut wait = Duration::ZERO;
        for &i in &members {
            let child = &mut self.children[i];
            if let Some(policy) = child.spec.backoff {
                let (delay, attempt) = child.backoff.next_delay(&policy, now);
                self.reporter.backoff(&child.spec, delay, attempt);
                wait = wait.max(delay);
            }
        }
        if wait.is_zero() {
            return self.start_members(members, actor_ref).await;
        }
        self.next_ticket += 1;
        let ticket = self.next_ticket;
        for &i in &members {
            self.children[i].slot = Slot::Restarting(ticket);
        }
        let timer = RestartTimer::after(actor_ref, self.clock.sleep(wait), StartGroup(ticket));
        self.timers.insert(ticket, timer);
    }

    /// The members still waiting on `ticket` (a member terminated meanwhile
    /// has left the group).
    pub(super) fn waiting_on(&self, ticket: u64) -> Vec<usize> {
        (0..self.children.len())
            .filter(|&i| matches!(self.children[i].slot, Slot::Restarting(t) if t == ticket))
            .collect()
    }

    /// Records a restart; past the intensity, stops every child and returns
    /// the supervisor's exit reason.
    async fn count_restart(&mut self) -> Result<(), ExitReason> {
        if self.restarts.record(self.clock.now()) {
            return Ok(());
        }
        self.shutdown_all().await;
        let reason = self.restarts.exceeded();
        self.reporter.gave_up(&reason, self.restarts.count());
        Err(reason)
    }

    /// Starts the (not running) children at `members`, in order. A member
    /// whose start answers `ignore` stays not running. If a start fails,
    /// the members from the failed one on wait on a new ticket, and the
    /// retry goes through the mailbox, so admin calls keep answering in
    /// between. As OTP: under rest_for_one the members started before the
    /// failed one keep running (the retry starts from the failed child);
    /// otherwise they are stopped again in reverse order and the whole
    /// group is retried.
    async fn start_members(&mut self, members: Vec<usize>, actor_ref: &ActorRef<Self>) {
        for (n, &i) in members.iter().enumerate() {
            match Self::start(&self.reporter, &self.children[i].spec, actor_ref).await {
                Ok(handle) => {
                    let child = &self.children[i];
                    self.reporter.restarted(
                        &child.spec,
                        child.last,
                        &handle,
                        self.restarts.count(),
                    );
                    self.children[i].restarted(handle, self.clock.now());
                }
                Err(StartError::Ignored) => self.children[i].slot = Slot::NotRunning,
                Err(_start_error) => {
                    let retried = if self.strategy == Strategy::RestForOne {
                        &members[n..]
                    } else {
                        for &j in members[..n].iter().rev() {
                            let child = &mut self.children[j];
                            if let Some(handle) = child.slot.take_running() {
                                Self::stop_child(&self.reporter, &child.spec, handle).await;
                            }
                        }
                        &members[..]
                    };
                    self.next_ticket += 1;
                    let ticket = self.next_ticket;
                    for &j in retried {
                        self.children[j].slot = Slot::Restarting(ticket);
                    }
                    // Unbounded mailbox: this never waits. It fails only when
                    // the supervisor is stopping, and then nothing restarts.
                    let _ = actor_ref.tell(RetryRestart(ticket)).await;
                    return;
                }
            }
        }
    }

    /// Stops every child in reverse list order, each by its shutdown; specs
    /// are kept, no child runs (a terminated child still shows as
    /// terminated).
    pub(super) async fn shutdown_all(&mut self) {
        for (_, timer) in self.timers.drain() {
            timer.cancel().await;
        }
        for child in self.children.iter_mut().rev() {
            match mem::replace(&mut child.slot, Slot::NotRunning) {
                Slot::Running(handle) => {
                    Self::stop_child(&self.reporter, &child.spec, handle).await;
                }
                Slot::Terminated => child.slot = Slot::Terminated,
                Slot::Restarting(_) | Slot::NotRunning => {}
            }
        }
    }
}

/// The backoff of the group whose members carry this ticket is over (or
/// there was none): start them.
struct StartGroup(u64);

impl Message<StartGroup> for SupervisorActor {
    type Reply = ();

    async fn handle(&mut self, StartGroup(ticket): StartGroup, ctx: &mut Context<Self, ()>) {
        self.timers.remove(&ticket);
        if !ctx.actor_ref().is_alive() {
            return;
        }
        let members = self.waiting_on(ticket);
        if !members.is_empty() {
            self.start_members(members, ctx.actor_ref()).await;
        }
    }
}

/// Retry the restart of the group whose members carry this ticket.
struct RetryRestart(u64);

impl Message<RetryRestart> for SupervisorActor {
    type Reply = Result<(), ExitReason>;

    async fn handle(
        &mut self,
        RetryRestart(ticket): RetryRestart,
        ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        if !ctx.actor_ref().is_alive() {
            return Ok(());
        }
        self.retry(ticket, ctx.actor_ref()).await
    }
}

impl Message<ChildDown> for SupervisorActor {
    type Reply = Result<(), ExitReason>;

    async fn handle(
        &mut self,
        ChildDown { id, exit }: ChildDown,
        ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let Some((index, handle)) = self.take_running(id) else {
            return Ok(());
        };
        self.child_exited(index, handle, exit, ctx.actor_ref())
            .await
    }
}
