//! The agent's side of the tunnel: dial the relay over TLS, say hello, then serve the
//! streams the relay opens, each to the target the caller's [`Targets`] approves.
//!
//! [`connect`] returns once the relay has accepted the node (or refused it, an error
//! with its reason); [`run`] keeps a tunnel up, reconnecting with exponential backoff
//! (0.5 s doubling to 30 s) until told to stop. A stream whose [`Open`] names no port
//! of the node's runs is refused with one status byte and closed: the relay cannot
//! reach anything on the node but what the caller lists.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::session::{self, Stream};
use crate::{Hello, OPEN_OK, OPEN_REFUSED, OPEN_UNREACHABLE, Open, TunnelError, Verdict, read_frame, write_frame};

/// Where a stream the relay opens should lead: the address of `open.run`'s published
/// port `open.port`, or `None` when the node has no such run or port.
pub trait Targets: Send + Sync + 'static {
    /// The target of one stream.
    fn target(&self, open: &Open) -> Option<SocketAddr>;
}

impl<F: Fn(&Open) -> Option<SocketAddr> + Send + Sync + 'static> Targets for F {
    fn target(&self, open: &Open) -> Option<SocketAddr> {
        self(open)
    }
}

/// How to reach a relay.
#[derive(Clone, Debug)]
pub struct RelayAddr {
    /// `host:port` of the relay's tunnel listener.
    pub addr: String,
    /// The name its certificate must carry (usually the host of `addr`).
    pub server_name: String,
    /// The TLS client configuration (system roots, or `gantry_tls::client_config` for
    /// `--ca-cert`).
    pub tls: Arc<tokio_rustls::rustls::ClientConfig>,
}

/// How long dialling, the handshake and the relay's verdict may take together, and
/// how long the relay may take to send a stream's header.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// A tunnel the relay accepted; it serves streams until the session ends.
pub struct Connected {
    task: tokio::task::JoinHandle<()>,
}

impl Connected {
    /// Waits until the session ends (the relay or the network went away).
    pub async fn closed(&mut self) {
        let _ = (&mut self.task).await;
    }

    /// Ends the session now.
    pub fn close(&self) {
        self.task.abort();
    }
}

impl Drop for Connected {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Dials `relay`, says `hello`, and once accepted serves the relay's streams to
/// `targets` on a task of its own.
pub async fn connect(relay: &RelayAddr, hello: &Hello, targets: Arc<dyn Targets>) -> Result<Connected, TunnelError> {
    let name = rustls_pki_types::ServerName::try_from(relay.server_name.clone())
        .map_err(|_| TunnelError::Address(relay.server_name.clone()))?;
    let connector = tokio_rustls::TlsConnector::from(relay.tls.clone());
    let dialled = tokio::time::timeout(STEP_TIMEOUT, async {
        let tcp = TcpStream::connect(&relay.addr).await?;
        let _ = tcp.set_nodelay(true);
        let tls = connector.connect(name, tcp).await?;
        let (handle, inbound, task) = session::start(tls, yamux::Mode::Client);
        let mut first = handle.open().await?;
        write_frame(&mut first, hello).await?;
        let verdict: Verdict = read_frame(&mut first).await?;
        Ok::<_, TunnelError>((first, verdict, inbound, task))
    })
    .await
    .map_err(|_| TunnelError::Timeout(STEP_TIMEOUT))??;
    let (first, verdict, mut inbound, session) = dialled;
    if !verdict.ok {
        session.abort();
        return Err(TunnelError::Refused(verdict.error.unwrap_or_default()));
    }
    let task = tokio::spawn(async move {
        // The hello stream stays open for the session's life.
        let _first = first;
        let _session = AbortOnDrop(session);
        while let Some(stream) = inbound.recv().await {
            tokio::spawn(serve_stream(stream, targets.clone()));
        }
    });
    Ok(Connected { task })
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn serve_stream(mut stream: Stream, targets: Arc<dyn Targets>) {
    let open: Open = match tokio::time::timeout(STEP_TIMEOUT, read_frame(&mut stream)).await {
        Ok(Ok(open)) => open,
        _ => return,
    };
    let Some(target) = targets.target(&open) else {
        tracing::debug!(run = %open.run, port = open.port, peer = %open.peer, "relay stream refused: no such run port");
        let _ = stream.write_u8(OPEN_REFUSED).await;
        let _ = stream.shutdown().await;
        return;
    };
    let mut upstream = match tokio::time::timeout(STEP_TIMEOUT, TcpStream::connect(target)).await {
        Ok(Ok(upstream)) => upstream,
        _ => {
            let _ = stream.write_u8(OPEN_UNREACHABLE).await;
            let _ = stream.shutdown().await;
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
    if stream.write_u8(OPEN_OK).await.is_err() || stream.flush().await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut stream, &mut upstream).await;
}

/// Keeps a tunnel to `relay` up until `stop` turns true: reconnects after every loss
/// or failure, waiting 0.5 s, then twice as long each time up to 30 s (back to 0.5 s
/// once a tunnel was accepted).
pub async fn run(relay: RelayAddr, hello: Hello, targets: Arc<dyn Targets>, mut stop: watch::Receiver<bool>) {
    const FIRST: Duration = Duration::from_millis(500);
    const MOST: Duration = Duration::from_secs(30);
    let mut backoff = FIRST;
    while !*stop.borrow() {
        match connect(&relay, &hello, targets.clone()).await {
            Ok(mut tunnel) => {
                backoff = FIRST;
                tracing::info!(relay = %relay.addr, "relay tunnel up");
                tokio::select! {
                    () = tunnel.closed() => tracing::warn!(relay = %relay.addr, "relay tunnel lost; reconnecting"),
                    _ = stop.changed() => return,
                }
            }
            Err(e) => {
                tracing::warn!(relay = %relay.addr, error = %e, retry_in = ?backoff, "cannot open the relay tunnel")
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(MOST);
    }
}
