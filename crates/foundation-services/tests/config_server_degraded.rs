//! ConfigServer degraded mode: while its process is down, reads answer from
//! the cache, updates are refused with a typed error (an update is
//! acknowledged only once persisted), and health reports degraded; as a
//! supervised service, across a stop, a restart and a crash.

use std::time::Duration;

use mabeam_foundation_services::ConfigError;
use mabeam_foundation_services::{
    ConfigHealth, ConfigSchema, ConfigServer, ConfigServerConfig, ConfigServerService,
    UpdateOutcome, ValueRule,
};
use mabeam_supervision_core::{
    ApplicationSpec, ErrorCode, Health, Telemetry, events, testkit::TelemetryProbe,
};
use serde_json::json;

/// Awaits `future`, failing the test if it takes more than 10 s (a wait
/// that could last for ever fails instead of hanging the run).
async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(std::time::Duration::from_secs(10), future)
        .await
        .expect("no answer within 10 s")
}

const WAIT: Duration = Duration::from_secs(10);

fn config(dir: &std::path::Path) -> ConfigServerConfig {
    ConfigServerConfig::new(dir)
        .with_schema(
            ConfigSchema::new()
                .updatable("limits.rate", ValueRule::integer(1, 1_000))
                .updatable("log.level", ValueRule::string()),
        )
        .with_defaults(json!({"limits": {"rate": 10}}))
}

// A server whose process never started: reads answer, updates are
// refused (checked first all the same), and it reports degraded.
#[tokio::test]
async fn without_its_process_reads_answer_and_updates_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = ConfigServer::new(config(dir.path())).unwrap();
    assert_eq!(server.get("limits.rate").unwrap(), json!(10));
    let refused = server.update("limits.rate", json!(20)).await.unwrap_err();
    assert!(
        matches!(refused, ConfigError::Unavailable(_)),
        "{refused:?}"
    );
    assert_eq!(refused.code(), 3109);
    // An invalid value is refused for what it is.
    assert!(matches!(
        server.update("limits.rate", json!(0)).await,
        Err(ConfigError::InvalidValue { .. })
    ));
    assert_eq!(server.get("limits.rate").unwrap(), json!(10));
    assert_eq!(
        server.health(),
        ConfigHealth::Degraded {
            reason: "the config process is not running".into(),
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_while_the_service_is_down_are_refused_and_apply_when_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let service = ConfigServerService::new(config(dir.path())).unwrap();
    let server = service.server();
    let app = ApplicationSpec::new("foundation")
        .service(service)
        .start()
        .await
        .unwrap();
    server.update("limits.rate", json!(20)).await.unwrap();
    assert_eq!(app.health().await.services[0].health, Health::Healthy);
    assert_eq!(server.health(), ConfigHealth::Healthy);

    app.stop_service("config_server").await.unwrap();
    assert!(!server.is_running());
    // Reads from the cache; updates refused, nothing changed.
    assert_eq!(server.get("limits.rate").unwrap(), json!(20));
    for (path, value) in [("limits.rate", json!(30)), ("log.level", json!("debug"))] {
        assert!(matches!(
            server.update(path, value).await,
            Err(ConfigError::Unavailable(_))
        ));
    }
    assert!(matches!(server.health(), ConfigHealth::Degraded { .. }));
    assert_eq!(server.get("limits.rate").unwrap(), json!(20));

    app.restart_service("config_server").await.unwrap();
    let mut changes = server.subscribe("");
    assert_eq!(server.get("limits.rate").unwrap(), json!(20));
    assert!(server.get("log.level").is_err(), "a refused update applied");
    assert_eq!(server.health(), ConfigHealth::Healthy);
    assert_eq!(
        server.update("limits.rate", json!(50)).await,
        Ok(UpdateOutcome::Applied)
    );
    let change = tokio::time::timeout(WAIT, changes.next())
        .await
        .expect("no change notified within 10 s")
        .unwrap();
    assert_eq!((change.old, change.new), (Some(json!(20)), Some(json!(50))));
    app.stop().await.unwrap();
}

// A crash: the supervisor restarts the process; what was persisted is
// reloaded and updates go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_comes_back_after_a_crash_with_its_values() {
    let dir = tempfile::tempdir().unwrap();
    let telemetry = Telemetry::new();
    let mut probe = TelemetryProbe::attach(&telemetry, &["supervisor"]);
    let service = ConfigServerService::new(config(dir.path())).unwrap();
    let server = service.server();
    let app = ApplicationSpec::new("foundation")
        .with_telemetry(telemetry)
        .service(service)
        .start()
        .await
        .unwrap();
    server.update("limits.rate", json!(99)).await.unwrap();
    let process = app
        .status()
        .await
        .service("config_server")
        .unwrap()
        .handle
        .clone()
        .unwrap();
    process.kill();
    within(process.exited()).await;
    // Down: reads still answer.
    assert_eq!(server.get("limits.rate").unwrap(), json!(99));
    probe
        .wait_for_where(
            events::CHILD_RESTARTED,
            |e| e.meta_str("child") == Some("config_server"),
            WAIT,
        )
        .await
        .unwrap();
    assert!(server.is_running());
    assert_eq!(
        server.update("limits.rate", json!(100)).await,
        Ok(UpdateOutcome::Applied)
    );
    assert_eq!(server.get("limits.rate").unwrap(), json!(100));
    assert_eq!(app.health().await.services[0].health, Health::Healthy);
    app.stop().await.unwrap();
}
