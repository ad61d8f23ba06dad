//! [`Agents`]: the agent layer of a system, the two seed services over it
//! (`agent_supervisor`, `agent_registry`), and the directory other
//! services reach agents through.
//!
//! The [`AgentRegistry`] starts its own [`AgentSupervisor`](mabeam_agent_supervisor::AgentSupervisor)
//! (it starts and stops every agent through it). In the tree:
//!
//! - `agent_supervisor`'s process **is** that dynamic supervisor: its
//!   first start starts a registry (and with it the supervisor), installs
//!   it in [`Agents`], and hands the supervisor's process to the tree,
//!   which watches it. If it dies (or is restarted on request), the tree's
//!   next start gives the same registry a new supervisor
//!   ([`AgentRegistry::replace_supervisor`]): the registrations stay, and
//!   the agents taken down with the old one are restarted under the new
//!   one from their checkpoints;
//! - `agent_registry`'s process owns the registry's lifecycle: when it
//!   stops, it stops every running agent through the registry (each ends
//!   `stopped`, unregistered), so the supervisor stops empty after it.
//!
//! [`Agents`] reaches whichever registry runs: it implements
//! `AgentDirectory` for coordination, economics and the load balancer.

use std::{fmt, sync::Arc, time::Duration};

use futures::future::BoxFuture;
use kameo::{
    actor::{Actor, ActorRef, WeakActorRef},
    error::ActorStopReason,
};
use mabeam_agent_supervisor::{AgentRegistry, AgentRegistryOptions};
use mabeam_supervision_core::{
    AgentDirectory, AgentId, AgentInfo, AgentStatusChanges, ChildSpec, DirectoryError, Envelope,
    HealthCheck, ProcessHandle, Shutdown, StartError,
};
use parking_lot::RwLock;

/// How long the registry's process may take to stop every agent (a
/// million take seconds) before its supervisor kills it (the agent
/// supervisor then stops the rest).
pub const AGENTS_SHUTDOWN: Duration = Duration::from_secs(60);

/// The agent layer of a system: the running [`AgentRegistry`], reached
/// across restarts of its services. A cheap, cloneable handle.
///
/// It implements [`AgentDirectory`] by asking the running registry; while
/// none runs, every agent is unknown (`NotFound`) and the list is empty.
#[derive(Clone)]
pub struct Agents {
    inner: Arc<Inner>,
}

struct Inner {
    options: AgentRegistryOptions,
    current: RwLock<Option<AgentRegistry>>,
}

impl fmt::Debug for Agents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Agents")
            .field("running", &self.registry().is_some())
            .finish_non_exhaustive()
    }
}

impl Agents {
    /// The agent layer whose registry is started with `options` (by the
    /// `agent_supervisor` service).
    pub fn new(options: AgentRegistryOptions) -> Self {
        Agents {
            inner: Arc::new(Inner {
                options,
                current: RwLock::new(None),
            }),
        }
    }

    /// The running registry, if its services run.
    pub fn registry(&self) -> Option<AgentRegistry> {
        self.inner.current.read().clone()
    }

    /// Whether a registry runs and its supervisor is alive.
    pub fn is_running(&self) -> bool {
        self.registry()
            .is_some_and(|r| r.supervisor().supervisor().handle().is_alive())
    }

    /// The `agent_supervisor` service's child: starts a registry (and its
    /// dynamic supervisor), installs it, and hands the supervisor's process
    /// to the tree.
    pub(crate) fn supervisor_spec(&self, id: &str) -> ChildSpec {
        let agents = self.clone();
        ChildSpec::new(id.to_owned(), move || {
            let agents = agents.clone();
            async move {
                let running = agents.registry();
                if let Some(registry) = running {
                    // A restart: the registry stays, its supervisor is new.
                    let supervisor = registry
                        .replace_supervisor()
                        .await
                        .map_err(StartError::failed)?;
                    return Ok(supervisor.supervisor().handle().clone());
                }
                // The tree restarts the supervisor, not the registry.
                let options = agents.inner.options.clone().with_replace_supervisor(false);
                let registry = AgentRegistry::start(options)
                    .await
                    .map_err(StartError::failed)?;
                let handle = registry.supervisor().supervisor().handle().clone();
                *agents.inner.current.write() = Some(registry);
                Ok(handle)
            }
        })
        .supervisor()
    }

    /// The `agent_registry` service's child: the process that owns the
    /// registry's lifecycle.
    pub(crate) fn registry_spec(&self, id: &str) -> ChildSpec {
        let agents = self.clone();
        ChildSpec::actor::<RegistryProcess>(id.to_owned(), move || agents.clone())
            .with_shutdown(Shutdown::Timeout(AGENTS_SHUTDOWN))
    }

    /// The registry service's health check: a registry runs, and its
    /// supervisor is alive (no mailbox is asked: it answers under load).
    pub(crate) fn health_check(&self, timeout: Duration) -> HealthCheck {
        let agents = self.clone();
        HealthCheck::standalone(timeout, move || {
            let running = agents.is_running();
            async move {
                if running {
                    Ok(())
                } else {
                    Err("no agent registry with a live supervisor".to_owned())
                }
            }
        })
    }

    /// Stops every running agent through the registry (each ends
    /// `stopped`, its checkpoint stored) without recording the stops in
    /// the agent store, so the agents that ran come back when a system
    /// starts on the store again; the registry and its supervisor keep
    /// running.
    pub async fn stop_all(&self) {
        if let Some(registry) = self.registry() {
            registry.suspend().await;
        }
    }
}

/// The process of the `agent_registry` service: on stop, it stops every
/// agent through the registry.
struct RegistryProcess {
    agents: Agents,
}

impl Actor for RegistryProcess {
    type Args = Agents;
    type Error = StartError;

    fn name() -> &'static str {
        "AgentRegistry"
    }

    async fn on_start(agents: Agents, _: ActorRef<Self>) -> Result<Self, StartError> {
        if agents.registry().is_none() {
            return Err(StartError::failed("the agent supervisor is not running"));
        }
        Ok(RegistryProcess { agents })
    }

    async fn on_stop(
        &mut self,
        _: WeakActorRef<Self>,
        _: ActorStopReason,
    ) -> Result<(), StartError> {
        self.agents.stop_all().await;
        Ok(())
    }
}

impl fmt::Debug for RegistryProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryProcess").finish_non_exhaustive()
    }
}

impl AgentDirectory for Agents {
    fn agent(&self, id: &AgentId) -> Option<ProcessHandle> {
        self.registry()?.agent(id)
    }

    fn info(&self, id: &AgentId) -> Option<AgentInfo> {
        AgentDirectory::info(&self.registry()?, id)
    }

    fn agents(&self) -> Vec<AgentInfo> {
        self.registry()
            .map(|r| AgentDirectory::agents(&r))
            .unwrap_or_default()
    }

    fn ask(
        &self,
        id: &AgentId,
        envelope: Envelope,
    ) -> BoxFuture<'static, Result<serde_json::Value, DirectoryError>> {
        match self.registry() {
            Some(registry) => AgentDirectory::ask(&registry, id, envelope),
            None => {
                let id = id.clone();
                Box::pin(async move { Err(DirectoryError::NotFound(id)) })
            }
        }
    }

    fn cast(&self, id: &AgentId, envelope: Envelope) -> Result<(), DirectoryError> {
        match self.registry() {
            Some(registry) => AgentDirectory::cast(&registry, id, envelope),
            None => Err(DirectoryError::NotFound(id.clone())),
        }
    }

    fn subscribe(&self) -> AgentStatusChanges {
        match self.registry() {
            Some(registry) => registry.subscribe(),
            // No registry: a subscription that ends at once.
            None => tokio::sync::broadcast::channel(1).1,
        }
    }
}
