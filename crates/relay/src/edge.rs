//! The relay's side of the tunnel: the listener agents dial, the registry of live
//! tunnels by node, and public ports.
//!
//! A tunnel is admitted in three bounded steps: the TLS handshake, the agent's first
//! stream with its [`Hello`], and the caller's [`TokenCheck`] on it; each step must
//! finish within `handshake_timeout`, so a socket that stalls anywhere never becomes a
//! tunnel. A node that connects again replaces its older tunnel. A tunnel ends when
//! its token expires ([`TokenCheck::expires_ms`]) unless the agent renewed it on the
//! hello stream first ([`Request::Renew`]), so a token's lifetime bounds an open
//! tunnel, not only new ones. Public ports, which carry users' connections over these
//! tunnels, are in [`crate::port`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use gantry_tls::TlsAcceptor;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

use crate::public::PublicPorts;
use crate::session::{self, Handle, Stream};
use crate::token::now_ms;
use crate::{
    Hello, OPEN_OK, OPEN_REFUSED, Open, PROTOCOL_VERSION, Reply, Request, TunnelError, Verdict, read_frame, write_frame,
};

/// Decides whether a hello's token entitles its node to a tunnel; `Err` says why not
/// (sent to the agent).
pub trait TokenCheck: Send + Sync + 'static {
    /// Checks one hello.
    fn check(&self, hello: &Hello) -> Result<(), String>;

    /// When the accepted hello's token expires (epoch ms): its tunnel is closed then
    /// unless renewed. `None`: never.
    fn expires_ms(&self, _hello: &Hello) -> Option<i64> {
        None
    }
}

/// The control plane's tokens (what `gantry relay` admits with): valid until their
/// expiry, which also ends the tunnel they opened unless renewed.
impl TokenCheck for crate::token::Verifier {
    fn check(&self, hello: &Hello) -> Result<(), String> {
        crate::token::Verifier::check(self, &hello.node, &hello.token, crate::token::now_ms())
    }

    fn expires_ms(&self, hello: &Hello) -> Option<i64> {
        crate::token::expires_ms(&hello.token)
    }
}

impl<F: Fn(&Hello) -> Result<(), String> + Send + Sync + 'static> TokenCheck for F {
    fn check(&self, hello: &Hello) -> Result<(), String> {
        self(hello)
    }
}

struct Entry {
    id: u64,
    handle: Handle,
    task: tokio::task::JoinHandle<()>,
}

/// The live tunnels, by node. Cheap to clone.
#[derive(Clone, Default)]
pub struct Tunnels {
    inner: Arc<Mutex<HashMap<String, Entry>>>,
    next_id: Arc<AtomicU64>,
}

impl Tunnels {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // The map stays consistent whatever panicked while holding it.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `node` has a live tunnel.
    pub fn connected(&self, node: &str) -> bool {
        self.lock().get(node).is_some_and(|e| !e.handle.is_closed())
    }

    fn insert(&self, node: &str, handle: Handle, task: tokio::task::JoinHandle<()>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if let Some(old) = self.lock().insert(node.to_string(), Entry { id, handle, task }) {
            old.task.abort();
        }
        id
    }

    fn remove(&self, node: &str, id: u64) {
        let mut map = self.lock();
        if map.get(node).is_some_and(|e| e.id == id)
            && let Some(entry) = map.remove(node)
        {
            entry.task.abort();
        }
    }

    /// Ends every tunnel (agents reconnect by themselves).
    pub fn disconnect_all(&self) {
        for (_, entry) in self.lock().drain() {
            entry.task.abort();
        }
    }

    /// Opens a stream to `open.run`'s port on `node` and waits for the agent's answer
    /// (at most `timeout`): the stream is then connected to the run's port.
    pub async fn open(&self, node: &str, open: &Open, timeout: Duration) -> Result<Stream, TunnelError> {
        let handle = self
            .lock()
            .get(node)
            .filter(|e| !e.handle.is_closed())
            .map(|e| e.handle.clone())
            .ok_or_else(|| TunnelError::NoTunnel(node.to_string()))?;
        let answered = tokio::time::timeout(timeout, async {
            let mut stream = handle.open().await?;
            write_frame(&mut stream, open).await?;
            let status = stream.read_u8().await?;
            Ok::<_, TunnelError>((stream, status))
        })
        .await
        .map_err(|_| TunnelError::Timeout(timeout))??;
        match answered {
            (stream, OPEN_OK) => Ok(stream),
            (_, OPEN_REFUSED) => Err(TunnelError::Refused(format!("run {} has no port {} there", open.run, open.port))),
            (_, _) => Err(TunnelError::Refused(format!("run {}'s port {} did not accept", open.run, open.port))),
        }
    }
}

/// Accepts agents' tunnels on `listener` (TLS with `acceptor`) into `tunnels` until
/// the returned task is aborted, answering their publish requests with `ports`. Every
/// admission step is bounded by `handshake_timeout`.
pub fn serve_tunnels(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    check: Arc<dyn TokenCheck>,
    tunnels: Tunnels,
    ports: Arc<PublicPorts>,
    handshake_timeout: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "tunnel accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let (acceptor, check, tunnels, ports) = (acceptor.clone(), check.clone(), tunnels.clone(), ports.clone());
            tokio::spawn(async move {
                if let Err(e) = admit(tcp, peer, acceptor, check, tunnels, ports, handshake_timeout).await {
                    tracing::debug!(%peer, error = %e, "tunnel not admitted");
                }
            });
        }
    })
}

async fn admit(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    check: Arc<dyn TokenCheck>,
    tunnels: Tunnels,
    ports: Arc<PublicPorts>,
    limit: Duration,
) -> Result<(), TunnelError> {
    let _ = tcp.set_nodelay(true);
    let bounded = |_| TunnelError::Timeout(limit);
    let tls = tokio::time::timeout(limit, acceptor.accept(tcp)).await.map_err(bounded)??;
    let (handle, mut inbound, task) = session::start(tls, yamux::Mode::Server);
    let hello = tokio::time::timeout(limit, async {
        let mut first = inbound.recv().await.ok_or(TunnelError::Session(yamux::ConnectionError::Closed))?;
        let hello: Hello = read_frame(&mut first).await?;
        Ok::<_, TunnelError>((first, hello))
    })
    .await
    .map_err(bounded);
    let (mut first, hello) = match hello {
        Ok(Ok(done)) => done,
        Ok(Err(e)) | Err(e) => {
            task.abort();
            return Err(e);
        }
    };
    let verdict = if hello.version != PROTOCOL_VERSION {
        Err(format!("protocol version {} is not {PROTOCOL_VERSION}", hello.version))
    } else {
        check.check(&hello)
    };
    let answer = Verdict { ok: verdict.is_ok(), error: verdict.as_ref().err().cloned() };
    let sent = tokio::time::timeout(limit, write_frame(&mut first, &answer)).await.map_err(bounded).and_then(|r| r);
    if let Err(why) = verdict {
        // Let the refusal reach the agent before the session goes: it hangs up when
        // it has read it.
        let _ = tokio::time::timeout(limit, first.read(&mut [0u8; 1])).await;
        task.abort();
        return Err(TunnelError::Refused(why));
    }
    if let Err(e) = sent {
        task.abort();
        return Err(e);
    }
    let ended = handle.clone();
    let id = tunnels.insert(&hello.node, handle, task);
    tracing::info!(%peer, node = %hello.node, "node tunnel up");
    // Agents open no other streams: any is dropped (reset).
    let drain = tokio::spawn(async move { while inbound.recv().await.is_some() {} });
    // The hello stream carries the agent's requests until the session ends, or its
    // token expires unrenewed.
    let mut expires = check.expires_ms(&hello);
    loop {
        let expiry = async {
            match expires {
                Some(ms) => tokio::time::sleep(Duration::from_millis(ms.saturating_sub(now_ms()).max(0) as u64)).await,
                None => std::future::pending().await,
            }
        };
        let request = tokio::select! {
            request = read_frame::<_, Request>(&mut first) => match request {
                Ok(request) => request,
                Err(_) => break,
            },
            () = ended.closed() => break,
            () = expiry => {
                tracing::info!(%peer, node = %hello.node, "the tunnel's relay token expired unrenewed: closing it");
                break;
            }
        };
        let reply = match request {
            Request::Renew { token } => {
                let fresh = Hello { token, ..hello.clone() };
                match check.check(&fresh) {
                    Ok(()) => {
                        expires = check.expires_ms(&fresh);
                        Reply { ok: true, public_port: None, public_host: None, error: None }
                    }
                    Err(why) => Reply { ok: false, public_port: None, public_host: None, error: Some(why) },
                }
            }
            request => ports.handle(&hello.node, request),
        };
        if write_frame(&mut first, &reply).await.is_err() {
            break;
        }
    }
    drain.abort();
    tunnels.remove(&hello.node, id);
    tracing::info!(%peer, node = %hello.node, "node tunnel down");
    Ok(())
}
