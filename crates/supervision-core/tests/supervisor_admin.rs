//! The static supervisor's admin calls (start, terminate, restart and
//! delete a child; which and count children) with their typed errors, and
//! the validation of flags and specs before anything starts.

mod common;

use std::time::Duration;

use common::*;
use mabeam_supervision_core::{
    ChildCounts, ChildKind, ChildSpec, ChildState, ErrorCode, FlagsError, RestartType, Shutdown,
    StartError, Strategy, Supervisor, SupervisorError, SupervisorFlags, error_code_range,
};

const _: () = {
    const fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
    assert_send_sync::<Supervisor>();
    assert_send_sync::<SupervisorFlags>();
    assert_send_sync::<Strategy>();
};

async fn start(lab: &Lab, events: &mut Events, ids: &[&str]) -> Supervisor {
    let sup = Supervisor::start(
        SupervisorFlags::default(),
        ids.iter().map(|id| lab.worker(id)),
    )
    .await
    .unwrap();
    events.take(ids.len()).await;
    sup
}

// start_child appends the child to the list and starts it: it stops first.
#[tokio::test]
async fn start_child_appends_and_starts() {
    for strategy in STRATEGIES {
        let (lab, mut events) = Lab::new();
        let sup = Supervisor::start(roomy(strategy), [lab.worker("a")])
            .await
            .unwrap();
        events.take(1).await;
        let b = sup.start_child(lab.worker("b")).await.unwrap();
        assert_eq!(events.next().await, started("b"));
        assert_eq!(handle_of(&sup, "b").await, b);
        let ids: Vec<_> = states(&sup).await.into_iter().map(|(id, _)| id).collect();
        assert_eq!(ids, ["a", "b"]);
        sup.stop().await;
        assert_eq!(events.drain(), [stopped("b"), stopped("a")]);
    }
}

// An id already running: AlreadyStarted with the running child's handle.
#[tokio::test]
async fn start_child_already_started_gives_the_handle() {
    let (lab, mut events) = Lab::new();
    let sup = start(&lab, &mut events, &["a"]).await;
    let a = handle_of(&sup, "a").await;
    match sup.start_child(lab.worker("a")).await {
        Err(SupervisorError::AlreadyStarted(handle)) => assert_eq!(handle, a),
        other => panic!("expected AlreadyStarted, got {other:?}"),
    }
    assert_eq!(lab.live(), 1);
    sup.stop().await;
}

// An id present but not running: AlreadyPresent.
#[tokio::test]
async fn start_child_already_present() {
    let (lab, mut events) = Lab::new();
    let sup = start(&lab, &mut events, &["a"]).await;
    sup.terminate_child("a").await.unwrap();
    assert!(matches!(
        sup.start_child(lab.worker("a")).await,
        Err(SupervisorError::AlreadyPresent)
    ));
    assert_eq!(lab.live(), 0);
    sup.stop().await;
}

// A start error is returned and nothing is kept.
#[tokio::test]
async fn start_child_start_error_keeps_nothing() {
    let (lab, mut events) = Lab::new();
    let sup = start(&lab, &mut events, &["a"]).await;
    let bad = lab.worker_with(
        "bad",
        Options {
            start: StartSwitch::new(StartMode::Fail),
            ..Options::default()
        },
    );
    assert!(matches!(
        sup.start_child(bad).await,
        Err(SupervisorError::Start(StartError::Failed(_)))
    ));
    assert_eq!(sup.count_children().await.unwrap().specs, 1);
    assert!(child_info(&sup, "bad").await.is_none());
    sup.stop().await;
}

// terminate_child stops the child (by its shutdown) and keeps its spec,
// not running; a permanent child is not restarted for it.
#[tokio::test]
async fn terminate_child_keeps_the_spec_not_running() {
    let (lab, mut events) = Lab::new();
    let sup = start(&lab, &mut events, &["a", "b"]).await;
    let a = handle_of(&sup, "a").await;
    sup.terminate_child("a").await.unwrap();
    assert!(!a.is_alive());
    assert_eq!(events.next().await, stopped("a"));
    let info = child_info(&sup, "a").await.unwrap();
    assert_eq!(info.state, ChildState::Terminated);
    assert_eq!(
        sup.count_children().await.unwrap(),
        ChildCounts {
            specs: 2,
            active: 1,
            supervisors: 0,
            workers: 2
        }
    );
    // Terminating a child that is not running succeeds.
    sup.terminate_child("a").await.unwrap();
    sup.stop().await;
    assert_eq!(events.drain(), [stopped("b")]);
}

// A temporary child's spec is removed when it is terminated, as in OTP.
#[tokio::test]
async fn terminate_child_removes_a_temporary_child() {
    let (lab, mut events) = Lab::new();
    let sup = Supervisor::start(
        SupervisorFlags::default(),
        [lab.worker_of("t", RestartType::Temporary)],
    )
    .await
    .unwrap();
    events.take(1).await;
    sup.terminate_child("t").await.unwrap();
    assert!(sup.which_children().await.unwrap().is_empty());
    assert_eq!(lab.live(), 0);
    sup.stop().await;
}

// A child that ignores shutdown is killed after its timeout by
// terminate_child too.
#[tokio::test(start_paused = true)]
async fn terminate_child_kills_after_the_shutdown_timeout() {
    let (lab, _events) = Lab::new();
    let sup = Supervisor::start(
        SupervisorFlags::default(),
        [lab.worker("a")
            .with_shutdown(Shutdown::Timeout(Duration::from_millis(1500)))],
    )
    .await
    .unwrap();
    let a = handle_of(&sup, "a").await;
    worker(&sup, "a").await.tell(Hang).await.unwrap();
    let t0 = tokio::time::Instant::now();
    sup.terminate_child("a").await.unwrap();
    assert_eq!(t0.elapsed(), Duration::from_millis(1500));
    assert_eq!(
        a.exited().await,
        mabeam_supervision_core::ExitReason::Killed
    );
    sup.stop().await;
}

// restart_child starts a not-running child again, at its place in the list.
#[tokio::test]
async fn restart_child_starts_a_terminated_child() {
    let (lab, mut events) = Lab::new();
    let sup = start(&lab, &mut events, &["a", "b"]).await;
    sup.terminate_child("a").await.unwrap();
    let a = sup.restart_child("a").await.unwrap();
    assert_eq!(events.take(2).await, [stopped("a"), started("a")]);
    assert_eq!(handle_of(&sup, "a").await, a);
    assert!(matches!(
        sup.restart_child("a").await,
        Err(SupervisorError::Running)
    ));
    sup.stop().await;
    assert_eq!(events.drain(), [stopped("b"), stopped("a")]);
}

// A failed restart_child leaves the child not running.
#[tokio::test]
async fn restart_child_start_error_leaves_it_not_running() {
    let (lab, mut events) = Lab::new();
    let switch = StartSwitch::default();
    let sup = Supervisor::start(
        SupervisorFlags::default(),
        [lab.worker_with(
            "a",
            Options {
                start: switch.clone(),
                ..Options::default()
            },
        )],
    )
    .await
    .unwrap();
    events.take(1).await;
    sup.terminate_child("a").await.unwrap();
    assert_eq!(
        child_info(&sup, "a").await.unwrap().state,
        ChildState::Terminated
    );
    switch.set(StartMode::Panic);
    assert!(matches!(
        sup.restart_child("a").await,
        Err(SupervisorError::Start(StartError::Panicked(_)))
    ));
    assert_eq!(
        child_info(&sup, "a").await.unwrap().state,
        ChildState::NotRunning
    );
    sup.stop().await;
}

// delete_child removes a spec only when the child is not running.
#[tokio::test]
async fn delete_child_only_when_not_running() {
    let (lab, mut events) = Lab::new();
    let sup = start(&lab, &mut events, &["a", "b"]).await;
    assert!(matches!(
        sup.delete_child("a").await,
        Err(SupervisorError::Running)
    ));
    sup.terminate_child("a").await.unwrap();
    sup.delete_child("a").await.unwrap();
    let ids: Vec<_> = states(&sup).await.into_iter().map(|(id, _)| id).collect();
    assert_eq!(ids, ["b"]);
    assert!(matches!(
        sup.delete_child("a").await,
        Err(SupervisorError::NotFound)
    ));
    // The id is free again.
    sup.start_child(lab.worker("a")).await.unwrap();
    sup.stop().await;
}

// Unknown ids: NotFound, for every call that takes one.
#[tokio::test]
async fn unknown_child_is_not_found() {
    let (lab, mut events) = Lab::new();
    let sup = start(&lab, &mut events, &["a"]).await;
    assert!(matches!(
        sup.terminate_child("x").await,
        Err(SupervisorError::NotFound)
    ));
    assert!(matches!(
        sup.restart_child("x").await,
        Err(SupervisorError::NotFound)
    ));
    assert!(matches!(
        sup.delete_child("x").await,
        Err(SupervisorError::NotFound)
    ));
    sup.stop().await;
}

// which_children: each child's id, handle or state, kind and restart type,
// in list order; count_children counts them.
#[tokio::test]
async fn which_and_count_children() {
    let (lab, mut events) = Lab::new();
    let sup = Supervisor::start(
        SupervisorFlags::default(),
        [
            lab.worker("a"),
            Supervisor::child_spec("inner", SupervisorFlags::default(), [lab.worker("x")]),
            lab.worker_of("t", RestartType::Transient),
        ],
    )
    .await
    .unwrap();
    events.take(3).await;
    sup.terminate_child("t").await.unwrap();

    let children = sup.which_children().await.unwrap();
    let summary: Vec<_> = children
        .iter()
        .map(|c| (&*c.id, c.state.handle().is_some(), c.kind, c.restart))
        .collect();
    assert_eq!(
        summary,
        [
            ("a", true, ChildKind::Worker, RestartType::Permanent),
            ("inner", true, ChildKind::Supervisor, RestartType::Permanent),
            ("t", false, ChildKind::Worker, RestartType::Transient),
        ]
    );
    assert_eq!(children[2].state, ChildState::Terminated);
    assert_eq!(
        sup.count_children().await.unwrap(),
        ChildCounts {
            specs: 3,
            active: 2,
            supervisors: 1,
            workers: 2
        }
    );
    sup.stop().await;
    assert_eq!(lab.live(), 0);
}

// Once the supervisor has stopped, every call says so.
#[tokio::test]
async fn calls_after_stop_fail_with_supervisor_gone() {
    let (lab, mut events) = Lab::new();
    let sup = start(&lab, &mut events, &["a"]).await;
    sup.stop().await;
    let gone = |r: Result<(), SupervisorError>| matches!(r, Err(SupervisorError::SupervisorGone));
    assert!(gone(sup.start_child(lab.worker("b")).await.map(drop)));
    assert!(gone(sup.terminate_child("a").await));
    assert!(gone(sup.restart_child("a").await.map(drop)));
    assert!(gone(sup.delete_child("a").await));
    assert!(gone(sup.which_children().await.map(drop)));
    assert!(gone(sup.count_children().await.map(drop)));
    assert_eq!(lab.live(), 0);
}

// The admin errors carry stable codes in supervision-core's range.
#[test]
fn admin_errors_have_codes_in_range() {
    let range = error_code_range("supervision-core").unwrap();
    let errors = [
        SupervisorError::NotFound,
        SupervisorError::Running,
        SupervisorError::Restarting,
        SupervisorError::AlreadyPresent,
        SupervisorError::SupervisorGone,
        SupervisorError::ChildStart {
            id: "a".into(),
            error: StartError::failed("x"),
        },
    ];
    let codes: Vec<u32> = errors.iter().map(ErrorCode::code).collect();
    assert!(codes.iter().all(|c| range.contains(c)));
    assert_eq!(codes[5], 1208);
    let mut unique = codes.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), codes.len());
}

/// Starting with the children `make` builds must fail validation with
/// `expected`, before anything starts.
async fn rejected(
    flags: SupervisorFlags,
    make: impl FnOnce(&Lab) -> Vec<ChildSpec>,
    expected: FlagsError,
) {
    let (lab, mut events) = Lab::new();
    match Supervisor::start(flags, make(&lab)).await {
        Err(SupervisorError::InvalidFlags(err)) => assert_eq!(err, expected),
        other => panic!("expected {expected:?}, got {other:?}"),
    }
    assert!(events.drain().is_empty(), "something started");
    assert_eq!(lab.live(), 0);
}

#[tokio::test]
async fn duplicate_child_ids_are_rejected() {
    rejected(
        SupervisorFlags::default(),
        |lab| vec![lab.worker("a"), lab.worker("b"), lab.worker("a")],
        FlagsError::DuplicateChildId("a".into()),
    )
    .await;
}

#[tokio::test]
async fn zero_restart_window_is_rejected() {
    rejected(
        SupervisorFlags::default().with_intensity(3, Duration::ZERO),
        |lab| vec![lab.worker("a")],
        FlagsError::InvalidPeriod(Duration::ZERO),
    )
    .await;
}

#[tokio::test]
async fn zero_timeouts_are_rejected() {
    rejected(
        SupervisorFlags::default(),
        |lab| {
            vec![
                lab.worker("a"),
                lab.worker("b")
                    .with_shutdown(Shutdown::Timeout(Duration::ZERO)),
            ]
        },
        FlagsError::ZeroShutdownTimeout("b".into()),
    )
    .await;
    rejected(
        SupervisorFlags::default(),
        |lab| {
            vec![
                lab.worker("a"),
                lab.worker("b").with_start_timeout(Duration::ZERO),
            ]
        },
        FlagsError::ZeroStartTimeout("b".into()),
    )
    .await;
}

// A nested supervisor's flags and children are checked with its parent's,
// before anything in the tree starts.
#[tokio::test]
async fn invalid_nested_tree_is_rejected_before_anything_starts() {
    let (lab, mut events) = Lab::new();
    let inner = Supervisor::child_spec(
        "inner",
        SupervisorFlags::default(),
        [lab.worker("x"), lab.worker("x")],
    );
    let result = Supervisor::start(SupervisorFlags::default(), [lab.worker("a"), inner]).await;
    assert!(matches!(
        result,
        Err(SupervisorError::InvalidFlags(FlagsError::DuplicateChildId(ref id))) if &**id == "x"
    ));
    assert!(events.drain().is_empty());

    let bad_window = Supervisor::child_spec(
        "inner",
        SupervisorFlags::default().with_intensity(1, Duration::ZERO),
        [lab.worker("x")],
    );
    assert_eq!(
        bad_window.validate(),
        Err(FlagsError::InvalidPeriod(Duration::ZERO))
    );
}

// start_child validates its spec too.
#[tokio::test]
async fn start_child_rejects_an_invalid_spec() {
    let (lab, mut events) = Lab::new();
    let sup = start(&lab, &mut events, &["a"]).await;
    assert!(matches!(
        sup.start_child(lab.worker("b").with_start_timeout(Duration::ZERO))
            .await,
        Err(SupervisorError::InvalidFlags(FlagsError::ZeroStartTimeout(
            _
        )))
    ));
    assert!(events.drain().is_empty());
    sup.stop().await;
}
