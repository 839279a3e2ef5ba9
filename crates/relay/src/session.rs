//! One yamux session, driven by a task of its own.
//!
//! yamux makes progress only while its `Connection` is polled, and opening an
//! outbound stream needs that same `Connection`; so one task owns it, polls it for
//! inbound streams without pause, and opens outbound streams for whoever asks through
//! the [`Handle`]. Streams come out as tokio `AsyncRead + AsyncWrite` (yamux speaks the
//! `futures` traits; `tokio_util::compat` bridges both ways).

use std::future::poll_fn;
use std::task::Poll;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::compat::{Compat, FuturesAsyncReadCompatExt, TokioAsyncReadCompatExt};

use crate::TunnelError;

/// A stream of the session, with tokio's I/O traits.
pub type Stream = Compat<yamux::Stream>;

type Reply = oneshot::Sender<Result<yamux::Stream, yamux::ConnectionError>>;

/// Most streams one session carries at once (each is one user connection). yamux
/// wants the session's total receive window (1 GiB, its default: an upper bound, not
/// an allocation) to hold 256 KiB per stream, hence 4,096.
const MAX_STREAMS: usize = 4096;

/// Largest yamux data frame. yamux's default (16 KiB) makes a bulk transfer one frame,
/// one trip through the session task and one header per 16 KiB; 64 KiB frames cut
/// that fourfold (they still take at most a stream's window of credit).
const SPLIT_SEND_SIZE: usize = 64 * 1024;

/// The session's total receive window. yamux starts every stream at 256 KiB and
/// doubles a stream's window while its sender uses it up within two round trips,
/// but only out of what this total leaves above 256 KiB for each of
/// [`MAX_STREAMS`]; at yamux's default (1 GiB, exactly 4,096 × 256 KiB) nothing was
/// left, so one stream stayed at 256 KiB in flight and, through the relay's longer
/// pipeline, waited for window updates (issue 14's throughput figure). 64 MiB more
/// lets a bulk stream grow to several MiB; it is credit, not an allocation: a stream
/// buffers that much only when its reader falls behind its sender.
const RECEIVE_WINDOW: usize = MAX_STREAMS * 256 * 1024 + 64 * 1024 * 1024;

/// Read buffer between TCP and TLS. rustls reads the socket 4 KiB at a time (it
/// never asks for more), so a 64 KiB yamux frame took sixteen `read` calls; with
/// this buffer under TLS it takes one, and rustls copies out of memory instead.
pub(crate) const SOCKET_READ_BUFFER: usize = 256 * 1024;

/// How much encrypted data rustls may queue before a write waits for the socket
/// (its default, 64 KiB, split every 64 KiB frame and its 12-byte header into two
/// socket writes).
pub(crate) const TLS_BUFFER_LIMIT: usize = 512 * 1024;

/// Writes up to this size are held back by [`Coalesce`] (yamux's 12-byte headers,
/// window updates, pings: frames with no or a small body).
const SMALL_WRITE: usize = 4 * 1024;

/// `tcp` with [`SOCKET_READ_BUFFER`] under it, for TLS to run on.
pub(crate) fn read_buffered(tcp: tokio::net::TcpStream) -> tokio::io::BufReader<tokio::net::TcpStream> {
    tokio::io::BufReader::with_capacity(SOCKET_READ_BUFFER, tcp)
}

/// Opens streams on a running session. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Handle {
    open: mpsc::Sender<Reply>,
}

impl Handle {
    /// A new outbound stream.
    pub async fn open(&self) -> Result<Stream, TunnelError> {
        let closed = || TunnelError::Session(yamux::ConnectionError::Closed);
        let (tx, rx) = oneshot::channel();
        self.open.send(tx).await.map_err(|_| closed())?;
        Ok(rx.await.map_err(|_| closed())??.compat())
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        self.open.is_closed()
    }

    /// Resolves when the session ends.
    pub async fn closed(&self) {
        self.open.closed().await;
    }
}

/// Starts driving `io` as a yamux session in `mode`: the handle to open streams, the
/// peer's streams as they arrive (dropped, so reset, when nobody takes them fast
/// enough), and the driving task (abort it to end the session). The receiver ends when
/// the session does.
pub fn start<T>(io: T, mode: yamux::Mode) -> (Handle, mpsc::Receiver<Stream>, JoinHandle<()>)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut config = yamux::Config::default();
    config.set_max_num_streams(MAX_STREAMS);
    config.set_split_send_size(SPLIT_SEND_SIZE);
    config.set_max_connection_receive_window(Some(RECEIVE_WINDOW));
    let io = Coalesce { inner: io, held: Vec::with_capacity(SMALL_WRITE) };
    let mut conn = yamux::Connection::new(io.compat(), config, mode);
    let (open_tx, mut open_rx) = mpsc::channel::<Reply>(64);
    let (in_tx, in_rx) = mpsc::channel(256);
    let task = tokio::spawn(async move {
        let mut waiting: Option<Reply> = None;
        poll_fn(|cx| {
            loop {
                if waiting.is_none()
                    && let Poll::Ready(Some(reply)) = open_rx.poll_recv(cx)
                {
                    waiting = Some(reply);
                }
                if let Some(reply) = waiting.take() {
                    match conn.poll_new_outbound(cx) {
                        Poll::Ready(result) => {
                            let failed = result.is_err();
                            let _ = reply.send(result);
                            if failed {
                                return Poll::Ready(());
                            }
                            continue;
                        }
                        Poll::Pending => waiting = Some(reply),
                    }
                }
                match conn.poll_next_inbound(cx) {
                    Poll::Ready(Some(Ok(stream))) => {
                        if in_tx.try_send(stream.compat()).is_err() {
                            tracing::debug!("an inbound tunnel stream was dropped: nobody took it");
                        }
                    }
                    Poll::Ready(Some(Err(e))) => {
                        tracing::debug!(error = %e, "tunnel session ended");
                        return Poll::Ready(());
                    }
                    Poll::Ready(None) => return Poll::Ready(()),
                    Poll::Pending => return Poll::Pending,
                }
            }
        })
        .await;
    });
    (Handle { open: open_tx }, in_rx, task)
}

/// Between yamux and TLS: small writes are held back and go down with the next large
/// one as one vectored write, or at the next flush.
///
/// Why: yamux writes a frame as two writes (a 12-byte header, then the body) and
/// flushes after every frame, and TLS turns each write into records and a socket
/// write at once; unbuffered, every frame cost a 12-byte record and a socket write of
/// its own. A plain write buffer (a `BufWriter`) fixed that but copied every body once
/// more; here a body is handed to rustls together with the held header, and rustls
/// encrypts straight out of both into its records (one copy, which encryption needs
/// anyway).
struct Coalesce<T> {
    inner: T,
    held: Vec<u8>,
}

impl<T: AsyncWrite + Unpin> Coalesce<T> {
    /// Writes what is held; ready when nothing is.
    fn poll_drain(&mut self, cx: &mut std::task::Context<'_>) -> Poll<std::io::Result<()>> {
        while !self.held.is_empty() {
            let n = std::task::ready!(std::pin::Pin::new(&mut self.inner).poll_write(cx, &self.held))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.held.drain(..n);
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Coalesce<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Coalesce<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        if buf.len() <= SMALL_WRITE && this.held.len() + buf.len() <= 2 * SMALL_WRITE {
            this.held.extend_from_slice(buf);
            return Poll::Ready(Ok(buf.len()));
        }
        loop {
            if this.held.is_empty() {
                return std::pin::Pin::new(&mut this.inner).poll_write(cx, buf);
            }
            let parts = [std::io::IoSlice::new(&this.held), std::io::IoSlice::new(buf)];
            let n = std::task::ready!(std::pin::Pin::new(&mut this.inner).poll_write_vectored(cx, &parts))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            let held = this.held.len();
            if n < held {
                this.held.drain(..n);
                continue;
            }
            this.held.clear();
            if n > held {
                return Poll::Ready(Ok(n - held));
            }
        }
    }

    fn poll_flush(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<std::io::Result<()>> {
        std::task::ready!(self.poll_drain(cx))?;
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<std::io::Result<()>> {
        std::task::ready!(self.poll_drain(cx))?;
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn coalesce_keeps_order_and_holds_small_writes_until_a_large_one_or_a_flush() {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let mut w = Coalesce { inner: a, held: Vec::new() };
        w.write_all(b"head").await.unwrap();
        let mut probe = [0u8; 4];
        let nothing = tokio::time::timeout(std::time::Duration::from_millis(50), b.read(&mut probe)).await;
        assert!(nothing.is_err(), "a small write went down before a flush");
        let body: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
        w.write_all(&body).await.unwrap();
        w.write_all(b"tail").await.unwrap();
        w.flush().await.unwrap();
        let mut got = vec![0u8; 4 + body.len() + 4];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[..4], b"head");
        assert_eq!(&got[4..4 + body.len()], &body[..]);
        assert_eq!(&got[4 + body.len()..], b"tail");
    }
}
