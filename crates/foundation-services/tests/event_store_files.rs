//! The EventStore's file: the directory lock, files that are not ours,
//! damaged files, schema versions and migration.

use std::path::Path;

use mabeam_foundation_services::{
    EventStore, EventStoreConfig, EventStoreError, Retention,
    event_store::{APPLICATION_ID, DATABASE_FILE, SCHEMA_VERSION},
};
use mabeam_supervision_core::{ErrorCode, Event};
use serde_json::json;

fn config(dir: &Path) -> EventStoreConfig {
    EventStoreConfig::new(dir)
}

/// Folds the WAL into the main file, as a clean shutdown of the last
/// connection does, so a test can edit the file itself.
fn checkpoint(db: &Path) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
}

#[tokio::test]
async fn two_stores_never_open_the_same_directory() {
    let dir = tempfile::tempdir().unwrap();
    let first = EventStore::open(config(dir.path())).await.unwrap();
    let second = EventStore::open(config(dir.path())).await.unwrap_err();
    assert_eq!(second, EventStoreError::Locked(dir.path().to_owned()));
    assert_eq!(second.code(), 3006);
    first.stop().await;
    let reopened = EventStore::open(config(dir.path())).await.unwrap();
    reopened.stop().await;
}

// A file that is not an SQLite database is refused and left untouched.
#[tokio::test]
async fn a_file_that_is_not_sqlite_is_refused_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join(DATABASE_FILE);
    let content = b"my precious notes, not a database\n".repeat(200);
    std::fs::write(&db, &content).unwrap();
    let error = EventStore::open(config(dir.path())).await.unwrap_err();
    assert_eq!(error, EventStoreError::ForeignFile(db.clone()));
    assert_eq!(error.code(), 3007);
    assert_eq!(std::fs::read(&db).unwrap(), content);
    assert!(!dir.path().join("events.db-wal").exists());
}

// Another program's SQLite database is refused and left untouched.
#[tokio::test]
async fn another_programs_database_is_refused_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join(DATABASE_FILE);
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("CREATE TABLE invoices (id INTEGER); INSERT INTO invoices VALUES (1);")
            .unwrap();
    }
    let before = std::fs::read(&db).unwrap();
    let error = EventStore::open(config(dir.path())).await.unwrap_err();
    assert_eq!(error, EventStoreError::ForeignFile(db.clone()));
    assert_eq!(std::fs::read(&db).unwrap(), before);
}

// A damaged store is refused with a typed error, not opened.
#[tokio::test]
async fn a_corrupted_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = EventStore::open(config(dir.path())).await.unwrap();
    let batch: Vec<_> = (0..400)
        .map(|i| Event::new(format!("s{i}"), "k", json!("x".repeat(200))))
        .collect();
    store.append_batch(batch).await.unwrap();
    store.stop().await;
    let db = dir.path().join(DATABASE_FILE);
    checkpoint(&db);
    let mut bytes = std::fs::read(&db).unwrap();
    assert!(bytes.len() > 4096 * 8);
    for byte in &mut bytes[4096 * 3..4096 * 6] {
        *byte = 0xA5;
    }
    std::fs::write(&db, &bytes).unwrap();
    let error = EventStore::open(config(dir.path())).await.unwrap_err();
    assert!(
        matches!(error, EventStoreError::Corrupted { .. }),
        "{error:?}"
    );
    assert_eq!(error.code(), 3008);
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    EventStore::open(config(dir.path()))
        .await
        .unwrap()
        .stop()
        .await;
    let db = dir.path().join(DATABASE_FILE);
    rusqlite::Connection::open(&db)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let error = EventStore::open(config(dir.path())).await.unwrap_err();
    assert_eq!(
        error,
        EventStoreError::NewerSchema {
            found: 99,
            supported: SCHEMA_VERSION
        }
    );
    assert_eq!(error.code(), 3009);
}

// A version-1 file (before idempotency keys and metadata) is migrated on
// open and keeps its events.
#[tokio::test]
async fn a_version_1_file_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join(DATABASE_FILE);
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.pragma_update(None, "application_id", APPLICATION_ID)
            .unwrap();
        conn.execute_batch(
            "CREATE TABLE events (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                stream TEXT NOT NULL,
                stream_version INTEGER NOT NULL,
                kind TEXT NOT NULL,
                ts_ms INTEGER NOT NULL,
                node TEXT NOT NULL,
                correlation_id TEXT,
                causation_id INTEGER,
                data TEXT NOT NULL
            );
            CREATE UNIQUE INDEX events_by_stream ON events(stream, stream_version);
            CREATE INDEX events_by_kind ON events(kind);
            CREATE INDEX events_by_time ON events(ts_ms);
            CREATE INDEX events_by_correlation ON events(correlation_id)
                WHERE correlation_id IS NOT NULL;
            CREATE TABLE streams (stream TEXT PRIMARY KEY, version INTEGER NOT NULL) WITHOUT ROWID;
            INSERT INTO events (stream, stream_version, kind, ts_ms, node, data)
                VALUES ('old', 1, 'legacy', 5, 'n1', '{\"v\":1}');
            INSERT INTO streams VALUES ('old', 1);
            PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    // Its event is dated 1970: keep it from the default retention's
    // prune on open, which would race the read below.
    let store = EventStore::open(config(dir.path()).with_retention(Retention::keep_all()))
        .await
        .unwrap();
    let old = store.get(1).await.unwrap();
    assert_eq!(
        (old.event.kind.as_str(), old.event.data.clone()),
        ("legacy", json!({"v": 1}))
    );
    assert!(old.event.metadata.is_empty());
    let new = store
        .append(
            Event::new("old", "modern", json!(2))
                .with_idempotency_key("k")
                .with_metadata("m", 1),
        )
        .await
        .unwrap();
    assert_eq!((new.id, new.stream_version), (2, 2));
    assert_eq!(store.get(2).await.unwrap().event.metadata["m"], 1);
    store.stop().await;
    let version: u32 = rusqlite::Connection::open(&db)
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
}

#[tokio::test]
async fn an_invalid_configuration_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let error = EventStore::open(config(dir.path()).with_max_event_bytes(0))
        .await
        .unwrap_err();
    assert!(matches!(error, EventStoreError::InvalidConfig(_)));
    assert_eq!(error.code(), 3013);
}

// Every code of the enum lies in the EventStore's part of the crate's
// range.
#[test]
fn error_codes_lie_in_3001_to_3099() {
    let errors = [
        EventStoreError::Unavailable("x".into()),
        EventStoreError::NotFound(1),
        EventStoreError::VersionConflict {
            stream: "s".into(),
            expected: "e".into(),
            actual: 1,
        },
        EventStoreError::InvalidEvent {
            index: 0,
            reason: "r".into(),
        },
        EventStoreError::TooLarge {
            index: 0,
            size: 2,
            limit: 1,
        },
        EventStoreError::Locked("d".into()),
        EventStoreError::ForeignFile("f".into()),
        EventStoreError::Corrupted {
            path: "p".into(),
            detail: "d".into(),
        },
        EventStoreError::NewerSchema {
            found: 3,
            supported: 2,
        },
        EventStoreError::InvalidQuery("q".into()),
        EventStoreError::Storage("s".into()),
        EventStoreError::Lagged { resume_from: 1 },
        EventStoreError::InvalidConfig("c".into()),
    ];
    let mut codes: Vec<u32> = errors.iter().map(ErrorCode::code).collect();
    assert!(codes.iter().all(|c| (3001..=3099).contains(c)));
    codes.dedup();
    assert_eq!(codes.len(), errors.len());
}
