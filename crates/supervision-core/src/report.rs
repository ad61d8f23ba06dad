//! [`Reporter`]: a supervisor's telemetry, one method per event of
//! [`events`](crate::events), so both supervisors report alike.

use std::{sync::Arc, time::Duration};

use kameo::actor::ActorId;
use tokio::time::Instant;

use crate::{
    ChildSpec, ExitReason, MetaValue, ProcessHandle, StartError, Stopper, Telemetry, events,
};

/// A supervisor's name and telemetry handle. Formatting work (reasons to
/// text) is skipped when the handle is disabled.
#[derive(Debug, Clone)]
pub(crate) struct Reporter {
    pub(crate) name: Arc<str>,
    pub(crate) telemetry: Telemetry,
}

impl Reporter {
    pub(crate) fn new(name: Arc<str>, telemetry: Telemetry) -> Self {
        Reporter { name, telemetry }
    }

    fn supervisor(&self) -> (&'static str, MetaValue<'_>) {
        ("supervisor", MetaValue::Str(&self.name))
    }

    /// Runs one start of `spec` under the supervisor whose [`Stopper`]
    /// `stopper` makes (if the child registers a name), reporting its
    /// success or failure.
    pub(crate) async fn start(
        &self,
        spec: &ChildSpec,
        stopper: impl FnOnce() -> Stopper,
    ) -> Result<ProcessHandle, StartError> {
        let began = Instant::now();
        let result = spec.start_supervised(stopper).await;
        if self.telemetry.is_enabled() {
            let duration_us = began.elapsed().as_secs_f64() * 1e6;
            let child = ("child", MetaValue::Str(&spec.id));
            match &result {
                Ok(handle) => self.telemetry.emit(
                    events::CHILD_STARTED,
                    &[("duration_us", duration_us)],
                    &[self.supervisor(), child, actor_id(handle)],
                ),
                Err(err) => {
                    let error = err.to_string();
                    self.telemetry.emit(
                        events::CHILD_START_FAILED,
                        &[("duration_us", duration_us)],
                        &[self.supervisor(), child, ("error", MetaValue::Str(&error))],
                    )
                }
            }
        }
        result
    }

    /// A child exited by itself; `restart` says whether it will be restarted.
    pub(crate) fn exited(
        &self,
        spec: &ChildSpec,
        handle: &ProcessHandle,
        exit: &ExitReason,
        restart: bool,
    ) {
        if self.telemetry.is_enabled() {
            let reason = exit.to_string();
            self.telemetry.emit(
                events::CHILD_EXITED,
                &[],
                &[
                    self.supervisor(),
                    ("child", MetaValue::Str(&spec.id)),
                    actor_id(handle),
                    ("reason", MetaValue::Str(&reason)),
                    ("restart", MetaValue::Bool(restart)),
                ],
            );
        }
    }

    /// A child whose incarnation `old` exited was restarted as `handle`;
    /// `restarts` in the window so far. `old` is none for a child that
    /// never ran (its start answered `ignore`).
    pub(crate) fn restarted(
        &self,
        spec: &ChildSpec,
        old: Option<ActorId>,
        handle: &ProcessHandle,
        restarts: usize,
    ) {
        let measurements = [("restarts", restarts as f64)];
        let supervisor = self.supervisor();
        let child = ("child", MetaValue::Str(&spec.id));
        match old {
            Some(old) => self.telemetry.emit(
                events::CHILD_RESTARTED,
                &measurements,
                &[
                    supervisor,
                    child,
                    actor_id(handle),
                    ("old_actor_id", MetaValue::U64(old.sequence_id())),
                ],
            ),
            None => self.telemetry.emit(
                events::CHILD_RESTARTED,
                &measurements,
                &[supervisor, child, actor_id(handle)],
            ),
        }
    }

    /// The supervisor stopped a child, which exited with `exit`.
    pub(crate) fn terminated(&self, spec: &ChildSpec, handle: &ProcessHandle, exit: &ExitReason) {
        if self.telemetry.is_enabled() {
            let reason = exit.to_string();
            self.telemetry.emit(
                events::CHILD_TERMINATED,
                &[],
                &[
                    self.supervisor(),
                    ("child", MetaValue::Str(&spec.id)),
                    actor_id(handle),
                    ("reason", MetaValue::Str(&reason)),
                ],
            );
        }
    }

    /// A restart of `spec` waits `delay` (its `attempt`-th in a row).
    pub(crate) fn backoff(&self, spec: &ChildSpec, delay: Duration, attempt: u32) {
        self.telemetry.emit(
            events::BACKOFF_SCHEDULED,
            &[
                ("delay_ms", delay.as_secs_f64() * 1e3),
                ("attempt", f64::from(attempt)),
            ],
            &[self.supervisor(), ("child", MetaValue::Str(&spec.id))],
        );
    }

    /// The supervisor gave up with `reason`.
    pub(crate) fn gave_up(&self, reason: &ExitReason, restarts: usize) {
        if self.telemetry.is_enabled() {
            let text = reason.to_string();
            self.telemetry.emit(
                events::GAVE_UP,
                &[("restarts", restarts as f64)],
                &[self.supervisor(), ("reason", MetaValue::Str(&text))],
            );
        }
    }
}

fn actor_id(handle: &ProcessHandle) -> (&'static str, MetaValue<'static>) {
    ("actor_id", MetaValue::U64(handle.id().sequence_id()))
}
