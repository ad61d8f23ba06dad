//! Metrics exported as Prometheus text: a supervisor emits telemetry as
//! children start, crash and restart; the `PrometheusExporter` turns those
//! events into labelled metrics, and the `TelemetryService` keeps one's
//! own counters beside them. A node serves the rendered text on `/metrics`.
//!
//! Run it with `cargo run -p mabeam-telemetry --example prometheus_metrics`.

use std::time::Duration;

use kameo::prelude::*;
use mabeam_supervision_core::{ChildSpec, Supervisor, SupervisorFlags, Telemetry, events};
use mabeam_telemetry::{PrometheusExporter, TelemetryService};
use tokio::sync::mpsc;

/// A worker that fails when told to.
#[derive(Actor)]
struct Worker;

/// Makes the worker fail.
#[derive(Debug)]
struct Crash;

/// The failure a `Crash` ends in.
#[derive(Debug)]
struct Failed;

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("lost its socket")
    }
}

impl std::error::Error for Failed {}

impl Message<Crash> for Worker {
    type Reply = Result<(), Failed>;

    async fn handle(&mut self, _: Crash, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
        Err(Failed)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // One telemetry handle for the whole program; the exporter listens on it.
    let telemetry = Telemetry::new();
    let exporter = PrometheusExporter::new();
    exporter.attach(&telemetry)?;
    let service = TelemetryService::new(telemetry.clone());

    let (restarts, mut restarted) = mpsc::unbounded_channel();
    telemetry.attach("restarts", &[], move |event| {
        if event.name == events::CHILD_RESTARTED {
            let _ = restarts.send(());
        }
    })?;

    let flags = SupervisorFlags::default()
        .with_name("shop")
        .with_telemetry(telemetry);
    let shop = Supervisor::start(flags, [ChildSpec::actor::<Worker>("web", || Worker)]).await?;
    let web = shop.which_children().await?[0]
        .state
        .handle()
        .and_then(|h| h.downcast::<Worker>())
        .ok_or("web is not running")?;
    web.tell(Crash).await?;
    tokio::time::timeout(Duration::from_secs(5), restarted.recv()).await?;

    // One's own metrics, kept by the service.
    service.increment("orders_placed", &[("region", "eu")], 3.0)?;
    println!("orders placed (service): {:?}", service.snapshot().counters);

    let text = exporter.render().await;
    println!("# the supervisor's metrics, as Prometheus scrapes them:");
    for line in text.lines().filter(|l| l.starts_with("mabeam_supervisor")) {
        println!("{line}");
    }
    shop.stop().await;
    Ok(())
}
