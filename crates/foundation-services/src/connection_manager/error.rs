//! The ConnectionManager's typed errors, codes 3601-3699.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use mabeam_supervision_core::ErrorCode;

/// What a [`ConnectionManager`](super::ConnectionManager) call can answer
/// instead of its result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionError {
    /// A node name is empty, longer than 255 bytes, or holds a character
    /// other than ASCII letters, digits and `_ . @ -`.
    #[error("invalid node name {0:?}: 1-255 ASCII letters, digits, '_', '.', '@' or '-'")]
    InvalidNodeName(String),
    /// A setting is out of its range (named, with the rule).
    #[error("invalid setting {setting}: {rule}")]
    InvalidSetting {
        /// The setting's name.
        setting: &'static str,
        /// What it must be.
        rule: &'static str,
    },
    /// The peer answered that it does not take this connection (another
    /// cookie, the same node name, another protocol version).
    #[error("{addr} refused the connection: {reason}")]
    Refused {
        /// The peer's address.
        addr: SocketAddr,
        /// Its reason.
        reason: String,
    },
    /// The peer proved no knowledge of our cookie.
    #[error("{addr} does not share this node's cookie")]
    BadCookie {
        /// The peer's address.
        addr: SocketAddr,
    },
    /// The handshake did not finish in time.
    #[error("no handshake with {addr} within {timeout:?}")]
    HandshakeTimeout {
        /// The peer's address.
        addr: SocketAddr,
        /// The bound.
        timeout: Duration,
    },
    /// The peer broke the protocol (a frame too large, not JSON, or a
    /// message out of turn).
    #[error("protocol error with {addr}: {detail}")]
    Protocol {
        /// The peer's address.
        addr: SocketAddr,
        /// What was wrong.
        detail: String,
    },
    /// A socket failed (connect, bind, read, write).
    #[error("network error ({context}): {detail}")]
    Io {
        /// What was being done.
        context: String,
        /// The system's message.
        detail: String,
    },
    /// No connection to this node.
    #[error("not connected to node {0}")]
    NotConnected(Arc<str>),
    /// The manager's service is not running (no listener, no connection).
    #[error("the connection manager is not running")]
    NotRunning,
    /// The manager's service is already running.
    #[error("the connection manager is already running")]
    AlreadyRunning,
    /// A frame is larger than the peer reads: it was not sent.
    #[error("a frame of {size} bytes for {addr}, which reads at most {max}")]
    FrameTooLarge {
        /// The peer's address.
        addr: SocketAddr,
        /// The frame's size (JSON bytes).
        size: usize,
        /// The peer's limit.
        max: usize,
    },
}

impl ConnectionError {
    pub(crate) fn io(context: impl Into<String>, error: &std::io::Error) -> Self {
        ConnectionError::Io {
            context: context.into(),
            detail: error.to_string(),
        }
    }
}

impl ErrorCode for ConnectionError {
    fn code(&self) -> u32 {
        match self {
            ConnectionError::InvalidNodeName(_) => 3601,
            ConnectionError::InvalidSetting { .. } => 3602,
            ConnectionError::Refused { .. } => 3603,
            ConnectionError::BadCookie { .. } => 3604,
            ConnectionError::HandshakeTimeout { .. } => 3605,
            ConnectionError::Protocol { .. } => 3606,
            ConnectionError::Io { .. } => 3607,
            ConnectionError::NotConnected(_) => 3608,
            ConnectionError::NotRunning => 3609,
            ConnectionError::AlreadyRunning => 3610,
            ConnectionError::FrameTooLarge { .. } => 3611,
        }
    }
}
