//! [`ServiceRegistry`]: named services over any [`Registry`]: lookups with
//! a stable error, health checks, waiting for a service to appear, service
//! info, and fallbacks when a service is unavailable.

use std::{
    fmt,
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use mabeam_supervision_core::{
    Health, HealthCheck, MetaValue, Metadata, Namespace, ProcessHandle, RecvError, Registry,
    RegistryEvent, Telemetry, Topic, WeakProcessHandle, events,
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
    /// Its process: the live holder, or the one this service registry
    /// registered, now stopping (held weakly: listing services keeps none
    /// alive).
    pub handle: WeakProcessHandle,
    /// Whether that process is live.
    pub alive: bool,
    /// How long it has been registered under this name; `None` when it is
    /// not alive, or was registered past this service registry (directly in
    /// the underlying registry).
    pub uptime: Option<Duration>,
    /// Its registration metadata (`null` when not alive).
    pub metadata: Metadata,
}

/// What this service registry remembers of a service it registered, while
/// its process has not exited. The process is held weakly.
#[derive(Debug, Clone)]
struct ServiceRecord {
    handle: WeakProcessHandle,
    health_check: Option<HealthCheck>,
    since: Instant,
    /// Which registration made it, so that undoing one never removes
    /// another's record.
    ticket: u64,
}

impl ServiceRecord {
    /// Whether its process has exited (a record of a stopping process is
    /// kept: it still answers `Dead`).
    fn exited(&self) -> bool {
        self.handle
            .upgrade()
            .is_none_or(|handle| futures::FutureExt::now_or_never(handle.exited()).is_some())
    }
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
/// It keeps no process alive: its records hold their processes weakly, and
/// the record of a service whose process has exited is dropped (at the
/// next registration or listing), so a service name that is gone for good
/// is [`NotFound`](ServiceError::NotFound), as in the registry.
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
/// use mabeam_process_registry::{ProcessRegistry, ServiceOptions, ServiceRegistry};
/// use mabeam_supervision_core::{Health, Namespace, ProcessHandle, Telemetry};
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
    tickets: Arc<AtomicU64>,
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
            tickets: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Drops the records of services whose process has exited.
    fn forget_exited(&self) {
        self.services.retain(|_, record| !record.exited());
    }

    /// The namespace of these services.
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    fn emit(
        &self,
        event: &[&str],
        service: &str,
        measurements: &[(&str, f64)],
        key: &str,
        value: &str,
    ) {
        if self.telemetry.is_enabled() {
            self.telemetry.emit(
                event,
                measurements,
                &[
                    ("service", MetaValue::Str(service)),
                    (key, MetaValue::Str(value)),
                ],
            );
        }
    }

    /// Registers `handle` as the service `name`, with `options`. Fails as
    /// [`Registry::register`] does, wrapped in [`ServiceError::Registry`];
    /// a failed registration leaves every record as it was (in particular
    /// the record of a concurrent caller that registered the name first).
    pub fn register_service(
        &self,
        name: &str,
        handle: ProcessHandle,
        options: ServiceOptions,
    ) -> Result<(), ServiceError> {
        self.forget_exited();
        // Recorded first, so that a waiter woken by the registration finds
        // the health check; undone if the registry refuses.
        let ticket = self.tickets.fetch_add(1, Ordering::Relaxed);
        let previous = self.services.insert(
            Arc::from(name),
            ServiceRecord {
                handle: handle.downgrade(),
                health_check: options.health_check,
                since: Instant::now(),
                ticket,
            },
        );
        let result = self
            .registry
            .register(&self.namespace, name, handle, options.metadata);
        if let Err(err) = result {
            // Undone only if the record is still this call's: another
            // caller may have recorded (and registered) since.
            let _ = self
                .services
                .remove_if(name, |_, record| record.ticket == ticket);
            if let Some(previous) = previous {
                self.services.entry(Arc::from(name)).or_insert(previous);
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
        self.emit(
            events::SERVICE_LOOKUP,
            name,
            &[("count", 1.0)],
            "result",
            result,
        );
        found.ok_or_else(|| ServiceError::NotFound(Arc::from(name)))
    }

    /// Checks the health of the service `name` within `timeout`:
    ///
    /// - [`Health::NotRunning`] if its process is not live but has not
    ///   exited yet (a service this registry registered, now stopping);
    /// - else the answer of its [`HealthCheck`], run on the process
    ///   ([`Health::Healthy`] when it has none), or [`Health::TimedOut`] if
    ///   that took longer than `timeout` or than the check's own timeout,
    ///   whichever is shorter.
    ///
    /// [`ServiceError::NotFound`] if the name is neither registered nor
    /// known to this service registry (a service whose process has exited
    /// is no longer known).
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
            (None, Some(record)) if record.exited() => {
                let _ = self
                    .services
                    .remove_if(name, |_, current| current.ticket == record.ticket);
                return Err(ServiceError::NotFound(Arc::from(name)));
            }
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
            events::SERVICE_HEALTH_CHECK,
            name,
            &[("duration_us", micros)],
            "status",
            label,
        );
        Ok(status)
    }

    /// Waits until a live process is registered as `name`, at most
    /// `timeout`: returns at once if one is, else wakes on the
    /// registration event itself (no polling). It subscribes to that one
    /// name ([`Topic::Name`]), so the other names' changes never reach it.
    /// [`ServiceError::Timeout`] when none came in time.
    pub async fn wait_for_service(
        &self,
        name: &str,
        timeout: Duration,
    ) -> Result<ProcessHandle, ServiceError> {
        let started = Instant::now();
        let found = tokio::time::timeout(timeout, self.holder_of(name))
            .await
            .ok()
            .flatten();
        let micros = started.elapsed().as_micros() as f64;
        let result = if found.is_some() {
            "found"
        } else {
            "timed_out"
        };
        self.emit(
            events::SERVICE_WAIT,
            name,
            &[("duration_us", micros)],
            "result",
            result,
        );
        found.ok_or_else(|| ServiceError::Timeout {
            name: Arc::from(name),
            after: timeout,
        })
    }

    /// Waits for a live holder of `name`; `None` if the registry is gone.
    async fn holder_of(&self, name: &str) -> Option<ProcessHandle> {
        loop {
            // The name's current holder and its later changes, atomically;
            // no other name's event reaches this waiter.
            let subscription = self
                .registry
                .subscribe_to(&self.namespace, Topic::Name(Arc::from(name)));
            if let Some((_, handle, _)) = subscription.snapshot.names.into_iter().next() {
                return Some(handle);
            }
            let mut events = subscription.events;
            loop {
                match events.recv().await {
                    Ok(RegistryEvent::Registered { handle, .. }) => {
                        if let Some(handle) = handle.upgrade().filter(ProcessHandle::is_alive) {
                            return Some(handle);
                        }
                    }
                    Ok(_) => {}
                    // Missed events: subscribe again, from a snapshot.
                    Err(RecvError::Lagged) => break,
                    Err(_closed) => return None,
                }
            }
        }
    }

    /// Every service: each name registered in the namespace (alive), and
    /// each service this registry registered whose process is stopping but
    /// has not exited yet (not alive), sorted by name. Services whose
    /// process has exited are forgotten.
    pub fn service_info(&self) -> Vec<ServiceInfo> {
        self.forget_exited();
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
                    handle: handle.downgrade(),
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

    /// How many services this service registry has records of (those it
    /// registered whose process has not exited, as far as it last looked).
    /// For diagnostics and tests.
    pub fn recorded_services(&self) -> usize {
        self.services.len()
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
                    events::SERVICE_FALLBACK,
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
