//! Test helpers (feature `testkit`): wait on telemetry events instead of
//! sleeping, and test children that crash, stop or hang on command.
//!
//! - [`TelemetryProbe`] attaches to a [`Telemetry`] handle and awaits a given
//!   event with a timeout (on tokio's paused clock the timeout costs no real
//!   time).
//! - [`TestKit`] makes [`ChildSpec`]s of [`TestChild`], an actor that reports
//!   its start and stop through a channel, counts itself live, and obeys
//!   [`crash`], [`panic()`], [`exit_normally`] and [`hang`].
//! - [`advance`] moves tokio's paused clock and lets woken tasks run.
//! - [`ScriptedDirectory`] is an `AgentDirectory` of scripted agents whose
//!   answers a test controls ([`Answer`]), for crates that talk to agents
//!   through the contract.

mod directory;

pub use directory::{Answer, Script, ScriptedDirectory};

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use kameo::{
    actor::{Actor, ActorId, ActorRef, WeakActorRef},
    error::ActorStopReason,
    message::{Context, Message},
};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use crate::{ChildSpec, ExitReason, OwnedEvent, OwnedMetaValue, ProcessHandle, Telemetry};

/// A telemetry event as a probe recorded it: the [`OwnedEvent`] any
/// handler can keep ([`TelemetryEvent::to_owned_event`](crate::TelemetryEvent::to_owned_event)).
pub type RecordedEvent = OwnedEvent;

/// A metadata value of a [`RecordedEvent`]: an [`OwnedMetaValue`].
pub type OwnedMeta = OwnedMetaValue;

/// The wait for an event ran out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no telemetry event {name:?} within {timeout:?}")]
pub struct ProbeTimeout {
    /// The awaited event's name.
    pub name: String,
    /// How long the probe waited.
    pub timeout: Duration,
}

/// Records the telemetry events under a prefix, so a test can await them.
/// Detaches itself when dropped.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use mabeam_supervision_core::{Telemetry, testkit::TelemetryProbe};
///
/// # #[tokio::main] async fn main() {
/// let telemetry = Telemetry::new();
/// let mut probe = TelemetryProbe::attach(&telemetry, &["job"]);
/// telemetry.emit(&["job", "done"], &[("items", 3.0)], &[]);
/// let event = probe.wait_for(&["job", "done"], Duration::from_secs(1)).await.unwrap();
/// assert_eq!(event.measurement("items"), Some(3.0));
/// # }
/// ```
pub struct TelemetryProbe {
    telemetry: Telemetry,
    handler_id: String,
    events: UnboundedReceiver<RecordedEvent>,
}

impl TelemetryProbe {
    /// Attaches a probe for every event whose name starts with `prefix`.
    ///
    /// # Panics
    ///
    /// If `telemetry` is the disabled handle: a probe on it could never see
    /// anything, which is a bug in the test.
    pub fn attach(telemetry: &Telemetry, prefix: &[&str]) -> Self {
        let (tx, events) = unbounded_channel();
        let handler_id = format!("testkit-probe-{}", crate::Namespace::unique_test());
        telemetry
            .attach(handler_id.clone(), prefix, move |event| {
                let _ = tx.send(event.to_owned_event());
            })
            .expect("a probe needs an enabled Telemetry handle");
        TelemetryProbe {
            telemetry: telemetry.clone(),
            handler_id,
            events,
        }
    }

    /// The next recorded event, whatever its name.
    pub async fn next(&mut self, timeout: Duration) -> Result<RecordedEvent, ProbeTimeout> {
        self.next_where(|_| true, "any", timeout).await
    }

    /// Skips events until one named `name` arrives.
    pub async fn wait_for(
        &mut self,
        name: &[&str],
        timeout: Duration,
    ) -> Result<RecordedEvent, ProbeTimeout> {
        self.next_where(|e| e.is(name), &name.join("."), timeout)
            .await
    }

    /// Skips events until one named `name` that satisfies `predicate` arrives.
    pub async fn wait_for_where(
        &mut self,
        name: &[&str],
        predicate: impl Fn(&RecordedEvent) -> bool,
        timeout: Duration,
    ) -> Result<RecordedEvent, ProbeTimeout> {
        self.next_where(|e| e.is(name) && predicate(e), &name.join("."), timeout)
            .await
    }

    /// The events recorded so far and not yet taken.
    pub fn drain(&mut self) -> Vec<RecordedEvent> {
        std::iter::from_fn(|| self.events.try_recv().ok()).collect()
    }

    async fn next_where(
        &mut self,
        accept: impl Fn(&RecordedEvent) -> bool,
        label: &str,
        timeout: Duration,
    ) -> Result<RecordedEvent, ProbeTimeout> {
        let wait = async {
            while let Some(event) = self.events.recv().await {
                if accept(&event) {
                    return Some(event);
                }
            }
            None
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(Some(event)) => Ok(event),
            _ => Err(ProbeTimeout {
                name: label.to_owned(),
                timeout,
            }),
        }
    }
}

impl Drop for TelemetryProbe {
    fn drop(&mut self) {
        self.telemetry.detach(&self.handler_id);
    }
}

impl fmt::Debug for TelemetryProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelemetryProbe")
            .field("handler_id", &self.handler_id)
            .finish_non_exhaustive()
    }
}

/// A lifecycle step a [`TestChild`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lifecycle {
    /// The child started (its `on_start` completed).
    Started {
        /// The label it was made with.
        label: Arc<str>,
        /// Its actor id.
        id: ActorId,
    },
    /// The child stopped (its `on_stop` ran).
    Stopped {
        /// The label it was made with.
        label: Arc<str>,
        /// Its actor id.
        id: ActorId,
    },
}

impl Lifecycle {
    /// The label of the child that reported.
    pub fn label(&self) -> &str {
        match self {
            Lifecycle::Started { label, .. } | Lifecycle::Stopped { label, .. } => label,
        }
    }
}

/// Makes test children and watches them: every [`TestChild`] made from one
/// kit reports to the kit's channel and counts in its live count.
///
/// # Example
///
/// ```
/// use mabeam_supervision_core::{DynamicSupervisor, testkit::{self, Lifecycle, TestKit}};
///
/// # #[tokio::main] async fn main() {
/// let (kit, mut lifecycle) = TestKit::new();
/// let sup = DynamicSupervisor::start(Default::default()).await.unwrap();
/// let child = sup.start_child(kit.spec("a")).await.unwrap();
/// assert!(matches!(lifecycle.recv().await, Some(Lifecycle::Started { .. })));
///
/// testkit::crash(&child).await; // permanent: restarted
/// assert!(matches!(lifecycle.recv().await, Some(Lifecycle::Stopped { .. })));
/// assert!(matches!(lifecycle.recv().await, Some(Lifecycle::Started { .. })));
/// sup.stop().await;
/// assert_eq!(kit.live(), 0);
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct TestKit {
    lifecycle: UnboundedSender<Lifecycle>,
    live: Arc<AtomicUsize>,
    fail_starts: Arc<AtomicBool>,
}

impl TestKit {
    /// A kit and the receiver of its children's lifecycle reports.
    pub fn new() -> (Self, UnboundedReceiver<Lifecycle>) {
        let (lifecycle, rx) = unbounded_channel();
        let kit = TestKit {
            lifecycle,
            live: Arc::new(AtomicUsize::new(0)),
            fail_starts: Arc::new(AtomicBool::new(false)),
        };
        (kit, rx)
    }

    /// A worker spec of a [`TestChild`] labelled `label` (also its id).
    pub fn spec(&self, label: &str) -> ChildSpec {
        let kit = self.clone();
        let label: Arc<str> = label.into();
        ChildSpec::actor::<TestChild>(label.clone(), move || (kit.clone(), label.clone()))
    }

    /// How many children of this kit are running (started and not stopped).
    pub fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    /// Makes every following start of this kit's children fail (or succeed
    /// again), to test failing restarts.
    pub fn fail_starts(&self, fail: bool) {
        self.fail_starts.store(fail, Ordering::SeqCst);
    }
}

/// A child for tests: reports its lifecycle to its [`TestKit`], counts
/// itself live, and obeys commands.
#[derive(Debug)]
pub struct TestChild {
    kit: TestKit,
    label: Arc<str>,
    id: ActorId,
    pings: u64,
    /// Its `on_stop` ran (else it was killed and leaves the live count as
    /// it is dropped).
    stopped: bool,
}

impl Drop for TestChild {
    fn drop(&mut self) {
        if !self.stopped {
            self.kit.live.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Actor for TestChild {
    type Args = (TestKit, Arc<str>);
    type Error = ExitReason;

    async fn on_start(
        (kit, label): Self::Args,
        actor_ref: ActorRef<Self>,
    ) -> Result<Self, ExitReason> {
        if kit.fail_starts.load(Ordering::SeqCst) {
            return Err(ExitReason::error("start failure on command"));
        }
        kit.live.fetch_add(1, Ordering::SeqCst);
        let id = actor_ref.id();
        let _ = kit.lifecycle.send(Lifecycle::Started {
            label: label.clone(),
            id,
        });
        Ok(TestChild {
            kit,
            label,
            id,
            pings: 0,
            stopped: false,
        })
    }

    async fn on_stop(
        &mut self,
        _: WeakActorRef<Self>,
        _: ActorStopReason,
    ) -> Result<(), ExitReason> {
        self.stopped = true;
        self.kit.live.fetch_sub(1, Ordering::SeqCst);
        let _ = self.kit.lifecycle.send(Lifecycle::Stopped {
            label: self.label.clone(),
            id: self.id,
        });
        Ok(())
    }
}

/// A command to a [`TestChild`].
#[derive(Debug, Clone)]
pub enum Command {
    /// Exit with this reason (`Normal` stops the child as if it finished).
    Exit(ExitReason),
    /// Panic in the handler.
    Panic,
    /// Block forever in the handler, ignoring any stop request.
    Hang,
}

impl Message<Command> for TestChild {
    type Reply = Result<(), ExitReason>;

    async fn handle(
        &mut self,
        command: Command,
        ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        match command {
            Command::Exit(ExitReason::Normal) => {
                ctx.stop();
                Ok(())
            }
            Command::Exit(reason) => Err(reason),
            Command::Panic => panic!("panic on command"),
            Command::Hang => std::future::pending().await,
        }
    }
}

/// Asks a [`TestChild`] how many pings it has answered (this one included).
#[derive(Debug, Clone, Copy)]
pub struct Ping;

impl Message<Ping> for TestChild {
    type Reply = u64;

    async fn handle(&mut self, _: Ping, _: &mut Context<Self, Self::Reply>) -> u64 {
        self.pings += 1;
        self.pings
    }
}

async fn command(child: &ProcessHandle, command: Command) {
    let child = child
        .downcast::<TestChild>()
        .expect("testkit commands go to TestChild handles");
    let _ = child.tell(command).await;
}

/// Makes a [`TestChild`] exit with an error (abnormal).
pub async fn crash(child: &ProcessHandle) {
    command(child, Command::Exit(ExitReason::error("crash on command"))).await
}

/// Makes a [`TestChild`] panic.
pub async fn panic(child: &ProcessHandle) {
    command(child, Command::Panic).await
}

/// Makes a [`TestChild`] stop by itself, normally.
pub async fn exit_normally(child: &ProcessHandle) {
    command(child, Command::Exit(ExitReason::Normal)).await
}

/// Makes a [`TestChild`] exit with `reason`.
pub async fn exit_with(child: &ProcessHandle, reason: ExitReason) {
    command(child, Command::Exit(reason)).await
}

/// Makes a [`TestChild`] hang in a handler: it ignores stop requests until
/// it is killed.
pub async fn hang(child: &ProcessHandle) {
    command(child, Command::Hang).await
}

/// Advances tokio's paused clock by `by` and lets the tasks it woke run.
pub async fn advance(by: Duration) {
    tokio::time::advance(by).await;
    tokio::task::yield_now().await;
}
