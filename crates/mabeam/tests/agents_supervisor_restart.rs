//! Issue 20 item 5, in the tree: restarting `agent_supervisor` (on request,
//! as `POST /api/services/agent_supervisor/restart` does, or after it was
//! killed) keeps every registration and restarts the agents under the new
//! supervisor from their checkpoints.

use std::time::Duration;

use mabeam::{SystemBuilder, seed};
use mabeam_agent_supervisor::{AgentConfig, AgentRegistry};
use mabeam_supervision_core::{AgentStatus, Namespace, RestartType};

mod common;
use common::Counter;

const IDS: [&str; 3] = ["a", "b", "c"];

async fn start_counters(agents: &AgentRegistry) {
    for id in IDS {
        agents
            .register_agent(
                id,
                AgentConfig::new::<Counter>("counter", ()).with_restart(RestartType::Transient),
            )
            .unwrap();
        agents.start_agent(id).await.unwrap();
        agents
            .agent_ref::<Counter>(id)
            .unwrap()
            .ask(5)
            .await
            .unwrap();
    }
}

async fn all_running(agents: &AgentRegistry) {
    let mut changes = agents.subscribe();
    tokio::time::timeout(Duration::from_secs(10), async {
        while !IDS.iter().all(|id| {
            agents.status(id) == Some(AgentStatus::Running)
                && agents.lookup(id).is_some_and(|p| p.is_alive())
        }) {
            let _ = changes.recv().await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("not running: {:?}", IDS.map(|id| agents.status(id))));
    for id in IDS {
        // Its checkpoint (5), then one more.
        let counter = agents.agent_ref::<Counter>(id).unwrap();
        assert_eq!(counter.ask(1).await.unwrap(), 6, "{id}");
    }
}

#[tokio::test]
async fn restarting_the_agent_supervisor_keeps_every_agent() {
    let dir = tempfile::tempdir().unwrap();
    let system = SystemBuilder::new()
        .namespace(Namespace::unique_test())
        .data_dir(dir.path())
        .build()
        .unwrap();
    system.start().await.unwrap();
    let agents = system
        .agents()
        .and_then(|agents| agents.registry())
        .unwrap();
    start_counters(&agents).await;

    system
        .restart_service(seed::AGENT_SUPERVISOR)
        .await
        .unwrap();
    // The same registry, its registrations kept.
    let after = system
        .agents()
        .and_then(|agents| agents.registry())
        .unwrap();
    assert_eq!(after.len(), IDS.len());
    all_running(&after).await;
    assert!(system.health().await.healthy);
    system.stop().await.unwrap();
    assert_eq!(system.registry().count(system.namespace()), 0);
}

#[tokio::test]
async fn a_killed_agent_supervisor_is_restarted_by_the_tree_with_its_agents() {
    let dir = tempfile::tempdir().unwrap();
    let system = SystemBuilder::new()
        .namespace(Namespace::unique_test())
        .data_dir(dir.path())
        .build()
        .unwrap();
    system.start().await.unwrap();
    let agents = system
        .agents()
        .and_then(|agents| agents.registry())
        .unwrap();
    start_counters(&agents).await;

    let old = agents.supervisor().supervisor().handle().clone();
    old.kill();
    old.exited().await;
    all_running(&agents).await;
    assert_ne!(agents.supervisor().supervisor().handle().id(), old.id());
    system.stop().await.unwrap();
    for id in IDS {
        assert_eq!(agents.status(id), Some(AgentStatus::Stopped), "{id}");
    }
    assert_eq!(system.registry().count(system.namespace()), 0);
}
