//! Recording events: [`Event`] and the [`EventSink`] contract, implemented
//! by foundation-services' EventStore and used by whoever records history.

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::ErrorCode;

/// One event to record: which stream it belongs to, what kind it is, its
/// data, and what ties it to other events.
///
/// The store adds the rest when it records it (see
/// [`StoredEvent`](crate::StoredEvent)): the id, the stream version and the
/// timestamp. Build one with [`Event::new`] and the `with_*` methods; the
/// fields are public for reading and pattern matching.
///
/// | field | set by | meaning |
/// |---|---|---|
/// | `stream` | caller | the stream (aggregate) it belongs to; not empty |
/// | `kind` | caller | its type, e.g. `value_changed`; not empty |
/// | `data` | caller | its payload |
/// | `correlation_id` | caller | groups the events of one request or conversation |
/// | `causation_id` | caller | the id of the event that caused this one (its parent) |
/// | `idempotency_key` | caller | a retried append with the same key is stored once |
/// | `metadata` | caller | free-form key/values (who, why, versions) |
/// | `node` | caller or store | the node that recorded it; the store fills its own name when unset |
///
/// # Example
///
/// ```
/// use mabeam_supervision_core::Event;
///
/// let event = Event::new("config", "value_changed", serde_json::json!({"key": "rate", "value": 10}))
///     .with_correlation_id("req-42")
///     .caused_by(7)
///     .with_idempotency_key("config-rate-10")
///     .with_metadata("user", "ops");
/// assert_eq!(event.stream, "config");
/// assert_eq!(event.causation_id, Some(7));
/// assert_eq!(event.metadata["user"], "ops");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The stream (aggregate) the event belongs to.
    pub stream: String,
    /// The kind (type) of event.
    pub kind: String,
    /// The event's data.
    pub data: serde_json::Value,
    /// Groups the events of one request, conversation or workflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The id of the event that caused this one (its parent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<EventSeq>,
    /// A key that makes the append idempotent: a retry (the same stream
    /// and kind, in the same batch) is not stored again, and answers the
    /// first one's id; the key reused for another event or batch is
    /// refused. Keys of pruned events are forgotten with them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// The node that recorded the event; a store fills in its own when
    /// unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

impl Event {
    /// An event of `kind` on `stream` with `data`, and nothing else set.
    pub fn new(
        stream: impl Into<String>,
        kind: impl Into<String>,
        data: serde_json::Value,
    ) -> Self {
        Event {
            stream: stream.into(),
            kind: kind.into(),
            data,
            correlation_id: None,
            causation_id: None,
            idempotency_key: None,
            metadata: serde_json::Map::new(),
            node: None,
        }
    }

    /// Sets the correlation id.
    pub fn with_correlation_id(mut self, correlation_id: impl Into<String>) -> Self {
        self.correlation_id = Some(correlation_id.into());
        self
    }

    /// Sets the causation id: the id of the event that caused this one.
    pub fn caused_by(mut self, parent: EventSeq) -> Self {
        self.causation_id = Some(parent);
        self
    }

    /// Sets the idempotency key.
    pub fn with_idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Adds one metadata entry (replacing an entry of the same key).
    pub fn with_metadata(
        mut self,
        key: impl Into<String>,
        value: impl Into<serde_json::Value>,
    ) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Sets the node that records the event.
    pub fn on_node(mut self, node: impl Into<String>) -> Self {
        self.node = Some(node.into());
        self
    }
}

/// The position (id) an event was recorded at: strictly increasing in
/// recording order, never reused.
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
/// use mabeam_supervision_core::{Event, EventSeq, EventSink, EventSinkError};
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
