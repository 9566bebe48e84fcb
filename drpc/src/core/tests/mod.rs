//! Two cores talking in memory on a virtual clock: a session's rules.

use super::conn::{ConnCore, Event, QueueError, ReplyWrite, WriteStep};
use super::hold::{Hold, MAX_HELD};
use super::inbound::{Frame, Inbound};
use super::inflight::Outcome;
use super::outbound::Outbound;
use crate::values::{Code, Status};
use bytes::BufMut;
use drpc_proto::{FrameLimits, Header, Kind, Message, Proto, RawProto};
use std::time::{Duration, Instant};
mod cancel;

/// A virtual clock: a fixed base, moved only by the test.
struct Clock {
    base: Instant,
    offset: Duration,
}

impl Clock {
    fn new() -> Self {
        Self {
            base: Instant::now(),
            offset: Duration::ZERO,
        }
    }

    fn now(&self) -> Instant {
        self.base + self.offset
    }

    fn advance(&mut self, by: Duration) {
        self.offset += by;
    }
}

/// One end: its reading side and its connection state. Waiters are plain
/// numbers, so a test sees exactly who would be woken.
struct Side {
    inbound: Inbound,
    core: ConnCore<u32>,
}

fn limits() -> FrameLimits {
    FrameLimits::new(64 * 1024).with_meta_len(256)
}

impl Side {
    fn new(now: Instant, queue: usize) -> Self {
        Self {
            inbound: Inbound::new(
                RawProto.framer(&limits()),
                1024,
                Duration::from_secs(30),
                now,
            ),
            core: ConnCore::new(
                Outbound::new(RawProto.framer(&limits()), 4096, queue),
                Hold::new(64 * 1024),
            ),
        }
    }

    fn established(now: Instant) -> Self {
        let mut s = Self::new(now, 1024);
        assert!(s.core.establish().is_empty());
        s
    }

    /// Starts a call of `method` waiting `timeout`; returns its seq.
    fn call(&mut self, method: &str, body: &[u8], timeout: Duration, now: Instant) -> u32 {
        let (seq, _) = self.core.calls.start(now + timeout);
        let mut h = Header::call(seq, method);
        h.timeout = Some(timeout);
        self.core
            .send(&Message::new(h, body.to_vec()), || seq)
            .expect("room to send");
        self.core.calls.poll(seq, |w| *w = Some(seq));
        seq
    }

    fn push(&mut self, method: &str, body: &[u8]) {
        let msg = Message::new(Header::push(method), body.to_vec());
        self.core.send(&msg, || 0).expect("room to send");
    }

    fn answer(&mut self, call: &Message, body: &[u8]) -> ReplyWrite<u32> {
        let mut h = Header::reply(call.header.seq);
        h.codec = call.header.codec;
        self.core.reply(&Message::new(h, body.to_vec()))
    }

    /// Writes all that is queued into `to` and returns what `to` makes of it.
    fn send_to(&mut self, to: &mut Side, now: Instant) -> Vec<Event<u32>> {
        let mut events = Vec::new();
        while let WriteStep::Batch(b, _) = self.core.next_write(|| 99) {
            let (buf, offered) = to.inbound.room();
            buf.put_slice(&[&b.bytes[..], &b.tail[..]].concat());
            to.inbound
                .filled(offered, b.bytes.len() + b.tail.len(), now);
            while let Some(frame) = to.inbound.next().expect("well-formed frames") {
                events.push(to.core.on_frame(frame, to.inbound.arrived()));
            }
        }
        events
    }

    fn outcome(&mut self, seq: u32) -> Option<Outcome> {
        self.core.calls.poll(seq, |_| {})
    }
}

fn calls(events: Vec<Event<u32>>) -> Vec<Message> {
    events
        .into_iter()
        .map(|e| match e {
            Event::Call(m) => *m,
            other => panic!("expected a call, got {other:?}"),
        })
        .collect()
}

fn reply_body(outcome: Option<Outcome>) -> Vec<u8> {
    match outcome {
        Some(Outcome::Reply(m)) => {
            assert_eq!(m.header.status_code, 0, "{:?}", m.header.status_message);
            m.body.to_vec()
        }
        other => panic!("expected a reply, got {other:?}"),
    }
}

fn reply_status(outcome: Option<Outcome>) -> (i32, String) {
    match outcome {
        Some(Outcome::Reply(m)) => (m.header.status_code, m.header.status_message.to_string()),
        other => panic!("expected a reply, got {other:?}"),
    }
}

const SEC: Duration = Duration::from_secs(1);

/// A clock and two established sides on it.
fn established_pair() -> (Clock, Side, Side) {
    let clock = Clock::new();
    let (a, b) = (
        Side::established(clock.now()),
        Side::established(clock.now()),
    );
    (clock, a, b)
}

#[test]
fn calls_and_replies_cross_both_ways_matched_by_each_senders_seq() {
    let (clock, mut a, mut b) = established_pair();
    let a1 = a.call("/add", b"1+2", SEC, clock.now());
    let b1 = b.call("/who", b"?", SEC, clock.now());
    // Both sides used seq 1: the seq spaces are each sender's own.
    assert_eq!((a1, b1), (1, 1));
    let at_b = calls(a.send_to(&mut b, clock.now()));
    let at_a = calls(b.send_to(&mut a, clock.now()));
    assert_eq!(at_b[0].header.service_method, "/add");
    assert_eq!(at_a[0].header.service_method, "/who");
    assert_eq!(b.core.handling(), 1);
    b.answer(&at_b[0], b"3");
    a.answer(&at_a[0], b"a");
    let woke = b.send_to(&mut a, clock.now());
    assert!(matches!(woke[..], [Event::Replied(Some(1))]));
    a.send_to(&mut b, clock.now());
    assert_eq!(reply_body(a.outcome(a1)), b"3");
    assert_eq!(reply_body(b.outcome(b1)), b"a");
    assert_eq!(b.core.handling(), 0);
    assert_eq!(a.core.calls.len(), 0);
}

#[test]
fn replies_may_come_in_any_order() {
    let (clock, mut a, mut b) = established_pair();
    let seqs: Vec<u32> = (0..3)
        .map(|i| a.call("/m", &[i], SEC, clock.now()))
        .collect();
    let got = calls(a.send_to(&mut b, clock.now()));
    for m in got.iter().rev() {
        b.answer(m, &m.body.clone());
    }
    b.send_to(&mut a, clock.now());
    for (i, seq) in seqs.into_iter().enumerate() {
        assert_eq!(reply_body(a.outcome(seq)), vec![i as u8]);
    }
}

#[test]
fn pushes_arrive_in_the_order_sent() {
    let (clock, mut a, mut b) = established_pair();
    for i in 0..5u8 {
        a.push("/note", &[i]);
    }
    let bodies: Vec<u8> = a
        .send_to(&mut b, clock.now())
        .into_iter()
        .map(|e| match e {
            Event::Push(m) => m.body[0],
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(bodies, vec![0, 1, 2, 3, 4]);
}

#[test]
fn a_deadline_passes_on_the_virtual_clock_and_the_late_reply_is_dropped() {
    let mut clock = Clock::new();
    let (mut a, mut b) = (
        Side::established(clock.now()),
        Side::established(clock.now()),
    );
    let seq = a.call("/slow", b"", 2 * SEC, clock.now());
    let got = calls(a.send_to(&mut b, clock.now()));
    // The timeout travels: the handler knows how long it has.
    assert_eq!(got[0].header.timeout, Some(2 * SEC));
    clock.advance(SEC);
    assert!(a.core.calls.expire(clock.now()).is_empty());
    clock.advance(SEC);
    assert_eq!(a.core.calls.expire(clock.now()), vec![seq]);
    assert!(matches!(a.outcome(seq), Some(Outcome::Expired)));
    b.answer(&got[0], b"late");
    let events = b.send_to(&mut a, clock.now());
    assert!(matches!(events[..], [Event::Dropped("a late reply")]));
}

#[test]
fn a_call_that_crosses_the_going_away_notice_is_answered_102() {
    let (clock, mut a, mut b) = established_pair();
    let running = a.call("/work", b"", SEC, clock.now());
    let got = calls(a.send_to(&mut b, clock.now()));
    // B shuts down; A's next call is already on its way.
    b.core.going_away(None);
    let crossing = a.call("/work", b"", SEC, clock.now());
    a.push("/note", b"");
    let events = a.send_to(&mut b, clock.now());
    assert!(matches!(
        events[..],
        [
            Event::Answered(_),
            Event::Dropped("a push that crossed this side's going-away notice")
        ]
    ));
    // The running call is still answered, after the notice.
    b.answer(&got[0], b"done");
    let events = b.send_to(&mut a, clock.now());
    assert!(matches!(events[0], Event::Notice(ref s) if s.code() == Code::CONNECTION_CLOSED));
    assert_eq!(reply_body(a.outcome(running)), b"done");
    let (code, message) = reply_status(a.outcome(crossing));
    assert_eq!(code, 102);
    assert!(message.contains("was not run"), "{message}");
    // A, told, starts nothing more on this connection.
    let refusal = a.core.refusal().unwrap();
    assert!(refusal.message().contains("shutting down"), "{refusal}");
    let (seq, _) = a.core.calls.start(clock.now() + SEC);
    let msg = Message::new(Header::call(seq, "/work"), vec![]);
    assert!(matches!(
        a.core.send(&msg, || seq),
        Err(QueueError::Closed(s)) if s.code() == Code::CONNECTION_CLOSED
    ));
}

#[test]
fn messages_are_held_until_established_then_run_in_the_order_they_came() {
    let clock = Clock::new();
    let mut a = Side::established(clock.now());
    let mut b = Side::new(clock.now(), 1024);
    a.push("/first", b"");
    let seq = a.call("/second", b"", SEC, clock.now());
    a.push("/third", b"");
    let events = a.send_to(&mut b, clock.now());
    assert!(events.iter().all(|e| matches!(e, Event::Held)));
    assert!(!b.core.is_established());
    let held = b.core.establish();
    let order: Vec<(Kind, String)> = held
        .iter()
        .map(|(m, _)| (m.header.kind, m.header.service_method.to_string()))
        .collect();
    assert_eq!(
        order,
        vec![
            (Kind::Push, "/first".into()),
            (Kind::Call, "/second".into()),
            (Kind::Push, "/third".into()),
        ]
    );
    // The held call is owed a reply like any other.
    b.answer(&held[1].0, b"ok");
    b.send_to(&mut a, clock.now());
    assert_eq!(reply_body(a.outcome(seq)), b"ok");
}

#[test]
fn a_full_hold_stops_the_reader_and_a_hook_can_take_a_message() {
    let clock = Clock::new();
    let mut a = Side::established(clock.now());
    let mut b = Side::new(clock.now(), 1024);
    a.push("/auth", b"token");
    for i in 0..MAX_HELD {
        a.push(&format!("/flood/{i}"), b"x");
    }
    let events = a.send_to(&mut b, clock.now());
    let full: Vec<Message> = events
        .into_iter()
        .filter_map(|e| match e {
            Event::HoldFull(m) => Some(*m),
            Event::Held => None,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(full.len(), 1, "the one past the bound waits");
    let auth = b.core.take_held("/auth").unwrap();
    assert_eq!(&auth.body[..], b"token");
    // Room again: the waiting one is held now.
    let retried = full.into_iter().next().unwrap();
    assert!(matches!(
        b.core
            .on_frame(Frame::Message(Box::new(retried)), clock.now()),
        Event::Held
    ));
}

#[test]
fn a_refused_connection_answers_its_held_calls_and_drops_its_pushes() {
    let clock = Clock::new();
    let mut a = Side::established(clock.now());
    let mut b = Side::new(clock.now(), 1024);
    let seq = a.call("/x", b"", SEC, clock.now());
    a.push("/y", b"");
    a.send_to(&mut b, clock.now());
    let (dropped, _) = b.core.refuse_held(&Status::unauthorized("who are you"));
    assert_eq!(dropped, 1);
    assert_eq!(b.core.handling(), 0);
    b.send_to(&mut a, clock.now());
    assert_eq!(reply_status(a.outcome(seq)), (401, "who are you".into()));
}

#[test]
fn a_seq_still_being_handled_is_refused_with_400_and_the_first_call_keeps_it() {
    let (clock, mut a, mut b) = established_pair();
    let seq = a.call("/m", b"first", SEC, clock.now());
    let first = calls(a.send_to(&mut b, clock.now()));
    // A peer that reuses the seq while the first call runs.
    let mut h = Header::call(seq, "/m");
    h.timeout = Some(SEC);
    let dup = Message::new(h, b"again".to_vec());
    assert!(matches!(
        b.core.on_frame(Frame::Message(Box::new(dup)), clock.now()),
        Event::Answered(_)
    ));
    b.send_to(&mut a, clock.now());
    let (code, message) = reply_status(a.outcome(seq));
    assert_eq!(code, 400);
    assert!(message.contains("still in use"), "{message}");
    // The first call is still owed its reply.
    assert_eq!(b.core.handling(), 1);
    b.answer(&first[0], b"ok");
    assert_eq!(b.core.handling(), 0);
}

#[test]
fn a_call_with_seq_zero_breaks_the_protocol() {
    let clock = Clock::new();
    let mut b = Side::established(clock.now());
    let msg = Message::new(Header::call(0, "/m"), vec![]);
    match b.core.on_frame(Frame::Message(Box::new(msg)), clock.now()) {
        Event::Fatal(s) => {
            assert_eq!(s.code(), Code::BAD_MESSAGE);
            assert!(s.message().contains("seq 0"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_reply_to_the_last_frame_of_the_writers_turn_is_written_by_its_answerer() {
    let (clock, mut a, mut b) = established_pair();
    a.call("/m", b"", SEC, clock.now());
    a.call("/m", b"", SEC, clock.now());
    let got = calls(a.send_to(&mut b, clock.now()));
    // The writer waits, registered; outside a turn of its task it is woken.
    assert!(matches!(b.core.next_write(|| 7), WriteStep::Wait));
    b.core.writer_due(true);
    b.core.last_frame(false);
    assert!(matches!(b.answer(&got[0], b"1"), ReplyWrite::Writer(None)));
    assert!(
        b.core.reply_batch().is_none(),
        "not the last frame: the writer"
    );
    b.core.last_frame(true);
    assert!(matches!(b.answer(&got[1], b"2"), ReplyWrite::Here));
    let (batch, _) = b.core.reply_batch().expect("both replies, to write here");
    let mut framer = RawProto.framer(&limits());
    let mut bytes = bytes::BytesMut::from(&batch.bytes[..]);
    let bodies: Vec<_> = std::iter::from_fn(|| framer.decode(&mut bytes).unwrap())
        .map(|m| m.body)
        .collect();
    assert_eq!(bodies, [&b"1"[..], &b"2"[..]]);
    assert!(!b.core.writer_due(false), "all taken: no poll owed");
    assert!(b.core.reply_batch().is_none(), "the turn is over");
    b.core.writer_due(true);
    assert_eq!(b.core.left_to_writer(), None, "held back in the turn");
    assert!(b.core.writer_due(false), "and owed at its end");
}

#[test]
fn a_reply_is_sent_once_whatever_asks_twice() {
    let (clock, mut a, mut b) = established_pair();
    let seq = a.call("/m", b"", SEC, clock.now());
    let got = calls(a.send_to(&mut b, clock.now()));
    b.answer(&got[0], b"one");
    b.answer(&got[0], b"two");
    let events = b.send_to(&mut a, clock.now());
    assert_eq!(events.len(), 1);
    assert_eq!(reply_body(a.outcome(seq)), b"one");
}

#[test]
fn an_oversize_call_is_answered_413_and_the_stream_goes_on() {
    let clock = Clock::new();
    let mut a = Side::established(clock.now());
    let mut b = Side::established(clock.now());
    // A's encoder allows more meta than B's reader.
    a.core = ConnCore::new(
        Outbound::new(RawProto.framer(&FrameLimits::default()), 4096, 1024),
        Hold::new(1024),
    );
    a.core.establish();
    let (seq, _) = a.core.calls.start(clock.now() + SEC);
    let mut h = Header::call(seq, "/m");
    h.meta.insert("k", "v".repeat(1000));
    a.core.send(&Message::new(h, vec![]), || seq).unwrap();
    let after = a.call("/m", b"", SEC, clock.now());
    let events = a.send_to(&mut b, clock.now());
    assert!(matches!(events[0], Event::Answered(_)));
    assert!(matches!(events[1], Event::Call(_)));
    b.send_to(&mut a, clock.now());
    let (code, message) = reply_status(a.outcome(seq));
    assert_eq!(code, 413);
    assert!(message.contains("meta is over its limit"), "{message}");
    assert!(a.outcome(after).is_none(), "the next call is being handled");
}

#[test]
fn a_reply_that_cannot_be_encoded_becomes_an_error_reply() {
    let (clock, mut a, mut b) = established_pair();
    let seq = a.call("/m", b"", SEC, clock.now());
    let got = calls(a.send_to(&mut b, clock.now()));
    b.answer(&got[0], &vec![0u8; 70 * 1024]);
    b.send_to(&mut a, clock.now());
    let (code, message) = reply_status(a.outcome(seq));
    assert_eq!(code, 413);
    assert!(message.contains("exceeds the limit"), "{message}");
}

#[test]
fn a_lost_connection_fails_its_calls_and_refuses_new_ones() {
    let clock = Clock::new();
    let mut a = Side::established(clock.now());
    let seq = a.call("/m", b"", SEC, clock.now());
    let woken = a
        .core
        .end(Status::connection_closed("the peer closed the connection"));
    assert_eq!(woken, vec![seq]);
    assert!(
        matches!(a.outcome(seq), Some(Outcome::Failed(s)) if s.code() == Code::CONNECTION_CLOSED)
    );
    let msg = Message::new(Header::push("/p"), vec![]);
    assert!(matches!(
        a.core.send(&msg, || 0),
        Err(QueueError::Closed(_))
    ));
}

#[test]
fn a_full_write_queue_makes_senders_wait_until_the_writer_takes_it() {
    let clock = Clock::new();
    let mut a = Side::new(clock.now(), 2);
    a.core.establish();
    a.push("/1", b"");
    a.push("/2", b"");
    let msg = Message::new(Header::push("/3"), vec![]);
    assert!(matches!(a.core.send(&msg, || 7), Err(QueueError::Full)));
    let WriteStep::Batch(_, room) = a.core.next_write(|| 99) else {
        panic!("a batch is ready")
    };
    assert_eq!(room, vec![7], "the waiting sender is woken");
    assert!(a.core.send(&msg, || 7).is_ok());
    // With nothing queued, the writer registers and is woken by the next
    // message.
    assert!(matches!(a.core.next_write(|| 99), WriteStep::Batch(..)));
    assert!(matches!(a.core.next_write(|| 99), WriteStep::Wait));
    assert_eq!(a.core.send(&msg, || 0).unwrap(), Some(99));
    // Asked to finish, it writes what is queued first, then finishes.
    assert_eq!(
        a.core.finish_writing(),
        None,
        "the writer was woken already"
    );
    assert!(matches!(a.core.next_write(|| 99), WriteStep::Batch(..)));
    assert!(matches!(a.core.next_write(|| 99), WriteStep::Finish));
}

#[test]
fn a_refusal_notice_is_reported_as_it_was_sent() {
    let clock = Clock::new();
    let mut b = Side::established(clock.now());
    let notice = super::wire::notice(&Status::overloaded("full"));
    match b
        .core
        .on_frame(Frame::Message(Box::new(notice)), clock.now())
    {
        Event::Notice(s) => {
            assert_eq!(s.code(), Code::OVERLOADED);
            assert_eq!(s.message(), "notice from the peer: full");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(b.core.peer_notice().unwrap().code(), Code::OVERLOADED);
}

#[test]
fn replies_queued_in_the_writers_own_turn_wake_nobody_and_the_writer_still_finds_them() {
    let (clock, mut a, mut b) = established_pair();
    a.call("/x", b"1", Duration::from_secs(5), clock.now());
    let call = calls(a.send_to(&mut b, clock.now())).remove(0);
    assert!(matches!(b.core.next_write(|| 99), WriteStep::Wait));
    b.core.writer_due(true);
    let write = b.answer(&call, b"ok");
    assert!(
        matches!(write, ReplyWrite::Writer(None)),
        "no wake-up inside the turn"
    );
    assert!(b.core.writer_due(false), "its task must poll the writer");
    // The writer, polled after the turn, takes the reply.
    assert!(matches!(b.core.next_write(|| 99), WriteStep::Batch(..)));
    assert!(matches!(b.core.next_write(|| 99), WriteStep::Wait));
    // Outside a turn, the waiting writer is woken as before.
    b.push("/p", b"");
    assert!(matches!(b.core.next_write(|| 99), WriteStep::Batch(..)));
    assert!(matches!(b.core.next_write(|| 99), WriteStep::Wait));
    let msg = Message::new(Header::push("/q"), vec![]);
    assert_eq!(b.core.send(&msg, || 0).unwrap(), Some(99));
}

/// Starts a call the way a caller does, encoding its body in place.
fn start(side: &mut Side, method: &str, now: Instant) -> super::conn::Started<u32> {
    let mut header = Header::call(0, method);
    header.timeout = Some(Duration::from_secs(5));
    let mut head = header.head();
    side.core
        .start_call(
            &mut head,
            now + Duration::from_secs(5),
            &mut |_| Ok(()),
            || 7,
        )
        .expect("room to send")
}

#[test]
fn a_lone_calls_caller_may_write_it_and_any_other_call_wakes_the_writer() {
    let (clock, mut a, _b) = established_pair();
    assert!(matches!(a.core.next_write(|| 99), WriteStep::Wait));
    let first = start(&mut a, "/one", clock.now());
    assert!(first.lone, "alone in flight, the writer idle");
    assert_eq!(first.writer, None, "the writer is left waiting");
    let (batch, room) = a.core.lone_batch().expect("its batch");
    assert_eq!(batch.calls, vec![first.seq]);
    assert!(room.is_empty());
    assert!(a.core.lone_batch().is_none(), "taken once");
    // A second call while the first is in flight is the writer's to write.
    let second = start(&mut a, "/two", clock.now());
    assert!(!second.lone);
    assert_eq!(second.writer, Some(99));
    assert!(a.core.lone_batch().is_none(), "the writer was woken");
    assert!(matches!(a.core.next_write(|| 99), WriteStep::Batch(..)));
}

#[test]
fn a_lone_caller_that_cannot_write_wakes_the_writer_and_nothing_is_lost() {
    let (clock, mut a, mut b) = established_pair();
    assert!(matches!(a.core.next_write(|| 99), WriteStep::Wait));
    let started = start(&mut a, "/one", clock.now());
    assert!(started.lone);
    // Its caller could not write it all while the reader's turn ran (on
    // another thread): the wake-up is owed to the turn's end, not lost.
    a.core.writer_due(true);
    assert_eq!(a.core.left_to_writer(), None);
    assert!(
        a.core.writer_due(false),
        "the turn's end owes the writer a poll"
    );
    assert_eq!(a.core.left_to_writer(), Some(99), "outside a turn: woken");
    let got = calls(a.send_to(&mut b, clock.now()));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].header.seq, started.seq);
}
