//! The agent store: the durable table of agent registrations and their
//! latest checkpoints, the contract the agent layer writes through and
//! recovers from ([`AgentStore`]), and [`MemoryAgentStore`], its in-memory
//! implementation for tests and for users who want no durability.
//!
//! # What is durable when
//!
//! Every write ([`AgentStore::write`]: register, update, checkpoint,
//! remove) is **acknowledged only once it is durable** in the store's
//! medium: for a disk-backed store (foundation-services' SQLite store), its
//! commit is on disk, so a `kill -9` or a power cut right after the
//! acknowledgement loses nothing. A write not yet acknowledged may or may
//! not have happened; a write that returned an error changed nothing. The
//! in-memory store is "durable" for as long as the process lives.
//!
//! What a crash loses is therefore what was not yet written: an agent's
//! state since its last acknowledged checkpoint. When checkpoints are taken
//! (after each message, every N messages or T, on passivation, on stop) is
//! the agent layer's choice; an ask answered after an acknowledged
//! checkpoint survives a crash.
//!
//! # Records
//!
//! An [`AgentRecord`] is one agent's row: its [`AgentRegistration`] (id,
//! kind, configuration, start arguments, restart policy, status, restart
//! count, passivated flag), its fencing `generation`, and its latest
//! [`Checkpoint`] (opaque bytes with a `format` number the agent kind
//! owns). The store's own stored form carries
//! [`AGENT_RECORD_VERSION`]: a record written by a newer build is a typed
//! [`AgentStoreError::NewerVersion`] for that record alone.
//!
//! # Fencing
//!
//! Every write carries a generation. A write whose generation is older
//! than the record's is refused with [`AgentStoreError::Stale`] and changes
//! nothing; an accepted write sets the record's generation to its own. The
//! cluster uses it so that at most one incarnation of an agent writes it.
//!
//! # Loading
//!
//! [`AgentStore::load_page`] reads the table in id order, a page at a time,
//! so a million rows are never held twice. A row that cannot be read (a
//! corrupt row, a newer version) comes back as that agent's error
//! ([`LoadedAgent`]); the other rows load.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use mabeam_supervision_core::{AgentRegistration, AgentStore, Checkpoint, MemoryAgentStore};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let store: Arc<dyn AgentStore> = Arc::new(MemoryAgentStore::new());
//! let counter = AgentRegistration::new("counter-1", "counter", serde_json::json!({"step": 1}));
//! store.register(counter, 1).await.unwrap(); // durable once it returns
//! let state = Checkpoint { format: 1, data: 5u64.to_le_bytes().to_vec() };
//! store.checkpoint("counter-1".into(), state.clone(), 1).await.unwrap();
//!
//! // Recovery: every record, a page at a time.
//! let page = store.load_page(None, 1000).await.unwrap();
//! assert_eq!(page[0].record.as_ref().unwrap().checkpoint, Some(state));
//! # }
//! ```

use std::{collections::BTreeMap, fmt, sync::Arc};

use futures::future::{BoxFuture, FutureExt};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use crate::{AgentId, AgentStatus, ErrorCode};

/// The version of the stored form of an [`AgentRecord`] this build writes
/// and reads. A record of a higher version is
/// [`AgentStoreError::NewerVersion`].
pub const AGENT_RECORD_VERSION: u32 = 1;

/// An agent's registration: what it takes to start it again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentRegistration {
    /// The agent's id (not empty).
    pub id: AgentId,
    /// Its kind: which agent type to start (not empty).
    pub kind: String,
    /// Its configuration.
    pub config: Value,
    /// Its start arguments.
    pub args: Value,
    /// Its restart policy, as the agent layer serialises it.
    pub restart: Value,
    /// Its status.
    pub status: AgentStatus,
    /// How often it was restarted.
    pub restart_count: u32,
    /// Whether it is passivated (state kept, no process).
    pub passivated: bool,
}

impl AgentRegistration {
    /// A registration of a new agent: status `Registered`, no restarts,
    /// not passivated, arguments and restart policy `null`.
    pub fn new(id: impl Into<AgentId>, kind: impl Into<String>, config: Value) -> Self {
        AgentRegistration {
            id: id.into(),
            kind: kind.into(),
            config,
            args: Value::Null,
            restart: Value::Null,
            status: AgentStatus::Registered,
            restart_count: 0,
            passivated: false,
        }
    }
}

/// An agent's latest checkpoint: its state, serialised by its kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The format (version) of `data`, owned by the agent kind: a kind
    /// that cannot read a format says so with its own typed error.
    pub format: u32,
    /// The serialised state.
    pub data: Vec<u8>,
}

/// One agent's stored row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentRecord {
    /// Its registration.
    pub registration: AgentRegistration,
    /// The generation of the last write accepted (fencing).
    pub generation: u64,
    /// Its latest checkpoint, if any.
    pub checkpoint: Option<Checkpoint>,
}

/// A change to some fields of a registration; `None` leaves a field alone.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentUpdate {
    /// A new configuration.
    pub config: Option<Value>,
    /// A new status.
    pub status: Option<AgentStatus>,
    /// A new restart count.
    pub restart_count: Option<u32>,
    /// A new passivated flag.
    pub passivated: Option<bool>,
}

impl AgentUpdate {
    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.config.is_none()
            && self.status.is_none()
            && self.restart_count.is_none()
            && self.passivated.is_none()
    }

    /// Applies it to a registration.
    pub fn apply_to(&self, registration: &mut AgentRegistration) {
        if let Some(config) = &self.config {
            registration.config = config.clone();
        }
        if let Some(status) = self.status {
            registration.status = status;
        }
        if let Some(count) = self.restart_count {
            registration.restart_count = count;
        }
        if let Some(passivated) = self.passivated {
            registration.passivated = passivated;
        }
    }
}

/// One write to the store. Each is all or nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AgentWrite {
    /// Registers an agent, or replaces its registration (its checkpoint is
    /// kept).
    Register {
        /// The registration.
        registration: AgentRegistration,
        /// The writer's generation.
        generation: u64,
    },
    /// Changes fields of a registered agent's registration.
    Update {
        /// The agent.
        id: AgentId,
        /// The change (not empty).
        update: AgentUpdate,
        /// The writer's generation.
        generation: u64,
    },
    /// Replaces a registered agent's checkpoint.
    Checkpoint {
        /// The agent.
        id: AgentId,
        /// The checkpoint.
        checkpoint: Checkpoint,
        /// The writer's generation.
        generation: u64,
    },
    /// Removes an agent and its checkpoint (deregistration).
    Remove {
        /// The agent.
        id: AgentId,
        /// The writer's generation.
        generation: u64,
    },
}

impl AgentWrite {
    /// The agent written.
    pub fn id(&self) -> &AgentId {
        match self {
            AgentWrite::Register { registration, .. } => &registration.id,
            AgentWrite::Update { id, .. }
            | AgentWrite::Checkpoint { id, .. }
            | AgentWrite::Remove { id, .. } => id,
        }
    }

    /// The writer's generation.
    pub fn generation(&self) -> u64 {
        match self {
            AgentWrite::Register { generation, .. }
            | AgentWrite::Update { generation, .. }
            | AgentWrite::Checkpoint { generation, .. }
            | AgentWrite::Remove { generation, .. } => *generation,
        }
    }

    /// Checks the write on its own (before any stored state): an empty id
    /// or kind, or an empty update, is [`AgentStoreError::Invalid`].
    pub fn validate(&self) -> Result<(), AgentStoreError> {
        if self.id().as_str().is_empty() {
            return Err(AgentStoreError::Invalid("empty agent id".into()));
        }
        if self.generation() > i64::MAX as u64 {
            return Err(AgentStoreError::Invalid(format!(
                "generation {} is above {}",
                self.generation(),
                i64::MAX
            )));
        }
        match self {
            AgentWrite::Register { registration, .. } if registration.kind.is_empty() => Err(
                AgentStoreError::Invalid(format!("agent {}: empty kind", registration.id)),
            ),
            AgentWrite::Update { id, update, .. } if update.is_empty() => Err(
                AgentStoreError::Invalid(format!("agent {id}: an update that changes nothing")),
            ),
            _ => Ok(()),
        }
    }

    /// Applies the write to a table, the rules every store follows:
    /// validated first, fenced by generation, `NotFound` for an agent not
    /// registered (but for `Register`). An error changes nothing.
    pub fn apply(&self, table: &mut BTreeMap<AgentId, AgentRecord>) -> Result<(), AgentStoreError> {
        self.validate()?;
        let generation = self.generation();
        let id = self.id();
        let current = table.get_mut(id.as_str());
        if let Some(record) = &current {
            check_generation(id, record.generation, generation)?;
        }
        match (self, current) {
            (AgentWrite::Register { registration, .. }, Some(record)) => {
                record.registration = registration.clone();
                record.generation = generation;
            }
            (AgentWrite::Register { registration, .. }, None) => {
                table.insert(
                    registration.id.clone(),
                    AgentRecord {
                        registration: registration.clone(),
                        generation,
                        checkpoint: None,
                    },
                );
            }
            (_, None) => return Err(AgentStoreError::NotFound(id.clone())),
            (AgentWrite::Update { update, .. }, Some(record)) => {
                update.apply_to(&mut record.registration);
                record.generation = generation;
            }
            (AgentWrite::Checkpoint { checkpoint, .. }, Some(record)) => {
                record.checkpoint = Some(checkpoint.clone());
                record.generation = generation;
            }
            (AgentWrite::Remove { .. }, Some(_)) => {
                table.remove(id.as_str());
            }
        }
        Ok(())
    }
}

/// Refuses a write whose generation is older than the stored one.
pub fn check_generation(id: &AgentId, stored: u64, offered: u64) -> Result<(), AgentStoreError> {
    if offered < stored {
        Err(AgentStoreError::Stale {
            id: id.clone(),
            stored,
            offered,
        })
    } else {
        Ok(())
    }
}

/// One row of a load: the agent's record, or why it could not be read.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedAgent {
    /// The agent.
    pub id: AgentId,
    /// Its record, or the error for this agent alone
    /// ([`AgentStoreError::Corrupt`], [`AgentStoreError::NewerVersion`]).
    pub record: Result<AgentRecord, AgentStoreError>,
}

/// Why an agent store refused or failed an operation.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AgentStoreError {
    /// No agent with this id is registered.
    #[error("agent {0} not registered")]
    NotFound(AgentId),
    /// The write carries an older generation than the record: another
    /// writer owns the agent now.
    #[error("agent {id}: stale generation {offered} (stored {stored})")]
    Stale {
        /// The agent.
        id: AgentId,
        /// The record's generation.
        stored: u64,
        /// The write's.
        offered: u64,
    },
    /// The medium is full: the write was refused, nothing changed; reads
    /// and removals still work.
    #[error("agent store full: {0}")]
    StorageFull(String),
    /// The agent's stored row cannot be read.
    #[error("agent {id}: corrupt record: {detail}")]
    Corrupt {
        /// The agent.
        id: AgentId,
        /// What is wrong.
        detail: String,
    },
    /// The agent's record was written by a newer build.
    #[error("agent {id}: record version {found} is newer than {supported}")]
    NewerVersion {
        /// The agent.
        id: AgentId,
        /// The record's version.
        found: u32,
        /// The newest this build reads.
        supported: u32,
    },
    /// Bad input, refused before anything was written.
    #[error("invalid agent write: {0}")]
    Invalid(String),
    /// The medium failed (I/O); the write may not have happened.
    #[error("agent store failed: {0}")]
    Storage(String),
    /// The store is closed.
    #[error("agent store unavailable: {0}")]
    Unavailable(String),
    /// The store's file is not an agent store (or another program's).
    #[error("not an agent store: {0}")]
    ForeignFile(String),
    /// The store's schema is newer than this build.
    #[error("agent store schema {found} is newer than {supported}")]
    NewerSchema {
        /// The file's schema version.
        found: u32,
        /// The newest this build reads.
        supported: u32,
    },
    /// Another store has this store's directory open.
    #[error("agent store {0} is locked by another process")]
    Locked(String),
    /// The writer does not own the agent in the cluster (another member
    /// claimed it, or it was released): a fenced store refused the write
    /// and changed nothing.
    #[error("agent {id}: the writer does not own it (owner: {owner})")]
    Fenced {
        /// The agent.
        id: AgentId,
        /// Its owner as the store records it (`node/generation`), or
        /// `nobody`.
        owner: String,
    },
}

impl ErrorCode for AgentStoreError {
    fn code(&self) -> u32 {
        match self {
            AgentStoreError::NotFound(_) => 1701,
            AgentStoreError::Stale { .. } => 1702,
            AgentStoreError::StorageFull(_) => 1703,
            AgentStoreError::Corrupt { .. } => 1704,
            AgentStoreError::NewerVersion { .. } => 1705,
            AgentStoreError::Invalid(_) => 1706,
            AgentStoreError::Storage(_) => 1707,
            AgentStoreError::Unavailable(_) => 1708,
            AgentStoreError::ForeignFile(_) => 1709,
            AgentStoreError::NewerSchema { .. } => 1710,
            AgentStoreError::Locked(_) => 1711,
            AgentStoreError::Fenced { .. } => 1712,
        }
    }
}

/// The durable table of agents the agent layer writes through and recovers
/// from; object-safe, used as `Arc<dyn AgentStore>`.
///
/// Every write returns only once it is durable; an error changes nothing
/// (but [`AgentStoreError::Storage`], after which the write may or may not
/// have happened). Writes to one agent are applied in the order their
/// futures were created; the rules of each write are
/// [`AgentWrite::apply`]'s.
pub trait AgentStore: Send + Sync + fmt::Debug + 'static {
    /// Applies one write, answering once it is durable.
    fn write(&self, write: AgentWrite) -> BoxFuture<'static, Result<(), AgentStoreError>>;

    /// One agent's record (`None`: not registered).
    fn get(&self, id: &AgentId)
    -> BoxFuture<'static, Result<Option<AgentRecord>, AgentStoreError>>;

    /// Up to `limit` records in id order, starting after `after` (from
    /// the first with `None`). A page shorter than `limit` is the last.
    fn load_page(
        &self,
        after: Option<&AgentId>,
        limit: usize,
    ) -> BoxFuture<'static, Result<Vec<LoadedAgent>, AgentStoreError>>;

    /// How many agents are registered (for recovery progress).
    fn count(&self) -> BoxFuture<'static, Result<u64, AgentStoreError>>;

    /// The records of those of `ids` that are registered, in no given
    /// order, each one's read error its own: what a node taking agents
    /// over loads. The default reads them one by one; a store that can
    /// read them in one query does.
    fn get_many(
        &self,
        ids: &[AgentId],
    ) -> BoxFuture<'static, Result<Vec<LoadedAgent>, AgentStoreError>> {
        let reads: Vec<_> = ids
            .iter()
            .map(|id| {
                let read = self.get(id);
                let id = id.clone();
                async move { (id, read.await) }
            })
            .collect();
        Box::pin(async move {
            let mut loaded = Vec::with_capacity(reads.len());
            for (id, read) in futures::future::join_all(reads).await {
                match read {
                    Ok(Some(record)) => loaded.push(LoadedAgent {
                        id,
                        record: Ok(record),
                    }),
                    Ok(None) => {}
                    Err(error) => loaded.push(LoadedAgent {
                        id,
                        record: Err(error),
                    }),
                }
            }
            Ok(loaded)
        })
    }

    /// Registers an agent (or replaces its registration).
    fn register(
        &self,
        registration: AgentRegistration,
        generation: u64,
    ) -> BoxFuture<'static, Result<(), AgentStoreError>> {
        self.write(AgentWrite::Register {
            registration,
            generation,
        })
    }

    /// Changes fields of an agent's registration.
    fn update(
        &self,
        id: AgentId,
        update: AgentUpdate,
        generation: u64,
    ) -> BoxFuture<'static, Result<(), AgentStoreError>> {
        self.write(AgentWrite::Update {
            id,
            update,
            generation,
        })
    }

    /// Replaces an agent's checkpoint.
    fn checkpoint(
        &self,
        id: AgentId,
        checkpoint: Checkpoint,
        generation: u64,
    ) -> BoxFuture<'static, Result<(), AgentStoreError>> {
        self.write(AgentWrite::Checkpoint {
            id,
            checkpoint,
            generation,
        })
    }

    /// Removes an agent (deregistration).
    fn remove(
        &self,
        id: AgentId,
        generation: u64,
    ) -> BoxFuture<'static, Result<(), AgentStoreError>> {
        self.write(AgentWrite::Remove { id, generation })
    }
}

/// An [`AgentStore`] in memory: for tests, and for users who want no
/// durability. Clones share one table; it lives as long as they do.
#[derive(Debug, Clone, Default)]
pub struct MemoryAgentStore {
    table: Arc<Mutex<BTreeMap<AgentId, AgentRecord>>>,
}

impl MemoryAgentStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of the whole table.
    pub fn snapshot(&self) -> BTreeMap<AgentId, AgentRecord> {
        self.table.lock().clone()
    }
}

impl AgentStore for MemoryAgentStore {
    fn write(&self, write: AgentWrite) -> BoxFuture<'static, Result<(), AgentStoreError>> {
        let result = write.apply(&mut self.table.lock());
        futures::future::ready(result).boxed()
    }

    fn get(
        &self,
        id: &AgentId,
    ) -> BoxFuture<'static, Result<Option<AgentRecord>, AgentStoreError>> {
        let record = self.table.lock().get(id.as_str()).cloned();
        futures::future::ready(Ok(record)).boxed()
    }

    fn load_page(
        &self,
        after: Option<&AgentId>,
        limit: usize,
    ) -> BoxFuture<'static, Result<Vec<LoadedAgent>, AgentStoreError>> {
        use std::ops::Bound;
        let table = self.table.lock();
        let start = match after {
            Some(after) => Bound::Excluded(after.clone()),
            None => Bound::Unbounded,
        };
        let page = table
            .range((start, Bound::Unbounded))
            .take(limit)
            .map(|(id, record)| LoadedAgent {
                id: id.clone(),
                record: Ok(record.clone()),
            })
            .collect();
        futures::future::ready(Ok(page)).boxed()
    }

    fn count(&self) -> BoxFuture<'static, Result<u64, AgentStoreError>> {
        let count = self.table.lock().len() as u64;
        futures::future::ready(Ok(count)).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn register(id: &str, generation: u64) -> AgentWrite {
        AgentWrite::Register {
            registration: AgentRegistration::new(id, "counter", serde_json::json!({})),
            generation,
        }
    }

    #[test]
    fn a_stale_write_changes_nothing() {
        let mut table = BTreeMap::new();
        register("a", 5).apply(&mut table).unwrap();
        let before = table.clone();
        let err = AgentWrite::Remove {
            id: "a".into(),
            generation: 4,
        }
        .apply(&mut table)
        .unwrap_err();
        assert_eq!(err.code(), 1702);
        assert_eq!(table, before);
    }

    #[test]
    fn codes_are_in_the_crate_range() {
        let range = crate::error_code_range("supervision-core").unwrap();
        for err in [
            AgentStoreError::NotFound("a".into()),
            AgentStoreError::Locked("x".into()),
        ] {
            assert!(range.contains(&err.code()));
        }
    }
}
