//! The [`AgentDirectory`] contract, implemented by [`AgentRegistry`]: how
//! coordination and economics reach agents without depending on this crate.

use futures::future::BoxFuture;
use mabeam_supervision_core::{
    AgentDirectory, AgentId, AgentInfo, AgentStatusChanges, DirectoryError, Envelope, ProcessHandle,
};

use crate::{AgentError, AgentRegistry, EnvelopeError, host::Bounce, shared::OnRestart};

impl AgentDirectory for AgentRegistry {
    fn agent(&self, id: &AgentId) -> Option<ProcessHandle> {
        self.lookup(id.as_str())
    }

    fn info(&self, id: &AgentId) -> Option<AgentInfo> {
        self.details(id.as_str()).map(|details| details.info())
    }

    fn agents(&self) -> Vec<AgentInfo> {
        self.list().iter().map(|details| details.info()).collect()
    }

    fn ask(
        &self,
        id: &AgentId,
        envelope: Envelope,
    ) -> BoxFuture<'static, Result<serde_json::Value, DirectoryError>> {
        let registry = self.clone();
        let id = id.clone();
        Box::pin(async move {
            let shared = &registry.shared;
            let slot = shared
                .table
                .get(id.as_str())
                .map(|entry| entry.slot.clone())
                .ok_or_else(|| DirectoryError::NotFound(id.clone()))?;
            let deadline = envelope.deadline;
            let protocol = envelope.protocol.clone();
            // The caller (maybe on another node) chose to hear Restarting
            // rather than wait for the next incarnation.
            let on_restart = if envelope.fail_if_restarting {
                OnRestart::Fail
            } else {
                OnRestart::Wait
            };
            let mut envelope = envelope;
            loop {
                let (handle, generation) = shared
                    .route(&slot, deadline, on_restart)
                    .await
                    .map_err(|err| err.to_directory_error(&id))?;
                let factory = slot.state.lock().config.factory.clone();
                let sent = tokio::select! {
                    sent = factory.ask_envelope(handle.clone(), envelope) => sent,
                    () = shared.deadlines.at(deadline) => {
                        return Err(DirectoryError::Timeout(id.clone()));
                    }
                };
                match sent {
                    Ok(Ok(value)) => return Ok(value),
                    Ok(Err(EnvelopeError::Unsupported)) => {
                        return Err(DirectoryError::Unsupported {
                            agent: id.clone(),
                            protocol,
                        });
                    }
                    Ok(Err(EnvelopeError::Rejected(reason))) => {
                        return Err(DirectoryError::Rejected {
                            agent: id.clone(),
                            reason: reason.to_string(),
                        });
                    }
                    Err(Bounce::Retry(_)) if on_restart == OnRestart::Fail => {
                        return Err(DirectoryError::Restarting(id.clone()));
                    }
                    Err(Bounce::Retry(again) | Bounce::Full(again)) => {
                        envelope = again;
                        shared
                            .next_generation(&slot, generation, deadline)
                            .await
                            .map_err(|err| err.to_directory_error(&id))?;
                    }
                    Err(Bounce::Stopped | Bounce::WrongType) => {
                        return Err(shared
                            .crash_of(&slot, &handle, deadline)
                            .await
                            .to_directory_error(&id));
                    }
                }
            }
        })
    }

    fn cast(&self, id: &AgentId, envelope: Envelope) -> Result<(), DirectoryError> {
        let shared = &self.shared;
        let slot = shared
            .table
            .get(id.as_str())
            .map(|entry| entry.slot.clone())
            .ok_or_else(|| DirectoryError::NotFound(id.clone()))?;
        let (current, factory) = {
            let state = slot.state.lock();
            (
                state.current.clone().filter(ProcessHandle::is_alive),
                state.config.factory.clone(),
            )
        };
        let envelope = match current {
            Some(handle) => match factory.try_cast(&handle, envelope) {
                Ok(()) => return Ok(()),
                Err(Bounce::Full(_)) => return Err(DirectoryError::MailboxFull(id.clone())),
                Err(Bounce::Retry(envelope)) => envelope,
                Err(Bounce::Stopped | Bounce::WrongType) => {
                    return Err(DirectoryError::NotRunning {
                        agent: id.clone(),
                        status: slot.state.lock().status,
                    });
                }
            },
            None => envelope,
        };
        // No process now (restarting, passivated, draining): check it will
        // have one, then deliver in a task, by the envelope's deadline.
        {
            let status = slot.state.lock().status;
            use mabeam_supervision_core::AgentStatus as S;
            if !matches!(
                status,
                S::Running | S::Starting | S::Restarting | S::Stopping
            ) {
                return Err(DirectoryError::NotRunning {
                    agent: id.clone(),
                    status,
                });
            }
        }
        let registry = self.clone();
        let id = id.clone();
        tokio::spawn(async move {
            // The answer of a cast is dropped.
            let _ = AgentDirectory::ask(&registry, &id, envelope).await;
        });
        Ok(())
    }

    fn subscribe(&self) -> AgentStatusChanges {
        AgentRegistry::subscribe(self)
    }
}

impl From<AgentError> for DirectoryError {
    fn from(err: AgentError) -> Self {
        match &err {
            AgentError::NotFound(id)
            | AgentError::AlreadyRegistered(id)
            | AgentError::AlreadyRunning(id)
            | AgentError::Restarting(id)
            | AgentError::Stopping(id)
            | AgentError::MailboxFull(id)
            | AgentError::Timeout(id) => err.to_directory_error(id),
            AgentError::NotRunning { agent, .. }
            | AgentError::Crashed { agent, .. }
            | AgentError::StartFailed { agent, .. }
            | AgentError::WrongType { agent, .. }
            | AgentError::Checkpoint { agent, .. }
            | AgentError::Unrecoverable { agent, .. } => err.to_directory_error(agent),
            AgentError::InvalidConfig { .. }
            | AgentError::SupervisorGone
            | AgentError::Store(_) => DirectoryError::Rejected {
                agent: AgentId::from(""),
                reason: err.to_string(),
            },
        }
    }
}
