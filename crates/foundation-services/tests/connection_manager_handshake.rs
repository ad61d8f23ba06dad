//! Issue 21, items 10 and 13: the cluster handshake gives a stranger
//! nothing to test cookie guesses against, half-open handshakes are
//! capped, and a peer that restarts while its old connection is silent
//! but open is let in at once (a newer incarnation replaces the stale
//! connection). Every wait is bounded.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, SystemTime},
};

use mabeam_foundation_services::{ConnectionManager, Direction, NodeEvent};
use mabeam_supervision_core::Clock;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::broadcast::Receiver,
};

const COOKIE: &str = "monster";
const WAIT: Duration = Duration::from_secs(10);

async fn write_json(stream: &mut TcpStream, value: serde_json::Value) {
    let body = serde_json::to_vec(&value).unwrap();
    stream
        .write_all(&(body.len() as u32).to_be_bytes())
        .await
        .unwrap();
    stream.write_all(&body).await.unwrap();
}

/// The next frame as JSON, or `None` once the other side closed.
async fn read_json(stream: &mut TcpStream) -> Option<serde_json::Value> {
    let read = async {
        let len = stream.read_u32().await.ok()? as usize;
        let mut body = vec![0; len];
        stream.read_exact(&mut body).await.ok()?;
        serde_json::from_slice(&body).ok()
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("a frame or a close in time")
}

/// A client that knows no cookie opens a handshake with a challenge of its
/// choosing (as protocol 2 dialers did, and as protocol 3 ones do): the
/// node answers with no proof, so nothing can be tested offline.
#[tokio::test]
async fn a_stranger_gets_no_proof_to_test_cookie_guesses_against() {
    let b = ConnectionManager::builder("b@local", COOKIE)
        .build()
        .unwrap();
    let b_addr = b.start().await.unwrap();
    let hellos = [
        serde_json::json!({"type": "hello", "version": 2, "node": "x@evil", "challenge": 7}),
        serde_json::json!({"type": "hello", "version": 3, "node": "x@evil", "generation": 1,
            "nonce": "00000000000000000000000000000007"}),
        serde_json::json!({"type": "hello", "version": 4, "node": "x@evil", "generation": 1,
            "nonce": "00000000000000000000000000000007", "max_frame": 65000}),
    ];
    for hello in hellos {
        let mut stream = TcpStream::connect(b_addr).await.unwrap();
        write_json(&mut stream, hello.clone()).await;
        while let Some(frame) = read_json(&mut stream).await {
            assert!(frame.get("proof").is_none(), "{hello} got {frame}");
            if frame["type"] == "welcome" {
                // Go no further: a proof would need the cookie.
                break;
            }
        }
    }
    b.stop().await;
}

/// Issue 24: a dialer of an older protocol (3: frames in clear after the
/// handshake) is refused with a reason that names both versions, and the
/// node is unharmed: it records nothing and takes the next node.
#[tokio::test]
async fn a_peer_of_an_older_protocol_version_is_refused_with_the_reason() {
    let b = ConnectionManager::builder("b@local", COOKIE)
        .build()
        .unwrap();
    let b_addr = b.start().await.unwrap();
    let mut events = b.subscribe();
    let mut stream = TcpStream::connect(b_addr).await.unwrap();
    let hello = serde_json::json!({"type": "hello", "version": 3, "node": "old@local",
        "generation": 1, "nonce": "00000000000000000000000000000007"});
    write_json(&mut stream, hello).await;
    let refused = read_json(&mut stream).await.expect("a refusal");
    assert_eq!(refused["type"], "refused", "{refused}");
    assert_eq!(
        refused["reason"], "protocol version 3, this node speaks 4",
        "{refused}"
    );
    assert!(
        read_json(&mut stream).await.is_none(),
        "closed after the refusal"
    );
    assert!(b.nodes().is_empty());

    let a = ConnectionManager::builder("a@local", COOKIE)
        .build()
        .unwrap();
    a.start().await.unwrap();
    a.connect(b_addr).await.unwrap();
    assert!(matches!(next(&mut events).await, NodeEvent::Up(info) if &*info.node == "a@local"));
    a.stop().await;
    b.stop().await;
}

/// Issue 24: after the handshake every frame is sealed (Noise): a tap on
/// the wire between two nodes sees their ticks go by, but no frame in
/// clear (protocol 3 sent `{"type":"tick"}` as it is).
#[tokio::test]
async fn frames_after_the_handshake_are_not_readable_on_the_wire() {
    let b = ConnectionManager::builder("b@local", COOKIE)
        .tick(Duration::from_millis(10))
        .build()
        .unwrap();
    let b_addr = b.start().await.unwrap();
    // A tap: forwards both ways, keeps a copy of what flows.
    let tap = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tap_addr = tap.local_addr().unwrap();
    let (copies, mut copied) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    tokio::spawn(async move {
        let (client, _) = tap.accept().await.unwrap();
        let server = TcpStream::connect(b_addr).await.unwrap();
        let (mut cr, mut cw) = client.into_split();
        let (mut sr, mut sw) = server.into_split();
        let copies2 = copies.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok(n @ 1..) = cr.read(&mut buf).await {
                let _ = copies2.send(buf[..n].to_vec());
                if sw.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        });
        let mut buf = vec![0u8; 4096];
        while let Ok(n @ 1..) = sr.read(&mut buf).await {
            let _ = copies.send(buf[..n].to_vec());
            if cw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    });
    let a = ConnectionManager::builder("a@local", COOKIE)
        .tick(Duration::from_millis(10))
        .build()
        .unwrap();
    a.start().await.unwrap();
    assert_eq!(&*a.connect(tap_addr).await.unwrap(), "b@local");
    // Enough bytes for the handshake and a good many ticks both ways.
    let mut seen = Vec::new();
    tokio::time::timeout(WAIT, async {
        while seen.len() < 4096 {
            seen.extend(copied.recv().await.expect("the tap runs"));
        }
    })
    .await
    .expect("ticks flow through the tap");
    let text = String::from_utf8_lossy(&seen);
    assert!(
        text.contains("\"hello\""),
        "the handshake is in clear: {text}"
    );
    assert!(
        !text.contains("tick"),
        "a frame in clear after the handshake: {text}"
    );
    a.stop().await;
    b.stop().await;
}

/// Clients that connect and say nothing hold a handshake slot each, up to
/// the cap (64 by default): the next connection is closed at once, well
/// before the handshake timeout; a real node gets in once they are gone.
#[tokio::test]
async fn half_open_handshakes_are_capped() {
    let b = ConnectionManager::builder("b@local", COOKIE)
        .handshake_timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let b_addr = b.start().await.unwrap();
    let mut silent = Vec::new();
    for _ in 0..64 {
        silent.push(TcpStream::connect(b_addr).await.unwrap());
    }
    let mut past_the_cap = TcpStream::connect(b_addr).await.unwrap();
    let mut buf = [0u8; 1];
    let closed = tokio::time::timeout(Duration::from_secs(3), past_the_cap.read(&mut buf))
        .await
        .expect("closed at once, not after the handshake timeout");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");

    drop(silent);
    let a = ConnectionManager::builder("a@local", COOKIE)
        .build()
        .unwrap();
    a.start().await.unwrap();
    // The slots free as b reads each closed connection's end.
    let connected = tokio::time::timeout(WAIT, async {
        loop {
            if let Ok(node) = a.connect(b_addr).await {
                break node;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("a node gets in once the silent ones are gone");
    assert_eq!(&*connected, "b@local");
    a.stop().await;
    b.stop().await;
}

/// Forwards bytes between a client and `target` until `cut`, then holds
/// both sockets open and forwards nothing (a silent, open connection).
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
                        if n == 0
                            || (!cut.load(Ordering::SeqCst)
                                && to.write_all(&buf[..n]).await.is_err())
                        {
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

async fn next(events: &mut Receiver<NodeEvent>) -> NodeEvent {
    tokio::time::timeout(WAIT, events.recv())
        .await
        .expect("a node event in time")
        .expect("no lag")
}

/// B's first incarnation connects to A, then falls silent with its
/// connection open (a frozen process, a cut cable). B restarts (a newer
/// generation: its wall clock is later) and dials A: A takes it at once,
/// telling its subscribers the old incarnation is down and the new one
/// up, long before the stale connection's ticks would run out (40 s
/// here); the new B sees A up and stays connected.
#[tokio::test]
async fn a_restarted_peer_replaces_its_stale_connection_at_once() {
    let start = SystemTime::now();
    let slow = |name: &str, wall: SystemTime| {
        let (clock, _wall) = Clock::manual(wall);
        ConnectionManager::builder(name, COOKIE)
            .tick(Duration::from_secs(4))
            .misses(10)
            .clock(clock)
            .build()
            .unwrap()
    };
    let a = slow("a@local", start);
    let a_addr = a.start().await.unwrap();
    let mut a_events = a.subscribe();
    let cut = Arc::new(AtomicBool::new(false));
    let through = proxy(a_addr, cut.clone()).await;

    let b_old = slow("b@local", start);
    b_old.start().await.unwrap();
    b_old.connect(through).await.unwrap();
    assert!(matches!(next(&mut a_events).await, NodeEvent::Up(info) if &*info.node == "b@local"));
    cut.store(true, Ordering::SeqCst);

    let b_new = slow("b@local", start + Duration::from_secs(1));
    b_new.start().await.unwrap();
    let mut b_events = b_new.subscribe();
    assert_eq!(&*b_new.connect(a_addr).await.unwrap(), "a@local");
    match next(&mut a_events).await {
        NodeEvent::Down { node, reason } => {
            assert_eq!(&*node, "b@local");
            assert!(reason.contains("newer incarnation"), "{reason}");
        }
        other => panic!("expected the old incarnation down, got {other:?}"),
    }
    assert!(matches!(next(&mut a_events).await,
        NodeEvent::Up(info) if &*info.node == "b@local" && info.direction == Direction::Incoming));
    assert!(matches!(next(&mut b_events).await, NodeEvent::Up(info) if &*info.node == "a@local"));
    let now = a.nodes();
    assert_eq!(now.len(), 1);
    assert_ne!(now[0].addr.port(), 0);
    assert!(b_new.is_connected("a@local"));

    // B's new connection is the live one: closing it is a down at A.
    b_new.disconnect("a@local").unwrap();
    match next(&mut a_events).await {
        NodeEvent::Down { node, reason } => {
            assert_eq!(&*node, "b@local");
            assert!(reason.starts_with("closed by the peer"), "{reason}");
        }
        other => panic!("expected b down, got {other:?}"),
    }
    a.stop().await;
    b_new.stop().await;
    b_old.stop().await;
}
