//! A child handed over to a DynamicSupervisor while it gives up is never
//! left running unsupervised (issue 8, item 8), and the children handed
//! over as it gave up are stopped by `on_undelivered`. Multi-thread
//! runtime: the supervisor and the callers run in parallel.

use std::{sync::Arc, time::Duration};

use kameo::prelude::*;
use mabeam_supervision_core::{
    ChildSpec, DynamicSupervisor, DynamicSupervisorFlags, ProcessHandle, SupervisorError,
    testkit::{self, TestKit},
};
use tokio::sync::{Notify, mpsc};

const WAIT: Duration = Duration::from_secs(10);

/// A child whose stop waits for its gate to open, and which says when its
/// stop began.
struct Gated {
    label: &'static str,
    stopping: mpsc::UnboundedSender<&'static str>,
    gate: Arc<Notify>,
}

impl Actor for Gated {
    type Args = Self;
    type Error = kameo::error::Infallible;

    async fn on_start(state: Self, _: ActorRef<Self>) -> Result<Self, Self::Error> {
        Ok(state)
    }

    async fn on_stop(
        &mut self,
        _: WeakActorRef<Self>,
        _: ActorStopReason,
    ) -> Result<(), Self::Error> {
        let _ = self.stopping.send(self.label);
        self.gate.notified().await;
        Ok(())
    }
}

fn gated(
    label: &'static str,
    stopping: &mpsc::UnboundedSender<&'static str>,
    gate: &Arc<Notify>,
) -> ChildSpec {
    let (stopping, gate) = (stopping.clone(), gate.clone());
    ChildSpec::new(label, move || {
        let state = Gated {
            label,
            stopping: stopping.clone(),
            gate: gate.clone(),
        };
        ProcessHandle::spawn::<Gated>(state)
    })
}

async fn recv<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> T {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("an event in time")
        .expect("sender alive")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_handed_over_during_a_give_up_is_never_left_running() {
    let (kit, mut lifecycle) = TestKit::new();
    let (stopping_tx, mut stopping) = mpsc::unbounded_channel();
    let (b_gate, c_gate) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    // No restart allowed: the first crash gives up.
    let sup = DynamicSupervisor::start(
        DynamicSupervisorFlags::new().with_intensity(0, Duration::from_secs(5)),
    )
    .await
    .unwrap();
    sup.start_child(gated("b", &stopping_tx, &b_gate))
        .await
        .unwrap();
    let a = sup.start_child(kit.spec("a")).await.unwrap();
    recv(&mut lifecycle).await;

    // C's start begins before the give-up and completes during it: its
    // hand-over is queued while the supervisor stops B.
    let (c_began_tx, mut c_began) = mpsc::unbounded_channel();
    let c_start = Arc::new(Notify::new());
    let c_spec = {
        let (stopping, gate, start) = (stopping_tx.clone(), c_gate.clone(), c_start.clone());
        ChildSpec::new("c", move || {
            let (stopping, gate, start) = (stopping.clone(), gate.clone(), start.clone());
            let began = c_began_tx.clone();
            async move {
                let _ = began.send(());
                start.notified().await;
                ProcessHandle::spawn::<Gated>(Gated {
                    label: "c",
                    stopping,
                    gate,
                })
                .await
            }
        })
    };
    let c_caller = {
        let sup = sup.clone();
        tokio::spawn(async move { sup.start_child(c_spec).await })
    };
    recv(&mut c_began).await;

    testkit::crash(&a).await;
    assert_eq!(recv(&mut stopping).await, "b", "the give-up stops b");
    c_start.notify_one();
    // Wait until c is handed over: its caller answers (the supervisor took
    // the child) or, seeing the supervisor close, stops c itself.
    let mut c_caller = c_caller;
    let mut c_answer = None;
    tokio::select! {
        answer = &mut c_caller => c_answer = Some(answer.unwrap()),
        label = recv(&mut stopping) => assert_eq!(label, "c"),
    }
    b_gate.notify_one();
    if c_answer.is_some() {
        // The give-up is over; c's hand-over is undelivered, and
        // on_undelivered stops c.
        assert_eq!(recv(&mut stopping).await, "c", "c is stopped");
    }

    // While c stops, another caller hands a child over.
    let d = sup.start_child(kit.spec("d")).await;
    c_gate.notify_one();
    let c_answer = match c_answer {
        Some(answer) => answer,
        None => tokio::time::timeout(WAIT, c_caller)
            .await
            .expect("c's start_child answers")
            .unwrap(),
    };
    tokio::time::timeout(WAIT, sup.exited())
        .await
        .expect("the supervisor exits");

    match d {
        Err(SupervisorError::SupervisorGone) => {}
        Ok(d) => {
            // Accepted: then it must be stopped with the supervisor.
            tokio::time::timeout(WAIT, d.exited())
                .await
                .expect("a child handed over during the give-up is not left running");
        }
        Err(other) => panic!("unexpected answer {other:?}"),
    }
    if let Ok(c) = c_answer {
        tokio::time::timeout(WAIT, c.exited())
            .await
            .expect("c stopped");
    }
    assert_eq!(kit.live(), 0, "no test child is left running");
    assert!(matches!(
        sup.start_child(kit.spec("e")).await,
        Err(SupervisorError::SupervisorGone)
    ));
}
