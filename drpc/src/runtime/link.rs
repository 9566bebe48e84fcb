//! One connection as the tasks around it share it: its protocol state
//! behind a lock, the wake-ups between its reader, its writer and its
//! callers, and its running handlers. A dialed session that redials gets a
//! new link; everything here belongs to one connection and ends with it.

use crate::core::conn::{ConnCore, QueueError, ReplyWrite};
use crate::core::inflight::Outcome;
use crate::core::lifecycle::Renewal;
use crate::core::outbound::Batch;
use crate::core::wire;
use crate::runtime::attention::Attention;
use crate::runtime::write_side::{WriteFailure, WriteSide};
use crate::values::Status;
use bytes::BytesMut;
use drpc_proto::{Head, Message, ProtoError, WriteBody};
use drpc_socket::{Addr, WriteHalf};
use parking_lot::{Mutex, MutexGuard};
use rustc_hash::FxHashMap;
use std::future::poll_fn;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};
use std::time::Instant;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// One connection's shared state.
pub(crate) struct Link {
    core: Mutex<ConnCore<Waker>>,
    /// The write half. Locked before `core` when both are.
    write_side: Mutex<WriteSide>,
    pub(crate) local: Addr,
    pub(crate) peer: Addr,
    /// Tells the reader to look again: a deadline earlier than its timer,
    /// room in the hold, a handler ended while draining, a drop, close or
    /// abort asked for.
    pub(crate) reader: Attention,
    /// Woken when a message is held while the connection is established,
    /// for a hook waiting to take one.
    pub(crate) held: Notify,
    /// Spawned handlers of this connection's calls and pushes.
    pub(crate) handlers: Handlers,
    /// The cancel token of each spawned call handler, by seq: the peer's
    /// cancel (kind 4) stops it.
    cancels: Mutex<Cancels>,
    /// Cancelled when the connection's hooks have passed.
    pub(crate) established: CancellationToken,
    /// Cancelled when the peer has said what it takes (docs/PROTOCOL.md
    /// section 3.2).
    pub(crate) hello: CancellationToken,
    /// Asks the reader to drop the connection as if it broke, for
    /// `drop_reason`.
    pub(crate) drop_requested: CancellationToken,
    pub(crate) drop_reason: OnceLock<Status>,
    /// Cancelled when the peer says it is going away, or this side stops
    /// sending on the connection.
    pub(crate) going_away: CancellationToken,
    /// Cancelled when the connection is over: its tasks have ended and its
    /// transport has finished its close.
    pub(crate) finished: CancellationToken,
}

/// Running handler tasks: counted so a graceful close waits for them, and
/// cancelled together when it cannot.
#[derive(Default)]
pub(crate) struct Handlers {
    running: AtomicUsize,
    idle: Notify,
    pub(crate) abort: CancellationToken,
}

impl Handlers {
    pub(crate) fn running(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }
}

/// A handler task's place in [`Handlers`].
pub(crate) struct HandlerGuard(std::sync::Arc<Link>);

impl Drop for HandlerGuard {
    fn drop(&mut self) {
        let h = &self.0.handlers;
        if h.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            h.idle.notify_waiters();
            // The reader may be draining, waiting for the last one.
            self.0.reader.notify();
        }
    }
}

impl Link {
    pub(crate) fn new(core: ConnCore<Waker>, wr: WriteHalf, local: Addr, peer: Addr) -> Self {
        Self {
            core: Mutex::new(core),
            write_side: Mutex::new(WriteSide::new(wr)),
            local,
            peer,
            reader: Attention::default(),
            held: Notify::new(),
            handlers: Handlers::default(),
            cancels: Mutex::default(),
            established: CancellationToken::new(),
            hello: CancellationToken::new(),
            drop_requested: CancellationToken::new(),
            drop_reason: OnceLock::new(),
            going_away: CancellationToken::new(),
            finished: CancellationToken::new(),
        }
    }

    /// Counts a handler task in; the guard counts it out when dropped,
    /// however the task ends.
    pub(crate) fn enter_handler(self: &std::sync::Arc<Self>) -> HandlerGuard {
        self.handlers.running.fetch_add(1, Ordering::AcqRel);
        HandlerGuard(self.clone())
    }

    /// The connection's state, locked. Never held across an await, and
    /// never while a plugin hook or handler runs.
    pub(crate) fn core(&self) -> MutexGuard<'_, ConnCore<Waker>> {
        self.core.lock()
    }

    /// The write half, locked. Never held across an await; `core` may be
    /// locked inside it, never the other way round.
    pub(crate) fn write_side(&self) -> MutexGuard<'_, WriteSide> {
        self.write_side.lock()
    }

    /// Starts a call whose body `write_body` encodes straight into the
    /// batch (`head.seq` is set here), waiting for room until `deadline`.
    /// Returns its seq; the call must then end with [`Link::outcome`] or
    /// [`Link::forget`].
    ///
    /// Errors: as [`Link::send`].
    pub(crate) async fn start_call<F>(
        &self,
        head: &mut Head<'_>,
        deadline: Instant,
        mut write_body: F,
    ) -> Result<u32, Status>
    where
        F: FnMut(&mut BytesMut) -> Result<(), ProtoError>,
    {
        match self.try_start(head, deadline, &mut write_body, None) {
            Err(QueueError::Full) => {}
            other => return queue_result(other),
        }
        let method = head.service_method;
        let wait =
            poll_fn(
                |cx| match self.try_start(head, deadline, &mut write_body, Some(cx.waker())) {
                    Err(QueueError::Full) => Poll::Pending,
                    other => Poll::Ready(queue_result(other)),
                },
            );
        // Boxed: a full queue is rare, and its timer would otherwise make
        // every call's future larger (and costlier to move).
        match Box::pin(tokio::time::timeout_at(deadline.into(), wait)).await {
            Ok(r) => r,
            Err(_) => Err(Status::deadline_exceeded(format!(
                "{method}: the deadline passed while waiting for room in the write queue"
            ))),
        }
    }

    fn try_start(
        &self,
        head: &mut Head<'_>,
        deadline: Instant,
        write_body: WriteBody<'_>,
        waiter: Option<&Waker>,
    ) -> Result<u32, QueueError> {
        let waiter = waiter.unwrap_or(Waker::noop());
        let started = self
            .core()
            .start_call(head, deadline, write_body, || waiter.clone())?;
        if started.earlier {
            // The reader's deadline timer must fire sooner.
            self.reader.notify();
        }
        if let Some(w) = started.writer {
            w.wake();
        }
        if started.lone && !self.write_here(ConnCore::lone_batch) {
            if let Some(w) = self.core().left_to_writer() {
                w.wake();
            }
        }
        Ok(started.seq)
    }

    /// Writes the batch `take` gives (a lone call's, or replies the
    /// writer would write next) here, on the sender's task, rather than
    /// leaving it to the writer: when few calls are in flight, the hop to
    /// the writer (or the reader's bookkeeping before it) is most of the
    /// time spent before the bytes leave. True when it is all written;
    /// otherwise the writer must go on with it (or report its failure).
    pub(crate) fn write_here(
        &self,
        take: impl FnOnce(&mut ConnCore<Waker>) -> Option<(Batch, Vec<Waker>)>,
    ) -> bool {
        // Never waits: if the writer holds the write half, it writes.
        let Some(mut side) = self.write_side.try_lock() else {
            return false;
        };
        if !side.is_free() {
            return false;
        }
        let Some((batch, room)) = take(&mut self.core()) else {
            return false;
        };
        side.start(batch);
        // No waker of the writer's here: if the socket cannot take it all
        // now, the writer goes on with its own.
        let done = match self.poll_written(&mut side, &mut Context::from_waker(Waker::noop())) {
            Poll::Ready(Ok(())) => true,
            Poll::Ready(Err(failed)) => {
                side.fail(failed);
                false
            }
            Poll::Pending => false,
        };
        drop(side);
        for w in room {
            w.wake();
        }
        done
    }

    /// Writes `side`'s current batch on; once it is written whole, its
    /// buffer goes back to the queue for the next batch.
    pub(crate) fn poll_written(
        &self,
        side: &mut WriteSide,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), WriteFailure>> {
        side.poll_current(cx).map_ok(|written| {
            if let Some(batch) = written {
                self.core().recycle(batch);
            }
        })
    }

    /// Registers a call of this side waiting until `deadline`, before its
    /// message is made (plugins see its seq); returns the seq. The call
    /// must then be sent with [`Link::send`] and end with [`Link::outcome`]
    /// or [`Link::forget`].
    pub(crate) fn register_call(&self, deadline: Instant) -> u32 {
        let (seq, earlier) = self.core().calls.start(deadline);
        if earlier {
            self.reader.notify();
        }
        seq
    }

    /// Forgets call `seq` (its caller stopped waiting).
    pub(crate) fn forget(&self, seq: u32) {
        self.core().calls.forget(seq);
    }

    /// Forgets call `seq`, whose frame was sent, and tells the peer its
    /// caller gave up (if the peer takes cancels), so its handler stops.
    pub(crate) fn cancel(&self, seq: u32) {
        let writer = {
            let mut core = self.core();
            core.calls.forget(seq);
            core.cancel(seq)
        };
        if let Some(w) = writer {
            w.wake();
        }
    }

    /// Records the cancel token of the peer's call `seq`, whose handler
    /// runs on a task of its own; the guard forgets it when dropped, which
    /// must be before the call's reply is queued (the peer may reuse the
    /// seq once it has the reply).
    pub(crate) fn watch_cancel(
        self: &std::sync::Arc<Self>,
        seq: u32,
        token: CancellationToken,
    ) -> CancelWatch {
        let mut cancels = self.cancels.lock();
        cancels.made += 1;
        let id = cancels.made;
        cancels.by_seq.insert(seq, (id, token));
        CancelWatch {
            link: self.clone(),
            seq,
            id,
        }
    }

    /// The peer said what it takes: wake the writer (for what that
    /// released) and whoever waits to know.
    pub(crate) fn heard_hello(&self, writer: Option<Waker>) {
        if let Some(w) = writer {
            w.wake();
        }
        self.hello.cancel();
    }

    /// The peer cancelled its call `seq`: its handler, if it still runs,
    /// is stopped.
    pub(crate) fn cancel_handler(&self, seq: u32) {
        let token = self.cancels.lock().by_seq.remove(&seq);
        if let Some((_, token)) = token {
            token.cancel();
        }
    }

    /// Queues `msg` for the writer, waiting for room until `deadline`.
    ///
    /// Errors: 408 when the queue stays full past the deadline; the
    /// connection's status when it has ended or the peer is going away; 413
    /// or 400 when the message cannot be encoded.
    pub(crate) async fn send(&self, msg: &Message, deadline: Instant) -> Result<(), Status> {
        // The queue almost always has room: no timer unless it is full.
        match self.try_send(msg, None) {
            Err(QueueError::Full) => {}
            other => return queue_result(other),
        }
        let wait = poll_fn(|cx| match self.try_send(msg, Some(cx.waker())) {
            Err(QueueError::Full) => Poll::Pending,
            other => Poll::Ready(queue_result(other)),
        });
        match Box::pin(tokio::time::timeout_at(deadline.into(), wait)).await {
            Ok(r) => r,
            Err(_) => Err(Status::deadline_exceeded(format!(
                "{}: the deadline passed while waiting for room in the write queue",
                msg.header.service_method
            ))),
        }
    }

    fn try_send(&self, msg: &Message, waiter: Option<&Waker>) -> Result<(), QueueError> {
        let noop = Waker::noop();
        let waiter = waiter.unwrap_or(noop);
        let writer = self.core().send(msg, || waiter.clone())?;
        if let Some(w) = writer {
            w.wake();
        }
        Ok(())
    }

    /// Queues a reply (or a refusal) to the peer's call, without waiting:
    /// replies are few (one per call taken) and must not deadlock on a
    /// full queue.
    pub(crate) fn reply(&self, msg: &Message) {
        let write = self.core().reply(msg);
        self.write_reply(write);
    }

    fn write_reply(&self, write: ReplyWrite<Waker>) {
        match write {
            ReplyWrite::Writer(Some(w)) => w.wake(),
            ReplyWrite::Writer(None) => {}
            // What is not written here, the writer (due when the reader's
            // turn ends) goes on with.
            ReplyWrite::Here => {
                if !self.write_here(ConnCore::reply_batch) {
                    let writer = self.core().left_to_writer();
                    if let Some(w) = writer {
                        w.wake();
                    }
                }
            }
        }
    }

    /// Queues a reply to the peer's call whose body `write_body` encodes
    /// straight into the batch, without waiting (as [`Link::reply`]).
    ///
    /// Errors: the body's own error, or 413 or 400 when the frame cannot
    /// be encoded; nothing is queued then, and the reply is still owed.
    pub(crate) fn reply_with(
        &self,
        head: &Head<'_>,
        mut write_body: impl FnMut(&mut BytesMut) -> Result<(), Status>,
    ) -> Result<(), Status> {
        let mut failed = None;
        let queued = self.core().reply_with(head, &mut |dst: &mut BytesMut| {
            write_body(dst).map_err(|status| {
                let what = status.message().to_string();
                failed = Some(status);
                ProtoError::Unencodable(what)
            })
        });
        match queued {
            Ok(write) => {
                self.write_reply(write);
                Ok(())
            }
            Err(err) => Err(failed.unwrap_or_else(|| wire::encode_status(&err))),
        }
    }

    /// Queues a reply to a call that never reached a handler (refused on
    /// arrival, or never dispatched).
    pub(crate) fn reply_at_once(&self, msg: &Message) {
        let writer = self.core().answer_undispatched(msg);
        if let Some(w) = writer {
            w.wake();
        }
    }

    /// Tells the peer this side is going away (once); with `renewal`, that
    /// it leaves this connection only and a new one is welcome.
    pub(crate) fn going_away(&self, renewal: Option<Renewal>) {
        let writer = self.core().going_away(renewal);
        if let Some(w) = writer {
            w.wake();
        }
    }

    /// Waits for the outcome of call `seq`.
    pub(crate) async fn outcome(&self, seq: u32) -> Outcome {
        poll_fn(|cx| {
            let polled = self.core().calls.poll(seq, |w| match w {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => *w = Some(cx.waker().clone()),
            });
            match polled {
                Some(outcome) => Poll::Ready(outcome),
                // No entry at all: nothing will ever answer; say so rather
                // than wait forever.
                None if !self.core().calls.contains(seq) => Poll::Ready(Outcome::Failed(
                    Status::connection_closed("the call is no longer known on its connection"),
                )),
                None => Poll::Pending,
            }
        })
        .await
    }

    /// This side sends no more calls or pushes here: waiting calls fail
    /// with `status`, blocked senders wake and find it closed. Replies and
    /// notices are still written.
    pub(crate) fn stop_sends(&self, status: Status) {
        let woken = self.core().end(status);
        for w in woken {
            w.wake();
        }
        self.going_away.cancel();
    }

    /// This side sends no more calls or pushes here, as
    /// [`Link::stop_sends`], but its calls in flight wait for their
    /// replies: the connection is renewed, and drains.
    pub(crate) fn refuse_new(&self, status: Status) {
        let woken = self.core().refuse_new(status);
        for w in woken {
            w.wake();
        }
        self.going_away.cancel();
    }

    /// Asks the writer to shut the write side down once everything queued
    /// is written.
    pub(crate) fn finish_writing(&self) {
        if let Some(w) = self.core().finish_writing() {
            w.wake();
        }
    }

    /// Why new calls fail on this link now, if they do.
    pub(crate) fn refusal(&self) -> Option<Status> {
        self.core().refusal()
    }

    /// Whether the peer said it is going away (or refused the connection).
    pub(crate) fn peer_notice(&self) -> Option<Status> {
        self.core().peer_notice().cloned()
    }

    /// The new connection the peer's going-away notice asked for, if it
    /// asked for one.
    pub(crate) fn peer_renewal(&self) -> Option<Renewal> {
        self.core().peer_renewal()
    }

    /// A renewal of this connection, asked for by either side.
    pub(crate) fn renewal(&self) -> Option<Renewal> {
        self.core().renewal()
    }

    /// Records the peer's going-away notice.
    pub(crate) fn peer_going_away(&self) {
        self.going_away.cancel();
    }

    /// The outcome status of a reply message: its own when not OK. A reply
    /// of 102 is the peer's refusal of a call that crossed its going-away
    /// notice: that call was not run.
    pub(crate) fn reply_status(reply: &Message) -> Option<Status> {
        (reply.header.status_code != 0).then(|| {
            let code = crate::values::Code(reply.header.status_code);
            let status = Status::new(code, reply.header.status_message.to_string());
            match code {
                crate::values::Code::CONNECTION_CLOSED => status.unrun(),
                _ => status,
            }
        })
    }
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("local", &self.local)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

/// The cancel tokens of a connection's spawned call handlers.
#[derive(Default)]
struct Cancels {
    by_seq: FxHashMap<u32, (u64, CancellationToken)>,
    /// How many were ever recorded: each entry's id, so a handler that
    /// ends late never forgets the token of a newer call with its seq.
    made: u64,
}

/// A spawned call handler's entry among [`Link`]'s cancel tokens.
pub(crate) struct CancelWatch {
    link: std::sync::Arc<Link>,
    seq: u32,
    id: u64,
}

impl Drop for CancelWatch {
    fn drop(&mut self) {
        let mut cancels = self.link.cancels.lock();
        if cancels
            .by_seq
            .get(&self.seq)
            .is_some_and(|(id, _)| *id == self.id)
        {
            cancels.by_seq.remove(&self.seq);
        }
    }
}

fn queue_result<T>(r: Result<T, QueueError>) -> Result<T, Status> {
    match r {
        Ok(v) => Ok(v),
        Err(QueueError::Full) => unreachable!("handled by the caller"),
        Err(QueueError::Closed(status)) => Err(status),
        Err(QueueError::Encode(err)) => Err(wire::encode_status(&err)),
    }
}
