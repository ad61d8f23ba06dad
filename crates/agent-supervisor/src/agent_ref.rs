//! [`AgentRef`]: a typed, stable address of one agent that outlives its
//! incarnations.

use std::{fmt, marker::PhantomData, sync::Arc, time::Duration};

use mabeam_supervision_core::{AgentId, AgentStatus};

use crate::{
    Agent, AgentError,
    host::{Bounce, Inbox, inbox_of},
    shared::{OnRestart, Shared},
    slot::Slot,
};

/// The default timeout of [`AgentRef::ask`]: 5 seconds, as
/// `GenServer.call`'s.
pub const DEFAULT_ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// How one call waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallOptions {
    /// How long the call may take in all (waiting for an incarnation, for
    /// mailbox room and for the answer). Default [`DEFAULT_ASK_TIMEOUT`].
    pub timeout: Duration,
    /// Wait for the next incarnation while the agent restarts (default), or
    /// fail at once with [`AgentError::Restarting`].
    pub on_restart: OnRestart,
}

impl Default for CallOptions {
    fn default() -> Self {
        CallOptions {
            timeout: DEFAULT_ASK_TIMEOUT,
            on_restart: OnRestart::Wait,
        }
    }
}

impl CallOptions {
    /// The defaults with `timeout`.
    pub fn timeout(timeout: Duration) -> Self {
        CallOptions {
            timeout,
            ..CallOptions::default()
        }
    }

    /// Fails at once while the agent restarts.
    pub fn fail_while_restarting(mut self) -> Self {
        self.on_restart = OnRestart::Fail;
        self
    }
}

/// The address of agent `A` by id: it reaches the agent's current
/// incarnation, whichever it is. A message sent while the agent restarts
/// waits (bounded by the call's timeout) for the next incarnation or fails
/// with `Restarting`, by the caller's choice; a passivated agent is woken.
/// While the agent is being stopped, calls fail at once with
/// [`AgentError::Stopping`].
///
/// **Its mailbox outlives its incarnations.** Tells queued behind an
/// incarnation's exit (a crash, a normal exit, a passivation) are handled
/// by the next incarnation first, in order; only the message that crashed
/// it is not handled again. Asks queued behind it are retried by their
/// callers on the next incarnation (or fail with `Restarting`, if the call
/// said so). An agent that is not restarted answers those asks with a
/// typed error and drops those tells, counted (`agent.messages.dropped`).
/// A kill takes the tells in its mailbox with it.
/// A ref never silently goes dead: once the agent is stopped, failed or
/// deregistered, calls say so.
///
/// Cheap to clone.
pub struct AgentRef<A: Agent> {
    slot: Arc<Slot>,
    shared: Arc<Shared>,
    _agent: PhantomData<fn() -> A>,
}

impl<A: Agent> Clone for AgentRef<A> {
    fn clone(&self) -> Self {
        AgentRef {
            slot: self.slot.clone(),
            shared: self.shared.clone(),
            _agent: PhantomData,
        }
    }
}

impl<A: Agent> fmt::Debug for AgentRef<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentRef")
            .field("id", &self.slot.id)
            .field("agent", &std::any::type_name::<A>())
            .finish()
    }
}

impl<A: Agent> AgentRef<A> {
    pub(crate) fn new(slot: Arc<Slot>, shared: Arc<Shared>) -> Self {
        AgentRef {
            slot,
            shared,
            _agent: PhantomData,
        }
    }

    /// The agent's id.
    pub fn id(&self) -> &AgentId {
        &self.slot.id
    }

    /// The agent's status now.
    pub fn status(&self) -> AgentStatus {
        self.slot.state.lock().status
    }

    /// Sends `message` and waits for the reply, at most
    /// [`DEFAULT_ASK_TIMEOUT`].
    pub async fn ask(&self, message: A::Message) -> Result<A::Reply, AgentError> {
        self.ask_with(message, CallOptions::default()).await
    }

    /// Sends `message` and waits for the reply as `options` say.
    pub async fn ask_with(
        &self,
        message: A::Message,
        options: CallOptions,
    ) -> Result<A::Reply, AgentError> {
        let shared = &self.shared;
        let deadline = shared.deadline(options.timeout);
        let mut message = message;
        loop {
            let (handle, generation) = shared
                .route(&self.slot, deadline, options.on_restart)
                .await?;
            let inbox = self.typed(&handle)?;
            let sent = tokio::select! {
                biased;
                sent = inbox.ask(message) => sent,
                () = shared.deadlines.at(deadline) => {
                    return Err(AgentError::Timeout(self.slot.id.clone()));
                }
            };
            match sent {
                Ok(reply) => return Ok(reply),
                Err(err) => match err {
                    Bounce::Retry(again) | Bounce::Full(again) => {
                        message = again;
                        shared
                            .next_generation(&self.slot, generation, deadline)
                            .await?;
                    }
                    Bounce::Stopped | Bounce::WrongType => {
                        return Err(shared.crash_of(&self.slot, &handle, deadline).await);
                    }
                },
            }
        }
    }

    /// Queues `message` without waiting for a reply, waiting for mailbox
    /// room (and through a restart or a wake) at most
    /// [`DEFAULT_ASK_TIMEOUT`].
    pub async fn tell(&self, message: A::Message) -> Result<(), AgentError> {
        let shared = &self.shared;
        let deadline = shared.deadline(DEFAULT_ASK_TIMEOUT);
        let mut message = message;
        loop {
            let (handle, generation) = shared.route(&self.slot, deadline, OnRestart::Wait).await?;
            let inbox = self.typed(&handle)?;
            let sent = tokio::select! {
                biased;
                sent = inbox.tell(message) => sent,
                () = shared.deadlines.at(deadline) => {
                    return Err(AgentError::Timeout(self.slot.id.clone()));
                }
            };
            match sent {
                Ok(()) => return Ok(()),
                Err(err) => match err {
                    Bounce::Retry(again) | Bounce::Full(again) => {
                        message = again;
                        shared
                            .next_generation(&self.slot, generation, deadline)
                            .await?;
                    }
                    Bounce::Stopped | Bounce::WrongType => {
                        return Err(shared.crash_of(&self.slot, &handle, deadline).await);
                    }
                },
            }
        }
    }

    /// Queues `message` if there is room now: [`AgentError::MailboxFull`]
    /// if not, [`AgentError::Restarting`] while it restarts,
    /// [`AgentError::Stopping`] while it is being stopped,
    /// [`AgentError::NotRunning`] if it has no process (passivated agents
    /// included: use [`tell`](Self::tell) to wake one).
    pub fn try_tell(&self, message: A::Message) -> Result<(), AgentError> {
        let handle = {
            let state = self.slot.state.lock();
            if state.removed {
                return Err(AgentError::NotFound(self.slot.id.clone()));
            }
            match (&state.current, state.status) {
                (Some(handle), AgentStatus::Running) => handle.clone(),
                (_, AgentStatus::Restarting) => {
                    return Err(AgentError::Restarting(self.slot.id.clone()));
                }
                (_, AgentStatus::Stopping) => {
                    return Err(AgentError::Stopping(self.slot.id.clone()));
                }
                (_, status) => {
                    return Err(AgentError::NotRunning {
                        agent: self.slot.id.clone(),
                        status,
                    });
                }
            }
        };
        self.typed(&handle)?
            .try_tell(message)
            .map_err(|err| match err {
                Bounce::Full(_) => AgentError::MailboxFull(self.slot.id.clone()),
                Bounce::Retry(_) => AgentError::Restarting(self.slot.id.clone()),
                Bounce::Stopped | Bounce::WrongType => AgentError::NotRunning {
                    agent: self.slot.id.clone(),
                    status: self.status(),
                },
            })
    }

    fn typed(
        &self,
        handle: &mabeam_supervision_core::ProcessHandle,
    ) -> Result<Arc<Inbox<A>>, AgentError> {
        inbox_of::<A>(handle)
            .cloned()
            .ok_or_else(|| AgentError::WrongType {
                agent: self.slot.id.clone(),
                expected: std::any::type_name::<A>(),
            })
    }
}
