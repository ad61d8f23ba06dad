//! ConnectionManager: two (or three) nodes in one process on loopback,
//! the cookie handshake, ticks noticing a silent peer behind a proxy that
//! stops forwarding, seeds redialled across a restart, and bad input.
//! Every wait is on a node event (bounded, so a missing event fails).

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use mabeam_foundation_services::{ConnectionError, ConnectionManager, Direction, NodeEvent};
use mabeam_supervision_core::{ApplicationSpec, Backoff, ErrorCode};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::broadcast::Receiver,
};

const COOKIE: &str = "monster";
/// Bounds every wait for an event that must come.
const WAIT: Duration = Duration::from_secs(10);

fn node(name: &str) -> ConnectionManager {
    ConnectionManager::builder(name, COOKIE)
        .tick(Duration::from_millis(20))
        .misses(3)
        .reconnect(Backoff::new(
            Duration::from_millis(5),
            Duration::from_millis(50),
        ))
        .build()
        .unwrap()
}

async fn next(events: &mut Receiver<NodeEvent>) -> NodeEvent {
    tokio::time::timeout(WAIT, events.recv())
        .await
        .expect("a node event in time")
        .expect("no lag")
}

async fn next_up(events: &mut Receiver<NodeEvent>) -> Arc<str> {
    match next(events).await {
        NodeEvent::Up(info) => info.node,
        other => panic!("expected a node up, got {other:?}"),
    }
}

async fn next_down(events: &mut Receiver<NodeEvent>) -> (Arc<str>, String) {
    match next(events).await {
        NodeEvent::Down { node, reason } => (node, reason),
        other => panic!("expected a node down, got {other:?}"),
    }
}

#[tokio::test]
async fn two_nodes_connect_see_each_other_and_disconnect() {
    let (a, b) = (node("a@local"), node("b@local"));
    a.start().await.unwrap();
    let b_addr = b.start().await.unwrap();
    let (mut a_events, mut b_events) = (a.subscribe(), b.subscribe());

    assert_eq!(&*a.connect(b_addr).await.unwrap(), "b@local");
    assert_eq!(&*next_up(&mut a_events).await, "b@local");
    assert_eq!(&*next_up(&mut b_events).await, "a@local");
    let a_view = a.nodes();
    assert_eq!(a_view.len(), 1);
    assert_eq!(
        (&*a_view[0].node, a_view[0].addr, a_view[0].direction),
        ("b@local", b_addr, Direction::Outgoing)
    );
    assert_eq!(b.nodes()[0].direction, Direction::Incoming);

    // Dialling a connected node again keeps the one connection.
    assert_eq!(&*a.connect(b_addr).await.unwrap(), "b@local");
    assert_eq!(a.nodes().len(), 1);

    a.disconnect("b@local").unwrap();
    let (gone, reason) = next_down(&mut a_events).await;
    assert_eq!((&*gone, &*reason), ("b@local", "disconnected on request"));
    let (gone, reason) = next_down(&mut b_events).await;
    assert_eq!(&*gone, "a@local");
    assert!(reason.starts_with("closed by the peer"), "{reason}");
    assert!(a.nodes().is_empty() && b.nodes().is_empty());
    assert_eq!(
        a.disconnect("b@local"),
        Err(ConnectionError::NotConnected("b@local".into()))
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_wrong_cookie_or_the_same_name_is_refused_and_recorded_nowhere() {
    let b = node("b@local");
    let b_addr = b.start().await.unwrap();
    let mut b_events = b.subscribe();
    let intruder = ConnectionManager::builder("x@local", "not the cookie")
        .build()
        .unwrap();
    intruder.start().await.unwrap();
    let refused = intruder.connect(b_addr).await.unwrap_err();
    assert_eq!(refused, ConnectionError::BadCookie { addr: b_addr });
    assert_eq!(refused.code(), 3604);

    let twin = node("b@local");
    twin.start().await.unwrap();
    assert!(matches!(
        twin.connect(b_addr).await,
        Err(ConnectionError::Refused { reason, .. }) if reason.contains("b@local too")
    ));
    assert!(intruder.nodes().is_empty() && twin.nodes().is_empty() && b.nodes().is_empty());

    // B took neither: the first node it sees up is the one with the cookie.
    let a = node("a@local");
    a.start().await.unwrap();
    a.connect(b_addr).await.unwrap();
    assert_eq!(&*next_up(&mut b_events).await, "a@local");
    for manager in [a, b, intruder, twin] {
        manager.stop().await;
    }
}

/// A second node under a live node's name, of a newer generation (as a
/// restart would be), dials a: a pings the live connection, which
/// answers, so the newcomer is refused with the reason ("taken by a live
/// node"); the live b keeps its connection and a tells no one b went
/// down.
#[tokio::test]
async fn a_twin_under_a_live_nodes_name_is_refused_and_the_live_one_stays() {
    let a = node("a@local");
    let a_addr = a.start().await.unwrap();
    let mut a_events = a.subscribe();
    let b = node("b@local");
    b.start().await.unwrap();
    b.connect(a_addr).await.unwrap();
    assert_eq!(&*next_up(&mut a_events).await, "b@local");

    let twin = node("b@local");
    // A newer generation than b's, as any later start has (generations
    // are start times in ms): restarted until it is.
    loop {
        twin.start().await.unwrap();
        if twin.generation() > b.generation() {
            break;
        }
        twin.stop().await;
    }
    let mut twin_events = twin.subscribe();
    let _ = twin.connect(a_addr).await;
    let reason = loop {
        if let NodeEvent::Down { node, reason } = next(&mut twin_events).await {
            assert_eq!(&*node, "a@local");
            break reason;
        }
    };
    assert!(reason.contains("taken by a live node"), "{reason}");
    assert!(b.is_connected("a@local"));
    let held = a.nodes();
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(&*held[0].node, "b@local");
    assert!(
        a_events.try_recv().is_err(),
        "a told of no change: the live b stayed"
    );
    for manager in [twin, b, a] {
        manager.stop().await;
    }
}

/// Forwards bytes both ways between a client and `target` until `cut`
/// is set, then holds both sockets open and forwards nothing: a partition.
async fn proxy(target: SocketAddr, cut: Arc<AtomicBool>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = TcpStream::connect(target).await.unwrap();
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            for (mut from, mut to) in [(client_read, server_write), (server_read, client_write)] {
                let cut = cut.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = from.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        if cut.load(Ordering::SeqCst) {
                            // Swallow: the peer hears nothing, nothing closes.
                            continue;
                        }
                        if to.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    std::future::pending::<()>().await;
                });
            }
        }
    });
    addr
}

#[tokio::test]
async fn a_silent_peer_is_declared_down_after_its_missed_ticks() {
    let (a, b) = (node("a@local"), node("b@local"));
    a.start().await.unwrap();
    let b_addr = b.start().await.unwrap();
    let cut = Arc::new(AtomicBool::new(false));
    let through = proxy(b_addr, cut.clone()).await;
    let (mut a_events, mut b_events) = (a.subscribe(), b.subscribe());
    assert_eq!(&*a.connect(through).await.unwrap(), "b@local");
    next_up(&mut a_events).await;
    next_up(&mut b_events).await;

    cut.store(true, Ordering::SeqCst);
    let (gone, reason) = next_down(&mut a_events).await;
    assert_eq!(&*gone, "b@local");
    assert!(reason.starts_with("no tick"), "{reason}");
    let (gone, reason) = next_down(&mut b_events).await;
    assert_eq!(&*gone, "a@local");
    assert!(reason.starts_with("no tick"), "{reason}");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_seed_is_dialled_when_it_comes_up_and_again_after_a_restart() {
    // A free port for B, known before B starts.
    let b_addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let a = ConnectionManager::builder("a@local", COOKIE)
        .tick(Duration::from_millis(20))
        .seeds([b_addr])
        .reconnect(Backoff::new(
            Duration::from_millis(5),
            Duration::from_millis(20),
        ))
        .build()
        .unwrap();
    let mut a_events = a.subscribe();
    a.start().await.unwrap();

    let b_first = node_on("b@local", b_addr);
    b_first.start().await.unwrap();
    assert_eq!(&*next_up(&mut a_events).await, "b@local");
    b_first.stop().await;
    assert_eq!(&*next_down(&mut a_events).await.0, "b@local");

    let b_again = node_on("b@local", b_addr);
    b_again.start().await.unwrap();
    assert_eq!(&*next_up(&mut a_events).await, "b@local");
    assert_eq!(a.nodes()[0].direction, Direction::Outgoing);
    a.stop().await;
    b_again.stop().await;
}

fn node_on(name: &str, addr: SocketAddr) -> ConnectionManager {
    ConnectionManager::builder(name, COOKIE)
        .tick(Duration::from_millis(20))
        .listen(addr)
        .build()
        .unwrap()
}

#[tokio::test]
async fn garbage_on_the_wire_is_dropped_and_the_node_keeps_serving() {
    let b = node("b@local");
    let b_addr = b.start().await.unwrap();
    let mut b_events = b.subscribe();

    // A frame announcing 4 GiB, and one that is not JSON.
    let mut huge = TcpStream::connect(b_addr).await.unwrap();
    huge.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    let mut junk = TcpStream::connect(b_addr).await.unwrap();
    junk.write_all(&5u32.to_be_bytes()).await.unwrap();
    junk.write_all(b"nope!").await.unwrap();
    // B closes both: each read ends.
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(WAIT, huge.read_to_end(&mut buf))
        .await
        .unwrap();
    let _ = tokio::time::timeout(WAIT, junk.read_to_end(&mut buf))
        .await
        .unwrap();

    let a = node("a@local");
    a.start().await.unwrap();
    a.connect(b_addr).await.unwrap();
    assert_eq!(&*next_up(&mut b_events).await, "a@local");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn bad_settings_and_names_are_named_and_calls_need_a_running_manager() {
    let named = |e: ConnectionError| (e.code(), e.to_string());
    let bad_name = ConnectionManager::builder("a b", COOKIE)
        .build()
        .unwrap_err();
    assert_eq!(bad_name.code(), 3601);
    let no_cookie = ConnectionManager::builder("a", "").build().unwrap_err();
    assert_eq!(named(no_cookie).0, 3602);
    let one_miss = ConnectionManager::builder("a", COOKIE)
        .misses(1)
        .build()
        .unwrap_err();
    assert!(matches!(
        one_miss,
        ConnectionError::InvalidSetting {
            setting: "misses",
            ..
        }
    ));

    let a = node("a@local");
    let nowhere: SocketAddr = "127.0.0.1:9".parse().unwrap();
    assert_eq!(a.connect(nowhere).await, Err(ConnectionError::NotRunning));
    a.start().await.unwrap();
    assert_eq!(a.start().await, Err(ConnectionError::AlreadyRunning));
    a.stop().await;
    assert_eq!(a.local_addr(), None);
}

#[tokio::test]
async fn as_a_service_it_listens_while_its_application_runs() {
    let b = node("b@local");
    let b_addr = b.start().await.unwrap();
    let mut b_events = b.subscribe();
    let a = ConnectionManager::builder("a@local", COOKIE)
        .seeds([b_addr])
        .build()
        .unwrap();
    let app = ApplicationSpec::new("node")
        .service(a.service())
        .start()
        .await
        .unwrap();
    assert!(a.local_addr().is_some());
    assert!(app.health().await.services[0].health.is_healthy());
    assert_eq!(&*next_up(&mut b_events).await, "a@local");

    app.stop().await.unwrap();
    assert_eq!(a.local_addr(), None);
    assert_eq!(&*next_down(&mut b_events).await.0, "a@local");
    b.stop().await;
}
