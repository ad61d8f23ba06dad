//! OTP's `ignore` for a temporary child: the child is not kept. It is
//! absent from `which_children` and `count_children`, whether it was a
//! static child at the supervisor's start or given to `start_child`;
//! permanent and transient children that answer `ignore` stay, not
//! running, as in OTP (supervisor.erl: `{ok, undefined} when
//! ?is_temporary(Child) -> remove`).

use mabeam_supervision_core::{
    ChildSpec, ChildState, DynamicSupervisor, RestartType, StartError, Supervisor, SupervisorError,
    SupervisorFlags,
};

mod common;

use common::{Lab, started};

/// A spec whose every start answers `ignore`.
fn ignoring(id: &str, restart: RestartType) -> ChildSpec {
    ChildSpec::new(id, || async { Err(StartError::Ignored) }).with_restart(restart)
}

async fn ids(sup: &Supervisor) -> Vec<(String, ChildState)> {
    sup.which_children()
        .await
        .unwrap()
        .into_iter()
        .map(|info| (info.id.to_string(), info.state))
        .collect()
}

#[tokio::test]
async fn a_temporary_static_child_that_answers_ignore_is_not_kept() {
    let (lab, mut events) = Lab::new();
    let sup = Supervisor::start(
        SupervisorFlags::default(),
        [
            lab.worker("a"),
            ignoring("temp", RestartType::Temporary),
            ignoring("trans", RestartType::Transient),
            ignoring("perm", RestartType::Permanent),
        ],
    )
    .await
    .expect("an ignored start does not fail the supervisor's start");
    assert_eq!(events.next().await, started("a"));

    let children = ids(&sup).await;
    let names: Vec<&str> = children.iter().map(|(id, _)| id.as_str()).collect();
    // Before: "temp" stayed as NotRunning.
    assert_eq!(names, ["a", "trans", "perm"]);
    assert_eq!(children[1].1, ChildState::NotRunning);
    assert_eq!(children[2].1, ChildState::NotRunning);
    let counts = sup.count_children().await.unwrap();
    assert_eq!((counts.specs, counts.active), (3, 1));
    // Its id is free: nothing of it was kept.
    assert!(matches!(
        sup.restart_child("temp").await,
        Err(SupervisorError::NotFound)
    ));
    sup.stop().await;
    assert_eq!(lab.live(), 0);
}

#[tokio::test]
async fn a_temporary_child_given_to_start_child_that_answers_ignore_is_not_kept() {
    let sup = Supervisor::start(SupervisorFlags::default(), Vec::<ChildSpec>::new())
        .await
        .unwrap();
    for restart in [
        RestartType::Temporary,
        RestartType::Transient,
        RestartType::Permanent,
    ] {
        let id = format!("{restart:?}");
        // The caller is told, whatever the restart type.
        assert!(matches!(
            sup.start_child(ignoring(&id, restart)).await,
            Err(SupervisorError::Start(StartError::Ignored))
        ));
    }
    let names: Vec<String> = ids(&sup).await.into_iter().map(|(id, _)| id).collect();
    // Before: "Temporary" stayed as NotRunning.
    assert_eq!(names, ["Transient", "Permanent"]);
    assert_eq!(sup.count_children().await.unwrap().specs, 2);
    // Not kept, so the same id can be given again.
    assert!(matches!(
        sup.start_child(ignoring("Temporary", RestartType::Temporary))
            .await,
        Err(SupervisorError::Start(StartError::Ignored))
    ));
    sup.stop().await;
}

#[tokio::test]
async fn a_dynamic_supervisor_keeps_no_child_that_answers_ignore() {
    let sup = DynamicSupervisor::start(Default::default()).await.unwrap();
    for restart in [
        RestartType::Temporary,
        RestartType::Transient,
        RestartType::Permanent,
    ] {
        assert!(matches!(
            sup.start_child(ignoring("w", restart)).await,
            Err(SupervisorError::Start(StartError::Ignored))
        ));
    }
    assert!(sup.which_children().await.unwrap().is_empty());
    assert_eq!(sup.count_children().await.unwrap().specs, 0);
    sup.stop().await;
}
