//! [`NodeConfig`]: the node's settings, from embedded defaults, an
//! optional TOML file, and command-line flags (in that order of strength).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;

use crate::NodeError;

/// The HTTP address by default: loopback only.
pub const DEFAULT_HTTP: &str = "127.0.0.1:4000";
/// The data directory by default, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "mabeam-data";

/// The node's settings. Every field has an embedded default, so
/// `mabeam run` needs no file.
///
/// The file (TOML; every key optional, unknown keys refused):
///
/// ```toml
/// data_dir = "mabeam-data"        # created if missing
/// log = "info"                    # error, warn, info, debug, trace
///                                 # (RUST_LOG, when set, wins)
/// log_format = "text"             # text (time, level, message, fields)
///                                 # or json (one object a line)
///
/// [http]
/// addr = "127.0.0.1:4000"
/// allow_non_loopback = false      # binding elsewhere needs this
/// token = "..."                   # bearer token of the API (at least
///                                 # 128 bits: 32 hex digits); generated
///                                 # into data_dir/token if absent
/// public_reads = false            # GET /api/* without the token
/// max_connections = 1024          # connections served at once (more wait)
/// header_timeout_ms = 10000       # to receive a request's headers
/// request_timeout_ms = 70000      # to answer a request (408 after)
///
/// [telemetry]
/// retention_secs = 3600
/// per_agent_labels = false        # one series per agent: small systems only
///
/// [cluster]
/// node = "mabeam@localhost"       # this node's name in its cluster
/// listen = "127.0.0.1:0"          # the connection manager's address (0: a free port)
/// seeds = ["127.0.0.1:4369"]      # nodes to dial (and redial)
/// advertise = "10.0.0.5:4369"     # where the others reach `listen`, if
///                                 # not there (a proxy, a NAT)
/// cookie = "..."                  # the cluster's secret (at least 128
///                                 # bits); generated into data_dir/cookie
///                                 # if absent
///
/// [store]                         # absent: the event store is SQLite
///                                 # in data_dir (no setup)
/// url = "postgres://user:pw@host/db"  # the event store on PostgreSQL
/// schema = "mabeam"               # its tables' schema
/// wait = false                    # server down at start: exit 1 (false)
///                                 # or start and report it unhealthy
/// lease_ms = 2000                # [cluster]: a node's lease in the shared
/// lease_renew_ms = 500            # store, renewed this often; agents
/// lease_margin_ms = 500           # stopped this long before it can expire
/// test_only_without_shared_store = false  # let seeds be joined without a
///                                 # shared store (tests of membership only:
///                                 # agents are not safe across nodes then)
/// ```
///
/// `listen` serves the node connections (TCP) and the membership's gossip
/// (UDP) on the same address; `seeds` are other nodes' `listen` addresses.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    /// Where the node keeps its files.
    pub data_dir: PathBuf,
    /// The log level.
    pub log: LogLevel,
    /// How log lines are written.
    pub log_format: LogFormat,
    /// The HTTP address.
    pub http: SocketAddr,
    /// Whether a non-loopback HTTP address is allowed.
    pub allow_non_loopback: bool,
    /// The bearer token of the API, if the config names one.
    pub token: Option<String>,
    /// Whether `GET /api/*` is served without the token.
    pub public_reads: bool,
    /// How many HTTP connections are served at once (more wait to be
    /// accepted).
    pub max_connections: usize,
    /// How long a client has to send a request's headers, in ms.
    pub header_timeout_ms: u64,
    /// How long a request may take to be answered, in ms (408 after).
    pub request_timeout_ms: u64,
    /// How long the telemetry service keeps history, in seconds.
    pub retention_secs: u64,
    /// Whether metrics keep per-agent (per-process) labels.
    pub per_agent_labels: bool,
    /// This node's name in its cluster.
    pub cluster_node: String,
    /// The connection manager's listen address.
    pub cluster_listen: SocketAddr,
    /// The nodes the connection manager dials.
    pub cluster_seeds: Vec<SocketAddr>,
    /// The address the others reach this node's `listen` at (TCP and
    /// UDP), when not `listen` itself: behind a proxy or a NAT.
    pub cluster_advertise: Option<SocketAddr>,
    /// The cluster's cookie, if the config names one.
    pub cookie: Option<String>,
    /// The event store on PostgreSQL (`[store] url`, or `--store URL`);
    /// `None`: SQLite in the data directory.
    pub store: Option<mabeam_foundation_services::PostgresConfig>,
    /// Lets a node join others without a shared store (tests of
    /// membership only; see `mabeam_node::cluster::check_shared_store`).
    pub cluster_without_shared_store: bool,
    /// The node's lease in the shared store (`cluster.lease_ms`,
    /// `lease_renew_ms`, `lease_margin_ms`; see `mabeam_node::cluster_lease`).
    pub cluster_lease: crate::cluster_lease::LeaseTimings,
}

/// The node's name in its cluster by default.
pub const DEFAULT_CLUSTER_NODE: &str = "mabeam@localhost";
/// The connection manager's address by default: loopback, a free port.
pub const DEFAULT_CLUSTER_LISTEN: &str = "127.0.0.1:0";

/// A log level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// The default.
    Info,
    /// More.
    Debug,
    /// Everything.
    Trace,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// For people: time, level, message, fields (spans at debug).
    #[default]
    Text,
    /// For machines: one JSON object a line.
    Json,
}

impl From<LogLevel> for tracing::Level {
    fn from(level: LogLevel) -> Self {
        match level {
            LogLevel::Error => tracing::Level::ERROR,
            LogLevel::Warn => tracing::Level::WARN,
            LogLevel::Info => tracing::Level::INFO,
            LogLevel::Debug => tracing::Level::DEBUG,
            LogLevel::Trace => tracing::Level::TRACE,
        }
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            log: LogLevel::Info,
            log_format: LogFormat::Text,
            http: DEFAULT_HTTP.parse().expect("the default address parses"),
            allow_non_loopback: false,
            token: None,
            public_reads: false,
            max_connections: 1024,
            header_timeout_ms: 10_000,
            request_timeout_ms: crate::http::MAX_WAIT_MS + 10_000,
            retention_secs: 3600,
            per_agent_labels: false,
            cluster_node: DEFAULT_CLUSTER_NODE.to_owned(),
            cluster_listen: DEFAULT_CLUSTER_LISTEN
                .parse()
                .expect("the default address parses"),
            cluster_seeds: Vec::new(),
            cluster_advertise: None,
            cookie: None,
            store: None,
            cluster_without_shared_store: false,
            cluster_lease: crate::cluster_lease::LeaseTimings::default(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    data_dir: Option<PathBuf>,
    log: Option<LogLevel>,
    log_format: Option<LogFormat>,
    #[serde(default)]
    http: HttpSection,
    #[serde(default)]
    telemetry: TelemetrySection,
    #[serde(default)]
    cluster: ClusterSection,
    store: Option<StoreSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreSection {
    url: String,
    schema: Option<String>,
    wait: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterSection {
    node: Option<String>,
    listen: Option<SocketAddr>,
    seeds: Option<Vec<SocketAddr>>,
    advertise: Option<SocketAddr>,
    cookie: Option<String>,
    test_only_without_shared_store: Option<bool>,
    lease_ms: Option<u64>,
    lease_renew_ms: Option<u64>,
    lease_margin_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpSection {
    addr: Option<SocketAddr>,
    allow_non_loopback: Option<bool>,
    token: Option<String>,
    public_reads: Option<bool>,
    max_connections: Option<usize>,
    header_timeout_ms: Option<u64>,
    request_timeout_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TelemetrySection {
    retention_secs: Option<u64>,
    per_agent_labels: Option<bool>,
}

impl NodeConfig {
    /// The defaults overlaid with the TOML text `text` (read from `path`,
    /// named in errors).
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, NodeError> {
        let file: File = toml::from_str(text).map_err(|error| {
            let line = error
                .span()
                .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1)
                .unwrap_or(1);
            NodeError::Config {
                path: path.to_owned(),
                line,
                message: error.message().to_owned(),
            }
        })?;
        let mut config = NodeConfig::default();
        if let Some(dir) = file.data_dir {
            config.data_dir = dir;
        }
        if let Some(log) = file.log {
            config.log = log;
        }
        if let Some(format) = file.log_format {
            config.log_format = format;
        }
        if let Some(addr) = file.http.addr {
            config.http = addr;
        }
        if let Some(allow) = file.http.allow_non_loopback {
            config.allow_non_loopback = allow;
        }
        let invalid = |key: &str, message: String| NodeError::Config {
            path: path.to_owned(),
            line: line_of(text, key),
            message,
        };
        config.token = file.http.token;
        if let Some(token) = &config.token {
            strong_enough("http.token", token).map_err(|m| invalid("token", m))?;
        }
        if let Some(public) = file.http.public_reads {
            config.public_reads = public;
        }
        if let Some(max) = file.http.max_connections {
            if max == 0 {
                return Err(invalid(
                    "max_connections",
                    "http.max_connections must be at least 1".to_owned(),
                ));
            }
            config.max_connections = max;
        }
        for (key, value, field) in [
            (
                "header_timeout_ms",
                file.http.header_timeout_ms,
                &mut config.header_timeout_ms,
            ),
            (
                "request_timeout_ms",
                file.http.request_timeout_ms,
                &mut config.request_timeout_ms,
            ),
        ] {
            if let Some(ms) = value {
                if ms == 0 {
                    return Err(invalid(key, format!("http.{key} must be at least 1")));
                }
                *field = ms;
            }
        }
        if let Some(secs) = file.telemetry.retention_secs {
            if secs == 0 {
                return Err(NodeError::Config {
                    path: path.to_owned(),
                    line: line_of(text, "retention_secs"),
                    message: "telemetry.retention_secs must be at least 1".to_owned(),
                });
            }
            config.retention_secs = secs;
        }
        if let Some(per_agent) = file.telemetry.per_agent_labels {
            config.per_agent_labels = per_agent;
        }
        if let Some(node) = file.cluster.node {
            config.cluster_node = node;
        }
        if let Some(listen) = file.cluster.listen {
            config.cluster_listen = listen;
        }
        if let Some(seeds) = file.cluster.seeds {
            config.cluster_seeds = seeds;
        }
        config.cluster_advertise = file.cluster.advertise;
        if let Some(cookie) = &file.cluster.cookie {
            strong_enough("cluster.cookie", cookie).map_err(|m| invalid("cookie", m))?;
        }
        config.cookie = file.cluster.cookie;
        if let Some(store) = file.store {
            let mut postgres = mabeam_foundation_services::PostgresConfig::new(store.url);
            if let Some(schema) = store.schema {
                postgres = postgres.with_schema(schema);
            }
            postgres = postgres.with_wait_for_server(store.wait.unwrap_or(false));
            postgres
                .validate()
                .map_err(|m| invalid("url", format!("store: {m}")))?;
            config.store = Some(postgres);
        }
        if let Some(without) = file.cluster.test_only_without_shared_store {
            config.cluster_without_shared_store = without;
        }
        let lease = &mut config.cluster_lease;
        for (field, value) in [
            (&mut lease.length, file.cluster.lease_ms),
            (&mut lease.renew, file.cluster.lease_renew_ms),
            (&mut lease.margin, file.cluster.lease_margin_ms),
        ] {
            if let Some(ms) = value {
                *field = Duration::from_millis(ms);
            }
        }
        config
            .cluster_lease
            .check()
            .map_err(|m| invalid("lease_ms", m))?;
        Ok(config)
    }

    /// The settings as the config server's defaults (the token and the
    /// cookie left out; `cluster.*` too):
    /// `node.data_dir`, `node.log`, `http.addr`, `http.allow_non_loopback`,
    /// `telemetry.retention_secs`, `telemetry.per_agent_labels`.
    pub fn defaults(&self) -> serde_json::Value {
        serde_json::json!({
            "node": {
                "data_dir": self.data_dir.display().to_string(),
                "log": format!("{:?}", self.log).to_lowercase(),
            },
            "http": {
                "addr": self.http.to_string(),
                "allow_non_loopback": self.allow_non_loopback,
            },
            "telemetry": {
                "retention_secs": self.retention_secs,
                "per_agent_labels": self.per_agent_labels,
            },
            "cluster": {
                "node": self.cluster_node,
                "listen": self.cluster_listen.to_string(),
                "seeds": self.cluster_seeds.iter().map(ToString::to_string).collect::<Vec<_>>(),
            },
        })
    }

    /// The defaults overlaid with the file at `path`.
    pub fn from_file(path: &Path) -> Result<Self, NodeError> {
        let text = std::fs::read_to_string(path).map_err(|error| NodeError::ConfigRead {
            path: path.to_owned(),
            error,
        })?;
        Self::from_toml(&text, path)
    }

    /// Refuses a non-loopback HTTP or cluster address unless allowed, and
    /// a node that joins others without a shared store.
    pub fn check(&self) -> Result<(), NodeError> {
        for addr in [self.http, self.cluster_listen] {
            if !addr.ip().is_loopback() && !self.allow_non_loopback {
                return Err(NodeError::NonLoopback(addr));
            }
        }
        // PostgreSQL (`--store postgres://...`) holds the agents, their
        // claims and checkpoints for every node.
        crate::cluster::check_shared_store(self, self.store.is_some())
    }
}

/// The least strength of a token or cookie given in the config file.
pub const MIN_SECRET_BITS: u32 = 128;

/// Refuses a secret weaker than [`MIN_SECRET_BITS`]. Its strength is
/// estimated as its length times the bits of the smallest alphabet that
/// spells it (hex digits 4, lowercase and digits 5.17, letters and digits
/// 5.95, any printable 6.55): 32 random hex digits pass, a word does not.
/// A secret of fewer than 8 distinct characters is refused whatever its
/// length (`aaaa...`).
fn strong_enough(key: &str, secret: &str) -> Result<(), String> {
    let secret = secret.trim();
    let has = |f: fn(&char) -> bool| secret.chars().any(|c| f(&c));
    let alphabet: f64 = if secret.chars().all(|c| c.is_ascii_hexdigit()) {
        16.0
    } else if !has(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit())) {
        36.0
    } else if !has(|c| !c.is_ascii_alphanumeric()) {
        62.0
    } else {
        94.0
    };
    let distinct = secret
        .chars()
        .collect::<std::collections::HashSet<_>>()
        .len();
    let bits = secret.chars().count() as f64 * alphabet.log2();
    if bits < f64::from(MIN_SECRET_BITS) || distinct < 8 {
        return Err(format!(
            "{key} carries about {} bits, at least {MIN_SECRET_BITS} are needed: \
             use 32 random hex digits (`openssl rand -hex 16`), or leave it out \
             to have one generated in the data directory",
            if distinct < 8 { 0 } else { bits as u32 }
        ));
    }
    Ok(())
}

/// The line where `key` first appears (1 if nowhere).
fn line_of(text: &str, key: &str) -> usize {
    text.lines()
        .position(|line| line.trim_start().starts_with(key))
        .map_or(1, |i| i + 1)
}
