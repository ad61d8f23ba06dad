//! The writer task: the only connection that appends and prunes. It
//! holds the schema's write lease while it writes, gives ids and stream
//! versions from what it read when it took the lease, and commits each
//! group in one statement (see the [module docs](super)).

use std::{
    collections::HashMap,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use mabeam_supervision_core::{Clock, EventSeq, Telemetry};
use tokio::{
    sync::{mpsc, watch},
    time::Instant,
};
use tokio_postgres::{Client, Statement, types::ToSql};

use super::{super::writer::Counters, MIGRATIONS, classify};
use crate::{
    event_store::{
        EventStoreConfig, EventStoreError, Retention,
        append::{Appended, Prepared},
        group::{self, Outcomes, StoredRow},
        writer::{AppendRequest, Durability, PruneReason, Request},
    },
    postgres::{self, MigrateError, PostgresConfig},
};

/// The most events one prune transaction deletes.
const PRUNE_CHUNK: i64 = 50_000;

/// The most stream versions a lease remembers; past it, it forgets them
/// and reads again those it needs.
const MAX_KNOWN_STREAMS: usize = 65_536;

/// While it holds the lease, the writer's session is ended by the server
/// when it sends nothing for this long (a node stopped while holding the
/// lease must not stop every other node's appends): 5 s, or two slices
/// when a slice is longer (the writer sends something at least once a
/// slice while it holds the lease).
fn lease_idle_timeout(slice: Duration) -> Duration {
    Duration::from_secs(5).max(slice.saturating_mul(2))
}

/// How long a writer may wait for the write lease before its group is
/// refused as unavailable: another writer holds it that long only when
/// its node is stuck, and [`lease_idle_timeout`] ends that first.
fn lease_wait(slice: Duration) -> Duration {
    Duration::from_secs(10).max(lease_idle_timeout(slice).saturating_mul(2))
}

/// When a slice taken now ends (a year on when `slice` is beyond any
/// clock).
fn slice_end(slice: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(slice)
        .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600))
}

/// `duration` as a PostgreSQL time setting (milliseconds, at most
/// `i32::MAX`).
fn setting_ms(duration: Duration) -> u128 {
    duration.as_millis().min(i32::MAX as u128)
}

/// A listener's registration: the advisory lock it holds (shared, for
/// its session) while its store has subscribers. Its first key is
/// 1835098725 (`'mabe'`), its second `hashtext` of the store's channel
/// (`$1`), so each schema has its own; a dropped connection releases it.
pub(crate) const LISTENING: &str = "SELECT pg_advisory_lock_shared(1835098725, hashtext($1))::text";

/// Ends a listener's registration (its store has no subscribers left).
pub(crate) const NOT_LISTENING: &str = "SELECT pg_advisory_unlock_shared(1835098725, hashtext($1))";

/// Takes the schema's write lease: an advisory lock for the session, its
/// first key 1835098732 (`'mabl'`), its second `hashtext` of the store's
/// channel (`$1`). A dropped connection releases it.
const TAKE_LEASE: &str = "SELECT pg_advisory_lock(1835098732, hashtext($1))::text";

/// Hands the write lease on (a writer waiting for it is granted it).
const RELEASE_LEASE: &str = "SELECT pg_advisory_unlock(1835098732, hashtext($1))";

/// The newest id given: the newest event's, or the newest pruned if
/// pruning deleted every event.
const HEAD: &str = "SELECT greatest(coalesce((SELECT max(id) FROM events), 0), \
    (SELECT value FROM meta WHERE key = 'last_id'))";

/// The version of each stream of `$1`: its newest event's, or the newest
/// pruned if pruning deleted them all (0 for a stream with no event).
const VERSIONS: &str = "SELECT s.stream, greatest( \
        coalesce((SELECT max(e.stream_version) FROM events e WHERE e.stream = s.stream), 0), \
        coalesce((SELECT t.version FROM streams t WHERE t.stream = s.stream), 0)) \
    FROM unnest($1::text[]) AS s(stream)";

/// Takes the listeners' lock exclusively for the session, if no listener
/// holds it: then no store has subscribers, and none can register until
/// the writer lets it go (a listener's shared lock waits for it), so the
/// writer's commits meanwhile need no `NOTIFY`. Taken with the lease and
/// let go with it: a listener waits at most a slice, then wakes its
/// subscribers, which read by position: no wake-up is lost. `NOTIFY` is
/// worth skipping: it takes a queue lock at commit that serialises every
/// notifying transaction of the server.
const QUIET: &str = "SELECT pg_try_advisory_lock(1835098725, hashtext($1))";

/// Lets the listeners' lock go.
const NOT_QUIET: &str = "SELECT pg_advisory_unlock(1835098725, hashtext($1))";

/// An append statement's SQL: one statement, its own transaction, with
/// the rows whose ids and versions the lease gave. A lone event (`many`
/// false) takes `$1`-`$9` its columns but its id and version, `$10` its
/// id, `$11` its version; a group takes the same as arrays, and `$12` the
/// streams it starts, whose rows it adds (a lone event adds its stream's
/// row when `new_stream`). With `notify` (someone listens), it also sends
/// the wake-up on the channel (`$12` for a lone event with its id,
/// `$13` and `$14` the last id for a group).
fn append_sql(many: bool, new_stream: bool, notify: bool) -> String {
    let mut parts = Vec::new();
    if notify {
        parts.push(if many {
            "wakeup AS MATERIALIZED (SELECT pg_notify($13, $14))"
        } else {
            "wakeup AS MATERIALIZED (SELECT pg_notify($12, $10::bigint::text))"
        });
    }
    if many {
        parts.push(
            "new_streams AS (INSERT INTO streams (stream, version) \
             SELECT unnest($12::text[]), 0 ON CONFLICT (stream) DO NOTHING)",
        );
    } else if new_stream {
        parts.push(
            "stream AS (INSERT INTO streams (stream, version) VALUES ($1, 0) \
             ON CONFLICT (stream) DO NOTHING)",
        );
    }
    let with = if parts.is_empty() {
        String::new()
    } else {
        format!("WITH {} ", parts.join(", "))
    };
    let wakeup = if notify {
        " FROM (SELECT count(*) FROM wakeup) w"
    } else {
        ""
    };
    let insert = if many {
        format!(
            "INSERT INTO events (stream, kind, ts_ms, node, correlation_id, causation_id, \
             idempotency_key, metadata, data, id, stream_version) \
             SELECT u.* FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], \
             $5::text[], $6::bigint[], $7::text[], $8::text[], $9::text[], $10::bigint[], \
             $11::bigint[]) AS u{}",
            if notify {
                ", (SELECT count(*) FROM wakeup) w"
            } else {
                ""
            }
        )
    } else if notify {
        format!(
            "INSERT INTO events (id, stream, stream_version, kind, ts_ms, node, \
             correlation_id, causation_id, idempotency_key, metadata, data) \
             SELECT $10, $1, $11, $2, $3, $4, $5, $6, $7, $8, $9{wakeup}"
        )
    } else {
        "INSERT INTO events (id, stream, stream_version, kind, ts_ms, node, \
         correlation_id, causation_id, idempotency_key, metadata, data) \
         VALUES ($10, $1, $11, $2, $3, $4, $5, $6, $7, $8, $9)"
            .to_owned()
    };
    with + &insert
}

/// The append statements of one wake-up mode ([`append_sql`]).
struct Appends {
    one: Statement,
    one_new_stream: Statement,
    many: Statement,
}

impl Appends {
    /// The statement for a lone event at `version` (its stream's first
    /// at 1, which adds the stream's row).
    fn lone(&self, version: i64) -> &Statement {
        if version == 1 {
            &self.one_new_stream
        } else {
            &self.one
        }
    }

    async fn prepare(client: &Client, notify: bool) -> Result<Appends, tokio_postgres::Error> {
        let sql = [
            append_sql(false, false, notify),
            append_sql(false, true, notify),
            append_sql(true, false, notify),
        ];
        let (one, one_new_stream, many) = futures::try_join!(
            client.prepare(&sql[0]),
            client.prepare(&sql[1]),
            client.prepare(&sql[2]),
        )?;
        Ok(Appends {
            one,
            one_new_stream,
            many,
        })
    }
}

/// What the writer knows while it holds the write lease: no other writer
/// appends to the schema, so the head it read when it took the lease,
/// moved by its own commits, is the log's.
struct Lease {
    /// The newest id given.
    last_id: i64,
    /// Versions of the streams read or written under this lease.
    versions: HashMap<String, u64>,
    /// When the slice ends: the writer then hands the lease on (and takes
    /// it again when it has more to write).
    until: Instant,
    /// Whether the writer holds the listeners' lock too ([`QUIET`]): its
    /// commits then send no wake-up.
    quiet: bool,
}

/// The writer's connection, its prepared statements, and the lease it
/// holds (a new connection holds none).
pub(crate) struct Connected {
    client: Client,
    take_lease: Statement,
    release_lease: Statement,
    head: Statement,
    versions: Statement,
    keys: Statement,
    stored_from: Statement,
    quiet: Statement,
    not_quiet: Statement,
    /// Appends while no store listens.
    appends: Appends,
    /// Appends while some store listens.
    notifying: Appends,
    /// Whether the server ends idle sessions (`idle_session_timeout`,
    /// PostgreSQL 14 on).
    ends_idle_sessions: bool,
    lease: Option<Lease>,
}

impl Connected {
    /// The append statements of the lease's slice, and whether they are
    /// the quiet ones (the writer holds the listeners' lock).
    fn appends(&self) -> (&Appends, bool) {
        if self.lease.as_ref().is_some_and(|lease| lease.quiet) {
            (&self.appends, true)
        } else {
            (&self.notifying, false)
        }
    }
}

/// Connects the writer's connection, migrates the schema and prepares the
/// statements. A server that cannot be reached is
/// [`EventStoreError::Unreachable`], naming the URL without its password.
pub(crate) async fn setup(
    driver: &tokio_postgres::Config,
    pg: &PostgresConfig,
    driven: &super::driven::DrivenConnection,
) -> Result<Connected, EventStoreError> {
    let unreachable = |e: &tokio_postgres::Error| EventStoreError::Unreachable {
        url: pg.redacted_url(),
        detail: postgres::detail(e),
    };
    let mut client = driven.connect(driver).await.map_err(|e| unreachable(&e))?;
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
    let settings = async {
        client
            .batch_execute(&format!(
                "SET lock_timeout = {}",
                setting_ms(lease_wait(pg.write_slice))
            ))
            .await?;
        let row = client
            .query_one(
                "SELECT current_setting('idle_session_timeout', true) IS NOT NULL",
                &[],
            )
            .await?;
        row.try_get::<_, bool>(0)
    };
    let prepared = futures::try_join!(
        settings,
        p(TAKE_LEASE),
        p(RELEASE_LEASE),
        p(HEAD),
        p(VERSIONS),
        p("SELECT idempotency_key, id, stream_version FROM events \
           WHERE idempotency_key = ANY($1)"),
        p(
            "SELECT id, stream_version, stream, kind, idempotency_key FROM events \
           WHERE id >= $1 ORDER BY id LIMIT $2"
        ),
        p(QUIET),
        p(NOT_QUIET),
        Appends::prepare(&client, false),
        Appends::prepare(&client, true),
    );
    let (
        ends_idle_sessions,
        take_lease,
        release_lease,
        head,
        versions,
        keys,
        stored_from,
        quiet,
        not_quiet,
        appends,
        notifying,
    ) = prepared.map_err(|e| classify(pg, &e))?;
    Ok(Connected {
        client,
        take_lease,
        release_lease,
        head,
        versions,
        keys,
        stored_from,
        quiet,
        not_quiet,
        appends,
        notifying,
        ends_idle_sessions,
        lease: None,
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

    /// The columns but the ids and versions, as the statements' first
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

    /// Row `i`'s columns but its id and version.
    fn columns_of(&self, i: usize) -> [&(dyn ToSql + Sync); 9] {
        [
            &self.stream[i],
            &self.kind[i],
            &self.ts[i],
            &self.node[i],
            &self.correlation[i],
            &self.causation[i],
            &self.key[i],
            &self.metadata[i],
            &self.data[i],
        ]
    }

    /// The streams the group starts (their first event is in it).
    fn new_streams(&self) -> Vec<&str> {
        self.stream
            .iter()
            .zip(&self.version)
            .filter(|(_, version)| **version == 1)
            .map(|(stream, _)| stream.as_str())
            .collect()
    }
}

/// The timer in `slot`, set to `at`: made once, and moved only when `at`
/// moves (moving it registers it again).
fn retain_timer(
    slot: &mut Option<Pin<Box<tokio::time::Sleep>>>,
    at: Instant,
) -> Pin<&mut tokio::time::Sleep> {
    let timer = slot.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
    if timer.deadline() != at {
        timer.as_mut().reset(at);
    }
    timer.as_mut()
}

/// A group as the lease leaves it: the rows to insert and each request's
/// answer.
struct Planned {
    rows: Rows,
    outcomes: Outcomes,
    /// The versions of the group's streams after it.
    versions: HashMap<String, u64>,
}

pub(crate) struct PgWriter {
    /// Shared with the error mappings, which each append's path makes.
    pg: Arc<PostgresConfig>,
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
    channel: Arc<str>,
    retain_at: Instant,
    /// The timer for the retention and the lease's slice, kept across
    /// requests: a new timer each time the writer waits would wake the
    /// runtime's timer driver on every append (measured: one extra
    /// wake-up of a parked worker per append, about a third of a lone
    /// append's time on tmpfs).
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    more_to_prune: bool,
    driven: super::driven::DrivenConnection,
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
        driven: super::driven::DrivenConnection,
    ) -> Self {
        PgWriter {
            channel: channel(&pg).into(),
            pg: Arc::new(pg),
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
            retain_at: Instant::now(),
            timer: None,
            more_to_prune: false,
            driven,
        }
    }

    /// Serves requests until a shutdown request or until every sender is
    /// gone; first, with `wait_for_server`, connects and migrates,
    /// retrying with the backoff until the server answers.
    pub(crate) async fn run(mut self) {
        let mut attempt = 0;
        while self.conn.is_none() {
            match setup(&self.driver, &self.pg, &self.driven).await {
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
                    None => break,
                },
            };
            match request {
                Request::Shutdown => break,
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
        self.release_lease().await;
    }

    /// The next request; parked, the writer wakes when the retention is
    /// due and when the lease's slice ends (it then lets the lease go).
    async fn next_request(&mut self) -> Option<Request> {
        loop {
            let slice_ends = self
                .conn
                .as_ref()
                .and_then(|conn| conn.lease.as_ref())
                .map(|lease| lease.until);
            let retain_at = self.retention.is_bounded().then_some(self.retain_at);
            let Some(at) = slice_ends.into_iter().chain(retain_at).min() else {
                return self.requests.recv().await;
            };
            tokio::select! {
                // A queued request first: a busy writer hands its lease
                // on when it takes it again (`lease_for`), and lets it
                // go here only when idle.
                biased;
                request = self.requests.recv() => return request,
                () = retain_timer(&mut self.timer, at) => {
                    if slice_ends.is_some_and(|until| Instant::now() >= until) {
                        self.release_lease().await;
                    }
                    self.retain_if_due().await;
                }
            }
        }
    }

    async fn retain_if_due(&mut self) {
        if self.retention.is_bounded() && Instant::now() >= self.retain_at {
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
    async fn conn(&mut self) -> Result<&mut Connected, EventStoreError> {
        if self.conn.as_ref().is_some_and(|c| c.client.is_closed()) {
            self.conn = None;
        }
        if self.conn.is_none() {
            let client = self
                .driven
                .connect(&self.driver)
                .await
                .map_err(|e| self.fail(&e))?;
            self.conn = Some(prepare(client, &self.pg).await.inspect_err(|e| {
                *self.counters.last_error.lock() = Some(e.to_string());
            })?);
        }
        self.conn
            .as_mut()
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

    /// Drops the connection after a failure that leaves the lease in
    /// doubt: the server releases the lease with the session, and the
    /// next request connects again and reads the head afresh.
    fn forget_connection(&mut self) {
        self.conn = None;
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

    /// Holds the write lease, knowing the versions of `streams`. Takes the
    /// lease when the writer holds none, or, when its slice is over,
    /// hands it on and takes it again (after any writer that waited),
    /// in one round trip: the lock, then reads that see every commit
    /// before it (each statement takes a fresh snapshot). When no other
    /// writer appended meanwhile (the head did not move), the versions
    /// known stay known.
    async fn lease_for(&mut self, streams: &[&str]) -> Result<(), EventStoreError> {
        let in_slice = self
            .conn()
            .await?
            .lease
            .as_ref()
            .is_some_and(|lease| Instant::now() < lease.until);
        if !in_slice {
            self.take_lease(streams).await?;
        }
        let fail = self.failing();
        let conn = self.conn().await?;
        let Some(lease) = &mut conn.lease else {
            return Err(EventStoreError::unavailable("the write lease was lost"));
        };
        let mut unknown: Vec<&str> = streams
            .iter()
            .filter(|s| !lease.versions.contains_key(**s))
            .copied()
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        if lease.versions.len() + unknown.len() > MAX_KNOWN_STREAMS {
            // Forgotten, the group's known streams are read again too.
            lease.versions.clear();
            unknown = streams.to_vec();
        }
        let rows = conn.client.query(&conn.versions, &[&unknown]).await;
        match rows
            .map_err(&fail)
            .and_then(|rows| read_versions(&rows, &fail))
        {
            Ok(read) => {
                if let Some(lease) = &mut conn.lease {
                    lease.versions.extend(read);
                }
                Ok(())
            }
            Err(error) => {
                self.forget_connection();
                Err(error)
            }
        }
    }

    /// Takes the lease, or takes it again (see [`lease_for`](Self::lease_for)),
    /// reading the versions of `streams` in the same round trip when the
    /// writer held none.
    async fn take_lease(&mut self, streams: &[&str]) -> Result<(), EventStoreError> {
        let fail = self.failing();
        let slice = self.pg.write_slice;
        let channel = self.channel.clone();
        let channel: &str = &channel;
        let conn = self.conn().await?;
        let held = conn.lease.take();
        let client = &conn.client;
        let channel_param: [&(dyn ToSql + Sync); 1] = [&channel];
        let streams_param: [&(dyn ToSql + Sync); 1] = [&streams];
        // Each future sends at most one statement, on its first poll: so
        // they go in this order, the locks let go before they are taken
        // again (a session's advisory locks count: taking one it holds
        // would hand nothing on).
        let quiet_held = held.as_ref().is_some_and(|held| held.quiet);
        let not_quiet = async {
            if quiet_held {
                client.execute(&conn.not_quiet, &channel_param).await?;
            }
            Ok::<(), tokio_postgres::Error>(())
        };
        let release = async {
            if held.is_some() {
                client.execute(&conn.release_lease, &channel_param).await?;
            } else if conn.ends_idle_sessions {
                client
                    .batch_execute(&format!(
                        "SET idle_session_timeout = {}",
                        setting_ms(lease_idle_timeout(slice))
                    ))
                    .await?;
            }
            Ok::<(), tokio_postgres::Error>(())
        };
        // Versions are read in the same round trip when the writer held
        // no lease; a writer taking its lease again reads them only if
        // another appended meanwhile (the head moved).
        let no_streams: Vec<&str> = Vec::new();
        let fresh_param: [&(dyn ToSql + Sync); 1] = [&no_streams];
        let versions_param = if held.is_some() {
            &fresh_param
        } else {
            &streams_param
        };
        let taken = futures::try_join!(
            not_quiet,
            release,
            client.execute(&conn.take_lease, &channel_param),
            client.query_one(&conn.quiet, &channel_param),
            client.query_one(&conn.head, &[]),
            client.query(&conn.versions, versions_param),
        );
        let taken = taken
            .map_err(&fail)
            .and_then(|(_, _, _, quiet, head, rows)| {
                let quiet: bool = quiet.try_get(0).map_err(&fail)?;
                let head: i64 = head.try_get(0).map_err(&fail)?;
                Ok((quiet, head, read_versions(&rows, &fail)?))
            });
        let (quiet, head, read) = match taken {
            Ok(taken) => taken,
            Err(error) => {
                self.forget_connection();
                return Err(error);
            }
        };
        let versions = match held {
            // Nobody appended since: what was known still holds.
            Some(lease) if lease.last_id == head => lease.versions,
            // Another writer appended: what was known is read again.
            Some(_) => HashMap::new(),
            None => read,
        };
        conn.lease = Some(Lease {
            last_id: head,
            versions,
            until: slice_end(slice),
            quiet,
        });
        Ok(())
    }

    /// Lets the lease go (the writer has nothing to write, or stops).
    async fn release_lease(&mut self) {
        let Some(conn) = &mut self.conn else {
            return;
        };
        let Some(lease) = conn.lease.take() else {
            return;
        };
        if conn.client.is_closed() {
            return;
        }
        let client = &conn.client;
        let channel: &str = &self.channel;
        let channel_param: [&(dyn ToSql + Sync); 1] = [&channel];
        let listeners = async {
            if lease.quiet {
                client.execute(&conn.not_quiet, &channel_param).await?;
            }
            Ok::<(), tokio_postgres::Error>(())
        };
        let idle = async {
            if conn.ends_idle_sessions {
                client.batch_execute("SET idle_session_timeout = 0").await?;
            }
            Ok::<(), tokio_postgres::Error>(())
        };
        let released = futures::try_join!(
            listeners,
            client.execute(&conn.release_lease, &channel_param),
            idle
        );
        if released.is_err() {
            self.forget_connection();
        }
    }

    async fn commit_group(&mut self, group: Vec<AppendRequest>, size: usize) {
        match self.try_commit(&group).await {
            Ok(outcomes) => {
                *self.counters.last_error.lock() = None;
                self.counters.committed(size);
                self.wake.send_modify(|n| *n += 1);
                // Subscribers read the table: nothing to publish here.
                group::answer(group, outcomes, |_, _| {});
            }
            Err(error) => group::refuse(group, &error),
        }
    }

    /// One group under the lease, in one statement (one round trip, one
    /// commit): the ids and versions come from the lease, every request
    /// is checked in memory (expected versions, retries, keys used twice
    /// in the group), and the statement's unique index refuses a key
    /// stored before. Then, and only then, the stored keys are read and
    /// the group is checked and committed again. The outer error fails
    /// every request.
    async fn try_commit(&mut self, group: &[AppendRequest]) -> Result<Outcomes, EventStoreError> {
        if let [request] = group
            && let [prepared] = request.events.as_slice()
            && prepared.event.idempotency_key.is_none()
        {
            return self.commit_one(request, prepared).await;
        }
        let mut streams: Vec<&str> = group
            .iter()
            .flat_map(|request| request.events.iter().map(|p| p.event.stream.as_str()))
            .collect();
        streams.sort_unstable();
        streams.dedup();
        self.lease_for(&streams).await?;
        let mut known: HashMap<String, Appended> = HashMap::new();
        let mut keys_read = false;
        loop {
            let planned = self.plan(group, &streams, &mut known).await?;
            // A retry is answered whatever its expected version: a
            // refused request with a key may be one.
            if !keys_read
                && planned.outcomes.iter().any(Result::is_err)
                && group.iter().any(|request| {
                    request
                        .events
                        .iter()
                        .any(|p| p.event.idempotency_key.is_some())
                })
            {
                known = self.stored_keys(group).await?;
                keys_read = true;
                continue;
            }
            if planned.rows.len() == 0 {
                return Ok(planned.outcomes);
            }
            let channel = self.channel.clone();
            let conn = self.conn().await?;
            match insert(conn, &channel, &planned.rows).await {
                Ok(()) => {
                    if let Some(lease) = self.conn.as_mut().and_then(|conn| conn.lease.as_mut()) {
                        lease.last_id += planned.rows.len() as i64;
                        lease.versions.extend(planned.versions);
                    }
                    return Ok(planned.outcomes);
                }
                Err(e)
                    if !keys_read
                        && postgres::is_unique_violation_of(&e, "events_by_idempotency_key") =>
                {
                    known = self.stored_keys(group).await?;
                    keys_read = true;
                }
                Err(e) => {
                    // The lease's head or versions may be wrong (or the
                    // connection is lost): start afresh.
                    let error = self.fail(&e);
                    self.forget_connection();
                    return Err(error);
                }
            }
        }
    }

    /// A group of one event without a key (a task awaiting each append):
    /// [`try_commit`](Self::try_commit) without its columns, maps and
    /// copies.
    async fn commit_one(
        &mut self,
        request: &AppendRequest,
        prepared: &Prepared,
    ) -> Result<Outcomes, EventStoreError> {
        let event = &prepared.event;
        let stream = event.stream.as_str();
        self.lease_for(std::slice::from_ref(&stream)).await?;
        let fail = self.failing();
        let channel = self.channel.clone();
        let conn = self.conn().await?;
        let Some(lease) = &conn.lease else {
            return Err(EventStoreError::unavailable("the write lease was lost"));
        };
        let actual = lease.versions.get(stream).copied().unwrap_or(0);
        if let Some(conflict) = conflict(request, actual) {
            return Ok(vec![Err(conflict)]);
        }
        let (id, version) = (lease.last_id + 1, actual + 1);
        let (ts, causation) = (
            prepared.timestamp_ms as i64,
            event.causation_id.map(|id| id as i64),
        );
        let channel: &str = &channel;
        let version_param = version as i64;
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
            &id,
            &version_param,
            &channel,
        ];
        let (appends, quiet) = conn.appends();
        // Quiet, the statement takes no channel.
        let params = &params[..if quiet { 11 } else { 12 }];
        if let Err(e) = conn
            .client
            .execute(appends.lone(version_param), params)
            .await
        {
            let error = fail(e);
            self.forget_connection();
            return Err(error);
        }
        let Some(lease) = &mut conn.lease else {
            return Err(EventStoreError::unavailable("the write lease was lost"));
        };
        lease.last_id = id;
        match lease.versions.get_mut(stream) {
            Some(known) => *known = version,
            None => {
                lease.versions.insert(stream.to_owned(), version);
            }
        }
        Ok(vec![Ok(vec![Appended {
            id: id as EventSeq,
            stream_version: version,
            duplicate: false,
        }])])
    }

    /// Checks each request of `group` against the lease's versions and
    /// the `known` keys, and gives the new events their ids and versions.
    async fn plan(
        &mut self,
        group: &[AppendRequest],
        streams: &[&str],
        known: &mut HashMap<String, Appended>,
    ) -> Result<Planned, EventStoreError> {
        let lease = self
            .conn
            .as_ref()
            .and_then(|conn| conn.lease.as_ref())
            .ok_or_else(|| EventStoreError::unavailable("the write lease was lost"))?;
        let first_new = lease.last_id + 1;
        let mut versions: HashMap<String, u64> = streams
            .iter()
            .map(|s| (s.to_string(), lease.versions.get(*s).copied().unwrap_or(0)))
            .collect();
        let mut rows = Rows::default();
        let mut outcomes = Vec::with_capacity(group.len());
        for request in group {
            let outcome = match self
                .check(request, first_new, &rows, &versions, known)
                .await
            {
                Ok(Check::Retry(original)) => Ok(original),
                Ok(Check::Write) => Ok(add(request, first_new, &mut rows, &mut versions, known)),
                Err(Refused::Request(error)) => Err(error),
                Err(Refused::Group(error)) => return Err(error),
            };
            outcomes.push(outcome);
        }
        Ok(Planned {
            rows,
            outcomes,
            versions,
        })
    }

    /// The stored events of the group's idempotency keys.
    async fn stored_keys(
        &mut self,
        group: &[AppendRequest],
    ) -> Result<HashMap<String, Appended>, EventStoreError> {
        let keys: Vec<&str> = group
            .iter()
            .flat_map(|request| request.events.iter())
            .filter_map(|prepared| prepared.event.idempotency_key.as_deref())
            .collect();
        let fail = self.failing();
        let conn = self.conn().await?;
        let rows = conn
            .client
            .query(&conn.keys, &[&keys])
            .await
            .map_err(&fail)?;
        rows.iter()
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
            .map_err(fail)
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
        if let Some(conflict) = conflict(request, versions.get(&first.stream).copied().unwrap_or(0))
        {
            return Err(Refused::Request(conflict));
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
        self.lease_for(&[]).await?;
        let last = self
            .conn
            .as_ref()
            .and_then(|conn| conn.lease.as_ref())
            .map_or(0, |lease| lease.last_id);
        let through = last.saturating_sub(keep);
        self.prune(PruneReason::Size, move |_| {
            Box::pin(async move { Ok(through) })
        })
        .await
    }

    /// Under the lease, in one transaction holding the horizon's row: asks
    /// `through` for the last id to prune, keeps the newest id and stream
    /// versions it deletes (the heads must not move back when every event
    /// of the log or of a stream is pruned), deletes up to it (at most
    /// [`PRUNE_CHUNK`] past the horizon) and moves the horizon.
    async fn prune<F>(&mut self, reason: PruneReason, through: F) -> Result<u64, EventStoreError>
    where
        F: for<'a> FnOnce(
            &'a Client,
        ) -> std::pin::Pin<
            Box<dyn Future<Output = Result<i64, tokio_postgres::Error>> + Send + 'a>,
        >,
    {
        self.more_to_prune = false;
        self.lease_for(&[]).await?;
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
            client
                .execute(
                    "INSERT INTO streams (stream, version) \
                     SELECT stream, max(stream_version) FROM events \
                     WHERE id >= $1 AND id <= $2 GROUP BY stream \
                     ON CONFLICT (stream) DO UPDATE \
                     SET version = greatest(streams.version, excluded.version)",
                    &[&first, &through],
                )
                .await?;
            client
                .execute(
                    "UPDATE meta SET value = greatest(value, $1) WHERE key = 'last_id'",
                    &[&through],
                )
                .await?;
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

/// The conflict of `request` with its stream at version `actual`, if its
/// expected version does not admit it.
fn conflict(request: &AppendRequest, actual: u64) -> Option<EventStoreError> {
    (!request.expected.admits(actual)).then(|| EventStoreError::VersionConflict {
        stream: request.events[0].event.stream.clone(),
        expected: request.expected.to_string(),
        actual,
    })
}

/// Reads the rows of [`VERSIONS`].
fn read_versions(
    rows: &[tokio_postgres::Row],
    fail: &impl Fn(tokio_postgres::Error) -> EventStoreError,
) -> Result<HashMap<String, u64>, EventStoreError> {
    rows.iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get::<_, i64>(1)? as u64)))
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(fail)
}

/// Inserts the planned rows in one statement, its own transaction (see
/// [`append_sql`] for the parameters).
async fn insert(conn: &Connected, channel: &str, rows: &Rows) -> Result<(), tokio_postgres::Error> {
    let client = &conn.client;
    let (appends, quiet) = conn.appends();
    if rows.len() == 1 {
        let statement = appends.lone(rows.version[0]);
        let mut params: Vec<&(dyn ToSql + Sync)> = rows.columns_of(0).to_vec();
        params.extend([&rows.id[0] as &(dyn ToSql + Sync), &rows.version[0]]);
        if !quiet {
            params.push(&channel);
        }
        client.execute(statement, &params).await?;
        return Ok(());
    }
    let last = rows.id[rows.len() - 1].to_string();
    let new_streams = rows.new_streams();
    let mut params = rows.columns();
    params.extend([&rows.id as &(dyn ToSql + Sync), &rows.version, &new_streams]);
    if !quiet {
        params.extend([&channel as &(dyn ToSql + Sync), &last]);
    }
    client.execute(&appends.many, &params).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_timeouts_outlast_the_slice_and_fit_a_setting() {
        let ms = Duration::from_millis;
        assert_eq!(lease_idle_timeout(ms(10)), Duration::from_secs(5));
        assert_eq!(lease_wait(ms(10)), Duration::from_secs(10));
        assert_eq!(
            lease_idle_timeout(Duration::from_secs(600)),
            Duration::from_secs(1200)
        );
        assert_eq!(
            lease_wait(Duration::from_secs(600)),
            Duration::from_secs(2400)
        );
        assert_eq!(setting_ms(lease_wait(Duration::MAX)), i32::MAX as u128);
        assert!(slice_end(Duration::MAX) > Instant::now());
    }

    #[test]
    fn a_quiet_append_is_a_bare_insert_and_a_notifying_one_sends_its_id() {
        assert!(append_sql(false, false, false).starts_with("INSERT INTO events"));
        assert!(!append_sql(true, false, false).contains("pg_notify"));
        assert!(append_sql(false, true, true).contains("pg_notify($12, $10::bigint::text)"));
        assert!(append_sql(true, false, true).contains("pg_notify($13, $14)"));
    }
}
