//! The relay tunnel (issue 14): how a node behind NAT carries its runs' published
//! ports over one connection it dials out.
//!
//! The agent connects to the relay over TCP + TLS (it verifies the relay like it
//! verifies the control plane) and runs one **yamux** session on it, as the yamux
//! client: no home-made multiplexing. Its first stream carries a [`Hello`] (the node
//! and a token the relay checks); the relay answers with a [`Verdict`]. From then on
//! the agent asks, on that first stream, for public ports for its runs' published
//! ports ([`Request`], [`Reply`]); the relay opens one stream per user connection
//! accepted on a public port, writes an [`Open`] header (which run, which of its ports, the user's real address), and the
//! agent answers one status byte, connects to the run's port and copies both ways.
//!
//! * [`edge`]: the relay's side: the tunnel listener (TLS handshake bounded in time,
//!   tokens checked by a caller-supplied rule), the registry of live tunnels by node,
//!   and public ports that admit only a run's `allowed_ips`.
//! * [`port`]: one public port: `allowed_ips` at accept, each connection carried over
//!   the node's tunnel with an idle timeout and a connection cap.
//! * [`public`]: the relay's public ports: one per (node, run, published port), taken
//!   from a range on the agent's [`Request::Publish`], closed with their connections on
//!   [`Request::Unpublish`].
//! * [`node`]: the agent's side: dial, say hello, serve streams to targets a
//!   caller-supplied resolver approves (a run's own ports only); [`node::Publisher`]
//!   publishes runs' ports and keeps them published across reconnects.
//!
//! * [`reap`]: closes the public ports of runs the control plane says ended (the
//!   node may be down and unable to unpublish them).
//! * [`token`]: relay tokens, issued per node by the control plane and verified
//!   offline by relays with its public key.
//!
//! The processes (`gantry relay`, `gantry server --relay`, `gantry agent --relay`) are
//! in the CLI and the agent crate; the design is in ARCHITECTURE.md, "Nodes behind NAT".
//!
//! Frames of the protocol (the hello, the verdict, the open header) are a 4-byte
//! big-endian length and that many bytes of JSON, at most [`MAX_FRAME`].

pub mod edge;
pub mod node;
pub mod port;
pub mod public;
pub mod reap;
mod session;
pub mod token;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest frame either side reads (a hello, a verdict or an open header).
pub const MAX_FRAME: usize = 16 * 1024;

/// The protocol version a hello carries.
pub const PROTOCOL_VERSION: u32 = 1;

/// The agent's first message on its first stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// [`PROTOCOL_VERSION`].
    pub version: u32,
    /// The node's uuid at the control plane.
    pub node: String,
    /// What entitles the node to this relay (issued by the control plane).
    pub token: String,
}

/// The relay's answer to a [`Hello`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// Whether the tunnel is accepted.
    pub ok: bool,
    /// Why not, when refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A request on the hello stream once the tunnel is accepted (agent → relay); each
/// gets one [`Reply`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Carry `run`'s published `port` on a public port admitting `allowed` (the job's
    /// `allowed_ips`). Asking again for the same run and port returns the same public
    /// port; `want` asks for a given one (the one a restarted relay handed out before).
    Publish {
        /// The run.
        run: String,
        /// Its published (container) port.
        port: u16,
        /// CIDRs or addresses admitted.
        allowed: Vec<String>,
        /// The public port wanted, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        want: Option<u16>,
    },
    /// Close every public port of `run`, and their connections.
    Unpublish {
        /// The run.
        run: String,
    },
    /// A fresh token for this tunnel: the relay checks it like the hello's and keeps
    /// the tunnel open until the fresh token expires instead (a tunnel whose token
    /// expires unrenewed is closed).
    Renew {
        /// The fresh token (for the same node).
        token: String,
    },
}

/// The relay's answer to a [`Request`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// Whether it was done.
    pub ok: bool,
    /// The public port, for a publish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_port: Option<u16>,
    /// The host name users reach it on (the relay's `--public-host`), for a publish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_host: Option<String>,
    /// Why not, when refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The header of a stream the relay opens for one user connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Open {
    /// The run whose port the user connected to.
    pub run: String,
    /// The run's published (container) port.
    pub port: u16,
    /// The user's address as the relay saw it (for the agent's logs).
    pub peer: std::net::SocketAddr,
}

/// The agent's one-byte answer to an [`Open`]: the target is connected.
pub const OPEN_OK: u8 = 0;
/// The agent's one-byte answer to an [`Open`]: not one of its runs' ports.
pub const OPEN_REFUSED: u8 = 1;
/// The agent's one-byte answer to an [`Open`]: the target did not accept.
pub const OPEN_UNREACHABLE: u8 = 2;

/// What can go wrong with a tunnel.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    /// Socket or TLS failure.
    #[error("tunnel I/O failed")]
    Io(#[from] std::io::Error),
    /// The yamux session failed or closed.
    #[error("the multiplexed session failed")]
    Session(#[from] yamux::ConnectionError),
    /// A frame was too large or not the expected JSON.
    #[error("malformed tunnel frame: {0}")]
    Frame(String),
    /// The relay refused the hello.
    #[error("the relay refused this node: {0}")]
    Refused(String),
    /// The peer did not answer in time.
    #[error("the tunnel peer did not answer within {0:?}")]
    Timeout(std::time::Duration),
    /// The node has no live tunnel (relay side).
    #[error("node {0} has no tunnel to this relay")]
    NoTunnel(String),
    /// The relay URL or name is not usable.
    #[error("bad relay address {0:?}")]
    Address(String),
}

/// A token's SHA-256 digest: tokens are compared by digest, so the comparison time
/// says nothing about how much of a guess was right.
pub fn token_digest(token: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).into()
}

/// `e` with its causes, `: `-separated (for messages that travel as one string).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        next = cause.source();
    }
    out
}

/// Writes one frame.
pub(crate) async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(w: &mut W, value: &T) -> Result<(), TunnelError> {
    let bytes = serde_json::to_vec(value).map_err(|e| TunnelError::Frame(e.to_string()))?;
    if bytes.len() > MAX_FRAME {
        return Err(TunnelError::Frame(format!("{} bytes, over {MAX_FRAME}", bytes.len())));
    }
    w.write_all(&(bytes.len() as u32).to_be_bytes()).await?;
    w.write_all(&bytes).await?;
    w.flush().await?;
    Ok(())
}

/// Reads one frame.
pub(crate) async fn read_frame<R: AsyncRead + Unpin, T: for<'de> Deserialize<'de>>(
    r: &mut R,
) -> Result<T, TunnelError> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(TunnelError::Frame(format!("{len} bytes, over {MAX_FRAME}")));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf).await?;
    serde_json::from_slice(&buf).map_err(|e| TunnelError::Frame(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_oversized_frames_are_refused() {
        let (mut a, mut b) = tokio::io::duplex(64 * 1024);
        let hello = Hello { version: PROTOCOL_VERSION, node: "n".into(), token: "t".into() };
        write_frame(&mut a, &hello).await.unwrap();
        assert_eq!(read_frame::<_, Hello>(&mut b).await.unwrap(), hello);
        a.write_all(&(MAX_FRAME as u32 + 1).to_be_bytes()).await.unwrap();
        assert!(matches!(read_frame::<_, Hello>(&mut b).await, Err(TunnelError::Frame(_))));
        let big = Hello { version: 1, node: "n".repeat(MAX_FRAME), token: String::new() };
        assert!(matches!(write_frame(&mut a, &big).await, Err(TunnelError::Frame(_))));
    }
}
