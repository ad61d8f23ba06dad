//! A start timeout kills the hung child: its `on_start` does not run on, and
//! what it registered is released before the retry, so the retry does not
//! find its name taken.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::Duration,
};

use kameo::actor::{Actor, ActorRef};
use mabeam_supervision_core::{
    ChildSpec, ExitReason, ProcessHandle, StartError, Strategy, Supervisor, SupervisorFlags,
    Telemetry, events, testkit::TelemetryProbe,
};
use parking_lot::Mutex;

const WAIT: Duration = Duration::from_secs(600);

/// Names held by live processes, as a registry holds them: a name whose
/// holder is no longer alive is free.
#[derive(Clone, Default)]
struct Names(Arc<Mutex<HashMap<String, ProcessHandle>>>);

impl Names {
    fn register(&self, name: &str, holder: ProcessHandle) -> Result<(), String> {
        let mut names = self.0.lock();
        match names.get(name) {
            Some(existing) if existing.is_alive() => Err(format!("{name}: already registered")),
            _ => {
                names.insert(name.to_owned(), holder);
                Ok(())
            }
        }
    }
}

/// How the next start goes.
#[derive(Clone, Default)]
struct Script {
    /// Starts still to hang, after registering.
    hangs: Arc<AtomicU32>,
    /// Set if a hung on_start ever ran on past its hang.
    ran_on: Arc<AtomicBool>,
}

/// Registers itself by name in on_start, then, if told to, hangs there for
/// an hour (far beyond the start timeout).
struct SelfRegistering;

impl Actor for SelfRegistering {
    type Args = (Names, Script);
    type Error = String;

    async fn on_start((names, script): Self::Args, me: ActorRef<Self>) -> Result<Self, String> {
        names.register("agent", ProcessHandle::new(me))?;
        let hang = script
            .hangs
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if hang {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            script.ran_on.store(true, Ordering::SeqCst);
        }
        Ok(SelfRegistering)
    }
}

fn spec(names: &Names, script: &Script) -> ChildSpec {
    let (names, script) = (names.clone(), script.clone());
    ChildSpec::actor::<SelfRegistering>("agent", move || (names.clone(), script.clone()))
        .with_start_timeout(Duration::from_secs(1))
}

#[tokio::test(start_paused = true)]
async fn a_start_timeout_kills_the_hung_child_and_frees_its_name() {
    let (names, script) = (Names::default(), Script::default());
    let spec = spec(&names, &script);
    script.hangs.store(1, Ordering::SeqCst);
    assert!(matches!(spec.start().await, Err(StartError::Timeout(_))));
    let hung = names.0.lock().get("agent").cloned().unwrap();
    assert!(!hung.is_alive());
    assert_eq!(hung.exited().await, ExitReason::Killed);

    // Before: the hung child still held the name, AlreadyRegistered.
    let child = spec.start().await.unwrap();
    assert_ne!(child, hung);

    // An hour later the hung on_start has not run on: it was killed.
    tokio::time::sleep(Duration::from_secs(7200)).await;
    assert!(!script.ran_on.load(Ordering::SeqCst));
    child.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_restart_after_a_start_timeout_takes_the_name_again() {
    let telemetry = Telemetry::new();
    let mut probe = TelemetryProbe::attach(&telemetry, &["supervisor", "child"]);
    let (names, script) = (Names::default(), Script::default());
    let sup = Supervisor::start(
        SupervisorFlags::new(Strategy::OneForOne)
            .with_intensity(3, Duration::from_secs(60))
            .with_telemetry(telemetry.clone()),
        [spec(&names, &script)],
    )
    .await
    .unwrap();
    let first = probe.wait_for(events::CHILD_STARTED, WAIT).await.unwrap();

    // The next start hangs: the restart times out and is retried.
    script.hangs.store(1, Ordering::SeqCst);
    let running = sup.which_children().await.unwrap()[0]
        .state
        .handle()
        .cloned()
        .unwrap();
    running.kill();
    let failed = probe
        .wait_for(events::CHILD_START_FAILED, WAIT)
        .await
        .unwrap();
    assert!(failed.meta_str("error").unwrap().contains("timed out"));
    // Before: every retry failed with "already registered" until the
    // supervisor gave up.
    let restarted = probe.wait_for(events::CHILD_RESTARTED, WAIT).await.unwrap();
    assert_ne!(restarted.meta("actor_id"), first.meta("actor_id"));
    let holder = names.0.lock().get("agent").cloned().unwrap();
    assert!(holder.is_alive());
    assert_eq!(
        sup.which_children().await.unwrap()[0].state.handle(),
        Some(&holder)
    );
    assert!(!script.ran_on.load(Ordering::SeqCst));
    sup.stop().await;
}
