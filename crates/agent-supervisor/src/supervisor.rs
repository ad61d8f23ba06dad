//! [`AgentSupervisor`]: the pure dynamic supervisor of agent processes (the
//! seed's `MABEAM.AgentSupervisor`), with no state of its own.

use std::sync::Arc;

use mabeam_supervision_core::{
    ChildCounts, ChildInfo, ChildSpec, DynamicSupervisor, DynamicSupervisorFlags, ExitNotice,
    ExitReason, ProcessHandle, RestartType, SupervisorError, Telemetry,
};

/// A [`DynamicSupervisor`] of agent processes, nothing more: it starts an
/// agent from a child spec and stops it by its handle.
///
/// Its children are **temporary**: it never restarts one. Restarts are
/// decided per agent by the [`AgentRegistry`](crate::AgentRegistry), from
/// the agent's own policy and limits (the seed's `maybe_restart_agent`), so
/// thousands of agent crashes never trip a supervisor-wide intensity and
/// four crashing agents cannot stop ten thousand healthy ones.
///
/// # Example
///
/// ```
/// use kameo::Actor;
/// use mabeam_agent_supervisor::AgentSupervisor;
/// use mabeam_supervision_core::{ChildSpec, Telemetry};
///
/// #[derive(Actor)]
/// struct Worker;
///
/// # #[tokio::main] async fn main() {
/// let sup = AgentSupervisor::start("agents", Telemetry::disabled()).await.unwrap();
/// let agent = sup.start_child(ChildSpec::actor::<Worker>("worker-1", || Worker)).await.unwrap();
/// sup.terminate_child(&agent).await.unwrap();
/// assert!(!agent.is_alive()); // stopped when terminate_child returns
/// sup.stop().await;
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct AgentSupervisor {
    supervisor: DynamicSupervisor,
}

impl AgentSupervisor {
    /// Starts an agent supervisor named `name` reporting to `telemetry`.
    pub async fn start(
        name: impl Into<Arc<str>>,
        telemetry: Telemetry,
    ) -> Result<Self, SupervisorError> {
        // Its children are temporary: its intensity never counts.
        let flags = DynamicSupervisorFlags::new()
            .with_name(name)
            .with_telemetry(telemetry);
        Ok(AgentSupervisor {
            supervisor: DynamicSupervisor::start(flags).await?,
        })
    }

    /// Starts an agent process from `spec` (made temporary) and returns it
    /// once started; a start error is returned and nothing is kept.
    /// Named as `DynamicSupervisor`'s: it starts a process from a spec
    /// (`AgentRegistry::start_agent` starts a registered agent by id).
    pub async fn start_child(&self, spec: ChildSpec) -> Result<ProcessHandle, SupervisorError> {
        self.supervisor
            .start_child(spec.with_restart(RestartType::Temporary))
            .await
    }

    /// [`start_child`](Self::start_child) for an agent host, which reports
    /// its own exit through [`exit_notice`](Self::exit_notice): no watcher
    /// task per agent.
    pub(crate) async fn start_reporting_agent(
        &self,
        spec: ChildSpec,
    ) -> Result<ProcessHandle, SupervisorError> {
        self.supervisor
            .start_reporting_child(spec.with_restart(RestartType::Temporary))
            .await
    }

    /// How agent hosts report their exit.
    pub(crate) async fn exit_notice(&self) -> Result<ExitNotice, SupervisorError> {
        self.supervisor.exit_notice().await
    }

    /// Stops `agent` by its spec's shutdown; returns only once it has
    /// stopped.
    pub async fn terminate_child(&self, agent: &ProcessHandle) -> Result<(), SupervisorError> {
        self.supervisor.terminate_child(agent).await
    }

    /// The agent processes, in start order.
    pub async fn which_children(&self) -> Result<Vec<ChildInfo>, SupervisorError> {
        self.supervisor.which_children().await
    }

    /// The child counts.
    pub async fn count_children(&self) -> Result<ChildCounts, SupervisorError> {
        self.supervisor.count_children().await
    }

    /// Stops every agent process in reverse start order, then the
    /// supervisor; returns once all have stopped.
    pub async fn stop(&self) -> ExitReason {
        self.supervisor.stop().await
    }

    /// The dynamic supervisor underneath.
    pub fn supervisor(&self) -> &DynamicSupervisor {
        &self.supervisor
    }
}
