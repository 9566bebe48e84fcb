//! The protocol state of one connection, as plain data: this side's calls
//! waiting for replies, the peer's calls being handled, what waits for the
//! writer, what is held before the connection is established, and the
//! notices each side sent.
//!
//! The runtime keeps one behind a lock per connection. Inputs are methods
//! named for what happened ([`ConnCore::on_frame`], [`ConnCore::reply`],
//! [`ConnCore::going_away`]); what the runtime must do comes back as values
//! (an [`Event`] to dispatch, a waiter to wake). `W` is whatever the runtime
//! wakes a waiting task with.

use super::features::Peer;
use super::hold::Hold;
use super::inbound::Frame;
use super::inflight::{Completed, InFlight, Outcome};
use super::lifecycle::Renewal;
use super::outbound::{Batch, Outbound};
use super::streams::Streams;
use super::wire;
use crate::values::Status;
use cancel::EarlyCancels;
use drpc_codec::CodecId;
use drpc_proto::{Head, Kind, Message, ProtoError, WriteBody};
use rustc_hash::FxHashSet;
use std::time::Instant;

mod cancel;
mod held;
mod notices;
pub(crate) mod streams;

/// What the reader does with a frame, as [`ConnCore::on_frame`] decided.
#[derive(Debug)]
pub(crate) enum Event<W> {
    /// A call to dispatch to its handler; its seq is now being handled, and
    /// [`ConnCore::reply`] must answer it exactly once.
    Call(Box<Message>),
    /// A push to dispatch.
    Push(Box<Message>),
    /// The connection is not established yet: the message is held.
    Held,
    /// Not established and nothing more can be held: the reader waits
    /// (for a hook to take one, or the hooks to end) and offers it again.
    HoldFull(Box<Message>),
    /// A reply ended a call: wake its caller.
    Replied(Option<W>),
    /// The peer's notice: it is going away (102), or it refuses the
    /// connection (anything else, which ends it).
    Notice(Status),
    /// Answered here and now (the reply is queued; wake the writer): a
    /// call that crossed this side's going-away notice (102), reused a seq
    /// still being handled (400), or is over a header limit (413).
    Answered(Option<W>),
    /// The peer said what it takes (its hello, or the answer to this
    /// side's): wake the writer if given, and whoever waits to know.
    Hello(Option<W>),
    /// The peer cancelled its call with this seq, which is no longer
    /// handled: stop its handler (no reply is sent).
    Cancelled(u32),
    /// A stream's frame or reply: wake both (a reader or sender of the
    /// stream, and the writer or the other of the two).
    Streamed([Option<W>; 2]),
    /// Nothing to do, for the reason given (a late reply, a push after
    /// the going-away notice, an oversize push).
    Dropped(&'static str),
    /// The peer broke the protocol: the connection must end.
    Fatal(Status),
}

/// One connection's state.
pub(crate) struct ConnCore<W> {
    /// This side's calls waiting for replies.
    pub(crate) calls: InFlight<W>,
    out: Outbound,
    /// Seqs of the peer's calls being handled (held ones included).
    handling: FxHashSet<u32>,
    /// What the peer said it understands (the hello).
    peer: Peer,
    /// The peer's hello was answered: a later call of that name is routed.
    hello_answered: bool,
    /// The streams of calls either way (docs/PROTOCOL.md section 3.4).
    streams: Streams<W>,
    hold: Hold,
    established: bool,
    going_away_sent: bool,
    peer_notice: Option<Status>,
    /// What the peer's going-away notice asked for, when it asked for a
    /// new connection rather than said it was shutting down.
    peer_renewal: Option<Renewal>,
    /// What this side's own going-away notice said, when it renewed.
    own_renewal: Option<Renewal>,
    /// Calls and pushes of the application, either way (see
    /// [`counts_as_activity`]): the idle timeout watches it change.
    activity: u64,
    /// Set when the connection has ended: new calls and pushes fail with it.
    ended: Option<Status>,
    /// The writer, waiting for something to write.
    writer: Option<W>,
    /// The writer's task is handling frames and polls the writer right
    /// after: what is queued meanwhile needs no wake-up.
    writer_due: bool,
    /// The frame being handled in that turn is the last one read: replies
    /// queued now are all the writer would find when the turn ends, and
    /// their answerer may write them at once (see [`ReplyWrite::Here`]).
    last_frame: bool,
    /// A wake-up of the writer was held back in that turn: the writer has
    /// work (a message queued, a batch its sender could not write whole)
    /// and its task must poll it when the turn ends.
    wake_owed: bool,
    /// The writer shuts the connection's write side down once it has
    /// written everything.
    finish_writing: bool,
    /// Senders waiting for room in the write queue.
    room: Vec<W>,
    /// Cancels that came before their calls, where frames can overtake
    /// each other (QUIC); `None` over an ordered transport.
    early_cancels: Option<EarlyCancels>,
}

/// A call started by [`ConnCore::start_call`].
#[derive(Debug)]
pub(crate) struct Started<W> {
    pub(crate) seq: u32,
    /// The deadline timer must be set earlier.
    pub(crate) earlier: bool,
    /// The writer to wake.
    pub(crate) writer: Option<W>,
    /// The call is alone: nothing else is in flight or queued, and the
    /// writer waits idle (and was not woken). Its caller may take the batch
    /// with [`ConnCore::lone_batch`] and write it at once, saving a hop to
    /// the writer's task; if it cannot, it wakes the writer with
    /// [`ConnCore::left_to_writer`].
    pub(crate) lone: bool,
}

/// Who writes a reply just queued.
#[derive(Debug)]
pub(crate) enum ReplyWrite<W> {
    /// The writer; the waker, if it must be woken.
    Writer(Option<W>),
    /// Its answerer, at once, with [`ConnCore::reply_batch`]: it came from
    /// the last frame read in the writer's own task's turn, so the writer
    /// would write it right after anyway, but only after the turn's
    /// bookkeeping. Whatever the answerer cannot write, the writer (due
    /// when the turn ends) goes on with.
    Here,
}

/// What the writer does next; see [`ConnCore::next_write`].
#[derive(Debug)]
pub(crate) enum WriteStep<W> {
    Batch(Batch, Vec<W>),
    Finish,
    Wait,
}

/// Why a message could not be queued.
#[derive(Debug)]
pub(crate) enum QueueError {
    /// The write queue is full: wait for room (the waiter was kept).
    Full,
    /// It cannot be encoded (too large for the frame or header limits).
    Encode(ProtoError),
    /// The connection has ended, or the peer is going away.
    Closed(Status),
}

impl<W> ConnCore<W> {
    pub(crate) fn new(out: Outbound, hold: Hold) -> Self {
        Self {
            calls: InFlight::default(),
            out,
            handling: FxHashSet::default(),
            peer: Peer::Unknown,
            hello_answered: false,
            streams: Streams::default(),
            hold,
            established: false,
            going_away_sent: false,
            peer_notice: None,
            peer_renewal: None,
            own_renewal: None,
            activity: 0,
            ended: None,
            writer: None,
            writer_due: false,
            last_frame: false,
            wake_owed: false,
            finish_writing: false,
            room: Vec::new(),
            early_cancels: None,
        }
    }

    /// Classifies an incoming frame.
    pub(crate) fn on_frame(&mut self, frame: Frame, arrived: Instant) -> Event<W> {
        let msg = match frame {
            Frame::Message(msg) => msg,
            Frame::Oversize {
                kind: Kind::Call,
                seq,
                codec,
                status,
            } => return self.answer_at_once(seq, codec, &status),
            Frame::Oversize {
                kind: Kind::Reply,
                seq,
                status,
                ..
            } => {
                return match self.calls.complete(seq, Outcome::Failed(status)) {
                    Completed::Wake(w) => Event::Replied(w),
                    Completed::NotWaiting => Event::Dropped("a late reply"),
                }
            }
            // A stream's item or credit cannot be skipped: its numbers and
            // totals would never add up.
            Frame::Oversize {
                kind: Kind::Item | Kind::Credit,
                status,
                ..
            } => return Event::Fatal(status),
            Frame::Oversize { .. } => return Event::Dropped("a push over a header limit"),
        };
        let h = &msg.header;
        match h.kind {
            Kind::Reply if h.seq == 0 => match wire::notice_status(h) {
                Some(status) => {
                    self.peer_notice = Some(status.clone());
                    self.peer_renewal = wire::notice_renewal(h);
                    Event::Notice(status)
                }
                None => Event::Dropped("a notice that asks nothing"),
            },
            Kind::Reply if self.answers_hello(h.seq) => self.on_hello_reply(h),
            Kind::Reply if self.ends_a_stream(h.seq) => self.on_stream_reply(msg),
            Kind::Reply => match self.calls.complete(h.seq, Outcome::Reply(msg)) {
                Completed::Wake(w) => Event::Replied(w),
                Completed::NotWaiting => Event::Dropped("a late reply"),
            },
            Kind::Call if h.seq == 0 => Event::Fatal(Status::bad_message(
                "the peer sent a call with seq 0, which no reply can name",
            )),
            Kind::Call if self.cancelled_early(h.seq) => {
                Event::Dropped("a call whose cancel came before it")
            }
            Kind::Call if self.going_away_sent => {
                let status = Status::connection_closed(
                    "this side is leaving the connection and takes no new calls on it; the call was not run",
                );
                self.answer_at_once(h.seq, h.codec, &status)
            }
            Kind::Call if self.handling.contains(&h.seq) => {
                let status = Status::bad_message(format!(
                    "seq {} is still in use by a call of yours being handled",
                    h.seq
                ));
                // Not recorded as handled: the running call keeps its seq.
                let reply = wire::error_reply(h.seq, h.codec, &status);
                Event::Answered(self.force(&reply))
            }
            Kind::Call if self.is_hello(h) => self.on_hello_call(h),
            Kind::Push if self.going_away_sent => {
                Event::Dropped("a push that crossed this side's going-away notice")
            }
            Kind::Call | Kind::Push if !self.established => {
                if !self.hold.has_room(msg.body.len()) {
                    return Event::HoldFull(msg);
                }
                self.note_activity(&h.service_method);
                if h.kind == Kind::Call {
                    self.handling.insert(h.seq);
                }
                self.hold.push(*msg, arrived);
                Event::Held
            }
            Kind::Call => {
                self.note_activity(&h.service_method);
                self.handling.insert(h.seq);
                Event::Call(msg)
            }
            Kind::Push => {
                self.note_activity(&h.service_method);
                Event::Push(msg)
            }
            Kind::Cancel if self.said_hello() => self.on_cancel(h.seq),
            Kind::Item | Kind::Credit if self.streams_on() => self.on_stream_frame(*msg),
            other => Event::Fatal(Status::bad_message(format!(
                "the peer sent a {} message, which this side never said it takes",
                other.name()
            ))),
        }
    }

    /// Answers call `seq` with `status` before it was handled.
    fn answer_at_once(&mut self, seq: u32, codec: CodecId, status: &Status) -> Event<W> {
        let reply = wire::error_reply(seq, codec, status);
        Event::Answered(self.force(&reply))
    }

    /// Queues a message that must not wait for room (a reply, a notice);
    /// one that cannot be encoded is replaced by what can be said instead.
    /// Marks a turn of the writer's own task that polls the writer when it
    /// ends (`true`), and that turn's end (`false`). A wake-up from that
    /// turn would only have the task polled once more for nothing. At the
    /// turn's end, says whether the writer has work it was not woken for
    /// (a message queued, a finish asked for, a batch its answerer could
    /// not write whole): the task must poll it then.
    pub(crate) fn writer_due(&mut self, due: bool) -> bool {
        let ended = self.writer_due && !due;
        self.writer_due = due;
        self.last_frame = false;
        // A wake-up held back is owed until a turn's end reports it, even
        // one held back between turns' ends by another thread's sender.
        ended
            && (std::mem::take(&mut self.wake_owed) || self.out.queued() > 0 || self.finish_writing)
    }

    /// A batch its sender took to write itself (a lone call's, or replies)
    /// was not written whole: the writer goes on with it. Returns the
    /// writer to wake (none in a turn of its task: the turn's end reports
    /// it, see [`ConnCore::writer_due`]).
    pub(crate) fn left_to_writer(&mut self) -> Option<W> {
        self.writer_to_wake()
    }

    /// Marks whether the frame about to be handled (in the turn marked by
    /// [`ConnCore::writer_due`]) is the last one read.
    pub(crate) fn last_frame(&mut self, last: bool) {
        self.last_frame = last;
    }

    /// Whether replies queued now are for their answerer to write (see
    /// [`ReplyWrite::Here`]): the last frame of the writer's own task's
    /// turn, with the writer idle.
    fn replies_written_here(&self) -> bool {
        self.writer_due && self.last_frame && self.writer.is_some()
    }

    /// Who writes a reply just queued.
    fn reply_write(&mut self) -> ReplyWrite<W> {
        match self.replies_written_here() {
            true => ReplyWrite::Here,
            false => ReplyWrite::Writer(self.writer_to_wake()),
        }
    }

    /// What a reply's answerer writes at once (see [`ReplyWrite::Here`]),
    /// with the senders to wake for the room it frees; `None` if that is
    /// no longer the writer's plan.
    pub(crate) fn reply_batch(&mut self) -> Option<(Batch, Vec<W>)> {
        match self.replies_written_here() {
            true => self.take_batch(),
            false => None,
        }
    }

    /// The writer to wake now that it has work, if it waits; none in a
    /// turn of its task, whose end then reports the wake-up owed.
    fn writer_to_wake(&mut self) -> Option<W> {
        match self.writer_due {
            true => {
                self.wake_owed = true;
                None
            }
            false => self.writer.take(),
        }
    }

    fn force(&mut self, msg: &Message) -> Option<W> {
        if let Err(err) = self.out.push(msg) {
            let h = &msg.header;
            if h.kind == Kind::Reply && h.seq != 0 {
                let fallback = wire::error_reply(h.seq, h.codec, &wire::encode_status(&err));
                // An error reply with a bounded message always encodes.
                let _ = self.out.push(&fallback);
            }
        }
        self.writer_to_wake()
    }

    /// Answers call `seq` of the peer with `reply`, exactly once; says who
    /// writes it. A reply to a call not being handled (answered already)
    /// is not sent.
    pub(crate) fn reply(&mut self, reply: &Message) -> ReplyWrite<W> {
        if !self.handling.remove(&reply.header.seq) {
            return ReplyWrite::Writer(None);
        }
        match self.force(reply) {
            Some(w) => ReplyWrite::Writer(Some(w)),
            None => self.reply_write(),
        }
    }

    /// Queues a reply whose body `write_body` encodes in place, unless the
    /// call was answered already; says who writes it. When the
    /// body fails, nothing is queued and the reply is still owed.
    pub(crate) fn reply_with(
        &mut self,
        head: &Head<'_>,
        write_body: WriteBody<'_>,
    ) -> Result<ReplyWrite<W>, ProtoError> {
        if !self.handling.contains(&head.seq) {
            return Ok(ReplyWrite::Writer(None));
        }
        self.out.push_with(head, write_body)?;
        self.handling.remove(&head.seq);
        Ok(self.reply_write())
    }

    /// Queues a reply to a call that was never dispatched (an oversize
    /// frame refused before the connection closes); returns the writer to
    /// wake.
    pub(crate) fn answer_undispatched(&mut self, reply: &Message) -> Option<W> {
        self.force(reply)
    }

    /// Queues this side's call or push, if there is room; records `waiter`
    /// to be woken when room frees when there is none. Returns the writer
    /// to wake.
    pub(crate) fn send(
        &mut self,
        msg: &Message,
        waiter: impl FnOnce() -> W,
    ) -> Result<Option<W>, QueueError> {
        if let Some(status) = self.refusal() {
            return Err(QueueError::Closed(status));
        }
        if !self.out.has_room() {
            self.room.push(waiter());
            return Err(QueueError::Full);
        }
        self.out.push(msg).map_err(QueueError::Encode)?;
        self.note_activity(&msg.header.service_method);
        Ok(self.writer_to_wake())
    }

    /// Starts a call of this side in one step: registers it, waiting until
    /// `deadline`, and queues its frame, whose body `write_body` encodes in
    /// place (`head.seq` is set here). On any error the call is not
    /// registered.
    pub(crate) fn start_call(
        &mut self,
        head: &mut Head<'_>,
        deadline: Instant,
        write_body: WriteBody<'_>,
        waiter: impl FnOnce() -> W,
    ) -> Result<Started<W>, QueueError> {
        self.may_send(waiter)?;
        // Registered only once its frame is encoded, so a body that fails
        // (or panics) leaves nothing behind.
        let seq = self.calls.next_free();
        head.seq = seq;
        self.out
            .push_with(head, write_body)
            .map_err(QueueError::Encode)?;
        let earlier = self.calls.insert(seq, deadline);
        self.note_activity(head.service_method);
        // The only call in flight, the only message queued, and the writer
        // idle: its caller may write it at once (see `lone_batch`).
        let lone = self.writer.is_some()
            && !self.writer_due
            && self.out.queued() == 1
            && self.calls.len() == 1;
        let writer = match lone {
            true => None,
            false => self.writer_to_wake(),
        };
        Ok(Started {
            seq,
            earlier,
            writer,
            lone,
        })
    }

    /// Whether a call or push of this side may be queued now: not when
    /// the connection refuses them, nor without room (then `waiter` is
    /// kept, to be woken when room frees).
    pub(super) fn may_send(&mut self, waiter: impl FnOnce() -> W) -> Result<(), QueueError> {
        if let Some(status) = self.refusal() {
            return Err(QueueError::Closed(status));
        }
        if !self.out.has_room() {
            self.room.push(waiter());
            return Err(QueueError::Full);
        }
        Ok(())
    }

    /// The batch of a lone call (see [`Started::lone`]) for its caller to
    /// write itself, with the senders to wake for the room it frees; `None`
    /// when the writer was woken meanwhile and writes it. The writer stays
    /// registered, idle.
    pub(crate) fn lone_batch(&mut self) -> Option<(Batch, Vec<W>)> {
        if self.writer.is_none() || self.writer_due {
            return None;
        }
        self.take_batch()
    }

    /// The next batch, with the senders to wake for the room it frees.
    fn take_batch(&mut self) -> Option<(Batch, Vec<W>)> {
        let batch = self.out.next_batch()?;
        if self.out.queued() == 0 {
            // Whoever took it writes it: no poll is owed for what was queued.
            self.wake_owed = false;
        }
        let room = match self.out.has_room() {
            true => std::mem::take(&mut self.room),
            false => Vec::new(),
        };
        Some((batch, room))
    }

    /// Takes back a written batch's buffer for the next (see
    /// [`Outbound::recycle`]).
    pub(crate) fn recycle(&mut self, batch: Batch) {
        self.out.recycle(batch);
    }

    /// What the writer does next: write a batch (and wake the senders that
    /// now have room), finish (a close asked for it, and everything queued
    /// is taken), or wait, registering itself to be woken.
    pub(crate) fn next_write(&mut self, writer: impl FnOnce() -> W) -> WriteStep<W> {
        match self.take_batch() {
            Some((batch, room)) => WriteStep::Batch(batch, room),
            None if self.finish_writing => WriteStep::Finish,
            None => {
                self.writer = Some(writer());
                WriteStep::Wait
            }
        }
    }

    /// Asks the writer to shut its side of the connection down once it has
    /// written everything queued (and anything queued meanwhile, such as
    /// the last replies). Returns the writer to wake.
    pub(crate) fn finish_writing(&mut self) -> Option<W> {
        self.finish_writing = true;
        self.writer_to_wake()
    }

    /// The peer's calls being handled (or held), whose replies are owed.
    pub(crate) fn handling(&self) -> usize {
        self.handling.len()
    }

    /// This side sends no more calls or pushes on the connection (it is
    /// lost, or closing): waiting calls fail with `status` (102 for a lost
    /// connection), and new ones are refused with it. Replies and notices
    /// are still written. Returns every waiter to wake: callers, blocked
    /// senders, the writer.
    /// Refuses new calls and pushes with `status`, leaving this side's
    /// calls in flight to their replies (a renewal drains them); returns
    /// the senders to wake, to find it refused.
    pub(crate) fn refuse_new(&mut self, status: Status) -> Vec<W> {
        self.ended.get_or_insert(status);
        std::mem::take(&mut self.room)
    }

    pub(crate) fn end(&mut self, status: Status) -> Vec<W> {
        let mut woken = self.calls.fail_all(&status);
        woken.append(&mut self.room);
        woken.append(&mut self.streams.break_all(&status));
        woken.extend(self.writer_to_wake());
        self.ended.get_or_insert(status);
        woken
    }

    /// Fails the calls of a batch that could not be written with `status`
    /// (104: their bytes never left).
    pub(crate) fn write_failed(&mut self, calls: &[u32], status: &Status) -> Vec<W> {
        calls
            .iter()
            .filter_map(
                |seq| match self.calls.complete(*seq, Outcome::Failed(status.clone())) {
                    Completed::Wake(w) => w,
                    Completed::NotWaiting => None,
                },
            )
            .collect()
    }
}
