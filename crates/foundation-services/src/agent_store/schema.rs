//! Opening `agents.db`: the directory's lock, the checks that the file is
//! ours, the pragmas (WAL, `synchronous=FULL`, an optional size cap) and
//! the schema's migrations, each recorded in `schema_migrations`.
//!
//! A file is ours when it is missing or empty (a new store), or an SQLite
//! database whose `application_id` is [`APPLICATION_ID`]; anything else is
//! [`AgentStoreError::ForeignFile`] and is never written.

use std::{
    fs::{self, File, OpenOptions, TryLockError},
    io::Read,
    path::Path,
};

use mabeam_supervision_core::AgentStoreError;
use rusqlite::{Connection, ErrorCode as SqliteCode, OpenFlags, params};

use super::SqliteAgentStoreConfig;

/// The `application_id` of an agent store's file ("MBAG").
pub const APPLICATION_ID: i32 = 0x4D42_4147;

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = 1;

/// Each migration brings the schema from the version before it to its
/// index + 1.
const MIGRATIONS: &[&str] = &[
    // 1: one row per agent, in id order (WITHOUT ROWID: a load is one
    // ordered scan of one B-tree). `version` is the stored form's.
    "CREATE TABLE agents (
        id TEXT PRIMARY KEY NOT NULL,
        version INTEGER NOT NULL,
        generation INTEGER NOT NULL,
        kind TEXT NOT NULL,
        config TEXT NOT NULL,
        args TEXT NOT NULL,
        restart TEXT NOT NULL,
        status TEXT NOT NULL,
        restart_count INTEGER NOT NULL,
        passivated INTEGER NOT NULL,
        checkpoint_format INTEGER,
        checkpoint BLOB
    ) WITHOUT ROWID;",
];

const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// The name of the lock file beside `agents.db`.
const LOCK_FILE: &str = "agents.lock";

/// Takes the directory's lock, checks the file, opens the writer's
/// connection and migrates the schema.
pub(crate) fn open_writer(
    config: &SqliteAgentStoreConfig,
) -> Result<(Connection, File), AgentStoreError> {
    fs::create_dir_all(&config.data_dir).map_err(storage)?;
    let lock = lock_dir(&config.data_dir)?;
    let path = config.database_path();
    check_header(&path)?;
    create_private(&path)?;
    let conn = Connection::open_with_flags(
        &path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| classify(&path, e))?;
    let err = |e| classify(&path, e);
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
        return Err(AgentStoreError::ForeignFile(path.display().to_string()));
    }
    if version > SCHEMA_VERSION {
        return Err(AgentStoreError::NewerSchema {
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(err)?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
        .map_err(err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(AgentStoreError::Storage(format!(
            "could not switch to WAL mode (got {mode})"
        )));
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(err)?;
    if let Some(bytes) = config.max_size_bytes {
        let page: i64 = conn
            .pragma_query_value(None, "page_size", |r| r.get(0))
            .map_err(err)?;
        let pages = (bytes / page.max(1) as u64).max(1);
        conn.pragma_update(None, "max_page_count", pages as i64)
            .map_err(err)?;
    }
    migrate(&conn, version).map_err(err)?;
    Ok((conn, lock))
}

/// Opens a reader's connection (the writer has checked and migrated).
pub(crate) fn open_reader(path: &Path) -> Result<Connection, AgentStoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| classify(path, e))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(|e| classify(path, e))?;
    conn.pragma_update(None, "query_only", true)
        .map_err(|e| classify(path, e))?;
    Ok(conn)
}

/// Maps an SQLite error to the store's: a full disk (or the size cap) is
/// `StorageFull`, a foreign file `ForeignFile`.
pub(crate) fn classify(path: &Path, error: rusqlite::Error) -> AgentStoreError {
    match error.sqlite_error_code() {
        Some(SqliteCode::DiskFull) => AgentStoreError::StorageFull(error.to_string()),
        Some(SqliteCode::NotADatabase) => AgentStoreError::ForeignFile(path.display().to_string()),
        _ => storage(error),
    }
}

pub(crate) fn storage(error: impl std::fmt::Display) -> AgentStoreError {
    AgentStoreError::Storage(error.to_string())
}

/// Creates a missing database file readable by its owner only (SQLite
/// gives its `-wal` and `-shm` files the same mode).
fn create_private(path: &Path) -> Result<(), AgentStoreError> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path).map(drop).map_err(storage)
}

/// Locks the directory's agent store (`flock`, released when the file
/// closes, also when the process dies): two stores never write one file.
fn lock_dir(dir: &Path) -> Result<File, AgentStoreError> {
    let lock = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(LOCK_FILE))
        .map_err(storage)?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(TryLockError::WouldBlock) => Err(AgentStoreError::Locked(dir.display().to_string())),
        Err(TryLockError::Error(e)) => Err(storage(e)),
    }
}

/// Refuses a non-empty file that is not an SQLite database, before SQLite
/// opens it.
fn check_header(path: &Path) -> Result<(), AgentStoreError> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(storage(e)),
    };
    let mut header = Vec::with_capacity(16);
    (&mut file)
        .take(16)
        .read_to_end(&mut header)
        .map_err(storage)?;
    if header.is_empty() || header == SQLITE_HEADER {
        Ok(())
    } else {
        Err(AgentStoreError::ForeignFile(path.display().to_string()))
    }
}

/// Brings the schema from `version` to [`SCHEMA_VERSION`] in one
/// transaction, recording each migration applied.
fn migrate(conn: &Connection, version: u32) -> rusqlite::Result<()> {
    if version == SCHEMA_VERSION {
        return Ok(());
    }
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| {
        if version == 0 {
            conn.pragma_update(None, "application_id", APPLICATION_ID)?;
            conn.execute_batch(
                "CREATE TABLE schema_migrations (
                    version INTEGER PRIMARY KEY,
                    applied_ms INTEGER NOT NULL
                )",
            )?;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        for (index, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            conn.execute_batch(migration)?;
            conn.execute(
                "INSERT INTO schema_migrations (version, applied_ms) VALUES (?1, ?2)",
                params![index as i64 + 1, now],
            )?;
        }
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        conn.execute_batch("COMMIT")
    })();
    if result.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    result
}
