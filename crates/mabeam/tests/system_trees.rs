//! The two trees: the seed's supervision tree test (start both, with
//! every service and agents running, stop them, every process stopped and
//! the namespace's count 0), start and stop order, subsets with their
//! dependencies said back (across the trees), one's own services, health,
//! the live tree and its gauges.

use std::time::Duration;

use kameo::Actor;
use mabeam::{
    FoundationApp, MabeamApp, MabeamError, ProcessKind, System, SystemBuilder, Tree, seed,
};
use mabeam_agent_supervisor::{Agent, AgentConfig, AgentContext, EnvelopeError};
use mabeam_coordination::{Proposal, Rule};
use mabeam_supervision_core::{
    AgentSelection, AgentStatus, ChildSpec, Envelope, ErrorCode, EventQuery, GaugeSource,
    Namespace, ServiceDef, Telemetry, events, testkit::TelemetryProbe,
};

const WAIT: Duration = Duration::from_secs(10);

fn test_system() -> SystemBuilder {
    SystemBuilder::new().namespace(Namespace::unique_test())
}

/// A whole system (every service) with a data directory of its own.
fn whole_system() -> (tempfile::TempDir, SystemBuilder) {
    let dir = tempfile::tempdir().unwrap();
    let builder = test_system().data_dir(dir.path());
    (dir, builder)
}

/// Every top-level service of both trees, in start order.
const START_ORDER: [&str; 14] = [
    seed::PROCESS_REGISTRY,
    seed::SERVICE_REGISTRY,
    seed::TELEMETRY_SERVICE,
    seed::CONFIG_SERVER,
    seed::EVENT_STORE,
    seed::RATE_LIMITER,
    seed::TASK_SUPERVISOR,
    seed::HEALTH_MONITOR,
    seed::SERVICE_MONITOR,
    seed::CORE,
    seed::AGENT_SUPERVISOR,
    seed::AGENT_REGISTRY,
    seed::COORDINATION_SUPERVISOR,
    seed::PERFORMANCE_MONITOR,
];

/// A test agent: votes yes on every proposal, counts its messages.
struct Voter;

impl Agent for Voter {
    type Args = ();
    type Message = ();
    type Reply = ();
    type Checkpoint = ();

    async fn on_start(_: (), _: Option<()>) -> Result<Self, mabeam_supervision_core::StartError> {
        Ok(Voter)
    }

    async fn handle(&mut self, (): (), _: &mut AgentContext<'_>) {}

    async fn handle_envelope(
        &mut self,
        envelope: Envelope,
        _: &mut AgentContext<'_>,
    ) -> Result<serde_json::Value, EnvelopeError> {
        match &*envelope.protocol {
            "coordination.vote" => Ok(serde_json::json!({"vote": "yes"})),
            _ => Err(EnvelopeError::Unsupported),
        }
    }
}

#[tokio::test]
async fn start_both_trees_stop_them_and_nothing_is_left() {
    let (_dir, builder) = whole_system();
    let system = builder.build().unwrap();
    system.start().await.unwrap();
    let ns = *system.namespace();
    // Agents too: each running one is registered as `agent:<id>`.
    let agents = system
        .agents()
        .and_then(|agents| agents.registry())
        .unwrap();
    for i in 0..3 {
        let id = format!("voter-{i}");
        agents
            .register_agent(id.as_str(), AgentConfig::new::<Voter>("voter", ()))
            .unwrap();
        agents.start_agent(&id).await.unwrap();
    }
    let registered = system.registry().list(&ns);
    let mut names: Vec<String> = registered.iter().map(|(n, _, _)| n.to_string()).collect();
    names.sort();
    let mut expected: Vec<String> = START_ORDER
        .iter()
        .chain(&[seed::COORDINATION, seed::ECONOMICS, seed::LOAD_BALANCER])
        .map(|s| s.to_string())
        .chain((0..3).map(|i| format!("agent:voter-{i}")))
        .collect();
    expected.sort();
    assert_eq!(names, expected);
    let handles: Vec<_> = registered.into_iter().map(|(_, h, _)| h).collect();
    let supervisors = [
        system.foundation().supervisor().unwrap(),
        system.mabeam().supervisor().unwrap(),
    ];
    let health = system.health().await;
    assert!(health.healthy, "{health:?}");

    system.stop().await.unwrap();
    for handle in &handles {
        assert!(!handle.is_alive(), "{} still runs", handle.type_name());
    }
    for sup in &supervisors {
        assert!(!sup.handle().is_alive());
    }
    assert_eq!(system.registry().count(&ns), 0);
    // Every agent was stopped through the registry, not killed with its
    // supervisor.
    for i in 0..3 {
        assert_eq!(
            agents.status(&format!("voter-{i}")),
            Some(AgentStatus::Stopped)
        );
    }
}

#[tokio::test]
async fn foundation_starts_first_and_stops_last() {
    let telemetry = Telemetry::new();
    let mut probe = TelemetryProbe::attach(&telemetry, &["supervisor", "child"]);
    let (_dir, builder) = whole_system();
    let system = builder.telemetry(telemetry).build().unwrap();
    system.start().await.unwrap();
    system.stop().await.unwrap();
    let events = probe.drain();
    let order = |name: &[&str]| -> Vec<String> {
        events
            .iter()
            .filter(|e| e.is(name))
            .filter(|e| {
                matches!(e.meta_str("supervisor"), Some(s) if s == FoundationApp::NAME || s == MabeamApp::NAME)
            })
            .map(|e| e.meta_str("child").unwrap().to_owned())
            .collect()
    };
    assert_eq!(order(events::CHILD_STARTED), START_ORDER);
    let mut reverse = START_ORDER;
    reverse.reverse();
    assert_eq!(order(events::CHILD_TERMINATED), reverse);
}

#[tokio::test]
async fn a_subset_brings_its_dependencies_and_says_so() {
    let system = test_system()
        .only([seed::SERVICE_REGISTRY, seed::PERFORMANCE_MONITOR])
        .build()
        .unwrap();
    assert_eq!(system.added(), [seed::PROCESS_REGISTRY.into()]);
    assert_eq!(
        system.foundation().services(),
        [seed::PROCESS_REGISTRY.into(), seed::SERVICE_REGISTRY.into()]
    );
    assert_eq!(
        system.mabeam().services(),
        [seed::PERFORMANCE_MONITOR.into()]
    );

    let err = test_system().only(["no_such_service"]).build().unwrap_err();
    assert!(matches!(&err, MabeamError::UnknownService(n) if &**n == "no_such_service"));
    assert_eq!(err.code(), 8001);

    // Across the trees: the agent registry needs its supervisor (MABEAM)
    // and records to the event store (Foundation), which needs a data
    // directory.
    let err = test_system()
        .only([seed::AGENT_REGISTRY])
        .build()
        .unwrap_err();
    assert!(matches!(&err, MabeamError::NeedsEventStore(n) if &**n == seed::AGENT_REGISTRY));
    assert_eq!(err.code(), 8008);
    let (_dir, builder) = whole_system();
    let system = builder.only([seed::AGENT_REGISTRY]).build().unwrap();
    assert_eq!(
        system.added(),
        [seed::EVENT_STORE.into(), seed::AGENT_SUPERVISOR.into()]
    );
    assert_eq!(system.foundation().services(), [seed::EVENT_STORE.into()]);
    assert_eq!(
        system.mabeam().services(),
        [seed::AGENT_SUPERVISOR.into(), seed::AGENT_REGISTRY.into()]
    );
    system.start().await.unwrap();
    assert!(system.agents().is_some_and(|agents| agents.is_running()));
    system.stop().await.unwrap();
    assert_eq!(system.registry().count(system.namespace()), 0);
}

#[derive(Actor)]
struct Mine;

#[tokio::test]
async fn own_services_join_a_tree_after_what_they_need() {
    let system = test_system()
        .only([seed::TELEMETRY_SERVICE])
        .service(
            Tree::Mabeam,
            ServiceDef::child(ChildSpec::actor::<Mine>("mine", || Mine)),
        )
        .build()
        .unwrap();
    assert!(system.added().is_empty());
    system.start().await.unwrap();
    let tree = system.tree().await;
    let mabeam = &tree.applications[1];
    assert_eq!(mabeam.children.len(), 1);
    assert_eq!(mabeam.children[0].name, "mine");
    assert_eq!(mabeam.children[0].status, "running");
    system.stop().await.unwrap();

    let (_dir, builder) = whole_system();
    let dup = builder
        .service(
            Tree::Foundation,
            ServiceDef::child(ChildSpec::actor::<Mine>(seed::TELEMETRY_SERVICE, || Mine)),
        )
        .build()
        .unwrap_err();
    assert_eq!(dup.code(), 8002);
}

#[tokio::test]
async fn the_live_tree_shows_kinds_statuses_restarts_and_absent_services() {
    let telemetry = Telemetry::new();
    let mut probe = TelemetryProbe::attach(&telemetry, events::CHILD_RESTARTED);
    let (_dir, builder) = whole_system();
    let system = builder.telemetry(telemetry).build().unwrap();
    system.start().await.unwrap();
    // The telemetry service crashes (killed); its supervisor restarts it.
    let ts = system
        .registry()
        .lookup(system.namespace(), seed::TELEMETRY_SERVICE)
        .unwrap();
    ts.kill();
    probe.wait_for(events::CHILD_RESTARTED, WAIT).await.unwrap();

    let tree = system.tree().await;
    assert_eq!(tree.applications.len(), 2);
    let foundation = &tree.applications[0];
    assert_eq!(foundation.kind, ProcessKind::Application);
    assert_eq!(foundation.name, FoundationApp::NAME);
    assert_eq!(foundation.status, "running");
    let telemetry_node = foundation
        .children
        .iter()
        .find(|c| c.name == seed::TELEMETRY_SERVICE)
        .unwrap();
    assert_eq!(telemetry_node.kind, ProcessKind::Worker);
    assert_eq!(telemetry_node.restarts, 1);
    let absent: Vec<&str> = tree.absent.iter().map(|s| s.name).collect();
    assert_eq!(absent, [seed::CONNECTION_MANAGER]);
    assert!(tree.absent[0].absent_because.is_some());
    let mabeam = &tree.applications[1];
    let agents = mabeam
        .children
        .iter()
        .find(|c| c.name == seed::AGENT_SUPERVISOR)
        .unwrap();
    assert_eq!(agents.kind, ProcessKind::DynamicSupervisor);
    let subtree = mabeam
        .children
        .iter()
        .find(|c| c.name == seed::COORDINATION_SUPERVISOR)
        .unwrap();
    assert_eq!(subtree.kind, ProcessKind::Supervisor);
    let members: Vec<&str> = subtree.children.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        members,
        [seed::COORDINATION, seed::ECONOMICS, seed::LOAD_BALANCER]
    );
    let json = serde_json::to_value(&tree).unwrap();
    assert_eq!(json["applications"][1]["name"], "mabeam");

    // The restarted service registered itself again.
    assert!(system.health().await.healthy);

    let readings = system.read().await;
    let children = readings
        .iter()
        .find(|r| {
            r.metric == events::GAUGE_SUPERVISOR_CHILDREN.metric
                && r.labels
                    == [
                        ("supervisor", "foundation".to_owned()),
                        ("state", "active".to_owned()),
                    ]
        })
        .unwrap();
    assert_eq!(children.value, 9.0);
    let names = readings
        .iter()
        .find(|r| r.metric == events::GAUGE_REGISTRY_NAMES.metric)
        .unwrap();
    assert_eq!((names.labels[0].1.as_str(), names.value), ("test", 17.0));
    system.stop().await.unwrap();
}

#[tokio::test]
async fn a_disabled_telemetry_handle_is_refused() {
    let err = test_system()
        .telemetry(Telemetry::disabled())
        .build()
        .unwrap_err();
    assert_eq!(err.code(), 8004);
}

#[tokio::test]
async fn restart_service_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let system = System::builder()
        .namespace(Namespace::unique_test())
        .data_dir(dir.path())
        .build()
        .unwrap();
    system.start().await.unwrap();
    let before = system
        .registry()
        .lookup(system.namespace(), seed::PERFORMANCE_MONITOR)
        .unwrap();
    system
        .restart_service(seed::PERFORMANCE_MONITOR)
        .await
        .unwrap();
    let after = system
        .registry()
        .lookup(system.namespace(), seed::PERFORMANCE_MONITOR)
        .unwrap();
    assert_ne!(before, after);
    assert_eq!(
        system.restart_service("nope").await.unwrap_err().code(),
        8001
    );
    system.stop().await.unwrap();
}

#[tokio::test]
async fn the_contracts_are_injected_agents_vote_and_their_lifecycle_is_recorded() {
    let (_dir, builder) = whole_system();
    let system = builder.build().unwrap();
    system.start().await.unwrap();
    let agents = system
        .agents()
        .and_then(|agents| agents.registry())
        .unwrap();
    for id in ["a", "b", "c"] {
        agents
            .register_agent(id, AgentConfig::new::<Voter>("voter", ()))
            .unwrap();
        agents.start_agent(id).await.unwrap();
    }
    // Coordination reaches the agents through the injected directory.
    let decision = system
        .coordinator()
        .expect("coordination is in the full system")
        .vote(Proposal::new(
            "ship it",
            AgentSelection::Kind("voter".into()),
            Rule::Unanimous,
            WAIT,
        ))
        .await
        .unwrap();
    assert!(decision.passed(), "{decision:?}");
    assert_eq!(decision.votes.len(), 3);

    // The agent layer and the coordinator record into the event store;
    // a status event is queued when the status changes, so wait on the
    // store's own subscription for the agent's `running`.
    let reader = system.wiring().event_reader();
    let mut feed = reader.subscribe(1);
    loop {
        let event = tokio::time::timeout(WAIT, feed.next())
            .await
            .expect("the agent's start is recorded")
            .unwrap()
            .unwrap();
        if event.event.stream == "agent:c" && event.event.data["to"] == "running" {
            break;
        }
    }
    let decided = reader
        .query(EventQuery::new().stream("coordination.decisions"))
        .await
        .unwrap();
    assert_eq!(decided.len(), 1);

    // Restarting the agent registry stops every agent through it.
    system.restart_service(seed::AGENT_REGISTRY).await.unwrap();
    assert_eq!(agents.status("a"), Some(AgentStatus::Stopped));
    agents.start_agent("a").await.unwrap();
    assert!(system.health().await.healthy);
    system.stop().await.unwrap();
    assert_eq!(system.registry().count(system.namespace()), 0);
}

#[tokio::test]
async fn the_stores_keep_their_files_in_the_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let build = || {
        SystemBuilder::new()
            .namespace(Namespace::unique_test())
            .data_dir(dir.path())
            .config_defaults(serde_json::json!({"node": {"name": "n1"}}))
            .build()
            .unwrap()
    };
    let system = build();
    system.start().await.unwrap();
    let config = system.config().unwrap();
    assert_eq!(config.get("node.name").unwrap(), "n1");
    config
        .update("services.billing", serde_json::json!({"timeout_ms": 50}))
        .await
        .unwrap();
    let appended = system
        .event_store()
        .expect("the event store is in the full system")
        .append(mabeam_supervision_core::Event::new(
            "orders",
            "placed",
            serde_json::json!({"n": 1}),
        ))
        .await
        .unwrap();
    system.stop().await.unwrap();
    drop(system);
    assert!(dir.path().join("events.db").exists());
    assert!(dir.path().join("config.json").exists());

    let again = build();
    again.start().await.unwrap();
    assert_eq!(
        again
            .config()
            .unwrap()
            .get("services.billing.timeout_ms")
            .unwrap(),
        50
    );
    let stored = again.event_store().unwrap().get(appended.id).await.unwrap();
    assert_eq!(stored.event.stream, "orders");
    again.stop().await.unwrap();
}

#[tokio::test]
async fn with_a_cluster_the_connection_manager_joins_foundation_and_nodes_meet() {
    let node = |name: &str| {
        let (dir, builder) = whole_system();
        let system = builder
            .cluster(mabeam_foundation_services::ConnectionManager::builder(
                name, "secret",
            ))
            .build()
            .unwrap();
        (dir, system)
    };
    let ((_a_dir, a), (_b_dir, b)) = (node("a@local"), node("b@local"));
    a.start().await.unwrap();
    b.start().await.unwrap();
    let services = a.foundation().services();
    let at = services
        .iter()
        .position(|s| &**s == seed::CONNECTION_MANAGER)
        .unwrap();
    assert_eq!(&*services[at - 1], seed::EVENT_STORE, "the seed's order");
    assert!(a.tree().await.absent.is_empty());
    let a_addr = a.connections().unwrap().local_addr().unwrap();
    let mut seen = a.connections().unwrap().subscribe();
    let met = b.connections().unwrap().connect(a_addr).await.unwrap();
    assert_eq!(&*met, "a@local");
    assert!(matches!(
        seen.recv().await.unwrap(),
        mabeam_foundation_services::NodeEvent::Up(info) if &*info.node == "b@local"
    ));
    b.stop().await.unwrap();
    a.stop().await.unwrap();
    for system in [&a, &b] {
        assert_eq!(system.registry().count(system.namespace()), 0);
    }

    // Asked for by name without a cluster: a typed refusal.
    let err = test_system()
        .only([seed::CONNECTION_MANAGER])
        .build()
        .unwrap_err();
    assert_eq!(err.code(), 8007);
}
