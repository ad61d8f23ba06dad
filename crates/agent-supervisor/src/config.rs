//! [`AgentConfig`]: what the registry knows of an agent before it runs:
//! its kind, how to start it, its restart policy and limits, its mailbox,
//! memory budget and passivation.

use std::{
    any::{Any, TypeId},
    fmt,
    sync::{Arc, OnceLock},
    time::Duration,
};

use futures::future::BoxFuture;
use mabeam_supervision_core::{
    Backoff, Checkpoint, Envelope, ProcessHandle, RestartType, Shutdown, StartFuture,
};

use crate::{
    Activation, Agent, AgentError, CheckpointPolicy, EnvelopeError,
    host::{Bounce, HostArgs},
};

/// The longest id: 255 bytes.
pub const MAX_ID_BYTES: usize = 255;

/// How one agent is started, restarted and hosted.
///
/// Defaults (from [`AgentConfig::new`]): restart
/// [`RestartType::Transient`] (restarted after a crash, not after a normal
/// exit), at most 3 restarts within 5 seconds (past that the agent is
/// `Failed`), no backoff, a mailbox of 64 messages, no memory budget, no
/// passivation, shutdown 5 seconds then kill.
///
/// | exit \ restart          | `Permanent` | `Transient` | `Temporary` |
/// |-------------------------|-------------|-------------|-------------|
/// | normal (finished)       | restarted   | `Completed` | `Completed` |
/// | crash, kill, memory     | restarted   | restarted   | `Crashed`   |
/// | `stop_agent`            | `Stopped`   | `Stopped`   | `Stopped`   |
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use mabeam_agent_supervisor::{Agent, AgentConfig, AgentContext};
/// use mabeam_supervision_core::{RestartType, StartError};
///
/// struct Echo;
/// impl Agent for Echo {
///     type Args = ();
///     type Message = String;
///     type Reply = String;
///     type Checkpoint = ();
///     async fn on_start(_: (), _: Option<()>) -> Result<Self, StartError> { Ok(Echo) }
///     async fn handle(&mut self, msg: String, _: &mut AgentContext<'_>) -> String { msg }
/// }
///
/// let config = AgentConfig::new::<Echo>("echo", ())
///     .with_restart(RestartType::Permanent)
///     .with_max_restarts(10, Duration::from_secs(60))
///     .with_mailbox_capacity(16)
///     .with_passivate_after(Duration::from_secs(30));
/// assert!(config.validate().is_ok());
/// assert_eq!(&*config.kind, "echo");
/// ```
#[derive(Clone)]
pub struct AgentConfig {
    /// The agent's kind (its role), shown in listings and registry metadata.
    pub kind: Arc<str>,
    /// When the agent is restarted.
    pub restart: RestartType,
    /// Restarts allowed within [`max_seconds`](Self::max_seconds); one more
    /// and the agent is `Failed`.
    pub max_restarts: u32,
    /// The window of [`max_restarts`](Self::max_restarts).
    pub max_seconds: Duration,
    /// Opt-in wait before each restart.
    pub backoff: Option<Backoff>,
    /// Messages the mailbox holds; a sender waits (or gets `MailboxFull`)
    /// beyond.
    pub mailbox_capacity: usize,
    /// The most bytes the state may report ([`Agent::state_size`]).
    pub memory_budget: Option<usize>,
    /// Idle this long, the agent is passivated (state kept, no task).
    pub passivate_after: Option<Duration>,
    /// How the agent is stopped.
    pub shutdown: Shutdown,
    /// When a durable agent's checkpoint is written to the store.
    pub checkpoints: CheckpointPolicy,
    /// How a durable agent that was running comes back after a restart
    /// of its node.
    pub activation: Activation,
    /// The JSON arguments of a durable agent (see [`durable`](Self::durable)).
    pub(crate) durable: Option<Arc<serde_json::Value>>,
    pub(crate) factory: Arc<dyn Factory>,
    pub(crate) metadata: MetadataCell,
}

/// The registration metadata of this configuration's agents
/// (`{"kind": ..}`), made once and shared by every incarnation's name in
/// the process registry. A clone starts empty: its kind may be changed.
#[derive(Default)]
pub(crate) struct MetadataCell(OnceLock<Arc<serde_json::Value>>);

impl Clone for MetadataCell {
    fn clone(&self) -> Self {
        MetadataCell::default()
    }
}

impl AgentConfig {
    /// A configuration of agents of type `A` started with `args`, with
    /// the defaults above.
    pub fn new<A: Agent>(kind: impl Into<Arc<str>>, args: A::Args) -> Self {
        AgentConfig {
            kind: kind.into(),
            restart: RestartType::Transient,
            max_restarts: 3,
            max_seconds: Duration::from_secs(5),
            backoff: None,
            mailbox_capacity: 64,
            memory_budget: None,
            passivate_after: None,
            shutdown: Shutdown::WORKER_DEFAULT,
            checkpoints: CheckpointPolicy::default(),
            activation: Activation::Eager,
            durable: None,
            factory: Arc::new(TypedFactory::<A> { args }),
            metadata: MetadataCell::default(),
        }
    }

    /// Sets the restart policy.
    pub fn with_restart(mut self, restart: RestartType) -> Self {
        self.restart = restart;
        self
    }

    /// Sets the restart limit: `max_restarts` within `max_seconds`.
    pub fn with_max_restarts(mut self, max_restarts: u32, max_seconds: Duration) -> Self {
        self.max_restarts = max_restarts;
        self.max_seconds = max_seconds;
        self
    }

    /// Makes restarts wait by `backoff`.
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = Some(backoff);
        self
    }

    /// Sets the mailbox capacity.
    pub fn with_mailbox_capacity(mut self, capacity: usize) -> Self {
        self.mailbox_capacity = capacity;
        self
    }

    /// Sets the memory budget in bytes.
    pub fn with_memory_budget(mut self, bytes: usize) -> Self {
        self.memory_budget = Some(bytes);
        self
    }

    /// Passivates the agent after it has been idle for `idle`.
    pub fn with_passivate_after(mut self, idle: Duration) -> Self {
        self.passivate_after = Some(idle);
        self
    }

    /// Sets how the agent is stopped.
    pub fn with_shutdown(mut self, shutdown: Shutdown) -> Self {
        self.shutdown = shutdown;
        self
    }

    /// Makes the agent durable: registered in the registry's agent store
    /// with `args`, which its kind's recipe ([`AgentRecipes`](crate::AgentRecipes))
    /// turns back into this configuration when a registry recovers from
    /// the store. Register it with
    /// [`register_durable_agent`](crate::AgentRegistry::register_durable_agent).
    pub fn durable(mut self, args: serde_json::Value) -> Self {
        self.durable = Some(Arc::new(args));
        self
    }

    /// The JSON arguments of a durable agent; `None` for one in memory
    /// only.
    pub fn durable_args(&self) -> Option<&serde_json::Value> {
        self.durable.as_deref()
    }

    /// Sets when a durable agent's checkpoint is written.
    pub fn with_checkpoints(mut self, policy: CheckpointPolicy) -> Self {
        self.checkpoints = policy;
        self
    }

    /// Sets how a durable agent comes back after a restart of its node.
    pub fn with_activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }

    /// Checks every field; the error names the first invalid one.
    pub fn validate(&self) -> Result<(), AgentError> {
        if self.kind.is_empty() {
            return Err(AgentError::invalid("kind", "must not be empty"));
        }
        if self.max_seconds.is_zero() {
            return Err(AgentError::invalid(
                "max_seconds",
                "the restart window must be longer than zero",
            ));
        }
        if let Some(backoff) = &self.backoff {
            backoff
                .validate()
                .map_err(|err| AgentError::invalid("backoff", err.to_string()))?;
        }
        if self.mailbox_capacity == 0 {
            return Err(AgentError::invalid(
                "mailbox_capacity",
                "must be at least 1",
            ));
        }
        if self.memory_budget == Some(0) {
            return Err(AgentError::invalid(
                "memory_budget",
                "must be at least 1 byte",
            ));
        }
        if self.passivate_after == Some(Duration::ZERO) {
            return Err(AgentError::invalid(
                "passivate_after",
                "must be longer than zero",
            ));
        }
        if self.checkpoints.every == Some(Duration::ZERO) {
            return Err(AgentError::invalid(
                "checkpoints.every",
                "must be longer than zero",
            ));
        }
        if self.shutdown == Shutdown::Timeout(Duration::ZERO) {
            return Err(AgentError::invalid(
                "shutdown",
                "a timeout of zero: use brutal kill",
            ));
        }
        Ok(())
    }

    /// Whether this configuration starts agents of type `A`.
    pub fn is_for<A: Agent>(&self) -> bool {
        self.factory.agent_type() == TypeId::of::<A>()
    }

    /// The metadata its agents are registered with: `{"kind": ..}`, one
    /// object shared by all (the config is immutable once registered).
    pub(crate) fn registry_metadata(&self) -> Arc<serde_json::Value> {
        self.metadata
            .0
            .get_or_init(|| Arc::new(serde_json::json!({ "kind": &*self.kind })))
            .clone()
    }

    /// The name of the agent type this configuration starts.
    pub fn agent_type_name(&self) -> &'static str {
        self.factory.type_name()
    }
}

impl fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentConfig")
            .field("kind", &self.kind)
            .field("agent", &self.factory.type_name())
            .field("restart", &self.restart)
            .field("max_restarts", &self.max_restarts)
            .field("max_seconds", &self.max_seconds)
            .field("backoff", &self.backoff)
            .field("mailbox_capacity", &self.mailbox_capacity)
            .field("memory_budget", &self.memory_budget)
            .field("passivate_after", &self.passivate_after)
            .field("shutdown", &self.shutdown)
            .field("checkpoints", &self.checkpoints)
            .field("activation", &self.activation)
            .field("durable", &self.durable)
            .finish()
    }
}

/// Checks an agent id: non-empty, at most [`MAX_ID_BYTES`].
pub(crate) fn validate_id(id: &str) -> Result<(), AgentError> {
    if id.is_empty() {
        return Err(AgentError::invalid("id", "must not be empty"));
    }
    if id.len() > MAX_ID_BYTES {
        return Err(AgentError::invalid(
            "id",
            format!("{} bytes, at most {MAX_ID_BYTES}", id.len()),
        ));
    }
    Ok(())
}

/// Starts incarnations of one agent type: the type-erased half of a
/// configuration.
pub(crate) trait Factory: Send + Sync + 'static {
    fn agent_type(&self) -> TypeId;
    fn type_name(&self) -> &'static str;
    fn start(&self, host: HostArgs, mailbox_capacity: usize) -> StartFuture;
    fn ask_envelope(
        &self,
        handle: ProcessHandle,
        envelope: Envelope,
    ) -> BoxFuture<'static, Result<Result<serde_json::Value, EnvelopeError>, Bounce<Envelope>>>;
    fn try_cast(&self, handle: &ProcessHandle, envelope: Envelope) -> Result<(), Bounce<Envelope>>;
    /// A stored checkpoint as what the next incarnation starts from.
    fn decode(&self, checkpoint: &Checkpoint) -> Result<Box<dyn Any + Send>, String>;
}

struct TypedFactory<A: Agent> {
    args: A::Args,
}

impl<A: Agent> Factory for TypedFactory<A> {
    fn agent_type(&self) -> TypeId {
        TypeId::of::<A>()
    }

    fn type_name(&self) -> &'static str {
        std::any::type_name::<A>()
    }

    fn start(&self, host: HostArgs, mailbox_capacity: usize) -> StartFuture {
        crate::host::spawn::<A>(self.args.clone(), host, mailbox_capacity)
    }

    fn ask_envelope(
        &self,
        handle: ProcessHandle,
        envelope: Envelope,
    ) -> BoxFuture<'static, Result<Result<serde_json::Value, EnvelopeError>, Bounce<Envelope>>>
    {
        Box::pin(crate::host::ask_envelope::<A>(handle, envelope))
    }

    fn try_cast(&self, handle: &ProcessHandle, envelope: Envelope) -> Result<(), Bounce<Envelope>> {
        crate::host::try_cast_envelope::<A>(handle, envelope)
    }

    fn decode(&self, checkpoint: &Checkpoint) -> Result<Box<dyn Any + Send>, String> {
        let state = A::read_checkpoint(checkpoint.format, &checkpoint.data)?;
        let stored = crate::durable::stored_bytes::<A>(checkpoint);
        Ok(Box::new(crate::slot::Kept::<A>::Loaded(state, stored)))
    }
}
