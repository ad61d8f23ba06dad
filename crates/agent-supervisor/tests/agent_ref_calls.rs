//! AgentRef: asks with the default and a chosen timeout, tells that wait
//! for mailbox room, try_tell's MailboxFull, and refs across restarts.

mod common;

use std::time::Duration;

use common::{Cmd, Worker, setup, setup_with, worker};
use mabeam_agent_supervisor::{AgentError, CallOptions, DEFAULT_ASK_TIMEOUT};
use mabeam_supervision_core::{AgentStatus, Clock};

#[tokio::test(start_paused = true)]
async fn ask_times_out_after_five_seconds_by_default() {
    assert_eq!(DEFAULT_ASK_TIMEOUT, Duration::from_secs(5));
    let s = setup_with(|o| o.with_clock(Clock::tokio())).await;
    s.agents.register_agent("a", worker("k")).unwrap();
    s.agents.start_agent("a").await.unwrap();
    let a = s.agents.agent_ref::<Worker>("a").unwrap();
    let started = tokio::time::Instant::now();
    let err = a
        .ask(Cmd::Sleep(Duration::from_secs(60)))
        .await
        .unwrap_err();
    assert!(matches!(err, AgentError::Timeout(_)), "{err:?}");
    assert_eq!(started.elapsed(), Duration::from_secs(5));
    // Per call.
    let started = tokio::time::Instant::now();
    let err = a
        .ask_with(Cmd::Get, CallOptions::timeout(Duration::from_millis(100)))
        .await
        .unwrap_err();
    assert!(matches!(err, AgentError::Timeout(_)));
    assert_eq!(started.elapsed(), Duration::from_millis(100));
}

#[tokio::test]
async fn a_full_mailbox_fails_try_tell_and_makes_tell_wait() {
    let s = setup().await;
    s.agents
        .register_agent("a", worker("k").with_mailbox_capacity(1))
        .unwrap();
    s.agents.start_agent("a").await.unwrap();
    let a = s.agents.agent_ref::<Worker>("a").unwrap();
    // Block the agent in a handler, then fill its one mailbox place.
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let blocker = tokio::spawn({
        let a = a.clone();
        async move {
            a.tell(Cmd::Sleep(Duration::from_secs(3600))).await.unwrap();
            let _ = tx.send(());
        }
    });
    rx.await.unwrap();
    blocker.await.unwrap();
    // Taken by the handler, or queued: fill until full.
    let mut queued = 0;
    loop {
        match a.try_tell(Cmd::Add(1)) {
            Ok(()) => queued += 1,
            Err(AgentError::MailboxFull(id)) => {
                assert_eq!(id.as_str(), "a");
                break;
            }
            Err(other) => panic!("{other:?}"),
        }
        assert!(queued <= 2);
    }
    // tell waits for room: still waiting after a while of real time; the
    // agent is stuck, so kill it and let the waiter go through to the next
    // incarnation.
    let waiting = tokio::spawn({
        let a = a.clone();
        async move { a.tell(Cmd::Add(100)).await }
    });
    tokio::task::yield_now().await;
    assert!(!waiting.is_finished());
    s.agents.lookup("a").unwrap().kill();
    waiting.await.unwrap().unwrap();
    assert!(a.ask(Cmd::Get).await.unwrap() >= 100);
}

#[tokio::test]
async fn refs_say_why_they_cannot_reach_an_agent() {
    let s = setup().await;
    assert!(matches!(
        s.agents.agent_ref::<Worker>("nope"),
        Err(AgentError::NotFound(_))
    ));
    s.agents.register_agent("a", worker("k")).unwrap();
    let a = s.agents.agent_ref::<Worker>("a").unwrap();
    assert_eq!(a.id().as_str(), "a");
    assert!(matches!(
        a.ask(Cmd::Get).await,
        Err(AgentError::NotRunning {
            status: AgentStatus::Registered,
            ..
        })
    ));
    assert!(matches!(
        a.try_tell(Cmd::Get),
        Err(AgentError::NotRunning { .. })
    ));
    // Of another type.
    struct Other;
    impl mabeam_agent_supervisor::Agent for Other {
        type Args = ();
        type Message = ();
        type Reply = ();
        type Checkpoint = ();
        async fn on_start(
            _: (),
            _: Option<()>,
        ) -> Result<Self, mabeam_supervision_core::StartError> {
            Ok(Other)
        }
        async fn handle(&mut self, _: (), _: &mut mabeam_agent_supervisor::AgentContext<'_>) {}
    }
    assert!(matches!(
        s.agents.agent_ref::<Other>("a"),
        Err(AgentError::WrongType { .. })
    ));
}

#[tokio::test]
async fn an_ask_to_an_agent_that_crashes_on_it_says_crashed() {
    let s = setup().await;
    s.agents.register_agent("a", worker("k")).unwrap();
    s.agents.start_agent("a").await.unwrap();
    let a = s.agents.agent_ref::<Worker>("a").unwrap();
    match a.ask(Cmd::Panic).await {
        Err(AgentError::Crashed { reason, .. }) => {
            assert!(
                matches!(reason, mabeam_supervision_core::ExitReason::Panic(_)),
                "{reason:?}"
            )
        }
        other => panic!("{other:?}"),
    }
    // And the next ask reaches the restarted agent.
    assert_eq!(a.ask(Cmd::Get).await.unwrap(), 0);
}
