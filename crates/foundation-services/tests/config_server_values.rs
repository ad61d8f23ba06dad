//! ConfigServer values: get, update with the schema's checks, nested paths,
//! reset, typed errors.

use mabeam_foundation_services::{
    ConfigError, ConfigSchema, ConfigServer, ConfigServerConfig, UpdateOutcome, ValueRule,
    config_server::ConfigProcess,
};
use mabeam_supervision_core::{ErrorCode, ProcessHandle};
use serde_json::{Value, json};

fn schema() -> ConfigSchema {
    ConfigSchema::new()
        .updatable("limits.rate", ValueRule::integer(1, 1_000))
        .updatable("limits.ratio", ValueRule::number(0.0, 1.0))
        .updatable("log.level", ValueRule::one_of(["debug", "info", "warn"]))
        .updatable("features.*.enabled", ValueRule::Bool)
        .updatable("services.*", ValueRule::Object)
        .fixed("node.name", ValueRule::string())
}

fn defaults() -> Value {
    json!({"limits": {"rate": 10, "ratio": 0.5}, "log": {"level": "info"}, "node": {"name": "n1"}})
}

/// A server whose process runs.
async fn running(dir: &tempfile::TempDir) -> (ConfigServer, ProcessHandle) {
    let server = ConfigServer::new(
        ConfigServerConfig::new(dir.path())
            .with_schema(schema())
            .with_defaults(defaults()),
    )
    .unwrap();
    let process = ProcessHandle::spawn::<ConfigProcess>(server.clone())
        .await
        .unwrap();
    (server, process)
}

#[tokio::test]
async fn get_reads_values_subtrees_and_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let (server, process) = running(&dir).await;
    assert_eq!(server.get("limits.rate").unwrap(), json!(10));
    assert_eq!(
        server.get("limits").unwrap(),
        json!({"rate": 10, "ratio": 0.5})
    );
    assert_eq!(server.get("").unwrap(), defaults());
    let missing = server.get("limits.burst").unwrap_err();
    assert_eq!(
        missing,
        ConfigError::NotFound {
            path: "limits.burst".into()
        }
    );
    assert_eq!(missing.code(), 3103);
    assert!(matches!(
        server.get("limits..rate"),
        Err(ConfigError::InvalidPath { .. })
    ));
    process.stop().await;
}

#[tokio::test]
async fn updates_follow_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    let (server, process) = running(&dir).await;
    assert_eq!(
        server.update("limits.rate", json!(500)).await,
        Ok(UpdateOutcome::Applied)
    );
    assert_eq!(server.get("limits.rate").unwrap(), json!(500));
    server.update("limits.ratio", json!(0.25)).await.unwrap();
    server.update("log.level", json!("debug")).await.unwrap();

    // Fixed and unknown paths are forbidden.
    for path in ["node.name", "limits", "unknown.path", ""] {
        let error = server.update(path, json!("x")).await.unwrap_err();
        assert_eq!(
            error,
            ConfigError::Forbidden { path: path.into() },
            "{path}"
        );
        assert_eq!(error.code(), 3101);
    }
    // Values that break their rule name the path and the rule.
    let cases = [
        ("limits.rate", json!(0), "an integer in 1..=1000"),
        ("limits.rate", json!(1_001), "an integer in 1..=1000"),
        ("limits.rate", json!("fast"), "an integer in 1..=1000"),
        ("limits.ratio", json!(1.5), "a number in 0..=1"),
        (
            "log.level",
            json!("loud"),
            r#"one of ["debug", "info", "warn"]"#,
        ),
        ("features.x.enabled", json!(1), "a boolean"),
    ];
    for (path, value, rule) in cases {
        let error = server.update(path, value.clone()).await.unwrap_err();
        assert_eq!(
            error,
            ConfigError::InvalidValue {
                path: path.into(),
                rule: rule.into(),
                value: value.to_string()
            }
        );
        assert_eq!(error.code(), 3102);
        assert!(error.to_string().contains(path) && error.to_string().contains(rule));
    }
    // Nothing refused changed anything.
    assert_eq!(
        server.get("").unwrap(),
        json!({"limits": {"rate": 500, "ratio": 0.25}, "log": {"level": "debug"}, "node": {"name": "n1"}})
    );
    process.stop().await;
}

// Updating a nested path creates its missing parents; a parent that is
// not an object is refused.
#[tokio::test]
async fn a_nested_update_creates_missing_parents() {
    let dir = tempfile::tempdir().unwrap();
    let (server, process) = running(&dir).await;
    server
        .update("features.search.enabled", json!(true))
        .await
        .unwrap();
    assert_eq!(
        server.get("features").unwrap(),
        json!({"search": {"enabled": true}})
    );
    server
        .update("features.chat.enabled", json!(false))
        .await
        .unwrap();
    assert_eq!(server.get("features.search.enabled").unwrap(), json!(true));
    assert_eq!(server.get("features.chat.enabled").unwrap(), json!(false));
    process.stop().await;
}

#[tokio::test]
async fn reset_returns_to_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let (server, process) = running(&dir).await;
    server.update("limits.rate", json!(77)).await.unwrap();
    server
        .update("features.a.enabled", json!(true))
        .await
        .unwrap();
    assert_eq!(server.reset().await, Ok(UpdateOutcome::Applied));
    assert_eq!(server.get("").unwrap(), defaults());
    process.stop().await;
    // The reset is persisted too.
    let (server, process) = running(&dir).await;
    assert_eq!(server.get("limits.rate").unwrap(), json!(10));
    process.stop().await;
}

#[tokio::test]
async fn fallback_config_answers_a_services_subtree_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let (server, process) = running(&dir).await;
    server
        .update(
            "services.billing",
            json!({"endpoint": "cached", "timeout_ms": 500}),
        )
        .await
        .unwrap();
    process.stop().await;
    // The process is down: the answer comes from the cache.
    assert_eq!(
        server.get_fallback_config("billing"),
        Some(json!({"endpoint": "cached", "timeout_ms": 500}))
    );
    assert_eq!(server.get_fallback_config("unknown"), None);
    assert_eq!(server.get_fallback_config("a.b"), None);
}

// Every code of the enum lies in the ConfigServer's part of the range.
#[test]
fn error_codes_lie_in_3101_to_3199() {
    let errors = [
        ConfigError::Forbidden { path: "p".into() },
        ConfigError::InvalidValue {
            path: "p".into(),
            rule: "r".into(),
            value: "v".into(),
        },
        ConfigError::NotFound { path: "p".into() },
        ConfigError::InvalidPath {
            path: "p".into(),
            reason: "r".into(),
        },
        ConfigError::Persist("e".into()),
        ConfigError::CorruptedFile {
            path: "f".into(),
            detail: "d".into(),
        },
        ConfigError::InvalidDefaults("d".into()),
        ConfigError::InvalidSchema("s".into()),
    ];
    let mut codes: Vec<u32> = errors.iter().map(ErrorCode::code).collect();
    assert!(codes.iter().all(|c| (3101..=3199).contains(c)));
    codes.dedup();
    assert_eq!(codes.len(), errors.len());
}
