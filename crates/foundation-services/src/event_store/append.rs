//! Appending: what an append expects of its stream ([`ExpectedVersion`]),
//! what it answers ([`Appended`]), the futures that carry the answer
//! ([`Appending`], [`AppendingBatch`]), and the checks run before anything
//! reaches the writer.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use mabeam_supervision_core::{Event, EventSeq};
use tokio::sync::oneshot;

use super::EventStoreError;

/// What an append expects of its stream's version (optimistic
/// concurrency, as EventStoreDB and Marten offer it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ExpectedVersion {
    /// Whatever the version (no check; the default).
    #[default]
    Any,
    /// The stream has no event yet.
    NoStream,
    /// The stream has at least one event (whatever its version).
    StreamExists,
    /// The stream's last event has this version.
    Exact(u64),
}

impl ExpectedVersion {
    /// Whether a stream at `version` (0: no event) meets the expectation.
    pub fn admits(self, version: u64) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => version == 0,
            ExpectedVersion::StreamExists => version > 0,
            ExpectedVersion::Exact(expected) => version == expected,
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any version"),
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::StreamExists => f.write_str("an existing stream"),
            ExpectedVersion::Exact(version) => write!(f, "version {version}"),
        }
    }
}

/// An acknowledged append: the event is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Appended {
    /// The event's id (its position in the log).
    pub id: EventSeq,
    /// Its version within its stream.
    pub stream_version: u64,
    /// Whether an event with the same idempotency key was already stored:
    /// then nothing was written, and `id` and `stream_version` are that
    /// event's.
    pub duplicate: bool,
}

/// An event checked and encoded for the writer.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) event: Event,
    pub(crate) node: String,
    pub(crate) data: String,
    pub(crate) metadata: Option<String>,
    pub(crate) timestamp_ms: u64,
}

/// The largest stream name, kind and idempotency key, in bytes.
const MAX_NAME_BYTES: usize = 256;

/// Checks `event` (at `index` in its batch) and encodes it. A kind is
/// 1-256 bytes of ASCII letters, digits and `_ - . : /`; a stream or an
/// idempotency key 1-256 bytes without control characters.
pub(crate) fn prepare(
    index: usize,
    event: Event,
    node: &str,
    max_bytes: usize,
    timestamp_ms: u64,
) -> Result<Prepared, EventStoreError> {
    let invalid = |reason: String| EventStoreError::InvalidEvent { index, reason };
    check_name("stream", &event.stream).map_err(invalid)?;
    if event.kind.is_empty() || event.kind.len() > MAX_NAME_BYTES {
        return Err(invalid(format!(
            "kind must be 1 to {MAX_NAME_BYTES} bytes, got {}",
            event.kind.len()
        )));
    }
    if let Some(bad) = event
        .kind
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_-.:/".contains(*c)))
    {
        return Err(invalid(format!(
            "kind {:?} has {bad:?}: only ASCII letters, digits and _ - . : / are allowed",
            event.kind
        )));
    }
    if let Some(key) = &event.idempotency_key {
        check_name("idempotency key", key).map_err(invalid)?;
    }
    if let Some(correlation_id) = &event.correlation_id {
        check_name("correlation id", correlation_id).map_err(invalid)?;
    }
    if let Some(node) = &event.node {
        check_name("node", node).map_err(invalid)?;
    }
    if let Some(parent) = event.causation_id
        && i64::try_from(parent).is_err()
    {
        return Err(invalid(format!("causation id {parent} is out of range")));
    }
    let data = serde_json::to_string(&event.data).map_err(|e| invalid(e.to_string()))?;
    let metadata = if event.metadata.is_empty() {
        None
    } else {
        Some(serde_json::to_string(&event.metadata).map_err(|e| invalid(e.to_string()))?)
    };
    let size = data.len() + metadata.as_ref().map_or(0, String::len);
    if size > max_bytes {
        return Err(EventStoreError::TooLarge {
            index,
            size,
            limit: max_bytes,
        });
    }
    let node = event.node.clone().unwrap_or_else(|| node.to_owned());
    Ok(Prepared {
        event,
        node,
        data,
        metadata,
        timestamp_ms,
    })
}

fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(format!(
            "{what} must be 1 to {MAX_NAME_BYTES} bytes, got {}",
            name.len()
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("{what} {name:?} has a control character"));
    }
    Ok(())
}

pub(crate) type BatchReply = oneshot::Sender<Result<Vec<Appended>, EventStoreError>>;

/// The answer of a batch in flight: ready at once when the batch was
/// refused before reaching the writer.
enum Pending {
    Refused(Option<EventStoreError>),
    Queued(oneshot::Receiver<Result<Vec<Appended>, EventStoreError>>),
}

impl Pending {
    fn poll_batch(&mut self, cx: &mut Context<'_>) -> Poll<Result<Vec<Appended>, EventStoreError>> {
        match self {
            Pending::Refused(error) => Poll::Ready(Err(error
                .take()
                .unwrap_or_else(|| EventStoreError::unavailable("answer already taken")))),
            Pending::Queued(reply) => Pin::new(reply).poll(cx).map(|answer| {
                answer.unwrap_or_else(|_closed| {
                    Err(EventStoreError::unavailable(
                        "the store stopped before acknowledging the append",
                    ))
                })
            }),
        }
    }
}

/// An append in flight: completes once the event is durable (or refused).
///
/// The append is queued when [`EventStore::append`](super::EventStore::append)
/// returns, before this future is first polled: a caller may queue many
/// appends and await only the last one, since the store commits in queue
/// order (a pipelined producer; see the module docs).
#[must_use = "the append is queued, but its acknowledgement is only known by awaiting"]
pub struct Appending(Pending);

impl Appending {
    pub(crate) fn refused(error: EventStoreError) -> Self {
        Appending(Pending::Refused(Some(error)))
    }

    pub(crate) fn queued(reply: oneshot::Receiver<Result<Vec<Appended>, EventStoreError>>) -> Self {
        Appending(Pending::Queued(reply))
    }
}

impl Future for Appending {
    type Output = Result<Appended, EventStoreError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.poll_batch(cx).map(|answer| {
            answer.and_then(|appended| {
                appended
                    .first()
                    .copied()
                    .ok_or_else(|| EventStoreError::storage("the writer answered no event"))
            })
        })
    }
}

impl fmt::Debug for Appending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Appending").finish_non_exhaustive()
    }
}

/// A batch in flight: completes once every event of it is durable, or none
/// was written.
#[must_use = "the batch is queued, but its acknowledgement is only known by awaiting"]
pub struct AppendingBatch(Pending);

impl AppendingBatch {
    pub(crate) fn refused(error: EventStoreError) -> Self {
        AppendingBatch(Pending::Refused(Some(error)))
    }

    pub(crate) fn queued(reply: oneshot::Receiver<Result<Vec<Appended>, EventStoreError>>) -> Self {
        AppendingBatch(Pending::Queued(reply))
    }
}

impl Future for AppendingBatch {
    type Output = Result<Vec<Appended>, EventStoreError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.poll_batch(cx)
    }
}

impl fmt::Debug for AppendingBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppendingBatch").finish_non_exhaustive()
    }
}
