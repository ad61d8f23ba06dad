//! The two trees: the seed's supervision tree test (start both, stop
//! them, every process stopped and the namespace's count 0), start and
//! stop order, subsets with their dependencies said back, one's own
//! services, health, the live tree and its gauges.

use std::time::Duration;

use kameo::Actor;
use mabeam::{
    FoundationApp, MabeamApp, MabeamError, ProcessKind, System, SystemBuilder, Tree, seed,
};
use supervision_core::{
    ChildSpec, ErrorCode, GaugeSource, Namespace, ServiceDef, Telemetry, events,
    testkit::TelemetryProbe,
};

const WAIT: Duration = Duration::from_secs(10);

fn test_system() -> SystemBuilder {
    SystemBuilder::new().namespace(Namespace::unique_test())
}

#[tokio::test]
async fn start_both_trees_stop_them_and_nothing_is_left() {
    let system = test_system().build().unwrap();
    system.start().await.unwrap();
    let ns = *system.namespace();
    let registered = system.registry().list(&ns);
    let mut names: Vec<String> = registered.iter().map(|(n, _, _)| n.to_string()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            seed::PERFORMANCE_MONITOR,
            seed::PROCESS_REGISTRY,
            seed::SERVICE_REGISTRY,
            seed::TELEMETRY_SERVICE
        ]
    );
    let handles: Vec<_> = registered.into_iter().map(|(_, h, _)| h).collect();
    let supervisors = [
        system.foundation().supervisor().unwrap(),
        system.mabeam().supervisor().unwrap(),
    ];
    assert!(system.health().await.healthy);

    system.stop().await.unwrap();
    for handle in &handles {
        assert!(!handle.is_alive(), "{} still runs", handle.type_name());
    }
    for sup in &supervisors {
        assert!(!sup.handle().is_alive());
    }
    assert_eq!(system.registry().count(&ns), 0);
}

#[tokio::test]
async fn foundation_starts_first_and_stops_last() {
    let telemetry = Telemetry::new();
    let mut probe = TelemetryProbe::attach(&telemetry, &["supervisor", "child"]);
    let system = test_system().telemetry(telemetry).build().unwrap();
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
    assert_eq!(
        order(events::CHILD_STARTED),
        [
            seed::PROCESS_REGISTRY,
            seed::SERVICE_REGISTRY,
            seed::TELEMETRY_SERVICE,
            seed::PERFORMANCE_MONITOR
        ]
    );
    assert_eq!(
        order(events::CHILD_TERMINATED),
        [
            seed::PERFORMANCE_MONITOR,
            seed::TELEMETRY_SERVICE,
            seed::SERVICE_REGISTRY,
            seed::PROCESS_REGISTRY
        ]
    );
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

    let dup = test_system()
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
    let system = test_system().telemetry(telemetry).build().unwrap();
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
    assert!(tree.absent.iter().any(|s| s.name == "event_store"));
    assert!(tree.absent.iter().all(|s| !s.wired));
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
    assert_eq!(children.value, 3.0);
    let names = readings
        .iter()
        .find(|r| r.metric == events::GAUGE_REGISTRY_NAMES.metric)
        .unwrap();
    assert_eq!((names.labels[0].1.as_str(), names.value), ("test", 4.0));
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
    let system = System::builder()
        .namespace(Namespace::unique_test())
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
