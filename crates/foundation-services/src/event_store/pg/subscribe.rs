//! Subscriptions on PostgreSQL: read the table by position, a page at a
//! time, then wait for a wake-up; and the listener, one dedicated
//! connection per store that turns `NOTIFY`s into wake-ups, registers
//! (an advisory lock) while the store has subscribers so that writers
//! notify, and reconnects with the backoff when PostgreSQL restarts.

use std::{
    collections::VecDeque,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use futures::{StreamExt, stream};
use mabeam_supervision_core::{EventReadError, EventSeq, EventSubscription, StoredEvent};
use tokio::sync::{Notify, watch};
use tokio_postgres::{AsyncMessage, NoTls};

use super::{
    PgCore,
    writer::{LISTENING, NOT_LISTENING, channel},
};
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
    let wake = core.wake.subscribe();
    // The listener registers now that there is a subscriber (its
    // receiver counts), then wakes it.
    core.subscribed.notify_one();
    let state = State {
        wake,
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
/// backoff when the connection drops. While the store has subscribers
/// (receivers of `wake`; `subscribed` is told of each new one) it holds
/// the listeners' lock ([`LISTENING`]), so that writers notify; once it
/// holds the lock it wakes every subscriber, whose read then sees every
/// commit that found no listener (such a commit held the lock: we waited
/// for it). Runs until aborted.
pub(crate) async fn listen(
    driver: tokio_postgres::Config,
    pg: PostgresConfig,
    wake: Arc<watch::Sender<u64>>,
    subscribed: Arc<Notify>,
    ready: Arc<AtomicBool>,
) {
    let channel = channel(&pg);
    let listen = format!("LISTEN \"{channel}\"");
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
            let mut driving = tokio::spawn(async move {
                futures::pin_mut!(messages);
                while let Some(message) = messages.next().await {
                    match message {
                        Ok(AsyncMessage::Notification(_)) => wake_on.send_modify(|n| *n += 1),
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
            });
            let mut ended = false;
            if client.batch_execute(&listen).await.is_ok() {
                attempt = 0;
                // Whatever was committed while we were away.
                wake.send_modify(|n| *n += 1);
                let mut holding = false;
                loop {
                    let wanted = wake.receiver_count() > 0;
                    if wanted != holding {
                        let sql = if wanted { LISTENING } else { NOT_LISTENING };
                        if client.query(sql, &[&channel]).await.is_err() {
                            break;
                        }
                        holding = wanted;
                        if holding {
                            wake.send_modify(|n| *n += 1);
                        }
                        continue;
                    }
                    tokio::select! {
                        _ = &mut driving => {
                            ended = true;
                            break;
                        }
                        () = subscribed.notified(), if !holding => {}
                        () = wake.closed(), if holding => {}
                    }
                }
            }
            // Dropping the client ends a connection still open (a failed
            // statement), so the driving task ends too.
            drop(client);
            if !ended {
                let _ = driving.await;
            }
            wake.send_modify(|n| *n += 1);
        }
        tokio::time::sleep(pg.reconnect.delay(attempt)).await;
        attempt = attempt.saturating_add(1);
    }
}
