//! Spans: start, then stop with a duration, or exception with a reason
//! (an error, or `dropped` when the work panicked or was cancelled).

use std::time::Duration;

use mabeam_supervision_core::{
    Clock, MetaValue, Telemetry,
    testkit::{TelemetryProbe, advance},
};
use mabeam_telemetry::Span;

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test(start_paused = true)]
async fn a_span_reports_start_and_stop_with_its_duration() {
    let telemetry = Telemetry::new();
    let mut probe = TelemetryProbe::attach(&telemetry, &["import"]);
    let clock = Clock::tokio();
    let span = Span::start(
        &telemetry,
        &clock,
        &["import"],
        &[("file", MetaValue::Str("a.csv"))],
    );
    advance(Duration::from_millis(250)).await;
    span.stop();
    let start = probe.next(WAIT).await.unwrap();
    assert!(start.is(&["import", "start"]));
    let stop = probe.next(WAIT).await.unwrap();
    assert!(stop.is(&["import", "stop"]));
    assert_eq!(stop.measurement("duration_us"), Some(250_000.0));
    assert_eq!(stop.meta_str("file"), Some("a.csv"));
}

#[tokio::test(start_paused = true)]
async fn run_reports_an_error_as_an_exception() {
    let telemetry = Telemetry::new();
    let mut probe = TelemetryProbe::attach(&telemetry, &["job"]);
    let clock = Clock::tokio();
    let result: Result<(), String> = Span::run(&telemetry, &clock, &["job"], &[], async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        Err("disk full".to_owned())
    })
    .await;
    assert!(result.is_err());
    probe.wait_for(&["job", "start"], WAIT).await.unwrap();
    let exception = probe.wait_for(&["job", "exception"], WAIT).await.unwrap();
    assert_eq!(exception.meta_str("reason"), Some("disk full"));
    assert_eq!(exception.measurement("duration_us"), Some(10_000.0));
    let ok: Result<u8, String> =
        Span::run(&telemetry, &clock, &["job"], &[], async { Ok(1) }).await;
    assert_eq!(ok, Ok(1));
    probe.wait_for(&["job", "stop"], WAIT).await.unwrap();
}

#[tokio::test]
async fn a_dropped_span_reports_an_exception() {
    let telemetry = Telemetry::new();
    let mut probe = TelemetryProbe::attach(&telemetry, &["work"]);
    let clock = Clock::system();
    let task = tokio::spawn({
        let telemetry = telemetry.clone();
        async move {
            let _span = Span::start(&telemetry, &clock, &["work"], &[]);
            panic!("work failed");
        }
    });
    assert!(task.await.is_err());
    let exception = probe.wait_for(&["work", "exception"], WAIT).await.unwrap();
    assert_eq!(exception.meta_str("reason"), Some("dropped"));
}
