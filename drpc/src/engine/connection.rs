//! One connection of a session, from its first byte to its transport's
//! close: the reader (frames in, dispatched as they come), the timers
//! (frame, call deadlines), the connection hooks' verdict, and the end,
//! drained or not as [`after_connection`] decides.

use super::dispatch;
use super::read::{poll_read, Read};
use super::writer::{write_loop, WriterEnd};
use crate::core::conn::{ConnCore, Event};
use crate::core::expiry::ExpiryWatch;
use crate::core::hold::Hold;
use crate::core::inbound::{Frame, Inbound};
use crate::core::lifecycle::{after_connection, Cause, Facts, Next, Notice, Phase, Then};
use crate::core::outbound::Outbound;
use crate::core::wire;
use crate::plugin::BoxFuture;
use crate::runtime::gate::Gate;
use crate::runtime::link::Link;
use crate::runtime::timer::LazyTimer;
use crate::runtime::yielding::yield_once;
use crate::session::Session;
use crate::shared::EndpointShared;
use crate::values::Status;
use drpc_proto::{Kind, Message, Proto};
use drpc_socket::{Finished, ReadHalf, Socket, WriteHalf};
use futures_util::FutureExt;
use std::future::poll_fn;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

mod expiry;
mod stop;

/// A connected socket made into a link, before its connection runs.
pub(crate) struct Conn {
    pub(crate) link: Arc<Link>,
    rd: ReadHalf,
    finished: Finished,
    /// The wire format, for the reader's framer.
    proto: Arc<dyn Proto>,
    /// The peer's messages arrive in the order it sent them.
    ordered: bool,
}

impl Conn {
    pub(crate) fn new(ep: &EndpointShared, proto: Arc<dyn Proto>, socket: Socket) -> Self {
        let parts = socket.into_parts();
        let limits = ep.frame_limits();
        let core = ConnCore::new(
            Outbound::new(
                proto.framer(&limits),
                ep.config.write_batch,
                ep.config.write_queue,
            ),
            Hold::new(ep.config.max_frame_len),
        )
        .ordered(parts.ordered);
        Self {
            link: Arc::new(Link::new(core, parts.write, parts.local, parts.peer)),
            rd: parts.read,
            finished: parts.finished,
            proto,
            ordered: parts.ordered,
        }
    }

    /// Queues the hello a dialer sends first (docs/PROTOCOL.md section
    /// 3.2), before any other frame: the peer's answer says whether it
    /// takes cancels.
    pub(crate) fn say_hello(self) -> Self {
        // The writer has not started: it finds the hello when it does.
        let _ = self.link.core().start_hello();
        self
    }

    /// The write half alone, to refuse the connection before it starts.
    pub(crate) fn into_write_half(self) -> WriteHalf {
        let wr = self.link.write_side().take();
        wr.expect("a connection that has not started has its write half")
    }
}

/// Where the verdict of the connection's hooks comes from.
pub(crate) enum Verdict {
    /// The first connection: `establish` runs the hooks on the dialer's or
    /// acceptor's task and sends their verdict.
    Sent(tokio::sync::oneshot::Receiver<Result<(), Status>>),
    /// A redialed connection: its hooks run here.
    Run(BoxFuture<'static, Result<(), Status>>),
}

/// How a connection ended.
pub(crate) struct Ended {
    pub(crate) status: Status,
    pub(crate) next: Next,
    /// Its hooks passed.
    pub(crate) established: bool,
    /// It ended for a new connection (an expiry here or at the peer): the
    /// next one is dialed without waiting.
    pub(crate) renewed: bool,
}

/// Runs `conn` to its end.
pub(crate) async fn run(
    session: &Session,
    conn: Conn,
    verdict: Verdict,
    ever_established: bool,
) -> Ended {
    let ep = session.shared.ep.clone();
    let Conn {
        link,
        rd,
        finished,
        proto,
        ordered,
    } = conn;
    // Polled by this task beside the reads, not spawned: a reply or call
    // queued while the reader runs is written in the same turn, without a
    // hop through the scheduler (what h2 does with its connection task).
    let writer: Writer = Box::pin(
        AssertUnwindSafe(write_loop(link.clone()))
            .catch_unwind()
            .map(|ended| {
                // A transport's writer that panics fails this connection,
                // not the session's task.
                ended.unwrap_or_else(|_| {
                    WriterEnd::Failed(Status::internal("the connection's writer panicked"))
                })
            }),
    );
    let now = tokio::time::Instant::now().into_std();
    // Changes made before this connection are in the limits read now.
    session.take_expiry_change();
    let expiry = ExpiryWatch::new(session.expiry(), now, fastrand::f64());
    let mut r = Reader {
        session,
        ep: &ep,
        link: &link,
        rd,
        inbound: Inbound::new(
            proto.framer(&ep.frame_limits()),
            ep.config.read_chunk,
            ep.config.frame_timeout,
            now,
        ),
        reading: true,
        waiting: None,
        backlog: false,
        established: false,
        writer: Some(writer),
        writer_gate: Gate::default(),
        writer_end: None,
        woken: 0,
        expiry,
        expired: false,
        writes_ended: false,
        ordered,
    };
    let (cause, status) = r.until_ending(verdict).await;
    let notice = match link.peer_notice() {
        None => Notice::None,
        Some(s) if wire::is_going_away(&s) => match link.peer_renewal() {
            Some(renewal) => Notice::Renew(renewal),
            None => Notice::GoingAway,
        },
        Some(_) => Notice::Refused,
    };
    let redial = &ep.config.redial;
    let facts = Facts {
        cause,
        notice,
        // Whether it can redial: it has an address to dial again.
        dialed: session.dial_target().is_some(),
        redial: redial.enabled,
        redial_after_shutdown: redial.after_shutdown,
        // The hooks passed once `establish` or the redial hooks said so,
        // whether or not the reader had heard of it yet.
        ever_established: ever_established || link.established.is_cancelled(),
        closing: ep.shutdown.is_cancelled()
            || session.shared.close_requested.is_cancelled()
            || session.shared.abort_requested.is_cancelled(),
    };
    let next = after_connection(&facts);
    // A renewal of this side's own drains this side's calls too: they are
    // answered before the connection ends.
    let expired = matches!(cause, Cause::Expired(_));
    if let Cause::Expired(renewal) = cause {
        // First, so that a call refused from here on is known to have met
        // a renewal (and is made again on the next connection).
        link.going_away(Some(renewal));
    }
    let stop_sends = |why: Status| match expired {
        true => link.refuse_new(why),
        false => link.stop_sends(why),
    };
    match next.then {
        Then::Close => {
            session.begin_close(&status);
            stop_sends(session.closed_status());
        }
        Then::Redial | Then::RedialWhenNeeded => {
            tracing::info!(session = %session.id(), reason = %status, "connection lost; redialing");
            session.transition(Phase::connection_lost);
            session.set_link(None);
            stop_sends(Status::connection_closed(format!(
                "the connection was lost ({status}); the session is redialing"
            )));
        }
    }
    if !r.established {
        // Nothing held may run now (not even when the hooks passed just
        // before this end): calls are answered with the reason.
        let (dropped, writer) = link.core().refuse_held(&status);
        if let Some(w) = writer {
            w.wake();
        }
        if dropped > 0 {
            tracing::debug!(session = %session.id(), dropped, %status, "pushes held before establishment dropped");
        }
        if let Some(msg) = r.waiting.take() {
            if msg.header.kind == Kind::Call {
                let h = &msg.header;
                link.reply_at_once(&wire::error_reply(h.seq, h.codec, &status));
            }
        }
    }
    if cause == Cause::LocalClose {
        // Tell the peer first, so it stops starting calls here while the
        // running ones finish (docs/PROTOCOL.md section 3.1).
        link.going_away(ep.leaving.get().copied());
    }
    // Boxed: it runs once, at the end, and an idle session's task should
    // not carry its state.
    Box::pin(r.stop(next.stop)).await;
    if expired {
        // Replies that did not come within the grace never will.
        link.stop_sends(Status::connection_closed(format!(
            "the connection ended before the reply came ({status})"
        )));
    }
    let established = link.established.is_cancelled();
    drop(r);
    // The transport's own close (QUIC's, KCP's) finishes in the
    // background; wait for it, so a process may exit once close returns.
    let grace = ep.grace();
    tokio::select! {
        _ = finished => {}
        _ = tokio::time::sleep(grace) => {}
        _ = ep.hurry.cancelled() => {}
    }
    link.finished.cancel();
    Ended {
        status,
        next,
        established,
        renewed: matches!(cause, Cause::Expired(_)) || matches!(notice, Notice::Renew(_)),
    }
}

/// The connection's writer, driven by the connection's task.
type Writer = Pin<Box<dyn Future<Output = WriterEnd> + Send>>;

struct Reader<'a> {
    session: &'a Session,
    ep: &'a Arc<EndpointShared>,
    link: &'a Arc<Link>,
    rd: ReadHalf,
    inbound: Inbound,
    /// The peer's stream has not ended (and reading did not fail).
    reading: bool,
    /// A message that found the hold full, offered again when there is room.
    waiting: Option<Box<Message>>,
    /// Frames read but not yet handled: the reader yielded after a turn's
    /// worth, and handles them before it reads again.
    backlog: bool,
    established: bool,
    writer: Option<Writer>,
    /// Polled in [`Reader::until_ending`]'s loop only when woken, or given
    /// work in a turn of this task.
    writer_gate: Gate,
    writer_end: Option<WriterEnd>,
    /// Callers woken by replies in the last read turn.
    woken: usize,
    /// The session's age and idle limits on this connection.
    expiry: ExpiryWatch,
    /// The connection ended because they were reached.
    expired: bool,
    /// This side ended its stream after the peer's going-away notice, with
    /// nothing more to send.
    writes_ended: bool,
    /// The peer's messages arrive in the order it sent them.
    ordered: bool,
}

impl Reader<'_> {
    /// Reads and dispatches until something ends the connection.
    async fn until_ending(&mut self, verdict: Verdict) -> (Cause, Status) {
        let mut verdict = Some(match verdict {
            Verdict::Sent(rx) => Box::pin(async move {
                rx.await
                    .unwrap_or_else(|_| Err(Status::internal("session setup was abandoned")))
            }) as BoxFuture<'static, _>,
            Verdict::Run(fut) => fut,
        });
        let link = self.link;
        // Close, abort and drop requests wake the reader through the link
        // (cheaper to poll on every turn than their tokens), and are
        // checked once at the start, for one made before this connection
        // was the session's.
        link.reader.notify();
        let mut frame_timer = pin!(LazyTimer::new());
        let mut call_timer = pin!(LazyTimer::new());
        let mut expiry_timer = pin!(LazyTimer::new());
        loop {
            let woken = std::mem::take(&mut self.woken);
            if woken > 0 && link.core().calls.len() <= FEW_IN_FLIGHT {
                // With few calls in flight, latency rules: the callers just
                // woken run first, so the calls they make next go out in
                // this task's next turn (a lone one, its caller writes
                // itself: see `Link::start_call`), and the turn that would
                // find nothing to do between is saved.
                yield_once().await;
            }
            frame_timer.as_mut().arm(self.inbound.arm_timer());
            call_timer.as_mut().arm(link.core().calls.next_deadline());
            expiry_timer.as_mut().arm(self.expiry.next());
            let can_read = self.reading && self.waiting.is_none() && !self.backlog;
            tokio::select! {
                biased;
                _ = poll_fn(|cx| link.reader.poll(cx)) => {
                    if let Some(end) = self.requested_end() {
                        return end;
                    }
                    if let Some(end) = self.retry_waiting() {
                        return end;
                    }
                    self.expiry_changed();
                    self.end_writing_after_notice();
                }
                v = async { verdict.as_mut().expect("checked").await }, if verdict.is_some() => {
                    verdict = None;
                    if let Err(status) = v {
                        return (Cause::HookRefused, status);
                    }
                    if let Some(end) = self.establish() {
                        return end;
                    }
                }
                w = poll_fn(|cx| self.writer_gate.poll(cx, |cx| self.writer.as_mut().expect("checked").as_mut().poll(cx))), if self.writer.is_some() => {
                    self.writer = None;
                    let status = match w {
                        WriterEnd::Failed(status) => status,
                        // Asked for after the peer's going-away notice:
                        // read on, for the replies still to come.
                        WriterEnd::Finished if self.writes_ended => {
                            self.writer_end = Some(WriterEnd::Finished);
                            continue;
                        }
                        WriterEnd::Finished => Status::connection_closed("the writer stopped"),
                    };
                    return (Cause::Broken, status);
                }
                read = poll_fn(|cx| poll_read(&mut self.rd, &mut self.inbound, cx)), if can_read => {
                    match read {
                        Read::Bytes => {
                            if let Some(end) = self.frames() {
                                return end;
                            }
                        }
                        Read::End => {
                            self.reading = false;
                            return match self.inbound.end_of_stream() {
                                Ok(()) => (Cause::PeerEnded, self.link.peer_notice().unwrap_or_else(|| {
                                    Status::connection_closed("the peer closed the connection")
                                })),
                                Err(status) => (Cause::Broken, status),
                            };
                        }
                        Read::Failed(e) => {
                            self.reading = false;
                            return (Cause::Broken, Status::connection_closed(format!(
                                "reading from the peer failed: {e}"
                            )).with_cause(e));
                        }
                    }
                }
                _ = yield_once(), if self.backlog => {
                    if let Some(end) = self.frames() {
                        return end;
                    }
                }
                _ = frame_timer.as_mut().fired(), if frame_timer.is_armed() => {
                    // Armed lazily: what it was set for may be over or put off.
                    let now = tokio::time::Instant::now().into_std();
                    if self.inbound.on_timer(now) {
                        return (Cause::Broken, self.inbound.frame_timed_out());
                    }
                }
                _ = call_timer.as_mut().fired(), if call_timer.is_armed() => {
                    self.expire_calls();
                }
                _ = expiry_timer.as_mut().fired(), if expiry_timer.is_armed() => {
                    if let Some(end) = self.check_expiry() {
                        return end;
                    }
                }
            }
        }
    }

    /// The end asked for by an abort, a drop or a close, if any (in that
    /// order: the most abrupt wins).
    fn requested_end(&self) -> Option<(Cause, Status)> {
        let (shared, link) = (&self.session.shared, self.link);
        if shared.abort_requested.is_cancelled() {
            return Some((Cause::Abort, self.session.abort_status()));
        }
        if link.drop_requested.is_cancelled() {
            let reason = link
                .drop_reason
                .get()
                .cloned()
                .unwrap_or_else(|| Status::connection_closed("the connection was dropped"));
            return Some((Cause::Dropped, reason));
        }
        if shared.close_requested.is_cancelled() {
            let status = match self.established {
                true => Status::connection_closed("closed by the local endpoint"),
                false => Status::connection_closed("closed before the session was established"),
            };
            return Some((Cause::LocalClose, status));
        }
        None
    }

    /// The hooks passed: what was held runs now, in order, then messages go
    /// straight to their handlers. A message and frames already read behind
    /// a full hold are handled at once: no more bytes may come to wake the
    /// reader.
    fn establish(&mut self) -> Option<(Cause, Status)> {
        self.established = true;
        if self.session.phase() == Phase::Establishing {
            self.session.transition(Phase::hooks_passed);
        }
        self.link.established.cancel();
        let held = self.link.core().establish();
        for (msg, arrived) in held {
            self.dispatch(msg, arrived);
        }
        // The message that found the hold full goes through the core again
        // (a call is recorded as being handled only there), then the frames
        // read behind it.
        self.retry_waiting()
    }

    fn dispatch(&self, msg: Message, arrived: Instant) {
        let msg = Box::new(msg);
        match msg.header.kind {
            Kind::Call => dispatch::call(self.session, self.link, msg, arrived),
            _ => dispatch::push(self.session, self.link, msg),
        }
    }

    /// Handles the whole frames read, at most [`FRAMES_PER_TURN`] of them
    /// before it lets other tasks run (`backlog` then says more may wait);
    /// `Some` when one ends the connection.
    fn frames(&mut self) -> Option<(Cause, Status)> {
        // Replies queued by handlers that finish inline need no wake-up of
        // the writer: this task polls it next (in either loop).
        self.link.core().writer_due(true);
        let end = self.handle_frames();
        if self.link.core().writer_due(false) {
            self.writer_gate.open();
        }
        end
    }

    fn handle_frames(&mut self) -> Option<(Cause, Status)> {
        self.backlog = false;
        let mut handled = 0;
        while self.waiting.is_none() {
            if handled == FRAMES_PER_TURN {
                self.backlog = true;
                return None;
            }
            handled += 1;
            let frame = match self.inbound.next() {
                Ok(Some(frame)) => frame,
                Ok(None) => return None,
                Err(err) => {
                    let (status, reply) = wire::fatal_input(&err);
                    if let Some(reply) = reply {
                        // Answered before the connection closes.
                        self.link.reply_at_once(&reply);
                    }
                    return Some((Cause::Broken, status.with_cause(err)));
                }
            };
            if let Some(end) = self.frame(frame) {
                return Some(end);
            }
        }
        None
    }

    fn frame(&mut self, frame: Frame) -> Option<(Cause, Status)> {
        let session = self.session;
        session.plugins().each(|p| p.before_read_header(session));
        let arrived = self.inbound.arrived();
        let last = !self.inbound.has_buffered();
        let event = {
            let mut core = self.link.core();
            core.last_frame(last);
            core.on_frame(frame, arrived)
        };
        self.event(event, arrived)
    }

    fn event(
        &mut self,
        event: Event<std::task::Waker>,
        arrived: Instant,
    ) -> Option<(Cause, Status)> {
        match event {
            Event::Call(msg) => dispatch::call(self.session, self.link, msg, arrived),
            Event::Push(msg) => dispatch::push(self.session, self.link, msg),
            Event::Held => self.link.held.notify_waiters(),
            Event::HoldFull(msg) => self.waiting = Some(msg),
            Event::Replied(waker) => {
                if let Some(w) = waker {
                    w.wake();
                    self.woken += 1;
                }
            }
            Event::Answered(waker) => waker.into_iter().for_each(std::task::Waker::wake),
            Event::Streamed(wakers) => wakers
                .into_iter()
                .flatten()
                .for_each(std::task::Waker::wake),
            Event::Cancelled(seq) => self.link.cancel_handler(seq),
            Event::Hello(writer) => self.link.heard_hello(writer),
            Event::Notice(status) if wire::is_going_away(&status) => {
                tracing::debug!(session = %self.session.id(), %status, "the peer is going away");
                self.link.peer_going_away();
                // Calls waiting to redial after a shutdown look again.
                self.session.shared.changed.notify_waiters();
                self.end_writing_after_notice();
            }
            // The peer refused the connection: final.
            Event::Notice(status) => return Some((Cause::Broken, status)),
            Event::Dropped(why) => {
                tracing::debug!(session = %self.session.id(), "dropped {why}");
            }
            Event::Fatal(status) => return Some((Cause::Broken, status)),
        }
        None
    }

    /// Offers the message that found the hold full again, then goes on
    /// with the frames already read.
    fn retry_waiting(&mut self) -> Option<(Cause, Status)> {
        if let Some(msg) = self.waiting.take() {
            let arrived = self.inbound.arrived();
            let event = self.link.core().on_frame(Frame::Message(msg), arrived);
            if let Some(end) = self.event(event, arrived) {
                return Some(end);
            }
            if self.waiting.is_none() {
                return self.frames();
            }
        }
        None
    }

    fn expire_calls(&self) {
        let now = tokio::time::Instant::now().into_std();
        let woken = self.link.core().calls.expire(now);
        for w in woken {
            w.wake();
        }
    }
}

/// Up to how many calls in flight the reader lets the callers its replies
/// woke run before it goes on. With more, reading on gathers their next
/// calls into larger batches; yielding after every read halved QUIC's
/// calls/s at 100 in flight, where replies come a packet at a time.
const FEW_IN_FLIGHT: usize = 16;

/// How many frames the reader handles before it lets other tasks run. The
/// callers its replies woke then send their next calls, and the writer
/// writes them, while the rest of a large read waits: the peer starts on
/// the first calls of a round while this side still works through its
/// replies, so both sides work at once instead of in turn.
const FRAMES_PER_TURN: usize = 32;
