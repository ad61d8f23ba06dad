//! [`System`] and [`SystemBuilder`]: both trees wired from one
//! [`Wiring`], started Foundation first and stopped MABEAM first; subsets
//! and one's own services.

use std::{collections::HashSet, fmt, sync::Arc};

use futures::future::BoxFuture;
use process_registry::{ProcessRegistry, ServiceRegistry};
use serde::Serialize;
use supervision_core::{
    Application, ApplicationSpec, Clock, GaugeReading, GaugeSource, HealthReport, MetaValue,
    Namespace, Service, Telemetry, events,
};
use telemetry::{PerformanceConfig, PerformanceMonitor, TelemetryConfig, TelemetryService};

use crate::{
    FOUNDATION_SEED, FoundationApp, MABEAM_SEED, MabeamApp, MabeamError, Wiring,
    tree::{self, RestartCounts, TreeReport},
};

/// Which tree a service of one's own joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tree {
    /// The Foundation tree (started first, stopped last).
    Foundation,
    /// The MABEAM tree (started after Foundation, stopped first).
    Mabeam,
}

/// Builds a [`System`]: the namespace, telemetry handle and clock to wire
/// with, a subset of the services, one's own services.
///
/// Defaults: the production namespace, a new enabled [`Telemetry`], the
/// system clock, every built service, the telemetry and performance
/// defaults.
///
/// # Example
///
/// ```
/// use mabeam::{SystemBuilder, seed};
/// use supervision_core::Namespace;
///
/// # #[tokio::main] async fn main() -> Result<(), mabeam::MabeamError> {
/// let system = SystemBuilder::new()
///     .namespace(Namespace::unique_test())
///     .only([seed::SERVICE_REGISTRY])
///     .build()?;
/// // The service registry needs the process registry: it came along.
/// assert_eq!(system.added(), [seed::PROCESS_REGISTRY.into()]);
/// system.start().await?;
/// assert_eq!(system.registry().count(system.namespace()), 2);
/// system.stop().await?;
/// assert_eq!(system.registry().count(system.namespace()), 0);
/// # Ok(()) }
/// ```
pub struct SystemBuilder {
    namespace: Namespace,
    telemetry: Telemetry,
    clock: Clock,
    only: Option<Vec<String>>,
    own: Vec<(Tree, Arc<dyn Service>)>,
    telemetry_config: TelemetryConfig,
    performance_config: PerformanceConfig,
}

impl fmt::Debug for SystemBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SystemBuilder")
            .field("namespace", &self.namespace)
            .field("only", &self.only)
            .field(
                "own",
                &self
                    .own
                    .iter()
                    .map(|(t, s)| (*t, s.name().to_owned()))
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Default for SystemBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl SystemBuilder {
    /// A builder with the defaults.
    pub fn new() -> Self {
        SystemBuilder {
            namespace: Namespace::Production,
            telemetry: Telemetry::new(),
            clock: Clock::system(),
            only: None,
            own: Vec::new(),
            telemetry_config: TelemetryConfig::default(),
            performance_config: PerformanceConfig::default(),
        }
    }

    /// The namespace every service registers in (tests: `Namespace::unique_test()`).
    pub fn namespace(mut self, namespace: Namespace) -> Self {
        self.namespace = namespace;
        self
    }

    /// The one telemetry handle of the system (it must be enabled).
    pub fn telemetry(mut self, telemetry: Telemetry) -> Self {
        self.telemetry = telemetry;
        self
    }

    /// The one clock of the system (also given to telemetry and the monitor).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Keeps only these services (of either tree) and what they depend
    /// on; [`System::added`] says which came along. Services of one's own
    /// are always kept.
    pub fn only<I>(mut self, names: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.only = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// Adds a service of one's own to `tree`, after the built-in ones (it
    /// may depend on them).
    pub fn service(mut self, tree: Tree, service: impl Service) -> Self {
        self.own.push((tree, Arc::new(service)));
        self
    }

    /// The telemetry service's settings (its clock is the system's).
    pub fn telemetry_config(mut self, config: TelemetryConfig) -> Self {
        self.telemetry_config = config;
        self
    }

    /// The performance monitor's settings (its clock is the system's).
    pub fn performance_config(mut self, config: PerformanceConfig) -> Self {
        self.performance_config = config;
        self
    }

    /// Wires both trees and checks them; nothing starts.
    pub fn build(self) -> Result<System, MabeamError> {
        if !self.telemetry.is_enabled() {
            return Err(MabeamError::Telemetry(
                supervision_core::TelemetryError::Disabled.into(),
            ));
        }
        let registry = ProcessRegistry::new(self.telemetry.clone());
        let services = ServiceRegistry::new(
            Arc::new(registry.clone()),
            self.namespace,
            self.telemetry.clone(),
        );
        let telemetry_service = TelemetryService::with_config(
            self.telemetry.clone(),
            TelemetryConfig {
                clock: self.clock.clone(),
                ..self.telemetry_config
            },
        )?;
        let performance = PerformanceMonitor::with_config(
            self.telemetry.clone(),
            PerformanceConfig {
                clock: self.clock.clone(),
                ..self.performance_config
            },
        )?;
        let wiring = Wiring {
            namespace: self.namespace,
            registry,
            services,
            telemetry: self.telemetry.clone(),
            clock: self.clock,
            telemetry_service,
            performance,
        };
        let mut foundation = FoundationApp::spec(&wiring);
        let mut mabeam = MabeamApp::spec(&wiring);

        let mut added = Vec::new();
        if let Some(only) = &self.only {
            let builtin: HashSet<&str> = foundation
                .service_names()
                .into_iter()
                .chain(mabeam.service_names())
                .collect();
            if let Some(unknown) = only.iter().find(|n| !builtin.contains(n.as_str())) {
                return Err(MabeamError::UnknownService(unknown.as_str().into()));
            }
            let pick = |spec: &ApplicationSpec| -> Vec<String> {
                let names = spec.service_names();
                only.iter()
                    .filter(|n| names.contains(&n.as_str()))
                    .cloned()
                    .collect()
            };
            let (f, m) = (pick(&foundation), pick(&mabeam));
            let f = subset(&foundation, &f, "foundation")?;
            let m = subset(&mabeam, &m, "mabeam")?;
            added.extend(f.added.iter().cloned());
            added.extend(m.added.iter().cloned());
            foundation = f.spec;
            mabeam = m.spec;
        }
        let mut names: HashSet<String> = foundation
            .service_names()
            .into_iter()
            .chain(mabeam.service_names())
            .map(str::to_owned)
            .collect();
        for (tree, service) in self.own {
            if !names.insert(service.name().to_owned()) {
                return Err(MabeamError::DuplicateService(service.name().into()));
            }
            match tree {
                Tree::Foundation => foundation = foundation.shared_service(service),
                Tree::Mabeam => mabeam = mabeam.shared_service(service),
            }
        }
        let foundation = foundation
            .build()
            .map_err(|error| MabeamError::Application {
                tree: FoundationApp::NAME,
                error,
            })?;
        let mabeam = mabeam.build().map_err(|error| MabeamError::Application {
            tree: MabeamApp::NAME,
            error,
        })?;

        let restarts = RestartCounts::default();
        let handler_id = format!("mabeam-restarts-{}", self.namespace);
        let counts = restarts.clone();
        self.telemetry
            .attach(handler_id.clone(), &["supervisor", "child"], move |event| {
                let (Some(MetaValue::Str(sup)), Some(MetaValue::Str(child))) =
                    (event.meta("supervisor"), event.meta("child"))
                else {
                    return;
                };
                if event.name == events::CHILD_RESTARTED {
                    counts.restarted(sup, child);
                } else if event.name == events::CHILD_TERMINATED {
                    counts.forget(sup, child);
                }
            })
            .map_err(|e| MabeamError::Telemetry(e.into()))?;

        Ok(System {
            inner: Arc::new(Inner {
                wiring,
                foundation,
                mabeam,
                added,
                restarts,
                handler_id,
            }),
        })
    }
}

fn subset(
    spec: &ApplicationSpec,
    names: &[String],
    tree: &'static str,
) -> Result<supervision_core::Subset, MabeamError> {
    spec.subset(names.iter().map(String::as_str))
        .map_err(|error| MabeamError::Application { tree, error })
}

/// Both trees of a node, wired and checked: a cheap, cloneable handle.
///
/// [`start`](Self::start) starts Foundation, then MABEAM;
/// [`stop`](Self::stop) stops MABEAM, then Foundation, each in reverse
/// start order, and returns once every process has stopped. Every
/// service's process is registered under its name in the system's
/// namespace while it runs.
#[derive(Clone)]
pub struct System {
    inner: Arc<Inner>,
}

struct Inner {
    wiring: Wiring,
    foundation: Application,
    mabeam: Application,
    added: Vec<Arc<str>>,
    restarts: RestartCounts,
    handler_id: String,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.wiring.telemetry.detach(&self.handler_id);
    }
}

impl fmt::Debug for System {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("System")
            .field("namespace", &self.inner.wiring.namespace)
            .field("foundation", &self.inner.foundation.services())
            .field("mabeam", &self.inner.mabeam.services())
            .finish_non_exhaustive()
    }
}

/// The health of the whole system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SystemHealth {
    /// Whether every service of both trees is healthy.
    pub healthy: bool,
    /// Each service by tree: `healthy`, or why not.
    pub services: Vec<ServiceHealthLine>,
}

/// One service's health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceHealthLine {
    /// `foundation` or `mabeam`.
    pub tree: &'static str,
    /// The service.
    pub service: String,
    /// `healthy`, or what is wrong.
    pub health: String,
}

impl System {
    /// A builder.
    pub fn builder() -> SystemBuilder {
        SystemBuilder::new()
    }

    /// Starts Foundation, then MABEAM. If MABEAM fails to start,
    /// Foundation is stopped again and the error returned.
    pub async fn start(&self) -> Result<(), MabeamError> {
        self.inner
            .foundation
            .start()
            .await
            .map_err(|error| MabeamError::Application {
                tree: FoundationApp::NAME,
                error,
            })?;
        if let Err(error) = self.inner.mabeam.start().await {
            let _ = self.inner.foundation.stop().await;
            return Err(MabeamError::Application {
                tree: MabeamApp::NAME,
                error,
            });
        }
        Ok(())
    }

    /// Stops MABEAM, then Foundation; returns once every process below
    /// both has stopped. A tree that was not running is skipped.
    pub async fn stop(&self) -> Result<(), MabeamError> {
        let mabeam = self.inner.mabeam.stop().await;
        let foundation = self.inner.foundation.stop().await;
        mabeam.map_err(|error| MabeamError::Application {
            tree: MabeamApp::NAME,
            error,
        })?;
        foundation.map_err(|error| MabeamError::Application {
            tree: FoundationApp::NAME,
            error,
        })?;
        Ok(())
    }

    /// The Foundation application.
    pub fn foundation(&self) -> &Application {
        &self.inner.foundation
    }

    /// The MABEAM application.
    pub fn mabeam(&self) -> &Application {
        &self.inner.mabeam
    }

    /// The services that came along with a subset (dependencies not asked for).
    pub fn added(&self) -> &[Arc<str>] {
        &self.inner.added
    }

    /// What the trees are wired from.
    pub fn wiring(&self) -> &Wiring {
        &self.inner.wiring
    }

    /// The namespace the services register in.
    pub fn namespace(&self) -> &Namespace {
        &self.inner.wiring.namespace
    }

    /// The process registry.
    pub fn registry(&self) -> &ProcessRegistry {
        &self.inner.wiring.registry
    }

    /// The telemetry handle.
    pub fn telemetry(&self) -> &Telemetry {
        &self.inner.wiring.telemetry
    }

    /// The telemetry service.
    pub fn telemetry_service(&self) -> &TelemetryService {
        &self.inner.wiring.telemetry_service
    }

    /// The performance monitor.
    pub fn performance(&self) -> &PerformanceMonitor {
        &self.inner.wiring.performance
    }

    /// Restarts the service `name` of either tree (refused while a
    /// dependency is down).
    pub async fn restart_service(&self, name: &str) -> Result<(), MabeamError> {
        for app in [&self.inner.foundation, &self.inner.mabeam] {
            if app.services().iter().any(|s| &**s == name) {
                return app
                    .restart_service(name)
                    .await
                    .map(|_| ())
                    .map_err(|error| MabeamError::Application {
                        tree: if app.name() == FoundationApp::NAME {
                            FoundationApp::NAME
                        } else {
                            MabeamApp::NAME
                        },
                        error,
                    });
            }
        }
        Err(MabeamError::UnknownService(name.into()))
    }

    /// Runs every service's health check.
    pub async fn health(&self) -> SystemHealth {
        let (foundation, mabeam) =
            futures::join!(self.inner.foundation.health(), self.inner.mabeam.health());
        let mut services = Vec::new();
        let mut healthy = true;
        for (tree, report) in [(FoundationApp::NAME, foundation), (MabeamApp::NAME, mabeam)] {
            let report: HealthReport = report;
            healthy &= report.is_healthy();
            services.extend(report.services.into_iter().map(|s| ServiceHealthLine {
                tree,
                service: s.name.to_string(),
                health: s.health.to_string(),
            }));
        }
        SystemHealth { healthy, services }
    }

    /// The live tree: both applications, every process with its kind,
    /// status and restart count, and the seed's services not built yet.
    pub async fn tree(&self) -> TreeReport {
        let restarts = &self.inner.restarts;
        let foundation = tree::application_node(&self.inner.foundation, restarts).await;
        let mabeam = tree::application_node(&self.inner.mabeam, restarts).await;
        TreeReport {
            namespace: self.inner.wiring.namespace.to_string(),
            applications: vec![foundation, mabeam],
            absent: FOUNDATION_SEED
                .iter()
                .chain(MABEAM_SEED)
                .filter(|s| !s.wired)
                .copied()
                .collect(),
        }
    }
}

impl GaugeSource for System {
    fn read(&self) -> BoxFuture<'_, Vec<GaugeReading>> {
        Box::pin(async move {
            let report = self.tree().await;
            let mut out = Vec::new();
            for app in &report.applications {
                tree::gauges(app, &mut out);
            }
            let ns = self.namespace().to_string();
            let kind = ns.split(':').next().unwrap_or("production").to_owned();
            out.push(GaugeReading::new(
                &events::GAUGE_REGISTRY_NAMES,
                [kind],
                self.registry().count(self.namespace()) as f64,
            ));
            out
        })
    }
}
