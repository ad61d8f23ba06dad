//! The Prometheus exporter: supervision events of a real supervisor
//! become labelled metrics (exits by reason kind, restarts, gave up); no
//! per-process label unless asked; gauges read on scrape; two exporters
//! side by side share nothing (no global recorder).

use std::{sync::Arc, time::Duration};

use futures::future::BoxFuture;
use mabeam_supervision_core::{
    GaugeReading, GaugeSource, MetaValue, Supervisor, SupervisorFlags, Telemetry, events,
    testkit::{self, TelemetryProbe, TestKit},
};
use mabeam_telemetry::PrometheusExporter;
use parking_lot::Mutex;

const WAIT: Duration = Duration::from_secs(5);

/// The value of the series `series` (name and labels as rendered).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn a_crash_and_restart_become_labelled_metrics() {
    let telemetry = Telemetry::new();
    let exporter = PrometheusExporter::new();
    exporter.attach(&telemetry).unwrap();
    let mut probe = TelemetryProbe::attach(&telemetry, &["supervisor"]);
    let (kit, _lifecycle) = TestKit::new();
    let flags = SupervisorFlags::default()
        .with_name("shop")
        .with_telemetry(telemetry.clone());
    let sup = Supervisor::start(flags, [kit.spec("web"), kit.spec("db")])
        .await
        .unwrap();
    let web = sup.which_children().await.unwrap()[0]
        .state
        .handle()
        .cloned()
        .unwrap();
    testkit::crash(&web).await;
    probe.wait_for(events::CHILD_RESTARTED, WAIT).await.unwrap();

    let text = exporter.render().await;
    assert_eq!(
        value(
            &text,
            r#"mabeam_supervisor_child_started_total{supervisor="shop"}"#
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            r#"mabeam_supervisor_child_exited_total{supervisor="shop",reason="error"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            r#"mabeam_supervisor_child_restarted_total{supervisor="shop"}"#
        ),
        Some(1.0)
    );
    assert!(text.contains("# HELP mabeam_supervisor_child_restarted_total"));
    assert!(text.contains(
        "mabeam_supervisor_child_start_duration_us{supervisor=\"shop\",quantile=\"0.5\"}"
    ));
    assert!(
        !text.contains("child=\""),
        "no per-child label by default:\n{text}"
    );

    sup.stop().await;
    let text = exporter.render().await;
    assert_eq!(
        value(
            &text,
            r#"mabeam_supervisor_child_terminated_total{supervisor="shop",reason="shutdown"}"#
        ),
        Some(2.0),
        "{text}"
    );
}

#[tokio::test]
async fn per_process_labels_only_when_asked() {
    let telemetry = Telemetry::new();
    let exporter = PrometheusExporter::with_per_process_labels(true);
    exporter.attach(&telemetry).unwrap();
    telemetry.emit(
        events::AGENT_MESSAGE_HANDLED,
        &[("duration_us", 12.0)],
        &[
            ("agent", MetaValue::Str("a-1")),
            ("result", MetaValue::Str("ok")),
        ],
    );
    let text = exporter.render().await;
    assert_eq!(
        value(
            &text,
            r#"mabeam_agent_messages_total{agent="a-1",result="ok"}"#
        ),
        Some(1.0),
        "{text}"
    );
}

#[tokio::test]
async fn registry_events_are_labelled_by_namespace_kind_and_result() {
    let telemetry = Telemetry::new();
    let exporter = PrometheusExporter::new();
    exporter.attach(&telemetry).unwrap();
    for ns in ["test:1", "test:2", "production"] {
        telemetry.emit(
            events::REGISTRY_REGISTER,
            &[("count", 1.0)],
            &[
                ("namespace", MetaValue::Str(ns)),
                ("result", MetaValue::Str("ok")),
            ],
        );
    }
    let text = exporter.render().await;
    assert_eq!(
        value(
            &text,
            r#"mabeam_registry_register_total{namespace="test",result="ok"}"#
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            r#"mabeam_registry_register_total{namespace="production",result="ok"}"#
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn two_exporters_share_nothing() {
    let (a, b) = (Telemetry::new(), Telemetry::new());
    let (ea, eb) = (PrometheusExporter::new(), PrometheusExporter::new());
    ea.attach(&a).unwrap();
    eb.attach(&b).unwrap();
    a.emit(
        events::GAVE_UP,
        &[],
        &[
            ("supervisor", MetaValue::Str("x")),
            ("reason", MetaValue::Str("shutdown")),
        ],
    );
    assert!(
        ea.render()
            .await
            .contains("mabeam_supervisor_gave_up_total")
    );
    assert!(
        !eb.render()
            .await
            .contains("mabeam_supervisor_gave_up_total{")
    );
}

struct Names(Arc<Mutex<Vec<(&'static str, usize)>>>);

impl GaugeSource for Names {
    fn read(&self) -> BoxFuture<'_, Vec<GaugeReading>> {
        let readings = self
            .0
            .lock()
            .iter()
            .map(|(ns, n)| GaugeReading::new(&events::GAUGE_REGISTRY_NAMES, [*ns], *n as f64))
            .collect();
        Box::pin(async move { readings })
    }
}

#[tokio::test]
async fn gauges_are_read_at_each_scrape() {
    let exporter = PrometheusExporter::new();
    let state = Arc::new(Mutex::new(vec![("production", 3), ("test", 1)]));
    exporter.add_source(Arc::new(Names(state.clone())));
    let text = exporter.render().await;
    assert_eq!(
        value(&text, r#"mabeam_registry_names{namespace="production"}"#),
        Some(3.0)
    );
    *state.lock() = vec![("production", 5)];
    let text = exporter.render().await;
    assert_eq!(
        value(&text, r#"mabeam_registry_names{namespace="production"}"#),
        Some(5.0)
    );
    assert_eq!(
        value(&text, r#"mabeam_registry_names{namespace="test"}"#),
        Some(0.0)
    );
}
