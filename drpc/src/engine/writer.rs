//! A connection's writer: takes batches as senders fill them and writes
//! each with one call (one stream, on QUIC), until told to finish.

use crate::core::conn::WriteStep;
use crate::runtime::link::Link;
use crate::runtime::write_side::WriteFailure;
use crate::runtime::yielding::yield_once;
use crate::values::Status;
use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;

/// How a writer ended.
pub(crate) enum WriterEnd {
    /// It wrote everything and shut its side of the connection down.
    Finished,
    /// Writing failed; the calls whose bytes never left failed with 104.
    Failed(Status),
}

/// What the writer does next.
enum Step {
    /// Write the batch taken (or left part-written by a caller).
    Write,
    Finish,
    /// A caller's own write of its lone call failed.
    Failed(WriteFailure),
}

/// Writes until [`Link::finish_writing`] and an empty queue, or an error.
///
/// It is polled by the connection's task, beside the reads and timers of
/// that same task: after a batch, when another is ready at once, it lets
/// them run first (a busy sender must not keep incoming replies unread or
/// deadlines unchecked, nor spend the task's whole coop budget). A caller
/// whose call is alone may write its batch itself while this waits (see
/// [`Link::start_call`]); the write half is shared for that.
pub(crate) async fn write_loop(link: Arc<Link>) -> WriterEnd {
    // However the writer ends (or is dropped unfinished), the write half
    // closes with it.
    let _close = CloseOnDrop(link.clone());
    let mut wrote = false;
    loop {
        let mut waited = false;
        let step = poll_fn(|cx| {
            let mut side = link.write_side();
            if let Some(failed) = side.take_failure() {
                return Poll::Ready(Step::Failed(failed));
            }
            if side.has_current() {
                return Poll::Ready(Step::Write);
            }
            match link.core().next_write(|| cx.waker().clone()) {
                WriteStep::Batch(batch, room) => {
                    side.start(batch);
                    drop(side);
                    for w in room {
                        w.wake();
                    }
                    Poll::Ready(Step::Write)
                }
                WriteStep::Finish => Poll::Ready(Step::Finish),
                WriteStep::Wait => {
                    waited = true;
                    Poll::Pending
                }
            }
        })
        .await;
        if wrote && !waited {
            yield_once().await;
        }
        wrote = true;
        let written = match step {
            Step::Finish => {
                // A clean end of stream for the peer: everything before it
                // is delivered.
                let _ = poll_fn(|cx| link.write_side().poll_shutdown(cx)).await;
                return WriterEnd::Finished;
            }
            Step::Failed(failed) => Err(failed),
            Step::Write => poll_fn(|cx| link.poll_written(&mut link.write_side(), cx)).await,
        };
        if let Err((e, calls)) = written {
            let status = Status::write_failed(format!("writing to the peer failed: {e}"));
            let woken = link.core().write_failed(&calls, &status);
            for w in woken {
                w.wake();
            }
            return WriterEnd::Failed(status.with_cause(e));
        }
    }
}

/// Closes the write half when the writer ends.
struct CloseOnDrop(Arc<Link>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.write_side().close();
    }
}
