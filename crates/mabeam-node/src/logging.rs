//! The node's log lines, on stderr: for people by default (time, level,
//! message, fields: `2026-01-01T00:00:00Z  INFO started service
//! tree="foundation" service="event_store"`), or one JSON object a line
//! for machines (`--log json`).
//!
//! The level comes from the config (`log`), unless `RUST_LOG` is set: then
//! its directives rule (`RUST_LOG=warn,mabeam_node=debug`). The workspace
//! builds kameo without its `tracing` feature, so no actor span prefixes
//! a line at any level (the `kameo=warn` directive below keeps that true
//! for a build that turns the feature back on).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::{LogFormat, LogLevel, NodeError};

/// The filter: `RUST_LOG` if set, else `level` with kameo's spans off
/// above debug.
pub fn filter(level: LogLevel) -> Result<EnvFilter, NodeError> {
    if let Ok(directives) = std::env::var(EnvFilter::DEFAULT_ENV)
        && !directives.trim().is_empty()
    {
        return EnvFilter::try_new(&directives)
            .map_err(|e| NodeError::Logging(format!("RUST_LOG={directives:?}: {e}")));
    }
    let level = tracing::Level::from(level);
    let directives = if level > tracing::Level::INFO {
        level.to_string().to_lowercase()
    } else {
        format!("{},kameo=warn", level.to_string().to_lowercase())
    };
    EnvFilter::try_new(&directives).map_err(|e| NodeError::Logging(e.to_string()))
}

/// Installs the process's logger (once, by the binary).
pub fn init(level: LogLevel, format: LogFormat) -> Result<(), NodeError> {
    let filter = filter(level)?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Text => builder
            .with_target(false)
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
    installed.map_err(|e| NodeError::Logging(e.to_string()))
}
