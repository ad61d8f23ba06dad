//! Subscriptions: the stored events from a position, then live ones, with
//! no gap and no duplicate across the hand-over.
//!
//! The hand-over: a subscriber first subscribes to the writer's live feed,
//! then reads the stored events. Every event committed before that read is
//! in it (the feed is published after each commit); every event committed
//! after it reaches the feed, which was listening before the read began.
//! Events in both are skipped by id. While the stored events fill whole
//! pages the subscriber is catching up and drops the feed between pages,
//! so a long replay never overflows it. Once live, a subscriber that falls
//! more than the buffer behind gets [`EventReadError::Lagged`] with the
//! position to resume from, and the subscription ends.

use std::{collections::VecDeque, sync::Arc};

use futures::stream;
use mabeam_supervision_core::{EventReadError, EventSeq, EventSubscription, StoredEvent};
use tokio::sync::broadcast::{self, error::RecvError};

use super::{EventStoreError, core::StoreCore, read};

/// The events read per page while catching up.
const PAGE: u64 = 512;

enum Phase {
    CatchUp,
    Live(broadcast::Receiver<Arc<StoredEvent>>),
    Done,
}

struct State {
    core: Arc<StoreCore>,
    next: EventSeq,
    buffer: VecDeque<StoredEvent>,
    phase: Phase,
}

/// A subscription to `core` from position `from`.
pub(crate) fn subscribe(core: Arc<StoreCore>, from: EventSeq) -> EventSubscription {
    let state = State {
        core,
        next: from.max(1),
        buffer: VecDeque::new(),
        phase: Phase::CatchUp,
    };
    EventSubscription::new(stream::unfold(state, |mut state| async move {
        let item = state.advance().await?;
        Some((item, state))
    }))
}

impl State {
    async fn advance(&mut self) -> Option<Result<StoredEvent, EventReadError>> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                self.next = event.id + 1;
                return Some(Ok(event));
            }
            match &mut self.phase {
                Phase::Done => return None,
                Phase::CatchUp => {
                    let Some(live) = self.core.live() else {
                        return self.end(EventStoreError::unavailable("the store is closed"));
                    };
                    let from = self.next;
                    let page = self
                        .core
                        .read(move |core| {
                            core.readers
                                .with(|conn| read::read_from(conn, core.readers.path(), from, PAGE))
                        })
                        .await;
                    match page {
                        Err(error) => return self.end(error),
                        Ok(page) => {
                            if page.len() as u64 == PAGE {
                                drop(live);
                            } else {
                                self.phase = Phase::Live(live);
                            }
                            self.buffer.extend(page);
                        }
                    }
                }
                Phase::Live(live) => match live.recv().await {
                    Ok(event) if event.id < self.next => continue,
                    Ok(event) => {
                        self.next = event.id + 1;
                        return Some(Ok(Arc::unwrap_or_clone(event)));
                    }
                    Err(RecvError::Lagged(_)) => {
                        let resume_from = self.next;
                        return self.end(EventStoreError::Lagged { resume_from });
                    }
                    Err(RecvError::Closed) => {
                        return self.end(EventStoreError::unavailable("the store stopped"));
                    }
                },
            }
        }
    }

    fn end(&mut self, error: EventStoreError) -> Option<Result<StoredEvent, EventReadError>> {
        self.phase = Phase::Done;
        Some(Err(error.into()))
    }
}
