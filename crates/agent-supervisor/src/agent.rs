//! The [`Agent`] trait: what a user writes to make an agent.

use std::future::Future;

use mabeam_supervision_core::{AgentId, Envelope, ExitReason, StartError};
use serde::{Serialize, de::DeserializeOwned};

use crate::EnvelopeError;

/// What a handler may do besides answering: learn its agent's id, or end
/// the incarnation after this message (OTP's `{stop, Reason, Reply, State}`).
#[derive(Debug)]
pub struct AgentContext<'a> {
    id: &'a AgentId,
    pub(crate) exit: Option<ExitReason>,
}

impl<'a> AgentContext<'a> {
    pub(crate) fn new(id: &'a AgentId) -> Self {
        AgentContext { id, exit: None }
    }

    /// The agent's id.
    pub fn id(&self) -> &AgentId {
        self.id
    }

    /// Ends the incarnation normally after this message: the agent's work
    /// is done (`Completed`, unless its policy is permanent).
    pub fn stop(&mut self) {
        self.exit = Some(ExitReason::Normal);
    }

    /// Ends the incarnation with `reason` after this message (an abnormal
    /// reason is a crash, restarted by the agent's policy).
    pub fn stop_with(&mut self, reason: ExitReason) {
        self.exit = Some(reason);
    }
}

/// An agent: its state is the implementing type, built by
/// [`on_start`](Agent::on_start), changed by its typed messages
/// ([`handle`](Agent::handle)) and by protocol envelopes from other crates
/// ([`handle_envelope`](Agent::handle_envelope)).
///
/// Each running agent is hosted in a task of its own, one message at
/// a time, supervised by the [`AgentSupervisor`](crate::AgentSupervisor)
/// and restarted by the [`AgentRegistry`](crate::AgentRegistry) by its
/// [`AgentConfig`](crate::AgentConfig).
///
/// **Carrying state across a restart.** A new incarnation starts from its
/// arguments, plus the last [`checkpoint`](Agent::checkpoint) its
/// predecessor gave when it stopped (crash, kill, memory limit, normal
/// exit, or a configuration update), if any. The registry keeps the
/// checkpoint outside the process, as the seed keeps agent state in the
/// AgentRegistry. A passivated agent keeps its state itself and is woken
/// with it, without `on_start` (but after a restart of its node, when it
/// starts from its stored checkpoint). A durable agent's checkpoint is
/// also stored in the registry's agent store (see
/// [`CheckpointPolicy`](crate::CheckpointPolicy)).
///
/// **Memory.** [`state_size`](Agent::state_size) reports the state's size;
/// with a memory budget configured, an agent left over its budget after a
/// message is stopped with [`ExitReason::MemoryLimit`], counted as a crash
/// and restarted by its policy (Erlang's `max_heap_size` with `kill`).
///
/// **Cooperation.** A handler runs on the runtime's threads: CPU-bound work
/// belongs in `tokio::task::spawn_blocking`. An agent spinning in
/// synchronous code cannot be killed.
///
/// # Example
///
/// ```
/// use mabeam_supervision_core::{Envelope, StartError};
/// use mabeam_agent_supervisor::{Agent, AgentContext, EnvelopeError};
///
/// struct Counter { count: u64 }
///
/// enum CounterMsg { Add(u64), Get }
///
/// impl Agent for Counter {
///     type Args = u64;
///     type Message = CounterMsg;
///     type Reply = u64;
///     type Checkpoint = u64;
///
///     async fn on_start(start: u64, checkpoint: Option<u64>) -> Result<Self, StartError> {
///         Ok(Counter { count: checkpoint.unwrap_or(start) })
///     }
///
///     async fn handle(&mut self, msg: CounterMsg, _: &mut AgentContext<'_>) -> u64 {
///         if let CounterMsg::Add(n) = msg { self.count += n; }
///         self.count
///     }
///
///     fn checkpoint(&self) -> Option<u64> { Some(self.count) }
///
///     async fn handle_envelope(&mut self, envelope: Envelope, _: &mut AgentContext<'_>) -> Result<serde_json::Value, EnvelopeError> {
///         match &*envelope.protocol {
///             "counter.get" => Ok(serde_json::json!(self.count)),
///             _ => Err(EnvelopeError::Unsupported),
///         }
///     }
/// }
/// ```
pub trait Agent: Send + Sized + 'static {
    /// What each incarnation starts from (cloned for every start).
    type Args: Clone + Send + Sync + 'static;
    /// The agent's typed messages.
    type Message: Send + 'static;
    /// The answer to one message (dropped for a message sent without
    /// waiting).
    type Reply: Send + 'static;
    /// The state carried across restarts (and, for a durable agent, kept
    /// in the agent store: serialised as JSON); `()` for none.
    type Checkpoint: Serialize + DeserializeOwned + Send + 'static;

    /// The format of this kind's stored checkpoints: raise it when
    /// `Checkpoint` changes shape, and read the older formats in
    /// [`read_checkpoint`](Agent::read_checkpoint). Default 1.
    const CHECKPOINT_FORMAT: u32 = 1;

    /// Builds the state of a new incarnation, from its arguments and its
    /// predecessor's checkpoint (if any). An error is a failed start.
    fn on_start(
        args: Self::Args,
        checkpoint: Option<Self::Checkpoint>,
    ) -> impl Future<Output = Result<Self, StartError>> + Send;

    /// Handles one typed message.
    fn handle(
        &mut self,
        message: Self::Message,
        ctx: &mut AgentContext<'_>,
    ) -> impl Future<Output = Self::Reply> + Send;

    /// Answers a protocol envelope from another crate (coordination,
    /// economics). The default speaks no protocol:
    /// [`EnvelopeError::Unsupported`].
    fn handle_envelope(
        &mut self,
        envelope: Envelope,
        ctx: &mut AgentContext<'_>,
    ) -> impl Future<Output = Result<serde_json::Value, EnvelopeError>> + Send {
        let _ = (envelope, ctx);
        async { Err(EnvelopeError::Unsupported) }
    }

    /// Called once when the incarnation stops (a panic included; not a
    /// passivation, which keeps the state). A kill runs no `on_stop`, as
    /// OTP's `kill` runs no `terminate`: a stop that outlasts the
    /// shutdown timeout kills the incarnation, its `on_stop` included.
    fn on_stop(&mut self, reason: &ExitReason) -> impl Future<Output = ()> + Send {
        let _ = reason;
        async {}
    }

    /// The state to carry to the next incarnation, taken when this one
    /// stops. `None` (the default): the next one starts from its args.
    fn checkpoint(&self) -> Option<Self::Checkpoint> {
        None
    }

    /// Reads a stored checkpoint of `format` (written by this kind, maybe
    /// by an older or newer build). The default reads JSON of any format
    /// up to [`CHECKPOINT_FORMAT`](Agent::CHECKPOINT_FORMAT) and refuses
    /// a newer one. An error leaves the agent `Failed` with it as the
    /// reason ([`AgentError::Checkpoint`](crate::AgentError::Checkpoint));
    /// the stored row is left as it is, for a build that can read it.
    fn read_checkpoint(format: u32, data: &[u8]) -> Result<Self::Checkpoint, String> {
        if format > Self::CHECKPOINT_FORMAT {
            return Err(format!(
                "format {format} is newer than {} (written by a newer build)",
                Self::CHECKPOINT_FORMAT
            ));
        }
        serde_json::from_slice(data).map_err(|e| e.to_string())
    }

    /// The size of the state in bytes, for the memory budget. The default
    /// is the size of the type itself; an agent that holds collections
    /// should add theirs.
    fn state_size(&self) -> usize {
        std::mem::size_of::<Self>()
    }
}
