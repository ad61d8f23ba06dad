//! The encrypted wire after the cookie handshake: a Noise session
//! (`Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s`, from the `snow` crate) keyed
//! from the cookie, so every frame after the handshake is authenticated
//! and encrypted by a published protocol, not by code of ours.
//!
//! - The pre-shared key is HMAC-SHA256 keyed by the cookie over the
//!   handshake's transcript (step `noise`, both nonces, both names): only
//!   the two nodes of this handshake can derive it, and it is fresh per
//!   connection.
//! - The prologue binds the protocol version, both names and both
//!   generations: a session cannot be spliced onto another handshake.
//! - The ephemeral Diffie-Hellman (`NN`) gives forward secrecy: a cookie
//!   learnt later does not open recorded traffic.
//!
//! A sealed frame on the wire is a big-endian `u32` length, then one Noise
//! transport message (at most 65,535 bytes); its plaintext is the protocol
//! version (one byte) then the JSON frame. Each direction counts its own
//! nonces (TCP keeps the order), so one [`Sealer`] writes and one
//! [`Opener`] reads, each in its own task.

use std::{net::SocketAddr, sync::Arc};

use snow::{Builder, StatelessTransportState};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{
    ConnectionError,
    wire::{self, Frame, Transcript, VERSION},
};

/// The Noise protocol of the session.
const PARAMS: &str = "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s";

/// Noise's largest message.
const MAX_MESSAGE: usize = 65_535;
/// Bytes Noise adds to each sealed message (the AEAD tag).
const TAG: usize = 16;
/// The largest JSON frame a sealed message can carry (after the version
/// byte and the tag).
pub(crate) const MAX_SEALED_FRAME: usize = MAX_MESSAGE - TAG - 1;

/// Who the session is between (binds it to its handshake).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Binding<'a> {
    /// The cookie handshake's transcript (nonces and names).
    pub(crate) transcript: Transcript<'a>,
    /// The dialer's generation.
    pub(crate) dialer_generation: u64,
    /// The listener's generation.
    pub(crate) listener_generation: u64,
}

/// Writes sealed frames (the sending half of a session).
pub(crate) struct Sealer {
    session: Arc<StatelessTransportState>,
    nonce: u64,
    /// The peer's limit on a frame's JSON bytes.
    peer_max: usize,
}

/// Reads sealed frames (the receiving half of a session).
pub(crate) struct Opener {
    session: Arc<StatelessTransportState>,
    nonce: u64,
    /// This node's limit on a frame's JSON bytes.
    max: usize,
}

/// Runs the Noise handshake over `stream`, the dialer initiating; answers
/// both halves of the session. `max` is this node's frame limit,
/// `peer_max` the one the peer announced.
pub(crate) async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    addr: SocketAddr,
    cookie: &[u8],
    binding: Binding<'_>,
    dialer: bool,
    max: usize,
    peer_max: usize,
) -> Result<(Sealer, Opener), ConnectionError> {
    let failed = |detail: String| ConnectionError::Protocol { addr, detail };
    let psk = wire::key(
        cookie,
        Transcript {
            step: "noise",
            ..binding.transcript
        },
    );
    let prologue = prologue(binding);
    let builder = Builder::new(PARAMS.parse().expect("a valid Noise protocol name"))
        .prologue(&prologue)
        .and_then(|b| b.psk(0, &psk))
        .map_err(|e| failed(format!("noise setup: {e}")))?;
    let mut state = if dialer {
        builder.build_initiator()
    } else {
        builder.build_responder()
    }
    .map_err(|e| failed(format!("noise setup: {e}")))?;
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut payload = vec![0u8; MAX_MESSAGE];
    while !state.is_handshake_finished() {
        if state.is_my_turn() {
            let len = state
                .write_message(&[], &mut buf)
                .map_err(|e| failed(format!("noise handshake: {e}")))?;
            write_raw(stream, &buf[..len], addr).await?;
        } else {
            let message = read_raw(stream, MAX_MESSAGE, 0, addr).await?;
            state.read_message(&message, &mut payload).map_err(|_| {
                // The peer's key differs: another cookie, or a message
                // not of this handshake.
                failed("the noise handshake failed (keys differ)".to_owned())
            })?;
        }
    }
    let session = Arc::new(
        state
            .into_stateless_transport_mode()
            .map_err(|e| failed(format!("noise handshake: {e}")))?,
    );
    Ok((
        Sealer {
            session: session.clone(),
            nonce: 0,
            peer_max: peer_max.min(MAX_SEALED_FRAME),
        },
        Opener {
            session,
            nonce: 0,
            max: max.min(MAX_SEALED_FRAME),
        },
    ))
}

fn prologue(binding: Binding<'_>) -> Vec<u8> {
    let t = binding.transcript;
    let mut prologue = format!("mabeam node protocol {VERSION}").into_bytes();
    for part in [t.dialer_nonce, t.listener_nonce, t.dialer, t.listener] {
        prologue.extend_from_slice(&(part.len() as u64).to_be_bytes());
        prologue.extend_from_slice(part.as_bytes());
    }
    prologue.extend_from_slice(&binding.dialer_generation.to_be_bytes());
    prologue.extend_from_slice(&binding.listener_generation.to_be_bytes());
    prologue
}

impl Sealer {
    /// Seals and writes one frame. A frame over the peer's limit is not
    /// sent: [`FrameTooLarge`](ConnectionError::FrameTooLarge).
    pub(crate) async fn write<W: AsyncWrite + Unpin>(
        &mut self,
        writer: &mut W,
        frame: &Frame,
        addr: SocketAddr,
    ) -> Result<(), ConnectionError> {
        let mut plain = Vec::with_capacity(256);
        plain.push(VERSION as u8);
        serde_json::to_writer(&mut plain, frame).map_err(|e| ConnectionError::Protocol {
            addr,
            detail: e.to_string(),
        })?;
        self.write_plain(writer, &plain, addr).await
    }

    /// Seals `plain` (the version byte, then the JSON) as it is: tests use
    /// it to send what a well-behaved node would not.
    pub(crate) async fn write_plain<W: AsyncWrite + Unpin>(
        &mut self,
        writer: &mut W,
        plain: &[u8],
        addr: SocketAddr,
    ) -> Result<(), ConnectionError> {
        let size = plain.len().saturating_sub(1);
        if size > self.peer_max {
            return Err(ConnectionError::FrameTooLarge {
                addr,
                size,
                max: self.peer_max,
            });
        }
        let mut sealed = vec![0u8; plain.len() + TAG];
        let len = self
            .session
            .write_message(self.nonce, plain, &mut sealed)
            .map_err(|e| ConnectionError::Protocol {
                addr,
                detail: format!("sealing a frame: {e}"),
            })?;
        self.nonce += 1;
        write_raw(writer, &sealed[..len], addr).await
    }
}

impl Opener {
    /// Reads and opens one frame. A frame over this node's limit, one that
    /// fails authentication, or one of another version is a protocol
    /// error (the connection closes). Not cancel-safe.
    pub(crate) async fn read<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
        addr: SocketAddr,
    ) -> Result<Frame, ConnectionError> {
        let protocol = |detail: String| ConnectionError::Protocol { addr, detail };
        let sealed = read_raw(reader, self.max + 1 + TAG, 1 + TAG, addr).await?;
        let mut plain = vec![0u8; sealed.len()];
        let len = self
            .session
            .read_message(self.nonce, &sealed, &mut plain)
            .map_err(|_| {
                protocol("a frame that fails authentication (not sealed by the peer)".to_owned())
            })?;
        self.nonce += 1;
        let plain = &plain[..len];
        match plain.first() {
            Some(&version) if u32::from(version) == VERSION => {}
            Some(&version) => {
                return Err(protocol(format!(
                    "a frame of protocol version {version}, this node speaks {VERSION}"
                )));
            }
            None => return Err(protocol("an empty frame".to_owned())),
        }
        serde_json::from_slice(&plain[1..]).map_err(|e| protocol(format!("not a frame: {e}")))
    }
}

/// Writes one length-prefixed message.
async fn write_raw<W: AsyncWrite + Unpin>(
    writer: &mut W,
    body: &[u8],
    addr: SocketAddr,
) -> Result<(), ConnectionError> {
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
    buf.extend_from_slice(body);
    writer
        .write_all(&buf)
        .await
        .map_err(|e| ConnectionError::io(format!("writing to {addr}"), &e))
}

/// Reads one length-prefixed message of at most `max` bytes; an error
/// names sizes without the `overhead` (the version byte and the tag), as
/// frame limits are announced.
async fn read_raw<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: usize,
    overhead: usize,
    addr: SocketAddr,
) -> Result<Vec<u8>, ConnectionError> {
    let io = |e: std::io::Error| ConnectionError::io(format!("reading from {addr}"), &e);
    let len = reader.read_u32().await.map_err(io)? as usize;
    if len > max {
        return Err(ConnectionError::Protocol {
            addr,
            detail: format!(
                "a frame of {} bytes (at most {})",
                len - overhead,
                max - overhead
            ),
        });
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body).await.map_err(io)?;
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADDR: &str = "127.0.0.1:1";

    fn binding<'a>(t: Transcript<'a>) -> Binding<'a> {
        Binding {
            transcript: t,
            dialer_generation: 1,
            listener_generation: 2,
        }
    }

    /// Both sides of a handshake over an in-memory pipe; a side that
    /// fails drops its end (as a connection task does), so the other
    /// side's read ends instead of waiting.
    async fn pair(
        dialer_cookie: &'static [u8],
        listener_cookie: &'static [u8],
    ) -> (
        Result<(Sealer, Opener, tokio::io::DuplexStream), ConnectionError>,
        Result<(Sealer, Opener, tokio::io::DuplexStream), ConnectionError>,
    ) {
        let addr: SocketAddr = ADDR.parse().unwrap();
        let (a, b) = tokio::io::duplex(1 << 20);
        let (nd, nl) = (wire::nonce(), wire::nonce());
        let side = |mut stream: tokio::io::DuplexStream, cookie: &'static [u8], dialer: bool| {
            let (nd, nl) = (nd.clone(), nl.clone());
            async move {
                let t = Transcript {
                    step: "dialer",
                    dialer_nonce: &nd,
                    listener_nonce: &nl,
                    dialer: "a",
                    listener: "b",
                };
                let (sealer, opener) =
                    handshake(&mut stream, addr, cookie, binding(t), dialer, 1024, 1024).await?;
                Ok((sealer, opener, stream))
            }
        };
        tokio::join!(
            side(a, dialer_cookie, true),
            side(b, listener_cookie, false)
        )
    }

    #[tokio::test]
    async fn sealed_frames_round_trip_both_ways() {
        let addr: SocketAddr = ADDR.parse().unwrap();
        let (x, y) = pair(b"k", b"k").await;
        let ((mut a_seal, mut a_open, mut a), (mut b_seal, mut b_open, mut b)) =
            (x.unwrap(), y.unwrap());
        for _ in 0..3 {
            a_seal.write(&mut a, &Frame::Tick, addr).await.unwrap();
            assert_eq!(b_open.read(&mut b, addr).await.unwrap(), Frame::Tick);
            let bye = Frame::Bye { reason: "x".into() };
            b_seal.write(&mut b, &bye, addr).await.unwrap();
            assert_eq!(a_open.read(&mut a, addr).await.unwrap(), bye);
        }
    }

    #[tokio::test]
    async fn different_cookies_make_no_session() {
        let (x, y) = pair(b"k", b"other").await;
        // The responder cannot open the initiator's first message; the
        // initiator's read then ends.
        assert!(
            matches!(&y, Err(ConnectionError::Protocol { detail, .. }) if detail.contains("keys differ")),
            "{:?}",
            y.err()
        );
        assert!(x.is_err());
    }

    #[tokio::test]
    async fn oversize_tampered_and_foreign_version_frames_are_refused() {
        let addr: SocketAddr = ADDR.parse().unwrap();
        let (x, y) = pair(b"k", b"k").await;
        let ((mut a_seal, _, mut a), (_, mut b_open, mut b)) = (x.unwrap(), y.unwrap());
        // Over the peer's limit: not sent.
        let big = Frame::Bye {
            reason: "x".repeat(2000),
        };
        assert!(matches!(
            a_seal.write(&mut a, &big, addr).await,
            Err(ConnectionError::FrameTooLarge { size, max: 1024, .. }) if size > 1024
        ));
        // Another version byte, sealed correctly: refused with the reason.
        a_seal
            .write_plain(&mut a, b"\x03\"tick\"", addr)
            .await
            .unwrap();
        let error = b_open.read(&mut b, addr).await.unwrap_err().to_string();
        assert!(error.contains("protocol version 3"), "{error}");
        // Tampered bytes fail authentication.
        a.write_all(&20u32.to_be_bytes()).await.unwrap();
        a.write_all(&[7u8; 20]).await.unwrap();
        let error = b_open.read(&mut b, addr).await.unwrap_err().to_string();
        assert!(error.contains("fails authentication"), "{error}");
    }
}
