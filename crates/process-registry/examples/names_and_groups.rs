//! Names and groups with a listener: two actors take names and join a
//! group, a listener prints every change, one actor stops (its name and
//! membership go with it), and a restarted holder is awaited with
//! `wait_for`.
//!
//! Run it with `cargo run -p mabeam-process-registry --example names_and_groups`.

use std::time::Duration;

use kameo::prelude::*;
use mabeam_process_registry::ProcessRegistry;
use mabeam_supervision_core::{Namespace, ProcessHandle, RegistryEvent, Telemetry, Topic};
use serde_json::json;

/// A process to name; it does nothing else.
#[derive(Actor)]
struct Cache;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let registry = ProcessRegistry::new(Telemetry::disabled());
    let ns = Namespace::Production;

    // The listener: every change of the namespace, in the order applied.
    let mut changes = registry.subscribe_to(&ns, Topic::All);
    let listener = tokio::spawn(async move {
        let mut seen = 0;
        while let Ok(event) = changes.recv().await {
            match event {
                RegistryEvent::Registered { name, metadata, .. } => {
                    println!("listener: {name} registered ({metadata})")
                }
                RegistryEvent::Unregistered { name, exit, .. } => {
                    println!("listener: {name} unregistered (exit: {exit:?})")
                }
                RegistryEvent::Joined { group, .. } => println!("listener: joined {group}"),
                RegistryEvent::Left { group, exit, .. } => {
                    println!("listener: left {group} (exit: {exit:?})")
                }
                _ => {}
            }
            seen += 1;
            if seen == 6 {
                break; // two names, two joins, one name and one membership gone
            }
        }
    });

    let eu = ProcessHandle::spawn::<Cache>(Cache).await?;
    let us = ProcessHandle::spawn::<Cache>(Cache).await?;
    registry.register(&ns, "cache-eu", eu.clone(), json!({"region": "eu"}))?;
    registry.register(&ns, "cache-us", us.clone(), json!({"region": "us"}))?;
    registry.join(&ns, "caches", eu.clone())?;
    registry.join(&ns, "caches", us.clone())?;
    println!("caches: {} members", registry.members(&ns, "caches").len());

    // A stopped process holds nothing: its name is free at once.
    eu.stop().await;
    assert!(registry.lookup(&ns, "cache-eu").is_none());
    println!(
        "after the stop: {} member(s)",
        registry.members(&ns, "caches").len()
    );
    tokio::time::timeout(Duration::from_secs(5), listener).await??;

    // Someone restarts it; a caller waits for the name instead of polling.
    let waiter = {
        let registry = registry.clone();
        tokio::spawn(async move {
            registry
                .wait_for(&ns, "cache-eu", Duration::from_secs(5))
                .await
        })
    };
    let again = ProcessHandle::spawn::<Cache>(Cache).await?;
    registry.register(&ns, "cache-eu", again.clone(), json!({"region": "eu"}))?;
    let found = waiter.await?.ok_or("cache-eu did not come back in time")?;
    assert_eq!(found.id(), again.id());
    println!("cache-eu is back: {:?}", found.id());

    again.stop().await;
    us.stop().await;
    Ok(())
}
