//! `GET /api/observer/stream`: the page's one subscription, as
//! Server-Sent Events.
//!
//! Messages, by SSE event name: `hello` (the node's boot id; the page
//! resets when it changes), `history` (every metric sample kept), then
//! with each frame `system`, `tree`, `health`, `cluster` and `sample`;
//! and `event`, one per stored event, whose SSE `id` is its position in
//! the EventStore. A reconnecting `EventSource` sends the last id it saw
//! as `Last-Event-ID`; the tail resumes right after it. Without one the
//! tail starts [`TAIL`](super::TAIL) events back.
//!
//! The answer is 200 whatever the node's health: while the store is
//! unavailable the tail is retried at each frame, and frames keep coming.

use std::{convert::Infallible, sync::Arc, time::Duration};

use axum::{
    extract::{Query, State},
    http::HeaderMap,
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use futures::{Stream, stream};
use mabeam_supervision_core::{EventQuery, EventReadError, EventSubscription, StoredEvent};
use serde::Deserialize;
use tokio::sync::watch;

use super::{Observer, TAIL, sampler};
use crate::http::ApiState;

/// How long the browser waits before reconnecting (SSE `retry`).
const RETRY: Duration = Duration::from_millis(1000);

/// The query: `after` stands in for `Last-Event-ID` (the header wins).
#[derive(Debug, Deserialize)]
pub(super) struct StreamQuery {
    after: Option<u64>,
}

struct Tail {
    observer: Observer,
    frames: watch::Receiver<Arc<sampler::Frame>>,
    closed: watch::Receiver<bool>,
    /// The position of the last event sent (0: none yet).
    after: Option<u64>,
    events: Option<EventSubscription>,
    /// Messages queued for sending, in order.
    queue: std::collections::VecDeque<Event>,
}

/// The stream's handler.
pub(super) async fn stream(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(query): Query<StreamQuery>,
) -> Response {
    let observer = state.observer.clone();
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .or(query.after);
    Sse::new(events(observer, after))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

fn frame_events(frame: &sampler::Frame, queue: &mut std::collections::VecDeque<Event>) {
    for (name, data) in &frame.parts {
        queue.push_back(Event::default().event(*name).data(data.as_str()));
    }
    if let Some(sample) = &frame.sample {
        queue.push_back(Event::default().event("sample").data(sample.as_str()));
    }
}

fn stored_event(event: &StoredEvent) -> Event {
    Event::default()
        .event("event")
        .id(event.id.to_string())
        .data(serde_json::to_string(event).unwrap_or_default())
}

/// The messages of one stream (see the module docs).
pub(super) fn events(
    observer: Observer,
    after: Option<u64>,
) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    let mut frames = observer.frames();
    let mut queue = std::collections::VecDeque::new();
    queue.push_back(
        Event::default()
            .event("hello")
            .retry(RETRY)
            .data(serde_json::json!({"boot": observer.inner.boot}).to_string()),
    );
    queue.push_back(
        Event::default()
            .event("history")
            .data(sampler::history(&observer.inner)),
    );
    frame_events(&frames.borrow_and_update(), &mut queue);
    let closed = observer.inner.closed.subscribe();
    let tail = Tail {
        observer,
        frames,
        closed,
        after,
        events: None,
        queue,
    };
    stream::unfold(tail, |mut tail| async move {
        let event = tail.next().await?;
        Some((Ok(event), tail))
    })
}

impl Tail {
    /// Opens the store's subscription from where the stream stands.
    async fn subscribe(&mut self) {
        // A system without an event store (a subset) has no events.
        let Some(store) = self.observer.inner.system.event_store() else {
            return;
        };
        let after = match self.after {
            Some(after) => after,
            None => {
                let query = EventQuery::new().descending().limit(1);
                match store.query(query).await {
                    Ok(last) => {
                        let newest = last.first().map_or(0, |e| e.id);
                        let after = newest.saturating_sub(TAIL);
                        self.after = Some(after);
                        after
                    }
                    // Unavailable: retried at the next frame.
                    Err(_) => return,
                }
            }
        };
        self.events = Some(store.subscribe(after + 1));
    }

    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                return Some(event);
            }
            if self.events.is_none() {
                self.subscribe().await;
            }
            tokio::select! {
                // Frames first: a busy event tail must not starve them.
                biased;
                // The node is stopping: end, so the server can stop.
                () = closed(&mut self.closed) => return None,
                changed = self.frames.changed() => {
                    // The sampler stopped: the node is stopping.
                    changed.ok()?;
                    let frame = self.frames.borrow_and_update().clone();
                    frame_events(&frame, &mut self.queue);
                }
                item = next_event(&mut self.events) => match item {
                    Some(Ok(event)) => {
                        self.after = Some(event.id);
                        return Some(stored_event(&event));
                    }
                    // Lagged, unavailable or ended: resubscribe from the
                    // last event sent, at the next frame.
                    Some(Err(_)) | None => {
                        self.events = None;
                        let _ = self.frames.changed().await;
                        let frame = self.frames.borrow_and_update().clone();
                        frame_events(&frame, &mut self.queue);
                    }
                },
            }
        }
    }
}

/// Resolves once the node is stopping (never holds the channel's guard
/// across an await: the stream must be `Send`).
async fn closed(closed: &mut watch::Receiver<bool>) {
    let _ = closed.wait_for(|closed| *closed).await;
}

/// The subscription's next event; pending forever without one.
async fn next_event(
    events: &mut Option<EventSubscription>,
) -> Option<Result<StoredEvent, EventReadError>> {
    match events {
        Some(events) => events.next().await,
        None => std::future::pending().await,
    }
}
