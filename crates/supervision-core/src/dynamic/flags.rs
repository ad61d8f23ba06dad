//! [`DynamicSupervisorFlags`]: a dynamic supervisor's settings, built the
//! way [`SupervisorFlags`](crate::SupervisorFlags) are.

use std::{sync::Arc, time::Duration};

use crate::{FlagsError, Intensity, Telemetry};

/// The settings of a [`DynamicSupervisor`](crate::DynamicSupervisor).
///
/// Defaults: intensity 3 restarts within 5 seconds (as OTP's), no limit on
/// children, name `dynamic_supervisor`, telemetry disabled. Built the way
/// [`SupervisorFlags`](crate::SupervisorFlags) are: the same `with_*`
/// methods, the same `validate`.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use mabeam_supervision_core::DynamicSupervisorFlags;
///
/// let flags = DynamicSupervisorFlags::new()
///     .with_name("sessions")
///     .with_intensity(10, Duration::from_secs(1))
///     .with_max_children(1000);
/// assert!(flags.validate().is_ok());
/// assert!(DynamicSupervisorFlags::new().with_max_children(0).validate().is_err());
/// ```
#[derive(Debug, Clone)]
pub struct DynamicSupervisorFlags {
    /// Restarts allowed within the window, for all children together.
    pub intensity: Intensity,
    /// At most this many children (a child being restarted, or being
    /// started by a caller, counts); `None` for no limit.
    pub max_children: Option<usize>,
    /// The name in its telemetry events.
    pub name: Arc<str>,
    /// Where its events go (see [`events`](crate::events)).
    pub telemetry: Telemetry,
}

impl Default for DynamicSupervisorFlags {
    fn default() -> Self {
        DynamicSupervisorFlags::new()
    }
}

impl DynamicSupervisorFlags {
    /// The default flags.
    pub fn new() -> Self {
        DynamicSupervisorFlags {
            intensity: Intensity::default(),
            max_children: None,
            name: "dynamic_supervisor".into(),
            telemetry: Telemetry::disabled(),
        }
    }

    /// Sets the name its telemetry events carry.
    pub fn with_name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets where its telemetry events go.
    pub fn with_telemetry(mut self, telemetry: Telemetry) -> Self {
        self.telemetry = telemetry;
        self
    }

    /// Sets the intensity: at most `max_restarts` within `max_seconds`.
    pub fn with_intensity(mut self, max_restarts: u32, max_seconds: Duration) -> Self {
        self.intensity = Intensity {
            max_restarts,
            max_seconds,
        };
        self
    }

    /// Allows at most `max` children.
    pub fn with_max_children(mut self, max: usize) -> Self {
        self.max_children = Some(max);
        self
    }

    /// Checks the flags: the restart window must be longer than zero, and
    /// `max_children` at least 1.
    pub fn validate(&self) -> Result<(), FlagsError> {
        self.intensity.validate()?;
        if self.max_children == Some(0) {
            return Err(FlagsError::InvalidMaxChildren(0));
        }
        Ok(())
    }
}
