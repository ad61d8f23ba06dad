//! The wire between two nodes: length-prefixed JSON frames (a big-endian
//! `u32` length, then that many bytes), at most [`MAX_FRAME`] each, and the
//! handshake that proves both sides share the cookie without sending it
//! (Erlang's distribution handshake: each side answers the other's random
//! challenge with an HMAC-SHA256 keyed by the cookie).

use std::net::SocketAddr;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::ConnectionError;

/// The protocol version both sides must speak (2 added the `Replaced`
/// frame).
pub(crate) const VERSION: u32 = 2;

/// The largest frame a node reads: anything larger is a protocol error.
pub(crate) const MAX_FRAME: usize = 64 * 1024;

/// What goes over the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Frame {
    /// The dialer's opening: who it is and its challenge.
    Hello {
        version: u32,
        node: String,
        challenge: u64,
    },
    /// The listener's answer: who it is, its challenge, and its proof of
    /// the cookie over the dialer's challenge.
    Welcome {
        node: String,
        challenge: u64,
        proof: String,
    },
    /// The dialer's proof of the cookie over the listener's challenge.
    Proof { proof: String },
    /// The listener took the connection.
    Accepted,
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
}

/// The proof of the cookie over a challenge, binding both node names and
/// the step (so a proof cannot be replayed at the other step).
pub(crate) fn proof(
    cookie: &[u8],
    step: &str,
    challenge: u64,
    dialer: &str,
    listener: &str,
) -> String {
    let mut mac = mac(cookie);
    feed(&mut mac, step, challenge, dialer, listener);
    hex(&mac.finalize().into_bytes())
}

/// Checks a proof in constant time.
pub(crate) fn verify(
    cookie: &[u8],
    step: &str,
    challenge: u64,
    (dialer, listener): (&str, &str),
    proof: &str,
) -> bool {
    let Some(bytes) = unhex(proof) else {
        return false;
    };
    let mut mac = mac(cookie);
    feed(&mut mac, step, challenge, dialer, listener);
    mac.verify_slice(&bytes).is_ok()
}

fn mac(cookie: &[u8]) -> Hmac<Sha256> {
    // HMAC takes a key of any length.
    Hmac::<Sha256>::new_from_slice(cookie).expect("HMAC accepts every key length")
}

fn feed(mac: &mut Hmac<Sha256>, step: &str, challenge: u64, dialer: &str, listener: &str) {
    for part in [
        step.as_bytes(),
        &challenge.to_be_bytes(),
        dialer.as_bytes(),
        listener.as_bytes(),
    ] {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part);
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
    fn a_proof_checks_only_with_the_same_cookie_step_challenge_and_names() {
        let p = proof(b"secret", "welcome", 7, "a", "b");
        assert!(verify(b"secret", "welcome", 7, ("a", "b"), &p));
        assert!(!verify(b"other", "welcome", 7, ("a", "b"), &p));
        assert!(!verify(b"secret", "proof", 7, ("a", "b"), &p));
        assert!(!verify(b"secret", "welcome", 8, ("a", "b"), &p));
        assert!(!verify(b"secret", "welcome", 7, ("b", "a"), &p));
        assert!(!verify(b"secret", "welcome", 7, ("a", "b"), "zz"));
        assert!(!verify(b"secret", "welcome", 7, ("a", "b"), "abc"));
    }

    #[tokio::test]
    async fn frames_round_trip_and_oversize_ones_are_refused() {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let (mut a, mut b) = tokio::io::duplex(1 << 20);
        let frame = Frame::Hello {
            version: VERSION,
            node: "a@host".into(),
            challenge: 42,
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
