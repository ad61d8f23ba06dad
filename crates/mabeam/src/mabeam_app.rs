//! [`MabeamApp`]: the seed's MABEAM tree (one_for_one), built from every
//! MABEAM service, in the seed's order.

#[cfg(any(feature = "coordination", feature = "economics"))]
use mabeam_supervision_core::Supervisor;
use mabeam_supervision_core::{ApplicationSpec, ServiceDef, Strategy, SupervisorFlags};

#[cfg(feature = "agents")]
use crate::HEALTH_TIMEOUT;
use crate::Wiring;
#[cfg(any(feature = "coordination", feature = "economics"))]
use crate::seed::COORDINATION_SUPERVISOR;
use crate::seed::PERFORMANCE_MONITOR;
#[cfg(feature = "agents")]
use crate::seed::{AGENT_REGISTRY, AGENT_SUPERVISOR};
#[cfg(feature = "coordination")]
use crate::seed::{COORDINATION, CORE};
#[cfg(feature = "economics")]
use crate::seed::{ECONOMICS, LOAD_BALANCER};

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
/// Each service is there with its feature: `core` and `coordination` with
/// `coordination`, `economics` and `load_balancer` with `economics`, the
/// agent services with `agents`; `performance_monitor` always.
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
        let monitor = ServiceDef::child(wiring.registered(
            wiring.performance.child_spec(PERFORMANCE_MONITOR),
            PERFORMANCE_MONITOR,
            tree,
        ))
        .with_health_check(wiring.registered_check(PERFORMANCE_MONITOR));
        let spec = ApplicationSpec::new(Self::NAME)
            .with_flags(SupervisorFlags::new(Strategy::OneForOne))
            .with_telemetry(wiring.telemetry.clone())
            .with_clock(wiring.clock.clone());
        #[cfg(feature = "coordination")]
        let spec = spec.service(
            ServiceDef::child(wiring.registered(
                wiring.holder(CORE, wiring.variables.clone()),
                CORE,
                tree,
            ))
            .with_health_check(wiring.registered_check(CORE)),
        );
        #[cfg(feature = "agents")]
        let spec = Self::agent_services(wiring, spec);
        #[cfg(any(feature = "coordination", feature = "economics"))]
        let spec = spec.service(Self::coordination_supervisor(wiring));
        spec.service(monitor)
    }

    /// `agent_registry` and `agent_supervisor` (the `agents` feature).
    #[cfg(feature = "agents")]
    fn agent_services(wiring: &Wiring, spec: ApplicationSpec) -> ApplicationSpec {
        let tree = Self::NAME;
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
        spec.service(agent_registry).service(agent_supervisor)
    }

    /// The one_for_one subtree of `coordination`, `economics` and
    /// `load_balancer` (those whose features are on).
    #[cfg(any(feature = "coordination", feature = "economics"))]
    fn coordination_supervisor(wiring: &Wiring) -> ServiceDef {
        let mut children = Vec::new();
        #[cfg(feature = "coordination")]
        children.push(wiring.registered(
            wiring.holder(COORDINATION, wiring.coordinator.clone()),
            COORDINATION,
            COORDINATION_SUPERVISOR,
        ));
        #[cfg(feature = "economics")]
        {
            children.push(wiring.registered(
                wiring.holder(
                    ECONOMICS,
                    (wiring.auctioneer.clone(), wiring.marketplace.clone()),
                ),
                ECONOMICS,
                COORDINATION_SUPERVISOR,
            ));
            children.push(wiring.registered(
                wiring.holder(LOAD_BALANCER, wiring.load_balancer.clone()),
                LOAD_BALANCER,
                COORDINATION_SUPERVISOR,
            ));
        }
        ServiceDef::child(
            wiring.registered(
                Supervisor::child_spec(
                    COORDINATION_SUPERVISOR,
                    SupervisorFlags::new(Strategy::OneForOne)
                        .with_name(COORDINATION_SUPERVISOR)
                        .with_telemetry(wiring.telemetry.clone())
                        .with_clock(wiring.clock.clone()),
                    children,
                ),
                COORDINATION_SUPERVISOR,
                Self::NAME,
            ),
        )
        .depends_on([AGENT_REGISTRY])
        .with_health_check(wiring.registered_check(COORDINATION_SUPERVISOR))
    }
}
