//! [`ServiceRegistry`]: named services over any [`Registry`]: lookups with
//! a stable error, health checks, waiting for a service to appear, service
//! info, and fallbacks when a service is unavailable.

use std::{fmt, future::Future, sync::Arc, time::Duration};

use supervision_core::{
    Health, HealthCheck, MetaValue, Metadata, Namespace, ProcessHandle, Registry, RegistryEvent,
    Telemetry,
};
use tokio::time::Instant;

use crate::{
    Answer, FallbackSource, ServiceError,
    table::{Map, map},
};

/// How a service is registered: its metadata and its health check.
#[derive(Debug, Clone, Default)]
pub struct ServiceOptions {
    /// Registered with the name (a JSON object, or `null`).
    pub metadata: Metadata,
    /// How to ask the service whether it is healthy; `None` judges it by
    /// liveness alone.
    pub health_check: Option<HealthCheck>,
}

impl ServiceOptions {
    /// Sets the metadata.
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// Sets the health check.
    pub fn with_health_check(mut self, check: HealthCheck) -> Self {
        self.health_check = Some(check);
        self
    }
}

/// One service as [`ServiceRegistry::service_info`] lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceInfo {
    /// The service name.
    pub name: Arc<str>,
    /// Its process: the live holder, or the last one this service registry
    /// registered.
    pub handle: ProcessHandle,
    /// Whether that process is live.
    pub alive: bool,
    /// How long it has been registered under this name; `None` when it is
    /// not alive, or was registered past this service registry (directly in
    /// the underlying registry).
    pub uptime: Option<Duration>,
    /// Its registration metadata (`null` when not alive).
    pub metadata: Metadata,
}

/// What this service registry remembers of a service it registered.
#[derive(Debug, Clone)]
struct ServiceRecord {
    handle: ProcessHandle,
    health_check: Option<HealthCheck>,
    since: Instant,
}

/// Named services in one [`Namespace`] of a [`Registry`].
///
/// Services are processes registered under a name. This type adds what a
/// caller of a service needs: [`lookup`](Self::lookup) with a stable
/// [`ServiceError::NotFound`] (code 2001), [`health_check`](Self::health_check),
/// [`wait_for_service`](Self::wait_for_service) that wakes on the
/// registration itself, [`service_info`](Self::service_info) with uptimes,
/// and [`call`](Self::call), which answers from a caller's
/// [`FallbackSource`] when the service is unavailable.
///
/// It works over the [`Registry`] contract (any `Arc<dyn Registry>`), so
/// services registered directly in the registry are found too; health
/// checks and uptimes are known only for services registered here.
/// Cloning is cheap; clones share everything.
///
/// Telemetry: `service_registry.lookup` (metadata `service`, `result`),
/// `service_registry.health_check` (measurement `duration_us`, metadata
/// `service`, `status`), `service_registry.fallback` (metadata `service`),
/// `service_registry.wait` (measurement `duration_us`, metadata `service`,
/// `result`).
///
/// # Example
///
/// ```
/// use std::{sync::Arc, time::Duration};
/// use kameo::Actor;
/// use process_registry::{ProcessRegistry, ServiceOptions, ServiceRegistry};
/// use supervision_core::{Health, Namespace, ProcessHandle, Telemetry};
///
/// #[derive(Actor)]
/// struct Mailer;
///
/// # #[tokio::main] async fn main() {
/// let registry = Arc::new(ProcessRegistry::new(Telemetry::disabled()));
/// let services = ServiceRegistry::new(registry, Namespace::unique_test(), Telemetry::disabled());
///
/// let waiter = {
///     let services = services.clone();
///     tokio::spawn(async move { services.wait_for_service("mailer", Duration::from_secs(5)).await })
/// };
/// let mailer = ProcessHandle::spawn::<Mailer>(Mailer).await.unwrap();
/// services.register_service("mailer", mailer.clone(), ServiceOptions::default()).unwrap();
/// assert_eq!(waiter.await.unwrap().unwrap(), mailer);
///
/// let status = services.health_check("mailer", Duration::from_secs(1)).await.unwrap();
/// assert_eq!(status, Health::Healthy);
/// # mailer.stop().await;
/// # }
/// ```
#[derive(Clone)]
pub struct ServiceRegistry {
    registry: Arc<dyn Registry>,
    namespace: Namespace,
    telemetry: Telemetry,
    services: Arc<Map<Arc<str>, ServiceRecord>>,
}

impl ServiceRegistry {
    /// Services of `namespace` in `registry`, emitting telemetry through
    /// `telemetry`.
    pub fn new(registry: Arc<dyn Registry>, namespace: Namespace, telemetry: Telemetry) -> Self {
        ServiceRegistry {
            registry,
            namespace,
            telemetry,
            services: Arc::new(map(8)),
        }
    }

    /// The namespace of these services.
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    fn emit(
        &self,
        event: &str,
        service: &str,
        measurements: &[(&str, f64)],
        key: &str,
        value: &str,
    ) {
        if self.telemetry.is_enabled() {
            self.telemetry.emit(
                &["service_registry", event],
                measurements,
                &[
                    ("service", MetaValue::Str(service)),
                    (key, MetaValue::Str(value)),
                ],
            );
        }
    }

    /// Registers `handle` as the service `name`, with `options`. Fails as
    /// [`Registry::register`] does, wrapped in [`ServiceError::Registry`].
    pub fn register_service(
        &self,
        name: &str,
        handle: ProcessHandle,
        options: ServiceOptions,
    ) -> Result<(), ServiceError> {
        // Recorded first, so that a waiter woken by the registration finds
        // the health check; undone if the registry refuses.
        let previous = self.services.insert(
            Arc::from(name),
            ServiceRecord {
                handle: handle.clone(),
                health_check: options.health_check,
                since: Instant::now(),
            },
        );
        let result = self
            .registry
            .register(&self.namespace, name, handle, options.metadata);
        if let Err(err) = result {
            match previous {
                Some(previous) => {
                    self.services.insert(Arc::from(name), previous);
                }
                None => {
                    self.services.remove(name);
                }
            }
            return Err(err.into());
        }
        Ok(())
    }

    /// Unregisters the service `name` and forgets it; returns its process.
    pub fn unregister_service(&self, name: &str) -> Result<ProcessHandle, ServiceError> {
        self.services.remove(name);
        self.registry
            .unregister(&self.namespace, name)
            .map_err(|_| ServiceError::NotFound(Arc::from(name)))
    }

    /// The live process of the service `name`, or
    /// [`ServiceError::NotFound`].
    pub fn lookup(&self, name: &str) -> Result<ProcessHandle, ServiceError> {
        let found = self.registry.lookup(&self.namespace, name);
        let result = if found.is_some() {
            "found"
        } else {
            "not_found"
        };
        self.emit("lookup", name, &[("count", 1.0)], "result", result);
        found.ok_or_else(|| ServiceError::NotFound(Arc::from(name)))
    }

    /// Checks the health of the service `name` within `timeout`:
    ///
    /// - [`Health::NotRunning`] if its process is not live (also for a
    ///   service this registry registered that has since stopped);
    /// - else the answer of its [`HealthCheck`], run on the process
    ///   ([`Health::Healthy`] when it has none), or [`Health::TimedOut`] if
    ///   that took longer than `timeout` or than the check's own timeout,
    ///   whichever is shorter.
    ///
    /// [`ServiceError::NotFound`] if the name is neither registered nor
    /// known to this service registry.
    pub async fn health_check(
        &self,
        name: &str,
        timeout: Duration,
    ) -> Result<Health, ServiceError> {
        let started = Instant::now();
        let record = self.services.get(name).map(|r| r.clone());
        let live = self.registry.lookup(&self.namespace, name);
        let status = match (live, record) {
            (None, None) => return Err(ServiceError::NotFound(Arc::from(name))),
            (None, Some(_)) => Health::NotRunning,
            (Some(handle), record) => {
                // The check registered with this very process, if any.
                let check = record
                    .filter(|record| record.handle == handle)
                    .and_then(|record| record.health_check);
                match check {
                    None => Health::Healthy,
                    Some(check) => tokio::time::timeout(timeout, check.run(&handle))
                        .await
                        .unwrap_or(Health::TimedOut(timeout)),
                }
            }
        };
        let label = status.label();
        let micros = started.elapsed().as_micros() as f64;
        self.emit(
            "health_check",
            name,
            &[("duration_us", micros)],
            "status",
            label,
        );
        Ok(status)
    }

    /// Waits until a live process is registered as `name`, at most
    /// `timeout`: returns at once if one is, else wakes on the
    /// registration event itself (no polling). [`ServiceError::Timeout`]
    /// when none came in time.
    pub async fn wait_for_service(
        &self,
        name: &str,
        timeout: Duration,
    ) -> Result<ProcessHandle, ServiceError> {
        let started = Instant::now();
        // Subscribed before the lookup, so a registration in between is
        // not missed.
        let mut events = self.registry.subscribe(&self.namespace);
        let found = match self.registry.lookup(&self.namespace, name) {
            Some(handle) => Some(handle),
            None => tokio::time::timeout(timeout, async {
                while let Some(event) = events.recv().await {
                    if let RegistryEvent::Registered {
                        name: registered,
                        handle,
                        ..
                    } = event
                        && *registered == *name
                        && handle.is_alive()
                    {
                        return Some(handle);
                    }
                }
                None // the registry is gone
            })
            .await
            .ok()
            .flatten(),
        };
        let micros = started.elapsed().as_micros() as f64;
        let result = if found.is_some() {
            "found"
        } else {
            "timed_out"
        };
        self.emit("wait", name, &[("duration_us", micros)], "result", result);
        found.ok_or_else(|| ServiceError::Timeout {
            name: Arc::from(name),
            after: timeout,
        })
    }

    /// Every service: each name registered in the namespace (alive), and
    /// each service this registry registered whose process has since
    /// stopped (not alive), sorted by name.
    pub fn service_info(&self) -> Vec<ServiceInfo> {
        let now = Instant::now();
        let mut infos: Vec<ServiceInfo> = self
            .registry
            .list(&self.namespace)
            .into_iter()
            .map(|(name, handle, metadata)| {
                let uptime = self
                    .services
                    .get(&*name)
                    .filter(|record| record.handle == handle)
                    .map(|record| now.duration_since(record.since));
                ServiceInfo {
                    alive: true,
                    uptime,
                    name,
                    handle,
                    metadata,
                }
            })
            .collect();
        for record in self.services.iter() {
            if !infos.iter().any(|info| info.name == *record.key()) {
                infos.push(ServiceInfo {
                    name: record.key().clone(),
                    handle: record.handle.clone(),
                    alive: false,
                    uptime: None,
                    metadata: Metadata::Null,
                });
            }
        }
        infos.sort_by(|a, b| a.name.cmp(&b.name));
        infos
    }

    /// Calls the service `name` with `call` (given its process), at most
    /// `timeout`; when the service is unavailable (not registered, `call`
    /// failed, or took too long), answers from `fallback` instead, and
    /// the [`Answer`] says so. Every live answer is handed to
    /// [`FallbackSource::remember`].
    ///
    /// Fails with the service's error when the fallback has nothing either.
    pub async fn call<T, F, Fut>(
        &self,
        name: &str,
        timeout: Duration,
        call: F,
        fallback: &dyn FallbackSource<T>,
    ) -> Result<Answer<T>, ServiceError>
    where
        F: FnOnce(ProcessHandle) -> Fut,
        Fut: Future<Output = Result<T, String>>,
    {
        let reason = match self.lookup(name) {
            Err(err) => err,
            Ok(handle) => match tokio::time::timeout(timeout, call(handle)).await {
                Ok(Ok(value)) => {
                    fallback.remember(name, &value);
                    return Ok(Answer::Live(value));
                }
                Ok(Err(reason)) => ServiceError::CallFailed {
                    name: Arc::from(name),
                    reason: reason.into(),
                },
                Err(_elapsed) => ServiceError::Timeout {
                    name: Arc::from(name),
                    after: timeout,
                },
            },
        };
        match fallback.fallback(name) {
            Some(value) => {
                self.emit(
                    "fallback",
                    name,
                    &[("count", 1.0)],
                    "reason",
                    &reason.to_string(),
                );
                Ok(Answer::Fallback { value, reason })
            }
            None => Err(reason),
        }
    }
}

impl fmt::Debug for ServiceRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceRegistry")
            .field("namespace", &self.namespace)
            .field("services", &self.services.len())
            .finish_non_exhaustive()
    }
}
