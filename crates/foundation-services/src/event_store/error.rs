//! [`EventStoreError`]: every way an EventStore call fails, with stable
//! codes 3001-3099.

use std::{path::PathBuf, sync::Arc};

use mabeam_supervision_core::{ErrorCode, EventReadError, EventSeq, EventSinkError};
use thiserror::Error;

/// Why an EventStore call failed. Bad input is refused before anything is
/// written: a rejected append or batch leaves the store as it was.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EventStoreError {
    /// The store is not running (stopped, or restarting): nothing was
    /// written, or the append was not acknowledged.
    #[error("event store unavailable: {0}")]
    Unavailable(Arc<str>),
    /// No event has this id (never recorded, or pruned).
    #[error("event {0} not found")]
    NotFound(EventSeq),
    /// The stream moved on: an append expecting another version.
    #[error("version conflict on stream {stream:?}: expected {expected}, found version {actual}")]
    VersionConflict {
        /// The stream.
        stream: String,
        /// The version the append expected, as given.
        expected: String,
        /// The stream's version (0: the stream has no event).
        actual: u64,
    },
    /// An event is invalid: the batch position and the reason.
    #[error("invalid event at position {index}: {reason}")]
    InvalidEvent {
        /// Its position in the batch (0 for a single append).
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// An event's data and metadata are larger than the store's limit.
    #[error("event at position {index} is {size} bytes, over the limit of {limit}")]
    TooLarge {
        /// Its position in the batch (0 for a single append).
        index: usize,
        /// Its size in bytes (data and metadata as JSON).
        size: usize,
        /// The store's limit in bytes.
        limit: usize,
    },
    /// Another store holds the data directory's lock.
    #[error("event store at {0} is locked by another store")]
    Locked(PathBuf),
    /// The file at the store's path is not an event store: it is never
    /// written to.
    #[error("{0} is not an event store; refusing to touch it")]
    ForeignFile(PathBuf),
    /// The store's file is damaged.
    #[error("event store {path} is corrupted: {detail}")]
    Corrupted {
        /// The file.
        path: PathBuf,
        /// What SQLite found.
        detail: String,
    },
    /// The file was written by a newer version of the store.
    #[error("event store schema version {found} is newer than the supported {supported}")]
    NewerSchema {
        /// The file's schema version.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// A query is invalid.
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    /// The storage failed (SQLite or the file system).
    #[error("event store storage failed: {0}")]
    Storage(String),
    /// A subscriber fell behind its bounded buffer; it resumes from this
    /// position.
    #[error("subscriber lagged behind; resume from {resume_from}")]
    Lagged {
        /// The position of the first event not delivered.
        resume_from: EventSeq,
    },
    /// An invalid configuration value.
    #[error("invalid event store configuration: {0}")]
    InvalidConfig(String),
    /// The position asked for is below the store's horizon: retention
    /// pruned the events there (etcd's `ErrCompacted`). Nothing is read;
    /// start again from `first_available`.
    #[error("events before {first_available} were pruned")]
    Compacted {
        /// The first position still stored (or the next to be given).
        first_available: EventSeq,
    },
    /// An event's idempotency key is already stored by another batch (a
    /// retry is recognised only as the same batch: same length, and the
    /// same stream, kind and key at each position). Nothing was written.
    #[error("idempotency key {key:?} at position {index} belongs to another batch")]
    KeyTaken {
        /// The event's position in the batch.
        index: usize,
        /// The key.
        key: String,
    },
    /// The PostgreSQL server did not answer when the store opened: its
    /// URL (without the password) and why. Nothing was written.
    #[error("cannot reach PostgreSQL at {url}: {detail}")]
    Unreachable {
        /// The server's URL, its password replaced by `***`.
        url: String,
        /// What the driver said.
        detail: String,
    },
}

impl EventStoreError {
    pub(crate) fn unavailable(why: &str) -> Self {
        EventStoreError::Unavailable(why.into())
    }

    pub(crate) fn storage(error: impl std::fmt::Display) -> Self {
        EventStoreError::Storage(error.to_string())
    }
}

impl ErrorCode for EventStoreError {
    fn code(&self) -> u32 {
        match self {
            EventStoreError::Unavailable(_) => 3001,
            EventStoreError::NotFound(_) => 3002,
            EventStoreError::VersionConflict { .. } => 3003,
            EventStoreError::InvalidEvent { .. } => 3004,
            EventStoreError::TooLarge { .. } => 3005,
            EventStoreError::Locked(_) => 3006,
            EventStoreError::ForeignFile(_) => 3007,
            EventStoreError::Corrupted { .. } => 3008,
            EventStoreError::NewerSchema { .. } => 3009,
            EventStoreError::InvalidQuery(_) => 3010,
            EventStoreError::Storage(_) => 3011,
            EventStoreError::Lagged { .. } => 3012,
            EventStoreError::InvalidConfig(_) => 3013,
            EventStoreError::Compacted { .. } => 3014,
            EventStoreError::KeyTaken { .. } => 3015,
            EventStoreError::Unreachable { .. } => 3016,
        }
    }
}

impl From<EventStoreError> for EventSinkError {
    fn from(error: EventStoreError) -> Self {
        match error {
            EventStoreError::Unavailable(why) => EventSinkError::Unavailable(why.to_string()),
            error @ EventStoreError::Unreachable { .. } => {
                EventSinkError::Unavailable(error.to_string())
            }
            other => EventSinkError::Rejected(other.to_string()),
        }
    }
}

impl From<EventStoreError> for EventReadError {
    fn from(error: EventStoreError) -> Self {
        match error {
            EventStoreError::Unavailable(why) => EventReadError::Unavailable(why.to_string()),
            error @ EventStoreError::Unreachable { .. } => {
                EventReadError::Unavailable(error.to_string())
            }
            EventStoreError::NotFound(id) => EventReadError::NotFound(id),
            EventStoreError::Lagged { resume_from } => EventReadError::Lagged { resume_from },
            EventStoreError::InvalidQuery(why) => EventReadError::InvalidQuery(why),
            EventStoreError::Compacted { first_available } => {
                EventReadError::Compacted { first_available }
            }
            other => EventReadError::Failed(other.to_string()),
        }
    }
}
