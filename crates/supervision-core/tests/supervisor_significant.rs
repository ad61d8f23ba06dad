//! OTP 24's significant children and `auto_shutdown` (issue 8, item 10g):
//! a significant child that terminates by itself, and is not restarted,
//! stops its supervisor (any_significant) or does so once every significant
//! child has (all_significant); the supervisor exits with `shutdown`.

mod common;

use std::time::Duration;

use common::*;
use mabeam_supervision_core::{
    AutoShutdown, DynamicSupervisor, ExitReason, FlagsError, RestartType, Strategy, Supervisor,
    SupervisorError, SupervisorFlags, Telemetry, events,
    testkit::{TelemetryProbe, TestKit},
};

const WAIT: Duration = Duration::from_secs(10);

fn flags(auto_shutdown: AutoShutdown) -> SupervisorFlags {
    roomy(Strategy::OneForOne).with_auto_shutdown(auto_shutdown)
}

async fn exited(sup: &Supervisor) -> ExitReason {
    tokio::time::timeout(WAIT, sup.exited())
        .await
        .expect("the supervisor stops by itself")
}

#[tokio::test]
async fn any_significant_stops_the_supervisor_when_one_terminates() {
    let (lab, mut events) = Lab::new();
    let sup = Supervisor::start(
        flags(AutoShutdown::AnySignificant),
        [
            lab.worker("w"),
            lab.worker_of("s", RestartType::Transient)
                .with_significant(true),
        ],
    )
    .await
    .unwrap();
    events.take(2).await;
    make_exit(&sup, "s", Exit::Normal).await;
    let reason = exited(&sup).await;
    assert!(
        matches!(reason, ExitReason::Shutdown(Some(_))),
        "{reason:?}"
    );
    assert!(reason.is_clean());
    assert_eq!(lab.live(), 0, "its other children are stopped");
}

#[tokio::test]
async fn all_significant_waits_for_every_significant_child() {
    let (lab, mut events) = Lab::new();
    let telemetry = Telemetry::new();
    let mut exits = TelemetryProbe::attach(&telemetry, &["supervisor", "child", "exited"]);
    let sup = Supervisor::start(
        flags(AutoShutdown::AllSignificant).with_telemetry(telemetry.clone()),
        [
            lab.worker_of("s1", RestartType::Temporary)
                .with_significant(true),
            lab.worker_of("s2", RestartType::Transient)
                .with_significant(true),
            lab.worker("w"),
        ],
    )
    .await
    .unwrap();
    events.take(3).await;
    make_exit(&sup, "s1", Exit::Error).await;
    // The supervisor reports s1's exit while it handles it; this call is
    // answered after: s2 still runs, so the supervisor does too.
    exits.wait_for(events::CHILD_EXITED, WAIT).await.unwrap();
    assert_eq!(sup.count_children().await.unwrap().specs, 2);
    make_exit(&sup, "s2", Exit::Shutdown).await;
    assert!(matches!(exited(&sup).await, ExitReason::Shutdown(Some(_))));
    assert_eq!(lab.live(), 0);
}

#[tokio::test]
async fn a_restarted_or_terminated_significant_child_stops_nothing() {
    let (lab, mut events) = Lab::new();
    let sup = Supervisor::start(
        flags(AutoShutdown::AnySignificant),
        [
            lab.worker_of("s", RestartType::Transient)
                .with_significant(true),
            lab.worker_of("t", RestartType::Transient)
                .with_significant(true),
        ],
    )
    .await
    .unwrap();
    events.take(2).await;
    // A crash restarts a transient child: not a termination.
    make_exit(&sup, "s", Exit::Error).await;
    events.until(started("s")).await;
    // terminate_child is the supervisor's doing, not the child's.
    sup.terminate_child("t").await.unwrap();
    assert!(sup.handle().is_alive());
    assert_eq!(sup.count_children().await.unwrap().active, 1);
    sup.stop().await;
}

#[tokio::test]
async fn significant_children_are_checked() {
    let (lab, _events) = Lab::new();
    let permanent = Supervisor::start(
        flags(AutoShutdown::AnySignificant),
        [lab.worker("p").with_significant(true)],
    )
    .await;
    assert!(matches!(
        permanent,
        Err(SupervisorError::InvalidFlags(
            FlagsError::SignificantPermanent(_)
        ))
    ));
    let never = Supervisor::start(
        flags(AutoShutdown::Never),
        [lab.worker_of("s", RestartType::Transient)
            .with_significant(true)],
    )
    .await;
    assert!(matches!(
        never,
        Err(SupervisorError::InvalidFlags(
            FlagsError::SignificantWithoutAutoShutdown(_)
        ))
    ));
    let sup = Supervisor::start(flags(AutoShutdown::Never), [])
        .await
        .unwrap();
    assert!(matches!(
        sup.start_child(
            lab.worker_of("s", RestartType::Temporary)
                .with_significant(true)
        )
        .await,
        Err(SupervisorError::InvalidFlags(_))
    ));
    sup.stop().await;

    // A DynamicSupervisor has no auto shutdown, as OTP's.
    let (kit, _lifecycle) = TestKit::new();
    let dynamic = DynamicSupervisor::start(Default::default()).await.unwrap();
    assert!(matches!(
        dynamic
            .start_child(
                kit.spec("s")
                    .with_restart(RestartType::Transient)
                    .with_significant(true)
            )
            .await,
        Err(SupervisorError::InvalidFlags(_))
    ));
    dynamic.stop().await;
}
