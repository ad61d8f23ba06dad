//! Agents run apart from the system services: a spec wrapped by
//! `Wiring::on_agent_runtime` starts (and restarts) its process on the
//! agent runtime, whoever runs the start.

use std::convert::Infallible;

use kameo::{
    actor::{Actor, ActorRef},
    message::{Context, Message},
};
use mabeam::SystemBuilder;
use mabeam_supervision_core::{
    ChildSpec, DynamicSupervisor, DynamicSupervisorFlags, Namespace, RestartType,
};

struct Where(String);

impl Actor for Where {
    type Args = ();
    type Error = Infallible;

    async fn on_start(_: (), _: ActorRef<Self>) -> Result<Self, Infallible> {
        Ok(Where(
            std::thread::current().name().unwrap_or_default().to_owned(),
        ))
    }
}

struct Ask;

impl Message<Ask> for Where {
    type Reply = String;

    async fn handle(&mut self, _: Ask, _: &mut Context<Self, String>) -> String {
        format!(
            "{} {}",
            self.0,
            std::thread::current().name().unwrap_or_default()
        )
    }
}

#[test]
fn agents_start_on_their_own_runtime() {
    let (agents, system_rt) = (runtime("test-agents"), runtime("test-system"));
    let handle = agents.handle().clone();
    // Only the performance monitor: no data directory needed.
    system_rt.block_on(async move {
        let system = SystemBuilder::new()
            .namespace(Namespace::unique_test())
            .only([mabeam::seed::PERFORMANCE_MONITOR])
            .agent_runtime(handle)
            .build()
            .unwrap();
        let spec = system
            .wiring()
            .on_agent_runtime(ChildSpec::actor::<Where>("agent", || ()))
            .with_restart(RestartType::Temporary);
        assert_eq!(spec.restart, RestartType::Temporary);
        let sup = DynamicSupervisor::start(DynamicSupervisorFlags::default())
            .await
            .unwrap();
        let child = sup.start_child(spec).await.unwrap();
        let answer = child.downcast::<Where>().unwrap().ask(Ask).await.unwrap();
        assert_eq!(answer, "test-agents test-agents");
        sup.stop().await;
    });
}

/// An agent that tells on which threads it started and answers.
struct Here(String);

impl mabeam_agent_supervisor::Agent for Here {
    type Args = ();
    type Message = ();
    type Reply = String;
    type Checkpoint = ();

    async fn on_start(_: (), _: Option<()>) -> Result<Self, mabeam_supervision_core::StartError> {
        Ok(Here(
            std::thread::current().name().unwrap_or_default().to_owned(),
        ))
    }

    async fn handle(
        &mut self,
        (): (),
        _: &mut mabeam_agent_supervisor::AgentContext<'_>,
    ) -> String {
        format!(
            "{} {}",
            self.0,
            std::thread::current().name().unwrap_or_default()
        )
    }
}

#[test]
fn the_agent_registry_runs_agents_on_the_agent_runtime() {
    let (agents, system_rt) = (runtime("test-agents"), runtime("test-system"));
    let handle = agents.handle().clone();
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_owned();
    system_rt.block_on(async move {
        let system = SystemBuilder::new()
            .namespace(Namespace::unique_test())
            .data_dir(data_dir)
            .agent_runtime(handle)
            .build()
            .unwrap();
        system.start().await.unwrap();
        let registry = system
            .agents()
            .and_then(|agents| agents.registry())
            .unwrap();
        registry
            .register_agent(
                "here",
                mabeam_agent_supervisor::AgentConfig::new::<Here>("here", ()),
            )
            .unwrap();
        registry.start_agent("here").await.unwrap();
        let here = registry.agent_ref::<Here>("here").unwrap();
        assert_eq!(here.ask(()).await.unwrap(), "test-agents test-agents");
        // The system's own services stay on the system's runtime.
        let process = system
            .registry()
            .lookup(system.namespace(), mabeam::seed::AGENT_REGISTRY)
            .unwrap();
        assert!(process.is_alive());
        system.stop().await.unwrap();
        assert_eq!(system.registry().count(system.namespace()), 0);
    });
}

/// A one-thread runtime whose threads are named `name`.
fn runtime(name: &str) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(name)
        .enable_all()
        .build()
        .unwrap()
}
