//! One connection's life: the handshake (dialling or accepted), then the
//! loop that ticks, watches for the peer's ticks, and closes on request;
//! and the manager's accept and seed loops.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::{
    net::{TcpListener, TcpStream, tcp::OwnedWriteHalf},
    sync::{broadcast::error::RecvError, mpsc},
};

use super::{
    Closer, ConnectionError, Direction, Inner, NodeEvent, NodeInfo,
    noise::{self, Binding, Opener, Sealer},
    valid_node_name,
    wire::{self, Frame, Transcript, VERSION, read_frame, write_frame},
};

/// Who the other side of a finished handshake is, and the session that
/// seals every frame from now on.
pub(super) struct Remote {
    pub(super) node: Arc<str>,
    pub(super) generation: u64,
    pub(super) sealer: Sealer,
    pub(super) opener: Opener,
}

/// Dials `addr`, runs the handshake, and hands the connection to its own
/// task. Answers the node's name.
pub(super) async fn connect(
    inner: &Arc<Inner>,
    addr: SocketAddr,
) -> Result<Arc<str>, ConnectionError> {
    if inner.running.lock().is_none() {
        return Err(ConnectionError::NotRunning);
    }
    let (remote, stream) = bounded(inner, addr, dial(inner, addr)).await?;
    let node = remote.node.clone();
    established(inner, remote, stream, addr, Direction::Outgoing);
    Ok(node)
}

/// Accepts connections until the manager stops; each handshake runs in a
/// task of its own, so a slow dialler holds up no one. At most
/// `max_handshakes` run at once: a connection past them is closed at once,
/// so clients that connect and say nothing cannot pile up.
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
        let Ok(permit) = inner.handshakes.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let task_inner = inner.clone();
        inner.spawn(async move {
            let inner = task_inner;
            // A refused or broken handshake leaves nothing behind: the
            // dialler is told why, if it listens.
            let handshake = bounded(&inner, addr, listen(&inner, stream, addr)).await;
            drop(permit);
            if let Ok((remote, stream)) = handshake {
                established(&inner, remote, stream, addr, Direction::Incoming);
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
                // Until it is down for good: a down notice for an older
                // incarnation comes with the newer one connected.
                while inner.peers.lock().contains_key(&node) {
                    match events.recv().await {
                        Ok(NodeEvent::Down { node: down, .. }) if down == node => continue,
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

/// The dialler's side of the handshake (see the wire module): it proves
/// itself first, over the listener's fresh nonce, then checks the
/// listener's proof.
async fn dial(inner: &Inner, addr: SocketAddr) -> Result<(Remote, TcpStream), ConnectionError> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| ConnectionError::io(format!("connecting to {addr}"), &e))?;
    let _ = stream.set_nodelay(true);
    let mine = wire::nonce();
    let hello = Frame::Hello {
        version: VERSION,
        node: inner.node.to_string(),
        generation: inner.generation(),
        nonce: mine.clone(),
        max_frame: Some(inner.max_frame as u32),
    };
    write_frame(&mut stream, &hello, addr).await?;
    let (node, generation, theirs, peer_max) = match read_frame(&mut stream, addr).await? {
        Frame::Welcome {
            node,
            generation,
            nonce,
            max_frame,
        } => {
            let node = valid_node_name(&node)?;
            if !wire::valid_nonce(&nonce) {
                return Err(ConnectionError::Protocol {
                    addr,
                    detail: "a malformed nonce".to_owned(),
                });
            }
            (node, generation, nonce, max_frame as usize)
        }
        Frame::Refused { reason } => return Err(ConnectionError::Refused { addr, reason }),
        other => return Err(unexpected(addr, &other)),
    };
    let transcript = |step| Transcript {
        step,
        dialer_nonce: &mine,
        listener_nonce: &theirs,
        dialer: &inner.node,
        listener: &node,
    };
    let proof = wire::proof(&inner.cookie, transcript("dialer"));
    write_frame(&mut stream, &Frame::Proof { proof }, addr).await?;
    match read_frame(&mut stream, addr).await? {
        Frame::Accepted { proof } => {
            if !wire::verify(&inner.cookie, transcript("listener"), &proof) {
                refuse(&mut stream, addr, "bad cookie").await;
                return Err(ConnectionError::BadCookie { addr });
            }
        }
        // The listener found our proof wrong.
        Frame::Refused { reason } if reason == "bad cookie" => {
            return Err(ConnectionError::BadCookie { addr });
        }
        Frame::Refused { reason } => return Err(ConnectionError::Refused { addr, reason }),
        other => return Err(unexpected(addr, &other)),
    }
    let binding = Binding {
        transcript: transcript("noise"),
        dialer_generation: inner.generation(),
        listener_generation: generation,
    };
    let (sealer, opener) = noise::handshake(
        &mut stream,
        addr,
        &inner.cookie,
        binding,
        true,
        inner.max_frame,
        peer_max,
    )
    .await?;
    Ok((
        Remote {
            node,
            generation,
            sealer,
            opener,
        },
        stream,
    ))
}

/// The listener's side of the handshake: it commits to a fresh nonce,
/// checks the dialler's proof, and only then proves itself.
async fn listen(
    inner: &Inner,
    mut stream: TcpStream,
    addr: SocketAddr,
) -> Result<(Remote, TcpStream), ConnectionError> {
    let _ = stream.set_nodelay(true);
    let (node, generation, theirs, peer_max) = match read_frame(&mut stream, addr).await? {
        Frame::Hello {
            version,
            node,
            generation,
            nonce,
            max_frame,
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
            if !wire::valid_nonce(&nonce) {
                let error = ConnectionError::Protocol {
                    addr,
                    detail: "a malformed nonce".to_owned(),
                };
                refuse(&mut stream, addr, &error.to_string()).await;
                return Err(error);
            }
            let Some(max_frame) = max_frame.filter(|&max| max >= MIN_FRAME_LIMIT) else {
                let error = ConnectionError::Protocol {
                    addr,
                    detail: format!("a frame limit under {MIN_FRAME_LIMIT} bytes"),
                };
                refuse(&mut stream, addr, &error.to_string()).await;
                return Err(error);
            };
            (node, generation, nonce, max_frame as usize)
        }
        // A dialler of another protocol version may send another frame
        // (or a hello with other fields): say which version this is.
        other => {
            let reason = format!("expected a hello of protocol version {VERSION}");
            refuse(&mut stream, addr, &reason).await;
            return Err(unexpected(addr, &other));
        }
    };
    let mine = wire::nonce();
    let welcome = Frame::Welcome {
        node: inner.node.to_string(),
        generation: inner.generation(),
        nonce: mine.clone(),
        max_frame: inner.max_frame as u32,
    };
    write_frame(&mut stream, &welcome, addr).await?;
    let transcript = |step| Transcript {
        step,
        dialer_nonce: &theirs,
        listener_nonce: &mine,
        dialer: &node,
        listener: &inner.node,
    };
    match read_frame(&mut stream, addr).await? {
        Frame::Proof { proof } => {
            if !wire::verify(&inner.cookie, transcript("dialer"), &proof) {
                refuse(&mut stream, addr, "bad cookie").await;
                return Err(ConnectionError::BadCookie { addr });
            }
        }
        other => return Err(unexpected(addr, &other)),
    }
    let proof = wire::proof(&inner.cookie, transcript("listener"));
    write_frame(&mut stream, &Frame::Accepted { proof }, addr).await?;
    let binding = Binding {
        transcript: transcript("noise"),
        dialer_generation: generation,
        listener_generation: inner.generation(),
    };
    let (sealer, opener) = noise::handshake(
        &mut stream,
        addr,
        &inner.cookie,
        binding,
        false,
        inner.max_frame,
        peer_max,
    )
    .await?;
    Ok((
        Remote {
            node,
            generation,
            sealer,
            opener,
        },
        stream,
    ))
}

/// The smallest frame limit a peer may announce.
pub(super) const MIN_FRAME_LIMIT: u32 = 1024;

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
    remote: Remote,
    stream: TcpStream,
    addr: SocketAddr,
    direction: Direction,
) {
    // A newer incarnation of a node this one holds a live connection to:
    // a restart (the old one frozen or gone), or a twin taking a live
    // node's name. The old connection is pinged first: if it answers, the
    // name is taken and the newcomer is refused with that reason.
    if let Some((outbox, close)) = inner.older_peer(&remote.node, remote.generation) {
        let task_inner = inner.clone();
        inner.spawn(async move {
            let inner = task_inner;
            if inner.answers_ping(outbox, &close).await {
                let mut sealer = remote.sealer;
                let mut stream = stream;
                let reason = format!(
                    "node name {} is taken by a live node (its connection answers)",
                    remote.node
                );
                let _ = sealer
                    .write(&mut stream, &Frame::Bye { reason }, addr)
                    .await;
                return;
            }
            take(&inner, remote, stream, addr, direction);
        });
        return;
    }
    take(inner, remote, stream, addr, direction);
}

/// Registers an established connection and runs it in a task of its own
/// (or drops it if a connection to the same node wins).
fn take(
    inner: &Arc<Inner>,
    remote: Remote,
    stream: TcpStream,
    addr: SocketAddr,
    direction: Direction,
) {
    let Remote {
        node,
        generation,
        mut sealer,
        opener,
    } = remote;
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
    // Calls and answers for this connection, sent by its task.
    let (outbox, outgoing) = mpsc::channel(256);
    let Some(close) = inner.register(conn, info, initiator, generation, outbox.clone()) else {
        // The peer may have taken this one as live: it waits for the other.
        let _ = inner.spawn(async move {
            let mut stream = stream;
            let _ = sealer.write(&mut stream, &Frame::Replaced, addr).await;
        });
        return;
    };
    let task_inner = inner.clone();
    let node_for_task = node.clone();
    let spawned = inner.spawn(async move {
        let reason = run(
            &task_inner,
            stream,
            (sealer, opener),
            (outbox, outgoing),
            addr,
            &close,
        )
        .await;
        task_inner.unregister(&node_for_task, conn, reason);
    });
    if !spawned {
        inner.unregister(&node, conn, "the connection manager stopped".to_owned());
    }
}

/// The life of an established connection; answers why it ended.
async fn run(
    inner: &Inner,
    stream: TcpStream,
    (mut sealer, mut opener): (Sealer, Opener),
    (outbox, mut outgoing): (mpsc::Sender<Frame>, mpsc::Receiver<Frame>),
    addr: SocketAddr,
    close: &Closer,
) -> String {
    let (mut reader, mut writer) = stream.into_split();
    let (frames, mut incoming) = mpsc::channel(16);
    // Reads in a task of its own: a frame read is not cancel-safe.
    let reading = tokio::spawn(async move {
        loop {
            let frame = opener.read(&mut reader, addr).await;
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
                Some(Ok(Frame::Ping)) => {
                    last_heard = inner.clock.now();
                    if let Err(error) = send(inner, &mut writer, &mut sealer, addr, Frame::Pong).await {
                        return error.to_string();
                    }
                }
                Some(Ok(Frame::Pong)) => {
                    last_heard = inner.clock.now();
                    close.pong.notify_waiters();
                }
                Some(Ok(Frame::Call { id, agent, protocol, body, timeout_ms, tell, fail_if_restarting })) => {
                    last_heard = inner.clock.now();
                    inner.handle_call(outbox.clone(), (id, agent, protocol, body, timeout_ms, tell, fail_if_restarting));
                }
                Some(Ok(Frame::Answer { id, ok, error })) => {
                    last_heard = inner.clock.now();
                    let result = match error {
                        Some(error) => Err(error),
                        None => Ok(ok.unwrap_or(serde_json::Value::Null)),
                    };
                    inner.answer(id, result);
                }
                Some(Ok(Frame::Bye { reason })) => return format!("closed by the peer: {reason}"),
                Some(Ok(Frame::Replaced)) => {
                    // The peer keeps the connection the other way: it
                    // replaces this one here too once its handshake ends.
                    let timeout = inner.handshake_timeout;
                    return tokio::select! {
                        () = close.notify.notified() => "replaced by another connection".to_owned(),
                        () = inner.clock.sleep(timeout) => format!(
                            "closed by the peer for another connection, which did not come within {timeout:?}"
                        ),
                    };
                }
                Some(Ok(other)) => {
                    let error = unexpected(addr, &other);
                    // A goodbye is a courtesy: the connection closes either way.
                    let _ = send(inner, &mut writer, &mut sealer, addr, Frame::Bye { reason: error.to_string() }).await;
                    return error.to_string();
                }
                Some(Err(error)) => return error.to_string(),
                None => return "the connection closed".to_owned(),
            },
            Some(frame) = outgoing.recv() => {
                let (call, answer) = match &frame {
                    Frame::Call { id, .. } => (Some(*id), None),
                    Frame::Answer { id, .. } => (None, Some(*id)),
                    _ => (None, None),
                };
                match send(inner, &mut writer, &mut sealer, addr, frame).await {
                    Ok(()) => {}
                    // Nothing was written, the connection goes on: our
                    // call fails at once (its caller is told), our answer
                    // too large is replaced by its error.
                    Err(error @ ConnectionError::FrameTooLarge { .. }) => {
                        if let Some(id) = call {
                            inner.refuse_call(id, error.to_string());
                        }
                        if let Some(id) = answer {
                            let _ = outbox.try_send(Frame::Answer {
                                id,
                                ok: None,
                                error: Some(super::delivery::WireError::too_large(&error)),
                            });
                        }
                    }
                    Err(error) => return error.to_string(),
                }
            },
            () = inner.clock.sleep_until(next_tick) => {
                let now = inner.clock.now();
                if now.duration_since(last_heard) > silence {
                    let reason = format!("no tick for {silence:?}");
                    // A goodbye is a courtesy: the connection closes either way.
                    let _ = send(inner, &mut writer, &mut sealer, addr, Frame::Bye { reason: reason.clone() }).await;
                    return reason;
                }
                if let Err(error) = send(inner, &mut writer, &mut sealer, addr, Frame::Tick).await {
                    return error.to_string();
                }
                next_tick = (next_tick + tick).max(now);
            },
            () = close.notify.notified() => {
                if close.was_replaced() {
                    let _ = send(inner, &mut writer, &mut sealer, addr, Frame::Replaced).await;
                    return "replaced by another connection".to_owned();
                }
                if close.was_superseded() {
                    // Its node restarted: this end is stale, and no one
                    // is told it went down (the node's down notice was
                    // sent when the newer incarnation came).
                    let reason = "superseded by a newer incarnation".to_owned();
                    let _ = send(inner, &mut writer, &mut sealer, addr, Frame::Bye { reason: reason.clone() }).await;
                    return reason;
                }
                let reason = "disconnected on request".to_owned();
                // A goodbye is a courtesy: the connection closes either way.
                let _ = send(inner, &mut writer, &mut sealer, addr, Frame::Bye { reason: reason.clone() }).await;
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
    sealer: &mut Sealer,
    addr: SocketAddr,
    frame: Frame,
) -> Result<(), ConnectionError> {
    tokio::select! {
        result = sealer.write(writer, &frame, addr) => result,
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

#[cfg(test)]
mod tests {
    //! Two nodes that dial each other at once, and peers that break the
    //! sealed wire, with the other node played by the test over the wire,
    //! so the order of every step is fixed.

    use std::time::Duration;

    use tokio::{io::AsyncWriteExt, net::TcpListener, net::TcpStream};

    use super::*;
    use crate::{ConnectionManager, NodeEvent};

    const COOKIE: &str = "cookie";
    const PEER: &str = "a@local";
    const WAIT: Duration = Duration::from_secs(10);

    /// The fake peer's end of a connection: the stream and its session.
    struct Fake {
        stream: TcpStream,
        addr: SocketAddr,
        sealer: Sealer,
        opener: Opener,
    }

    impl Fake {
        async fn send(&mut self, frame: &Frame) {
            self.sealer
                .write(&mut self.stream, frame, self.addr)
                .await
                .unwrap();
        }

        async fn read(&mut self) -> Result<Frame, ConnectionError> {
            self.opener.read(&mut self.stream, self.addr).await
        }
    }

    /// The fake peer's side of a handshake it accepted (it listens).
    async fn accept_as_peer(mut stream: TcpStream, addr: SocketAddr) -> Fake {
        let Frame::Hello {
            node,
            nonce: theirs,
            generation,
            ..
        } = read_frame(&mut stream, addr).await.unwrap()
        else {
            panic!("no hello");
        };
        let mine = wire::nonce();
        let welcome = Frame::Welcome {
            node: PEER.into(),
            generation: 1,
            nonce: mine.clone(),
            max_frame: 65_000,
        };
        write_frame(&mut stream, &welcome, addr).await.unwrap();
        assert!(matches!(
            read_frame(&mut stream, addr).await.unwrap(),
            Frame::Proof { .. }
        ));
        let transcript = |step| Transcript {
            step,
            dialer_nonce: &theirs,
            listener_nonce: &mine,
            dialer: &node,
            listener: PEER,
        };
        let proof = wire::proof(COOKIE.as_bytes(), transcript("listener"));
        write_frame(&mut stream, &Frame::Accepted { proof }, addr)
            .await
            .unwrap();
        let binding = Binding {
            transcript: transcript("noise"),
            dialer_generation: generation,
            listener_generation: 1,
        };
        let (sealer, opener) = noise::handshake(
            &mut stream,
            addr,
            COOKIE.as_bytes(),
            binding,
            false,
            65_000,
            65_000,
        )
        .await
        .unwrap();
        Fake {
            stream,
            addr,
            sealer,
            opener,
        }
    }

    /// The fake peer dials `addr` and completes the handshake; its sealer
    /// ignores the node's frame limit (`peer_max`), to break it.
    async fn dial_as_peer(addr: SocketAddr, peer_max: usize) -> Fake {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mine = wire::nonce();
        let hello = Frame::Hello {
            version: VERSION,
            node: PEER.into(),
            generation: 1,
            nonce: mine.clone(),
            max_frame: Some(65_000),
        };
        write_frame(&mut stream, &hello, addr).await.unwrap();
        let Frame::Welcome {
            node,
            nonce: theirs,
            generation,
            ..
        } = read_frame(&mut stream, addr).await.unwrap()
        else {
            panic!("no welcome");
        };
        let transcript = |step| Transcript {
            step,
            dialer_nonce: &mine,
            listener_nonce: &theirs,
            dialer: PEER,
            listener: &node,
        };
        let proof = wire::proof(COOKIE.as_bytes(), transcript("dialer"));
        write_frame(&mut stream, &Frame::Proof { proof }, addr)
            .await
            .unwrap();
        assert!(matches!(
            read_frame(&mut stream, addr).await.unwrap(),
            Frame::Accepted { .. }
        ));
        let binding = Binding {
            transcript: transcript("noise"),
            dialer_generation: 1,
            listener_generation: generation,
        };
        let (sealer, opener) = noise::handshake(
            &mut stream,
            addr,
            COOKIE.as_bytes(),
            binding,
            true,
            65_000,
            peer_max,
        )
        .await
        .unwrap();
        Fake {
            stream,
            addr,
            sealer,
            opener,
        }
    }

    async fn next(events: &mut tokio::sync::broadcast::Receiver<NodeEvent>) -> NodeEvent {
        tokio::time::timeout(WAIT, events.recv())
            .await
            .expect("a node event in time")
            .unwrap()
    }

    /// `b` (started) dials the peer, which accepts; answers b's events
    /// after its up notice, and the peer's end of the connection.
    async fn b_dials_the_peer(
        b: &ConnectionManager,
    ) -> (tokio::sync::broadcast::Receiver<NodeEvent>, Fake) {
        let mut events = b.subscribe();
        let peer = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer_addr = peer.local_addr().unwrap();
        let dialling = tokio::spawn({
            let b = b.clone();
            async move { b.connect(peer_addr).await }
        });
        let (theirs, from) = peer.accept().await.unwrap();
        let fake = accept_as_peer(theirs, from).await;
        assert_eq!(&*dialling.await.unwrap().unwrap(), PEER);
        assert!(matches!(next(&mut events).await,
            NodeEvent::Up(info) if info.direction == Direction::Outgoing));
        (events, fake)
    }

    /// `b` dials the peer; the peer, which keeps the connection it dials
    /// itself ("a" sorts first), says so on b's connection before its own
    /// handshake with b even starts. b must wait for the peer's connection
    /// and never call the peer down meanwhile.
    #[tokio::test]
    async fn a_replaced_connection_waits_for_its_replacement_without_a_down() {
        let b = ConnectionManager::builder("b@local", COOKIE)
            .build()
            .unwrap();
        let b_addr = b.start().await.unwrap();
        let (mut events, mut theirs) = b_dials_the_peer(&b).await;

        theirs.send(&Frame::Replaced).await;
        let _ours = dial_as_peer(b_addr, 65_000).await;
        // b closes its own connection once the peer's replaced it (saying
        // so too, if it had not read the peer's notice yet).
        while let Ok(frame) = theirs.read().await {
            assert!(matches!(frame, Frame::Replaced | Frame::Tick), "{frame:?}");
        }
        let now = b.nodes();
        assert_eq!(now.len(), 1);
        assert_eq!(now[0].direction, Direction::Incoming);

        b.disconnect(PEER).unwrap();
        assert!(matches!(next(&mut events).await,
            NodeEvent::Down { reason, .. } if reason == "disconnected on request"));
        b.stop().await;
    }

    /// A replacement that never comes: the node is down after the
    /// handshake timeout.
    #[tokio::test]
    async fn a_replacement_that_never_comes_is_a_down_after_the_handshake_timeout() {
        let b = ConnectionManager::builder("b@local", COOKIE)
            .handshake_timeout(Duration::from_millis(200))
            .build()
            .unwrap();
        b.start().await.unwrap();
        let (mut events, mut theirs) = b_dials_the_peer(&b).await;

        theirs.send(&Frame::Replaced).await;
        assert!(matches!(next(&mut events).await,
            NodeEvent::Down { reason, .. } if reason.contains("did not come within")));
        assert!(b.nodes().is_empty());
        b.stop().await;
    }

    /// Frames after the handshake are sealed: b reads the peer's ticks only
    /// through the session, and its own ticks arrive sealed.
    #[tokio::test]
    async fn frames_after_the_handshake_are_sealed_both_ways() {
        let b = ConnectionManager::builder("b@local", COOKIE)
            .tick(Duration::from_millis(20))
            .build()
            .unwrap();
        let b_addr = b.start().await.unwrap();
        let mut fake = dial_as_peer(b_addr, 65_000).await;
        fake.send(&Frame::Tick).await;
        let tick = tokio::time::timeout(WAIT, fake.read())
            .await
            .expect("a tick in time");
        assert_eq!(tick.unwrap(), Frame::Tick);
        assert!(b.is_connected(PEER));
        b.stop().await;
    }

    /// Bad input after the handshake, each on its own connection: a frame
    /// over b's limit, bytes not sealed by the session, a sealed frame of
    /// another protocol version. Each closes that connection with its
    /// reason; b keeps serving (the next peer connects).
    #[tokio::test]
    async fn oversize_garbage_and_old_version_frames_close_the_connection_with_a_reason() {
        let b = ConnectionManager::builder("b@local", COOKIE)
            .max_frame(1024)
            .build()
            .unwrap();
        let b_addr = b.start().await.unwrap();
        let mut events = b.subscribe();
        // What b's refusal names, and the plaintext sealed and sent.
        type Case = (&'static str, Box<dyn Fn() -> Vec<u8>>);
        let cases: [Case; 3] = [
            (
                "at most 1024",
                Box::new(|| {
                    let mut plain = vec![VERSION as u8];
                    plain.extend(
                        serde_json::to_vec(&Frame::Bye {
                            reason: "x".repeat(2000),
                        })
                        .unwrap(),
                    );
                    plain
                }),
            ),
            ("fails authentication", Box::new(Vec::new)),
            (
                "protocol version 3",
                Box::new(|| b"\x03{\"type\":\"tick\"}".to_vec()),
            ),
        ];
        for (expected, plain) in cases {
            let mut fake = dial_as_peer(b_addr, 65_000).await;
            assert!(matches!(next(&mut events).await, NodeEvent::Up(_)));
            let plain = plain();
            if plain.is_empty() {
                fake.stream.write_all(&64u32.to_be_bytes()).await.unwrap();
                fake.stream.write_all(&[0x5a; 64]).await.unwrap();
            } else {
                fake.sealer
                    .write_plain(&mut fake.stream, &plain, fake.addr)
                    .await
                    .unwrap();
            }
            match next(&mut events).await {
                NodeEvent::Down { node, reason } => {
                    assert_eq!(&*node, PEER);
                    assert!(reason.contains(expected), "{expected:?} not in {reason:?}");
                }
                other => panic!("{other:?}"),
            }
            assert!(b.nodes().is_empty());
        }
        b.stop().await;
    }
}
