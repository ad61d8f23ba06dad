//! The health of an application's services: [`Application::health`] runs
//! each running service's [`HealthCheck`](crate::HealthCheck) at once and
//! answers a [`HealthReport`].

use std::sync::Arc;

use futures::future::join_all;

use super::{Application, ServiceReport, ServiceStatus};
use crate::{Clock, Health, HealthCheck};

/// One service in a [`HealthReport`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceHealth {
    /// The service's name.
    pub name: Arc<str>,
    /// Its status when it was checked.
    pub status: ServiceStatus,
    /// Its health: its check's answer while it runs,
    /// [`Health::NotRunning`] otherwise.
    pub health: Health,
}

/// The health of every service of an application, in start order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthReport {
    /// Each service, in start order.
    pub services: Vec<ServiceHealth>,
}

impl HealthReport {
    /// Whether every service is healthy.
    pub fn is_healthy(&self) -> bool {
        self.services.iter().all(|s| s.health.is_healthy())
    }

    /// The health of the service `name`.
    pub fn of(&self, name: &str) -> Option<&Health> {
        self.service(name).map(|s| &s.health)
    }

    /// The report of the service `name`.
    pub fn service(&self, name: &str) -> Option<&ServiceHealth> {
        self.services.iter().find(|s| &*s.name == name)
    }
}

impl Application {
    /// Runs the health check of every running service, all at once, each
    /// within its timeout (on the application's [`Clock`](crate::Clock)),
    /// and returns each service's [`Health`] in start
    /// order (see [`HealthCheck`](crate::HealthCheck)). A running service
    /// without a check is healthy; a service that is not running is not
    /// checked: it is [`Health::NotRunning`], and its
    /// [`ServiceHealth::status`] says why.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use kameo::prelude::*;
    /// use mabeam_supervision_core::{
    ///     ApplicationSpec, ChildSpec, Health, HealthCheck, ServiceDef, ServiceStatus,
    /// };
    ///
    /// #[derive(Actor)]
    /// struct Worker;
    ///
    /// # #[tokio::main] async fn main() {
    /// let app = ApplicationSpec::new("app")
    ///     .service(
    ///         ServiceDef::child(ChildSpec::actor::<Worker>("db", || Worker)).with_health_check(
    ///             HealthCheck::new(Duration::from_secs(1), |db| async move {
    ///                 db.is_alive().then_some(()).ok_or_else(|| "db is down".to_owned())
    ///             }),
    ///         ),
    ///     )
    ///     .build()
    ///     .unwrap();
    /// // Not started yet: nothing is checked.
    /// let health = app.health().await;
    /// assert_eq!(health.of("db"), Some(&Health::NotRunning));
    /// assert_eq!(health.service("db").unwrap().status, ServiceStatus::Stopped);
    ///
    /// app.start().await.unwrap();
    /// assert!(app.health().await.is_healthy());
    /// app.stop().await.unwrap();
    /// # }
    /// ```
    pub async fn health(&self) -> HealthReport {
        let status = self.status().await;
        let checks = self.inner.state.lock().checks.clone();
        let clock = &self.inner.flags.clock;
        let answers = status.services.iter().enumerate().map(|(position, s)| {
            let check = checks.get(position).cloned().flatten();
            check_one(s, check, clock)
        });
        let answers = join_all(answers).await;
        HealthReport {
            services: status
                .services
                .into_iter()
                .zip(answers)
                .map(|(s, health)| ServiceHealth {
                    name: s.name,
                    status: s.status,
                    health,
                })
                .collect(),
        }
    }

    /// The health of one service as `service` (a line of
    /// [`status`](Self::status)) saw it: its check's answer, within the
    /// check's own timeout, while it runs; [`Health::NotRunning`]
    /// otherwise. A monitor that checks each service under its own timeout
    /// (so one slow check counts only against its service) calls this per
    /// service rather than [`health`](Self::health) for all.
    pub async fn service_health(&self, service: &ServiceReport) -> Health {
        let check = {
            let state = self.inner.state.lock();
            self.inner
                .names
                .iter()
                .position(|name| *name == service.name)
                .and_then(|position| state.checks.get(position).cloned().flatten())
        };
        check_one(service, check, &self.inner.flags.clock).await
    }
}

/// One service's health: its check while it runs, healthy while it runs
/// without one, not running otherwise.
async fn check_one(service: &ServiceReport, check: Option<HealthCheck>, clock: &Clock) -> Health {
    match (&service.handle, service.status, check) {
        (Some(handle), ServiceStatus::Running, Some(check)) => check.run_on(handle, clock).await,
        (Some(handle), ServiceStatus::Running, None) if handle.is_alive() => Health::Healthy,
        _ => Health::NotRunning,
    }
}
