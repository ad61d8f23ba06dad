//! The agent registry's restart and passivation paths that `cargo xtask
//! mutants agent-supervisor` found no test checking: each test here fails
//! with the mutant it names (see the README's testing section).

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use common::{Cmd, Gated, RefusingStore, Setup, Worker, backing_off, gated, next_event, setup};
use mabeam_agent_supervisor::{Agent, AgentConfig, AgentContext, AgentError};
use mabeam_supervision_core::{
    AgentStatus, Backoff, MemoryAgentStore, ProcessHandle, RestartType, StartError,
};
use tokio::{
    sync::{Semaphore, mpsc},
    time::Instant,
};

// A stop that comes while a passivated agent is being woken waits for the
// wake and stops the woken incarnation: the agent stays stopped (mutant:
// the guard of `stop_slot`'s passivated branch made `true`, so the stop
// marked the agent stopped mid-wake; the wake's start was then refused,
// counted as a crash, and the agent restarted).
#[tokio::test(start_paused = true)]
async fn a_stop_during_a_wake_leaves_the_agent_stopped() {
    let s = setup().await;
    s.run(
        "a",
        common::worker("k").with_restart(RestartType::Permanent),
    )
    .await;
    let a = s.agents.agent_ref::<Worker>("a").unwrap();
    a.ask(Cmd::Add(1)).await.unwrap();
    s.agents.passivate("a").await.unwrap();
    assert!(s.agents.details("a").unwrap().passivated);

    // The ask runs first (the test runtime runs tasks in the order they
    // were spawned): it marks the agent waking and starts the wake in a
    // task of its own; the stop comes before that task is done.
    let mut changes = s.agents.subscribe();
    let ask = tokio::spawn(async move { a.ask(Cmd::Get).await });
    let agents = s.agents.clone();
    let stop = tokio::spawn(async move { agents.stop_agent("a").await });
    tokio::time::timeout(Duration::from_secs(30), stop)
        .await
        .expect("the stop returns")
        .unwrap()
        .unwrap();
    assert_eq!(s.agents.status("a"), Some(AgentStatus::Stopped));
    let asked = tokio::time::timeout(Duration::from_secs(30), ask)
        .await
        .expect("the ask returns")
        .unwrap();
    // It was woken (its count kept) before it was stopped.
    assert_eq!(asked.unwrap(), 1);

    // Nothing brings it back (on the paused clock, the wait ends only once
    // every task is idle).
    let later = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let change = changes.recv().await.expect("the registry lives");
            if !matches!(change.to, AgentStatus::Stopping | AgentStatus::Stopped) {
                return change;
            }
        }
    })
    .await;
    assert!(later.is_err(), "a stopped agent changed again: {later:?}");
    assert_eq!(s.agents.status("a"), Some(AgentStatus::Stopped));
}

// An incarnation that finishes its `on_start` after the decision that
// made it was overtaken (its restart stopped, then a new start) is not
// installed: it is dropped, and the new start's incarnation runs
// (mutants of `Shared::install`'s `wanted`: `&&` as `||` after
// `!state.removed`, or before the status match, installed it).
#[tokio::test]
async fn an_overtaken_restart_never_installs() {
    let s = setup().await;
    let permits = Arc::new(Semaphore::new(1));
    let (config, mut events) = gated(&permits, false);
    s.run("a", config.with_restart(RestartType::Permanent))
        .await;
    assert_eq!(next_event(&mut events).await, "starting");
    assert_eq!(next_event(&mut events).await, "started");

    // A crash: its restart waits in its on_start.
    let a = s.agents.agent_ref::<Gated>("a").unwrap();
    let _ = a.ask(true).await;
    let mut two = [next_event(&mut events).await, next_event(&mut events).await];
    two.sort_unstable();
    assert_eq!(two, ["dropped", "starting"]);
    // Stopped meanwhile, then started anew: that start waits too.
    s.agents.stop_agent("a").await.unwrap();
    assert_eq!(s.agents.status("a"), Some(AgentStatus::Stopped));
    let agents = s.agents.clone();
    let start = tokio::spawn(async move { agents.start_agent("a").await });
    assert_eq!(next_event(&mut events).await, "starting");

    // The restart's incarnation (first in line for a permit) goes on,
    // and is refused.
    permits.add_permits(1);
    assert_eq!(next_event(&mut events).await, "started");
    assert_eq!(
        next_event(&mut events).await,
        "dropped",
        "the overtaken incarnation was installed"
    );
    // The new start's incarnation runs.
    permits.add_permits(1);
    assert_eq!(next_event(&mut events).await, "started");
    let process = tokio::time::timeout(Duration::from_secs(10), start)
        .await
        .expect("the start returns")
        .unwrap()
        .unwrap();
    assert_eq!(s.agents.status("a"), Some(AgentStatus::Running));
    assert_eq!(s.agents.lookup("a"), Some(process));
    assert_eq!(s.agents.details("a").unwrap().restarts, 0);
}

/// An agent whose first start succeeds and every later one fails; `true`
/// crashes it.
struct Flaky;

impl Agent for Flaky {
    type Args = Arc<AtomicU32>;
    type Message = bool;
    type Reply = ();
    type Checkpoint = ();

    async fn on_start(starts: Arc<AtomicU32>, _: Option<()>) -> Result<Self, StartError> {
        if starts.fetch_add(1, Ordering::SeqCst) == 0 {
            Ok(Flaky)
        } else {
            Err(StartError::failed("refused after the first start"))
        }
    }

    async fn handle(&mut self, crash: bool, _: &mut AgentContext<'_>) {
        assert!(!crash, "crashes on command");
    }
}

// A restart whose start fails counts as a crash: restarted again within
// the limits, then `Failed` (mutants of `Shared::start_failed`: its body
// removed, `==` as `!=` in its epoch check, or `&&` as `||` before
// `!self.is_closing()`; each left the agent restarting for ever).
#[tokio::test(start_paused = true)]
async fn a_restart_whose_start_fails_counts_as_a_crash_until_failed() {
    let s = setup().await;
    let starts = Arc::new(AtomicU32::new(0));
    let config = AgentConfig::new::<Flaky>("flaky", starts.clone())
        .with_restart(RestartType::Permanent)
        .with_max_restarts(2, Duration::from_secs(60));
    s.run("a", config).await;
    let a = s.agents.agent_ref::<Flaky>("a").unwrap();
    let _ = a.ask(true).await;
    s.wait_status("a", AgentStatus::Failed).await;
    // The first start, then the two restarts allowed, both refused.
    assert_eq!(starts.load(Ordering::SeqCst), 3);
    assert!(s.agents.lookup("a").is_none());
}

// Passivating an agent already passivating is refused: the first
// passivation's caller alone waits for it (mutant: `||` as `&&` in
// `Shared::begin_passivation`'s guard, which let the second through).
#[tokio::test(start_paused = true)]
async fn a_second_passivation_under_way_is_refused() {
    let s = setup().await;
    s.run("a", common::worker("k")).await;
    let (first, second) = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::join!(s.agents.passivate("a"), s.agents.passivate("a"))
    })
    .await
    .expect("the passivations return");
    first.unwrap();
    assert!(
        matches!(
            second,
            Err(AgentError::NotRunning {
                status: AgentStatus::Running,
                ..
            })
        ),
        "the second passivation was not refused: {second:?}"
    );
    assert!(s.agents.details("a").unwrap().passivated);
}

// A restart waiting out its backoff and then stopped never runs, even if a
// newer restart of the same agent waits meanwhile: the newer one runs after
// its own backoff (mutant: the first `||` of `Shared::schedule_restart`'s
// check as `&&`, which let the stale timer restart the agent early).
#[tokio::test(start_paused = true)]
async fn a_stopped_restart_never_runs_early() {
    let s = setup().await;
    s.run(
        "a",
        backing_off(Duration::from_secs(10), Duration::from_secs(60)),
    )
    .await;
    let crash = async || {
        let a = s.agents.agent_ref::<Worker>("a").unwrap();
        let _ = a.ask(Cmd::Panic).await;
        s.wait_status("a", AgentStatus::Restarting).await;
    };
    // The first restart is due 10 s after this crash.
    crash().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    s.agents.stop_agent("a").await.unwrap();
    s.agents.start_agent("a").await.unwrap();
    // Its backoff begins anew (a start resets it): due 10 s from now, 5 s
    // after the stopped one.
    crash().await;
    let crashed = Instant::now();
    s.wait_status("a", AgentStatus::Running).await;
    assert!(
        crashed.elapsed() >= Duration::from_secs(10),
        "restarted {:?} after its crash, within its backoff",
        crashed.elapsed()
    );
}

// A restart that falls due under a stopped supervisor is refused and waits,
// orphaned, for the next supervisor, which restarts it at once (mutant:
// the `!` before `notice.is_closing()` in `Shared::start_failed` deleted,
// which retried the stopped supervisor every few milliseconds instead; the
// replacement then found the agent not orphaned and left it to the next
// retry).
#[tokio::test(start_paused = true)]
async fn a_restart_refused_by_a_stopped_supervisor_waits_for_the_next() {
    let s = common::setup_with(|o| o.with_replace_supervisor(false)).await;
    s.run(
        "a",
        backing_off(Duration::from_secs(1), Duration::from_secs(10)),
    )
    .await;
    let a = s.agents.agent_ref::<Worker>("a").unwrap();
    let _ = a.ask(Cmd::Panic).await;
    s.wait_status("a", AgentStatus::Restarting).await;
    s.agents.supervisor().stop().await;
    // The restart falls due (after 1 s) under the stopped supervisor. (Not
    // a whole number of the mutant's 10 ms retries later: one due at the
    // very instant of the replacement would hide it.)
    tokio::time::sleep(Duration::from_millis(2_005)).await;
    assert_eq!(s.agents.status("a"), Some(AgentStatus::Restarting));
    assert!(s.agents.lookup("a").is_none());

    let replaced = Instant::now();
    s.agents.replace_supervisor().await.unwrap();
    s.wait_status("a", AgentStatus::Running).await;
    assert!(
        replaced.elapsed().is_zero(),
        "restarted {:?} after the new supervisor, not at once",
        replaced.elapsed()
    );
}

/// Each start takes the next gate of the queue: it waits for the gate's
/// permit, then starts (`true`) or is refused (`false`); it says what it
/// does. `true` as a message crashes it.
struct Queued;

type Gates = Arc<parking_lot::Mutex<std::collections::VecDeque<(Arc<Semaphore>, bool)>>>;

#[derive(Clone)]
struct QueuedArgs {
    gates: Gates,
    events: mpsc::UnboundedSender<&'static str>,
}

impl Agent for Queued {
    type Args = QueuedArgs;
    type Message = bool;
    type Reply = ();
    type Checkpoint = ();

    async fn on_start(args: QueuedArgs, _: Option<()>) -> Result<Self, StartError> {
        let (gate, ok) = args
            .gates
            .lock()
            .pop_front()
            .expect("a gate for each start");
        let _ = args.events.send("starting");
        gate.acquire().await.unwrap().forget();
        if ok {
            let _ = args.events.send("started");
            Ok(Queued)
        } else {
            let _ = args.events.send("refused");
            Err(StartError::failed("refused by its gate"))
        }
    }

    async fn handle(&mut self, crash: bool, _: &mut AgentContext<'_>) {
        assert!(!crash, "crashes on command");
    }
}

// A restart overtaken by a newer one (stopped, started anew, crashed and
// restarting again) that then fails to start is not the newer one's
// crash: the newer restart runs, nothing else starts (mutant: `&&` as `||`
// in `Shared::start_failed`'s epoch check, which took the stale failure
// as the agent's and restarted it once more, refusing the newer restart).
#[tokio::test(start_paused = true)]
async fn an_overtaken_restart_failing_is_not_a_crash() {
    let s = setup().await;
    let (tx, mut events) = mpsc::unbounded_channel();
    let gate = |ok: bool| (Arc::new(Semaphore::new(0)), ok);
    let plan = [gate(true), gate(false), gate(true), gate(true), gate(true)];
    let [start, stale, fresh, newer, _] = plan.clone().map(|(g, _)| g);
    let args = QueuedArgs {
        gates: Arc::new(parking_lot::Mutex::new(plan.into_iter().collect())),
        events: tx,
    };
    let config = AgentConfig::new::<Queued>("queued", args).with_restart(RestartType::Permanent);
    start.add_permits(1);
    s.run("a", config).await;
    assert_eq!(next_event(&mut events).await, "starting");
    assert_eq!(next_event(&mut events).await, "started");

    // A crash: its restart waits at its gate.
    let _ = s.agents.agent_ref::<Queued>("a").unwrap().ask(true).await;
    assert_eq!(next_event(&mut events).await, "starting");
    // Stopped, started anew, crashed again: the newer restart waits too.
    s.agents.stop_agent("a").await.unwrap();
    fresh.add_permits(1);
    s.agents.start_agent("a").await.unwrap();
    assert_eq!(next_event(&mut events).await, "starting");
    assert_eq!(next_event(&mut events).await, "started");
    let _ = s.agents.agent_ref::<Queued>("a").unwrap().ask(true).await;
    assert_eq!(next_event(&mut events).await, "starting");
    assert_eq!(s.agents.status("a"), Some(AgentStatus::Restarting));

    // The stale restart fails; then the newer one goes on, and runs.
    stale.add_permits(1);
    assert_eq!(next_event(&mut events).await, "refused");
    newer.add_permits(1);
    assert_eq!(
        next_event(&mut events).await,
        "started",
        "the stale failure started the agent once more"
    );
    s.wait_status("a", AgentStatus::Running).await;
    let more = tokio::time::timeout(Duration::from_secs(60), events.recv()).await;
    assert!(more.is_err(), "something else started: {more:?}");
    assert_eq!(s.agents.status("a"), Some(AgentStatus::Running));
}

// Crashes in quick succession back off further each time: the count resets
// only after a quiet run of `reset_after` (mutant: `>=` as `<` in
// `Shared::after_exit`'s check of how long it ran, which reset it after a
// short run instead).
#[tokio::test(start_paused = true)]
async fn quick_crashes_back_off_further() {
    let s = setup().await;
    let config = backing_off(Duration::from_secs(1), Duration::from_secs(60))
        .with_max_restarts(10, Duration::from_secs(600));
    s.run("a", config).await;
    let mut delays = Vec::new();
    for _ in 0..3 {
        let a = s.agents.agent_ref::<Worker>("a").unwrap();
        let _ = a.ask(Cmd::Panic).await;
        let crashed = Instant::now();
        s.wait_status("a", AgentStatus::Running).await;
        delays.push(crashed.elapsed().as_secs());
    }
    assert_eq!(delays, [1, 2, 4]);
}

// Tells left in the mailbox of an incarnation that stops while it
// passivates (here it stops by itself, ahead of the passivation's stop
// request) are kept and wake the agent: the woken incarnation handles
// them (mutant: `||` as `&&` in `Shared::exited`'s check of left-over
// tells, which dropped them as if nobody would handle them).
#[tokio::test(start_paused = true)]
async fn tells_left_by_a_passivating_incarnation_wake_the_agent() {
    let s = setup().await;
    s.run("a", common::worker("k")).await;
    let a = s.agents.agent_ref::<Worker>("a").unwrap();
    a.tell(Cmd::Add(1)).await.unwrap();
    // Busy while the rest is queued and the passivation asked for.
    a.tell(Cmd::Sleep(Duration::from_secs(1))).await.unwrap();
    a.tell(Cmd::Stop).await.unwrap();
    a.tell(Cmd::Add(10)).await.unwrap();
    a.tell(Cmd::Add(100)).await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), s.agents.passivate("a"))
        .await
        .expect("the passivation returns")
        .unwrap();
    let count = tokio::time::timeout(Duration::from_secs(60), a.ask(Cmd::Get))
        .await
        .expect("the ask returns")
        .unwrap();
    assert_eq!(count, 111, "the tells left behind were not handled");
}

/// A registry on a store that holds each registration at `gate`, then
/// refuses it as full, durable agent `a` (a
/// [`Flaky`] counting its starts in `starts`, restarted after 10 s)
/// started while its registration waits at the store's gate: returns
/// the registration, still waiting.
async fn started_while_registering(
    gate: &Arc<Semaphore>,
    starts: &Arc<AtomicU32>,
) -> (
    Setup,
    tokio::task::JoinHandle<Result<(), AgentError>>,
    ProcessHandle,
) {
    let store = Arc::new(
        RefusingStore::new(MemoryAgentStore::new(), RefusingStore::registrations)
            .gated(gate.clone())
            .keeping_nothing(),
    );
    let s = common::setup_with(|o| o.with_store(store)).await;
    tokio::time::timeout(Duration::from_secs(60), s.agents.recovered())
        .await
        .expect("the registry recovers");
    let config = AgentConfig::new::<Flaky>("flaky", starts.clone())
        .with_restart(RestartType::Permanent)
        .with_backoff(Backoff::new(
            Duration::from_secs(10),
            Duration::from_secs(60),
        ))
        .durable(serde_json::json!({}));
    let register = tokio::spawn({
        let agents = s.agents.clone();
        async move { agents.register_durable_agent("a", config).await }
    });
    tokio::time::timeout(Duration::from_secs(60), async {
        while s.agents.status("a") != Some(AgentStatus::Registered) {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the registration is under way");
    let process = tokio::time::timeout(Duration::from_secs(60), s.agents.start_agent("a"))
        .await
        .expect("the start returns")
        .unwrap();
    (s, register, process)
}

/// Lets the registration of [`started_while_registering`] be refused.
async fn refuse(gate: &Semaphore, register: tokio::task::JoinHandle<Result<(), AgentError>>) {
    gate.add_permits(1);
    let refused = tokio::time::timeout(Duration::from_secs(60), register)
        .await
        .expect("the registration returns")
        .unwrap();
    assert!(
        matches!(refused, Err(AgentError::Store(_))),
        "the registration was not refused: {refused:?}"
    );
}

// A durable agent started and crashed while its registration waits, then
// refused by the store, is gone: its restart, due after its backoff,
// never runs (mutant: the last `||` of `Shared::schedule_restart`'s check
// as `&&`, which restarted the removed agent once its timer ran out).
#[tokio::test(start_paused = true)]
async fn a_restart_of_an_agent_whose_registration_was_refused_never_runs() {
    let gate = Arc::new(Semaphore::new(0));
    let starts = Arc::new(AtomicU32::new(0));
    let (s, register, _process) = started_while_registering(&gate, &starts).await;
    let _ = s.agents.agent_ref::<Flaky>("a").unwrap().ask(true).await;
    s.wait_status("a", AgentStatus::Restarting).await;
    refuse(&gate, register).await;
    assert_eq!(s.agents.status("a"), None);
    // Its restart was due 10 s after the crash.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(
        starts.load(Ordering::SeqCst),
        1,
        "the removed agent restarted"
    );
}

// A durable agent started while its registration waits, then refused by
// the store, is not adopted by the next supervisor when its own goes
// down: it stays stopped (mutant: `||` as `&&` in
// `Shared::adopt_orphan`'s guard, which took the removed agent back as
// restarting).
#[tokio::test(start_paused = true)]
async fn an_agent_whose_registration_was_refused_is_not_adopted() {
    let gate = Arc::new(Semaphore::new(0));
    let starts = Arc::new(AtomicU32::new(0));
    let (s, register, _process) = started_while_registering(&gate, &starts).await;
    refuse(&gate, register).await;
    let mut changes = s.agents.subscribe();
    tokio::time::timeout(Duration::from_secs(60), s.agents.replace_supervisor())
        .await
        .expect("the supervisor is replaced")
        .unwrap();
    let mut seen = Vec::new();
    while let Ok(change) = changes.try_recv() {
        seen.push(change.to);
    }
    assert!(
        !seen.contains(&AgentStatus::Restarting),
        "the removed agent was taken back: {seen:?}"
    );
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(
        starts.load(Ordering::SeqCst),
        1,
        "the removed agent restarted"
    );
}

// A durable agent started while its registration waits, then refused by
// the store: its incarnation is stopped with the registration, so no
// process outlives its entry and the counts hold nothing (before the
// fix the registry forgot the agent and its process ran on, counted
// nowhere and supervised by a supervisor the registry no longer knew of).
#[tokio::test(start_paused = true)]
async fn a_refused_registration_stops_the_agent_started_meanwhile() {
    let gate = Arc::new(Semaphore::new(0));
    let starts = Arc::new(AtomicU32::new(0));
    let (s, register, process) = started_while_registering(&gate, &starts).await;
    refuse(&gate, register).await;
    assert_eq!(s.agents.status("a"), None);
    tokio::time::timeout(Duration::from_secs(60), process.exited())
        .await
        .expect("the refused agent's incarnation exits");
    assert_eq!(s.agents.counts().total, 0, "{:?}", s.agents.counts());
}
