//! Recording events: [`Event`] and the [`EventSink`] contract, implemented
//! by foundation-services' EventStore and used by whoever records history.

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::ErrorCode;

/// One event to record: which stream it belongs to, what kind it is, and
/// its data.
///
/// # Example
///
/// ```
/// use supervision_core::Event;
///
/// let event = Event::new("config", "value_changed", serde_json::json!({"key": "rate", "value": 10}));
/// assert_eq!(event.stream, "config");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The stream (aggregate) the event belongs to.
    pub stream: String,
    /// The kind of event.
    pub kind: String,
    /// The event's data.
    pub data: serde_json::Value,
}

impl Event {
    /// An event of `kind` on `stream` with `data`.
    pub fn new(
        stream: impl Into<String>,
        kind: impl Into<String>,
        data: serde_json::Value,
    ) -> Self {
        Event {
            stream: stream.into(),
            kind: kind.into(),
            data,
        }
    }
}

/// The position an event was recorded at, increasing in recording order.
pub type EventSeq = u64;

/// Why an event was not recorded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EventSinkError {
    /// The sink is not running.
    #[error("event sink unavailable: {0}")]
    Unavailable(String),
    /// The sink refused the event (invalid, or its storage failed).
    #[error("event rejected: {0}")]
    Rejected(String),
}

impl ErrorCode for EventSinkError {
    fn code(&self) -> u32 {
        match self {
            EventSinkError::Unavailable(_) => 1401,
            EventSinkError::Rejected(_) => 1402,
        }
    }
}

/// Somewhere to record events: returns once the event is recorded (durably,
/// for a persistent sink), with its sequence number.
///
/// # Example
///
/// ```
/// use futures::future::BoxFuture;
/// use parking_lot::Mutex;
/// use supervision_core::{Event, EventSeq, EventSink, EventSinkError};
///
/// #[derive(Default)]
/// struct InMemory(Mutex<Vec<Event>>);
///
/// impl EventSink for InMemory {
///     fn record(&self, event: Event) -> BoxFuture<'_, Result<EventSeq, EventSinkError>> {
///         Box::pin(async move {
///             let mut log = self.0.lock();
///             log.push(event);
///             Ok(log.len() as EventSeq)
///         })
///     }
/// }
///
/// # futures::executor::block_on(async {
/// let sink = InMemory::default();
/// assert_eq!(sink.record(Event::new("s", "k", serde_json::Value::Null)).await, Ok(1));
/// # });
/// ```
pub trait EventSink: Send + Sync + 'static {
    /// Records `event`.
    fn record(&self, event: Event) -> BoxFuture<'_, Result<EventSeq, EventSinkError>>;
}
