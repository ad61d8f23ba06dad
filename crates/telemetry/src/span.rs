//! [`Span`]: a timed piece of work reported as three events, as
//! `:telemetry.span` does: `NAME.start`, then `NAME.stop` with its
//! `duration_us`, or `NAME.exception` with its `duration_us` and `reason`.

use std::{fmt, future::Future};

use mabeam_supervision_core::{Clock, MetaValue, OwnedMetaValue, Telemetry};
use tokio::time::Instant;

/// A span in progress. [`stop`](Self::stop) or
/// [`exception`](Self::exception) ends it; a span dropped without either
/// (its task panicked or returned early) reports an exception with reason
/// `dropped`.
///
/// Events: `NAME.start` (measurement `system_time_ms`), `NAME.stop`
/// (`duration_us`), `NAME.exception` (`duration_us`; metadata `reason`).
/// Each carries the span's metadata.
///
/// # Example
///
/// ```
/// use mabeam_supervision_core::{Clock, MetaValue, Telemetry};
/// use mabeam_telemetry::Span;
///
/// let telemetry = Telemetry::new();
/// let (tx, rx) = std::sync::mpsc::channel();
/// telemetry.attach("spans", &["job"], move |event| tx.send(event.dotted_name()).unwrap()).unwrap();
///
/// let span = Span::start(&telemetry, &Clock::system(), &["job"], &[("kind", MetaValue::Str("import"))]);
/// span.stop();
/// assert_eq!(rx.try_iter().collect::<Vec<_>>(), ["job.start", "job.stop"]);
/// ```
pub struct Span {
    telemetry: Telemetry,
    name: Vec<String>,
    metadata: Vec<(String, OwnedMetaValue)>,
    clock: Clock,
    started: Instant,
    ended: bool,
}

impl fmt::Debug for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Span")
            .field("name", &self.name)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl Span {
    /// Starts a span named `name`, emitting `NAME.start`.
    pub fn start(
        telemetry: &Telemetry,
        clock: &Clock,
        name: &[&str],
        metadata: &[(&str, MetaValue<'_>)],
    ) -> Span {
        let span = Span {
            telemetry: telemetry.clone(),
            name: name.iter().map(|s| (*s).to_owned()).collect(),
            metadata: metadata
                .iter()
                .map(|(k, v)| ((*k).to_owned(), OwnedMetaValue::from(*v)))
                .collect(),
            clock: clock.clone(),
            started: clock.now(),
            ended: false,
        };
        span.emit(
            "start",
            ("system_time_ms", clock.unix_millis() as f64),
            None,
        );
        span
    }

    /// Runs `work` in a span: `NAME.stop` if it returns `Ok`,
    /// `NAME.exception` with the error as reason if it returns `Err` (and
    /// with reason `dropped` if it panics or is cancelled).
    pub async fn run<T, E, F>(
        telemetry: &Telemetry,
        clock: &Clock,
        name: &[&str],
        metadata: &[(&str, MetaValue<'_>)],
        work: F,
    ) -> Result<T, E>
    where
        F: Future<Output = Result<T, E>>,
        E: fmt::Display,
    {
        let span = Span::start(telemetry, clock, name, metadata);
        let result = work.await;
        match &result {
            Ok(_) => span.stop(),
            Err(error) => span.exception(&error.to_string()),
        }
        result
    }

    /// Ends the span: `NAME.stop` with its duration.
    pub fn stop(mut self) {
        self.ended = true;
        self.emit("stop", ("duration_us", self.elapsed_us()), None);
    }

    /// Ends the span in failure: `NAME.exception` with its duration and
    /// `reason`.
    pub fn exception(mut self, reason: &str) {
        self.ended = true;
        self.emit(
            "exception",
            ("duration_us", self.elapsed_us()),
            Some(reason),
        );
    }

    fn elapsed_us(&self) -> f64 {
        (self.clock.now() - self.started).as_secs_f64() * 1e6
    }

    fn emit(&self, suffix: &str, measurement: (&str, f64), reason: Option<&str>) {
        if !self.telemetry.is_enabled() {
            return;
        }
        let mut name: Vec<&str> = self.name.iter().map(String::as_str).collect();
        name.push(suffix);
        let mut metadata: Vec<(&str, MetaValue<'_>)> = self
            .metadata
            .iter()
            .map(|(k, v)| (k.as_str(), borrow(v)))
            .collect();
        if let Some(reason) = reason {
            metadata.push(("reason", MetaValue::Str(reason)));
        }
        self.telemetry.emit(&name, &[measurement], &metadata);
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        if !self.ended {
            self.ended = true;
            self.emit(
                "exception",
                ("duration_us", self.elapsed_us()),
                Some("dropped"),
            );
        }
    }
}

/// A borrowed view of an owned metadata value.
pub(crate) fn borrow(value: &OwnedMetaValue) -> MetaValue<'_> {
    match value {
        OwnedMetaValue::Str(s) => MetaValue::Str(s),
        OwnedMetaValue::I64(v) => MetaValue::I64(*v),
        OwnedMetaValue::U64(v) => MetaValue::U64(*v),
        OwnedMetaValue::F64(v) => MetaValue::F64(*v),
        OwnedMetaValue::Bool(v) => MetaValue::Bool(*v),
    }
}
