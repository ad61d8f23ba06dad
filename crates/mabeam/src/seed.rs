//! The seed's two trees as lists: every service of
//! PROCESS_HIERARCHY.md in its order, the crate that builds it, and
//! whether this build wires it. A service not built yet is absent from
//! its tree (never a stand-in) and listed here as such.

use serde::Serialize;

/// One service of the seed's trees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SeedService {
    /// Its name in the tree (and in the registry).
    pub name: &'static str,
    /// The crate that provides it.
    pub provided_by: &'static str,
    /// Whether this build wires it into its tree.
    pub wired: bool,
}

const fn wired(name: &'static str, provided_by: &'static str) -> SeedService {
    SeedService {
        name,
        provided_by,
        wired: true,
    }
}

const fn absent(name: &'static str, provided_by: &'static str) -> SeedService {
    SeedService {
        name,
        provided_by,
        wired: false,
    }
}

/// `process_registry`: namespaced names of processes.
pub const PROCESS_REGISTRY: &str = "process_registry";
/// `service_registry`: service lookups, health, fallbacks (needs the process registry).
pub const SERVICE_REGISTRY: &str = "service_registry";
/// `telemetry_service`: metrics collection.
pub const TELEMETRY_SERVICE: &str = "telemetry_service";
/// `performance_monitor`: per-agent performance.
pub const PERFORMANCE_MONITOR: &str = "performance_monitor";

/// The Foundation tree of the seed, in its order. Wired today:
/// process_registry, service_registry, telemetry_service. The others come
/// with foundation-services; until then they are absent from the tree.
pub const FOUNDATION_SEED: &[SeedService] = &[
    wired(PROCESS_REGISTRY, "process-registry"),
    wired(SERVICE_REGISTRY, "process-registry"),
    wired(TELEMETRY_SERVICE, "telemetry"),
    absent("config_server", "foundation-services"),
    absent("event_store", "foundation-services"),
    absent("connection_manager", "foundation-services"),
    absent("rate_limiter", "foundation-services"),
    absent("task_supervisor", "foundation-services"),
    absent("health_monitor", "foundation-services"),
    absent("service_monitor", "foundation-services"),
];

/// The MABEAM tree of the seed, in its order. Wired today:
/// performance_monitor. The agent registry and supervisor come with
/// agent-supervisor, core and the coordination subtree (coordination,
/// economics, load balancer) with coordination and economics.
pub const MABEAM_SEED: &[SeedService] = &[
    absent("core", "coordination"),
    absent("agent_registry", "agent-supervisor"),
    absent("agent_supervisor", "agent-supervisor"),
    absent("coordination_supervisor", "coordination, economics"),
    wired(PERFORMANCE_MONITOR, "telemetry"),
];
