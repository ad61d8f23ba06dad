//! What the PostgreSQL backends share: [`PostgresConfig`] (where the
//! server is, which schema, how to wait for it), the connection pool, the
//! versioned migrations, and the mapping of driver errors.
//!
//! # The driver: tokio-postgres with deadpool-postgres
//!
//! The backends run on `tokio-postgres` (the async driver under the
//! synchronous `postgres` crate) with a `deadpool-postgres` pool for the
//! readers. We chose it over sqlx for three reasons: it pipelines the
//! statements of one connection (the EventStore's writer sends a group's
//! statements together and waits once), it exposes a connection's
//! asynchronous messages (LISTEN/NOTIFY on one dedicated connection is
//! a plain stream of notifications), and it brings no compile-time query
//! checking that would need a database at build time.
//!
//! # Schema and migrations
//!
//! Every table lives in the schema [`PostgresConfig::schema`] names
//! (default `mabeam`), so two clusters can share one database; every
//! connection runs with `search_path` set to it and with
//! `synchronous_commit=on` (a commit is acknowledged only once its WAL is
//! flushed). The migrations are SQL files in the repository
//! (`crates/foundation-services/migrations/postgres/`), applied in order
//! under an advisory lock and recorded in `schema_migrations`; a schema
//! migrated by a newer build is refused.
//!
//! TLS is not offered yet: connect over loopback, a Unix socket or a
//! trusted network.

use std::{fmt, str::FromStr, time::Duration};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use mabeam_supervision_core::Backoff;
use tokio_postgres::{NoTls, error::SqlState};

/// The default schema name.
pub const DEFAULT_SCHEMA: &str = "mabeam";

/// Where a PostgreSQL backend keeps its tables, and how it connects.
///
/// Defaults ([`PostgresConfig::new`]): schema [`DEFAULT_SCHEMA`], a pool
/// of 8 reader connections, 5 s to connect, fail at once when the server
/// is down (`wait_for_server` false), reconnect backoff 50 ms to 5 s, a
/// write slice of 10 ms.
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub struct PostgresConfig {
    /// The server, as a `postgres://user:password@host:port/db` URL (or a
    /// libpq key=value string).
    pub url: String,
    /// The schema holding the tables: lowercase ASCII letters, digits and
    /// `_`, starting with a letter or `_`, at most 63 bytes.
    pub schema: String,
    /// The most pooled connections for reads.
    pub pool_size: usize,
    /// How long one connection attempt may take.
    pub connect_timeout: Duration,
    /// When the server is down at open: `false` fails the open with a
    /// typed error naming the URL (without its password); `true` opens at
    /// once, reports the store unavailable and unhealthy, and connects
    /// (and migrates) when the server comes.
    pub wait_for_server: bool,
    /// The waits between reconnection attempts (the listener of a
    /// subscription, a store waiting for its server).
    pub reconnect: Backoff,
    /// How long the EventStore's writer keeps the schema's write lease
    /// (one writer at a time appends; see the EventStore's PostgreSQL
    /// docs) before it hands the lease on to a writer that waits, or lets
    /// it go when it has nothing to write. Longer slices cost a waiting
    /// node more latency; shorter ones a busy node more hand-overs (a
    /// round trip each).
    pub write_slice: Duration,
}

impl PostgresConfig {
    /// The defaults for the server at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        PostgresConfig {
            url: url.into(),
            schema: DEFAULT_SCHEMA.into(),
            pool_size: 8,
            connect_timeout: Duration::from_secs(5),
            wait_for_server: false,
            reconnect: Backoff::new(Duration::from_millis(50), Duration::from_secs(5)),
            write_slice: Duration::from_millis(10),
        }
    }

    /// Sets the schema.
    pub fn with_schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Sets whether an open waits for a server that is down.
    pub fn with_wait_for_server(mut self, wait: bool) -> Self {
        self.wait_for_server = wait;
        self
    }

    /// Sets how long the EventStore's writer keeps the write lease.
    pub fn with_write_slice(mut self, slice: Duration) -> Self {
        self.write_slice = slice;
        self
    }

    /// Sets the reader pool's size.
    pub fn with_pool_size(mut self, size: usize) -> Self {
        self.pool_size = size;
        self
    }

    /// The URL without its password, for messages and logs.
    pub fn redacted_url(&self) -> String {
        redact(&self.url)
    }

    /// Checks the settings; the error says which is wrong.
    pub fn validate(&self) -> Result<(), String> {
        let schema = self.schema.as_bytes();
        let valid = !schema.is_empty()
            && schema.len() <= 63
            && (schema[0].is_ascii_lowercase() || schema[0] == b'_')
            && schema
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_');
        if !valid {
            return Err(format!(
                "schema {:?} must be 1-63 lowercase ASCII letters, digits and _, \
                 not starting with a digit",
                self.schema
            ));
        }
        if self.pool_size == 0 {
            return Err("pool_size must be at least 1".into());
        }
        if self.connect_timeout.is_zero() {
            return Err("connect_timeout must be longer than zero".into());
        }
        if self.write_slice.is_zero() {
            return Err("write_slice must be longer than zero".into());
        }
        self.reconnect
            .validate()
            .map_err(|e| format!("reconnect: {e}"))?;
        tokio_postgres::Config::from_str(&self.url)
            .map_err(|e| format!("url {}: {e}", self.redacted_url()))?;
        Ok(())
    }

    /// The driver's configuration: the URL, with the schema as
    /// `search_path` and `synchronous_commit=on` on every connection.
    pub(crate) fn driver_config(&self) -> Result<tokio_postgres::Config, String> {
        self.validate()?;
        let mut config = tokio_postgres::Config::from_str(&self.url)
            .map_err(|e| format!("url {}: {e}", self.redacted_url()))?;
        let options = format!(
            "{} -c search_path={} -c synchronous_commit=on",
            config.get_options().unwrap_or_default(),
            self.schema
        );
        config.options(options.trim());
        config.connect_timeout(self.connect_timeout);
        if config.get_application_name().is_none() {
            config.application_name("mabeam");
        }
        Ok(config)
    }

    /// A pool of connections (none opened yet).
    pub(crate) fn pool(&self) -> Result<Pool, String> {
        let manager = Manager::from_config(
            self.driver_config()?,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        Pool::builder(manager)
            .max_size(self.pool_size)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(self.connect_timeout))
            .wait_timeout(Some(self.connect_timeout * 2))
            .build()
            .map_err(|e| e.to_string())
    }
}

impl fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("url", &self.redacted_url())
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("wait_for_server", &self.wait_for_server)
            .field("write_slice", &self.write_slice)
            .finish_non_exhaustive()
    }
}

/// `url` with its password replaced by `***` (a URL's `user:password@`,
/// or a key=value string's `password=`).
pub fn redact(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (authority, tail) = match rest.find(['/', '?']) {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        let authority = match authority.rsplit_once('@') {
            Some((user_info, host)) => match user_info.split_once(':') {
                Some((user, _password)) => format!("{user}:***@{host}"),
                None => format!("{user_info}@{host}"),
            },
            None => authority.to_owned(),
        };
        // A password may also ride in the query string.
        let tail = tail
            .split('&')
            .map(|part| match part.split_once("password=") {
                Some((before, _)) => format!("{before}password=***"),
                None => part.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("&");
        format!("{scheme}://{authority}{tail}")
    } else {
        url.split_whitespace()
            .map(|pair| {
                if pair.starts_with("password=") {
                    "password=***".to_owned()
                } else {
                    pair.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// One component's migrations: each brings the schema from the version
/// before it to its index + 1.
pub(crate) struct Migrations {
    /// The component's name in `schema_migrations` (`event_store`).
    pub(crate) component: &'static str,
    pub(crate) steps: &'static [&'static str],
}

/// Whether a failure means the server (or the connection to it) is
/// unavailable, rather than a statement being refused.
pub(crate) fn is_unavailable(error: &tokio_postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    match error.code() {
        Some(code) => {
            let class = &code.code()[..2];
            // 08: connection exception; 57: operator intervention
            // (admin shutdown, cannot connect now, idle session
            // timeout); 53: insufficient resources; 55P03: a lock not
            // granted in time (the EventStore's write lease).
            class == "08" || class == "57" || class == "53" || code == &SqlState::LOCK_NOT_AVAILABLE
        }
        // No SQLSTATE: an I/O or protocol failure.
        None => true,
    }
}

/// The schema's version for `migrations`, read inside the transaction.
async fn current_version(
    tx: &tokio_postgres::Transaction<'_>,
    component: &str,
) -> Result<u32, tokio_postgres::Error> {
    let row = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM schema_migrations WHERE component = $1",
            &[&component],
        )
        .await?;
    Ok(row.get::<_, i32>(0).max(0) as u32)
}

/// Why a migration was refused.
#[derive(Debug)]
pub(crate) enum MigrateError {
    /// The schema was migrated by a newer build.
    Newer { found: u32, supported: u32 },
    /// The server refused or failed.
    Driver(tokio_postgres::Error),
}

impl From<tokio_postgres::Error> for MigrateError {
    fn from(error: tokio_postgres::Error) -> Self {
        MigrateError::Driver(error)
    }
}

/// Creates the schema if missing and applies the migrations not yet
/// applied, in one transaction under an advisory lock (two nodes opening
/// at once migrate once). Answers the version now in place.
pub(crate) async fn migrate(
    client: &mut tokio_postgres::Client,
    schema: &str,
    migrations: &Migrations,
) -> Result<u32, MigrateError> {
    let supported = migrations.steps.len() as u32;
    let tx = client.transaction().await?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext($1))",
        &[&format!("mabeam/{schema}")],
    )
    .await?;
    // The schema name is checked (lowercase letters, digits, _): quoting
    // makes it an identifier whatever the server's keywords.
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS \"{schema}\";
         CREATE TABLE IF NOT EXISTS \"{schema}\".schema_migrations (
             component text NOT NULL,
             version integer NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now(),
             PRIMARY KEY (component, version)
         );"
    ))
    .await?;
    let found = current_version(&tx, migrations.component).await?;
    if found > supported {
        return Err(MigrateError::Newer { found, supported });
    }
    for (index, step) in migrations.steps.iter().enumerate().skip(found as usize) {
        tx.batch_execute(step).await?;
        tx.execute(
            "INSERT INTO schema_migrations (component, version) VALUES ($1, $2)",
            &[&migrations.component, &(index as i32 + 1)],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(supported)
}

/// Connects one connection outside the pool (the listener's, the
/// migration's), driving it on a task of its own.
pub(crate) async fn connect(
    config: &tokio_postgres::Config,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// The detail of a driver error, with the server's message when it sent
/// one.
pub(crate) fn detail(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => {
            let mut text = error.to_string();
            let mut source = std::error::Error::source(error);
            while let Some(inner) = source {
                text.push_str(": ");
                text.push_str(&inner.to_string());
                source = inner.source();
            }
            text
        }
    }
}

/// Whether `error` is a unique violation (SQLSTATE 23505).
pub(crate) fn is_unique_violation(error: &tokio_postgres::Error) -> bool {
    error.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

/// Whether `error` is a unique violation of the index `index`.
pub(crate) fn is_unique_violation_of(error: &tokio_postgres::Error, index: &str) -> bool {
    is_unique_violation(error) && error.as_db_error().and_then(|db| db.constraint()) == Some(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_the_password() {
        assert_eq!(
            redact("postgres://app:s3cret@db.example:5432/events"),
            "postgres://app:***@db.example:5432/events"
        );
        assert_eq!(
            redact("postgresql://app@localhost/x?password=s3cret&sslmode=disable"),
            "postgresql://app@localhost/x?password=***&sslmode=disable"
        );
        assert_eq!(
            redact("host=localhost password=s3cret user=app"),
            "host=localhost password=*** user=app"
        );
        assert_eq!(redact("postgres://localhost/x"), "postgres://localhost/x");
    }

    #[test]
    fn a_schema_name_must_be_an_identifier() {
        for bad in ["", "Upper", "1abc", "a-b", "a;drop", &"a".repeat(64)] {
            assert!(
                PostgresConfig::new("postgres://localhost/x")
                    .with_schema(bad)
                    .validate()
                    .is_err(),
                "{bad:?}"
            );
        }
        assert!(
            PostgresConfig::new("postgres://localhost/x")
                .with_schema("cluster_2")
                .validate()
                .is_ok()
        );
    }
}
