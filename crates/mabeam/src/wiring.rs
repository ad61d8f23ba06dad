//! [`Wiring`]: what the trees' services are built from (one namespace, one
//! registry, one telemetry handle, one clock, the contracts), and how a
//! service's process registers itself under its name.

use std::{sync::Arc, time::Duration};

use process_registry::{ProcessRegistry, ServiceRegistry};
use serde_json::json;
use supervision_core::{
    ChildSpec, Clock, HealthCheck, Namespace, ProcessHandle, Registry, StartError, Telemetry,
};
use telemetry::{PerformanceMonitor, TelemetryService};

use crate::holder::{Get, Holder};

/// How long the built-in services' health checks may take.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// The shared values both trees are wired from; cheap to clone.
#[derive(Debug, Clone)]
pub struct Wiring {
    /// The namespace every service registers its process in.
    pub namespace: Namespace,
    /// The process registry (also injected as `Arc<dyn Registry>`).
    pub registry: ProcessRegistry,
    /// The service registry over it.
    pub services: ServiceRegistry,
    /// The one telemetry handle.
    pub telemetry: Telemetry,
    /// The one clock.
    pub clock: Clock,
    /// The telemetry service.
    pub telemetry_service: TelemetryService,
    /// The performance monitor.
    pub performance: PerformanceMonitor,
}

impl Wiring {
    /// The registry as the contract other crates take.
    pub fn registry_contract(&self) -> Arc<dyn Registry> {
        Arc::new(self.registry.clone())
    }

    /// `spec` whose every start also registers the started process under
    /// `name` in the namespace, with metadata `{"tree": tree}`; the
    /// registry frees the name when the process stops. A start whose name
    /// cannot be registered stops the process and fails.
    pub fn registered(&self, spec: ChildSpec, name: &str, tree: &'static str) -> ChildSpec {
        let registry = self.registry.clone();
        let namespace = self.namespace;
        let name: Arc<str> = name.into();
        let inner = spec.clone();
        let mut wrapped = ChildSpec::new(spec.id.clone(), move || {
            let (registry, name, inner) = (registry.clone(), name.clone(), inner.clone());
            async move {
                let handle = inner.start().await?;
                if let Err(error) =
                    registry.register(&namespace, &name, handle.clone(), json!({ "tree": tree }))
                {
                    handle.stop().await;
                    return Err(StartError::Failed(
                        format!("could not register {name}: {error}").into(),
                    ));
                }
                Ok(handle)
            }
        });
        wrapped.restart = spec.restart;
        wrapped.shutdown = spec.shutdown;
        wrapped.kind = spec.kind;
        wrapped.start_timeout = spec.start_timeout;
        wrapped.backoff = spec.backoff;
        wrapped
    }

    /// The spec of a [`Holder`] process keeping `value` alive.
    pub(crate) fn holder<T: Send + Sync + 'static>(&self, id: &str, value: T) -> ChildSpec {
        let value: Arc<dyn std::any::Any + Send + Sync> = Arc::new(value);
        ChildSpec::actor::<Holder>(id.to_owned(), move || value.clone())
    }

    /// A check that the service's process answers and is the one
    /// registered under `name`.
    pub(crate) fn registered_check(&self, name: &str) -> HealthCheck {
        let registry = self.registry.clone();
        let namespace = self.namespace;
        let name: Arc<str> = name.into();
        HealthCheck::new(HEALTH_TIMEOUT, move |handle: ProcessHandle| {
            let (registry, name) = (registry.clone(), name.clone());
            async move {
                if let Some(holder) = handle.downcast::<Holder>() {
                    holder.ask(Get).await.map_err(|e| e.to_string())?;
                }
                match registry.lookup(&namespace, &name) {
                    Some(found) if found == handle => Ok(()),
                    Some(_) => Err(format!("{name} is registered to another process")),
                    None => Err(format!("{name} is not registered")),
                }
            }
        })
    }
}
