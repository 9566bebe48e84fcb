//! A connection's writer: takes batches as senders fill them and writes
//! each with one call (one stream, on QUIC), until told to finish.

use crate::core::conn::WriteStep;
use crate::runtime::link::Link;
use crate::runtime::yielding::yield_once;
use crate::values::Status;
use drpc_socket::WriteHalf;
use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;
use tokio::io::AsyncWriteExt;

/// How a writer ended.
pub(crate) enum WriterEnd {
    /// It wrote everything and shut its side of the connection down.
    Finished,
    /// Writing failed; the calls whose bytes never left failed with 104.
    Failed(Status),
}

/// Writes until [`Link::finish_writing`] and an empty queue, or an error.
///
/// It is polled by the connection's task, beside the reads and timers of
/// that same task: after a batch, when another is ready at once, it lets
/// them run first (a busy sender must not keep incoming replies unread or
/// deadlines unchecked, nor spend the task's whole coop budget).
pub(crate) async fn write_loop(link: Arc<Link>, mut wr: WriteHalf) -> WriterEnd {
    let mut wrote = false;
    loop {
        let mut waited = false;
        let step = poll_fn(|cx| match link.core().next_write(|| cx.waker().clone()) {
            WriteStep::Wait => {
                waited = true;
                Poll::Pending
            }
            step => Poll::Ready(step),
        })
        .await;
        if wrote && !waited {
            yield_once().await;
        }
        wrote = true;
        let batch = match step {
            WriteStep::Batch(batch, room) => {
                for w in room {
                    w.wake();
                }
                batch
            }
            WriteStep::Finish => {
                // A clean end of stream for the peer: everything before it
                // is delivered.
                let _ = wr.shutdown().await;
                return WriterEnd::Finished;
            }
            WriteStep::Wait => unreachable!("waited above"),
        };
        // The flush ends a run of whole frames: the socket contract that
        // lets QUIC send each batch on a stream of its own.
        let written = async {
            wr.write_all(&batch.bytes).await?;
            wr.flush().await
        }
        .await;
        if let Err(e) = written {
            let status = Status::write_failed(format!("writing to the peer failed: {e}"));
            let woken = link.core().write_failed(&batch.calls, &status);
            for w in woken {
                w.wake();
            }
            return WriterEnd::Failed(status.with_cause(e));
        }
    }
}
