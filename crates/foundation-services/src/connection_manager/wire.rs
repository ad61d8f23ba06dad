//! The wire between two nodes: the handshake, in length-prefixed JSON
//! frames (a big-endian `u32` length, then that many bytes, at most
//! [`MAX_FRAME`] each), that proves both sides share the cookie without
//! sending it; after it, every frame is sealed by the Noise session of the
//! `noise` module.
//!
//! The handshake, in four frames:
//!
//! 1. dialer -> listener: `Hello` (version, name, generation, nonce `Nd`,
//!    its frame limit); a hello of another version is refused, saying
//!    which version this node speaks;
//! 2. listener -> dialer: `Welcome` (name, generation, nonce `Nl`, its
//!    frame limit): a commitment to a fresh nonce, and no proof;
//! 3. dialer -> listener: `Proof`, HMAC-SHA256 keyed by the cookie over
//!    (`dialer`, `Nd`, `Nl`, both names);
//! 4. listener -> dialer: `Accepted`, with its own proof over (`listener`,
//!    `Nd`, `Nl`, both names), sent only to a dialer that proved itself;
//! 5. the Noise handshake (two messages, keyed from the cookie over the
//!    same transcript), then sealed frames only.
//!
//! The dialer proves itself first, over a nonce the listener chose: an
//! arbitrary TCP client learns no proof it could test cookie guesses
//! against offline (protocol 2's listener answered any client's chosen
//! challenge). Each proof binds both nonces, both names and its step, so
//! none can be replayed on another connection, in another role or
//! between other nodes.

use std::net::SocketAddr;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::ConnectionError;

/// The protocol version both sides must speak (2 added the `Replaced`
/// frame; 3 the dialer-proves-first handshake and the generations; 4 the
/// Noise-sealed frames and the frame limits).
pub(crate) const VERSION: u32 = 4;

/// Bytes of a nonce (sent as hex).
const NONCE_BYTES: usize = 16;

/// The largest handshake frame a node reads: anything larger is a
/// protocol error.
pub(crate) const MAX_FRAME: usize = 64 * 1024;

/// What goes over the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Frame {
    /// The dialer's opening: who it is, which incarnation, and its nonce.
    Hello {
        version: u32,
        node: String,
        generation: u64,
        nonce: String,
        /// The largest sealed frame (JSON bytes) it reads; absent from
        /// the hellos of versions before 4.
        #[serde(default)]
        max_frame: Option<u32>,
    },
    /// The listener's answer: who it is, which incarnation, and its nonce
    /// (no proof yet: the dialer proves itself first).
    Welcome {
        node: String,
        generation: u64,
        nonce: String,
        /// The largest sealed frame (JSON bytes) it reads.
        max_frame: u32,
    },
    /// The dialer's proof of the cookie over both nonces.
    Proof { proof: String },
    /// The listener took the connection: its proof of the cookie over
    /// both nonces.
    Accepted { proof: String },
    /// The connection is refused, and why.
    Refused { reason: String },
    /// "Still here", sent every tick interval.
    Tick,
    /// The sender closes the connection, and why.
    Bye { reason: String },
    /// The sender closes this connection because it keeps another one to
    /// the receiver (two nodes dialled each other at once): the receiver
    /// waits for that one before it calls the node down.
    Replaced,
    /// "Are you there?": answered by a [`Pong`](Frame::Pong) on the same
    /// connection. Sent when a newer incarnation of the peer's name
    /// connects, to tell a restart from a twin taking a live name.
    Ping,
    /// The answer to a [`Ping`](Frame::Ping).
    Pong,
    /// A call to an agent on the receiver's node (`delivery` module).
    Call {
        id: u64,
        agent: String,
        protocol: String,
        body: serde_json::Value,
        /// The time left to the caller's deadline.
        timeout_ms: u64,
        /// A tell (answered once taken) rather than an ask.
        tell: bool,
        /// The caller hears `Restarting` at once from an agent between
        /// incarnations instead of waiting (absent before: waits).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        fail_if_restarting: bool,
    },
    /// The answer to a call: its value, or its typed error.
    Answer {
        id: u64,
        #[serde(default)]
        ok: Option<serde_json::Value>,
        #[serde(default)]
        error: Option<super::delivery::WireError>,
    },
}

/// A fresh random nonce, as hex.
pub(crate) fn nonce() -> String {
    hex(&rand::random::<[u8; NONCE_BYTES]>())
}

/// Whether `text` is a nonce of the right length.
pub(crate) fn valid_nonce(text: &str) -> bool {
    text.len() == 2 * NONCE_BYTES && unhex(text).is_some()
}

/// One side's handshake: whose step it is, both nonces, both names.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Transcript<'a> {
    /// `dialer` or `listener`: whose proof this is.
    pub(crate) step: &'a str,
    /// The dialer's nonce.
    pub(crate) dialer_nonce: &'a str,
    /// The listener's nonce.
    pub(crate) listener_nonce: &'a str,
    /// The dialer's name.
    pub(crate) dialer: &'a str,
    /// The listener's name.
    pub(crate) listener: &'a str,
}

/// The proof of the cookie over a transcript.
pub(crate) fn proof(cookie: &[u8], transcript: Transcript<'_>) -> String {
    let mut mac = mac(cookie);
    feed(&mut mac, transcript);
    hex(&mac.finalize().into_bytes())
}

/// Checks a proof in constant time.
pub(crate) fn verify(cookie: &[u8], transcript: Transcript<'_>, proof: &str) -> bool {
    let Some(bytes) = unhex(proof) else {
        return false;
    };
    let mut mac = mac(cookie);
    feed(&mut mac, transcript);
    mac.verify_slice(&bytes).is_ok()
}

/// A 32-byte key derived from the cookie over a transcript (HMAC-SHA256
/// as a keyed derivation): the Noise session's pre-shared key.
pub(crate) fn key(cookie: &[u8], transcript: Transcript<'_>) -> [u8; 32] {
    let mut mac = mac(cookie);
    feed(&mut mac, transcript);
    mac.finalize().into_bytes().into()
}

fn mac(cookie: &[u8]) -> Hmac<Sha256> {
    // HMAC takes a key of any length.
    Hmac::<Sha256>::new_from_slice(cookie).expect("HMAC accepts every key length")
}

fn feed(mac: &mut Hmac<Sha256>, t: Transcript<'_>) {
    // Each part length-prefixed: no two transcripts feed the same bytes.
    for part in [
        t.step,
        t.dialer_nonce,
        t.listener_nonce,
        t.dialer,
        t.listener,
    ] {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part.as_bytes());
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Writes one frame.
pub(crate) async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    frame: &Frame,
    peer: SocketAddr,
) -> Result<(), ConnectionError> {
    let body = serde_json::to_vec(frame).map_err(|e| ConnectionError::Protocol {
        addr: peer,
        detail: e.to_string(),
    })?;
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
    buf.extend_from_slice(&body);
    writer
        .write_all(&buf)
        .await
        .map_err(|e| ConnectionError::io(format!("writing to {peer}"), &e))
}

/// Reads one frame. Not cancel-safe (a dropped read loses its partial
/// frame): a connection reads in a task of its own.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    peer: SocketAddr,
) -> Result<Frame, ConnectionError> {
    let io = |e: std::io::Error| ConnectionError::io(format!("reading from {peer}"), &e);
    let len = reader.read_u32().await.map_err(io)? as usize;
    if len > MAX_FRAME {
        return Err(ConnectionError::Protocol {
            addr: peer,
            detail: format!("a frame of {len} bytes (at most {MAX_FRAME})"),
        });
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body).await.map_err(io)?;
    serde_json::from_slice(&body).map_err(|e| ConnectionError::Protocol {
        addr: peer,
        detail: format!("not a frame: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_checks_only_with_the_same_cookie_step_nonces_and_names() {
        let (nd, nl) = (nonce(), nonce());
        assert!(valid_nonce(&nd) && nd != nl);
        let t = Transcript {
            step: "dialer",
            dialer_nonce: &nd,
            listener_nonce: &nl,
            dialer: "a",
            listener: "b",
        };
        let p = proof(b"secret", t);
        assert!(verify(b"secret", t, &p));
        assert!(!verify(b"other", t, &p));
        for changed in [
            Transcript {
                step: "listener",
                ..t
            },
            Transcript {
                dialer_nonce: &nl,
                ..t
            },
            Transcript {
                listener_nonce: &nd,
                ..t
            },
            Transcript {
                dialer: "b",
                listener: "a",
                ..t
            },
        ] {
            assert!(!verify(b"secret", changed, &p), "{changed:?}");
        }
        assert!(!verify(b"secret", t, "zz"));
        assert!(!verify(b"secret", t, "abc"));
        assert!(!valid_nonce("abc") && !valid_nonce(&"zz".repeat(NONCE_BYTES)));
    }

    #[tokio::test]
    async fn frames_round_trip_and_oversize_ones_are_refused() {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let (mut a, mut b) = tokio::io::duplex(1 << 20);
        let frame = Frame::Hello {
            version: VERSION,
            node: "a@host".into(),
            generation: 42,
            nonce: nonce(),
            max_frame: Some(1024),
        };
        write_frame(&mut a, &frame, addr).await.unwrap();
        assert_eq!(read_frame(&mut b, addr).await.unwrap(), frame);

        a.write_all(&((MAX_FRAME as u32) + 1).to_be_bytes())
            .await
            .unwrap();
        assert!(matches!(
            read_frame(&mut b, addr).await,
            Err(ConnectionError::Protocol { .. })
        ));
    }
}
