//! Registry operations emit telemetry through the Telemetry handle.

use std::{sync::Arc, time::Duration};

use mabeam_process_registry::{ProcessRegistry, ServiceOptions, ServiceRegistry};
use mabeam_supervision_core::{MetaValue, Namespace, ProcessHandle, RegistryEvent, Telemetry};
use parking_lot::Mutex;
use serde_json::json;

#[derive(kameo::Actor)]
struct Dummy;

/// Attaches a handler recording `name result` of every event.
fn recorder(telemetry: &Telemetry) -> Arc<Mutex<Vec<String>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    telemetry
        .attach("test", &[], move |event| {
            let detail = ["result", "status"]
                .iter()
                .find_map(|key| event.meta(key))
                .map(|value| match value {
                    MetaValue::Str(s) => s.to_owned(),
                    other => other.to_string(),
                })
                .unwrap_or_default();
            sink.lock().push(
                format!("{} {detail}", event.dotted_name())
                    .trim()
                    .to_owned(),
            );
        })
        .unwrap();
    seen
}

#[tokio::test]
async fn registry_operations_emit_telemetry() {
    let telemetry = Telemetry::new();
    let seen = recorder(&telemetry);
    let registry = ProcessRegistry::new(telemetry.clone());
    let ns = Namespace::unique_test();
    let mut events = registry.subscribe(&ns);
    let (p, q) = (
        ProcessHandle::spawn::<Dummy>(Dummy).await.unwrap(),
        ProcessHandle::spawn::<Dummy>(Dummy).await.unwrap(),
    );
    registry.register(&ns, "a", p.clone(), json!(null)).unwrap();
    let _ = registry.register(&ns, "a", q.clone(), json!(null));
    registry.update_metadata(&ns, "a", json!({})).unwrap();
    registry.join(&ns, "g", p.clone()).unwrap();
    let _ = registry.leave(&ns, "g", &q);
    registry.unregister(&ns, "a").unwrap();
    registry.register(&ns, "b", q.clone(), json!(null)).unwrap();
    q.kill();
    // The cleanup task emits once it has removed q's name.
    while !matches!(
        events.recv().await,
        Ok(RegistryEvent::Unregistered { exit: Some(_), .. })
    ) {}
    registry.cleanup(&ns).await;

    let services = ServiceRegistry::new(Arc::new(registry.clone()), ns, telemetry.clone());
    let _ = services.lookup("nope");
    let r = ProcessHandle::spawn::<Dummy>(Dummy).await.unwrap();
    services
        .register_service("r", r.clone(), ServiceOptions::default())
        .unwrap();
    services
        .health_check("r", Duration::from_secs(1))
        .await
        .unwrap();
    r.stop().await;

    // Cleanup tasks run when their process stops (q's was awaited above,
    // p's and r's may run any time): compare the rest in order.
    let seen = seen.lock().clone();
    // Every event is one supervision-core declares, so the metrics
    // exporter knows it.
    for line in &seen {
        let name = line.split(' ').next().unwrap_or_default();
        assert!(
            mabeam_supervision_core::events::METRICS
                .iter()
                .any(|decl| decl.event.join(".") == name),
            "{name} is not declared in mabeam_supervision_core::events"
        );
    }
    let down = seen
        .iter()
        .filter(|e| *e == "process_registry.process.down")
        .count();
    assert!(down >= 1, "q's cleanup task emitted");
    let seen: Vec<_> = seen
        .into_iter()
        .filter(|e| e != "process_registry.process.down")
        .collect();
    assert_eq!(
        seen,
        [
            "process_registry.register ok",
            "process_registry.register already_registered",
            "process_registry.update_metadata ok",
            "process_registry.join ok",
            "process_registry.leave not_in_group",
            "process_registry.unregister ok",
            "process_registry.register ok",
            "process_registry.cleanup",
            "service_registry.lookup not_found",
            "process_registry.register ok",
            "service_registry.health_check healthy",
        ]
    );
}
