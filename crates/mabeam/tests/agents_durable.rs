//! Issue 22, in the tree: durable agents are kept in `agents.db` in the
//! data directory. Restarting `agent_supervisor` or `agent_registry` loses
//! no registration, and a system started again on the data directory (an
//! embedding program's restart) brings every agent back with its count.

use std::time::Duration;

use mabeam::{System, SystemBuilder, seed};
use mabeam_agent_supervisor::{AgentConfig, AgentRecipes, AgentRegistry, CheckpointPolicy};
use mabeam_supervision_core::{AgentStatus, Namespace};
use serde_json::{Value, json};

mod common;
use common::Counter;

fn counter(_: &Value) -> Result<AgentConfig, String> {
    Ok(AgentConfig::new::<Counter>("counter", ())
        .with_checkpoints(CheckpointPolicy::after_each_message()))
}

const IDS: [&str; 3] = ["a", "b", "c"];

fn system(dir: &std::path::Path) -> System {
    SystemBuilder::new()
        .namespace(Namespace::unique_test())
        .data_dir(dir)
        .agent_recipes(AgentRecipes::new().with("counter", counter))
        .build()
        .unwrap()
}

async fn bounded<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

async fn ask(agents: &AgentRegistry, id: &str, n: u64) -> u64 {
    let counter = agents.agent_ref::<Counter>(id).unwrap();
    bounded("ask", counter.ask(n)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_restarts_lose_no_registration_and_a_restart_brings_agents_back() {
    let dir = tempfile::tempdir().unwrap();
    let first = system(dir.path());
    first.start().await.unwrap();
    let agents = first.agents().unwrap().registry().unwrap();
    for id in IDS {
        let config = counter(&Value::Null).unwrap().durable(json!(null));
        agents.register_durable_agent(id, config).await.unwrap();
        bounded("start", agents.start_agent(id)).await.unwrap();
        assert_eq!(ask(&agents, id, 5).await, 5);
    }

    for service in [seed::AGENT_SUPERVISOR, seed::AGENT_REGISTRY] {
        first.restart_service(service).await.unwrap();
        let after = first.agents().unwrap().registry().unwrap();
        assert_eq!(after.len(), IDS.len(), "after restarting {service}");
        // No wait for the agents to run again under the new supervisor:
        // restarting the registry's service while they are on their way
        // back must not store any of them `Stopped` (it did, 1 run in 15,
        // before orphans were stored as running; see registry_durable's
        // `a_suspend_during_a_supervisor_restart_keeps_the_agents_stored_running`).
    }
    let rows = bounded("store", first.wiring().agent_store.count())
        .await
        .unwrap();
    assert_eq!(rows, IDS.len() as u64, "every registration still stored");
    first.stop().await.unwrap();
    drop(agents);
    drop(first); // releases agents.db

    let second = system(dir.path());
    second.start().await.unwrap();
    let agents = second.agents().unwrap().registry().unwrap();
    let progress = bounded("recovery", agents.recovered()).await;
    assert_eq!((progress.restored, progress.failed), (3, 0));
    for id in IDS {
        assert_eq!(agents.status(id), Some(AgentStatus::Running), "{id}");
        assert_eq!(
            ask(&agents, id, 1).await,
            6,
            "{id}: its stored count, then one"
        );
    }
    second.stop().await.unwrap();
}
