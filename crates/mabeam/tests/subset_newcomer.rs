//! What a newcomer composing a subset meets (issue 26): the error for the
//! agent layer without a data directory names its real dependency, the
//! event store; the umbrella re-exports its crates and its prelude holds
//! what writing an agent takes.

use mabeam::{MabeamError, SystemBuilder, seed};
use mabeam_supervision_core::{ErrorCode, Namespace};

fn builder() -> SystemBuilder {
    SystemBuilder::new().namespace(Namespace::unique_test())
}

// Asking for the agent registry alone, without a data directory: the
// error says the event store is what needs one.
#[test]
fn the_agent_layer_without_a_data_dir_names_the_event_store() {
    let err = builder().only([seed::AGENT_REGISTRY]).build().unwrap_err();
    assert_eq!(err.code(), 8008, "{err}");
    let message = err.to_string();
    assert!(message.contains("event_store"), "{message}");
    assert!(message.contains("agent_registry"), "{message}");
}

// The event store itself keeps its files: that error stays as it was.
#[test]
fn the_event_store_without_a_data_dir_says_it_keeps_files() {
    let err = builder().only([seed::EVENT_STORE]).build().unwrap_err();
    assert!(matches!(&err, MabeamError::NoDataDir(n) if &**n == seed::EVENT_STORE));
    assert_eq!(err.code(), 8005);
}

// One dependency is enough: the crates and the agent vocabulary are
// reachable through `mabeam`.
#[test]
fn the_umbrella_reexports_what_a_subset_program_names() {
    use mabeam::prelude::{Agent, AgentConfig, AgentContext, Event, EventQuery, StartError};

    struct Echo;
    impl Agent for Echo {
        type Args = ();
        type Message = u8;
        type Reply = u8;
        type Checkpoint = ();
        async fn on_start((): (), _: Option<()>) -> Result<Self, StartError> {
            Ok(Echo)
        }
        async fn handle(&mut self, n: u8, _: &mut AgentContext<'_>) -> u8 {
            n
        }
    }
    let config: AgentConfig = AgentConfig::new::<Echo>("echo", ());
    assert!(config.validate().is_ok());
    let _ = Event::new("s", "k", serde_json::Value::Null);
    let _ = EventQuery::new();
    let _: mabeam::process_registry::ProcessRegistry =
        mabeam::process_registry::ProcessRegistry::new(mabeam::supervision_core::Telemetry::new());
    let _ = mabeam::agent_supervisor::MAX_ID_BYTES;
}

// Every accessor of a service that can be left out says whether it is in
// the trees: a subset hands out no handle to a service it left out (the
// event store's used to be a dead handle whose calls all failed).
#[tokio::test]
async fn accessors_of_services_left_out_of_a_subset_are_none() {
    let system = builder()
        .only([seed::SERVICE_REGISTRY])
        .build()
        .expect("the service registry needs no data directory");
    assert!(
        system.event_store().is_none(),
        "the event store was left out"
    );
    assert!(system.rate_limiter().is_none());
    assert!(system.agents().is_none());
    assert!(system.coordinator().is_none());
    assert!(system.auctioneer().is_none());
    assert!(system.telemetry_service().is_none());
    assert!(system.performance().is_none());
    assert!(system.config().is_none());
    assert!(system.connections().is_none());
    assert!(system.has_service(seed::PROCESS_REGISTRY));
    assert!(!system.has_service(seed::EVENT_STORE));

    let dir = tempfile::tempdir().unwrap();
    let full = builder().data_dir(dir.path()).build().unwrap();
    assert!(full.event_store().is_some());
    assert!(full.rate_limiter().is_some());
    assert!(full.agents().is_some());
    assert!(full.coordinator().is_some());
    assert!(full.auctioneer().is_some());
    assert!(full.telemetry_service().is_some());
    assert!(full.performance().is_some());
    assert!(full.config().is_some());
    assert!(full.connections().is_none(), "no cluster was given");
}
