//! Agents run apart from the system services: a spec wrapped by
//! `Wiring::on_agent_runtime` starts (and restarts) its process on the
//! agent runtime, whoever runs the start.

use std::convert::Infallible;

use kameo::{
    actor::{Actor, ActorRef},
    message::{Context, Message},
};
use mabeam::SystemBuilder;
use supervision_core::{
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
    let agents = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("test-agents")
        .enable_all()
        .build()
        .unwrap();
    let system_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("test-system")
        .enable_all()
        .build()
        .unwrap();
    let handle = agents.handle().clone();
    system_rt.block_on(async move {
        let system = SystemBuilder::new()
            .namespace(Namespace::unique_test())
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
