//! [`FoundationApp`]: the seed's Foundation tree (one_for_one), built from
//! every Foundation service that exists, in the seed's order.

use mabeam_process_registry::ServiceRegistry;
use mabeam_supervision_core::{ApplicationSpec, ServiceDef, Strategy, SupervisorFlags};

use crate::{
    Wiring,
    seed::{PROCESS_REGISTRY, SERVICE_REGISTRY, TELEMETRY_SERVICE},
};

/// The Foundation application, under one one_for_one supervisor named
/// `foundation`, in the seed's order:
///
/// | service | what runs | injected |
/// |---|---|---|
/// | `process_registry` | holds the `ProcessRegistry` | |
/// | `service_registry` | holds the `ServiceRegistry` (depends on `process_registry`) | `Registry` |
/// | `telemetry_service` | the `TelemetryService` | `Telemetry` |
/// | `config_server` | the `ConfigServer` (`config.json` in the data directory) | `EventSink` |
/// | `event_store` | the `EventStore` (`events.db` in the data directory) | |
/// | `connection_manager` | the `ConnectionManager` (listens, dials the seeds) | `Telemetry`, `Clock` |
/// | `rate_limiter` | the `RateLimiter`'s sweeper | `Telemetry`, `Clock` |
/// | `task_supervisor` | the `TaskSupervisor` | `Telemetry`, `Clock` |
/// | `health_monitor` | the `HealthMonitor`'s rounds, over both trees | `Telemetry`, `Clock` |
/// | `service_monitor` | the `ServiceMonitor`'s pings, over both trees | `Telemetry`, `Clock` |
///
/// The services of foundation-services (from `config_server` on) are
/// there with the `foundation` feature. The config server is left out when the system has no data directory
/// (a subset without the services that need one), the connection manager
/// when it has no cluster (`SystemBuilder::cluster`). Each service's
/// process registers itself under its name in the wiring's namespace, so
/// the registry shows the running tree and frees each name when its
/// process stops.
#[derive(Debug, Clone, Copy)]
pub struct FoundationApp;

impl FoundationApp {
    /// The application's name.
    pub const NAME: &'static str = "foundation";

    /// The tree's definition, wired from `wiring`.
    pub fn spec(wiring: &Wiring) -> ApplicationSpec {
        let tree = Self::NAME;
        let registry = ServiceDef::child(wiring.registered(
            wiring.holder(PROCESS_REGISTRY, wiring.registry.clone()),
            PROCESS_REGISTRY,
            tree,
        ))
        .with_health_check(wiring.registered_check(PROCESS_REGISTRY));
        let services: ServiceRegistry = wiring.services.clone();
        let service_registry = ServiceDef::child(wiring.registered(
            wiring.holder(SERVICE_REGISTRY, services),
            SERVICE_REGISTRY,
            tree,
        ))
        .depends_on([PROCESS_REGISTRY])
        .with_health_check(wiring.registered_check(SERVICE_REGISTRY));
        let telemetry = ServiceDef::child(wiring.registered(
            wiring.telemetry_service.child_spec(TELEMETRY_SERVICE),
            TELEMETRY_SERVICE,
            tree,
        ))
        .with_health_check(wiring.registered_check(TELEMETRY_SERVICE));
        let spec = ApplicationSpec::new(Self::NAME)
            .with_flags(SupervisorFlags::new(Strategy::OneForOne))
            .with_telemetry(wiring.telemetry.clone())
            .with_clock(wiring.clock.clone())
            .service(registry)
            .service(service_registry)
            .service(telemetry);
        #[cfg(feature = "foundation")]
        let spec = Self::foundation_services(wiring, spec);
        spec
    }

    /// The services of foundation-services (the `foundation` feature).
    #[cfg(feature = "foundation")]
    fn foundation_services(wiring: &Wiring, mut spec: ApplicationSpec) -> ApplicationSpec {
        let tree = Self::NAME;
        // Made only with a data directory (it reads its file when made).
        if let Some(config) = &wiring.stores.config {
            spec = spec.service(wiring.registered_service(config, tree));
        }
        spec = spec.service(wiring.registered_service(&wiring.stores.events, tree));
        // Made only with a cluster (node name and cookie).
        if let Some(connections) = &wiring.connections {
            spec = spec.service(wiring.registered_service(&connections.service(), tree));
        }
        spec.service(wiring.registered_service(&wiring.rate_limiter.service(), tree))
            .service(wiring.registered_service(&wiring.tasks.service(), tree))
            .service(wiring.registered_service(&wiring.health_monitor.service(), tree))
            .service(wiring.registered_service(&wiring.service_monitor.service(), tree))
    }
}
