//! [`FoundationApp`]: the seed's Foundation tree (one_for_one), built from
//! the services that exist, in the seed's order.

use process_registry::ServiceRegistry;
use supervision_core::{ApplicationSpec, ServiceDef, Strategy, SupervisorFlags};

use crate::{
    Wiring,
    seed::{PROCESS_REGISTRY, SERVICE_REGISTRY, TELEMETRY_SERVICE},
};

/// The Foundation application: `process_registry`, `service_registry`
/// (depends on `process_registry`), `telemetry_service`, under one
/// one_for_one supervisor named `foundation`.
///
/// Each service's process registers itself under its name in the wiring's
/// namespace, so the registry shows the running tree and frees each name
/// when its process stops. [`FOUNDATION_SEED`](crate::FOUNDATION_SEED)
/// lists the seed's other services (config server, event store, ...):
/// they join this tree, in the seed's order, when foundation-services
/// lands; until then they are absent.
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
        ApplicationSpec::new(Self::NAME)
            .with_flags(SupervisorFlags::new(Strategy::OneForOne))
            .with_telemetry(wiring.telemetry.clone())
            .service(registry)
            .service(service_registry)
            .service(telemetry)
    }
}
