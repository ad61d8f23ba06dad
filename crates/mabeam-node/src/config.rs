//! [`NodeConfig`]: the node's settings, from embedded defaults, an
//! optional TOML file, and command-line flags (in that order of strength).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
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
///
/// [http]
/// addr = "127.0.0.1:4000"
/// allow_non_loopback = false      # binding elsewhere needs this
/// token = "..."                   # bearer token of mutating endpoints;
///                                 # generated into data_dir/token if absent
///
/// [telemetry]
/// retention_secs = 3600
/// per_agent_labels = false        # one series per agent: small systems only
///
/// [cluster]
/// node = "mabeam@localhost"       # this node's name in its cluster
/// listen = "127.0.0.1:0"          # the connection manager's address (0: a free port)
/// seeds = ["127.0.0.1:4369"]      # nodes to dial (and redial)
/// cookie = "..."                  # the cluster's secret; generated into
///                                 # data_dir/cookie if absent
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    /// Where the node keeps its files.
    pub data_dir: PathBuf,
    /// The log level.
    pub log: LogLevel,
    /// The HTTP address.
    pub http: SocketAddr,
    /// Whether a non-loopback HTTP address is allowed.
    pub allow_non_loopback: bool,
    /// The bearer token of mutating endpoints, if the config names one.
    pub token: Option<String>,
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
    /// The cluster's cookie, if the config names one.
    pub cookie: Option<String>,
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
            http: DEFAULT_HTTP.parse().expect("the default address parses"),
            allow_non_loopback: false,
            token: None,
            retention_secs: 3600,
            per_agent_labels: false,
            cluster_node: DEFAULT_CLUSTER_NODE.to_owned(),
            cluster_listen: DEFAULT_CLUSTER_LISTEN
                .parse()
                .expect("the default address parses"),
            cluster_seeds: Vec::new(),
            cookie: None,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    data_dir: Option<PathBuf>,
    log: Option<LogLevel>,
    #[serde(default)]
    http: HttpSection,
    #[serde(default)]
    telemetry: TelemetrySection,
    #[serde(default)]
    cluster: ClusterSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterSection {
    node: Option<String>,
    listen: Option<SocketAddr>,
    seeds: Option<Vec<SocketAddr>>,
    cookie: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpSection {
    addr: Option<SocketAddr>,
    allow_non_loopback: Option<bool>,
    token: Option<String>,
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
        if let Some(addr) = file.http.addr {
            config.http = addr;
        }
        if let Some(allow) = file.http.allow_non_loopback {
            config.allow_non_loopback = allow;
        }
        config.token = file.http.token;
        if let Some(token) = &config.token
            && token.trim().is_empty()
        {
            return Err(NodeError::Config {
                path: path.to_owned(),
                line: line_of(text, "token"),
                message: "http.token must not be empty".to_owned(),
            });
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
        if let Some(cookie) = &file.cluster.cookie
            && cookie.trim().is_empty()
        {
            return Err(NodeError::Config {
                path: path.to_owned(),
                line: line_of(text, "cookie"),
                message: "cluster.cookie must not be empty".to_owned(),
            });
        }
        config.cookie = file.cluster.cookie;
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

    /// Refuses a non-loopback HTTP or cluster address unless allowed.
    pub fn check(&self) -> Result<(), NodeError> {
        for addr in [self.http, self.cluster_listen] {
            if !addr.ip().is_loopback() && !self.allow_non_loopback {
                return Err(NodeError::NonLoopback(addr));
            }
        }
        Ok(())
    }
}

/// The line where `key` first appears (1 if nowhere).
fn line_of(text: &str, key: &str) -> usize {
    text.lines()
        .position(|line| line.trim_start().starts_with(key))
        .map_or(1, |i| i + 1)
}
