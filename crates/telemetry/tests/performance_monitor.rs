//! The PerformanceMonitor: per-agent statistics over a bounded history,
//! throughput over a window (paused clock), thresholds raising alerts that
//! clear when a later sample is back within bounds, fed by agent
//! telemetry, JSON and CSV export, and the AgentLoad contract.

use std::time::Duration;

use mabeam_supervision_core::{
    AgentId, AgentLoad, Clock, ErrorCode, MetaValue, Telemetry, events,
    testkit::{TelemetryProbe, advance},
};
use mabeam_telemetry::{
    ALERT_CLEARED, ALERT_RAISED, Bound, PerfMetric, PerformanceConfig, PerformanceMonitor,
};

const WAIT: Duration = Duration::from_secs(5);

fn us(v: u64) -> Duration {
    Duration::from_micros(v)
}

fn config(history: usize) -> PerformanceConfig {
    PerformanceConfig {
        history,
        window: Duration::from_secs(10),
        clock: Clock::tokio(),
        ..PerformanceConfig::default()
    }
}

#[tokio::test(start_paused = true)]
async fn statistics_over_a_bounded_history() {
    let monitor = PerformanceMonitor::with_config(Telemetry::disabled(), config(100)).unwrap();
    let agent = AgentId::from("a");
    for v in 1..=200 {
        monitor.record_message(&agent, us(v), v % 10 != 0);
    }
    let p = monitor.stats(&agent).unwrap();
    assert_eq!((p.messages, p.errors), (200, 20));
    // Only the last 100 samples (101..=200) are kept.
    assert_eq!(p.latency_us.count, 100);
    assert_eq!((p.latency_us.min, p.latency_us.max), (101.0, 200.0));
    assert_eq!((p.latency_us.p50, p.latency_us.p99), (150.0, 199.0));
    assert_eq!(p.latency_us.mean, 150.5);
    assert!((p.error_rate - 0.1).abs() < 1e-9);
    monitor.record_memory(&agent, 4096);
    monitor.record_memory(&agent, 8192);
    assert_eq!(monitor.stats(&agent).unwrap().memory_bytes.mean, 6144.0);
    assert!(monitor.stats(&AgentId::from("nobody")).is_none());
}

#[tokio::test(start_paused = true)]
async fn throughput_counts_the_window() {
    let monitor = PerformanceMonitor::with_config(Telemetry::disabled(), config(1000)).unwrap();
    let agent = AgentId::from("a");
    for _ in 0..50 {
        monitor.record_message(&agent, us(5), true);
    }
    assert_eq!(monitor.stats(&agent).unwrap().throughput_per_s, 5.0);
    advance(Duration::from_secs(11)).await;
    for _ in 0..10 {
        monitor.record_message(&agent, us(5), true);
    }
    assert_eq!(monitor.load(&agent).unwrap().throughput_per_s, 1.0);
}

#[tokio::test]
async fn an_alert_is_raised_then_cleared_by_a_later_sample() {
    let telemetry = Telemetry::new();
    let mut probe = TelemetryProbe::attach(&telemetry, &["performance"]);
    let monitor = PerformanceMonitor::new(telemetry.clone());
    monitor
        .set_threshold(PerfMetric::LatencyUs, Bound::Above(1000.0))
        .unwrap();
    monitor
        .set_threshold(PerfMetric::MemoryBytes, Bound::Above(1e6))
        .unwrap();
    let agent = AgentId::from("slow");
    monitor.record_message(&agent, us(500), true);
    assert!(monitor.active_alerts().is_empty());
    monitor.record_message(&agent, us(5000), true);
    monitor.record_message(&agent, us(7000), true); // still raised: no second event
    let raised = probe.wait_for(ALERT_RAISED, WAIT).await.unwrap();
    assert_eq!(raised.meta_str("agent"), Some("slow"));
    assert_eq!(raised.meta_str("metric"), Some("latency_us"));
    assert_eq!(raised.measurement("value"), Some(5000.0));
    assert_eq!(monitor.active_alerts().len(), 1);

    monitor.record_message(&agent, us(800), true);
    let cleared = probe.next(WAIT).await.unwrap();
    assert!(cleared.is(ALERT_CLEARED), "{cleared:?}");
    assert_eq!(cleared.measurement("value"), Some(800.0));
    assert!(monitor.active_alerts().is_empty());

    monitor.record_memory(&agent, 2_000_000);
    assert_eq!(monitor.active_alerts()[0].metric, PerfMetric::MemoryBytes);
    monitor.clear_threshold(PerfMetric::MemoryBytes);
    assert!(monitor.active_alerts().is_empty());
    assert!(probe.wait_for(ALERT_CLEARED, WAIT).await.is_ok());
}

#[test]
fn bad_thresholds_and_settings_are_refused() {
    let monitor = PerformanceMonitor::new(Telemetry::disabled());
    for bound in [
        Bound::Above(f64::NAN),
        Bound::Below(-1.0),
        Bound::Above(f64::INFINITY),
    ] {
        let err = monitor
            .set_threshold(PerfMetric::ErrorRate, bound)
            .unwrap_err();
        assert_eq!(err.code(), 4003);
    }
    assert!(monitor.thresholds().is_empty());
    let zero = PerformanceConfig {
        history: 0,
        ..PerformanceConfig::default()
    };
    assert_eq!(
        PerformanceMonitor::with_config(Telemetry::disabled(), zero)
            .unwrap_err()
            .code(),
        4004
    );
}

#[tokio::test]
async fn fed_by_agent_telemetry_through_its_process() {
    let telemetry = Telemetry::new();
    let monitor = PerformanceMonitor::new(telemetry.clone());
    let process = monitor
        .child_spec("performance_monitor")
        .start()
        .await
        .unwrap();
    let emit = |agent: &str, us: f64, result: &str| {
        telemetry.emit(
            events::AGENT_MESSAGE_HANDLED,
            &[("duration_us", us)],
            &[
                ("agent", MetaValue::Str(agent)),
                ("result", MetaValue::Str(result)),
            ],
        )
    };
    emit("a", 100.0, "ok");
    emit("a", 300.0, "error");
    emit("b", 50.0, "ok");
    telemetry.emit(
        events::AGENT_MEMORY,
        &[("bytes", 2048.0)],
        &[("agent", MetaValue::Str("b"))],
    );
    telemetry.emit(events::AGENT_MESSAGE_HANDLED, &[("duration_us", 1.0)], &[]); // no agent
    let a = monitor.load(&AgentId::from("a")).unwrap();
    assert_eq!((a.samples, a.error_rate), (2, 0.5));
    assert_eq!(a.latency_mean, us(200));
    assert_eq!(
        monitor.stats(&AgentId::from("b")).unwrap().memory_bytes.max,
        2048.0
    );
    assert_eq!(monitor.all().len(), 2);

    process.stop().await;
    emit("c", 1.0, "ok");
    assert!(monitor.stats(&AgentId::from("c")).is_none());
}

#[test]
fn json_and_csv_export() {
    let monitor = PerformanceMonitor::new(Telemetry::disabled());
    monitor.record_message(&AgentId::from("plain"), us(10), true);
    monitor.record_message(&AgentId::from("with,comma \"q\""), us(30), false);
    let json = monitor.to_json();
    assert_eq!(json["agents"].as_array().unwrap().len(), 2);
    assert_eq!(json["agents"][0]["agent"], "plain");
    assert_eq!(json["agents"][0]["latency_us"]["p50"], 10.0);
    let csv = monitor.to_csv();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(lines[0].starts_with("agent,messages,errors,"));
    assert!(lines[1].starts_with("plain,1,0,"));
    assert!(
        lines[2].starts_with("\"with,comma \"\"q\"\"\",1,1,"),
        "{}",
        lines[2]
    );
}
