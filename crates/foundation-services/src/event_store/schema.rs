//! Opening the store's file: the data directory's lock, the checks that
//! the file is ours and sound, and the schema with its migrations.
//!
//! A file is ours when it is empty or missing (a new store), or an SQLite
//! database whose `application_id` is [`APPLICATION_ID`]. Anything else is
//! [`EventStoreError::ForeignFile`] and is never written: the checks run
//! before the first statement that could write.

use std::{
    fs::{self, File, OpenOptions, TryLockError},
    io::Read,
    path::Path,
};

use rusqlite::{Connection, ErrorCode as SqliteCode, OpenFlags};

use super::{EventStoreConfig, EventStoreError, config::LOCK_FILE};

/// The `application_id` of an event store's file ("MBES").
pub const APPLICATION_ID: i32 = 0x4D42_4553;

/// The schema version this build writes. Version 1 had no idempotency keys
/// nor metadata, version 2 no recorded horizon; opening adds them.
pub const SCHEMA_VERSION: u32 = 3;

/// Each migration brings the schema from the version before it to its
/// index + 1.
const MIGRATIONS: &[&str] = &[
    // 1: the append-only log, a unique (stream, version) per event, and
    // a row per stream (its version as of its first event or its last
    // prune; the log holds the versions since: see the writer).
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
    CREATE TABLE streams (stream TEXT PRIMARY KEY, version INTEGER NOT NULL) WITHOUT ROWID;",
    // 2: idempotency keys and metadata.
    "ALTER TABLE events ADD COLUMN idempotency_key TEXT;
    ALTER TABLE events ADD COLUMN metadata TEXT;
    CREATE UNIQUE INDEX events_by_idempotency_key ON events(idempotency_key)
        WHERE idempotency_key IS NOT NULL;",
    // 3: the horizon, `first_available`: every id below it was pruned.
    // A file pruned before it was recorded starts at its oldest event.
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
    INSERT INTO meta (key, value) SELECT 'first_available', coalesce(
        (SELECT min(id) FROM events),
        (SELECT seq + 1 FROM sqlite_sequence WHERE name = 'events'),
        1);",
];

/// The first position still stored: every id below it was pruned.
pub(crate) fn first_available(conn: &Connection) -> rusqlite::Result<u64> {
    conn.prepare_cached("SELECT value FROM meta WHERE key = 'first_available'")?
        .query_row([], |r| r.get::<_, i64>(0))
        .map(|v| v.max(1) as u64)
}

const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// The durability settings the writer's connection runs with: WAL, and
/// `synchronous=FULL` so that each commit syncs the WAL before it returns
/// (in WAL mode `NORMAL` would sync only at checkpoints: a power loss
/// could lose acknowledged appends). [`open_writer`] checks both.
pub(crate) const JOURNAL_MODE: &str = "wal";
/// See [`JOURNAL_MODE`]; SQLite reports `FULL` as 2.
pub(crate) const SYNCHRONOUS_FULL: i64 = 2;

/// Takes the data directory's lock, checks the file, opens the writer's
/// connection (WAL, `synchronous=FULL`) and migrates the schema.
pub(crate) fn open_writer(
    config: &EventStoreConfig,
) -> Result<(Connection, File), EventStoreError> {
    fs::create_dir_all(&config.data_dir).map_err(EventStoreError::storage)?;
    let lock = lock_dir(&config.data_dir)?;
    let path = config.database_path();
    check_header(&path)?;
    let conn = Connection::open_with_flags(
        &path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| classify(&path, e))?;
    let err = |e| classify(&path, e);
    // Bounded before the first read: `quick_check` reads the whole file.
    bound_cache(&conn, config.cache_kib).map_err(err)?;
    let application_id: i32 = conn
        .pragma_query_value(None, "application_id", |r| r.get(0))
        .map_err(err)?;
    let version: u32 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(err)?;
    let objects: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .map_err(err)?;
    let fresh = objects == 0 && version == 0 && application_id == 0;
    if !fresh && application_id != APPLICATION_ID {
        return Err(EventStoreError::ForeignFile(path));
    }
    if version > SCHEMA_VERSION {
        return Err(EventStoreError::NewerSchema {
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    if !fresh && config.check_on_open {
        let verdict: String = conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(err)?;
        if verdict != "ok" {
            return Err(EventStoreError::Corrupted {
                path,
                detail: verdict,
            });
        }
    }
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(err)?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
        .map_err(err)?;
    if !mode.eq_ignore_ascii_case(JOURNAL_MODE) {
        return Err(EventStoreError::Storage(format!(
            "could not switch to WAL mode (got {mode})"
        )));
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(err)?;
    let synchronous: i64 = conn
        .pragma_query_value(None, "synchronous", |r| r.get(0))
        .map_err(err)?;
    if synchronous != SYNCHRONOUS_FULL {
        return Err(EventStoreError::Storage(format!(
            "could not set synchronous=FULL (got {synchronous})"
        )));
    }
    migrate(&conn, version).map_err(err)?;
    Ok((conn, lock))
}

/// Opens a reader's connection to the store's file (which the writer has
/// already checked and migrated).
pub(crate) fn open_reader(path: &Path, cache_kib: u32) -> Result<Connection, EventStoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| classify(path, e))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(|e| classify(path, e))?;
    conn.pragma_update(None, "query_only", true)
        .map_err(|e| classify(path, e))?;
    bound_cache(&conn, cache_kib).map_err(|e| classify(path, e))?;
    Ok(conn)
}

/// Bounds a connection's page cache to `kib` (a negative `cache_size` is
/// KiB, not pages).
pub(crate) fn bound_cache(conn: &Connection, kib: u32) -> rusqlite::Result<()> {
    conn.pragma_update(None, "cache_size", -i64::from(kib))
}

/// Maps an SQLite error to the store's: damage and foreign files get their
/// own variants.
pub(crate) fn classify(path: &Path, error: rusqlite::Error) -> EventStoreError {
    match error.sqlite_error_code() {
        Some(SqliteCode::DatabaseCorrupt) => EventStoreError::Corrupted {
            path: path.to_owned(),
            detail: error.to_string(),
        },
        Some(SqliteCode::NotADatabase) => EventStoreError::ForeignFile(path.to_owned()),
        _ => EventStoreError::storage(error),
    }
}

/// Locks the data directory for this store: two stores never write the
/// same file. The lock is the operating system's (`flock`), released when
/// the file closes, also when the process dies.
fn lock_dir(dir: &Path) -> Result<File, EventStoreError> {
    let lock = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(LOCK_FILE))
        .map_err(EventStoreError::storage)?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(TryLockError::WouldBlock) => Err(EventStoreError::Locked(dir.to_owned())),
        Err(TryLockError::Error(e)) => Err(EventStoreError::storage(e)),
    }
}

/// Refuses a non-empty file that is not an SQLite database, before SQLite
/// opens it.
fn check_header(path: &Path) -> Result<(), EventStoreError> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(EventStoreError::storage(e)),
    };
    let mut header = Vec::with_capacity(16);
    (&mut file)
        .take(16)
        .read_to_end(&mut header)
        .map_err(EventStoreError::storage)?;
    if header.is_empty() || header == SQLITE_HEADER {
        Ok(())
    } else {
        Err(EventStoreError::ForeignFile(path.to_owned()))
    }
}

/// Brings the schema from `version` to [`SCHEMA_VERSION`] in one
/// transaction.
fn migrate(conn: &Connection, version: u32) -> rusqlite::Result<()> {
    if version == SCHEMA_VERSION {
        return Ok(());
    }
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| {
        if version == 0 {
            conn.pragma_update(None, "application_id", APPLICATION_ID)?;
        }
        for migration in &MIGRATIONS[version as usize..] {
            conn.execute_batch(migration)?;
        }
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        conn.execute_batch("COMMIT")
    })();
    if result.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    result
}

#[cfg(test)]
mod tests {
    use super::super::config::DEFAULT_CACHE_KIB;
    use super::*;

    fn cache_size(conn: &Connection) -> i64 {
        conn.pragma_query_value(None, "cache_size", |r| r.get(0))
            .unwrap()
    }

    // The soak's resident set grew with the log while every connection
    // kept SQLite's default cache (about 2 MiB each): each connection is
    // bounded by the configured cache.
    #[test]
    fn every_connection_has_the_configured_cache() {
        let dir = tempfile::tempdir().unwrap();
        let config = EventStoreConfig::new(dir.path()).with_cache_kib(320);
        let (writer, _lock) = open_writer(&config).unwrap();
        assert_eq!(cache_size(&writer), -320);
        let reader = open_reader(&config.database_path(), 96).unwrap();
        assert_eq!(cache_size(&reader), -96);
        assert_eq!(
            cache_size(&open_reader(&config.database_path(), DEFAULT_CACHE_KIB).unwrap()),
            -i64::from(DEFAULT_CACHE_KIB)
        );
    }

    #[test]
    fn a_cache_below_the_minimum_is_refused() {
        let config = EventStoreConfig::new("unused").with_cache_kib(10);
        assert!(matches!(
            config.validate(),
            Err(EventStoreError::InvalidConfig(reason)) if reason.contains("cache_kib")
        ));
    }
}
