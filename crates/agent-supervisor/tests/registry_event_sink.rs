//! Issue 21 item 9 (the agent layer's part): status changes go to the
//! event sink through a bounded queue, and every change not recorded (the
//! queue full, or the write failed) is counted in telemetry
//! (`agent.events.dropped`, exported as
//! `mabeam_agent_events_dropped_total`).

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use common::{setup_with, worker};
use futures::future::BoxFuture;
use mabeam_supervision_core::{
    Event, EventSeq, EventSink, EventSinkError, events, testkit::TelemetryProbe,
};

/// A sink whose writes never complete: the queue to it fills up.
struct Stalled;

impl EventSink for Stalled {
    fn record(&self, _: Event) -> BoxFuture<'_, Result<EventSeq, EventSinkError>> {
        Box::pin(std::future::pending())
    }
}

/// A sink that refuses every write, counting them.
#[derive(Default)]
struct Refusing(AtomicUsize);

impl EventSink for Refusing {
    fn record(&self, _: Event) -> BoxFuture<'_, Result<EventSeq, EventSinkError>> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Box::pin(async { Err(EventSinkError::Rejected("disk full".into())) })
    }
}

#[tokio::test]
async fn a_full_queue_to_the_sink_drops_and_counts_status_changes() {
    let s = setup_with(|o| o.with_event_sink(Arc::new(Stalled)).with_event_buffer(2)).await;
    let mut probe = TelemetryProbe::attach(&s.telemetry, events::AGENT_EVENTS_DROPPED);
    // registered, starting, running, stopping, stopped: five changes for
    // a queue of two, one of which the recorder task holds.
    s.agents.register_agent("a", worker("k")).unwrap();
    s.agents.start_agent("a").await.unwrap();
    s.agents.stop_agent("a").await.unwrap();
    let dropped = probe
        .wait_for(events::AGENT_EVENTS_DROPPED, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(dropped.measurement("count"), Some(1.0));
    assert_eq!(dropped.meta_str("reason"), Some("full"));
}

#[tokio::test]
async fn a_failed_write_to_the_sink_is_counted() {
    let sink = Arc::new(Refusing::default());
    let s = setup_with(|o| o.with_event_sink(sink.clone())).await;
    let mut probe = TelemetryProbe::attach(&s.telemetry, events::AGENT_EVENTS_DROPPED);
    s.agents.register_agent("a", worker("k")).unwrap();
    let dropped = probe
        .wait_for(events::AGENT_EVENTS_DROPPED, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(dropped.meta_str("reason"), Some("failed"));
    assert_eq!(sink.0.load(Ordering::Relaxed), 1);
}

#[test]
fn the_drops_are_declared_as_metrics() {
    for event in [events::AGENT_EVENTS_DROPPED, events::AGENT_MESSAGES_DROPPED] {
        assert!(
            events::METRICS.iter().any(|decl| decl.event == event),
            "{event:?} is not exported"
        );
    }
}
