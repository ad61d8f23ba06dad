//! An event-sourced counter: each increment is an event in the durable
//! EventStore (appended with optimistic concurrency), the counter's value
//! is rebuilt by replaying its stream, and the step it adds is a setting
//! of the ConfigServer that the counter follows through a subscription.
//!
//! Run it with `cargo run -p mabeam-foundation-services --example event_sourced_counter`.

use std::time::Duration;

use mabeam_foundation_services::{
    ConfigSchema, ConfigServerConfig, ConfigServerService, EventStore, EventStoreConfig,
    EventStoreService, ExpectedVersion, ValueRule,
};
use mabeam_supervision_core::{ApplicationSpec, Event, EventQuery};
use serde_json::json;

const STREAM: &str = "counter-1";

/// Appends one increment of `step`, expecting the stream at `version`:
/// a writer that raced us makes this fail instead of losing an update.
async fn increment(
    store: &EventStore,
    version: u64,
    step: i64,
) -> Result<u64, Box<dyn std::error::Error>> {
    let expected = if version == 0 {
        ExpectedVersion::NoStream
    } else {
        ExpectedVersion::Exact(version)
    };
    let appended = store
        .append_expecting(
            Event::new(STREAM, "incremented", json!({ "by": step })),
            expected,
        )
        .await?; // returns once the event is on disk
    Ok(appended.stream_version)
}

/// The counter's value: its stream replayed from the first event.
async fn replay(store: &EventStore) -> Result<i64, Box<dyn std::error::Error>> {
    let events = store.query(EventQuery::new().stream(STREAM)).await?;
    Ok(events
        .iter()
        .filter_map(|e| e.event.data["by"].as_i64())
        .sum())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?; // the data directory: events.db, config.json

    // Two Foundation services under one application, started in order.
    let events = EventStoreService::new(EventStoreConfig::new(dir.path()));
    let config = ConfigServerService::new(
        ConfigServerConfig::new(dir.path())
            .with_schema(ConfigSchema::new().updatable("counter.step", ValueRule::integer(1, 100)))
            .with_defaults(json!({ "counter": { "step": 1 } })),
    )?;
    let (store, settings) = (events.store(), config.server());
    let app = ApplicationSpec::new("foundation")
        .service(events)
        .service(config)
        .start()
        .await?;

    let mut step_changes = settings.subscribe("counter");
    let mut step = settings.get("counter.step")?.as_i64().unwrap_or(1);
    let mut version = 0;
    for _ in 0..3 {
        version = increment(&store, version, step).await?;
    }
    println!("after 3 increments of {step}: {}", replay(&store).await?);

    // An operator changes the step; the counter hears of it.
    settings.update("counter.step", json!(10)).await?;
    let change = tokio::time::timeout(Duration::from_secs(5), step_changes.next())
        .await?
        .ok_or("the config server stopped")?;
    println!(
        "config: {} changed from {:?} to {:?}",
        change.path, change.old, change.new
    );
    step = change.new.and_then(|v| v.as_i64()).unwrap_or(step);
    version = increment(&store, version, step).await?;

    // A stale writer is refused: the stream moved on since version 1.
    let stale = increment(&store, 1, 1000).await;
    println!("a stale append is refused: {}", stale.is_err());

    // A bad value is refused too, and changes nothing.
    println!(
        "step 0 refused: {}",
        settings.update("counter.step", json!(0)).await.is_err()
    );

    println!(
        "value at version {version}, replayed from the log: {}",
        replay(&store).await?
    );
    app.stop().await?;
    Ok(())
}
