//! One connection's life: the handshake (dialling or accepted), then the
//! loop that ticks, watches for the peer's ticks, and closes on request;
//! and the manager's accept and seed loops.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::{
    net::{TcpListener, TcpStream, tcp::OwnedWriteHalf},
    sync::{Notify, broadcast::error::RecvError, mpsc},
};

use super::{
    ConnectionError, Direction, Inner, NodeEvent, NodeInfo, valid_node_name,
    wire::{self, Frame, VERSION, read_frame, write_frame},
};

/// Dials `addr`, runs the handshake, and hands the connection to its own
/// task. Answers the node's name.
pub(super) async fn connect(
    inner: &Arc<Inner>,
    addr: SocketAddr,
) -> Result<Arc<str>, ConnectionError> {
    if inner.running.lock().is_none() {
        return Err(ConnectionError::NotRunning);
    }
    let (node, stream) = bounded(inner, addr, dial(inner, addr)).await?;
    established(inner, node.clone(), stream, addr, Direction::Outgoing);
    Ok(node)
}

/// Accepts connections until the manager stops; each handshake runs in a
/// task of its own, so a slow dialler holds up no one.
pub(super) async fn accept_loop(inner: Arc<Inner>, listener: TcpListener) {
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(_) => {
                // Out of file descriptors, say: try again shortly.
                inner.clock.sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let task_inner = inner.clone();
        inner.spawn(async move {
            let inner = task_inner;
            // A refused or broken handshake leaves nothing behind: the
            // dialler is told why, if it listens.
            if let Ok((node, stream)) = bounded(&inner, addr, listen(&inner, stream, addr)).await {
                established(&inner, node, stream, addr, Direction::Incoming);
            }
        });
    }
}

/// Keeps a seed connected: dials it, waits for its down notice, dials
/// again, with the backoff between failed dials.
pub(super) async fn seed_loop(inner: Arc<Inner>, seed: SocketAddr) {
    let mut events = inner.events.subscribe();
    let mut attempt = 0;
    loop {
        match connect(&inner, seed).await {
            Ok(node) => {
                attempt = 0;
                // Notices from before this connection are stale.
                while events.try_recv().is_ok() {}
                while inner.peers.lock().contains_key(&node) {
                    match events.recv().await {
                        Ok(NodeEvent::Down { node: down, .. }) if down == node => break,
                        Ok(_) | Err(RecvError::Lagged(_)) => {}
                        Err(RecvError::Closed) => return,
                    }
                }
            }
            Err(_) => {
                inner.clock.sleep(inner.reconnect.delay(attempt)).await;
                attempt = attempt.saturating_add(1);
            }
        }
    }
}

/// Runs a handshake within the handshake timeout.
async fn bounded<T>(
    inner: &Inner,
    addr: SocketAddr,
    handshake: impl Future<Output = Result<T, ConnectionError>>,
) -> Result<T, ConnectionError> {
    let timeout = inner.handshake_timeout;
    tokio::select! {
        result = handshake => result,
        () = inner.clock.sleep(timeout) => Err(ConnectionError::HandshakeTimeout { addr, timeout }),
    }
}

/// The dialler's side of the handshake.
async fn dial(inner: &Inner, addr: SocketAddr) -> Result<(Arc<str>, TcpStream), ConnectionError> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| ConnectionError::io(format!("connecting to {addr}"), &e))?;
    let _ = stream.set_nodelay(true);
    let challenge: u64 = rand::random();
    let hello = Frame::Hello {
        version: VERSION,
        node: inner.node.to_string(),
        challenge,
    };
    write_frame(&mut stream, &hello, addr).await?;
    let (node, theirs) = match read_frame(&mut stream, addr).await? {
        Frame::Welcome {
            node,
            challenge: theirs,
            proof,
        } => {
            let node = valid_node_name(&node)?;
            let names = (&*inner.node, &*node);
            if !wire::verify(&inner.cookie, "welcome", challenge, names, &proof) {
                refuse(&mut stream, addr, "bad cookie").await;
                return Err(ConnectionError::BadCookie { addr });
            }
            (node, theirs)
        }
        Frame::Refused { reason } => return Err(ConnectionError::Refused { addr, reason }),
        other => return Err(unexpected(addr, &other)),
    };
    let proof = wire::proof(&inner.cookie, "proof", theirs, &inner.node, &node);
    write_frame(&mut stream, &Frame::Proof { proof }, addr).await?;
    match read_frame(&mut stream, addr).await? {
        Frame::Accepted => Ok((node, stream)),
        Frame::Refused { reason } => Err(ConnectionError::Refused { addr, reason }),
        other => Err(unexpected(addr, &other)),
    }
}

/// The listener's side of the handshake.
async fn listen(
    inner: &Inner,
    mut stream: TcpStream,
    addr: SocketAddr,
) -> Result<(Arc<str>, TcpStream), ConnectionError> {
    let _ = stream.set_nodelay(true);
    let (node, challenge) = match read_frame(&mut stream, addr).await? {
        Frame::Hello {
            version,
            node,
            challenge,
        } => {
            if version != VERSION {
                let reason = format!("protocol version {version}, this node speaks {VERSION}");
                refuse(&mut stream, addr, &reason).await;
                return Err(ConnectionError::Refused { addr, reason });
            }
            let node = match valid_node_name(&node) {
                Ok(node) => node,
                Err(error) => {
                    refuse(&mut stream, addr, &error.to_string()).await;
                    return Err(error);
                }
            };
            if node == inner.node {
                let reason = format!("this node is {node} too");
                refuse(&mut stream, addr, &reason).await;
                return Err(ConnectionError::Refused { addr, reason });
            }
            (node, challenge)
        }
        other => return Err(unexpected(addr, &other)),
    };
    let mine: u64 = rand::random();
    let welcome = Frame::Welcome {
        node: inner.node.to_string(),
        challenge: mine,
        proof: wire::proof(&inner.cookie, "welcome", challenge, &node, &inner.node),
    };
    write_frame(&mut stream, &welcome, addr).await?;
    match read_frame(&mut stream, addr).await? {
        Frame::Proof { proof } => {
            if !wire::verify(&inner.cookie, "proof", mine, (&node, &inner.node), &proof) {
                refuse(&mut stream, addr, "bad cookie").await;
                return Err(ConnectionError::BadCookie { addr });
            }
        }
        // The dialler found our proof wrong.
        Frame::Refused { .. } => return Err(ConnectionError::BadCookie { addr }),
        other => return Err(unexpected(addr, &other)),
    }
    write_frame(&mut stream, &Frame::Accepted, addr).await?;
    Ok((node, stream))
}

async fn refuse(stream: &mut TcpStream, addr: SocketAddr, reason: &str) {
    let reason = reason.to_owned();
    let _ = write_frame(stream, &Frame::Refused { reason }, addr).await;
}

fn unexpected(addr: SocketAddr, frame: &Frame) -> ConnectionError {
    ConnectionError::Protocol {
        addr,
        detail: format!("unexpected {frame:?}"),
    }
}

/// Records a connection whose handshake finished and runs it in a task of
/// the running incarnation (or closes it if another connection to the same
/// node wins, or the manager stopped meanwhile).
fn established(
    inner: &Arc<Inner>,
    node: Arc<str>,
    stream: TcpStream,
    addr: SocketAddr,
    direction: Direction,
) {
    let conn = inner.next_conn();
    let initiator = match direction {
        Direction::Outgoing => inner.node.clone(),
        Direction::Incoming => node.clone(),
    };
    let info = NodeInfo {
        node: node.clone(),
        addr,
        direction,
        up_since_unix_ms: inner.clock.unix_millis(),
    };
    let Some(close) = inner.register(conn, info, initiator) else {
        let _ = inner.spawn(goodbye(stream, addr, "duplicate connection"));
        return;
    };
    let task_inner = inner.clone();
    let node_for_task = node.clone();
    let spawned = inner.spawn(async move {
        let reason = run(&task_inner, stream, addr, &close).await;
        task_inner.unregister(&node_for_task, conn, reason);
    });
    if !spawned {
        inner.unregister(&node, conn, "the connection manager stopped".to_owned());
    }
}

async fn goodbye(mut stream: TcpStream, addr: SocketAddr, reason: &str) {
    let reason = reason.to_owned();
    let _ = write_frame(&mut stream, &Frame::Bye { reason }, addr).await;
}

/// The life of an established connection; answers why it ended.
async fn run(inner: &Inner, stream: TcpStream, addr: SocketAddr, close: &Notify) -> String {
    let (mut reader, mut writer) = stream.into_split();
    let (frames, mut incoming) = mpsc::channel(16);
    // Reads in a task of its own: a frame read is not cancel-safe.
    let reading = tokio::spawn(async move {
        loop {
            let frame = read_frame(&mut reader, addr).await;
            let failed = frame.is_err();
            if frames.send(frame).await.is_err() || failed {
                break;
            }
        }
    });
    let _reading = AbortOnDrop(reading.abort_handle());
    let tick = inner.tick;
    let silence = tick * inner.misses;
    let mut last_heard = inner.clock.now();
    let mut next_tick = last_heard + tick;
    loop {
        tokio::select! {
            frame = incoming.recv() => match frame {
                Some(Ok(Frame::Tick)) => last_heard = inner.clock.now(),
                Some(Ok(Frame::Bye { reason })) => return format!("closed by the peer: {reason}"),
                Some(Ok(other)) => {
                    let error = unexpected(addr, &other);
                    // A goodbye is a courtesy: the connection closes either way.
                    let _ = send(inner, &mut writer, addr, Frame::Bye { reason: error.to_string() }).await;
                    return error.to_string();
                }
                Some(Err(error)) => return error.to_string(),
                None => return "the connection closed".to_owned(),
            },
            () = inner.clock.sleep_until(next_tick) => {
                let now = inner.clock.now();
                if now.duration_since(last_heard) > silence {
                    let reason = format!("no tick for {silence:?}");
                    // A goodbye is a courtesy: the connection closes either way.
                    let _ = send(inner, &mut writer, addr, Frame::Bye { reason: reason.clone() }).await;
                    return reason;
                }
                if let Err(error) = send(inner, &mut writer, addr, Frame::Tick).await {
                    return error.to_string();
                }
                next_tick = (next_tick + tick).max(now);
            },
            () = close.notified() => {
                let reason = "disconnected on request".to_owned();
                // A goodbye is a courtesy: the connection closes either way.
                let _ = send(inner, &mut writer, addr, Frame::Bye { reason: reason.clone() }).await;
                return reason;
            },
        }
    }
}

/// Writes a frame within one tick interval (a peer that reads nothing
/// must not hold the connection's loop).
async fn send(
    inner: &Inner,
    writer: &mut OwnedWriteHalf,
    addr: SocketAddr,
    frame: Frame,
) -> Result<(), ConnectionError> {
    tokio::select! {
        result = write_frame(writer, &frame, addr) => result,
        () = inner.clock.sleep(inner.tick) => Err(ConnectionError::Io {
            context: format!("writing to {addr}"),
            detail: format!("not accepted within {:?}", inner.tick),
        }),
    }
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
