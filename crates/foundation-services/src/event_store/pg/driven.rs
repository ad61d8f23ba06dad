//! A connection driven on its owner's task rather than a task of its own.
//!
//! tokio-postgres hands back a `Connection` future that moves the bytes;
//! spawned on its own task, every query is two more task wake-ups (owner
//! to connection task, and back). For the event store's writer, whose
//! callers each wake it too, that chain is longer than the runtime's
//! LIFO slot allows (three polls a tick), so an append could wake a
//! second worker. Measured on 2 cores with PostgreSQL on tmpfs, one task
//! awaiting each insert through a writer task: 71 to 79 µs a round trip
//! with the connection spawned, 29.5 to 31 driven (a bare client: 29 to
//! 30); the store's lone append, 47 to 104 µs driven against 105 to 154
//! spawned (medians of four runs each). [`Driven`] polls the owner's work
//! and its connection in one task, and keeps the wake-ups they give each
//! other inside its poll.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU8, Ordering},
    },
    task::{Context, Poll, Wake, Waker},
};

use parking_lot::Mutex;
use tokio_postgres::{Client, NoTls};

/// Not inside [`Driven::poll`].
const IDLE: u8 = 0;
/// Inside [`Driven::poll`], not woken since the pass began.
const POLLING: u8 = 1;
/// Woken during the pass: poll again before returning.
const WOKEN: u8 = 2;

/// Passes of one [`Driven::poll`] before it yields to the runtime: a
/// resource out of the task's coop budget wakes at once, and would
/// otherwise spin here.
const MAX_PASSES: usize = 32;

type Connection = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What [`Driven`] and its [`DrivenConnection`] handles share. The
/// connection is dropped (its socket closed) with the last of them.
struct Shared {
    signal: Arc<Signal>,
    /// The connection being driven; `None` before the first connect and
    /// once the server closed it.
    connection: Mutex<Option<Connection>>,
}

/// The waker given to the work and the connection. Apart from
/// [`Shared`]: the connection keeps it (in its channel), and must not
/// keep itself alive through it.
struct Signal {
    state: AtomicU8,
    /// The task's waker, from the latest poll.
    task: Mutex<Option<Waker>>,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Inside the poll: another pass picks it up.
        match self
            .state
            .compare_exchange(POLLING, WOKEN, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) | Err(WOKEN) => {}
            Err(_) => {
                if let Some(task) = self.task.lock().as_ref() {
                    task.wake_by_ref();
                }
            }
        }
    }
}

/// A handle that connects clients whose connection the paired [`Driven`]
/// future drives.
#[derive(Clone)]
pub(crate) struct DrivenConnection {
    shared: Arc<Shared>,
}

impl DrivenConnection {
    /// A handle with no connection yet.
    pub(crate) fn new() -> Self {
        DrivenConnection {
            shared: Arc::new(Shared {
                signal: Arc::new(Signal {
                    state: AtomicU8::new(IDLE),
                    task: Mutex::new(None),
                }),
                connection: Mutex::new(None),
            }),
        }
    }

    /// Connects a client, its connection driven by [`drive`](Self::drive)'s
    /// future from now on, in place of the one before (whose client is
    /// dropped or closed).
    pub(crate) async fn connect(
        &self,
        config: &tokio_postgres::Config,
    ) -> Result<Client, tokio_postgres::Error> {
        let (client, connection) = config.connect(NoTls).await?;
        self.install(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// Drives `connection` from now on, in place of the one before.
    fn install(&self, connection: impl Future<Output = ()> + Send + 'static) {
        *self.shared.connection.lock() = Some(Box::pin(connection));
        // Polled from now on, so it watches its socket.
        Wake::wake_by_ref(&self.shared.signal);
    }

    /// Runs `work` on this task, driving the connection of the client it
    /// connected last, whatever `work` awaits.
    pub(crate) fn drive<W: Future>(&self, work: W) -> Driven<W> {
        Driven {
            work: Box::pin(work),
            waker: Waker::from(self.shared.signal.clone()),
            shared: self.shared.clone(),
        }
    }
}

/// Runs some work and drives its connection in one task: see the
/// [module docs](self).
pub(crate) struct Driven<W> {
    work: Pin<Box<W>>,
    shared: Arc<Shared>,
    /// Handed to the work and the connection: it wakes the task only when
    /// woken outside its poll.
    waker: Waker,
}

impl<W: Future> Future for Driven<W> {
    type Output = W::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<W::Output> {
        let this = self.get_mut();
        let signal = &this.shared.signal;
        {
            let mut task = signal.task.lock();
            if !task.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *task = Some(cx.waker().clone());
            }
        }
        let mut inner = Context::from_waker(&this.waker);
        for _ in 0..MAX_PASSES {
            signal.state.store(POLLING, Ordering::Release);
            {
                let mut connection = this.shared.connection.lock();
                if let Some(driving) = connection.as_mut()
                    && driving.as_mut().poll(&mut inner).is_ready()
                {
                    // The server closed it: the client sees it closed.
                    *connection = None;
                }
            }
            if let Poll::Ready(done) = this.work.as_mut().poll(&mut inner) {
                signal.state.store(IDLE, Ordering::Release);
                return Poll::Ready(done);
            }
            if signal
                .state
                .compare_exchange(POLLING, IDLE, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return Poll::Pending;
            }
        }
        signal.state.store(IDLE, Ordering::Release);
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A wake from inside the poll is another pass, not a task wake-up; a
    /// wake from outside wakes the task.
    #[tokio::test]
    async fn work_woken_inside_the_poll_is_polled_again_in_the_same_poll() {
        let driven = DrivenConnection::new();
        let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
        let work = async move {
            // Sends to itself: the receiver is woken during the poll.
            let (inner_tx, inner_rx) = tokio::sync::oneshot::channel::<u32>();
            let sent = async move {
                tokio::task::yield_now().await;
                let _ = inner_tx.send(1);
            };
            let (_, got) = tokio::join!(sent, inner_rx);
            got.unwrap() + rx.await.unwrap()
        };
        let handle = tokio::spawn(driven.drive(work));
        tx.send(41).unwrap();
        assert_eq!(handle.await.unwrap(), 42);
    }

    /// The connection keeps the waker it was polled with (as a real one
    /// keeps it in its request channel); it is dropped all the same with
    /// the last handle and future, so its socket closes.
    #[tokio::test]
    async fn the_connection_is_dropped_with_the_last_handle_and_future() {
        let driven = DrivenConnection::new();
        let (_client, mut requests) = tokio::sync::mpsc::unbounded_channel::<()>();
        let (alive, mut dropped) = tokio::sync::oneshot::channel::<()>();
        driven.install(async move {
            let _alive = alive;
            while requests.recv().await.is_some() {}
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let work = tokio::spawn(driven.drive(async move {
            let _ = stopped.await;
        }));
        drop(driven);
        stop.send(()).unwrap();
        work.await.unwrap();
        // Dropped with the task's future, not later.
        assert_eq!(
            dropped.try_recv(),
            Err(tokio::sync::oneshot::error::TryRecvError::Closed),
            "the connection outlived its owners"
        );
    }
}
