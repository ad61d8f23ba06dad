//! Durable agents: what the registry writes to its
//! [`AgentStore`](mabeam_supervision_core::AgentStore), when, and how an
//! incarnation's checkpoints get there.
//!
//! An agent is **durable** when its configuration says how to build it
//! again: [`AgentConfig::durable`](crate::AgentConfig::durable) with the
//! JSON arguments its kind's [`AgentRecipes`] entry turns back into the
//! same configuration. A durable agent is registered with
//! [`AgentRegistry::register_durable_agent`](crate::AgentRegistry::register_durable_agent);
//! other agents live in memory only, as before, and cost the store
//! nothing.
//!
//! # What is acknowledged when
//!
//! | call | returns once the store holds |
//! |---|---|
//! | `register_durable_agent` | the registration (status `Registered`) |
//! | `start_agent` | status `Running` |
//! | `stop_agent` | the stop checkpoint, then status `Stopped` |
//! | `update_config` | the new registration (before the agent restarts) |
//! | `deregister_agent` | nothing: the row is removed |
//! | an answered message | the checkpoint taken after it, when the [`CheckpointPolicy`] takes one there |
//!
//! Restarts, crashes, `Failed`, passivation and wakes are written as they
//! happen without anyone waiting (in order per agent). A store that
//! refuses a call's write (a full disk: `StorageFull`) fails the call with
//! [`AgentError::Store`](crate::AgentError::Store) and the registry is as
//! before.
//!
//! # What a crash loses
//!
//! An agent's state since its last acknowledged checkpoint. With the
//! default policy (on passivation and on stop) a `kill -9` of the node
//! takes running agents back to their state at their last stop or
//! passivation (or their start arguments); with
//! [`CheckpointPolicy::after_each_message`] every answered message is
//! kept (one that changed nothing writes nothing); with
//! `every_messages: n` at most the last `n - 1` messages, with `every: t`
//! what came after the last checkpoint at least `t` old. A kill of one
//! incarnation writes its checkpoint without waiting.
//!
//! # Stops by the system
//!
//! [`AgentRegistry::suspend`](crate::AgentRegistry::suspend) (what a node
//! does when it stops) and [`AgentRegistry::shutdown`](crate::AgentRegistry::shutdown)
//! stop agents without recording the stops: each writes its checkpoint,
//! and the store still says it runs, so a node started again on the store
//! starts it again.

use std::{collections::BTreeMap, fmt, num::NonZeroU32, sync::Arc, time::Duration};

use mabeam_supervision_core::{
    AgentId, AgentRegistration, AgentStatus, AgentStore, AgentStoreError, AgentUpdate, Checkpoint,
    Clock, MemoryAgentStore,
};
use serde_json::Value;
use tokio::time::Instant;

use crate::{
    Agent, AgentConfig, AgentError,
    shared::{Shared, spawn_detached},
    slot::{Slot, SlotState},
};

/// When a durable agent's checkpoint is written to the store. Defaults:
/// on passivation and on stop, not per message.
///
/// A checkpoint taken after a message is written before the message's
/// answer is sent: the caller holding the answer holds a durable state.
/// `every` is checked as messages are handled (no timer runs): the first
/// message handled at least `every` after the last checkpoint takes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointPolicy {
    /// After every `n`-th handled message (1: after each).
    pub every_messages: Option<NonZeroU32>,
    /// After a message handled at least this long after the last
    /// checkpoint.
    pub every: Option<Duration>,
    /// When the agent is passivated.
    pub on_passivation: bool,
    /// When an incarnation stops (a stop, a crash, a normal exit; a kill
    /// writes without waiting).
    pub on_stop: bool,
}

impl Default for CheckpointPolicy {
    fn default() -> Self {
        CheckpointPolicy {
            every_messages: None,
            every: None,
            on_passivation: true,
            on_stop: true,
        }
    }
}

impl CheckpointPolicy {
    /// After each handled message (and on passivation and stop). A
    /// message that leaves a small checkpoint (up to 64 bytes encoded) as
    /// this incarnation last stored it writes nothing: a read costs no
    /// store write.
    pub fn after_each_message() -> Self {
        CheckpointPolicy {
            every_messages: NonZeroU32::new(1),
            ..Self::default()
        }
    }

    /// After every `n`-th handled message (`0` is taken as 1).
    pub fn every_messages(n: u32) -> Self {
        CheckpointPolicy {
            every_messages: Some(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)),
            ..Self::default()
        }
    }

    /// After a message handled at least `every` after the last one.
    pub fn every(every: Duration) -> Self {
        CheckpointPolicy {
            every: Some(every),
            ..Self::default()
        }
    }

    fn per_message(&self) -> bool {
        self.every_messages.is_some() || self.every.is_some()
    }
}

/// How a recovered agent that was running comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Activation {
    /// Started as soon as it is restored (the default).
    #[default]
    Eager,
    /// Restored passivated, started by its first message (Orleans'
    /// virtual actors): a large table comes back at the cost of reading
    /// it.
    OnDemand,
}

/// Builds an agent's configuration from its stored JSON arguments.
pub type Recipe = Arc<dyn Fn(&Value) -> Result<AgentConfig, String> + Send + Sync>;

/// The recipes of the agent kinds a registry can bring back from its
/// store, by kind name. A stored agent of a kind without a recipe is
/// restored `Failed` (its row is kept).
#[derive(Clone, Default)]
pub struct AgentRecipes {
    recipes: BTreeMap<Arc<str>, Recipe>,
}

impl AgentRecipes {
    /// No recipes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the recipe of `kind`.
    pub fn with(
        mut self,
        kind: impl Into<Arc<str>>,
        recipe: impl Fn(&Value) -> Result<AgentConfig, String> + Send + Sync + 'static,
    ) -> Self {
        self.recipes.insert(kind.into(), Arc::new(recipe));
        self
    }

    /// The recipe of `kind`.
    pub fn get(&self, kind: &str) -> Option<&Recipe> {
        self.recipes.get(kind)
    }

    /// The kinds, sorted.
    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.recipes.keys().map(|k| &**k)
    }
}

impl fmt::Debug for AgentRecipes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.kinds()).finish()
    }
}

/// The registry's side of its store.
pub(crate) struct Durable {
    pub(crate) store: Arc<dyn AgentStore>,
    /// The generation every write carries (fencing; one node: constant).
    pub(crate) generation: u64,
    pub(crate) recipes: AgentRecipes,
    /// Stops are not recorded while set ([`AgentRegistry::suspend`]).
    pub(crate) quiet: std::sync::atomic::AtomicBool,
    pub(crate) recovery: tokio::sync::watch::Sender<crate::RecoveryProgress>,
}

impl Durable {
    pub(crate) fn new(store: Option<Arc<dyn AgentStore>>, recipes: AgentRecipes) -> Self {
        Durable {
            store: store.unwrap_or_else(|| Arc::new(MemoryAgentStore::new())),
            generation: 0,
            recipes,
            quiet: std::sync::atomic::AtomicBool::new(false),
            recovery: tokio::sync::watch::Sender::new(crate::RecoveryProgress::default()),
        }
    }
}

/// The row of a durable agent as registered now.
pub(crate) fn registration(
    id: &AgentId,
    config: &AgentConfig,
    args: &Value,
    state: Option<&SlotState>,
) -> AgentRegistration {
    let mut registration = AgentRegistration::new(id.clone(), &*config.kind, Value::Null);
    registration.args = args.clone();
    registration.config = serde_json::json!({
        "activation": match config.activation {
            Activation::Eager => "eager",
            Activation::OnDemand => "on_demand",
        },
    });
    registration.restart = Value::String(format!("{:?}", config.restart).to_lowercase());
    if let Some(state) = state {
        registration.status = stored_status(state);
        registration.restart_count = state.restarts;
        registration.passivated = state.passivated;
    }
    registration
}

/// The status a record stores: transitions are stored as where they lead,
/// and an agent its supervisor took down (orphaned, `Stopped` in memory
/// until the next supervisor restarts it) as running: the store must not
/// say `Stopped` while a restart is owed, or a node (or a registry
/// service) that stops before the restart would never bring it back.
fn stored_status(state: &SlotState) -> AgentStatus {
    if state.orphaned {
        return AgentStatus::Running;
    }
    match state.status {
        AgentStatus::Starting | AgentStatus::Restarting => AgentStatus::Running,
        AgentStatus::Stopping => AgentStatus::Stopped,
        status => status,
    }
}

fn update_of(state: &SlotState) -> AgentUpdate {
    AgentUpdate {
        config: None,
        status: Some(stored_status(state)),
        restart_count: Some(state.restarts),
        passivated: Some(state.passivated),
    }
}

/// The bytes of `checkpoint`, loaded from the store, that a
/// [`DurableHost`] keeps (small, and of `A`'s current format: an older
/// one is written again in the current format).
pub(crate) fn stored_bytes<A: Agent>(checkpoint: &Checkpoint) -> Option<Box<[u8]>> {
    if checkpoint.format != A::CHECKPOINT_FORMAT {
        return None;
    }
    kept_bytes(&checkpoint.data)
}

/// A copy of a stored checkpoint's `data` when it is small enough to keep
/// (see [`KEPT_CHECKPOINT`]).
fn kept_bytes(data: &[u8]) -> Option<Box<[u8]>> {
    (data.len() <= KEPT_CHECKPOINT).then(|| data.into())
}

/// A checkpoint in its stored form.
pub(crate) fn encode<A: Agent>(checkpoint: &A::Checkpoint) -> Result<Checkpoint, String> {
    serde_json::to_vec(checkpoint)
        .map(|data| Checkpoint {
            format: A::CHECKPOINT_FORMAT,
            data,
        })
        .map_err(|e| e.to_string())
}

impl Shared {
    /// Writes `slot`'s status, restart count and passivation to the store
    /// without waiting (a change nobody awaits: a restart, a crash, a
    /// passivation). Called under the record's lock, so the writes of one
    /// agent are queued in the order of its changes.
    pub(crate) fn durable_note(&self, slot: &Slot, state: &SlotState) {
        if state.config.durable.is_none() || state.removed || self.stop_is_quiet(state) {
            return;
        }
        let write =
            self.durable
                .store
                .update(slot.id.clone(), update_of(state), self.durable.generation);
        spawn_detached(async move {
            if let Err(error) = write.await {
                tracing::debug!(%error, "agent status not stored");
            }
        });
    }

    /// A stop the store does not record: the system's (suspend, shutdown).
    fn stop_is_quiet(&self, state: &SlotState) -> bool {
        matches!(state.status, AgentStatus::Stopping | AgentStatus::Stopped)
            && (self.is_closing()
                || self
                    .durable
                    .quiet
                    .load(std::sync::atomic::Ordering::Acquire))
    }

    /// Writes `slot`'s status as it is now and waits for the store: the
    /// acknowledgement of a call that changed it. Nothing for an agent
    /// that is not durable.
    pub(crate) async fn durable_ack(&self, slot: &Slot) -> Result<(), AgentError> {
        let write = {
            let state = slot.state.lock();
            if state.config.durable.is_none() || state.removed || self.stop_is_quiet(&state) {
                return Ok(());
            }
            self.durable
                .store
                .update(slot.id.clone(), update_of(&state), self.durable.generation)
        };
        write.await.map_err(AgentError::Store)
    }

    /// The host's side of a durable agent, if `slot`'s is.
    pub(crate) fn durable_host(&self, slot: &Slot) -> Option<Box<DurableHost>> {
        let state = slot.state.lock();
        state.config.durable.as_ref()?;
        let policy = state.config.checkpoints;
        Some(Box::new(DurableHost {
            store: self.durable.store.clone(),
            generation: self.durable.generation,
            id: slot.id.clone(),
            policy,
            handled: 0,
            clock: self.clock.clone(),
            last: self.clock.now(),
            telemetry: self.reporter.telemetry.clone(),
            stored: None,
        }))
    }
}

/// What an incarnation of a durable agent needs to write its checkpoints.
pub(crate) struct DurableHost {
    store: Arc<dyn AgentStore>,
    generation: u64,
    id: AgentId,
    pub(crate) policy: CheckpointPolicy,
    handled: u32,
    clock: Clock,
    last: Instant,
    telemetry: mabeam_supervision_core::Telemetry,
    /// The bytes of the last checkpoint this incarnation stored (or
    /// started from, as loaded from the store), when small: the same
    /// checkpoint again (a message that changed nothing) is not written
    /// twice.
    pub(crate) stored: Option<Box<[u8]>>,
}

/// The largest checkpoint whose bytes a [`DurableHost`] keeps to skip
/// writing it again unchanged (a larger one is always written).
const KEPT_CHECKPOINT: usize = 64;

/// The telemetry event of a checkpoint the store refused (measurement
/// `count`, metadata `agent` and `error`).
pub const CHECKPOINT_FAILED: &[&str] = &["agent", "checkpoint", "failed"];

impl DurableHost {
    /// Whether the message just handled takes a checkpoint.
    pub(crate) fn due_after_message(&mut self) -> bool {
        if !self.policy.per_message() {
            return false;
        }
        self.handled = self.handled.saturating_add(1);
        let by_count = self
            .policy
            .every_messages
            .is_some_and(|n| self.handled >= n.get());
        let by_time = self
            .policy
            .every
            .is_some_and(|every| self.clock.now().saturating_duration_since(self.last) >= every);
        by_count || by_time
    }

    /// Writes `checkpoint` (of agent type `A`); the future returned waits
    /// for the store. A refusal is reported (telemetry, log): the agent
    /// keeps running on its state. The checkpoint this incarnation last
    /// stored, unchanged, is not written again (the store holds it).
    pub(crate) fn write<A: Agent>(
        &mut self,
        checkpoint: Option<&A::Checkpoint>,
    ) -> impl std::future::Future<Output = ()> + Send + '_ {
        self.handled = 0;
        self.last = self.clock.now();
        let write = checkpoint.map(|checkpoint| encode::<A>(checkpoint));
        async move {
            let encoded = match write {
                None => return,
                Some(Ok(encoded)) => encoded,
                Some(Err(reason)) => {
                    self.stored = None;
                    failed(&self.id, &self.telemetry, &AgentStoreError::Invalid(reason));
                    return;
                }
            };
            if self.stored.as_deref() == Some(&encoded.data[..]) {
                return;
            }
            let kept = kept_bytes(&encoded.data);
            // Unknown until the store answers: a refused write is not
            // taken for stored.
            self.stored = None;
            match self
                .store
                .checkpoint(self.id.clone(), encoded, self.generation)
                .await
            {
                Ok(()) => self.stored = kept,
                Err(error) => failed(&self.id, &self.telemetry, &error),
            }
        }
    }

    /// Writes `checkpoint` without waiting (an incarnation killed).
    pub(crate) fn write_detached<A: Agent>(&self, checkpoint: &A::Checkpoint) {
        let Ok(encoded) = encode::<A>(checkpoint) else {
            return;
        };
        let write = self
            .store
            .checkpoint(self.id.clone(), encoded, self.generation);
        spawn_detached(async move {
            let _ = write.await;
        });
    }
}

fn failed(id: &AgentId, telemetry: &mabeam_supervision_core::Telemetry, error: &AgentStoreError) {
    tracing::warn!(agent = %id, %error, "agent checkpoint not stored");
    telemetry.emit(
        CHECKPOINT_FAILED,
        &[("count", 1.0)],
        &[
            (
                "agent",
                mabeam_supervision_core::MetaValue::Str(id.as_str()),
            ),
            (
                "error",
                mabeam_supervision_core::MetaValue::Str(&error.to_string()),
            ),
        ],
    );
}
