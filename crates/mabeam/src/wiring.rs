//! [`Wiring`]: what the trees' services are built from (one namespace, one
//! registry, one telemetry handle, one clock, the contracts, every
//! service's handle), and how a service's process registers itself under
//! its name.

#[cfg(feature = "foundation")]
use std::path::PathBuf;
use std::{sync::Arc, time::Duration};

#[cfg(feature = "coordination")]
use mabeam_coordination::{Coordinator, VariableSpace};
#[cfg(feature = "economics")]
use mabeam_economics::{Auctioneer, LoadBalancer, Marketplace};
#[cfg(feature = "foundation")]
use mabeam_foundation_services::{
    ConfigServer, ConfigServerService, ConnectionManager, EventStore, EventStoreService,
    HealthMonitor, RateLimiter, ServiceMonitor, TaskSupervisor,
};
use mabeam_process_registry::{ProcessRegistry, ServiceRegistry};
#[cfg(any(feature = "foundation", feature = "agents"))]
use mabeam_supervision_core::Health;
use mabeam_supervision_core::{
    ChildSpec, Clock, HealthCheck, Namespace, ProcessHandle, Registry, StartError, Telemetry,
};
#[cfg(feature = "foundation")]
use mabeam_supervision_core::{
    EventReader, EventSink, Service, ServiceDef, ServiceStart, Supervisor,
};
use mabeam_telemetry::{PerformanceMonitor, TelemetryService};
use serde_json::json;

#[cfg(feature = "agents")]
use crate::Agents;
use crate::holder::{Get, Holder};

/// The directory the services reach agents through (see
/// `SystemBuilder::agent_directory`).
#[cfg(feature = "agents")]
#[derive(Clone)]
pub struct Directory(pub Arc<dyn mabeam_supervision_core::AgentDirectory>);

#[cfg(feature = "agents")]
impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory").finish_non_exhaustive()
    }
}

/// How long the built-in services' health checks may take.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// The event store's and the config server's services, made once (each
/// made its handle).
#[cfg(feature = "foundation")]
#[derive(Debug, Clone)]
pub(crate) struct Stores {
    pub(crate) events: EventStoreService,
    pub(crate) config: Option<ConfigServerService>,
}

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
    /// The performance monitor (also the load balancer's `AgentLoad`).
    pub performance: PerformanceMonitor,
    #[cfg(feature = "foundation")]
    /// The data directory (the event store's and the config server's
    /// files); empty when none was given.
    pub data_dir: PathBuf,
    #[cfg(feature = "foundation")]
    /// The event store (injected as `EventSink` and `EventReader`).
    pub event_store: EventStore,
    #[cfg(feature = "foundation")]
    /// The config server (persisted in the data directory); `None`
    /// without a data directory (it is then not in the tree).
    pub config: Option<ConfigServer>,
    #[cfg(feature = "foundation")]
    /// The connection manager (the node's cluster membership); `None`
    /// without a cluster (it is then not in the tree).
    pub connections: Option<ConnectionManager>,
    #[cfg(feature = "foundation")]
    /// The rate limiter.
    pub rate_limiter: RateLimiter,
    #[cfg(feature = "foundation")]
    /// The task supervisor.
    pub tasks: TaskSupervisor,
    #[cfg(feature = "foundation")]
    /// The health monitor (of both trees).
    pub health_monitor: HealthMonitor,
    #[cfg(feature = "foundation")]
    /// The service monitor (of both trees).
    pub service_monitor: ServiceMonitor,
    #[cfg(feature = "agents")]
    /// The agent layer (injected as `AgentDirectory`).
    pub agents: Agents,
    #[cfg(feature = "agents")]
    /// The directory the services reach agents through (the agent layer,
    /// or a node's cluster-wide one over it).
    pub directory: Directory,
    #[cfg(feature = "agents")]
    /// The store durable agents are kept in (the agent layer's).
    pub agent_store: Arc<dyn mabeam_supervision_core::AgentStore>,
    #[cfg(feature = "coordination")]
    /// Coordination's coordinator (votes among agents).
    pub coordinator: Arc<Coordinator>,
    #[cfg(feature = "coordination")]
    /// MABEAM Core: the universal variables.
    pub variables: Arc<VariableSpace>,
    #[cfg(feature = "economics")]
    /// Economics' auctioneer.
    pub auctioneer: Arc<Auctioneer>,
    #[cfg(feature = "economics")]
    /// Economics' marketplace.
    pub marketplace: Arc<Marketplace>,
    #[cfg(feature = "economics")]
    /// The load balancer.
    pub load_balancer: Arc<LoadBalancer>,
    #[cfg(feature = "foundation")]
    /// The services of the two stores (their handles are above).
    pub(crate) stores: Stores,
    #[cfg(feature = "agents")]
    /// The runtime agents run on, apart from the system services' (so a
    /// flood of busy agents cannot starve the supervisors, the registry or
    /// the node's HTTP API); `None`: the current runtime.
    pub agent_runtime: Option<tokio::runtime::Handle>,
}

impl Wiring {
    /// The registry as the contract other crates take.
    pub fn registry_contract(&self) -> Arc<dyn Registry> {
        Arc::new(self.registry.clone())
    }

    /// The event store as the record contract other crates take.
    #[cfg(feature = "foundation")]
    pub fn event_sink(&self) -> Arc<dyn EventSink> {
        Arc::new(self.event_store.clone())
    }

    /// The event store as the read contract.
    #[cfg(feature = "foundation")]
    pub fn event_reader(&self) -> Arc<dyn EventReader> {
        Arc::new(self.event_store.clone())
    }

    /// `service` (one of a service crate's own) as a service of `tree`
    /// whose process registers itself under the service's name; its
    /// health check is its own, then the registration's.
    #[cfg(feature = "foundation")]
    pub(crate) fn registered_service(
        &self,
        service: &dyn Service,
        tree: &'static str,
    ) -> ServiceDef {
        let name = service.name().to_owned();
        let spec = match service.start_spec() {
            ServiceStart::Child(spec) => spec,
            ServiceStart::Tree { flags, children } => {
                Supervisor::child_spec(name.clone(), flags, children)
            }
        };
        let check = match service.health_check() {
            Some(own) => self.both(own, &name),
            None => self.registered_check(&name),
        };
        ServiceDef::new(name.clone(), self.registered(spec, &name, tree))
            .depends_on(service.dependencies().into_iter().map(str::to_owned))
            .with_health_check(check)
    }

    /// `own`, then the check that the process is the one registered under
    /// `name`.
    #[cfg(any(feature = "foundation", feature = "agents"))]
    pub(crate) fn both(&self, own: HealthCheck, name: &str) -> HealthCheck {
        let registered = self.registered_check(name);
        let timeout = own.timeout().max(HEALTH_TIMEOUT);
        HealthCheck::new(timeout, move |handle: ProcessHandle| {
            let (own, registered) = (own.clone(), registered.clone());
            async move {
                match own.run(&handle).await {
                    Health::Healthy => {}
                    other => return Err(other.to_string()),
                }
                match registered.run(&handle).await {
                    Health::Healthy => Ok(()),
                    other => Err(other.to_string()),
                }
            }
        })
    }

    /// `spec` whose every start (first start and restarts) spawns the
    /// process on the agent runtime, whoever runs the start; `spec` itself
    /// when there is no agent runtime. This is how agents are kept off the
    /// system services' runtime.
    #[cfg(feature = "agents")]
    pub fn on_agent_runtime(&self, spec: ChildSpec) -> ChildSpec {
        let Some(runtime) = self.agent_runtime.clone() else {
            return spec;
        };
        let inner = spec.clone();
        let mut wrapped = ChildSpec::new(spec.id.clone(), move || {
            let (runtime, inner) = (runtime.clone(), inner.clone());
            async move {
                runtime
                    .spawn(async move { inner.start().await })
                    .await
                    .map_err(|e| StartError::Failed(format!("agent runtime: {e}").into()))?
            }
        });
        wrapped.restart = spec.restart;
        wrapped.shutdown = spec.shutdown;
        wrapped.kind = spec.kind;
        wrapped.start_timeout = spec.start_timeout;
        wrapped.backoff = spec.backoff;
        wrapped
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
