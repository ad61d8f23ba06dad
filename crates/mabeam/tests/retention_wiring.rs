//! Retention as the umbrella wires it (issue 21, items 6 and 9): the
//! system's PerformanceMonitor tracks the agent directory, so its sweep
//! drops the figures of an agent the registry no longer knows; the
//! system's EventStore reports its prunes on the system's telemetry, so
//! they reach `/metrics`.

use std::time::Duration;

use mabeam::SystemBuilder;
use mabeam_agent_supervisor::{Agent, AgentConfig, AgentContext};
use mabeam_supervision_core::{AgentId, Namespace};

/// An agent that does nothing.
struct Idle;

impl Agent for Idle {
    type Args = ();
    type Message = ();
    type Reply = ();
    type Checkpoint = ();

    async fn on_start(_: (), _: Option<()>) -> Result<Self, mabeam_supervision_core::StartError> {
        Ok(Idle)
    }

    async fn handle(&mut self, (): (), _: &mut AgentContext<'_>) {}
}

#[tokio::test]
async fn a_deregistered_agent_leaves_the_performance_monitor() {
    let dir = tempfile::tempdir().unwrap();
    let system = SystemBuilder::new()
        .namespace(Namespace::unique_test())
        .data_dir(dir.path())
        .build()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), system.start())
        .await
        .expect("the system did not start within 30 s")
        .unwrap();
    let agents = system
        .agents()
        .and_then(|agents| agents.registry())
        .unwrap();
    for id in ["kept", "gone"] {
        agents
            .register_agent(id, AgentConfig::new::<Idle>("idle", ()))
            .unwrap();
        system.performance().unwrap().record_message(
            &AgentId::from(id),
            Duration::from_micros(50),
            true,
        );
    }
    let performance = system.performance().unwrap();
    assert_eq!(performance.sweep(), 0, "a registered agent was forgotten");
    agents.deregister_agent("gone").await.unwrap();
    assert_eq!(performance.sweep(), 1);
    assert!(performance.stats(&AgentId::from("gone")).is_none());
    assert!(performance.stats(&AgentId::from("kept")).is_some());
    tokio::time::timeout(Duration::from_secs(30), system.stop())
        .await
        .expect("the system did not stop within 30 s")
        .unwrap();
}

// The system's EventStore reports its prunes on the system's telemetry,
// so they reach `/metrics` (issue 21, item 6).
#[tokio::test]
async fn the_event_store_prunes_reach_the_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let system = SystemBuilder::new()
        .namespace(Namespace::unique_test())
        .data_dir(dir.path())
        .build()
        .unwrap();
    let exporter = mabeam_telemetry::PrometheusExporter::new();
    exporter.attach(system.telemetry()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), system.start())
        .await
        .expect("the system did not start within 30 s")
        .unwrap();
    let store = system.event_store().unwrap();
    let before = store.stats().await.unwrap().events;
    for i in 0..3 {
        store
            .append(mabeam_supervision_core::Event::new(
                "test",
                "tick",
                serde_json::json!(i),
            ))
            .await
            .unwrap();
    }
    let pruned = store.prune_before(u64::MAX).await.unwrap();
    assert!(pruned >= 3 && pruned >= before, "pruned {pruned}");
    let text = exporter.render().await;
    let series = format!(r#"mabeam_event_store_pruned_events_total{{reason="request"}} {pruned}"#);
    assert!(
        text.lines().any(|l| l == series),
        "{series} not in:\n{text}"
    );
    tokio::time::timeout(Duration::from_secs(30), system.stop())
        .await
        .expect("the system did not stop within 30 s")
        .unwrap();
}
