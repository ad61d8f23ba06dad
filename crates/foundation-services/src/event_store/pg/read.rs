//! The read side on PostgreSQL: each read is one statement on a pooled
//! connection, so it sees one snapshot (a read by position checks the
//! horizon in the same statement).

use std::sync::Arc;

use mabeam_supervision_core::{Event, EventOrder, EventQuery, EventSeq, StoredEvent};
use tokio_postgres::{Row, types::ToSql};

use super::{PgCore, classify};
use crate::event_store::{EventStoreError, read::Counts};

/// The columns every read selects, in [`row_to_event`]'s order.
const COLUMNS: &str = "id, stream, stream_version, kind, ts_ms, node, correlation_id, \
                       causation_id, idempotency_key, metadata, data";

/// How many parents a causation chain follows at most.
const MAX_CHAIN: i32 = 100_000;

/// The reads of one store.
pub(crate) struct Reads {
    pub(crate) core: Arc<PgCore>,
}

fn decode(row: &Row, at: usize) -> Result<StoredEvent, EventStoreError> {
    let bad = |e: &dyn std::fmt::Display| EventStoreError::Storage(format!("bad row: {e}"));
    let get_i64 = |i: usize| row.try_get::<_, i64>(at + i).map_err(|e| bad(&e));
    let get_text = |i: usize| row.try_get::<_, String>(at + i).map_err(|e| bad(&e));
    let get_opt = |i: usize| {
        row.try_get::<_, Option<String>>(at + i)
            .map_err(|e| bad(&e))
    };
    let data: serde_json::Value = serde_json::from_str(&get_text(10)?).map_err(|e| bad(&e))?;
    let metadata = match get_opt(9)? {
        Some(text) => match serde_json::from_str(&text).map_err(|e| bad(&e))? {
            serde_json::Value::Object(map) => map,
            _ => serde_json::Map::new(),
        },
        None => serde_json::Map::new(),
    };
    Ok(StoredEvent {
        id: get_i64(0)? as EventSeq,
        stream_version: get_i64(2)? as u64,
        timestamp_ms: get_i64(4)? as u64,
        event: Event {
            stream: get_text(1)?,
            kind: get_text(3)?,
            data,
            correlation_id: get_opt(6)?,
            causation_id: row
                .try_get::<_, Option<i64>>(at + 7)
                .map_err(|e| bad(&e))?
                .map(|id| id as EventSeq),
            idempotency_key: get_opt(8)?,
            metadata,
            node: Some(get_text(5)?),
        },
    })
}

fn to_i64(value: u64, what: &str) -> Result<i64, EventStoreError> {
    i64::try_from(value)
        .map_err(|_| EventStoreError::InvalidQuery(format!("{what} {value} is too large")))
}

impl Reads {
    async fn rows(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, EventStoreError> {
        let client = self.core.reader().await?;
        let statement = client
            .prepare_cached(sql)
            .await
            .map_err(|e| classify(&self.core.pg, &e))?;
        client
            .query(&statement, params)
            .await
            .map_err(|e| classify(&self.core.pg, &e))
    }

    /// The event of id `id`.
    pub(crate) async fn get(&self, id: EventSeq) -> Result<StoredEvent, EventStoreError> {
        let Ok(key) = i64::try_from(id) else {
            return Err(EventStoreError::NotFound(id));
        };
        let rows = self
            .rows(
                &format!("SELECT {COLUMNS} FROM events WHERE id = $1"),
                &[&key],
            )
            .await?;
        match rows.first() {
            Some(row) => decode(row, 0),
            None => Err(EventStoreError::NotFound(id)),
        }
    }

    /// At most `limit` events from `from` on, or
    /// [`EventStoreError::Compacted`] when `from` is below the horizon
    /// (read in the same statement, so in the same snapshot).
    pub(crate) async fn read_from(
        &self,
        from: EventSeq,
        limit: u64,
    ) -> Result<Vec<StoredEvent>, EventStoreError> {
        let start = i64::try_from(from).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .rows(
                &format!(
                    "SELECT h.value, e.* FROM \
                     (SELECT value FROM meta WHERE key = 'first_available') h \
                     LEFT JOIN LATERAL (SELECT {COLUMNS} FROM events WHERE id >= $1 \
                     ORDER BY id LIMIT $2) e ON true ORDER BY e.id"
                ),
                &[&start, &limit],
            )
            .await?;
        let Some(first) = rows.first() else {
            return Err(EventStoreError::Storage("the horizon is missing".into()));
        };
        let first_available = first
            .try_get::<_, i64>(0)
            .map_err(|e| EventStoreError::Storage(e.to_string()))?
            .max(1) as u64;
        if from.max(1) < first_available {
            return Err(EventStoreError::Compacted { first_available });
        }
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            if row
                .try_get::<_, Option<i64>>(1)
                .map_err(|e| EventStoreError::Storage(e.to_string()))?
                .is_some()
            {
                events.push(decode(row, 1)?);
            }
        }
        Ok(events)
    }

    /// The events matching `query`.
    pub(crate) async fn query(
        &self,
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
        let mut values: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
        let mut push = |filter: &str, value: Box<dyn ToSql + Sync + Send>| {
            values.push(value);
            filters.push(format!("{filter} ${}", values.len()));
        };
        if let Some(stream) = &query.stream {
            push("stream =", Box::new(stream.clone()));
        }
        if let Some(kind) = &query.kind {
            push("kind =", Box::new(kind.clone()));
        }
        if let Some(since) = query.since_ms {
            push("ts_ms >=", Box::new(to_i64(since, "since_ms")?));
        }
        if let Some(until) = query.until_ms {
            push("ts_ms <", Box::new(to_i64(until, "until_ms")?));
        }
        if let Some(correlation_id) = &query.correlation_id {
            push("correlation_id =", Box::new(correlation_id.clone()));
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
            Some(limit) => Some(to_i64(limit, "limit")?),
            None => None,
        };
        values.push(Box::new(limit));
        let limit_at = values.len();
        values.push(Box::new(to_i64(query.offset, "offset")?));
        let offset_at = values.len();
        let sql = format!(
            "SELECT {COLUMNS} FROM events {filter} ORDER BY id {order} \
             LIMIT ${limit_at} OFFSET ${offset_at}"
        );
        let params: Vec<&(dyn ToSql + Sync)> =
            values.iter().map(|v| &**v as &(dyn ToSql + Sync)).collect();
        let rows = self.rows(&sql, &params).await?;
        rows.iter().map(|row| decode(row, 0)).collect()
    }

    /// The causation chain of event `id`, its root first.
    pub(crate) async fn causation_chain(
        &self,
        id: EventSeq,
    ) -> Result<Vec<StoredEvent>, EventStoreError> {
        let event = self.get(id).await?;
        let key = id as i64;
        let sql = format!(
            "WITH RECURSIVE chain(id, depth) AS (
                 SELECT $1::bigint, 0
                 UNION ALL
                 SELECT e.causation_id, chain.depth + 1 FROM events e JOIN chain ON e.id = chain.id
                 WHERE e.causation_id IS NOT NULL AND chain.depth < $2
             )
             SELECT {COLUMNS} FROM chain JOIN events USING (id) WHERE chain.depth > 0
             ORDER BY chain.depth DESC"
        );
        let rows = self.rows(&sql, &[&key, &MAX_CHAIN]).await?;
        let mut chain = rows
            .iter()
            .map(|row| decode(row, 0))
            .collect::<Result<Vec<_>, _>>()?;
        chain.push(event);
        Ok(chain)
    }

    /// A cheap statement, for the health check.
    pub(crate) async fn ping(&self) -> Result<(), EventStoreError> {
        self.rows("SELECT 1", &[]).await.map(drop)
    }
}

/// What the store holds, and the size of its table.
pub(crate) async fn counts(reads: &Reads) -> Result<(Counts, u64), EventStoreError> {
    let rows = reads
        .rows(
            "SELECT greatest(coalesce((SELECT max(id) FROM events), 0), \
                             (SELECT value FROM meta WHERE key = 'last_id')), \
                    (SELECT value FROM meta WHERE key = 'first_available'), \
                    (SELECT count(*) FROM streams), \
                    pg_total_relation_size('events')",
            &[],
        )
        .await?;
    let row = rows
        .first()
        .ok_or_else(|| EventStoreError::Storage("no counts".into()))?;
    let get = |i: usize| {
        row.try_get::<_, i64>(i)
            .map_err(|e| EventStoreError::Storage(e.to_string()))
    };
    let last = get(0)?.max(0) as u64;
    let first_available = get(1)?.max(1) as u64;
    let events = (last + 1).saturating_sub(first_available);
    Ok((
        Counts {
            events,
            streams: get(2)? as u64,
            first_id: (events > 0).then_some(first_available),
            last_id: (last > 0).then_some(last),
            first_available,
        },
        get(3)? as u64,
    ))
}
