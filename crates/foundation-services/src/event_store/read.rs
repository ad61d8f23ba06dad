//! The read side: a pool of reader connections, each its own SQLite
//! connection, so reads run concurrently with each other and with the
//! writer (WAL mode gives each read a consistent snapshot), and the
//! queries they run.

use std::path::{Path, PathBuf};

use mabeam_supervision_core::{Event, EventOrder, EventQuery, EventSeq, StoredEvent};
use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, Row, params, types::Value as SqlValue};

use super::{EventStoreError, schema};

/// The columns every read selects, in [`row_to_event`]'s order.
const COLUMNS: &str = "id, stream, stream_version, kind, ts_ms, node, correlation_id, \
                       causation_id, idempotency_key, metadata, data";

/// How many parents a causation chain follows at most (a guard against a
/// cycle written by hand into the file).
const MAX_CHAIN: u32 = 100_000;

/// Reader connections: one is taken per read, opened when none is idle,
/// and kept for the next read when fewer than `max_idle` are idle.
pub(crate) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    max_idle: usize,
    cache_kib: u32,
}

impl Readers {
    pub(crate) fn new(path: PathBuf, max_idle: usize, cache_kib: u32) -> Self {
        Readers {
            path,
            idle: Mutex::new(Vec::new()),
            max_idle,
            cache_kib,
        }
    }

    /// Runs `read` on a reader connection (blocking: call it from
    /// `spawn_blocking`).
    pub(crate) fn with<T>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, EventStoreError>,
    ) -> Result<T, EventStoreError> {
        let idle = self.idle.lock().pop();
        let conn = match idle {
            Some(conn) => conn,
            None => schema::open_reader(&self.path, self.cache_kib)?,
        };
        let result = read(&conn);
        let mut idle = self.idle.lock();
        if idle.len() < self.max_idle {
            idle.push(conn);
        }
        result
    }

    /// Closes the idle connections.
    pub(crate) fn clear(&self) {
        self.idle.lock().clear();
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// Maps a row of [`COLUMNS`] to a stored event.
fn row_to_event(row: &Row<'_>) -> rusqlite::Result<StoredEvent> {
    let json = |index: usize, text: Option<String>| -> rusqlite::Result<serde_json::Value> {
        match text {
            None => Ok(serde_json::Value::Null),
            Some(text) => serde_json::from_str(&text).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    index,
                    rusqlite::types::Type::Text,
                    Box::new(e),
                )
            }),
        }
    };
    let metadata = match json(9, row.get(9)?)? {
        serde_json::Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    Ok(StoredEvent {
        id: row.get::<_, i64>(0)? as EventSeq,
        stream_version: row.get::<_, i64>(2)? as u64,
        timestamp_ms: row.get::<_, i64>(4)? as u64,
        event: Event {
            stream: row.get(1)?,
            kind: row.get(3)?,
            data: json(10, row.get(10)?)?,
            correlation_id: row.get(6)?,
            causation_id: row.get::<_, Option<i64>>(7)?.map(|id| id as EventSeq),
            idempotency_key: row.get(8)?,
            metadata,
            node: Some(row.get(5)?),
        },
    })
}

fn sql_error(path: &Path) -> impl Fn(rusqlite::Error) -> EventStoreError + '_ {
    move |e| schema::classify(path, e)
}

/// A stored position or limit as SQLite's signed integer.
fn to_i64(value: u64, what: &str) -> Result<i64, EventStoreError> {
    i64::try_from(value)
        .map_err(|_| EventStoreError::InvalidQuery(format!("{what} {value} is too large")))
}

/// The event of id `id`.
pub(crate) fn get(
    conn: &Connection,
    path: &Path,
    id: EventSeq,
) -> Result<StoredEvent, EventStoreError> {
    let Ok(key) = i64::try_from(id) else {
        return Err(EventStoreError::NotFound(id));
    };
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM events WHERE id = ?1"))
        .and_then(|mut stmt| stmt.query_row(params![key], row_to_event).optional())
        .map_err(sql_error(path))?
        .ok_or(EventStoreError::NotFound(id))
}

/// At most `limit` events of id `from` or more, oldest first;
/// [`EventStoreError::Compacted`] when `from` is below the horizon (read
/// in the same snapshot as the events: a prune between the two cannot
/// make the read start later silently).
pub(crate) fn read_from(
    conn: &Connection,
    path: &Path,
    from: EventSeq,
    limit: u64,
) -> Result<Vec<StoredEvent>, EventStoreError> {
    let start = i64::try_from(from).unwrap_or(i64::MAX);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let snapshot = conn.unchecked_transaction().map_err(sql_error(path))?;
    let first_available = schema::first_available(&snapshot).map_err(sql_error(path))?;
    if from.max(1) < first_available {
        return Err(EventStoreError::Compacted { first_available });
    }
    let mut stmt = snapshot
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM events WHERE id >= ?1 ORDER BY id LIMIT ?2"
        ))
        .map_err(sql_error(path))?;
    let events = stmt
        .query_map(params![start, limit], row_to_event)
        .and_then(|rows| rows.collect())
        .map_err(sql_error(path));
    drop(stmt);
    let _ = snapshot.finish();
    events
}

/// The events matching `query`.
pub(crate) fn query(
    conn: &Connection,
    path: &Path,
    query: &EventQuery,
) -> Result<Vec<StoredEvent>, EventStoreError> {
    if let (Some(since), Some(until)) = (query.since_ms, query.until_ms)
        && since > until
    {
        return Err(EventStoreError::InvalidQuery(format!(
            "the time range ends ({until}) before it starts ({since})"
        )));
    }
    let mut filters = Vec::new();
    let mut values: Vec<SqlValue> = Vec::new();
    if let Some(stream) = &query.stream {
        filters.push("stream = ?");
        values.push(SqlValue::Text(stream.clone()));
    }
    if let Some(kind) = &query.kind {
        filters.push("kind = ?");
        values.push(SqlValue::Text(kind.clone()));
    }
    if let Some(since) = query.since_ms {
        filters.push("ts_ms >= ?");
        values.push(SqlValue::Integer(to_i64(since, "since_ms")?));
    }
    if let Some(until) = query.until_ms {
        filters.push("ts_ms < ?");
        values.push(SqlValue::Integer(to_i64(until, "until_ms")?));
    }
    if let Some(correlation_id) = &query.correlation_id {
        filters.push("correlation_id = ?");
        values.push(SqlValue::Text(correlation_id.clone()));
    }
    let filter = if filters.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", filters.join(" AND "))
    };
    let order = match query.order {
        EventOrder::Ascending => "ASC",
        EventOrder::Descending => "DESC",
    };
    let limit = match query.limit {
        Some(limit) => to_i64(limit, "limit")?,
        None => -1,
    };
    values.push(SqlValue::Integer(limit));
    values.push(SqlValue::Integer(to_i64(query.offset, "offset")?));
    let sql = format!("SELECT {COLUMNS} FROM events {filter} ORDER BY id {order} LIMIT ? OFFSET ?");
    let mut stmt = conn.prepare_cached(&sql).map_err(sql_error(path))?;
    stmt.query_map(rusqlite::params_from_iter(values), row_to_event)
        .and_then(|rows| rows.collect())
        .map_err(sql_error(path))
}

/// The causation chain of event `id`: its root cause first, then each
/// event caused by the one before, ending with the event itself. The chain
/// stops early at a parent that is not stored (pruned).
pub(crate) fn causation_chain(
    conn: &Connection,
    path: &Path,
    id: EventSeq,
) -> Result<Vec<StoredEvent>, EventStoreError> {
    let event = get(conn, path, id)?;
    let key = id as i64;
    let sql = format!(
        "WITH RECURSIVE chain(id, depth) AS (
             SELECT ?1, 0
             UNION ALL
             SELECT e.causation_id, chain.depth + 1 FROM events e JOIN chain ON e.id = chain.id
             WHERE e.causation_id IS NOT NULL AND chain.depth < ?2
         )
         SELECT {COLUMNS} FROM chain JOIN events USING (id) WHERE chain.depth > 0
         ORDER BY chain.depth DESC"
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(sql_error(path))?;
    let mut chain: Vec<StoredEvent> = stmt
        .query_map(params![key, MAX_CHAIN], row_to_event)
        .and_then(|rows| rows.collect())
        .map_err(sql_error(path))?;
    chain.push(event);
    Ok(chain)
}

/// What the file holds.
pub(crate) struct Counts {
    pub(crate) events: u64,
    pub(crate) streams: u64,
    pub(crate) first_id: Option<u64>,
    /// The last id ever given.
    pub(crate) last_id: Option<u64>,
    pub(crate) first_available: u64,
}

/// What the file holds.
pub(crate) fn counts(conn: &Connection, path: &Path) -> Result<Counts, EventStoreError> {
    let err = sql_error(path);
    let (events, first): (i64, Option<i64>) = conn
        .query_row("SELECT count(*), min(id) FROM events", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .map_err(&err)?;
    let streams: i64 = conn
        .query_row("SELECT count(*) FROM streams", [], |r| r.get(0))
        .map_err(&err)?;
    let last: Option<i64> = conn
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = 'events'",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(&err)?;
    let first_available = schema::first_available(conn).map_err(&err)?;
    Ok(Counts {
        events: events as u64,
        streams: streams as u64,
        first_id: first.map(|id| id as u64),
        last_id: last.map(|id| id as u64),
        first_available,
    })
}
