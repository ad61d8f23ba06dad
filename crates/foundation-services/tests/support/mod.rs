//! Shared test helpers: where a store under test lives ([`Place`]: an
//! SQLite directory or a PostgreSQL schema of its own), the PostgreSQL
//! server the tests use, and a rate limiter running as a service.
//!
//! The server is the one `cargo xtask test` started (its URL in
//! `MABEAM_TEST_POSTGRES_URL`); without it, the first test that needs one
//! starts a private instance for this test process (stopped and removed
//! when the process ends, however it ends), or fails naming the command
//! that installs PostgreSQL. Never skipped.

#![allow(dead_code, unreachable_pub)]

#[path = "../../../../xtask/src/postgres.rs"]
pub mod instance;

use std::{
    sync::{
        OnceLock,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use mabeam_foundation_services::{EventStore, EventStoreConfig, PostgresConfig, RateLimiter, Rule};
use mabeam_supervision_core::{
    Application, ApplicationSpec, Clock, Telemetry, testkit::TelemetryProbe,
};

/// A rate limiter on `clock` with the rule `api` for operation `"api"`,
/// sweeping every 30 s, started as the one service of an application,
/// and a probe on its sweeps.
pub async fn sweeping_limiter(
    clock: Clock,
    api: Rule,
) -> (RateLimiter, Application, TelemetryProbe) {
    let telemetry = Telemetry::new();
    let probe = TelemetryProbe::attach(&telemetry, &["rate_limiter", "swept"]);
    let limiter = RateLimiter::builder()
        .clock(clock)
        .rule("api", api)
        .sweep_interval(Duration::from_secs(30))
        .telemetry(telemetry)
        .build()
        .expect("a valid limiter");
    let app = ApplicationSpec::new("foundation")
        .service(limiter.service())
        .start()
        .await
        .expect("the application starts");
    (limiter, app, probe)
}

/// The URL of the PostgreSQL server for this test process.
pub fn postgres_url() -> String {
    if let Ok(url) = std::env::var(instance::URL_ENV) {
        return url;
    }
    static PRIVATE: OnceLock<Result<instance::Instance, String>> = OnceLock::new();
    match PRIVATE.get_or_init(instance::Instance::start) {
        Ok(instance) => instance.url.clone(),
        Err(e) => panic!(
            "no PostgreSQL for this test: {} is not set and a private instance \
             did not start ({e}); run the tests with `cargo xtask test`",
            instance::URL_ENV
        ),
    }
}

/// A schema name no other test uses.
pub fn fresh_schema() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "t{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        nanos
    )
}

/// The backend configuration for `schema` on the tests' server.
pub fn pg_config(schema: &str) -> PostgresConfig {
    pg_config_at(&postgres_url(), schema)
}

/// The backend configuration for `schema` on the server at `url`, with
/// quick reconnects.
pub fn pg_config_at(url: &str, schema: &str) -> PostgresConfig {
    let mut config = PostgresConfig::new(url)
        .with_schema(schema)
        .with_pool_size(4);
    config.reconnect = mabeam_supervision_core::Backoff::new(
        Duration::from_millis(20),
        Duration::from_millis(500),
    );
    config
}

/// Where a store under test lives; opening it again reaches the same
/// storage (what an earlier store acknowledged is there).
#[derive(Debug)]
pub enum Place {
    /// An SQLite store in a temporary directory.
    Sqlite(tempfile::TempDir),
    /// A PostgreSQL store in a schema of its own.
    Postgres(String),
}

impl Place {
    /// A fresh SQLite directory.
    pub fn sqlite() -> Place {
        Place::Sqlite(tempfile::tempdir().expect("a temporary directory"))
    }

    /// A fresh PostgreSQL schema.
    pub fn postgres() -> Place {
        Place::Postgres(fresh_schema())
    }

    /// Whether this is the PostgreSQL backend.
    pub fn is_postgres(&self) -> bool {
        matches!(self, Place::Postgres(_))
    }

    /// The default configuration of a store here.
    pub fn config(&self) -> EventStoreConfig {
        match self {
            Place::Sqlite(dir) => EventStoreConfig::new(dir.path()),
            Place::Postgres(schema) => EventStoreConfig::postgres(pg_config(schema)),
        }
    }

    /// Opens a store here with the defaults.
    pub async fn open(&self) -> EventStore {
        EventStore::open(self.config())
            .await
            .expect("opening the store")
    }
}

/// Declares each listed contract test (an `async fn(Place)`) twice: in
/// `mod sqlite` and in `mod postgres`, each on a fresh place.
#[macro_export]
macro_rules! contract {
    ($($path:path => $name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $path($crate::support::Place::sqlite()).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $path($crate::support::Place::postgres()).await
                }
            )*
        }
    };
}
