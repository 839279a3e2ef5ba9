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

/// Write buffer between yamux and TLS. yamux writes a frame as two writes (a 12-byte
/// header, then the body) and flushes after every frame; unbuffered, each write became
/// its own TLS record and socket write (a 12-byte record per frame). Buffered, a frame
/// and whatever follows it before the flush go out together. Reads need no buffer:
/// TLS already holds the decrypted plaintext, and another would only add a copy.
const IO_BUFFER: usize = 128 * 1024;

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
    let io = tokio::io::BufWriter::with_capacity(IO_BUFFER, io);
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
