//! `ProcessHandle::mailbox_len`: the messages waiting in a bounded
//! mailbox, counted while the actor is busy; `None` for an unbounded one.

use std::sync::Arc;

use kameo::{
    Actor,
    message::{Context, Message},
};
use mabeam_supervision_core::{ProcessHandle, Supervisor, SupervisorFlags};
use tokio::sync::{Notify, oneshot};

#[derive(Actor)]
struct Slow;

/// Blocks the actor until `release` is notified; says when it began.
struct Block {
    began: Option<oneshot::Sender<()>>,
    release: Arc<Notify>,
}

impl Message<Block> for Slow {
    type Reply = ();

    async fn handle(&mut self, mut block: Block, _: &mut Context<Self, ()>) {
        if let Some(began) = block.began.take() {
            let _ = began.send(());
        }
        block.release.notified().await;
    }
}

#[tokio::test]
async fn a_bounded_mailbox_tells_its_length() {
    let handle = ProcessHandle::spawn::<Slow>(Slow).await.unwrap();
    assert_eq!(handle.mailbox_len(), Some(0));
    let slow = handle.downcast::<Slow>().unwrap();
    let release = Arc::new(Notify::new());
    let (began, started) = oneshot::channel();
    slow.tell(Block {
        began: Some(began),
        release: release.clone(),
    })
    .await
    .unwrap();
    started.await.unwrap(); // the actor is inside the first handler
    for _ in 0..3 {
        slow.tell(Block {
            began: None,
            release: release.clone(),
        })
        .await
        .unwrap();
    }
    assert_eq!(handle.mailbox_len(), Some(3));
    handle.kill();
    handle.exited().await;
}

#[tokio::test]
async fn a_supervisor_mailbox_is_unbounded_and_says_none() {
    let sup = Supervisor::start(SupervisorFlags::default(), [])
        .await
        .unwrap();
    assert_eq!(sup.handle().mailbox_len(), None);
    sup.stop().await;
}
