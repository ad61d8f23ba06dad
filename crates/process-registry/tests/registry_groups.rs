//! Groups: duplicate keys as Erlang's `pg`.

use mabeam_process_registry::ProcessRegistry;
use mabeam_supervision_core::{
    ExitReason, Namespace, ProcessHandle, RegistryError, RegistryEvent, Telemetry,
};

#[derive(kameo::Actor)]
struct Dummy;

async fn spawn() -> ProcessHandle {
    ProcessHandle::spawn::<Dummy>(Dummy).await.unwrap()
}

// A handle may join a group several times; leave removes one membership.
#[tokio::test]
async fn membership_is_a_multiset() {
    let registry = ProcessRegistry::new(Telemetry::disabled());
    let ns = Namespace::unique_test();
    let (p, q) = (spawn().await, spawn().await);
    registry.join(&ns, "g", p.clone()).unwrap();
    registry.join(&ns, "g", q.clone()).unwrap();
    registry.join(&ns, "g", p.clone()).unwrap();
    assert_eq!(
        registry.members(&ns, "g"),
        vec![p.clone(), q.clone(), p.clone()]
    );

    registry.leave(&ns, "g", &p).unwrap();
    assert_eq!(registry.members(&ns, "g"), vec![p.clone(), q.clone()]);
    registry.leave(&ns, "g", &p).unwrap();
    assert_eq!(registry.members(&ns, "g"), vec![q.clone()]);
    p.stop().await;
    q.stop().await;
}

// Leaving a group you are not in is a typed error, as is leaving a group
// that does not exist.
#[tokio::test]
async fn leaving_without_membership_is_an_error() {
    let registry = ProcessRegistry::new(Telemetry::disabled());
    let ns = Namespace::unique_test();
    let (p, q) = (spawn().await, spawn().await);
    assert!(matches!(
        registry.leave(&ns, "nowhere", &p),
        Err(RegistryError::NotInGroup(g)) if &*g == "nowhere"
    ));
    registry.join(&ns, "g", q.clone()).unwrap();
    assert!(matches!(
        registry.leave(&ns, "g", &p),
        Err(RegistryError::NotInGroup(_))
    ));
    assert_eq!(registry.members(&ns, "g"), vec![q.clone()]);
    p.stop().await;
    q.stop().await;
}

// A group whose last member leaves disappears.
#[tokio::test]
async fn empty_group_disappears() {
    let registry = ProcessRegistry::new(Telemetry::disabled());
    let ns = Namespace::unique_test();
    let p = spawn().await;
    registry.join(&ns, "a", p.clone()).unwrap();
    registry.join(&ns, "b", p.clone()).unwrap();
    let groups: Vec<_> = registry.groups(&ns).iter().map(|g| g.to_string()).collect();
    assert_eq!(groups, ["a", "b"]);
    registry.leave(&ns, "a", &p).unwrap();
    let groups: Vec<_> = registry.groups(&ns).iter().map(|g| g.to_string()).collect();
    assert_eq!(groups, ["b"]);
    assert!(registry.members(&ns, "a").is_empty());
    registry.leave(&ns, "b", &p).unwrap();
    assert!(registry.groups(&ns).is_empty());
    assert_eq!(registry.tracked_processes(), 0);
    p.stop().await;
}

// A member that stops leaves every group at once (for members()), and its
// cleanup task removes each membership with its exit reason.
#[tokio::test]
async fn dead_members_leave_automatically() {
    let registry = ProcessRegistry::new(Telemetry::disabled());
    let ns = Namespace::unique_test();
    let mut events = registry.subscribe(&ns);
    let (p, q) = (spawn().await, spawn().await);
    registry.join(&ns, "g", p.clone()).unwrap();
    registry.join(&ns, "g", p.clone()).unwrap();
    registry.join(&ns, "g", q.clone()).unwrap();
    registry.join(&ns, "solo", p.clone()).unwrap();

    p.stop().await;
    assert_eq!(registry.members(&ns, "g"), vec![q.clone()]);
    assert!(registry.members(&ns, "solo").is_empty());

    let mut left = Vec::new();
    while left.len() < 3 {
        match events.recv().await.unwrap() {
            RegistryEvent::Left {
                group,
                handle,
                exit,
            } => {
                assert_eq!(handle, p);
                assert_eq!(exit, Some(ExitReason::Shutdown(None)));
                left.push(group.to_string());
            }
            RegistryEvent::Joined { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    left.sort();
    assert_eq!(left, ["g", "g", "solo"]);
    // Physically gone: the group "solo" no longer exists, p is in no group.
    assert!(matches!(
        registry.leave(&ns, "solo", &p),
        Err(RegistryError::NotInGroup(_))
    ));
    assert!(matches!(
        registry.leave(&ns, "g", &p),
        Err(RegistryError::NotInGroup(_))
    ));
    let groups: Vec<_> = registry.groups(&ns).iter().map(|g| g.to_string()).collect();
    assert_eq!(groups, ["g"]);
    q.stop().await;
}

// A dead process cannot join.
#[tokio::test]
async fn dead_process_cannot_join() {
    let registry = ProcessRegistry::new(Telemetry::disabled());
    let ns = Namespace::unique_test();
    let p = spawn().await;
    p.stop().await;
    assert!(matches!(
        registry.join(&ns, "g", p),
        Err(RegistryError::NotAlive)
    ));
    assert!(registry.groups(&ns).is_empty());
}
