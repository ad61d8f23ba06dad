//! EventStore retention settings and durability that only the SQLite
//! backend has (issue 21, item 5; issue 28, item 1). The horizon itself
//! (`Compacted`, pruning by age and count) is in the contract suite,
//! tests/event_store_contract/horizon.rs, run on both backends.

use std::time::Duration;

use mabeam_foundation_services::{Durability, EventStore, EventStoreConfig, Retention};
use mabeam_supervision_core::ErrorCode;

// Bad retention settings are refused before anything opens.
#[tokio::test]
async fn bad_retention_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    for retention in [
        Retention {
            every: Duration::ZERO,
            ..Retention::default()
        },
        Retention {
            max_events: Some(0),
            ..Retention::default()
        },
        Retention {
            max_age: Some(Duration::ZERO),
            ..Retention::default()
        },
    ] {
        let error = EventStore::open(EventStoreConfig::new(dir.path()).with_retention(retention))
            .await
            .unwrap_err();
        assert_eq!(error.code(), 3013, "{error:?}");
    }
    assert!(
        !dir.path().join("events.db").exists(),
        "a refused config opened the file"
    );
}

// The writer's connection runs in WAL mode with synchronous=FULL: each
// acknowledged commit is synced, so a power loss loses nothing
// acknowledged. (A SIGKILL cannot tell NORMAL from FULL: the OS keeps the
// pages; only the settings can.)
#[tokio::test]
async fn the_writer_runs_with_wal_and_full_sync() {
    let dir = tempfile::tempdir().unwrap();
    let store = EventStore::open(EventStoreConfig::new(dir.path()))
        .await
        .unwrap();
    assert_eq!(
        store.durability().await.unwrap(),
        Durability {
            journal_mode: "wal".into(),
            synchronous: "full".into(),
        }
    );
    store.stop().await;
}
