//! [`AgentRegistry`]: agents by id: their configuration, lifecycle and
//! restarts (the seed's `MABEAM.AgentRegistry`).

use std::{
    fmt,
    sync::{Arc, Weak},
    time::{Duration, SystemTime},
};

use kameo::actor::ActorId;
use mabeam_supervision_core::{
    AgentId, AgentInfo, AgentStatus, AgentStatusChanges, AgentStore, Clock, Deadlines, EventSink,
    ExitReason, Namespace, ProcessHandle, Registry, Telemetry,
};

use std::sync::atomic::{AtomicBool, Ordering};

use crate::{
    Agent, AgentConfig, AgentError, AgentRecipes, AgentRef, AgentSupervisor, RecoveryProgress,
    config::validate_id,
    durable::Durable,
    report::{Counts, Reporter, STATUSES},
    shared::{Entry, Shared, Sup, Table, TableKey},
    slot::Slot,
};

/// How an [`AgentRegistry`] is built. Defaults: name `agents`, telemetry
/// and event recording off, no process registry, the system clock, a
/// passivation check every second, a status subscription buffer of 4,096
/// changes, agents on the current runtime, no room made ahead in the agent
/// table.
#[derive(Clone)]
pub struct AgentRegistryOptions {
    /// The name of its supervisor (in telemetry).
    pub name: Arc<str>,
    /// Where status changes and supervisor events go.
    pub telemetry: Telemetry,
    /// The process registry each running incarnation is registered in,
    /// as `agent:<id>` with its kind as metadata.
    pub registry: Option<Arc<dyn Registry>>,
    /// The namespace of those registrations.
    pub namespace: Namespace,
    /// Records every status change when given.
    pub event_sink: Option<Arc<dyn EventSink>>,
    /// Time for windows, backoff, idleness and timeouts.
    pub clock: Clock,
    /// How often idle agents are looked for.
    pub passivation_tick: Duration,
    /// Status changes a subscriber may fall behind by.
    pub status_buffer: usize,
    /// The runtime agents run on: give agents a runtime of their own so a
    /// flood of busy agents cannot starve system services (supervisors,
    /// the registry, HTTP) of the node's runtime.
    pub runtime: Option<tokio::runtime::Handle>,
    /// Start a new supervisor when the current one dies (killed or
    /// crashed; not when stopped on purpose), restarting its agents under
    /// it. Turn it off where a supervision tree restarts the supervisor
    /// itself (through [`AgentRegistry::replace_supervisor`]).
    pub replace_supervisor: bool,
    /// Status changes queued for the event sink at most; past it, a change
    /// is not recorded and the drop is counted (`agent.events.dropped`).
    pub event_buffer: usize,
    /// Where durable agents' registrations and checkpoints are kept, and
    /// recovered from when the registry starts (see [`AgentRegistry`]'s
    /// "Durability"); `None`: a [`MemoryAgentStore`](mabeam_supervision_core::MemoryAgentStore)
    /// of its own.
    pub store: Option<Arc<dyn AgentStore>>,
    /// How stored agents are built again, by kind.
    pub recipes: AgentRecipes,
    /// How many agents the table makes room for at once (it grows past
    /// them as needed); 0, the default: it grows from empty. A node that
    /// knows its scale spares each growth (every record rehashed into a
    /// table twice the size, under that shard's lock).
    pub capacity: usize,
}

impl Default for AgentRegistryOptions {
    fn default() -> Self {
        AgentRegistryOptions {
            name: "agents".into(),
            telemetry: Telemetry::disabled(),
            registry: None,
            namespace: Namespace::Production,
            event_sink: None,
            clock: Clock::system(),
            passivation_tick: Duration::from_secs(1),
            status_buffer: 4096,
            runtime: None,
            replace_supervisor: true,
            event_buffer: 4096,
            store: None,
            recipes: AgentRecipes::new(),
            capacity: 0,
        }
    }
}

impl AgentRegistryOptions {
    /// Registers running agents in `registry` under `namespace`.
    pub fn with_registry(mut self, registry: Arc<dyn Registry>, namespace: Namespace) -> Self {
        self.registry = Some(registry);
        self.namespace = namespace;
        self
    }

    /// Sets the telemetry handle.
    pub fn with_telemetry(mut self, telemetry: Telemetry) -> Self {
        self.telemetry = telemetry;
        self
    }

    /// Records status changes in `sink`.
    pub fn with_event_sink(mut self, sink: Arc<dyn EventSink>) -> Self {
        self.event_sink = Some(sink);
        self
    }

    /// Sets the clock.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Sets how often idle agents are looked for.
    pub fn with_passivation_tick(mut self, tick: Duration) -> Self {
        self.passivation_tick = tick;
        self
    }

    /// Runs agents on `runtime`.
    pub fn with_runtime(mut self, runtime: tokio::runtime::Handle) -> Self {
        self.runtime = Some(runtime);
        self
    }

    /// Whether a supervisor that dies is replaced by the registry itself.
    pub fn with_replace_supervisor(mut self, replace: bool) -> Self {
        self.replace_supervisor = replace;
        self
    }

    /// Keeps durable agents in `store` and recovers them from it.
    pub fn with_store(mut self, store: Arc<dyn AgentStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Sets the recipes stored agents are built again from.
    pub fn with_recipes(mut self, recipes: AgentRecipes) -> Self {
        self.recipes = recipes;
        self
    }

    /// Makes room in the agent table for `agents` agents at once.
    pub fn with_capacity(mut self, agents: usize) -> Self {
        self.capacity = agents;
        self
    }

    /// Sets how many status changes may wait for the event sink.
    pub fn with_event_buffer(mut self, buffer: usize) -> Self {
        self.event_buffer = buffer;
        self
    }
}

impl fmt::Debug for AgentRegistryOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentRegistryOptions")
            .field("name", &self.name)
            .field("registry", &self.registry.is_some())
            .field("namespace", &self.namespace)
            .field("event_sink", &self.event_sink.is_some())
            .field("passivation_tick", &self.passivation_tick)
            .field("status_buffer", &self.status_buffer)
            .field("replace_supervisor", &self.replace_supervisor)
            .field("event_buffer", &self.event_buffer)
            .field("store", &self.store)
            .field("recipes", &self.recipes)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

/// Everything the registry knows of one agent.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentDetails {
    /// The agent.
    pub id: AgentId,
    /// Its kind.
    pub kind: Arc<str>,
    /// Its status.
    pub status: AgentStatus,
    /// Whether it is passivated (status `Running`, no process).
    pub passivated: bool,
    /// Restarts since it was registered.
    pub restarts: u32,
    /// Why its last incarnation stopped.
    pub last_exit: Option<ExitReason>,
    /// When its current (or last) incarnation started.
    pub started_at: Option<SystemTime>,
    /// Its current incarnation, if one runs.
    pub process: Option<ProcessHandle>,
}

impl AgentDetails {
    /// The directory's view of it.
    pub fn info(&self) -> AgentInfo {
        AgentInfo {
            id: self.id.clone(),
            kind: self.kind.clone(),
            status: self.status,
            passivated: self.passivated,
            restarts: self.restarts,
        }
    }
}

/// Agents per status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusCounts {
    /// `(status, count)` for every status, in lifecycle order.
    pub per_status: Vec<(AgentStatus, usize)>,
    /// How many of the running agents are passivated.
    pub passivated: usize,
    /// Registered agents in all.
    pub total: usize,
}

impl StatusCounts {
    /// The count of `status`.
    pub fn get(&self, status: AgentStatus) -> usize {
        self.per_status
            .iter()
            .find(|(s, _)| *s == status)
            .map_or(0, |(_, n)| *n)
    }
}

/// The registry of agents: their configurations, lifecycle, restarts and
/// addresses. Cheap to clone; every clone is the same registry.
///
/// **Lifecycle.** registered → starting → running → stopping → stopped
/// (by [`stop_agent`](Self::stop_agent)) | completed (a normal exit) |
/// crashed (a panic, an error, a kill, the memory limit) → restarting →
/// running … | failed (more than `max_restarts` within `max_seconds`). Each
/// change comes from the agent's own exit (its host reports it from
/// `on_stop`), never from polling; each is a telemetry event, is sent to
/// [`subscribe`](Self::subscribe)rs and recorded in the event sink if one
/// was given.
///
/// **Restarts per agent.** The [`AgentSupervisor`] below never restarts;
/// this registry decides each restart from the agent's policy and limits,
/// in a task of its own, so thousands of restarts proceed at once and no
/// call waits for them.
///
/// **Reads take no mailbox.** The table is a sharded concurrent map (the
/// seed's ETS table): `status`, `details`, `list` and routing a message
/// take one shard's read lock and the agent's own lock, never a mailbox.
///
/// **Passivation.** An agent configured with `passivate_after` gives up its
/// process when idle that long, keeping its state; the next message wakes
/// it. A passivated agent weighs its record and its state only.
///
/// **Durability.** A durable agent ([`AgentConfig::durable`], registered
/// with [`register_durable_agent`](Self::register_durable_agent)) is a
/// row of the registry's [`AgentStore`]: each call returns once its change
/// is stored, and its checkpoints are stored at the points its
/// [`CheckpointPolicy`](crate::CheckpointPolicy) names. A registry started
/// on a store brings every stored agent back, in the background
/// ([`recovery`](Self::recovery)); what a crash loses is each agent's
/// state since its last stored checkpoint.
///
/// # Example
///
/// ```
/// use mabeam_agent_supervisor::{Agent, AgentConfig, AgentContext, AgentRegistry};
/// use mabeam_supervision_core::{AgentStatus, StartError};
///
/// struct Doubler;
/// impl Agent for Doubler {
///     type Args = ();
///     type Message = u64;
///     type Reply = u64;
///     type Checkpoint = ();
///     async fn on_start(_: (), _: Option<()>) -> Result<Self, StartError> { Ok(Doubler) }
///     async fn handle(&mut self, n: u64, _: &mut AgentContext<'_>) -> u64 { 2 * n }
/// }
///
/// # #[tokio::main] async fn main() {
/// let agents = AgentRegistry::start(Default::default()).await.unwrap();
/// agents.register_agent("d-1", AgentConfig::new::<Doubler>("doubler", ())).unwrap();
/// agents.start_agent("d-1").await.unwrap();
///
/// let d1 = agents.agent_ref::<Doubler>("d-1").unwrap();
/// assert_eq!(d1.ask(21).await.unwrap(), 42);
///
/// agents.stop_agent("d-1").await.unwrap();
/// assert_eq!(agents.status("d-1"), Some(AgentStatus::Stopped));
/// agents.stop().await;
/// # }
/// ```
#[derive(Clone)]
pub struct AgentRegistry {
    pub(crate) shared: Arc<Shared>,
}

/// Shards of the agent table: many, so that two callers rarely meet on
/// one shard's lock word.
const TABLE_SHARDS: usize = 128;

impl AgentRegistry {
    /// Starts a registry (and its [`AgentSupervisor`]).
    pub async fn start(options: AgentRegistryOptions) -> Result<Self, AgentError> {
        let supervisor = AgentSupervisor::start(options.name.clone(), options.telemetry.clone())
            .await
            .map_err(|_| AgentError::SupervisorGone)?;
        let reporter = Reporter::new(
            options.telemetry.clone(),
            options.status_buffer,
            options.event_sink.clone(),
            options.event_buffer,
        );
        let origin = options.clock.now();
        let notice = supervisor
            .exit_notice()
            .await
            .map_err(|_| AgentError::SupervisorGone)?;
        let shared = Arc::new_cyclic(|me: &Weak<Shared>| Shared {
            me: me.clone(),
            table: Table::with_capacity_and_hasher_and_shard_amount(
                options.capacity,
                Default::default(),
                TABLE_SHARDS,
            ),
            sup: parking_lot::RwLock::new(Sup {
                supervisor,
                notice,
                generation: 0,
            }),
            closing: AtomicBool::new(false),
            name: options.name.clone(),
            registry: options.registry,
            namespace: options.namespace,
            reporter,
            deadlines: Deadlines::new(options.clock.clone()),
            clock: options.clock,
            origin,
            counts: Counts::default(),
            runtime: options.runtime,
            passivation_tick: options.passivation_tick,
            sweeper: std::sync::Once::new(),
            changes: (0..crate::shared::CHANGE_SHARDS)
                .map(|_| tokio::sync::Notify::new())
                .collect(),
            durable: Durable::new(options.store, options.recipes),
        });
        if options.replace_supervisor {
            watch_supervisor(Arc::downgrade(&shared));
        }
        crate::recovery::spawn(shared.clone());
        Ok(AgentRegistry { shared })
    }

    /// Starts a new agent supervisor in place of the current one (stopping
    /// it first if it still runs), and restarts under it every agent the
    /// old one took down (stopped or killed with it), each from its
    /// checkpoint and with the tells it had queued, without counting
    /// against its restart limits. Returns the new supervisor. A tree that
    /// supervises the agent supervisor calls this from its start.
    pub async fn replace_supervisor(&self) -> Result<AgentSupervisor, AgentError> {
        if self.shared.is_closing() {
            return Err(AgentError::SupervisorGone);
        }
        self.shared.replace_supervisor().await
    }

    fn slot(&self, id: &str) -> Result<Arc<Slot>, AgentError> {
        self.shared
            .table
            .get(id)
            .map(|entry| entry.slot.clone())
            .ok_or_else(|| AgentError::NotFound(AgentId::from(id)))
    }

    /// Registers agent `id` with `config` (status `Registered`; not
    /// started). Invalid ids and configs are refused with the field named,
    /// and nothing is registered.
    ///
    /// Pass an `Arc<AgentConfig>` to share one configuration among many
    /// agents.
    pub fn register_agent(
        &self,
        id: impl Into<AgentId>,
        config: impl Into<Arc<AgentConfig>>,
    ) -> Result<(), AgentError> {
        let id = id.into();
        let config = config.into();
        validate_id(id.as_str())?;
        config.validate()?;
        if config.durable.is_some() {
            return Err(AgentError::invalid(
                "durable",
                "a durable agent is registered with register_durable_agent, which waits for the store",
            ));
        }
        let passivates = config.passivate_after.is_some();
        match self.shared.table.entry(TableKey::from(id.as_str())) {
            dashmap::Entry::Occupied(_) => return Err(AgentError::AlreadyRegistered(id)),
            dashmap::Entry::Vacant(vacant) => {
                let kind = config.kind.clone();
                vacant.insert(Entry::new(Arc::new(Slot::new(id.clone(), config))));
                self.shared.counts.add(AgentStatus::Registered);
                self.shared
                    .reporter
                    .status(&id, &kind, None, AgentStatus::Registered, 0, None);
            }
        }
        if passivates {
            self.shared.ensure_sweeper();
        }
        Ok(())
    }

    /// Registers durable agent `id` (its config made with
    /// [`AgentConfig::durable`]) and returns once its registration is in
    /// the store: a node that dies after this returns brings it back. A
    /// store that refuses it (`StorageFull`, …) is
    /// [`AgentError::Store`] and nothing is registered. While the
    /// registry recovers, an id still only in the store is
    /// `AlreadyRegistered`.
    pub async fn register_durable_agent(
        &self,
        id: impl Into<AgentId>,
        config: impl Into<Arc<AgentConfig>>,
    ) -> Result<(), AgentError> {
        let id = id.into();
        let config = config.into();
        validate_id(id.as_str())?;
        config.validate()?;
        let Some(args) = config.durable.clone() else {
            return Err(AgentError::invalid(
                "durable",
                "not a durable configuration (see AgentConfig::durable)",
            ));
        };
        let durable = &self.shared.durable;
        let recovering = !durable.recovery.borrow().done;
        if recovering
            && durable.store.get(&id).await?.is_some()
            && !self.shared.table.contains_key(id.as_str())
        {
            return Err(AgentError::AlreadyRegistered(id));
        }
        let passivates = config.passivate_after.is_some();
        let slot = Arc::new(Slot::new(id.clone(), config.clone()));
        let write = match self.shared.table.entry(TableKey::from(id.as_str())) {
            dashmap::Entry::Occupied(_) => return Err(AgentError::AlreadyRegistered(id)),
            dashmap::Entry::Vacant(vacant) => {
                // Queued before the entry is visible: every later write of
                // this agent is queued after it.
                let write = durable.store.register(
                    crate::durable::registration(&id, &config, &args, None),
                    durable.generation,
                );
                vacant.insert(Entry::new(slot.clone()));
                self.shared.counts.add(AgentStatus::Registered);
                write
            }
        };
        if let Err(error) = write.await {
            self.withdraw(&slot).await;
            return Err(AgentError::Store(error));
        }
        self.shared
            .reporter
            .status(&id, &config.kind, None, AgentStatus::Registered, 0, None);
        if passivates {
            self.shared.ensure_sweeper();
        }
        Ok(())
    }

    /// Starts agent `id` and returns its process once it runs. Refused if
    /// it runs already (or is starting, stopping or restarting). A durable
    /// agent's start returns once the store says it runs (if the store
    /// refuses, the agent is stopped again and the error returned).
    ///
    /// Dropping the returned future midway (a caller's timeout, a client
    /// gone) leaves nothing unsupervised: an incarnation not yet running is
    /// not started, one already running is stopped (its status then
    /// `Stopped`).
    pub async fn start_agent(&self, id: &str) -> Result<ProcessHandle, AgentError> {
        let slot = self.slot(id)?;
        let handle = self.start_slot(&slot).await?;
        if let Err(error) = self.shared.durable_ack(&slot).await {
            let _ = self.stop_slot(&slot).await;
            return Err(error);
        }
        Ok(handle)
    }

    /// Starts `slot`'s agent (see [`start_agent`](Self::start_agent)),
    /// writing nothing to the store.
    pub(crate) async fn start_slot(&self, slot: &Arc<Slot>) -> Result<ProcessHandle, AgentError> {
        let slot = slot.clone();
        let (previous, epoch) = {
            let mut state = slot.state.lock();
            match state.status {
                AgentStatus::Registered
                | AgentStatus::Stopped
                | AgentStatus::Completed
                | AgentStatus::Crashed
                | AgentStatus::Failed => {
                    let previous = state.status;
                    state.window = None;
                    state.backoff_attempt = 0;
                    state.orphaned = false;
                    // A start decision: an incarnation of an older one
                    // (an abandoned start) no longer installs.
                    state.epoch = state.epoch.wrapping_add(1);
                    self.shared
                        .set_status(&slot, &mut state, AgentStatus::Starting);
                    (previous, state.epoch)
                }
                _ => return Err(AgentError::AlreadyRunning(slot.id.clone())),
            }
        };
        let guard = Abandoned {
            shared: &self.shared,
            slot: &slot,
            previous,
            epoch,
        };
        let started = self.shared.spawn_incarnation(&slot).await;
        std::mem::forget(guard);
        match started {
            Ok(handle) => Ok(handle),
            Err(err) => {
                let mut state = slot.state.lock();
                if state.status == AgentStatus::Starting && state.current.is_none() {
                    self.shared.set_status(&slot, &mut state, previous);
                }
                drop(state);
                self.shared.changed(&slot).notify_waiters();
                Err(err)
            }
        }
    }

    /// Stops agent `id` and returns once it has stopped and its status is
    /// `Stopped` and its name is gone (the seed's termination sequence, no
    /// sleeping: the incarnation is stopped by its configured shutdown,
    /// records the stop and releases its name itself, and reports its exit
    /// to the supervisor). A restart under way is cancelled; a passivated agent's
    /// kept state is dropped. `NotRunning` if it was not running.
    pub async fn stop_agent(&self, id: &str) -> Result<(), AgentError> {
        let slot = self.slot(id)?;
        self.stop_slot(&slot).await?;
        self.shared.durable_ack(&slot).await
    }

    /// Stops every running agent, as [`stop_agent`](Self::stop_agent)
    /// does (each ends `Stopped`, its checkpoint written), without
    /// recording the stops in the store: the store still says they run,
    /// so a registry recovering from it starts them again. What a node
    /// does when it stops; the registry keeps running.
    pub async fn suspend(&self) {
        use futures::StreamExt;
        let quiet = &self.shared.durable.quiet;
        quiet.store(true, Ordering::Release);
        let running: Vec<Arc<Slot>> = self
            .shared
            .table
            .iter()
            .map(|e| e.value().slot.clone())
            .collect();
        futures::stream::iter(running)
            .for_each_concurrent(SUSPEND_CONCURRENCY, |slot| async move {
                let status = slot.state.lock().status;
                if matches!(
                    status,
                    AgentStatus::Running
                        | AgentStatus::Starting
                        | AgentStatus::Restarting
                        | AgentStatus::Stopping
                ) {
                    let _ = self.stop_slot(&slot).await;
                }
            })
            .await;
        quiet.store(false, Ordering::Release);
    }

    pub(crate) async fn stop_slot(&self, slot: &Arc<Slot>) -> Result<(), AgentError> {
        let shared = &self.shared;
        loop {
            // Made before the state is read: `notify_waiters` (the only
            // notification used) wakes it even before it is first polled,
            // so it need not be enabled (which takes the waiters' lock)
            // on the path that does not wait.
            let notified = shared.changed(slot).notified();
            let handle = {
                let mut state = slot.state.lock();
                match state.status {
                    AgentStatus::Running if state.current.is_some() && !state.stopping => {
                        state.stopping = true;
                        shared.set_status(slot, &mut state, AgentStatus::Stopping);
                        state
                            .current
                            .clone()
                            .map(|handle| (handle, state.config.shutdown))
                    }
                    AgentStatus::Running if state.passivated && !state.waking => {
                        state.kept = None;
                        shared.set_passivated(&mut state, false);
                        shared.set_status(slot, &mut state, AgentStatus::Stopping);
                        shared.set_status(slot, &mut state, AgentStatus::Stopped);
                        drop(state);
                        shared.changed(slot).notify_waiters();
                        return Ok(());
                    }
                    AgentStatus::Restarting => {
                        state.epoch = state.epoch.wrapping_add(1); // cancels the scheduled restart
                        state.orphaned = false;
                        shared.set_status(slot, &mut state, AgentStatus::Stopping);
                        shared.set_status(slot, &mut state, AgentStatus::Stopped);
                        drop(state);
                        shared.changed(slot).notify_waiters();
                        return Ok(());
                    }
                    AgentStatus::Running | AgentStatus::Starting | AgentStatus::Stopping => None,
                    status => {
                        // Stopped on purpose: not restarted by a next
                        // supervisor either.
                        state.orphaned = false;
                        return Err(AgentError::NotRunning {
                            agent: slot.id.clone(),
                            status,
                        });
                    }
                }
            };
            match handle {
                Some((handle, shutdown)) => {
                    // Stopped directly, by its shutdown (no round trip
                    // through the supervisor): the incarnation records the
                    // stop and releases its name from its `on_stop`, then
                    // reports its exit to the supervisor. One that exited
                    // by itself meanwhile is recorded as a stop all the
                    // same.
                    shutdown.stop_on(&handle, &shared.deadlines).await;
                    return Ok(());
                }
                None => notified.await,
            }
        }
    }

    /// Stops agent `id` if it runs, then forgets it: every ref to it now
    /// says not found.
    pub async fn deregister_agent(&self, id: &str) -> Result<(), AgentError> {
        let slot = self.slot(id)?;
        loop {
            match self.stop_slot(&slot).await {
                Ok(()) | Err(AgentError::NotRunning { .. }) => {}
                Err(err) => return Err(err),
            }
            // The store first: a removal it refuses changes nothing here
            // (the agent stays registered, stopped, as its row says).
            let removal = {
                let state = slot.state.lock();
                if Self::busy(state.status) {
                    continue; // started again meanwhile
                }
                state.config.durable.is_some().then(|| {
                    self.shared
                        .durable
                        .store
                        .remove(slot.id.clone(), self.shared.durable.generation)
                })
            };
            if let Some(removal) = removal {
                match removal.await {
                    Ok(()) | Err(mabeam_supervision_core::AgentStoreError::NotFound(_)) => {}
                    Err(error) => return Err(AgentError::Store(error)),
                }
            }
            {
                let mut state = slot.state.lock();
                if Self::busy(state.status) {
                    continue; // started again meanwhile: stopped and removed again
                }
                self.forget(&slot, &mut state);
            }
            self.shared
                .table
                .remove_if(slot.id.as_str(), |_, entry| Arc::ptr_eq(&entry.slot, &slot));
            self.shared.changed(&slot).notify_waiters();
            return Ok(());
        }
    }

    /// Takes back a registration the store refused. The entry was visible
    /// while the write waited, so the agent may have been started meanwhile:
    /// it is stopped first, so that no incarnation outlives its entry.
    async fn withdraw(&self, slot: &Arc<Slot>) {
        loop {
            let stopped = matches!(
                self.stop_slot(slot).await,
                Ok(()) | Err(AgentError::NotRunning { .. })
            );
            if stopped && Self::busy(slot.state.lock().status) {
                continue; // started again meanwhile
            }
            let removed = self
                .shared
                .table
                .remove_if(slot.id.as_str(), |_, entry| Arc::ptr_eq(&entry.slot, slot));
            if removed.is_some() {
                self.forget(slot, &mut slot.state.lock());
            }
            self.shared.changed(slot).notify_waiters();
            return;
        }
    }

    /// Whether an agent is running or on its way in or out.
    fn busy(status: AgentStatus) -> bool {
        matches!(
            status,
            AgentStatus::Running
                | AgentStatus::Starting
                | AgentStatus::Stopping
                | AgentStatus::Restarting
        )
    }

    /// Marks a stopped agent removed (under its lock), its row already
    /// gone from the store.
    fn forget(&self, slot: &Slot, state: &mut crate::slot::SlotState) {
        state.removed = true;
        state.kept = None;
        if let Some(mail) = state.mail.take() {
            self.shared
                .reporter
                .dropped(&slot.id, mail.len, "deregistered");
        }
        self.shared.counts.remove(state.status);
    }

    /// Replaces the configuration of agent `id`; a running agent is
    /// restarted with it (its checkpoint carried over). An invalid config
    /// changes nothing.
    ///
    /// A durable agent's new registration is in the store before anything
    /// changes (a refusal changes nothing); a new config that is not
    /// durable (no [`AgentConfig::durable`]) is refused for it.
    pub async fn update_config(&self, id: &str, config: AgentConfig) -> Result<(), AgentError> {
        config.validate()?;
        let slot = self.slot(id)?;
        let write = {
            let state = slot.state.lock();
            match (&state.config.durable, &config.durable) {
                (None, None) => None,
                (Some(_), Some(args)) => Some(self.shared.durable.store.register(
                    crate::durable::registration(&slot.id, &config, args, Some(&state)),
                    self.shared.durable.generation,
                )),
                (Some(_), None) => {
                    return Err(AgentError::invalid(
                        "durable",
                        "a durable agent's new config must be durable too",
                    ));
                }
                (None, Some(_)) => {
                    return Err(AgentError::invalid(
                        "durable",
                        "an agent in memory cannot become durable: register it anew",
                    ));
                }
            }
        };
        if let Some(write) = write {
            write.await?;
        }
        let was_running = match self.stop_slot(&slot).await {
            Ok(()) => true,
            Err(AgentError::NotRunning { .. }) => false,
            Err(err) => return Err(err),
        };
        let passivates = config.passivate_after.is_some();
        slot.state.lock().config = Arc::new(config);
        if passivates {
            self.shared.ensure_sweeper();
        }
        if was_running {
            self.start_agent(id).await?;
        } else {
            self.shared.durable_ack(&slot).await?;
        }
        Ok(())
    }

    /// Passivates agent `id` now (as if idle): its process stops after the
    /// messages already queued, its state is kept. Returns once done;
    /// `NotRunning` if it has no process.
    pub async fn passivate(&self, id: &str) -> Result<(), AgentError> {
        let slot = self.slot(id)?;
        match self.shared.begin_passivation(&slot) {
            Some(handle) => {
                handle.exited().await;
                Ok(())
            }
            None => Err(AgentError::NotRunning {
                agent: slot.id.clone(),
                status: slot.state.lock().status,
            }),
        }
    }

    /// A typed, stable address of agent `id`: it reaches whichever
    /// incarnation runs, across restarts and passivation.
    pub fn agent_ref<A: Agent>(&self, id: &str) -> Result<AgentRef<A>, AgentError> {
        let slot = self.slot(id)?;
        if !slot.state.lock().config.is_for::<A>() {
            return Err(AgentError::WrongType {
                agent: slot.id.clone(),
                expected: std::any::type_name::<A>(),
            });
        }
        Ok(AgentRef::new(slot, self.shared.clone()))
    }

    /// The process of agent `id`'s current incarnation, if it has one (not
    /// passivated), as the registry records it: an incarnation records its
    /// own exit from its stop path, so one being stopped or killed is
    /// returned until then (check [`ProcessHandle::is_alive`] if that
    /// matters). Reads the agent table only (which keeps a copy of each
    /// agent's current incarnation), never the record or the process.
    /// Prefer [`agent_ref`](Self::agent_ref): a process dies with its
    /// incarnation.
    pub fn lookup(&self, id: &str) -> Option<ProcessHandle> {
        self.shared.table.get(id)?.current().cloned()
    }

    /// The id of the process running agent `id`'s current incarnation, if
    /// it has one: OTP's `whereis`, a value to compare or log (an id is
    /// never reused within a node), read from the agent table alone.
    /// [`lookup`](Self::lookup) returns the process itself.
    pub fn whereis(&self, id: &str) -> Option<ActorId> {
        self.shared.table.get(id)?.current_id()
    }

    /// The status of agent `id`.
    pub fn status(&self, id: &str) -> Option<AgentStatus> {
        // Out of the table before the record is locked (see `Entry`).
        let slot = self.shared.table.get(id)?.slot.clone();
        let status = slot.state.lock().status;
        Some(status)
    }

    /// Everything known of agent `id`.
    pub fn details(&self, id: &str) -> Option<AgentDetails> {
        let slot = self.shared.table.get(id)?.slot.clone();
        Some(details(&slot))
    }

    /// Every agent, in id order.
    pub fn list(&self) -> Vec<AgentDetails> {
        self.filter(|_| true)
    }

    /// The agents of `kind`, in id order.
    pub fn list_by_kind(&self, kind: &str) -> Vec<AgentDetails> {
        self.filter(|details| &*details.kind == kind)
    }

    /// The agents in `status`, in id order.
    pub fn list_by_status(&self, status: AgentStatus) -> Vec<AgentDetails> {
        self.filter(|details| details.status == status)
    }

    fn filter(&self, keep: impl Fn(&AgentDetails) -> bool) -> Vec<AgentDetails> {
        let slots: Vec<Arc<Slot>> = self
            .shared
            .table
            .iter()
            .map(|e| e.value().slot.clone())
            .collect();
        let mut out: Vec<AgentDetails> = slots
            .iter()
            .map(|slot| details(slot))
            .filter(|d| keep(d))
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// Agents per status, without a scan.
    pub fn counts(&self) -> StatusCounts {
        let counts = &self.shared.counts;
        let per_status: Vec<(AgentStatus, usize)> =
            STATUSES.iter().map(|s| (*s, counts.get(*s))).collect();
        StatusCounts {
            total: per_status.iter().map(|(_, n)| n).sum(),
            per_status,
            passivated: counts.passivated.load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// How many agents are registered.
    pub fn len(&self) -> usize {
        self.shared.table.len()
    }

    /// Whether no agent is registered.
    pub fn is_empty(&self) -> bool {
        self.shared.table.is_empty()
    }

    /// How far the recovery from the store is (see
    /// [`recovered`](Self::recovered)).
    pub fn recovery(&self) -> RecoveryProgress {
        *self.shared.durable.recovery.borrow()
    }

    /// The recovery's progress, as it changes.
    pub fn progress(&self) -> tokio::sync::watch::Receiver<RecoveryProgress> {
        self.shared.durable.recovery.subscribe()
    }

    /// Waits until every agent in the store at the registry's start is
    /// restored (and those to start eagerly started), and returns the
    /// final count.
    pub async fn recovered(&self) -> RecoveryProgress {
        let mut progress = self.shared.durable.recovery.subscribe();
        let done = progress.wait_for(|p| p.done).await.map(|p| *p);
        done.unwrap_or_else(|_| *self.shared.durable.recovery.borrow())
    }

    /// Brings the agents `ids` from the store into this registry, as its
    /// recovery brings every agent at its start, and starts those that
    /// were running from their last checkpoint. For a node of a cluster
    /// that took these agents over (their owner stopped): the caller
    /// claimed them first. An id not in the store, or registered here
    /// already, is skipped.
    pub async fn adopt(&self, ids: Vec<AgentId>) -> crate::Adopted {
        crate::recovery::adopt(&self.shared, ids).await
    }

    /// The store durable agents are kept in.
    pub fn store(&self) -> &Arc<dyn AgentStore> {
        &self.shared.durable.store
    }

    /// Subscribes to every agent's status changes from now on.
    pub fn subscribe(&self) -> AgentStatusChanges {
        self.shared.reporter.changes.subscribe()
    }

    /// The supervisor of the agent processes, as of now: it is replaced
    /// if it dies (see [`replace_supervisor`](Self::replace_supervisor)).
    pub fn supervisor(&self) -> AgentSupervisor {
        self.shared.supervisor()
    }

    /// The old name of [`stop`](Self::stop) (stopping is `stop` everywhere).
    #[deprecated(since = "0.1.0", note = "renamed to `stop`")]
    pub async fn shutdown(&self) {
        self.stop().await;
    }

    /// Stops every agent (each ends `Stopped`) and the supervisor; returns
    /// once all have stopped.
    pub async fn stop(&self) {
        self.shared.closing.store(true, Ordering::Release);
        let slots: Vec<Arc<Slot>> = self
            .shared
            .table
            .iter()
            .map(|e| e.value().slot.clone())
            .collect();
        for slot in &slots {
            let mut state = slot.state.lock();
            match state.status {
                AgentStatus::Restarting => {
                    state.epoch = state.epoch.wrapping_add(1);
                    state.orphaned = false;
                    self.shared
                        .set_status(slot, &mut state, AgentStatus::Stopping);
                    self.shared
                        .set_status(slot, &mut state, AgentStatus::Stopped);
                }
                AgentStatus::Running if state.current.is_none() => {
                    state.kept = None;
                    self.shared.set_passivated(&mut state, false);
                    self.shared
                        .set_status(slot, &mut state, AgentStatus::Stopping);
                    self.shared
                        .set_status(slot, &mut state, AgentStatus::Stopped);
                }
                AgentStatus::Running => {
                    state.stopping = true;
                    self.shared
                        .set_status(slot, &mut state, AgentStatus::Stopping);
                }
                _ => state.orphaned = false,
            }
        }
        self.shared.supervisor().stop().await;
        for slot in &slots {
            self.shared.changed(slot).notify_waiters();
        }
    }
}

/// How many agents [`AgentRegistry::suspend`] stops at once.
const SUSPEND_CONCURRENCY: usize = 512;

/// Undoes a start whose caller gave up (its future dropped): an
/// incarnation not yet installed never will be (the epoch moves on); one
/// installed, which its supervisor may never have adopted, is stopped.
struct Abandoned<'a> {
    shared: &'a Arc<Shared>,
    slot: &'a Arc<Slot>,
    previous: AgentStatus,
    epoch: u32,
}

impl Drop for Abandoned<'_> {
    fn drop(&mut self) {
        let (shared, slot) = (self.shared, self.slot);
        let mut state = slot.state.lock();
        if state.epoch != self.epoch {
            return; // decided anew since
        }
        match (state.status, state.current.clone()) {
            (AgentStatus::Starting, None) => {
                state.epoch = state.epoch.wrapping_add(1);
                shared.set_status(slot, &mut state, self.previous);
            }
            (AgentStatus::Running, Some(handle)) if !state.stopping => {
                state.stopping = true;
                shared.set_status(slot, &mut state, AgentStatus::Stopping);
                let shutdown = state.config.shutdown;
                let shared = shared.clone();
                crate::shared::spawn_detached(async move {
                    shutdown.stop_on(&handle, &shared.deadlines).await;
                });
            }
            _ => return,
        }
        drop(state);
        shared.changed(slot).notify_waiters();
    }
}

/// Replaces the registry's supervisor whenever it dies other than by a
/// stop asked of it: one task per registry.
fn watch_supervisor(shared: Weak<Shared>) {
    crate::shared::spawn_detached(async move {
        loop {
            let Some(watched) = shared
                .upgrade()
                .map(|shared| shared.supervisor().supervisor().handle().downgrade())
            else {
                return;
            };
            let exit = watched.exited().await;
            let Some(shared) = shared.upgrade() else {
                return;
            };
            if shared.is_closing() {
                return;
            }
            let current = shared.supervisor().supervisor().handle().id();
            if current != watched.id() {
                continue; // replaced by someone else meanwhile
            }
            if matches!(exit, ExitReason::Shutdown(_)) {
                return; // stopped on purpose
            }
            if shared.replace_supervisor().await.is_err() {
                return;
            }
        }
    });
}

fn details(slot: &Slot) -> AgentDetails {
    let state = slot.state.lock();
    AgentDetails {
        id: slot.id.clone(),
        kind: state.config.kind.clone(),
        status: state.status,
        passivated: state.passivated,
        restarts: state.restarts,
        last_exit: state.last_exit.as_deref().cloned(),
        started_at: state.started_at,
        process: state.current.clone(),
    }
}

impl fmt::Debug for AgentRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentRegistry")
            .field("agents", &self.shared.table.len())
            .finish_non_exhaustive()
    }
}

/// Compile-time check: the calls' futures are `Send` (HTTP handlers await
/// them on any thread).
#[allow(dead_code)]
fn _send_check(r: AgentRegistry, c: AgentConfig) {
    fn send<T: Send>(_: T) {}
    send(r.register_durable_agent("a", c.clone()));
    send(r.start_agent("a"));
    send(r.stop_agent("a"));
    send(r.deregister_agent("a"));
    send(r.update_config("a", c));
    send(r.suspend());
}

#[cfg(test)]
mod tests {
    use crate::{AgentConfig, AgentRegistry, AgentRegistryOptions, host::tests::Echo};

    // `with_capacity` makes room in the agent table before any agent is
    // registered (the table then does not grow while it fills); without
    // it the table starts empty.
    #[tokio::test]
    async fn capacity_makes_room_in_the_agent_table_at_once() {
        let sized = AgentRegistry::start(AgentRegistryOptions::default().with_capacity(10_000))
            .await
            .unwrap();
        let room = sized.shared.table.capacity();
        assert!(room >= 10_000, "room for {room} agents, asked for 10,000");
        let grown = AgentRegistry::start(AgentRegistryOptions::default())
            .await
            .unwrap();
        assert_eq!(grown.shared.table.capacity(), 0);
        // Agents register past the room made as before.
        let config = std::sync::Arc::new(AgentConfig::new::<Echo>("echo", ()));
        for i in 0..100 {
            sized
                .register_agent(format!("e-{i}"), config.clone())
                .unwrap();
        }
        sized.start_agent("e-7").await.unwrap();
        assert_eq!(
            sized
                .agent_ref::<Echo>("e-7")
                .unwrap()
                .ask(7)
                .await
                .unwrap(),
            7
        );
        sized.stop().await;
        grown.stop().await;
    }
}
