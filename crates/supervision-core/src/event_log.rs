//! Reading recorded events: [`StoredEvent`], [`EventQuery`], and the
//! [`EventReader`] contract (query, read from a position, subscribe),
//! implemented by foundation-services' EventStore, so a crate reads history
//! without depending on the store.
//!
//! Positions are event ids ([`EventSeq`]): strictly increasing in recording
//! order and never reused, so "everything from position `p`" is every event
//! whose id is at least `p`, and a reader that has seen event `n` resumes
//! from `n + 1`.

use std::{
    fmt,
    pin::Pin,
    task::{Context, Poll},
};

use futures::{
    Stream, StreamExt,
    future::BoxFuture,
    stream::{self, BoxStream},
};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::{ErrorCode, Event, EventSeq};

/// A recorded event: the [`Event`] as given, with what the store added.
///
/// `event.node` is always set on a stored event (the store's own node
/// name when the caller left it unset).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// Its id and position: strictly increasing, never reused.
    pub id: EventSeq,
    /// Its version within its stream: 1 for a stream's first event, then
    /// 2, 3... (never reused either).
    pub stream_version: u64,
    /// When it was recorded, in milliseconds since the Unix epoch, from
    /// the store's clock.
    pub timestamp_ms: u64,
    /// The event as appended.
    #[serde(flatten)]
    pub event: Event,
}

/// The order of a query's answer, by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum EventOrder {
    /// Oldest first (the default).
    #[default]
    Ascending,
    /// Newest first.
    Descending,
}

/// Which events to read: every filter set must match; then `order`,
/// `offset` and `limit` page the answer.
///
/// # Example
///
/// ```
/// use mabeam_supervision_core::{EventOrder, EventQuery};
///
/// let query = EventQuery::new()
///     .stream("orders")
///     .kind("order_placed")
///     .between(1_000, 2_000)
///     .descending()
///     .offset(10)
///     .limit(10);
/// assert_eq!(query.order, EventOrder::Descending);
/// assert_eq!(query.until_ms, Some(2_000));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EventQuery {
    /// Only this stream.
    pub stream: Option<String>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only events recorded at or after this time (ms since the epoch).
    pub since_ms: Option<u64>,
    /// Only events recorded before this time (ms since the epoch).
    pub until_ms: Option<u64>,
    /// Only events of this correlation id.
    pub correlation_id: Option<String>,
    /// The order by id.
    pub order: EventOrder,
    /// How many matching events to skip.
    pub offset: u64,
    /// At most this many events (all by default).
    pub limit: Option<u64>,
}

impl EventQuery {
    /// A query of every event, oldest first.
    pub fn new() -> Self {
        EventQuery::default()
    }

    /// Only the events of `stream`.
    pub fn stream(mut self, stream: impl Into<String>) -> Self {
        self.stream = Some(stream.into());
        self
    }

    /// Only the events of `kind`.
    pub fn kind(mut self, kind: impl Into<String>) -> Self {
        self.kind = Some(kind.into());
        self
    }

    /// Only the events recorded in `[since_ms, until_ms)`.
    pub fn between(mut self, since_ms: u64, until_ms: u64) -> Self {
        self.since_ms = Some(since_ms);
        self.until_ms = Some(until_ms);
        self
    }

    /// Only the events of `correlation_id`.
    pub fn correlation_id(mut self, correlation_id: impl Into<String>) -> Self {
        self.correlation_id = Some(correlation_id.into());
        self
    }

    /// Newest first.
    pub fn descending(mut self) -> Self {
        self.order = EventOrder::Descending;
        self
    }

    /// Skips the first `offset` matching events.
    pub fn offset(mut self, offset: u64) -> Self {
        self.offset = offset;
        self
    }

    /// At most `limit` events.
    pub fn limit(mut self, limit: u64) -> Self {
        self.limit = Some(limit);
        self
    }
}

/// Why events could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EventReadError {
    /// The reader (its store) is not running.
    #[error("event reader unavailable: {0}")]
    Unavailable(String),
    /// No event has this id (never recorded, or pruned).
    #[error("event {0} not found")]
    NotFound(EventSeq),
    /// A subscriber fell behind its bounded buffer: it has received every
    /// event before `resume_from`, none after, and resumes by subscribing
    /// again from `resume_from`.
    #[error("subscriber lagged behind; resume from {resume_from}")]
    Lagged {
        /// The position of the first event not delivered.
        resume_from: EventSeq,
    },
    /// The query is invalid (the reason says which part).
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    /// The storage failed.
    #[error("event read failed: {0}")]
    Failed(String),
    /// The position asked for is below the store's horizon: retention
    /// pruned the events there (etcd's `ErrCompacted`). Nothing is read;
    /// the reader may start again from `first_available`.
    #[error("events before {first_available} were pruned")]
    Compacted {
        /// The first position still stored (or the next to be given).
        first_available: EventSeq,
    },
}

impl ErrorCode for EventReadError {
    fn code(&self) -> u32 {
        match self {
            EventReadError::Unavailable(_) => 1411,
            EventReadError::NotFound(_) => 1412,
            EventReadError::Lagged { .. } => 1413,
            EventReadError::InvalidQuery(_) => 1414,
            EventReadError::Failed(_) => 1415,
            EventReadError::Compacted { .. } => 1416,
        }
    }
}

/// A live feed of events from a position: first the stored events, then
/// new ones as they are recorded, in id order, with no gap and no
/// duplicate across the hand-over.
///
/// It ends after yielding an error: [`EventReadError::Lagged`] when the
/// subscriber fell behind (resume from the position it names), or
/// [`EventReadError::Unavailable`] when the store stopped.
pub struct EventSubscription {
    inner: BoxStream<'static, Result<StoredEvent, EventReadError>>,
}

impl EventSubscription {
    /// A subscription reading `events` (for implementers of
    /// [`EventReader`]).
    pub fn new(
        events: impl Stream<Item = Result<StoredEvent, EventReadError>> + Send + 'static,
    ) -> Self {
        EventSubscription {
            inner: events.boxed(),
        }
    }

    /// A subscription that yields `error` and ends.
    pub fn failed(error: EventReadError) -> Self {
        EventSubscription::new(stream::once(async move { Err(error) }))
    }

    /// The next event; `None` once the subscription ended.
    pub async fn next(&mut self) -> Option<Result<StoredEvent, EventReadError>> {
        self.inner.next().await
    }
}

impl Stream for EventSubscription {
    type Item = Result<StoredEvent, EventReadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.poll_next_unpin(cx)
    }
}

impl fmt::Debug for EventSubscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventSubscription").finish_non_exhaustive()
    }
}

/// How many events [`EventReader::stream_from`] reads per page.
const STREAM_PAGE: u64 = 512;

/// Reading recorded events: by id, by query, from a position, and live.
///
/// foundation-services' EventStore implements it; the umbrella hands it to
/// other crates as an `Arc<dyn EventReader>`, beside the
/// [`EventSink`](crate::EventSink) they record through.
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use futures::StreamExt;
/// use mabeam_supervision_core::{EventReader, EventReadError, StoredEvent};
///
/// /// Every event of `stream`, oldest first, whoever stores them.
/// async fn history(
///     reader: Arc<dyn EventReader>,
///     stream: &str,
/// ) -> Result<Vec<StoredEvent>, EventReadError> {
///     let all: Vec<_> = reader.stream_from(1).collect().await;
///     Ok(all
///         .into_iter()
///         .collect::<Result<Vec<_>, _>>()?
///         .into_iter()
///         .filter(|e| e.event.stream == stream)
///         .collect())
/// }
/// ```
pub trait EventReader: Send + Sync + 'static {
    /// The event of id `id`.
    fn get(&self, id: EventSeq) -> BoxFuture<'_, Result<StoredEvent, EventReadError>>;

    /// The events matching `query`.
    fn query(&self, query: EventQuery) -> BoxFuture<'_, Result<Vec<StoredEvent>, EventReadError>>;

    /// At most `limit` events of id `from` or more, oldest first.
    fn read_from(
        &self,
        from: EventSeq,
        limit: u64,
    ) -> BoxFuture<'_, Result<Vec<StoredEvent>, EventReadError>>;

    /// The events from `from` on: the stored ones, then live ones as they
    /// are recorded (see [`EventSubscription`]).
    fn subscribe(&self, from: EventSeq) -> EventSubscription;

    /// Every stored event from `from` on, oldest first, read page by page
    /// (the replay of a log); ends at the last event stored when it gets
    /// there, or after the first error.
    fn stream_from(&self, from: EventSeq) -> BoxStream<'_, Result<StoredEvent, EventReadError>> {
        struct Paging {
            next: EventSeq,
            done: bool,
        }
        stream::unfold(
            Paging {
                next: from,
                done: false,
            },
            move |mut state| async move {
                if state.done {
                    return None;
                }
                match self.read_from(state.next, STREAM_PAGE).await {
                    Ok(page) => {
                        state.done = (page.len() as u64) < STREAM_PAGE;
                        if let Some(last) = page.last() {
                            state.next = last.id + 1;
                        }
                        Some((stream::iter(page.into_iter().map(Ok)).left_stream(), state))
                    }
                    Err(error) => {
                        state.done = true;
                        Some((
                            stream::once(async move { Err(error) }).right_stream(),
                            state,
                        ))
                    }
                }
            },
        )
        .flatten()
        .boxed()
    }
}
