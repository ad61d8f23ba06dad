//! One incarnation of an open store: its writer thread, its readers, its
//! live feed and its lock. [`EventStore`](super::EventStore) handles reach
//! the current one.

use std::{
    collections::HashMap,
    fs::File,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
};

use mabeam_supervision_core::StoredEvent;
use parking_lot::Mutex;
use tokio::sync::{broadcast, watch};

use super::{
    EventStoreConfig, EventStoreError,
    read::Readers,
    schema,
    writer::{Counters, Request, Writer},
};

pub(crate) struct StoreCore {
    pub(crate) requests: crossbeam_channel::Sender<Request>,
    pub(crate) readers: Readers,
    pub(crate) counters: Arc<Counters>,
    live: Mutex<Option<broadcast::Sender<Arc<StoredEvent>>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    writer_running: watch::Receiver<bool>,
    lock: Mutex<Option<File>>,
    closing: AtomicBool,
}

/// Tells the store's watchers when the writer thread ends, however it
/// ends (a panic included).
struct ExitSignal(watch::Sender<bool>);

impl Drop for ExitSignal {
    fn drop(&mut self) {
        let _ = self.0.send(false);
    }
}

impl StoreCore {
    /// Opens the store (blocking: call it from `spawn_blocking`).
    pub(crate) fn open(config: EventStoreConfig) -> Result<Arc<StoreCore>, EventStoreError> {
        config.validate()?;
        let (conn, lock) = schema::open_writer(&config)?;
        let path = config.database_path();
        let (requests, queue) = crossbeam_channel::unbounded();
        let (live, _) = broadcast::channel(config.subscriber_buffer);
        let counters = Arc::new(Counters::default());
        let (running_tx, writer_running) = watch::channel(true);
        let writer = Writer {
            conn,
            path: path.clone(),
            requests: queue,
            live: live.clone(),
            counters: counters.clone(),
            max_group: config.max_group,
            streams: HashMap::new(),
            retention: config.retention,
            clock: config.clock.clone(),
            telemetry: config.telemetry.clone(),
            retain_at: std::time::Instant::now(),
            more_to_prune: false,
        };
        let thread = std::thread::Builder::new()
            .name("event-store-writer".into())
            .spawn(move || {
                let _signal = ExitSignal(running_tx);
                writer.run();
            })
            .map_err(EventStoreError::storage)?;
        Ok(Arc::new(StoreCore {
            readers: Readers::new(path, config.max_idle_readers, config.cache_kib),
            requests,
            counters,
            live: Mutex::new(Some(live)),
            writer: Mutex::new(Some(thread)),
            writer_running,
            lock: Mutex::new(Some(lock)),
            closing: AtomicBool::new(false),
        }))
    }

    /// Whether the store accepts requests.
    pub(crate) fn is_open(&self) -> bool {
        !self.closing.load(Ordering::Acquire) && *self.writer_running.borrow()
    }

    /// Queues a request for the writer.
    pub(crate) fn send(&self, request: Request) -> Result<(), EventStoreError> {
        if !self.is_open() {
            return Err(EventStoreError::unavailable("the store is closed"));
        }
        self.requests
            .send(request)
            .map_err(|_| EventStoreError::unavailable("the writer has stopped"))
    }

    /// A receiver of the events committed from now on.
    pub(crate) fn live(&self) -> Option<broadcast::Receiver<Arc<StoredEvent>>> {
        self.live.lock().as_ref().map(broadcast::Sender::subscribe)
    }

    /// Completes when the writer thread has ended.
    pub(crate) async fn writer_ended(&self) {
        let mut running = self.writer_running.clone();
        let _ = running.wait_for(|running| !running).await;
    }

    /// Whether [`close`](Self::close) was called.
    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Runs `read` on a reader connection, off the async threads.
    pub(crate) async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        read: impl FnOnce(&StoreCore) -> Result<T, EventStoreError> + Send + 'static,
    ) -> Result<T, EventStoreError> {
        if self.is_closing() {
            return Err(EventStoreError::unavailable("the store is closed"));
        }
        let core = self.clone();
        tokio::task::spawn_blocking(move || read(&core))
            .await
            .map_err(|e| EventStoreError::storage(format!("read task failed: {e}")))?
    }

    /// Finishes the queued requests, stops the writer, ends the live feed
    /// and releases the lock (blocking: call it from `spawn_blocking`).
    /// Requests after it are refused as unavailable.
    pub(crate) fn close(&self) {
        self.closing.store(true, Ordering::Release);
        let _ = self.requests.send(Request::Shutdown);
        if let Some(thread) = self.writer.lock().take() {
            let _ = thread.join();
        }
        self.live.lock().take();
        self.readers.clear();
        self.lock.lock().take();
    }
}

impl Drop for StoreCore {
    fn drop(&mut self) {
        self.close();
    }
}
