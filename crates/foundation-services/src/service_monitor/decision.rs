//! What the service monitor decided about one service in one round
//! ([`Decision`]), and what it keeps of each watched service
//! ([`WatchedService`], [`RestartRecord`]).

use std::{sync::Arc, time::Duration};

/// Why a restart was not asked for although pings were missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// The service's supervisor is restarting it (its status is
    /// restarting or starting): it must not be restarted twice.
    SupervisorRestarting,
    /// The service was stopped on request: not a failure.
    StoppedOnRequest,
    /// Its application is not running.
    ApplicationDown,
}

impl SkipReason {
    /// Its name, as in telemetry.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::SupervisorRestarting => "supervisor_restarting",
            SkipReason::StoppedOnRequest => "stopped_on_request",
            SkipReason::ApplicationDown => "application_down",
        }
    }
}

/// What the monitor decided about one service in one round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// It answered; nothing to do.
    Healthy,
    /// It answered again after missed pings.
    Recovered,
    /// It missed a ping (`misses` in a row, fewer than the limit).
    Missed {
        /// Missed pings in a row.
        misses: u32,
        /// What the ping answered.
        reason: String,
    },
    /// Not acted on, for this reason; misses are not counted.
    Skipped(SkipReason),
    /// Enough misses, but the backoff since its last restart has not run
    /// out.
    Deferred {
        /// How long until a restart may be asked for.
        retry_in: Duration,
    },
    /// Its application restarted it.
    Restarted {
        /// The consecutive restart this was (from 1).
        attempt: u32,
    },
    /// Its application refused or failed the restart.
    RestartFailed {
        /// The consecutive restart this was (from 1).
        attempt: u32,
        /// The application's error.
        error: String,
    },
}

/// One restart the monitor asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartRecord {
    /// Wall-clock milliseconds since the Unix epoch when it was asked for.
    pub at_unix_ms: u64,
    /// The consecutive restart it was (from 1).
    pub attempt: u32,
    /// `Err(message)` if the application could not restart it.
    pub result: Result<(), String>,
}

/// A watched service as the monitor sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedService {
    /// `application/service`.
    pub name: Arc<str>,
    /// Missed pings in a row.
    pub misses: u32,
    /// Consecutive restarts (reset once it has been healthy for the
    /// backoff's `reset_after`).
    pub attempts: u32,
    /// Every restart asked for, oldest first.
    pub restarts: Vec<RestartRecord>,
}
