//! [`ConfigError`]: every way a ConfigServer call fails, with stable codes
//! 3101-3199.

use std::path::PathBuf;

use mabeam_supervision_core::ErrorCode;
use thiserror::Error;

/// Why a ConfigServer call failed. A refused update changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The path may not be updated at run time (fixed, or unknown to the
    /// schema).
    #[error("config path {path:?} may not be updated")]
    Forbidden {
        /// The path.
        path: String,
    },
    /// The value breaks the path's rule.
    #[error("invalid value {value} for config path {path:?}: must be {rule}")]
    InvalidValue {
        /// The path.
        path: String,
        /// The rule, in words ("an integer in 1..=1000").
        rule: String,
        /// The value refused, as JSON.
        value: String,
    },
    /// No value at this path.
    #[error("config path {path:?} not found")]
    NotFound {
        /// The path.
        path: String,
    },
    /// The path is malformed, or runs through a value that is not an
    /// object.
    #[error("invalid config path {path:?}: {reason}")]
    InvalidPath {
        /// The path.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// Writing the persisted configuration failed; nothing changed.
    #[error("could not persist the configuration: {0}")]
    Persist(String),
    /// The persisted file cannot be read as a configuration; it is left
    /// as it is.
    #[error("persisted configuration {path} is unreadable: {detail}")]
    CorruptedFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The defaults (built in or from the TOML file) are invalid.
    #[error("invalid config defaults: {0}")]
    InvalidDefaults(String),
    /// The schema is invalid.
    #[error("invalid config schema: {0}")]
    InvalidSchema(String),
    /// The config process is not running (stopped, crashed, restarting):
    /// the update was not applied nor persisted; retry once it is back.
    #[error("config server unavailable: {0}")]
    Unavailable(String),
}

impl ErrorCode for ConfigError {
    fn code(&self) -> u32 {
        match self {
            ConfigError::Forbidden { .. } => 3101,
            ConfigError::InvalidValue { .. } => 3102,
            ConfigError::NotFound { .. } => 3103,
            ConfigError::InvalidPath { .. } => 3104,
            ConfigError::Persist(_) => 3105,
            ConfigError::CorruptedFile { .. } => 3106,
            ConfigError::InvalidDefaults(_) => 3107,
            ConfigError::InvalidSchema(_) => 3108,
            ConfigError::Unavailable(_) => 3109,
        }
    }
}
