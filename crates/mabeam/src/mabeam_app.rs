//! [`MabeamApp`]: the seed's MABEAM tree (one_for_one), built from the
//! services that exist, in the seed's order.

use supervision_core::{ApplicationSpec, ServiceDef, Strategy, SupervisorFlags};

use crate::{Wiring, seed::PERFORMANCE_MONITOR};

/// The MABEAM application: today `performance_monitor` (fed by agent
/// telemetry), under one one_for_one supervisor named `mabeam`.
///
/// [`MABEAM_SEED`](crate::MABEAM_SEED) lists the seed's other services:
/// `agent_registry` and `agent_supervisor` (agent-supervisor, with the
/// registry injected as `AgentDirectory`), `core` and the
/// `coordination_supervisor` subtree (coordination, economics). They take
/// their seed places ahead of the monitor when their crates land; until
/// then they are absent.
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
        ApplicationSpec::new(Self::NAME)
            .with_flags(SupervisorFlags::new(Strategy::OneForOne))
            .with_telemetry(wiring.telemetry.clone())
            .service(monitor)
    }
}
