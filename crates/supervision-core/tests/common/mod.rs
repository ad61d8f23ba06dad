//! A test worker for the supervisor tests: it reports its start and stop
//! into a channel (so tests wait on events, and see the order from the
//! children themselves), counts live workers, and crashes, panics, stops or
//! hangs on command. Its start can be switched to fail, panic or hang.

#![allow(dead_code, unreachable_pub)]

use std::{
    future::pending,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU8, AtomicUsize, Ordering},
    },
    time::Duration,
};

use kameo::{
    actor::{Actor, ActorRef, WeakActorRef},
    error::ActorStopReason,
    message::{Context, Message},
};
use mabeam_supervision_core::{
    ChildInfo, ChildSpec, ChildState, ProcessHandle, RestartType, StartError, Strategy, Supervisor,
    SupervisorFlags, Telemetry, testkit::TelemetryProbe,
};
use tokio::sync::{Notify, mpsc};

/// Every strategy, for tests that run once per strategy.
pub const STRATEGIES: [Strategy; 3] = [
    Strategy::OneForOne,
    Strategy::OneForAll,
    Strategy::RestForOne,
];

/// How long a test waits for an event before failing (the paused clock
/// jumps there at once if nothing can happen any more).
const PATIENCE: Duration = Duration::from_secs(600);

/// What a worker reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Its on_start completed.
    Started(String),
    /// Its on_stop began.
    Stopping(String),
    /// Its on_stop completed.
    Stopped(String),
}

pub fn started(id: &str) -> Event {
    Event::Started(id.to_owned())
}

pub fn stopped(id: &str) -> Event {
    Event::Stopped(id.to_owned())
}

/// The receiving end of the workers' reports.
#[derive(Debug)]
pub struct Events(mpsc::UnboundedReceiver<Event>);

impl Events {
    /// The next event (ignoring `Stopping`), failing the test if none comes.
    pub async fn next(&mut self) -> Event {
        loop {
            let event = tokio::time::timeout(PATIENCE, self.0.recv())
                .await
                .expect("no event came")
                .expect("event channel closed");
            if !matches!(event, Event::Stopping(_)) {
                return event;
            }
        }
    }

    /// The next `n` events (ignoring `Stopping`).
    pub async fn take(&mut self, n: usize) -> Vec<Event> {
        let mut events = Vec::with_capacity(n);
        for _ in 0..n {
            events.push(self.next().await);
        }
        events
    }

    /// Skips events until `event` comes.
    pub async fn until(&mut self, event: Event) {
        while self.next().await != event {}
    }

    /// The next event, `Stopping` included.
    pub async fn next_raw(&mut self) -> Event {
        tokio::time::timeout(PATIENCE, self.0.recv())
            .await
            .expect("no event came")
            .expect("event channel closed")
    }

    /// The events already received (ignoring `Stopping`), without waiting.
    pub fn drain(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        while let Ok(event) = self.0.try_recv() {
            if !matches!(event, Event::Stopping(_)) {
                events.push(event);
            }
        }
        events
    }
}

/// How a worker's start goes; can be switched while the test runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum StartMode {
    Ok = 0,
    /// on_start returns an error.
    Fail = 1,
    /// on_start panics.
    Panic = 2,
    /// The start never completes (for start timeouts).
    Hang = 3,
}

/// A shared switch of a worker's start mode.
#[derive(Debug, Clone, Default)]
pub struct StartSwitch(Arc<AtomicU8>);

impl StartSwitch {
    pub fn new(mode: StartMode) -> Self {
        let switch = StartSwitch::default();
        switch.set(mode);
        switch
    }

    pub fn set(&self, mode: StartMode) {
        self.0.store(mode as u8, Ordering::SeqCst);
    }

    fn get(&self) -> StartMode {
        match self.0.load(Ordering::SeqCst) {
            0 => StartMode::Ok,
            1 => StartMode::Fail,
            2 => StartMode::Panic,
            _ => StartMode::Hang,
        }
    }
}

/// Options of a worker spec.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub start: StartSwitch,
    /// on_stop waits for this before it completes.
    pub stop_gate: Option<Arc<Notify>>,
    /// on_stop makes this worker crash.
    pub crash_on_stop: Option<Arc<Mutex<Option<ActorRef<Worker>>>>>,
}

/// Where workers report, and how many are live.
#[derive(Debug, Clone)]
pub struct Lab {
    tx: mpsc::UnboundedSender<Event>,
    live: Arc<AtomicUsize>,
}

impl Lab {
    pub fn new() -> (Lab, Events) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Lab {
                tx,
                live: Arc::new(AtomicUsize::new(0)),
            },
            Events(rx),
        )
    }

    /// Workers running now (on_start done, on_stop not done).
    pub fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    /// A permanent worker spec.
    pub fn worker(&self, id: &str) -> ChildSpec {
        self.worker_with(id, Options::default())
    }

    /// A worker spec of this restart type.
    pub fn worker_of(&self, id: &str, restart: RestartType) -> ChildSpec {
        self.worker(id).with_restart(restart)
    }

    /// A permanent worker spec with options.
    pub fn worker_with(&self, id: &str, options: Options) -> ChildSpec {
        let lab = self.clone();
        let name: Arc<str> = id.into();
        ChildSpec::new(id, move || {
            let args = WorkerArgs {
                id: name.clone(),
                lab: lab.clone(),
                options: options.clone(),
            };
            let mode = options.start.get();
            async move {
                if mode == StartMode::Hang {
                    pending::<()>().await;
                }
                ProcessHandle::spawn::<Worker>(args).await
            }
        })
    }

    /// A spec whose start factory itself fails (no actor is spawned).
    pub fn failing(&self, id: &str) -> ChildSpec {
        ChildSpec::new(id, || async { Err(StartError::failed("refused")) })
    }
}

pub struct WorkerArgs {
    id: Arc<str>,
    lab: Lab,
    options: Options,
}

/// The test worker.
pub struct Worker {
    id: Arc<str>,
    lab: Lab,
    options: Options,
    /// Its on_stop finished; else it was killed and leaves the live count
    /// as it is dropped.
    stopped: bool,
}

impl Drop for Worker {
    fn drop(&mut self) {
        if !self.stopped {
            self.lab.live.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Actor for Worker {
    type Args = WorkerArgs;
    type Error = String;

    async fn on_start(args: WorkerArgs, _: ActorRef<Self>) -> Result<Self, String> {
        match args.options.start.get() {
            StartMode::Fail => return Err("refused to start".to_owned()),
            StartMode::Panic => panic!("start panicked"),
            StartMode::Ok | StartMode::Hang => {}
        }
        args.lab.live.fetch_add(1, Ordering::SeqCst);
        let _ = args.lab.tx.send(Event::Started(args.id.to_string()));
        Ok(Worker {
            id: args.id,
            lab: args.lab,
            options: args.options,
            stopped: false,
        })
    }

    async fn on_stop(&mut self, _: WeakActorRef<Self>, _: ActorStopReason) -> Result<(), String> {
        let _ = self.lab.tx.send(Event::Stopping(self.id.to_string()));
        if let Some(other) = self.options.crash_on_stop.as_ref() {
            let other = other.lock().unwrap().take();
            if let Some(other) = other {
                let _ = other.tell(Crash).await;
            }
        }
        if let Some(gate) = &self.options.stop_gate {
            gate.notified().await;
        }
        self.stopped = true;
        self.lab.live.fetch_sub(1, Ordering::SeqCst);
        let _ = self.lab.tx.send(Event::Stopped(self.id.to_string()));
        Ok(())
    }
}

/// Fail: the handler returns an error.
pub struct Crash;

impl Message<Crash> for Worker {
    type Reply = Result<(), String>;

    async fn handle(&mut self, _: Crash, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
        Err("crashed".to_owned())
    }
}

/// Panic in the handler.
pub struct Panic;

impl Message<Panic> for Worker {
    type Reply = ();

    async fn handle(&mut self, _: Panic, _: &mut Context<Self, Self::Reply>) {
        panic!("boom");
    }
}

/// Stop by itself: a normal exit.
pub struct Finish;

impl Message<Finish> for Worker {
    type Reply = ();

    async fn handle(&mut self, _: Finish, ctx: &mut Context<Self, Self::Reply>) {
        ctx.stop();
    }
}

/// Hang in a handler forever, so a stop request is never reached.
pub struct Hang;

impl Message<Hang> for Worker {
    type Reply = ();

    async fn handle(&mut self, _: Hang, _: &mut Context<Self, Self::Reply>) {
        pending::<()>().await;
    }
}

/// How a test makes a child exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Normal,
    Shutdown,
    Error,
    Panic,
    Killed,
}

/// Makes the child `id` of `sup` exit by `exit`; returns its handle.
pub async fn make_exit(sup: &Supervisor, id: &str, exit: Exit) -> ProcessHandle {
    let handle = handle_of(sup, id).await;
    let worker: ActorRef<Worker> = handle.downcast().expect("a test worker");
    match exit {
        Exit::Normal => worker.tell(Finish).await.unwrap(),
        Exit::Shutdown => {
            handle.request_stop().await;
        }
        Exit::Error => worker.tell(Crash).await.unwrap(),
        Exit::Panic => worker.tell(Panic).await.unwrap(),
        Exit::Killed => handle.kill(),
    }
    handle
}

/// The handle of the running child `id`.
pub async fn handle_of(sup: &Supervisor, id: &str) -> ProcessHandle {
    child_info(sup, id)
        .await
        .and_then(|info| info.state.handle().cloned())
        .unwrap_or_else(|| panic!("child {id} is not running"))
}

/// The typed ref of the running worker `id`.
pub async fn worker(sup: &Supervisor, id: &str) -> ActorRef<Worker> {
    handle_of(sup, id).await.downcast().expect("a test worker")
}

/// What `which_children` says of `id`.
pub async fn child_info(sup: &Supervisor, id: &str) -> Option<ChildInfo> {
    sup.which_children()
        .await
        .unwrap()
        .into_iter()
        .find(|info| &*info.id == id)
}

/// The state of each child, in list order.
pub async fn states(sup: &Supervisor) -> Vec<(String, ChildState)> {
    sup.which_children()
        .await
        .unwrap()
        .into_iter()
        .map(|info| (info.id.to_string(), info.state))
        .collect()
}

/// A supervisor's telemetry, watched: flags that carry it, and waits on its
/// events. Every change of a supervisor's children (an exit handled, a
/// restart, a failed start, a termination, a backoff) is reported as an
/// event while the supervisor handles it, so a test waits on those events,
/// never by polling.
pub struct Watch {
    telemetry: Telemetry,
    probe: TelemetryProbe,
}

impl Watch {
    pub fn new() -> Self {
        let telemetry = Telemetry::new();
        let probe = TelemetryProbe::attach(&telemetry, &["supervisor"]);
        Watch { telemetry, probe }
    }

    /// The telemetry to give the watched supervisor.
    pub fn telemetry(&self) -> Telemetry {
        self.telemetry.clone()
    }

    /// [`roomy`] flags reporting to this watch.
    pub fn roomy(&self, strategy: Strategy) -> SupervisorFlags {
        roomy(strategy).with_telemetry(self.telemetry())
    }

    /// Waits until `done` holds of the supervisor's children: asks, and if
    /// it does not hold yet, waits for the supervisor's next event (the
    /// answer to the next ask comes after the handling that reported it).
    pub async fn until(&mut self, sup: &Supervisor, mut done: impl FnMut(&[ChildInfo]) -> bool) {
        loop {
            let children = sup.which_children().await.unwrap();
            if done(&children) {
                return;
            }
            self.probe
                .next(PATIENCE)
                .await
                .expect("the supervisor never got there");
        }
    }

    /// Waits until the supervisor no longer lists `old` as running under
    /// `id`.
    pub async fn handled(&mut self, sup: &Supervisor, id: &str, old: &ProcessHandle) {
        self.until(sup, |children| {
            !children
                .iter()
                .any(|c| &*c.id == id && c.state.handle() == Some(old))
        })
        .await;
    }
}

/// Flags with this strategy and room for many restarts.
pub fn roomy(strategy: Strategy) -> SupervisorFlags {
    SupervisorFlags::new(strategy).with_intensity(1_000, Duration::from_secs(5))
}
