//! Applications: named trees of [`Service`]s under one static
//! [`Supervisor`](crate::Supervisor), started in dependency order and stopped in reverse, as an
//! OTP application starts its top supervisor.
//!
//! # Concepts
//!
//! - A *service* is one part of an application: a [`Service`] has a name,
//!   the names of the services it depends on, a [`ServiceStart`] (one
//!   [`ChildSpec`] or a subtree: supervisor flags and children) and an
//!   optional [`HealthCheck`](crate::HealthCheck). [`ServiceDef`] builds one
//!   from values; implement the trait for anything else. In this crate the
//!   word means nothing else.
//! - An [`ApplicationSpec`] is the definition: a name, services in
//!   declaration order, its supervisor's [`SupervisorFlags`] (one_for_one,
//!   3 restarts in 5 s by default), the [`Telemetry`] handle it reports
//!   to, and the [`Clock`](crate::Clock) it reads time on. [`subset`](ApplicationSpec::subset)
//!   keeps some services and whatever they depend on, and says which
//!   dependencies came along; [`service`](ApplicationSpec::service) adds
//!   one's own services beside those.
//! - An [`Application`] is the running thing, a cheap cloneable handle:
//!   [`start`](Application::start), [`stop`](Application::stop),
//!   [`status`](Application::status), [`health`](Application::health),
//!   [`restart_service`](Application::restart_service),
//!   [`stop_service`](Application::stop_service).
//!
//! - Its *status* ([`ServiceStatus`], [`ApplicationStatus`]) says where a
//!   service stands; its *health* ([`Health`](crate::Health), in a
//!   [`HealthReport`]) what its check answered.
//!
//! The behaviour is documented on the types: the checks and the start
//! order on [`ApplicationSpec`], status, restarts, health and telemetry on
//! [`Application`].
//!
//! # Files
//!
//! `handle.rs`: the [`Application`] handle and its admin calls;
//! `phase.rs`: the phase machine (idle, starting, running, stopping,
//! stopped, failed) and what undoes a cancelled call; `status.rs`: the
//! status types and how the supervisor's answer becomes a report;
//! `health.rs`: the health report; `watcher.rs`: the task that notices the
//! supervisor giving up; `plan.rs`: the start order; `service.rs`: what a
//! service is.

mod error;
mod handle;
mod health;
mod phase;
mod plan;
mod service;
mod status;
mod watcher;

use std::{fmt, sync::Arc};

pub use error::ApplicationError;
pub use handle::{Application, WeakApplication};
pub use health::{HealthReport, ServiceHealth};
pub use service::{Service, ServiceDef, ServiceStart};
pub use status::{ApplicationStatus, ServiceReport, ServiceStatus, StatusReport};

use crate::{ChildSpec, Clock, HealthCheck, SupervisorError, SupervisorFlags, Telemetry};

/// The definition of an application: its name, its services, its
/// supervisor's [`SupervisorFlags`], its telemetry handle and its clock.
///
/// Defaults: the defaults of [`SupervisorFlags`]:
/// [`Strategy::OneForOne`](crate::Strategy::OneForOne), 3 restarts within
/// 5 seconds; telemetry disabled; [`Clock::system`]. The supervisor is
/// named after the application.
///
/// # Time
///
/// Everything the application times reads its [`Clock`]
/// ([`with_clock`](Self::with_clock)): its supervisor's restart window and
/// backoff waits, the health checks' timeouts, and the `duration_us` of
/// `application.started`. Tests give it [`Clock::tokio`] (or a source of
/// their own) and run on tokio's paused clock.
///
/// # Order
///
/// [`build`](Self::build) checks the services before anything starts:
/// no two share a name ([`ApplicationError::DuplicateService`]), every
/// dependency is defined ([`ApplicationError::MissingDependency`] names it
/// and who needs it), and the dependencies have no cycle
/// ([`ApplicationError::DependencyCycle`] names the services in it). The
/// start order is then Kahn's topological order: a service starts after
/// everything it depends on; among services ready at the same time, the one
/// declared first starts first. The order is the children's order in the
/// application's supervisor, so the supervisor stops them in reverse: a
/// service stops before the services it depends on.
///
///
/// # Example
///
/// Keep a subset of the built-in services, see which dependencies came
/// along, and add one's own service beside them:
///
/// ```
/// use kameo::prelude::*;
/// use mabeam_supervision_core::{ApplicationSpec, ChildSpec, ServiceDef};
///
/// #[derive(Actor)]
/// struct Worker;
///
/// fn service(name: &str) -> ServiceDef {
///     ServiceDef::child(ChildSpec::actor::<Worker>(name.to_owned(), || Worker))
/// }
///
/// let builtins = ApplicationSpec::new("node")
///     .service(service("registry"))
///     .service(service("config").depends_on(["registry"]))
///     .service(service("events").depends_on(["config"]))
///     .service(service("metrics"));
///
/// let subset = builtins.subset(["events"]).unwrap();
/// assert_eq!(subset.added, ["registry".into(), "config".into()]);
/// let spec = subset.spec.service(service("mine").depends_on(["config"]));
/// assert_eq!(spec.service_names(), ["registry", "config", "events", "mine"]);
/// ```
#[derive(Clone)]
pub struct ApplicationSpec {
    services: Vec<Arc<dyn Service>>,
    /// The supervisor's flags; their name is the application's name, their
    /// telemetry and clock the application's.
    flags: SupervisorFlags,
}

/// The answer of [`ApplicationSpec::subset`]: the smaller spec, and the
/// dependencies that came along with the services asked for.
#[derive(Debug, Clone)]
pub struct Subset {
    /// The services asked for and everything they depend on, in their
    /// declaration order; name, flags and telemetry are kept.
    pub spec: ApplicationSpec,
    /// The services that were not asked for but are needed, in declaration
    /// order.
    pub added: Vec<Arc<str>>,
}

impl ApplicationSpec {
    /// An application named `name` with no services yet.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        ApplicationSpec {
            services: Vec::new(),
            flags: SupervisorFlags::default().with_name(name),
        }
    }

    /// Adds a service after those already declared.
    pub fn service(self, service: impl Service) -> Self {
        self.shared_service(Arc::new(service))
    }

    /// Adds a shared service after those already declared.
    pub fn shared_service(mut self, service: Arc<dyn Service>) -> Self {
        self.services.push(service);
        self
    }

    /// Sets the flags of the application's supervisor: its strategy and
    /// restart intensity. The flags' name, telemetry and clock are replaced
    /// by the application's: the supervisor is named after the application,
    /// reports to the application's telemetry and reads its clock (see
    /// [`with_telemetry`](Self::with_telemetry),
    /// [`with_clock`](Self::with_clock)), whatever the order of the calls.
    ///
    /// With [`Strategy::RestForOne`](crate::Strategy::RestForOne), a service
    /// that restarts takes the services started after it along, among them
    /// everything that depends on it. Past the intensity, the supervisor
    /// stops every service and the application has failed.
    pub fn with_flags(mut self, flags: SupervisorFlags) -> Self {
        let name = self.flags.name.clone();
        let telemetry = self.flags.telemetry.clone();
        let clock = self.flags.clock.clone();
        self.flags = flags
            .with_name(name)
            .with_telemetry(telemetry)
            .with_clock(clock);
        self
    }

    /// Sets the clock the application (and its supervisor) reads time on:
    /// see [Time](Self#time).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.flags.clock = clock;
        self
    }

    /// Sets the telemetry handle the application (and its supervisor)
    /// reports to.
    pub fn with_telemetry(mut self, telemetry: Telemetry) -> Self {
        self.flags.telemetry = telemetry;
        self
    }

    /// The application's name.
    pub fn name(&self) -> &str {
        &self.flags.name
    }

    /// The flags of the application's supervisor.
    pub fn flags(&self) -> &SupervisorFlags {
        &self.flags
    }

    /// The services' names, in declaration order.
    pub fn service_names(&self) -> Vec<&str> {
        self.services.iter().map(|s| s.name()).collect()
    }

    /// Checks the services and returns their names in start order (see the
    /// [type docs](Self)).
    pub fn start_order(&self) -> Result<Vec<Arc<str>>, ApplicationError> {
        let plan = plan::plan(&self.services)?;
        Ok(plan
            .order
            .iter()
            .map(|&i| self.services[i].name().into())
            .collect())
    }

    /// The services named in `names` and everything they depend on,
    /// directly or not, as a spec of their own; [`Subset::added`] lists the
    /// dependencies that were not asked for.
    ///
    /// Errors: [`UnknownService`](ApplicationError::UnknownService) for a
    /// name that is not defined,
    /// [`MissingDependency`](ApplicationError::MissingDependency),
    /// [`DuplicateService`](ApplicationError::DuplicateService). Cycles are
    /// found when the subset is built.
    pub fn subset<I>(&self, names: I) -> Result<Subset, ApplicationError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let names: Vec<I::Item> = names.into_iter().collect();
        let wanted: Vec<&str> = names.iter().map(AsRef::as_ref).collect();
        let (selected, added) = plan::closure(&self.services, &wanted)?;
        Ok(Subset {
            spec: ApplicationSpec {
                services: selected.iter().map(|&i| self.services[i].clone()).collect(),
                flags: self.flags.clone(),
            },
            added: added
                .iter()
                .map(|&i| self.services[i].name().into())
                .collect(),
        })
    }

    /// Checks everything that can be checked before a start: the
    /// supervisor's intensity, names, dependencies, cycles, each service's
    /// child spec (a subtree's flags and children included) and health
    /// check timeout. Returns the application, not started.
    pub fn build(self) -> Result<Application, ApplicationError> {
        self.flags
            .validate()
            .map_err(|e| ApplicationError::Supervisor(SupervisorError::InvalidFlags(e)))?;
        let plan = plan::plan(&self.services)?;
        for service in &self.services {
            prepare(&**service)?;
        }
        Ok(Application::new(self, plan))
    }

    /// Builds the application and starts it: [`build`](Self::build), then
    /// [`Application::start`].
    pub async fn start(self) -> Result<Application, ApplicationError> {
        let app = self.build()?;
        app.start().await?;
        Ok(app)
    }
}

impl fmt::Debug for ApplicationSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApplicationSpec")
            .field("services", &self.service_names())
            .field("flags", &self.flags)
            .finish()
    }
}

/// A service's child spec (its id set to the service's name) and health
/// check, checked.
fn prepare(service: &dyn Service) -> Result<(ChildSpec, Option<HealthCheck>), ApplicationError> {
    let name = service.name();
    let spec = service.start_spec().into_spec(name);
    spec.validate()
        .map_err(|error| ApplicationError::InvalidService {
            service: name.into(),
            error,
        })?;
    let check = service.health_check();
    if check.as_ref().is_some_and(|c| c.timeout().is_zero()) {
        return Err(ApplicationError::ZeroHealthTimeout(name.into()));
    }
    Ok((spec, check))
}
