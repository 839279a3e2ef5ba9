//! One public port of the relay: who may connect, and carrying each admitted
//! connection over the node's tunnel, bounded like the node's own port proxies.
//!
//! A connection from outside the route's `allowed_ips` is closed at once, before
//! anything reaches the node. An admitted one moves bytes both ways until either side
//! closes, or until no byte has moved for `idle_timeout`; a port carries at most
//! `max_connections` at once, and when it is full a new admitted connection makes room
//! by closing the one idle the longest, so idle sockets cannot lock out users that talk
//! (issue 15 point 3, for relays).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::Open;
use crate::edge::Tunnels;

/// Where a public port leads.
#[derive(Clone, Debug)]
pub struct Route {
    /// The node that runs the run.
    pub node: String,
    /// The run.
    pub run: String,
    /// The run's published (container) port.
    pub port: u16,
    /// Who may connect (the job's `allowed_ips`); empty admits anyone, as on the
    /// node's own port proxies.
    pub allowed: Vec<ipnet::IpNet>,
}

impl Route {
    /// Whether `peer` may connect; IPv4-mapped IPv6 addresses count as IPv4.
    pub fn admits(&self, peer: std::net::IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.allowed.is_empty() || self.allowed.iter().any(|net| net.contains(&peer))
    }
}

/// How each public port bounds its connections.
#[derive(Clone, Copy, Debug)]
pub struct PortLimits {
    /// How long the agent may take to connect a new connection to the run's port.
    pub open_timeout: Duration,
    /// A connection that moves no byte either way for this long is closed.
    pub idle_timeout: Duration,
    /// Most connections one port carries at once (when full, the idlest makes room).
    pub max_connections: usize,
}

impl Default for PortLimits {
    /// The node's port proxies' defaults: an hour idle, 256 connections per port.
    fn default() -> Self {
        Self { open_timeout: Duration::from_secs(10), idle_timeout: Duration::from_secs(3600), max_connections: 256 }
    }
}

/// Orders every touch of every connection: the smallest last touch is the connection
/// idle the longest, exactly, where times in milliseconds tie (dozens of connections
/// can open within one millisecond).
static TOUCHES: AtomicU64 = AtomicU64::new(0);

/// When a connection last moved a byte: in ms since it started (for the idle
/// timeout) and as a place in [`TOUCHES`] (for choosing the idlest).
struct Activity {
    start: Instant,
    last: AtomicU64,
    last_touch: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        let last_touch = AtomicU64::new(TOUCHES.fetch_add(1, Ordering::Relaxed));
        Self { start: Instant::now(), last: AtomicU64::new(0), last_touch }
    }

    /// The place of the last touch: smaller is idler.
    fn last_touch(&self) -> u64 {
        self.last_touch.load(Ordering::Relaxed)
    }

    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn touch(&self) {
        self.last.store(self.now(), Ordering::Relaxed);
        self.last_touch.store(TOUCHES.fetch_add(1, Ordering::Relaxed), Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        Duration::from_millis(self.now().saturating_sub(self.last.load(Ordering::Relaxed)))
    }
}

/// Serves one public port until the returned task is aborted (which closes every
/// connection through it).
pub fn serve_port(
    listener: TcpListener,
    route: Arc<Route>,
    tunnels: Tunnels,
    limits: PortLimits,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // The connections live in this task: aborting it (closing the port) ends them.
        let mut connections = tokio::task::JoinSet::new();
        let mut live: Vec<(tokio::task::AbortHandle, Arc<Activity>)> = Vec::new();
        loop {
            while connections.try_join_next().is_some() {}
            live.retain(|(handle, _)| !handle.is_finished());
            let (user, peer) = match listener.accept().await {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "public port accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if !route.admits(peer.ip()) {
                tracing::debug!(%peer, run = %route.run, "refused: not in allowed_ips");
                drop(user);
                continue;
            }
            live.retain(|(handle, _)| !handle.is_finished());
            if live.len() >= limits.max_connections.max(1)
                && let Some(idlest) = (0..live.len()).min_by_key(|&i| live[i].1.last_touch())
            {
                let (handle, _) = live.swap_remove(idlest);
                handle.abort();
                tracing::debug!(run = %route.run, "port full: closed its idlest connection");
            }
            let activity = Arc::new(Activity::new());
            let (route, tunnels, moved) = (route.clone(), tunnels.clone(), activity.clone());
            let handle = connections.spawn(async move {
                let _ = user.set_nodelay(true);
                let open = Open { run: route.run.clone(), port: route.port, peer };
                match tunnels.open(&route.node, &open, limits.open_timeout).await {
                    Ok(stream) => carry(user, stream, limits.idle_timeout, &moved).await,
                    Err(e) => tracing::debug!(%peer, run = %route.run, error = %e, "cannot carry the connection"),
                }
            });
            live.push((handle, activity));
        }
    })
}

/// Copies both ways until both directions end, or nothing moved for `idle`.
async fn carry<A, B>(a: A, b: B, idle: Duration, activity: &Activity)
where
    A: AsyncRead + AsyncWrite,
    B: AsyncRead + AsyncWrite,
{
    let (mut a_read, mut a_write) = tokio::io::split(a);
    let (mut b_read, mut b_write) = tokio::io::split(b);
    let both = async {
        tokio::join!(pump(&mut a_read, &mut b_write, Some(activity)), pump(&mut b_read, &mut a_write, Some(activity)));
    };
    let tick = (idle / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    let watchdog = async {
        loop {
            tokio::time::sleep(tick).await;
            if activity.idle_for() > idle {
                return;
            }
        }
    };
    tokio::select! {
        () = both => {}
        () = watchdog => tracing::debug!("relayed connection idle: closed"),
    }
}

/// The read buffer of one direction of a relayed connection starts this small (most
/// connections are interactive or idle: 1,000 held connections cost little) ...
const FIRST_BUFFER: usize = 8 * 1024;
/// ... and doubles each time a read fills it, up to this (a bulk transfer then moves
/// a full yamux frame per read: fewer, fuller frames through the tunnel; 16 KiB reads
/// halved the throughput of one stream). One frame's body exactly: a 64 KiB read made
/// a full frame and a 12-byte one.
const MOST_BUFFER: usize = crate::session::FRAME_BODY;

/// Copies both ways until both directions end (the agent's side of a stream).
pub(crate) async fn copy_both<A, B>(a: A, b: B)
where
    A: AsyncRead + AsyncWrite,
    B: AsyncRead + AsyncWrite,
{
    let (mut a_read, mut a_write) = tokio::io::split(a);
    let (mut b_read, mut b_write) = tokio::io::split(b);
    tokio::join!(pump(&mut a_read, &mut b_write, None), pump(&mut b_read, &mut a_write, None));
}

/// One direction: reads until end of stream, writes everything, then shuts the
/// writer (half-close) so the other side sees the end.
async fn pump<R, W>(from: &mut R, to: &mut W, activity: Option<&Activity>)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; FIRST_BUFFER];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
        if let Some(activity) = activity {
            activity.touch();
        }
        if n == buf.len() && buf.len() < MOST_BUFFER {
            buf.resize((buf.len() * 2).min(MOST_BUFFER), 0);
        }
    }
    let _ = to.shutdown().await;
}
