//! The ConfigServer acknowledges only what is on disk (issue 21, item 7):
//! an update while its process is down is refused with a typed error and
//! kept nowhere (no in-memory queue a crash would lose, or that a new
//! incarnation could leave behind), and every acknowledged update is in
//! the persisted file.

use std::time::Duration;

use mabeam_foundation_services::{
    ConfigError, ConfigSchema, ConfigServer, ConfigServerConfig, ConfigServerService,
    UpdateOutcome, ValueRule,
};
use mabeam_supervision_core::ApplicationSpec;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

fn config(dir: &std::path::Path) -> ConfigServerConfig {
    ConfigServerConfig::new(dir)
        .with_schema(ConfigSchema::new().updatable("limits.rate", ValueRule::integer(1, 1_000)))
        .with_defaults(json!({"limits": {"rate": 10}}))
}

/// The value on disk, as a fresh server loads it.
fn on_disk(dir: &std::path::Path) -> serde_json::Value {
    ConfigServer::new(config(dir))
        .unwrap()
        .get("limits.rate")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_while_the_process_is_down_is_refused_and_later_ones_apply() {
    let dir = tempfile::tempdir().unwrap();
    let service = ConfigServerService::new(config(dir.path())).unwrap();
    let server = service.server();
    let app = ApplicationSpec::new("foundation")
        .service(service)
        .start()
        .await
        .unwrap();
    assert_eq!(
        server.update("limits.rate", json!(20)).await,
        Ok(UpdateOutcome::Applied)
    );
    assert_eq!(on_disk(dir.path()), json!(20), "acknowledged, not on disk");

    app.stop_service("config_server").await.unwrap();
    let refused = server.update("limits.rate", json!(30)).await;
    assert!(
        matches!(refused, Err(ConfigError::Unavailable(_))),
        "an update while down was answered {refused:?}"
    );
    assert_eq!(on_disk(dir.path()), json!(20));

    tokio::time::timeout(WAIT, app.restart_service("config_server"))
        .await
        .expect("no restart within 10 s")
        .unwrap();
    // Nothing left behind: the refused update never applies, and the
    // next ones apply at once, each on disk when acknowledged.
    assert_eq!(server.get("limits.rate").unwrap(), json!(20));
    for rate in [40, 41, 42] {
        assert_eq!(
            server.update("limits.rate", json!(rate)).await,
            Ok(UpdateOutcome::Applied),
            "update to {rate} after the restart"
        );
        assert_eq!(on_disk(dir.path()), json!(rate));
    }
    app.stop().await.unwrap();
}
