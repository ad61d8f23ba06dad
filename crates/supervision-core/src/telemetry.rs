//! The [`Telemetry`] handle: synchronous events with measurements and
//! metadata, delivered inline to attached handlers, like Erlang's `:telemetry`.

use std::{
    fmt,
    panic::{AssertUnwindSafe, catch_unwind},
    sync::Arc,
};

use parking_lot::RwLock;
use thiserror::Error;

use crate::ErrorCode;

/// A metadata value of a telemetry event, borrowed so that emitting costs no
/// allocation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MetaValue<'a> {
    /// A string.
    Str(&'a str),
    /// A signed integer.
    I64(i64),
    /// An unsigned integer.
    U64(u64),
    /// A float.
    F64(f64),
    /// A boolean.
    Bool(bool),
}

impl fmt::Display for MetaValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetaValue::Str(s) => f.write_str(s),
            MetaValue::I64(v) => write!(f, "{v}"),
            MetaValue::U64(v) => write!(f, "{v}"),
            MetaValue::F64(v) => write!(f, "{v}"),
            MetaValue::Bool(v) => write!(f, "{v}"),
        }
    }
}

/// One telemetry event as a handler sees it.
#[derive(Debug, Clone, Copy)]
pub struct TelemetryEvent<'a> {
    /// The event's name, e.g. `["supervisor", "child", "restarted"]`.
    pub name: &'a [&'a str],
    /// Numeric measurements, e.g. `("duration_us", 120.0)`.
    pub measurements: &'a [(&'a str, f64)],
    /// Descriptive metadata, e.g. `("child", MetaValue::Str("cache"))`.
    pub metadata: &'a [(&'a str, MetaValue<'a>)],
}

impl<'a> TelemetryEvent<'a> {
    /// The measurement named `key`.
    pub fn measurement(&self, key: &str) -> Option<f64> {
        self.measurements
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
    }

    /// The metadata value named `key`.
    pub fn meta(&self, key: &str) -> Option<MetaValue<'a>> {
        self.metadata
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
    }

    /// The name joined with dots, e.g. `supervisor.child.restarted`.
    pub fn dotted_name(&self) -> String {
        self.name.join(".")
    }
}

/// Why a handler could not be attached.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TelemetryError {
    /// A handler with this id is already attached.
    #[error("telemetry handler {0:?} already attached")]
    AlreadyAttached(String),
    /// This handle is the disabled one; make one with [`Telemetry::new`].
    #[error("telemetry is disabled on this handle")]
    Disabled,
}

impl ErrorCode for TelemetryError {
    fn code(&self) -> u32 {
        match self {
            TelemetryError::AlreadyAttached(_) => 1501,
            TelemetryError::Disabled => 1502,
        }
    }
}

type Handler = dyn Fn(&TelemetryEvent<'_>) + Send + Sync;

/// Copy-on-write: emitters clone the `Arc` and call handlers without a lock.
type HandlerList = Arc<[Arc<Attached>]>;

struct Attached {
    id: String,
    prefix: Vec<String>,
    handler: Arc<Handler>,
}

impl Attached {
    fn matches(&self, name: &[&str]) -> bool {
        self.prefix.len() <= name.len() && self.prefix.iter().zip(name).all(|(p, n)| p == n)
    }
}

/// A cheap, cloneable handle that delivers events to attached handlers,
/// synchronously, in the emitting task, like Erlang's `:telemetry`.
///
/// One handle per application or node is handed to each component at
/// construction; there is no process-wide recorder.
///
/// [`Telemetry::new`] and [`Telemetry::default`] are the same live handle
/// with no handlers yet, ready to [`attach`](Self::attach) to. Components
/// that take a handle default to [`Telemetry::disabled`] themselves (their
/// flags say so): emitting on a disabled handle costs a branch, nothing is
/// delivered and attaching fails.
///
/// A handler that panics is detached, as `:telemetry` detaches a failing
/// handler, so one bad handler cannot break the emitter.
///
/// # Example
///
/// ```
/// use std::sync::{Arc, atomic::{AtomicU64, Ordering}};
/// use mabeam_supervision_core::{MetaValue, Telemetry};
///
/// let telemetry = Telemetry::new();
/// let restarts = Arc::new(AtomicU64::new(0));
/// let seen = restarts.clone();
/// telemetry
///     .attach("count-restarts", &["supervisor", "child"], move |event| {
///         if event.name.last() == Some(&"restarted") {
///             seen.fetch_add(1, Ordering::Relaxed);
///         }
///     })
///     .unwrap();
///
/// telemetry.emit(
///     &["supervisor", "child", "restarted"],
///     &[("count", 1.0)],
///     &[("child", MetaValue::Str("cache"))],
/// );
/// assert_eq!(restarts.load(Ordering::Relaxed), 1);
/// ```
#[derive(Clone)]
pub struct Telemetry {
    handlers: Option<Arc<RwLock<HandlerList>>>,
}

/// The same as [`Telemetry::new`]: a live handle, as `new` and `default`
/// agree across Rust's standard library.
impl Default for Telemetry {
    fn default() -> Self {
        Telemetry::new()
    }
}

impl Telemetry {
    /// A live handle with no handlers yet.
    pub fn new() -> Self {
        Telemetry {
            handlers: Some(Arc::new(RwLock::new(Arc::from(Vec::new())))),
        }
    }

    /// The disabled handle: emits go nowhere, attaching fails. Components
    /// start with it until they are given a live one.
    pub fn disabled() -> Self {
        Telemetry { handlers: None }
    }

    /// Whether this handle delivers events.
    pub fn is_enabled(&self) -> bool {
        self.handlers.is_some()
    }

    /// Delivers an event to every handler whose prefix matches `name`.
    pub fn emit(
        &self,
        name: &[&str],
        measurements: &[(&str, f64)],
        metadata: &[(&str, MetaValue<'_>)],
    ) {
        let Some(handlers) = &self.handlers else {
            return;
        };
        // Copy the list out so handlers may attach, detach or emit themselves.
        let snapshot = handlers.read().clone();
        if snapshot.is_empty() {
            return;
        }
        let event = TelemetryEvent {
            name,
            measurements,
            metadata,
        };
        for attached in snapshot.iter().filter(|a| a.matches(name)) {
            let handler = &attached.handler;
            if catch_unwind(AssertUnwindSafe(|| handler(&event))).is_err() {
                self.detach(&attached.id);
            }
        }
    }

    /// Attaches `handler` under `id` for every event whose name starts with
    /// `prefix` (an empty prefix matches every event).
    pub fn attach(
        &self,
        id: impl Into<String>,
        prefix: &[&str],
        handler: impl Fn(&TelemetryEvent<'_>) + Send + Sync + 'static,
    ) -> Result<(), TelemetryError> {
        let handlers = self.handlers.as_ref().ok_or(TelemetryError::Disabled)?;
        let id = id.into();
        let mut list = handlers.write();
        if list.iter().any(|a| a.id == id) {
            return Err(TelemetryError::AlreadyAttached(id));
        }
        let mut next: Vec<_> = list.iter().cloned().collect();
        next.push(Arc::new(Attached {
            id,
            prefix: prefix.iter().map(|s| (*s).to_owned()).collect(),
            handler: Arc::new(handler),
        }));
        *list = Arc::from(next);
        Ok(())
    }

    /// Detaches the handler `id`; false if none was attached under it.
    pub fn detach(&self, id: &str) -> bool {
        let Some(handlers) = &self.handlers else {
            return false;
        };
        let mut list = handlers.write();
        if !list.iter().any(|a| a.id == id) {
            return false;
        }
        let next: Vec<_> = list.iter().filter(|a| a.id != id).cloned().collect();
        *list = Arc::from(next);
        true
    }

    /// The ids of the attached handlers.
    pub fn handler_ids(&self) -> Vec<String> {
        self.handlers
            .as_ref()
            .map(|h| h.read().iter().map(|a| a.id.clone()).collect())
            .unwrap_or_default()
    }
}

impl fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Telemetry")
            .field("enabled", &self.is_enabled())
            .field("handlers", &self.handler_ids())
            .finish()
    }
}

/// A metadata value owned by an [`OwnedEvent`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum OwnedMetaValue {
    /// A string.
    Str(String),
    /// A signed integer.
    I64(i64),
    /// An unsigned integer.
    U64(u64),
    /// A float.
    F64(f64),
    /// A boolean.
    Bool(bool),
}

impl From<MetaValue<'_>> for OwnedMetaValue {
    fn from(value: MetaValue<'_>) -> Self {
        match value {
            MetaValue::Str(s) => OwnedMetaValue::Str(s.to_owned()),
            MetaValue::I64(v) => OwnedMetaValue::I64(v),
            MetaValue::U64(v) => OwnedMetaValue::U64(v),
            MetaValue::F64(v) => OwnedMetaValue::F64(v),
            MetaValue::Bool(v) => OwnedMetaValue::Bool(v),
        }
    }
}

impl fmt::Display for OwnedMetaValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OwnedMetaValue::Str(s) => f.write_str(s),
            OwnedMetaValue::I64(v) => write!(f, "{v}"),
            OwnedMetaValue::U64(v) => write!(f, "{v}"),
            OwnedMetaValue::F64(v) => write!(f, "{v}"),
            OwnedMetaValue::Bool(v) => write!(f, "{v}"),
        }
    }
}

/// A telemetry event that owns its data: to keep, queue or send an event
/// past the handler call ([`TelemetryEvent::to_owned_event`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OwnedEvent {
    /// The event's name, word by word.
    pub name: Vec<String>,
    /// Its measurements.
    pub measurements: Vec<(String, f64)>,
    /// Its metadata.
    pub metadata: Vec<(String, OwnedMetaValue)>,
}

impl OwnedEvent {
    /// Whether the event is named `name`.
    pub fn is(&self, name: &[&str]) -> bool {
        self.name.len() == name.len() && self.name.iter().zip(name).all(|(a, b)| a == b)
    }

    /// The measurement named `key`.
    pub fn measurement(&self, key: &str) -> Option<f64> {
        self.measurements
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| *v)
    }

    /// The metadata value named `key`.
    pub fn meta(&self, key: &str) -> Option<&OwnedMetaValue> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The metadata string named `key`.
    pub fn meta_str(&self, key: &str) -> Option<&str> {
        match self.meta(key)? {
            OwnedMetaValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The metadata boolean named `key`.
    pub fn meta_bool(&self, key: &str) -> Option<bool> {
        match self.meta(key)? {
            OwnedMetaValue::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The name joined with dots.
    pub fn dotted_name(&self) -> String {
        self.name.join(".")
    }
}

impl TelemetryEvent<'_> {
    /// A copy of the event that owns its data.
    pub fn to_owned_event(&self) -> OwnedEvent {
        OwnedEvent {
            name: self.name.iter().map(|s| (*s).to_owned()).collect(),
            measurements: self
                .measurements
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
            metadata: self
                .metadata
                .iter()
                .map(|(k, v)| ((*k).to_owned(), OwnedMetaValue::from(*v)))
                .collect(),
        }
    }
}

/// One value of a gauge read on scrape: the metric (one of
/// [`events::GAUGES`](crate::events::GAUGES)), its label values in the
/// declaration's order, and the value.
#[derive(Debug, Clone, PartialEq)]
pub struct GaugeReading {
    /// The metric's name, e.g. `mabeam_supervisor_children`.
    pub metric: &'static str,
    /// Label names and values.
    pub labels: Vec<(&'static str, String)>,
    /// The value now.
    pub value: f64,
}

impl GaugeReading {
    /// A reading of `decl` with `labels` (values in the declaration's
    /// label order; extra values are ignored, missing ones left out).
    pub fn new(
        decl: &crate::events::GaugeDecl,
        labels: impl IntoIterator<Item = impl Into<String>>,
        value: f64,
    ) -> Self {
        GaugeReading {
            metric: decl.metric,
            labels: decl
                .labels
                .iter()
                .copied()
                .zip(labels.into_iter().map(Into::into))
                .collect(),
            value,
        }
    }
}

/// Something whose gauges are read when metrics are scraped (live
/// children, registered names, mailbox lengths): values that are states,
/// not events, so no event could keep them current.
///
/// The exporter calls [`read`](Self::read) on each source at every scrape
/// and sets the gauges to what it answers. A source answers quickly (it
/// counts; it does not wait on slow work).
///
/// # Example
///
/// ```
/// use futures::future::BoxFuture;
/// use mabeam_supervision_core::{GaugeReading, GaugeSource, events};
///
/// struct Names(usize);
///
/// impl GaugeSource for Names {
///     fn read(&self) -> BoxFuture<'_, Vec<GaugeReading>> {
///         Box::pin(async move {
///             vec![GaugeReading::new(&events::GAUGE_REGISTRY_NAMES, ["production"], self.0 as f64)]
///         })
///     }
/// }
///
/// # futures::executor::block_on(async {
/// let readings = Names(3).read().await;
/// assert_eq!(readings[0].labels, [("namespace", "production".to_owned())]);
/// # });
/// ```
pub trait GaugeSource: Send + Sync + 'static {
    /// The gauges' values now.
    fn read(&self) -> futures::future::BoxFuture<'_, Vec<GaugeReading>>;
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn prefix_selects_events() {
        let telemetry = Telemetry::new();
        let hits = Arc::new(AtomicUsize::new(0));
        let seen = hits.clone();
        telemetry
            .attach("h", &["a", "b"], move |_| {
                seen.fetch_add(1, Ordering::Relaxed);
            })
            .unwrap();
        telemetry.emit(&["a", "b", "c"], &[], &[]);
        telemetry.emit(&["a", "x"], &[], &[]);
        telemetry.emit(&["a"], &[], &[]);
        assert_eq!(hits.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn duplicate_id_is_refused_and_detach_works() {
        let telemetry = Telemetry::new();
        telemetry.attach("h", &[], |_| {}).unwrap();
        assert_eq!(
            telemetry.attach("h", &[], |_| {}),
            Err(TelemetryError::AlreadyAttached("h".into()))
        );
        assert!(telemetry.detach("h"));
        assert!(!telemetry.detach("h"));
    }

    #[test]
    fn panicking_handler_is_detached() {
        let telemetry = Telemetry::new();
        telemetry.attach("bad", &[], |_| panic!("boom")).unwrap();
        telemetry.emit(&["x"], &[], &[]);
        assert!(telemetry.handler_ids().is_empty());
    }

    #[test]
    fn disabled_handle_refuses_handlers() {
        let telemetry = Telemetry::disabled();
        assert_eq!(
            telemetry.attach("h", &[], |_| {}),
            Err(TelemetryError::Disabled)
        );
        telemetry.emit(&["x"], &[], &[]);
    }
}
