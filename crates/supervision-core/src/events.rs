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
//! | `supervisor.child.restarted`         | `restarts`     | `supervisor`, `child`, `actor_id` (the new one), `old_actor_id` (the one that exited) |
//! | `supervisor.child.terminated`        |                | `supervisor`, `child`, `actor_id`, `reason` |
//! | `supervisor.backoff.scheduled`       | `delay_ms`, `attempt` | `supervisor`, `child`              |
//! | `supervisor.gave_up`                 | `restarts`     | `supervisor`, `reason`                    |
//! | `application.started`                | `duration_us`  | `application`, `services` (count as u64)  |
//! | `application.stopped`                |                | `application`, `reason`                   |
//!
//! `supervisor` is the supervisor's name from its flags; `child` the child
//! spec's id; `actor_id` the child's kameo actor id as a number;
//! `reason` an [`ExitReason`](crate::ExitReason) in its display form.

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
