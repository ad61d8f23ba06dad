//! [`MabeamApp`]: the seed's MABEAM tree (one_for_one), built from every
//! MABEAM service, in the seed's order.

use supervision_core::{ApplicationSpec, ServiceDef, Strategy, Supervisor, SupervisorFlags};

use crate::{
    HEALTH_TIMEOUT, Wiring,
    seed::{
        AGENT_REGISTRY, AGENT_SUPERVISOR, COORDINATION, COORDINATION_SUPERVISOR, CORE, ECONOMICS,
        LOAD_BALANCER, PERFORMANCE_MONITOR,
    },
};

/// The MABEAM application, under one one_for_one supervisor named
/// `mabeam`:
///
/// | service | what runs | injected |
/// |---|---|---|
/// | `core` | holds coordination's `VariableSpace` (universal variables) | `AgentDirectory`, `EventSink` |
/// | `agent_supervisor` | the `AgentSupervisor` (a dynamic supervisor), agents on the agent runtime | `Registry`, `EventSink`, `Telemetry` |
/// | `agent_registry` | owns the `AgentRegistry`'s lifecycle (depends on `agent_supervisor`) | |
/// | `coordination_supervisor` | a one_for_one subtree: `coordination` (the `Coordinator`), `economics` (`Auctioneer`, `Marketplace`), `load_balancer` (the `LoadBalancer`) | `AgentDirectory` (the agent registry), `AgentLoad` (the performance monitor), `EventSink`, `Registry` |
/// | `performance_monitor` | the `PerformanceMonitor`, fed by agent telemetry | `Telemetry` |
///
/// The agent registry starts and stops agents through the agent
/// supervisor, so the supervisor starts first and stops last (see
/// [`MABEAM_SEED`](crate::MABEAM_SEED)).
#[derive(Debug, Clone, Copy)]
pub struct MabeamApp;

impl MabeamApp {
    /// The application's name.
    pub const NAME: &'static str = "mabeam";

    /// The tree's definition, wired from `wiring`.
    pub fn spec(wiring: &Wiring) -> ApplicationSpec {
        let tree = Self::NAME;
        let core = ServiceDef::child(wiring.registered(
            wiring.holder(CORE, wiring.variables.clone()),
            CORE,
            tree,
        ))
        .with_health_check(wiring.registered_check(CORE));
        let agent_supervisor = ServiceDef::child(wiring.registered(
            wiring.agents.supervisor_spec(AGENT_SUPERVISOR),
            AGENT_SUPERVISOR,
            tree,
        ))
        .with_health_check(
            wiring.both(wiring.agents.health_check(HEALTH_TIMEOUT), AGENT_SUPERVISOR),
        );
        let agent_registry = ServiceDef::child(wiring.registered(
            wiring.agents.registry_spec(AGENT_REGISTRY),
            AGENT_REGISTRY,
            tree,
        ))
        .depends_on([AGENT_SUPERVISOR])
        .with_health_check(wiring.both(wiring.agents.health_check(HEALTH_TIMEOUT), AGENT_REGISTRY));
        let coordination_supervisor = ServiceDef::child(
            wiring.registered(
                Supervisor::child_spec(
                    COORDINATION_SUPERVISOR,
                    SupervisorFlags::new(Strategy::OneForOne)
                        .with_name(COORDINATION_SUPERVISOR)
                        .with_telemetry(wiring.telemetry.clone())
                        .with_clock(wiring.clock.clone()),
                    [
                        wiring.registered(
                            wiring.holder(COORDINATION, wiring.coordinator.clone()),
                            COORDINATION,
                            COORDINATION_SUPERVISOR,
                        ),
                        wiring.registered(
                            wiring.holder(
                                ECONOMICS,
                                (wiring.auctioneer.clone(), wiring.marketplace.clone()),
                            ),
                            ECONOMICS,
                            COORDINATION_SUPERVISOR,
                        ),
                        wiring.registered(
                            wiring.holder(LOAD_BALANCER, wiring.load_balancer.clone()),
                            LOAD_BALANCER,
                            COORDINATION_SUPERVISOR,
                        ),
                    ],
                ),
                COORDINATION_SUPERVISOR,
                tree,
            ),
        )
        .depends_on([AGENT_REGISTRY])
        .with_health_check(wiring.registered_check(COORDINATION_SUPERVISOR));
        let monitor = ServiceDef::child(wiring.registered(
            wiring.performance.child_spec(PERFORMANCE_MONITOR),
            PERFORMANCE_MONITOR,
            tree,
        ))
        .with_health_check(wiring.registered_check(PERFORMANCE_MONITOR));
        ApplicationSpec::new(Self::NAME)
            .with_flags(SupervisorFlags::new(Strategy::OneForOne))
            .with_telemetry(wiring.telemetry.clone())
            .with_clock(wiring.clock.clone())
            .service(core)
            .service(agent_registry)
            .service(agent_supervisor)
            .service(coordination_supervisor)
            .service(monitor)
    }
}
