//! [`NodeError`]: what can stop the node from starting, codes 9000-9999.

use std::{net::SocketAddr, path::PathBuf};

use mabeam::MabeamError;
use supervision_core::ErrorCode;
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
    /// The HTTP address could not be bound.
    #[error("cannot listen on {addr}: {error}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The trees could not be built or started.
    #[error(transparent)]
    System(#[from] MabeamError),
    /// A runtime could not be made.
    #[error("cannot start a runtime: {0}")]
    Runtime(String),
    /// A request to a running node failed.
    #[error("request to {addr} failed: {message}")]
    Request {
        /// The node's address.
        addr: String,
        /// What went wrong.
        message: String,
    },
}

impl NodeError {
    /// The process exit code for this error: 2 for bad configuration or
    /// flags (the user's to fix), 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            NodeError::Config { .. } | NodeError::ConfigRead { .. } | NodeError::NonLoopback(_) => {
                2
            }
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
        }
    }
}
