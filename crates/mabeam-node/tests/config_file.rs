//! The config file: embedded defaults, every key optional, unknown keys
//! and bad values refused with the key and its line; the token file.

use std::{path::Path, time::Duration};

use mabeam_node::{LogLevel, NodeConfig, NodeError, data_dir};
use mabeam_supervision_core::ErrorCode;

#[test]
fn defaults_need_no_file() {
    let config = NodeConfig::default();
    assert_eq!(config.http.to_string(), "127.0.0.1:4000");
    assert_eq!(config.data_dir, Path::new("mabeam-data"));
    assert!(config.check().is_ok());
}

#[test]
fn a_file_overrides_the_defaults() {
    let text = r#"
data_dir = "/var/lib/mabeam"
log = "debug"

[http]
addr = "127.0.0.1:9999"
token = "0123456789abcdef0123456789abcdef"

[telemetry]
retention_secs = 60
per_agent_labels = true

[cluster]
node = "n1@host"
listen = "127.0.0.1:4369"
seeds = ["127.0.0.1:4370"]
cookie = "Shh-a-cluster-cookie-of-enough-bits"
"#;
    let config = NodeConfig::from_toml(text, Path::new("n.toml")).unwrap();
    assert_eq!(config.data_dir, Path::new("/var/lib/mabeam"));
    assert_eq!(config.log, LogLevel::Debug);
    assert_eq!(config.http.port(), 9999);
    assert_eq!(
        config.token.as_deref(),
        Some("0123456789abcdef0123456789abcdef")
    );
    assert_eq!(config.retention_secs, 60);
    assert!(config.per_agent_labels);
    assert_eq!(config.cluster_node, "n1@host");
    assert_eq!(config.cluster_listen.port(), 4369);
    assert_eq!(config.cluster_seeds, ["127.0.0.1:4370".parse().unwrap()]);
    assert_eq!(
        config.cookie.as_deref(),
        Some("Shh-a-cluster-cookie-of-enough-bits")
    );
    // A cluster address off loopback needs the same flag as HTTP.
    let open = NodeConfig {
        cluster_listen: "0.0.0.0:4369".parse().unwrap(),
        ..NodeConfig::default()
    };
    assert!(matches!(open.check(), Err(NodeError::NonLoopback(_))));
}

// `[store]` puts the event store on PostgreSQL; absent, it stays SQLite.
#[test]
fn a_store_section_names_the_postgres_server() {
    assert!(NodeConfig::default().store.is_none());
    let text = r#"
[store]
url = "postgres://app:pw@db:5432/events"
schema = "cluster_a"
wait = true
"#;
    let config = NodeConfig::from_toml(text, Path::new("n.toml")).unwrap();
    let store = config.store.expect("a store");
    assert_eq!(store.url, "postgres://app:pw@db:5432/events");
    assert_eq!(store.schema, "cluster_a");
    assert!(store.wait_for_server);
    let bad = "[store]\nurl = \"postgres://db/x\"\nschema = \"Bad-Name\"\n";
    let error = NodeConfig::from_toml(bad, Path::new("n.toml")).unwrap_err();
    assert!(error.to_string().contains("schema"), "{error}");
}

// `[cluster]`'s lease: defaults 2 s, renewed every 0.5 s, agents stopped
// 0.5 s before it can expire; timings that cannot hold it (renew + margin
// not below the lease, a zero renew) are refused naming the key, and
// `advertise` is read.
#[test]
fn the_cluster_lease_is_configured_and_checked() {
    let defaults = NodeConfig::default().cluster_lease;
    assert_eq!(
        (defaults.length, defaults.renew, defaults.margin),
        (
            Duration::from_millis(2000),
            Duration::from_millis(500),
            Duration::from_millis(500)
        )
    );
    let text =
        "[cluster]\nlease_ms = 3000\nlease_renew_ms = 1000\nadvertise = \"127.0.0.1:7000\"\n";
    let config = NodeConfig::from_toml(text, Path::new("n.toml")).unwrap();
    assert_eq!(config.cluster_lease.length, Duration::from_millis(3000));
    assert_eq!(config.cluster_lease.renew, Duration::from_millis(1000));
    assert_eq!(
        config.cluster_advertise,
        Some("127.0.0.1:7000".parse().unwrap())
    );
    for bad in [
        "[cluster]\nlease_ms = 900\n",
        "[cluster]\nlease_renew_ms = 1500\n",
        "[cluster]\nlease_renew_ms = 0\n",
    ] {
        let error = NodeConfig::from_toml(bad, Path::new("n.toml")).unwrap_err();
        assert!(error.to_string().contains("lease"), "{bad:?}: {error}");
        assert_eq!((error.code(), error.exit_code()), (9001, 2), "{bad:?}");
    }
}

#[test]
fn errors_name_the_key_and_line() {
    let cases = [
        ("[http]\nadr = \"x\"\n", 2, "adr"),
        ("log = \"loud\"\n", 1, "loud"),
        ("\n\n[telemetry]\nretention_secs = 0\n", 4, "retention_secs"),
        ("[http]\naddr = \"not an address\"\n", 2, "address"),
    ];
    for (text, line, word) in cases {
        let err = NodeConfig::from_toml(text, Path::new("n.toml")).unwrap_err();
        let NodeError::Config {
            line: l, message, ..
        } = &err
        else {
            panic!("{err:?}")
        };
        assert_eq!(*l, line, "{text:?}: {message}");
        assert!(err.to_string().contains(word), "{text:?}: {err}");
        assert_eq!((err.code(), err.exit_code()), (9001, 2));
    }
}

#[test]
fn the_token_is_generated_once_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let first = data_dir::token(dir.path(), None).unwrap();
    assert_eq!(first.len(), 64);
    assert_eq!(data_dir::token(dir.path(), None).unwrap(), first);
    assert_eq!(data_dir::token(dir.path(), Some("given")).unwrap(), "given");
}
