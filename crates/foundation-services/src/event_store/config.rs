//! [`EventStoreConfig`]: where the store keeps its file and its limits.

use std::{path::PathBuf, sync::Arc, time::Duration};

use mabeam_supervision_core::{Clock, Telemetry};

use super::EventStoreError;
use crate::postgres::PostgresConfig;

/// The name of the store's database file inside its data directory.
pub const DATABASE_FILE: &str = "events.db";
/// The name of the lock file inside the data directory.
pub const LOCK_FILE: &str = "events.lock";

/// How much of the log the store keeps: it prunes the oldest events
/// itself, as a prefix of the log (ids below its horizon), in the writer
/// thread between commits, at most 50,000 events per transaction (a
/// large backlog goes in steps, appends served between them).
///
/// Defaults ([`Retention::default`]): events younger than 30 days, at
/// most 1,000,000 of them (about 0.5 GB at 500 bytes an event), checked
/// every 60 s and when the store opens: a node runs on them for months
/// with its file bounded. [`Retention::keep_all`] never prunes.
///
/// Pruning never reuses an id or a stream version; a read or subscription
/// from a pruned position fails with
/// [`Compacted`](super::EventStoreError::Compacted), and each prune emits
/// `event_store.pruned` (metric `mabeam_event_store_pruned_events_total`).
/// The idempotency keys of pruned events are forgotten with them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Prune events recorded longer ago than this (by the store's clock);
    /// `None`: no age limit.
    pub max_age: Option<Duration>,
    /// Keep at most this many events, pruning the oldest; `None`: no
    /// count limit.
    pub max_events: Option<u64>,
    /// How often the writer checks the limits.
    pub every: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_age: Some(Duration::from_secs(30 * 24 * 3600)),
            max_events: Some(1_000_000),
            every: Duration::from_secs(60),
        }
    }
}

impl Retention {
    /// Never prunes (only [`prune_before`](super::EventStore::prune_before)
    /// does).
    pub fn keep_all() -> Self {
        Retention {
            max_age: None,
            max_events: None,
            ..Retention::default()
        }
    }

    /// Whether any limit is set.
    pub fn is_bounded(&self) -> bool {
        self.max_age.is_some() || self.max_events.is_some()
    }

    fn validate(&self) -> Result<(), EventStoreError> {
        let invalid = |why: &str| Err(EventStoreError::InvalidConfig(why.into()));
        if self.every.is_zero() {
            return invalid("retention.every must be longer than zero");
        }
        if self.max_age.is_some_and(|age| age.is_zero()) {
            return invalid("retention.max_age must be longer than zero");
        }
        if self.max_events == Some(0) {
            return invalid("retention.max_events must be at least 1");
        }
        Ok(())
    }
}

/// Each connection's page cache by default, in KiB: enough for the pages
/// an append or a read of the log's tail touches (a few index pages and
/// the last table pages), a quarter of SQLite's own default, so the
/// store's memory stays flat while its file grows (the soak measured it;
/// see `docs/BENCHMARKS.md`).
pub const DEFAULT_CACHE_KIB: u32 = 512;

/// The smallest page cache a connection may be given, in KiB.
pub const MIN_CACHE_KIB: u32 = 64;

/// How an EventStore is set up.
///
/// Defaults (one place, [`EventStoreConfig::new`]): node `"local"`, events
/// up to 1 MiB (data and metadata as JSON), commit groups of up to 4,096
/// events, subscriber buffers of 4,096 events, up to 4 idle reader
/// connections kept, a page cache of [`DEFAULT_CACHE_KIB`] per
/// connection, an integrity check when the file is opened, the
/// default [`Retention`], the system clock and no telemetry.
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
    /// Each connection's SQLite page cache, in KiB (`PRAGMA cache_size`):
    /// what the store's memory grows to as its file grows, per connection
    /// (the writer's and each reader's). SQLite's own default is about
    /// 2 MiB each.
    pub cache_kib: u32,
    /// Whether opening runs SQLite's `quick_check` over the file (linear
    /// in its size) to refuse a damaged file at once.
    pub check_on_open: bool,
    /// How much of the log is kept.
    pub retention: Retention,
    /// The clock that stamps events (and that retention's age reads).
    pub clock: Clock,
    /// Where prunes are reported (`event_store.pruned`).
    pub telemetry: Telemetry,
    /// The PostgreSQL backend: when set, the store lives on this server
    /// (`data_dir`, `max_idle_readers` and `check_on_open` are unused);
    /// `None` (the default) keeps it in SQLite in `data_dir`.
    pub postgres: Option<PostgresConfig>,
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
            cache_kib: DEFAULT_CACHE_KIB,
            check_on_open: true,
            retention: Retention::default(),
            clock: Clock::system(),
            telemetry: Telemetry::disabled(),
            postgres: None,
        }
    }

    /// The defaults, with the store on the PostgreSQL server `postgres`
    /// names (in its schema).
    pub fn postgres(postgres: PostgresConfig) -> Self {
        EventStoreConfig {
            postgres: Some(postgres),
            ..EventStoreConfig::new(PathBuf::new())
        }
    }

    /// Puts the store on PostgreSQL (`Some`) or back in SQLite (`None`).
    pub fn with_postgres(mut self, postgres: Option<PostgresConfig>) -> Self {
        self.postgres = postgres;
        self
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

    /// Sets each connection's page cache, in KiB (at least
    /// [`MIN_CACHE_KIB`]).
    pub fn with_cache_kib(mut self, kib: u32) -> Self {
        self.cache_kib = kib;
        self
    }

    /// Sets the clock.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Sets the retention.
    pub fn with_retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// Sets the telemetry handle prunes are reported on.
    pub fn with_telemetry(mut self, telemetry: Telemetry) -> Self {
        self.telemetry = telemetry;
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
        if self.cache_kib < MIN_CACHE_KIB {
            return Err(EventStoreError::InvalidConfig(format!(
                "cache_kib must be at least {MIN_CACHE_KIB}, not {}",
                self.cache_kib
            )));
        }
        self.retention.validate()?;
        if let Some(postgres) = &self.postgres {
            postgres
                .validate()
                .map_err(EventStoreError::InvalidConfig)?;
        }
        if self.node.is_empty() {
            return Err(EventStoreError::InvalidConfig(
                "node must not be empty".into(),
            ));
        }
        Ok(())
    }
}
