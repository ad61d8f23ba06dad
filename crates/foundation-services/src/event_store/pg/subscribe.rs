//! Subscriptions on PostgreSQL: read the table by position, a page at a
//! time, then wait for a wake-up; and the listener, one dedicated
//! connection per store that turns `NOTIFY`s into wake-ups and
//! reconnects with the backoff when PostgreSQL restarts.

use std::{
    collections::VecDeque,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use futures::{StreamExt, stream};
use mabeam_supervision_core::{EventReadError, EventSeq, EventSubscription, StoredEvent};
use tokio::sync::watch;
use tokio_postgres::{AsyncMessage, NoTls};

use super::{PgCore, writer::channel};
use crate::{event_store::EventStoreError, postgres::PostgresConfig};

/// The events read per page.
const PAGE: u64 = 512;

struct State {
    core: Arc<PgCore>,
    next: EventSeq,
    buffer: VecDeque<StoredEvent>,
    wake: watch::Receiver<u64>,
    attempt: u32,
    done: bool,
}

/// A subscription to `core` from position `from`.
pub(crate) fn subscribe(core: Arc<PgCore>, from: EventSeq) -> EventSubscription {
    let state = State {
        wake: core.wake.subscribe(),
        core,
        next: from.max(1),
        buffer: VecDeque::new(),
        attempt: 0,
        done: false,
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
            if self.done {
                return None;
            }
            if self.core.is_closing() {
                return self.end(EventStoreError::unavailable("the store stopped"));
            }
            // Marked seen before the read: a commit after it wakes us.
            self.wake.borrow_and_update();
            match self.core.reads().read_from(self.next, PAGE).await {
                Ok(page) => {
                    self.attempt = 0;
                    let full = page.len() as u64 == PAGE;
                    self.buffer.extend(page);
                    if !full && self.buffer.is_empty() && self.wake.changed().await.is_err() {
                        return self.end(EventStoreError::unavailable("the store stopped"));
                    }
                }
                Err(EventStoreError::Unavailable(_)) if !self.core.is_closing() => {
                    // PostgreSQL restarting: retry from the last position
                    // delivered.
                    let wait = self.core.pg.reconnect.delay(self.attempt);
                    self.attempt = self.attempt.saturating_add(1);
                    tokio::time::sleep(wait).await;
                }
                Err(error) => return self.end(error),
            }
        }
    }

    fn end(&mut self, error: EventStoreError) -> Option<Result<StoredEvent, EventReadError>> {
        self.done = true;
        Some(Err(error.into()))
    }
}

/// The listener: `LISTEN`s on one connection, bumps `wake` on every
/// notification and on every (re)connection, and reconnects with the
/// backoff when the connection drops. Runs until aborted.
pub(crate) async fn listen(
    driver: tokio_postgres::Config,
    pg: PostgresConfig,
    wake: Arc<watch::Sender<u64>>,
    ready: Arc<AtomicBool>,
) {
    let listen = format!("LISTEN \"{}\"", channel(&pg));
    let mut attempt = 0u32;
    loop {
        let connected = if ready.load(Ordering::Acquire) {
            driver.connect(NoTls).await.ok()
        } else {
            None
        };
        if let Some((client, mut connection)) = connected {
            let messages = stream::poll_fn(move |cx| connection.poll_message(cx));
            let wake_on = wake.clone();
            let driving = tokio::spawn(async move {
                futures::pin_mut!(messages);
                while let Some(message) = messages.next().await {
                    match message {
                        Ok(AsyncMessage::Notification(_)) => wake_on.send_modify(|n| *n += 1),
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
            });
            if client.batch_execute(&listen).await.is_ok() {
                attempt = 0;
                // Whatever was committed while we were away.
                wake.send_modify(|n| *n += 1);
            }
            let _ = driving.await;
            drop(client);
            wake.send_modify(|n| *n += 1);
        }
        tokio::time::sleep(pg.reconnect.delay(attempt)).await;
        attempt = attempt.saturating_add(1);
    }
}
