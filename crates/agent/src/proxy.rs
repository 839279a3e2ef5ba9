//! The port proxy: how a job's container ports reach the outside world (issue 4 item 6).
//!
//! Containers never publish ports on the host themselves. For each port the agent starts a
//! [`PortProxy`] that listens on the node's advertised address at a random port and copies
//! bytes to the container's address. That gives the agent one place to enforce the job's
//! `allowed_ips`: Docker's own port publishing has no per-source filtering, and firewall rules
//! would need root and differ per host.
//!
//! The proxy is plain TCP (byte copy in both directions, half-close forwarded), so it works for
//! any protocol on top: HTTP, SSH, WebSocket. A refused peer is closed at once without reading
//! anything and without ever opening a connection to the container.
//!
//! **Bounds** ([`ProxyLimits`]): raw TCP has no headers to time out, but a connection that
//! moves no byte in either direction for the idle timeout is closed, and one proxy carries at
//! most `max_connections` at once. When it is full, a new admitted connection displaces the one
//! idle the longest, so a peer holding idle sockets open cannot lock out a client that is
//! actually talking (it would have to out-talk it, and then it is not idle).
//!
//! The allow-list matching is the one API keys use ([`gantry_auth::parse_allow_list`] /
//! [`gantry_auth::ip_allowed`]): same syntax, same IPv4-mapped IPv6 handling, one place to fix.
//! The agent already depends on gantry-auth through the client, so reusing it costs nothing.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle, JoinSet};
use tokio::time::Instant;

/// How long an admitted connection may wait for the container's port to answer. A container
/// that is gone answers at once (refused); this bounds a black-holed address.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a port proxy's connections may idle and how many it carries at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProxyLimits {
    /// A connection with no byte in either direction for this long is closed.
    pub idle_timeout: Duration,
    /// Most connections one proxy carries at once (at least 1).
    pub max_connections: usize,
}

impl Default for ProxyLimits {
    /// One hour idle (SSH sessions and notebooks sit quiet for a while), 256 connections.
    fn default() -> Self {
        Self { idle_timeout: Duration::from_secs(3600), max_connections: 256 }
    }
}

/// Which source addresses may connect. Empty admits everyone; `0.0.0.0/0` admits every IPv4
/// peer and `::/0` every IPv6 peer; a bare address means /32 or /128.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowList {
    nets: Vec<IpNet>,
}

impl AllowList {
    /// An allow-list that admits everyone.
    pub fn any() -> Self {
        Self::default()
    }

    /// Parses a job's `allowed_ips`. The error names the first bad entry and its position,
    /// e.g. `allowed_ips[1]: not an IP address or CIDR: "x"`.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        gantry_auth::parse_allow_list(entries)
            .map(|nets| Self { nets })
            .map_err(|(index, message)| format!("allowed_ips[{index}]: {message}"))
    }

    /// Whether a peer at `ip` may connect (IPv4-mapped IPv6 peers are matched as IPv4).
    pub fn allows(&self, ip: IpAddr) -> bool {
        gantry_auth::ip_allowed(&self.nets, ip)
    }

    /// Whether this list admits everyone (it is empty).
    pub fn is_any(&self) -> bool {
        self.nets.is_empty()
    }

    /// The networks, normalised (host bits cleared, mapped IPv6 entries as IPv4).
    pub fn nets(&self) -> &[IpNet] {
        &self.nets
    }
}

/// A running proxy for one container port. Dropping it (or [`PortProxy::stop`]) closes the
/// listener and every connection it carries.
#[derive(Debug)]
pub struct PortProxy {
    local: SocketAddr,
    target: SocketAddr,
    // The accept loop owns the listener and a JoinSet of the live connections, so aborting
    // this one task drops the listener and aborts every connection task with it.
    task: Option<JoinHandle<()>>,
}

impl PortProxy {
    /// Listens on `bind_ip` at a random free port and forwards admitted connections to `target`.
    pub async fn start(bind_ip: IpAddr, target: SocketAddr, allowed: AllowList) -> io::Result<Self> {
        Self::start_at(SocketAddr::new(bind_ip, 0), target, allowed).await
    }

    /// Like [`PortProxy::serve`] with given limits.
    pub fn serve_with(
        listener: TcpListener,
        target: SocketAddr,
        allowed: AllowList,
        limits: ProxyLimits,
    ) -> io::Result<Self> {
        let local = listener.local_addr()?;
        let task = tokio::spawn(accept_loop(listener, target, allowed, limits));
        tracing::debug!(%local, %target, "port proxy listening");
        Ok(Self { local, target, task: Some(task) })
    }

    /// Like [`PortProxy::start`] on a given address; port 0 picks a free one. A restarted agent
    /// uses this to re-open the external port it already reported for an adopted container.
    pub async fn start_at(bind: SocketAddr, target: SocketAddr, allowed: AllowList) -> io::Result<Self> {
        Self::serve(TcpListener::bind(bind).await?, target, allowed)
    }

    /// Serves an already bound listener. The Docker runtime binds its ports before
    /// it creates the container (the external ports go into the container's labels,
    /// and the container's address is known only once it runs).
    pub fn serve(listener: TcpListener, target: SocketAddr, allowed: AllowList) -> io::Result<Self> {
        Self::serve_with(listener, target, allowed, ProxyLimits::default())
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The external port it listens on (what goes into the run's `node_urls`).
    pub fn local_port(&self) -> u16 {
        self.local.port()
    }

    /// Where admitted connections go.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Closes the listener and all live connections, and returns once the listener is closed
    /// (so the port may be bound again).
    pub async fn stop(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            // The task's future (listener and JoinSet) is dropped by the time this resolves.
            let _ = task.await;
        }
    }
}

impl Drop for PortProxy {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Orders every touch of every connection: the connection whose last touch is the
/// smallest is the one idle the longest, exactly, where times in milliseconds tie
/// (dozens of connections can open within one millisecond).
static TOUCHES: AtomicU64 = AtomicU64::new(0);

/// When a connection last moved a byte, as milliseconds since the proxy started (for
/// the idle timeout) and as a place in [`TOUCHES`] (for choosing the idlest).
struct Activity {
    since: Instant,
    last_ms: AtomicU64,
    last_touch: AtomicU64,
}

impl Activity {
    fn new(since: Instant) -> Self {
        let activity = Self { since, last_ms: AtomicU64::new(0), last_touch: AtomicU64::new(0) };
        activity.touch();
        activity
    }

    fn touch(&self) {
        self.last_ms.store(self.since.elapsed().as_millis() as u64, Ordering::Relaxed);
        self.last_touch.store(TOUCHES.fetch_add(1, Ordering::Relaxed), Ordering::Relaxed);
    }

    /// The place of the last touch: smaller is idler.
    fn last_touch(&self) -> u64 {
        self.last_touch.load(Ordering::Relaxed)
    }

    fn idle(&self) -> Duration {
        self.since.elapsed().saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }
}

struct Live {
    activity: Arc<Activity>,
    abort: AbortHandle,
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, allowed: AllowList, limits: ProxyLimits) {
    let since = Instant::now();
    let mut connections = JoinSet::new();
    let mut live: HashMap<tokio::task::Id, Live> = HashMap::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if !allowed.allows(peer.ip()) {
                        // Dropped unread: the peer sees the connection close (or a reset) at once.
                        tracing::debug!(%peer, %target, "port proxy refused a connection outside allowed_ips");
                        drop(stream);
                        continue;
                    }
                    if live.len() >= limits.max_connections.max(1) {
                        // Full: the connection idle the longest makes room.
                        let idlest = live.iter().min_by_key(|(_, l)| l.activity.last_touch()).map(|(id, _)| *id);
                        if let Some(old) = idlest.and_then(|id| live.remove(&id)) {
                            tracing::debug!(%peer, %target, idle = ?old.activity.idle(), "port proxy full; closing its idlest connection");
                            old.abort.abort();
                        }
                    }
                    let activity = Arc::new(Activity::new(since));
                    let abort = connections.spawn(forward(stream, peer, target, activity.clone(), limits.idle_timeout));
                    live.insert(abort.id(), Live { activity, abort });
                }
                Err(e) => {
                    // Usually out of file descriptors; pausing keeps the loop from spinning while
                    // connections finish and free some.
                    tracing::warn!(error = %e, %target, "port proxy cannot accept; pausing");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            // Reap finished connections so a long-lived proxy does not accumulate them.
            Some(done) = connections.join_next_with_id(), if !connections.is_empty() => {
                let id = match &done { Ok((id, ())) => *id, Err(e) => e.id() };
                live.remove(&id);
            }
        }
    }
}

/// A stream that stamps its connection's activity whenever bytes arrive on it.
struct Stamped<'a> {
    stream: &'a mut TcpStream,
    activity: &'a Activity,
}

impl AsyncRead for Stamped<'_> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut *self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Stamped<'_> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.stream).poll_shutdown(cx)
    }
}

/// Resolves once `activity` has seen no byte for `timeout`.
async fn idle_for(activity: &Activity, timeout: Duration) {
    loop {
        let idle = activity.idle();
        if idle >= timeout {
            return;
        }
        tokio::time::sleep(timeout - idle).await;
    }
}

async fn forward(
    mut inbound: TcpStream,
    peer: SocketAddr,
    target: SocketAddr,
    activity: Arc<Activity>,
    idle_timeout: Duration,
) {
    let mut outbound = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%peer, %target, error = %e, "port proxy cannot reach the container");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, %target, "port proxy timed out reaching the container");
            return;
        }
    };
    // Interactive protocols (SSH, terminals over WebSocket) send small writes that must not
    // wait for Nagle's algorithm on either leg.
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let mut a = Stamped { stream: &mut inbound, activity: &activity };
    let mut b = Stamped { stream: &mut outbound, activity: &activity };
    tokio::select! {
        copied = tokio::io::copy_bidirectional(&mut a, &mut b) => match copied {
            Ok((up, down)) => tracing::debug!(%peer, %target, up, down, "port proxy connection closed"),
            Err(e) => tracing::debug!(%peer, %target, error = %e, "port proxy connection ended with an error"),
        },
        () = idle_for(&activity, idle_timeout) => {
            tracing::debug!(%peer, %target, ?idle_timeout, "port proxy closed an idle connection");
        }
    }
}

#[cfg(test)]
mod tests;
