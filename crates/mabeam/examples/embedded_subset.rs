//! An embedding program: a custom subset of the services (the agent layer
//! and the rate limiter, plus what they need), a service of one's own in
//! the Foundation tree, an agent of one's own kind, the live health and
//! tree, then an orderly stop. One dependency (`mabeam`) is enough: it
//! re-exports its crates and its prelude holds the agent vocabulary, and
//! its features leave out the groups this program does not use:
//!
//! ```toml
//! mabeam = { version = "0.1", default-features = false, features = ["foundation", "agents"] }
//! ```
//!
//! (coordination and economics are then not compiled; `Cargo.toml` gives
//! this example those `required-features`). Run it with `cargo run -p
//! mabeam --example embedded_subset`, or with only what it needs: `cargo
//! run -p mabeam --no-default-features --features foundation,agents
//! --example embedded_subset`.

use kameo::prelude::*;
use mabeam::{System, Tree};
use mabeam::{prelude::*, seed};

/// A greeter agent: answers a name with a greeting.
struct Greeter {
    greeting: String,
}

impl Agent for Greeter {
    type Args = String;
    type Message = String;
    type Reply = String;
    type Checkpoint = ();

    async fn on_start(greeting: String, _: Option<()>) -> Result<Self, StartError> {
        Ok(Greeter { greeting })
    }

    async fn handle(&mut self, name: String, _: &mut AgentContext<'_>) -> String {
        format!("{}, {name}!", self.greeting)
    }
}

/// A service of one's own: a kameo actor supervised in the Foundation tree.
#[derive(Actor)]
struct Cache;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?; // the event store's files live here
    let system = System::builder()
        .data_dir(dir.path())
        .only([seed::AGENT_REGISTRY, seed::RATE_LIMITER])
        .service(
            Tree::Foundation,
            ServiceDef::child(ChildSpec::actor::<Cache>("cache", || Cache)),
        )
        .build()?;
    println!("came along as dependencies: {:?}", system.added());
    system.start().await?; // Foundation, then MABEAM

    let agents = system
        .agents()
        .and_then(|agents| agents.registry())
        .ok_or("the agent layer is not running")?;
    agents.register_agent(
        "greeter-1",
        AgentConfig::new::<Greeter>("greeter", "Hello".to_owned()),
    )?;
    agents.start_agent("greeter-1").await?;
    let reply = agents
        .agent_ref::<Greeter>("greeter-1")?
        .ask("Ada".to_owned())
        .await?;
    println!("greeter-1 says: {reply}");

    // Every running service and agent is registered under its name.
    let registered: Vec<_> = system
        .registry()
        .list(system.namespace())
        .into_iter()
        .map(|(name, ..)| name)
        .collect();
    println!("registered: {registered:?}");
    let health = system.health().await;
    println!(
        "healthy: {} ({} services)",
        health.healthy,
        health.services.len()
    );

    system.stop().await?; // MABEAM, then Foundation, each in reverse order
    println!(
        "stopped; names left: {}",
        system.registry().count(system.namespace())
    );
    Ok(())
}
