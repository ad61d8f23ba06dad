//! The writer task: the only connection that appends and prunes, with
//! group commit in one statement (one round trip), or in two round trips
//! when the group's requests must be checked (see the [module docs](super)).

use std::{
    collections::HashMap,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use mabeam_supervision_core::{Clock, EventSeq, Telemetry};
use tokio::sync::{mpsc, watch};
use tokio_postgres::{Client, Statement, error::SqlState, types::ToSql};

use super::{super::writer::Counters, MIGRATIONS, classify};
use crate::{
    event_store::{
        EventStoreConfig, EventStoreError, ExpectedVersion, Retention,
        append::{Appended, Prepared},
        group::{self, Outcomes, StoredRow},
        writer::{AppendRequest, Durability, PruneReason, Request},
    },
    postgres::{self, MigrateError, PostgresConfig},
};

/// The most events one prune transaction deletes.
const PRUNE_CHUNK: i64 = 50_000;

/// The largest group committed in one round trip. A larger group takes
/// the checked path's two: its round trip is shared by hundreds of
/// events, and the server's work per event is less there (ids and
/// versions come computed; no window function, no join): measured, 64
/// tasks keeping 256 appends in flight (groups of 4096) went from about
/// 51,000 to 40,000 appends/s on the one-round-trip path.
const ONE_TRIP_MAX_EVENTS: usize = 256;

/// A listener's registration: the advisory lock it holds (shared, for
/// its session) while its store has subscribers. Its first key is
/// 1835098725 (`'mabe'`), its second `hashtext` of the store's channel
/// (`$1`), so each schema has its own; a dropped connection releases it.
pub(crate) const LISTENING: &str = "SELECT pg_advisory_lock_shared(1835098725, hashtext($1))::text";

/// Ends a listener's registration (its store has no subscribers left).
pub(crate) const NOT_LISTENING: &str = "SELECT pg_advisory_unlock_shared(1835098725, hashtext($1))";

/// The wake-up, sent only when someone listens: a writer that can take
/// the listeners' lock exclusively (for its transaction) knows that no
/// listener holds it, and skips `pg_notify` (whose queue lock at commit
/// serialises every notifying transaction of the server). A listener
/// that comes later waits for the lock, so for this commit, and then
/// wakes its subscribers, which read it by position: no wake-up is lost.
/// `$1` the channel, `$2` the payload.
const NOTIFY_IF_LISTENED: &str = "SELECT pg_notify($1, $2) \
    WHERE NOT pg_try_advisory_xact_lock(1835098725, hashtext($1))";

/// A group in one statement, its own transaction (no `BEGIN`, no
/// `COMMIT`): `ids` moves the `$all` row by the group's size (locking it
/// until commit: ids are given in commit order); `versions` adds the
/// group's events to each stream's version, after the `$all` lock (it
/// reads `ids`: two writers never lock in opposite orders) and from the
/// newest committed row (`ON CONFLICT DO UPDATE` reads past the
/// statement's snapshot, as the `UPDATE` of `ids` does); `guard` fails
/// the statement (division by zero, SQLSTATE 22012; the insert reads its
/// column, so it is not planned away) unless every expected version
/// holds; the rows take their ids from `ids` and their versions from
/// `before`; `wakeup` notifies only when someone listens (see
/// [`NOTIFY_IF_LISTENED`]). A stored idempotency key fails the insert on
/// its unique index. Answers each stream's version after the group, and
/// the last id.
///
/// `$1`-`$9` the rows' columns but ids and versions, `$10` the group's
/// size, `$11`/`$12` each stream of the group and its number of events,
/// `$13`-`$16` the expectations (stream, events of the group before the
/// request on it, kind, version), `$17` the channel.
const APPEND: &str = "WITH ids AS ( \
        UPDATE meta SET value = value + $10 WHERE key = 'last_id' RETURNING value \
    ), versions AS ( \
        INSERT INTO streams (stream, version) \
        SELECT a.stream, a.added FROM ids, unnest($11::text[], $12::bigint[]) AS a(stream, added) \
        ON CONFLICT (stream) DO UPDATE SET version = streams.version + excluded.version \
        RETURNING stream, version \
    ), before AS MATERIALIZED ( \
        SELECT v.stream, v.version AS top, v.version - a.added AS version \
        FROM versions v JOIN unnest($11::text[], $12::bigint[]) AS a(stream, added) USING (stream) \
    ), guard AS ( \
        SELECT 1 / coalesce(bool_and(CASE e.kind \
            WHEN 0 THEN b.version + e.prior = 0 \
            WHEN 1 THEN b.version + e.prior > 0 \
            ELSE b.version + e.prior = e.expected END), true)::int AS ok \
        FROM unnest($13::text[], $14::bigint[], $15::int[], $16::bigint[]) \
            AS e(stream, prior, kind, expected) \
        JOIN before b USING (stream) \
    ), inserted AS ( \
        INSERT INTO events (id, stream, stream_version, kind, ts_ms, node, correlation_id, \
            causation_id, idempotency_key, metadata, data) \
        SELECT ids.value - $10 + u.ord, u.stream, \
            b.version + row_number() OVER (PARTITION BY u.stream ORDER BY u.ord), \
            u.kind, u.ts, u.node, u.correlation, u.causation, u.key, u.metadata, u.data \
        FROM guard, ids, unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], \
            $6::bigint[], $7::text[], $8::text[], $9::text[]) WITH ORDINALITY \
            AS u(stream, kind, ts, node, correlation, causation, key, metadata, data, ord) \
        JOIN before b ON b.stream = u.stream \
        WHERE guard.ok = 1 \
    ), wakeup AS MATERIALIZED ( \
        SELECT pg_notify($17, ids.value::text) FROM ids \
        WHERE NOT pg_try_advisory_xact_lock(1835098725, hashtext($17)) \
    ) \
    SELECT ids.value, b.stream, b.top, (SELECT count(*) FROM wakeup) FROM ids, before b";

/// A group of one event, the one request of a task awaiting each append:
/// [`APPEND`] without arrays, window function or joins (about 60 µs a
/// round trip against 190, measured on tmpfs). `ids` locks the `$all`
/// row first, `version` then moves the stream's version (reading `ids`:
/// the same lock order as [`APPEND`]), the insert's `WHERE` fails the
/// statement (division by zero) unless the expected version holds, and
/// `wakeup` notifies only when someone listens. Answers the id and the
/// stream's version.
///
/// `$1`-`$9` the row's columns but its id and version, `$10` the
/// channel, `$11` the expectation's kind (-1 any, 0 no stream, 1 exists,
/// 2 exact) and `$12` its version.
const APPEND_ONE: &str = "WITH ids AS ( \
        UPDATE meta SET value = value + 1 WHERE key = 'last_id' RETURNING value \
    ), version AS ( \
        INSERT INTO streams AS s (stream, version) SELECT $1, 1 FROM ids \
        ON CONFLICT (stream) DO UPDATE SET version = s.version + 1 \
        RETURNING version \
    ), inserted AS ( \
        INSERT INTO events (id, stream, stream_version, kind, ts_ms, node, correlation_id, \
            causation_id, idempotency_key, metadata, data) \
        SELECT ids.value, $1, version.version, $2, $3, $4, $5, $6, $7, $8, $9 \
        FROM ids, version \
        WHERE 1 / (CASE $11::int \
            WHEN 0 THEN version.version = 1 \
            WHEN 1 THEN version.version > 1 \
            WHEN 2 THEN version.version - 1 = $12 \
            ELSE true END)::int = 1 \
    ), wakeup AS MATERIALIZED ( \
        SELECT pg_notify($10, ids.value::text) FROM ids \
        WHERE NOT pg_try_advisory_xact_lock(1835098725, hashtext($10)) \
    ) \
    SELECT ids.value, version.version, (SELECT count(*) FROM wakeup) FROM ids, version";

/// The writer's connection and its prepared statements.
pub(crate) struct Connected {
    client: Client,
    lock: Statement,
    versions: Statement,
    keys: Statement,
    stored_from: Statement,
    insert: Statement,
    set_versions: Statement,
    set_last: Statement,
    notify: Statement,
    append: Statement,
    append_one: Statement,
}

/// Connects the writer's connection, migrates the schema and prepares the
/// statements. A server that cannot be reached is
/// [`EventStoreError::Unreachable`], naming the URL without its password.
pub(crate) async fn setup(
    driver: &tokio_postgres::Config,
    pg: &PostgresConfig,
) -> Result<Connected, EventStoreError> {
    let unreachable = |e: &tokio_postgres::Error| EventStoreError::Unreachable {
        url: pg.redacted_url(),
        detail: postgres::detail(e),
    };
    let mut client = postgres::connect(driver)
        .await
        .map_err(|e| unreachable(&e))?;
    postgres::migrate(&mut client, &pg.schema, &MIGRATIONS)
        .await
        .map_err(|e| match e {
            MigrateError::Newer { found, supported } => {
                EventStoreError::NewerSchema { found, supported }
            }
            MigrateError::Driver(e) if postgres::is_unavailable(&e) => unreachable(&e),
            MigrateError::Driver(e) => EventStoreError::Storage(postgres::detail(&e)),
        })?;
    prepare(client, pg).await
}

async fn prepare(client: Client, pg: &PostgresConfig) -> Result<Connected, EventStoreError> {
    let p = |sql: &'static str| {
        let client = &client;
        async move { client.prepare(sql).await }
    };
    let prepared = futures::try_join!(
        p("SELECT value FROM meta WHERE key = 'last_id' FOR UPDATE"),
        p("SELECT stream, version FROM streams WHERE stream = ANY($1)"),
        p("SELECT idempotency_key, id, stream_version FROM events \
           WHERE idempotency_key = ANY($1)"),
        p(
            "SELECT id, stream_version, stream, kind, idempotency_key FROM events \
           WHERE id >= $1 ORDER BY id LIMIT $2"
        ),
        p(
            "INSERT INTO events (stream, kind, ts_ms, node, correlation_id, causation_id, \
           idempotency_key, metadata, data, id, stream_version) \
           SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], \
           $6::bigint[], $7::text[], $8::text[], $9::text[], $10::bigint[], $11::bigint[])"
        ),
        p("INSERT INTO streams (stream, version) \
           SELECT * FROM unnest($1::text[], $2::bigint[]) \
           ON CONFLICT (stream) DO UPDATE SET version = excluded.version"),
        p("UPDATE meta SET value = $1 WHERE key = 'last_id'"),
        p(NOTIFY_IF_LISTENED),
        // The one-statement path (see `try_commit_optimistic`).
        p(APPEND),
        p(APPEND_ONE),
    );
    let (
        lock,
        versions,
        keys,
        stored_from,
        insert,
        set_versions,
        set_last,
        notify,
        append,
        append_one,
    ) = prepared.map_err(|e| classify(pg, &e))?;
    Ok(Connected {
        client,
        lock,
        versions,
        keys,
        stored_from,
        insert,
        set_versions,
        set_last,
        notify,
        append,
        append_one,
    })
}

/// The channel commits are announced on.
pub(crate) fn channel(pg: &PostgresConfig) -> String {
    format!("mabeam_events_{}", pg.schema)
}

/// The rows of a group, column by column (what `unnest` takes).
#[derive(Default)]
struct Rows {
    id: Vec<i64>,
    stream: Vec<String>,
    version: Vec<i64>,
    kind: Vec<String>,
    ts: Vec<i64>,
    node: Vec<String>,
    correlation: Vec<Option<String>>,
    causation: Vec<Option<i64>>,
    key: Vec<Option<String>>,
    metadata: Vec<Option<String>>,
    data: Vec<String>,
}

impl Rows {
    fn len(&self) -> usize {
        self.stream.len()
    }

    /// The columns but the ids and versions, as the inserts' first
    /// parameters take them.
    fn columns(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![
            &self.stream,
            &self.kind,
            &self.ts,
            &self.node,
            &self.correlation,
            &self.causation,
            &self.key,
            &self.metadata,
            &self.data,
        ]
    }

    /// Pushes an event's columns but its id and version.
    fn push_columns(&mut self, prepared: &Prepared) {
        let event = &prepared.event;
        self.stream.push(event.stream.clone());
        self.kind.push(event.kind.clone());
        self.ts.push(prepared.timestamp_ms as i64);
        self.node.push(prepared.node.clone());
        self.correlation.push(event.correlation_id.clone());
        self.causation.push(event.causation_id.map(|id| id as i64));
        self.key.push(event.idempotency_key.clone());
        self.metadata.push(prepared.metadata.clone());
        self.data.push(prepared.data.clone());
    }
}

/// Why a group could not commit in one round trip.
enum Optimistic {
    /// An expected version does not hold or an idempotency key is stored:
    /// nothing was written; commit the group the checked way, which
    /// answers each request.
    NeedsChecks,
    /// The group failed.
    Failed(EventStoreError),
}

/// The expected versions of a group, column by column, each with the
/// events the group puts on its stream before it (what the guard
/// statement takes).
#[derive(Default)]
struct Expectations<'a> {
    stream: Vec<&'a str>,
    before: Vec<i64>,
    kind: Vec<i32>,
    version: Vec<i64>,
}

impl<'a> Expectations<'a> {
    fn push(&mut self, stream: &'a str, before: i64, expected: ExpectedVersion) {
        let Some((kind, version)) = guarded(expected) else {
            return;
        };
        self.stream.push(stream);
        self.before.push(before);
        self.kind.push(kind);
        self.version.push(version);
    }
}

/// An expected version as the guards take it: its kind (0 no stream, 1
/// exists, 2 exact) and version; `None` for any version (no guard).
fn guarded(expected: ExpectedVersion) -> Option<(i32, i64)> {
    match expected {
        ExpectedVersion::Any => None,
        ExpectedVersion::NoStream => Some((0, 0)),
        ExpectedVersion::StreamExists => Some((1, 0)),
        ExpectedVersion::Exact(version) => Some((2, i64::try_from(version).unwrap_or(i64::MAX))),
    }
}

/// The timer in `slot`, set to `at`: made once, and moved only when `at`
/// moves (moving it registers it again).
fn retain_timer(
    slot: &mut Option<Pin<Box<tokio::time::Sleep>>>,
    at: tokio::time::Instant,
) -> Pin<&mut tokio::time::Sleep> {
    let timer = slot.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
    if timer.deadline() != at {
        timer.as_mut().reset(at);
    }
    timer.as_mut()
}

/// Maps a failed one-statement append: a guard that failed (division by
/// zero) or a stored idempotency key is [`Optimistic::NeedsChecks`]
/// (nothing was written), anything else fails the group.
fn optimistic_failure(
    failing: impl Fn(tokio_postgres::Error) -> EventStoreError,
) -> impl Fn(tokio_postgres::Error) -> Optimistic {
    move |e| {
        if postgres::is_unique_violation_of(&e, "events_by_idempotency_key")
            || e.code() == Some(&SqlState::DIVISION_BY_ZERO)
        {
            Optimistic::NeedsChecks
        } else {
            Optimistic::Failed(failing(e))
        }
    }
}

pub(crate) struct PgWriter {
    pg: PostgresConfig,
    driver: tokio_postgres::Config,
    conn: Option<Connected>,
    requests: mpsc::UnboundedReceiver<Request>,
    counters: Arc<Counters>,
    wake: Arc<watch::Sender<u64>>,
    ready: Arc<AtomicBool>,
    max_group: usize,
    retention: Retention,
    clock: Clock,
    telemetry: Telemetry,
    channel: String,
    retain_at: tokio::time::Instant,
    /// The timer for `retain_at`, kept across requests: a new timer each
    /// time the writer waits would wake the runtime's timer driver on
    /// every append (measured: one extra wake-up of a parked worker per
    /// append, about a third of a lone append's time on tmpfs).
    retain_timer: Option<Pin<Box<tokio::time::Sleep>>>,
    more_to_prune: bool,
}

impl PgWriter {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        config: &EventStoreConfig,
        pg: PostgresConfig,
        driver: tokio_postgres::Config,
        conn: Option<Connected>,
        requests: mpsc::UnboundedReceiver<Request>,
        counters: Arc<Counters>,
        wake: Arc<watch::Sender<u64>>,
        ready: Arc<AtomicBool>,
    ) -> Self {
        PgWriter {
            channel: channel(&pg),
            pg,
            driver,
            conn,
            requests,
            counters,
            wake,
            ready,
            max_group: config.max_group,
            retention: config.retention,
            clock: config.clock.clone(),
            telemetry: config.telemetry.clone(),
            retain_at: tokio::time::Instant::now(),
            retain_timer: None,
            more_to_prune: false,
        }
    }

    /// Serves requests until a shutdown request or until every sender is
    /// gone; first, with `wait_for_server`, connects and migrates,
    /// retrying with the backoff until the server answers.
    pub(crate) async fn run(mut self) {
        let mut attempt = 0;
        while self.conn.is_none() {
            match setup(&self.driver, &self.pg).await {
                Ok(conn) => self.conn = Some(conn),
                Err(error) => {
                    *self.counters.last_error.lock() = Some(error.to_string());
                    // Only a shutdown can be queued before the store is
                    // ready (appends are refused at the door).
                    tokio::select! {
                        () = tokio::time::sleep(self.pg.reconnect.delay(attempt)) => {}
                        _ = self.requests.recv() => return,
                    }
                    attempt = attempt.saturating_add(1);
                }
            }
        }
        *self.counters.last_error.lock() = None;
        self.ready.store(true, Ordering::Release);
        self.wake.send_modify(|n| *n += 1);
        let mut next: Option<Request> = None;
        loop {
            let request = match next.take() {
                Some(request) => request,
                None => match self.next_request().await {
                    Some(request) => request,
                    None => return,
                },
            };
            match request {
                Request::Shutdown => return,
                Request::Prune { before_ms, reply } => {
                    let result = self
                        .until_done(|w| Box::pin(w.prune_older(before_ms, PruneReason::Request)))
                        .await;
                    let _ = reply.send(result);
                }
                Request::Retain { reply } => {
                    let result = self.until_done(|w| Box::pin(w.retain())).await;
                    let _ = reply.send(result);
                }
                Request::Durability { reply } => {
                    let _ = reply.send(self.durability().await);
                }
                Request::Append(first) => {
                    let mut size = first.events.len();
                    let mut group = vec![first];
                    while size < self.max_group {
                        match self.requests.try_recv() {
                            Ok(Request::Append(more)) => {
                                size += more.events.len();
                                group.push(more);
                            }
                            Ok(other) => {
                                next = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.commit_group(group, size).await;
                }
            }
            self.retain_if_due().await;
        }
    }

    /// The next request; parked, the writer wakes when the retention is
    /// due.
    async fn next_request(&mut self) -> Option<Request> {
        loop {
            if !self.retention.is_bounded() {
                return self.requests.recv().await;
            }
            tokio::select! {
                request = self.requests.recv() => return request,
                () = retain_timer(&mut self.retain_timer, self.retain_at) => {
                    self.retain_if_due().await
                }
            }
        }
    }

    async fn retain_if_due(&mut self) {
        if self.retention.is_bounded() && tokio::time::Instant::now() >= self.retain_at {
            // A failure is recorded for the health check and retried at
            // the next check.
            let _ = self.retain().await;
        }
    }

    async fn until_done<F>(&mut self, mut prune: F) -> Result<u64, EventStoreError>
    where
        F: for<'a> FnMut(
            &'a mut Self,
        ) -> std::pin::Pin<
            Box<dyn Future<Output = Result<u64, EventStoreError>> + Send + 'a>,
        >,
    {
        let mut pruned = 0;
        loop {
            pruned += prune(self).await?;
            if !self.more_to_prune {
                return Ok(pruned);
            }
        }
    }

    /// The writer's connection, connecting again if it was lost.
    async fn conn(&mut self) -> Result<&Connected, EventStoreError> {
        if self.conn.as_ref().is_some_and(|c| c.client.is_closed()) {
            self.conn = None;
        }
        if self.conn.is_none() {
            let client = postgres::connect(&self.driver)
                .await
                .map_err(|e| self.fail(&e))?;
            self.conn = Some(prepare(client, &self.pg).await.inspect_err(|e| {
                *self.counters.last_error.lock() = Some(e.to_string());
            })?);
        }
        self.conn
            .as_ref()
            .ok_or_else(|| EventStoreError::unavailable("no connection"))
    }

    /// [`fail`](Self::fail) apart from `self`, for use while the
    /// connection (part of `self`) is borrowed.
    fn failing(&self) -> impl Fn(tokio_postgres::Error) -> EventStoreError + use<> {
        let pg = self.pg.clone();
        let counters = self.counters.clone();
        move |e| {
            let error = classify(&pg, &e);
            *counters.last_error.lock() = Some(error.to_string());
            error
        }
    }

    /// Records a driver failure for the health check and maps it.
    fn fail(&self, error: &tokio_postgres::Error) -> EventStoreError {
        let error = classify(&self.pg, error);
        *self.counters.last_error.lock() = Some(error.to_string());
        error
    }

    async fn durability(&mut self) -> Result<Durability, EventStoreError> {
        let conn = self.conn().await?;
        let row = conn
            .client
            .query_one(
                "SELECT current_setting('synchronous_commit'), current_setting('fsync')",
                &[],
            )
            .await;
        let row = row.map_err(|e| self.fail(&e))?;
        let synchronous: String = row.get(0);
        let fsync: String = row.get(1);
        Ok(Durability {
            journal_mode: format!("postgres (fsync {fsync})"),
            synchronous: if synchronous == "on" {
                "full".into()
            } else {
                synchronous
            },
        })
    }

    async fn commit_group(&mut self, group: Vec<AppendRequest>, size: usize) {
        match self.try_commit(&group, size).await {
            Ok(outcomes) => {
                *self.counters.last_error.lock() = None;
                self.counters.committed(size);
                self.wake.send_modify(|n| *n += 1);
                // Subscribers read the table: nothing to publish here.
                group::answer(group, outcomes, |_, _| {});
            }
            Err(error) => {
                if let Some(conn) = &self.conn
                    && !conn.client.is_closed()
                {
                    let _ = conn.client.batch_execute("ROLLBACK").await;
                }
                group::refuse(group, &error);
            }
        }
    }

    /// One group's transaction; the outer error fails every request (and
    /// may leave a transaction to roll back). A group of `size` events, at
    /// most [`ONE_TRIP_MAX_EVENTS`], is one statement in its own
    /// transaction (one round trip) when every expected version holds and
    /// every idempotency key is new (the common case); otherwise nothing
    /// is written and it is committed again with the checks, in two round
    /// trips. A larger group takes the two.
    async fn try_commit(
        &mut self,
        group: &[AppendRequest],
        size: usize,
    ) -> Result<Outcomes, EventStoreError> {
        if size > ONE_TRIP_MAX_EVENTS {
            return self.try_commit_checked(group).await;
        }
        let optimistic = match group {
            [one] if one.events.len() == 1 => self.try_commit_one(one).await,
            _ => self.try_commit_optimistic(group).await,
        };
        match optimistic {
            Ok(outcomes) => return Ok(outcomes),
            // The failed statement was its own transaction: the server
            // has rolled it back, there is nothing to end.
            Err(Optimistic::NeedsChecks) => {}
            Err(Optimistic::Failed(error)) => return Err(error),
        }
        self.try_commit_checked(group).await
    }

    /// A group of one event in one statement, its own transaction
    /// ([`APPEND_ONE`]); failures as [`try_commit_optimistic`]'s.
    ///
    /// [`try_commit_optimistic`]: Self::try_commit_optimistic
    async fn try_commit_one(&mut self, request: &AppendRequest) -> Result<Outcomes, Optimistic> {
        let prepared = &request.events[0];
        let event = &prepared.event;
        let (kind, expected) = guarded(request.expected).unwrap_or((-1, 0));
        let ts = prepared.timestamp_ms as i64;
        let causation = event.causation_id.map(|id| id as i64);
        let channel = self.channel.clone();
        let fail = optimistic_failure(self.failing());
        let conn = self.conn().await.map_err(Optimistic::Failed)?;
        let params: [&(dyn ToSql + Sync); 12] = [
            &event.stream,
            &event.kind,
            &ts,
            &prepared.node,
            &event.correlation_id,
            &causation,
            &event.idempotency_key,
            &prepared.metadata,
            &prepared.data,
            &channel,
            &kind,
            &expected,
        ];
        let row = conn
            .client
            .query_one(&conn.append_one, &params)
            .await
            .map_err(&fail)?;
        let id = row.try_get::<_, i64>(0).map_err(&fail)?;
        let version = row.try_get::<_, i64>(1).map_err(&fail)?;
        Ok(vec![Ok(vec![Appended {
            id: id as EventSeq,
            stream_version: version as u64,
            duplicate: false,
        }])])
    }

    /// A group in one statement, its own transaction ([`APPEND`]),
    /// assuming every expected version holds and every idempotency key is
    /// new. A failed guard or a stored key is [`Optimistic::NeedsChecks`]:
    /// nothing was written.
    async fn try_commit_optimistic(
        &mut self,
        group: &[AppendRequest],
    ) -> Result<Outcomes, Optimistic> {
        let mut rows = Rows::default();
        let mut counts: HashMap<&str, i64> = HashMap::new();
        let mut expectations = Expectations::default();
        for request in group {
            let stream = request.events[0].event.stream.as_str();
            let before = counts.get(stream).copied().unwrap_or(0);
            expectations.push(stream, before, request.expected);
            for prepared in &request.events {
                rows.push_columns(prepared);
                *counts.entry(&prepared.event.stream).or_default() += 1;
            }
        }
        let mut counted: Vec<(&str, i64)> = counts.iter().map(|(s, n)| (*s, *n)).collect();
        counted.sort_unstable();
        let (names, added): (Vec<&str>, Vec<i64>) = counted.into_iter().unzip();
        let size = rows.len() as i64;
        let channel = self.channel.clone();
        let fail = optimistic_failure(self.failing());
        let conn = self.conn().await.map_err(Optimistic::Failed)?;
        let mut params = rows.columns();
        params.extend([
            &size as &(dyn ToSql + Sync),
            &names,
            &added,
            &expectations.stream,
            &expectations.before,
            &expectations.kind,
            &expectations.version,
            &channel,
        ]);
        let answered = conn
            .client
            .query(&conn.append, &params)
            .await
            .map_err(&fail)?;
        // The versions after the group: the group's events of a stream
        // are the last `count` of them, in the group's order.
        let mut new_last = None;
        let mut next_version: HashMap<&str, u64> = HashMap::with_capacity(answered.len());
        for row in &answered {
            new_last = Some(row.try_get::<_, i64>(0).map_err(&fail)?);
            let stream: &str = row.try_get(1).map_err(&fail)?;
            let version = row.try_get::<_, i64>(2).map_err(&fail)?;
            let Some((name, count)) = counts.get_key_value(stream) else {
                continue;
            };
            next_version.insert(*name, (version - count + 1) as u64);
        }
        let new_last = new_last.ok_or_else(|| {
            Optimistic::Failed(EventStoreError::storage(
                "the server did not answer the group's ids",
            ))
        })?;
        let mut id = (new_last - size + 1) as EventSeq;
        let mut outcomes = Vec::with_capacity(group.len());
        for request in group {
            let mut answers = Vec::with_capacity(request.events.len());
            for prepared in &request.events {
                let version = next_version
                    .get_mut(prepared.event.stream.as_str())
                    .ok_or_else(|| {
                        Optimistic::Failed(EventStoreError::storage(
                            "the server did not answer a stream's version",
                        ))
                    })?;
                answers.push(Appended {
                    id,
                    stream_version: *version,
                    duplicate: false,
                });
                *version += 1;
                id += 1;
            }
            outcomes.push(Ok(answers));
        }
        Ok(outcomes)
    }

    /// A group with expected versions (or a stored key), in two round
    /// trips: the lock and the reads, the checks in memory, then the rows
    /// and the commit.
    async fn try_commit_checked(
        &mut self,
        group: &[AppendRequest],
    ) -> Result<Outcomes, EventStoreError> {
        let mut streams: Vec<&str> = Vec::new();
        let mut keys: Vec<&str> = Vec::new();
        for request in group {
            for prepared in &request.events {
                streams.push(&prepared.event.stream);
                if let Some(key) = &prepared.event.idempotency_key {
                    keys.push(key);
                }
            }
        }
        streams.sort_unstable();
        streams.dedup();
        let fail = self.failing();
        let conn = self.conn().await?;
        let client = &conn.client;
        // Round trip 1: the lock first, then reads that see every commit
        // before it (each statement takes a fresh snapshot).
        let stream_params: [&(dyn ToSql + Sync); 1] = [&streams];
        let key_params: [&(dyn ToSql + Sync); 1] = [&keys];
        let (_, last, versions, stored_keys) = futures::try_join!(
            client.batch_execute("BEGIN"),
            client.query_one(&conn.lock, &[]),
            client.query(&conn.versions, &stream_params),
            client.query(&conn.keys, &key_params),
        )
        .map_err(&fail)?;
        let last_id: i64 = last.try_get(0).map_err(&fail)?;
        let mut versions: HashMap<String, u64> = versions
            .iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get::<_, i64>(1)? as u64)))
            .collect::<Result<_, tokio_postgres::Error>>()
            .map_err(&fail)?;
        let mut known: HashMap<String, Appended> = stored_keys
            .iter()
            .map(|row| {
                Ok((
                    row.try_get(0)?,
                    Appended {
                        id: row.try_get::<_, i64>(1)? as EventSeq,
                        stream_version: row.try_get::<_, i64>(2)? as u64,
                        duplicate: true,
                    },
                ))
            })
            .collect::<Result<_, tokio_postgres::Error>>()
            .map_err(&fail)?;
        let first_new = last_id + 1;
        let mut rows = Rows::default();
        let mut outcomes = Vec::with_capacity(group.len());
        for request in group {
            let outcome = match self
                .check(request, first_new, &rows, &versions, &known)
                .await
            {
                Ok(Check::Retry(original)) => Ok(original),
                Ok(Check::Write) => Ok(add(
                    request,
                    first_new,
                    &mut rows,
                    &mut versions,
                    &mut known,
                )),
                Err(Refused::Request(error)) => Err(error),
                Err(Refused::Group(error)) => return Err(error),
            };
            outcomes.push(outcome);
        }
        let conn = self.conn().await?;
        let client = &conn.client;
        if rows.len() == 0 {
            client.batch_execute("COMMIT").await.map_err(&fail)?;
            return Ok(outcomes);
        }
        let new_last = first_new + rows.len() as i64 - 1;
        let mut changed: Vec<(&str, i64)> = rows
            .stream
            .iter()
            .map(|s| (s.as_str(), versions[s.as_str()] as i64))
            .collect();
        changed.sort_unstable();
        changed.dedup_by(|a, b| a.0 == b.0);
        let (names, tops): (Vec<&str>, Vec<i64>) = changed.into_iter().unzip();
        let mut insert = rows.columns();
        insert.extend([&rows.id as &(dyn ToSql + Sync), &rows.version]);
        let last_text = new_last.to_string();
        let channel = self.channel.clone();
        let conn = self.conn().await?;
        let client = &conn.client;
        let version_params: [&(dyn ToSql + Sync); 2] = [&names, &tops];
        let last_params: [&(dyn ToSql + Sync); 1] = [&new_last];
        let notify_params: [&(dyn ToSql + Sync); 2] = [&channel, &last_text];
        // Round trip 2: the rows, the versions, the `$all` row, the
        // wake-up (delivered at commit, when someone listens) and the
        // commit.
        futures::try_join!(
            client.execute(&conn.insert, &insert),
            client.execute(&conn.set_versions, &version_params),
            client.execute(&conn.set_last, &last_params),
            client.query(&conn.notify, &notify_params),
            client.batch_execute("COMMIT"),
        )
        .map_err(&fail)?;
        Ok(outcomes)
    }

    /// Checks one request against the store as this group left it.
    async fn check(
        &mut self,
        request: &AppendRequest,
        first_new: i64,
        rows: &Rows,
        versions: &HashMap<String, u64>,
        known: &HashMap<String, Appended>,
    ) -> Result<Check, Refused> {
        let first = &request.events[0].event;
        // A batch is one unit: a retry of a stored batch answers it whole
        // and writes nothing; any other batch is checked in full.
        if let Some(key) = &first.idempotency_key
            && let Some(original) = known.get(key)
            && let Some(stored) = self
                .stored_batch(*original, request, first_new, rows)
                .await?
        {
            return Ok(Check::Retry(stored));
        }
        if request.expected != ExpectedVersion::Any {
            let actual = versions.get(&first.stream).copied().unwrap_or(0);
            if !request.expected.admits(actual) {
                return Err(Refused::Request(EventStoreError::VersionConflict {
                    stream: first.stream.clone(),
                    expected: request.expected.to_string(),
                    actual,
                }));
            }
        }
        for (index, prepared) in request.events.iter().enumerate() {
            if let Some(key) = &prepared.event.idempotency_key
                && known.contains_key(key)
            {
                return Err(Refused::Request(EventStoreError::KeyTaken {
                    index,
                    key: key.clone(),
                }));
            }
        }
        Ok(Check::Write)
    }

    /// The stored batch `request` retries, if it is one: the events from
    /// its first key's id on (a batch's ids are consecutive) are as many,
    /// with the same stream, kind and key at each position.
    async fn stored_batch(
        &mut self,
        original: Appended,
        request: &AppendRequest,
        first_new: i64,
        rows: &Rows,
    ) -> Result<Option<Vec<Appended>>, Refused> {
        let n = request.events.len();
        let start = original.id as i64;
        let stored: Vec<StoredRow> = if start >= first_new {
            // Written by this group: still in memory.
            let from = (start - first_new) as usize;
            (from..(from + n).min(rows.len()))
                .map(|i| {
                    (
                        rows.id[i] as EventSeq,
                        rows.version[i] as u64,
                        rows.stream[i].clone(),
                        rows.kind[i].clone(),
                        rows.key[i].clone(),
                    )
                })
                .collect()
        } else {
            let conn = self.conn().await.map_err(Refused::Group)?;
            let found = conn
                .client
                .query(&conn.stored_from, &[&start, &(n as i64)])
                .await;
            let found = found.map_err(|e| Refused::Group(self.fail(&e)))?;
            found
                .iter()
                .map(|r| {
                    Ok((
                        r.try_get::<_, i64>(0)? as EventSeq,
                        r.try_get::<_, i64>(1)? as u64,
                        r.try_get(2)?,
                        r.try_get(3)?,
                        r.try_get(4)?,
                    ))
                })
                .collect::<Result<_, tokio_postgres::Error>>()
                .map_err(|e| Refused::Group(self.fail(&e)))?
        };
        Ok(group::retried_batch(original.id, request, stored))
    }

    /// Applies the retention now: the age limit, then the count limit, a
    /// step of at most [`PRUNE_CHUNK`] events each.
    async fn retain(&mut self) -> Result<u64, EventStoreError> {
        self.retain_at = tokio::time::Instant::now() + self.retention.every;
        self.more_to_prune = false;
        let mut pruned = 0;
        if let Some(max_age) = self.retention.max_age {
            let age_ms = u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX);
            let before_ms = self.clock.unix_millis().saturating_sub(age_ms);
            if before_ms > 0 {
                pruned += self.prune_older(before_ms, PruneReason::Age).await?;
            }
        }
        if let Some(max_events) = self.retention.max_events {
            pruned += self.prune_beyond(max_events).await?;
        }
        if self.more_to_prune {
            self.retain_at = tokio::time::Instant::now();
        }
        Ok(pruned)
    }

    /// Prunes the longest prefix of the log recorded before `before_ms`.
    async fn prune_older(
        &mut self,
        before_ms: u64,
        reason: PruneReason,
    ) -> Result<u64, EventStoreError> {
        self.more_to_prune = false;
        let before = i64::try_from(before_ms).unwrap_or(i64::MAX);
        self.prune(reason, move |client| {
            Box::pin(async move {
                let row = client
                    .query_one(
                        "SELECT coalesce(\
                           (SELECT min(id) FROM events WHERE ts_ms >= $1) - 1, \
                           (SELECT max(id) FROM events), 0)",
                        &[&before],
                    )
                    .await?;
                row.try_get::<_, i64>(0)
            })
        })
        .await
    }

    /// Prunes the oldest events beyond the newest `keep` (ids are
    /// contiguous: the count is `last - first + 1`).
    async fn prune_beyond(&mut self, keep: u64) -> Result<u64, EventStoreError> {
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        self.prune(PruneReason::Size, move |client| {
            Box::pin(async move {
                let row = client
                    .query_one(
                        "SELECT (SELECT value FROM meta WHERE key = 'last_id') - $1",
                        &[&keep],
                    )
                    .await?;
                row.try_get::<_, i64>(0)
            })
        })
        .await
    }

    /// In one transaction holding the horizon's row: asks `through` for
    /// the last id to prune, deletes up to it (at most [`PRUNE_CHUNK`]
    /// past the horizon) and moves the horizon.
    async fn prune<F>(&mut self, reason: PruneReason, through: F) -> Result<u64, EventStoreError>
    where
        F: for<'a> FnOnce(
            &'a Client,
        ) -> std::pin::Pin<
            Box<dyn Future<Output = Result<i64, tokio_postgres::Error>> + Send + 'a>,
        >,
    {
        self.more_to_prune = false;
        let fail = self.failing();
        let conn = self.conn().await?;
        let client = &conn.client;
        let result = async {
            client.batch_execute("BEGIN").await?;
            let first: i64 = client
                .query_one(
                    "SELECT value FROM meta WHERE key = 'first_available' FOR UPDATE",
                    &[],
                )
                .await?
                .try_get(0)?;
            let mut through = through(client).await?;
            let mut more = false;
            if through >= first + PRUNE_CHUNK {
                through = first + PRUNE_CHUNK - 1;
                more = true;
            }
            if through < first {
                client.batch_execute("COMMIT").await?;
                return Ok((0, false, through));
            }
            let deleted = client
                .execute(
                    "DELETE FROM events WHERE id >= $1 AND id <= $2",
                    &[&first, &through],
                )
                .await?;
            client
                .execute(
                    "UPDATE meta SET value = greatest(value, $1) WHERE key = 'first_available'",
                    &[&(through + 1)],
                )
                .await?;
            client.batch_execute("COMMIT").await?;
            Ok((deleted, more, through))
        }
        .await;
        let (deleted, more, through) = match result {
            Ok(done) => done,
            Err(e) => {
                if !client.is_closed() {
                    let _ = client.batch_execute("ROLLBACK").await;
                }
                return Err(fail(e));
            }
        };
        self.more_to_prune = more;
        reason.report(&self.telemetry, deleted, through + 1);
        Ok(deleted)
    }
}

/// What a request's check decided.
enum Check {
    /// A retry of a stored batch: these events.
    Retry(Vec<Appended>),
    /// New events to write.
    Write,
}

/// A request refused alone, or a failure of the whole group.
enum Refused {
    Request(EventStoreError),
    Group(EventStoreError),
}

/// Adds a checked request's events to the group's rows.
fn add(
    request: &AppendRequest,
    first_new: i64,
    rows: &mut Rows,
    versions: &mut HashMap<String, u64>,
    known: &mut HashMap<String, Appended>,
) -> Vec<Appended> {
    let mut answers = Vec::with_capacity(request.events.len());
    for prepared in &request.events {
        let event = &prepared.event;
        let id = first_new + rows.len() as i64;
        let version = versions.get(&event.stream).copied().unwrap_or(0) + 1;
        versions.insert(event.stream.clone(), version);
        let appended = Appended {
            id: id as EventSeq,
            stream_version: version,
            duplicate: false,
        };
        if let Some(key) = &event.idempotency_key {
            known.insert(
                key.clone(),
                Appended {
                    duplicate: true,
                    ..appended
                },
            );
        }
        rows.id.push(id);
        rows.version.push(version as i64);
        rows.push_columns(prepared);
        answers.push(appended);
    }
    answers
}
