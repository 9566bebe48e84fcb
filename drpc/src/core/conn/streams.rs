//! A connection's streams (docs/PROTOCOL.md section 3.4): the frames that
//! carry their items and credit both ways, over the state of
//! [`crate::core::streams`].

use super::{ConnCore, Event, QueueError, Started};
use crate::core::features::Peer;
use crate::core::inflight::{Completed, Outcome};
use crate::core::streams::{EndSend, Next, Role, SendRefused, Window};
use crate::values::Status;
use drpc_proto::{flag, Header, Message};
use std::time::Instant;

/// The meta key that opens a stream, and its values.
pub(crate) const STREAM_KEY: &str = "drpc-stream";
/// The meta key of the caller's first window.
pub(crate) const WINDOW_KEY: &str = "drpc-window";
/// The meta key of a reply that ends a stream: the items the callee sent.
pub(crate) const ITEMS_KEY: &str = "drpc-items";

/// Who writes an item just queued.
#[derive(Debug)]
pub(crate) enum ItemWrite<W> {
    /// The writer; the waker, if it must be woken.
    Writer(Option<W>),
    /// Its sender, at once, with [`ConnCore::lone_batch`]: the writer
    /// idles, and a wake-up per item would cost a task switch each (a
    /// stream's items come back to back).
    Here,
}

/// Why an item was not queued.
#[derive(Debug)]
pub(crate) enum ItemError {
    /// No credit, or no room in the write queue: the waiter was kept.
    Wait,
    /// The stream is over (or was never open here).
    Gone,
    /// The connection cannot take it (closed), or it cannot be encoded.
    Queue(QueueError),
}

impl<W> ConnCore<W> {
    /// Whether both sides said they take streams.
    pub(crate) fn streams_on(&self) -> bool {
        matches!(self.peer, Peer::Known(f) if f.stream)
    }

    /// Starts a stream call of this side, as [`ConnCore::start_call`] does
    /// a call, with its stream open before its frame can go out: this side
    /// reads the callee's items under `receive`, and with `sends`, sends
    /// items once the callee's first credit comes.
    pub(crate) fn start_stream_call(
        &mut self,
        msg: &mut Message,
        deadline: Instant,
        receive: Option<Window>,
        sends: bool,
        waiter: impl FnOnce() -> W,
    ) -> Result<Started<W>, QueueError> {
        self.may_send(waiter)?;
        let seq = self.calls.next_free();
        msg.header.seq = seq;
        self.out.push(msg).map_err(QueueError::Encode)?;
        let earlier = self.calls.insert(seq, deadline);
        self.open_caller_stream(seq, receive, sends);
        Ok(Started {
            seq,
            earlier,
            writer: self.writer_to_wake(),
            lone: false,
        })
    }

    /// Opens the stream of this side's call `seq` (registered, not yet
    /// queued): it reads under `receive`, and with `sends`, sends once the
    /// callee's first credit comes.
    pub(crate) fn open_caller_stream(&mut self, seq: u32, receive: Option<Window>, sends: bool) {
        let send = sends.then_some(Window { items: 0, bytes: 0 });
        self.streams.open(Role::Caller, seq, receive, send);
    }

    /// Opens the stream of the peer's call `seq`, which this side handles:
    /// it sends items under the caller's first window `send`, and reads
    /// the caller's under `receive`, whose first credit is queued here.
    /// Returns the writer to wake.
    pub(crate) fn open_callee_stream(
        &mut self,
        seq: u32,
        send: Option<Window>,
        receive: Option<Window>,
    ) -> Option<W> {
        self.streams.open(Role::Callee, seq, receive, send);
        let w = receive?;
        self.force(&Message::credit(seq, 0, w.items, w.bytes))
    }

    /// Ends this side's direction of a stream it calls (failed with
    /// `status`): the end goes now, or with the callee's first credit.
    /// Returns the wakers: a waiting sender's, and the writer's.
    pub(crate) fn end_items(&mut self, seq: u32, status: Option<Status>) -> [Option<W>; 2] {
        let (end, waiter) = self.streams.end_send(Role::Caller, seq, status.clone());
        let writer = match end {
            EndSend::Now(items) if self.ended.is_none() => {
                self.force(&end_frame(seq, items, status))
            }
            _ => None,
        };
        [waiter, writer]
    }

    /// Forgets a stream; returns the waiters to wake.
    pub(crate) fn close_stream(&mut self, role: Role, seq: u32) -> Vec<W> {
        self.streams.close(role, seq)
    }

    /// An item or a credit from the peer.
    pub(super) fn on_stream_frame(&mut self, msg: Message) -> Event<W> {
        let h = &msg.header;
        // The flag says who sent it; the stream is keyed by this side's
        // part in the call.
        let role = match h.flags & flag::FROM_CALLER != 0 {
            true => Role::Callee,
            false => Role::Caller,
        };
        let (seq, count) = (h.seq, h.count());
        if h.kind == drpc_proto::Kind::Credit {
            let Some(bytes) = msg.credit_bytes() else {
                return Event::Fatal(Status::bad_message("a credit whose body is not 8 bytes"));
            };
            let (waiter, end) = self.streams.on_credit(role, seq, count, bytes);
            let writer = end.and_then(|(items, status)| self.force(&end_frame(seq, items, status)));
            return Event::Streamed([waiter, writer]);
        }
        if h.flags & flag::END != 0 && role == Role::Caller {
            return Event::Fatal(Status::bad_message(
                "an END item from a callee, whose direction ends with its reply",
            ));
        }
        let end = (h.flags & flag::END != 0).then(|| {
            (h.status_code != 0).then(|| {
                Status::new(
                    crate::values::Code(h.status_code),
                    h.status_message.to_string(),
                )
            })
        });
        match self.streams.on_item(role, count, end, msg) {
            Ok(waiter) => Event::Answered(waiter),
            Err(why) => Event::Fatal(Status::bad_message(format!(
                "the peer broke a stream's flow control: {why}"
            ))),
        }
    }

    /// The reply to a stream call of this side: it ends the call, the
    /// callee's items (after as many as it counts) and this side's.
    pub(super) fn on_stream_reply(&mut self, msg: Box<Message>) -> Event<W> {
        let h = &msg.header;
        let (seq, reader) = (h.seq, self.items_counted(h));
        let sender = self.streams.stop_sending(Role::Caller, seq);
        // The stream's reader and the call's waiter are one task.
        match self.calls.complete(seq, Outcome::Reply(msg)) {
            Completed::Wake(w) => Event::Streamed([w.or(reader), sender]),
            Completed::NotWaiting => Event::Streamed([reader, sender]),
        }
    }

    /// How many items a stream reply says were sent, and whether it failed.
    fn items_counted(&mut self, h: &Header) -> Option<W> {
        let items = h
            .meta
            .get(ITEMS_KEY)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let status = (h.status_code != 0).then(|| {
            Status::new(
                crate::values::Code(h.status_code),
                h.status_message.to_string(),
            )
        });
        self.streams.on_end(Role::Caller, h.seq, items, status)
    }

    /// Whether a reply with `seq` ends a stream this side reads.
    pub(super) fn ends_a_stream(&self, seq: u32) -> bool {
        self.streams.is_open(Role::Caller, seq)
    }

    /// The next item of a stream this side reads, queueing the credit it
    /// frees; the second value is the writer to wake for that credit.
    pub(crate) fn next_item(
        &mut self,
        role: Role,
        seq: u32,
        waiter: impl FnOnce() -> W,
    ) -> (Next<W>, Option<W>) {
        let next = self.streams.next(role, seq, waiter);
        let writer = match &next {
            Next::Item(_, Some(grant)) => {
                let flags = match role {
                    Role::Caller => flag::FROM_CALLER,
                    Role::Callee => 0,
                };
                let credit = Message::credit(seq, flags, grant.items, grant.bytes);
                self.force(&credit)
            }
            _ => None,
        };
        (next, writer)
    }

    /// Queues an item of this side's direction of a stream (its number is
    /// set here); without credit or room, keeps `waiter`. Says who writes
    /// it.
    pub(crate) fn send_item(
        &mut self,
        role: Role,
        msg: &mut Message,
        waiter: impl Fn() -> W,
    ) -> Result<ItemWrite<W>, ItemError> {
        if let Some(status) = self.ended.clone() {
            return Err(ItemError::Queue(QueueError::Closed(status)));
        }
        if !self.out.has_room() {
            self.room.push(waiter());
            return Err(ItemError::Wait);
        }
        let seq = msg.header.seq;
        let number = match self.streams.take_credit(role, seq, msg.body.len(), &waiter) {
            Ok(n) => n,
            Err(SendRefused::NoCredit) => return Err(ItemError::Wait),
            Err(SendRefused::Gone) => return Err(ItemError::Gone),
        };
        msg.header.set_count(number);
        if let Err(e) = self.out.push(msg) {
            // Not sent: its number and credit go to the next item.
            self.streams.untake_credit(role, seq, msg.body.len());
            return Err(ItemError::Queue(QueueError::Encode(e)));
        }
        if self.writer.is_some() && !self.writer_due {
            return Ok(ItemWrite::Here);
        }
        Ok(ItemWrite::Writer(self.writer_to_wake()))
    }

    /// How many items this side sent on a stream.
    pub(crate) fn items_sent(&self, role: Role, seq: u32) -> u32 {
        self.streams.sent(role, seq)
    }
}

/// The end of a caller's direction after `items` items, failed with
/// `status` if given.
fn end_frame(seq: u32, items: u32, status: Option<Status>) -> Message {
    let mut header = Header::items_end(seq, items);
    if let Some(status) = status {
        header.status_code = status.code().0;
        header.status_message = status.message().to_string().into();
    }
    Message::new(header, bytes::Bytes::new())
}
