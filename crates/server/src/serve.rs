//! Serving connections, bounded. Gantry runs its own accept loop on hyper instead of
//! `axum::serve` because that one never times a connection out: 5,000 idle sockets and
//! 500 slow-header connections stayed open for minutes, and past the file limit every
//! other client's request failed. Here every connection is bounded by
//! [`ConnectionLimits`]:
//!
//! * **header-read timeout**: once the first byte of a request arrives, its head
//!   (request line and headers) must be complete within it, or the connection is
//!   closed (slowloris);
//! * **idle timeout**: a connection with no request in flight and no bytes moving is
//!   closed after it (idle keep-alive sockets); a response the client stops reading
//!   (a log-follow stream nobody drains) is closed after the same time without progress.
//!   A request in flight is not idle: a long-polling node sync or a quiet log-follow
//!   stream stays open for as long as its handler runs;
//! * **maximum connections**: past it, the server stops accepting (new connections wait
//!   in the kernel's backlog) until a connection ends, so the server never runs out of
//!   file descriptors and the timeouts above free slots for everyone else.
//!
//! * **TLS handshake timeout** (with `--tls-cert`): the handshake runs on the
//!   connection's own task while it holds its slot, and must finish within the
//!   header-read timeout (it is the first part of reading a request), so connections
//!   that open a socket and never say hello, or stall mid-handshake, are closed like
//!   slow headers. After the handshake the same limits apply to the decrypted stream.
//!
//! Also here, before routing, so they get the JSON error body: 414 for a request target
//! longer than `max_uri_bytes` and 431 for header fields larger than `max_header_bytes`
//! (beyond hyper's own hard limits, 64 KiB targets or 100 headers, hyper answers with a
//! bare status line).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::IntoResponse;
use gantry_tls::{TlsAcceptor, TlsStream};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

use crate::error::ApiError;

/// How long and how many connections the server keeps.
#[derive(Clone, Debug)]
pub struct ConnectionLimits {
    /// A request's head must arrive within this of its first byte.
    pub header_read_timeout: Duration,
    /// A connection without a request in flight and without traffic is closed after
    /// this; so is one whose response the client stops reading.
    pub idle_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
    /// Longest request target (path and query), bytes; longer: 414.
    pub max_uri_bytes: usize,
    /// Largest sum of header names and values, bytes; larger: 431.
    pub max_header_bytes: usize,
}

impl Default for ConnectionLimits {
    /// Generous for real clients (a long-polling agent, a CLI, a browser), tight for
    /// idle and slow sockets. The connection cap follows the process's file limit
    /// (see [`default_max_connections`]).
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: default_max_connections(),
            max_uri_bytes: 8 * 1024,
            max_header_bytes: 32 * 1024,
        }
    }
}

/// File descriptors kept back from the connection cap for the database, logs, the
/// listener and outgoing connections.
const RESERVED_FDS: u64 = 256;

/// The default connection cap: the process's open-file limit less [`RESERVED_FDS`]
/// (at least 64). Every long-polling agent holds a connection, so a fixed cap such as
/// 1,000 would lock a fleet of 1,000 nodes out of its own control plane; a cap tied to
/// the file limit instead guarantees that accepting never fails with "too many open
/// files" (the failure the cap exists to prevent) while the systemd unit's
/// `LimitNOFILE=65536` leaves room for tens of thousands of nodes.
fn default_max_connections() -> usize {
    let soft = open_file_limit().unwrap_or(1024);
    soft.saturating_sub(RESERVED_FDS).max(64).min(usize::MAX as u64) as usize
}

/// The soft `RLIMIT_NOFILE`, read from `/proc/self/limits` (Linux) so that no libc
/// binding is needed; `None` elsewhere or when unlimited.
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Serves `router` on `listener` (over TLS with `tls`) until `shutdown` resolves,
/// then stops accepting, lets each connection finish its request in flight and
/// returns once all are closed.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: ConnectionLimits,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let max = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
    let slots = Arc::new(Semaphore::new(max));
    let limits = Arc::new(limits);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(conn) => conn,
            Err(e) => {
                // Out of file descriptors, or a connection reset before accept: wait a
                // moment rather than spin (what axum::serve does too).
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (router, limits, stop, tls) = (router.clone(), limits.clone(), stop_rx.clone(), tls.clone());
        tokio::spawn(async move {
            match tls {
                None => connection(stream, peer, router, &limits, stop).await,
                Some(acceptor) => {
                    if let Some(stream) = handshake(&acceptor, stream, peer, &limits, stop.clone()).await {
                        connection(stream, peer, router, &limits, stop).await;
                    }
                }
            }
            drop(slot);
        });
    }
    // New connections are refused from now on (not queued in a backlog nobody reads),
    // and the address is free for whoever binds it next.
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection holds a slot until it ends.
    let _all = slots.acquire_many(max as u32).await;
    Ok(())
}

/// The server side of a TLS handshake, bounded by the header-read timeout and cut
/// short by shutdown; `None` when it failed (logged at debug: scanners and plain
/// HTTP clients are not the operator's problem).
async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    limits: &ConnectionLimits,
    mut stop: watch::Receiver<bool>,
) -> Option<TlsStream<TcpStream>> {
    tokio::select! {
        done = tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream)) => match done {
            Ok(Ok(stream)) => Some(stream),
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                None
            }
            Err(_) => {
                tracing::debug!(%peer, "closing connection: TLS handshake not complete in time");
                None
            }
        },
        _ = stop.changed() => None,
    }
}

async fn connection<S>(
    stream: S,
    peer: SocketAddr,
    router: axum::Router,
    limits: &ConnectionLimits,
    mut stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched { io: stream, activity: activity.clone() });
    let service = {
        let activity = activity.clone();
        let (max_uri, max_headers) = (limits.max_uri_bytes, limits.max_header_bytes);
        hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            let guard = InFlight::begin(activity.clone());
            let router = router.clone();
            async move {
                let response = if let Some(refusal) = oversized(&req, max_uri, max_headers) {
                    refusal.into_response()
                } else {
                    req.extensions_mut().insert(ConnectInfo(peer));
                    router.oneshot(req.map(Body::new)).await.unwrap_or_else(|e: Infallible| match e {})
                };
                // The request stays in flight until its body is sent (a follow stream
                // for as long as it streams): the guard lives in the body.
                Ok::<_, Infallible>(response.map(|body| {
                    Body::new(body.map_frame(move |frame| {
                        let _ = &guard;
                        frame
                    }))
                }))
            }
        })
    };
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
    let mut conn = std::pin::pin!(conn);
    let tick = (limits.header_read_timeout.min(limits.idle_timeout) / 4)
        .clamp(Duration::from_millis(20), Duration::from_secs(1));
    let mut stopping = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            () = tokio::time::sleep(tick) => {
                if let Some(why) = activity.expired(limits) {
                    tracing::debug!(%peer, why, "closing connection");
                    return; // dropping the connection closes the socket
                }
            }
            _ = stop.changed(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// The 414/431 for a request hyper accepted but Gantry will not read.
fn oversized<B>(req: &hyper::Request<B>, max_uri: usize, max_headers: usize) -> Option<ApiError> {
    let target = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if target > max_uri {
        return Some(ApiError::UriTooLong { limit: max_uri });
    }
    let headers: usize = req.headers().iter().map(|(name, value)| name.as_str().len() + value.len()).sum();
    (headers > max_headers).then_some(ApiError::HeadersTooLarge { limit: max_headers })
}

const NONE: u64 = u64::MAX;

/// What a connection is doing, in ms since it was accepted (atomics: the I/O wrapper,
/// the service and the watchdog each touch it).
struct Activity {
    start: Instant,
    /// The last time a byte was read or written.
    last: AtomicU64,
    /// When the first byte of a request head not yet handed to the service arrived.
    head_since: AtomicU64,
    /// Since when a write has been waiting for the client to read.
    write_blocked_since: AtomicU64,
    /// Requests handed to the service whose response body is not finished.
    in_flight: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last: AtomicU64::new(0),
            head_since: AtomicU64::new(NONE),
            write_blocked_since: AtomicU64::new(NONE),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(NONE - 1)
    }

    fn read(&self) {
        let now = self.now();
        self.last.store(now, Ordering::Relaxed);
        if self.in_flight.load(Ordering::Acquire) == 0 {
            let _ = self.head_since.compare_exchange(NONE, now, Ordering::AcqRel, Ordering::Relaxed);
        }
    }

    fn wrote(&self) {
        self.last.store(self.now(), Ordering::Relaxed);
        self.write_blocked_since.store(NONE, Ordering::Relaxed);
    }

    fn write_blocked(&self) {
        let _ = self.write_blocked_since.compare_exchange(NONE, self.now(), Ordering::AcqRel, Ordering::Relaxed);
    }

    /// Why the connection should be closed now, if it should.
    fn expired(&self, limits: &ConnectionLimits) -> Option<&'static str> {
        let now = self.now();
        let older = |since: u64, limit: Duration| {
            since != NONE && now.saturating_sub(since) > u64::try_from(limit.as_millis()).unwrap_or(u64::MAX)
        };
        if older(self.write_blocked_since.load(Ordering::Relaxed), limits.idle_timeout) {
            return Some("the client stopped reading");
        }
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let head = self.head_since.load(Ordering::Acquire);
        if head != NONE {
            return older(head, limits.header_read_timeout).then_some("request head not complete in time");
        }
        older(self.last.load(Ordering::Relaxed), limits.idle_timeout).then_some("idle")
    }
}

/// A request in flight, from the service call until its response body is dropped.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn begin(activity: Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        activity.head_since.store(NONE, Ordering::Release);
        Self(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.last.store(self.0.now(), Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The socket (or the TLS stream over it: decrypted bytes), noting every byte that
/// moves.
struct Watched<S> {
    io: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        result
    }
}

impl<S> Watched<S> {
    fn noted<T>(&self, result: Poll<io::Result<T>>, progressed: impl Fn(&T) -> bool) -> Poll<io::Result<T>> {
        match &result {
            Poll::Ready(Ok(v)) if progressed(v) => self.activity.wrote(),
            Poll::Pending => self.activity.write_blocked(),
            _ => {}
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.io).poll_write(cx, buf);
        self.noted(result, |n| *n > 0)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.noted(result, |n| *n > 0)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // hyper flushes on every poll, with or without data: not a sign of life.
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixed cap of 1,000 locked a 1,000-node fleet (one long poll each) out of its
    /// own control plane; the default must follow the file limit instead.
    #[test]
    fn the_default_connection_cap_follows_the_open_file_limit() {
        let max = default_max_connections();
        assert!(max >= 64, "{max}");
        if let Some(soft) = open_file_limit() {
            assert_eq!(max as u64, soft.saturating_sub(RESERVED_FDS).max(64));
        }
    }
}
