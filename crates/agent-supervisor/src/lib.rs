//! The agent layer of MABEAM: agents that users write, supervised,
//! reachable by id across restarts, and light enough that a million fit
//! on one machine.
//!
//! - [`Agent`]: the trait a user implements: state, `on_start`, a typed
//!   message with a reply, protocol envelopes from other crates, `on_stop`,
//!   an optional checkpoint carried across restarts, the state's size for a
//!   memory budget.
//! - [`AgentSupervisor`]: a pure `DynamicSupervisor` of agent processes
//!   (temporary children, no state of its own).
//! - [`AgentRegistry`]: agents by id: configuration ([`AgentConfig`],
//!   validated), lifecycle, restarts decided per agent, status reads without
//!   a mailbox, passivation of idle agents; it implements supervision-core's
//!   [`AgentDirectory`](mabeam_supervision_core::AgentDirectory), through which
//!   coordination and economics reach agents.
//! - [`AgentRef`]: an agent's typed address, valid across its incarnations.
//!
//! It is not a process registry (running agents are registered in the
//! injected [`Registry`](mabeam_supervision_core::Registry)) and depends on no
//! workspace crate but supervision-core.
//!
//! # Key design decisions
//!
//! **Restarts per agent, not per supervisor.** One supervisor-wide restart
//! intensity would let four crashing agents stop ten thousand healthy ones.
//! The AgentSupervisor's children are temporary; the AgentRegistry decides
//! each restart from the agent's policy (permanent, transient, temporary)
//! and its own limit (`max_restarts` within `max_seconds`), with optional
//! backoff, in a task per restart.
//!
//! **An agent reports its own exit.** Each incarnation is a small task of
//! this crate with a mailbox of its own (not a kameo actor: one weighs
//! about 7 KB, an incarnation here under 2 KB), whose stop (run after a
//! panic too; after a kill, the host's drop does it) records the exit and
//! decides what follows,
//! releases its name in the process registry and tells the supervisor,
//! before anyone awaiting the process's exit wakes. No watcher task per
//! agent runs anywhere (each would weigh more than half a kilobyte), and
//! `stop_agent` returns with the status already `Stopped`. Every stop is
//! bounded by the agent's shutdown: past it, the whole incarnation (its
//! `on_stop` included) is killed.
//!
//! **The mailbox belongs to the address.** Tells queued behind an
//! incarnation's exit reach the next incarnation, in order; an agent that
//! is not restarted drops them and counts them. The registry outlives its
//! supervisor: agents taken down with a supervisor that died are restarted
//! under the next one, from their checkpoints.
//!
//! **Durable agents.** A registration and its checkpoints can be kept in
//! an [`AgentStore`](mabeam_supervision_core::AgentStore) (SQLite on a node):
//! `register_durable_agent`, `start_agent`, `stop_agent`, `update_config`
//! and `deregister_agent` return once the store has the change; an
//! answered message is durable when its agent's [`CheckpointPolicy`]
//! checkpoints after it. A registry started on the store brings every
//! agent back as it was, without blocking: running ones started from
//! their last checkpoint, passivated ones passivated, stopped ones
//! stopped. A crash loses each agent's state since its last stored
//! checkpoint (with the default policy, since its last stop or
//! passivation).
//!
//! **Passivation.** A live agent costs about 2 KB (its task, its mailbox,
//! its record), half a BEAM process. An idle agent gives up its task and
//! mailbox and
//! keeps only its state and its record (Erlang's hibernation, Orleans'
//! deactivation); the next message wakes it transparently.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use mabeam_agent_supervisor::{Agent, AgentConfig, AgentContext, AgentRegistry, EnvelopeError};
//! use mabeam_supervision_core::{AgentDirectory, Envelope, StartError};
//!
//! /// Votes yes on proposals below its threshold.
//! struct Voter { threshold: u64 }
//!
//! impl Agent for Voter {
//!     type Args = u64;
//!     type Message = u64;
//!     type Reply = bool;
//!     type Checkpoint = ();
//!
//!     async fn on_start(threshold: u64, _: Option<()>) -> Result<Self, StartError> {
//!         Ok(Voter { threshold })
//!     }
//!
//!     async fn handle(&mut self, proposal: u64, _: &mut AgentContext<'_>) -> bool {
//!         proposal < self.threshold
//!     }
//!
//!     async fn handle_envelope(&mut self, envelope: Envelope, _: &mut AgentContext<'_>) -> Result<serde_json::Value, EnvelopeError> {
//!         match &*envelope.protocol {
//!             "coordination.vote" => {
//!                 let proposal = envelope.body["proposal"].as_u64().ok_or(EnvelopeError::Rejected("no proposal".into()))?;
//!                 Ok(serde_json::json!(proposal < self.threshold))
//!             }
//!             _ => Err(EnvelopeError::Unsupported),
//!         }
//!     }
//! }
//!
//! # #[tokio::main] async fn main() {
//! let agents = AgentRegistry::start(Default::default()).await.unwrap();
//! agents.register_agent("voter-1", AgentConfig::new::<Voter>("voter", 10)).unwrap();
//! agents.start_agent("voter-1").await.unwrap();
//!
//! // Typed, by its address:
//! assert!(agents.agent_ref::<Voter>("voter-1").unwrap().ask(3).await.unwrap());
//!
//! // Or as another crate does, by the directory contract:
//! let vote = Envelope::new("coordination.vote", serde_json::json!({"proposal": 12}), Duration::from_secs(1));
//! assert_eq!(agents.ask(&"voter-1".into(), vote).await, Ok(serde_json::json!(false)));
//! agents.stop().await;
//! # }
//! ```
//!
//! # Examples
//!
//! The package's `examples/` folder: `counter_agents` (a user-written kind,
//! a checkpoint carried across a crash, passivation, a thousand agents), run
//! with `cargo run -p mabeam-agent-supervisor --example counter_agents`.

mod agent;
mod agent_ref;
mod config;
mod directory;
mod durable;
mod error;
mod host;
mod recovery;
mod registry;
mod report;
mod shared;
mod slot;
mod supervisor;

pub use agent::{Agent, AgentContext};
pub use agent_ref::{AgentRef, CallOptions, DEFAULT_ASK_TIMEOUT};
pub use config::{AgentConfig, MAX_ID_BYTES};
pub use durable::{Activation, AgentRecipes, CHECKPOINT_FAILED, CheckpointPolicy, Recipe};
pub use error::{AgentError, EnvelopeError};
pub use recovery::{Adopted, LOG_EVERY, RECOVERY_PROGRESS, RecoveryProgress};
pub use registry::{AgentDetails, AgentRegistry, AgentRegistryOptions, StatusCounts};
pub use report::status_name;
pub use shared::OnRestart;
pub use supervisor::AgentSupervisor;
