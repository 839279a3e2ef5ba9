//! The agent's side of the tunnel: dial the relay over TLS, say hello, then serve the
//! streams the relay opens, each to the target the caller's [`Targets`] approves.
//!
//! [`connect`] returns once the relay has accepted the node (or refused it, an error
//! with its reason); [`run`] keeps a tunnel up for a [`Publisher`], reconnecting with
//! exponential backoff (0.5 s doubling to 30 s) until told to stop, and publishes its
//! runs' ports again on every new tunnel (asking for the public ports they had). A
//! stream whose [`Open`] names no port of the node's runs is refused with one status
//! byte and closed: the relay cannot reach anything on the node but what the caller
//! lists.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::session::{self, Stream};
use crate::{
    Hello, OPEN_OK, OPEN_REFUSED, OPEN_UNREACHABLE, Open, Reply, Request, TunnelError, Verdict, read_frame, write_frame,
};

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
    control: Option<Stream>,
    /// Changes (its sender is dropped) when the session ends.
    ended: watch::Receiver<()>,
}

impl Connected {
    /// Waits until the session ends (the relay or the network went away).
    pub async fn closed(&mut self) {
        let _ = self.ended.changed().await;
    }

    /// Ends the session now.
    pub fn close(&self) {
        self.task.abort();
    }

    /// Sends one request on the hello stream and reads the relay's reply.
    pub async fn request(&mut self, request: &Request) -> Result<Reply, TunnelError> {
        let control = self.control.as_mut().ok_or(TunnelError::Session(yamux::ConnectionError::Closed))?;
        let answered = tokio::time::timeout(STEP_TIMEOUT, async {
            write_frame(control, request).await?;
            read_frame::<_, Reply>(control).await
        })
        .await;
        match answered {
            Ok(Ok(reply)) => Ok(reply),
            // A request cut short leaves the stream out of step: no more on it.
            Ok(Err(e)) => {
                self.control = None;
                Err(e)
            }
            Err(_) => {
                self.control = None;
                Err(TunnelError::Timeout(STEP_TIMEOUT))
            }
        }
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
    let (ended_tx, ended) = watch::channel(());
    let task = tokio::spawn(async move {
        let _ended = ended_tx;
        let _session = AbortOnDrop(session);
        while let Some(stream) = inbound.recv().await {
            tokio::spawn(serve_stream(stream, targets.clone()));
        }
    });
    Ok(Connected { task, control: Some(first), ended })
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
    let upstream = match tokio::time::timeout(STEP_TIMEOUT, TcpStream::connect(target)).await {
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
    crate::port::copy_both(stream, upstream).await;
}

/// A run's published port, as the node wants it carried.
#[derive(Clone, Debug)]
struct Published {
    target: SocketAddr,
    allowed: Vec<String>,
    public_port: Option<u16>,
}

/// Where users reach a published port through the relay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Carried {
    /// The relay's public host name.
    pub host: String,
    /// The public port.
    pub port: u16,
}

/// The runs' ports a node wants carried by its relay, and the tunnel that carries
/// them ([`run`] keeps it up). Also the [`Targets`] of that tunnel: a stream reaches
/// only a published (run, port).
#[derive(Default)]
pub struct Publisher {
    published: std::sync::Mutex<std::collections::HashMap<(String, u16), Published>>,
    tunnel: tokio::sync::Mutex<Option<Connected>>,
    up: tokio::sync::Notify,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").field("published", &self.lock().len()).finish_non_exhaustive()
    }
}

impl Targets for Publisher {
    fn target(&self, open: &Open) -> Option<SocketAddr> {
        self.lock().get(&(open.run.clone(), open.port)).map(|p| p.target)
    }
}

impl Publisher {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<(String, u16), Published>> {
        self.published.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Carries `run`'s `port` (reachable on this machine at `target`) on a public
    /// port of the relay admitting `allowed`; returns that port. Waits up to 10 s for
    /// a tunnel.
    pub async fn publish(
        &self,
        run: &str,
        port: u16,
        target: SocketAddr,
        allowed: &[String],
    ) -> Result<Carried, TunnelError> {
        let want = {
            let mut published = self.lock();
            let entry = published.entry((run.to_string(), port)).or_insert(Published {
                target,
                allowed: allowed.to_vec(),
                public_port: None,
            });
            entry.target = target;
            entry.public_port
        };
        let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
        loop {
            let up = self.up.notified();
            {
                let mut tunnel = self.tunnel.lock().await;
                if let Some(tunnel) = tunnel.as_mut() {
                    let request = Request::Publish { run: run.to_string(), port, allowed: allowed.to_vec(), want };
                    let reply = tunnel.request(&request).await?;
                    let (Some(public), Some(host), true) = (reply.public_port, reply.public_host, reply.ok) else {
                        return Err(TunnelError::Refused(reply.error.unwrap_or_default()));
                    };
                    if let Some(entry) = self.lock().get_mut(&(run.to_string(), port)) {
                        entry.public_port = Some(public);
                    }
                    return Ok(Carried { host, port: public });
                }
            }
            if tokio::time::timeout_at(deadline, up).await.is_err() {
                return Err(TunnelError::NoTunnel("this node".into()));
            }
        }
    }

    /// Stops carrying `run`'s ports (the relay closes them and their connections).
    pub async fn unpublish(&self, run: &str) {
        self.lock().retain(|(r, _), _| r != run);
        if let Some(tunnel) = self.tunnel.lock().await.as_mut() {
            let _ = tunnel.request(&Request::Unpublish { run: run.to_string() }).await;
        }
    }

    /// Hands the relay a fresh token for the open tunnel; whether it took it.
    async fn renew(&self, token: &str) -> bool {
        let mut tunnel = self.tunnel.lock().await;
        let Some(tunnel) = tunnel.as_mut() else { return false };
        match tunnel.request(&Request::Renew { token: token.to_string() }).await {
            Ok(Reply { ok: true, .. }) => true,
            Ok(reply) => {
                tracing::warn!(error = ?reply.error, "the relay refused the fresh token");
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot renew the relay token");
                false
            }
        }
    }

    /// Publishes everything again on a new tunnel, asking for the same public ports.
    async fn republish(&self, tunnel: &mut Connected) {
        let all: Vec<_> = self.lock().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        for ((run, port), p) in all {
            let request = Request::Publish { run: run.clone(), port, allowed: p.allowed, want: p.public_port };
            match tunnel.request(&request).await {
                Ok(Reply { ok: true, public_port: Some(public), .. }) => {
                    if p.public_port.is_some_and(|old| old != public) {
                        tracing::warn!(%run, port, public, "the relay gave this port another public port");
                    }
                    if let Some(entry) = self.lock().get_mut(&(run, port)) {
                        entry.public_port = Some(public);
                    }
                }
                Ok(reply) => tracing::warn!(%run, port, error = ?reply.error, "the relay refused a port"),
                Err(e) => tracing::warn!(%run, port, error = %e, "cannot publish a port"),
            }
        }
    }
}

/// Where to tunnel and with what; the agent replaces it as the control plane hands
/// out fresh tokens (each reconnect uses the newest).
#[derive(Clone, Debug)]
pub struct Grant {
    /// The relay.
    pub relay: RelayAddr,
    /// The node's hello (its uuid and relay token).
    pub hello: Hello,
}

/// Keeps a tunnel up for `publisher` until `stop` turns true, to the relay of the
/// newest [`Grant`] in `grants` (waiting for the first): reconnects after every loss
/// or failure, waiting 0.5 s, then twice as long each time up to 30 s (back to 0.5 s
/// once a tunnel was accepted), and publishes every port again on each new tunnel.
/// While a tunnel is up, a grant for another relay moves the tunnel there, and a
/// fresh token renews the tunnel's before it expires (see [`should_renew`]).
pub async fn run(
    mut grants: watch::Receiver<Option<Grant>>,
    publisher: Arc<Publisher>,
    mut stop: watch::Receiver<bool>,
) {
    const FIRST: Duration = Duration::from_millis(500);
    const MOST: Duration = Duration::from_secs(30);
    let mut backoff = FIRST;
    while !*stop.borrow() {
        let grant = grants.borrow_and_update().clone();
        let Some(Grant { relay, hello }) = grant else {
            tokio::select! {
                changed = grants.changed() => if changed.is_err() { return },
                _ = stop.changed() => return,
            }
            continue;
        };
        match connect(&relay, &hello, publisher.clone()).await {
            Ok(mut tunnel) => {
                backoff = FIRST;
                tracing::info!(relay = %relay.addr, "relay tunnel up");
                publisher.republish(&mut tunnel).await;
                let mut ended = tunnel.ended.clone();
                *publisher.tunnel.lock().await = Some(tunnel);
                publisher.up.notify_waiters();
                let mut token = hello.token.clone();
                let mut grants_open = true;
                loop {
                    tokio::select! {
                        _ = ended.changed() => {
                            tracing::warn!(relay = %relay.addr, "relay tunnel lost; reconnecting");
                            break;
                        }
                        _ = stop.changed() => {
                            publisher.tunnel.lock().await.take();
                            return;
                        }
                        changed = grants.changed(), if grants_open => {
                            if changed.is_err() {
                                grants_open = false;
                                continue;
                            }
                            let Some(grant) = grants.borrow_and_update().clone() else { continue };
                            if grant.relay.addr != relay.addr || grant.hello.node != hello.node {
                                tracing::info!(relay = %grant.relay.addr, "told to use another relay; reconnecting");
                                break;
                            }
                            if should_renew(&token, &grant.hello.token, crate::token::now_ms()) {
                                let fresh = grant.hello.token;
                                if publisher.renew(&fresh).await {
                                    token = fresh;
                                }
                            }
                        }
                    }
                }
                publisher.tunnel.lock().await.take();
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

/// Whether to hand the relay `fresh` in place of the tunnel's `current` token at
/// `now_ms`: once less than half of the fresh token's lifetime is left on the current
/// one (with hour-long tokens, every half hour; not on every sync). Tokens without an
/// expiry are never renewed.
fn should_renew(current: &str, fresh: &str, now_ms: i64) -> bool {
    match (crate::token::expires_ms(current), crate::token::expires_ms(fresh)) {
        (Some(current), Some(fresh)) => fresh > current && current - now_ms < (fresh - now_ms) / 2,
        _ => false,
    }
}

/// Keeps a tunnel to one relay with a fixed hello (tests, and relays whose tokens
/// never change): [`run`] with a grant that never changes.
pub async fn run_fixed(relay: RelayAddr, hello: Hello, publisher: Arc<Publisher>, stop: watch::Receiver<bool>) {
    let (_keep, grants) = watch::channel(Some(Grant { relay, hello }));
    run(grants, publisher, stop).await
}

#[cfg(test)]
mod tests {
    use super::should_renew;
    use crate::token::Issuer;

    #[test]
    fn a_tunnel_token_is_renewed_once_less_than_half_a_lifetime_is_left() {
        let issuer = Issuer::from_seed(&[3; 32]);
        // Tokens live 10 s; the tunnel's was issued at 0.
        let current = issuer.issue_until("n", 10_000);
        let fresh_at = |now: i64| issuer.issue_until("n", now + 10_000);
        // At 4 s, 6 s are left: more than half a lifetime, no renewal on this sync.
        assert!(!should_renew(&current, &fresh_at(4_000), 4_000));
        // At 6 s, 4 s are left: renewed.
        assert!(should_renew(&current, &fresh_at(6_000), 6_000));
        let fresh = fresh_at(6_000);
        // An older or equal token, or tokens without an expiry, never replace it.
        assert!(!should_renew(&fresh, &current, 9_000));
        assert!(!should_renew(&current, &current, 9_999));
        assert!(!should_renew("good", &fresh, 9_999));
        assert!(!should_renew(&current, "good", 9_999));
    }
}
