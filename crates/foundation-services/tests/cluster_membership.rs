//! Issue 24: membership and failure detection on chitchat. Members join
//! through a seed and go joining -> up; a member that crashes (no
//! goodbye) is down on the others within 2 s with the defaults; a
//! restart is a new generation; a cluster of another cookie stays apart.
//! Every wait is bounded; gossip runs on free loopback UDP ports.

use std::time::{Duration, Instant};

use mabeam_foundation_services::cluster::{ClusterError, ClusterMembership};
use mabeam_supervision_core::{
    ErrorCode,
    cluster::{MemberState, Membership, MembershipEvent, MembershipEvents},
};

const COOKIE: &str = "monster";
const WAIT: Duration = Duration::from_secs(15);

fn member(name: &str, seeds: &[std::net::SocketAddr]) -> ClusterMembership {
    ClusterMembership::builder(name, COOKIE)
        .seeds(seeds.iter().copied())
        .tag("http", format!("{name}:http"))
        .build()
        .unwrap()
}

/// The next event that matches, within the bound.
async fn until(
    events: &mut MembershipEvents,
    what: &str,
    matches: impl Fn(&MembershipEvent) -> bool,
) -> MembershipEvent {
    tokio::time::timeout(WAIT, async {
        loop {
            let event = events.recv().await.expect("no lag, not closed");
            if matches(&event) {
                return event;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no event {what} within {WAIT:?}"))
}

fn is(event: &MembershipEvent, node: &str, state: MemberState) -> bool {
    &*event.member.node == node && event.member.state == state
}

/// Three members join through the first one and each sees all three up,
/// each with its generation and announced tags.
#[tokio::test]
async fn members_join_through_a_seed_and_see_each_other_up() {
    let a = member("a@local", &[]);
    let seed = a.start().await.unwrap();
    let mut a_events = a.subscribe();
    let b = member("b@local", &[seed]);
    let c = member("c@local", &[seed]);
    for m in [&a, &b, &c] {
        if m.gossip_addr().is_none() {
            m.start().await.unwrap();
        }
        m.set_state(MemberState::Up).await.unwrap();
    }
    for m in [&b, &c] {
        let mut events = m.subscribe();
        for other in ["a@local", "b@local", "c@local"] {
            if !m
                .members()
                .iter()
                .any(|x| &*x.node == other && x.state == MemberState::Up)
            {
                until(&mut events, other, |e| is(e, other, MemberState::Up)).await;
            }
        }
    }
    for other in ["b@local", "c@local"] {
        if !a
            .members()
            .iter()
            .any(|x| &*x.node == other && x.state == MemberState::Up)
        {
            until(&mut a_events, other, |e| is(e, other, MemberState::Up)).await;
        }
    }
    let seen = a.members();
    assert_eq!(seen.len(), 3, "{seen:?}");
    let b_seen = seen.iter().find(|m| &*m.node == "b@local").unwrap();
    assert_eq!(b_seen.generation, b.generation());
    assert_eq!(b_seen.tag("http"), Some("b@local:http"));
    assert_eq!(a.local().state, MemberState::Up);
    assert_eq!(a.live().len(), 3);
    for m in [c, b, a] {
        m.stop().await;
    }
}

/// A member that crashes (gossip stops, no leaving) is down on the
/// others within 2 s with the default settings; its restart is a new
/// generation that comes up beside the old one's down record.
#[tokio::test]
async fn a_crashed_member_is_down_within_two_seconds_and_its_restart_is_a_new_generation() {
    let a = member("a@local", &[]);
    let seed = a.start().await.unwrap();
    a.set_state(MemberState::Up).await.unwrap();
    let mut events = a.subscribe();
    let b = member("b@local", &[seed]);
    b.start().await.unwrap();
    b.set_state(MemberState::Up).await.unwrap();
    until(&mut events, "b up", |e| is(e, "b@local", MemberState::Up)).await;
    // Let the detector learn b's heartbeat interval.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let killed = Instant::now();
    b.kill();
    let down = until(&mut events, "b down", |e| {
        is(e, "b@local", MemberState::Down)
    })
    .await;
    let took = killed.elapsed();
    assert!(took < Duration::from_secs(2), "down after {took:?}");
    assert_eq!(down.member.generation, b.generation());
    assert_eq!(down.previous, Some(MemberState::Up));

    let b2 = ClusterMembership::builder("b@local", COOKIE)
        .seeds([seed])
        .generation(b.generation() + 1)
        .build()
        .unwrap();
    b2.start().await.unwrap();
    b2.set_state(MemberState::Up).await.unwrap();
    let up = until(&mut events, "b2 up", |e| is(e, "b@local", MemberState::Up)).await;
    assert_eq!(up.member.generation, b.generation() + 1);
    assert_eq!(a.live().len(), 2);
    b2.stop().await;
    a.stop().await;
}

/// A member that leaves announces it: the others see it leaving before it
/// goes.
#[tokio::test]
async fn a_leaving_member_is_seen_leaving_then_down() {
    let a = member("a@local", &[]);
    let seed = a.start().await.unwrap();
    let mut events = a.subscribe();
    let b = member("b@local", &[seed]);
    b.start().await.unwrap();
    b.set_state(MemberState::Up).await.unwrap();
    until(&mut events, "b up", |e| is(e, "b@local", MemberState::Up)).await;
    b.leave().await;
    until(&mut events, "b leaving", |e| {
        is(e, "b@local", MemberState::Leaving)
    })
    .await;
    until(&mut events, "b down", |e| {
        is(e, "b@local", MemberState::Down)
    })
    .await;
    a.stop().await;
}

/// A node of another cookie, seeded with this cluster's address, never
/// appears in it (nor this cluster in its).
#[tokio::test]
async fn a_member_of_another_cookie_stays_apart() {
    let a = member("a@local", &[]);
    let seed = a.start().await.unwrap();
    let mut events = a.subscribe();
    let stranger = ClusterMembership::builder("x@local", "not the cookie")
        .seeds([seed])
        .build()
        .unwrap();
    stranger.start().await.unwrap();
    let b = member("b@local", &[seed]);
    b.start().await.unwrap();
    // By the time a sees b (seeded later), it has heard the stranger's
    // gossip many times over.
    until(&mut events, "b", |e| &*e.member.node == "b@local").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(a.members().iter().all(|m| &*m.node != "x@local"));
    assert!(stranger.members().iter().all(|m| &*m.node == "x@local"));
    for m in [stranger, b, a] {
        m.stop().await;
    }
}

#[tokio::test]
async fn bad_settings_are_named_and_calls_need_a_running_member() {
    let named = |e: ClusterError| (e.code(), e.to_string());
    let bad = ClusterMembership::builder("a b", COOKIE)
        .build()
        .unwrap_err();
    assert_eq!(named(bad).0, 3701);
    let bad = ClusterMembership::builder("a", COOKIE)
        .phi_threshold(f64::NAN)
        .build()
        .unwrap_err();
    assert!(named(bad).1.contains("phi_threshold"));
    let bad = ClusterMembership::builder("a", "").build().unwrap_err();
    assert!(named(bad).1.contains("cookie"));
    let idle = ClusterMembership::builder("a", COOKIE).build().unwrap();
    assert_eq!(
        idle.set_state(MemberState::Up).await,
        Err(ClusterError::NotRunning)
    );
    assert_eq!(idle.local().state, MemberState::Down);
    idle.start().await.unwrap();
    assert_eq!(idle.start().await, Err(ClusterError::AlreadyRunning));
    idle.stop().await;
}

/// Spins `threads` OS threads until `stop` is set: the machine's cores
/// burnt, as busy agents burn them.
fn burn(
    threads: usize,
    stop: &std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..threads)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                }
            })
        })
        .collect()
}

/// With the default settings, members stay up while every core is burnt
/// (twice as many spinning threads as cores, for 4 s): no member is seen
/// leaving `up`, so a busy node does not flap.
#[tokio::test]
async fn busy_cores_do_not_make_members_flap() {
    let a = member("a@local", &[]);
    let seed = a.start().await.unwrap();
    a.set_state(MemberState::Up).await.unwrap();
    let mut events = a.subscribe();
    let b = member("b@local", &[seed]);
    let c = member("c@local", &[seed]);
    for m in [&b, &c] {
        m.start().await.unwrap();
        m.set_state(MemberState::Up).await.unwrap();
    }
    for other in ["b@local", "c@local"] {
        if !a
            .members()
            .iter()
            .any(|x| &*x.node == other && x.state == MemberState::Up)
        {
            until(&mut events, other, |e| is(e, other, MemberState::Up)).await;
        }
    }
    // Let the detector learn the heartbeat intervals.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut b_events = b.subscribe();

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let spinners = burn(2 * cores, &stop);
    // Every change a and b see while the cores burn.
    let mut changes = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(4), async {
        loop {
            tokio::select! {
                Ok(event) = events.recv() => changes.push(event),
                Ok(event) = b_events.recv() => changes.push(event),
            }
        }
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for spinner in spinners {
        spinner.join().unwrap();
    }
    assert!(
        changes.iter().all(|e| e.member.state == MemberState::Up),
        "a member left up under load: {changes:?}"
    );
    assert_eq!(a.live().len(), 3, "{:?}", a.members());
    assert_eq!(b.live().len(), 3, "{:?}", b.members());
    for m in [c, b, a] {
        m.stop().await;
    }
}

/// A twin: a member under a live member's name with a newer generation
/// (a second node started with a name already taken). The others keep
/// the live one up and do not let the twin in while it lives; once the
/// original crashes and is down, the newer generation comes up, as a
/// restart does.
#[tokio::test]
async fn a_twin_under_a_live_members_name_is_kept_out_while_that_member_lives() {
    let a = member("a@local", &[]);
    let seed = a.start().await.unwrap();
    a.set_state(MemberState::Up).await.unwrap();
    let mut events = a.subscribe();
    let b = member("b@local", &[seed]);
    let b_gossip = b.start().await.unwrap();
    b.set_state(MemberState::Up).await.unwrap();
    until(&mut events, "b up", |e| is(e, "b@local", MemberState::Up)).await;

    let twin = ClusterMembership::builder("b@local", COOKIE)
        .seeds([seed])
        .generation(b.generation() + 1)
        .build()
        .unwrap();
    let twin_gossip = twin.start().await.unwrap();
    twin.set_state(MemberState::Up).await.unwrap();
    // c joins through the twin alone: when a sees c, a has had the
    // twin's gossip (the twin's own state travels with what it knows).
    let c = member("c@local", &[twin_gossip]);
    c.start().await.unwrap();
    c.set_state(MemberState::Up).await.unwrap();
    let seen = until(&mut events, "c up, or b changed", |e| {
        is(e, "c@local", MemberState::Up) || &*e.member.node == "b@local"
    })
    .await;
    assert_eq!(&*seen.member.node, "c@local", "b changed: {seen:?}");
    let b_seen = a
        .members()
        .into_iter()
        .find(|m| &*m.node == "b@local")
        .unwrap();
    assert_eq!(b_seen.generation, b.generation(), "{b_seen:?}");
    assert_eq!(b_seen.state, MemberState::Up);
    assert_ne!(b_gossip, twin_gossip);

    // The original crashes: it is down, then the newer generation is up.
    b.kill();
    let down = until(&mut events, "b down", |e| {
        is(e, "b@local", MemberState::Down)
    })
    .await;
    assert_eq!(down.member.generation, b.generation());
    let up = until(&mut events, "the newer b up", |e| {
        is(e, "b@local", MemberState::Up)
    })
    .await;
    assert_eq!(up.member.generation, twin.generation());
    for m in [c, twin, a] {
        m.stop().await;
    }
}
