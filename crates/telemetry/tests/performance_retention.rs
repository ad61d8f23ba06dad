//! The PerformanceMonitor forgets (issue 21, item 9): deregistered agents
//! (gone from the directory it tracks), idle ones, and the oldest past
//! `max_agents`; its process sweeps by itself; every drop is counted in
//! telemetry and in `/metrics`. On tokio's paused clock.

use std::{collections::HashSet, sync::Arc, time::Duration};

use mabeam_supervision_core::{
    AgentId, ApplicationSpec, Clock, ErrorCode, ServiceDef, Telemetry, events,
    testkit::{TelemetryProbe, advance},
};
use mabeam_telemetry::{PerformanceConfig, PerformanceMonitor, PrometheusExporter};
use parking_lot::Mutex;

const WAIT: Duration = Duration::from_secs(5);

fn config() -> PerformanceConfig {
    PerformanceConfig {
        clock: Clock::tokio(),
        max_agents: 3,
        idle_after: Some(Duration::from_secs(600)),
        sweep_every: Duration::from_secs(60),
        ..PerformanceConfig::default()
    }
}

fn sample(monitor: &PerformanceMonitor, agent: &str) {
    monitor.record_message(&AgentId::from(agent), Duration::from_micros(100), true);
}

/// The `(reason, agents)` of the next `performance.agent.forgotten`.
async fn forgotten(probe: &mut TelemetryProbe) -> (String, f64) {
    let event = probe
        .wait_for(events::PERFORMANCE_AGENT_FORGOTTEN, WAIT)
        .await
        .expect("no performance.agent.forgotten within 5 s");
    (
        event.meta_str("reason").unwrap_or_default().to_owned(),
        event.measurement("agents").unwrap_or(-1.0),
    )
}

// An agent the tracked directory no longer knows (deregistered) is
// forgotten at the next sweep; the others stay.
#[tokio::test(start_paused = true)]
async fn a_deregistered_agent_is_forgotten_at_the_sweep() {
    let telemetry = Telemetry::new();
    let mut probe = TelemetryProbe::attach(&telemetry, &["performance"]);
    let monitor = PerformanceMonitor::with_config(telemetry.clone(), config()).unwrap();
    let registered: Arc<Mutex<HashSet<AgentId>>> =
        Arc::new(Mutex::new(["a", "b"].map(AgentId::from).into()));
    let known = registered.clone();
    monitor.track_agents(move |id| known.lock().contains(id));
    sample(&monitor, "a");
    sample(&monitor, "b");
    assert_eq!(monitor.sweep(), 0);
    registered.lock().remove(&AgentId::from("b"));
    assert_eq!(monitor.sweep(), 1);
    assert_eq!(forgotten(&mut probe).await, ("deregistered".into(), 1.0));
    assert!(monitor.stats(&AgentId::from("b")).is_none());
    assert!(monitor.stats(&AgentId::from("a")).is_some());
    assert_eq!(monitor.agent_count(), 1);
}

// No sample for `idle_after`: forgotten at the sweep; a sample keeps an
// agent.
#[tokio::test(start_paused = true)]
async fn an_idle_agent_is_forgotten_at_the_sweep() {
    let telemetry = Telemetry::new();
    let mut probe = TelemetryProbe::attach(&telemetry, &["performance"]);
    let monitor = PerformanceMonitor::with_config(telemetry.clone(), config()).unwrap();
    sample(&monitor, "old");
    sample(&monitor, "busy");
    advance(Duration::from_secs(601)).await;
    sample(&monitor, "busy");
    assert_eq!(monitor.sweep(), 1);
    assert_eq!(forgotten(&mut probe).await, ("idle".into(), 1.0));
    assert!(monitor.stats(&AgentId::from("old")).is_none());
    assert!(monitor.stats(&AgentId::from("busy")).is_some());
}

// Past `max_agents`, a new agent makes room: the agent seen longest ago
// goes, counted.
#[tokio::test(start_paused = true)]
async fn past_max_agents_the_agent_seen_longest_ago_goes() {
    let telemetry = Telemetry::new();
    let mut probe = TelemetryProbe::attach(&telemetry, &["performance"]);
    let monitor = PerformanceMonitor::with_config(telemetry.clone(), config()).unwrap();
    for agent in ["a", "b", "c"] {
        sample(&monitor, agent);
        advance(Duration::from_secs(1)).await;
    }
    sample(&monitor, "a"); // seen again: now "b" is the oldest
    sample(&monitor, "d");
    assert_eq!(forgotten(&mut probe).await, ("capacity".into(), 1.0));
    assert_eq!(monitor.agent_count(), 3);
    assert!(monitor.stats(&AgentId::from("b")).is_none());
    for agent in ["a", "c", "d"] {
        assert!(monitor.stats(&AgentId::from(agent)).is_some(), "{agent}");
    }
}

// The monitor's process sweeps every `sweep_every` by itself, and the
// drops reach `/metrics`.
#[tokio::test(start_paused = true)]
async fn the_process_sweeps_by_itself_and_drops_reach_the_metrics() {
    let telemetry = Telemetry::new();
    let exporter = PrometheusExporter::new();
    exporter.attach(&telemetry).unwrap();
    let mut probe = TelemetryProbe::attach(&telemetry, &["performance"]);
    let monitor = PerformanceMonitor::with_config(telemetry.clone(), config()).unwrap();
    let app = ApplicationSpec::new("mabeam")
        .service(ServiceDef::child(monitor.child_spec("performance_monitor")))
        .start()
        .await
        .unwrap();
    sample(&monitor, "gone");
    advance(Duration::from_secs(660)).await;
    assert_eq!(forgotten(&mut probe).await, ("idle".into(), 1.0));
    assert_eq!(monitor.agent_count(), 0);
    let text = exporter.render().await;
    assert!(
        text.lines()
            .any(|l| l == r#"mabeam_performance_agents_forgotten_total{reason="idle"} 1"#),
        "{text}"
    );
    app.stop().await.unwrap();
}

// Bad settings are typed errors.
#[test]
fn bad_retention_settings_are_refused() {
    for config in [
        PerformanceConfig {
            max_agents: 0,
            ..PerformanceConfig::default()
        },
        PerformanceConfig {
            sweep_every: Duration::ZERO,
            ..PerformanceConfig::default()
        },
        PerformanceConfig {
            idle_after: Some(Duration::ZERO),
            ..PerformanceConfig::default()
        },
    ] {
        let error = PerformanceMonitor::with_config(Telemetry::disabled(), config).unwrap_err();
        assert_eq!(error.code(), 4004);
    }
}
