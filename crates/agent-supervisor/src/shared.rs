//! [`Shared`]: the registry's state behind every handle, and the lifecycle
//! of an agent: starting an incarnation, its exit, the restart decision,
//! passivation and waking, and routing a message to the current
//! incarnation.

use std::{
    sync::{
        Arc, Weak,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use dashmap::DashMap;
use kameo::actor::ActorId;
use mabeam_supervision_core::{
    AgentId, AgentStatus, ChildSpec, Clock, Deadlines, ExitNotice, ExitReason, Namespace,
    ProcessHandle, Registry, StartError, SupervisorError,
};
use parking_lot::RwLock;
use tokio::{sync::Notify, time::Instant};

use crate::{
    AgentError, AgentSupervisor,
    host::HostArgs,
    report::{Counts, Reporter},
    slot::{Mail, Slot, SlotState},
};

/// The agent table: sharded, read without waiting on writers of other
/// shards (the seed's ETS table). Keyed by the id inline (up to 24 bytes):
/// a lookup compares it without following a pointer.
pub(crate) type Table = DashMap<TableKey, Entry, foldhash::fast::RandomState>;

/// An agent's table entry: its record, and a copy of its current
/// incarnation, so that a lookup by id reads the table only. A hundred
/// thousand records are scattered over more memory than the caches hold; a
/// lookup that followed the record as well missed the cache twice as often.
///
/// The copy is written under the record's lock, as the record changes, so
/// it never disagrees with the record once the lock is released. Lock
/// order: a record, then a table shard. Nothing locks a record while it
/// holds a shard's guard (readers clone the record's `Arc` out of the
/// table first).
pub(crate) struct Entry {
    pub(crate) slot: Arc<Slot>,
    current: Option<ProcessHandle>,
    /// The current incarnation's id, read without following the handle
    /// (meaningless while `current` is `None`: no `Option`, whose tag would
    /// add a word to every entry).
    current_id: ActorId,
}

impl Entry {
    pub(crate) fn new(slot: Arc<Slot>) -> Self {
        Entry {
            slot,
            current: None,
            current_id: ActorId::new(0),
        }
    }

    /// The current incarnation, as last published.
    pub(crate) fn current(&self) -> Option<&ProcessHandle> {
        self.current.as_ref()
    }

    /// The current incarnation's id, as last published.
    pub(crate) fn current_id(&self) -> Option<ActorId> {
        self.current.as_ref().map(|_| self.current_id)
    }
}

/// An id as the table keeps it.
pub(crate) type TableKey = compact_str::CompactString;

/// What a caller does when the agent is being restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnRestart {
    /// Wait (within the call's timeout) for the next incarnation.
    #[default]
    Wait,
    /// Fail at once with [`AgentError::Restarting`].
    Fail,
}

/// The agent supervisor of the moment: replaced when it dies (see
/// [`Shared::replace_supervisor`]), so the registry outlives it.
#[derive(Clone)]
pub(crate) struct Sup {
    pub(crate) supervisor: AgentSupervisor,
    /// How each incarnation tells the supervisor it exited.
    pub(crate) notice: ExitNotice,
    /// Counts replacements.
    pub(crate) generation: u64,
}

pub(crate) struct Shared {
    pub(crate) me: Weak<Shared>,
    pub(crate) table: Table,
    /// Read once per start; written when the supervisor is replaced.
    pub(crate) sup: RwLock<Sup>,
    /// The registry is stopping (`shutdown`): agents taken down with the
    /// supervisor now are stopped, not kept for a next one.
    pub(crate) closing: AtomicBool,
    /// The supervisor's name (for its replacements).
    pub(crate) name: Arc<str>,
    pub(crate) registry: Option<Arc<dyn Registry>>,
    pub(crate) namespace: Namespace,
    pub(crate) reporter: Reporter,
    pub(crate) clock: Clock,
    /// The deadlines of calls, on one timer (not one per call).
    pub(crate) deadlines: Deadlines,
    pub(crate) origin: Instant,
    pub(crate) counts: Counts,
    pub(crate) runtime: Option<tokio::runtime::Handle>,
    pub(crate) passivation_tick: Duration,
    pub(crate) sweeper: std::sync::Once,
    /// Woken on every change of an agent's incarnation or status, one
    /// among [`CHANGE_SHARDS`] per agent (not one in every record):
    /// waiters re-check their agent's state, so a wake meant for another
    /// agent of the shard costs a look only.
    pub(crate) changes: Box<[Notify]>,
    /// The agent store and the recovery from it (see `durable`).
    pub(crate) durable: crate::durable::Durable,
}

/// How many notifications the agents share.
pub(crate) const CHANGE_SHARDS: usize = 256;

/// How long an agent whose restart a dying supervisor refused waits
/// before it tries the supervisor that replaced it.
const ORPHAN_RETRY: Duration = Duration::from_millis(10);

/// Spawns `task` on the current runtime, if there is one (an incarnation
/// dropped as its runtime shuts down reports its exit with none).
pub(crate) fn spawn_detached(task: impl std::future::Future<Output = ()> + Send + 'static) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        drop(runtime.spawn(task));
    }
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> std::future::Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// An incarnation releases its name when it stops (`exited`); one still
/// running when the registry goes can no longer reach it, so the names
/// left are released here: no registration outlives the agent registry.
impl Drop for Shared {
    fn drop(&mut self) {
        let Some(registry) = &self.registry else {
            return;
        };
        // The table's copies: nothing publishes any more (that needs this
        // `Shared`), so they are the records' incarnations.
        for entry in self.table.iter() {
            if let Some(handle) = entry.current() {
                registry.unregister_if(&self.namespace, &registry_name(&entry.slot.id), handle);
            }
        }
    }
}

/// The name an agent's incarnation holds in the [`Registry`] (inline, not
/// allocated, for ids up to 18 bytes).
pub(crate) fn registry_name(id: &AgentId) -> compact_str::CompactString {
    let mut name = compact_str::CompactString::with_capacity(6 + id.as_str().len());
    name.push_str("agent:");
    name.push_str(id.as_str());
    name
}

impl Shared {
    /// The notification of `slot`'s changes.
    pub(crate) fn changed(&self, slot: &Slot) -> &Notify {
        // Fibonacci hashing of the record's address spreads records that
        // are allocated evenly apart over every shard.
        let at = (std::ptr::from_ref(slot) as usize as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        &self.changes[(at >> 32) as usize % self.changes.len()]
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.clock
            .now()
            .saturating_duration_since(self.origin)
            .as_millis() as u64
    }

    /// Moves `state` to `to`, reporting the change.
    pub(crate) fn set_status(&self, slot: &Slot, state: &mut SlotState, to: AgentStatus) {
        let from = state.status;
        if from == to {
            return;
        }
        state.status = to;
        self.counts.remove(from);
        self.counts.add(to);
        self.reporter.status(
            &slot.id,
            &state.config.kind,
            Some(from),
            to,
            state.restarts,
            state.last_exit.as_deref(),
        );
    }

    pub(crate) fn set_passivated(&self, state: &mut SlotState, passivated: bool) {
        if state.passivated != passivated {
            state.passivated = passivated;
            if passivated {
                self.counts
                    .passivated
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            } else {
                self.counts
                    .passivated
                    .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    /// Called by a new incarnation's `on_start`: makes it the agent's
    /// current one and registers it by name. Refused (the start fails) if
    /// the agent is no longer meant to run (among others, once a start
    /// or restart decision newer than its own, `epoch`, was taken: its
    /// caller gave up on it). Returns the memory budget, whether to track
    /// idleness, and the tells its predecessor left.
    pub(crate) fn install(
        &self,
        slot: &Slot,
        handle: ProcessHandle,
        epoch: u32,
    ) -> Result<(Option<usize>, bool, Option<Mail>), ExitReason> {
        let mut state = slot.state.lock();
        let wanted = !state.removed
            && state.epoch == epoch
            && !state.stopping
            && state.current.is_none()
            && match state.status {
                AgentStatus::Starting | AgentStatus::Restarting => true,
                AgentStatus::Running => state.waking,
                _ => false,
            };
        if !wanted {
            return Err(ExitReason::Shutdown(Some("agent no longer wanted".into())));
        }
        if let Some(registry) = &self.registry {
            // Released by the incarnation itself (`exited`), or by the
            // registry's drop: the process registry need not watch it.
            registry
                .register_owned(
                    &self.namespace,
                    &registry_name(&slot.id),
                    handle.clone(),
                    state.config.registry_metadata(),
                )
                .map_err(ExitReason::error)?;
        }
        self.publish(slot, Some(handle.clone()));
        state.current = Some(handle);
        state.generation = state.generation.wrapping_add(1);
        state.started_at = Some(self.clock.wall());
        state.started_mono = Some(self.clock.now());
        let config = state.config.clone();
        if config.passivate_after.is_some() {
            slot.touch(self.now_ms());
        }
        // A wake or a restart is stored as it happens; a start is
        // acknowledged by its caller (or was already stored: a recovery).
        let note = matches!(state.status, AgentStatus::Running | AgentStatus::Restarting);
        match state.status {
            AgentStatus::Running => {
                state.waking = false;
                self.set_passivated(&mut state, false);
                self.reporter.passivation(&slot.id, &config.kind, true);
            }
            AgentStatus::Restarting => {
                state.restarts += 1;
                self.set_status(slot, &mut state, AgentStatus::Running);
            }
            _ => self.set_status(slot, &mut state, AgentStatus::Running),
        }
        let mail = state.mail.take().map(|mail| *mail);
        if note {
            self.durable_note(slot, &state);
        }
        drop(state);
        self.changed(slot).notify_waiters();
        Ok((config.memory_budget, config.passivate_after.is_some(), mail))
    }

    /// Called by an incarnation as it stops: records the exit and decides
    /// what follows (stopped, passivated, completed, crashed, restarting,
    /// failed, or waiting for the next supervisor). `mail`: the tells it
    /// left, delivered to the next incarnation or dropped (and counted).
    /// `asked`: a stop was requested through the incarnation's handle, by
    /// the registry or by anyone else (its supervisor). `supervisor_down`:
    /// its supervisor was stopping or gone.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn exited(
        &self,
        slot: &Arc<Slot>,
        actor: ActorId,
        exit: ExitReason,
        kept: Option<Box<dyn std::any::Any + Send>>,
        mail: Option<Mail>,
        asked: bool,
        supervisor_down: bool,
    ) {
        let mut state = slot.state.lock();
        if state.current.as_ref().map(ProcessHandle::id) != Some(actor) {
            return; // not (or no longer) the current incarnation
        }
        let handle = state.current.take().expect("checked above");
        self.publish(slot, None);
        state.generation = state.generation.wrapping_add(1);
        if let Some(registry) = &self.registry {
            registry.unregister_if(&self.namespace, &registry_name(&slot.id), &handle);
        }
        let (stopping, passivating) = (state.stopping, state.passivating);
        state.stopping = false;
        state.passivating = false;
        // Stopped by its supervisor (the AgentSupervisor stopping, or an
        // agent terminated through it): the seed's `:shutdown -> :stopped`,
        // whatever the policy, as a stop by the registry is.
        let stopped_by_supervisor =
            asked && !passivating && matches!(exit, ExitReason::Shutdown(_));
        // Taken down with its supervisor (stopped or killed with it): kept
        // for the next supervisor, its checkpoint and tells with it, its
        // restart limits untouched.
        let orphaned = supervisor_down && !stopping && !self.is_closing();
        state.kept = kept.map(Box::new);
        state.mail = mail.map(Box::new);
        if orphaned && !(passivating && exit.is_clean() && state.kept.is_some()) {
            state.last_exit = Some(Box::new(exit));
            self.orphan(slot, &mut state, stopped_by_supervisor);
        } else if stopping || stopped_by_supervisor {
            state.last_exit = Some(Box::new(exit));
            self.set_status(slot, &mut state, AgentStatus::Stopping);
            self.set_status(slot, &mut state, AgentStatus::Stopped);
        } else if passivating && exit.is_clean() && state.kept.is_some() {
            self.set_passivated(&mut state, true);
            self.reporter
                .passivation(&slot.id, &state.config.kind, false);
            if state.mail.is_some() {
                // Tells came in as it passivated: they wake it, in order.
                state.waking = true;
                self.wake(slot);
            }
        } else {
            self.after_exit(slot, &mut state, exit);
        }
        if state.mail.is_some()
            && !matches!(state.status, AgentStatus::Restarting)
            && !(state.passivated || state.orphaned)
        {
            // Not restarted: nobody will handle them.
            let mail = state.mail.take().expect("checked above");
            let reason = state
                .last_exit
                .as_deref()
                .map(ToString::to_string)
                .unwrap_or_default();
            self.reporter.dropped(&slot.id, mail.len, &reason);
        }
        self.durable_note(slot, &state);
        drop(state);
        self.changed(slot).notify_waiters();
    }

    /// Keeps an agent its supervisor took down for the next supervisor:
    /// `Stopped` if that supervisor was stopped on purpose (a new one
    /// restarts it all the same), else `Restarting`. Under the record's
    /// lock. If a new supervisor already runs, it is restarted now.
    fn orphan(&self, slot: &Arc<Slot>, state: &mut SlotState, stopped: bool) {
        state.orphaned = true;
        state.epoch = state.epoch.wrapping_add(1);
        if stopped {
            self.set_status(slot, state, AgentStatus::Stopping);
            self.set_status(slot, state, AgentStatus::Stopped);
        } else {
            self.set_status(slot, state, AgentStatus::Restarting);
        }
        if !self.sup.read().notice.is_closing() {
            self.adopt_orphan(slot, state, Duration::ZERO);
        }
    }

    /// Restarts an orphaned agent under the current supervisor. Under the
    /// record's lock.
    pub(crate) fn adopt_orphan(&self, slot: &Arc<Slot>, state: &mut SlotState, delay: Duration) {
        if !state.orphaned || state.removed {
            return;
        }
        state.orphaned = false;
        self.set_status(slot, state, AgentStatus::Restarting);
        state.epoch = state.epoch.wrapping_add(1);
        self.schedule_restart(slot.clone(), state.epoch, delay);
    }

    /// Whether the registry is stopping.
    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// The supervisor of the moment.
    pub(crate) fn supervisor(&self) -> AgentSupervisor {
        self.sup.read().supervisor.clone()
    }

    /// Starts a new agent supervisor in place of the current one (stopped
    /// if it still runs), and restarts under it every agent the old one
    /// took down, from its checkpoint.
    pub(crate) async fn replace_supervisor(&self) -> Result<AgentSupervisor, AgentError> {
        let supervisor = AgentSupervisor::start(self.name.clone(), self.reporter.telemetry.clone())
            .await
            .map_err(|_| AgentError::SupervisorGone)?;
        let notice = supervisor
            .exit_notice()
            .await
            .map_err(|_| AgentError::SupervisorGone)?;
        let old = {
            let mut sup = self.sup.write();
            let generation = sup.generation + 1;
            std::mem::replace(
                &mut *sup,
                Sup {
                    supervisor: supervisor.clone(),
                    notice,
                    generation,
                },
            )
        };
        // Its agents, stopped with it, are restarted under the new one as
        // they report their exit.
        if old.supervisor.supervisor().handle().is_alive() {
            old.supervisor.stop().await;
        }
        // Out of the table before any record is locked (see `Entry`).
        let slots: Vec<Arc<Slot>> = self.table.iter().map(|e| e.slot.clone()).collect();
        for slot in slots {
            let mut state = slot.state.lock();
            if state.orphaned {
                self.adopt_orphan(&slot, &mut state, Duration::ZERO);
            }
        }
        Ok(supervisor)
    }

    /// Copies `slot`'s new current incarnation into its table entry (see
    /// [`Entry`]). Called under the record's lock. A record deregistered
    /// meanwhile has no entry (or another record's, under the same id):
    /// nothing to copy.
    fn publish(&self, slot: &Slot, current: Option<ProcessHandle>) {
        if let Some(mut entry) = self.table.get_mut(slot.id.as_str())
            && std::ptr::eq(Arc::as_ptr(&entry.slot), slot)
        {
            if let Some(handle) = &current {
                entry.current_id = handle.id();
            }
            entry.current = current;
        }
    }

    /// The restart decision after an exit nobody asked for (the seed's
    /// `maybe_restart_agent`).
    fn after_exit(&self, slot: &Arc<Slot>, state: &mut SlotState, exit: ExitReason) {
        let config = state.config.clone();
        let restart = config.restart.restarts_after(&exit);
        let clean = exit.is_clean();
        state.last_exit = Some(Box::new(exit));
        if !clean {
            self.set_status(slot, state, AgentStatus::Crashed);
        }
        if !restart {
            if clean {
                self.set_status(slot, state, AgentStatus::Completed);
            }
            return;
        }
        let now = self.clock.now();
        // Within the window?
        let window = state.window.get_or_insert_with(Default::default);
        while let Some(first) = window.front() {
            if now.saturating_duration_since(*first) >= config.max_seconds {
                window.pop_front();
            } else {
                break;
            }
        }
        window.push_back(now);
        if window.len() > config.max_restarts as usize {
            state.window = None;
            state.kept = None;
            self.set_status(slot, state, AgentStatus::Failed);
            return;
        }
        let delay = match config.backoff {
            Some(backoff) => {
                let ran_long = state.started_mono.is_some_and(|started| {
                    now.saturating_duration_since(started) >= backoff.reset_after
                });
                if ran_long {
                    state.backoff_attempt = 0;
                }
                let delay = backoff.delay(state.backoff_attempt);
                state.backoff_attempt = state.backoff_attempt.saturating_add(1);
                delay
            }
            None => Duration::ZERO,
        };
        self.set_status(slot, state, AgentStatus::Restarting);
        state.epoch = state.epoch.wrapping_add(1);
        self.schedule_restart(slot.clone(), state.epoch, delay);
    }

    /// Starts the restart of `slot` (after `delay`) in a task of its own,
    /// so many restarts proceed at once.
    fn schedule_restart(&self, slot: Arc<Slot>, epoch: u32, delay: Duration) {
        let Some(shared) = self.me.upgrade() else {
            return;
        };
        spawn_detached(async move {
            if !delay.is_zero() {
                shared.clock.sleep(delay).await;
            }
            {
                let state = slot.state.lock();
                if state.epoch != epoch || state.status != AgentStatus::Restarting || state.removed
                {
                    return; // stopped or deregistered meanwhile
                }
            }
            if let Err(err) = shared.spawn_incarnation(&slot).await {
                shared.start_failed(&slot, Some(epoch), err);
            }
        });
    }

    /// A restart or a wake could not start the agent: counts as a crash
    /// (but for a restart refused by a supervisor that is gone: the agent
    /// waits for the next one).
    pub(crate) fn start_failed(&self, slot: &Arc<Slot>, epoch: Option<u32>, err: AgentError) {
        let mut state = slot.state.lock();
        let ours = match epoch {
            Some(epoch) => state.epoch == epoch && state.status == AgentStatus::Restarting,
            None => state.waking,
        };
        if !ours || state.current.is_some() {
            return;
        }
        if epoch.is_some() && matches!(err, AgentError::SupervisorGone) && !self.is_closing() {
            state.orphaned = true;
            if !self.sup.read().notice.is_closing() {
                // A new one runs already: after a breath, so a supervisor
                // still going down is not asked again at once.
                self.adopt_orphan(slot, &mut state, ORPHAN_RETRY);
            }
            return;
        }
        state.waking = false;
        self.set_passivated(&mut state, false);
        let reason = match &err {
            AgentError::StartFailed { error, .. } => ExitReason::error(error),
            other => ExitReason::error(other),
        };
        // A failed start is abnormal: restarted by any policy but temporary.
        self.after_exit(slot, &mut state, reason);
        self.durable_note(slot, &state);
        drop(state);
        self.changed(slot).notify_waiters();
    }

    /// Starts an incarnation of `slot` under the agent supervisor (on the
    /// agents' runtime, if one was given).
    pub(crate) async fn spawn_incarnation(
        &self,
        slot: &Arc<Slot>,
    ) -> Result<ProcessHandle, AgentError> {
        let (config, epoch) = {
            let state = slot.state.lock();
            (state.config.clone(), state.epoch)
        };
        loop {
            let Sup {
                supervisor,
                notice,
                generation,
            } = self.sup.read().clone();
            let host = HostArgs {
                slot: slot.clone(),
                shared: self.me.clone(),
                notice,
                epoch,
            };
            let factory = config.factory.clone();
            let capacity = config.mailbox_capacity;
            let runtime = self.runtime.clone();
            let spec = ChildSpec::new(Arc::<str>::from(&slot.id), move || {
                let start = factory.start(host.clone(), capacity);
                let runtime = runtime.clone();
                async move {
                    match runtime {
                        // Aborted if this start is dropped: the start
                        // within kills an incarnation not yet handed over.
                        Some(runtime) => AbortOnDrop(runtime.spawn(start))
                            .await
                            .unwrap_or_else(|err| Err(StartError::failed(err))),
                        None => start.await,
                    }
                }
            })
            .with_shutdown(config.shutdown);
            match supervisor.start_reporting_agent(spec).await {
                Ok(handle) => return Ok(handle),
                // Replaced meanwhile: start under the new one.
                Err(SupervisorError::SupervisorGone)
                    if self.sup.read().generation != generation => {}
                Err(err) => return Err(AgentError::from_supervisor(&slot.id, err)),
            }
        }
    }

    /// Wakes a passivated agent in a task of its own (callers wait on the
    /// slot).
    fn wake(&self, slot: &Arc<Slot>) {
        let Some(shared) = self.me.upgrade() else {
            return;
        };
        let slot = slot.clone();
        spawn_detached(async move {
            if let Err(err) = shared.spawn_incarnation(&slot).await {
                shared.start_failed(&slot, None, err);
            }
        });
    }

    /// The current incarnation of `slot` and its generation, waiting
    /// (until `deadline`) through a start, a restart or a wake.
    pub(crate) async fn route(
        &self,
        slot: &Arc<Slot>,
        deadline: Instant,
        on_restart: OnRestart,
    ) -> Result<(ProcessHandle, u32), AgentError> {
        // Fast path: running, no waiting.
        {
            let state = slot.state.lock();
            if let Some(handle) = &state.current
                && state.status == AgentStatus::Running
                && handle.is_alive()
            {
                return Ok((handle.clone(), state.generation));
            }
        }
        loop {
            let notified = self.changed(slot).notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = slot.state.lock();
                if state.removed {
                    return Err(AgentError::NotFound(slot.id.clone()));
                }
                match state.status {
                    AgentStatus::Running => match &state.current {
                        Some(handle) if handle.is_alive() => {
                            return Ok((handle.clone(), state.generation));
                        }
                        Some(_) => {} // draining before a passivation or a stop
                        None if state.passivated && !state.waking => {
                            state.waking = true;
                            drop(state);
                            self.wake(slot);
                        }
                        None => {} // being woken
                    },
                    AgentStatus::Restarting if on_restart == OnRestart::Fail => {
                        return Err(AgentError::Restarting(slot.id.clone()));
                    }
                    // A graceful stop: nothing sent now would be handled.
                    AgentStatus::Stopping => {
                        return Err(AgentError::Stopping(slot.id.clone()));
                    }
                    AgentStatus::Starting | AgentStatus::Restarting => {}
                    status => {
                        return Err(AgentError::NotRunning {
                            agent: slot.id.clone(),
                            status,
                        });
                    }
                }
            }
            tokio::select! {
                () = &mut notified => {}
                () = self.deadlines.at(deadline) => {
                    return Err(AgentError::Timeout(slot.id.clone()));
                }
            }
        }
    }

    /// Waits until the incarnation of `generation` has gone (its message
    /// bounced off a stopping incarnation), at most until `deadline`.
    pub(crate) async fn next_generation(
        &self,
        slot: &Slot,
        generation: u32,
        deadline: Instant,
    ) -> Result<(), AgentError> {
        loop {
            let notified = self.changed(slot).notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if slot.state.lock().generation != generation {
                return Ok(());
            }
            tokio::select! {
                () = &mut notified => {}
                () = self.deadlines.at(deadline) => {
                    return Err(AgentError::Timeout(slot.id.clone()));
                }
            }
        }
    }

    /// Why `handle` stopped, once it has (at most until `deadline`), for an
    /// error of a call it did not answer.
    pub(crate) async fn crash_of(
        &self,
        slot: &Slot,
        handle: &ProcessHandle,
        deadline: Instant,
    ) -> AgentError {
        tokio::select! {
            reason = handle.exited() => AgentError::Crashed { agent: slot.id.clone(), reason },
            () = self.deadlines.at(deadline) => AgentError::Timeout(slot.id.clone()),
        }
    }

    /// Passivates every agent idle for longer than its `passivate_after`.
    pub(crate) fn sweep(&self) {
        let now = self.now_ms();
        // Out of the table before any record is locked (see `Entry`).
        let slots: Vec<Arc<Slot>> = self.table.iter().map(|e| e.slot.clone()).collect();
        let mut idle = Vec::new();
        for slot in slots {
            let Some(after) = slot.state.lock().config.passivate_after else {
                continue;
            };
            let last = slot.last_active.load(std::sync::atomic::Ordering::Relaxed);
            if now.saturating_sub(last) >= after.as_millis() as u64 {
                idle.push(slot);
            }
        }
        for slot in idle {
            let _ = self.begin_passivation(&slot);
        }
    }

    /// Asks the current incarnation of `slot` to stop for a passivation;
    /// returns it to await, or `None` if there is nothing to passivate.
    pub(crate) fn begin_passivation(&self, slot: &Slot) -> Option<ProcessHandle> {
        let mut state = slot.state.lock();
        if state.status != AgentStatus::Running || state.stopping || state.passivating {
            return None;
        }
        let handle = state.current.clone()?;
        state.passivating = true;
        let shutdown = state.config.shutdown;
        drop(state);
        let stopping = handle.clone();
        let shared = self.me.upgrade()?;
        // The incarnation finishes what is queued and keeps its state; what
        // comes after wakes it again (asks retry, tells are kept in
        // order). One busy past its shutdown timeout is killed.
        spawn_detached(async move {
            shutdown.stop_on(&stopping, &shared.deadlines).await;
        });
        Some(handle)
    }

    /// Starts the passivation sweeper once, if any agent passivates.
    pub(crate) fn ensure_sweeper(&self) {
        self.sweeper.call_once(|| {
            let me = self.me.clone();
            let tick = self.passivation_tick;
            let clock = self.clock.clone();
            tokio::spawn(async move {
                loop {
                    clock.sleep(tick).await;
                    let Some(shared) = me.upgrade() else { return };
                    shared.sweep();
                }
            });
        });
    }

    /// The time `timeout` from now on the registry's clock.
    pub(crate) fn deadline(&self, timeout: Duration) -> Instant {
        self.clock.now() + timeout
    }
}
