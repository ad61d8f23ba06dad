//! [`NodeError`]: what can stop the node from starting, codes 9000-9999.

use std::{net::SocketAddr, path::PathBuf};

use mabeam::MabeamError;
use mabeam_supervision_core::ErrorCode;
use thiserror::Error;

/// Why the node could not start (or a command could not run).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The config file is not valid: which file, which line, what is wrong
    /// (the key is named in the message).
    #[error("{path}:{line}: {message}")]
    Config {
        /// The file.
        path: PathBuf,
        /// The line (1-based) of the problem.
        line: usize,
        /// What is wrong, naming the key.
        message: String,
    },
    /// The config file could not be read.
    #[error("cannot read config file {path}: {error}")]
    ConfigRead {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The HTTP address is not a loopback address and binding to it was
    /// not allowed (`--allow-non-loopback`, or `http.allow_non_loopback`).
    #[error(
        "refusing to serve HTTP on non-loopback address {0}: pass --allow-non-loopback to allow it"
    )]
    NonLoopback(SocketAddr),
    /// The data directory could not be created or written.
    #[error("data directory {path}: {error}")]
    DataDir {
        /// The directory or file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The HTTP address could not be bound (in use: the flag to pick
    /// another is named).
    #[error("{}", bind_message(*.addr, .error))]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The trees could not be built or started.
    #[error("{error}{hint}", error = .0, hint = system_hint(.0))]
    System(#[from] MabeamError),
    /// A runtime could not be made.
    #[error("cannot start a runtime: {0}")]
    Runtime(String),
    /// Another node holds the data directory (its lock file, with that
    /// node's process id when it could be read).
    #[error("data directory {} is in use by another node{}: stop it, or pass --data-dir DIR", .path.display(), .pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    DataDirInUse {
        /// The data directory.
        path: PathBuf,
        /// The holder's process id, if known.
        pid: Option<u32>,
    },
    /// A secret file (the token or the cookie) can be read by its group or
    /// by others: refused, as ssh refuses such a key.
    #[error("{} is readable by group or others (mode {mode:04o}): run `chmod 600 {}`", .path.display(), .path.display())]
    InsecureFile {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The log filter (`RUST_LOG`) or the logger could not be set up.
    #[error("cannot set up logging: {0}")]
    Logging(String),
    /// The agent store in the data directory cannot be opened.
    #[error("cannot open the agent store: {0}")]
    AgentStore(mabeam_supervision_core::AgentStoreError),
    /// A request to a running node failed.
    #[error("request to {addr} failed: {message}")]
    Request {
        /// The node's address.
        addr: String,
        /// What went wrong.
        message: String,
    },
    /// The node joins others (`--join`, `cluster.seeds`) but keeps its
    /// agents in a store of its own.
    #[error(
        "a cluster of more than one node needs a shared store: start every node with \
         --store postgres://... ({seeds} seed(s) to join given, and this node's store is \
         its own data directory)"
    )]
    ClusterNeedsSharedStore {
        /// How many seeds were given.
        seeds: usize,
    },
    /// The cluster membership could not start.
    #[error("cluster membership: {0}")]
    Cluster(String),
}

impl NodeError {
    /// The process exit code for this error: 2 for bad configuration or
    /// flags (the user's to fix), 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            NodeError::Config { .. }
            | NodeError::ConfigRead { .. }
            | NodeError::NonLoopback(_)
            | NodeError::InsecureFile { .. }
            | NodeError::ClusterNeedsSharedStore { .. }
            | NodeError::Logging(_) => 2,
            // The config server's persisted settings (`config.json`) are
            // configuration too: a corrupt file is the user's to fix.
            NodeError::System(MabeamError::Service {
                service: mabeam::seed::CONFIG_SERVER,
                ..
            }) => 2,
            _ => 1,
        }
    }
}

impl ErrorCode for NodeError {
    fn code(&self) -> u32 {
        match self {
            NodeError::Config { .. } => 9001,
            NodeError::ConfigRead { .. } => 9002,
            NodeError::NonLoopback(_) => 9003,
            NodeError::DataDir { .. } => 9004,
            NodeError::Bind { .. } => 9005,
            NodeError::System(_) => 9006,
            NodeError::Request { .. } => 9007,
            NodeError::Runtime(_) => 9008,
            NodeError::DataDirInUse { .. } => 9009,
            NodeError::InsecureFile { .. } => 9010,
            NodeError::Logging(_) => 9011,
            NodeError::AgentStore(_) => 9012,
            NodeError::ClusterNeedsSharedStore { .. } => 9021,
            NodeError::Cluster(_) => 9022,
        }
    }
}

/// What a failed bind says: an address in use names the flag that picks
/// another one.
fn bind_message(addr: SocketAddr, error: &std::io::Error) -> String {
    if error.kind() == std::io::ErrorKind::AddrInUse {
        format!("{addr} is in use: pass --http ADDR (port 0 picks a free one)")
    } else {
        format!("cannot listen on {addr}: {error}")
    }
}

/// What to do about a system error, where the node knows.
fn system_hint(error: &MabeamError) -> &'static str {
    match error {
        MabeamError::Service {
            service: mabeam::seed::CONFIG_SERVER,
            ..
        } => {
            "; fix that file or move it away (it holds the settings changed at run time: moving it \
             drops them)"
        }
        _ => "",
    }
}
