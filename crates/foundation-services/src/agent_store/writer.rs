//! The writer thread: the only connection that writes `agents.db`, fed by
//! a crossbeam-channel queue. It commits whatever writes are queued
//! together in one transaction (group commit: many concurrent writers
//! share one fsync) and acknowledges each once its commit is on disk.
//!
//! Each write checks the stored generation and version first and then
//! changes its row with one statement, atomic by itself: a refused write
//! changes nothing and the rest of its group still commits. A commit that
//! fails (or a transaction SQLite rolled back, as after a full disk) fails
//! every write of its group, and none is acknowledged.

use std::path::PathBuf;

use crossbeam_channel::Receiver;
use mabeam_supervision_core::{
    AgentStoreError, AgentWrite,
    agent_store::{AGENT_RECORD_VERSION, check_generation},
};
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use super::{read::status_text, schema};

/// How long the writer polls for the next request before it parks.
const IDLE_POLL: std::time::Duration = std::time::Duration::from_micros(100);

/// How long a group waits for the callers of the group before it.
const GATHER_WAIT: std::time::Duration = std::time::Duration::from_micros(150);

/// What the writer thread is asked to do.
pub(crate) enum Request {
    /// Apply one write.
    Write(AgentWrite, oneshot::Sender<Result<(), AgentStoreError>>),
    /// Finish what was queued before, then stop.
    Shutdown,
}

pub(crate) struct Writer {
    pub(crate) conn: Connection,
    pub(crate) path: PathBuf,
    pub(crate) requests: Receiver<Request>,
    pub(crate) max_group: usize,
}

type Pending = (AgentWrite, oneshot::Sender<Result<(), AgentStoreError>>);

impl Writer {
    /// Serves requests until a shutdown request or until every sender is
    /// gone.
    pub(crate) fn run(mut self) {
        let mut last_group = 1;
        while let Some(request) = self.next_request() {
            let first = match request {
                Request::Shutdown => return,
                Request::Write(write, reply) => (write, reply),
            };
            let mut group = vec![first];
            let mut shutdown = false;
            // The last group's callers, acknowledged together, are likely
            // to write again together: wait a moment for them rather than
            // sync half a group (as the EventStore's writer does).
            let gathering = std::time::Instant::now();
            while group.len() < self.max_group {
                match self.requests.try_recv() {
                    Ok(Request::Write(write, reply)) => group.push((write, reply)),
                    Ok(Request::Shutdown) => {
                        shutdown = true;
                        break;
                    }
                    Err(crossbeam_channel::TryRecvError::Empty)
                        if group.len() < last_group && gathering.elapsed() < GATHER_WAIT =>
                    {
                        std::thread::yield_now();
                    }
                    Err(_) => break,
                }
            }
            last_group = group.len().max(last_group.saturating_sub(1));
            self.commit_group(group);
            if shutdown {
                return;
            }
        }
    }

    /// The next request, polling briefly before parking (waking a parked
    /// thread costs about as much as a small commit).
    fn next_request(&self) -> Option<Request> {
        let polling = std::time::Instant::now();
        while polling.elapsed() < IDLE_POLL {
            match self.requests.try_recv() {
                Ok(request) => return Some(request),
                Err(crossbeam_channel::TryRecvError::Disconnected) => return None,
                Err(crossbeam_channel::TryRecvError::Empty) => std::thread::yield_now(),
            }
        }
        self.requests.recv().ok()
    }

    fn commit_group(&mut self, group: Vec<Pending>) {
        if let Err(e) = self.conn.execute_batch("BEGIN IMMEDIATE") {
            let error = schema::classify(&self.path, e);
            for (_, reply) in group {
                let _ = reply.send(Err(error.clone()));
            }
            return;
        }
        let mut outcomes = Vec::with_capacity(group.len());
        for (write, _) in &group {
            if self.conn.is_autocommit() {
                break;
            }
            outcomes.push(self.apply(write));
        }
        let failure = if self.conn.is_autocommit() {
            // SQLite rolled the transaction back (a full disk, an I/O
            // error): the writes before went with it.
            Some(
                outcomes
                    .iter()
                    .find_map(|o| o.as_ref().err().cloned())
                    .unwrap_or_else(|| AgentStoreError::Storage("transaction rolled back".into())),
            )
        } else {
            self.conn
                .execute_batch("COMMIT")
                .err()
                .map(|e| schema::classify(&self.path, e))
        };
        if let Some(error) = failure {
            if !self.conn.is_autocommit() {
                let _ = self.conn.execute_batch("ROLLBACK");
            }
            for (_, reply) in group {
                let _ = reply.send(Err(error.clone()));
            }
            return;
        }
        for ((_, reply), outcome) in group.into_iter().zip(outcomes) {
            let _ = reply.send(outcome);
        }
    }

    /// Applies one write inside the open transaction: the rules of
    /// [`AgentWrite::apply`], in SQL.
    fn apply(&mut self, write: &AgentWrite) -> Result<(), AgentStoreError> {
        write.validate()?;
        let path = self.path.clone();
        let err = |e| schema::classify(&path, e);
        let id = write.id();
        let generation = write.generation() as i64;
        let stored: Option<(i64, i64)> = self
            .conn
            .prepare_cached("SELECT generation, version FROM agents WHERE id = ?1")
            .and_then(|mut stmt| {
                stmt.query_row(params![id.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .map_err(|e| match e {
                // A row whose generation or version is not an integer.
                rusqlite::Error::FromSqlConversionFailure(..)
                | rusqlite::Error::InvalidColumnType(..) => AgentStoreError::Corrupt {
                    id: id.clone(),
                    detail: e.to_string(),
                },
                e => err(e),
            })?;
        if let Some((stored_generation, version)) = stored {
            check_generation(id, stored_generation as u64, write.generation())?;
            let replaces = matches!(
                write,
                AgentWrite::Register { .. } | AgentWrite::Remove { .. }
            );
            if !replaces && version > AGENT_RECORD_VERSION as i64 {
                return Err(AgentStoreError::NewerVersion {
                    id: id.clone(),
                    found: u32::try_from(version).unwrap_or(u32::MAX),
                    supported: AGENT_RECORD_VERSION,
                });
            }
        } else if !matches!(write, AgentWrite::Register { .. }) {
            return Err(AgentStoreError::NotFound(id.clone()));
        }
        match write {
            AgentWrite::Register { registration, .. } => {
                let r = registration;
                self.conn
                    .prepare_cached(
                        "INSERT INTO agents (id, version, generation, kind, config, args, \
                         restart, status, restart_count, passivated) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
                         ON CONFLICT (id) DO UPDATE SET version = excluded.version, \
                         generation = excluded.generation, kind = excluded.kind, \
                         config = excluded.config, args = excluded.args, \
                         restart = excluded.restart, status = excluded.status, \
                         restart_count = excluded.restart_count, \
                         passivated = excluded.passivated",
                    )
                    .and_then(|mut stmt| {
                        stmt.execute(params![
                            r.id.as_str(),
                            AGENT_RECORD_VERSION as i64,
                            generation,
                            r.kind,
                            r.config.to_string(),
                            r.args.to_string(),
                            r.restart.to_string(),
                            status_text(r.status),
                            r.restart_count as i64,
                            r.passivated,
                        ])
                    })
                    .map_err(err)?;
            }
            AgentWrite::Update { update, .. } => {
                self.conn
                    .prepare_cached(
                        "UPDATE agents SET config = coalesce(?2, config), \
                         status = coalesce(?3, status), \
                         restart_count = coalesce(?4, restart_count), \
                         passivated = coalesce(?5, passivated), generation = ?6 \
                         WHERE id = ?1",
                    )
                    .and_then(|mut stmt| {
                        stmt.execute(params![
                            id.as_str(),
                            update.config.as_ref().map(|c| c.to_string()),
                            update.status.map(status_text),
                            update.restart_count.map(i64::from),
                            update.passivated,
                            generation,
                        ])
                    })
                    .map_err(err)?;
            }
            AgentWrite::Checkpoint { checkpoint, .. } => {
                self.conn
                    .prepare_cached(
                        "UPDATE agents SET checkpoint_format = ?2, checkpoint = ?3, \
                         generation = ?4 WHERE id = ?1",
                    )
                    .and_then(|mut stmt| {
                        stmt.execute(params![
                            id.as_str(),
                            checkpoint.format as i64,
                            checkpoint.data,
                            generation,
                        ])
                    })
                    .map_err(err)?;
            }
            AgentWrite::Remove { .. } => {
                self.conn
                    .prepare_cached("DELETE FROM agents WHERE id = ?1")
                    .and_then(|mut stmt| stmt.execute(params![id.as_str()]))
                    .map_err(err)?;
            }
        }
        Ok(())
    }
}
