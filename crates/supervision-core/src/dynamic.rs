//! [`DynamicSupervisor`]: a supervisor that starts children on demand, as
//! OTP's `DynamicSupervisor`, implemented as its own kameo actor.
//!
//! [`start_child`] runs the child's start in the caller's task and hands
//! the started child to the supervisor actor, which keeps it and watches it
//! (see the `watch` module): the supervisor's mailbox is not held up by a
//! slow start, and starting many children costs one message each, not a
//! round trip. The child is supervised before `start_child` returns (the
//! hand-over is queued ahead of anything a later caller sends).
//!
//! Each exit is classified ([`ExitReason`](crate::ExitReason)) and the
//! child's [`RestartType`] decides; restarts run inside the supervisor. All
//! children share one restart [`Intensity`](crate::Intensity): past it the
//! supervisor stops every child and exits with `Shutdown(Some("reached max
//! restart intensity: ..."))`, as OTP's exits with `shutdown`: its parent
//! restarts it only if its entry there is permanent (see
//! [`Supervisor`](crate::Supervisor)'s escalation table).
//!
//! [`terminate_child`] stops a running child from the caller's task (see
//! the `children` module): the supervisor is not asked, and goes on
//! answering meanwhile; a child it must find first (one waiting for its
//! restart) is still the supervisor's to stop. The supervisor blocks while
//! it restarts a child (bounded by its start timeout), as OTP's does.
//! When it stops, it stops all its children at once, as OTP's
//! `DynamicSupervisor` does: the shutdown takes as long as the slowest child,
//! not the sum. A child killed (its timeout ran out, or `BrutalKill`) is
//! aborted whole, a supervisor child with its subtree.
//!
//! The module is split by concept: `flags` (the settings), `handle` (the
//! [`DynamicSupervisor`] API), `template` ([`TemplateSupervisor`]),
//! `places` (the `max_children` accounting), `children` (the table of
//! children the actor and the handles share, and `terminate_child` in the
//! caller's task), `actor` (what happens when a child exits),
//! `messages` (what the handle sends the actor),
//! `notice` ([`ExitNotice`]: children that report their own exit, and
//! are not watched) and `id_hash` (the children map's hasher, which keeps
//! children started in order in neighbouring buckets).
//!
//! [`start_child`]: DynamicSupervisor::start_child
//! [`terminate_child`]: DynamicSupervisor::terminate_child
//! [`RestartType`]: crate::RestartType
//! [`Shutdown`]: crate::Shutdown

mod actor;
mod children;
mod flags;
mod handle;
mod id_hash;
mod messages;
mod notice;
mod places;
mod template;

pub use flags::DynamicSupervisorFlags;
pub use handle::DynamicSupervisor;
pub use notice::ExitNotice;
pub use template::TemplateSupervisor;
