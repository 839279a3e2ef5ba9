//! One yamux session, driven by a task of its own.
//!
//! yamux makes progress only while its `Connection` is polled, and opening an
//! outbound stream needs that same `Connection`; so one task owns it, polls it for
//! inbound streams without pause, and opens outbound streams for whoever asks through
//! the [`Handle`]. Streams come out as tokio `AsyncRead + AsyncWrite` (yamux speaks the
//! `futures` traits; `tokio_util::compat` bridges both ways).

use std::future::poll_fn;
use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
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

/// yamux's frame header, which it writes apart from the body.
const HEADER: usize = 12;

/// Largest yamux data frame body. yamux's default (16 KiB) makes a bulk transfer one
/// frame, one trip through the session task and one header per 16 KiB; 64 KiB frames
/// cut that fourfold (they still take at most a stream's window of credit). With its
/// header a full frame is exactly 64 KiB: what rustls takes in one write (its send
/// queue's default limit), so it goes out as four full 16 KiB TLS records in one
/// socket write. A 64 KiB body made every frame a fifth, 12-byte record and a second
/// socket write on each side.
pub(crate) const FRAME_BODY: usize = 64 * 1024 - HEADER;

/// Writes up to this size (yamux's headers, window updates, pings, small frames) are
/// held until the next write or flush. yamux writes a frame as a 12-byte header, then
/// the body, and flushes after every frame; written as they come, each header became
/// a TLS record and a socket write of its own.
const HOLD: usize = 256;

/// Between yamux and TLS: holds small writes and hands them to rustls together with
/// the next write, as one vectored write (rustls copies both into the same records).
/// It replaced a 128 KiB `BufWriter`, which did the same for headers but copied every
/// body once more on its way to rustls. Reads pass straight through: TLS already holds
/// the decrypted plaintext, and a buffer would only add a copy.
struct Coalesce<T> {
    io: T,
    held: Vec<u8>,
}

impl<T: AsyncWrite + Unpin> Coalesce<T> {
    fn new(io: T) -> Self {
        Self { io, held: Vec::with_capacity(HOLD) }
    }

    /// Writes out what is held.
    fn poll_held(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while !self.held.is_empty() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.held))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.held.drain(..n);
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Coalesce<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Coalesce<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.held.len() + buf.len() <= HOLD {
            this.held.extend_from_slice(buf);
            return Poll::Ready(Ok(buf.len()));
        }
        while !this.held.is_empty() {
            let both = [IoSlice::new(&this.held), IoSlice::new(buf)];
            let n = ready!(Pin::new(&mut this.io).poll_write_vectored(cx, &both))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            if n > this.held.len() {
                let of_buf = n - this.held.len();
                this.held.clear();
                return Poll::Ready(Ok(of_buf));
            }
            this.held.drain(..n);
        }
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_held(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_held(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
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
    config.set_split_send_size(FRAME_BODY);
    let io = Coalesce::new(io);
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// Takes at most `most` bytes per write (vectored or not) and records each write.
    struct Narrow {
        most: usize,
        out: Vec<u8>,
        writes: Vec<usize>,
    }

    impl Narrow {
        fn take(&mut self, bufs: &[IoSlice<'_>]) -> usize {
            let mut n = 0;
            for buf in bufs {
                let take = buf.len().min(self.most - n);
                self.out.extend_from_slice(&buf[..take]);
                n += take;
            }
            self.writes.push(n);
            n
        }
    }

    impl AsyncWrite for Narrow {
        fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
            Poll::Ready(Ok(self.get_mut().take(&[IoSlice::new(buf)])))
        }

        fn poll_write_vectored(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<std::io::Result<usize>> {
            Poll::Ready(Ok(self.get_mut().take(bufs)))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_header_goes_out_with_its_body_and_every_byte_in_order() {
        // A frame as yamux writes it: header, then body, then a flush: one write.
        let mut w = Coalesce::new(Narrow { most: usize::MAX, out: Vec::new(), writes: Vec::new() });
        let body = vec![7u8; FRAME_BODY];
        w.write_all(&[1; HEADER]).await.unwrap();
        w.write_all(&body).await.unwrap();
        w.flush().await.unwrap();
        assert_eq!(w.io.writes, [HEADER + FRAME_BODY]);
        // A lone header (a window update) goes out at the flush.
        w.write_all(&[2; HEADER]).await.unwrap();
        assert_eq!(w.io.writes.len(), 1);
        w.flush().await.unwrap();
        assert_eq!(w.io.writes, [HEADER + FRAME_BODY, HEADER]);

        // Short writes below (a full TLS send queue) lose and reorder nothing.
        for most in [1, 5, 12, 13, 300, 4096] {
            let mut w = Coalesce::new(Narrow { most, out: Vec::new(), writes: Vec::new() });
            let mut expected = Vec::new();
            for (i, len) in [12, 3, 12, 5000, 12, 0, 12, 255, 256, 1].into_iter().enumerate() {
                let chunk: Vec<u8> = (0..len).map(|j| (i * 31 + j) as u8).collect();
                w.write_all(&chunk).await.unwrap();
                expected.extend_from_slice(&chunk);
            }
            w.flush().await.unwrap();
            assert!(w.held.is_empty());
            assert_eq!(w.io.out, expected, "at most {most} bytes a write");
        }
    }
}
