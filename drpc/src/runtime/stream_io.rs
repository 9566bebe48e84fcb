//! A link's streams as tasks use them: starting a stream call, reading
//! items (and sending the credit that frees), sending items under credit.

use super::link::Link;
use crate::core::conn::streams::{ItemError, ItemWrite};
use crate::core::conn::{ConnCore, QueueError};
use crate::core::streams::{Next, Role, Window};
use crate::core::wire;
use crate::values::Status;
use drpc_proto::Message;
use std::future::poll_fn;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

impl Link {
    /// Starts a stream call of this side (its seq is set here), with its
    /// stream open before its frame can go out: it reads items under
    /// `receive`, and sends them when `sends`. `times` are the call's
    /// deadline, and how long to wait for room in the write queue.
    ///
    /// Errors: as [`Link::send`].
    pub(crate) async fn start_stream_call(
        &self,
        msg: &mut Message,
        (deadline, open_by): (Instant, Instant),
        receive: Option<Window>,
        sends: bool,
    ) -> Result<u32, Status> {
        let method = msg.header.service_method.clone();
        let wait = poll_fn(|cx| {
            let started = self
                .core()
                .start_stream_call(msg, deadline, receive, sends, || cx.waker().clone());
            match started {
                Err(QueueError::Full) => Poll::Pending,
                Err(QueueError::Closed(status)) => Poll::Ready(Err(status)),
                Err(QueueError::Encode(err)) => Poll::Ready(Err(wire::encode_status(&err))),
                Ok(started) => {
                    if started.earlier {
                        self.reader.notify();
                    }
                    if let Some(w) = started.writer {
                        w.wake();
                    }
                    Poll::Ready(Ok(started.seq))
                }
            }
        });
        match tokio::time::timeout_at(open_by.into(), wait).await {
            Ok(r) => r,
            Err(_) => Err(Status::deadline_exceeded(format!(
                "{method}: the deadline passed while waiting for room in the write queue"
            ))),
        }
    }

    /// The next item of a stream this side reads; the credit it frees is
    /// queued.
    pub(crate) fn poll_item(&self, role: Role, seq: u32, cx: &mut Context<'_>) -> Next<Waker> {
        let (next, writer) = self.core().next_item(role, seq, || cx.waker().clone());
        if let Some(w) = writer {
            w.wake();
        }
        next
    }

    /// Sends an item of this side's direction of a stream (its number is
    /// set here), waiting for credit and room until `deadline`.
    ///
    /// Errors: 102 when the stream or its connection is over; 408 when no
    /// credit comes before the deadline; 413 when the item is too large.
    pub(crate) async fn send_item(
        &self,
        role: Role,
        mut msg: Message,
        deadline: Instant,
    ) -> Result<(), Status> {
        // Credit and room are there most of the time: no timer then.
        let noop = Waker::noop();
        match self.try_item(role, &mut msg, noop) {
            Poll::Ready(r) => return r,
            Poll::Pending => {}
        }
        let wait = poll_fn(|cx| self.try_item(role, &mut msg, cx.waker()));
        match tokio::time::timeout_at(deadline.into(), wait).await {
            Ok(r) => r,
            Err(_) => Err(Status::deadline_exceeded(
                "the call's deadline passed while the stream waited for credit from its reader",
            )),
        }
    }

    /// One try at queueing an item; `Pending` keeps `waker` to be woken
    /// when credit or room comes.
    fn try_item(&self, role: Role, msg: &mut Message, waker: &Waker) -> Poll<Result<(), Status>> {
        let sent = self.core().send_item(role, msg, || waker.clone());
        {
            match sent {
                Ok(ItemWrite::Writer(writer)) => {
                    if let Some(w) = writer {
                        w.wake();
                    }
                    Poll::Ready(Ok(()))
                }
                Ok(ItemWrite::Here) => {
                    if !self.write_here(ConnCore::lone_batch) {
                        if let Some(w) = self.core().left_to_writer() {
                            w.wake();
                        }
                    }
                    Poll::Ready(Ok(()))
                }
                Err(ItemError::Wait) => Poll::Pending,
                Err(ItemError::Gone) => Poll::Ready(Err(Status::connection_closed(
                    "the stream is over: its call ended or was cancelled",
                ))),
                Err(ItemError::Queue(QueueError::Closed(status))) => Poll::Ready(Err(status)),
                Err(ItemError::Queue(QueueError::Encode(err))) => {
                    Poll::Ready(Err(wire::encode_status(&err)))
                }
                Err(ItemError::Queue(QueueError::Full)) => Poll::Pending,
            }
        }
    }

    /// Opens the stream of this side's call `seq`, registered but not yet
    /// sent (so a plugin could see it first).
    pub(crate) fn open_caller_stream(&self, seq: u32, receive: Option<Window>, sends: bool) {
        self.core().open_caller_stream(seq, receive, sends);
    }

    /// Opens the stream of the peer's call `seq`, which this side handles:
    /// it sends items under `send`, and reads them under `receive` (its
    /// first credit goes now).
    pub(crate) fn open_callee_stream(
        &self,
        seq: u32,
        send: Option<Window>,
        receive: Option<Window>,
    ) {
        let writer = self.core().open_callee_stream(seq, send, receive);
        if let Some(w) = writer {
            w.wake();
        }
    }

    /// Ends this side's direction of its stream call `seq`, failed with
    /// `status` if given; the end goes once the callee has granted credit.
    pub(crate) fn end_items(&self, seq: u32, status: Option<Status>) {
        let woken = self.core().end_items(seq, status);
        woken.into_iter().flatten().for_each(Waker::wake);
    }

    /// Forgets a stream; whoever waits on it wakes and finds it gone.
    pub(crate) fn close_stream(&self, role: Role, seq: u32) {
        let woken = self.core().close_stream(role, seq);
        for w in woken {
            w.wake();
        }
    }

    /// How many items this side sent on a stream.
    pub(crate) fn items_sent(&self, role: Role, seq: u32) -> u32 {
        self.core().items_sent(role, seq)
    }
}
