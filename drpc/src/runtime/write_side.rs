//! A connection's write half and the batch being written on it, shared by
//! the writer and a caller that writes its lone call itself.

use crate::core::outbound::Batch;
use drpc_socket::WriteHalf;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::AsyncWrite;

/// A write that failed, with the calls of its batch (their bytes never
/// left).
pub(crate) type WriteFailure = (io::Error, Vec<u32>);

/// The write half, behind the link's lock: whoever holds the lock writes,
/// so batches go out whole and in order.
pub(crate) struct WriteSide {
    /// `None` once the writer has ended (its end closes the write half).
    wr: Option<WriteHalf>,
    /// The batch being written, and how many of its bytes are written.
    current: Option<(Batch, usize)>,
    /// A caller's write that failed, with the calls of its batch, for the
    /// writer to report.
    failed: Option<WriteFailure>,
}

impl WriteSide {
    pub(crate) fn new(wr: WriteHalf) -> Self {
        Self {
            wr: Some(wr),
            current: None,
            failed: None,
        }
    }

    /// The write half, for a connection refused before it starts.
    pub(crate) fn take(&mut self) -> Option<WriteHalf> {
        self.wr.take()
    }

    /// Whether a new batch may be started: none is part-written, no failure
    /// waits to be reported, and the write half is open.
    pub(crate) fn is_free(&self) -> bool {
        self.current.is_none() && self.failed.is_none() && self.wr.is_some()
    }

    pub(crate) fn has_current(&self) -> bool {
        self.current.is_some()
    }

    pub(crate) fn start(&mut self, batch: Batch) {
        debug_assert!(self.current.is_none(), "one batch at a time");
        self.current = Some((batch, 0));
    }

    /// Writes the current batch on, then flushes it (the flush ends a run
    /// of whole frames: the socket contract that lets QUIC send each batch
    /// on a stream of its own). Ready with the batch once it is all written
    /// (its buffer may serve again), or failed: the batch is then dropped
    /// and the error comes with its calls.
    pub(crate) fn poll_current(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Batch>, WriteFailure>> {
        match self.poll_write_current(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) => Poll::Ready(Ok(self.current.take().map(|(b, _)| b))),
            Poll::Ready(Err(e)) => {
                let calls = self.current.take().map(|(b, _)| b.calls);
                Poll::Ready(Err((e, calls.unwrap_or_default())))
            }
        }
    }

    fn poll_write_current(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some((batch, written)) = &mut self.current else {
            return Poll::Ready(Ok(()));
        };
        let Some(wr) = &mut self.wr else {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the connection's writer has ended",
            )));
        };
        let (head, tail) = (&batch.bytes, &batch.tail);
        while *written < head.len() + tail.len() {
            // A large body follows its frame's head from where it lies: one
            // vectored write takes both (a socket without it takes the
            // first, and the loop goes on).
            let wrote = match head.get(*written..) {
                Some(rest) if !rest.is_empty() && !tail.is_empty() => {
                    let parts = [io::IoSlice::new(rest), io::IoSlice::new(tail)];
                    ready!(Pin::new(&mut *wr).poll_write_vectored(cx, &parts))
                }
                Some(rest) if !rest.is_empty() => ready!(Pin::new(&mut *wr).poll_write(cx, rest)),
                _ => ready!(Pin::new(&mut *wr).poll_write(cx, &tail[*written - head.len()..])),
            };
            match wrote {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => *written += n,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Pin::new(wr).poll_flush(cx)
    }

    /// Records a caller's failed write for the writer to report.
    pub(crate) fn fail(&mut self, failed: WriteFailure) {
        self.failed = Some(failed);
    }

    /// A caller's failed write, once.
    pub(crate) fn take_failure(&mut self) -> Option<WriteFailure> {
        self.failed.take()
    }

    /// Shuts the write half down: a clean end of stream for the peer.
    pub(crate) fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.wr {
            Some(wr) => Pin::new(wr).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    /// Closes the write half (the writer has ended).
    pub(crate) fn close(&mut self) {
        self.wr = None;
        self.current = None;
    }
}
