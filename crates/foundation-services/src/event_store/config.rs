//! [`EventStoreConfig`]: where the store keeps its file and its limits.

use std::{path::PathBuf, sync::Arc};

use supervision_core::Clock;

use super::EventStoreError;

/// The name of the store's database file inside its data directory.
pub const DATABASE_FILE: &str = "events.db";
/// The name of the lock file inside the data directory.
pub const LOCK_FILE: &str = "events.lock";

/// How an EventStore is set up.
///
/// Defaults (one place, [`EventStoreConfig::new`]): node `"local"`, events
/// up to 1 MiB (data and metadata as JSON), commit groups of up to 4,096
/// events, subscriber buffers of 4,096 events, up to 4 idle reader
/// connections kept, an integrity check when the file is opened, and the
/// system clock.
#[derive(Debug, Clone)]
pub struct EventStoreConfig {
    /// The directory holding the store's files (`events.db`, its WAL, and
    /// `events.lock`); created if missing.
    pub data_dir: PathBuf,
    /// The node name stamped on events appended without one.
    pub node: Arc<str>,
    /// The largest event accepted, in bytes of data and metadata as JSON.
    pub max_event_bytes: usize,
    /// The most events committed together in one transaction.
    pub max_group: usize,
    /// How many events a subscriber may fall behind before it is told it
    /// lagged.
    pub subscriber_buffer: usize,
    /// How many idle reader connections are kept open.
    pub max_idle_readers: usize,
    /// Whether opening runs SQLite's `quick_check` over the file (linear
    /// in its size) to refuse a damaged file at once.
    pub check_on_open: bool,
    /// The clock that stamps events.
    pub clock: Clock,
}

impl EventStoreConfig {
    /// The defaults, with the store's files in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        EventStoreConfig {
            data_dir: data_dir.into(),
            node: "local".into(),
            max_event_bytes: 1024 * 1024,
            max_group: 4096,
            subscriber_buffer: 4096,
            max_idle_readers: 4,
            check_on_open: true,
            clock: Clock::system(),
        }
    }

    /// Sets the node name.
    pub fn with_node(mut self, node: impl Into<Arc<str>>) -> Self {
        self.node = node.into();
        self
    }

    /// Sets the event size limit.
    pub fn with_max_event_bytes(mut self, bytes: usize) -> Self {
        self.max_event_bytes = bytes;
        self
    }

    /// Sets the subscriber buffer.
    pub fn with_subscriber_buffer(mut self, events: usize) -> Self {
        self.subscriber_buffer = events;
        self
    }

    /// Sets the clock.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The database file's path.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join(DATABASE_FILE)
    }

    pub(crate) fn validate(&self) -> Result<(), EventStoreError> {
        let positive = [
            ("max_event_bytes", self.max_event_bytes),
            ("max_group", self.max_group),
            ("subscriber_buffer", self.subscriber_buffer),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(EventStoreError::InvalidConfig(format!(
                    "{name} must be at least 1"
                )));
            }
        }
        if self.node.is_empty() {
            return Err(EventStoreError::InvalidConfig(
                "node must not be empty".into(),
            ));
        }
        Ok(())
    }
}
