//! The writer thread: the only connection that writes, fed by a
//! crossbeam-channel queue, committing whatever appends are queued
//! together in one transaction (group commit) and acknowledging each once
//! its commit is on disk.
//!
//! Each request of a group is all or nothing: a batch runs inside a
//! savepoint, rolled back alone when it fails (a version conflict, say),
//! so the other requests of the group still commit. A commit that fails
//! fails every request of its group, and none is acknowledged.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, atomic::AtomicU64},
};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use mabeam_supervision_core::{Clock, EventSeq, MetaValue, StoredEvent, Telemetry, events};
use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{broadcast, oneshot};

use super::{
    EventStoreError, ExpectedVersion, Retention,
    append::{Appended, BatchReply, Prepared},
    group::{self, Outcomes, StoredRow},
    schema,
};

/// How long the writer polls for the next request before it parks.
const IDLE_POLL: std::time::Duration = std::time::Duration::from_micros(100);

/// How long a group waits for the callers of the group before it.
const GATHER_WAIT: std::time::Duration = std::time::Duration::from_micros(150);

/// The most events one prune transaction deletes: a large backlog (the
/// first pass over an old, large file) is pruned in steps, and the
/// requests queued meanwhile are served between the retention's steps.
const PRUNE_CHUNK: i64 = 50_000;

/// The most stream versions the writer caches before it starts over.
const MAX_CACHED_STREAMS: usize = 100_000;

/// What the writer thread is asked to do.
pub(crate) enum Request {
    /// Append a batch (one event or more).
    Append(AppendRequest),
    /// Delete the events recorded before a time; answers how many.
    Prune {
        before_ms: u64,
        reply: oneshot::Sender<Result<u64, EventStoreError>>,
    },
    /// Apply the retention now; answers how many events it pruned.
    Retain {
        reply: oneshot::Sender<Result<u64, EventStoreError>>,
    },
    /// Report the writer connection's durability settings.
    Durability {
        reply: oneshot::Sender<Result<Durability, EventStoreError>>,
    },
    /// Finish what was queued before, then stop.
    Shutdown,
}

pub(crate) struct AppendRequest {
    pub(crate) events: Vec<Prepared>,
    pub(crate) expected: ExpectedVersion,
    pub(crate) reply: BatchReply,
}

/// The durability settings of the writer's connection, as SQLite reports
/// them: see [`EventStore::durability`](super::EventStore::durability).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Durability {
    /// `PRAGMA journal_mode`, lowercase (`wal`).
    pub journal_mode: String,
    /// `PRAGMA synchronous` by name, lowercase (`full`).
    pub synchronous: String,
}

/// Why events were pruned, as `event_store.pruned` says (both writers).
#[derive(Debug, Clone, Copy)]
pub(crate) enum PruneReason {
    Age,
    Size,
    Request,
}

impl PruneReason {
    /// Emits `event_store.pruned` for a prune that deleted `deleted`
    /// events (none: nothing to say) and left the horizon at
    /// `first_available`.
    pub(crate) fn report(self, telemetry: &Telemetry, deleted: u64, first_available: i64) {
        if deleted > 0 && telemetry.is_enabled() {
            telemetry.emit(
                events::EVENT_STORE_PRUNED,
                &[
                    ("events", deleted as f64),
                    ("first_available", first_available as f64),
                ],
                &[("reason", MetaValue::Str(self.as_str()))],
            );
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            PruneReason::Age => "age",
            PruneReason::Size => "size",
            PruneReason::Request => "request",
        }
    }
}

/// Counters the writer keeps for [`stats`](super::EventStore::stats).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) appended: AtomicU64,
    pub(crate) commits: AtomicU64,
    pub(crate) largest_group: AtomicU64,
    pub(crate) last_error: Mutex<Option<String>>,
}

/// The stream versions and idempotency keys written by the group being
/// committed.
#[derive(Default)]
struct Overlay {
    versions: HashMap<String, u64>,
    keys: HashMap<String, Appended>,
}

/// What a batch changed in the overlay, to undo if it is rolled back.
#[derive(Default)]
struct Undo {
    versions: Vec<(String, Option<u64>)>,
    keys: Vec<String>,
}

impl Overlay {
    /// Sets a stream's version (allocating only for a stream new to the
    /// group) and answers the version it had in the group.
    fn set_version(&mut self, stream: &str, version: u64) -> Option<u64> {
        match self.versions.get_mut(stream) {
            Some(current) => Some(std::mem::replace(current, version)),
            None => {
                self.versions.insert(stream.to_owned(), version);
                None
            }
        }
    }

    fn undo(&mut self, undo: Undo) {
        for (stream, previous) in undo.versions.into_iter().rev() {
            match previous {
                Some(version) => {
                    self.versions.insert(stream, version);
                }
                None => {
                    self.versions.remove(&stream);
                }
            }
        }
        for key in undo.keys {
            self.keys.remove(&key);
        }
    }
}

/// Whether a group still waits for the callers of the group before it:
/// while it is smaller than that one, for [`GATHER_WAIT`] at most. Only
/// how many appends share a commit depends on it, never what is written.
fn gather_more(group_len: usize, last_group: usize, gathering: std::time::Instant) -> bool {
    group_len < last_group && gathering.elapsed() < GATHER_WAIT
}

pub(crate) struct Writer {
    pub(crate) conn: Connection,
    pub(crate) path: PathBuf,
    pub(crate) requests: Receiver<Request>,
    pub(crate) live: broadcast::Sender<Arc<StoredEvent>>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) max_group: usize,
    pub(crate) streams: HashMap<String, u64>,
    pub(crate) retention: Retention,
    pub(crate) clock: Clock,
    pub(crate) telemetry: Telemetry,
    /// When the retention is next applied (now at first: on open).
    pub(crate) retain_at: std::time::Instant,
    /// A prune stopped at [`PRUNE_CHUNK`] with more to go.
    pub(crate) more_to_prune: bool,
}

impl Writer {
    /// Serves requests until a shutdown request or until every sender is
    /// gone.
    pub(crate) fn run(mut self) {
        let mut next = self.next_request();
        let mut last_group = 1;
        while let Some(request) = next.take() {
            match request {
                Request::Shutdown => return,
                Request::Prune { before_ms, reply } => {
                    let _ =
                        reply.send(self.until_done(|writer| {
                            writer.prune_older(before_ms, PruneReason::Request)
                        }));
                }
                Request::Retain { reply } => {
                    let _ = reply.send(self.until_done(Writer::retain));
                }
                Request::Durability { reply } => {
                    let _ = reply.send(self.durability());
                }
                Request::Append(first) => {
                    let mut size = first.events.len();
                    let mut group = vec![first];
                    // The last group's callers, acknowledged together, are
                    // likely to send again together: wait a moment for
                    // them (PostgreSQL's commit_delay, bounded by a
                    // fraction of a commit) rather than sync half a group.
                    let gathering = std::time::Instant::now();
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
                            Err(crossbeam_channel::TryRecvError::Empty)
                                if gather_more(group.len(), last_group, gathering) =>
                            {
                                std::thread::yield_now();
                            }
                            Err(_) => break,
                        }
                    }
                    // A short group lowers the next wait's target by
                    // one only: one slow caller does not halve the groups.
                    last_group = group.len().max(last_group.saturating_sub(1));
                    self.commit_group(group, size);
                }
            }
            self.retain_if_due();
            if next.is_none() {
                next = self.next_request();
            }
        }
    }

    /// The next request, waiting for it. A caller awaiting each
    /// acknowledgement sends its next append within microseconds of the
    /// last reply: the writer polls for a short while before it parks, as
    /// waking a parked thread costs a VM about as much as a small commit.
    /// Parked, it wakes when the retention is due.
    fn next_request(&mut self) -> Option<Request> {
        let polling = std::time::Instant::now();
        while polling.elapsed() < IDLE_POLL {
            match self.requests.try_recv() {
                Ok(request) => return Some(request),
                Err(crossbeam_channel::TryRecvError::Disconnected) => return None,
                Err(crossbeam_channel::TryRecvError::Empty) => std::thread::yield_now(),
            }
        }
        loop {
            if !self.retention.is_bounded() {
                return self.requests.recv().ok();
            }
            self.retain_if_due();
            match self.requests.recv_deadline(self.retain_at) {
                Ok(request) => return Some(request),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Applies the retention if its time has come (the writer's own
    /// monotonic time: it runs on a thread, not on the runtime's clock).
    fn retain_if_due(&mut self) {
        if !self.retention.is_bounded() || std::time::Instant::now() < self.retain_at {
            return;
        }
        // A failure is recorded for the health check and retried at the
        // next check.
        let _ = self.retain();
    }

    /// Runs `prune` until no step stops at [`PRUNE_CHUNK`]: a prune asked
    /// for answers once it is whole.
    fn until_done(
        &mut self,
        mut prune: impl FnMut(&mut Self) -> Result<u64, EventStoreError>,
    ) -> Result<u64, EventStoreError> {
        let mut pruned = 0;
        loop {
            pruned += prune(self)?;
            if !self.more_to_prune {
                return Ok(pruned);
            }
        }
    }

    /// Applies the retention now: the age limit, then the count limit, a
    /// step of at most [`PRUNE_CHUNK`] events each; with more to go, the
    /// next pass is due at once (after the requests queued meanwhile).
    fn retain(&mut self) -> Result<u64, EventStoreError> {
        self.retain_at = std::time::Instant::now() + self.retention.every;
        self.more_to_prune = false;
        let mut pruned = 0;
        if let Some(max_age) = self.retention.max_age {
            let age_ms = u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX);
            let before_ms = self.clock.unix_millis().saturating_sub(age_ms);
            if before_ms > 0 {
                pruned += self.prune_older(before_ms, PruneReason::Age)?;
            }
        }
        if let Some(max_events) = self.retention.max_events {
            pruned += self.prune_beyond(max_events)?;
        }
        if self.more_to_prune {
            self.retain_at = std::time::Instant::now();
        }
        Ok(pruned)
    }

    fn durability(&self) -> Result<Durability, EventStoreError> {
        let err = |e| schema::classify(&self.path, e);
        let journal_mode: String = self
            .conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .map_err(err)?;
        let synchronous: i64 = self
            .conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .map_err(err)?;
        let synchronous = match synchronous {
            0 => "off",
            1 => "normal",
            2 => "full",
            3 => "extra",
            _ => "unknown",
        };
        Ok(Durability {
            journal_mode: journal_mode.to_lowercase(),
            synchronous: synchronous.to_owned(),
        })
    }

    fn commit_group(&mut self, group: Vec<AppendRequest>, size: usize) {
        let mut outcomes: Outcomes = Vec::with_capacity(group.len());
        let mut overlay = Overlay::default();
        if let Err(e) = self.conn.execute_batch("BEGIN IMMEDIATE") {
            group::refuse(group, &self.fail(e));
            return;
        }
        for request in &group {
            if self.conn.is_autocommit() {
                // SQLite rolled the transaction back (an I/O error): do
                // not write the rest outside a transaction.
                outcomes.push(Err(EventStoreError::storage(
                    "the transaction was rolled back by an earlier failure",
                )));
                continue;
            }
            outcomes.push(self.append_one(request, &mut overlay));
        }
        let committed = self
            .save_versions(&overlay)
            .and_then(|()| self.conn.execute_batch("COMMIT"));
        if let Err(e) = committed {
            let error = self.fail(e);
            if !self.conn.is_autocommit() {
                let _ = self.conn.execute_batch("ROLLBACK");
            }
            self.streams.clear();
            group::refuse(group, &error);
            return;
        }
        self.counters.committed(size);
        self.remember(overlay.versions);
        let live = &self.live;
        let publish = live.receiver_count() != 0;
        group::answer(group, outcomes, |events, appended| {
            if !publish {
                return;
            }
            for (prepared, appended) in events.into_iter().zip(appended) {
                if !appended.duplicate {
                    let _ = live.send(Arc::new(StoredEvent {
                        id: appended.id,
                        stream_version: appended.stream_version,
                        timestamp_ms: prepared.timestamp_ms,
                        event: mabeam_supervision_core::Event {
                            node: Some(prepared.node),
                            ..prepared.event
                        },
                    }));
                }
            }
        });
    }

    /// Appends one request inside the open transaction: all its events or
    /// none (a batch runs in a savepoint, and its overlay changes are
    /// undone with it).
    fn append_one(
        &mut self,
        request: &AppendRequest,
        overlay: &mut Overlay,
    ) -> Result<Vec<Appended>, EventStoreError> {
        if request.events.len() == 1 {
            // One statement: atomic by itself, and it changes the overlay
            // only once it succeeded.
            return self.write_events(request, overlay, None);
        }
        self.conn
            .execute_batch("SAVEPOINT batch")
            .map_err(|e| self.fail(e))?;
        let mut undo = Undo::default();
        let result = self.write_events(request, overlay, Some(&mut undo));
        match &result {
            Ok(_) => self
                .conn
                .execute_batch("RELEASE batch")
                .map_err(|e| self.fail(e))?,
            Err(_) => {
                overlay.undo(undo);
                if !self.conn.is_autocommit() {
                    self.conn
                        .execute_batch("ROLLBACK TO batch; RELEASE batch")
                        .map_err(|e| self.fail(e))?;
                }
            }
        }
        result
    }

    fn write_events(
        &mut self,
        request: &AppendRequest,
        overlay: &mut Overlay,
        mut undo: Option<&mut Undo>,
    ) -> Result<Vec<Appended>, EventStoreError> {
        // A batch is one unit: a retry of a stored batch answers it whole
        // and writes nothing; any other batch is checked in full.
        if let Some(original) = self.retry_of(request, overlay)? {
            return Ok(original);
        }
        let first = &request.events[0].event;
        if request.expected != ExpectedVersion::Any {
            let actual = self.version_of(&first.stream, overlay)?;
            if !request.expected.admits(actual) {
                return Err(EventStoreError::VersionConflict {
                    stream: first.stream.clone(),
                    expected: request.expected.to_string(),
                    actual,
                });
            }
        }
        let mut answers = Vec::with_capacity(request.events.len());
        for (index, prepared) in request.events.iter().enumerate() {
            let event = &prepared.event;
            if let Some(key) = &event.idempotency_key
                && self.known_key(key, overlay)?.is_some()
            {
                return Err(EventStoreError::KeyTaken {
                    index,
                    key: key.clone(),
                });
            }
            let version = self.version_of(&event.stream, overlay)? + 1;
            let id = {
                let mut insert = self
                    .conn
                    .prepare_cached(
                        "INSERT INTO events (stream, stream_version, kind, ts_ms, node, \
                         correlation_id, causation_id, idempotency_key, metadata, data) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                    )
                    .map_err(|e| schema::classify(&self.path, e))?;
                insert
                    .insert(params![
                        event.stream,
                        version as i64,
                        event.kind,
                        prepared.timestamp_ms as i64,
                        prepared.node,
                        event.correlation_id,
                        event.causation_id.map(|id| id as i64),
                        event.idempotency_key,
                        prepared.metadata,
                        prepared.data,
                    ])
                    .map_err(|e| schema::classify(&self.path, e))? as EventSeq
            };
            let appended = Appended {
                id,
                stream_version: version,
                duplicate: false,
            };
            let previous = overlay.set_version(&event.stream, version);
            if let Some(undo) = undo.as_deref_mut() {
                undo.versions.push((event.stream.clone(), previous));
            }
            if let Some(key) = &event.idempotency_key {
                overlay.keys.insert(key.clone(), appended);
                if let Some(undo) = undo.as_deref_mut() {
                    undo.keys.push(key.clone());
                }
            }
            answers.push(appended);
        }
        Ok(answers)
    }

    /// The stored batch `request` retries, if it is one: its first event's
    /// key is stored, and the events written from there (a batch's ids
    /// are consecutive: one writer inserts them one after the other) are
    /// as many, with the same stream, kind and key at each position.
    fn retry_of(
        &self,
        request: &AppendRequest,
        overlay: &Overlay,
    ) -> Result<Option<Vec<Appended>>, EventStoreError> {
        let Some(key) = &request.events[0].event.idempotency_key else {
            return Ok(None);
        };
        let Some(original) = self.known_key(key, overlay)? else {
            return Ok(None);
        };
        let stored: Vec<StoredRow> = self
            .conn
            .prepare_cached(
                "SELECT id, stream_version, stream, kind, idempotency_key FROM events \
                 WHERE id >= ?1 ORDER BY id LIMIT ?2",
            )
            .and_then(|mut stmt| {
                stmt.query_map(
                    params![original.id as i64, request.events.len() as i64],
                    |r| {
                        Ok((
                            r.get::<_, i64>(0)? as EventSeq,
                            r.get::<_, i64>(1)? as u64,
                            r.get(2)?,
                            r.get(3)?,
                            r.get(4)?,
                        ))
                    },
                )?
                .collect()
            })
            .map_err(|e| schema::classify(&self.path, e))?;
        Ok(group::retried_batch(original.id, request, stored))
    }

    /// Caches the versions a group committed, starting over when the cache
    /// would pass [`MAX_CACHED_STREAMS`] (what is forgotten is read again).
    fn remember(&mut self, versions: HashMap<String, u64>) {
        if self.streams.len() + versions.len() > MAX_CACHED_STREAMS {
            self.streams.clear();
        }
        self.streams.extend(versions);
    }

    /// The stream's version: written by this group, cached, or stored (0:
    /// no event yet).
    fn version_of(&mut self, stream: &str, overlay: &Overlay) -> Result<u64, EventStoreError> {
        if let Some(version) = overlay
            .versions
            .get(stream)
            .or_else(|| self.streams.get(stream))
        {
            return Ok(*version);
        }
        // The streams table keeps a version as of the stream's first
        // event or its last prune; the events since are in the log.
        let stored: i64 = self
            .conn
            .prepare_cached(
                "SELECT max(\
                   coalesce((SELECT version FROM streams WHERE stream = ?1), 0), \
                   coalesce((SELECT max(stream_version) FROM events WHERE stream = ?1), 0))",
            )
            .and_then(|mut stmt| stmt.query_row(params![stream], |r| r.get(0)))
            .map_err(|e| schema::classify(&self.path, e))?;
        let version = stored as u64;
        self.streams.insert(stream.to_owned(), version);
        Ok(version)
    }

    /// The event already stored (or written in this group) under `key`.
    fn known_key(&self, key: &str, overlay: &Overlay) -> Result<Option<Appended>, EventStoreError> {
        if let Some(appended) = overlay.keys.get(key) {
            return Ok(Some(*appended));
        }
        self.conn
            .prepare_cached("SELECT id, stream_version FROM events WHERE idempotency_key = ?1")
            .and_then(|mut stmt| {
                stmt.query_row(params![key], |r| {
                    Ok(Appended {
                        id: r.get::<_, i64>(0)? as EventSeq,
                        stream_version: r.get::<_, i64>(1)? as u64,
                        duplicate: true,
                    })
                })
                .optional()
            })
            .map_err(|e| schema::classify(&self.path, e))
    }

    /// Gives each stream new to the store its row. A known stream's row is
    /// left alone: its version is in the log (the index on stream and
    /// version answers it), so a commit writes one B-tree, not two.
    fn save_versions(&self, overlay: &Overlay) -> rusqlite::Result<()> {
        let mut insert = self.conn.prepare_cached(
            "INSERT INTO streams (stream, version) VALUES (?1, ?2) \
             ON CONFLICT (stream) DO NOTHING",
        )?;
        for (stream, version) in &overlay.versions {
            // `version_of` cached every stream of the group before the
            // group wrote to it: 0 there means no event before this group.
            if self.streams.get(stream).is_none_or(|before| *before == 0) {
                insert.execute(params![stream, *version as i64])?;
            }
        }
        Ok(())
    }

    /// Prunes the oldest events recorded before `before_ms`: the longest
    /// prefix of the log older than it (an event stamped later, by a clock
    /// that stepped back, keeps those after it).
    fn prune_older(&mut self, before_ms: u64, reason: PruneReason) -> Result<u64, EventStoreError> {
        self.more_to_prune = false;
        let before = i64::try_from(before_ms).unwrap_or(i64::MAX);
        let through: Option<i64> = self
            .conn
            .query_row(
                "SELECT coalesce(\
                   (SELECT min(id) FROM events WHERE ts_ms >= ?1) - 1, \
                   (SELECT max(id) FROM events))",
                params![before],
                |r| r.get(0),
            )
            .map_err(|e| self.fail(e))?;
        match through {
            Some(through) if through > 0 => self.prune_through(through, reason),
            _ => Ok(0),
        }
    }

    /// Prunes the oldest events beyond the newest `keep`.
    fn prune_beyond(&mut self, keep: u64) -> Result<u64, EventStoreError> {
        let stored: i64 = self
            .conn
            .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
            .map_err(|e| self.fail(e))?;
        let excess = (stored as u64).saturating_sub(keep);
        if excess == 0 {
            return Ok(0);
        }
        let through: i64 = self
            .conn
            .query_row(
                "SELECT id FROM events ORDER BY id LIMIT 1 OFFSET ?1",
                params![excess as i64 - 1],
                |r| r.get(0),
            )
            .map_err(|e| self.fail(e))?;
        self.prune_through(through, PruneReason::Size)
    }

    /// Deletes every event of id `through` or less and moves the horizon
    /// past it, in one transaction: at most [`PRUNE_CHUNK`] ids past the
    /// horizon (then `more_to_prune` says so).
    fn prune_through(&mut self, through: i64, reason: PruneReason) -> Result<u64, EventStoreError> {
        let first = schema::first_available(&self.conn).map_err(|e| self.fail(e))? as i64;
        let through = if through >= first + PRUNE_CHUNK {
            self.more_to_prune = true;
            first + PRUNE_CHUNK - 1
        } else {
            through
        };
        // The versions of the events about to go move to the streams
        // table first, in the same transaction: ids and versions are never
        // reused after a prune.
        let pruned = (|| {
            let tx = self.conn.unchecked_transaction()?;
            tx.execute(
                "INSERT INTO streams (stream, version) \
                 SELECT stream, max(stream_version) FROM events WHERE id <= ?1 GROUP BY stream \
                 ON CONFLICT (stream) DO UPDATE SET version = max(version, excluded.version)",
                params![through],
            )?;
            let deleted = tx.execute("DELETE FROM events WHERE id <= ?1", params![through])?;
            tx.execute(
                "UPDATE meta SET value = max(value, ?1) WHERE key = 'first_available'",
                params![through + 1],
            )?;
            tx.commit()?;
            Ok(deleted as u64)
        })();
        let deleted = pruned.map_err(|e| self.fail(e))?;
        reason.report(&self.telemetry, deleted, through + 1);
        Ok(deleted)
    }

    /// Records a storage failure for the health check and maps it.
    fn fail(&self, error: rusqlite::Error) -> EventStoreError {
        let error = schema::classify(&self.path, error);
        *self.counters.last_error.lock() = Some(error.to_string());
        error
    }
}
