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
//! The allow-list matching is the one API keys use ([`gantry_auth::parse_allow_list`] /
//! [`gantry_auth::ip_allowed`]): same syntax, same IPv4-mapped IPv6 handling, one place to fix.
//! The agent already depends on gantry-auth through the client, so reusing it costs nothing.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// How long an admitted connection may wait for the container's port to answer. A container
/// that is gone answers at once (refused); this bounds a black-holed address.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

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

    /// Like [`PortProxy::start`] on a given address; port 0 picks a free one. A restarted agent
    /// uses this to re-open the external port it already reported for an adopted container.
    pub async fn start_at(bind: SocketAddr, target: SocketAddr, allowed: AllowList) -> io::Result<Self> {
        Self::serve(TcpListener::bind(bind).await?, target, allowed)
    }

    /// Serves an already bound listener. The Docker runtime binds its ports before
    /// it creates the container (the external ports go into the container's labels,
    /// and the container's address is known only once it runs).
    pub fn serve(listener: TcpListener, target: SocketAddr, allowed: AllowList) -> io::Result<Self> {
        let local = listener.local_addr()?;
        let task = tokio::spawn(accept_loop(listener, target, allowed));
        tracing::debug!(%local, %target, "port proxy listening");
        Ok(Self { local, target, task: Some(task) })
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

async fn accept_loop(listener: TcpListener, target: SocketAddr, allowed: AllowList) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if allowed.allows(peer.ip()) {
                        connections.spawn(forward(stream, peer, target));
                    } else {
                        // Dropped unread: the peer sees the connection close (or a reset) at once.
                        tracing::debug!(%peer, %target, "port proxy refused a connection outside allowed_ips");
                        drop(stream);
                    }
                }
                Err(e) => {
                    // Usually out of file descriptors; pausing keeps the loop from spinning while
                    // connections finish and free some.
                    tracing::warn!(error = %e, %target, "port proxy cannot accept; pausing");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            // Reap finished connections so a long-lived proxy does not accumulate them.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn forward(mut inbound: TcpStream, peer: SocketAddr, target: SocketAddr) {
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
    match tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await {
        Ok((up, down)) => tracing::debug!(%peer, %target, up, down, "port proxy connection closed"),
        Err(e) => tracing::debug!(%peer, %target, error = %e, "port proxy connection ended with an error"),
    }
}

#[cfg(test)]
mod tests;
