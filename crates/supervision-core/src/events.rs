//! The telemetry events of supervisors and applications, in one place.
//!
//! Every supervisor emits through the [`Telemetry`](crate::Telemetry) handle
//! it was given (disabled by default). Names are lists of words, matched by
//! prefix when a handler attaches (`["supervisor"]` gets them all).
//!
//! | name                                 | measurements   | metadata                                  |
//! |--------------------------------------|----------------|-------------------------------------------|
//! | `supervisor.child.started`           | `duration_us`  | `supervisor`, `child`, `actor_id`         |
//! | `supervisor.child.start_failed`      | `duration_us`  | `supervisor`, `child`, `error`            |
//! | `supervisor.child.exited`            |                | `supervisor`, `child`, `actor_id`, `reason`, `restart` (bool: will it be restarted) |
//! | `supervisor.child.restarted`         | `restarts`     | `supervisor`, `child`, `actor_id` (the new one), `old_actor_id` (the one that exited; absent if it never ran) |
//! | `supervisor.child.terminated`        |                | `supervisor`, `child`, `actor_id`, `reason` |
//! | `supervisor.backoff.scheduled`       | `delay_ms`, `attempt` | `supervisor`, `child`              |
//! | `supervisor.gave_up`                 | `restarts`     | `supervisor`, `reason`                    |
//! | `application.started`                | `duration_us`  | `application`, `services` (count as u64)  |
//! | `application.stopped`                |                | `application`, `reason`                   |
//!
//! `supervisor` is the supervisor's name from its flags; `child` the child
//! spec's id; `actor_id` the child's kameo actor id as a number;
//! `reason` an [`ExitReason`](crate::ExitReason) in its display form.
//!
//! Below the supervisors' events: the registry's (`process_registry.*`),
//! the service registry's (`service_registry.*`) and the agents'
//! (`agent.*`) names, and the metric declarations ([`METRICS`],
//! [`GAUGES`]): which event becomes which metric, of what kind, with which
//! labels and unit. The exporter reads them; an event added here with a
//! declaration is exported without touching the exporter.

/// `supervisor.child.started`: a child started (first start or restart).
pub const CHILD_STARTED: &[&str] = &["supervisor", "child", "started"];
/// `supervisor.child.start_failed`: a start returned an error, panicked or timed out.
pub const CHILD_START_FAILED: &[&str] = &["supervisor", "child", "start_failed"];
/// `supervisor.child.exited`: a child exited by itself (not terminated by its supervisor).
pub const CHILD_EXITED: &[&str] = &["supervisor", "child", "exited"];
/// `supervisor.child.restarted`: a child was restarted after an exit.
pub const CHILD_RESTARTED: &[&str] = &["supervisor", "child", "restarted"];
/// `supervisor.child.terminated`: the supervisor stopped a child (admin call or shutdown).
pub const CHILD_TERMINATED: &[&str] = &["supervisor", "child", "terminated"];
/// `supervisor.backoff.scheduled`: a restart waits out a backoff delay.
pub const BACKOFF_SCHEDULED: &[&str] = &["supervisor", "backoff", "scheduled"];
/// `supervisor.gave_up`: the restart intensity was exceeded; the supervisor exits.
pub const GAVE_UP: &[&str] = &["supervisor", "gave_up"];
/// `application.started`: every service of an application started.
pub const APPLICATION_STARTED: &[&str] = &["application", "started"];
/// `application.stopped`: an application stopped (on request, or its supervisor gave up).
pub const APPLICATION_STOPPED: &[&str] = &["application", "stopped"];

// Registry events (process-registry's `ProcessRegistry`): measurement
// `count` (1), metadata `namespace` (`production` or `test:<id>`) and
// `result` (`ok`, `already_registered`, `not_registered`, ...).

/// `process_registry.register`: a name was registered (or refused).
pub const REGISTRY_REGISTER: &[&str] = &["process_registry", "register"];
/// `process_registry.unregister`: a name was freed by a call (or refused).
pub const REGISTRY_UNREGISTER: &[&str] = &["process_registry", "unregister"];
/// `process_registry.update_metadata`: a name's metadata was replaced (or refused).
pub const REGISTRY_UPDATE_METADATA: &[&str] = &["process_registry", "update_metadata"];
/// `process_registry.join`: a process joined a group.
pub const REGISTRY_JOIN: &[&str] = &["process_registry", "join"];
/// `process_registry.leave`: a process left a group (or refused).
pub const REGISTRY_LEAVE: &[&str] = &["process_registry", "leave"];
/// `process_registry.process.down`: the names (`names`) and memberships
/// (`memberships`) of a stopped process were removed.
pub const REGISTRY_PROCESS_DOWN: &[&str] = &["process_registry", "process", "down"];
/// `process_registry.cleanup`: a namespace was cleaned up (`stopped`,
/// `killed`, `unregistered`, `duration_us`).
pub const REGISTRY_CLEANUP: &[&str] = &["process_registry", "cleanup"];

// Service-registry events (process-registry's `ServiceRegistry`): metadata
// `service` and one of `result`, `status`, `reason`.

/// `service_registry.lookup`: a service was looked up (`count`; `result`: `found`, `not_found`).
pub const SERVICE_LOOKUP: &[&str] = &["service_registry", "lookup"];
/// `service_registry.health_check`: a service's health was checked (`duration_us`; `status`).
pub const SERVICE_HEALTH_CHECK: &[&str] = &["service_registry", "health_check"];
/// `service_registry.wait`: a caller waited for a service (`duration_us`; `result`).
pub const SERVICE_WAIT: &[&str] = &["service_registry", "wait"];
/// `service_registry.fallback`: a lookup answered from a fallback (`count`; `reason`).
pub const SERVICE_FALLBACK: &[&str] = &["service_registry", "fallback"];

// Agent events, emitted by whoever runs agents (agent-supervisor) and read
// by telemetry's PerformanceMonitor. Metadata `agent` is the agent's id:
// per agent, so it is never a metric label by default.

/// `agent.message.handled`: an agent handled one message or envelope
/// (`duration_us`; `agent`, `result`: `ok` or `error`).
pub const AGENT_MESSAGE_HANDLED: &[&str] = &["agent", "message", "handled"];
/// `agent.memory`: a sample of an agent's memory (`bytes`; `agent`).
pub const AGENT_MEMORY: &[&str] = &["agent", "memory"];
/// `agent.status`: an agent changed status (`agent`, `status` in its
/// snake_case form, e.g. `running`, `crashed`).
pub const AGENT_STATUS: &[&str] = &["agent", "status"];
/// `agent.events.dropped`: agent status changes not recorded in the event
/// sink (`count`; `reason`: `full`, the bounded queue to the sink was
/// full, or `failed`, the sink refused the write).
pub const AGENT_EVENTS_DROPPED: &[&str] = &["agent", "events", "dropped"];
/// `agent.messages.dropped`: tells queued for an agent that no incarnation
/// will handle (it stopped, completed, crashed or failed for good)
/// (`count`; `agent`, `kind`, `reason`: its last exit).
pub const AGENT_MESSAGES_DROPPED: &[&str] = &["agent", "messages", "dropped"];

// Retention events: what a bounded store dropped, so every drop is
// counted (measurement `events` or `agents`, metadata `reason`).

/// `event_store.pruned`: the EventStore pruned events below its horizon
/// (`events` pruned, `first_available`; `reason`: `age`, `size` or
/// `request`).
pub const EVENT_STORE_PRUNED: &[&str] = &["event_store", "pruned"];
/// `performance.agent.forgotten`: the PerformanceMonitor dropped agents'
/// figures (`agents` dropped; `reason`: `idle`, `capacity`,
/// `deregistered` or `request`).
pub const PERFORMANCE_AGENT_FORGOTTEN: &[&str] = &["performance", "agent", "forgotten"];

/// What kind of metric an event becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MetricKind {
    /// A counter: increased by the measurement, or by 1 when the
    /// declaration names no measurement.
    Counter,
    /// A gauge set to the measurement.
    Gauge,
    /// A histogram (summary) of the measurement.
    Histogram,
}

/// The unit of a metric's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MetricUnit {
    /// A count of things.
    Count,
    /// Microseconds.
    Microseconds,
    /// Milliseconds.
    Milliseconds,
    /// Seconds.
    Seconds,
    /// Bytes.
    Bytes,
}

/// How a metadata value becomes a label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LabelForm {
    /// The value as it is (its display form).
    Value,
    /// The text before the first `:`: `panic: boom` becomes `panic`,
    /// `test:42` becomes `test`. Keeps free text out of label values.
    Kind,
    /// One value per process or agent (a child id, an agent id): dropped
    /// unless the exporter is told to keep per-process labels, since a
    /// million agents would make a million series.
    PerProcess,
}

/// A label of a declared metric: which metadata key, and in what form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MetricLabel {
    /// The metadata key, also the label's name.
    pub key: &'static str,
    /// How its value is formed.
    pub form: LabelForm,
}

impl MetricLabel {
    /// A label taken as it is.
    pub const fn value(key: &'static str) -> Self {
        MetricLabel {
            key,
            form: LabelForm::Value,
        }
    }

    /// A label cut to its kind (text before `:`).
    pub const fn kind(key: &'static str) -> Self {
        MetricLabel {
            key,
            form: LabelForm::Kind,
        }
    }

    /// A per-process label (dropped by default).
    pub const fn per_process(key: &'static str) -> Self {
        MetricLabel {
            key,
            form: LabelForm::PerProcess,
        }
    }
}

/// `coordination.retention.dropped`: coordination dropped its oldest kept
/// record past its retention (one event per record; `count` 1; metadata
/// `what`: `decisions`, `sessions` or `election_history`).
pub const COORDINATION_DROPPED: &[&str] = &["coordination", "retention", "dropped"];

/// How one event becomes one metric: the exporter (telemetry's
/// `MetricsExporter`) reads [`METRICS`] and records each matching event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricDecl {
    /// The event's name (one of the constants above).
    pub event: &'static [&'static str],
    /// The metric's name, e.g. `mabeam_supervisor_child_started_total`.
    pub metric: &'static str,
    /// Counter, gauge or histogram.
    pub kind: MetricKind,
    /// The measurement recorded; `None` for a counter counting events.
    pub measurement: Option<&'static str>,
    /// The labels, from the event's metadata.
    pub labels: &'static [MetricLabel],
    /// The unit of the values.
    pub unit: MetricUnit,
    /// One line of help text.
    pub help: &'static str,
}

const SUP: MetricLabel = MetricLabel::value("supervisor");
const CHILD: MetricLabel = MetricLabel::per_process("child");
const REASON: MetricLabel = MetricLabel::kind("reason");
const NAMESPACE: MetricLabel = MetricLabel::kind("namespace");
const RESULT: MetricLabel = MetricLabel::value("result");
const SERVICE: MetricLabel = MetricLabel::value("service");
const AGENT: MetricLabel = MetricLabel::per_process("agent");

const fn counter(
    event: &'static [&'static str],
    metric: &'static str,
    labels: &'static [MetricLabel],
    help: &'static str,
) -> MetricDecl {
    MetricDecl {
        event,
        metric,
        kind: MetricKind::Counter,
        measurement: None,
        labels,
        unit: MetricUnit::Count,
        help,
    }
}

const fn histogram(
    event: &'static [&'static str],
    metric: &'static str,
    measurement: &'static str,
    unit: MetricUnit,
    labels: &'static [MetricLabel],
    help: &'static str,
) -> MetricDecl {
    MetricDecl {
        event,
        metric,
        kind: MetricKind::Histogram,
        measurement: Some(measurement),
        labels,
        unit,
        help,
    }
}

/// Every event that becomes a metric, and how. Per-process labels
/// ([`LabelForm::PerProcess`]: `child`, `agent`) are dropped by default.
pub const METRICS: &[MetricDecl] = &[
    counter(
        CHILD_STARTED,
        "mabeam_supervisor_child_started_total",
        &[SUP, CHILD],
        "Children started (first starts and restarts).",
    ),
    histogram(
        CHILD_STARTED,
        "mabeam_supervisor_child_start_duration_us",
        "duration_us",
        MetricUnit::Microseconds,
        &[SUP, CHILD],
        "Time a child took to start.",
    ),
    counter(
        CHILD_START_FAILED,
        "mabeam_supervisor_child_start_failed_total",
        &[SUP, CHILD],
        "Child starts that failed.",
    ),
    counter(
        CHILD_EXITED,
        "mabeam_supervisor_child_exited_total",
        &[SUP, CHILD, REASON],
        "Children that exited by themselves, by reason.",
    ),
    counter(
        CHILD_RESTARTED,
        "mabeam_supervisor_child_restarted_total",
        &[SUP, CHILD],
        "Children restarted after an exit.",
    ),
    counter(
        CHILD_TERMINATED,
        "mabeam_supervisor_child_terminated_total",
        &[SUP, CHILD, REASON],
        "Children stopped by their supervisor.",
    ),
    counter(
        BACKOFF_SCHEDULED,
        "mabeam_supervisor_backoff_scheduled_total",
        &[SUP, CHILD],
        "Restarts delayed by a backoff.",
    ),
    counter(
        GAVE_UP,
        "mabeam_supervisor_gave_up_total",
        &[SUP, REASON],
        "Supervisors that exceeded their restart intensity.",
    ),
    counter(
        APPLICATION_STARTED,
        "mabeam_application_started_total",
        &[MetricLabel::value("application")],
        "Applications started.",
    ),
    counter(
        APPLICATION_STOPPED,
        "mabeam_application_stopped_total",
        &[MetricLabel::value("application"), REASON],
        "Applications stopped.",
    ),
    counter(
        REGISTRY_REGISTER,
        "mabeam_registry_register_total",
        &[NAMESPACE, RESULT],
        "Registrations of names.",
    ),
    counter(
        REGISTRY_UNREGISTER,
        "mabeam_registry_unregister_total",
        &[NAMESPACE, RESULT],
        "Names freed by a call.",
    ),
    counter(
        REGISTRY_UPDATE_METADATA,
        "mabeam_registry_update_metadata_total",
        &[NAMESPACE, RESULT],
        "Metadata updates.",
    ),
    counter(
        REGISTRY_JOIN,
        "mabeam_registry_join_total",
        &[NAMESPACE, RESULT],
        "Group joins.",
    ),
    counter(
        REGISTRY_LEAVE,
        "mabeam_registry_leave_total",
        &[NAMESPACE, RESULT],
        "Group leaves.",
    ),
    counter(
        REGISTRY_PROCESS_DOWN,
        "mabeam_registry_process_down_total",
        &[],
        "Stopped processes whose names were removed.",
    ),
    counter(
        REGISTRY_CLEANUP,
        "mabeam_registry_cleanup_total",
        &[],
        "Namespace cleanups.",
    ),
    counter(
        SERVICE_LOOKUP,
        "mabeam_service_lookup_total",
        &[SERVICE, RESULT],
        "Service lookups.",
    ),
    histogram(
        SERVICE_HEALTH_CHECK,
        "mabeam_service_health_check_duration_us",
        "duration_us",
        MetricUnit::Microseconds,
        &[SERVICE, MetricLabel::value("status")],
        "Service health checks.",
    ),
    histogram(
        SERVICE_WAIT,
        "mabeam_service_wait_duration_us",
        "duration_us",
        MetricUnit::Microseconds,
        &[SERVICE, RESULT],
        "Waits for a service.",
    ),
    counter(
        SERVICE_FALLBACK,
        "mabeam_service_fallback_total",
        &[SERVICE, REASON],
        "Lookups answered from a fallback.",
    ),
    counter(
        AGENT_MESSAGE_HANDLED,
        "mabeam_agent_messages_total",
        &[AGENT, RESULT],
        "Messages handled by agents.",
    ),
    histogram(
        AGENT_MESSAGE_HANDLED,
        "mabeam_agent_message_duration_us",
        "duration_us",
        MetricUnit::Microseconds,
        &[AGENT],
        "Time agents took to handle a message.",
    ),
    counter(
        AGENT_STATUS,
        "mabeam_agent_status_changes_total",
        &[AGENT, MetricLabel::value("status")],
        "Agent status changes, by new status.",
    ),
    counter(
        COORDINATION_DROPPED,
        "mabeam_coordination_dropped_total",
        &[MetricLabel::value("what")],
        "Coordination records dropped past their retention (decisions, sessions, election history).",
    ),
    MetricDecl {
        event: EVENT_STORE_PRUNED,
        metric: "mabeam_event_store_pruned_events_total",
        kind: MetricKind::Counter,
        measurement: Some("events"),
        labels: &[REASON],
        unit: MetricUnit::Count,
        help: "Events the EventStore pruned by retention (or on request).",
    },
    MetricDecl {
        event: PERFORMANCE_AGENT_FORGOTTEN,
        metric: "mabeam_performance_agents_forgotten_total",
        kind: MetricKind::Counter,
        measurement: Some("agents"),
        labels: &[REASON],
        unit: MetricUnit::Count,
        help: "Agents whose figures the PerformanceMonitor dropped.",
    },
    MetricDecl {
        event: AGENT_EVENTS_DROPPED,
        metric: "mabeam_agent_events_dropped_total",
        kind: MetricKind::Counter,
        measurement: Some("count"),
        labels: &[MetricLabel::value("reason")],
        unit: MetricUnit::Count,
        help: "Agent status changes not recorded in the event sink, by why.",
    },
    MetricDecl {
        event: AGENT_MESSAGES_DROPPED,
        metric: "mabeam_agent_messages_dropped_total",
        kind: MetricKind::Counter,
        measurement: Some("count"),
        labels: &[AGENT],
        unit: MetricUnit::Count,
        help: "Tells dropped because no incarnation of their agent will handle them.",
    },
];

/// A gauge read when metrics are scraped (not fed by events): see
/// [`GaugeSource`](crate::GaugeSource).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GaugeDecl {
    /// The metric's name.
    pub metric: &'static str,
    /// Its label names.
    pub labels: &'static [&'static str],
    /// The unit of its values.
    pub unit: MetricUnit,
    /// One line of help text.
    pub help: &'static str,
}

/// `mabeam_supervisor_children{supervisor, state}`: a supervisor's children,
/// `state` is `active` (running) or `specs` (all, running or not).
pub const GAUGE_SUPERVISOR_CHILDREN: GaugeDecl = GaugeDecl {
    metric: "mabeam_supervisor_children",
    labels: &["supervisor", "state"],
    unit: MetricUnit::Count,
    help: "Children of a supervisor (state: active, specs).",
};

/// `mabeam_registry_names{namespace}`: names registered in a namespace.
pub const GAUGE_REGISTRY_NAMES: GaugeDecl = GaugeDecl {
    metric: "mabeam_registry_names",
    labels: &["namespace"],
    unit: MetricUnit::Count,
    help: "Names registered in a namespace.",
};

/// `mabeam_mailbox_length{process}`: messages waiting in a system process's
/// mailbox (bounded mailboxes only; never per agent by default).
pub const GAUGE_MAILBOX_LENGTH: GaugeDecl = GaugeDecl {
    metric: "mabeam_mailbox_length",
    labels: &["process"],
    unit: MetricUnit::Count,
    help: "Messages waiting in a process's mailbox.",
};

/// `mabeam_application_services{application, status}`: an application's
/// services by status (`running`, `stopped`, `failed`, ...).
pub const GAUGE_APPLICATION_SERVICES: GaugeDecl = GaugeDecl {
    metric: "mabeam_application_services",
    labels: &["application", "status"],
    unit: MetricUnit::Count,
    help: "Services of an application, by status.",
};

/// `mabeam_cluster_member{member, state}`: 1 for each member of the node's
/// cluster in its state (`joining`, `up`, `leaving`, `down`).
pub const GAUGE_CLUSTER_MEMBER: GaugeDecl = GaugeDecl {
    metric: "mabeam_cluster_member",
    labels: &["member", "state"],
    unit: MetricUnit::Count,
    help: "Members of the node's cluster, by state (1 in the current one).",
};

/// Every gauge read on scrape.
pub const GAUGES: &[GaugeDecl] = &[
    GAUGE_SUPERVISOR_CHILDREN,
    GAUGE_REGISTRY_NAMES,
    GAUGE_MAILBOX_LENGTH,
    GAUGE_APPLICATION_SERVICES,
    GAUGE_CLUSTER_MEMBER,
];
