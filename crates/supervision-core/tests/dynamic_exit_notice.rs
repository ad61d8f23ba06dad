//! DynamicSupervisor children that report their own exit through an
//! `ExitNotice` (no watcher task each): removed once they report, restarted
//! by their restart type, and removed even when they exit before they are
//! handed over to the supervisor. Exits reported with `ended` (queued, the
//! supervisor not woken) are collected before the supervisor answers.

use std::time::Duration;

use kameo::prelude::*;
use mabeam_supervision_core::{
    ChildSpec, DynamicSupervisor, DynamicSupervisorFlags, ExitNotice, ExitReason, ProcessHandle,
    RestartType, Telemetry, events, testkit::TelemetryProbe,
};

const WAIT: Duration = Duration::from_secs(10);

/// A child that reports its exit from its `on_stop`, as agent hosts do.
struct Reporting {
    notice: ExitNotice,
    /// Reports with `ended` (queued) rather than `exited`.
    queued: bool,
}

impl Actor for Reporting {
    /// The notice, and whether to stop at once, from `on_start` (before
    /// the start is reported, so before the hand-over).
    type Args = (ExitNotice, bool, bool);
    type Error = kameo::error::Infallible;

    async fn on_start(
        (notice, stop_at_once, queued): Self::Args,
        me: ActorRef<Self>,
    ) -> Result<Self, Self::Error> {
        if stop_at_once {
            let _ = me.stop_gracefully().await;
        }
        Ok(Reporting { notice, queued })
    }

    async fn on_stop(
        &mut self,
        me: WeakActorRef<Self>,
        reason: ActorStopReason,
    ) -> Result<(), Self::Error> {
        let exit = match reason {
            ActorStopReason::Normal => ExitReason::Normal,
            other => ExitReason::error(other),
        };
        if self.queued {
            self.notice.ended(me.id(), exit);
        } else {
            self.notice.exited(me.id(), exit);
        }
        Ok(())
    }
}

struct Fail;

impl Message<Fail> for Reporting {
    type Reply = ();

    async fn handle(&mut self, _: Fail, _: &mut Context<Self, ()>) {
        panic!("failing on request");
    }
}

fn spec(notice: &ExitNotice, stop_at_once: bool) -> ChildSpec {
    reporting_spec(notice, stop_at_once, false)
}

fn reporting_spec(notice: &ExitNotice, stop_at_once: bool, queued: bool) -> ChildSpec {
    let notice = notice.clone();
    ChildSpec::new("reporting", move || {
        ProcessHandle::spawn::<Reporting>((notice.clone(), stop_at_once, queued))
    })
}

/// A child reporting with `ended`.
fn queued_spec(notice: &ExitNotice) -> ChildSpec {
    reporting_spec(notice, false, true)
}

async fn supervisor() -> (DynamicSupervisor, TelemetryProbe) {
    let telemetry = Telemetry::new();
    let probe = TelemetryProbe::attach(&telemetry, &["supervisor"]);
    let flags = DynamicSupervisorFlags::new().with_telemetry(telemetry);
    (DynamicSupervisor::start(flags).await.unwrap(), probe)
}

#[tokio::test]
async fn a_reporting_child_is_removed_when_it_reports_its_exit() {
    let (sup, mut probe) = supervisor().await;
    let notice = sup.exit_notice().await.unwrap();
    let child = sup
        .start_reporting_child(spec(&notice, false).with_restart(RestartType::Temporary))
        .await
        .unwrap();
    assert_eq!(sup.count_children().await.unwrap().active, 1);

    // Stopped behind the supervisor's back: only its report can tell it.
    assert_eq!(child.stop().await, ExitReason::Shutdown(None));
    let exited = probe.wait_for(events::CHILD_EXITED, WAIT).await.unwrap();
    assert_eq!(exited.meta_bool("restart"), Some(false));
    assert_eq!(sup.count_children().await.unwrap().active, 0);
    sup.stop().await;
}

#[tokio::test]
async fn a_permanent_reporting_child_is_restarted_and_its_restart_reports_too() {
    let (sup, mut probe) = supervisor().await;
    let notice = sup.exit_notice().await.unwrap();
    let first = sup
        .start_reporting_child(spec(&notice, false).with_restart(RestartType::Permanent))
        .await
        .unwrap();
    let _ = first.downcast::<Reporting>().unwrap().tell(Fail).await;
    probe.wait_for(events::CHILD_RESTARTED, WAIT).await.unwrap();
    let children = sup.which_children().await.unwrap();
    assert_eq!(children.len(), 1);
    let second = children[0].state.handle().cloned().unwrap();
    assert_ne!(second, first);

    // The restarted incarnation reports its exit as well.
    let _ = second.downcast::<Reporting>().unwrap().tell(Fail).await;
    probe.wait_for(events::CHILD_RESTARTED, WAIT).await.unwrap();
    assert_eq!(sup.count_children().await.unwrap().active, 1);
    sup.stop().await;
}

#[tokio::test]
async fn a_child_that_exits_before_its_hand_over_is_removed_all_the_same() {
    let (sup, mut probe) = supervisor().await;
    let notice = sup.exit_notice().await.unwrap();
    // It stops within its start: its report reaches the supervisor before
    // the child does, and is ignored; the supervisor watches it instead.
    let child = sup
        .start_reporting_child(spec(&notice, true).with_restart(RestartType::Temporary))
        .await
        .unwrap();
    assert_eq!(child.exited().await, ExitReason::Normal);
    probe.wait_for(events::CHILD_EXITED, WAIT).await.unwrap();
    assert_eq!(sup.count_children().await.unwrap().active, 0);
    sup.stop().await;
}

#[tokio::test]
async fn terminating_a_reporting_child_ignores_its_late_report() {
    let (sup, _probe) = supervisor().await;
    let notice = sup.exit_notice().await.unwrap();
    let child = sup
        .start_reporting_child(spec(&notice, false).with_restart(RestartType::Permanent))
        .await
        .unwrap();
    sup.terminate_child(&child).await.unwrap();
    assert!(!child.is_alive());
    // Its report arrived after the supervisor let it go: nothing restarts.
    let counts = sup.count_children().await.unwrap();
    assert_eq!((counts.active, counts.specs), (0, 0));
    sup.stop().await;
}

// A supervisor without telemetry is not woken by `ended`: the exits wait in
// its queue until it handles a message.

/// A supervisor without telemetry, and its notice.
async fn quiet(flags: DynamicSupervisorFlags) -> (DynamicSupervisor, ExitNotice) {
    let sup = DynamicSupervisor::start(flags).await.unwrap();
    let notice = sup.exit_notice().await.unwrap();
    (sup, notice)
}

#[tokio::test]
async fn an_ended_child_is_gone_before_the_supervisor_next_answers() {
    let (sup, notice) = quiet(DynamicSupervisorFlags::new()).await;
    let temporary = queued_spec(&notice).with_restart(RestartType::Temporary);
    let children =
        futures::future::join_all((0..3).map(|_| sup.start_reporting_child(temporary.clone())))
            .await;
    let children: Vec<ProcessHandle> = children.into_iter().map(Result::unwrap).collect();
    assert_eq!(sup.count_children().await.unwrap().active, 3);

    for child in &children[..2] {
        assert_eq!(child.stop().await, ExitReason::Shutdown(None));
    }
    assert_eq!(sup.count_children().await.unwrap().active, 1);
    let left = sup.which_children().await.unwrap();
    assert_eq!(left[0].state.handle(), Some(&children[2]));
    sup.stop().await;
}

#[tokio::test]
async fn a_full_supervisor_takes_a_new_child_once_one_has_ended() {
    let (sup, notice) = quiet(DynamicSupervisorFlags::new().with_max_children(1)).await;
    let temporary = queued_spec(&notice).with_restart(RestartType::Temporary);
    let first = sup.start_reporting_child(temporary.clone()).await.unwrap();
    // Handed over (not watched: it is alive) before it stops.
    assert_eq!(sup.count_children().await.unwrap().active, 1);
    first.stop().await;
    // Its place is free though the supervisor has not been told yet.
    let second = sup.start_reporting_child(temporary).await.unwrap();
    assert!(second.is_alive());
    assert_eq!(sup.count_children().await.unwrap().active, 1);
    sup.stop().await;
}

#[tokio::test]
async fn a_permanent_child_reported_with_ended_is_restarted_all_the_same() {
    let (sup, notice) = quiet(DynamicSupervisorFlags::new()).await;
    let first = sup
        .start_reporting_child(queued_spec(&notice).with_restart(RestartType::Permanent))
        .await
        .unwrap();
    // Handed over (not watched: it is alive) before it fails.
    assert_eq!(sup.count_children().await.unwrap().active, 1);
    let _ = first.downcast::<Reporting>().unwrap().tell(Fail).await;
    first.exited().await;
    // The first call collects the exit and queues its restart behind
    // itself; the second is answered after the restart.
    sup.count_children().await.unwrap();
    let children = sup.which_children().await.unwrap();
    assert_eq!(children.len(), 1);
    let second = children[0].state.handle().cloned().unwrap();
    assert_ne!(second, first);
    assert!(second.is_alive());
    sup.stop().await;
}

#[tokio::test]
async fn with_telemetry_an_ended_child_is_reported_at_once() {
    let (sup, mut probe) = supervisor().await;
    let notice = sup.exit_notice().await.unwrap();
    let child = sup
        .start_reporting_child(queued_spec(&notice).with_restart(RestartType::Temporary))
        .await
        .unwrap();
    // Handed over (not watched: it is alive) before it stops.
    assert_eq!(sup.count_children().await.unwrap().active, 1);
    child.stop().await;
    // No message to the supervisor: it was woken by the report itself.
    let exited = probe.wait_for(events::CHILD_EXITED, WAIT).await.unwrap();
    assert_eq!(exited.meta_bool("restart"), Some(false));
    sup.stop().await;
}

// A supervisor without telemetry is not woken by a reporting child's start
// either: the child is queued for it, collected before its next message.

#[tokio::test]
async fn children_handed_over_unannounced_are_counted_in_start_order_and_stopped_with_it() {
    let (sup, notice) = quiet(DynamicSupervisorFlags::new()).await;
    let temporary = queued_spec(&notice).with_restart(RestartType::Temporary);
    // More than one batch (the supervisor is woken once per batch).
    let mut children = Vec::new();
    for _ in 0..300 {
        children.push(sup.start_reporting_child(temporary.clone()).await.unwrap());
    }
    assert_eq!(sup.count_children().await.unwrap().active, 300);
    let listed: Vec<ProcessHandle> = sup
        .which_children()
        .await
        .unwrap()
        .iter()
        .map(|child| child.state.handle().cloned().unwrap())
        .collect();
    assert_eq!(listed, children);
    tokio::time::timeout(WAIT, sup.stop())
        .await
        .expect("the supervisor's stop hung");
    assert!(children.iter().all(|child| !child.is_alive()));
}

#[tokio::test]
async fn a_killed_supervisor_kills_the_children_it_has_not_collected_yet() {
    let (sup, notice) = quiet(DynamicSupervisorFlags::new()).await;
    let temporary = queued_spec(&notice).with_restart(RestartType::Temporary);
    let mut children = Vec::new();
    for _ in 0..3 {
        children.push(sup.start_reporting_child(temporary.clone()).await.unwrap());
    }
    // No message since: the supervisor has not collected them.
    sup.handle().kill();
    for child in &children {
        tokio::time::timeout(WAIT, child.exited())
            .await
            .expect("a child outlived its killed supervisor");
    }
    assert!(matches!(
        sup.start_reporting_child(temporary).await,
        Err(mabeam_supervision_core::SupervisorError::SupervisorGone)
    ));
}
